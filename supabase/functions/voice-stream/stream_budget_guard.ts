/**
 * Keeps one stream inside the platform's limits: charges every handled message to the stream's
 * CPU meter, asks for a handover at 80%, 95% and 99% of the CPU or wall-clock budget, and turns
 * the edge runtime's `beforeunload` warning into an immediate handover (protocols.md §1).
 * @module
 */
import {
  DEFAULT_STREAM_CPU_BUDGET_MS,
  DEFAULT_STREAM_WALL_CLOCK_SECONDS,
} from "../_shared/config.ts";
import type { HandoverLevel } from "./call_session.ts";
import { type CpuMeter, createCpuMeter } from "./cpu_meter.ts";
import {
  HANDOVER_FINAL_FRACTION,
  HANDOVER_HARD_FRACTION,
  HANDOVER_SOFT_FRACTION,
  handoverLevel,
  type StreamBudget,
  wallClockHandoverTimes,
} from "./handover.ts";
import type { BridgeDeps, CallScope } from "./bridge_deps.ts";
import type { NamedTimers } from "./named_timers.ts";

/** The CPU figures operators read: what the budget counts, by which meter, and the estimate. */
export interface CpuFields {
  cpuMs: number;
  cpuMeter: string;
  estimatedCpuMs: number;
}

/** What the guard calls back into. */
export interface StreamBudgetHandlers {
  /** A budget level was reached: the session decides when to hand over. */
  handoverDue(level: HandoverLevel): void;
  /** Whether the stream has ended already (a late warning changes nothing then). */
  ended(): boolean;
}

/** One stream's budgets and meter. */
export class StreamBudgetGuard {
  readonly budget: StreamBudget;
  readonly meter: CpuMeter;
  readonly #deps: BridgeDeps;
  readonly #scope: CallScope;
  readonly #handlers: StreamBudgetHandlers;
  readonly #canHandOver: boolean;
  readonly #upgradedAtMs: number;
  readonly #cpuClock: () => number;
  readonly #runtimeEvents: EventTarget;
  // The next CPU figure worth a look (the budget check is skipped below it, every frame).
  #cpuCheckAtMs: number;
  readonly #onBeforeUnload = (event: Event) => this.#beforeUnload(event);

  /**
   * @param canHandOver without a store for continuations the stream never hands over
   * @param upgradedAtMs when the WebSocket was upgraded (`deps.now()`): the wall clock's start
   */
  constructor(
    deps: BridgeDeps,
    scope: CallScope,
    handlers: StreamBudgetHandlers,
    options: { canHandOver: boolean; upgradedAtMs: number },
  ) {
    this.#deps = deps;
    this.#scope = scope;
    this.#handlers = handlers;
    this.#canHandOver = options.canHandOver;
    this.#upgradedAtMs = options.upgradedAtMs;
    this.#cpuClock = deps.cpuClock ?? deps.now;
    this.#runtimeEvents = deps.runtimeEvents ?? globalThis;
    this.budget = {
      wallClockMs: (deps.config.streamWallClockSeconds ?? DEFAULT_STREAM_WALL_CLOCK_SECONDS) *
        1000,
      cpuMs: deps.config.streamCpuBudgetMs ?? DEFAULT_STREAM_CPU_BUDGET_MS,
    };
    this.meter = deps.cpuMeter ?? createCpuMeter({ mode: deps.config.streamCpuMeter });
    this.#cpuCheckAtMs = this.#canHandOver ? this.budget.cpuMs * HANDOVER_SOFT_FRACTION : Infinity;
  }

  /** Runs a socket or timer handler, charging its time (and the message) to the CPU meter. */
  metered(handler: () => void): void {
    const started = this.#cpuClock();
    try {
      handler();
    } finally {
      this.#charge(this.#cpuClock() - started);
    }
  }

  /** The CPU figures for log lines. */
  cpuFields(): CpuFields {
    return {
      cpuMs: Math.round(this.meter.usedMs()),
      cpuMeter: this.meter.kind,
      estimatedCpuMs: Math.round(this.meter.estimatedMs()),
    };
  }

  /** Since the WebSocket upgrade, ms. */
  elapsedMs(): number {
    return this.#deps.now() - this.#upgradedAtMs;
  }

  /** Starts listening for the runtime's `beforeunload`; `stop` ends it. */
  listen(): void {
    this.#runtimeEvents.addEventListener("beforeunload", this.#onBeforeUnload);
  }

  /** Stops listening for the runtime's warning. */
  stop(): void {
    this.#runtimeEvents.removeEventListener("beforeunload", this.#onBeforeUnload);
  }

  /** The wall clock asks for a handover at 80%, 95% and 99% of the stream's budget. */
  scheduleWallClock(timers: NamedTimers): void {
    if (!this.#canHandOver) return;
    const { softAtMs, hardAtMs, finalAtMs } = wallClockHandoverTimes(this.budget);
    const sinceUpgrade = this.elapsedMs();
    const levels = [
      ["handover_soft", softAtMs, "soft"],
      ["handover_hard", hardAtMs, "hard"],
      ["handover_final", finalAtMs, "final"],
    ] as const;
    for (const [name, atMs, level] of levels) {
      timers.set(name, atMs - sinceUpgrade, () => this.#handlers.handoverDue(level));
    }
  }

  #charge(ms: number): void {
    this.meter.charge(ms);
    const usedMs = this.meter.usedMs();
    if (usedMs < this.#cpuCheckAtMs) return;
    const level = handoverLevel(this.budget, { elapsedMs: 0, cpuMs: usedMs });
    this.#cpuCheckAtMs = this.budget.cpuMs *
      (level === "soft"
        ? HANDOVER_HARD_FRACTION
        : level === "hard"
        ? HANDOVER_FINAL_FRACTION
        : Infinity);
    if (level !== null) this.#handlers.handoverDue(level);
  }

  /**
   * The edge runtime's warning that it will end this worker: `ev.detail.reason` is its
   * `WillTerminateReason` in snake_case (`cpu`, `memory`, `wall_clock`, `early_drop`,
   * `termination`). Hand over now, before the end: the wall clock (and an early drop) leaves a few
   * seconds, so the stream still waits for the caller to pause; the others do not wait.
   */
  #beforeUnload(event: Event): void {
    const detail = (event as CustomEvent<{ reason?: unknown } | null>).detail;
    const reason = typeof detail?.reason === "string" ? detail.reason : "unknown";
    if (this.#handlers.ended() || !this.#canHandOver) return;
    this.#scope.log.warn("runtime_beforeunload", { reason, ...this.cpuFields() });
    const patient = reason === "wall_clock" || reason === "early_drop";
    this.#handlers.handoverDue(patient ? "hard" : "final");
  }
}
