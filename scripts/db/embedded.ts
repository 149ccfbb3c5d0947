/**
 * Speaks the PostgreSQL wire protocol (v3) on a local TCP port, answered by PGlite (Postgres
 * compiled to WASM, in this process): a throwaway Postgres for tests and scripts when no
 * `DATABASE_URL` is given.
 *
 * PGlite runs one backend with one session. `@electric-sql/pglite-socket` frames each client's
 * messages (startup, SSL refusal, cancel) and multiplexes several sockets onto that session. Its
 * stock scheduler only keeps a client exclusive inside an explicit `begin ... commit`, so
 * extended-protocol messages of different clients interleave between `Parse` and `Sync` (seen with
 * postgres.js: `P D H` of one client, then another client's whole query, then `B E S` of the
 * first). One client's error then makes the backend discard the other's messages until a `Sync`,
 * and unnamed statements and portals get overwritten. {@link SessionScheduler} replaces it: a
 * client keeps the session from its first message until the backend reports `ReadyForQuery` idle.
 *
 * What stays different from a real server: all clients share one session. Session-level state
 * (`set` without `local`, `set role`, temp tables, advisory locks, prepared statement names) is
 * visible to every client, and a client holding a transaction open blocks the others until it
 * ends. Use `set local` inside transactions. One database per instance: `create database` succeeds
 * but clients always land in `postgres`. No TLS (clients must not require it), no authentication,
 * no cancel requests.
 *
 * @module
 */

import { PGlite } from "@electric-sql/pglite";
import { btree_gist } from "@electric-sql/pglite/contrib/btree_gist";
import { pgcrypto } from "@electric-sql/pglite/contrib/pgcrypto";
import { uuid_ossp } from "@electric-sql/pglite/contrib/uuid_ossp";
import { PGLiteSocketHandler } from "@electric-sql/pglite-socket";
import { createServer, type Server, type Socket } from "node:net";

/**
 * Where PGlite data directory dumps are cached across processes: the fresh `initdb` result here,
 * prepared databases by tests/support/test_db.ts. `initdb` in WASM takes 5 to 10 s; loading a dump
 * takes about 1 s.
 */
export const EMBEDDED_CACHE_DIR = `${
  Deno.env.get("TMPDIR") ?? "/tmp"
}/voice-frontdoor-pglite-cache`;

/** Options of {@link startEmbeddedPostgres}. */
export interface EmbeddedPostgresOptions {
  /** TCP port on 127.0.0.1. Defaults to 0: the OS picks a free port (read it from `url`). */
  port?: number;
  /**
   * Directory holding the data files, kept after `stop()`. Defaults to none: the database lives
   * in memory and vanishes with `stop()`.
   */
  dataDir?: string;
  /**
   * A data directory dumped by `dumpDataDir()` to start from. Defaults to a fresh cluster (the
   * `initdb` result, cached in {@link EMBEDDED_CACHE_DIR}), unless `dataDir` is given.
   */
  loadDataDir?: Blob;
  /** Concurrent client connections accepted. Defaults to 100, Postgres's own default. */
  maxConnections?: number;
}

/** A running embedded Postgres. */
export interface EmbeddedPostgres {
  /** Connection URL: `postgres://postgres@127.0.0.1:<port>/postgres?sslmode=disable`. */
  readonly url: string;
  /** The port the server listens on. */
  readonly port: number;
  /**
   * Dumps the data directory as an uncompressed tarball for `loadDataDir`. Waits until no client
   * holds the session, so the dump sees committed state only.
   */
  dumpDataDir(): Promise<Blob>;
  /** Closes every client connection, stops listening and shuts PGlite down. Idempotent. */
  stop(): Promise<void>;
}

/**
 * The session's default search path. PGlite starts its one session with `search_path=public`
 * and, being a single session, never rereads the database-level setting bootstrap.sql makes
 * (`"$user", public, extensions`, as on Supabase). `supabase db push` sends `reset all` after each
 * migration, which would drop back to PGlite's value, so the embedded server starts with
 * Supabase's.
 */
const SEARCH_PATH = '"$user", public, extensions';

/** Extensions compiled into the embedded server: those the migrations may create. */
const EMBEDDED_EXTENSIONS = { btree_gist, pgcrypto, uuid_ossp };

const DEFAULT_MAX_CONNECTIONS = 100;
const LOOPBACK_HOST = "127.0.0.1";

/** Backend message type of `ReadyForQuery` ('Z'); its one-byte body is the transaction status. */
const READY_FOR_QUERY = 0x5a;
/** Transaction status 'I': idle, outside any transaction block. */
const STATUS_IDLE = 0x49;
/** Frontend message type of `Terminate` ('X'). PGlite ignores it; the socket close follows. */
const TERMINATE = 0x58;
/** A frontend `Sync` message: ends an extended-protocol sequence, clears an error state. */
const SYNC_MESSAGE = new Uint8Array([0x53, 0, 0, 0, 4]);
/** Length of a message header: type byte plus int32 length (which counts itself, not the type). */
const HEADER_BYTES = 5;
/** A frontend simple `Query` message ('Q', length, text, NUL) running `rollback`. */
const ROLLBACK_MESSAGE = (() => {
  const text = new TextEncoder().encode("rollback\0");
  const message = new Uint8Array(HEADER_BYTES + text.length);
  message[0] = 0x51; // 'Q'
  new DataView(message.buffer).setInt32(1, 4 + text.length);
  message.set(text, HEADER_BYTES);
  return message;
})();

/** Tracks backend message boundaries across chunks and remembers the last `ReadyForQuery`. */
class ReadyForQueryScanner {
  #header = new Uint8Array(HEADER_BYTES);
  #headerBytes = 0;
  #type = 0;
  #bodyBytesLeft = 0;
  /** Status byte of the last `ReadyForQuery` seen since `reset()`, or null. */
  lastStatus: number | null = null;

  reset(): void {
    this.lastStatus = null;
  }

  scan(chunk: Uint8Array): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#bodyBytesLeft > 0) {
        const take = Math.min(this.#bodyBytesLeft, chunk.length - offset);
        this.#bodyBytesLeft -= take;
        offset += take;
        if (this.#bodyBytesLeft === 0 && this.#type === READY_FOR_QUERY) {
          this.lastStatus = chunk[offset - 1];
        }
        continue;
      }
      this.#header[this.#headerBytes++] = chunk[offset++];
      if (this.#headerBytes === HEADER_BYTES) {
        this.#headerBytes = 0;
        this.#type = this.#header[0];
        this.#bodyBytesLeft = new DataView(this.#header.buffer).getInt32(1) - 4;
      }
    }
  }
}

interface QueuedMessage {
  clientId: number;
  message: Uint8Array;
  onData: (data: Uint8Array) => void;
  resolve: (bytes: number) => void;
  reject: (error: Error) => void;
}

/**
 * Grants PGlite's single session to one client at a time, from its first message until the
 * backend is idle again (`ReadyForQuery` with status 'I'). Implements the queue interface
 * `PGLiteSocketHandler` calls (`enqueue`, `clearQueueForHandler`, `clearTransactionIfNeeded`).
 */
class SessionScheduler {
  readonly #db: PGlite;
  readonly #scanner = new ReadyForQueryScanner();
  #queue: QueuedMessage[] = [];
  #owner: number | null = null;
  #running: Promise<void> | null = null;
  #idleWaiters: (() => void)[] = [];

  constructor(db: PGlite) {
    this.#db = db;
  }

  enqueue(clientId: number, message: Uint8Array, onData: (data: Uint8Array) => void) {
    return new Promise<number>((resolve, reject) => {
      this.#queue.push({ clientId, message, onData, resolve, reject });
      this.#pump();
    });
  }

  clearQueueForHandler(clientId: number): void {
    this.#queue = this.#queue.filter((queued) => {
      if (queued.clientId !== clientId) return true;
      queued.reject(new Error("Client disconnected"));
      return false;
    });
  }

  /** Called when a client goes away: hands the session back clean if that client held it. */
  async clearTransactionIfNeeded(clientId: number): Promise<void> {
    if (this.#owner !== clientId) return;
    // Queued on PGlite's lock before any other client's next message, so nothing of theirs runs
    // in between.
    await this.#db.runExclusive(() => this.#resetSession());
    if (this.#owner === clientId) this.#owner = null;
    this.#pump();
  }

  /** Drops every queued message and waits for the one running, if any: the server is stopping. */
  async close(): Promise<void> {
    for (const queued of this.#queue.splice(0)) queued.reject(new Error("Server stopping"));
    this.#owner = null;
    await this.#running;
  }

  /** Resolves once no client holds the session and nothing is queued. */
  whenIdle(): Promise<void> {
    if (this.#owner === null && this.#queue.length === 0 && this.#running === null) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #pump(): void {
    if (this.#running) return;
    this.#running = this.#drain().finally(() => {
      this.#running = null;
      // The owner may have changed while the last message ran (a client left): look again.
      if (this.#nextIndex() !== -1) {
        this.#pump();
      } else if (this.#owner === null) {
        for (const wake of this.#idleWaiters.splice(0)) wake();
      }
    });
  }

  /** The next message allowed to run: the owner's first, or anyone's when nobody owns. */
  #nextIndex(): number {
    if (this.#owner === null) return this.#queue.length > 0 ? 0 : -1;
    return this.#queue.findIndex((queued) => queued.clientId === this.#owner);
  }

  async #drain(): Promise<void> {
    while (true) {
      const index = this.#nextIndex();
      if (index === -1) return; // the owner is thinking (mid-transaction): others wait
      const [next] = this.#queue.splice(index, 1);
      this.#owner = next.clientId;
      let bytes = 0;
      try {
        this.#scanner.reset();
        await this.#db.runExclusive(() =>
          this.#db.execProtocolRawStream(next.message, {
            onRawData: (data) => {
              bytes += data.length;
              this.#scanner.scan(data);
              next.onData(data);
            },
          })
        );
      } catch (error) {
        // PGlite itself failed (not an SQL error, which travels as an ErrorResponse): give the
        // session back in a known state rather than wedging every other client.
        await this.#db.runExclusive(() => this.#resetSession()).catch(() => {});
        this.#owner = null;
        next.reject(error instanceof Error ? error : new Error(String(error)));
        continue;
      }
      if (next.message[0] === TERMINATE) {
        // A client may quit mid-transaction; its leftovers must not leak into the next client's.
        await this.#db.runExclusive(() => this.#resetSession()).catch(() => {});
        this.#owner = null;
      } else if (this.#scanner.lastStatus === STATUS_IDLE) {
        this.#owner = null;
      }
      next.resolve(bytes);
    }
  }

  /**
   * Ends whatever the departed owner left: an extended-protocol sequence, then a transaction.
   * Runs inside `runExclusive`, so it speaks the protocol directly: `db.exec` would wait for the
   * very lock held here.
   */
  async #resetSession(): Promise<void> {
    const discard = { onRawData: () => {} };
    await this.#db.execProtocolRawStream(SYNC_MESSAGE, discard);
    if (this.#db.isInTransaction()) {
      await this.#db.execProtocolRawStream(ROLLBACK_MESSAGE, discard);
    }
  }
}

/** The fresh cluster's dump, per PGlite build (its resolved module URL names the version). */
const INITDB_CACHE_PATH = `${EMBEDDED_CACHE_DIR}/initdb-${
  import.meta.resolve("@electric-sql/pglite").replace(/[^A-Za-z0-9.@-]+/g, "_").slice(-120)
}.tar`;

/**
 * Reads a dump written by {@link writeCachedDump}, or returns null when there is none.
 *
 * @param path the dump's file
 * @returns the dump, or null
 */
export async function readCachedDump(path: string): Promise<Blob | null> {
  try {
    return new Blob([await Deno.readFile(path)]);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/**
 * Writes a data directory dump atomically (write, then rename), so concurrent processes read
 * either nothing or a whole dump.
 *
 * @param path the dump's file; its directory is created if needed
 * @param dump what `dumpDataDir()` returned
 */
export async function writeCachedDump(path: string, dump: Blob): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  const partialPath = `${path}.${crypto.randomUUID()}.partial`;
  try {
    await Deno.writeFile(partialPath, new Uint8Array(await dump.arrayBuffer()));
    await Deno.rename(partialPath, path);
  } catch (error) {
    await Deno.remove(partialPath).catch(() => {});
    throw error;
  }
}

/** The queue type `PGLiteSocketHandler` expects; it is not exported by pglite-socket 0.2.17. */
type HandlerQueue = ConstructorParameters<typeof PGLiteSocketHandler>[0]["queryQueue"];

/**
 * A Postgres `ErrorResponse` (FATAL 53300 too_many_connections), what a real server answers past
 * `max_connections`, so clients report a Postgres error rather than a protocol failure.
 */
function tooManyConnectionsMessage(): Uint8Array {
  const fields = "SFATAL\0VFATAL\0C53300\0Msorry, too many clients already\0\0";
  const body = new TextEncoder().encode(fields);
  const message = new Uint8Array(1 + 4 + body.length);
  message[0] = 0x45; // 'E'
  new DataView(message.buffer).setInt32(1, 4 + body.length);
  message.set(body, 5);
  return message;
}

/**
 * Starts PGlite (with the pgcrypto, btree_gist and uuid-ossp extensions available) behind a
 * Postgres socket on 127.0.0.1 that several clients can use at once.
 *
 * @param options port, data directory, starting dump and connection limit
 * @returns the server's URL and its controls
 */
export async function startEmbeddedPostgres(
  options: EmbeddedPostgresOptions = {},
): Promise<EmbeddedPostgres> {
  const fresh = options.loadDataDir === undefined && options.dataDir === undefined;
  const freshDump = fresh ? await readCachedDump(INITDB_CACHE_PATH) : null;
  const db = await PGlite.create({
    dataDir: options.dataDir,
    loadDataDir: options.loadDataDir ?? freshDump ?? undefined,
    extensions: EMBEDDED_EXTENSIONS,
    startParams: PGlite.defaultStartParams.map((param) =>
      param.startsWith("search_path=") ? `search_path=${SEARCH_PATH}` : param
    ),
  });
  if (fresh && freshDump === null) {
    await writeCachedDump(INITDB_CACHE_PATH, await db.dumpDataDir("none")).catch(() => {});
  }
  const scheduler = new SessionScheduler(db);
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const sockets = new Set<Socket>();
  const handlers = new Set<PGLiteSocketHandler>();

  const server: Server = createServer((socket) => {
    if (sockets.size >= maxConnections) {
      // Destroyed once written: waiting for the client to close its side could hold `stop()`.
      socket.write(tooManyConnectionsMessage(), () => socket.destroy());
      return;
    }
    sockets.add(socket);
    const handler = new PGLiteSocketHandler({
      queryQueue: scheduler as unknown as HandlerQueue,
      closeOnDetach: true,
    });
    handlers.add(handler);
    const forget = () => {
      sockets.delete(socket);
      handlers.delete(handler);
    };
    handler.addEventListener("close", forget);
    handler.addEventListener("error", forget);
    handler.attach(socket).catch(() => {
      forget();
      socket.destroy();
    });
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port ?? 0, LOOPBACK_HOST, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (error) {
    await db.close();
    throw new Error(
      `Cannot start embedded Postgres: listening on ${LOOPBACK_HOST}:${options.port ?? 0} failed`,
      { cause: error },
    );
  }
  const address = server.address();
  if (address === null || typeof address === "string") {
    throw new Error("Cannot start embedded Postgres: the server has no TCP address");
  }
  const port = address.port;

  let stopping: Promise<void> | null = null;
  return {
    url: `postgres://postgres@${LOOPBACK_HOST}:${port}/postgres?sslmode=disable`,
    port,
    async dumpDataDir() {
      await scheduler.whenIdle();
      return await db.dumpDataDir("none");
    },
    stop() {
      stopping ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        await Promise.all([...handlers].map((handler) => handler.detach(true)));
        for (const socket of sockets) socket.destroy();
        await closed;
        await scheduler.close();
        await db.close();
      })();
      return stopping;
    },
  };
}
