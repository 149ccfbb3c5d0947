/**
 * voice-stream's JSON requests to voice-action: authenticated (`VOICE_INTERNAL_SECRET`, see
 * `_shared/internal_auth.ts`), validated (`_shared/tools/protocol.ts`), then carried out as a tool
 * call (run for the call's org, logged as `tool_call` and counted on the call) or a call-control
 * command (see `call_control.ts`). Every answer is JSON.
 * @module
 */
import type { Config } from "../_shared/config.ts";
import type { Logger } from "../_shared/log.ts";
import { verifyInternalRequest } from "../_shared/internal_auth.ts";
import { readBodyWithLimit } from "../_shared/http/twilio_request.ts";
import { type ParsedToolCall, safeParseToolCall } from "../_shared/tools/catalog.ts";
import {
  type ParsedCallControlRequest,
  safeParseVoiceActionRequest,
  type ToolCallRequest,
  type ToolCallSuccess,
  type VoiceActionFailure,
} from "../_shared/tools/protocol.ts";
import { type CallControlDeps, runCallControl } from "./call_control.ts";
import { endCall, runTool, type ToolDeps, type ToolResult } from "./tools.ts";

/** Internal requests are small JSON documents. */
export const MAX_INTERNAL_BODY_BYTES = 64 * 1024;

/** What the internal requests use: the call-control commands' and the tools' needs. */
export interface InternalRequestDeps extends CallControlDeps {
  config: Pick<Config, "internalSecret">;
  store: CallControlDeps["store"] & ToolDeps["store"];
  twilio: CallControlDeps["twilio"] & ToolDeps["twilio"];
  /** Milliseconds since the epoch. */
  clock: () => number;
  log: Logger;
}

const JSON_HEADERS = { "content-type": "application/json; charset=utf-8" };

function jsonResponse(
  status: number,
  body: ToolCallSuccess | VoiceActionFailure | Record<string, unknown>,
): Response {
  return new Response(JSON.stringify(body), { status, headers: JSON_HEADERS });
}

/**
 * Answers one internal request: 413 when too large, 401 unless signed, 400 unless a valid tool
 * call or call-control command.
 */
export async function handleInternalRequest(
  deps: InternalRequestDeps,
  req: Request,
): Promise<Response> {
  const body = await readBodyWithLimit(req, MAX_INTERNAL_BODY_BYTES);
  if (body === null) return jsonResponse(413, { ok: false, error: "Request body too large" });
  const auth = await verifyInternalRequest(
    deps.config.internalSecret,
    req.headers,
    body,
    deps.clock(),
  );
  if (!auth.ok) {
    deps.log.warn("security_rejected", {
      reason: `internal_${auth.reason}`,
      path: "voice-action",
    });
    return jsonResponse(401, { ok: false, error: "Unauthorized" });
  }
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    deps.log.warn("request_rejected", { reason: "malformed_json" });
    return jsonResponse(400, { ok: false, error: "Malformed JSON body" });
  }
  const parsed = safeParseVoiceActionRequest(value);
  if (!parsed.success) {
    deps.log.warn("request_rejected", { reason: "invalid_request", error: parsed.error.message });
    return jsonResponse(400, {
      ok: false,
      error: parsed.error.message,
      issues: parsed.error.issues,
    });
  }
  const request = parsed.data;
  const log = deps.log.child({ traceId: request.traceId, callSid: request.callSid });
  if (request.type === "call_control") return await answerCallControl(deps, request, log);
  return await answerToolCall(deps, request, log);
}

/** Carries out a call-control command; a store failure that stops it answers 503. */
async function answerCallControl(
  deps: InternalRequestDeps,
  request: ParsedCallControlRequest,
  log: Logger,
): Promise<Response> {
  try {
    const answer = await runCallControl(deps, request, log);
    if (answer.status !== 200) {
      log.warn("call_control_failed", {
        action: request.action,
        status: answer.status,
        error: answer.body.error,
      });
    }
    return jsonResponse(answer.status, answer.body);
  } catch (error) {
    log.error("call_control_failed", { action: request.action, error });
    return jsonResponse(503, { ok: false, error: "The database is unavailable; retry later" });
  }
}

/** A tool call's answer before it is logged and counted. */
interface ToolCallAnswer {
  status: number;
  /** Short label for the `tool_call` log line and event. */
  outcome: string;
  body: ToolCallSuccess | VoiceActionFailure;
}

/** Runs a tool call and answers it, logging `tool_call` and counting it on the call. */
async function answerToolCall(
  deps: InternalRequestDeps,
  request: ToolCallRequest,
  log: Logger,
): Promise<Response> {
  const startedAt = performance.now();
  const answer = await toolCallAnswer(deps, request, log);
  const { status, outcome } = answer;
  const ms = Math.round((performance.now() - startedAt) * 10) / 10;
  log.info("tool_call", { name: request.name, callId: request.callId, ms, status, outcome });
  if (status !== 404) {
    // Counted on the call: one event per tool call, keyed by the model's call_id so a repeated
    // request is counted once. voice-stream reports the per-stream total in metrics.
    deps.waitUntil(deps.store.recordCallEvent({
      callSid: request.callSid,
      idempotencyKey: `tool:${request.callSid}:${request.callId}`,
      kind: "tool_call",
      traceId: request.traceId,
      payload: { name: request.name, outcome, ms, status },
    }));
  }
  return jsonResponse(status, answer.body);
}

/** Validates the tool's arguments and runs it: 422 when invalid, else what the tool says. */
async function toolCallAnswer(
  deps: InternalRequestDeps,
  request: ToolCallRequest,
  log: Logger,
): Promise<ToolCallAnswer> {
  const tool = safeParseToolCall(request.name, request.arguments);
  if (!tool.success) {
    return {
      status: 422,
      outcome: "invalid_arguments",
      body: { ok: false, error: tool.error.message, issues: tool.error.issues },
    };
  }
  if (tool.data.name === "end_call") {
    // Hanging up must work when the call is unknown or the database is down (see `endCall`).
    const ended = await endCall(tool.data.arguments, {
      callSid: request.callSid,
      traceId: request.traceId,
      log,
    }, deps);
    return {
      status: 200,
      outcome: ended.outcome,
      body: {
        ok: true,
        output: ended.output,
        effect: ended.effect,
        bookingInProgress: ended.bookingInProgress,
      },
    };
  }
  return await runToolForCall(deps, request, tool.data, log);
}

/**
 * Runs a tool for the call's org and caller: 404 when the call is not linked to a business, 503
 * when the store fails.
 */
async function runToolForCall(
  deps: InternalRequestDeps,
  request: ToolCallRequest,
  tool: ParsedToolCall,
  log: Logger,
): Promise<ToolCallAnswer> {
  let result: ToolResult;
  try {
    const call = await deps.store.getCall(request.callSid);
    const caller = call?.to && call.from ? await deps.store.lookupCaller(call.to, call.from) : null;
    if (!call || !caller) {
      return {
        status: 404,
        outcome: "unknown_call",
        body: {
          ok: false,
          error: "This call is not linked to a business, so the tool cannot run. Apologize and " +
            "offer to take a message.",
        },
      };
    }
    result = await runTool(tool, {
      callSid: request.callSid,
      traceId: request.traceId,
      call,
      caller,
      nowMs: deps.clock(),
      log,
    }, {
      store: deps.store,
      twilio: deps.twilio,
      waitUntil: deps.waitUntil,
      smsStatusCallbackUrl: deps.urls.smsStatus,
    });
  } catch (error) {
    log.error("tool_failed", { name: request.name, error });
    return {
      status: 503,
      outcome: "error",
      body: {
        ok: false,
        error: "The booking system is not responding right now. Apologize, and offer to take " +
          "a message or to transfer the caller.",
      },
    };
  }
  const body: ToolCallSuccess = { ok: true, output: result.output, effect: result.effect };
  if (result.bookingInProgress !== undefined) body.bookingInProgress = result.bookingInProgress;
  return { status: 200, outcome: result.outcome, body };
}
