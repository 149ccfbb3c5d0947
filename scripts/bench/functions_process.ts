/**
 * The whole call path with the three functions in a process of their own: this process runs the
 * test database, the strict Twilio and OpenAI Realtime doubles and the callers; a child Deno
 * process serves voice-frontdoor, voice-stream and voice-action behind the local router, as
 * `tests/support/call_stack.ts` does in one process. For load runs, where one JavaScript
 * thread cannot carry the functions and the load at once, and to read the functions' own CPU
 * from `/proc/<pid>/stat`.
 *
 * The child is this module run as a script (`--role functions`): it counts the requests it
 * answered (by status, and any a handler threw) and prints the counts as one JSON line when it
 * gets SIGTERM.
 * @module
 */
import { createFunctionsRouter, type FunctionHandlers } from "../functions_router.ts";
import { localFunctionsEnv } from "../local_stack.ts";
import { createFrontdoorApp } from "../../supabase/functions/voice-frontdoor/app.ts";
import { createStreamApp } from "../../supabase/functions/voice-stream/app.ts";
import { createVoiceActionApp } from "../../supabase/functions/voice-action/app.ts";
import { createStore } from "../../supabase/functions/_shared/store/create_store.ts";
import { createTestDatabase, type TestDatabase } from "../../tests/support/test_db.ts";
import {
  type OpenAIRealtimeDouble,
  type OpenAIRealtimeDoubleOptions,
  startOpenAIRealtimeDouble,
} from "../../tests/doubles/openai_realtime_double.ts";
import type { TwilioRestDouble } from "../../tests/doubles/twilio_rest_double.ts";
import {
  type PlaceCallOptions,
  startCall,
  type TwilioCallHandle,
} from "../../tests/doubles/twilio_call_double.ts";
import {
  doublesEnv,
  localCallOptions,
  startLocalRestDouble,
} from "../../tests/support/call_stack.ts";

/** What the functions process answered. */
export interface FunctionRequestCounts {
  requests: number;
  /** Requests whose handler threw or rejected. */
  thrown: number;
  /** Requests answered with a 5xx. */
  serverErrors: number;
  /** Log lines the functions wrote, by level. */
  logLines: Record<string, number>;
}

/** The stack with its functions in a child process. */
export interface SplitStack {
  readonly db: TestDatabase;
  readonly openai: OpenAIRealtimeDouble;
  readonly rest: TwilioRestDouble;
  /** Process id of the functions process. */
  readonly functionsPid: number;
  startCall(options: Partial<PlaceCallOptions> & { from: string }): TwilioCallHandle;
  /** Stops the functions process and returns what it counted. */
  stopFunctions(): Promise<FunctionRequestCounts>;
  /** Stops the doubles and drops the database. */
  stop(): Promise<void>;
}

/** Options of `startSplitStack`. */
export interface SplitStackOptions {
  openai?: OpenAIRealtimeDoubleOptions;
  /** Function settings over the defaults. */
  env?: Record<string, string>;
  /** Pool size of the functions' store. */
  maxDbConnections: number;
}

const SCRIPT = new URL(import.meta.url).pathname;

/** Starts the database and doubles here and the functions in a child process. */
export async function startSplitStack(options: SplitStackOptions): Promise<SplitStack> {
  const db = await createTestDatabase({ seed: true });
  const openai = await startOpenAIRealtimeDouble(options.openai ?? {});
  const rest = startLocalRestDouble();
  const port = freePort();
  const functionsUrl = `http://127.0.0.1:${port}/functions/v1`;
  const env = localFunctionsEnv({
    functionsUrl,
    databaseUrl: db.url,
    env: { ...doublesEnv(rest, openai), LOG_LEVEL: "info", ...options.env },
  });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      SCRIPT,
      "--role",
      "functions",
      "--port",
      String(port),
      "--max-db-connections",
      String(options.maxDbConnections),
    ],
    env: { FUNCTIONS_ENV_JSON: JSON.stringify(env) },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = readLines(child.stdout);
  const first = await lines.next();
  if (first.done || first.value !== "listening") {
    const stderr = await new Response(child.stderr).text();
    throw new Error(`functions process did not start: ${first.value ?? ""} ${stderr}`);
  }
  void child.stderr.pipeTo(Deno.stderr.writable, { preventClose: true }).catch(() => {});

  const callOptions = (overrides: Partial<PlaceCallOptions> & { from: string }) =>
    localCallOptions(functionsUrl, rest, { pacing: "realtime", ...overrides });
  let counts: Promise<FunctionRequestCounts> | null = null;
  const stopFunctions = () => {
    counts ??= (async () => {
      child.kill("SIGTERM");
      const line = await lines.next();
      await child.status;
      if (line.done) throw new Error("functions process exited without its counts");
      return JSON.parse(line.value) as FunctionRequestCounts;
    })();
    return counts;
  };
  return {
    db,
    openai,
    rest,
    functionsPid: child.pid,
    startCall: (overrides) => startCall(callOptions(overrides)),
    stopFunctions,
    async stop() {
      await stopFunctions().catch(() => {});
      await rest.settled();
      await openai.close();
      await rest.close();
      await db.drop();
    },
  };
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffered = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    let end;
    while ((end = buffered.indexOf("\n")) !== -1) {
      yield buffered.slice(0, end);
      buffered = buffered.slice(end + 1);
    }
  }
  if (buffered) yield buffered;
}

/** Child role: serve the three functions until SIGTERM, then print the request counts. */
async function functionsRole(args: string[]): Promise<void> {
  const flag = (name: string) => args[args.indexOf(name) + 1];
  const env = JSON.parse(Deno.env.get("FUNCTIONS_ENV_JSON") ?? "{}") as Record<string, string>;
  const store = createStore({
    storeAdapter: "postgres",
    databaseUrl: env.DATABASE_URL,
    postgres: { maxConnections: Number(flag("--max-db-connections")) },
  });
  const counts: FunctionRequestCounts = { requests: 0, thrown: 0, serverErrors: 0, logLines: {} };
  // Log lines are counted by level, not kept: at hundreds of calls they would fill the memory.
  const logSink = (line: string) => {
    const level = /"level":"(\w+)"/.exec(line)?.[1] ?? "unknown";
    counts.logLines[level] = (counts.logLines[level] ?? 0) + 1;
  };
  const overrides = { logSink, store };
  const handlers: FunctionHandlers = {
    "voice-frontdoor": createFrontdoorApp(env, overrides),
    "voice-stream": createStreamApp(env, overrides),
    "voice-action": createVoiceActionApp(env, overrides),
  };
  const router = createFunctionsRouter(handlers);
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: Number(flag("--port")), onListen: () => {} },
    async (req) => {
      counts.requests++;
      try {
        const response = await router(req);
        if (response.status >= 500) counts.serverErrors++;
        return response;
      } catch (error) {
        counts.thrown++;
        throw error;
      }
    },
  );
  console.log("listening");
  Deno.addSignalListener("SIGTERM", async () => {
    await Promise.race([
      server.shutdown().then(() => store.close()),
      new Promise((resolve) => setTimeout(resolve, 5_000)),
    ]);
    console.log(JSON.stringify(counts));
    Deno.exit(0);
  });
  await server.finished;
}

if (import.meta.main && Deno.args.includes("--role")) await functionsRole(Deno.args);
