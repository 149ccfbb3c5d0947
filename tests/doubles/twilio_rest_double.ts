/**
 * Twilio's REST API (2010-04-01: `Messages.json`, `Calls/{CallSid}.json`) and Twilio's signed
 * webhooks and status callbacks, as a loopback double for tests. It answers with Twilio-shaped
 * JSON and Twilio error codes, records every request, can inject 429/5xx answers, forwards call
 * updates to live calls (see `twilio_call_double.ts`) and sends status callbacks signed exactly
 * as Twilio signs them (`X-Twilio-Signature`).
 *
 * Decisions where Twilio's documentation is silent (documented here so tests can rely on them):
 * - Connection overrides (`#rc=3&rp=all`, Twilio's "webhooks connection overrides") are read
 *   from the URL fragment, and the fragment is stripped before both requesting and signing: a
 *   fragment never travels over HTTP (RFC 3986 §3.5), so a receiver could not rebuild a signed
 *   URL that contained it. Without overrides a webhook is retried once on connection failure
 *   (Twilio's documented default `rc=1`, `rp=ct`).
 * - An update with `Twiml`/`Url` on a call that already ended answers 400 with code 21220
 *   ("Invalid call state"); `Status=completed|canceled` on an ended call answers 200 unchanged.
 *   Unknown call SIDs answer 404 with code 20404.
 * - Call status callbacks default to the `completed` event only, which is what a phone number's
 *   "call status changes" URL receives. `statusCallbackEvents` can add `answered` and
 *   `updated` (the latter is a double-only event: one `in-progress` callback per REST update).
 * @module
 */

/** Twilio's REST API version, also sent as `ApiVersion` in every webhook. */
export const TWILIO_API_VERSION = "2010-04-01";

/** Longest SMS body Twilio accepts (error 21617 beyond it). */
export const SMS_BODY_MAX_CHARACTERS = 1600;

/** Longest inline `Twiml` a call update accepts (error 32018 beyond it). */
export const CALL_UPDATE_TWIML_MAX_CHARACTERS = 4000;

/** Retries Twilio allows in a connection override (`rc`), per its connection overrides page. */
const MAX_RETRY_COUNT = 5;

/** Twilio's default read timeout for a webhook, in ms (connection override `rt`). */
const DEFAULT_READ_TIMEOUT_MS = 15_000;

/** Pause between webhook retries; Twilio does not document one, short keeps tests fast. */
const DEFAULT_RETRY_DELAY_MS = 10;

/** E.164: a plus, a non-zero country digit, at most 15 digits in all. */
const E164_PATTERN = /^\+[1-9]\d{1,14}$/;

/** Channel prefixes Twilio accepts in front of an address (`whatsapp:+1…`). */
const CHANNEL_PREFIX_PATTERN = /^(whatsapp|messenger|rcs):/;

/** Alphanumeric sender IDs: 1-11 characters, letters, digits, spaces, at least one letter. */
const ALPHANUMERIC_SENDER_PATTERN = /^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$/;

/** GSM-7 basic character set (one septet each); anything else forces UCS-2 segments. */
const GSM7_BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
  "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/** GSM-7 extension characters (escape + septet: two each). */
const GSM7_EXTENDED = "^{}\\[~]|€\f";

// ---------------------------------------------------------------------------------------------
// Signing and webhooks (shared with twilio_call_double.ts)
// ---------------------------------------------------------------------------------------------

/** Form parameters as Twilio sends them: repeated names become arrays. */
export type TwilioParams = Record<string, string | string[]>;

const textEncoder = new TextEncoder();

/**
 * `X-Twilio-Signature` for a request: base64(HMAC-SHA1(token, url + each parameter sorted by
 * name as name + value)). Written independently of the product's `signature.ts` so that a bug
 * there cannot hide itself in tests; `twilio_rest_double_test.ts` checks it on Twilio's
 * documented example.
 * @param authToken the account auth token (HMAC key)
 * @param url the exact URL Twilio requested, query string included, fragment excluded
 * @param params the POST parameters (empty for GET and WebSocket upgrades)
 */
export async function signTwilioRequest(
  authToken: string,
  url: string,
  params: TwilioParams = {},
): Promise<string> {
  let data = url;
  for (const name of Object.keys(params).sort()) {
    const value = params[name];
    // Repeated parameters: each distinct value in sorted order, as Twilio's helper libraries do.
    const values = Array.isArray(value) ? [...new Set(value)].sort() : [value];
    for (const item of values) data += name + item;
  }
  const key = await crypto.subtle.importKey(
    "raw",
    textEncoder.encode(authToken),
    { name: "HMAC", hash: "SHA-1" },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, textEncoder.encode(data)));
  let binary = "";
  for (const byte of mac) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** Retry settings read from a URL fragment (Twilio "connection overrides"). */
export interface ConnectionOverrides {
  /** Retries after the first attempt (`rc`, 0-5). */
  retryCount: number;
  /** Failures that trigger a retry (`rp`): `ct`, `rt`, `4xx`, `5xx` or `all`. */
  retryPolicies: string[];
  /** Per-attempt read timeout in ms (`rt`). */
  readTimeoutMs: number;
  /** Budget for all attempts in ms (`tt`), or null. */
  totalTimeoutMs: number | null;
  /** Every key/value of the fragment, as written. */
  raw: Record<string, string>;
}

/**
 * Splits a configured webhook URL into the URL Twilio requests and signs (fragment removed) and
 * its connection overrides.
 * @param configuredUrl a webhook URL, optionally with `#rc=…&rp=…`
 */
export function parseConnectionOverrides(
  configuredUrl: string,
): { url: string; overrides: ConnectionOverrides } {
  const hashAt = configuredUrl.indexOf("#");
  const url = hashAt === -1 ? configuredUrl : configuredUrl.slice(0, hashAt);
  const fragment = hashAt === -1 ? "" : configuredUrl.slice(hashAt + 1);
  const raw: Record<string, string> = {};
  for (const pair of fragment.split("&")) {
    if (pair === "") continue;
    const equalsAt = pair.indexOf("=");
    if (equalsAt === -1) raw[pair] = "";
    else raw[pair.slice(0, equalsAt)] = decodeURIComponent(pair.slice(equalsAt + 1));
  }
  const retryCount = raw.rc === undefined
    ? 1
    : Math.max(0, Math.min(MAX_RETRY_COUNT, Number.parseInt(raw.rc, 10) || 0));
  const retryPolicies = (raw.rp ?? "ct").split(",").map((policy) => policy.trim()).filter(
    Boolean,
  );
  const readTimeoutMs = raw.rt === undefined
    ? DEFAULT_READ_TIMEOUT_MS
    : Number.parseInt(raw.rt, 10) || DEFAULT_READ_TIMEOUT_MS;
  const totalTimeoutMs = raw.tt === undefined ? null : Number.parseInt(raw.tt, 10) || null;
  return { url, overrides: { retryCount, retryPolicies, readTimeoutMs, totalTimeoutMs, raw } };
}

/** A webhook request as Twilio makes it. */
export interface TwilioWebhookRequest {
  /** The URL as configured at Twilio (public), optionally with a connection-override fragment. */
  publicUrl: string;
  /** Defaults to `POST`. A `GET` carries the parameters in the query string and signs them there. */
  method?: "GET" | "POST";
  params: TwilioParams;
  /** HMAC key of the signature (the account auth token). */
  signingToken: string;
  /** Maps the public URL (fragment removed) to the URL actually fetched. Defaults to identity. */
  rewriteUrl?: (publicUrl: string) => string;
  /** `I-Twilio-Idempotency-Token` value, the same for every retry; null sends no header. */
  idempotencyToken?: string | null;
  /** Sends this instead of the computed signature (for negative tests). */
  signatureOverride?: string;
  /** Pause between retries in ms. Defaults to 10. */
  retryDelayMs?: number;
}

/** One try of a webhook. */
export interface TwilioWebhookAttempt {
  /** `Date.now()` when the attempt started. */
  startedAt: number;
  durationMs: number;
  /** HTTP status, or null when no response arrived. */
  status: number | null;
  /** Why no response arrived (`ct` connection failure, `rt` read timeout), or null. */
  failure: "ct" | "rt" | null;
  error: string | null;
}

/** What became of a webhook after all its attempts. */
export interface TwilioWebhookDelivery {
  /** The URL that was signed (public, fragment removed, query included). */
  signedUrl: string;
  /** The URL that was fetched. */
  requestUrl: string;
  method: "GET" | "POST";
  params: TwilioParams;
  signature: string;
  idempotencyToken: string | null;
  overrides: ConnectionOverrides;
  attempts: TwilioWebhookAttempt[];
  /** Status of the last attempt, or null when none got a response. */
  status: number | null;
  /** Body of the last response ("" when none). */
  body: string;
  /** `content-type` of the last response, or null. */
  contentType: string | null;
  /** True when the last attempt got a 2xx. */
  ok: boolean;
}

function encodeForm(params: TwilioParams): string {
  const form = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    for (const item of Array.isArray(value) ? value : [value]) form.append(name, item);
  }
  return form.toString();
}

function shouldRetry(attempt: TwilioWebhookAttempt, policies: string[]): boolean {
  const kind = attempt.failure ??
    (attempt.status !== null && attempt.status >= 500
      ? "5xx"
      : attempt.status !== null && attempt.status >= 400
      ? "4xx"
      : null);
  if (kind === null) return false;
  return policies.includes("all") || policies.includes(kind);
}

/**
 * Sends one webhook the way Twilio does: form-encoded, signed over the public URL, with Twilio's
 * headers, retried per the URL's connection overrides. Never throws; failures are in the result.
 * @param request what to send and where
 */
export async function sendTwilioWebhook(
  request: TwilioWebhookRequest,
): Promise<TwilioWebhookDelivery> {
  const method = request.method ?? "POST";
  const { url: publicUrl, overrides } = parseConnectionOverrides(request.publicUrl);
  let signedUrl = publicUrl;
  let body: string | undefined;
  let signedParams: TwilioParams = request.params;
  if (method === "GET") {
    const query = encodeForm(request.params);
    if (query !== "") signedUrl += (signedUrl.includes("?") ? "&" : "?") + query;
    signedParams = {};
  } else {
    body = encodeForm(request.params);
  }
  const requestUrl = (request.rewriteUrl ?? ((url: string) => url))(signedUrl);
  const signature = request.signatureOverride ??
    await signTwilioRequest(request.signingToken, signedUrl, signedParams);
  const idempotencyToken = request.idempotencyToken === undefined
    ? crypto.randomUUID()
    : request.idempotencyToken;
  const headers: Record<string, string> = {
    "accept": "*/*",
    "user-agent": "TwilioProxy/1.1",
    "x-home-region": "us1",
    "x-twilio-signature": signature,
  };
  if (body !== undefined) headers["content-type"] = "application/x-www-form-urlencoded";
  if (idempotencyToken !== null) headers["i-twilio-idempotency-token"] = idempotencyToken;

  const attempts: TwilioWebhookAttempt[] = [];
  const firstStartedAt = Date.now();
  let status: number | null = null;
  let responseBody = "";
  let contentType: string | null = null;
  for (let attemptIndex = 0; attemptIndex <= overrides.retryCount; attemptIndex++) {
    if (attemptIndex > 0) {
      await new Promise((resolve) =>
        setTimeout(resolve, request.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS)
      );
    }
    const startedAt = Date.now();
    const attempt: TwilioWebhookAttempt = {
      startedAt,
      durationMs: 0,
      status: null,
      failure: null,
      error: null,
    };
    try {
      const response = await fetch(requestUrl, {
        method,
        headers,
        body,
        signal: AbortSignal.timeout(overrides.readTimeoutMs),
      });
      responseBody = await response.text();
      attempt.status = response.status;
      contentType = response.headers.get("content-type");
    } catch (error) {
      const timedOut = error instanceof DOMException && error.name === "TimeoutError";
      attempt.failure = timedOut ? "rt" : "ct";
      attempt.error = error instanceof Error ? error.message : String(error);
      responseBody = "";
      contentType = null;
    }
    attempt.durationMs = Date.now() - startedAt;
    attempts.push(attempt);
    status = attempt.status;
    if (!shouldRetry(attempt, overrides.retryPolicies)) break;
    if (
      overrides.totalTimeoutMs !== null && Date.now() - firstStartedAt >= overrides.totalTimeoutMs
    ) break;
  }
  return {
    signedUrl,
    requestUrl,
    method,
    params: request.params,
    signature,
    idempotencyToken,
    overrides,
    attempts,
    status,
    body: responseBody,
    contentType,
    ok: status !== null && status >= 200 && status < 300,
  };
}

/**
 * A Twilio SID: two-letter prefix and 32 lowercase hex digits.
 * @param prefix `CA`, `SM`, `MZ`, `RE`…
 */
export function twilioSid(prefix: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return prefix + Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * A date in the RFC 2822 form Twilio uses in JSON and callbacks (`Tue, 01 Jul 2025 10:00:00 +0000`).
 * @param date the instant
 */
export function rfc2822Date(date: Date): string {
  return date.toUTCString().replace("GMT", "+0000");
}

// ---------------------------------------------------------------------------------------------
// Live calls (implemented by twilio_call_double.ts)
// ---------------------------------------------------------------------------------------------

/** Twilio call statuses. */
export type TwilioCallStatus =
  | "queued"
  | "ringing"
  | "in-progress"
  | "completed"
  | "busy"
  | "failed"
  | "no-answer"
  | "canceled";

/** A REST update of a live call, as parsed from `Calls/{CallSid}.json`. */
export interface TwilioCallUpdate {
  twiml?: string;
  url?: string;
  method?: "GET" | "POST";
  status?: "completed" | "canceled";
}

/** What a live call exposes to the REST double. */
export interface TwilioLiveCall {
  readonly callSid: string;
  readonly from: string;
  readonly to: string;
  readonly direction: "inbound" | "outbound-api";
  /** Twilio's standard request parameters for this call (no `CallStatus`), for callbacks. */
  callParams(): Record<string, string>;
  /** Applies a REST update (Twilio answers before the call has acted on it). */
  applyUpdate(update: TwilioCallUpdate): void;
}

/** Handed back by `registerCall`: the live call reports its status changes through it. */
export interface TwilioCallRegistration {
  /**
   * Reports a status change; `completed` triggers the status callback.
   * @param status the new status
   * @param info call duration in seconds when the call ended
   */
  statusChanged(status: TwilioCallStatus, info?: { durationSec?: number }): void;
}

// ---------------------------------------------------------------------------------------------
// The REST double
// ---------------------------------------------------------------------------------------------

/** Double-only status callback events; see the module comment. */
export type StatusCallbackEvent = "answered" | "updated" | "completed";

/** Options of `startTwilioRestDouble`. */
export interface TwilioRestDoubleOptions {
  accountSid: string;
  authToken: string;
  /** API key SIDs (`SK…`) and their secrets, also accepted as Basic auth. */
  apiKeys?: Record<string, string>;
  /** HMAC key for callbacks. Defaults to `authToken` (what Twilio uses). */
  statusCallbackSigningToken?: string;
  /**
   * Public URL of the voice status callback (e.g. `https://<ref>.supabase.co/functions/v1/voice-action#rc=3&rp=all`).
   * A call can override it at registration or with a `StatusCallback` update parameter.
   */
  statusCallbackUrl?: string;
  /** Which call events send a status callback. Defaults to `["completed"]`. */
  statusCallbackEvents?: StatusCallbackEvent[];
  /** Maps a public callback URL (fragment removed) to the URL fetched. Defaults to identity. */
  rewriteUrl?: (publicUrl: string) => string;
  /** Delay before a message turns `sent` (and its callback fires), in ms. Defaults to 20. */
  smsSentDelayMs?: number;
  /** Delay between `sent` and the final status, in ms. Defaults to 20. */
  smsDeliveredDelayMs?: number;
  /** Final status of a message. Defaults to `delivered`. */
  smsFinalStatus?: (message: TwilioMessageRecord) => "delivered" | "undelivered" | "failed";
  /** Pause between callback retries in ms. Defaults to 10. */
  callbackRetryDelayMs?: number;
  /** Port to listen on (loopback). Defaults to a free port. */
  port?: number;
}

/** A request the double received. */
export interface RecordedRestRequest {
  /** `Date.now()` at arrival. */
  at: number;
  method: string;
  path: string;
  /** Basic auth user name, or null. */
  authUser: string | null;
  params: TwilioParams;
  headers: Record<string, string>;
  /** Status the double answered. */
  status: number;
  /** JSON body the double answered. */
  response: unknown;
}

/** A message created through `Messages.json`. */
export interface TwilioMessageRecord {
  sid: string;
  accountSid: string;
  to: string;
  from: string | null;
  messagingServiceSid: string | null;
  body: string;
  mediaUrls: string[];
  statusCallback: string | null;
  status: "accepted" | "queued" | "sent" | "delivered" | "undelivered" | "failed";
  numSegments: number;
  errorCode: number | null;
  dateCreated: Date;
  dateUpdated: Date;
  dateSent: Date | null;
}

/** A REST update as received and what the double did with it. */
export interface RecordedCallUpdate {
  at: number;
  params: TwilioParams;
  /** HTTP status answered. */
  status: number;
}

/** A call known to the double. */
export interface TwilioCallRecord {
  sid: string;
  from: string;
  to: string;
  direction: "inbound" | "outbound-api";
  status: TwilioCallStatus;
  dateCreated: Date;
  startTime: Date;
  endTime: Date | null;
  durationSec: number | null;
  statusCallbackUrl: string | null;
  updates: RecordedCallUpdate[];
  live: TwilioLiveCall;
}

/** A status callback the double sent (call or message). */
export interface RecordedStatusCallback {
  kind: "call" | "message";
  /** CallSid or MessageSid. */
  sid: string;
  /** `CallStatus` or `MessageStatus`. */
  status: string;
  /** The URL as configured (fragment kept). */
  configuredUrl: string;
  delivery: TwilioWebhookDelivery;
}

/** Failures to answer instead of processing, for the next `count` matching requests. */
export interface FailureSpec {
  /** Substring of, or pattern for, the request path (e.g. `"Messages.json"`). */
  path: string | RegExp;
  /** Only this method. Defaults to any. */
  method?: string;
  /** How many matching requests fail. Defaults to 1. */
  count?: number;
  /** 429 (Twilio code 20429) or a 5xx (code 20500). Defaults to 429. */
  status?: number;
  /** `Retry-After` header in seconds on a 429. Defaults to 1. */
  retryAfterSeconds?: number;
}

/** A running REST double. */
export interface TwilioRestDouble {
  /** `http://127.0.0.1:<port>`: use in place of `https://api.twilio.com`. */
  readonly baseUrl: string;
  readonly requests: RecordedRestRequest[];
  readonly messages: TwilioMessageRecord[];
  readonly calls: TwilioCallRecord[];
  readonly statusCallbacks: RecordedStatusCallback[];
  /**
   * Makes the next matching requests fail without effect.
   * @param spec which requests and how
   */
  injectFailures(spec: FailureSpec): void;
  /**
   * Makes a live call known, so `Calls/{sid}.json` updates reach it.
   * @param call the live call
   * @param options its status callback URL (defaults to the double's)
   */
  registerCall(
    call: TwilioLiveCall,
    options?: { statusCallbackUrl?: string },
  ): TwilioCallRegistration;
  /** Resolves when no callback is pending or in flight. */
  settled(): Promise<void>;
  /** Stops timers, waits for callbacks in flight and closes the server. */
  close(): Promise<void>;
}

interface ActiveFailure {
  spec: FailureSpec;
  remaining: number;
}

/** Twilio's JSON error body. */
function twilioError(status: number, code: number, message: string): {
  status: number;
  body: Record<string, unknown>;
  headers?: Record<string, string>;
} {
  return {
    status,
    body: { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status },
  };
}

function isPhoneAddress(value: string): boolean {
  return E164_PATTERN.test(value.replace(CHANNEL_PREFIX_PATTERN, ""));
}

function isAbsoluteHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
}

/**
 * Number of SMS segments Twilio bills for a body: GSM-7 (160, or 153 per part) or UCS-2 (70, or
 * 67 per part).
 * @param body the message text
 */
export function smsSegmentCount(body: string): number {
  let septets = 0;
  let gsm7 = true;
  for (const character of body) {
    if (GSM7_BASIC.includes(character)) septets += 1;
    else if (GSM7_EXTENDED.includes(character)) septets += 2;
    else {
      gsm7 = false;
      break;
    }
  }
  if (body.length === 0) return 1;
  if (gsm7) return septets <= 160 ? 1 : Math.ceil(septets / 153);
  // UCS-2 counts UTF-16 code units.
  return body.length <= 70 ? 1 : Math.ceil(body.length / 67);
}

function formatNumber(value: string): string {
  const match = /^\+1(\d{3})(\d{3})(\d{4})$/.exec(value);
  return match ? `(${match[1]}) ${match[2]}-${match[3]}` : value;
}

function firstParam(params: TwilioParams, name: string): string | undefined {
  const value = params[name];
  return Array.isArray(value) ? value[0] : value;
}

async function readForm(request: Request): Promise<TwilioParams> {
  const contentType = request.headers.get("content-type") ?? "";
  if (!contentType.includes("application/x-www-form-urlencoded")) return {};
  const form = new URLSearchParams(await request.text());
  const params: TwilioParams = {};
  for (const [name, value] of form) {
    const existing = params[name];
    if (existing === undefined) params[name] = value;
    else if (Array.isArray(existing)) existing.push(value);
    else params[name] = [existing, value];
  }
  return params;
}

function basicAuthUser(header: string | null): { user: string; password: string } | null {
  if (header === null || !header.startsWith("Basic ")) return null;
  let decoded: string;
  try {
    decoded = atob(header.slice("Basic ".length).trim());
  } catch {
    return null;
  }
  const colonAt = decoded.indexOf(":");
  if (colonAt === -1) return null;
  return { user: decoded.slice(0, colonAt), password: decoded.slice(colonAt + 1) };
}

/**
 * Starts the REST double on loopback.
 * @param options account, credentials and callback settings
 */
export function startTwilioRestDouble(options: TwilioRestDoubleOptions): TwilioRestDouble {
  const { accountSid, authToken } = options;
  const signingToken = options.statusCallbackSigningToken ?? authToken;
  const callbackEvents = new Set(options.statusCallbackEvents ?? ["completed"]);
  const requests: RecordedRestRequest[] = [];
  const messages: TwilioMessageRecord[] = [];
  const calls: TwilioCallRecord[] = [];
  const statusCallbacks: RecordedStatusCallback[] = [];
  const failures: ActiveFailure[] = [];
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const inFlight = new Set<Promise<unknown>>();
  const callSequence = new Map<string, number>();
  let closed = false;

  function track<T>(promise: Promise<T>): Promise<T> {
    inFlight.add(promise);
    promise.finally(() => inFlight.delete(promise));
    return promise;
  }

  function later(delayMs: number, task: () => void): void {
    if (closed) return;
    const id = setTimeout(() => {
      timers.delete(id);
      if (!closed) task();
    }, delayMs);
    timers.add(id);
  }

  function sendCallback(
    kind: "call" | "message",
    sid: string,
    status: string,
    configuredUrl: string,
    params: TwilioParams,
  ): void {
    if (closed) return;
    track(
      sendTwilioWebhook({
        publicUrl: configuredUrl,
        params,
        signingToken,
        rewriteUrl: options.rewriteUrl,
        retryDelayMs: options.callbackRetryDelayMs,
      }).then((delivery) => {
        statusCallbacks.push({ kind, sid, status, configuredUrl, delivery });
      }),
    );
  }

  function sendCallStatusCallback(record: TwilioCallRecord, status: TwilioCallStatus): void {
    if (record.statusCallbackUrl === null) return;
    const sequenceNumber = callSequence.get(record.sid) ?? 0;
    callSequence.set(record.sid, sequenceNumber + 1);
    const params: Record<string, string> = {
      ...record.live.callParams(),
      CallStatus: status,
      CallbackSource: "call-progress-events",
      SequenceNumber: String(sequenceNumber),
      Timestamp: rfc2822Date(new Date()),
    };
    if (status === "completed") params.CallDuration = String(record.durationSec ?? 0);
    sendCallback("call", record.sid, status, record.statusCallbackUrl, params);
  }

  function messageJson(message: TwilioMessageRecord): Record<string, unknown> {
    const uri = `/${TWILIO_API_VERSION}/Accounts/${accountSid}/Messages/${message.sid}.json`;
    return {
      account_sid: accountSid,
      api_version: TWILIO_API_VERSION,
      body: message.body,
      date_created: rfc2822Date(message.dateCreated),
      date_sent: message.dateSent === null ? null : rfc2822Date(message.dateSent),
      date_updated: rfc2822Date(message.dateUpdated),
      direction: "outbound-api",
      error_code: message.errorCode,
      error_message: null,
      from: message.from,
      messaging_service_sid: message.messagingServiceSid,
      num_media: String(message.mediaUrls.length),
      num_segments: String(message.numSegments),
      price: null,
      price_unit: "USD",
      sid: message.sid,
      status: message.status,
      subresource_uris: {
        media: uri.replace(/\.json$/, "/Media.json"),
      },
      to: message.to,
      uri,
    };
  }

  function callJson(
    record: TwilioCallRecord,
    statusOverride?: TwilioCallStatus,
  ): Record<string, unknown> {
    const uri = `/${TWILIO_API_VERSION}/Accounts/${accountSid}/Calls/${record.sid}.json`;
    return {
      account_sid: accountSid,
      annotation: null,
      answered_by: null,
      api_version: TWILIO_API_VERSION,
      caller_name: null,
      date_created: rfc2822Date(record.dateCreated),
      date_updated: rfc2822Date(new Date()),
      direction: record.direction,
      duration: record.durationSec === null ? null : String(record.durationSec),
      end_time: record.endTime === null ? null : rfc2822Date(record.endTime),
      forwarded_from: null,
      from: record.from,
      from_formatted: formatNumber(record.from),
      group_sid: null,
      parent_call_sid: null,
      phone_number_sid: null,
      price: null,
      price_unit: "USD",
      queue_time: "0",
      sid: record.sid,
      start_time: rfc2822Date(record.startTime),
      status: statusOverride ?? record.status,
      subresource_uris: {
        recordings: uri.replace(/\.json$/, "/Recordings.json"),
        streams: uri.replace(/\.json$/, "/Streams.json"),
      },
      to: record.to,
      to_formatted: formatNumber(record.to),
      trunk_sid: null,
      uri,
    };
  }

  function createMessage(params: TwilioParams): { status: number; body: Record<string, unknown> } {
    const to = firstParam(params, "To");
    const from = firstParam(params, "From");
    const serviceSid = firstParam(params, "MessagingServiceSid");
    const body = firstParam(params, "Body") ?? "";
    const mediaParam = params.MediaUrl;
    const mediaUrls = mediaParam === undefined
      ? []
      : Array.isArray(mediaParam)
      ? mediaParam
      : [mediaParam];
    const statusCallback = firstParam(params, "StatusCallback");
    if (to === undefined || to === "") {
      return twilioError(400, 21604, "A 'To' phone number is required.");
    }
    if (!isPhoneAddress(to)) {
      return twilioError(400, 21211, `The 'To' number ${to} is not a valid phone number.`);
    }
    if ((from === undefined || from === "") && (serviceSid === undefined || serviceSid === "")) {
      return twilioError(400, 21603, "A 'From' phone number is required.");
    }
    if (
      from !== undefined && from !== "" && !isPhoneAddress(from) &&
      !ALPHANUMERIC_SENDER_PATTERN.test(from)
    ) {
      return twilioError(
        400,
        21212,
        `The 'From' number ${from} is not a valid phone number, shortcode, or alphanumeric sender ID.`,
      );
    }
    if (serviceSid !== undefined && serviceSid !== "" && !/^MG[0-9a-fA-F]{32}$/.test(serviceSid)) {
      return twilioError(400, 21705, "The Messaging Service is invalid.");
    }
    if (body === "" && mediaUrls.length === 0) {
      return twilioError(400, 21602, "Message body is required.");
    }
    if (body.length > SMS_BODY_MAX_CHARACTERS) {
      return twilioError(
        400,
        21617,
        "The concatenated message body exceeds the 1600 character limit.",
      );
    }
    if (statusCallback !== undefined && !isAbsoluteHttpUrl(statusCallback)) {
      return twilioError(400, 21609, "The StatusCallback URL is not a valid URL.");
    }
    const now = new Date();
    const message: TwilioMessageRecord = {
      sid: twilioSid("SM"),
      accountSid,
      to,
      from: from === undefined || from === "" ? null : from,
      messagingServiceSid: serviceSid === undefined || serviceSid === "" ? null : serviceSid,
      body,
      mediaUrls,
      statusCallback: statusCallback ?? null,
      // A message sent through a Messaging Service without a From waits for a sender: "accepted".
      status: from === undefined || from === "" ? "accepted" : "queued",
      numSegments: smsSegmentCount(body),
      errorCode: null,
      dateCreated: now,
      dateUpdated: now,
      dateSent: null,
    };
    messages.push(message);
    scheduleMessageProgress(message);
    return { status: 201, body: messageJson(message) };
  }

  function messageCallback(message: TwilioMessageRecord): void {
    if (message.statusCallback === null) return;
    const params: Record<string, string> = {
      AccountSid: accountSid,
      ApiVersion: TWILIO_API_VERSION,
      From: message.from ?? "",
      MessageSid: message.sid,
      MessageStatus: message.status,
      SmsSid: message.sid,
      SmsStatus: message.status,
      To: message.to,
    };
    if (message.messagingServiceSid !== null) {
      params.MessagingServiceSid = message.messagingServiceSid;
    }
    if (message.errorCode !== null) params.ErrorCode = String(message.errorCode);
    sendCallback("message", message.sid, message.status, message.statusCallback, params);
  }

  function scheduleMessageProgress(message: TwilioMessageRecord): void {
    later(options.smsSentDelayMs ?? 20, () => {
      message.status = "sent";
      message.dateSent = new Date();
      message.dateUpdated = message.dateSent;
      messageCallback(message);
      later(options.smsDeliveredDelayMs ?? 20, () => {
        const finalStatus = options.smsFinalStatus?.(message) ?? "delivered";
        message.status = finalStatus;
        // 30003 "Unreachable destination handset", 30008 "Unknown error" (Twilio error codes).
        if (finalStatus === "undelivered") message.errorCode = 30003;
        if (finalStatus === "failed") message.errorCode = 30008;
        message.dateUpdated = new Date();
        messageCallback(message);
      });
    });
  }

  function updateCall(
    callSid: string,
    params: TwilioParams,
    at: number,
  ): { status: number; body: Record<string, unknown> } {
    const record = calls.find((call) => call.sid === callSid);
    const path = `/${TWILIO_API_VERSION}/Accounts/${accountSid}/Calls/${callSid}.json`;
    if (record === undefined) {
      return twilioError(404, 20404, `The requested resource ${path} was not found`);
    }
    const answer = (result: { status: number; body: Record<string, unknown> }) => {
      record.updates.push({ at, params, status: result.status });
      return result;
    };
    const twiml = firstParam(params, "Twiml");
    const url = firstParam(params, "Url");
    const status = firstParam(params, "Status");
    const method = firstParam(params, "Method");
    const statusCallback = firstParam(params, "StatusCallback");
    if (twiml === undefined && url === undefined && status === undefined) {
      return answer(twilioError(400, 21200, "Twiml, Url or Status is required to update a call."));
    }
    if (status !== undefined && status !== "completed" && status !== "canceled") {
      return answer(
        twilioError(400, 21200, `Status ${status} is invalid: use completed or canceled.`),
      );
    }
    if (twiml !== undefined && twiml.length > CALL_UPDATE_TWIML_MAX_CHARACTERS) {
      return answer(
        twilioError(400, 32018, "Twiml size exceeded maximum allowed value of 4000 characters"),
      );
    }
    if (url !== undefined && !isAbsoluteHttpUrl(url)) {
      return answer(twilioError(400, 21205, "Url is not a valid URL."));
    }
    if (method !== undefined && method !== "GET" && method !== "POST") {
      return answer(twilioError(400, 21200, `Method ${method} is invalid: use GET or POST.`));
    }
    if (statusCallback !== undefined && !isAbsoluteHttpUrl(statusCallback)) {
      return answer(twilioError(400, 21609, "The StatusCallback URL is not a valid URL."));
    }
    const ended = record.status !== "in-progress" && record.status !== "ringing" &&
      record.status !== "queued";
    if (ended) {
      if (status !== undefined) return answer({ status: 200, body: callJson(record) });
      return answer(
        twilioError(400, 21220, "Call is not in-progress. Cannot redirect."),
      );
    }
    if (statusCallback !== undefined) record.statusCallbackUrl = statusCallback;
    if (status === "canceled") {
      // `canceled` only affects queued or ringing calls; a live call keeps going.
      return answer({ status: 200, body: callJson(record) });
    }
    const update: TwilioCallUpdate = status === "completed"
      ? { status: "completed" }
      : twiml !== undefined
      ? { twiml }
      : { url, method: (method as "GET" | "POST" | undefined) ?? "POST" };
    record.live.applyUpdate(update);
    if (callbackEvents.has("updated") && status !== "completed") {
      sendCallStatusCallback(record, "in-progress");
    }
    return answer({
      status: 200,
      body: callJson(record, status === "completed" ? "completed" : undefined),
    });
  }

  function matchFailure(method: string, path: string): ActiveFailure | null {
    for (const failure of failures) {
      if (failure.remaining <= 0) continue;
      if (failure.spec.method !== undefined && failure.spec.method !== method) continue;
      const pattern = failure.spec.path;
      const matches = typeof pattern === "string" ? path.includes(pattern) : pattern.test(path);
      if (!matches) continue;
      failure.remaining--;
      return failure;
    }
    return null;
  }

  async function route(
    request: Request,
    path: string,
    params: TwilioParams,
    authUser: string | null,
    authPassword: string | null,
  ): Promise<{
    status: number;
    body: Record<string, unknown>;
    headers?: Record<string, string>;
  }> {
    const failure = matchFailure(request.method, path);
    if (failure !== null) {
      const status = failure.spec.status ?? 429;
      if (status === 429) {
        const error = twilioError(429, 20429, "Too Many Requests");
        return {
          ...error,
          headers: { "retry-after": String(failure.spec.retryAfterSeconds ?? 1) },
        };
      }
      return twilioError(status, 20500, "An internal server error has occurred");
    }
    const match = /^\/2010-04-01\/Accounts\/([^/]+)\/(Messages|Calls)(?:\/([^/]+))?\.json$/.exec(
      path,
    );
    if (match === null) {
      return twilioError(404, 20404, `The requested resource ${path} was not found`);
    }
    const [, pathAccountSid, collection, sid] = match;
    const credentialsValid = authUser !== null && (
      (authUser === accountSid && authPassword === authToken) ||
      (options.apiKeys?.[authUser] !== undefined && options.apiKeys[authUser] === authPassword)
    );
    if (!credentialsValid || pathAccountSid !== accountSid) {
      return {
        status: 401,
        body: {
          code: 20003,
          detail: "Your AccountSid or AuthToken was incorrect.",
          message: "Authenticate",
          more_info: "https://www.twilio.com/docs/errors/20003",
          status: 401,
        },
        headers: { "www-authenticate": 'Basic realm="Twilio API"' },
      };
    }
    await Promise.resolve();
    if (collection === "Messages" && sid === undefined && request.method === "POST") {
      return createMessage(params);
    }
    if (collection === "Messages" && sid !== undefined && request.method === "GET") {
      const message = messages.find((item) => item.sid === sid);
      return message === undefined
        ? twilioError(404, 20404, `The requested resource ${path} was not found`)
        : { status: 200, body: messageJson(message) };
    }
    if (collection === "Calls" && sid !== undefined && request.method === "POST") {
      return updateCall(sid, params, Date.now());
    }
    if (collection === "Calls" && sid !== undefined && request.method === "GET") {
      const record = calls.find((call) => call.sid === sid);
      return record === undefined
        ? twilioError(404, 20404, `The requested resource ${path} was not found`)
        : { status: 200, body: callJson(record) };
    }
    return twilioError(405, 20004, "Method not allowed");
  }

  const server = Deno.serve(
    { hostname: "127.0.0.1", port: options.port ?? 0, onListen: () => {} },
    async (request) => {
      const at = Date.now();
      const path = new URL(request.url).pathname;
      const params = await readForm(request);
      const auth = basicAuthUser(request.headers.get("authorization"));
      const headers: Record<string, string> = {};
      request.headers.forEach((value, name) => (headers[name] = value));
      const result = await route(request, path, params, auth?.user ?? null, auth?.password ?? null);
      requests.push({
        at,
        method: request.method,
        path,
        authUser: auth?.user ?? null,
        params,
        headers,
        status: result.status,
        response: result.body,
      });
      return new Response(JSON.stringify(result.body), {
        status: result.status,
        headers: {
          "content-type": "application/json; charset=utf-8",
          "twilio-request-id": twilioSid("RQ"),
          ...result.headers,
        },
      });
    },
  );

  return {
    baseUrl: `http://127.0.0.1:${server.addr.port}`,
    requests,
    messages,
    calls,
    statusCallbacks,
    injectFailures(spec) {
      failures.push({ spec, remaining: spec.count ?? 1 });
    },
    registerCall(call, registrationOptions) {
      const now = new Date();
      const record: TwilioCallRecord = {
        sid: call.callSid,
        from: call.from,
        to: call.to,
        direction: call.direction,
        status: "in-progress",
        dateCreated: now,
        startTime: now,
        endTime: null,
        durationSec: null,
        statusCallbackUrl: registrationOptions?.statusCallbackUrl ?? options.statusCallbackUrl ??
          null,
        updates: [],
        live: call,
      };
      calls.push(record);
      if (callbackEvents.has("answered")) sendCallStatusCallback(record, "in-progress");
      return {
        statusChanged(status, info) {
          const wasLive = record.status === "in-progress" || record.status === "ringing" ||
            record.status === "queued";
          record.status = status;
          if (!wasLive || status === "in-progress" || status === "ringing") return;
          record.endTime = new Date();
          record.durationSec = info?.durationSec ??
            Math.round((record.endTime.getTime() - record.startTime.getTime()) / 1000);
          if (callbackEvents.has("completed")) sendCallStatusCallback(record, status);
        },
      };
    },
    async settled() {
      // Callbacks can schedule further callbacks (sent -> delivered): loop until quiet.
      while (inFlight.size > 0 || timers.size > 0) {
        if (inFlight.size > 0) await Promise.allSettled([...inFlight]);
        else await new Promise((resolve) => setTimeout(resolve, 5));
      }
    },
    async close() {
      closed = true;
      for (const id of timers) clearTimeout(id);
      timers.clear();
      await Promise.allSettled([...inFlight]);
      await server.shutdown();
    },
  };
}
