/**
 * The decisions of Supabase's edge-runtime per-worker supervisor, as a pure step: given a
 * worker's limits, its observed CPU and wall time and what was already decided, what to do now
 * (dispatch `beforeunload`, retire, terminate). No clock, no timer, no I/O: the shell in
 * `supervisor.ts` observes and performs.
 *
 * Names and behaviour follow supabase/edge-runtime `crates/base/src/worker/supervisor/
 * strategy_per_worker.rs` and `crates/base/src/runtime/mod.rs`:
 * - the wall clock retires the worker at half the limit ("wall clock duration warning") and
 *   terminates it at the limit (`ShutdownReason::WallClockTime`), requests in flight or not;
 * - the CPU soft limit retires the worker (and drops it early once idle), the hard limit
 *   terminates it (`ShutdownReason::CPUTime`);
 * - `beforeunload` is dispatched once at `beforeunload_wall_clock_pct` of the wall clock and once
 *   at `beforeunload_cpu_pct` of the *hard* CPU limit; `ev.detail.reason` is the snake_case name
 *   of `WillTerminateReason` (`"wall_clock"`, `"cpu"`, `"memory"`, `"early_drop"`,
 *   `"termination"`);
 * - an idle worker (no request in flight, no pending `EdgeRuntime.waitUntil` promise) that is to
 *   go gets `beforeunload` with `"early_drop"` first.
 * @module
 */
import { z } from "zod";

/** `ev.detail.reason` of a `beforeunload` event (the runtime's `WillTerminateReason`). */
export type BeforeunloadReason = "cpu" | "wall_clock" | "memory" | "early_drop" | "termination";

/** Why a worker ended (the runtime's `ShutdownReason`, plus an uncaught error). */
export type ShutdownReason =
  | "CPUTime"
  | "WallClockTime"
  | "Memory"
  | "EarlyDrop"
  | "TerminationRequested"
  | "UncaughtException";

/** Limits of one worker. A limit of 0 disables it, as in the runtime. */
export interface EdgeLimits {
  /** Wall clock from the request's start, ms (`worker_timeout_ms`). */
  readonly wallClockMs: number;
  /** CPU time that retires the worker, ms (`cpu_time_soft_limit_ms`). */
  readonly cpuSoftMs: number;
  /** CPU time that terminates the worker with requests in flight, ms (`cpu_time_hard_limit_ms`). */
  readonly cpuHardMs: number;
  /** Share of the wall clock at which `beforeunload` ("wall_clock") fires; `null`: never. */
  readonly beforeunloadWallClockPct: number | null;
  /** Share of the hard CPU limit at which `beforeunload` ("cpu") fires; `null`: never. */
  readonly beforeunloadCpuPct: number | null;
  /** How often the supervisor reads each worker thread's CPU time, ms. */
  readonly pollIntervalMs: number;
}

/**
 * Presets. Wall clock: Supabase's documented limits (150 s Free, 400 s paid). CPU: the documented
 * "2 s per request"; how hosted Supabase splits it into soft and hard limits is not published, so
 * both are 2 s (a worker over 2 s is killed). The `beforeunload` shares the hosted platform sets
 * are not published either: off unless configured.
 */
export const EDGE_LIMIT_PRESETS: Readonly<Record<"free" | "paid", EdgeLimits>> = {
  free: {
    wallClockMs: 150_000,
    cpuSoftMs: 2_000,
    cpuHardMs: 2_000,
    beforeunloadWallClockPct: null,
    beforeunloadCpuPct: null,
    pollIntervalMs: 50,
  },
  paid: {
    wallClockMs: 400_000,
    cpuSoftMs: 2_000,
    cpuHardMs: 2_000,
    beforeunloadWallClockPct: null,
    beforeunloadCpuPct: null,
    pollIntervalMs: 50,
  },
};

const milliseconds = z.coerce.number().int().nonnegative();
const percentage = z.coerce.number().gt(0).lte(100);

const EdgeLimitsEnvSchema = z.object({
  EDGE_LIMITS: z.enum(["free", "paid", "custom"]).default("free"),
  EDGE_WALL_CLOCK_MS: milliseconds.optional(),
  EDGE_CPU_SOFT_MS: milliseconds.optional(),
  EDGE_CPU_HARD_MS: milliseconds.optional(),
  EDGE_BEFOREUNLOAD_WALL_PCT: percentage.optional(),
  EDGE_BEFOREUNLOAD_CPU_PCT: percentage.optional(),
  EDGE_POLL_INTERVAL_MS: z.coerce.number().int().positive().optional(),
});

/** Result of {@link safeParseEdgeLimits}. */
export type SafeParseEdgeLimitsResult =
  | { success: true; data: EdgeLimits }
  | { success: false; error: string };

/**
 * Reads limits from settings: `EDGE_LIMITS=free|paid|custom` picks a preset (`custom` starts from
 * `free`), then `EDGE_WALL_CLOCK_MS`, `EDGE_CPU_SOFT_MS`, `EDGE_CPU_HARD_MS`,
 * `EDGE_BEFOREUNLOAD_WALL_PCT`, `EDGE_BEFOREUNLOAD_CPU_PCT` and `EDGE_POLL_INTERVAL_MS` override
 * it. Empty values count as unset.
 * @param env settings, e.g. `Deno.env.toObject()`
 */
export function safeParseEdgeLimits(
  env: Record<string, string | undefined>,
): SafeParseEdgeLimitsResult {
  const present: Record<string, string> = {};
  for (const key of Object.keys(EdgeLimitsEnvSchema.shape)) {
    const value = env[key]?.trim();
    if (value) present[key] = value;
  }
  const parsed = EdgeLimitsEnvSchema.safeParse(present);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`);
    return { success: false, error: `Cannot read edge runtime limits: ${issues.join("; ")}` };
  }
  const data = parsed.data;
  const base = EDGE_LIMIT_PRESETS[data.EDGE_LIMITS === "paid" ? "paid" : "free"];
  const limits: EdgeLimits = {
    wallClockMs: data.EDGE_WALL_CLOCK_MS ?? base.wallClockMs,
    cpuSoftMs: data.EDGE_CPU_SOFT_MS ?? base.cpuSoftMs,
    cpuHardMs: data.EDGE_CPU_HARD_MS ?? base.cpuHardMs,
    beforeunloadWallClockPct: data.EDGE_BEFOREUNLOAD_WALL_PCT ?? base.beforeunloadWallClockPct,
    beforeunloadCpuPct: data.EDGE_BEFOREUNLOAD_CPU_PCT ?? base.beforeunloadCpuPct,
    pollIntervalMs: data.EDGE_POLL_INTERVAL_MS ?? base.pollIntervalMs,
  };
  if (limits.cpuHardMs > 0 && limits.cpuSoftMs > limits.cpuHardMs) {
    return {
      success: false,
      error: `Cannot read edge runtime limits: EDGE_CPU_SOFT_MS (${limits.cpuSoftMs}) exceeds ` +
        `EDGE_CPU_HARD_MS (${limits.cpuHardMs})`,
    };
  }
  return { success: true, data: limits };
}

/**
 * Like {@link safeParseEdgeLimits}, but throws.
 * @param env settings, e.g. `Deno.env.toObject()`
 */
export function parseEdgeLimits(env: Record<string, string | undefined>): EdgeLimits {
  const result = safeParseEdgeLimits(env);
  if (!result.success) throw new Error(result.error);
  return result.data;
}

/** What the supervisor already decided about one worker. */
export interface SupervisionState {
  readonly beforeunloadCpuDispatched: boolean;
  readonly beforeunloadWallClockDispatched: boolean;
  /** Retired: takes no new request and is dropped once idle. */
  readonly retired: boolean;
  /** Half the wall clock passed (the runtime's "wall clock duration warning"). */
  readonly wallClockWarned: boolean;
  readonly terminated: ShutdownReason | null;
}

/** A worker as the supervisor sees it at one poll. */
export interface WorkerObservation {
  /** CPU time of the worker's thread, ms. */
  readonly cpuMs: number;
  /** Time since the request's start, ms. */
  readonly wallMs: number;
  /** No request in flight and no pending `EdgeRuntime.waitUntil` promise. */
  readonly idle: boolean;
}

/** A decision, performed by the shell in order. */
export type SupervisorAction =
  | { readonly type: "dispatch_beforeunload"; readonly reason: BeforeunloadReason }
  | { readonly type: "retire"; readonly cause: "cpu_soft_limit" | "wall_clock_warning" }
  | { readonly type: "terminate"; readonly reason: ShutdownReason };

/** The state of a worker nothing was decided about yet. */
export const INITIAL_SUPERVISION: SupervisionState = {
  beforeunloadCpuDispatched: false,
  beforeunloadWallClockDispatched: false,
  retired: false,
  wallClockWarned: false,
  terminated: null,
};

/**
 * The runtime's `percentage_value`: `pct` percent of `limit`, or `null` when either is unset.
 * @param limit a limit, ms
 * @param pct a share in percent
 */
export function thresholdMs(limit: number, pct: number | null): number | null {
  if (pct === null || limit <= 0) return null;
  return Math.floor(limit * pct / 100);
}

/**
 * One supervision step: the actions due for `observation`, and the state after them. A
 * terminated worker gets no further action. Idle workers are dropped: the runtime drops a retired
 * idle worker ("EarlyDrop"); one request per worker means every idle worker is asked to go
 * ("TerminationRequested", what the runtime reports when its pool reclaims an idle worker).
 * @param state what was decided before
 * @param observation the worker now
 * @param limits its limits
 */
export function superviseStep(
  state: SupervisionState,
  observation: WorkerObservation,
  limits: EdgeLimits,
): { state: SupervisionState; actions: SupervisorAction[] } {
  if (state.terminated) return { state, actions: [] };
  const { cpuMs, wallMs } = observation;
  const cpuEnabled = limits.cpuSoftMs > 0 || limits.cpuHardMs > 0;
  const wallEnabled = limits.wallClockMs > 0;
  const actions: SupervisorAction[] = [];
  let next = state;
  const terminate = (reason: ShutdownReason) => {
    actions.push({ type: "terminate", reason });
    return { state: { ...next, terminated: reason }, actions };
  };

  if (cpuEnabled && limits.cpuHardMs > 0 && cpuMs >= limits.cpuHardMs) return terminate("CPUTime");
  if (wallEnabled && wallMs >= limits.wallClockMs) return terminate("WallClockTime");

  const cpuThreshold = thresholdMs(limits.cpuHardMs, limits.beforeunloadCpuPct);
  if (!next.beforeunloadCpuDispatched && cpuThreshold !== null && cpuMs >= cpuThreshold) {
    actions.push({ type: "dispatch_beforeunload", reason: "cpu" });
    next = { ...next, beforeunloadCpuDispatched: true };
  }
  const wallThreshold = wallEnabled
    ? thresholdMs(limits.wallClockMs, limits.beforeunloadWallClockPct)
    : null;
  if (!next.beforeunloadWallClockDispatched && wallThreshold !== null && wallMs >= wallThreshold) {
    actions.push({ type: "dispatch_beforeunload", reason: "wall_clock" });
    next = { ...next, beforeunloadWallClockDispatched: true };
  }
  const softMs = limits.cpuSoftMs > 0 ? limits.cpuSoftMs : limits.cpuHardMs;
  if (cpuEnabled && !next.retired && cpuMs >= softMs) {
    actions.push({ type: "retire", cause: "cpu_soft_limit" });
    next = { ...next, retired: true };
  }
  if (wallEnabled && !next.wallClockWarned && wallMs >= limits.wallClockMs / 2) {
    if (!next.retired) actions.push({ type: "retire", cause: "wall_clock_warning" });
    next = { ...next, retired: true, wallClockWarned: true };
  }
  if (observation.idle) {
    actions.push({ type: "dispatch_beforeunload", reason: "early_drop" });
    return terminate(next.retired ? "EarlyDrop" : "TerminationRequested");
  }
  return { state: next, actions };
}
