/**
 * The org as a file: `supabase/orgs/<slug>.toml` (TOML, parsed by smol-toml) validated with zod,
 * every problem located by file, line and key; and the document `apply_org_config` /
 * `export_org_config` exchange with the database (supabase/migrations/20261202000300_org_config.sql).
 * @module
 */
import { parse, TomlError } from "smol-toml";
import { z } from "zod";

/** Weekday keys of `hours`, in ISO order (1 = Monday). */
export const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] as const;

/** The voices OpenAI Realtime (GA) offers. */
export const REALTIME_VOICES = [
  "alloy",
  "ash",
  "ballad",
  "cedar",
  "coral",
  "echo",
  "marin",
  "sage",
  "shimmer",
  "verse",
] as const;

/** Placeholders the SMS templates may use (see claim_sms). */
const SMS_PLACEHOLDERS = ["first_name", "org_name", "when", "code", "service", "provider"];

const E164 = /^\+[1-9]\d{6,14}$/;
const RANGE = /^([01]\d|2[0-3]):([0-5]\d)-(([01]\d|2[0-3]):([0-5]\d)|24:00)$/;

const phoneSchema = z.string().regex(E164, "must be an E.164 number such as +15550100000");
const nameSchema = z.string().trim().min(1, "must not be empty").max(100, "is over 100 characters");
const rangeSchema = z.string().regex(RANGE, {
  error: 'must be a range such as "09:00-12:00"',
  abort: true,
}).refine(
  (range) => minutesOf(range.slice(0, 5)) < minutesOf(range.slice(6)),
  "must end after it starts",
);
const rangesSchema = z.array(rangeSchema).refine(
  (ranges) => !overlapping(ranges),
  "ranges of one day must not overlap",
);
const hoursSchema = z.strictObject(
  Object.fromEntries(WEEKDAYS.map((day) => [day, rangesSchema.optional()])) as Record<
    (typeof WEEKDAYS)[number],
    z.ZodOptional<typeof rangesSchema>
  >,
);

function template(name: string) {
  return z.string().min(1).max(1600).refine((text) => {
    const used = [...text.matchAll(/\{([a-z_]+)\}/g)].map((match) => match[1]);
    return used.every((placeholder) => SMS_PLACEHOLDERS.includes(placeholder));
  }, `${name} may only use the placeholders {${SMS_PLACEHOLDERS.join("}, {")}}`);
}

const providerSchema = z.strictObject({ name: nameSchema, hours: hoursSchema.default({}) });

const serviceSchema = z.strictObject({
  name: nameSchema,
  minutes: z.int().min(5).max(480),
  buffer_minutes: z.int().min(0).max(240).default(0),
  providers: z.array(nameSchema).min(1, "must name at least one provider"),
  instructions: z.string().max(500).default(""),
  default: z.boolean().default(false),
});

const overrideSchema = z.strictObject({
  date: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, {
    error: "must be a date written YYYY-MM-DD",
    abort: true,
  }).refine(
    isCalendarDate,
    "must be a real calendar date",
  ),
  provider: nameSchema.optional(),
  closed: z.boolean().optional(),
  hours: rangesSchema.optional(),
  note: z.string().max(200).default(""),
});

/** What an org file may say. Unknown keys are errors (a typo must not be ignored). */
export const orgFileSchema = z.strictObject({
  name: z.string().trim().min(1).max(200),
  timezone: z.string().refine(isTimeZone, "must be an IANA time zone such as America/New_York"),
  country: z.string().regex(/^[A-Z]{2}$/, 'must be a two-letter country code such as "US"')
    .optional(),
  numbers: z.array(phoneSchema).min(1, "must list at least one number"),
  greeting: z.string().max(1000).default(""),
  persona: z.string().max(4000).default(""),
  voice: z.enum(REALTIME_VOICES).default("alloy"),
  languages: z.array(
    z.string().regex(/^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$/, 'must be a language tag such as "en"'),
  ).min(1).max(10).default(["en"]),
  transfer_number: phoneSchema.optional(),
  emergency_keywords: z.array(z.string().trim().min(1).max(100)).default([]),
  max_call_minutes: z.int().min(1).max(240).optional(),
  vad: z.strictObject({
    threshold: z.number().min(0).max(1).default(0.6),
    silence_ms: z.int().min(100).max(5000).default(400),
    prefix_padding_ms: z.int().min(0).max(2000).default(300),
  }).default({ threshold: 0.6, silence_ms: 400, prefix_padding_ms: 300 }),
  sms: z.strictObject({
    recovery: template("sms.recovery").optional(),
    confirmation: template("sms.confirmation").optional(),
  }).default({}),
  booking: z.strictObject({
    min_notice_minutes: z.int().min(0).max(43200).default(0),
    horizon_days: z.int().min(1).max(1095).optional(),
    slot_minutes: z.int().min(5).max(240).optional(),
  }).default({ min_notice_minutes: 0 }),
  providers: z.array(providerSchema).default([]),
  services: z.array(serviceSchema).default([]),
  overrides: z.array(overrideSchema).default([]),
}).superRefine((file, ctx) => {
  const providerNames = new Map<string, number>();
  file.providers.forEach((provider, index) => {
    const key = provider.name.toLowerCase();
    if (providerNames.has(key)) {
      ctx.addIssue({
        code: "custom",
        path: ["providers", index, "name"],
        message: `repeats the provider of [[providers]] #${providerNames.get(key)! + 1}`,
      });
    } else providerNames.set(key, index);
  });
  const serviceNames = new Map<string, number>();
  file.services.forEach((service, index) => {
    const key = service.name.toLowerCase();
    if (serviceNames.has(key)) {
      ctx.addIssue({
        code: "custom",
        path: ["services", index, "name"],
        message: `repeats the service of [[services]] #${serviceNames.get(key)! + 1}`,
      });
    } else serviceNames.set(key, index);
    service.providers.forEach((name, providerIndex) => {
      if (!providerNames.has(name.toLowerCase())) {
        ctx.addIssue({
          code: "custom",
          path: ["services", index, "providers", providerIndex],
          message: `names ${JSON.stringify(name)}, which is not a provider of this file`,
        });
      }
    });
  });
  const defaults = file.services.flatMap((service, index) => service.default ? [index] : []);
  for (const index of defaults.slice(1)) {
    ctx.addIssue({
      code: "custom",
      path: ["services", index, "default"],
      message: "only one service may be the default",
    });
  }
  const overrideKeys = new Map<string, number>();
  file.overrides.forEach((override, index) => {
    if (override.provider !== undefined && !providerNames.has(override.provider.toLowerCase())) {
      ctx.addIssue({
        code: "custom",
        path: ["overrides", index, "provider"],
        message: `names ${JSON.stringify(override.provider)}, which is not a provider of this file`,
      });
    }
    const closed = override.closed === true;
    if (closed === (override.hours !== undefined && override.hours.length > 0)) {
      ctx.addIssue({
        code: "custom",
        path: ["overrides", index],
        message: "must say either closed = true or hours = [...], not both or neither",
      });
    }
    const key = `${override.date}|${override.provider?.toLowerCase() ?? ""}`;
    if (overrideKeys.has(key)) {
      ctx.addIssue({
        code: "custom",
        path: ["overrides", index, "date"],
        message: `repeats the override of [[overrides]] #${overrideKeys.get(key)! + 1}`,
      });
    } else overrideKeys.set(key, index);
  });
});

/** A valid org file, defaults filled. */
export type OrgFile = z.output<typeof orgFileSchema>;

/** One problem of an org file, where a person finds it. */
export interface OrgFileProblem {
  file: string;
  /** 1-based; the line of the key, or of its table when the key is missing. */
  line: number;
  /** Dotted path such as `providers[1].hours.mon[0]`; "" for the whole file. */
  key: string;
  message: string;
}

/** Reading an org file: its config, or every problem found. */
export type OrgFileResult =
  | { ok: true; slug: string; file: OrgFile }
  | { ok: false; problems: OrgFileProblem[] };

/** `supabase/orgs/harbor-dental.toml` -> `harbor-dental`; null when not a valid slug. */
export function slugOfPath(path: string): string | null {
  const name = path.split(/[\\/]/).at(-1) ?? "";
  const match = /^([a-z0-9][a-z0-9-]{0,62})\.toml$/.exec(name);
  return match ? match[1] : null;
}

/**
 * Parses and validates an org file. Never throws.
 * @param text the file's content
 * @param path its path (the slug is its name, problems name it)
 */
export function parseOrgFile(text: string, path: string): OrgFileResult {
  const slug = slugOfPath(path);
  const problems: OrgFileProblem[] = [];
  if (!slug) {
    problems.push({
      file: path,
      line: 1,
      key: "",
      message: "the file name must be <slug>.toml with a slug of lowercase letters, digits and -",
    });
  }
  let data: unknown;
  try {
    data = parse(text);
  } catch (error) {
    const line = error instanceof TomlError ? error.line : 1;
    const message = error instanceof Error ? error.message.split("\n")[0] : String(error);
    return { ok: false, problems: [...problems, { file: path, line, key: "", message }] };
  }
  // reportInput lets a message tell a missing key from a value of the wrong type.
  const parsed = orgFileSchema.safeParse(data, { reportInput: true });
  if (!parsed.success) {
    const lines = keyLines(text);
    for (const issue of parsed.error.issues) {
      const key = formatPath(issue.path);
      problems.push({ file: path, line: lineOf(lines, issue.path), key, message: describe(issue) });
    }
  }
  if (problems.length > 0 || !parsed.success) {
    problems.sort((a, b) => a.line - b.line);
    return { ok: false, problems };
  }
  return { ok: true, slug: slug!, file: parsed.data };
}

/** `file:line: key: message`, as compilers print. */
export function formatProblem(problem: OrgFileProblem): string {
  return `${problem.file}:${problem.line}: ${
    problem.key ? `${problem.key}: ` : ""
  }${problem.message}`;
}

function describe(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_type" && issue.input === undefined) return "is required";
  if (issue.code === "invalid_type") return `must be ${article(issue.expected)}`;
  // zod's own wording ("Too small: expected number to be >=0") only; ours is kept.
  if ((issue.code === "too_small" || issue.code === "too_big") && /^Too /.test(issue.message)) {
    const bound = issue.code === "too_small" ? issue.minimum : issue.maximum;
    const word = issue.code === "too_small" ? "at least" : "at most";
    if (issue.origin === "array") return `must have ${word} ${bound} items`;
    if (issue.origin === "string") return `must have ${word} ${bound} characters`;
    return `must be ${word} ${bound}`;
  }
  if (issue.code === "unrecognized_keys") {
    return `unknown key${issue.keys.length > 1 ? "s" : ""} ${issue.keys.join(", ")}`;
  }
  return issue.message;
}

function article(expected: string): string {
  return /^[aeiou]/.test(expected) ? `an ${expected}` : `a ${expected}`;
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    out += typeof part === "number" ? `[${part}]` : `${out ? "." : ""}${String(part)}`;
  }
  return out;
}

/**
 * Where each key of a TOML text is written: dotted path (array tables indexed) -> 1-based line.
 * Written for the shapes org files use (tables, arrays of tables, keys, inline tables on one
 * line); deeper paths fall back to their nearest recorded ancestor.
 */
function keyLines(text: string): Map<string, number> {
  const lines = new Map<string, number>();
  const counts = new Map<string, number>();
  let table: (string | number)[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = index + 1;
    const arrayTable = /^\s*\[\[\s*([A-Za-z0-9_.-]+)\s*\]\]/.exec(raw);
    const plainTable = /^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]/.exec(raw);
    if (arrayTable) {
      const name = arrayTable[1];
      const count = counts.get(name) ?? 0;
      counts.set(name, count + 1);
      table = [...name.split("."), count];
      lines.set(formatPath(table), line);
      if (count === 0) lines.set(formatPath(name.split(".")), line);
    } else if (plainTable) {
      table = plainTable[1].split(".");
      lines.set(formatPath(table), line);
    } else {
      const key = /^\s*([A-Za-z0-9_-]+|"[^"]*")\s*=/.exec(raw);
      if (key) {
        const path = [...table, key[1].replace(/^"|"$/g, "")];
        if (!lines.has(formatPath(path))) lines.set(formatPath(path), line);
        // Keys of an inline table on the same line: `hours = { mon = [...] }`.
        const inline = /=\s*\{(.*)\}\s*(#.*)?$/.exec(raw);
        if (inline) {
          for (const inner of inline[1].matchAll(/([A-Za-z0-9_-]+)\s*=/g)) {
            lines.set(formatPath([...path, inner[1]]), line);
          }
        }
      }
    }
  });
  return lines;
}

function lineOf(lines: Map<string, number>, path: readonly PropertyKey[]): number {
  for (let length = path.length; length > 0; length--) {
    const found = lines.get(formatPath(path.slice(0, length)));
    if (found !== undefined) return found;
  }
  return 1;
}

function minutesOf(time: string): number {
  return Number(time.slice(0, 2)) * 60 + Number(time.slice(3, 5));
}

function overlapping(ranges: string[]): boolean {
  const sorted = ranges.filter((range) => RANGE.test(range))
    .map((range) => [minutesOf(range.slice(0, 5)), minutesOf(range.slice(6))])
    .sort((a, b) => a[0] - b[0]);
  return sorted.some((range, index) => index > 0 && range[0] < sorted[index - 1][1]);
}

function isCalendarDate(value: string): boolean {
  const [year, month, day] = value.split("-").map(Number);
  const date = new Date(Date.UTC(year, month - 1, day));
  return date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 &&
    date.getUTCDate() === day;
}

function isTimeZone(value: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: value });
    return value.includes("/") || value === "UTC";
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// The database's document (export_org_config / apply_org_config)

/** One opening range in the database's document. */
export interface ConfigRange {
  opens: string;
  closes: string;
}

/** The document `export_org_config` returns and `apply_org_config` takes. */
export interface OrgConfig {
  name: string;
  timezone: string;
  country: string | null;
  numbers: string[];
  greeting: string;
  persona: string;
  voice: string;
  languages: string[];
  transfer_number: string | null;
  emergency_keywords: string[];
  max_call_minutes: number | null;
  vad: { threshold: number; silence_ms: number; prefix_padding_ms: number };
  sms: { recovery: string | null; confirmation: string | null };
  booking: {
    min_notice_minutes: number;
    horizon_days: number | null;
    slot_minutes: number | null;
  };
  providers: { name: string; hours: (ConfigRange & { weekday: number })[] }[];
  services: {
    name: string;
    minutes: number;
    buffer_minutes: number;
    instructions: string;
    default: boolean;
    providers: string[];
  }[];
  overrides: {
    date: string;
    provider: string | null;
    closed: boolean;
    hours: ConfigRange[];
    note: string;
  }[];
}

function toRange(range: string): ConfigRange {
  return { opens: range.slice(0, 5), closes: range.slice(6) };
}

function byName<T extends { name: string }>(a: T, b: T): number {
  const left = a.name.toLowerCase();
  const right = b.name.toLowerCase();
  return left < right ? -1 : left > right ? 1 : 0;
}

/**
 * The database's document for a valid file, sorted as `export_org_config` sorts, so an
 * unchanged org compares equal.
 */
export function toOrgConfig(file: OrgFile): OrgConfig {
  return {
    name: file.name,
    timezone: file.timezone,
    country: file.country ?? null,
    numbers: [...new Set(file.numbers)].sort(),
    greeting: file.greeting,
    persona: file.persona,
    voice: file.voice,
    languages: file.languages,
    transfer_number: file.transfer_number ?? null,
    emergency_keywords: file.emergency_keywords,
    max_call_minutes: file.max_call_minutes ?? null,
    vad: file.vad,
    sms: { recovery: file.sms.recovery ?? null, confirmation: file.sms.confirmation ?? null },
    booking: {
      min_notice_minutes: file.booking.min_notice_minutes,
      horizon_days: file.booking.horizon_days ?? null,
      slot_minutes: file.booking.slot_minutes ?? null,
    },
    providers: file.providers.map((provider) => ({
      name: provider.name,
      hours: WEEKDAYS.flatMap((day, index) =>
        (provider.hours[day] ?? []).map((range) => ({ weekday: index + 1, ...toRange(range) }))
          .sort((a, b) => a.opens.localeCompare(b.opens))
      ),
    })).sort(byName),
    services: file.services.map((service) => ({
      name: service.name,
      minutes: service.minutes,
      buffer_minutes: service.buffer_minutes,
      instructions: service.instructions,
      default: service.default,
      providers: [...service.providers].sort((a, b) => byName({ name: a }, { name: b })),
    })).sort(byName),
    overrides: file.overrides.map((override) => ({
      date: override.date,
      provider: override.provider ?? null,
      closed: override.closed === true,
      hours: (override.hours ?? []).map(toRange).sort((a, b) => a.opens.localeCompare(b.opens)),
      note: override.note,
    })).sort((a, b) =>
      a.date.localeCompare(b.date) ||
      (a.provider === null ? -1 : b.provider === null ? 1 : a.provider.localeCompare(b.provider))
    ),
  };
}

// ---------------------------------------------------------------------------------------------
// Writing a file back (export)

/** A TOML basic string: JSON's escapes are TOML's, but DEL must be escaped too. */
function str(value: string): string {
  return JSON.stringify(value).replaceAll("\u007f", "\\u007F");
}

function strings(values: readonly string[]): string {
  return `[${values.map(str).join(", ")}]`;
}

function rangeText(range: ConfigRange): string {
  return `${range.opens}-${range.closes}`;
}

/**
 * An org's document as the TOML file an operator keeps in `supabase/orgs/` (the shape
 * `parseOrgFile` reads back to the same document).
 */
export function orgConfigToToml(config: OrgConfig): string {
  const out: string[] = [];
  const line = (key: string, value: string) => out.push(`${key} = ${value}`);
  line("name", str(config.name));
  line("timezone", str(config.timezone));
  if (config.country) line("country", str(config.country));
  line("numbers", strings(config.numbers));
  line("greeting", str(config.greeting));
  line("persona", str(config.persona));
  line("voice", str(config.voice));
  line("languages", strings(config.languages));
  if (config.transfer_number) line("transfer_number", str(config.transfer_number));
  line("emergency_keywords", strings(config.emergency_keywords));
  if (config.max_call_minutes !== null) line("max_call_minutes", String(config.max_call_minutes));
  out.push("", "[vad]");
  line("threshold", String(Number(config.vad.threshold)));
  line("silence_ms", String(config.vad.silence_ms));
  line("prefix_padding_ms", String(config.vad.prefix_padding_ms));
  out.push("", "[sms]");
  if (config.sms.recovery !== null) line("recovery", str(config.sms.recovery));
  if (config.sms.confirmation !== null) line("confirmation", str(config.sms.confirmation));
  out.push("", "[booking]");
  line("min_notice_minutes", String(config.booking.min_notice_minutes));
  if (config.booking.horizon_days !== null) {
    line("horizon_days", String(config.booking.horizon_days));
  }
  if (config.booking.slot_minutes !== null) {
    line("slot_minutes", String(config.booking.slot_minutes));
  }
  for (const provider of config.providers) {
    out.push("", "[[providers]]");
    line("name", str(provider.name));
    const days = WEEKDAYS.flatMap((day, index) => {
      const ranges = provider.hours.filter((range) => range.weekday === index + 1);
      return ranges.length > 0 ? [`${day} = ${strings(ranges.map(rangeText))}`] : [];
    });
    line("hours", `{ ${days.join(", ")} }`.replace("{  }", "{}"));
  }
  for (const service of config.services) {
    out.push("", "[[services]]");
    line("name", str(service.name));
    line("minutes", String(service.minutes));
    if (service.buffer_minutes > 0) line("buffer_minutes", String(service.buffer_minutes));
    line("providers", strings(service.providers));
    if (service.instructions !== "") line("instructions", str(service.instructions));
    if (service.default) line("default", "true");
  }
  for (const override of config.overrides) {
    out.push("", "[[overrides]]");
    line("date", str(override.date));
    if (override.provider !== null) line("provider", str(override.provider));
    if (override.closed) line("closed", "true");
    else line("hours", strings(override.hours.map(rangeText)));
    if (override.note !== "") line("note", str(override.note));
  }
  return `${out.join("\n")}\n`;
}
