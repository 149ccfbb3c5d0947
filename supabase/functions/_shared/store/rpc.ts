/**
 * Speaks the database's RPC protocol: the Postgres functions of `supabase/migrations`, their
 * `p_`-prefixed parameters and snake_case jsonb results. `createRpcStore` implements the `Store`
 * contract once over any transport that can call a function by name with named arguments, so the
 * Postgres and supabase-js adapters only move bytes and cannot disagree on mapping. The operations
 * come in families (the call's record, scheduling, texts, continuations, calendar feeds), each
 * mapping its arguments to `p_` parameters and its results back to the `Store` types.
 * @module
 */
import type {
  AppointmentSummary,
  BookingErrorCode,
  BookingResult,
  CalendarFeed,
  CalendarFeedEvent,
  CallerContext,
  CallEventInput,
  CallEventResult,
  CallMetrics,
  CallRecord,
  CallTurnInput,
  ClientRecord,
  OrgSettings,
  PendingHandover,
  ProviderInfo,
  ProviderSlot,
  ServiceInfo,
  Slot,
  SmsClaim,
  SmsNotClaimed,
  Store,
} from "./types.ts";

/** SQL type of an RPC parameter; the Postgres transport casts each argument to it. */
export type RpcParameterType =
  | "text"
  | "integer"
  | "bigint"
  | "numeric"
  | "uuid"
  | "date"
  | "timestamptz"
  | "jsonb";

/** One RPC: its parameters (in declaration order) and whether it returns a set of rows. */
export interface RpcSignature {
  readonly parameters: Readonly<Record<string, RpcParameterType>>;
  /** True for `returns table (...)`: the result is an array of row objects. */
  readonly returnsSet?: boolean;
}

/** Every RPC the store calls, as declared in `supabase/migrations/*_rpcs.sql`. */
export const RPC_SIGNATURES = {
  lookup_caller: { parameters: { p_to: "text", p_from: "text" } },
  record_call_event: {
    parameters: {
      p_call_sid: "text",
      p_idempotency_key: "text",
      p_kind: "text",
      p_trace_id: "text",
      p_from: "text",
      p_to: "text",
      p_status: "text",
      p_outcome: "text",
      p_duration_seconds: "integer",
      p_occurred_at: "timestamptz",
      p_payload: "jsonb",
    },
  },
  append_call_turns: { parameters: { p_call_sid: "text", p_turns: "jsonb" } },
  record_call_metrics: {
    parameters: {
      p_call_sid: "text",
      p_lookup_ms: "integer",
      p_first_audio_ms: "integer",
      p_barge_ins: "integer",
      p_tool_calls: "integer",
      p_model_input_tokens: "bigint",
      p_model_output_tokens: "bigint",
      p_stream_seconds: "numeric",
    },
  },
  get_call: { parameters: { p_call_sid: "text" } },
  available_slots: { parameters: { p_org: "uuid", p_day: "date" }, returnsSet: true },
  search_availability: {
    parameters: {
      p_org: "uuid",
      p_service: "uuid",
      p_from: "date",
      p_days: "integer",
      p_provider: "uuid",
    },
    returnsSet: true,
  },
  book_appointment: {
    parameters: {
      p_call_sid: "text",
      p_first_name: "text",
      p_last_name: "text",
      p_starts_at: "timestamptz",
      p_service_id: "uuid",
      p_provider_id: "uuid",
    },
  },
  cancel_appointment: { parameters: { p_call_sid: "text", p_code: "text" } },
  reschedule_appointment: {
    parameters: {
      p_call_sid: "text",
      p_code: "text",
      p_starts_at: "timestamptz",
      p_service_id: "uuid",
      p_provider_id: "uuid",
    },
  },
  claim_sms: { parameters: { p_call_sid: "text", p_kind: "text", p_body: "text" } },
  record_sms_result: {
    parameters: {
      p_sms_id: "uuid",
      p_message_sid: "text",
      p_status: "text",
      p_error_code: "text",
    },
  },
  update_sms_status: {
    parameters: { p_message_sid: "text", p_status: "text", p_error_code: "text" },
  },
  save_call_continuation: {
    parameters: { p_call_sid: "text", p_trace_id: "text", p_state: "jsonb" },
  },
  save_call_checkpoint: {
    parameters: { p_call_sid: "text", p_trace_id: "text", p_state: "jsonb" },
  },
  take_call_handover: { parameters: { p_call_sid: "text" } },
  claim_call_continuation: { parameters: { p_id: "uuid", p_call_sid: "text" } },
  calendar_feed: { parameters: { p_token_sha256: "text" } },
} as const satisfies Record<string, RpcSignature>;

/** Name of an RPC the store calls. */
export type RpcName = keyof typeof RPC_SIGNATURES;

/** Named arguments; an `undefined` argument is left out so the SQL default applies. */
export type RpcArgs = Record<string, unknown>;

/**
 * Moves one RPC call to the database and back. Resolves with the function's JSON result (an
 * array of row objects for set-returning functions); rejects with a `StoreError`.
 */
export interface RpcTransport {
  call(name: RpcName, args: RpcArgs): Promise<unknown>;
  close(): Promise<void>;
}

/** A failed store operation: the database's error, with its SQLSTATE (or PostgREST) code. */
export class StoreError extends Error {
  /** SQLSTATE such as `22023`, a PostgREST code such as `PGRST202`, or `unexpected_result`. */
  readonly code: string;
  constructor(message: string, options: { code: string; cause?: unknown }) {
    super(message, { cause: options.cause });
    this.name = "StoreError";
    this.code = options.code;
  }
}

/** Drops `undefined` arguments so the function's SQL defaults apply. */
export function definedArgs(args: RpcArgs): RpcArgs {
  const out: RpcArgs = {};
  for (const [key, value] of Object.entries(args)) {
    if (value !== undefined) out[key] = value;
  }
  return out;
}

/**
 * Implements `Store` over a transport. Each family below checks its methods against `Store`
 * (`satisfies`); the type of this object checks that together they are the whole of it.
 * @param transport how RPCs reach the database
 */
export function createRpcStore(transport: RpcTransport): Store {
  const call: RpcCall = (name, args) => transport.call(name, definedArgs(args));
  return {
    ...callOperations(call),
    ...schedulingOperations(call),
    ...smsOperations(call),
    ...continuationOperations(call),
    ...calendarOperations(call),
    close: () => transport.close(),
  };
}

/** Calls an RPC with `undefined` arguments left out. */
type RpcCall = (name: RpcName, args: RpcArgs) => Promise<unknown>;

/** The call and its record: who is calling, events, turns, metrics. */
function callOperations(call: RpcCall) {
  return {
    async lookupCaller(to, from) {
      const result = await call("lookup_caller", { p_to: to, p_from: from });
      return result === null || result === undefined ? null : toCallerContext(result);
    },
    async recordCallEvent(event: CallEventInput): Promise<CallEventResult> {
      const result = asObject(
        await call("record_call_event", {
          p_call_sid: event.callSid,
          p_idempotency_key: event.idempotencyKey,
          p_kind: event.kind,
          p_trace_id: event.traceId,
          p_from: event.from,
          p_to: event.to,
          p_status: event.status,
          p_outcome: event.outcome,
          p_duration_seconds: roundOrNullish(event.durationSeconds),
          p_occurred_at: event.occurredAt,
          p_payload: event.payload,
        }),
        "record_call_event",
      );
      return {
        inserted: result.inserted === true,
        status: textOrNull(result.status),
        outcome: textOrNull(result.outcome),
        orgId: textOrNull(result.org_id),
      };
    },
    async appendCallTurns(callSid: string, turns: CallTurnInput[]): Promise<number> {
      if (turns.length === 0) return 0;
      const result = await call("append_call_turns", {
        p_call_sid: callSid,
        p_turns: turns.map((turn) => ({
          sequence: turn.sequence,
          speaker: turn.speaker,
          text: turn.text,
          start_ms: roundOrNullish(turn.startMs) ?? null,
          end_ms: roundOrNullish(turn.endMs) ?? null,
        })),
      });
      return Number(result);
    },
    async recordCallMetrics(callSid: string, metrics: CallMetrics): Promise<void> {
      await call("record_call_metrics", {
        p_call_sid: callSid,
        p_lookup_ms: roundOrNullish(metrics.lookupMs),
        p_first_audio_ms: roundOrNullish(metrics.firstAudioMs),
        p_barge_ins: metrics.bargeIns,
        p_tool_calls: metrics.toolCalls,
        p_model_input_tokens: metrics.modelInputTokens,
        p_model_output_tokens: metrics.modelOutputTokens,
        p_stream_seconds: metrics.streamSeconds,
      });
    },
    async getCall(callSid: string): Promise<CallRecord | null> {
      const result = await call("get_call", { p_call_sid: callSid });
      if (result === null || result === undefined) return null;
      const row = asObject(result, "get_call");
      return {
        callSid: String(row.call_sid),
        orgId: textOrNull(row.org_id),
        traceId: textOrNull(row.trace_id),
        from: textOrNull(row.from),
        to: textOrNull(row.to),
        status: textOrNull(row.status),
        outcome: textOrNull(row.outcome),
        clientFirstName: textOrNull(row.client_first_name),
      };
    },
  } satisfies Partial<Store>;
}

/** Free times and appointments. */
function schedulingOperations(call: RpcCall) {
  return {
    async availableSlots(orgId: string, day: string): Promise<Slot[]> {
      const rows = await call("available_slots", { p_org: orgId, p_day: day });
      if (!Array.isArray(rows)) throw unexpected("available_slots");
      return rows.map((row) => {
        const slot = asObject(row, "available_slots");
        return { startsAt: isoUtc(slot.starts_at), endsAt: isoUtc(slot.ends_at) };
      });
    },
    async searchAvailability(query): Promise<ProviderSlot[]> {
      const rows = await call("search_availability", {
        p_org: query.orgId,
        p_service: query.serviceId,
        p_from: query.fromDay,
        p_days: query.days,
        p_provider: query.providerId ?? undefined,
      });
      if (!Array.isArray(rows)) throw unexpected("search_availability");
      return rows.map((row) => {
        const slot = asObject(row, "search_availability");
        return {
          providerId: String(slot.provider_id),
          providerName: String(slot.provider_name),
          startsAt: isoUtc(slot.starts_at),
          endsAt: isoUtc(slot.ends_at),
        };
      });
    },
    async bookAppointment(input): Promise<BookingResult> {
      return toBookingResult(
        await call("book_appointment", {
          p_call_sid: input.callSid,
          p_first_name: input.firstName,
          p_last_name: input.lastName,
          p_starts_at: input.startsAt,
          p_service_id: input.serviceId ?? undefined,
          p_provider_id: input.providerId ?? undefined,
        }),
        "book_appointment",
      );
    },
    async cancelAppointment(input): Promise<BookingResult> {
      return toBookingResult(
        await call("cancel_appointment", {
          p_call_sid: input.callSid,
          p_code: input.confirmationCode,
        }),
        "cancel_appointment",
      );
    },
    async rescheduleAppointment(input): Promise<BookingResult> {
      return toBookingResult(
        await call("reschedule_appointment", {
          p_call_sid: input.callSid,
          p_code: input.confirmationCode,
          p_starts_at: input.startsAt,
          p_service_id: input.serviceId ?? undefined,
          p_provider_id: input.providerId ?? undefined,
        }),
        "reschedule_appointment",
      );
    },
  } satisfies Partial<Store>;
}

/** The texts of a call: claimed once, then sent and tracked. */
function smsOperations(call: RpcCall) {
  return {
    async claimSms(callSid, kind, body): Promise<SmsClaim | SmsNotClaimed> {
      const result = asObject(
        await call("claim_sms", { p_call_sid: callSid, p_kind: kind, p_body: body }),
        "claim_sms",
      );
      if (result.claimed === true) {
        return {
          claimed: true,
          smsId: String(result.sms_id),
          to: String(result.to),
          from: String(result.from),
          body: String(result.body),
        };
      }
      return { claimed: false, reason: String(result.reason) as SmsNotClaimed["reason"] };
    },
    async recordSmsResult(smsId, result): Promise<void> {
      await call("record_sms_result", {
        p_sms_id: smsId,
        p_message_sid: result.messageSid,
        p_status: result.status,
        p_error_code: result.errorCode ?? null,
      });
    },
    async updateSmsStatus(messageSid, status, errorCode): Promise<boolean> {
      const result = await call("update_sms_status", {
        p_message_sid: messageSid,
        p_status: status,
        p_error_code: errorCode ?? null,
      });
      return result === true;
    },
  } satisfies Partial<Store>;
}

/** A call's conversation state handed from one stream to the next. */
function continuationOperations(call: RpcCall) {
  return {
    async saveCallContinuation(callSid, traceId, state): Promise<string> {
      const result = await call("save_call_continuation", {
        p_call_sid: callSid,
        p_trace_id: traceId,
        p_state: state,
      });
      if (typeof result !== "string" || result === "") throw unexpected("save_call_continuation");
      return result;
    },
    async saveCallCheckpoint(callSid, traceId, state): Promise<string> {
      const result = await call("save_call_checkpoint", {
        p_call_sid: callSid,
        p_trace_id: traceId,
        p_state: state,
      });
      if (typeof result !== "string" || result === "") throw unexpected("save_call_checkpoint");
      return result;
    },
    async takeCallHandover(callSid): Promise<PendingHandover | null> {
      const result = await call("take_call_handover", { p_call_sid: callSid });
      if (result === null || result === undefined) return null;
      const row = asObject(result, "take_call_handover");
      return {
        continuationId: String(row.continuation_id),
        traceId: textOrNull(row.trace_id),
        kind: row.kind === "checkpoint" ? "checkpoint" : "handover",
      };
    },
    async claimCallContinuation(continuationId, callSid) {
      const result = await call("claim_call_continuation", {
        p_id: continuationId,
        p_call_sid: callSid,
      });
      if (result === null || result === undefined) return null;
      return asObject(result, "claim_call_continuation");
    },
  } satisfies Partial<Store>;
}

/** The calendar feeds staff subscribe to. */
function calendarOperations(call: RpcCall) {
  return {
    async calendarFeed(tokenSha256): Promise<CalendarFeed | null> {
      const result = await call("calendar_feed", { p_token_sha256: tokenSha256 });
      return result === null || result === undefined ? null : toCalendarFeed(result);
    },
  } satisfies Partial<Store>;
}

function unexpected(name: string): StoreError {
  return new StoreError(`Cannot read ${name} result: unexpected shape`, {
    code: "unexpected_result",
  });
}

function asObject(value: unknown, name: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw unexpected(name);
  return value as Record<string, unknown>;
}

function textOrNull(value: unknown): string | null {
  return value === null || value === undefined ? null : String(value);
}

// Integer parameters reject fractions ("12.5"::integer fails): timings come from performance.now().
function roundOrNullish(value: number | null | undefined): number | null | undefined {
  return typeof value === "number" ? Math.round(value) : value;
}

/** Normalizes a timestamp (Date, or text in any ISO 8601 offset) to `toISOString()` form. */
export function isoUtc(value: unknown): string {
  const date = value instanceof Date ? value : new Date(String(value));
  if (Number.isNaN(date.getTime())) {
    throw new StoreError("Cannot read timestamp: not a date", { code: "unexpected_result" });
  }
  return date.toISOString();
}

function toAppointment(value: unknown): AppointmentSummary {
  const row = asObject(value, "appointment");
  return {
    id: String(row.id),
    startsAt: isoUtc(row.starts_at),
    endsAt: isoUtc(row.ends_at),
    confirmationCode: String(row.confirmation_code),
    status: String(row.status),
    serviceId: textOrNull(row.service_id),
    serviceName: textOrNull(row.service_name),
    providerId: textOrNull(row.provider_id),
    providerName: textOrNull(row.provider_name),
  };
}

function toProvider(value: unknown): ProviderInfo | null {
  if (value === null || value === undefined) return null;
  const row = asObject(value, "provider");
  return { id: String(row.id), name: String(row.name) };
}

function toService(value: unknown): ServiceInfo {
  const row = asObject(value, "service");
  return {
    id: String(row.id),
    name: String(row.name),
    durationMinutes: Number(row.duration_minutes),
    bufferAfterMinutes: Number(row.buffer_after_minutes ?? 0),
    instructions: String(row.instructions ?? ""),
    isDefault: row.is_default === true,
    providers: Array.isArray(row.providers) ? row.providers.map(String) : [],
  };
}

function numberOrNull(value: unknown): number | null {
  return value === null || value === undefined ? null : Number(value);
}

function toBookingResult(value: unknown, name: string): BookingResult {
  const result = asObject(value, name);
  if (result.ok === true) return { ok: true, appointment: toAppointment(result.appointment) };
  return { ok: false, code: String(result.code) as BookingErrorCode };
}

function toCalendarFeed(value: unknown): CalendarFeed {
  const result = asObject(value, "calendar_feed");
  const org = asObject(result.org, "calendar_feed");
  const provider = toProvider(result.provider);
  const events = Array.isArray(result.events) ? result.events : [];
  return {
    feedId: String(result.feed_id),
    org: {
      id: String(org.id),
      name: String(org.name),
      timezone: String(org.timezone),
      slug: String(org.slug),
    },
    provider,
    events: events.map((event): CalendarFeedEvent => {
      const row = asObject(event, "calendar_feed");
      return {
        id: String(row.id),
        startsAt: isoUtc(row.starts_at),
        endsAt: isoUtc(row.ends_at),
        status: String(row.status),
        confirmationCode: String(row.confirmation_code),
        serviceName: textOrNull(row.service_name),
        providerName: textOrNull(row.provider_name),
        clientFirstName: textOrNull(row.client_first_name),
        clientPhoneMasked: textOrNull(row.client_phone_masked),
        createdAt: isoUtc(row.created_at),
        updatedAt: isoUtc(row.updated_at),
      };
    }),
  };
}

function toCallerContext(value: unknown): CallerContext {
  const result = asObject(value, "lookup_caller");
  const org = asObject(result.org, "lookup_caller");
  const vad = asObject(org.vad, "lookup_caller");
  const rules = org.booking_rules === null || org.booking_rules === undefined
    ? {}
    : asObject(org.booking_rules, "lookup_caller");
  const orgSettings: OrgSettings = {
    id: String(org.id),
    name: String(org.name),
    timezone: String(org.timezone),
    greeting: String(org.greeting ?? ""),
    persona: String(org.persona ?? ""),
    appointmentMinutes: Number(org.appointment_minutes),
    transferNumber: textOrNull(org.transfer_number),
    smsRecoveryTemplate: String(org.sms_recovery_template ?? ""),
    emergencyKeywords: Array.isArray(org.emergency_keywords)
      ? org.emergency_keywords.map(String)
      : [],
    maxCallSeconds: org.max_call_seconds === null || org.max_call_seconds === undefined
      ? null
      : Number(org.max_call_seconds),
    voice: String(org.voice),
    languages: Array.isArray(org.languages) ? org.languages.map(String) : ["en"],
    vad: {
      threshold: Number(vad.threshold),
      silenceDurationMs: Number(vad.silence_duration_ms),
      prefixPaddingMs: Number(vad.prefix_padding_ms),
    },
    phoneNumber: String(org.phone_number),
    services: Array.isArray(org.services) ? org.services.map(toService) : [],
    providers: Array.isArray(org.providers)
      ? org.providers.map((provider) => toProvider(provider)!)
      : [],
    bookingRules: {
      minNoticeMinutes: Number(rules.min_notice_minutes ?? 0),
      bookingHorizonDays: numberOrNull(rules.booking_horizon_days),
      slotGranularityMinutes: numberOrNull(rules.slot_granularity_minutes),
    },
  };
  let client: ClientRecord | null = null;
  if (result.client !== null && result.client !== undefined) {
    const row = asObject(result.client, "lookup_caller");
    client = {
      id: String(row.id),
      firstName: textOrNull(row.first_name),
      lastName: textOrNull(row.last_name),
      phone: String(row.phone),
      preferredProvider: toProvider(row.preferred_provider),
    };
  }
  const upcoming = Array.isArray(result.upcoming_appointments) ? result.upcoming_appointments : [];
  return {
    org: orgSettings,
    client,
    upcomingAppointments: upcoming.map(toAppointment),
    lastProvider: toProvider(result.last_provider),
    lastCallOutcome: textOrNull(result.last_call_outcome),
  };
}
