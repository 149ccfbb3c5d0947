/**
 * Load run of the whole call path: N concurrent scripted calls at real-time pacing through the
 * local stack (voice-frontdoor, voice-stream, voice-action on HTTP/WebSocket over loopback, real
 * Postgres, the strict Twilio and OpenAI Realtime doubles), then checks that nothing was lost.
 *
 * By default the three functions run in a child process (`functions_process.ts`) and this process
 * runs the doubles and the callers, so the functions' CPU is their own and one JavaScript thread
 * does not have to carry both; `--one-process` runs everything here (`call_stack.ts`).
 * The forwarding delay of caller audio is taken from the doubles' clocks (same process): when
 * the Twilio double handed each caller frame to its socket, and when the model double received
 * the `input_audio_buffer.append` carrying it (the last frame of each append; the bridge joins
 * 4 frames per append, so the first frame of each waits 60 ms more by design).
 *
 * ```sh
 * node_modules/.bin/deno run -A --v8-flags=--max-old-space-size=16000 \
 *   scripts/bench/load_calls.ts [--calls 200] [--seconds 60] [--ramp-seconds 5] [--one-process]
 * ```
 *
 * Needs PostgreSQL (`DATABASE_URL`, default postgres://postgres@127.0.0.1:5432/postgres): a fresh
 * seeded database is created and dropped at the end. Exits 0 when every check passed, 1 when one
 * failed, 2 when the run overran its deadline.
 * @module
 */
import { parseArgs } from "node:util";
import { type FunctionRequestCounts, startSplitStack } from "./functions_process.ts";
import { type CallStack, JANE_DOE_NUMBER, startCallStack } from "../../tests/support/call_stack.ts";
import { nextTuesday } from "../../tests/e2e/scenarios.ts";
import { type FixtureName, loadFixture } from "../../tests/support/audio_fixtures.ts";
import type { ScenarioEntry, SessionRecord } from "../../tests/doubles/openai_realtime_double.ts";
import type { CallerStep, CallResult } from "../../tests/doubles/twilio_call_double.ts";
import { fixed, loadAverage, processCpuMs, summarize } from "./bench_stats.ts";

const DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres";
/** Length of the assistant's greeting, of each reply and of the goodbye. */
const GREETING_MS = 2000;
const REPLY_MS = 2500;
const GOODBYE_MS = 1000;
/** Rough time a caller turn costs besides its pause: speech (fixtures average ~2.2 s), the
 * model's VAD end of turn (~0.6 s), the reply, and the caller waiting for the reply to end. */
const TURN_OVERHEAD_MS = 2200 + 600 + REPLY_MS + 700;
/** The caller turn (counted from 1) answered after a `check_availability` tool call. */
const TOOL_TURN = 2;
/** How long stopping the stack (and dropping the database) may take before the run exits. */
const STOP_TIMEOUT_MS = 30_000;
const CALLER_FIXTURES: readonly FixtureName[] = [
  "caller_book_cleaning",
  "caller_confirm",
  "caller_bye",
];

const args = parseArgs({
  args: Deno.args,
  options: {
    calls: { type: "string", default: "200" },
    seconds: { type: "string", default: "60" },
    "ramp-seconds": { type: "string", default: "5" },
    "one-process": { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (args.values.help) {
  console.log(
    "deno run -A scripts/bench/load_calls.ts [--calls 200] [--seconds 60] [--ramp-seconds 5]" +
      " [--one-process]",
  );
  Deno.exit(0);
}
const callCount = Number(args.values.calls);
const callSeconds = Number(args.values.seconds);
const rampSeconds = Number(args.values["ramp-seconds"]);
const oneProcess = args.values["one-process"];
if (!(callCount >= 1 && callSeconds >= 10 && rampSeconds >= 0)) {
  throw new Error("Cannot run: --calls must be >= 1, --seconds >= 10, --ramp-seconds >= 0");
}
/** Caller turns before the goodbye, and the pause after each, so a call lasts about S. */
const callerTurns = Math.max(TOOL_TURN, Math.round((callSeconds * 1000 - 6000) / 9000));
const pauseMs = Math.max(
  0,
  Math.round((callSeconds * 1000 - GREETING_MS - GOODBYE_MS - 3000) / callerTurns) -
    TURN_OVERHEAD_MS,
);
/** The whole run (calls, callbacks, checks) must end by then; it is killed otherwise. */
const deadlineMs = (callSeconds * 3 + rampSeconds + 180) * 1000;
const deadline = setTimeout(() => {
  console.error(`load_calls: deadline of ${deadlineMs / 1000} s exceeded, exiting`);
  Deno.exit(2);
}, deadlineMs);

if (!Deno.env.get("DATABASE_URL")) Deno.env.set("DATABASE_URL", DEFAULT_DATABASE_URL);

/**
 * The model side of connection `connection`: greeting, one reply per caller turn (the
 * `TOOL_TURN`-th after `check_availability`), and after the last turn `end_call` and a goodbye.
 * Every transcript names the connection, so each stored turn is unique and maps to its session.
 */
function callScenario(connection: number, date: string): ScenarioEntry[] {
  let callerLines = 0;
  const callerStep = () => ({
    kind: "caller" as const,
    // A getter: read when the double commits the caller's audio, so lines follow commits.
    get transcript() {
      return `Call ${connection} caller line ${++callerLines}.`;
    },
  });
  const reply: ScenarioEntry = () => {
    if (callerLines > callerTurns) {
      return {
        kind: "function_call",
        name: "end_call",
        arguments: { reason: "caller said goodbye" },
        then: {
          kind: "assistant_audio",
          durationMs: GOODBYE_MS,
          transcript: `Call ${connection} goodbye.`,
        },
      };
    }
    const audio = {
      kind: "assistant_audio" as const,
      durationMs: REPLY_MS,
      transcript: `Call ${connection} reply ${callerLines}.`,
    };
    return callerLines === TOOL_TURN
      ? { kind: "function_call", name: "check_availability", arguments: { date }, then: audio }
      : audio;
  };
  const entries: ScenarioEntry[] = [{
    kind: "assistant_audio",
    durationMs: GREETING_MS,
    transcript: `Call ${connection} greeting, Harbor Dental, how can I help?`,
  }];
  // Spare pairs: should the VAD split a caller's speech, the script still ends the call.
  for (let i = 0; i < callerTurns + 4; i++) entries.push(callerStep(), reply);
  return entries;
}

/** The caller's side: waits for each reply to end, speaks, pauses, and finally says goodbye. */
function callerScript(): CallerStep[] {
  const wait = (step: Record<string, number>) => ({ ...step, timeoutMs: callSeconds * 2000 });
  const steps: CallerStep[] = [
    wait({ waitForAgentAudioMs: 1000 }) as CallerStep,
    wait({ waitForAgentSilenceMs: 700 }) as CallerStep,
  ];
  for (let i = 0; i < callerTurns; i++) {
    const fixture = CALLER_FIXTURES[i % CALLER_FIXTURES.length];
    steps.push(
      { send: loadFixture(fixture), label: `caller turn ${i + 1}` },
      wait({ waitForAgentAudioMs: 500 }) as CallerStep,
      wait({ waitForAgentSilenceMs: 700 }) as CallerStep,
      { silenceMs: pauseMs },
    );
  }
  // The goodbye: the assistant ends the call; the silence only bounds a call that never ends.
  steps.push({ send: loadFixture("caller_bye"), label: "says goodbye" }, {
    silenceMs: callSeconds * 2000,
  });
  return steps;
}

/** The turns the double produced for a session, in its order: what the bridge must store. */
function expectedTurns(session: SessionRecord): string[] {
  const caller = session.userTurns.map((turn) => `caller|${turn.transcript}`);
  const assistant = session.responses
    .filter((response) => response.transcript !== "" && response.status === "completed")
    .map((response) => `assistant|${response.transcript}`);
  return [...caller, ...assistant];
}

/** Peak resident memory of this process (`VmHWM`), in MB. */
function peakRssMb(): number {
  const match = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
  return match ? Number(match[1]) / 1024 : NaN;
}

const failures: string[] = [];
function check(ok: boolean, message: string): void {
  if (!ok && failures.length < 10_000) failures.push(message);
}

console.log(
  `load_calls: ${callCount} calls, ~${callSeconds} s each (${callerTurns} caller turns + goodbye,` +
    ` ${pauseMs} ms pauses), ramp ${rampSeconds} s, ${new Date().toISOString()},` +
    ` load average ${fixed(loadAverage())}`,
);
const date = nextTuesday();
const stackOptions = {
  openai: {
    scenario: (connection: number) => callScenario(connection, date),
    keepAppendedAudio: false,
  },
  maxDbConnections: 20,
  env: { TOOL_TIMEOUT_MS: "120000", LOG_LEVEL: "info" },
};
const stack = oneProcess
  ? oneProcessStack(await startCallStack(stackOptions))
  : await startSplitStack(stackOptions);

/** The one-process stack, shaped like the split one. */
function oneProcessStack(inner: CallStack) {
  return {
    db: inner.db,
    openai: inner.openai,
    rest: inner.rest,
    functionsPid: null as number | null,
    startCall: inner.startCall,
    stopFunctions: (): Promise<FunctionRequestCounts> =>
      Promise.resolve({
        requests: inner.requests.length,
        thrown: inner.requests.filter((request) => request.error !== null).length,
        serverErrors: inner.requests.filter((request) => (request.status ?? 0) >= 500).length,
        logLines: { all: inner.logLines.length },
      }),
    stop: () => inner.stop(),
  };
}

/**
 * Forwarding delay of caller audio per append: from the Twilio double handing the append's last
 * frame to its socket to the model double receiving the append. The first append of a session
 * (the audio buffered while the model connected) is left out.
 */
function forwardingDelaysMs(
  frameSentAt: readonly number[],
  appendedAtMs: readonly number[],
  appendedBytes: readonly number[],
): number[] {
  const delays: number[] = [];
  let bytes = 0;
  for (let i = 0; i < appendedAtMs.length; i++) {
    bytes += appendedBytes[i];
    const lastFrame = Math.ceil(bytes / 160) - 1;
    if (i === 0 || lastFrame >= frameSentAt.length) continue;
    delays.push(appendedAtMs[i] - frameSentAt[lastFrame]);
  }
  return delays;
}

let exitCode = 0;
try {
  const cpuStartMs = processCpuMs("self");
  const functionsCpuStartMs = stack.functionsPid === null ? 0 : processCpuMs(stack.functionsPid);
  const wallStartMs = performance.now();
  const handles = [];
  for (let i = 0; i < callCount; i++) {
    handles.push(stack.startCall({
      from: JANE_DOE_NUMBER,
      pacing: "realtime",
      noDelaySocket: true,
      recordMedia: false,
      audio: callerScript(),
      maxCallMs: callSeconds * 3000,
    }));
    // Spread the starts over the ramp, as calls arriving rather than one burst.
    if (rampSeconds > 0) {
      await new Promise((resolve) => setTimeout(resolve, (rampSeconds * 1000) / callCount));
    }
  }
  const calls: CallResult[] = await Promise.all(handles.map((handle) => handle.result));
  const wallMs = performance.now() - wallStartMs;
  const cpuMs = processCpuMs("self") - cpuStartMs;
  const functionsCpuMs = stack.functionsPid === null
    ? null
    : processCpuMs(stack.functionsPid) - functionsCpuStartMs;
  const callMs = calls.map((call) => call.durationMs ?? 0);
  const callSecondsTotal = callMs.reduce((sum, ms) => sum + ms, 0) / 1000;

  // Twilio side.
  for (const call of calls) {
    check(
      call.protocolErrors.length === 0,
      `protocol errors on ${call.callSid}: ${
        call.protocolErrors.map((error) => `${error.code} ${error.message}`).join("; ")
      }`,
    );
    check(call.endReason === "twiml-hangup", `${call.callSid} ended ${call.endReason}`);
    check(call.scriptTimeouts.length === 0, `${call.callSid}: a caller wait step timed out`);
  }
  // Model side.
  check(stack.openai.sessions.length === callCount, `${stack.openai.sessions.length} sessions`);
  let functionCalls = 0;
  let checkAvailability = 0;
  let errorEvents = 0;
  for (const session of stack.openai.sessions) {
    errorEvents += session.errors.length;
    check(
      session.errors.length === 0,
      `error events on session ${session.index}: ${JSON.stringify(session.errors)}`,
    );
    for (const call of session.functionCalls) {
      functionCalls++;
      if (call.name === "check_availability") checkAvailability++;
      check(call.output !== null, `unanswered ${call.name} on session ${session.index}`);
    }
    check(
      session.functionCalls.some((call) => call.name === "check_availability"),
      `no check_availability on session ${session.index}`,
    );
  }
  await stack.rest.settled();

  // Database: every row complete (the status callback may still be landing: poll, bounded).
  const sids = calls.map((call) => call.callSid);
  let rows: Record<string, unknown>[] = [];
  for (const until = performance.now() + 60_000; performance.now() < until;) {
    rows = await stack.db.sql`
      select id, call_sid, status, outcome, trace_id, lookup_ms, first_audio_ms
      from public.calls where call_sid = any(${sids})`;
    if (
      rows.length === callCount &&
      rows.every((row) => row.status !== null && row.outcome !== null)
    ) break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  check(rows.length === callCount, `${rows.length} call rows for ${callCount} calls`);
  let incompleteRows = 0;
  for (const row of rows) {
    const complete = row.status === "completed" && row.outcome !== null && !!row.trace_id &&
      row.lookup_ms !== null && row.first_audio_ms !== null;
    if (!complete) incompleteRows++;
    check(complete, `incomplete row ${JSON.stringify(row)}`);
  }
  const outcomes = new Map<string, number>();
  for (const row of rows) {
    outcomes.set(String(row.outcome), (outcomes.get(String(row.outcome)) ?? 0) + 1);
  }

  // Transcripts: each call's turns against its session's, once each, sequences contiguous.
  const turnRows = await stack.db.sql`
    select t.call_id, t.sequence, t.speaker, t.text from public.call_turns t
    where t.call_id = any(${rows.map((row) => row.id as string)})
    order by t.call_id, t.sequence`;
  const turnsByCall = new Map<string, { sequence: number; key: string }[]>();
  for (const turn of turnRows) {
    const list = turnsByCall.get(turn.call_id) ?? [];
    list.push({ sequence: turn.sequence, key: `${turn.speaker}|${turn.text}` });
    turnsByCall.set(turn.call_id, list);
  }
  const sessionsSeen = new Set<number>();
  // Each call's model session, as its stored transcripts name it (for the forwarding delay).
  const sessionBySid = new Map<string, SessionRecord>();
  let turnsExpected = 0;
  let turnMismatches = 0;
  for (const row of rows) {
    const turns = turnsByCall.get(row.id as string) ?? [];
    const connection = Number(/Call (\d+) /.exec(turns[0]?.key ?? "")?.[1] ?? NaN);
    const session = stack.openai.sessions[connection];
    if (!session) {
      turnMismatches++;
      check(false, `no session maps to call ${row.call_sid} (${turns.length} turns)`);
      continue;
    }
    check(!sessionsSeen.has(connection), `session ${connection} maps to two calls`);
    sessionsSeen.add(connection);
    sessionBySid.set(row.call_sid as string, session);
    const expected = expectedTurns(session).sort();
    turnsExpected += expected.length;
    const stored = turns.map((turn) => turn.key).sort();
    const same = expected.length === stored.length &&
      expected.every((key, i) => key === stored[i]);
    const contiguous = turns.every((turn, i) => turn.sequence === turns[0].sequence + i);
    if (!same || !contiguous) turnMismatches++;
    check(
      same,
      `turns of ${row.call_sid}: stored ${stored.length}, produced ${expected.length}; only stored: ${
        JSON.stringify(stored.filter((key) => !expected.includes(key)))
      }; only produced: ${JSON.stringify(expected.filter((key) => !stored.includes(key)))}`,
    );
    check(contiguous, `sequences of ${row.call_sid} not contiguous`);
  }

  // Forwarding delay of caller audio, per call (its first stream) and its model session.
  const delays: number[] = [];
  for (const call of calls) {
    const session = sessionBySid.get(call.callSid);
    const stream = call.streams[0];
    if (!session || !stream) continue;
    for (
      const delay of forwardingDelaysMs(
        stream.callerFrameSentAt,
        session.appendedAtMs,
        session.appendedBytes,
      )
    ) delays.push(delay);
  }
  const forwarding = summarize(delays);

  // Functions: nothing threw, nothing answered 5xx.
  const counts = await stack.stopFunctions();
  const thrown = counts.thrown;
  const serverErrors = counts.serverErrors;
  check(thrown === 0, `${thrown} requests threw`);
  check(serverErrors === 0, `${serverErrors} requests answered 5xx`);

  const firstAudio = summarize(
    rows.map((row) => Number(row.first_audio_ms ?? NaN)).filter(
      Number.isFinite,
    ),
  );
  const lookup = summarize(
    rows.map((row) => Number(row.lookup_ms ?? NaN)).filter(
      Number.isFinite,
    ),
  );
  const duration = summarize(callMs.map((ms) => ms / 1000));
  console.log(
    [
      `wall time of the calls: ${fixed(wallMs / 1000, 1)} s; call length p50 ${
        fixed(duration.p50Ms, 1)
      } s, min ${fixed(Math.min(...callMs) / 1000, 1)} s, max ${fixed(duration.maxMs, 1)} s`,
      `calls ended by the assistant: ${
        calls.filter((call) => call.endReason === "twiml-hangup").length
      }/${callCount}; Twilio protocol errors: ${
        calls.reduce((sum, call) => sum + call.protocolErrors.length, 0)
      }; OpenAI error events: ${errorEvents}`,
      `call rows: ${rows.length}/${callCount}, incomplete: ${incompleteRows}; outcomes: ${
        [...outcomes].map(([outcome, count]) => `${outcome} x${count}`).join(", ")
      }`,
      `turns stored: ${turnRows.length}, produced by the model double: ${turnsExpected}, calls with` +
      ` missing/duplicate/non-contiguous turns: ${turnMismatches}`,
      `tool calls: ${functionCalls} (check_availability ${checkAvailability}), unanswered: ${
        stack.openai.sessions.reduce(
          (sum, session) => sum + session.functionCalls.filter((c) => c.output === null).length,
          0,
        )
      }`,
      `function requests: ${counts.requests}, threw: ${thrown}, 5xx: ${serverErrors}; log lines ${
        JSON.stringify(counts.logLines)
      }`,
      `caller audio forwarding delay (frame sent by the Twilio double -> append at the model` +
      ` double, last frame of each append): p50 ${fixed(forwarding.p50Ms)} ms, p95 ${
        fixed(forwarding.p95Ms)
      } ms, p99 ${fixed(forwarding.p99Ms)} ms, max ${
        fixed(forwarding.maxMs)
      } ms over ${delays.length} appends`,
      `start -> first audio (calls.first_audio_ms): p50 ${fixed(firstAudio.p50Ms, 0)} ms, p99 ${
        fixed(firstAudio.p99Ms, 0)
      } ms, max ${fixed(firstAudio.maxMs, 0)} ms`,
      `caller lookup (calls.lookup_ms): p50 ${fixed(lookup.p50Ms, 0)} ms, p99 ${
        fixed(lookup.p99Ms, 0)
      } ms`,
      functionsCpuMs === null
        ? `whole-process CPU (functions + both doubles + load callers, one process): ${
          fixed(cpuMs / 1000, 1)
        } s = ${fixed((cpuMs / wallMs) * 100, 0)}% of one core over the calls; ${
          fixed(cpuMs / callSecondsTotal, 2)
        } ms CPU per call-second (${fixed(callSecondsTotal, 0)} call-seconds)`
        : `functions process CPU: ${fixed(functionsCpuMs / 1000, 1)} s = ${
          fixed((functionsCpuMs / wallMs) * 100, 0)
        }% of one core over the calls; ${
          fixed(functionsCpuMs / callSecondsTotal, 2)
        } ms CPU per call-second (${fixed(callSecondsTotal, 0)} call-seconds); doubles + callers` +
          ` process: ${fixed((cpuMs / wallMs) * 100, 0)}% of one core`,
      `peak RSS ${fixed(peakRssMb(), 0)} MB; load average ${fixed(loadAverage())}`,
    ].join("\n"),
  );
  if (failures.length > 0) {
    exitCode = 1;
    console.log(`FAILED: ${failures.length} checks`);
    for (const failure of failures.slice(0, 40)) console.log(`  ${failure}`);
  } else {
    console.log("PASSED: every check");
  }
} finally {
  // Bounded: a stop that hangs (a socket that never closes) must not keep the run alive.
  const stopped = await Promise.race([
    stack.stop().then(() => true),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), STOP_TIMEOUT_MS)),
  ]);
  if (!stopped) console.error(`load_calls: stack did not stop within ${STOP_TIMEOUT_MS} ms`);
  clearTimeout(deadline);
}
Deno.exit(exitCode);
