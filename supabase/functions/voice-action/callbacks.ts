/**
 * Twilio's signed form callbacks to voice-action, one function per `route` query parameter:
 * call status (`call-status`), the `<Connect action>` request when a stream ends
 * (`connect-action`: a new `<Connect><Stream>` when the stream handed the call over, else how the
 * conversation ended decides), message status (`sms-status`), and the voicemail `<Record>`'s action
 * (`voicemail`) and recording status callback (`recording`). Callbacks Twilio retries answer 503
 * when the event could not be stored; TwiML routes always answer TwiML the caller can live with.
 * @module
 */
import { z } from "zod";
import type { Config } from "../_shared/config.ts";
import { issueStreamToken } from "../_shared/internal_auth.ts";
import type { Logger } from "../_shared/log.ts";
import type { CallStatus, PendingHandover, Store } from "../_shared/store/types.ts";
import { callerIdSchema, callSidSchema, messageSidSchema } from "../_shared/twilio/fields.ts";
import type { TwilioRestClient } from "../_shared/twilio/rest_client.ts";
import { streamEndKey } from "../_shared/tools/protocol.ts";
import { maybeSendRecovery } from "./sms.ts";
import { TWIML_CONTENT_TYPE } from "../_shared/codec/twiml.ts";
import { continueStreamTwiml, hangupTwiml, recoveryTwiml, voicemailThanksTwiml } from "./twiml.ts";

/** The `route` values voice-action puts in the URLs it gives Twilio. */
export const TWILIO_ROUTES = [
  "call-status",
  "connect-action",
  "sms-status",
  "recording",
  "voicemail",
] as const;

/** A Twilio callback route. */
export type TwilioRoute = (typeof TWILIO_ROUTES)[number];

/** Lifetime of a handover's stream token when `STREAM_TOKEN_TTL_SECONDS` is not given, s. */
export const DEFAULT_HANDOVER_TOKEN_TTL_SECONDS = 60;

/** What the callbacks use. */
export interface CallbackDeps {
  store: Pick<
    Store,
    "recordCallEvent" | "claimSms" | "recordSmsResult" | "updateSmsStatus" | "takeCallHandover"
  >;
  twilio: Pick<TwilioRestClient, "sendSms">;
  waitUntil: (promise: Promise<unknown>) => void;
  urls: {
    smsStatus: string;
    voicemail: string;
    recording: string;
    connectAction: string;
    /** voice-stream's public `wss://` URL. */
    stream: string;
  };
  /** Signs the stream token of a handed-over call's next stream. */
  config: Pick<Config, "internalSecret"> & Partial<Pick<Config, "streamTokenTtlSeconds">>;
  /** Milliseconds since the epoch (token expiry). */
  clock: () => number;
  log: Logger;
}

const CALL_STATUSES = [
  "queued",
  "initiated",
  "ringing",
  "in-progress",
  "completed",
  "busy",
  "failed",
  "no-answer",
  "canceled",
] as const satisfies readonly CallStatus[];

const digits = z.string().regex(/^\d{1,9}$/, "must be a whole number");

const callStatusSchema = z.object({
  CallSid: callSidSchema,
  CallStatus: z.enum(CALL_STATUSES),
  From: callerIdSchema.optional(),
  To: callerIdSchema.optional(),
  CallDuration: digits.optional(),
  SequenceNumber: digits.optional(),
  Timestamp: z.string().max(64).optional(),
});

const connectActionSchema = z.object({
  CallSid: callSidSchema,
  CallStatus: z.string().max(32).optional(),
  // Only passed on to a handed-over call's next stream (its worker logs them, masked).
  From: z.string().max(256).optional(),
  To: z.string().max(256).optional(),
});

const smsStatusSchema = z.object({
  MessageSid: messageSidSchema,
  MessageStatus: z.string().regex(/^[a-z_-]{1,32}$/, "must be a Twilio message status"),
  ErrorCode: z.string().max(16).optional(),
});

const recordingSidSchema = z.string().regex(/^RE[0-9a-fA-F]{32}$/, "must be RE + 32 hex");

const recordingSchema = z.object({
  CallSid: callSidSchema,
  RecordingSid: recordingSidSchema,
  RecordingUrl: z.string().max(1000).optional(),
  RecordingStatus: z.string().regex(/^[a-z-]{1,32}$/).optional(),
  RecordingDuration: z.string().regex(/^-?\d{1,9}$/).optional(),
  ErrorCode: z.string().max(16).optional(),
});

const voicemailSchema = z.object({
  CallSid: callSidSchema,
  RecordingSid: recordingSidSchema.optional(),
  RecordingUrl: z.string().max(1000).optional(),
  RecordingDuration: z.string().regex(/^-?\d{1,9}$/).optional(),
});

const TWIML_HEADERS = { "content-type": TWIML_CONTENT_TYPE };

/** Answers one callback; `values` are the signed form's fields (single values). */
export function handleTwilioCallback(
  deps: CallbackDeps,
  route: TwilioRoute,
  values: Record<string, string>,
): Promise<Response> {
  // Twilio sends empty strings for absent optional fields (e.g. `ErrorCode=`).
  const present: Record<string, string> = {};
  for (const [key, value] of Object.entries(values)) if (value !== "") present[key] = value;
  switch (route) {
    case "call-status":
      return callStatus(deps, present);
    case "connect-action":
      return connectAction(deps, present);
    case "sms-status":
      return smsStatus(deps, present);
    case "recording":
      return recording(deps, present);
    case "voicemail":
      return voicemail(deps, present);
  }
}

function invalidFields(log: Logger, route: TwilioRoute, error: z.ZodError): Response {
  const fields = error.issues.map((issue) => `${issue.path.join(".")} ${issue.message}`);
  log.warn("request_rejected", { reason: "invalid_fields", route, fields });
  return new Response(`Invalid ${route} fields: ${fields.join("; ")}`, { status: 400 });
}

function storeFailed(log: Logger, route: TwilioRoute, error: unknown): Response {
  log.error("call_event_store_failed", { route, error });
  // 503: Twilio retries the callback (the status callback URL carries `#rc=3&rp=all`).
  return new Response("Could not store the event; retry later", { status: 503 });
}

function rfc2822ToIso(value: string | undefined): string | null {
  if (!value) return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : new Date(ms).toISOString();
}

async function callStatus(deps: CallbackDeps, values: Record<string, string>): Promise<Response> {
  const parsed = callStatusSchema.safeParse(values);
  if (!parsed.success) return invalidFields(deps.log, "call-status", parsed.error);
  const event = parsed.data;
  const log = deps.log.child({ callSid: event.CallSid });
  let recorded;
  try {
    recorded = await deps.store.recordCallEvent({
      callSid: event.CallSid,
      // One key per callback (retries and replays share it); SequenceNumber orders a call's
      // callbacks when Twilio sends several with the same status.
      idempotencyKey: `status:${event.CallSid}:${event.CallStatus}:${event.SequenceNumber ?? "-"}`,
      kind: "status_callback",
      status: event.CallStatus,
      from: event.From ?? null,
      to: event.To ?? null,
      durationSeconds: event.CallDuration === undefined ? null : Number(event.CallDuration),
      occurredAt: rfc2822ToIso(event.Timestamp),
      payload: { sequenceNumber: event.SequenceNumber ?? null },
    });
  } catch (error) {
    return storeFailed(log, "call-status", error);
  }
  // Replays check too: if the first delivery stored the event but died before claiming the
  // text, the retry sends it; the claim keeps it to one.
  const recovering = maybeSendRecovery(deps, event.CallSid, recorded, log);
  log.info("call_status", {
    status: event.CallStatus,
    callStatusAfter: recorded.status,
    outcome: recorded.outcome,
    replay: !recorded.inserted,
    recovering,
  });
  return new Response(null, { status: 204 });
}

async function connectAction(
  deps: CallbackDeps,
  values: Record<string, string>,
): Promise<Response> {
  const parsed = connectActionSchema.safeParse(values);
  if (!parsed.success) return invalidFields(deps.log, "connect-action", parsed.error);
  const { CallSid: callSid, CallStatus: callStatus, From: from, To: to } = parsed.data;
  const log = deps.log.child({ callSid });
  const callerOnLine = callStatus === "in-progress";
  const apology = () =>
    recoveryTwiml({ voicemailUrl: deps.urls.voicemail, recordingUrl: deps.urls.recording });
  let twiml: string;
  let decision: string;
  let handover: PendingHandover | null = null;
  try {
    if (!callerOnLine) {
      // The caller is gone: nothing to play. How the conversation ended is voice-stream's report
      // (caller_hung_up, ...) to make, so the stream-end key is left to it.
      const recorded = await deps.store.recordCallEvent({
        callSid,
        idempotencyKey: `connect-action:${callSid}`,
        kind: "connect_action",
        payload: { callStatus: callStatus ?? null },
      });
      maybeSendRecovery(deps, callSid, recorded, log);
      twiml = hangupTwiml();
      decision = "hangup:caller_gone";
    } else if ((handover = await takeHandover(deps, callSid, log)) !== null) {
      // The stream handed the call over: no end to record, the conversation goes on.
      const traceId = handover.traceId ?? "";
      const token = await issueStreamToken(deps.config.internalSecret, {
        callSid,
        traceId,
        expiresAtMs: deps.clock() +
          (deps.config.streamTokenTtlSeconds ?? DEFAULT_HANDOVER_TOKEN_TTL_SECONDS) * 1000,
        continuationId: handover.continuationId,
      });
      twiml = continueStreamTwiml({
        actionUrl: deps.urls.connectAction,
        streamUrl: deps.urls.stream,
        traceId,
        callSid,
        from: from ?? "",
        to: to ?? "",
        token,
        continuationId: handover.continuationId,
      });
      // A checkpoint is taken only for a stream nobody reported the end of: its worker died.
      decision = handover.kind === "checkpoint" ? "stream:resume_after_drop" : "stream:handover";
      // For the operator timeline; the answer does not wait for it.
      deps.waitUntil(
        deps.store.recordCallEvent({
          callSid,
          idempotencyKey: `handover:${handover.continuationId}`,
          kind: handover.kind === "checkpoint" ? "stream_resumed" : "stream_handover",
          traceId: handover.traceId,
          payload: { continuationId: handover.continuationId },
        }).catch((error) =>
          log.warn("call_event_store_failed", { kind: "stream_handover", error })
        ),
      );
    } else {
      // First writer wins: if nobody reported how the stream ended, it dropped.
      const recorded = await deps.store.recordCallEvent({
        callSid,
        idempotencyKey: streamEndKey(callSid),
        kind: "stream_ended",
        outcome: "failed",
        payload: { reason: "unreported", callStatus },
      });
      const abnormal = recorded.inserted || recorded.outcome === "failed";
      maybeSendRecovery(deps, callSid, recorded, log);
      twiml = abnormal ? apology() : hangupTwiml();
      decision = abnormal
        ? (recorded.inserted ? "voicemail:stream_dropped" : "voicemail:reported_failure")
        : "hangup:normal_end";
    }
  } catch (error) {
    // Without the database, an apology beats Twilio's generic error for a caller still there.
    log.error("call_event_store_failed", { route: "connect-action", error });
    twiml = callerOnLine ? apology() : hangupTwiml();
    decision = callerOnLine ? "voicemail:store_failed" : "hangup:store_failed";
  }
  log.info("connect_action", {
    callStatus: callStatus ?? null,
    decision,
    ...(handover
      ? {
        continuationId: handover.continuationId,
        traceId: handover.traceId,
        resumedFrom: handover.kind,
      }
      : {}),
  });
  return new Response(twiml, { status: 200, headers: TWIML_HEADERS });
}

/**
 * The call's pending handover, if its stream handed it over. A failed read is logged and counts as
 * none: the end is then decided as for any stream (a dropped stream gets the apology).
 */
async function takeHandover(
  deps: CallbackDeps,
  callSid: string,
  log: Logger,
): Promise<PendingHandover | null> {
  try {
    return await deps.store.takeCallHandover(callSid);
  } catch (error) {
    log.error("handover_take_failed", { error });
    return null;
  }
}

async function smsStatus(deps: CallbackDeps, values: Record<string, string>): Promise<Response> {
  const parsed = smsStatusSchema.safeParse(values);
  if (!parsed.success) return invalidFields(deps.log, "sms-status", parsed.error);
  const { MessageSid: messageSid, MessageStatus: status, ErrorCode: errorCode } = parsed.data;
  let known: boolean;
  try {
    known = await deps.store.updateSmsStatus(messageSid, status, errorCode ?? null);
  } catch (error) {
    return storeFailed(deps.log, "sms-status", error);
  }
  if (!known) deps.log.warn("sms_status_unknown_message", { messageSid, status });
  else deps.log.info("sms_status", { messageSid, status, errorCode: errorCode ?? null });
  return new Response(null, { status: 204 });
}

async function recording(deps: CallbackDeps, values: Record<string, string>): Promise<Response> {
  const parsed = recordingSchema.safeParse(values);
  if (!parsed.success) return invalidFields(deps.log, "recording", parsed.error);
  const event = parsed.data;
  const log = deps.log.child({ callSid: event.CallSid });
  const status = event.RecordingStatus ?? "completed";
  const durationSeconds = Number(event.RecordingDuration ?? "0");
  const isVoicemail = status === "completed" && durationSeconds > 0;
  let recorded;
  try {
    recorded = await deps.store.recordCallEvent({
      callSid: event.CallSid,
      idempotencyKey: `recording:${event.RecordingSid}:${status}`,
      kind: "voicemail_recording",
      outcome: isVoicemail ? "voicemail" : null,
      payload: {
        recordingSid: event.RecordingSid,
        recordingUrl: event.RecordingUrl ?? null,
        recordingStatus: status,
        durationSeconds,
        errorCode: event.ErrorCode ?? null,
      },
    });
  } catch (error) {
    return storeFailed(log, "recording", error);
  }
  maybeSendRecovery(deps, event.CallSid, recorded, log);
  log.info("voicemail_recording", { recordingSid: event.RecordingSid, status, durationSeconds });
  return new Response(null, { status: 204 });
}

async function voicemail(deps: CallbackDeps, values: Record<string, string>): Promise<Response> {
  const parsed = voicemailSchema.safeParse(values);
  if (!parsed.success) return invalidFields(deps.log, "voicemail", parsed.error);
  const event = parsed.data;
  const log = deps.log.child({ callSid: event.CallSid });
  const durationSeconds = Number(event.RecordingDuration ?? "0");
  try {
    const recorded = await deps.store.recordCallEvent({
      callSid: event.CallSid,
      idempotencyKey: `voicemail:${event.CallSid}:${event.RecordingSid ?? "none"}`,
      kind: "voicemail",
      outcome: durationSeconds > 0 ? "voicemail" : null,
      payload: {
        recordingSid: event.RecordingSid ?? null,
        recordingUrl: event.RecordingUrl ?? null,
        durationSeconds,
      },
    });
    maybeSendRecovery(deps, event.CallSid, recorded, log);
  } catch (error) {
    // The recording status callback stores the voicemail too (and is retried); thank the caller.
    log.error("call_event_store_failed", { route: "voicemail", error });
  }
  log.info("voicemail_left", { recordingSid: event.RecordingSid ?? null, durationSeconds });
  return new Response(voicemailThanksTwiml(), { status: 200, headers: TWIML_HEADERS });
}
