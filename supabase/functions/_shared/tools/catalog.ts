/**
 * The assistant's tools, spoken as OpenAI Realtime function tools: one zod schema per tool
 * validates the model's arguments in voice-action, and the same schema, exported as JSON Schema,
 * goes into voice-stream's `session.update`. Descriptions are written for the model.
 *
 * The org and the caller's phone number are never arguments: voice-action takes them from the
 * call, so the model cannot book for someone else.
 * @module
 */
import { z } from "zod";

/** `YYYY-MM-DD`, a real calendar day. */
const dateSchema = z.string().trim().regex(
  /^\d{4}-\d{2}-\d{2}$/,
  "must be a date written YYYY-MM-DD, e.g. 2026-11-24",
).refine(isCalendarDate, "must be a real calendar date");

/** `HH:MM` on a 24-hour clock (a one-digit hour is accepted). */
const timeSchema = z.string().trim().regex(
  /^([01]?\d|2[0-3]):[0-5]\d$/,
  "must be a time written HH:MM on a 24-hour clock, e.g. 14:30",
);

const confirmationCodeSchema = z.string().trim().min(4, "must be the 6-character code").max(
  20,
  "must be the 6-character code",
);

const serviceSchema = z.string().trim().min(1, "must name a service").max(100);
const providerSchema = z.string().trim().min(1, "must name a provider").max(100);

const checkAvailabilitySchema = z.object({
  service: serviceSchema.optional().describe(
    "The service the caller wants, exactly as named in the services list of the caller record " +
      "(e.g. 'Cleaning'). Leave out only when the business has a single service.",
  ),
  provider: providerSchema.optional().describe(
    "Only this provider, as named in the services list, when the caller asks for one (or wants " +
      "their preferred or last provider). Leave out to search every provider of the service.",
  ),
  date: dateSchema.describe(
    "The day to look at, YYYY-MM-DD, in the business's local time. Resolve words like " +
      "'tomorrow' or 'next Tuesday' against today's date before calling.",
  ),
  after: timeSchema.optional().describe(
    "Only times at or after this local time, HH:MM 24-hour (e.g. '12:00' for afternoons).",
  ),
  before: timeSchema.optional().describe(
    "Only times before this local time, HH:MM 24-hour (e.g. '12:00' for mornings).",
  ),
});

const bookAppointmentSchema = z.object({
  first_name: z.string().trim().min(1, "is required").max(100).describe(
    "The caller's first name, as they gave it.",
  ),
  last_name: z.string().trim().max(100).describe(
    "The caller's last name, as they gave it; empty string if they would not give one.",
  ),
  service: serviceSchema.optional().describe(
    "The service to book, as named in the services list (the one you checked availability for).",
  ),
  provider: providerSchema.optional().describe(
    "The provider check_availability offered for that time and the caller chose. Leave out to " +
      "take whoever is free.",
  ),
  date: dateSchema.describe("Day of the appointment, YYYY-MM-DD, business local time."),
  time: timeSchema.describe(
    "Start time, HH:MM 24-hour, business local time. Must be one of the times " +
      "check_availability returned.",
  ),
  confirmed_by_caller: z.boolean().describe(
    "True only after you read the name, day and time back to the caller and they said yes.",
  ),
});

const cancelAppointmentSchema = z.object({
  confirmation_code: confirmationCodeSchema.describe(
    "The appointment's confirmation code as the caller reads it (6 letters and digits).",
  ),
});

const rescheduleAppointmentSchema = z.object({
  confirmation_code: confirmationCodeSchema.describe(
    "The confirmation code of the appointment to move, as the caller reads it.",
  ),
  service: serviceSchema.optional().describe(
    "Only when the caller wants a different service; leave out to keep the appointment's service.",
  ),
  provider: providerSchema.optional().describe(
    "The provider check_availability offered for the new time; leave out to keep the current " +
      "provider when free, else whoever is free.",
  ),
  date: dateSchema.describe("New day, YYYY-MM-DD, business local time."),
  time: timeSchema.describe(
    "New start time, HH:MM 24-hour, business local time, one check_availability returned.",
  ),
});

const transferToHumanSchema = z.object({
  reason: z.string().trim().min(1, "is required").max(500).describe(
    "Why the caller needs a person, in a few words.",
  ),
  caller_words: z.string().trim().max(1000).optional().describe(
    "The caller's own words that led to the transfer, quoted as closely as you can.",
  ),
  emergency: z.boolean().optional().describe(
    "True when the caller describes an urgent medical or safety problem.",
  ),
});

const endCallSchema = z.object({
  reason: z.string().trim().min(1, "is required").max(500).describe(
    "Why the call is ending, in a few words (e.g. 'caller said goodbye').",
  ),
});

/** Every tool: description for the model and argument schema. */
export const TOOL_CATALOG = {
  check_availability: {
    description:
      "List the free appointment times of a service on one day, with the providers free at each " +
      "time. Call it before offering or booking any time; never invent times. Offer the caller " +
      "two or three of the returned times with their provider (e.g. 'Tuesday at 10 with Dr. " +
      "Lee, or 11 with Sam'), reading times the way `spoken` writes them.",
    schema: checkAvailabilitySchema,
  },
  book_appointment: {
    description:
      "Book an appointment for the caller at a time check_availability returned, for the service " +
      "and with the provider offered. First read the first and last name, service, provider, " +
      "day and time back to the caller and ask them to confirm; set " +
      "confirmed_by_caller to true only after they said yes. On success, say the returned `say` " +
      "sentence word for word: it contains the confirmation code.",
    schema: bookAppointmentSchema,
  },
  cancel_appointment: {
    description:
      "Cancel one of the caller's own upcoming appointments, identified by its confirmation " +
      "code. Ask the caller to confirm they want to cancel before calling.",
    schema: cancelAppointmentSchema,
  },
  reschedule_appointment: {
    description:
      "Move one of the caller's own upcoming appointments to another free time, keeping its " +
      "confirmation code. Check the new day with check_availability and confirm the new time " +
      "with the caller before calling.",
    schema: rescheduleAppointmentSchema,
  },
  transfer_to_human: {
    description:
      "Transfer the caller to a person at the business: when they ask for one, for clinical, " +
      "billing or other questions you cannot handle, or for emergencies. Call it as soon as the " +
      "caller needs a person, then follow the `instructions` it returns.",
    schema: transferToHumanSchema,
  },
  end_call: {
    description:
      "End the call once the caller has nothing more to ask and you have said goodbye, or when " +
      "they asked to hang up. The line closes after your last words finish playing.",
    schema: endCallSchema,
  },
} as const;

/** A tool's name. */
export type ToolName = keyof typeof TOOL_CATALOG;

/** Tool names in catalog order. */
export const TOOL_NAMES = Object.keys(TOOL_CATALOG) as ToolName[];

/** The validated arguments of each tool. */
export type ToolArguments = {
  [Name in ToolName]: z.output<(typeof TOOL_CATALOG)[Name]["schema"]>;
};

/** A validated tool call: the discriminated union of every tool's arguments. */
export type ParsedToolCall = {
  [Name in ToolName]: { name: Name; arguments: ToolArguments[Name] };
}[ToolName];

/** A function tool as OpenAI Realtime's `session.update` takes it. */
export interface RealtimeToolDefinition {
  type: "function";
  name: ToolName;
  description: string;
  /** JSON Schema (draft 2020-12 subset) of the arguments object. */
  parameters: Record<string, unknown>;
}

/** One problem with a tool's arguments. */
export interface ToolArgumentIssue {
  /** Dotted path of the argument, "" for the whole object. */
  path: string;
  message: string;
}

/** Why a tool call's arguments were refused, in words the model can act on. */
export interface ToolArgumentsError {
  /** A sentence for the model: what is wrong and that it should call again. */
  message: string;
  issues: ToolArgumentIssue[];
}

let cachedDefinitions: RealtimeToolDefinition[] | null = null;

/**
 * The catalog as OpenAI Realtime function tools, for `session.update`'s `tools`.
 * Built once; callers get fresh copies they may not share mutations with.
 */
export function toolDefinitionsForRealtime(): RealtimeToolDefinition[] {
  if (!cachedDefinitions) {
    cachedDefinitions = TOOL_NAMES.map((name) => {
      const { $schema: _ignored, ...parameters } = z.toJSONSchema(TOOL_CATALOG[name].schema, {
        io: "input",
      }) as Record<string, unknown>;
      return { type: "function", name, description: TOOL_CATALOG[name].description, parameters };
    });
  }
  return structuredClone(cachedDefinitions);
}

/** True when `name` is a tool of the catalog. */
export function isToolName(name: string): name is ToolName {
  return Object.hasOwn(TOOL_CATALOG, name);
}

/**
 * Validates a tool call from the model. `rawArguments` may be the JSON text of
 * `response.function_call_arguments.done` or an already parsed object. Never throws.
 * @param name the tool the model called
 * @param rawArguments its arguments
 */
export function safeParseToolCall(
  name: string,
  rawArguments: unknown,
): { success: true; data: ParsedToolCall } | { success: false; error: ToolArgumentsError } {
  if (!isToolName(name)) {
    return {
      success: false,
      error: {
        message: `There is no tool named ${quote(name)}. Use one of: ${TOOL_NAMES.join(", ")}`,
        issues: [{ path: "", message: "unknown tool" }],
      },
    };
  }
  let value = rawArguments;
  if (typeof rawArguments === "string") {
    try {
      value = rawArguments.trim() === "" ? {} : JSON.parse(rawArguments);
    } catch {
      return {
        success: false,
        error: {
          message: `The arguments of ${name} are not valid JSON. Call ${name} again with a JSON ` +
            "object",
          issues: [{ path: "", message: "not valid JSON" }],
        },
      };
    }
  }
  // Postgres text cannot hold U+0000: refuse it here as a bad argument, not later as a 503.
  if (containsNul(value)) {
    return {
      success: false,
      error: {
        message: `The arguments of ${name} contain a NUL character. Call ${name} again with text`,
        issues: [{ path: "", message: "contains a NUL character" }],
      },
    };
  }
  // reportInput lets the message tell a missing argument from one of the wrong type.
  const parsed = TOOL_CATALOG[name].schema.safeParse(value ?? {}, { reportInput: true });
  if (parsed.success) {
    return { success: true, data: { name, arguments: parsed.data } as ParsedToolCall };
  }
  const issues = parsed.error.issues.map((issue) => ({
    path: issue.path.map(String).join("."),
    message: describeIssue(issue),
  }));
  const details = issues.map((issue) =>
    issue.path ? `${issue.path} ${issue.message}` : issue.message
  );
  return {
    success: false,
    error: {
      message: `Invalid arguments for ${name}: ${details.join("; ")}. Fix them and call ${name} ` +
        "again",
      issues,
    },
  };
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_type") {
    // zod's default says "Invalid input: expected string, received undefined".
    return issue.input === undefined ? "is required" : `must be a ${issue.expected}`;
  }
  return issue.message;
}

function quote(text: string): string {
  return JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}...` : text);
}

/** True for `YYYY-MM-DD` naming a day that exists (no February 30). */
export function isCalendarDate(value: string): boolean {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value.trim());
  if (!match) return false;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const date = new Date(Date.UTC(year, month - 1, day));
  return date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 &&
    date.getUTCDate() === day;
}

/** Normalizes an accepted `H:MM`/`HH:MM` time to `HH:MM`. */
export function normalizeTime(value: string): string {
  const [hours, minutes] = value.trim().split(":");
  return `${hours.padStart(2, "0")}:${minutes}`;
}

function containsNul(value: unknown, depth = 0): boolean {
  if (typeof value === "string") return value.includes("\u0000");
  if (depth > 8 || value === null || typeof value !== "object") return false;
  for (const [key, child] of Object.entries(value)) {
    if (key.includes("\u0000") || containsNul(child, depth + 1)) return true;
  }
  return false;
}
