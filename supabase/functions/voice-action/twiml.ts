/**
 * The TwiML documents voice-action answers or pushes onto live calls, rendered by the shared TwiML
 * builder (`_shared/codec/twiml.ts`): hang up, transfer, apology + voicemail, voicemail thanks, and
 * the `<Connect><Stream>` that continues a call handed over by a voice-stream worker.
 * @module
 */
import { renderTwiml } from "../_shared/codec/twiml.ts";

/** Longest voicemail, seconds. */
export const VOICEMAIL_MAX_LENGTH_SECONDS = 120;

/** What the caller hears when the assistant broke down and they may leave a message. */
export const APOLOGY_TEXT = "Sorry, our assistant ran into a problem. Please leave a message " +
  "after the beep and we will call you back.";

/** Said before a transfer rings through. */
export const TRANSFER_TEXT = "Connecting you now.";

/** `<Hangup/>`: a conversation that ended normally. */
export function hangupTwiml(): string {
  return renderTwiml([{ verb: "Hangup" }]);
}

/** `<Say>` then `<Dial callerId>` to the org's transfer number. */
export function transferTwiml(options: { callerId: string; number: string }): string {
  return renderTwiml([
    { verb: "Say", text: TRANSFER_TEXT },
    { verb: "Dial", callerId: options.callerId, number: options.number },
  ]);
}

/** A short apology, a voicemail `<Record>`, then `<Hangup/>`. */
export function recoveryTwiml(options: { voicemailUrl: string; recordingUrl: string }): string {
  return renderTwiml([
    { verb: "Say", text: APOLOGY_TEXT },
    {
      verb: "Record",
      action: options.voicemailUrl,
      recordingStatusCallback: options.recordingUrl,
      maxLength: VOICEMAIL_MAX_LENGTH_SECONDS,
      playBeep: true,
    },
    { verb: "Hangup" },
  ]);
}

/** After a voicemail: thanks and goodbye. */
export function voicemailThanksTwiml(): string {
  return renderTwiml([
    { verb: "Say", text: "Thank you, we got your message. Goodbye." },
    { verb: "Hangup" },
  ]);
}

/**
 * `<Connect action><Stream>` continuing a handed-over call on a fresh voice-stream worker: the same
 * parameters voice-frontdoor sends (traceId, callSid, from, to, token) plus the continuation id the
 * token is bound to.
 */
export function continueStreamTwiml(options: {
  actionUrl: string;
  streamUrl: string;
  traceId: string;
  callSid: string;
  from: string;
  to: string;
  token: string;
  continuationId: string;
}): string {
  return renderTwiml([{
    verb: "Connect",
    action: options.actionUrl,
    stream: {
      url: options.streamUrl,
      parameters: [
        { name: "traceId", value: options.traceId },
        { name: "callSid", value: options.callSid },
        { name: "from", value: options.from },
        { name: "to", value: options.to },
        { name: "token", value: options.token },
        { name: "continuation", value: options.continuationId },
      ],
    },
  }]);
}
