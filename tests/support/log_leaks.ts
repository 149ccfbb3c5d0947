/**
 * Scans JSON log lines (the functions' `logSink` output) for what must never be logged: secret
 * values (auth tokens, signing secrets, API keys, and the Basic credentials built from them),
 * Authorization header values, and phone numbers not masked to their last 4 digits.
 * @module
 */

/** Something a log line should not contain. */
export interface LogLeak {
  kind: "secret" | "authorization" | "phone";
  /** Which secret (its name) or what matched (phones and headers: the match itself). */
  what: string;
  line: string;
}

/** Options of `findLogLeaks`. */
export interface LogLeakOptions {
  /** Secret values by name (e.g. `TWILIO_AUTH_TOKEN`); empty values are ignored. */
  secrets: Record<string, string>;
  /**
   * Phone numbers used in the run: their last 10 digits must not appear anywhere, with or
   * without `+`. Any `+` followed by 7 or more digits is reported whatever it is.
   */
  phoneNumbers?: readonly string[];
}

/** `+` then 7 or more digits: an E.164 number (or a longer digit run holding one), unmasked. */
const UNMASKED_E164 = /\+\d{7,}/g;
/** An Authorization header value: a scheme and a credential. */
const AUTHORIZATION_VALUE = /\b(Basic|Bearer)\s+[A-Za-z0-9+/=._~-]{8,}/gi;

/**
 * Every leak in `lines`.
 * @param lines log lines, one JSON object each
 * @param options the secrets and phone numbers to look for
 */
export function findLogLeaks(lines: readonly string[], options: LogLeakOptions): LogLeak[] {
  const needles: Array<{ name: string; value: string }> = [];
  for (const [name, value] of Object.entries(options.secrets)) {
    if (value.length < 6) continue;
    needles.push({ name, value });
    // A secret inside JSON text is escaped; look for that form too.
    const escaped = JSON.stringify(value).slice(1, -1);
    if (escaped !== value) needles.push({ name, value: escaped });
  }
  const phoneDigits = [
    ...new Set(
      (options.phoneNumbers ?? []).map((phone) => phone.replace(/\D/g, "").slice(-10)).filter(
        (digits) => digits.length >= 7,
      ),
    ),
  ];
  const leaks: LogLeak[] = [];
  for (const line of lines) {
    for (const needle of needles) {
      if (line.includes(needle.value)) leaks.push({ kind: "secret", what: needle.name, line });
    }
    for (const match of line.matchAll(AUTHORIZATION_VALUE)) {
      leaks.push({ kind: "authorization", what: match[0], line });
    }
    for (const match of line.matchAll(UNMASKED_E164)) {
      leaks.push({ kind: "phone", what: match[0], line });
    }
    for (const digits of phoneDigits) {
      if (line.includes(digits)) leaks.push({ kind: "phone", what: digits, line });
    }
  }
  return leaks;
}

/**
 * The secrets of a function environment worth scanning for, with the Basic credentials Twilio's
 * REST client sends (`base64(AccountSid:AuthToken)`).
 * @param env the functions' settings
 */
export function secretsOf(env: Readonly<Record<string, string>>): Record<string, string> {
  const secrets: Record<string, string> = {};
  for (const name of ["TWILIO_AUTH_TOKEN", "VOICE_INTERNAL_SECRET", "OPENAI_API_KEY"]) {
    if (env[name]) secrets[name] = env[name];
  }
  if (env.TWILIO_ACCOUNT_SID && env.TWILIO_AUTH_TOKEN) {
    secrets.TWILIO_BASIC_CREDENTIALS = btoa(`${env.TWILIO_ACCOUNT_SID}:${env.TWILIO_AUTH_TOKEN}`);
  }
  return secrets;
}
