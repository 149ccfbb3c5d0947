/**
 * Builds voice-action's handler from the environment: config, logger, store, Twilio REST client,
 * clock. `index.ts` serves it on Supabase; `scripts/local_stack.ts` serves the same handler locally.
 * @module
 */
import { type Env, loadConfig } from "../_shared/config.ts";
import { createLogger, type LogSink } from "../_shared/log.ts";
import { bootHandler, createWaitUntil, type Handler, lazy } from "../_shared/runtime.ts";
import { createStore } from "../_shared/store/create_store.ts";
import type { Store } from "../_shared/store/types.ts";
import { createTwilioRestClient } from "../_shared/twilio/rest_client.ts";
import { createVoiceActionHandler, type VoiceActionStore } from "./handler.ts";

/**
 * A store that connects on first use, so the function boots without touching the network.
 * @param build creates the real store
 */
export function lazyStore(build: () => Store): VoiceActionStore {
  const store = lazy(build);
  return {
    lookupCaller: (to, from) => store().lookupCaller(to, from),
    recordCallEvent: (event) => store().recordCallEvent(event),
    getCall: (callSid) => store().getCall(callSid),
    searchAvailability: (query) => store().searchAvailability(query),
    bookAppointment: (input) => store().bookAppointment(input),
    cancelAppointment: (input) => store().cancelAppointment(input),
    rescheduleAppointment: (input) => store().rescheduleAppointment(input),
    claimSms: (callSid, kind, body) => store().claimSms(callSid, kind, body),
    recordSmsResult: (smsId, result) => store().recordSmsResult(smsId, result),
    updateSmsStatus: (messageSid, status, errorCode) =>
      store().updateSmsStatus(messageSid, status, errorCode),
    takeCallHandover: (callSid) => store().takeCallHandover(callSid),
    calendarFeed: (tokenSha256) => store().calendarFeed(tokenSha256),
  };
}

/** Replaceable pieces for local runs (the demo captures logs). */
export interface VoiceActionAppOverrides {
  logSink?: LogSink;
  /** A store shared with other functions (the local stack closes it). */
  store?: Store;
}

/** voice-action's handler for this environment. */
export function createVoiceActionApp(env: Env, overrides: VoiceActionAppOverrides = {}): Handler {
  return bootHandler("voice-action", () => {
    const config = loadConfig(env, { require: ["TWILIO_ACCOUNT_SID"] });
    const log = createLogger("voice-action", { level: config.logLevel, sink: overrides.logSink });
    return createVoiceActionHandler({
      config,
      log,
      clock: Date.now,
      store: lazyStore(() => overrides.store ?? createStore(config)),
      twilio: createTwilioRestClient({
        baseUrl: config.twilioApiBaseUrl,
        // Required above: loadConfig throws a ConfigError naming it when it is missing.
        accountSid: config.twilioAccountSid!,
        authToken: config.twilioAuthToken,
        log,
      }),
      waitUntil: createWaitUntil(log),
    });
  });
}
