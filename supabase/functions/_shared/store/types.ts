/**
 * The store contract: every durable read and write the three functions make, one method per
 * Postgres RPC in `supabase/migrations`. Two adapters implement it: `postgres_store.ts` (direct
 * connection, local runs and tests) and `supabase_store.ts` (supabase-js `.rpc()`, hosted default).
 * @module
 */

/** Voice-activity-detection settings of an org, passed to OpenAI Realtime's `server_vad`. */
export interface OrgVadSettings {
  threshold: number;
  silenceDurationMs: number;
  prefixPaddingMs: number;
}

/** A service an org's callers can book. */
export interface ServiceInfo {
  id: string;
  name: string;
  durationMinutes: number;
  bufferAfterMinutes: number;
  /** Read back to the caller after booking ("arrive 10 minutes early"); may be empty. */
  instructions: string;
  /** The service a booking without one gets. */
  isDefault: boolean;
  /** Names of the providers offering it. */
  providers: string[];
}

/** A person or room that takes appointments. */
export interface ProviderInfo {
  id: string;
  name: string;
}

/** An org's booking rules. */
export interface BookingRules {
  minNoticeMinutes: number;
  /** Local days ahead a booking may start; null: no limit. */
  bookingHorizonDays: number | null;
  /** Step between offered starts; null: the service's length plus buffer. */
  slotGranularityMinutes: number | null;
}

/** The org (tenant) settings the call path needs. */
export interface OrgSettings {
  id: string;
  name: string;
  timezone: string;
  greeting: string;
  persona: string;
  appointmentMinutes: number;
  transferNumber: string | null;
  smsRecoveryTemplate: string;
  emergencyKeywords: string[];
  maxCallSeconds: number | null;
  voice: string;
  /** Language tags the assistant may speak, the default first (e.g. `["en", "es"]`). */
  languages: string[];
  vad: OrgVadSettings;
  /** The org's number that was called, E.164: the sender of its SMS. */
  phoneNumber: string;
  /** Active services, by name. */
  services: ServiceInfo[];
  /** Active providers, by name. */
  providers: ProviderInfo[];
  bookingRules: BookingRules;
}

/** A known caller. */
export interface ClientRecord {
  id: string;
  firstName: string | null;
  lastName: string | null;
  phone: string;
  /** The provider the client prefers, when one is set. */
  preferredProvider: ProviderInfo | null;
}

/** An active appointment, times as ISO 8601 UTC strings. */
export interface AppointmentSummary {
  id: string;
  startsAt: string;
  endsAt: string;
  confirmationCode: string;
  status: string;
  serviceId: string | null;
  serviceName: string | null;
  providerId: string | null;
  providerName: string | null;
}

/** What `lookup_caller` returns: everything the prompt needs, in one round trip. */
export interface CallerContext {
  org: OrgSettings;
  client: ClientRecord | null;
  upcomingAppointments: AppointmentSummary[];
  /** The provider of the caller's most recent past appointment. */
  lastProvider: ProviderInfo | null;
  lastCallOutcome: string | null;
}

/** Twilio call statuses plus our own stream milestones, in lifecycle order. */
export type CallStatus =
  | "queued"
  | "initiated"
  | "ringing"
  | "in-progress"
  | "completed"
  | "busy"
  | "failed"
  | "no-answer"
  | "canceled";

/** One event to record idempotently on a call. */
export interface CallEventInput {
  callSid: string;
  /** Unique per event; a replay with the same key changes nothing. */
  idempotencyKey: string;
  /** e.g. `status_callback`, `call_incoming`, `stream_started`, `stream_ended`, `model_failed`. */
  kind: string;
  traceId?: string | null;
  from?: string | null;
  to?: string | null;
  /** A Twilio call status; applied only if it moves the call forward. */
  status?: CallStatus | null;
  /** Call outcome to set (e.g. `failed`, `recovered`); see `recordCallEvent`. */
  outcome?: string | null;
  durationSeconds?: number | null;
  occurredAt?: string | null;
  payload?: Record<string, unknown>;
}

/** The result of recording an event. */
export interface CallEventResult {
  /** False when the idempotency key was seen before (a replay). */
  inserted: boolean;
  /** The call's status after the event (never moved backwards). */
  status: string | null;
  outcome: string | null;
  orgId: string | null;
}

/** A transcript turn. */
export interface CallTurnInput {
  sequence: number;
  speaker: "caller" | "assistant";
  text: string;
  startMs?: number | null;
  endMs?: number | null;
}

/** A bookable slot, ISO 8601 UTC. */
export interface Slot {
  startsAt: string;
  endsAt: string;
}

/** A free slot of one provider, ISO 8601 UTC. */
export interface ProviderSlot extends Slot {
  providerId: string;
  providerName: string;
}

/** What `searchAvailability` looks for. */
export interface AvailabilityQuery {
  orgId: string;
  serviceId: string;
  /** First local day, `YYYY-MM-DD`. */
  fromDay: string;
  /** Local days searched, 1 to 62. */
  days: number;
  /** Only this provider; all providers of the service when absent. */
  providerId?: string | null;
}

/** Stable error codes the booking RPCs return. */
export type BookingErrorCode =
  | "slot_taken"
  | "outside_hours"
  | "in_past"
  | "unknown_org"
  | "unknown_call"
  | "not_found"
  | "invalid_input"
  | "too_soon"
  | "too_far"
  | "unknown_service"
  | "unknown_provider";

/** Result of booking, cancelling or rescheduling. */
export type BookingResult =
  | { ok: true; appointment: AppointmentSummary }
  | { ok: false; code: BookingErrorCode };

/** A call as voice-action needs it. */
export interface CallRecord {
  callSid: string;
  orgId: string | null;
  traceId: string | null;
  from: string | null;
  to: string | null;
  status: string | null;
  outcome: string | null;
  clientFirstName: string | null;
}

/** Per-call metrics written when the stream ends. */
export interface CallMetrics {
  lookupMs?: number | null;
  firstAudioMs?: number | null;
  bargeIns?: number;
  toolCalls?: number;
  modelInputTokens?: number;
  modelOutputTokens?: number;
  streamSeconds?: number | null;
}

/** A claimed SMS: the caller of `claimSms` won the right to send it. */
export interface SmsClaim {
  claimed: true;
  smsId: string;
  to: string;
  from: string;
  body: string;
}

/** Why an SMS was not claimed. */
export interface SmsNotClaimed {
  claimed: false;
  reason: "already_claimed" | "opted_out" | "invalid_number" | "unknown_call";
}

/** A handover `take_call_handover` found for a stream that ended: open a stream continuing it. */
export interface PendingHandover {
  continuationId: string;
  traceId: string | null;
  /** `handover`: the stream handed over; `checkpoint`: it died, resume from its last turn. */
  kind: "handover" | "checkpoint";
}

/** One appointment as a calendar feed shows it; times ISO 8601 UTC. */
export interface CalendarFeedEvent {
  id: string;
  startsAt: string;
  endsAt: string;
  /** `booked` or `cancelled`. */
  status: string;
  confirmationCode: string;
  serviceName: string | null;
  providerName: string | null;
  clientFirstName: string | null;
  /** Only the last four digits, e.g. `•••• 2233`. */
  clientPhoneMasked: string | null;
  createdAt: string;
  updatedAt: string;
}

/** What `calendar_feed` returns for an active token: the org or provider and its appointments. */
export interface CalendarFeed {
  feedId: string;
  org: { id: string; name: string; timezone: string; slug: string };
  /** Null for the whole org's feed. */
  provider: { id: string; name: string } | null;
  /** From 30 days back to 365 days ahead, in start order, at most 2,000. */
  events: CalendarFeedEvent[];
}

/** Every durable operation of the product. */
export interface Store {
  lookupCaller(to: string, from: string): Promise<CallerContext | null>;
  recordCallEvent(event: CallEventInput): Promise<CallEventResult>;
  appendCallTurns(callSid: string, turns: CallTurnInput[]): Promise<number>;
  recordCallMetrics(callSid: string, metrics: CallMetrics): Promise<void>;
  getCall(callSid: string): Promise<CallRecord | null>;
  availableSlots(orgId: string, day: string): Promise<Slot[]>;
  /** Free slots of a service per provider, in time then provider order. */
  searchAvailability(query: AvailabilityQuery): Promise<ProviderSlot[]>;
  bookAppointment(input: {
    callSid: string;
    firstName: string;
    lastName: string;
    startsAt: string;
    /** The org's default service when absent. */
    serviceId?: string | null;
    /** The first free provider of the service when absent. */
    providerId?: string | null;
  }): Promise<BookingResult>;
  cancelAppointment(input: { callSid: string; confirmationCode: string }): Promise<BookingResult>;
  rescheduleAppointment(input: {
    callSid: string;
    confirmationCode: string;
    startsAt: string;
    /** Keeps the appointment's service when absent. */
    serviceId?: string | null;
    /** Keeps the current provider if free, else the first free one, when absent. */
    providerId?: string | null;
  }): Promise<BookingResult>;
  /** Claims the one SMS of `kind` for a call; the body is rendered from the org's template. */
  claimSms(
    callSid: string,
    kind: "recovery" | "confirmation",
    body?: string,
  ): Promise<SmsClaim | SmsNotClaimed>;
  recordSmsResult(
    smsId: string,
    result: { messageSid: string | null; status: string; errorCode?: string | null },
  ): Promise<void>;
  updateSmsStatus(messageSid: string, status: string, errorCode?: string | null): Promise<boolean>;
  /** Saves the conversation state a stream hands over; returns the continuation id. */
  saveCallContinuation(
    callSid: string,
    traceId: string | null,
    state: Record<string, unknown>,
  ): Promise<string>;
  /**
   * Saves the conversation at a turn, replacing the call's pending checkpoint: a stream whose
   * worker dies resumes from it. Returns the checkpoint's id.
   */
  saveCallCheckpoint(
    callSid: string,
    traceId: string | null,
    state: Record<string, unknown>,
  ): Promise<string>;
  /**
   * Takes the call's pending handover for `<Connect action>` (once), or the newest checkpoint of a
   * stream that ended without a report; null when the stream ended for good.
   */
  takeCallHandover(callSid: string): Promise<PendingHandover | null>;
  /** Claims a continuation's state for the stream continuing the call (once); null otherwise. */
  claimCallContinuation(
    continuationId: string,
    callSid: string,
  ): Promise<Record<string, unknown> | null>;
  /** The calendar feed whose active token hashes to this (lowercase hex); null otherwise. */
  calendarFeed(tokenSha256: string): Promise<CalendarFeed | null>;
  close(): Promise<void>;
}
