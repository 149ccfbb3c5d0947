import assert from "node:assert/strict";
import type { EdgeLimits } from "./limits.ts";
import { type EdgeSupervisor, rewriteRequestHead, startEdgeSupervisor } from "./supervisor.ts";
import type { TestHandlerKind } from "./_test_handlers.ts";
import { currentThreadId } from "./thread_stat.ts";
import { connectNoDelayWebSocket } from "../../supabase/functions/voice-stream/nodelay_websocket.ts";

/** Small limits, so that every limit is reached within a test. */
const LIMITS: EdgeLimits = {
  wallClockMs: 2_000,
  cpuSoftMs: 200,
  cpuHardMs: 300,
  beforeunloadWallClockPct: 75,
  beforeunloadCpuPct: 50,
  pollIntervalMs: 10,
};
/** One `/proc` tick, ms. */
const TICK_MS = 10;

const HANDLERS_URL = new URL("./_test_handlers.ts", import.meta.url).href;

function startTestSupervisor(limits: EdgeLimits = LIMITS) {
  const lines: string[] = [];
  const supervisor = startEdgeSupervisor({
    limits,
    logSink: (line) => lines.push(line),
    route: (pathname) => {
      const kind = /^\/test\/([a-z_]+)$/.exec(pathname)?.[1] as TestHandlerKind | undefined;
      if (!kind) return null;
      return {
        name: kind,
        moduleUrl: HANDLERS_URL,
        exportName: "createTestHandler",
        env: {},
        args: { kind },
      };
    },
  });
  const logs = (event?: string) =>
    lines.map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((entry) => !event || entry.event === event);
  return { supervisor, logs };
}

async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > until) throw new Error("Condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Opens a WebSocket through the supervisor; records messages and the close. The client is the
 * bridge's RFC 6455 client (TCP_NODELAY), which reports a connection lost without a close frame
 * as 1006 (Deno's `WebSocket` reports code 0 there).
 */
async function openSocket(supervisor: EdgeSupervisor, kind: TestHandlerKind) {
  const socket = connectNoDelayWebSocket(`ws://127.0.0.1:${supervisor.port}/test/${kind}`);
  const messages: unknown[] = [];
  const closed = Promise.withResolvers<CloseEvent>();
  socket.addEventListener("message", (event) => messages.push(JSON.parse(event.data)));
  socket.addEventListener("close", (event) => closed.resolve(event));
  socket.addEventListener("error", () => {});
  await new Promise((resolve, reject) => {
    socket.addEventListener("open", () => resolve(undefined));
    closed.promise.then(reject);
  });
  return { socket, messages, closed: closed.promise, openedAtMs: performance.now() };
}

Deno.test("startEdgeSupervisor() serves a webhook in a worker thread and tears it down", async () => {
  const { supervisor, logs } = startTestSupervisor();
  try {
    const response = await fetch(`${supervisor.url}/test/hello?x=1`, {
      method: "POST",
      body: "a=b",
    });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("connection"), "close");
    const body = await response.json();
    assert.equal(body.path, "/test/hello");
    assert.equal(body.edgeRuntime, true);
    assert.equal(typeof body.tid, "number");
    assert.notEqual(body.tid, currentThreadId());
    assert.notEqual(body.tid, Deno.pid);
    await waitFor(() => supervisor.workers().length === 0);
    const [terminated] = logs("worker_terminated");
    assert.equal(terminated.fn, "edge-runtime");
    assert.equal(terminated.reason, "TerminationRequested");
    assert.equal(terminated.requestInFlight, false);
    assert.deepEqual(logs("beforeunload_dispatched").map((entry) => entry.reason), ["early_drop"]);
    assert.equal(logs("worker_exited").length, 1);
  } finally {
    await supervisor.close();
  }
});

Deno.test("startEdgeSupervisor() keeps a worker until its waitUntil promises settle", async () => {
  const { supervisor, logs } = startTestSupervisor();
  try {
    const started = performance.now();
    const response = await fetch(`${supervisor.url}/test/background`, { method: "POST" });
    assert.equal(response.status, 202);
    await response.body?.cancel();
    await waitFor(() => logs("worker_terminated").length === 1);
    assert.ok(performance.now() - started >= 300, "terminated before the background task ended");
  } finally {
    await supervisor.close();
  }
});

Deno.test("startEdgeSupervisor() answers 404 for an unknown path without a worker", async () => {
  const { supervisor, logs } = startTestSupervisor();
  try {
    const response = await fetch(`${supervisor.url}/nothing`);
    assert.equal(response.status, 404);
    assert.deepEqual(await response.json(), { msg: "Function not found" });
    assert.equal(logs("worker_started").length, 0);
  } finally {
    await supervisor.close();
  }
});

Deno.test("startEdgeSupervisor() sends beforeunload cpu, then kills a busy worker at the hard CPU limit", async () => {
  const { supervisor, logs } = startTestSupervisor();
  try {
    const { messages, closed } = await openSocket(supervisor, "busy_socket");
    const close = await closed;
    assert.equal(close.code, 1006, "the client sees the connection dropped, no close frame");
    assert.equal(close.wasClean, false);
    assert.deepEqual(messages, [{ beforeunload: "cpu" }]);
    const [dispatched] = logs("beforeunload_dispatched");
    assert.equal(dispatched.reason, "cpu");
    assert.ok((dispatched.cpuMs as number) >= 150 && (dispatched.cpuMs as number) < 200);
    assert.equal(logs("worker_retired")[0].reason, "cpu_soft_limit");
    const [terminated] = logs("worker_terminated");
    assert.equal(terminated.reason, "CPUTime");
    assert.equal(terminated.requestInFlight, true);
    const cpuMs = terminated.cpuMs as number;
    assert.ok(cpuMs >= 300 && cpuMs <= 300 + 3 * TICK_MS, `terminated at ${cpuMs} ms of CPU`);
    await waitFor(() => logs("worker_exited").length === 1);
  } finally {
    await supervisor.close();
  }
});

Deno.test("startEdgeSupervisor() kills a worker idle on a WebSocket at the wall clock", async () => {
  const { supervisor, logs } = startTestSupervisor();
  try {
    const { messages, closed, openedAtMs } = await openSocket(supervisor, "idle_socket");
    const close = await closed;
    const closedAfterMs = performance.now() - openedAtMs;
    assert.equal(close.code, 1006);
    assert.equal(close.wasClean, false);
    assert.deepEqual(messages, [{ beforeunload: "wall_clock" }]);
    assert.ok(closedAfterMs >= 1_800 && closedAfterMs < 2_300, `closed after ${closedAfterMs} ms`);
    assert.equal(logs("worker_retired")[0].reason, "wall_clock_warning");
    const [terminated] = logs("worker_terminated");
    assert.equal(terminated.reason, "WallClockTime");
    assert.ok((terminated.wallMs as number) >= 2_000);
    assert.ok((terminated.cpuMs as number) < 100, "an idle socket costs little CPU");
  } finally {
    await supervisor.close();
  }
});

Deno.test("startEdgeSupervisor() bridges WebSocket messages both ways and ends with the socket", async () => {
  const { supervisor, logs } = startTestSupervisor();
  try {
    const { socket, messages, closed } = await openSocket(supervisor, "echo_socket");
    for (let i = 0; i < 3; i++) socket.send(JSON.stringify({ i }));
    await waitFor(() => messages.length === 3);
    assert.deepEqual(messages, [{ i: 0 }, { i: 1 }, { i: 2 }]);
    socket.close(1000, "done");
    const close = await closed;
    assert.equal(close.code, 1000);
    assert.equal(close.wasClean, true);
    await waitFor(() => supervisor.workers().length === 0);
    assert.equal(logs("worker_terminated")[0].reason, "TerminationRequested");
  } finally {
    await supervisor.close();
  }
});

Deno.test("rewriteRequestHead() asks the worker to close after one response, keeps upgrades", () => {
  const encode = (text: string) => new TextEncoder().encode(text);
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  const post = rewriteRequestHead(
    encode("POST /f/v?a=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n\r\n"),
    encode("a=b"),
  );
  assert.equal(post?.pathname, "/f/v");
  assert.equal(post?.upgrade, false);
  assert.equal(
    decode(post!.forward),
    "POST /f/v?a=1 HTTP/1.1\r\nHost: x\r\nconnection: close\r\n\r\na=b",
  );
  const upgradeHead =
    "GET /s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
  const upgrade = rewriteRequestHead(encode(upgradeHead), new Uint8Array());
  assert.equal(upgrade?.upgrade, true);
  assert.equal(decode(upgrade!.forward), upgradeHead);
  assert.equal(rewriteRequestHead(encode("nonsense\r\n\r\n"), new Uint8Array()), null);
});
