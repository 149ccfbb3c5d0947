/**
 * createStore() picks the adapter from configuration and names what is missing.
 * @module
 */
import assert from "node:assert/strict";
import { createStore } from "../../supabase/functions/_shared/store/create_store.ts";

Deno.test("createStore() builds the postgres adapter from databaseUrl", async () => {
  const store = createStore({
    storeAdapter: "postgres",
    databaseUrl: "postgres://postgres@127.0.0.1:1/none",
  });
  assert.equal(typeof store.lookupCaller, "function");
  await store.close();
});

Deno.test("createStore() builds the supabase adapter from Config's key name", async () => {
  const requests: string[] = [];
  const store = createStore({
    storeAdapter: "supabase",
    supabaseUrl: "https://ref.supabase.test",
    supabaseServiceRoleKey: "service-role-key",
    fetch: (input) => {
      requests.push(String(input instanceof Request ? input.url : input));
      return Promise.resolve(Response.json(null));
    },
  });
  assert.equal(await store.getCall("CA1"), null);
  assert.deepEqual(requests, ["https://ref.supabase.test/rest/v1/rpc/get_call"]);
  await store.close();
});

Deno.test("createStore() names the missing setting", () => {
  assert.throws(
    () => createStore({ storeAdapter: "postgres", databaseUrl: null }),
    /databaseUrl is missing/,
  );
  assert.throws(
    () => createStore({ storeAdapter: "supabase", supabaseUrl: "https://x.test" }),
    /serviceRoleKey is missing/,
  );
});
