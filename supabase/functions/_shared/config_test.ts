import assert from "node:assert/strict";
import { ConfigError, functionUrl, loadConfig, streamUrl } from "./config.ts";

const SECRET = "s".repeat(40);
const minimal = {
  SUPABASE_URL: "https://abc.supabase.co",
  SUPABASE_SERVICE_ROLE_KEY: "service-role-key-value",
  TWILIO_AUTH_TOKEN: "twilio-token-value",
  VOICE_INTERNAL_SECRET: SECRET,
};

Deno.test("loadConfig() applies real endpoints as defaults", () => {
  const config = loadConfig(minimal);
  assert.equal(config.publicFunctionsUrl, "https://abc.supabase.co/functions/v1");
  assert.equal(config.openaiRealtimeUrl, "wss://api.openai.com/v1/realtime");
  assert.equal(config.twilioApiBaseUrl, "https://api.twilio.com");
  assert.equal(config.openaiRealtimeModel, "gpt-realtime");
  assert.equal(config.storeAdapter, "supabase");
  assert.equal(config.lookupBudgetMs, 150);
  assert.equal(config.audioPipeline, "passthrough");
  assert.equal(streamUrl(config), "wss://abc.supabase.co/functions/v1/voice-stream");
  assert.equal(
    functionUrl(config, "voice-action"),
    "https://abc.supabase.co/functions/v1/voice-action",
  );
});

Deno.test("loadConfig() takes overrides for local runs", () => {
  const config = loadConfig({
    TWILIO_AUTH_TOKEN: "t",
    VOICE_INTERNAL_SECRET: SECRET,
    PUBLIC_FUNCTIONS_URL: "http://127.0.0.1:54321/functions/v1/",
    DATABASE_URL: "postgres://postgres@127.0.0.1:5432/test",
    OPENAI_REALTIME_URL: "ws://127.0.0.1:9999/v1/realtime",
    TWILIO_API_BASE_URL: "http://127.0.0.1:9998",
    LOOKUP_BUDGET_MS: "90",
    AUDIO_PIPELINE: "pcm24k",
  });
  assert.equal(config.publicFunctionsUrl, "http://127.0.0.1:54321/functions/v1");
  assert.equal(config.storeAdapter, "postgres");
  assert.equal(config.lookupBudgetMs, 90);
  assert.equal(config.audioPipeline, "pcm24k");
  assert.equal(streamUrl(config), "wss://127.0.0.1:54321/functions/v1/voice-stream");
});

Deno.test("loadConfig() names every bad variable in one error and never a value", () => {
  const secretValue = "ws-not-a-url-super-secret";
  let error: unknown;
  try {
    loadConfig(
      {
        SUPABASE_URL: "https://abc.supabase.co",
        SUPABASE_SERVICE_ROLE_KEY: "k",
        VOICE_INTERNAL_SECRET: "short-secret-value",
        OPENAI_REALTIME_URL: secretValue,
        AUDIO_PIPELINE: "stereo",
        LOOKUP_BUDGET_MS: "-3",
        TWILIO_AUTH_TOKEN: "",
      },
      { require: ["OPENAI_API_KEY"] },
    );
  } catch (caught) {
    error = caught;
  }
  assert.ok(error instanceof ConfigError);
  assert.deepEqual(error.variables, [
    "AUDIO_PIPELINE",
    "LOOKUP_BUDGET_MS",
    "OPENAI_API_KEY",
    "OPENAI_REALTIME_URL",
    "TWILIO_AUTH_TOKEN",
    "VOICE_INTERNAL_SECRET",
  ]);
  for (const name of error.variables) assert.match(error.message, new RegExp(name));
  assert.doesNotMatch(error.message, /super-secret|short-secret-value|stereo/);
  assert.match(error.message, /TWILIO_AUTH_TOKEN is required/);
});

Deno.test("loadConfig() requires a database when no service role is configured", () => {
  assert.throws(
    () => loadConfig({ TWILIO_AUTH_TOKEN: "t", VOICE_INTERNAL_SECRET: SECRET }),
    (error: unknown) =>
      error instanceof ConfigError &&
      error.variables.includes("DATABASE_URL") &&
      error.variables.includes("PUBLIC_FUNCTIONS_URL"),
  );
});

Deno.test("loadConfig() reads the stream's CPU meter and caller append size", () => {
  const defaults = loadConfig(minimal);
  assert.equal(defaults.streamCpuMeter, "auto");
  assert.equal(defaults.callerAudioAppendMs, 20, "every Twilio frame at once");
  const set = loadConfig({
    ...minimal,
    STREAM_CPU_METER: "estimate",
    CALLER_AUDIO_APPEND_MS: "80",
  });
  assert.equal(set.streamCpuMeter, "estimate");
  assert.equal(set.callerAudioAppendMs, 80);
  for (const bad of ["30", "0", "400"]) {
    assert.throws(
      () => loadConfig({ ...minimal, CALLER_AUDIO_APPEND_MS: bad }),
      (error: unknown) =>
        error instanceof ConfigError && error.message.includes("CALLER_AUDIO_APPEND_MS"),
    );
  }
  assert.throws(() => loadConfig({ ...minimal, STREAM_CPU_METER: "guess" }), ConfigError);
});
