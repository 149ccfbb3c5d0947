/**
 * Speaks the store contract (`Store`, the product's Postgres RPCs) with database outages on demand,
 * for fault tests: during an outage chosen methods go to a real postgres.js store whose server is
 * unreachable, so callers see the errors and delays a real outage gives (`refused`: a closed
 * port, the connection is refused at once; `blackhole`: a port that accepts TCP and never answers,
 * the client waits for its connect timeout). Outside an outage every call goes to the healthy store.
 * @module
 */
import { createPostgresStore } from "../../supabase/functions/_shared/store/postgres_store.ts";
import type { Store } from "../../supabase/functions/_shared/store/types.ts";

/** How the database is unreachable. */
export type OutageMode = "refused" | "blackhole";

/** A store method name (everything but `close`). */
export type StoreMethod = Exclude<keyof Store, "close">;

/** One call the faulty store routed. */
export interface RoutedStoreCall {
  method: StoreMethod;
  /** `performance.now()` when it was made. */
  atMs: number;
  /** Where it went: the healthy store or an unreachable one. */
  route: "healthy" | OutageMode;
  /** Settled state, filled in when the call settles. */
  outcome: "pending" | "resolved" | "rejected";
}

/** Options of `createFaultyStore`. */
export interface FaultyStoreOptions {
  /** Connect timeout of the unreachable stores, in seconds. Defaults to 2. */
  connectTimeoutSeconds?: number;
}

/** A store with outages on demand. */
export interface FaultyStore extends Store {
  /**
   * Starts an outage: the given methods (default: all) go to an unreachable server until
   * `restore()`, or until `forMs` has passed when given.
   */
  outage(options: { mode: OutageMode; methods?: readonly StoreMethod[]; forMs?: number }): void;
  /** Ends the outage. */
  restore(): void;
  /** True while an outage is on. */
  readonly down: boolean;
  /** Every call, in order. */
  readonly calls: readonly RoutedStoreCall[];
  /** Resolves when no call is pending. */
  settled(): Promise<void>;
}

/**
 * Wraps `healthy` with outages on demand. `close()` closes the unreachable stores and the
 * blackhole listener, not `healthy` (its owner closes it).
 * @param healthy the store used outside outages
 * @param options connect timeout of the unreachable stores
 */
export function createFaultyStore(healthy: Store, options: FaultyStoreOptions = {}): FaultyStore {
  const connectTimeoutSeconds = options.connectTimeoutSeconds ?? 2;
  // A port nobody listens on: bind one, note it, release it.
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedPort = (probe.addr as Deno.NetAddr).port;
  probe.close();
  // A port that accepts connections and never says a word (a network partition, a hung server).
  const blackhole = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const blackholePort = (blackhole.addr as Deno.NetAddr).port;
  const held = new Set<Deno.Conn>();
  const accepting = (async () => {
    try {
      for await (const conn of blackhole) held.add(conn);
    } catch {
      // Listener closed.
    }
  })();
  const unreachable: Record<OutageMode, Store> = {
    refused: createPostgresStore(`postgres://postgres@127.0.0.1:${closedPort}/postgres`, {
      maxConnections: 4,
      connectTimeoutSeconds,
    }),
    blackhole: createPostgresStore(`postgres://postgres@127.0.0.1:${blackholePort}/postgres`, {
      maxConnections: 4,
      connectTimeoutSeconds,
    }),
  };
  let outage: { mode: OutageMode; methods: ReadonlySet<StoreMethod>; untilMs: number } | null =
    null;
  const calls: RoutedStoreCall[] = [];
  const pending = new Set<Promise<unknown>>();

  function routeOf(method: StoreMethod): "healthy" | OutageMode {
    if (outage === null) return "healthy";
    if (performance.now() >= outage.untilMs) {
      outage = null;
      return "healthy";
    }
    return outage.methods.has(method) ? outage.mode : "healthy";
  }

  // Every method the healthy store has, so methods added to the contract later are covered too.
  const methods = Object.keys(healthy).filter((key) =>
    key !== "close" && typeof (healthy as unknown as Record<string, unknown>)[key] === "function"
  ) as StoreMethod[];
  const wrapped = {} as Record<StoreMethod, (...args: unknown[]) => Promise<unknown>>;
  for (const method of methods) {
    wrapped[method] = (...args: unknown[]) => {
      const route = routeOf(method);
      const target = route === "healthy" ? healthy : unreachable[route];
      const entry: RoutedStoreCall = { method, atMs: performance.now(), route, outcome: "pending" };
      calls.push(entry);
      const fn = target[method] as (...args: unknown[]) => Promise<unknown>;
      const promise = fn.apply(target, args);
      const tracked = promise.then(
        () => {
          entry.outcome = "resolved";
        },
        () => {
          entry.outcome = "rejected";
        },
      );
      pending.add(tracked);
      tracked.finally(() => pending.delete(tracked));
      return promise;
    };
  }

  return {
    ...(wrapped as unknown as Omit<Store, "close">),
    outage({ mode, methods: only, forMs }) {
      outage = {
        mode,
        methods: new Set(only ?? methods),
        untilMs: forMs === undefined ? Infinity : performance.now() + forMs,
      };
    },
    restore() {
      outage = null;
    },
    get down() {
      return outage !== null && performance.now() < outage.untilMs;
    },
    calls,
    async settled() {
      while (pending.size > 0) await Promise.allSettled([...pending]);
    },
    async close() {
      await Promise.allSettled([...pending]);
      await unreachable.refused.close();
      await unreachable.blackhole.close();
      blackhole.close();
      await accepting;
      for (const conn of held) {
        try {
          conn.close();
        } catch {
          // Already closed by the client.
        }
      }
    },
  };
}
