/**
 * The call's timers by name (pacing, the goodbye grace, the time limit, the handover levels): one
 * pending timer per name, all cancelled at once when the stream ends.
 * @module
 */
import type { TimerHandle, Timers } from "./bridge_deps.ts";

/** One pending timer per name over injectable `Timers`. */
export class NamedTimers<Name extends string = string> {
  readonly #timers: Timers;
  readonly #pending = new Map<Name, TimerHandle>();

  constructor(timers: Timers) {
    this.#timers = timers;
  }

  /** Runs `callback` in `delayMs` (at least 0), replacing a timer of the same name. */
  set(name: Name, delayMs: number, callback: () => void): void {
    this.cancel(name);
    this.#pending.set(
      name,
      this.#timers.setTimeout(() => {
        this.#pending.delete(name);
        callback();
      }, Math.max(0, delayMs)),
    );
  }

  /** Cancels the timer of that name, if any. */
  cancel(name: Name): void {
    const existing = this.#pending.get(name);
    if (existing === undefined) return;
    this.#timers.clearTimeout(existing);
    this.#pending.delete(name);
  }

  /** Cancels every pending timer. */
  cancelAll(): void {
    for (const handle of this.#pending.values()) this.#timers.clearTimeout(handle);
    this.#pending.clear();
  }

  /** How many timers are pending. */
  get size(): number {
    return this.#pending.size;
  }
}
