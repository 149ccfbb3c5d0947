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
  const fetchFn = options.fetch ?? fetch;
  const sleep = options.sleep ??
    ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
  const baseDelayMs = options.baseDelayMs ?? DEFAULT_BASE_DELAY_MS;
  const maxDelayMs = options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
  const attemptTimeoutMs = options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS;
  const clock = options.clock ?? Date.now;
  const accountBase = `${options.baseUrl.replace(/\/+$/, "")}/${TWILIO_API_VERSION}/Accounts/${
    encodeURIComponent(options.accountSid)
  }`;
  const authorization = `Basic ${basicCredentials(options.accountSid, options.authToken)}`;

  async function post(
    operation: string,
    path: string,
    form: Record<string, string>,
  ): Promise<Attempted> {
    const body = encodeTwilioForm(form);
    for (let attempt = 1;; attempt++) {
      let status: number;
      let json: Record<string, unknown> | null = null;
      let retryAfterMs: number | null = null;
      const signal = AbortSignal.timeout(attemptTimeoutMs);
      try {
        const response = await fetchFn(accountBase + path, {
          method: "POST",
          headers: {
            authorization,
            "content-type": "application/x-www-form-urlencoded",
            accept: "application/json",
          },
          body,
          signal,
        });
        status = response.status;
        retryAfterMs = parseRetryAfter(response.headers.get("retry-after"), clock());
        const text = await response.text();
        try {
          const parsed = JSON.parse(text);
          if (typeof parsed === "object" && parsed !== null) json = parsed;
        } catch {
          json = null;
        }
      } catch (error) {
        const timedOut = signal.aborted;
        const message = error instanceof Error ? error.message : String(error);
        // A timed-out request may have reached Twilio: retrying could send an SMS twice.
        if (timedOut || attempt > maxRetries) {
          return { kind: timedOut ? "timeout" : "network", message, attempts: attempt };
        }
        const delayMs = backoffMs(attempt, null);
        options.log.warn("twilio_rest_retry", { operation, attempt, error: message, delayMs });
        await sleep(delayMs);
        continue;
      }
      const retryable = status === 429 || status >= 500;
      if (!retryable || attempt > maxRetries) {
        return { kind: "response", status, json, attempts: attempt };
      }
      const delayMs = backoffMs(attempt, retryAfterMs);
      options.log.warn("twilio_rest_retry", {
        operation,
        attempt,
        status,
        code: twilioCode(json),
        delayMs,
      });
      await sleep(delayMs);
    }
  }

  function backoffMs(attempt: number, retryAfterMs: number | null): number {
    const exponential = baseDelayMs * 2 ** (attempt - 1);
    return Math.min(maxDelayMs, Math.max(exponential, retryAfterMs ?? 0));
  }

  function failure(operation: string, result: Attempted): TwilioRestFailure {
    if (result.kind !== "response") {
      options.log.error("twilio_rest_failed", {
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
    options.log.error("twilio_rest_failed", {
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

  return {
    async sendSms(message) {
      const form: Record<string, string> = {
        To: message.to,
        From: message.from,
        Body: message.body,
      };
      if (message.statusCallback) form.StatusCallback = message.statusCallback;
      const result = await post("send_sms", "/Messages.json", form);
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
      return failure("send_sms", result);
    },
    async updateCall(callSid, update) {
      const form: Record<string, string> = {};
      if (update.twiml !== undefined) form.Twiml = update.twiml;
      if (update.url !== undefined) {
        form.Url = update.url;
        form.Method = update.method ?? "POST";
      }
      if (update.status !== undefined) form.Status = update.status;
      const result = await post(
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
      return failure("update_call", result);
    },
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
