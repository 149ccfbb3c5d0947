/**
 * Speaks Twilio's request signing: the `X-Twilio-Signature` header on webhooks, status callbacks
 * and the Media Streams WebSocket upgrade.
 *
 * The signature is base64(HMAC-SHA1(auth token, URL + each POST parameter, sorted by name, as
 * name + value)). For a name sent more than once, the twilio package's reference code (its
 * `webhooks` module) removes duplicate values, sorts the rest and appends name + value for each;
 * we do the same. JSON bodies are signed over the URL alone, and the URL carries the body's hex
 * SHA-256 as its `bodySHA256` query parameter.
 *
 * URL policy: we verify against the public URL we configured at Twilio (never `req.url`, which
 * inside Supabase is an internal URL), exactly as written, and also with the scheme's default
 * port added or removed (`:443` for https/wss, `:80` for http/ws), because Twilio may sign either
 * form. Unlike the twilio package we do not strip non-default ports and do not retry with a
 * `new URL()`-normalized copy: the configured URL is the string Twilio signed.
 *
 * Uses WebCrypto only (runs on the edge runtime); keys are imported once per auth token.
 *
 * @module
 */

/** Form parameters as signed: a name sent more than once carries all its values. */
export type TwilioSignedParams = Readonly<Record<string, string | readonly string[]>>;

const encoder = new TextEncoder();

// Few distinct auth tokens exist per deployment (one per Twilio account or subaccount).
const KEY_CACHE_LIMIT = 16;
const keyCache = new Map<string, Promise<CryptoKey>>();

/**
 * Imports an auth token as an HMAC-SHA1 key, cached per token (oldest entry dropped past 16).
 * @param authToken the Twilio auth token; must not be empty
 */
export function importTwilioSigningKey(authToken: string): Promise<CryptoKey> {
  const cached = keyCache.get(authToken);
  if (cached !== undefined) return cached;
  if (authToken === "") {
    // WebCrypto refuses zero-length HMAC keys; an empty token is a configuration error anyway.
    return Promise.reject(new TypeError("Cannot sign Twilio requests: auth token is empty"));
  }
  const key = crypto.subtle.importKey(
    "raw",
    encoder.encode(authToken),
    { name: "HMAC", hash: "SHA-1" },
    false,
    ["sign"],
  );
  key.catch(() => keyCache.delete(authToken));
  if (keyCache.size >= KEY_CACHE_LIMIT) {
    const oldest = keyCache.keys().next().value;
    if (oldest !== undefined) keyCache.delete(oldest);
  }
  keyCache.set(authToken, key);
  return key;
}

/** The string Twilio signs: the URL, then name + value for each parameter in sorted order. */
function signedPayload(url: string, params: TwilioSignedParams): string {
  let data = url;
  // Default sort: UTF-16 code unit order, as the reference implementation uses.
  for (const name of Object.keys(params).sort()) {
    const value = params[name];
    if (typeof value === "string") {
      data += name + value;
    } else {
      for (const item of [...new Set(value)].sort()) data += name + item;
    }
  }
  return data;
}

function bytesToBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
  return btoa(binary);
}

/**
 * Computes the `X-Twilio-Signature` Twilio sends for a request. Rejects if the token is empty.
 * @param authToken the Twilio auth token of the account the request is for
 * @param url the full public URL Twilio requested, query string included
 * @param params the POST form parameters (`{}` for GET, JSON bodies and the WebSocket upgrade)
 */
export async function computeTwilioSignature(
  authToken: string,
  url: string,
  params: TwilioSignedParams,
): Promise<string> {
  const key = await importTwilioSigningKey(authToken);
  const mac = await crypto.subtle.sign("HMAC", key, encoder.encode(signedPayload(url, params)));
  return bytesToBase64(new Uint8Array(mac));
}

/** Compares two strings in time that depends only on their length, which is not secret. */
function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return difference === 0;
}

const DEFAULT_PORTS: Readonly<Record<string, string>> = {
  https: "443",
  wss: "443",
  http: "80",
  ws: "80",
};

// scheme "://" authority, without normalizing anything (new URL() would re-encode characters).
const URL_HEAD = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)/;

/**
 * The same URL with the scheme's default port toggled: added when absent, removed when present.
 * `null` when the URL has another port or an unknown scheme. Exported for tests.
 * @param url an absolute URL
 */
export function toggleDefaultPort(url: string): string | null {
  const head = URL_HEAD.exec(url);
  if (head === null) return null;
  const [whole, scheme, authority] = head;
  const defaultPort = DEFAULT_PORTS[scheme.toLowerCase()];
  if (defaultPort === undefined) return null;
  const hostStart = authority.lastIndexOf("@") + 1;
  // In an IPv6 literal the colons before `]` are not the port separator.
  const portColon = authority.indexOf(":", Math.max(hostStart, authority.lastIndexOf("]") + 1));
  const prefix = url.slice(0, scheme.length + 3) + authority.slice(0, hostStart);
  const rest = url.slice(whole.length);
  if (portColon === -1) {
    return `${prefix}${authority.slice(hostStart)}:${defaultPort}${rest}`;
  }
  if (authority.slice(portColon + 1) !== defaultPort) return null;
  return `${prefix}${authority.slice(hostStart, portColon)}${rest}`;
}

/**
 * Checks an `X-Twilio-Signature` header against the URL as configured and the same URL with its
 * default port toggled. False for a missing or empty signature or an empty token; never throws
 * for those.
 * @param authToken the Twilio auth token
 * @param signature the header value (`x-twilio-signature`), or `null` when absent
 * @param url the public URL configured at Twilio, query string included; for the Media Streams
 * upgrade, the `wss://` URL exactly as written in `<Stream url>`
 * @param params the POST form parameters; `{}` for the WebSocket upgrade
 */
export async function validateTwilioSignature(
  authToken: string,
  signature: string | null,
  url: string,
  params: TwilioSignedParams,
): Promise<boolean> {
  if (authToken === "" || signature === null || signature === "") return false;
  const alternate = toggleDefaultPort(url);
  for (const candidate of alternate === null ? [url] : [url, alternate]) {
    const expected = await computeTwilioSignature(authToken, candidate, params);
    if (constantTimeEqual(expected, signature)) return true;
  }
  return false;
}

/**
 * Hex SHA-256 of a body, as Twilio puts it in the `bodySHA256` query parameter.
 * @param body the raw request body
 */
export async function computeTwilioBodyHash(body: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(body)));
  let hex = "";
  for (let i = 0; i < digest.length; i++) hex += digest[i].toString(16).padStart(2, "0");
  return hex;
}

/**
 * Checks a request with a JSON (non-form) body: the signature covers the URL alone (its query
 * string includes `bodySHA256`), and `bodySHA256` must equal the hex SHA-256 of the body.
 * False when `bodySHA256` is missing or the URL cannot be parsed; never throws for those.
 * @param authToken the Twilio auth token
 * @param signature the `X-Twilio-Signature` header value, or `null` when absent
 * @param url the public URL Twilio requested, query string (with `bodySHA256`) included
 * @param body the raw request body
 */
export async function validateTwilioSignatureWithBody(
  authToken: string,
  signature: string | null,
  url: string,
  body: string,
): Promise<boolean> {
  let claimedHash: string | null;
  try {
    claimedHash = new URL(url).searchParams.get("bodySHA256");
  } catch {
    return false;
  }
  if (claimedHash === null) return false;
  const [signatureValid, actualHash] = await Promise.all([
    validateTwilioSignature(authToken, signature, url, {}),
    computeTwilioBodyHash(body),
  ]);
  return constantTimeEqual(actualHash, claimedHash) && signatureValid;
}
