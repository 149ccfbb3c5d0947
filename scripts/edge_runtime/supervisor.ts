/**
 * A local edge runtime: HTTP/1.1 and WebSocket on a TCP port, each request handed to a fresh
 * user worker (`worker_main.ts`, a Deno `Worker` on its own thread) and supervised with the
 * limits of Supabase's edge runtime (`limits.ts`): CPU time of the worker's thread, wall clock from
 * the request's start, `beforeunload` at configured shares.
 *
 * Why a TCP proxy rather than `Deno.serve` + `Deno.upgradeWebSocket`: a request or socket cannot
 * be transferred to a worker, so the supervisor forwards the connection's bytes to the worker's
 * own `Deno.serve` on a loopback port. At the byte level a WebSocket passes through unparsed (one
 * read and one write per chunk, TCP_NODELAY on both legs), and a killed worker's client can be
 * dropped without a close frame (the client sees 1006), which a `Deno.upgradeWebSocket` socket
 * cannot do. The supervisor reads only the request head, to route it and to make the worker close
 * the connection after one response (`connection: close`): one request per worker.
 *
 * Known limit (Deno, not the design): `Worker.terminate()` stops a worker at its next event-loop
 * turn; a worker stuck in one synchronous loop keeps its thread until the loop ends (denoland/deno
 * #12658, PR #35657). Its connections are dropped at once all the same, and the thread's exit is
 * logged (`worker_exited`, `exitLagMs`).
 * @module
 */
import { createLogger, type Logger, type LogSink } from "../../supabase/functions/_shared/log.ts";
import {
  type BeforeunloadReason,
  type EdgeLimits,
  INITIAL_SUPERVISION,
  type ShutdownReason,
  superviseStep,
  type SupervisionState,
  type SupervisorAction,
} from "./limits.ts";
import { readThreadCpuMs } from "./thread_stat.ts";
import type { FromWorkerMessage, ToWorkerMessage, WorkerSpec } from "./worker_protocol.ts";

/** Longest request head read before routing; a longer one gets 431. */
const MAX_HEAD_BYTES = 64 * 1024;
const PIPE_CHUNK_BYTES = 64 * 1024;
/** How long `beforeunload` listeners get before an idle worker is dropped. */
const BEFOREUNLOAD_GRACE_MS = 500;
/** How long a worker may take to boot before the request fails with 503. */
const BOOT_TIMEOUT_MS = 30_000;

const WORKER_URL = new URL("./worker_main.ts", import.meta.url).href;

/** Options of {@link startEdgeSupervisor}. */
export interface EdgeSupervisorOptions {
  /** Limits of every worker. */
  limits: EdgeLimits;
  /** The worker for a request path, or `null` for 404. */
  route(pathname: string): WorkerSpec | null;
  /** Defaults to 0: a free port. */
  port?: number;
  /** Defaults to `127.0.0.1`. */
  hostname?: string;
  /**
   * Where the JSON log lines go, the supervisor's (`fn: "edge-runtime"`) and the functions' own;
   * defaults to stdout.
   */
  logSink?: LogSink;
}

/** A worker as {@link EdgeSupervisor.workers} shows it. */
export interface WorkerSnapshot {
  readonly workerId: string;
  readonly name: string;
  readonly tid: number | null;
  readonly state: SupervisionState;
}

/** A running local edge runtime. */
export interface EdgeSupervisor {
  readonly port: number;
  /** `http://<hostname>:<port>`. */
  readonly url: string;
  readonly limits: EdgeLimits;
  /** Workers whose thread has not exited yet. */
  workers(): WorkerSnapshot[];
  /**
   * Ends a worker at once, requests in flight, as the platform does on a deploy or a hard limit:
   * no `beforeunload`, its connections dropped. False when there is no such live worker.
   */
  terminate(workerId: string, reason?: ShutdownReason): boolean;
  /** Stops listening, terminates every worker and waits for their threads to exit. */
  close(): Promise<void>;
}

interface SupervisedWorker {
  readonly workerId: string;
  readonly name: string;
  readonly worker: Worker;
  /** `performance.now()` at the request's start: the wall clock runs from here. */
  readonly startedAtMs: number;
  /** Client and upstream connections, dropped when the worker is terminated. */
  readonly connections: Set<Deno.Conn>;
  tid: number | null;
  /**
   * Thread CPU at `ready`. Boot (module evaluation in a fresh isolate) is logged, not charged to
   * the request: the hosted runtime boots from a prebuilt bundle, so charging a local boot would
   * make runs here stricter for reasons foreign to the function.
   */
  bootCpuMs: number | null;
  lastCpuMs: number;
  state: SupervisionState;
  requestDone: boolean;
  /** A `background_query` is unanswered: the idle state is not known yet. */
  backgroundQueryPending: boolean;
  pendingBackground: number;
  terminatedAtMs: number | null;
  stillRunningLogged: boolean;
  ready: PromiseWithResolvers<number>;
  beforeunloadDone: Map<BeforeunloadReason, () => void>;
  exited: PromiseWithResolvers<void>;
}

/** A parsed request head, rewritten for the worker. */
interface RequestHead {
  readonly pathname: string;
  readonly upgrade: boolean;
  /** The head to send on (plus any body bytes read with it). */
  readonly forward: Uint8Array;
}

function bytesToBinary(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return text;
}

function binaryToBytes(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/**
 * Parses an HTTP/1.1 request head and rewrites it so that the worker closes the connection after
 * its response (a WebSocket upgrade is left as it is). Byte-preserving: header values are not
 * decoded.
 * @param head the head up to and including the blank line
 * @param rest bytes read after it (the start of a body)
 */
export function rewriteRequestHead(
  head: Uint8Array,
  rest: Uint8Array,
): RequestHead | null {
  const lines = bytesToBinary(head).split("\r\n");
  const requestLine = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(lines[0] ?? "");
  if (!requestLine) return null;
  const headers = lines.slice(1).filter((line) => line !== "");
  const upgrade = headers.some((line) => /^upgrade\s*:/i.test(line));
  const kept = upgrade
    ? headers
    : headers.filter((line) => !/^(connection|keep-alive)\s*:/i.test(line));
  if (!upgrade) kept.push("connection: close");
  const forwardHead = binaryToBytes([lines[0], ...kept, "", ""].join("\r\n"));
  const forward = new Uint8Array(forwardHead.length + rest.length);
  forward.set(forwardHead);
  forward.set(rest, forwardHead.length);
  let pathname: string;
  try {
    pathname = new URL(requestLine[2], "http://localhost").pathname;
  } catch {
    return null;
  }
  return { pathname, upgrade, forward };
}

const HEAD_END = binaryToBytes("\r\n\r\n");

function indexOfHeadEnd(bytes: Uint8Array, length: number): number {
  outer: for (let i = 0; i + 4 <= length; i++) {
    for (let j = 0; j < 4; j++) if (bytes[i + j] !== HEAD_END[j]) continue outer;
    return i + 4;
  }
  return -1;
}

/** Reads until the end of the request head: `{ head, rest }`, or a status to answer with. */
async function readHead(
  conn: Deno.Conn,
): Promise<{ head: Uint8Array; rest: Uint8Array } | { status: number } | null> {
  const buffer = new Uint8Array(MAX_HEAD_BYTES);
  let length = 0;
  while (length < buffer.length) {
    const read = await conn.read(buffer.subarray(length));
    if (read === null) return null;
    const searchFrom = Math.max(0, length - 3);
    length += read;
    const end = indexOfHeadEnd(buffer.subarray(searchFrom), length - searchFrom);
    if (end >= 0) {
      return {
        head: buffer.slice(0, searchFrom + end),
        rest: buffer.slice(searchFrom + end, length),
      };
    }
  }
  return { status: 431 };
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}

/** Copies `from` to `to` until EOF ("eof") or a failure on either side ("error"). */
async function pipe(from: Deno.Conn, to: Deno.Conn): Promise<"eof" | "error"> {
  const buffer = new Uint8Array(PIPE_CHUNK_BYTES);
  try {
    for (;;) {
      const read = await from.read(buffer);
      if (read === null) return "eof";
      await writeAll(to, buffer.subarray(0, read));
    }
  } catch {
    return "error";
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  404: "Not Found",
  431: "Request Header Fields Too Large",
  503: "Service Unavailable",
};

async function answer(conn: Deno.Conn, status: number, msg: string): Promise<void> {
  const body = JSON.stringify({ msg });
  const text = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ""}\r\n` +
    `content-type: application/json\r\ncontent-length: ${body.length}\r\n` +
    `connection: close\r\n\r\n${body}`;
  try {
    await writeAll(conn, binaryToBytes(text));
  } catch {
    // The client is gone.
  }
  closeQuietly(conn);
}

/**
 * Starts the local edge runtime.
 * @param options limits, routing, port
 */
export function startEdgeSupervisor(options: EdgeSupervisorOptions): EdgeSupervisor {
  const { limits } = options;
  const hostname = options.hostname ?? "127.0.0.1";
  const log = createLogger("edge-runtime", { level: "debug", sink: options.logSink });
  const functionLogSink: LogSink = options.logSink ?? ((line) => console.log(line));
  const listener = Deno.listen({ hostname, port: options.port ?? 0, transport: "tcp" });
  const port = listener.addr.port;
  const workers = new Map<string, SupervisedWorker>();
  const connectionTasks = new Set<Promise<void>>();
  let nextWorkerNumber = 1;
  let closed = false;

  const fieldsOf = (w: SupervisedWorker) => ({
    workerId: w.workerId,
    name: w.name,
    cpuMs: w.lastCpuMs,
    wallMs: Math.round(performance.now() - w.startedAtMs),
  });

  const dropConnections = (w: SupervisedWorker) => {
    for (const conn of w.connections) closeQuietly(conn);
    w.connections.clear();
  };

  const terminate = (w: SupervisedWorker, reason: ShutdownReason, logger: Logger = log) => {
    if (w.terminatedAtMs !== null) return;
    w.state = { ...w.state, terminated: reason };
    w.terminatedAtMs = performance.now();
    logger.info("worker_terminated", {
      ...fieldsOf(w),
      reason,
      requestInFlight: !w.requestDone,
    });
    // Dropped, not closed: a client of a killed worker sees the TCP connection end without a
    // WebSocket close frame (1006) or without a complete response.
    dropConnections(w);
    w.worker.terminate();
    w.ready.reject(new Error(`Worker terminated: ${reason}`));
  };

  const dispatchBeforeunload = (w: SupervisedWorker, reason: BeforeunloadReason) => {
    log.info("beforeunload_dispatched", { ...fieldsOf(w), reason });
    const done = Promise.withResolvers<void>();
    w.beforeunloadDone.set(reason, done.resolve);
    w.worker.postMessage({ type: "beforeunload", reason } satisfies ToWorkerMessage);
    return done.promise;
  };

  const perform = async (w: SupervisedWorker, actions: SupervisorAction[]) => {
    let lastBeforeunload: Promise<void> | null = null;
    for (const action of actions) {
      switch (action.type) {
        case "dispatch_beforeunload":
          lastBeforeunload = dispatchBeforeunload(w, action.reason);
          break;
        case "retire":
          log.info("worker_retired", { ...fieldsOf(w), reason: action.cause });
          break;
        case "terminate":
          // A graceful end (idle worker) lets the beforeunload listeners run first; a limit kills.
          if (
            lastBeforeunload && action.reason !== "CPUTime" && action.reason !== "WallClockTime"
          ) {
            const timer = Promise.withResolvers<void>();
            const id = setTimeout(timer.resolve, BEFOREUNLOAD_GRACE_MS);
            await Promise.race([lastBeforeunload, timer.promise]);
            clearTimeout(id);
          }
          terminate(w, action.reason);
          break;
      }
    }
  };

  const supervise = (w: SupervisedWorker) => {
    if (w.tid === null) {
      // Terminated before it reported its thread: nothing left to watch.
      if (w.terminatedAtMs !== null) {
        workers.delete(w.workerId);
        w.exited.resolve();
      }
      return;
    }
    const cpuMs = readThreadCpuMs(w.tid);
    if (cpuMs === null) {
      // The thread has exited.
      if (w.terminatedAtMs === null) terminate(w, "UncaughtException");
      log.info("worker_exited", {
        ...fieldsOf(w),
        exitLagMs: Math.round(performance.now() - (w.terminatedAtMs ?? performance.now())),
      });
      workers.delete(w.workerId);
      w.exited.resolve();
      return;
    }
    w.lastCpuMs = cpuMs - (w.bootCpuMs ?? cpuMs);
    if (w.terminatedAtMs !== null) {
      if (!w.stillRunningLogged && performance.now() - w.terminatedAtMs > 1_000) {
        w.stillRunningLogged = true;
        log.warn("worker_still_running", { ...fieldsOf(w), reason: w.state.terminated });
      }
      return;
    }
    if (w.bootCpuMs === null) return;
    const step = superviseStep(w.state, {
      cpuMs: w.lastCpuMs,
      wallMs: performance.now() - w.startedAtMs,
      idle: w.requestDone && !w.backgroundQueryPending && w.pendingBackground === 0,
    }, limits);
    w.state = step.state;
    if (step.actions.length > 0) void perform(w, step.actions);
  };

  const poll = setInterval(() => {
    for (const w of [...workers.values()]) supervise(w);
  }, limits.pollIntervalMs);

  const spawn = (spec: WorkerSpec, startedAtMs: number): SupervisedWorker => {
    const workerId = `w${nextWorkerNumber++}`;
    const worker = new Worker(WORKER_URL, {
      type: "module",
      name: `edge-${spec.name}-${workerId}`,
    });
    const w: SupervisedWorker = {
      workerId,
      name: spec.name,
      worker,
      startedAtMs,
      connections: new Set(),
      tid: null,
      bootCpuMs: null,
      lastCpuMs: 0,
      state: INITIAL_SUPERVISION,
      requestDone: false,
      backgroundQueryPending: false,
      pendingBackground: 0,
      terminatedAtMs: null,
      stillRunningLogged: false,
      ready: Promise.withResolvers<number>(),
      beforeunloadDone: new Map(),
      exited: Promise.withResolvers<void>(),
    };
    w.ready.promise.catch(() => {});
    workers.set(workerId, w);
    worker.onmessage = (event: MessageEvent<FromWorkerMessage>) => {
      const message = event.data;
      switch (message.type) {
        case "thread":
          w.tid = message.tid;
          worker.postMessage({ type: "start", spec } satisfies ToWorkerMessage);
          break;
        case "ready": {
          const threadCpuMs = w.tid === null ? null : readThreadCpuMs(w.tid);
          w.bootCpuMs = threadCpuMs ?? 0;
          log.info("worker_started", {
            ...fieldsOf(w),
            tid: w.tid,
            bootMs: Math.round(performance.now() - startedAtMs),
            bootCpuMs: w.bootCpuMs,
          });
          w.ready.resolve(message.port);
          break;
        }
        case "boot_failed":
          log.error("worker_boot_failed", { ...fieldsOf(w), msg: message.error });
          terminate(w, "UncaughtException");
          break;
        case "background":
          w.pendingBackground = message.pending;
          w.backgroundQueryPending = false;
          supervise(w);
          break;
        case "beforeunload_done":
          w.beforeunloadDone.get(message.reason)?.();
          break;
        case "log":
          functionLogSink(message.line);
          break;
      }
    };
    worker.onerror = (event) => {
      // Handled here: an unhandled worker error would end the whole process.
      event.preventDefault();
      log.error("worker_uncaught_error", { ...fieldsOf(w), msg: event.message });
      terminate(w, "UncaughtException");
    };
    return w;
  };

  const serveConnection = async (conn: Deno.TcpConn) => {
    conn.setNoDelay(true);
    const startedAtMs = performance.now();
    let read;
    try {
      read = await readHead(conn);
    } catch {
      read = null;
    }
    if (read === null) return closeQuietly(conn);
    if ("status" in read) return answer(conn, read.status, "Request head too large");
    const head = rewriteRequestHead(read.head, read.rest);
    if (!head) return answer(conn, 400, "Malformed request");
    const spec = closed ? null : options.route(head.pathname);
    if (!spec) return answer(conn, 404, "Function not found");
    const w = spawn(spec, startedAtMs);
    w.connections.add(conn);
    let upstream: Deno.TcpConn | null = null;
    try {
      const bootTimer = setTimeout(() => terminate(w, "UncaughtException"), BOOT_TIMEOUT_MS);
      const workerPort = await w.ready.promise.finally(() => clearTimeout(bootTimer));
      upstream = await Deno.connect({ hostname: "127.0.0.1", port: workerPort, transport: "tcp" });
      upstream.setNoDelay(true);
      if (w.terminatedAtMs !== null) throw new Error("Worker terminated");
      w.connections.add(upstream);
      await writeAll(upstream, head.forward);
    } catch {
      if (upstream) closeQuietly(upstream);
      if (w.terminatedAtMs === null) {
        terminate(w, "UncaughtException");
      }
      return answer(conn, 503, "Worker failed to boot");
    }
    const worker = upstream;
    const toWorker = pipe(conn, worker).then((end) => {
      // The client finished sending: pass the half-close on (a failure drops the connection).
      if (end === "eof") worker.closeWrite().catch(() => {});
      else closeQuietly(worker);
    });
    await pipe(worker, conn);
    closeQuietly(conn);
    closeQuietly(worker);
    await toWorker;
    w.connections.delete(conn);
    w.connections.delete(worker);
    w.requestDone = true;
    if (w.terminatedAtMs === null) {
      // Idle once the worker confirms no `EdgeRuntime.waitUntil` promise is pending; its
      // messages arrive in order, so the answer covers every earlier `waitUntil`.
      w.backgroundQueryPending = true;
      w.worker.postMessage({ type: "background_query" } satisfies ToWorkerMessage);
    }
  };

  const acceptLoop = (async () => {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      const task = serveConnection(conn).catch((error) => {
        log.error("connection_failed", { error });
        closeQuietly(conn);
      });
      connectionTasks.add(task);
      task.finally(() => connectionTasks.delete(task));
    }
  })();

  return {
    port,
    url: `http://${hostname}:${port}`,
    limits,
    workers: () =>
      [...workers.values()].map((w) => ({
        workerId: w.workerId,
        name: w.name,
        tid: w.tid,
        state: w.state,
      })),
    terminate(workerId, reason = "TerminationRequested") {
      const w = workers.get(workerId);
      if (!w || w.terminatedAtMs !== null) return false;
      terminate(w, reason);
      return true;
    },
    async close() {
      if (closed) return;
      closed = true;
      listener.close();
      await acceptLoop;
      for (const w of workers.values()) terminate(w, "TerminationRequested");
      await Promise.allSettled([...connectionTasks]);
      // Threads exit at their next event-loop turn; the poll notices and logs it.
      const exits = [...workers.values()].map((w) => w.exited.promise);
      const deadline = Promise.withResolvers<void>();
      const id = setTimeout(deadline.resolve, 5_000);
      await Promise.race([Promise.all(exits), deadline.promise]);
      clearTimeout(id);
      clearInterval(poll);
    },
  };
}
