/**
 * Measures the delay the edge runtime's proxy hop adds to a WebSocket message: round trips of
 * Twilio-media-sized text frames to an echo handler in a worker, once straight to the worker's
 * port and once through the supervisor. Clients use TCP_NODELAY (the bridge's RFC 6455 client).
 *
 * `deno run -A scripts/edge_runtime/proxy_hop_measure.ts [messages]`
 * @module
 */
import { connectNoDelayWebSocket } from "../../supabase/functions/voice-stream/nodelay_websocket.ts";
import { EDGE_LIMIT_PRESETS } from "./limits.ts";
import { startEdgeSupervisor } from "./supervisor.ts";
import type { FromWorkerMessage, ToWorkerMessage, WorkerSpec } from "./worker_protocol.ts";

/** A Twilio `media` event carries 160 bytes of mu-law (20 ms), about 330 bytes of JSON. */
const MESSAGE = JSON.stringify({
  event: "media",
  streamSid: "MZ" + "0".repeat(32),
  media: { payload: "/".repeat(216), timestamp: "0", chunk: "1", track: "inbound" },
});

const ECHO: WorkerSpec = {
  name: "echo_socket",
  moduleUrl: new URL("./_test_handlers.ts", import.meta.url).href,
  exportName: "createTestHandler",
  env: {},
  args: { kind: "echo_socket" },
};

/** Round trips in ms, one message in flight at a time. */
async function roundTrips(url: string, count: number): Promise<number[]> {
  const socket = connectNoDelayWebSocket(url);
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener("open", () => resolve());
    socket.addEventListener("close", () => reject(new Error("closed before open")));
  });
  const times: number[] = [];
  let pending: (() => void) | null = null;
  socket.addEventListener("message", () => pending?.());
  for (let i = 0; i < count; i++) {
    const sentAt = performance.now();
    await new Promise<void>((resolve) => {
      pending = resolve;
      socket.send(MESSAGE);
    });
    times.push(performance.now() - sentAt);
  }
  socket.close(1000, "done");
  return times;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

/** Starts an echo worker outside the supervisor, for the direct path. */
async function startDirectWorker(): Promise<{ port: number; worker: Worker }> {
  const worker = new Worker(new URL("./worker_main.ts", import.meta.url).href, { type: "module" });
  const port = await new Promise<number>((resolve, reject) => {
    worker.onmessage = (event: MessageEvent<FromWorkerMessage>) => {
      const message = event.data;
      if (message.type === "thread") {
        worker.postMessage({ type: "start", spec: ECHO } satisfies ToWorkerMessage);
      }
      if (message.type === "ready") resolve(message.port);
      if (message.type === "boot_failed") reject(new Error(message.error));
    };
  });
  return { port, worker };
}

if (import.meta.main) {
  const count = Number(Deno.args[0] ?? 2_000);
  const direct = await startDirectWorker();
  const supervisor = startEdgeSupervisor({
    limits: { ...EDGE_LIMIT_PRESETS.paid, cpuSoftMs: 0, cpuHardMs: 0 },
    route: () => ECHO,
    logSink: () => {},
  });
  // Warm up both paths, then alternate them so that machine noise hits both alike.
  await roundTrips(`ws://127.0.0.1:${direct.port}/`, 200);
  await roundTrips(`${supervisor.url.replace("http", "ws")}/echo`, 200);
  const directTimes: number[] = [];
  const proxiedTimes: number[] = [];
  for (let round = 0; round < 4; round++) {
    directTimes.push(...await roundTrips(`ws://127.0.0.1:${direct.port}/`, count / 4));
    proxiedTimes.push(
      ...await roundTrips(`${supervisor.url.replace("http", "ws")}/echo`, count / 4),
    );
  }
  const report = (label: string, times: number[]) =>
    `${label}: round trip median ${percentile(times, 0.5).toFixed(3)} ms, ` +
    `p90 ${percentile(times, 0.9).toFixed(3)} ms, p99 ${percentile(times, 0.99).toFixed(3)} ms`;
  console.log(report("direct to the worker  ", directTimes));
  console.log(report("through the supervisor", proxiedTimes));
  const added = (p: number) => (percentile(proxiedTimes, p) - percentile(directTimes, p)) / 2;
  console.log(
    `added one-way delay per message (half the round-trip difference): median ` +
      `${added(0.5).toFixed(3)} ms, p90 ${added(0.9).toFixed(3)} ms, p99 ${
        added(0.99).toFixed(3)
      } ms`,
  );
  direct.worker.terminate();
  await supervisor.close();
}
