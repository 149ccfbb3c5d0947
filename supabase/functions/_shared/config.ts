/**
 * Configuration of the three functions, read once from the environment and validated with zod.
 * A bad configuration fails with one message naming every bad variable, never its value.
 * @module
 */
import { z } from "zod";

/** OpenAI's production Realtime endpoint (GA). */
export const DEFAULT_OPENAI_REALTIME_URL = "wss://api.openai.com/v1/realtime";
/** Twilio's production REST base. */
export const DEFAULT_TWILIO_API_BASE_URL = "https://api.twilio.com";
/**
 * Longest call when the org sets none: 30 minutes. Streams hand the call over to a fresh worker
 * before the platform's wall clock (`STREAM_WALL_CLOCK_SECONDS`), so this is a business limit,
 * counted from the call's first stream across every handover.
 */
export const DEFAULT_MAX_CALL_SECONDS = 1800;
/** A worker's wall clock on Supabase's Free plan, s (400 on paid plans). */
export const DEFAULT_STREAM_WALL_CLOCK_SECONDS = 150;
/** CPU time a worker may use per request on Supabase, ms. */
export const DEFAULT_STREAM_CPU_BUDGET_MS = 2000;

const url = (schemes: string[]) =>
  z.string().trim().refine((value) => {
    try {
      return schemes.includes(new URL(value).protocol);
    } catch {
      return false;
    }
  }, `must be a ${schemes.join(" or ")} URL`);

const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);
const optionalText = z.string().trim().min(1).optional();

const envSchema = z.object({
  SUPABASE_URL: url(["http:", "https:"]).optional(),
  PUBLIC_FUNCTIONS_URL: url(["http:", "https:"]).optional(),
  SUPABASE_SERVICE_ROLE_KEY: optionalText,
  SUPABASE_DB_URL: url(["postgres:", "postgresql:"]).optional(),
  DATABASE_URL: url(["postgres:", "postgresql:"]).optional(),
  STORE_ADAPTER: z.enum(["postgres", "supabase"]).optional(),
  TWILIO_AUTH_TOKEN: z.string().trim().min(1, "is required"),
  TWILIO_ACCOUNT_SID: z.string().trim().regex(/^AC[0-9a-fA-F]{32}$/, "must look like AC + 32 hex")
    .optional(),
  TWILIO_API_BASE_URL: url(["http:", "https:"]).default(DEFAULT_TWILIO_API_BASE_URL),
  OPENAI_API_KEY: optionalText,
  OPENAI_REALTIME_URL: url(["ws:", "wss:"]).default(DEFAULT_OPENAI_REALTIME_URL),
  OPENAI_REALTIME_MODEL: z.string().trim().min(1).default("gpt-realtime"),
  OPENAI_VOICE: z.string().trim().min(1).default("marin"),
  OPENAI_TRANSCRIPTION_MODEL: z.string().trim().min(1).default("gpt-4o-mini-transcribe"),
  VOICE_INTERNAL_SECRET: z.string().min(32, "must be at least 32 characters"),
  AUDIO_PIPELINE: z.enum(["passthrough", "pcm24k"]).default("passthrough"),
  REALTIME_SOCKET: z.enum(["nodelay", "websocket"]).default("nodelay"),
  LOOKUP_BUDGET_MS: positiveInt(150),
  TOOL_TIMEOUT_MS: positiveInt(4000),
  STREAM_TOKEN_TTL_SECONDS: positiveInt(60),
  MAX_CALL_SECONDS: positiveInt(DEFAULT_MAX_CALL_SECONDS),
  STREAM_WALL_CLOCK_SECONDS: positiveInt(DEFAULT_STREAM_WALL_CLOCK_SECONDS),
  STREAM_CPU_BUDGET_MS: positiveInt(DEFAULT_STREAM_CPU_BUDGET_MS),
  STREAM_CPU_METER: z.enum(["auto", "thread", "estimate"]).default("auto"),
  CALLER_AUDIO_APPEND_MS: z.coerce.number().int().min(20).max(200).multipleOf(20).default(20),
  LOG_LEVEL: z.enum(["debug", "info", "warn", "error"]).default("info"),
});

/** Settings that only some functions need; each function names its own. */
export type RequirableSetting = "OPENAI_API_KEY" | "TWILIO_ACCOUNT_SID";

/** Validated configuration shared by the three functions. */
export interface Config {
  /** Public base every signature is checked against and every callback URL is built from. */
  publicFunctionsUrl: string;
  supabaseUrl: string | null;
  supabaseServiceRoleKey: string | null;
  databaseUrl: string | null;
  storeAdapter: "postgres" | "supabase";
  twilioAuthToken: string;
  twilioAccountSid: string | null;
  twilioApiBaseUrl: string;
  openaiApiKey: string | null;
  openaiRealtimeUrl: string;
  openaiRealtimeModel: string;
  openaiVoice: string;
  openaiTranscriptionModel: string;
  internalSecret: string;
  audioPipeline: "passthrough" | "pcm24k";
  /**
   * The model socket: `nodelay` (our RFC 6455 client on a TCP_NODELAY socket, default) or
   * `websocket` (the runtime's `WebSocket`, whose Nagle stalls add ~40 ms to a call's start).
   */
  realtimeSocket: "nodelay" | "websocket";
  lookupBudgetMs: number;
  toolTimeoutMs: number;
  streamTokenTtlSeconds: number;
  /** Longest call, s, across handovers, when the org sets none. */
  maxCallSeconds: number;
  /** Wall clock of one stream's worker, s, from the WebSocket upgrade (150 Free, 400 paid). */
  streamWallClockSeconds: number;
  /**
   * CPU the platform allows a worker per request, ms, as the stream's CPU meter counts it (the
   * worker thread's own time where readable, else an estimate that never undercounts).
   */
  streamCpuBudgetMs: number;
  /** How a stream measures that CPU: `auto` (thread time in a worker), `thread`, `estimate`. */
  streamCpuMeter: "auto" | "thread" | "estimate";
  /**
   * Caller audio per append to the model, ms: 20 sends every Twilio frame at once; more saves
   * sends (worker CPU) for a delay of up to that much on every frame but the last of a batch.
   */
  callerAudioAppendMs: number;
  logLevel: "debug" | "info" | "warn" | "error";
}

/** Thrown by `loadConfig`; the message names every bad variable and never a value. */
export class ConfigError extends Error {
  constructor(readonly variables: string[], details: string[]) {
    super(`Invalid configuration: ${details.join("; ")}`);
    this.name = "ConfigError";
  }
}

/** A source of environment variables: `Deno.env.toObject()` in production, a record in tests. */
export type Env = Record<string, string | undefined>;

function stripTrailingSlash(value: string): string {
  return value.replace(/\/+$/, "");
}

/**
 * Reads and validates the configuration.
 * @param env the environment (empty strings count as unset)
 * @param options.require settings this function cannot run without
 * @throws ConfigError naming every missing or malformed variable
 */
export function loadConfig(env: Env, options: { require?: RequirableSetting[] } = {}): Config {
  const present: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value.trim() !== "") present[key] = value;
  }
  const problems = new Map<string, string>();
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0]);
      // Report "is required" for absent keys; otherwise a value-free description.
      const reason = present[name] === undefined ? "is required" : describeIssue(issue);
      if (!problems.has(name)) problems.set(name, reason);
    }
  }
  const data = parsed.success ? parsed.data : null;
  for (const name of options.require ?? []) {
    if (present[name] === undefined && !problems.has(name)) problems.set(name, "is required");
  }
  if (data && !data.PUBLIC_FUNCTIONS_URL && !data.SUPABASE_URL) {
    problems.set("PUBLIC_FUNCTIONS_URL", "is required when SUPABASE_URL is not set");
  }
  const databaseUrl = data ? (data.DATABASE_URL ?? data.SUPABASE_DB_URL ?? null) : null;
  const storeAdapter = data?.STORE_ADAPTER ??
    (data?.SUPABASE_SERVICE_ROLE_KEY && data?.SUPABASE_URL ? "supabase" : "postgres");
  if (data && storeAdapter === "postgres" && !databaseUrl) {
    problems.set(
      "DATABASE_URL",
      "is required (or SUPABASE_DB_URL, or SUPABASE_URL with SUPABASE_SERVICE_ROLE_KEY)",
    );
  }
  if (data && storeAdapter === "supabase") {
    if (!data.SUPABASE_URL) problems.set("SUPABASE_URL", "is required by STORE_ADAPTER=supabase");
    if (!data.SUPABASE_SERVICE_ROLE_KEY) {
      problems.set("SUPABASE_SERVICE_ROLE_KEY", "is required by STORE_ADAPTER=supabase");
    }
  }
  if (problems.size > 0 || !data) {
    const names = [...problems.keys()].sort();
    throw new ConfigError(names, names.map((name) => `${name} ${problems.get(name)}`));
  }
  const publicFunctionsUrl = stripTrailingSlash(
    data.PUBLIC_FUNCTIONS_URL ?? `${stripTrailingSlash(data.SUPABASE_URL!)}/functions/v1`,
  );
  return {
    publicFunctionsUrl,
    supabaseUrl: data.SUPABASE_URL ? stripTrailingSlash(data.SUPABASE_URL) : null,
    supabaseServiceRoleKey: data.SUPABASE_SERVICE_ROLE_KEY ?? null,
    databaseUrl,
    storeAdapter,
    twilioAuthToken: data.TWILIO_AUTH_TOKEN,
    twilioAccountSid: data.TWILIO_ACCOUNT_SID ?? null,
    twilioApiBaseUrl: stripTrailingSlash(data.TWILIO_API_BASE_URL),
    openaiApiKey: data.OPENAI_API_KEY ?? null,
    openaiRealtimeUrl: data.OPENAI_REALTIME_URL,
    openaiRealtimeModel: data.OPENAI_REALTIME_MODEL,
    openaiVoice: data.OPENAI_VOICE,
    openaiTranscriptionModel: data.OPENAI_TRANSCRIPTION_MODEL,
    internalSecret: data.VOICE_INTERNAL_SECRET,
    audioPipeline: data.AUDIO_PIPELINE,
    realtimeSocket: data.REALTIME_SOCKET,
    lookupBudgetMs: data.LOOKUP_BUDGET_MS,
    toolTimeoutMs: data.TOOL_TIMEOUT_MS,
    streamTokenTtlSeconds: data.STREAM_TOKEN_TTL_SECONDS,
    maxCallSeconds: data.MAX_CALL_SECONDS,
    streamWallClockSeconds: data.STREAM_WALL_CLOCK_SECONDS,
    streamCpuBudgetMs: data.STREAM_CPU_BUDGET_MS,
    streamCpuMeter: data.STREAM_CPU_METER,
    callerAudioAppendMs: data.CALLER_AUDIO_APPEND_MS,
    logLevel: data.LOG_LEVEL,
  };
}

function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case "invalid_value":
      return `must be one of ${issue.values.map(String).join(", ")}`;
    case "too_small":
      return issue.message.startsWith("must") ? issue.message : "is too short";
    case "invalid_type":
      return "must be a number";
    case "too_big":
      return "is too large";
    default:
      // Our custom messages ("must be a wss: URL") carry no value.
      return issue.message.startsWith("must") ? issue.message : "is malformed";
  }
}

/** The public URL of one of the three functions, as Twilio calls it. */
export function functionUrl(
  config: Pick<Config, "publicFunctionsUrl">,
  name: "voice-frontdoor" | "voice-stream" | "voice-action",
): string {
  return `${config.publicFunctionsUrl}/${name}`;
}

/** The public `wss://` URL of voice-stream (Twilio requires `wss:` in `<Stream url>`). */
export function streamUrl(config: Pick<Config, "publicFunctionsUrl">): string {
  return functionUrl(config, "voice-stream").replace(/^http(s?):/, "wss:");
}
