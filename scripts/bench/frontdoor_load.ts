/**
 * Benchmarks voice-frontdoor (Twilio's signed voice webhook over HTTP): handler time per request
 * in-process (performance.now around each call), then requests per second over loopback HTTP
 * against the local function server (`scripts/serve.ts`'s router) in a child process, driven by
 * `wrk` (or a keep-alive Deno client when wrk is missing) in another process. Each measurement has
 * a baseline in the same run: the same request through a handler answering a constant Response.
 * Results: docs/benchmarks.md, "voice-frontdoor".
 *
 * Run by hand (a few minutes; needs `wrk` for the HTTP part: `apt-get install -y wrk`):
 *   deno run -A scripts/bench/frontdoor_load.ts [--requests 20000] [--rounds 3]
 *     [--seconds 10] [--connections 50] [--store noop|postgres] [--client wrk|deno]
 *     [--skip-inprocess] [--skip-http]
 * `--store postgres` records each call in a fresh database beside DATABASE_URL (default
 * postgres://postgres@127.0.0.1:5432/postgres), dropped at the end.
 * @module
 */
import { createFunctionsRouter } from "../functions_router.ts";
import { createFrontdoorApp } from "../../supabase/functions/voice-frontdoor/app.ts";
import type { Store } from "../../supabase/functions/_shared/store/types.ts";
import { createStore } from "../../supabase/functions/_shared/store/create_store.ts";
import {
  BENCH_ACCOUNT_SID,
  BENCH_AUTH_TOKEN,
  BENCH_INTERNAL_SECRET,
  createBenchFrontdoorHandler,
  createConstantHandler,
  frontdoorRequest,
  signedIncomingCall,
  type SignedWebhook,
} from "./frontdoor_fixture.ts";
import { fixed, loadAverage, markdownTable, median, summarize } from "./bench_stats.ts";

const DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432/postgres";
const SCRIPT = new URL(import.meta.url).pathname;
const DENO = Deno.execPath();

interface Options {
  requests: number;
  rounds: number;
  seconds: number;
  connections: number;
  store: "noop" | "postgres";
  client: "wrk" | "deno";
  skipInprocess: boolean;
  skipHttp: boolean;
}

function flag(args: string[], name: string): string | undefined {
  const index = args.indexOf(name);
  return index === -1 ? undefined : args[index + 1];
}

function parseOptions(args: string[]): Options {
  const count = (name: string, fallback: number) => {
    const value = Number(flag(args, name) ?? fallback);
    if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a count`);
    return value;
  };
  const store = flag(args, "--store") ?? "noop";
  if (store !== "noop" && store !== "postgres") throw new Error("--store must be noop|postgres");
  const client = flag(args, "--client") ?? (hasWrk() ? "wrk" : "deno");
  if (client !== "wrk" && client !== "deno") throw new Error("--client must be wrk|deno");
  return {
    requests: count("--requests", 20_000),
    rounds: count("--rounds", 3),
    seconds: count("--seconds", 10),
    connections: count("--connections", 50),
    store,
    client,
    skipInprocess: args.includes("--skip-inprocess"),
    skipHttp: args.includes("--skip-http"),
  };
}

function hasWrk(): boolean {
  try {
    new Deno.Command("wrk", { args: ["--version"], stdout: "null", stderr: "null" }).outputSync();
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// In-process: performance.now around each handler call

type AnyHandler = (req: Request) => Response | Promise<Response>;

async function timeHandler(
  handler: AnyHandler,
  webhook: SignedWebhook,
  requests: number,
): Promise<Float64Array> {
  const samples = new Float64Array(requests);
  for (let i = 0; i < requests; i++) {
    const request = frontdoorRequest(webhook);
    const started = performance.now();
    const response = await handler(request);
    samples[i] = performance.now() - started;
    // Reading the body is the transport's work, outside the timed region.
    await response.arrayBuffer();
  }
  return samples;
}

async function benchInProcess(options: Options): Promise<void> {
  const publicBase = "https://abc.supabase.co/functions/v1";
  const webhook = signedIncomingCall(`${publicBase}/voice-frontdoor`);
  const real = createBenchFrontdoorHandler(publicBase);
  const constant = createConstantHandler();
  const check = await real(frontdoorRequest(webhook));
  if (check.status !== 200 || !(await check.text()).includes("<Stream")) {
    throw new Error("Cannot bench: the signed request was not accepted");
  }
  console.log(`\n## In-process handler time (${options.requests} requests per row and round)`);
  await timeHandler(real, webhook, 2_000);
  await timeHandler(constant, webhook, 2_000);
  const rows: Record<string, { p50: number[]; p99: number[]; mean: number[] }> = {
    baseline: { p50: [], p99: [], mean: [] },
    frontdoor: { p50: [], p99: [], mean: [] },
  };
  for (let round = 1; round <= options.rounds; round++) {
    for (const [name, handler] of [["baseline", constant], ["frontdoor", real]] as const) {
      const summary = summarize(await timeHandler(handler, webhook, options.requests));
      rows[name].p50.push(summary.p50Ms * 1000);
      rows[name].p99.push(summary.p99Ms * 1000);
      rows[name].mean.push(summary.meanMs * 1000);
      console.log(
        `round ${round} ${name.padEnd(9)} p50 ${fixed(summary.p50Ms * 1000, 1)} µs  p99 ${
          fixed(summary.p99Ms * 1000, 1)
        } µs  mean ${fixed(summary.meanMs * 1000, 1)} µs  max ${
          fixed(summary.maxMs * 1000, 0)
        } µs  (load ${loadAverage()})`,
      );
    }
  }
  const base = rows.baseline;
  const table = [["handler", "p50 µs", "p99 µs", "mean µs", "p50 vs baseline", "p99 vs baseline"]];
  for (const [name, row] of Object.entries(rows)) {
    table.push([
      name,
      fixed(median(row.p50), 1),
      fixed(median(row.p99), 1),
      fixed(median(row.mean), 1),
      `${fixed(median(row.p50) / median(base.p50), 1)}x`,
      `${fixed(median(row.p99) / median(base.p99), 1)}x`,
    ]);
  }
  console.log(`\nmedians over ${options.rounds} rounds:\n${markdownTable(table)}`);
}

// ---------------------------------------------------------------------------------------------
// HTTP: a server child process per variant, wrk (or a Deno client) in another process

/** Child process role: serve the router with one frontdoor variant until killed. */
async function serveRole(args: string[]): Promise<void> {
  const variant = flag(args, "--serve");
  const port = Number(flag(args, "--port"));
  const databaseUrl = flag(args, "--database-url") ?? "";
  const publicBase = `http://127.0.0.1:${port}/functions/v1`;
  let store: Store | null = null;
  let handler: AnyHandler;
  if (variant === "constant") {
    handler = createConstantHandler();
  } else {
    store = databaseUrl
      ? createStore({ storeAdapter: "postgres", databaseUrl })
      : ({ recordCallEvent: () => Promise.resolve({}) } as unknown as Store);
    // The real app: config from env, JSON log lines to stdout (the parent discards them),
    // recordCallEvent in the background as on Supabase (no EdgeRuntime here).
    handler = createFrontdoorApp({
      PUBLIC_FUNCTIONS_URL: publicBase,
      DATABASE_URL: databaseUrl || "postgres://unused@127.0.0.1:1/unused",
      STORE_ADAPTER: "postgres",
      TWILIO_AUTH_TOKEN: BENCH_AUTH_TOKEN,
      TWILIO_ACCOUNT_SID: BENCH_ACCOUNT_SID,
      VOICE_INTERNAL_SECRET: BENCH_INTERNAL_SECRET,
      LOG_LEVEL: "info",
    }, { store });
  }
  const server = Deno.serve({
    port,
    hostname: "127.0.0.1",
    onListen: () => console.error("listening"),
  }, createFunctionsRouter({ "voice-frontdoor": handler }));
  Deno.addSignalListener("SIGTERM", async () => {
    await server.shutdown();
    await store?.close();
    Deno.exit(0);
  });
  await server.finished;
}

async function startServer(
  variant: "constant" | "frontdoor",
  port: number,
  databaseUrl: string,
): Promise<Deno.ChildProcess> {
  const args = ["run", "-A", SCRIPT, "--serve", variant, "--port", String(port)];
  if (databaseUrl) args.push("--database-url", databaseUrl);
  const child = new Deno.Command(DENO, { args, stdout: "null", stderr: "piped" }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("listening")) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`Cannot start the ${variant} server: ${seen}`);
    seen += value;
  }
  // Keep draining stderr so the child never blocks on it.
  (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  return child;
}

async function stopServer(child: Deno.ChildProcess): Promise<void> {
  child.kill("SIGTERM");
  await child.status;
}

interface LoadResult {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

function luaString(text: string): string {
  return JSON.stringify(text); // JSON string escapes are valid Lua for this ASCII text
}

async function runWrk(
  url: string,
  webhook: SignedWebhook,
  seconds: number,
  connections: number,
): Promise<LoadResult> {
  const script = await Deno.makeTempFile({ suffix: ".lua" });
  await Deno.writeTextFile(
    script,
    [
      'wrk.method = "POST"',
      `wrk.body = ${luaString(webhook.body)}`,
      'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"',
      `wrk.headers["X-Twilio-Signature"] = ${luaString(webhook.signature)}`,
      "",
    ].join("\n"),
  );
  try {
    const output = await new Deno.Command("wrk", {
      args: ["-t1", `-c${connections}`, `-d${seconds}s`, "--latency", "-s", script, url],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(output.stdout);
    const number = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? NaN);
    const ms = (pattern: RegExp) => {
      const match = pattern.exec(text);
      if (!match) return NaN;
      const value = Number(match[1]);
      return match[2] === "us" ? value / 1000 : match[2] === "s" ? value * 1000 : value;
    };
    const non2xx = number(/Non-2xx or 3xx responses:\s+(\d+)/);
    const socketErrors = /Socket errors:.*?(\d+).*?(\d+).*?(\d+).*?(\d+)/.exec(text);
    return {
      requestsPerSecond: number(/Requests\/sec:\s+([\d.]+)/),
      p50Ms: ms(/50%\s+([\d.]+)(us|ms|s)/),
      p99Ms: ms(/99%\s+([\d.]+)(us|ms|s)/),
      errors: (Number.isFinite(non2xx) ? non2xx : 0) +
        (socketErrors ? socketErrors.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0),
    };
  } finally {
    await Deno.remove(script);
  }
}

/** The fallback load generator: keep-alive fetch from `connections` concurrent loops. */
async function runDenoClient(
  url: string,
  webhook: SignedWebhook,
  seconds: number,
  connections: number,
): Promise<LoadResult> {
  const client = Deno.createHttpClient({ poolMaxIdlePerHost: connections });
  const deadline = performance.now() + seconds * 1000;
  const latencies: number[] = [];
  let errors = 0;
  const worker = async () => {
    while (performance.now() < deadline) {
      const started = performance.now();
      const response = await fetch(url, {
        method: "POST",
        client,
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          "x-twilio-signature": webhook.signature,
        },
        body: webhook.body,
      });
      await response.arrayBuffer();
      if (response.status !== 200) errors++;
      latencies.push(performance.now() - started);
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: connections }, worker));
  const elapsedSeconds = (performance.now() - started) / 1000;
  client.close();
  const summary = summarize(latencies);
  return {
    requestsPerSecond: latencies.length / elapsedSeconds,
    p50Ms: summary.p50Ms,
    p99Ms: summary.p99Ms,
    errors,
  };
}

/** Client role (the fallback runs in its own process too, so it never shares the server's). */
async function clientRole(args: string[]): Promise<void> {
  const url = flag(args, "--client-url")!;
  const webhook = JSON.parse(flag(args, "--webhook")!) as SignedWebhook;
  const result = await runDenoClient(
    url,
    webhook,
    Number(flag(args, "--seconds")),
    Number(flag(args, "--connections")),
  );
  console.log(JSON.stringify(result));
}

async function runLoad(
  options: Options,
  url: string,
  webhook: SignedWebhook,
  seconds: number,
): Promise<LoadResult> {
  if (options.client === "wrk") return runWrk(url, webhook, seconds, options.connections);
  const output = await new Deno.Command(DENO, {
    args: [
      "run",
      "-A",
      SCRIPT,
      "--client-url",
      url,
      "--webhook",
      JSON.stringify(webhook),
      "--seconds",
      String(seconds),
      "--connections",
      String(options.connections),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  return JSON.parse(new TextDecoder().decode(output.stdout)) as LoadResult;
}

async function benchHttp(options: Options): Promise<void> {
  let databaseUrl = "";
  let dropDatabase: (() => Promise<void>) | null = null;
  if (options.store === "postgres") {
    const { createTestDatabase } = await import("../../tests/support/test_db.ts");
    const db = await createTestDatabase({
      seed: true,
      serverUrl: Deno.env.get("DATABASE_URL") ?? DEFAULT_SERVER_URL,
    });
    databaseUrl = db.url;
    dropDatabase = db.drop;
  }
  const port = 18_000 + Math.floor(Math.random() * 2_000);
  const url = `http://127.0.0.1:${port}/functions/v1/voice-frontdoor`;
  const webhook = signedIncomingCall(url);
  console.log(
    `\n## HTTP on loopback: ${options.client}, ${options.connections} connections, ${options.seconds} s per run, store ${options.store}`,
  );
  const results: Record<"constant" | "frontdoor", LoadResult[]> = { constant: [], frontdoor: [] };
  try {
    for (let round = 1; round <= options.rounds; round++) {
      for (const variant of ["constant", "frontdoor"] as const) {
        const child = await startServer(variant, port, databaseUrl);
        try {
          const probe = await fetch(url, {
            method: "POST",
            headers: {
              "content-type": "application/x-www-form-urlencoded",
              "x-twilio-signature": webhook.signature,
            },
            body: webhook.body,
          });
          const body = await probe.text();
          if (probe.status !== 200 || (variant === "frontdoor" && !body.includes("<Stream"))) {
            throw new Error(`Cannot bench: the ${variant} server answered ${probe.status}`);
          }
          await runLoad(options, url, webhook, 2); // warm-up (JIT, connections)
          const result = await runLoad(options, url, webhook, options.seconds);
          results[variant].push(result);
          console.log(
            `round ${round} ${variant.padEnd(9)} ${fixed(result.requestsPerSecond, 0)} req/s  p50 ${
              fixed(result.p50Ms)
            } ms  p99 ${fixed(result.p99Ms)} ms  errors ${result.errors}  (load ${loadAverage()})`,
          );
        } finally {
          await stopServer(child);
        }
      }
    }
  } finally {
    await dropDatabase?.();
  }
  const baseRps = median(results.constant.map((result) => result.requestsPerSecond));
  const table = [["server", "req/s", "p50 ms", "p99 ms", "req/s vs baseline"]];
  for (const [name, list] of Object.entries(results)) {
    const rps = median(list.map((result) => result.requestsPerSecond));
    table.push([
      name === "constant"
        ? "baseline (constant Response)"
        : `voice-frontdoor (store ${options.store})`,
      fixed(rps, 0),
      fixed(median(list.map((result) => result.p50Ms))),
      fixed(median(list.map((result) => result.p99Ms))),
      `${fixed(rps / baseRps)}x`,
    ]);
  }
  console.log(`\nmedians over ${options.rounds} rounds:\n${markdownTable(table)}`);
}

if (import.meta.main) {
  const args = Deno.args;
  if (args.includes("--serve")) {
    await serveRole(args);
  } else if (args.includes("--client-url")) {
    await clientRole(args);
  } else {
    const options = parseOptions(args);
    console.log(
      `voice-frontdoor bench, ${
        new Date().toISOString()
      }, Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores, load ${loadAverage()}`,
    );
    if (!options.skipInprocess) await benchInProcess(options);
    if (!options.skipHttp) await benchHttp(options);
  }
}
