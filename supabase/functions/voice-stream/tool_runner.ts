/**
 * The model's tool calls and call control, through voice-action: runs each tool call in the
 * background and hands its result (or an apology the model can say) back as a session event;
 * remembers what a handover carries (recent results, each call's arguments) and whether a booking
 * is in progress or the call was transferred.
 * @module
 */
import type { SessionEvent } from "./call_session.ts";
import type { ContinuationToolResult } from "./handover.ts";
import type { BridgeDeps, CallScope } from "./bridge_deps.ts";

/** Tool results kept for a handover (it carries the newest few). */
const KEPT_TOOL_RESULTS = 10;

/** What the model hears when voice-action could not answer a tool call. */
const TOOL_FAILED_OUTPUT = JSON.stringify({
  error: "The system could not complete this right now. Apologise briefly and offer " +
    "to take a message or transfer the caller.",
});

/** One call's tool calls. */
export class ToolRunner {
  /** Set by voice-action's answers (a booking flow opened or closed), or by a continuation. */
  bookingInProgress = false;
  /** Whether the call was transferred to a person. */
  transferred = false;
  /** The newest tool results, oldest first. */
  readonly results: ContinuationToolResult[] = [];
  readonly #arguments = new Map<string, string>();
  readonly #deps: Pick<BridgeDeps, "voiceAction" | "now">;
  readonly #scope: CallScope;
  readonly #result: (event: SessionEvent) => void;

  /** @param result receives each call's `tool_result` event */
  constructor(
    deps: Pick<BridgeDeps, "voiceAction" | "now">,
    scope: CallScope,
    result: (event: SessionEvent) => void,
  ) {
    this.#deps = deps;
    this.#scope = scope;
    this.#result = result;
  }

  /** The arguments the model gave a call (JSON text); "{}" if unknown. */
  argumentsOf(callId: string): string {
    return this.#arguments.get(callId) ?? "{}";
  }

  /** Runs a tool call in the background. */
  run(callId: string, name: string, args: string): void {
    const call = this.#scope.identity;
    if (!call) return;
    const started = this.#deps.now();
    const ms = () => Math.round(this.#deps.now() - started);
    this.#arguments.set(callId, args);
    const request = { callSid: call.callSid, traceId: call.traceId, callId, name, arguments: args };
    this.#scope.track(
      this.#deps.voiceAction.callTool(request).then(
        (outcome) => {
          if (outcome.bookingInProgress !== undefined) {
            this.bookingInProgress = outcome.bookingInProgress;
          }
          this.results.push({ name, arguments: args, output: outcome.output });
          if (this.results.length > KEPT_TOOL_RESULTS) this.results.shift();
          this.#scope.log.info("tool_call", { name, ms: ms(), outcome: "ok" });
          this.#result({
            type: "tool_result",
            callId,
            name,
            output: outcome.output,
            effect: outcome.effect,
          });
        },
        (error) => {
          this.#scope.log.warn("tool_call", { name, ms: ms(), outcome: "failed", error });
          this.#result({
            type: "tool_result",
            callId,
            name,
            output: TOOL_FAILED_OUTPUT,
            effect: null,
          });
        },
      ),
    );
  }

  /** Asks voice-action to transfer, hang up or recover the call (in the background). */
  control(action: "transfer" | "hangup" | "recover", reason: string): void {
    const call = this.#scope.identity;
    if (!call) return;
    if (action === "transfer") this.transferred = true;
    this.#scope.track(this.#deps.voiceAction.control({
      callSid: call.callSid,
      traceId: call.traceId,
      action,
      reason,
    }));
  }
}
