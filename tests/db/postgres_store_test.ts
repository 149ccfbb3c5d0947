/**
 * The postgres adapter against the store contract, plus the SQL it sends.
 * @module
 */
import assert from "node:assert/strict";
import {
  buildRpcQuery,
  createPostgresStore,
} from "../../supabase/functions/_shared/store/postgres_store.ts";
import { runStoreContract } from "./store_contract.ts";

runStoreContract(
  "createPostgresStore() implements the store contract",
  (db) => createPostgresStore(db.url, { maxConnections: 2 }),
);

Deno.test("buildRpcQuery() casts named arguments and aggregates set results", () => {
  assert.deepEqual(buildRpcQuery("lookup_caller", { p_to: "+1", p_from: "+2" }), {
    text: "select public.lookup_caller(p_to => $1::text, p_from => $2::text) as result",
    values: ["+1", "+2"],
  });
  assert.deepEqual(buildRpcQuery("append_call_turns", { p_call_sid: "CA1", p_turns: [] }), {
    text: "select public.append_call_turns(p_call_sid => $1::text, p_turns => $2::text::jsonb)" +
      " as result",
    values: ["CA1", "[]"],
  });
  assert.equal(
    buildRpcQuery("available_slots", { p_org: "o", p_day: "2030-01-01" }).text,
    "select coalesce(json_agg(r), '[]'::json) as result from " +
      "public.available_slots(p_org => $1::uuid, p_day => $2::date) r",
  );
  assert.throws(() => buildRpcQuery("get_call", { p_nope: 1 }), /unknown parameter p_nope/);
});
