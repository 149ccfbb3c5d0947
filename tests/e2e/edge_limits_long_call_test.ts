/**
 * Long calls on the local edge runtime (scripts/edge_runtime/) with low limits: the call
 * outlives many workers, each stream handing over before its worker's limit (by the CPU its
 * worker thread used, or by the wall clock), and no worker is ever ended by a limit.
 * @module
 */
import assert from "node:assert/strict";
import type { EdgeLimits } from "../../scripts/edge_runtime/limits.ts";
import { JANE_DOE_NUMBER, startCallStack } from "../support/call_stack.ts";
import { LONG_CALL_GREETING, longCall } from "./scenarios.ts";

/** The runtime's limits of one run; the functions' stream budgets are set to the same. */
function limits(wallClockMs: number, cpuMs: number): EdgeLimits {
  return {
    wallClockMs,
    cpuSoftMs: cpuMs,
    cpuHardMs: cpuMs,
    beforeunloadWallClockPct: null,
    beforeunloadCpuPct: null,
    pollIntervalMs: 20,
  };
}

/**
 * Places one long call (`callerTurns` exchanges) on the local edge runtime under `runtime` limits
 * and checks what must hold whatever the limits: the call runs to the assistant's goodbye, no
 * worker is ended by a limit, no stream outlives its worker's budget, the line is never without a
 * stream for 1 s, every turn is stored once and the greeting is said once. Returns the handovers.
 */
async function longCallOnEdgeRuntime(
  runtime: EdgeLimits,
  callerTurns: number,
): Promise<{ durationMs: number; handovers: Record<string, unknown>[] }> {
  const conversation = longCall({ callerTurns });
  const e2e = await startCallStack({
    openai: { scenario: conversation.scenario, speedFactor: 8 },
    edgeRuntime: runtime,
    env: {
      STREAM_WALL_CLOCK_SECONDS: String(runtime.wallClockMs / 1000),
      STREAM_CPU_BUDGET_MS: String(runtime.cpuHardMs),
    },
  });
  try {
    const call = await e2e.placeCall({
      from: JANE_DOE_NUMBER,
      audio: conversation.callerScript,
      pacing: "realtime",
      maxCallMs: 400_000,
    });
    const handovers = e2e.logs("handover_started", "voice-stream");
    const streamWorkers = e2e.logs("worker_terminated", "edge-runtime")
      .filter((entry) => entry.name === "voice-stream");
    console.log(JSON.stringify({
      startCpu: e2e.logs("call_started", "voice-stream").map((e) => e.startCpuMs),
      durationMs: call.durationMs,
      streams: call.streams.length,
      handovers: handovers.map((entry) => [entry.elapsedMs, entry.cpuMs, entry.estimatedCpuMs]),
      workers: streamWorkers.map((entry) => [entry.reason, entry.cpuMs, entry.wallMs]),
    }));

    assert.deepEqual(call.protocolErrors, []);
    assert.equal(call.endReason, "twiml-hangup", "the assistant ended the call");
    assert.deepEqual(call.says, [], "no apology: no stream was lost");
    const killed = e2e.logs("worker_terminated", "edge-runtime").filter((entry) =>
      entry.reason === "CPUTime" || entry.reason === "WallClockTime"
    );
    assert.deepEqual(killed, [], "no worker was ended by a limit");
    for (const worker of streamWorkers) {
      assert.ok(Number(worker.cpuMs) < runtime.cpuHardMs, `worker CPU ${worker.cpuMs} ms`);
      assert.ok(Number(worker.wallMs) < runtime.wallClockMs, `worker wall ${worker.wallMs} ms`);
    }
    assert.equal(handovers.length, call.streams.length - 1);
    assert.ok(handovers.every((entry) => entry.cpuMeter === "thread"), "CPU read in the worker");
    for (let i = 1; i < call.streams.length; i++) {
      const gapMs = call.streams[i].openedAtMs! - call.streams[i - 1].endedAtMs!;
      assert.ok(gapMs < 1000, `no stream for ${gapMs} ms after stream ${i}`);
    }
    const turns = await e2e.db.sql<{ sequence: number; text: string }[]>`
      select t.sequence, t.text from public.call_turns t join public.calls c on c.id = t.call_id
      where c.call_sid = ${call.callSid} order by t.sequence`;
    assert.deepEqual(turns.map((turn) => turn.sequence), turns.map((_, index) => index));
    const callerLines = turns.filter((turn) => /^Caller line \d+\.$/.test(turn.text));
    assert.equal(callerLines.length, conversation.callerLines());
    assert.equal(new Set(callerLines.map((turn) => turn.text)).size, callerLines.length);
    assert.equal(turns.filter((turn) => turn.text === LONG_CALL_GREETING).length, 1);
    return { durationMs: call.durationMs!, handovers };
  } finally {
    await e2e.stop();
  }
}

Deno.test({
  name: "a 3-minute call on 600 ms-CPU, 60 s workers hands over on CPU and never loses its line",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // A local worker has used 110-330 ms of its thread's CPU before its stream starts (a fresh
    // isolate loading unbundled TypeScript; `startCpuMs` in `call_started`), and the thread meter
    // counts it as the platform's per-thread timer would. With 400 ms a stream kept 70-230 ms of
    // its own, and a slow boot (over the 80% mark) handed over at once, again and again.
    const runtime = limits(60_000, 600);
    const { durationMs, handovers } = await longCallOnEdgeRuntime(runtime, 56);
    assert.ok(durationMs >= 180_000, `the call lasted ${durationMs} ms`);
    assert.ok(handovers.length >= 5, `handovers: ${handovers.length}`);
    assert.ok(
      handovers.every((entry) => Number(entry.cpuMs) >= 0.8 * runtime.cpuHardMs),
      "each stream handed over on the CPU the worker thread used",
    );
  },
});

Deno.test({
  name: "a call on 2 s-CPU, 15 s workers hands over on the wall clock and never loses its line",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const runtime = limits(15_000, 2_000);
    const { handovers } = await longCallOnEdgeRuntime(runtime, 12);
    assert.ok(handovers.length >= 2, `handovers: ${handovers.length}`);
    assert.ok(
      handovers.every((entry) => Number(entry.elapsedMs) >= 0.8 * runtime.wallClockMs),
      "each stream handed over near its worker's wall clock",
    );
  },
});
