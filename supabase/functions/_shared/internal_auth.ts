/**
 * Our own HMAC-SHA256 credentials between the functions: the stream token voice-frontdoor (and
 * voice-action, for a handed-over call, bound to its continuation id) puts in `<Parameter>` and
 * voice-stream checks before opening a model session, and the signature of
 * voice-stream's tool-call requests to voice-action. Both use `VOICE_INTERNAL_SECRET`.
 * @module
 */

const encoder = new TextEncoder();
const keyCache = new Map<string, Promise<CryptoKey>>();

function hmacKey(secret: string): Promise<CryptoKey> {
  let key = keyCache.get(secret);
  if (!key) {
    key = crypto.subtle.importKey(
      "raw",
      encoder.encode(secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    keyCache.set(secret, key);
  }
  return key;
}

function toBase64Url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** HMAC-SHA256 of `message` as base64url without padding. */
export async function hmacSha256(secret: string, message: string): Promise<string> {
  const signature = await crypto.subtle.sign(
    "HMAC",
    await hmacKey(secret),
    encoder.encode(message),
  );
  return toBase64Url(new Uint8Array(signature));
}

/** Compares two strings in time independent of where they differ. */
export function timingSafeEqual(a: string, b: string): boolean {
  const left = encoder.encode(a);
  const right = encoder.encode(b);
  let diff = left.length ^ right.length;
  const length = Math.max(left.length, right.length);
  for (let i = 0; i < length; i++) diff |= (left[i] ?? 0) ^ (right[i] ?? 0);
  return diff === 0;
}

const STREAM_TOKEN_VERSION = "v1";

/** The stream token's MAC input; a continuation id, when bound, is appended. */
function streamTokenMessage(
  claims: { callSid: string; traceId: string; continuationId?: string | null },
  expiry: number,
): string {
  const base = `${STREAM_TOKEN_VERSION}|${claims.callSid}|${claims.traceId}|${expiry}`;
  // Tokens without a continuation keep the original message, so tokens already issued stay valid.
  return claims.continuationId ? `${base}|continuation:${claims.continuationId}` : base;
}

/**
 * Issues a stream token binding a CallSid and traceId until `expiresAtMs`, and, for a stream that
 * continues a call handed over by another worker, the continuation id it may claim.
 * Format: `v1.<expiry seconds>.<hmac(v1|callSid|traceId|expiry[|continuation:<id>])>`.
 */
export async function issueStreamToken(
  secret: string,
  claims: { callSid: string; traceId: string; expiresAtMs: number; continuationId?: string | null },
): Promise<string> {
  const expiry = Math.floor(claims.expiresAtMs / 1000);
  const mac = await hmacSha256(secret, streamTokenMessage(claims, expiry));
  return `${STREAM_TOKEN_VERSION}.${expiry}.${mac}`;
}

/** Why a stream token was refused. */
export type StreamTokenFailure = "missing" | "malformed" | "mismatch" | "expired";

/**
 * Checks a stream token for this CallSid, traceId and continuation id (none for a call's first
 * stream) at `nowMs`: a continuation id the token was not issued for is a `mismatch`.
 */
export async function verifyStreamToken(
  secret: string,
  token: string | null | undefined,
  claims: { callSid: string; traceId: string; nowMs: number; continuationId?: string | null },
): Promise<{ ok: true } | { ok: false; reason: StreamTokenFailure }> {
  if (!token) return { ok: false, reason: "missing" };
  const match = /^v1\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(token);
  if (!match) return { ok: false, reason: "malformed" };
  const expiry = Number(match[1]);
  const expected = await hmacSha256(secret, streamTokenMessage(claims, expiry));
  if (!timingSafeEqual(expected, match[2])) return { ok: false, reason: "mismatch" };
  if (claims.nowMs >= expiry * 1000) return { ok: false, reason: "expired" };
  return { ok: true };
}

/** Header names of an internal request signature. */
export const INTERNAL_TIMESTAMP_HEADER = "x-voice-timestamp";
export const INTERNAL_SIGNATURE_HEADER = "x-voice-signature";
/** Internal requests older (or further in the future) than this are refused. */
export const INTERNAL_MAX_SKEW_MS = 60_000;

/** Signs an internal JSON request body: returns the headers to send. */
export async function signInternalRequest(
  secret: string,
  body: string,
  nowMs: number,
): Promise<Record<string, string>> {
  const timestamp = String(Math.floor(nowMs / 1000));
  return {
    [INTERNAL_TIMESTAMP_HEADER]: timestamp,
    [INTERNAL_SIGNATURE_HEADER]: await hmacSha256(secret, `${timestamp}.${body}`),
  };
}

/** Why an internal request was refused. */
export type InternalAuthFailure = "missing" | "stale" | "mismatch";

/** Checks an internal request's timestamp and signature over `timestamp.body`. */
export async function verifyInternalRequest(
  secret: string,
  headers: Headers,
  body: string,
  nowMs: number,
): Promise<{ ok: true } | { ok: false; reason: InternalAuthFailure }> {
  const timestamp = headers.get(INTERNAL_TIMESTAMP_HEADER);
  const signature = headers.get(INTERNAL_SIGNATURE_HEADER);
  if (!timestamp || !signature || !/^\d{1,12}$/.test(timestamp)) {
    return { ok: false, reason: "missing" };
  }
  if (Math.abs(nowMs - Number(timestamp) * 1000) > INTERNAL_MAX_SKEW_MS) {
    return { ok: false, reason: "stale" };
  }
  const expected = await hmacSha256(secret, `${timestamp}.${body}`);
  return timingSafeEqual(expected, signature) ? { ok: true } : { ok: false, reason: "mismatch" };
}
