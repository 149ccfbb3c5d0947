/**
 * The two texts a call can send (recovery and confirmation), over Twilio's Messages API: claimed
 * once per call in the database (`claim_sms`, which also refuses withheld, invalid and opted-out
 * numbers and renders the org's template), then sent, then the result stored. Also the rule that
 * decides which ended calls get the recovery text.
 * @module
 */
import type { Logger } from "../_shared/log.ts";
import type { CallEventResult, Store } from "../_shared/store/types.ts";
import type { TwilioRestClient } from "../_shared/twilio/rest_client.ts";

/** Twilio call statuses after which nothing more happens on the call. */
export const TERMINAL_CALL_STATUSES: ReadonlySet<string> = new Set([
  "completed",
  "busy",
  "failed",
  "no-answer",
  "canceled",
]);

/** Terminal statuses of calls that never reached the assistant: always worth a text. */
const UNANSWERED_STATUSES: ReadonlySet<string> = new Set(["busy", "failed", "no-answer"]);

/**
 * Outcomes of a `completed` call that ended badly: `failed` (model failure, dropped stream, or a
 * hang-up in the middle of booking, see `call_control.ts`) and `voicemail` (the caller was sent
 * to voicemail because the assistant broke down).
 */
export const ABNORMAL_OUTCOMES: ReadonlySet<string> = new Set(["failed", "voicemail"]);

/**
 * Whether a call in this state gets the recovery text: it has ended, and either never reached
 * the assistant (busy, failed, no-answer) or completed with an abnormal outcome. A caller who hung
 * up while it rang (`canceled`) gets nothing; neither does a call already `recovered`.
 */
export function needsRecoverySms(call: Pick<CallEventResult, "status" | "outcome">): boolean {
  if (call.status === null || !TERMINAL_CALL_STATUSES.has(call.status)) return false;
  if (call.outcome === "recovered") return false;
  if (UNANSWERED_STATUSES.has(call.status)) return true;
  return call.status === "completed" && call.outcome !== null &&
    ABNORMAL_OUTCOMES.has(call.outcome);
}

/** What sending needs. */
export interface SmsDeps {
  store: Pick<Store, "claimSms" | "recordSmsResult" | "recordCallEvent">;
  twilio: Pick<TwilioRestClient, "sendSms">;
  /** Where Twilio posts the message's delivery status (`?route=sms-status`). */
  statusCallbackUrl: string;
}

/** What became of an attempt to text a caller. */
export type SmsDelivery =
  | { sent: true; messageSid: string }
  | { sent: false; reason: "already_claimed" | "opted_out" | "invalid_number" | "unknown_call" }
  | { sent: false; reason: "send_failed"; errorCode: string }
  | { sent: false; reason: "store_failed" };

/**
 * Claims and sends the call's one text of `kind`. Never throws: failures are logged and returned.
 * A recovery text that went out marks the call `recovered`. A send that fails after the client's
 * retries is stored as `failed` with Twilio's error code (or `timeout`/`network`).
 * @param deps store, Twilio client and status callback URL
 * @param request the call, the kind of text and the call's logger
 */
export async function sendCallSms(
  deps: SmsDeps,
  request: { callSid: string; kind: "recovery" | "confirmation"; log: Logger },
): Promise<SmsDelivery> {
  const { callSid, kind, log } = request;
  let claim;
  try {
    claim = await deps.store.claimSms(callSid, kind);
  } catch (error) {
    log.error("sms_claim_failed", { kind, error });
    return { sent: false, reason: "store_failed" };
  }
  if (!claim.claimed) {
    log.info("sms_not_claimed", { kind, reason: claim.reason });
    return { sent: false, reason: claim.reason };
  }
  const result = await deps.twilio.sendSms({
    to: claim.to,
    from: claim.from,
    body: claim.body,
    statusCallback: deps.statusCallbackUrl,
  });
  if (!result.ok) {
    const errorCode = result.code !== null ? String(result.code) : result.kind;
    log.error("sms_failed", { kind, to: claim.to, errorCode, attempts: result.attempts });
    try {
      await deps.store.recordSmsResult(claim.smsId, {
        messageSid: null,
        status: "failed",
        errorCode,
      });
    } catch (error) {
      log.error("sms_result_store_failed", { kind, smsId: claim.smsId, error });
    }
    return { sent: false, reason: "send_failed", errorCode };
  }
  log.info("sms_sent", {
    kind,
    to: claim.to,
    messageSid: result.messageSid,
    status: result.status,
    attempts: result.attempts,
  });
  try {
    await deps.store.recordSmsResult(claim.smsId, {
      messageSid: result.messageSid,
      status: result.status,
    });
    if (kind === "recovery") {
      await deps.store.recordCallEvent({
        callSid,
        idempotencyKey: `sms-sent:${callSid}:recovery`,
        kind: "recovery_sms_sent",
        outcome: "recovered",
        payload: { messageSid: result.messageSid },
      });
    }
  } catch (error) {
    // The text went out; only its bookkeeping is missing. Logged with the SID to reconcile.
    log.error("sms_result_store_failed", {
      kind,
      smsId: claim.smsId,
      messageSid: result.messageSid,
      error,
    });
  }
  return { sent: true, messageSid: result.messageSid };
}

/** What `maybeSendRecovery` needs. */
export interface RecoveryDeps {
  store: SmsDeps["store"];
  twilio: SmsDeps["twilio"];
  waitUntil: (promise: Promise<unknown>) => void;
  urls: { smsStatus: string };
}

/**
 * Sends the recovery text in the background when the call's state calls for it
 * ({@link needsRecoverySms}). Returns whether it started.
 * @param call the call's status and outcome, as `recordCallEvent` returned them
 */
export function maybeSendRecovery(
  deps: RecoveryDeps,
  callSid: string,
  call: Pick<CallEventResult, "status" | "outcome">,
  log: Logger,
): boolean {
  if (!needsRecoverySms(call)) return false;
  deps.waitUntil(sendCallSms(
    { store: deps.store, twilio: deps.twilio, statusCallbackUrl: deps.urls.smsStatus },
    { callSid, kind: "recovery", log },
  ));
  return true;
}
