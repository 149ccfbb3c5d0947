/**
 * The call's transcript: turns the session records are written to the store in batches (once a
 * second), kept on a failed write for the next one (the database deduplicates by sequence), and
 * the stream's turns are kept for a handover or checkpoint.
 * @module
 */
import type { TranscriptTurn } from "./call_session.ts";
import type { ContinuationTurn } from "./handover.ts";
import type { BridgeDeps, CallScope, TimerHandle } from "./bridge_deps.ts";

/** Transcript turns are written in batches this often. */
export const TURN_FLUSH_INTERVAL_MS = 1000;
/** Transcript turns of the stream kept for the handover (a stream is at most a few minutes). */
const MAX_STREAM_TURNS = 500;

/** One stream's transcript writer. */
export class TurnRecorder {
  /** This stream's turns, oldest first (at most `MAX_STREAM_TURNS`). */
  readonly streamTurns: ContinuationTurn[] = [];
  readonly #pending: TranscriptTurn[] = [];
  #flushTimer: TimerHandle | null = null;
  readonly #deps: Pick<BridgeDeps, "store" | "timers">;
  readonly #scope: CallScope;
  readonly #stored: () => void;

  /** @param stored called after each batch is stored (the stored turns make a checkpoint) */
  constructor(deps: Pick<BridgeDeps, "store" | "timers">, scope: CallScope, stored: () => void) {
    this.#deps = deps;
    this.#scope = scope;
    this.#stored = stored;
  }

  /** Records a turn; it is written within `TURN_FLUSH_INTERVAL_MS`. */
  record(turn: TranscriptTurn): void {
    this.#pending.push(turn);
    if (this.streamTurns.length < MAX_STREAM_TURNS) {
      const { sequence, speaker, text } = turn;
      this.streamTurns.push({ sequence, speaker, text });
    }
    if (this.#flushTimer !== null) return;
    this.#flushTimer = this.#deps.timers.setTimeout(() => {
      this.#flushTimer = null;
      this.#scope.track(this.flush());
    }, TURN_FLUSH_INTERVAL_MS);
  }

  /** Stops the batch timer (the stream is ending; its last `flush` follows). */
  stopTimer(): void {
    if (this.#flushTimer !== null) this.#deps.timers.clearTimeout(this.#flushTimer);
  }

  /** Writes the pending turns; on failure keeps them for the next flush. */
  async flush(): Promise<void> {
    const call = this.#scope.identity;
    if (!call || this.#pending.length === 0) return;
    const batch = this.#pending.splice(0, this.#pending.length);
    try {
      await this.#deps.store.appendCallTurns(call.callSid, batch.map((turn) => ({ ...turn })));
      this.#stored();
    } catch (error) {
      // Keep them for the final flush; the database deduplicates by sequence.
      this.#pending.unshift(...batch);
      this.#scope.log.warn("turns_flush_failed", { error, turns: batch.length });
    }
  }
}
