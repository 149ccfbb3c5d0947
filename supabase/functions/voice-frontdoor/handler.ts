/**
 * voice-frontdoor: Twilio's incoming-call webhook. Verifies the signature, answers
 * `<Connect><Stream>` TwiML pointing at voice-stream with a short-lived stream token, and records
 * the call in the background: no I/O happens before the answer.
 * @module
 */
import { z } from "zod";
import { type Config, functionUrl, streamUrl } from "../_shared/config.ts";
import type { Logger } from "../_shared/log.ts";
import { issueStreamToken } from "../_shared/internal_auth.ts";
import {
  formValues,
  readSignedTwilioForm,
  rejectionResponse,
} from "../_shared/http/twilio_request.ts";
import { accountSidSchema, callerIdSchema, callSidSchema } from "../_shared/twilio/fields.ts";
import { renderTwiml } from "../_shared/codec/twiml.ts";
import type { CallEventInput } from "../_shared/store/types.ts";

/** What the frontdoor needs; tests pass their own. */
export interface FrontdoorDeps {
  config: Pick<
    Config,
    | "publicFunctionsUrl"
    | "twilioAuthToken"
    | "twilioAccountSid"
    | "internalSecret"
    | "streamTokenTtlSeconds"
  >;
  log: Logger;
  /** Milliseconds since the epoch. */
  clock: () => number;
  newTraceId: () => string;
  recordCallEvent: (event: CallEventInput) => Promise<unknown>;
  /** Runs background work past the response (`EdgeRuntime.waitUntil`). */
  waitUntil: (promise: Promise<unknown>) => void;
  /** Waits between retries of the call's record; defaults to `setTimeout`. */
  sleep?: (ms: number) => Promise<void>;
}

/**
 * Pauses before each retry of the `call_incoming` write, ms (about 8 s in all). The call's row is
 * what ties the call to its org: lost to a short database outage, every tool call of the call
 * would answer "unknown call" even once the database is back.
 */
export const RECORD_RETRY_DELAYS_MS: readonly number[] = [250, 500, 1000, 2000, 4000];

const incomingCallSchema = z.object({
  CallSid: callSidSchema,
  AccountSid: accountSidSchema,
  From: callerIdSchema,
  To: callerIdSchema,
  CallStatus: z.string().max(32).optional(),
  CallerName: z.string().max(256).optional(),
});

const TWIML_HEADERS = { "content-type": "text/xml; charset=utf-8" };

/** What a caller hears when something unexpected breaks: never Twilio's generic error. */
export const APOLOGY_TWIML = renderTwiml([
  {
    verb: "Say",
    text: "Sorry, we cannot take your call right now. Please try again later.",
  },
  { verb: "Hangup" },
]);

/** Creates the handler. */
export function createFrontdoorHandler(
  deps: FrontdoorDeps,
): (req: Request) => Promise<Response> {
  const publicUrl = functionUrl(deps.config, "voice-frontdoor");
  const actionUrl = `${functionUrl(deps.config, "voice-action")}?route=connect-action`;
  const wssStreamUrl = streamUrl(deps.config);

  return async (req) => {
    const startedAt = performance.now();
    try {
      const read = await readSignedTwilioForm(req, {
        authToken: deps.config.twilioAuthToken,
        publicUrl,
      });
      if (!read.ok) {
        const { rejection } = read;
        if (rejection.status === 403) {
          deps.log.warn("security_rejected", {
            reason: rejection.reason,
            path: "voice-frontdoor",
          });
        } else {
          deps.log.warn("request_rejected", {
            reason: rejection.reason,
            status: rejection.status,
          });
        }
        return rejectionResponse(rejection);
      }
      const values = formValues(read.params);
      if (
        deps.config.twilioAccountSid &&
        values.AccountSid !== deps.config.twilioAccountSid
      ) {
        deps.log.warn("security_rejected", {
          reason: "account_mismatch",
          callSid: values.CallSid,
        });
        return new Response(null, { status: 403 });
      }
      const parsed = incomingCallSchema.safeParse(values);
      if (!parsed.success) {
        const fields = parsed.error.issues.map((issue) =>
          `${issue.path.join(".")} ${issue.message}`
        );
        deps.log.warn("request_rejected", { reason: "invalid_fields", fields });
        return new Response(`Invalid call fields: ${fields.join("; ")}`, {
          status: 400,
        });
      }
      const call = parsed.data;
      const traceId = deps.newTraceId();
      const nowMs = deps.clock();
      const token = await issueStreamToken(deps.config.internalSecret, {
        callSid: call.CallSid,
        traceId,
        expiresAtMs: nowMs + deps.config.streamTokenTtlSeconds * 1000,
      });
      const twiml = renderTwiml([{
        verb: "Connect",
        action: actionUrl,
        stream: {
          url: wssStreamUrl,
          parameters: [
            { name: "traceId", value: traceId },
            { name: "callSid", value: call.CallSid },
            { name: "from", value: call.From },
            { name: "to", value: call.To },
            { name: "token", value: token },
          ],
        },
      }]);
      deps.waitUntil(recordWithRetry(deps, {
        callSid: call.CallSid,
        idempotencyKey: `incoming:${call.CallSid}`,
        kind: "call_incoming",
        traceId,
        from: call.From,
        to: call.To,
        status: "ringing",
        occurredAt: new Date(nowMs).toISOString(),
        payload: { callerName: call.CallerName ?? null },
      }));
      deps.log.info("call_incoming", {
        traceId,
        callSid: call.CallSid,
        from: call.From,
        to: call.To,
        handlerMs: round(performance.now() - startedAt),
      });
      return new Response(twiml, { status: 200, headers: TWIML_HEADERS });
    } catch (error) {
      deps.log.error("frontdoor_failed", {
        error,
        handlerMs: round(performance.now() - startedAt),
      });
      return new Response(APOLOGY_TWIML, {
        status: 200,
        headers: TWIML_HEADERS,
      });
    }
  };
}

/** Records the call, retrying with backoff (the write is idempotent); rejects after the last try. */
async function recordWithRetry(deps: FrontdoorDeps, event: CallEventInput): Promise<void> {
  const sleep = deps.sleep ??
    ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  for (let attempt = 0;; attempt++) {
    try {
      await deps.recordCallEvent(event);
      return;
    } catch (error) {
      if (attempt >= RECORD_RETRY_DELAYS_MS.length || isPermanentStoreError(error)) throw error;
      deps.log.warn("call_record_retry", {
        traceId: event.traceId,
        callSid: event.callSid,
        attempt: attempt + 1,
        error,
      });
      await sleep(RECORD_RETRY_DELAYS_MS[attempt]);
    }
  }
}

/**
 * True for errors a retry cannot fix: the database refused the data itself (SQLSTATE classes 22
 * data exception, 23 integrity, 42 syntax or access) or PostgREST did (`PGRST...`).
 */
function isPermanentStoreError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^(22|23|42)[0-9A-Z]{3}$|^PGRST/.test(code);
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
