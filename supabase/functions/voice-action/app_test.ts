import assert from "node:assert/strict";
import { createVoiceActionApp } from "./app.ts";

const ENV = {
  SUPABASE_URL: "https://abc.supabase.co",
  DATABASE_URL: "postgres://postgres@127.0.0.1:1/none",
  STORE_ADAPTER: "postgres",
  TWILIO_AUTH_TOKEN: "t".repeat(32),
  TWILIO_ACCOUNT_SID: "AC" + "1".repeat(32),
  VOICE_INTERNAL_SECRET: "s".repeat(40),
  LOG_LEVEL: "error",
};

Deno.test("createVoiceActionApp() boots without touching the network", async () => {
  const handler = createVoiceActionApp(ENV);
  const response = await handler(
    new Request("http://edge-runtime.supabase.internal:9000/voice-action?route=nope", {
      method: "POST",
      body: "x=1",
    }),
  );
  assert.equal(response.status, 400);
});

Deno.test("createVoiceActionApp() answers 503 when TWILIO_ACCOUNT_SID is missing", async () => {
  const lines: string[] = [];
  const original = console.log;
  console.log = (line: string) => lines.push(line);
  try {
    const handler = createVoiceActionApp({ ...ENV, TWILIO_ACCOUNT_SID: "" });
    const response = await handler(
      new Request("http://localhost/voice-action", { method: "POST" }),
    );
    assert.equal(response.status, 503);
  } finally {
    console.log = original;
  }
  assert.ok(
    lines.some((line) => line.includes("config_invalid") && line.includes("TWILIO_ACCOUNT_SID")),
  );
});
