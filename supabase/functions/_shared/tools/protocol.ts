/**
 * Speaks the internal JSON protocol between voice-stream and voice-action: tool calls the model
 * makes and call-control commands, POSTed as JSON and signed with `signInternalRequest` (HMAC over
 * timestamp + body, 60 s). Holds the request and response schemas and the client voice-stream
 * uses, `callVoiceAction`.
 *
 * Requests:
 * - `tool_call` `{callSid, traceId, callId, name, arguments}`: `arguments` is the model's JSON
 *   text (or the parsed object). Answers 200 {@link ToolCallSuccess}; 422 {@link VoiceActionFailure}
 *   for bad arguments or an unknown tool (its `error` is written for the model); 404 for an unknown
 *   call; 503 when the database is unavailable (its `error` is also readable by the model).
 *   Tool calls are never retried by the client: they have effects.
 * - `call_control` `{callSid, traceId, action, reason}`:
 *   - `transfer`: the assistant finished its last words after `transfer_to_human`; the call is
 *     redirected by Twilio's REST API to `<Dial>` the org's transfer number.
 *   - `hangup`: the assistant finished its last words after `end_call`, or the call reached its
 *     time limit; the call is completed by REST.
 *   - `recover`: the model failed mid-call; the call is redirected to an apology and a voicemail
 *     `<Record>`, and the caller gets the recovery SMS.
 *   - `stream_ended` (with `reason` a {@link StreamEndReason} and `bookingInProgress`): the
 *     conversation's stream ended for good (not a hand-over to another worker). Send it before
 *     closing the socket, so the `<Connect action>` request that follows knows how it ended.
 *     A stream that hands the call over to a new worker sends nothing: it saves a continuation
 *     (`save_call_continuation`) before closing, and the `<Connect action>` request takes it
 *     (`take_call_handover`, once) and answers a new `<Connect><Stream>`; the stream-end key is
 *     left to the stream that really ends the conversation.
 *   Answers 200 {@link CallControlSuccess}, or a {@link VoiceActionFailure} (409 when the org has
 *   no transfer number, 502 when Twilio refused, 503 when the database is unavailable).
 *
 * Any request: 401 when the signature is missing, wrong or older than 60 s; 400 when the body is
 * not JSON or not one of these requests; 413 beyond 64 KiB.
 *
 * `bookingInProgress`: tool responses carry it when a tool opens or closes a booking flow
 * (check_availability opens it; a booking, move, cancellation, `end_call` or transfer closes it).
 * voice-stream keeps the last value and sends it back in `stream_ended`: a caller who hangs up in
 * the middle of booking gets the recovery SMS.
 *
 * How a call's end is known: the first event recorded under {@link streamEndKey} wins (`end_call`,
 * a transfer, a hang-up, a recovery, `stream_ended`, or the `<Connect action>` request finding the
 * caller on the line with no report: a dropped stream). Abnormal ends also record the outcome
 * `failed`, which the terminal status callback turns into the recovery SMS.
 * @module
 */
import { z } from "zod";
import { signInternalRequest } from "../internal_auth.ts";
import { callSidSchema } from "../twilio/fields.ts";
import type { ToolArgumentIssue } from "./catalog.ts";

const traceIdSchema = z.string().trim().min(1).max(128);

/** A tool call the model made, forwarded by voice-stream. */
export const toolCallRequestSchema = z.object({
  type: z.literal("tool_call"),
  callSid: callSidSchema,
  traceId: traceIdSchema,
  /** The `call_id` of `response.function_call_arguments.done`. */
  callId: z.string().trim().min(1).max(200),
  name: z.string().trim().min(1).max(100),
  /** The model's arguments: JSON text or the parsed value; validated by the tool catalog. */
  arguments: z.unknown().optional(),
});

/** How a conversation's stream ended, as voice-stream saw it. */
export const STREAM_END_REASONS = [
  /** The assistant said goodbye after `end_call`. */
  "assistant_ended",
  /** The call was handed to a person. */
  "transferred",
  /** Twilio sent `stop` without the assistant ending the call: the caller hung up. */
  "caller_hung_up",
  /** The call reached its time limit. */
  "max_duration",
  /** The model session failed and could not be restored. */
  "model_failed",
  /** Anything else that broke the bridge. */
  "error",
] as const;

/** How a conversation's stream ended. */
export type StreamEndReason = (typeof STREAM_END_REASONS)[number];

const controlBase = {
  type: z.literal("call_control"),
  callSid: callSidSchema,
  traceId: traceIdSchema,
};

/** A command from voice-stream about the live call. */
export const callControlRequestSchema = z.discriminatedUnion("action", [
  z.object({
    ...controlBase,
    action: z.enum(["transfer", "hangup", "recover"]),
    reason: z.string().trim().max(500).default(""),
  }),
  z.object({
    ...controlBase,
    action: z.literal("stream_ended"),
    reason: z.enum(STREAM_END_REASONS),
    /** The last `bookingInProgress` a tool response carried; false when none did. */
    bookingInProgress: z.boolean().default(false),
  }),
]);

/** Any request voice-action accepts as JSON: a tool call or a call-control command. */
export const voiceActionRequestSchema = z.discriminatedUnion("type", [
  toolCallRequestSchema,
  callControlRequestSchema,
]);

/**
 * Validates a JSON request body for voice-action. Never throws.
 * @param value the parsed JSON
 */
export function safeParseVoiceActionRequest(
  value: unknown,
):
  | { success: true; data: ParsedVoiceActionRequest }
  | { success: false; error: { message: string; issues: ToolArgumentIssue[] } } {
  const parsed = voiceActionRequestSchema.safeParse(value);
  if (parsed.success) return { success: true, data: parsed.data };
  const issues = parsed.error.issues.map((issue) => ({
    path: issue.path.map(String).join("."),
    message: issue.message,
  }));
  const details = issues.map((issue) => (issue.path ? `${issue.path}: ` : "") + issue.message);
  return {
    success: false,
    error: { message: `Invalid voice-action request: ${details.join("; ")}`, issues },
  };
}

/** A tool call request. */
export type ToolCallRequest = z.input<typeof toolCallRequestSchema>;
/** A call-control request (input form: defaults may be omitted). */
export type CallControlRequest = z.input<typeof callControlRequestSchema>;
/** A call-control request after validation. */
export type ParsedCallControlRequest = z.output<typeof callControlRequestSchema>;
/** Any request voice-action accepts as JSON. */
export type VoiceActionRequest = ToolCallRequest | CallControlRequest;
/** Any request after validation. */
export type ParsedVoiceActionRequest = z.output<typeof voiceActionRequestSchema>;

/** What voice-stream does after the assistant's current response has played. */
export type ToolEffect = "end_call" | "transfer";

/** 200 answer to a tool call. */
export interface ToolCallSuccess {
  ok: true;
  /** Goes into the `function_call_output` item as JSON text. */
  output: Record<string, unknown>;
  /**
   * `end_call`: send `call_control` `hangup` once the assistant's last words played.
   * `transfer`: send `call_control` `transfer` once they played. `null`: nothing to do.
   */
  effect: ToolEffect | null;
  /** Present when the tool opened (true) or closed (false) a booking flow; see the module doc. */
  bookingInProgress?: boolean;
}

/** Any non-200 answer: `error` is a sentence (for 422/503 tool answers, meant for the model). */
export interface VoiceActionFailure {
  ok: false;
  error: string;
  /** For 422: each bad argument. */
  issues?: ToolArgumentIssue[];
}

/** 200 answer to a call-control request. */
export interface CallControlSuccess {
  ok: true;
  action: ParsedCallControlRequest["action"];
  /**
   * `done`: applied. `call_ended`: the caller had already hung up (Twilio 20404/21220), nothing
   * to do. `recorded`: a `stream_ended` report was stored.
   */
  result: "done" | "call_ended" | "recorded";
  /** For `stream_ended`: true when the end counts as abnormal (the recovery SMS goes out). */
  abnormal?: boolean;
}

/** The 200 answer to a request of type `R`. */
export type VoiceActionResponse<R extends VoiceActionRequest> = R extends ToolCallRequest
  ? ToolCallSuccess
  : CallControlSuccess;

/** The outcome of `callVoiceAction`: never thrown. */
export type CallVoiceActionResult<T> =
  | { ok: true; status: number; response: T }
  /** voice-action answered with an error status; `error` is its message (readable). */
  | { ok: false; failure: "http"; status: number; error: string; issues?: ToolArgumentIssue[] }
  /** No answer within `timeoutMs`. */
  | { ok: false; failure: "timeout"; error: string }
  /** The request could not be sent or the answer not read. */
  | { ok: false; failure: "network"; error: string }
  /** A 200 whose body is not the protocol's JSON. */
  | { ok: false; failure: "invalid_response"; status: number; error: string };

/**
 * Signs and posts a request to voice-action. Never throws: every failure is a typed result.
 * @param fetchFn the fetch to use (the global one in production)
 * @param url voice-action's URL (`functionUrl(config, "voice-action")`)
 * @param secret `VOICE_INTERNAL_SECRET`
 * @param body the request
 * @param options.timeoutMs abort after this long (e.g. `TOOL_TIMEOUT_MS`)
 * @param options.nowMs the signing time, ms since the epoch
 */
export async function callVoiceAction<R extends VoiceActionRequest>(
  fetchFn: typeof fetch,
  url: string,
  secret: string,
  body: R,
  options: { timeoutMs: number; nowMs: number },
): Promise<CallVoiceActionResult<VoiceActionResponse<R>>> {
  const text = JSON.stringify(body);
  const signal = AbortSignal.timeout(options.timeoutMs);
  let response: Response;
  let payload: string;
  try {
    const headers = await signInternalRequest(secret, text, options.nowMs);
    response = await fetchFn(url, {
      method: "POST",
      headers: { ...headers, "content-type": "application/json" },
      body: text,
      signal,
    });
    payload = await response.text();
  } catch (error) {
    if (signal.aborted) {
      return { ok: false, failure: "timeout", error: `No answer within ${options.timeoutMs} ms` };
    }
    return { ok: false, failure: "network", error: errorMessage(error) };
  }
  let json: unknown = null;
  try {
    json = JSON.parse(payload);
  } catch {
    // Handled below: non-JSON bodies come from proxies and the platform, not voice-action.
  }
  const record = typeof json === "object" && json !== null ? json as Record<string, unknown> : null;
  if (response.status !== 200) {
    const error = typeof record?.error === "string"
      ? record.error
      : `voice-action answered ${response.status}`;
    const issues = Array.isArray(record?.issues) ? record.issues as ToolArgumentIssue[] : undefined;
    return { ok: false, failure: "http", status: response.status, error, issues };
  }
  if (record?.ok !== true) {
    return {
      ok: false,
      failure: "invalid_response",
      status: response.status,
      error: "voice-action answered 200 without an ok JSON body",
    };
  }
  return {
    ok: true,
    status: response.status,
    response: record as unknown as VoiceActionResponse<R>,
  };
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/**
 * Idempotency key of the event that says how a call's conversation ended. The first writer wins
 * (a tool's `end_call`, a call-control command, voice-stream's `stream_ended`, or the `<Connect
 * action>` request finding no report), so later writers learn the end was already handled.
 */
export function streamEndKey(callSid: string): string {
  return `stream-end:${callSid}`;
}
