/**
 * Speaks `application/x-www-form-urlencoded`, the body format of Twilio's webhooks and status
 * callbacks and of the requests we send to Twilio's REST API.
 *
 * Parsing is strict where `URLSearchParams` is forgiving: malformed percent-encoding (a stray `%`
 * or bytes that are not UTF-8) is an error rather than being passed through or replaced, because
 * the signature check and our storage must see exactly what Twilio sent. Nothing here throws.
 *
 * @module
 */

/** Form fields by name; a name sent more than once keeps every value, in order. */
export type TwilioFormParams = Record<string, string | string[]>;

/** A failed parse, with the position of the offending pair (never its value). */
export interface TwilioFormError {
  readonly code: "invalid_encoding";
  readonly message: string;
}

/** Result of {@link safeParseTwilioForm}, in zod's safeParse shape. */
export type SafeParseTwilioFormResult =
  | { readonly success: true; readonly data: TwilioFormParams }
  | { readonly success: false; readonly error: TwilioFormError };

const PLUS_SIGN = /\+/g;

/** Percent-decodes one name or value (`+` is a space); `null` if malformed. */
function decodeComponent(text: string): string | null {
  const spaced = text.includes("+") ? text.replace(PLUS_SIGN, " ") : text;
  if (!spaced.includes("%")) return spaced;
  try {
    return decodeURIComponent(spaced);
  } catch {
    return null;
  }
}

/** Adds a value, turning a repeated name into an array, with `__proto__` kept as a plain key. */
function addValue(params: TwilioFormParams, name: string, value: string): void {
  if (!Object.hasOwn(params, name)) {
    // Assignment would set the prototype for `__proto__`; define it as an own property instead.
    Object.defineProperty(params, name, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
    return;
  }
  const existing = params[name];
  if (Array.isArray(existing)) existing.push(value);
  else params[name] = [existing, value];
}

/**
 * Parses an `application/x-www-form-urlencoded` body. Pairs are split on `&`, names from values
 * on the first `=`; a pair without `=` has the value `""`; empty pairs are skipped. Never throws:
 * malformed percent-encoding gives `invalid_encoding`.
 * @param body the raw request body
 */
export function safeParseTwilioForm(body: string): SafeParseTwilioFormResult {
  const params: TwilioFormParams = {};
  if (body.length === 0) return { success: true, data: params };
  const pairs = body.split("&");
  for (let index = 0; index < pairs.length; index++) {
    const pair = pairs[index];
    if (pair.length === 0) continue;
    const equals = pair.indexOf("=");
    const name = decodeComponent(equals === -1 ? pair : pair.slice(0, equals));
    const value = equals === -1 ? "" : decodeComponent(pair.slice(equals + 1));
    if (name === null || value === null) {
      return {
        success: false,
        error: {
          code: "invalid_encoding",
          message: `Cannot parse form body: pair ${index + 1} has malformed percent-encoding`,
        },
      };
    }
    addValue(params, name, value);
  }
  return { success: true, data: params };
}

/** A value we send to Twilio; `undefined` leaves the field out, arrays repeat the name. */
export type TwilioFormValue = string | number | boolean | readonly string[] | undefined;

/**
 * Encodes fields as an `application/x-www-form-urlencoded` body for Twilio's REST API, in the
 * order given (spaces as `+`, everything else outside `*-._` and alphanumerics percent-encoded,
 * as `URLSearchParams` does).
 * @param params field names as Twilio spells them (`To`, `From`, `Body`, `Twiml`, ...)
 */
export function encodeTwilioForm(params: Readonly<Record<string, TwilioFormValue>>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined) continue;
    if (typeof value === "string") search.append(name, value);
    else if (typeof value === "number" || typeof value === "boolean") {
      search.append(name, String(value));
    } else {
      for (const item of value) search.append(name, item);
    }
  }
  return search.toString();
}
