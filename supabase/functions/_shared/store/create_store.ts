/**
 * Chooses the store adapter from configuration: `postgres` (a direct connection) or `supabase`
 * (supabase-js over the Data API). Both speak the same RPCs, see `rpc.ts`.
 * @module
 */
import { createPostgresStore, type PostgresStoreOptions } from "./postgres_store.ts";
import { createSupabaseStore } from "./supabase_store.ts";
import type { Store } from "./types.ts";

/** What `createStore` reads; `Config` from `../config.ts` satisfies it. */
export interface StoreConfig {
  storeAdapter: "postgres" | "supabase";
  databaseUrl?: string | null;
  supabaseUrl?: string | null;
  /** The service role key (also accepted as `supabaseServiceRoleKey`, the name in `Config`). */
  serviceRoleKey?: string | null;
  supabaseServiceRoleKey?: string | null;
  /** Pool settings of the postgres adapter. */
  postgres?: PostgresStoreOptions;
  /** fetch of the supabase adapter; defaults to the global one. */
  fetch?: typeof fetch;
}

/**
 * Builds the configured store.
 * @param config adapter choice and its connection settings
 * @throws Error naming the missing setting
 */
export function createStore(config: StoreConfig): Store {
  if (config.storeAdapter === "postgres") {
    if (!config.databaseUrl) {
      throw new Error("Cannot create postgres store: databaseUrl is missing");
    }
    return createPostgresStore(config.databaseUrl, config.postgres);
  }
  if (config.storeAdapter === "supabase") {
    const serviceRoleKey = config.serviceRoleKey ?? config.supabaseServiceRoleKey;
    if (!config.supabaseUrl || !serviceRoleKey) {
      throw new Error("Cannot create supabase store: supabaseUrl or serviceRoleKey is missing");
    }
    return createSupabaseStore({ url: config.supabaseUrl, serviceRoleKey, fetch: config.fetch });
  }
  throw new Error(`Cannot create store: unknown adapter ${String(config.storeAdapter)}`);
}
