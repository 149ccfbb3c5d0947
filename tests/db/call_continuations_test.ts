/**
 * The continuation RPCs of `20261122002000_call_continuations.sql` on a real database: a handover
 * is taken by `<Connect action>` once and claimed by the next stream once, only for its own call
 * and while fresh; old rows are cleaned up; and nobody but the service role can read or call them.
 * @module
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import { createTestDatabase, withRole } from "../support/test_db.ts";
import { createOrg, randomCallSid, randomPhone, rpc, startCall } from "./fixtures.ts";

/** `save_call_continuation` with the state as JSON text cast to jsonb. */
async function saveContinuation(
  sql: postgres.Sql | postgres.TransactionSql,
  callSid: string,
  traceId: string | null,
  stateJson: string,
): Promise<string> {
  const [row] = await sql`select public.save_call_continuation(
    ${callSid}::text, ${traceId}::text, ${stateJson}::text::jsonb) as id`;
  return row.id as string;
}

Deno.test("call continuations are taken once, claimed once, for their call, while fresh", async () => {
  const db = await createTestDatabase({ seed: true });
  const sql = db.sql;
  try {
    const org = await createOrg(sql);
    const callSid = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
    const save = (state: Record<string, unknown>) =>
      saveContinuation(sql, callSid, "trace-1", JSON.stringify(state));
    const older = await save({ n: 1 });
    const newer = await save({ n: 2 });
    // The newest pending one is taken; an older one nobody took stays claimable by its token.
    const taken = await rpc(sql, "take_call_handover", [callSid]);
    assert.deepEqual(taken, { continuation_id: newer, trace_id: "trace-1", kind: "handover" });
    const next = await rpc(sql, "take_call_handover", [callSid]);
    assert.deepEqual(next, { continuation_id: older, trace_id: "trace-1", kind: "handover" });
    assert.equal(await rpc(sql, "take_call_handover", [callSid]), null);
    assert.deepEqual(await rpc(sql, "claim_call_continuation", [newer, callSid]), { n: 2 });
    assert.equal(await rpc(sql, "claim_call_continuation", [newer, callSid]), null);

    // A claimed continuation is never taken again; a stale one is neither taken nor claimed.
    const stale = await save({ n: 3 });
    await sql`update public.call_continuations set created_at = now() - interval '11 minutes'
      where id = ${stale}`;
    assert.equal(await rpc(sql, "take_call_handover", [callSid]), null);
    assert.equal(await rpc(sql, "claim_call_continuation", [stale, callSid]), null);

    // A call with no event yet gets a bare row, as transcripts do.
    const bare = randomCallSid();
    const id = await saveContinuation(sql, bare, null, "{}");
    assert.deepEqual(await rpc(sql, "claim_call_continuation", [id, bare]), {});

    // Rows older than an hour are deleted by the next save.
    await sql`update public.call_continuations set created_at = now() - interval '2 hours'
      where id = ${older}`;
    await save({ n: 4 });
    const [{ count }] = await sql`select count(*)::int as count from public.call_continuations
      where id = ${older}`;
    assert.equal(count, 0);

    await assert.rejects(saveContinuation(sql, callSid, null, "[1, 2]"), /jsonb object/);
    await assert.rejects(
      saveContinuation(sql, callSid, null, JSON.stringify({ big: "x".repeat(300_000) })),
      /256 KiB/,
    );
  } finally {
    await db.drop();
  }
});

Deno.test("call continuations are closed to anon and authenticated", async () => {
  const db = await createTestDatabase({ seed: true });
  const sql = db.sql;
  try {
    const org = await createOrg(sql);
    const callSid = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
    const id = await saveContinuation(sql, callSid, "t", '{"secret": 1}');
    for (const role of ["anon", "authenticated"] as const) {
      const claims = role === "authenticated"
        ? { sub: crypto.randomUUID(), role: "authenticated" }
        : { role: "anon" };
      await assert.rejects(
        withRole(sql, role, claims, (tx) => tx`select * from public.call_continuations`),
        /permission denied/,
        `${role} reads no continuation`,
      );
      await assert.rejects(
        withRole(sql, role, claims, (tx) => saveContinuation(tx, callSid, "t", "{}")),
        /permission denied/,
        `${role} cannot save a continuation`,
      );
      for (
        const [name, args] of [
          ["take_call_handover", [callSid]],
          ["claim_call_continuation", [id, callSid]],
        ] as const
      ) {
        await assert.rejects(
          withRole(sql, role, claims, (tx) => rpc(tx, name, [...args])),
          /permission denied/,
          `${role} cannot call ${name}`,
        );
      }
    }
    const read = await withRole(
      sql,
      "service_role",
      { role: "service_role" },
      (tx) => rpc(tx, "claim_call_continuation", [id, callSid]),
    );
    assert.deepEqual(read, { secret: 1 });
  } finally {
    await db.drop();
  }
});
