/**
 * The operator views (20261122001000_operator_views.sql) and scripts/call_timeline.ts on a seeded
 * database: daily numbers per org and local day, one call's timeline by CallSid or traceId, and
 * row level security through the views (an org member sees only their org, anon nothing).
 * @module
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import { createTestDatabase, withRole } from "./support/test_db.ts";
import {
  addMember,
  createOrg,
  createUser,
  randomCallSid,
  randomPhone,
  rpc,
  type TestOrg,
} from "./db/fixtures.ts";
import { loadTimeline, renderTimeline, type TimelineRow } from "../scripts/call_timeline.ts";

/** 10:00 in New York on 2026-03-10 (EDT, UTC-4). */
const DAY_ONE = "2026-03-10T14:00:00.000Z";
/** 23:30 in New York on 2026-03-10: already the 11th in UTC, still the 10th locally. */
const DAY_ONE_LATE = "2026-03-11T03:30:00.000Z";
/** 10:00 in New York on 2026-03-11. */
const DAY_TWO = "2026-03-11T14:00:00.000Z";

function plusSeconds(iso: string, seconds: number): string {
  return new Date(Date.parse(iso) + seconds * 1000).toISOString();
}

interface CallPlan {
  org: TestOrg;
  at: string;
  traceId?: string;
  /** Ends answered with this status (default completed); `no-answer` never answers. */
  end?: "completed" | "failed" | "no-answer";
  metrics?: { lookupMs: number; firstAudioMs: number };
  book?: string;
  recoverySms?: boolean;
  turns?: string[];
  toolEvent?: boolean;
}

/** Records a call as the functions would (events, metrics, turns, booking, SMS), at `plan.at`. */
async function recordCall(sql: postgres.Sql, plan: CallPlan): Promise<string> {
  const callSid = randomCallSid();
  const from = randomPhone();
  const event = async (
    key: string,
    kind: string,
    offsetSeconds: number,
    fields: { status?: string; outcome?: string; payload?: Record<string, unknown> } = {},
  ) => {
    await sql`select public.record_call_event(
      p_call_sid => ${callSid}, p_idempotency_key => ${`${callSid}:${key}`}, p_kind => ${kind},
      p_trace_id => ${plan.traceId ?? null}, p_from => ${from}, p_to => ${plan.org.phoneNumber},
      p_status => ${fields.status ?? null}, p_outcome => ${fields.outcome ?? null},
      p_occurred_at => ${plusSeconds(plan.at, offsetSeconds)},
      p_payload => ${fields.payload ? sql.json(fields.payload as postgres.JSONValue) : null})`;
  };
  await event("incoming", "call_incoming", 0, { status: "ringing" });
  const answered = plan.end !== "no-answer";
  if (answered) await event("stream", "stream_started", 1, { status: "in-progress" });
  if (plan.turns) {
    const turns = plan.turns.map((text, sequence) => ({
      sequence,
      speaker: sequence % 2 === 0 ? "assistant" : "caller",
      text,
      start_ms: 1000 + sequence * 2000,
      end_ms: 2500 + sequence * 2000,
    }));
    await sql`select public.append_call_turns(${callSid}, ${sql.json(turns)})`;
    await sql`update public.call_turns t set created_at = ${plusSeconds(plan.at, 5)}::timestamptz
        + make_interval(secs => t.sequence)
      from public.calls c where c.id = t.call_id and c.call_sid = ${callSid}`;
  }
  if (plan.toolEvent) {
    await event("tool", "tool_call", 20, { payload: { name: "book_appointment", ms: 85 } });
  }
  if (plan.book) {
    const booked = await rpc<{ ok: boolean }>(sql, "book_appointment", [
      callSid,
      "Pat",
      "Lee",
      plan.book,
    ]);
    assert.equal(booked.ok, true, JSON.stringify(booked));
    await sql`update public.appointments a set created_at = ${plusSeconds(plan.at, 21)}
      from public.calls c where c.id = a.call_id and c.call_sid = ${callSid}`;
  }
  if (plan.metrics) {
    await sql`select public.record_call_metrics(p_call_sid => ${callSid},
      p_lookup_ms => ${plan.metrics.lookupMs}, p_first_audio_ms => ${plan.metrics.firstAudioMs},
      p_tool_calls => ${plan.toolEvent ? 1 : 0})`;
  }
  const end = plan.end ?? "completed";
  await event("end", "call_status", 60, { status: end });
  if (plan.recoverySms) {
    const claim = await rpc<{ claimed: boolean; sms_id: string }>(sql, "claim_sms", [
      callSid,
      "recovery",
      null,
    ]);
    assert.equal(claim.claimed, true, JSON.stringify(claim));
    await sql`select public.record_sms_result(${claim.sms_id}::uuid,
      ${`SM${"0".repeat(31)}1`}, 'delivered')`;
    await sql`update public.sms_messages set created_at = ${plusSeconds(plan.at, 62)}
      where id = ${claim.sms_id}`;
    await event("sms", "recovery_sms_sent", 63, { outcome: "recovered" });
  }
  // The row is created "now"; the views group by its creation time.
  await sql`update public.calls set created_at = ${plan.at} where call_sid = ${callSid}`;
  return callSid;
}

Deno.test("operator views and call timeline", async (t) => {
  const db = await createTestDatabase({ seed: true });
  const sql = db.sql;
  try {
    const orgA = await createOrg(sql, { name: "Org A" });
    const orgB = await createOrg(sql, { name: "Org B" });
    const userA = await createUser(sql);
    const userB = await createUser(sql);
    const outsider = await createUser(sql);
    await addMember(sql, orgA.id, userA);
    await addMember(sql, orgB.id, userB);
    const traceId = crypto.randomUUID();
    const booked = await recordCall(sql, {
      org: orgA,
      at: DAY_ONE,
      traceId,
      metrics: { lookupMs: 20, firstAudioMs: 500 },
      book: "2030-04-01T13:00:00Z",
      turns: ["Harbor Dental, how can I help?", "I'd like a cleaning, my number is +15551239876"],
      toolEvent: true,
    });
    await recordCall(sql, { org: orgA, at: DAY_ONE, metrics: { lookupMs: 40, firstAudioMs: 700 } });
    const recovered = await recordCall(sql, {
      org: orgA,
      at: DAY_ONE,
      end: "failed",
      metrics: { lookupMs: 60, firstAudioMs: 900 },
      recoverySms: true,
    });
    await recordCall(sql, { org: orgA, at: DAY_ONE_LATE, end: "no-answer" });
    await recordCall(sql, { org: orgA, at: DAY_TWO, metrics: { lookupMs: 10, firstAudioMs: 300 } });
    const otherOrgCall = await recordCall(sql, {
      org: orgB,
      at: DAY_ONE,
      metrics: { lookupMs: 100, firstAudioMs: 1000 },
    });
    // A booking made by staff (no call), cancelled since.
    const [client] = await sql<{ id: string }[]>`select id from public.clients
      where org_id = ${orgA.id} limit 1`;
    await sql`insert into public.appointments
        (org_id, client_id, starts_at, ends_at, status, cancelled_at, created_at)
      values (${orgA.id}, ${client.id}, '2030-04-01T15:00:00Z', '2030-04-01T15:30:00Z',
        'cancelled', ${plusSeconds(DAY_ONE, 3600)}, ${plusSeconds(DAY_ONE, 600)})`;

    const asUser = (userId: string) => ({ sub: userId, role: "authenticated" });
    const ours = new Set([orgA.id, orgB.id]);
    const dailyCalls = async (role: "authenticated" | "service_role", claims: object) =>
      (await withRole(
        sql,
        role,
        claims as Record<string, unknown>,
        (tx) =>
          tx<Record<string, unknown>[]>`select * from public.operator_daily_calls
            order by org_name, day`,
      )).filter((row) => ours.has(row.org_id as string));

    await t.step("operator_daily_calls counts an org's calls per local day", async () => {
      const rows = await dailyCalls("authenticated", asUser(userA));
      assert.deepEqual(rows.map((row) => [row.org_name, isoDay(row.day)]), [
        ["Org A", "2026-03-10"],
        ["Org A", "2026-03-11"],
      ]);
      const first = rows[0];
      assert.deepEqual(
        {
          calls: first.calls,
          answered: first.answered_calls,
          successful: first.successful_calls,
          failed: first.failed_calls,
          recovered: first.recovered_calls,
          missed: first.missed_calls,
          booked: first.booked_calls,
          successRate: first.success_rate,
          recoverySms: first.recovery_sms,
          recoverySmsDelivered: first.recovery_sms_delivered,
          recoverySmsFailed: first.recovery_sms_failed,
          toolCalls: first.tool_calls,
        },
        {
          calls: 4,
          answered: 3,
          successful: 2,
          failed: 0,
          recovered: 1,
          missed: 1,
          booked: 1,
          successRate: 0.5,
          recoverySms: 1,
          recoverySmsDelivered: 1,
          recoverySmsFailed: 0,
          toolCalls: 1,
        },
      );
    });

    await t.step("operator_daily_calls gives p50/p95 of lookup and first audio", async () => {
      const [first, second] = await dailyCalls("authenticated", asUser(userA));
      // Continuous percentiles of [20, 40, 60] and [500, 700, 900]; the no-answer call has none.
      assert.equal(first.lookup_p50_ms, 40);
      assert.equal(first.lookup_p95_ms, 58);
      assert.equal(first.first_audio_p50_ms, 700);
      assert.equal(first.first_audio_p95_ms, 880);
      assert.equal(second.lookup_p50_ms, 10);
      assert.equal(second.first_audio_p95_ms, 300);
      assert.equal(second.success_rate, 1);
    });

    await t.step("operator_daily_bookings counts bookings per local day", async () => {
      const rows = await withRole(
        sql,
        "authenticated",
        asUser(userA),
        (tx) => tx`select * from public.operator_daily_bookings order by day`,
      );
      assert.deepEqual(
        rows.map((row) => ({ ...row, day: isoDay(row.day) })),
        [{
          org_id: orgA.id,
          org_name: "Org A",
          day: "2026-03-10",
          bookings: 2,
          bookings_by_phone: 1,
          cancelled_since: 1,
        }],
      );
    });

    await t.step("members see only their own org through every view", async () => {
      const views = ["operator_daily_calls", "operator_daily_bookings", "operator_call_timeline"];
      for (const view of views) {
        const orgsSeenBy = async (userId: string) => {
          const rows = await withRole(
            sql,
            "authenticated",
            asUser(userId),
            (tx) => tx.unsafe<{ org_id: string }[]>(`select distinct org_id from public.${view}`),
          );
          return rows.map((row) => row.org_id).filter((id) => ours.has(id)).sort();
        };
        assert.deepEqual(await orgsSeenBy(userA), [orgA.id], view);
        assert.deepEqual(
          await orgsSeenBy(userB),
          view === "operator_daily_bookings" ? [] : [
            orgB.id,
          ],
          view,
        );
        assert.deepEqual(await orgsSeenBy(outsider), [], view);
        const all = await withRole(
          sql,
          "service_role",
          { role: "service_role" },
          (tx) => tx.unsafe<{ org_id: string }[]>(`select distinct org_id from public.${view}`),
        );
        const expected = view === "operator_daily_bookings" ? [orgA.id] : [orgA.id, orgB.id];
        assert.deepEqual(
          all.map((row) => row.org_id).filter((id) => ours.has(id)).sort(),
          expected.sort(),
          view,
        );
      }
    });

    await t.step("anon cannot read the views", async () => {
      for (const view of ["operator_daily_calls", "operator_daily_bookings"]) {
        await assert.rejects(
          withRole(
            sql,
            "anon",
            { role: "anon" },
            (tx) => tx.unsafe(`select * from public.${view}`),
          ),
          { code: "42501" },
          view,
        );
      }
      await assert.rejects(
        withRole(sql, "anon", { role: "anon" }, (tx) => loadTimeline(tx, booked)),
        { code: "42501" },
      );
    });

    await t.step("the views are security_invoker and granted to authenticated only", async () => {
      const rows = await sql<{ relname: string; reloptions: string[] | null }[]>`
        select c.relname, c.reloptions from pg_catalog.pg_class c
        join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public' and c.relkind = 'v' and c.relname like 'operator_%'
        order by c.relname`;
      assert.equal(rows.length, 3);
      for (const row of rows) {
        assert.ok(row.reloptions?.includes("security_invoker=true"), row.relname);
        const [grants] = await sql<{ anon: boolean; authenticated: boolean }[]>`
          select has_table_privilege('anon', ${`public.${row.relname}`}, 'select') as anon,
            has_table_privilege('authenticated', ${`public.${row.relname}`}, 'select')
              as authenticated`;
        assert.deepEqual(grants, { anon: false, authenticated: true }, row.relname);
      }
    });

    await t.step("loadTimeline() finds a call by CallSid and by traceId, in order", async () => {
      const bySid = await loadTimeline(sql, booked);
      const byTrace = await loadTimeline(sql, traceId);
      assert.deepEqual(byTrace, bySid);
      assert.deepEqual(
        bySid.map((row) => `${row.source}:${row.label}`),
        [
          "call:call",
          "event:call_incoming",
          "event:stream_started",
          "turn:assistant",
          "turn:caller",
          "tool:tool_call",
          "appointment:booked",
          "event:call_status",
        ],
      );
      const call = bySid[0];
      assert.equal(call.callSid, booked);
      assert.equal(call.traceId, traceId);
      assert.equal(call.orgId, orgA.id);
      assert.equal(call.at, DAY_ONE);
      assert.equal(call.detail.outcome, "booked");
      assert.equal(call.detail.lookup_ms, 20);
      assert.equal(bySid[3].detail.text, "Harbor Dental, how can I help?");
      const sms = (await loadTimeline(sql, recovered)).filter((row) => row.source === "sms");
      assert.equal(sms.length, 1);
      assert.equal(sms[0].label, "recovery");
      assert.equal(sms[0].detail.status, "delivered");
      assert.deepEqual(await loadTimeline(sql, "CA-no-such-call"), []);
    });

    await t.step("loadTimeline() shows a member their own org's calls only", async () => {
      const asA = <T>(fn: (tx: postgres.TransactionSql) => Promise<T>) =>
        withRole(sql, "authenticated", asUser(userA), fn);
      assert.ok((await asA((tx) => loadTimeline(tx, booked))).length > 0);
      assert.deepEqual(await asA((tx) => loadTimeline(tx, otherOrgCall)), []);
      assert.deepEqual(
        await withRole(sql, "authenticated", asUser(outsider), (tx) => loadTimeline(tx, booked)),
        [],
      );
    });

    await t.step("renderTimeline() prints the loaded call with phone numbers masked", async () => {
      const text = renderTimeline(await loadTimeline(sql, booked));
      const lines = text.trimEnd().split("\n");
      assert.match(lines[0], new RegExp(`^Call ${booked}  trace ${traceId}  org ${orgA.id}$`));
      assert.match(lines[1], /from \*\*\*\d{4} to \*\*\*\d{4} · status completed · outcome booked/);
      assert.match(lines[2], /lookup 20 ms · first audio 500 ms · barge-ins 0 · tool calls 1/);
      assert.match(
        lines[3],
        /^2026-03-10T14:00:00\.000Z\s+\+0\.0s\s+event\s+call_incoming\s+status=ringing/,
      );
      assert.ok(
        lines.some((line) =>
          /\+20\.0s\s+tool\s+tool_call\s+.*payload\.name=book_appointment/.test(line)
        ),
      );
      assert.ok(
        lines.some((line) => line.includes('"I\'d like a cleaning, my number is ***9876"')),
      );
      assert.doesNotMatch(text, /\+1555\d{7}/);
    });

    await t.step("call_timeline.ts prints a timeline, JSON, or a clear miss", async () => {
      const run = async (...args: string[]) => {
        const output = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", "scripts/call_timeline.ts", ...args],
          env: { DATABASE_URL: "", SUPABASE_DB_URL: "" },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
        return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
      };
      const text = await run(traceId, "--database-url", db.url);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, new RegExp(`^Call ${booked}`));
      const json = await run(booked, `--database-url=${db.url}`, "--json");
      assert.equal(json.code, 0, json.stderr);
      const rows = JSON.parse(json.stdout) as TimelineRow[];
      assert.equal(rows[0].source, "call");
      assert.equal(rows.length, 8);
      const missing = await run("CA" + "f".repeat(32), "--database-url", db.url);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /No call with CallSid or traceId CAf+/);
      const noUrl = await run(booked);
      assert.equal(noUrl.code, 2);
      assert.match(noUrl.stderr, /pass --database-url or set DATABASE_URL/);
    });
  } finally {
    await db.drop();
  }
});

Deno.test("renderTimeline() lays out each call with a header, a summary and offsets", () => {
  const base = {
    callId: "c1",
    callSid: "CA" + "1".repeat(32),
    traceId: "trace-1",
    orgId: null,
  };
  const rows: TimelineRow[] = [
    {
      ...base,
      at: "2026-03-10T14:00:01.500Z",
      source: "sms",
      label: "recovery",
      detail: { to: "+15551230001", status: "sent", body: "Hi Jane, call +15550100000 back" },
      seq: 0,
    },
    {
      ...base,
      at: "2026-03-10T14:00:00.000Z",
      source: "call",
      label: "call",
      detail: { from: "+15551230001", to: "+15550100000", status: "failed", outcome: "recovered" },
      seq: 0,
    },
  ];
  assert.equal(
    renderTimeline(rows),
    [
      `Call ${base.callSid}  trace trace-1  no org`,
      "  from ***0001 to ***0000 · status failed · outcome recovered",
      "  lookup ? · first audio ? · barge-ins 0 · tool calls 0 · tokens 0 in / 0 out",
      '2026-03-10T14:00:01.500Z     +1.5s  sms          recovery                to=***0001 status=sent "Hi Jane, call ***0000 back"',
      "",
    ].join("\n"),
  );
  assert.match(renderTimeline(rows, { maskPhones: false }), /to=\+15551230001/);
  assert.equal(renderTimeline([]), "");
});

function isoDay(value: unknown): string {
  return value instanceof Date ? value.toISOString().slice(0, 10) : String(value);
}
