/**
 * An in-memory `Store` for voice-action's unit tests, following the RPC rules of
 * `supabase/migrations` closely enough to test against: idempotent events, status only forward,
 * ranked outcomes, one SMS per call and kind, opt-outs, and a slot grid with overlap checks.
 * Tests of voice-action and the prompt use it; the integration tests use the real Postgres store.
 * @module
 */
import type {
  AppointmentSummary,
  BookingResult,
  CalendarFeed,
  CallerContext,
  CallEventInput,
  CallEventResult,
  CallRecord,
  OrgSettings,
  PendingHandover,
  ProviderSlot,
  SmsClaim,
  SmsNotClaimed,
} from "../../supabase/functions/_shared/store/types.ts";
import type { VoiceActionStore } from "../../supabase/functions/voice-action/handler.ts";
import {
  addDays,
  toLocalDateTime,
  zonedTimeToUtc,
} from "../../supabase/functions/voice-action/zoned_time.ts";

/** The seed's demo org. */
export const HARBOR_DENTAL: OrgSettings = {
  id: "00000000-0000-4000-8000-000000000001",
  name: "Harbor Dental",
  timezone: "America/New_York",
  greeting: "Thanks for calling Harbor Dental.",
  persona: "",
  appointmentMinutes: 30,
  transferNumber: "+15550100999",
  smsRecoveryTemplate: "Hi {first_name}, this is {org_name}. Sorry we got cut off!",
  emergencyKeywords: ["emergency", "bleeding", "severe pain"],
  maxCallSeconds: 600,
  voice: "alloy",
  languages: ["en"],
  vad: { threshold: 0.6, silenceDurationMs: 400, prefixPaddingMs: 300 },
  phoneNumber: "+15550100000",
  services: [
    {
      id: "svc-checkup",
      name: "Check-up",
      durationMinutes: 30,
      bufferAfterMinutes: 0,
      instructions: "",
      isDefault: false,
      providers: ["Dr. Lee"],
    },
    {
      id: "svc-cleaning",
      name: "Cleaning",
      durationMinutes: 30,
      bufferAfterMinutes: 0,
      instructions: "",
      isDefault: true,
      providers: ["Dr. Lee", "Sam Ortiz"],
    },
    {
      id: "svc-exam",
      name: "New patient exam",
      durationMinutes: 60,
      bufferAfterMinutes: 15,
      instructions: "Please arrive 10 minutes early to fill in a short form.",
      isDefault: false,
      providers: ["Dr. Lee"],
    },
  ],
  providers: [{ id: "prov-lee", name: "Dr. Lee" }, { id: "prov-sam", name: "Sam Ortiz" }],
  bookingRules: { minNoticeMinutes: 0, bookingHorizonDays: null, slotGranularityMinutes: 30 },
};

/**
 * The providers' weeks (as seed.sql): ISO weekday (1 = Monday) to local ranges. Dr. Lee does not
 * work on Tuesdays.
 */
export const FAKE_PROVIDER_WEEKS: Record<string, Record<number, [string, string][]>> = {
  "prov-lee": {
    1: [["09:00", "12:00"], ["13:00", "17:00"]],
    3: [["09:00", "12:00"], ["13:00", "17:00"]],
    4: [["09:00", "12:00"], ["13:00", "17:00"]],
    5: [["09:00", "12:00"], ["13:00", "17:00"]],
  },
  "prov-sam": {
    1: [["09:00", "17:00"]],
    2: [["09:00", "17:00"]],
    3: [["09:00", "17:00"]],
    4: [["09:00", "17:00"]],
    5: [["09:00", "17:00"]],
  },
};

const STATUS_RANK: Record<string, number> = {
  queued: 0,
  initiated: 0,
  ringing: 1,
  "in-progress": 2,
  completed: 3,
  busy: 3,
  failed: 3,
  "no-answer": 3,
  canceled: 3,
};

const OUTCOME_RANK: Record<string, number> = {
  completed: 1,
  missed: 1,
  failed: 2,
  voicemail: 2,
  recovered: 3,
  cancelled: 4,
  transferred: 4,
  rescheduled: 5,
  booked: 5,
};

interface FakeCall {
  callSid: string;
  from: string | null;
  to: string | null;
  traceId: string | null;
  status: string | null;
  outcome: string | null;
}

interface FakeAppointment extends AppointmentSummary {
  phone: string;
  /** End of the appointment plus its service's buffer. */
  blockedUntil: string;
}

/** A row of `sms_messages`. */
export interface FakeSms {
  smsId: string;
  callSid: string;
  kind: "recovery" | "confirmation";
  to: string;
  from: string;
  body: string;
  messageSid: string | null;
  status: string;
  errorCode: string | null;
}

type Method = keyof VoiceActionStore;

/** The fake store and what tests inspect or arrange. */
export interface FakeStore extends VoiceActionStore {
  org: OrgSettings;
  calls: Map<string, FakeCall>;
  events: Map<string, CallEventInput>;
  appointments: FakeAppointment[];
  sms: FakeSms[];
  optOuts: Set<string>;
  clients: Map<string, { firstName: string; lastName: string }>;
  /** Handovers saved by voice-stream (arrange with `addHandover`), not yet taken. */
  handovers: Map<string, PendingHandover[]>;
  /** Arranges a pending handover for a call, as voice-stream's `saveCallContinuation` would. */
  addHandover(
    callSid: string,
    handover: Omit<PendingHandover, "kind"> & Partial<Pick<PendingHandover, "kind">>,
  ): void;
  /** Active calendar feeds by token hash (arrange with `rotateCalendarFeed`). */
  calendarFeeds: Map<string, { feedId: string; providerId: string | null }>;
  /**
   * Makes `tokenSha256` the active token of the org's feed (provider null) or a provider's,
   * revoking the one it replaces, as `rotate_calendar_feed` does; returns the feed id.
   */
  rotateCalendarFeed(providerId: string | null, tokenSha256: string): string;
  /** Calls per method, in order. */
  invocations: { method: Method; args: unknown[] }[];
  /** Makes the next `count` calls of `method` throw. */
  failNext(method: Method, count?: number): void;
  /** Creates a call as voice-frontdoor does. */
  addCall(call: Partial<FakeCall> & { callSid: string }): void;
}

/**
 * Creates an empty fake store for Harbor Dental.
 * @param nowMs the clock slots and bookings are checked against
 */
export function createFakeStore(nowMs: () => number): FakeStore {
  const org = structuredClone(HARBOR_DENTAL);
  const calls = new Map<string, FakeCall>();
  const events = new Map<string, CallEventInput>();
  const appointments: FakeAppointment[] = [];
  const sms: FakeSms[] = [];
  const optOuts = new Set<string>();
  const clients = new Map<string, { firstName: string; lastName: string }>([
    ["+15551230001", { firstName: "Jane", lastName: "Doe" }],
  ]);
  const handovers = new Map<string, PendingHandover[]>();
  const calendarFeeds = new Map<string, { feedId: string; providerId: string | null }>();
  const invocations: { method: Method; args: unknown[] }[] = [];
  const failures = new Map<Method, number>();
  let codeCounter = 0;

  function enter(method: Method, args: unknown[]): void {
    invocations.push({ method, args });
    const remaining = failures.get(method) ?? 0;
    if (remaining > 0) {
      failures.set(method, remaining - 1);
      throw new Error(`connection refused (${method})`);
    }
  }

  function minutesOf(time: string): number {
    const [hours, minutes] = time.split(":").map(Number);
    return hours * 60 + minutes;
  }

  function timeOf(minutes: number): string {
    return `${String(Math.floor(minutes / 60)).padStart(2, "0")}:${
      String(minutes % 60).padStart(2, "0")
    }`;
  }

  function serviceById(serviceId: string | null | undefined) {
    if (!serviceId) {
      const defaults = org.services.filter((service) => service.isDefault);
      if (defaults.length === 1) return defaults[0];
      return org.services.length === 1 ? org.services[0] : undefined;
    }
    return org.services.find((service) => service.id === serviceId);
  }

  function offers(serviceId: string, providerId: string): boolean {
    const service = serviceById(serviceId);
    const provider = org.providers.find((item) => item.id === providerId);
    return !!service && !!provider && service.providers.includes(provider.name);
  }

  /** Every slot of a service with one provider on a local day, booked or not. */
  function grid(serviceId: string, providerId: string, day: string): ProviderSlot[] {
    const service = serviceById(serviceId);
    const provider = org.providers.find((item) => item.id === providerId);
    if (!service || !provider || !offers(service.id, provider.id)) return [];
    const [year, month, date] = day.split("-").map(Number);
    const isoWeekday = new Date(Date.UTC(year, month - 1, date)).getUTCDay() || 7;
    const step = org.bookingRules.slotGranularityMinutes ??
      service.durationMinutes + service.bufferAfterMinutes;
    const slots: ProviderSlot[] = [];
    for (const [opens, closes] of FAKE_PROVIDER_WEEKS[providerId]?.[isoWeekday] ?? []) {
      for (
        let minutes = minutesOf(opens);
        minutes + service.durationMinutes <= minutesOf(closes);
        minutes += step
      ) {
        const start = zonedTimeToUtc(day, timeOf(minutes), org.timezone);
        if (!start) continue;
        slots.push({
          providerId,
          providerName: provider.name,
          startsAt: start.toISOString(),
          endsAt: new Date(start.getTime() + service.durationMinutes * 60_000).toISOString(),
        });
      }
    }
    return slots;
  }

  function blockedUntil(serviceId: string, startsAt: string): string {
    const service = serviceById(serviceId)!;
    return new Date(
      Date.parse(startsAt) + (service.durationMinutes + service.bufferAfterMinutes) * 60_000,
    ).toISOString();
  }

  /** True when `providerId` has a booked appointment overlapping [startsAt, until). */
  function taken(providerId: string, startsAt: string, until: string, ignoreId?: string): boolean {
    return appointments.some((a) =>
      a.status === "booked" && a.providerId === providerId && a.id !== ignoreId &&
      a.startsAt < until && startsAt < a.blockedUntil
    );
  }

  function providersFor(serviceId: string, providerId?: string | null): string[] {
    return org.providers
      .filter((provider) => !providerId || provider.id === providerId)
      .filter((provider) => offers(serviceId, provider.id))
      .map((provider) => provider.id);
  }

  function ruleProblem(startsAt: string): "in_past" | null {
    return Date.parse(startsAt) <= nowMs() ? "in_past" : null;
  }

  /** Providers with a slot starting at `startsAt`, `first` first. */
  function slotProviders(
    serviceId: string,
    providerId: string | null | undefined,
    startsAt: string,
    first?: string | null,
  ): string[] {
    const day = toLocalDateTime(startsAt, org.timezone).date;
    return providersFor(serviceId, providerId)
      .filter((id) => grid(serviceId, id, day).some((slot) => slot.startsAt === startsAt))
      .sort((a, b) => (a === first ? -1 : b === first ? 1 : 0));
  }

  function summary(appointment: FakeAppointment): AppointmentSummary {
    const { phone: _phone, blockedUntil: _blocked, ...rest } = appointment;
    return { ...rest };
  }

  function merge(current: string | null, next: string | null | undefined): string | null {
    if (!next) return current;
    if (!current) return next;
    return OUTCOME_RANK[next] >= OUTCOME_RANK[current] ? next : current;
  }

  function findOwn(call: FakeCall, code: string): FakeAppointment | undefined {
    const normalized = code.replace(/[^A-Za-z0-9]/g, "").toUpperCase();
    return appointments.find((a) =>
      a.status === "booked" && a.confirmationCode === normalized && a.phone === call.from
    );
  }

  const store: FakeStore = {
    org,
    calls,
    events,
    appointments,
    sms,
    optOuts,
    clients,
    handovers,
    invocations,
    addHandover(callSid, handover) {
      handovers.set(callSid, [
        ...(handovers.get(callSid) ?? []),
        { kind: "handover", ...handover },
      ]);
    },
    calendarFeeds,
    rotateCalendarFeed(providerId, tokenSha256) {
      for (const [hash, feed] of calendarFeeds) {
        if (feed.providerId === providerId) calendarFeeds.delete(hash);
      }
      const feedId = `feed-${providerId ?? "org"}-${tokenSha256.slice(0, 8)}`;
      calendarFeeds.set(tokenSha256, { feedId, providerId });
      return feedId;
    },
    failNext(method, count = 1) {
      failures.set(method, count);
    },
    addCall(call) {
      calls.set(call.callSid, {
        from: "+15551230001",
        to: org.phoneNumber,
        traceId: "trace-1",
        status: "ringing",
        outcome: null,
        ...call,
      });
    },
    lookupCaller(to, from): Promise<CallerContext | null> {
      enter("lookupCaller", [to, from]);
      if (to !== org.phoneNumber) return Promise.resolve(null);
      const client = clients.get(from);
      return Promise.resolve({
        org: structuredClone(org),
        client: client
          ? {
            id: "client-1",
            firstName: client.firstName,
            lastName: client.lastName,
            phone: from,
            // Jane prefers Dr. Lee, as in seed.sql.
            preferredProvider: from === "+15551230001" ? org.providers[0] : null,
          }
          : null,
        upcomingAppointments: appointments
          .filter((a) =>
            a.phone === from && a.status === "booked" && Date.parse(a.startsAt) > nowMs()
          )
          .sort((a, b) => a.startsAt.localeCompare(b.startsAt))
          .slice(0, 3)
          .map(summary),
        lastProvider: null,
        lastCallOutcome: null,
      });
    },
    recordCallEvent(event): Promise<CallEventResult> {
      enter("recordCallEvent", [event]);
      let call = calls.get(event.callSid);
      if (!call) {
        call = {
          callSid: event.callSid,
          from: event.from ?? null,
          to: event.to ?? null,
          traceId: event.traceId ?? null,
          status: null,
          outcome: null,
        };
        calls.set(event.callSid, call);
      }
      const orgId = call.to === org.phoneNumber ? org.id : null;
      if (events.has(event.idempotencyKey)) {
        return Promise.resolve({
          inserted: false,
          status: call.status,
          outcome: call.outcome,
          orgId,
        });
      }
      events.set(event.idempotencyKey, structuredClone(event));
      if (event.status && STATUS_RANK[event.status] > (STATUS_RANK[call.status ?? ""] ?? -1)) {
        call.status = event.status;
      }
      call.outcome = merge(call.outcome, event.outcome);
      if (!call.outcome && call.status && STATUS_RANK[call.status] === 3) {
        call.outcome = call.status === "completed"
          ? "completed"
          : call.status === "failed"
          ? "failed"
          : "missed";
      }
      call.from ??= event.from ?? null;
      call.to ??= event.to ?? null;
      return Promise.resolve({ inserted: true, status: call.status, outcome: call.outcome, orgId });
    },
    getCall(callSid): Promise<CallRecord | null> {
      enter("getCall", [callSid]);
      const call = calls.get(callSid);
      if (!call) return Promise.resolve(null);
      return Promise.resolve({
        callSid,
        orgId: call.to === org.phoneNumber ? org.id : null,
        traceId: call.traceId,
        from: call.from,
        to: call.to,
        status: call.status,
        outcome: call.outcome,
        clientFirstName: call.from ? clients.get(call.from)?.firstName ?? null : null,
      });
    },
    searchAvailability(query): Promise<ProviderSlot[]> {
      enter("searchAvailability", [query]);
      if (query.orgId !== org.id || !serviceById(query.serviceId)) return Promise.resolve([]);
      const slots: ProviderSlot[] = [];
      for (let i = 0; i < Math.min(Math.max(query.days, 1), 62); i++) {
        const day = addDays(query.fromDay, i);
        for (const providerId of providersFor(query.serviceId, query.providerId)) {
          for (const slot of grid(query.serviceId, providerId, day)) {
            if (Date.parse(slot.startsAt) <= nowMs()) continue;
            if (taken(providerId, slot.startsAt, blockedUntil(query.serviceId, slot.startsAt))) {
              continue;
            }
            slots.push(slot);
          }
        }
      }
      slots.sort((a, b) =>
        a.startsAt.localeCompare(b.startsAt) || a.providerName.localeCompare(b.providerName)
      );
      return Promise.resolve(slots);
    },
    bookAppointment(input): Promise<BookingResult> {
      enter("bookAppointment", [input]);
      const call = calls.get(input.callSid);
      if (!call) return Promise.resolve({ ok: false, code: "unknown_call" });
      if (!call.from || !/^\+[1-9]\d{6,14}$/.test(call.from)) {
        return Promise.resolve({ ok: false, code: "invalid_input" });
      }
      const service = serviceById(input.serviceId);
      if (!service) return Promise.resolve({ ok: false, code: "unknown_service" });
      if (input.providerId && !offers(service.id, input.providerId)) {
        return Promise.resolve({ ok: false, code: "unknown_provider" });
      }
      const problem = ruleProblem(input.startsAt);
      if (problem) return Promise.resolve({ ok: false, code: problem });
      const candidates = slotProviders(service.id, input.providerId, input.startsAt);
      if (candidates.length === 0) return Promise.resolve({ ok: false, code: "outside_hours" });
      const until = blockedUntil(service.id, input.startsAt);
      const providerId = candidates.find((id) => !taken(id, input.startsAt, until));
      if (!providerId) return Promise.resolve({ ok: false, code: "slot_taken" });
      codeCounter++;
      const appointment: FakeAppointment = {
        id: `appt-${codeCounter}`,
        startsAt: input.startsAt,
        endsAt: new Date(Date.parse(input.startsAt) + service.durationMinutes * 60_000)
          .toISOString(),
        confirmationCode: `K7M3P${"ACDEFHJKMN"[codeCounter % 10]}`,
        status: "booked",
        serviceId: service.id,
        serviceName: service.name,
        providerId,
        providerName: org.providers.find((provider) => provider.id === providerId)!.name,
        phone: call.from,
        blockedUntil: until,
      };
      appointments.push(appointment);
      if (!clients.has(call.from)) {
        clients.set(call.from, { firstName: input.firstName, lastName: input.lastName });
      }
      call.outcome = merge(call.outcome, "booked");
      return Promise.resolve({ ok: true, appointment: summary(appointment) });
    },
    cancelAppointment(input): Promise<BookingResult> {
      enter("cancelAppointment", [input]);
      const call = calls.get(input.callSid);
      if (!call) return Promise.resolve({ ok: false, code: "unknown_call" });
      const appointment = findOwn(call, input.confirmationCode);
      if (!appointment) return Promise.resolve({ ok: false, code: "not_found" });
      if (Date.parse(appointment.startsAt) <= nowMs()) {
        return Promise.resolve({ ok: false, code: "in_past" });
      }
      appointment.status = "cancelled";
      call.outcome = merge(call.outcome, "cancelled");
      return Promise.resolve({ ok: true, appointment: summary(appointment) });
    },
    rescheduleAppointment(input): Promise<BookingResult> {
      enter("rescheduleAppointment", [input]);
      const call = calls.get(input.callSid);
      if (!call) return Promise.resolve({ ok: false, code: "unknown_call" });
      const appointment = findOwn(call, input.confirmationCode);
      if (!appointment) return Promise.resolve({ ok: false, code: "not_found" });
      const service = serviceById(input.serviceId ?? appointment.serviceId);
      if (!service) return Promise.resolve({ ok: false, code: "unknown_service" });
      if (input.providerId && !offers(service.id, input.providerId)) {
        return Promise.resolve({ ok: false, code: "unknown_provider" });
      }
      const problem = ruleProblem(input.startsAt);
      if (problem) return Promise.resolve({ ok: false, code: problem });
      const candidates = slotProviders(
        service.id,
        input.providerId,
        input.startsAt,
        appointment.providerId,
      );
      if (candidates.length === 0) return Promise.resolve({ ok: false, code: "outside_hours" });
      const until = blockedUntil(service.id, input.startsAt);
      const providerId = candidates.find((id) => !taken(id, input.startsAt, until, appointment.id));
      if (!providerId) return Promise.resolve({ ok: false, code: "slot_taken" });
      appointment.startsAt = input.startsAt;
      appointment.endsAt = new Date(Date.parse(input.startsAt) + service.durationMinutes * 60_000)
        .toISOString();
      appointment.blockedUntil = until;
      appointment.serviceId = service.id;
      appointment.serviceName = service.name;
      appointment.providerId = providerId;
      appointment.providerName = org.providers.find((provider) => provider.id === providerId)!
        .name;
      call.outcome = merge(call.outcome, "rescheduled");
      return Promise.resolve({ ok: true, appointment: summary(appointment) });
    },
    claimSms(callSid, kind, body): Promise<SmsClaim | SmsNotClaimed> {
      enter("claimSms", [callSid, kind, body]);
      const call = calls.get(callSid);
      if (!call || call.to !== org.phoneNumber) {
        return Promise.resolve({ claimed: false, reason: "unknown_call" });
      }
      if (!call.from || !/^\+[1-9]\d{6,14}$/.test(call.from)) {
        return Promise.resolve({ claimed: false, reason: "invalid_number" });
      }
      if (optOuts.has(call.from)) return Promise.resolve({ claimed: false, reason: "opted_out" });
      if (sms.some((row) => row.callSid === callSid && row.kind === kind)) {
        return Promise.resolve({ claimed: false, reason: "already_claimed" });
      }
      const firstName = clients.get(call.from)?.firstName ?? "there";
      const text = body ??
        (kind === "recovery"
          ? org.smsRecoveryTemplate.replace("{first_name}", firstName).replace(
            "{org_name}",
            org.name,
          )
          : `Hi ${firstName}, your appointment with ${org.name} is booked.`);
      const row: FakeSms = {
        smsId: `sms-${sms.length + 1}`,
        callSid,
        kind,
        to: call.from,
        from: call.to,
        body: text,
        messageSid: null,
        status: "claimed",
        errorCode: null,
      };
      sms.push(row);
      return Promise.resolve({
        claimed: true,
        smsId: row.smsId,
        to: row.to,
        from: row.from,
        body: text,
      });
    },
    recordSmsResult(smsId, result): Promise<void> {
      enter("recordSmsResult", [smsId, result]);
      const row = sms.find((item) => item.smsId === smsId);
      if (row) {
        row.messageSid ??= result.messageSid;
        row.status = result.status;
        row.errorCode = result.errorCode ?? row.errorCode;
      }
      return Promise.resolve();
    },
    updateSmsStatus(messageSid, status, errorCode): Promise<boolean> {
      enter("updateSmsStatus", [messageSid, status, errorCode]);
      const row = sms.find((item) => item.messageSid === messageSid);
      if (!row) return Promise.resolve(false);
      row.status = status;
      row.errorCode = errorCode ?? row.errorCode;
      return Promise.resolve(true);
    },
    takeCallHandover(callSid): Promise<PendingHandover | null> {
      enter("takeCallHandover", [callSid]);
      // The newest pending handover, taken once (as take_call_handover does).
      const pending = handovers.get(callSid) ?? [];
      const taken = pending.pop() ?? null;
      return Promise.resolve(taken);
    },
    calendarFeed(tokenSha256): Promise<CalendarFeed | null> {
      enter("calendarFeed", [tokenSha256]);
      const feed = calendarFeeds.get(tokenSha256);
      if (!feed) return Promise.resolve(null);
      const provider = org.providers.find((item) => item.id === feed.providerId) ?? null;
      // As calendar_feed: 30 days back to 365 days ahead; the fake keeps no change times.
      const fromMs = nowMs() - 30 * 86_400_000;
      const untilMs = nowMs() + 365 * 86_400_000;
      const stamp = new Date(nowMs()).toISOString();
      return Promise.resolve({
        feedId: feed.feedId,
        org: { id: org.id, name: org.name, timezone: org.timezone, slug: "harbor-dental" },
        provider,
        events: appointments
          .filter((a) => !provider || a.providerId === provider.id)
          .filter((a) => Date.parse(a.startsAt) >= fromMs && Date.parse(a.startsAt) < untilMs)
          .sort((a, b) => a.startsAt.localeCompare(b.startsAt))
          .map((a) => ({
            id: a.id,
            startsAt: a.startsAt,
            endsAt: a.endsAt,
            status: a.status,
            confirmationCode: a.confirmationCode,
            serviceName: a.serviceName,
            providerName: a.providerName,
            clientFirstName: clients.get(a.phone)?.firstName ?? null,
            clientPhoneMasked: `•••• ${a.phone.slice(-4)}`,
            createdAt: stamp,
            updatedAt: stamp,
          })),
      });
    },
  };
  return store;
}
