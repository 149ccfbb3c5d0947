/**
 * voice-action: everything that happens to a call besides its audio, on one endpoint. Each POST is
 * classified and authenticated:
 * - `application/json`: an internal request from voice-stream (tool call or call control), signed
 *   with `VOICE_INTERNAL_SECRET` (HMAC over timestamp + body, 60 s); 401 otherwise.
 * - a Twilio form callback, named by the `route` query parameter voice-action puts in every URL it
 *   gives Twilio (`call-status`, `connect-action`, `sms-status`, `recording`, `voicemail`), signed
 *   with `X-Twilio-Signature` over the public URL and that query; 403 otherwise.
 * Anything else gets 400 with a message saying what was expected. The one GET is
 * `?route=calendar&token=...`, the iCalendar feed staff subscribe to (see `calendar_route.ts`).
 *
 * This file classifies requests and checks the Twilio signature; the routes are in
 * `internal_requests.ts` (tool calls, call control), `callbacks.ts` and `calendar_route.ts`.
 * @module
 */
import { type Config, functionUrl, streamUrl } from "../_shared/config.ts";
import type { Logger } from "../_shared/log.ts";
import {
  formValues,
  rawQueryString,
  readSignedTwilioForm,
  rejectionResponse,
} from "../_shared/http/twilio_request.ts";
import type { Store } from "../_shared/store/types.ts";
import type { TwilioRestClient } from "../_shared/twilio/rest_client.ts";
import { TWIML_CONTENT_TYPE } from "../_shared/codec/twiml.ts";
import { handleTwilioCallback, TWILIO_ROUTES, type TwilioRoute } from "./callbacks.ts";
import { CALENDAR_ROUTE } from "./calendar.ts";
import { serveCalendarFeed } from "./calendar_route.ts";
import { handleInternalRequest } from "./internal_requests.ts";
import { hangupTwiml } from "./twiml.ts";

/** The store operations voice-action uses. */
export type VoiceActionStore = Pick<
  Store,
  | "lookupCaller"
  | "recordCallEvent"
  | "getCall"
  | "searchAvailability"
  | "bookAppointment"
  | "cancelAppointment"
  | "rescheduleAppointment"
  | "claimSms"
  | "recordSmsResult"
  | "updateSmsStatus"
  | "takeCallHandover"
  | "calendarFeed"
>;

/** What voice-action needs; tests pass their own. */
export interface VoiceActionDeps {
  config:
    & Pick<Config, "publicFunctionsUrl" | "twilioAuthToken" | "twilioAccountSid" | "internalSecret">
    /** Lifetime of a handed-over call's stream token; defaults to 60 s. */
    & Partial<Pick<Config, "streamTokenTtlSeconds">>;
  log: Logger;
  /** Milliseconds since the epoch. */
  clock: () => number;
  store: VoiceActionStore;
  twilio: Pick<TwilioRestClient, "sendSms" | "updateCall">;
  /** Runs background work past the response (`EdgeRuntime.waitUntil`). */
  waitUntil: (promise: Promise<unknown>) => void;
}

/** The URLs voice-action gives Twilio, each naming its route. */
export interface VoiceActionUrls {
  base: string;
  /** Call status callback, with Twilio's retry overrides (what deploy.sh registers). */
  callStatus: string;
  connectAction: string;
  smsStatus: string;
  voicemail: string;
  recording: string;
  /** voice-stream's public `wss://` URL, for a handed-over call's next stream. */
  stream: string;
}

/** The URLs of voice-action's Twilio routes for this configuration. */
export function voiceActionUrls(config: Pick<Config, "publicFunctionsUrl">): VoiceActionUrls {
  const base = functionUrl(config, "voice-action");
  return {
    base,
    callStatus: `${base}?route=call-status#rc=3&rp=all`,
    connectAction: `${base}?route=connect-action`,
    smsStatus: `${base}?route=sms-status`,
    voicemail: `${base}?route=voicemail`,
    recording: `${base}?route=recording`,
    stream: streamUrl(config),
  };
}

/** What every route is given: the dependencies and the URLs voice-action gives Twilio. */
type VoiceActionContext = VoiceActionDeps & { urls: VoiceActionUrls };

const TWILIO_ROUTE_NAMES: ReadonlySet<string> = new Set(TWILIO_ROUTES);
/** Routes Twilio reads TwiML from: a failure there still answers TwiML (a hang-up). */
const TWIML_ROUTES: ReadonlySet<TwilioRoute> = new Set(["connect-action", "voicemail"]);

function mediaType(req: Request): string {
  return (req.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
}

/** Creates the handler. */
export function createVoiceActionHandler(
  deps: VoiceActionDeps,
): (req: Request) => Promise<Response> {
  const context: VoiceActionContext = { ...deps, urls: voiceActionUrls(deps.config) };
  return (req) => routeRequest(context, req);
}

/** Hands a request to its route; an unexpected failure answers 500 (TwiML routes: a hang-up). */
async function routeRequest(context: VoiceActionContext, req: Request): Promise<Response> {
  const query = rawQueryString(req.url);
  const params = new URLSearchParams(query.slice(1));
  const route = params.get("route");
  try {
    if (route === CALENDAR_ROUTE) return await serveCalendarFeed(context, req, params.get("token"));
    if (req.method !== "POST") {
      return new Response("Method not allowed", { status: 405, headers: { allow: "POST" } });
    }
    if (route === null && mediaType(req) === "application/json") {
      return await handleInternalRequest(context, req);
    }
    if (route !== null && TWILIO_ROUTE_NAMES.has(route)) {
      return await handleTwilioRequest(context, req, route as TwilioRoute);
    }
    context.log.warn("request_rejected", { reason: "unknown_route", route });
    return new Response(
      `Unknown voice-action request: expected ?route= one of ${TWILIO_ROUTES.join(", ")} ` +
        "(Twilio callbacks), or a signed application/json request from voice-stream",
      { status: 400 },
    );
  } catch (error) {
    context.log.error("action_failed", { route, error });
    if (route !== null && TWIML_ROUTES.has(route as TwilioRoute)) {
      return new Response(hangupTwiml(), {
        status: 200,
        headers: { "content-type": TWIML_CONTENT_TYPE },
      });
    }
    return new Response("Internal error", { status: 500 });
  }
}

/**
 * Checks a Twilio callback's signature (403) and account (403 when `TWILIO_ACCOUNT_SID` is set and
 * differs), then hands its form to the route's callback.
 */
async function handleTwilioRequest(
  context: VoiceActionContext,
  req: Request,
  route: TwilioRoute,
): Promise<Response> {
  const { config, log } = context;
  const read = await readSignedTwilioForm(req, {
    authToken: config.twilioAuthToken,
    publicUrl: context.urls.base,
  });
  if (!read.ok) {
    const { rejection } = read;
    if (rejection.status === 403) {
      log.warn("security_rejected", {
        reason: rejection.reason,
        path: `voice-action?route=${route}`,
      });
    } else {
      log.warn("request_rejected", {
        reason: rejection.reason,
        status: rejection.status,
        route,
      });
    }
    return rejectionResponse(rejection);
  }
  const values = formValues(read.params);
  if (config.twilioAccountSid && values.AccountSid !== config.twilioAccountSid) {
    log.warn("security_rejected", {
      reason: "account_mismatch",
      path: `voice-action?route=${route}`,
      callSid: values.CallSid,
    });
    return new Response(null, { status: 403 });
  }
  return await handleTwilioCallback(context, route, values);
}
