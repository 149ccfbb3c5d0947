/**
 * Speaks TwiML, Twilio's XML call-control language: renders the voice verbs the product uses
 * from plain data.
 *
 * Verbs are a discriminated union, so a response is a value that tests can compare and handlers
 * can build without a builder object. Text and attribute values are XML-escaped (`& < > " '`, and
 * tab, LF and CR as character references so they survive attribute normalization), and
 * characters XML 1.0 cannot carry at all (most C0 controls, lone surrogates, U+FFFE and U+FFFF)
 * are dropped rather than producing a document Twilio would reject. Rendering never throws.
 *
 * @module
 */

/** `<Say>`: speak text. */
export interface TwimlSay {
  readonly verb: "Say";
  readonly text: string;
  /** e.g. `Polly.Joanna` or `alice`. Defaults to Twilio's default voice. */
  readonly voice?: string;
  /** e.g. `en-US`. Defaults to Twilio's default language. */
  readonly language?: string;
}

/** `<Pause>`: silence. */
export interface TwimlPause {
  readonly verb: "Pause";
  /** Seconds. Defaults to Twilio's 1 s. */
  readonly length?: number;
}

/** `<Hangup>`: end the call. */
export interface TwimlHangup {
  readonly verb: "Hangup";
}

/** `<Redirect>`: fetch TwiML from another URL and continue there. */
export interface TwimlRedirect {
  readonly verb: "Redirect";
  readonly url: string;
  /** Defaults to Twilio's `POST`. */
  readonly method?: "GET" | "POST";
}

/** `<Record>`: record the caller (voicemail). */
export interface TwimlRecord {
  readonly verb: "Record";
  /** Requested when recording ends. Defaults to the current document's URL. */
  readonly action?: string;
  readonly method?: "GET" | "POST";
  /** Seconds. Defaults to Twilio's 3600. */
  readonly maxLength?: number;
  /** Seconds of silence that end the recording. Defaults to Twilio's 5. */
  readonly timeout?: number;
  readonly playBeep?: boolean;
  /** Keys that end the recording, e.g. `#`. Defaults to any key. */
  readonly finishOnKey?: string;
  readonly recordingStatusCallback?: string;
  readonly recordingStatusCallbackMethod?: "GET" | "POST";
  readonly recordingStatusCallbackEvent?: string;
  /** Twilio's own transcription; we leave it `false` and transcribe ourselves. */
  readonly transcribe?: boolean;
}

/** `<Dial>` attributes shared by both forms. */
interface TwimlDialBase {
  readonly verb: "Dial";
  /** The caller ID shown to the called party, e.g. the business number. */
  readonly callerId?: string;
  /** Seconds to ring. Defaults to Twilio's 30. */
  readonly timeout?: number;
  /** Requested when the dialed call ends. Defaults to continuing with the next verb. */
  readonly action?: string;
  readonly method?: "GET" | "POST";
}

/** `<Dial>`: connect the caller to another number, as a `<Number>` child or as plain text. */
export type TwimlDial =
  | (TwimlDialBase & { readonly number: string; readonly text?: never })
  | (TwimlDialBase & { readonly text: string; readonly number?: never });

/** `<Parameter>` of a `<Stream>`; arrives in the Media Streams `start.customParameters`. */
export interface TwimlStreamParameter {
  readonly name: string;
  readonly value: string;
}

/** `<Stream>` inside `<Connect>`: a bidirectional Media Streams WebSocket. */
export interface TwimlStream {
  /** A `wss://` URL without a query string (Twilio errors 31920/31922 otherwise). */
  readonly url: string;
  readonly name?: string;
  readonly statusCallback?: string;
  readonly statusCallbackMethod?: "GET" | "POST";
  /** Values for the socket, in order; use these instead of a query string. */
  readonly parameters?: readonly TwimlStreamParameter[];
}

/** `<Connect><Stream>`: hand the call's audio to our WebSocket. */
export interface TwimlConnect {
  readonly verb: "Connect";
  /** Requested when the stream ends. Defaults to continuing with the next verb. */
  readonly action?: string;
  readonly method?: "GET" | "POST";
  readonly stream: TwimlStream;
}

/** One verb of a TwiML voice response. */
export type TwimlVerb =
  | TwimlSay
  | TwimlPause
  | TwimlHangup
  | TwimlRedirect
  | TwimlRecord
  | TwimlDial
  | TwimlConnect;

/** The XML declaration Twilio's own libraries emit. */
export const TWIML_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>';

/** The media type to answer a webhook with TwiML. */
export const TWIML_CONTENT_TYPE = "text/xml; charset=utf-8";

// Tab, LF and CR are escaped too: in attributes a parser would turn them into spaces, and a raw CR
// in content would be normalized to LF.
const XML_ESCAPES: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&apos;",
  "\t": "&#x9;",
  "\n": "&#xA;",
  "\r": "&#xD;",
};
const XML_SPECIAL = /[&<>"'\t\n\r]/g;
// Characters XML 1.0 forbids even as references: C0 controls other than tab, LF and CR, lone
// surrogates, U+FFFE and U+FFFF.
const XML_FORBIDDEN =
  // deno-lint-ignore no-control-regex
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * Escapes text for XML content or a double- or single-quoted attribute, dropping characters
 * XML cannot carry.
 * @param text any string
 */
export function escapeXml(text: string): string {
  return text.replace(XML_FORBIDDEN, "").replace(XML_SPECIAL, (ch) => XML_ESCAPES[ch]);
}

type AttributeValue = string | number | boolean | undefined;

/** Renders `name="value"` pairs in the order given, leaving out undefined values. */
function attributes(pairs: ReadonlyArray<readonly [string, AttributeValue]>): string {
  let out = "";
  for (const [name, value] of pairs) {
    if (value === undefined) continue;
    out += ` ${name}="${escapeXml(String(value))}"`;
  }
  return out;
}

/** Renders an element; `<Name/>` when it has no content. */
function element(
  name: string,
  pairs: ReadonlyArray<readonly [string, AttributeValue]>,
  content: string,
): string {
  const attrs = attributes(pairs);
  return content === "" ? `<${name}${attrs}/>` : `<${name}${attrs}>${content}</${name}>`;
}

function renderVerb(verb: TwimlVerb): string {
  switch (verb.verb) {
    case "Say":
      return element(
        "Say",
        [["voice", verb.voice], ["language", verb.language]],
        escapeXml(verb.text),
      );
    case "Pause":
      return element("Pause", [["length", verb.length]], "");
    case "Hangup":
      return element("Hangup", [], "");
    case "Redirect":
      return element("Redirect", [["method", verb.method]], escapeXml(verb.url));
    case "Record":
      return element("Record", [
        ["action", verb.action],
        ["method", verb.method],
        ["maxLength", verb.maxLength],
        ["timeout", verb.timeout],
        ["playBeep", verb.playBeep],
        ["finishOnKey", verb.finishOnKey],
        ["recordingStatusCallback", verb.recordingStatusCallback],
        ["recordingStatusCallbackMethod", verb.recordingStatusCallbackMethod],
        ["recordingStatusCallbackEvent", verb.recordingStatusCallbackEvent],
        ["transcribe", verb.transcribe],
      ], "");
    case "Dial": {
      const content = verb.number !== undefined
        ? element("Number", [], escapeXml(verb.number))
        : escapeXml(verb.text ?? "");
      return element("Dial", [
        ["callerId", verb.callerId],
        ["timeout", verb.timeout],
        ["action", verb.action],
        ["method", verb.method],
      ], content);
    }
    case "Connect": {
      const { stream } = verb;
      const parameters = (stream.parameters ?? [])
        .map((parameter) =>
          element("Parameter", [["name", parameter.name], ["value", parameter.value]], "")
        )
        .join("");
      const streamXml = element("Stream", [
        ["url", stream.url],
        ["name", stream.name],
        ["statusCallback", stream.statusCallback],
        ["statusCallbackMethod", stream.statusCallbackMethod],
      ], parameters);
      return element("Connect", [["action", verb.action], ["method", verb.method]], streamXml);
    }
  }
}

/**
 * Renders a TwiML voice response document.
 * @param verbs the verbs in the order Twilio executes them
 */
export function renderTwiml(verbs: readonly TwimlVerb[]): string {
  return TWIML_XML_DECLARATION + element("Response", [], verbs.map(renderVerb).join(""));
}
