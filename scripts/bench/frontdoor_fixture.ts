/**
 * Speaks Twilio's voice webhook (form POST signed with `X-Twilio-Signature`): the one incoming-call
 * request the voice-frontdoor benchmarks send over and over, signed once with the `twilio` package
 * (independent of the product's own signature code), and the frontdoor configuration that accepts
 * it. Shared by `handler_bench.ts`, `frontdoor_load.ts` and its wrk script.
 * @module
 */
import twilio from "twilio";
import { createFrontdoorHandler } from "../../supabase/functions/voice-frontdoor/handler.ts";
import { createLogger } from "../../supabase/functions/_shared/log.ts";
import { INTERNAL_ORIGIN } from "../functions_router.ts";

/** Demo credentials: not secrets, nothing real accepts them. */
export const BENCH_AUTH_TOKEN = "bench-twilio-auth-token-000000000000";
export const BENCH_ACCOUNT_SID = "AC" + "0123456789abcdef".repeat(2);
export const BENCH_INTERNAL_SECRET = "bench-internal-secret-".padEnd(48, "0");
export const BENCH_CALL_SID = "CA" + "fedcba9876543210".repeat(2);

/** The fields Twilio posts for an incoming call (the same CallSid every time: it is a bench). */
export function incomingCallParams(): Record<string, string> {
  return {
    AccountSid: BENCH_ACCOUNT_SID,
    ApiVersion: "2010-04-01",
    CallSid: BENCH_CALL_SID,
    CallStatus: "ringing",
    Called: "+15550100000",
    CalledCountry: "US",
    Caller: "+15551230001",
    CallerCountry: "US",
    Direction: "inbound",
    From: "+15551230001",
    FromCountry: "US",
    To: "+15550100000",
    ToCountry: "US",
  };
}

/** A signed webhook: the form body and its signature for `publicUrl`. */
export interface SignedWebhook {
  body: string;
  signature: string;
}

/** Signs the incoming-call form for the URL Twilio would call. */
export function signedIncomingCall(publicUrl: string): SignedWebhook {
  const params = incomingCallParams();
  return {
    body: new URLSearchParams(params).toString(),
    signature: twilio.getExpectedTwilioSignature(BENCH_AUTH_TOKEN, publicUrl, params),
  };
}

/** The request as the handler sees it on Supabase: internal URL, public signature. */
export function frontdoorRequest(webhook: SignedWebhook): Request {
  return new Request(`${INTERNAL_ORIGIN}/voice-frontdoor`, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      "x-twilio-signature": webhook.signature,
    },
    body: webhook.body,
  });
}

/**
 * The real frontdoor handler for in-process timing: real logger (lines formatted, then dropped
 * instead of written to stdout), `recordCallEvent` a no-op resolved promise, no `EdgeRuntime`.
 */
export function createBenchFrontdoorHandler(
  publicFunctionsUrl: string,
): (req: Request) => Promise<Response> {
  return createFrontdoorHandler({
    config: {
      publicFunctionsUrl,
      twilioAuthToken: BENCH_AUTH_TOKEN,
      twilioAccountSid: BENCH_ACCOUNT_SID,
      internalSecret: BENCH_INTERNAL_SECRET,
      streamTokenTtlSeconds: 60,
    },
    log: createLogger("voice-frontdoor", { sink: () => {} }),
    clock: Date.now,
    newTraceId: () => crypto.randomUUID(),
    recordCallEvent: () => Promise.resolve(),
    waitUntil: () => {},
  });
}

/** The baseline: a handler answering a constant TwiML document without reading the request. */
export function createConstantHandler(): (req: Request) => Response {
  const twiml = '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>';
  return () => new Response(twiml, { headers: { "content-type": "text/xml; charset=utf-8" } });
}
