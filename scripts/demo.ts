/**
 * The offline demo: two phone calls through the whole product on one machine. PostgreSQL
 * (DATABASE_URL, or an embedded PGlite) gets the real migrations and seed, the three functions
 * are served as Supabase's local stack serves them, and protocol-faithful doubles stand in for
 * Twilio and OpenAI Realtime (neither is reachable offline).
 *
 * 1. Jane Doe, a known client, calls: she is greeted by name, interrupts the greeting, asks for
 *    a cleaning on Tuesday with Dr. Lee (who is off on Tuesdays), books it with Sam Ortiz through
 *    the tools, and hangs up after the goodbye.
 * 2. A second caller's model connection drops mid-greeting: the call ends in an apology and the
 *    caller gets the recovery SMS.
 *
 * Prints the operator's view (the functions' JSON log lines, made readable) and a summary, and
 * writes each call as a stereo WAV (caller left, assistant right) under `.demo/`.
 *
 * Usage: `npm run demo` (or `deno task demo`). `--openai` talks to the real OpenAI Realtime
 * service for the first call instead of the double (needs OPENAI_API_KEY and network access).
 * @module
 */
import postgres from "postgres";
import { type CallStack, JANE_DOE_NUMBER, startCallStack } from "../tests/support/call_stack.ts";
import type { TestDatabase } from "../tests/support/test_db.ts";
import { bookingCallerScript, bookingScenario, nextTuesday } from "../tests/e2e/scenarios.ts";
import type { ScenarioEntry } from "../tests/doubles/openai_realtime_double.ts";
import type { CallResult } from "../tests/doubles/twilio_call_double.ts";
import { loadFixture } from "../tests/support/audio_fixtures.ts";
import { DEFAULT_OPENAI_REALTIME_URL } from "../supabase/functions/_shared/config.ts";

const OUTPUT_DIR = ".demo";
const SECOND_CALLER = "+15551230002";
const useRealOpenAI = Deno.args.includes("--openai");

function heading(text: string): void {
  console.log(`\n\x1b[1m== ${text}\x1b[0m`);
}

/** One log line as an operator reads it: time, function, event, the useful fields. */
export function formatLogLine(line: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line);
  } catch {
    return line;
  }
  const { ts, level, fn, event, traceId, callSid, ...rest } = entry;
  const time = typeof ts === "string" ? ts.slice(11, 23) : "";
  const fields = Object.entries(rest)
    .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join(" ");
  const ids = [callSid ? `call=${String(callSid).slice(0, 10)}…` : ""].filter(Boolean).join(" ");
  const marker = level === "warn" ? "!" : level === "error" ? "x" : " ";
  return `${time} ${marker} ${String(fn).padEnd(15)} ${String(event).padEnd(20)} ${ids} ${fields}`
    .trimEnd() + (traceId ? "" : "");
}

/** seed.sql's demo org, its Cleaning service and Sam Ortiz, who works on Tuesdays. */
const DEMO_ORG_ID = "00000000-0000-4000-8000-000000000001";
const CLEANING_ID = "00000000-0000-4000-8000-000000000301";
const SAM_ORTIZ_ID = "00000000-0000-4000-8000-000000000202";

async function firstFreeTuesdayTime(sql: postgres.Sql, date: string): Promise<string> {
  const rows = await sql<{ starts_at: Date }[]>`
    select s.starts_at
    from public.search_availability(${DEMO_ORG_ID}, ${CLEANING_ID}, ${date}::date, 1,
      ${SAM_ORTIZ_ID}) s
    order by s.starts_at`;
  if (rows.length === 0) throw new Error(`No free slot on ${date}: try another day`);
  const times = rows.map((row) =>
    new Intl.DateTimeFormat("en-GB", {
      timeZone: "America/New_York",
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
    }).format(row.starts_at)
  );
  // Jane asks for ten; a database reused across demo runs may have it taken already.
  return times.includes("10:00") ? "10:00" : times[0];
}

async function summarize(
  e2e: CallStack<TestDatabase | null>,
  sql: postgres.Sql,
  calls: CallResult[],
): Promise<void> {
  heading("Summary");
  for (const call of calls) {
    const [row] = await sql`
      select call_sid, trace_id, status, outcome, duration_seconds, lookup_ms, first_audio_ms,
             barge_ins, tool_calls, model_input_tokens, model_output_tokens
      from public.calls where call_sid = ${call.callSid}`;
    console.log(`\nCall ${call.callSid} (trace ${row?.trace_id})`);
    console.log(
      `  status=${row?.status} outcome=${row?.outcome} lookup=${row?.lookup_ms} ms ` +
        `first audio=${row?.first_audio_ms} ms barge-ins=${row?.barge_ins} ` +
        `tool calls=${row?.tool_calls} tokens in/out=${row?.model_input_tokens}/` +
        `${row?.model_output_tokens}`,
    );
    const turns = await sql`
      select t.sequence, t.speaker, t.text from public.call_turns t
      join public.calls c on c.id = t.call_id where c.call_sid = ${call.callSid}
      order by t.sequence`;
    if (turns.length > 0) console.log("  transcript:");
    for (const turn of turns) console.log(`    ${String(turn.speaker).padEnd(9)} ${turn.text}`);
    for (const say of call.says) console.log(`    twilio    <Say> ${say.text}`);
    const appointments = await sql`
      select a.confirmation_code, a.starts_at, c.first_name, c.last_name, s.name as service,
        p.name as provider
      from public.appointments a
      join public.clients c on c.id = a.client_id join public.calls k on k.id = a.call_id
      join public.providers p on p.id = a.provider_id
      left join public.services s on s.id = a.service_id
      where k.call_sid = ${call.callSid}`;
    for (const appointment of appointments) {
      const when = new Intl.DateTimeFormat("en-US", {
        timeZone: "America/New_York",
        dateStyle: "full",
        timeStyle: "short",
      }).format(appointment.starts_at);
      console.log(
        `  appointment: ${appointment.first_name} ${appointment.last_name}, ` +
          `${appointment.service} with ${appointment.provider}, ${when}, ` +
          `confirmation code ${appointment.confirmation_code}`,
      );
    }
    const sms = await sql`
      select s.kind, s.to_number, s.body, s.status, s.message_sid from public.sms_messages s
      join public.calls c on c.id = s.call_id where c.call_sid = ${call.callSid}`;
    for (const message of sms) {
      console.log(
        `  SMS (${message.kind}, ${message.status}) to ${message.to_number}: ${message.body}`,
      );
    }
  }
  console.log(`\nSMS received by the Twilio REST double: ${e2e.rest.messages.length}`);
}

async function main(): Promise<void> {
  const started = performance.now();
  Deno.mkdirSync(OUTPUT_DIR, { recursive: true });
  const date = nextTuesday();
  if (useRealOpenAI && !Deno.env.get("OPENAI_API_KEY")) {
    console.error("--openai needs OPENAI_API_KEY");
    Deno.exit(2);
  }
  heading("Starting the local stack");
  const databaseUrl = Deno.env.get("DATABASE_URL") || undefined;
  console.log(
    databaseUrl
      ? "Database: DATABASE_URL (bootstrap, migrations with the Supabase CLI, seed)"
      : "Database: embedded PostgreSQL (PGlite), prepared with the real migrations and seed",
  );
  let callIndex = 0;
  const scenarios: ScenarioEntry[][] = [];
  const e2e = await startCallStack({
    databaseUrl,
    openai: {
      scenario: (connection) => scenarios[connection] ?? [{ kind: "end" }],
      // The second call's model connection drops after 6 audio deltas of its greeting.
      faults: { dropMidResponse: { afterDeltas: 6, connectionIndex: useRealOpenAI ? 0 : 1 } },
      speedFactor: 2,
    },
    env: useRealOpenAI
      ? {
        OPENAI_REALTIME_URL: DEFAULT_OPENAI_REALTIME_URL,
        OPENAI_API_KEY: Deno.env.get("OPENAI_API_KEY")!,
      }
      : {},
  });
  const sql = postgres(e2e.databaseUrl, { max: 2, onnotice: () => {} });
  const calls: CallResult[] = [];
  try {
    console.log(`Functions: ${e2e.functionsUrl}/{voice-frontdoor,voice-stream,voice-action}`);
    console.log(
      useRealOpenAI
        ? "Model: the REAL OpenAI Realtime service (first call); Twilio: local double"
        : `Model: local OpenAI Realtime double at ${e2e.openai.url}; Twilio: local doubles`,
    );

    const time = await firstFreeTuesdayTime(sql, date);
    scenarios.push(bookingScenario(date, time));
    heading(`Call 1: Jane Doe books ${date} at ${time} (real-time audio, about 20 s)`);
    const first = await e2e.placeCall({
      from: JANE_DOE_NUMBER,
      audio: bookingCallerScript(),
      pacing: "realtime",
      maxCallMs: 90_000,
    });
    calls.push(first);
    callIndex++;
    await first.saveWav(`${OUTPUT_DIR}/call1_booking.wav`);

    if (!useRealOpenAI) {
      scenarios.push([{ kind: "assistant_audio", fixture: "agent_greeting_generic" }]);
      heading("Call 2: the model connection drops mid-greeting");
      const second = await e2e.placeCall({
        from: SECOND_CALLER,
        audio: [{ waitMs: 4000 }, { send: loadFixture("caller_bye") }, { silenceMs: 10_000 }],
        pacing: "realtime",
        maxCallMs: 30_000,
        sayMsPerCharacter: 10,
      });
      calls.push(second);
      callIndex++;
      await second.saveWav(`${OUTPUT_DIR}/call2_recovery.wav`);
    }
    await e2e.rest.settled();
    // Background writes (metrics, SMS status) land within a moment of the call's end.
    await new Promise((resolve) => setTimeout(resolve, 500));

    heading("Operator's view: the functions' log lines (phone numbers masked)");
    for (const line of e2e.logLines) console.log(formatLogLine(line));
    await summarize(e2e, sql, calls);
    heading("Recordings");
    for (let i = 0; i < callIndex; i++) {
      const name = i === 0 ? "call1_booking.wav" : "call2_recovery.wav";
      console.log(`  ${OUTPUT_DIR}/${name} (caller left, assistant right)`);
    }
    const booked = calls[0] &&
      (await sql`select outcome from public.calls where call_sid = ${calls[0].callSid}`)[0]
          ?.outcome === "booked";
    const recovered = useRealOpenAI ||
      e2e.rest.messages.some((message) => message.to === SECOND_CALLER);
    console.log(
      `\nDemo finished in ${((performance.now() - started) / 1000).toFixed(1)} s: ` +
        `booking ${booked ? "made" : "NOT made"}, recovery SMS ${recovered ? "sent" : "NOT sent"}.`,
    );
    if (!useRealOpenAI && (!booked || !recovered)) Deno.exitCode = 1;
  } finally {
    await sql.end();
    await e2e.stop();
  }
}

if (import.meta.main) await main();
