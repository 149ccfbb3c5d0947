/**
 * Store over a direct PostgreSQL connection (npm `postgres`), speaking the RPCs of
 * `supabase/migrations` as `select public.<fn>(p_x => $1::type, ...)`. Used for local runs and
 * tests, and on Supabase with `SUPABASE_DB_URL` (the `postgres` role, which owns the tables).
 * @module
 */
import postgres from "postgres";
import {
  createRpcStore,
  RPC_SIGNATURES,
  type RpcName,
  type RpcTransport,
  StoreError,
} from "./rpc.ts";
import type { Store } from "./types.ts";

/** Options of `createPostgresStore`. */
export interface PostgresStoreOptions {
  /** Pool size. Defaults to 5: a function instance serves few concurrent calls. */
  maxConnections?: number;
  /** Closes connections idle this long. Defaults to 20 s, below poolers' idle cut-offs. */
  idleTimeoutSeconds?: number;
  /** Gives up connecting after this long. Defaults to 10 s. */
  connectTimeoutSeconds?: number;
}

const DEFAULT_MAX_CONNECTIONS = 5;
const DEFAULT_IDLE_TIMEOUT_SECONDS = 20;
const DEFAULT_CONNECT_TIMEOUT_SECONDS = 10;

/**
 * Builds the SQL that calls `name` with the given named arguments, each cast to its declared
 * type so overload resolution never depends on how the driver types a JavaScript value.
 */
export function buildRpcQuery(
  name: RpcName,
  args: Record<string, unknown>,
): { text: string; values: unknown[] } {
  const signature: { parameters: Record<string, string>; returnsSet?: boolean } =
    RPC_SIGNATURES[name];
  const values: unknown[] = [];
  const named: string[] = [];
  for (const [parameter, value] of Object.entries(args)) {
    const type = signature.parameters[parameter];
    if (type === undefined) {
      throw new StoreError(`Cannot call ${name}: unknown parameter ${parameter}`, {
        code: "invalid_argument",
      });
    }
    if (type === "jsonb") {
      // Sent as text and cast: the driver would JSON-encode a jsonb-typed parameter again.
      values.push(value === null ? null : JSON.stringify(value));
      named.push(`${parameter} => $${values.length}::text::jsonb`);
    } else {
      values.push(value);
      named.push(`${parameter} => $${values.length}::${type}`);
    }
  }
  const call = `public.${name}(${named.join(", ")})`;
  // Set-returning functions come back as one JSON array, the shape PostgREST answers with.
  const text = signature.returnsSet
    ? `select coalesce(json_agg(r), '[]'::json) as result from ${call} r`
    : `select ${call} as result`;
  return { text, values };
}

/**
 * A `Store` on a direct PostgreSQL connection pool.
 * @param url a `postgres://` URL; on Supabase, `SUPABASE_DB_URL`
 * @param options pool settings
 */
export function createPostgresStore(url: string, options: PostgresStoreOptions = {}): Store {
  const sql = postgres(url, {
    max: options.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
    idle_timeout: options.idleTimeoutSeconds ?? DEFAULT_IDLE_TIMEOUT_SECONDS,
    connect_timeout: options.connectTimeoutSeconds ?? DEFAULT_CONNECT_TIMEOUT_SECONDS,
    // Unnamed statements work through transaction poolers (Supavisor on port 6543) as well as
    // direct connections; our statements are one-line calls, so re-planning costs little.
    prepare: false,
    onnotice: () => {},
    connection: { application_name: "voice-frontdoor-store" },
  });
  const transport: RpcTransport = {
    async call(name, args) {
      const { text, values } = buildRpcQuery(name, args);
      try {
        // deno-lint-ignore no-explicit-any
        const rows = await sql.unsafe(text, values as any[]);
        return rows[0]?.result ?? null;
      } catch (error) {
        throw toStoreError(name, error);
      }
    },
    async close() {
      await sql.end({ timeout: 5 });
    },
  };
  return createRpcStore(transport);
}

function toStoreError(name: string, error: unknown): StoreError {
  const code = typeof error === "object" && error !== null && "code" in error
    ? String((error as { code: unknown }).code)
    : "connection_error";
  const message = error instanceof Error ? error.message : String(error);
  return new StoreError(`Cannot call ${name}: ${message}`, { code, cause: error });
}
