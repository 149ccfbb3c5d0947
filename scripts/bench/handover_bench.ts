/**
 * Measures the silence a caller hears when voice-stream hands a call over to a fresh worker
 * (stream handover), with the Twilio call double and the OpenAI Realtime double on loopback,
 * through the whole local stack (voice-frontdoor, voice-stream, voice-action, Postgres).
 *
 * A real 20-minute call on a paid plan (400 s wall clock) hands over about every 320-380 s; the
 * work of one handover does not depend on how long the stream ran, so the bench compresses the
 * clock: each stream's wall clock is `--wall-clock-seconds` (default 6), and one real-time call
 * of `--caller-turns` exchanges (default 22, about 90 s) goes through about 15-18 handovers.
 *
 * Per handover (times on loopback, ms):
 * - prep: the old worker, from deciding to hand over to closing the Twilio socket (model closed,
 *   continuation saved, last mark echoed). Caller audio in this window reaches nobody.
 * - line gap: from the old stream's end to the new stream's open, as the Twilio double saw them
 *   (its `<Connect action>` request, voice-action's answer, the new WebSocket upgrade). No stream
 *   is connected: caller audio is lost.
 * - ready: the new worker, from Twilio's `start` to the restored model session (token checked,
 *   continuation claimed, model connected, `session.update` and the conversation items sent).
 *   Caller audio is kept meanwhile and reaches the model once it is ready.
 * - silence = line gap + ready: how long after the old stream ended the new model can hear.
 * - resumed first audio: for handovers that cut the assistant short (or had it about to speak),
 *   from the old stream's end to the first assistant audio the double received on the new one.
 *
 * Run (about 2 minutes; DATABASE_URL for a real PostgreSQL server, else embedded PGlite):
 *   deno run -A scripts/bench/handover_bench.ts [--wall-clock-seconds 6] [--caller-turns 22]
 * Results: docs/benchmarks.md, "Stream handover".
 * @module
 */
import { JANE_DOE_NUMBER, startCallStack } from "../../tests/support/call_stack.ts";
import { longCall } from "../../tests/e2e/scenarios.ts";
import { fixed, markdownTable, summarize } from "./bench_stats.ts";

function option(name: string, fallback: number): number {
  const index = Deno.args.indexOf(`--${name}`);
  if (index === -1) return fallback;
  const value = Number(Deno.args[index + 1]);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`Invalid --${name}`);
  return value;
}

const wallClockSeconds = option("wall-clock-seconds", 6);
const callerTurns = option("caller-turns", 22);

const conversation = longCall({ callerTurns });
const e2e = await startCallStack({
  openai: { scenario: conversation.scenario, speedFactor: 8 },
  env: { STREAM_WALL_CLOCK_SECONDS: String(wallClockSeconds), LOG_LEVEL: "info" },
});
try {
  const started = performance.now();
  const call = await e2e.placeCall({
    from: JANE_DOE_NUMBER,
    audio: conversation.callerScript,
    pacing: "realtime",
    maxCallMs: 10 * 60_000,
  });
  const wallMs = performance.now() - started;
  const byContinuation = (event: string) =>
    new Map(
      e2e.logs(event)
        .filter((entry) => typeof entry.continuationId === "string")
        .map((entry) => [entry.continuationId as string, entry]),
    );
  const ended = byContinuation("call_ended");
  const restored = byContinuation("continuation_restored");
  const startedLogs = e2e.logs("handover_started");
  const rows: string[][] = [];
  const prep: number[] = [];
  const gap: number[] = [];
  const ready: number[] = [];
  const silence: number[] = [];
  const resumed: number[] = [];
  let natural = 0;
  for (let index = 1; index < call.streams.length; index++) {
    const previous = call.streams[index - 1];
    const stream = call.streams[index];
    const continuationId = stream.customParameters.continuation;
    const end = ended.get(continuationId);
    const restore = restored.get(continuationId);
    if (!end || !restore || previous.endedAtMs === null || stream.openedAtMs === null) {
      throw new Error(`Cannot match handover ${index} to its logs`);
    }
    const kind = startedLogs[index - 1];
    const lineGapMs = stream.openedAtMs - previous.endedAtMs;
    const readyMs = Number(restore.readyMs);
    prep.push(Number(end.prepMs));
    gap.push(lineGapMs);
    ready.push(readyMs);
    silence.push(lineGapMs + readyMs);
    if (kind?.forced === false) natural++;
    let resumedMs = "";
    if (restore.resumed === true) {
      const first = call.agentChunks.find((chunk) => chunk.streamSid === stream.streamSid);
      if (first) {
        resumed.push(first.receivedAtMs - previous.endedAtMs);
        resumedMs = fixed(first.receivedAtMs - previous.endedAtMs, 0);
      }
    }
    rows.push([
      String(index),
      kind?.forced === false ? "pause" : kind?.interrupted ? "cut assistant" : "forced",
      fixed(Number(end.prepMs), 0),
      fixed(lineGapMs, 0),
      fixed(readyMs, 0),
      fixed(lineGapMs + readyMs, 0),
      resumedMs,
    ]);
  }
  await e2e.rest.settled();
  const [row] = await e2e.db.sql`select outcome, stream_seconds::float8 as seconds
    from public.calls where call_sid = ${call.callSid}`;
  const [{ turns }] = await e2e.db.sql`select count(*)::int as turns from public.call_turns t
    join public.calls c on c.id = t.call_id where c.call_sid = ${call.callSid}`;
  console.log(
    `call: ${fixed(wallMs / 1000, 1)} s, ${call.streams.length} streams, ` +
      `${call.streams.length - 1} handovers (${natural} at a natural pause), ${turns} turns ` +
      `stored, outcome ${row.outcome}, end ${call.endReason}, stream wall clock ` +
      `${wallClockSeconds} s`,
  );
  console.log(markdownTable([
    ["#", "kind", "prep ms", "line gap ms", "ready ms", "silence ms", "resumed audio ms"],
    ...rows,
  ]));
  const summaryRows = ([
    ["prep", prep],
    ["line gap", gap],
    ["ready", ready],
    ["silence (gap + ready)", silence],
    ["resumed first audio", resumed],
  ] as const).filter(([, values]) => values.length > 0).map(([name, values]) => {
    const stats = summarize(values);
    return [
      name,
      String(stats.count),
      fixed(stats.p50Ms, 0),
      fixed(stats.p95Ms, 0),
      fixed(stats.maxMs, 0),
    ];
  });
  console.log(markdownTable([["ms", "n", "p50", "p95", "max"], ...summaryRows]));
} finally {
  await e2e.stop();
}
