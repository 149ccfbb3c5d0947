/**
 * Reading a Twilio webhook over HTTP: method, media type, bounded body, form decoding, and the
 * `X-Twilio-Signature` check against the public URL (never `req.url`, which on Supabase carries
 * the internal host). Shared by voice-frontdoor and voice-action.
 * @module
 */
import { safeParseTwilioForm } from "../codec/twilio_form.ts";
import { validateTwilioSignature } from "../twilio/signature.ts";

/** Twilio's webhooks are small; anything larger is not Twilio. */
export const MAX_WEBHOOK_BYTES = 64 * 1024;

/** A Twilio form field map, repeated keys kept. */
export type TwilioParams = Record<string, string | string[]>;

/** Why a webhook was refused, with the status to answer. */
export type WebhookRejection =
  | { status: 405; reason: "method_not_allowed" }
  | { status: 415; reason: "unsupported_media_type" }
  | { status: 413; reason: "body_too_large" }
  | { status: 400; reason: "malformed_form"; message: string }
  | { status: 403; reason: "signature_missing" | "signature_mismatch" };

/** The query string exactly as received (`?a=b`), or "" — `new URL()` would re-encode it. */
export function rawQueryString(requestUrl: string): string {
  const index = requestUrl.indexOf("?");
  if (index < 0) return "";
  const hash = requestUrl.indexOf("#", index);
  return requestUrl.slice(index, hash < 0 ? undefined : hash);
}

/** Reads at most `limit` bytes of a body; null when it is larger. */
export async function readBodyWithLimit(req: Request, limit: number): Promise<string | null> {
  const declared = Number(req.headers.get("content-length") ?? "NaN");
  if (Number.isFinite(declared) && declared > limit) return null;
  if (!req.body) return "";
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return new TextDecoder().decode(bytes);
}

/**
 * Reads and authenticates a Twilio form webhook.
 * @param publicUrl the URL Twilio was given, without query; the received query is appended
 */
export async function readSignedTwilioForm(
  req: Request,
  options: { authToken: string; publicUrl: string },
): Promise<{ ok: true; params: TwilioParams } | { ok: false; rejection: WebhookRejection }> {
  if (req.method !== "POST") {
    return { ok: false, rejection: { status: 405, reason: "method_not_allowed" } };
  }
  const mediaType = (req.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
  if (mediaType !== "application/x-www-form-urlencoded") {
    return { ok: false, rejection: { status: 415, reason: "unsupported_media_type" } };
  }
  const body = await readBodyWithLimit(req, MAX_WEBHOOK_BYTES);
  if (body === null) return { ok: false, rejection: { status: 413, reason: "body_too_large" } };
  const form = safeParseTwilioForm(body);
  if (!form.success) {
    return {
      ok: false,
      rejection: { status: 400, reason: "malformed_form", message: form.error.message },
    };
  }
  const signature = req.headers.get("x-twilio-signature");
  if (!signature) return { ok: false, rejection: { status: 403, reason: "signature_missing" } };
  const url = options.publicUrl + rawQueryString(req.url);
  const valid = await validateTwilioSignature(options.authToken, signature, url, form.data);
  if (!valid) return { ok: false, rejection: { status: 403, reason: "signature_mismatch" } };
  return { ok: true, params: form.data };
}

/** The single value of a form field (the first, when repeated). */
export function formValue(params: TwilioParams, name: string): string | undefined {
  const value = params[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Flattens a form to single values, for zod validation. */
export function formValues(params: TwilioParams): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of Object.keys(params)) out[key] = formValue(params, key) ?? "";
  return out;
}

/** The plain response for a refused webhook: status, reason, nothing else for 403s. */
export function rejectionResponse(rejection: WebhookRejection): Response {
  switch (rejection.status) {
    case 405:
      return new Response("Method not allowed", { status: 405, headers: { allow: "POST" } });
    case 415:
      return new Response("Expected application/x-www-form-urlencoded", { status: 415 });
    case 413:
      return new Response("Request body too large", { status: 413 });
    case 400:
      return new Response(`Malformed form body: ${rejection.message}`, { status: 400 });
    case 403:
      return new Response(null, { status: 403 });
  }
}
