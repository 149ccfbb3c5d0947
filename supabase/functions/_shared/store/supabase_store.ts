/**
 * Store over Supabase's Data API (PostgREST) with supabase-js: each operation is one
 * `POST /rest/v1/rpc/<fn>` with the `p_` arguments as a JSON body, authenticated with the service
 * role key. The hosted default: no database connection to hold open per function instance.
 * @module
 */
import { createClient } from "@supabase/supabase-js";
import { createRpcStore, type RpcTransport, StoreError } from "./rpc.ts";
import type { Store } from "./types.ts";

/** Options of `createSupabaseStore`. */
export interface SupabaseStoreOptions {
  /** The project URL, e.g. `SUPABASE_URL`. */
  url: string;
  /** The service role key: the RPCs are executable by `service_role` only. */
  serviceRoleKey: string;
  /** Defaults to the global `fetch`; tests inject one that records requests. */
  fetch?: typeof fetch;
}

/**
 * A `Store` that calls the RPCs through supabase-js `.rpc()`.
 * @param options project URL, service role key and optional fetch
 */
export function createSupabaseStore(options: SupabaseStoreOptions): Store {
  const client = createClient(options.url, options.serviceRoleKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    global: options.fetch ? { fetch: options.fetch } : {},
  });
  const transport: RpcTransport = {
    async call(name, args) {
      let response;
      try {
        response = await client.rpc(name, args);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        throw new StoreError(`Cannot call ${name}: ${message}`, {
          code: "connection_error",
          cause: error,
        });
      }
      if (response.error) {
        throw new StoreError(`Cannot call ${name}: ${response.error.message}`, {
          code: response.error.code || String(response.status),
          cause: response.error,
        });
      }
      return response.data ?? null;
    },
    close() {
      return Promise.resolve();
    },
  };
  return createRpcStore(transport);
}
