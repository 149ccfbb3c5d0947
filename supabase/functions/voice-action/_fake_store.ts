/**
 * An in-memory `Store` for voice-action's unit tests, following the RPC rules of
 * `supabase/migrations` closely enough to test against: idempotent events, status only forward,
 * ranked outcomes, one SMS per call and kind, opt-outs, and a slot grid with overlap checks.
 * Private to this folder; the integration tests use the real Postgres store.
 * @module
 */
import type {
  AppointmentSummary,
  BookingResult,
  CallerContext,
  CallEventInput,
  CallEventResult,
  CallRecord,
  OrgSettings,
  PendingHandover,
  Slot,
  SmsClaim,
  SmsNotClaimed,
} from "../_shared/store/types.ts";
import type { VoiceActionStore } from "./handler.ts";
import { toLocalDateTime, zonedTimeToUtc } from "./zoned_time.ts";

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
  vad: { threshold: 0.6, silenceDurationMs: 400, prefixPaddingMs: 300 },
  phoneNumber: "+15550100000",
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
  addHandover(callSid: string, handover: PendingHandover): void;
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

  function grid(day: string): Slot[] {
    const [year, month, date] = day.split("-").map(Number);
    const weekday = new Date(Date.UTC(year, month - 1, date)).getUTCDay();
    if (weekday === 0 || weekday === 6) return [];
    const slots: Slot[] = [];
    for (let minutes = 9 * 60; minutes + org.appointmentMinutes <= 17 * 60; minutes += 30) {
      const time = `${String(Math.floor(minutes / 60)).padStart(2, "0")}:${
        String(minutes % 60).padStart(2, "0")
      }`;
      const start = zonedTimeToUtc(day, time, org.timezone);
      if (!start) continue;
      slots.push({
        startsAt: start.toISOString(),
        endsAt: new Date(start.getTime() + org.appointmentMinutes * 60_000).toISOString(),
      });
    }
    return slots;
  }

  function slotProblem(startsAt: string): "in_past" | "outside_hours" | null {
    if (Date.parse(startsAt) <= nowMs()) return "in_past";
    const day = toLocalDateTime(startsAt, org.timezone).date;
    return grid(day).some((slot) => slot.startsAt === startsAt) ? null : "outside_hours";
  }

  function taken(startsAt: string, ignoreId?: string): boolean {
    return appointments.some((a) =>
      a.status === "booked" && a.startsAt === startsAt && a.id !== ignoreId
    );
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
      handovers.set(callSid, [...(handovers.get(callSid) ?? []), handover]);
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
          ? { id: "client-1", firstName: client.firstName, lastName: client.lastName, phone: from }
          : null,
        upcomingAppointments: [],
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
    availableSlots(orgId, day): Promise<Slot[]> {
      enter("availableSlots", [orgId, day]);
      if (orgId !== org.id) return Promise.resolve([]);
      return Promise.resolve(
        grid(day).filter((slot) => Date.parse(slot.startsAt) > nowMs() && !taken(slot.startsAt)),
      );
    },
    bookAppointment(input): Promise<BookingResult> {
      enter("bookAppointment", [input]);
      const call = calls.get(input.callSid);
      if (!call) return Promise.resolve({ ok: false, code: "unknown_call" });
      if (!call.from || !/^\+[1-9]\d{6,14}$/.test(call.from)) {
        return Promise.resolve({ ok: false, code: "invalid_input" });
      }
      const problem = slotProblem(input.startsAt);
      if (problem) return Promise.resolve({ ok: false, code: problem });
      if (taken(input.startsAt)) return Promise.resolve({ ok: false, code: "slot_taken" });
      codeCounter++;
      const appointment: FakeAppointment = {
        id: `appt-${codeCounter}`,
        startsAt: input.startsAt,
        endsAt: new Date(Date.parse(input.startsAt) + org.appointmentMinutes * 60_000)
          .toISOString(),
        confirmationCode: `K7M3P${"ACDEFHJKMN"[codeCounter % 10]}`,
        status: "booked",
        phone: call.from,
      };
      appointments.push(appointment);
      if (!clients.has(call.from)) {
        clients.set(call.from, { firstName: input.firstName, lastName: input.lastName });
      }
      call.outcome = merge(call.outcome, "booked");
      const { phone: _phone, ...summary } = appointment;
      return Promise.resolve({ ok: true, appointment: summary });
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
      const { phone: _phone, ...summary } = appointment;
      return Promise.resolve({ ok: true, appointment: summary });
    },
    rescheduleAppointment(input): Promise<BookingResult> {
      enter("rescheduleAppointment", [input]);
      const call = calls.get(input.callSid);
      if (!call) return Promise.resolve({ ok: false, code: "unknown_call" });
      const appointment = findOwn(call, input.confirmationCode);
      if (!appointment) return Promise.resolve({ ok: false, code: "not_found" });
      const problem = slotProblem(input.startsAt);
      if (problem) return Promise.resolve({ ok: false, code: problem });
      if (taken(input.startsAt, appointment.id)) {
        return Promise.resolve({ ok: false, code: "slot_taken" });
      }
      appointment.startsAt = input.startsAt;
      appointment.endsAt = new Date(Date.parse(input.startsAt) + org.appointmentMinutes * 60_000)
        .toISOString();
      call.outcome = merge(call.outcome, "rescheduled");
      const { phone: _phone, ...summary } = appointment;
      return Promise.resolve({ ok: true, appointment: summary });
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
  };
  return store;
}
