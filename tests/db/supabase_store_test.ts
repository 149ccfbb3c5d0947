/**
 * The supabase-js adapter against the store contract. No PostgREST server can run here, so a fake
 * `fetch` plays it: it checks each request is what PostgREST expects (`POST /rest/v1/rpc/<fn>`,
 * `apikey` and `Authorization: Bearer` headers, the `p_` arguments as a JSON object) and answers
 * by running the function on the test database as `service_role`, the way PostgREST would.
 * @module
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import { createSupabaseStore } from "../../supabase/functions/_shared/store/supabase_store.ts";
import { createTestDatabase } from "../support/test_db.ts";
import { runStoreContract } from "./store_contract.ts";

const SUPABASE_URL = "https://project-ref.supabase.test";
// A legacy (JWT) service role key: header.payload.signature, never verified by the fake.
const SERVICE_ROLE_KEY = [
  btoa(JSON.stringify({ alg: "HS256", typ: "JWT" })),
  btoa(JSON.stringify({ role: "service_role", iss: "supabase" })),
  "signature",
].join(".");

/** One request the fake received. */
interface RecordedRequest {
  method: string;
  url: string;
  headers: Headers;
  body: Record<string, unknown>;
}

interface FunctionShape {
  parameters: Map<string, string>;
  returnsSet: boolean;
}

/**
 * A `fetch` that answers PostgREST RPC requests from the database. Arguments are read with
 * `json_to_record` using the function's declared parameter types, as PostgREST does.
 */
function createPostgrestFake(sql: postgres.Sql, requests: RecordedRequest[]): typeof fetch {
  const shapes = new Map<string, FunctionShape>();
  async function shapeOf(name: string): Promise<FunctionShape | null> {
    if (shapes.has(name)) return shapes.get(name)!;
    const rows = await sql`
      select a.name, pg_catalog.format_type(a.type, null) as type, p.proretset
      from pg_catalog.pg_proc p
      join pg_catalog.pg_namespace n on n.oid = p.pronamespace
      cross join lateral unnest(p.proargnames[1:p.pronargs], p.proargtypes::oid[])
        as a (name, type)
      where n.nspname = 'public' and p.proname = ${name}`;
    if (rows.length === 0) return null;
    const shape = {
      parameters: new Map(rows.map((row) => [row.name as string, row.type as string])),
      returnsSet: rows[0].proretset as boolean,
    };
    shapes.set(name, shape);
    return shape;
  }

  return async (input, init) => {
    const request = new Request(input, init);
    const body = JSON.parse(await request.text());
    requests.push({ method: request.method, url: request.url, headers: request.headers, body });
    const url = new URL(request.url);
    const match = /^\/rest\/v1\/rpc\/([a-z_]+)$/.exec(url.pathname);
    const shape = match ? await shapeOf(match[1]) : null;
    if (!match || !shape || request.method !== "POST") {
      return Response.json({ code: "PGRST202", message: "Could not find the function" }, {
        status: 404,
      });
    }
    const names = Object.keys(body);
    if (names.some((name) => !shape.parameters.has(name))) {
      return Response.json({ code: "PGRST202", message: "Unknown argument" }, { status: 404 });
    }
    const record = names.map((name) => `${name} ${shape.parameters.get(name)}`).join(", ");
    const args = names.map((name) => `${name} => r.${name}`).join(", ");
    const source = names.length > 0
      ? `json_to_record($1::text::json) as r (${record})`
      : "(select 1) as r";
    const query = shape.returnsSet
      ? `select coalesce(json_agg(f), '[]'::json) as result
         from ${source} cross join lateral public.${match[1]}(${args}) f`
      : `select to_json(public.${match[1]}(${args})) as result from ${source}`;
    try {
      const result = await sql.begin(async (tx) => {
        await tx`select set_config('request.jwt.claims', '{"role":"service_role"}', true)`;
        await tx.unsafe("set local role service_role");
        const rows = await tx.unsafe(query, names.length > 0 ? [JSON.stringify(body)] : []);
        return rows[0].result;
      });
      return new Response(JSON.stringify(result), {
        status: 200,
        headers: { "content-type": "application/json; charset=utf-8" },
      });
    } catch (error) {
      const { code, message } = error as { code: string; message: string };
      return Response.json({ code, message, details: null, hint: null }, { status: 400 });
    }
  };
}

runStoreContract(
  "createSupabaseStore() implements the store contract",
  (db) =>
    createSupabaseStore({
      url: SUPABASE_URL,
      serviceRoleKey: SERVICE_ROLE_KEY,
      fetch: createPostgrestFake(db.sql, []),
    }),
);

Deno.test("createSupabaseStore() sends PostgREST RPC requests", async () => {
  const db = await createTestDatabase({ seed: true });
  const requests: RecordedRequest[] = [];
  const store = createSupabaseStore({
    url: SUPABASE_URL,
    serviceRoleKey: SERVICE_ROLE_KEY,
    fetch: createPostgrestFake(db.sql, requests),
  });
  try {
    const context = await store.lookupCaller("+15550100000", "+15551230001");
    assert.equal(context?.client?.firstName, "Jane");
    const [lookup] = requests;
    assert.equal(lookup.method, "POST");
    assert.equal(lookup.url, `${SUPABASE_URL}/rest/v1/rpc/lookup_caller`);
    assert.equal(lookup.headers.get("apikey"), SERVICE_ROLE_KEY);
    assert.equal(lookup.headers.get("authorization"), `Bearer ${SERVICE_ROLE_KEY}`);
    assert.match(lookup.headers.get("content-type") ?? "", /^application\/json/);
    assert.deepEqual(lookup.body, { p_to: "+15550100000", p_from: "+15551230001" });

    // Arguments left out stay out of the body, so the SQL defaults apply.
    const callSid = `CA${crypto.randomUUID().replaceAll("-", "")}`;
    await store.recordCallEvent({ callSid, idempotencyKey: `${callSid}:1`, kind: "call_incoming" });
    assert.equal(requests[1].url, `${SUPABASE_URL}/rest/v1/rpc/record_call_event`);
    assert.deepEqual(requests[1].body, {
      p_call_sid: callSid,
      p_idempotency_key: `${callSid}:1`,
      p_kind: "call_incoming",
    });

    await store.appendCallTurns(callSid, [{ sequence: 0, speaker: "caller", text: "Hi" }]);
    assert.deepEqual(requests[2].body, {
      p_call_sid: callSid,
      p_turns: [{ sequence: 0, speaker: "caller", text: "Hi", start_ms: null, end_ms: null }],
    });

    await store.availableSlots("00000000-0000-4000-8000-000000000001", "2030-03-11");
    assert.equal(requests[3].url, `${SUPABASE_URL}/rest/v1/rpc/available_slots`);
    assert.deepEqual(requests[3].body, {
      p_org: "00000000-0000-4000-8000-000000000001",
      p_day: "2030-03-11",
    });
  } finally {
    await store.close();
    await db.drop();
  }
});
