/**
 * voice-action: everything that happens to a call besides its audio, on one endpoint. Each POST is
 * classified and authenticated:
 * - `application/json`: an internal request from voice-stream (tool call or call control), signed
 *   with `VOICE_INTERNAL_SECRET` (HMAC over timestamp + body, 60 s); 401 otherwise.
 * - a Twilio form callback, named by the `route` query parameter voice-action puts in every URL it
 *   gives Twilio (`call-status`, `connect-action`, `sms-status`, `recording`, `voicemail`), signed
 *   with `X-Twilio-Signature` over the public URL and that query; 403 otherwise.
 * Anything else gets 400 with a message saying what was expected. The one GET is
 * `?route=calendar&token=...`, the iCalendar feed staff subscribe to (see `calendar.ts`).
 * @module
 */
import { type Config, functionUrl, streamUrl } from "../_shared/config.ts";
import type { Logger } from "../_shared/log.ts";
import { verifyInternalRequest } from "../_shared/internal_auth.ts";
import {
  formValues,
  rawQueryString,
  readBodyWithLimit,
  readSignedTwilioForm,
  rejectionResponse,
} from "../_shared/http/twilio_request.ts";
import type { CalendarFeed, Store } from "../_shared/store/types.ts";
import { safeParseToolCall } from "../_shared/tools/catalog.ts";
import {
  type ParsedCallControlRequest,
  safeParseVoiceActionRequest,
  type ToolCallSuccess,
  type VoiceActionFailure,
} from "../_shared/tools/protocol.ts";
import type { TwilioRestClient } from "../_shared/twilio/rest_client.ts";
import { handleTwilioCallback, TWILIO_ROUTES, type TwilioRoute } from "./callbacks.ts";
import { runCallControl } from "./call_control.ts";
import { endCall, runTool, type ToolResult } from "./tools.ts";
import { TWIML_CONTENT_TYPE } from "../_shared/codec/twiml.ts";
import { hangupTwiml } from "./twiml.ts";
import {
  buildCalendar,
  CALENDAR_CONTENT_TYPE,
  CALENDAR_ROUTE,
  feedTokenSha256,
  isFeedToken,
} from "./calendar.ts";

/** Internal requests are small JSON documents. */
export const MAX_INTERNAL_BODY_BYTES = 64 * 1024;

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

const JSON_HEADERS = { "content-type": "application/json; charset=utf-8" };
const TWIML_ROUTES: ReadonlySet<TwilioRoute> = new Set(["connect-action", "voicemail"]);

function json(
  status: number,
  body: ToolCallSuccess | VoiceActionFailure | Record<string, unknown>,
) {
  return new Response(JSON.stringify(body), { status, headers: JSON_HEADERS });
}

function mediaType(req: Request): string {
  return (req.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
}

/** Creates the handler. */
export function createVoiceActionHandler(
  deps: VoiceActionDeps,
): (req: Request) => Promise<Response> {
  const urls = voiceActionUrls(deps.config);
  const routes: ReadonlySet<string> = new Set(TWILIO_ROUTES);

  async function handleTwilio(req: Request, route: TwilioRoute): Promise<Response> {
    const read = await readSignedTwilioForm(req, {
      authToken: deps.config.twilioAuthToken,
      publicUrl: urls.base,
    });
    if (!read.ok) {
      const { rejection } = read;
      if (rejection.status === 403) {
        deps.log.warn("security_rejected", {
          reason: rejection.reason,
          path: `voice-action?route=${route}`,
        });
      } else {
        deps.log.warn("request_rejected", {
          reason: rejection.reason,
          status: rejection.status,
          route,
        });
      }
      return rejectionResponse(rejection);
    }
    const values = formValues(read.params);
    if (deps.config.twilioAccountSid && values.AccountSid !== deps.config.twilioAccountSid) {
      deps.log.warn("security_rejected", {
        reason: "account_mismatch",
        path: `voice-action?route=${route}`,
        callSid: values.CallSid,
      });
      return new Response(null, { status: 403 });
    }
    return await handleTwilioCallback({ ...deps, urls }, route, values);
  }

  async function handleInternal(req: Request): Promise<Response> {
    const body = await readBodyWithLimit(req, MAX_INTERNAL_BODY_BYTES);
    if (body === null) return json(413, { ok: false, error: "Request body too large" });
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
      return json(401, { ok: false, error: "Unauthorized" });
    }
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch {
      deps.log.warn("request_rejected", { reason: "malformed_json" });
      return json(400, { ok: false, error: "Malformed JSON body" });
    }
    const parsed = safeParseVoiceActionRequest(value);
    if (!parsed.success) {
      deps.log.warn("request_rejected", { reason: "invalid_request", error: parsed.error.message });
      return json(400, { ok: false, error: parsed.error.message, issues: parsed.error.issues });
    }
    const request = parsed.data;
    const log = deps.log.child({ traceId: request.traceId, callSid: request.callSid });
    if (request.type === "call_control") return await handleCallControl(request, log);
    return await handleToolCall(request, log);
  }

  async function handleCallControl(request: ParsedCallControlRequest, log: Logger) {
    try {
      const answer = await runCallControl({ ...deps, urls }, request, log);
      if (answer.status !== 200) {
        log.warn("call_control_failed", {
          action: request.action,
          status: answer.status,
          error: answer.body.error,
        });
      }
      return json(answer.status, answer.body);
    } catch (error) {
      log.error("call_control_failed", { action: request.action, error });
      return json(503, { ok: false, error: "The database is unavailable; retry later" });
    }
  }

  async function handleToolCall(
    request: {
      callSid: string;
      traceId: string;
      callId: string;
      name: string;
      arguments?: unknown;
    },
    log: Logger,
  ): Promise<Response> {
    const startedAt = performance.now();
    const finish = (
      status: number,
      outcome: string,
      body: ToolCallSuccess | VoiceActionFailure,
    ) => {
      const ms = Math.round((performance.now() - startedAt) * 10) / 10;
      log.info("tool_call", { name: request.name, callId: request.callId, ms, status, outcome });
      if (status !== 404) {
        // Counted on the call: one event per tool call, keyed by the model's call_id so a
        // repeated request is counted once. voice-stream reports the per-stream total in metrics.
        deps.waitUntil(deps.store.recordCallEvent({
          callSid: request.callSid,
          idempotencyKey: `tool:${request.callSid}:${request.callId}`,
          kind: "tool_call",
          traceId: request.traceId,
          payload: { name: request.name, outcome, ms, status },
        }));
      }
      return json(status, body);
    };
    const tool = safeParseToolCall(request.name, request.arguments);
    if (!tool.success) {
      return finish(422, "invalid_arguments", {
        ok: false,
        error: tool.error.message,
        issues: tool.error.issues,
      });
    }
    if (tool.data.name === "end_call") {
      // Hanging up must work when the call is unknown or the database is down (see `endCall`).
      const ended = await endCall(tool.data.arguments, {
        callSid: request.callSid,
        traceId: request.traceId,
        log,
      }, deps);
      return finish(200, ended.outcome, {
        ok: true,
        output: ended.output,
        effect: ended.effect,
        bookingInProgress: ended.bookingInProgress,
      });
    }
    let result: ToolResult;
    try {
      const call = await deps.store.getCall(request.callSid);
      const caller = call?.to && call.from
        ? await deps.store.lookupCaller(call.to, call.from)
        : null;
      if (!call || !caller) {
        return finish(404, "unknown_call", {
          ok: false,
          error: "This call is not linked to a business, so the tool cannot run. Apologize and " +
            "offer to take a message.",
        });
      }
      result = await runTool(tool.data, {
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
        smsStatusCallbackUrl: urls.smsStatus,
      });
    } catch (error) {
      log.error("tool_failed", { name: request.name, error });
      return finish(503, "error", {
        ok: false,
        error: "The booking system is not responding right now. Apologize, and offer to take " +
          "a message or to transfer the caller.",
      });
    }
    const body: ToolCallSuccess = { ok: true, output: result.output, effect: result.effect };
    if (result.bookingInProgress !== undefined) body.bookingInProgress = result.bookingInProgress;
    return finish(200, result.outcome, body);
  }

  /**
   * Serves a calendar feed. Unknown, revoked and malformed tokens get the same 404; the token is
   * never logged, only the feed it opened.
   */
  async function handleCalendar(req: Request, token: string | null): Promise<Response> {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("Method not allowed", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    let feed: CalendarFeed | null = null;
    // A malformed token cannot match: it gets the unknown token's answer without a lookup.
    if (isFeedToken(token)) {
      try {
        feed = await deps.store.calendarFeed(await feedTokenSha256(token));
      } catch (error) {
        deps.log.error("calendar_feed_failed", { error });
        return new Response("The calendar is unavailable; retry later", {
          status: 503,
          headers: { "retry-after": "60", "cache-control": "no-store" },
        });
      }
    }
    if (feed === null) {
      deps.log.info("calendar_feed_not_found");
      return new Response("Not found", { status: 404, headers: { "cache-control": "no-store" } });
    }
    const body = buildCalendar(feed, { nowMs: deps.clock() });
    deps.log.info("calendar_feed_served", {
      feedId: feed.feedId,
      orgId: feed.org.id,
      providerId: feed.provider?.id ?? null,
      events: feed.events.length,
    });
    return new Response(req.method === "HEAD" ? null : body, {
      status: 200,
      headers: {
        "content-type": CALENDAR_CONTENT_TYPE,
        "cache-control": "private, max-age=300",
        "content-disposition": `inline; filename="${feed.org.slug}.ics"`,
      },
    });
  }

  return async (req) => {
    const query = rawQueryString(req.url);
    const params = new URLSearchParams(query.slice(1));
    const route = params.get("route");
    try {
      if (route === CALENDAR_ROUTE) return await handleCalendar(req, params.get("token"));
      if (req.method !== "POST") {
        return new Response("Method not allowed", { status: 405, headers: { allow: "POST" } });
      }
      if (route === null && mediaType(req) === "application/json") return await handleInternal(req);
      if (route !== null && routes.has(route)) return await handleTwilio(req, route as TwilioRoute);
      deps.log.warn("request_rejected", { reason: "unknown_route", route });
      return new Response(
        `Unknown voice-action request: expected ?route= one of ${TWILIO_ROUTES.join(", ")} ` +
          "(Twilio callbacks), or a signed application/json request from voice-stream",
        { status: 400 },
      );
    } catch (error) {
      deps.log.error("action_failed", { route, error });
      if (route !== null && TWIML_ROUTES.has(route as TwilioRoute)) {
        return new Response(hangupTwiml(), {
          status: 200,
          headers: { "content-type": TWIML_CONTENT_TYPE },
        });
      }
      return new Response("Internal error", { status: 500 });
    }
  };
}
