/**
 * voice-stream's side of the internal JSON protocol with voice-action (`_shared/tools/protocol.ts`):
 * tool calls, call control and the stream-end report, signed and bounded by a timeout.
 * @module
 */
import { callVoiceAction } from "../_shared/tools/protocol.ts";
import type { ToolOutcome, VoiceActionClient } from "./bridge_deps.ts";

/** Options of `createVoiceActionClient`. */
export interface VoiceActionClientOptions {
  /** voice-action's public URL. */
  url: string;
  secret: string;
  /** Tool calls give up after this long (`TOOL_TIMEOUT_MS`). */
  timeoutMs: number;
  /** Wall clock for request signatures. */
  clock: () => number;
  fetch?: typeof fetch;
}

/** Creates the client. Tool failures become errors the model can read; others reject. */
export function createVoiceActionClient(
  options: VoiceActionClientOptions,
): VoiceActionClient {
  const fetchFn = options.fetch ?? fetch;
  const post = <R extends Parameters<typeof callVoiceAction>[3]>(body: R) =>
    callVoiceAction(fetchFn, options.url, options.secret, body, {
      timeoutMs: options.timeoutMs,
      nowMs: options.clock(),
    });
  return {
    async callTool(request): Promise<ToolOutcome> {
      const result = await post({ type: "tool_call", ...request });
      if (result.ok) {
        return {
          output: JSON.stringify(result.response.output),
          effect: result.response.effect,
          bookingInProgress: result.response.bookingInProgress,
        };
      }
      if (result.failure === "http" && result.status < 500) {
        // Bad arguments or a refused request: the model reads why and can try again.
        return {
          output: JSON.stringify({
            error: result.error,
            issues: result.issues,
          }),
          effect: null,
        };
      }
      throw new Error(`Tool call failed (${result.failure}): ${result.error}`);
    },
    async control(request) {
      const result = await post({ type: "call_control", ...request });
      if (!result.ok) {
        throw new Error(
          `Call control failed (${result.failure}): ${result.error}`,
        );
      }
    },
    async streamEnded(request) {
      const result = await post({
        type: "call_control",
        action: "stream_ended",
        ...request,
      });
      if (!result.ok) {
        throw new Error(
          `Stream end report failed (${result.failure}): ${result.error}`,
        );
      }
    },
  };
}
