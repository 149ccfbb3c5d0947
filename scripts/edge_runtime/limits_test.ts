import assert from "node:assert/strict";
import {
  EDGE_LIMIT_PRESETS,
  type EdgeLimits,
  INITIAL_SUPERVISION,
  parseEdgeLimits,
  safeParseEdgeLimits,
  superviseStep,
  type SupervisionState,
  thresholdMs,
  type WorkerObservation,
} from "./limits.ts";

const LIMITS: EdgeLimits = {
  wallClockMs: 2_000,
  cpuSoftMs: 200,
  cpuHardMs: 300,
  beforeunloadWallClockPct: 75,
  beforeunloadCpuPct: 50,
  pollIntervalMs: 10,
};

function observe(cpuMs: number, wallMs: number, idle = false): WorkerObservation {
  return { cpuMs, wallMs, idle };
}

/** Runs observations through `superviseStep`, collecting every action. */
function run(observations: WorkerObservation[], limits = LIMITS) {
  let state: SupervisionState = INITIAL_SUPERVISION;
  const actions = [];
  for (const observation of observations) {
    const step = superviseStep(state, observation, limits);
    state = step.state;
    actions.push(...step.actions);
  }
  return { state, actions };
}

Deno.test("superviseStep() does nothing for a worker well within its limits", () => {
  assert.deepEqual(superviseStep(INITIAL_SUPERVISION, observe(10, 100), LIMITS).actions, []);
});

Deno.test("superviseStep() dispatches beforeunload cpu once at its share of the hard limit", () => {
  const { actions } = run([observe(149, 10), observe(150, 20), observe(160, 30)]);
  assert.deepEqual(actions, [{ type: "dispatch_beforeunload", reason: "cpu" }]);
});

Deno.test("superviseStep() retires at the soft CPU limit and terminates at the hard one", () => {
  const { state, actions } = run([observe(200, 10), observe(250, 20), observe(300, 30)]);
  assert.deepEqual(actions, [
    { type: "dispatch_beforeunload", reason: "cpu" },
    { type: "retire", cause: "cpu_soft_limit" },
    { type: "terminate", reason: "CPUTime" },
  ]);
  assert.equal(state.terminated, "CPUTime");
  assert.deepEqual(superviseStep(state, observe(400, 40), LIMITS).actions, []);
});

Deno.test("superviseStep() terminates at the hard CPU limit even when idle", () => {
  assert.deepEqual(superviseStep(INITIAL_SUPERVISION, observe(300, 5, true), LIMITS).actions, [
    { type: "terminate", reason: "CPUTime" },
  ]);
});

Deno.test("superviseStep() warns at half the wall clock, beforeunload at its share, ends at it", () => {
  const { actions } = run([
    observe(0, 999),
    observe(0, 1_000),
    observe(0, 1_500),
    observe(0, 2_000),
  ]);
  assert.deepEqual(actions, [
    { type: "retire", cause: "wall_clock_warning" },
    { type: "dispatch_beforeunload", reason: "wall_clock" },
    { type: "terminate", reason: "WallClockTime" },
  ]);
});

Deno.test("superviseStep() drops an idle worker after an early_drop beforeunload", () => {
  assert.deepEqual(superviseStep(INITIAL_SUPERVISION, observe(5, 50, true), LIMITS).actions, [
    { type: "dispatch_beforeunload", reason: "early_drop" },
    { type: "terminate", reason: "TerminationRequested" },
  ]);
  const { state, actions } = run([observe(210, 50), observe(220, 60, true)]);
  assert.deepEqual(actions.slice(-2), [
    { type: "dispatch_beforeunload", reason: "early_drop" },
    { type: "terminate", reason: "EarlyDrop" },
  ]);
  assert.equal(state.terminated, "EarlyDrop");
});

Deno.test("superviseStep() enforces nothing when the limits are 0", () => {
  const off = { ...LIMITS, wallClockMs: 0, cpuSoftMs: 0, cpuHardMs: 0 };
  assert.deepEqual(superviseStep(INITIAL_SUPERVISION, observe(1e9, 1e9), off).actions, []);
});

Deno.test("thresholdMs() is a share of a limit, null when unset", () => {
  assert.equal(thresholdMs(2_000, 50), 1_000);
  assert.equal(thresholdMs(2_000, null), null);
  assert.equal(thresholdMs(0, 50), null);
});

Deno.test("parseEdgeLimits() picks a preset and applies overrides", () => {
  assert.deepEqual(parseEdgeLimits({}), EDGE_LIMIT_PRESETS.free);
  assert.equal(parseEdgeLimits({ EDGE_LIMITS: "paid" }).wallClockMs, 400_000);
  assert.deepEqual(
    parseEdgeLimits({
      EDGE_LIMITS: "custom",
      EDGE_WALL_CLOCK_MS: "2000",
      EDGE_CPU_SOFT_MS: "200",
      EDGE_CPU_HARD_MS: "300",
      EDGE_BEFOREUNLOAD_WALL_PCT: "75",
      EDGE_BEFOREUNLOAD_CPU_PCT: "50",
      EDGE_POLL_INTERVAL_MS: "10",
      EDGE_UNRELATED: "x",
    }),
    LIMITS,
  );
  assert.equal(parseEdgeLimits({ EDGE_CPU_HARD_MS: " " }).cpuHardMs, 2_000);
});

Deno.test("safeParseEdgeLimits() names the setting it cannot read", () => {
  const bad = safeParseEdgeLimits({ EDGE_LIMITS: "enterprise", EDGE_CPU_SOFT_MS: "-1" });
  assert.equal(bad.success, false);
  assert.match(!bad.success ? bad.error : "", /EDGE_LIMITS.*EDGE_CPU_SOFT_MS/);
  const inverted = safeParseEdgeLimits({ EDGE_CPU_SOFT_MS: "3000", EDGE_CPU_HARD_MS: "2000" });
  assert.match(!inverted.success ? inverted.error : "", /exceeds EDGE_CPU_HARD_MS/);
  assert.throws(
    () => parseEdgeLimits({ EDGE_BEFOREUNLOAD_CPU_PCT: "0" }),
    /EDGE_BEFOREUNLOAD_CPU_PCT/,
  );
});
