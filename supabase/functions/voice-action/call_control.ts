/**
 * Commands on a live call, carried out through Twilio's REST API (`Calls/{CallSid}.json`):
 * transfer to a person, hang up, recover from a model failure (apology + voicemail + recovery
 * text), and the `stream_ended` report that says how a conversation ended.
 *
 * How a call's end is known: every path that ends the conversation records one event under
 * `streamEndKey(callSid)` (first writer wins): `end_call`, a transfer, a hang-up, a recovery,
 * voice-stream's `stream_ended`, or the `<Connect action>` request finding the caller still on the
 * line with no report (a dropped stream). An abnormal end also records the outcome `failed`, which
 * the terminal status callback turns into the recovery text (`needsRecoverySms`).
 * @module
 */
import type { Logger } from "../_shared/log.ts";
import type { ParsedCallControlRequest, StreamEndReason } from "../_shared/tools/protocol.ts";
import { streamEndKey } from "../_shared/tools/protocol.ts";
import type {
  CallEventInput,
  CallEventResult,
  OrgSettings,
  Store,
} from "../_shared/store/types.ts";
import type { TwilioRestClient } from "../_shared/twilio/rest_client.ts";
import { maybeSendRecovery, sendCallSms } from "./sms.ts";
import { recoveryTwiml, transferTwiml } from "./twiml.ts";

/** What the call-control commands use. */
export interface CallControlDeps {
  store: Pick<
    Store,
    "recordCallEvent" | "getCall" | "lookupCaller" | "claimSms" | "recordSmsResult"
  >;
  twilio: Pick<TwilioRestClient, "updateCall" | "sendSms">;
  waitUntil: (promise: Promise<unknown>) => void;
  urls: { smsStatus: string; voicemail: string; recording: string };
}

/** How a REST command on the call went. */
export type CallCommandStatus =
  | { status: "done" }
  /** Twilio 20404/21220: the caller already hung up. */
  | { status: "call_ended" }
  | { status: "failed"; error: string };

/**
 * Redirects the call to `<Dial>` the org's transfer number (caller id: the org's number) and
 * records the outcome `transferred`. Used by `call_control` `transfer` and, at once, by
 * `transfer_to_human` in an emergency.
 */
export async function transferCall(
  deps: { store: Pick<Store, "recordCallEvent">; twilio: Pick<TwilioRestClient, "updateCall"> },
  request: { callSid: string; org: OrgSettings; reason: string; log: Logger },
): Promise<CallCommandStatus> {
  const { callSid, org, log } = request;
  if (!org.transferNumber) return { status: "failed", error: "The org has no transfer number" };
  await recordBestEffort(deps.store, {
    callSid,
    idempotencyKey: streamEndKey(callSid),
    kind: "stream_ended",
    payload: { reason: "transferred" },
  }, log);
  const result = await deps.twilio.updateCall(callSid, {
    twiml: transferTwiml({ callerId: org.phoneNumber, number: org.transferNumber }),
  });
  if (!result.ok && result.kind === "call_ended") {
    log.info("call_transfer_skipped", { reason: "call_ended" });
    return { status: "call_ended" };
  }
  if (!result.ok) {
    return { status: "failed", error: `Twilio refused the transfer: ${result.message}` };
  }
  await recordBestEffort(deps.store, {
    callSid,
    idempotencyKey: `transfer:${callSid}`,
    kind: "transferred",
    outcome: "transferred",
    payload: { reason: request.reason },
  }, log);
  log.info("call_transferred", { transferNumber: org.transferNumber, reason: request.reason });
  return { status: "done" };
}

/**
 * Records an event whose loss must not stop what the caller hears (a transfer, a hang-up, an
 * apology): a store failure is logged, not thrown.
 */
export async function recordBestEffort(
  store: Pick<Store, "recordCallEvent">,
  event: CallEventInput,
  log: Logger,
): Promise<CallEventResult | null> {
  try {
    return await store.recordCallEvent(event);
  } catch (error) {
    log.error("call_event_store_failed", { kind: event.kind, error });
    return null;
  }
}

/** Whether a stream that ended for `reason` ended abnormally (the caller gets the text). */
export function isAbnormalStreamEnd(reason: StreamEndReason, bookingInProgress: boolean): boolean {
  switch (reason) {
    case "assistant_ended":
    case "transferred":
      return false;
    case "caller_hung_up":
    case "max_duration":
      // Hanging up is normal, unless the caller was in the middle of booking.
      return bookingInProgress;
    case "model_failed":
    case "error":
      return true;
  }
}

/** A call-control command's answer: HTTP status and JSON body. */
export interface CallControlAnswer {
  status: number;
  body: Record<string, unknown>;
}

/**
 * Carries out one call-control command. Store failures that stop the command are thrown (the
 * handler answers 503); bookkeeping around a REST command is best effort.
 * @param request the validated command
 * @param log the call's logger
 */
export async function runCallControl(
  deps: CallControlDeps,
  request: ParsedCallControlRequest,
  log: Logger,
): Promise<CallControlAnswer> {
  const { callSid } = request;
  switch (request.action) {
    case "transfer": {
      const call = await deps.store.getCall(callSid);
      const caller = call?.to && call.from
        ? await deps.store.lookupCaller(call.to, call.from)
        : null;
      if (!call || !caller) return failure(404, "Cannot transfer: the call or its org is unknown");
      if (!caller.org.transferNumber) {
        return failure(409, "Cannot transfer: the org has no transfer number");
      }
      const result = await transferCall(deps, {
        callSid,
        org: caller.org,
        reason: request.reason,
        log,
      });
      return commandAnswer("transfer", result);
    }
    case "hangup": {
      await recordBestEffort(deps.store, {
        callSid,
        idempotencyKey: streamEndKey(callSid),
        kind: "stream_ended",
        traceId: request.traceId,
        payload: { reason: "hangup", detail: request.reason },
      }, log);
      const result = await deps.twilio.updateCall(callSid, { status: "completed" });
      log.info("call_hangup", { reason: request.reason, result: result.ok ? "done" : result.kind });
      return commandAnswer("hangup", toCommandStatus(result));
    }
    case "recover": {
      // The outcome is recorded first: whatever Twilio says, this call failed.
      await recordBestEffort(deps.store, {
        callSid,
        idempotencyKey: `recover:${callSid}`,
        kind: "model_failed",
        traceId: request.traceId,
        outcome: "failed",
        payload: { reason: request.reason },
      }, log);
      await recordBestEffort(deps.store, {
        callSid,
        idempotencyKey: streamEndKey(callSid),
        kind: "stream_ended",
        traceId: request.traceId,
        payload: { reason: "recover", detail: request.reason },
      }, log);
      const result = await deps.twilio.updateCall(callSid, {
        twiml: recoveryTwiml({
          voicemailUrl: deps.urls.voicemail,
          recordingUrl: deps.urls.recording,
        }),
      });
      deps.waitUntil(sendCallSms(
        { store: deps.store, twilio: deps.twilio, statusCallbackUrl: deps.urls.smsStatus },
        { callSid, kind: "recovery", log },
      ));
      log.warn("call_recovered", {
        reason: request.reason,
        result: result.ok ? "done" : result.kind,
      });
      return commandAnswer("recover", toCommandStatus(result));
    }
    case "stream_ended": {
      const abnormal = isAbnormalStreamEnd(request.reason, request.bookingInProgress);
      const recorded = await deps.store.recordCallEvent({
        callSid,
        idempotencyKey: streamEndKey(callSid),
        kind: "stream_ended",
        traceId: request.traceId,
        outcome: abnormal ? "failed" : null,
        payload: { reason: request.reason, bookingInProgress: request.bookingInProgress },
      });
      // The terminal status callback may have come first: then the text goes out from here.
      maybeSendRecovery(deps, callSid, recorded, log);
      log.info("stream_ended", {
        reason: request.reason,
        bookingInProgress: request.bookingInProgress,
        abnormal: recorded.inserted && abnormal,
        firstReport: recorded.inserted,
      });
      return {
        status: 200,
        body: {
          ok: true,
          action: "stream_ended",
          result: "recorded",
          abnormal: recorded.inserted && abnormal,
        },
      };
    }
  }
}

function toCommandStatus(
  result: Awaited<ReturnType<TwilioRestClient["updateCall"]>>,
): CallCommandStatus {
  if (result.ok) return { status: "done" };
  if (result.kind === "call_ended") return { status: "call_ended" };
  return { status: "failed", error: `Twilio refused the call update: ${result.message}` };
}

function commandAnswer(
  action: "transfer" | "hangup" | "recover",
  result: CallCommandStatus,
): CallControlAnswer {
  if (result.status === "failed") return failure(502, result.error);
  return { status: 200, body: { ok: true, action, result: result.status } };
}

function failure(status: number, error: string): CallControlAnswer {
  return { status, body: { ok: false, error } };
}
