/**
 * Speaks Twilio's REST API (2010-04-01) over `fetch`: sends SMS (`Messages.json`) and updates live
 * calls (`Calls/{CallSid}.json`), form-encoded with Basic auth. Retries 429 and 5xx answers with
 * backoff (honouring `Retry-After`) and never throws: every outcome is a typed result.
 * @module
 */
import { encodeTwilioForm } from "../codec/twilio_form.ts";
import type { Logger } from "../log.ts";

/** Twilio's API version path segment. */
export const TWILIO_API_VERSION = "2010-04-01";
/** Retries after the first attempt on 429/5xx. */
export const DEFAULT_MAX_RETRIES = 3;
/** First backoff; doubled on each retry (250, 500, 1000 ms). */
export const DEFAULT_BASE_DELAY_MS = 250;
/** Longest pause between attempts, whatever `Retry-After` asks. */
export const DEFAULT_MAX_DELAY_MS = 5_000;
/** Per-attempt timeout. */
export const DEFAULT_ATTEMPT_TIMEOUT_MS = 5_000;

/** Twilio error 20404: the resource (here: the call) does not exist any more. */
export const TWILIO_ERROR_NOT_FOUND = 20404;
/**
 * Twilio error 21220: "Invalid call state", answered when redirecting a call that has ended.
 * https://www.twilio.com/docs/errors/21220
 */
export const TWILIO_ERROR_INVALID_CALL_STATE = 21220;

/** Options of `createTwilioRestClient`. */
export interface TwilioRestClientOptions {
  /** `https://api.twilio.com`, or a double's base URL; no trailing slash needed. */
  baseUrl: string;
  accountSid: string;
  authToken: string;
  /** Defaults to the global `fetch`. */
  fetch?: typeof fetch;
  /** Waits between attempts; defaults to `setTimeout`. Tests pass a recorder. */
  sleep?: (ms: number) => Promise<void>;
  log: Logger;
  /** Defaults to {@link DEFAULT_MAX_RETRIES}. */
  maxRetries?: number;
  /** Defaults to {@link DEFAULT_BASE_DELAY_MS}. */
  baseDelayMs?: number;
  /** Defaults to {@link DEFAULT_MAX_DELAY_MS}. */
  maxDelayMs?: number;
  /** Defaults to {@link DEFAULT_ATTEMPT_TIMEOUT_MS}. */
  attemptTimeoutMs?: number;
  /** Reads `Retry-After` dates against it; defaults to `Date.now`. */
  clock?: () => number;
}

/** Why a REST request failed after its retries. */
export type TwilioRestFailure =
  /** Twilio answered an error; `code` is Twilio's error code when the body had one. */
  | {
    ok: false;
    kind: "http";
    status: number;
    code: number | null;
    message: string;
    attempts: number;
  }
  /** No answer: connection failure or per-attempt timeout. */
  | {
    ok: false;
    kind: "network" | "timeout";
    status: null;
    code: null;
    message: string;
    attempts: number;
  };

/** A message Twilio accepted. */
export interface SmsSent {
  ok: true;
  messageSid: string;
  /** Twilio's status in its answer, usually `queued` or `accepted`. */
  status: string;
  attempts: number;
}

/** A call update Twilio applied. */
export interface CallUpdated {
  ok: true;
  /** The call's status in Twilio's answer. */
  status: string;
  attempts: number;
}

/** The call had already ended (Twilio 20404 or 21220): not an error for us. */
export interface CallAlreadyEnded {
  ok: false;
  kind: "call_ended";
  status: number;
  code: number;
  attempts: number;
}

/** What a call update changes: new TwiML, a TwiML URL, or ending the call. */
export type CallUpdate =
  | { twiml: string; url?: never; status?: never }
  | { url: string; method?: "GET" | "POST"; twiml?: never; status?: never }
  | { status: "completed" | "canceled"; twiml?: never; url?: never };

/** The SMS to send. */
export interface SmsRequest {
  to: string;
  from: string;
  body: string;
  /** Where Twilio posts the message's status changes. */
  statusCallback?: string;
}

/** A Twilio REST client bound to one account. */
export interface TwilioRestClient {
  sendSms(message: SmsRequest): Promise<SmsSent | TwilioRestFailure>;
  updateCall(
    callSid: string,
    update: CallUpdate,
  ): Promise<CallUpdated | CallAlreadyEnded | TwilioRestFailure>;
}

type Attempted =
  | { kind: "response"; status: number; json: Record<string, unknown> | null; attempts: number }
  | { kind: "network" | "timeout"; message: string; attempts: number };

/**
 * Creates a REST client.
 * @param options account, credentials, transport and retry settings
 */
export function createTwilioRestClient(options: TwilioRestClientOptions): TwilioRestClient {
  const settings = resolveSettings(options);
  return {
    sendSms: (message) => sendSms(settings, message),
    updateCall: (callSid, update) => updateCall(settings, callSid, update),
  };
}

/** A client's options with their defaults applied, and its account's URL and credentials. */
interface RestSettings {
  fetch: typeof fetch;
  sleep: (ms: number) => Promise<void>;
  log: Logger;
  maxRetries: number;
  baseDelayMs: number;
  maxDelayMs: number;
  attemptTimeoutMs: number;
  clock: () => number;
  /** `{baseUrl}/2010-04-01/Accounts/{AccountSid}`: every request's path is below it. */
  accountBase: string;
  /** The `authorization` header (Basic). */
  authorization: string;
}

function resolveSettings(options: TwilioRestClientOptions): RestSettings {
  return {
    fetch: options.fetch ?? fetch,
    sleep: options.sleep ??
      ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))),
    log: options.log,
    maxRetries: options.maxRetries ?? DEFAULT_MAX_RETRIES,
    baseDelayMs: options.baseDelayMs ?? DEFAULT_BASE_DELAY_MS,
    maxDelayMs: options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS,
    attemptTimeoutMs: options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS,
    clock: options.clock ?? Date.now,
    accountBase: `${options.baseUrl.replace(/\/+$/, "")}/${TWILIO_API_VERSION}/Accounts/${
      encodeURIComponent(options.accountSid)
    }`,
    authorization: `Basic ${basicCredentials(options.accountSid, options.authToken)}`,
  };
}

/** Sends an SMS (`Messages.json`). */
async function sendSms(
  settings: RestSettings,
  message: SmsRequest,
): Promise<SmsSent | TwilioRestFailure> {
  const form: Record<string, string> = {
    To: message.to,
    From: message.from,
    Body: message.body,
  };
  if (message.statusCallback) form.StatusCallback = message.statusCallback;
  const result = await post(settings, "send_sms", "/Messages.json", form);
  if (result.kind === "response" && result.status >= 200 && result.status < 300) {
    const sid = result.json?.sid;
    if (typeof sid === "string" && sid !== "") {
      return {
        ok: true,
        messageSid: sid,
        status: typeof result.json?.status === "string" ? result.json.status : "queued",
        attempts: result.attempts,
      };
    }
  }
  return failure(settings.log, "send_sms", result);
}

/** Updates a live call (`Calls/{CallSid}.json`); a call that has ended is `call_ended`. */
async function updateCall(
  settings: RestSettings,
  callSid: string,
  update: CallUpdate,
): Promise<CallUpdated | CallAlreadyEnded | TwilioRestFailure> {
  const form: Record<string, string> = {};
  if (update.twiml !== undefined) form.Twiml = update.twiml;
  if (update.url !== undefined) {
    form.Url = update.url;
    form.Method = update.method ?? "POST";
  }
  if (update.status !== undefined) form.Status = update.status;
  const result = await post(
    settings,
    "update_call",
    `/Calls/${encodeURIComponent(callSid)}.json`,
    form,
  );
  if (result.kind === "response") {
    if (result.status >= 200 && result.status < 300) {
      const status = result.json?.status;
      return {
        ok: true,
        status: typeof status === "string" ? status : "unknown",
        attempts: result.attempts,
      };
    }
    const code = twilioCode(result.json);
    if (
      (result.status === 404 && (code === TWILIO_ERROR_NOT_FOUND || code === null)) ||
      code === TWILIO_ERROR_INVALID_CALL_STATE
    ) {
      return {
        ok: false,
        kind: "call_ended",
        status: result.status,
        code: code ?? TWILIO_ERROR_NOT_FOUND,
        attempts: result.attempts,
      };
    }
  }
  return failure(settings.log, "update_call", result);
}

/** One attempt's answer. */
interface Answer {
  status: number;
  /** The body when it is a JSON object; null otherwise. */
  json: Record<string, unknown> | null;
  retryAfterMs: number | null;
}

/**
 * POSTs a form, retrying 429 and 5xx answers and connection failures with backoff. Logs
 * `twilio_rest_retry` before each retry.
 * @param operation names the request in log lines
 */
async function post(
  settings: RestSettings,
  operation: string,
  path: string,
  form: Record<string, string>,
): Promise<Attempted> {
  const body = encodeTwilioForm(form);
  for (let attempt = 1;; attempt++) {
    const signal = AbortSignal.timeout(settings.attemptTimeoutMs);
    let answer: Answer;
    try {
      answer = await postOnce(settings, path, body, signal);
    } catch (error) {
      const timedOut = signal.aborted;
      const message = error instanceof Error ? error.message : String(error);
      // A timed-out request may have reached Twilio: retrying could send an SMS twice.
      if (timedOut || attempt > settings.maxRetries) {
        return { kind: timedOut ? "timeout" : "network", message, attempts: attempt };
      }
      const delayMs = backoffMs(settings, attempt, null);
      settings.log.warn("twilio_rest_retry", { operation, attempt, error: message, delayMs });
      await settings.sleep(delayMs);
      continue;
    }
    const { status, json } = answer;
    const retryable = status === 429 || status >= 500;
    if (!retryable || attempt > settings.maxRetries) {
      return { kind: "response", status, json, attempts: attempt };
    }
    const delayMs = backoffMs(settings, attempt, answer.retryAfterMs);
    settings.log.warn("twilio_rest_retry", {
      operation,
      attempt,
      status,
      code: twilioCode(json),
      delayMs,
    });
    await settings.sleep(delayMs);
  }
}

/** One POST and its answer read; throws when no answer came (connection failure, timeout). */
async function postOnce(
  settings: RestSettings,
  path: string,
  body: string,
  signal: AbortSignal,
): Promise<Answer> {
  // Called unbound, like the global fetch it defaults to.
  const fetchFn = settings.fetch;
  const response = await fetchFn(settings.accountBase + path, {
    method: "POST",
    headers: {
      authorization: settings.authorization,
      "content-type": "application/x-www-form-urlencoded",
      accept: "application/json",
    },
    body,
    signal,
  });
  const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"), settings.clock());
  const text = await response.text();
  return { status: response.status, json: jsonObjectOrNull(text), retryAfterMs };
}

function jsonObjectOrNull(text: string): Record<string, unknown> | null {
  try {
    const parsed = JSON.parse(text);
    if (typeof parsed === "object" && parsed !== null) return parsed;
  } catch {
    // Not JSON: the answer is read without a body.
  }
  return null;
}

/** The pause before retry `attempt`: exponential, at least `Retry-After`, at most the maximum. */
function backoffMs(settings: RestSettings, attempt: number, retryAfterMs: number | null): number {
  const exponential = settings.baseDelayMs * 2 ** (attempt - 1);
  return Math.min(settings.maxDelayMs, Math.max(exponential, retryAfterMs ?? 0));
}

/** The failure a request ended with, logged as `twilio_rest_failed`. */
function failure(log: Logger, operation: string, result: Attempted): TwilioRestFailure {
  if (result.kind !== "response") {
    log.error("twilio_rest_failed", {
      operation,
      kind: result.kind,
      error: result.message,
      attempts: result.attempts,
    });
    return {
      ok: false,
      kind: result.kind,
      status: null,
      code: null,
      message: result.message,
      attempts: result.attempts,
    };
  }
  const code = twilioCode(result.json);
  const message = typeof result.json?.message === "string"
    ? result.json.message
    : `Twilio answered ${result.status}`;
  log.error("twilio_rest_failed", {
    operation,
    kind: "http",
    status: result.status,
    code,
    error: message,
    attempts: result.attempts,
  });
  return {
    ok: false,
    kind: "http",
    status: result.status,
    code,
    message,
    attempts: result.attempts,
  };
}

/** `Retry-After` as milliseconds from now: delay-seconds or an HTTP date; null when absent. */
export function parseRetryAfter(value: string | null, nowMs: number): number | null {
  if (value === null || value.trim() === "") return null;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? null : Math.max(0, at - nowMs);
}

function twilioCode(json: Record<string, unknown> | null): number | null {
  const code = json?.code;
  if (typeof code === "number" && Number.isFinite(code)) return code;
  if (typeof code === "string" && /^\d+$/.test(code)) return Number(code);
  return null;
}

function basicCredentials(user: string, password: string): string {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}
