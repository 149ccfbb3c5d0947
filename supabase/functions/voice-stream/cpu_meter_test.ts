import assert from "node:assert/strict";
import {
  createCpuMeter,
  ESTIMATED_WAKE_MS_PER_MESSAGE,
  parseProcStatCpuMs,
  readThreadCpuMs,
  runsInWorker,
  THREAD_READ_EVERY_MESSAGES,
} from "./cpu_meter.ts";

Deno.test("parseProcStatCpuMs() adds utime and stime after a command name with spaces", () => {
  // Fields 14 and 15 (utime, stime) are 1234 and 66 ticks of 10 ms.
  const stat = "4242 (tokio (runtime) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 66 0 0 20 0 " +
    "3 0 100 1000 10 18446744073709551615";
  assert.equal(parseProcStatCpuMs(stat), 13_000);
  assert.equal(parseProcStatCpuMs("garbage"), null);
  assert.equal(parseProcStatCpuMs("1 (x) S 1 2"), null);
});

Deno.test("readThreadCpuMs() reads this thread's CPU time, which grows with work", () => {
  const before = readThreadCpuMs();
  assert.equal(typeof before, "number");
  const until = performance.now() + 60;
  while (performance.now() < until) { /* burn 60 ms of CPU */ }
  const after = readThreadCpuMs()!;
  assert.ok(after - before! >= 30, `${before} -> ${after}`);
});

Deno.test("createCpuMeter() estimates outside a worker: handler time plus a wake per message", () => {
  assert.equal(runsInWorker(), false);
  const meter = createCpuMeter();
  assert.equal(meter.kind, "estimate");
  for (let i = 0; i < 10; i++) meter.charge(0.1);
  assert.equal(meter.usedMs(), 10 * (0.1 + ESTIMATED_WAKE_MS_PER_MESSAGE));
  assert.equal(meter.estimatedMs(), meter.usedMs());
});

Deno.test("createCpuMeter() counts the worker thread's time, reread every few messages", () => {
  let threadMs = 500;
  let reads = 0;
  const meter = createCpuMeter({
    inWorker: true,
    readThreadCpu: () => (reads++, threadMs),
  });
  assert.equal(meter.kind, "thread");
  assert.equal(meter.usedMs(), 500, "the worker's time so far, as the platform counts it");
  threadMs = 900;
  for (let i = 0; i < THREAD_READ_EVERY_MESSAGES - 1; i++) meter.charge(0.01);
  assert.equal(meter.usedMs(), 500, "not reread on every message");
  meter.charge(0.01);
  assert.equal(meter.usedMs(), 900);
  assert.equal(reads, 2);
  assert.ok(meter.estimatedMs() > 0);
});

Deno.test("createCpuMeter() falls back to the estimate where the thread cannot be read", () => {
  assert.equal(createCpuMeter({ inWorker: true, readThreadCpu: () => null }).kind, "estimate");
  assert.equal(createCpuMeter({ mode: "estimate", inWorker: true }).kind, "estimate");
  assert.equal(createCpuMeter({ mode: "thread", inWorker: false }).kind, "thread");
});

Deno.test("createCpuMeter() in a real worker picks the thread's time, its own and not the main's", async () => {
  const source = `
    import { createCpuMeter } from ${
    JSON.stringify(new URL("./cpu_meter.ts", import.meta.url).href)
  };
    const meter = createCpuMeter();
    const start = meter.usedMs();
    const wallStart = performance.now();
    // Spins until the meter shows 100 ms of this thread's CPU (a loaded machine gives the thread
    // less than its wall time, so a fixed wall-clock spin would not do); 5 s at most.
    while (meter.usedMs() - start < 100 && performance.now() - wallStart < 5000) {
      for (let i = 0; i < 1e5; i++) { /* CPU on this thread */ }
      meter.charge(0); // it rereads /proc every few messages
    }
    for (let i = 0; i < 25; i++) meter.charge(0);
    postMessage({ kind: meter.kind, start, end: meter.usedMs(), wallMs: performance.now() - wallStart });
  `;
  const url = URL.createObjectURL(new Blob([source], { type: "application/javascript" }));
  const worker = new Worker(url, { type: "module" });
  try {
    const result = await new Promise<{ kind: string; start: number; end: number; wallMs: number }>(
      (resolve, reject) => {
        worker.onmessage = (event) => resolve(event.data);
        worker.onerror = (event) => reject(event.message);
      },
    );
    assert.equal(result.kind, "thread");
    assert.ok(result.end - result.start >= 100, JSON.stringify(result));
    // The thread's own CPU cannot exceed its wall time (a process-wide figure could), 10 ms ticks.
    assert.ok(result.end - result.start <= result.wallMs + 10, JSON.stringify(result));
  } finally {
    worker.terminate();
    URL.revokeObjectURL(url);
  }
});
