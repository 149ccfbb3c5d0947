/**
 * `import-clients <slug> <file.csv> [--dry-run]`: adds an org's known callers from a CSV file, or
 * updates them when the file is imported again.
 *
 * The file: UTF-8 (a byte order mark is fine), a header line naming the columns `phone`,
 * `first_name`, `last_name`, `notes` (any order and case, spaces around them ignored, `First Name`
 * or `first-name` accepted; other columns are ignored and listed), then one client per record.
 * RFC 4180 quoting: a quoted field may hold commas, quotes (doubled) and line breaks. Line breaks
 * may be CRLF, LF or CR; blank lines, and records whose cells are all blank, are skipped.
 *
 * Each record is checked and either imported or rejected with the number of the physical line it
 * starts on (the header is line 1 when it is the first line) and every reason that applies:
 * - `phone` is required, and normalised to E.164 with libphonenumber-js. A number without a
 *   country code is read in the org's default region: its `country`, else the region of its first
 *   number in org_phone_numbers, else none (then every number needs `+` and its country code). A
 *   number written with `+` (or an international prefix such as 011) keeps its country. Numbers
 *   libphonenumber calls possible (the right length for their country) are accepted, even when
 *   they are not assigned (`(555) 010-2233`); an extension (`ext. 5`) is dropped.
 * - the same number twice in one file (however it is written): the first record wins, every later
 *   one is rejected as a duplicate of the first one's line.
 * - `first_name` and `last_name` at most 100 characters (whitespace runs, line breaks included,
 *   become one space), `notes` at most 2,000 (they go into the assistant's prompt on every call of
 *   that client); no NUL characters. Cells are trimmed.
 *
 * Importing upserts on (org, phone) through `public.import_clients`, in batches of 5,000 in one
 * transaction (all or nothing; rolled back after counting for `--dry-run`). An empty cell never
 * erases a stored value: an empty first or last name keeps the stored one, and notes are replaced
 * only when the cell has text. A client whose stored values the row would not change is not
 * written.
 *
 * Exit code 0 when the file could be read as a clients CSV, even if rows were rejected; 1 when it
 * could not (missing, not UTF-8, no header or no `phone` column, broken quoting) or the org does
 * not exist.
 * @module
 */
import { Buffer } from "node:buffer";
import type postgres from "postgres";
import { parse as parseCsv } from "csv-parse/sync";
import {
  type CountryCode,
  isSupportedCountry,
  parsePhoneNumberFromString,
} from "libphonenumber-js";
import phoneMetadata from "libphonenumber-js/min/metadata";
import type { ValidatePhoneNumberLengthResult } from "libphonenumber-js";
import { validatePhoneNumberLength } from "libphonenumber-js";
import {
  findOrg,
  type OrgCommand,
  OrgCommandError,
  type OrgRef,
  parseOptions,
  withDatabase,
} from "./command.ts";

/** The columns the file may have; `phone` is required. */
export const CLIENT_COLUMNS = ["phone", "first_name", "last_name", "notes"] as const;
/** Longest first or last name, in characters (public.clients checks the same). */
export const MAX_NAME_CHARS = 100;
/** Longest notes, in characters. */
export const MAX_NOTES_CHARS = 2_000;
/** Rows per `public.import_clients` call. */
export const IMPORT_BATCH_ROWS = 5_000;

const USAGE = "usage: import-clients <slug> <file.csv> [--dry-run]";
const E164 = /^\+[1-9][0-9]{6,14}$/;

/** A record that passed every check, ready for `public.import_clients`. */
export interface ClientRow {
  /** Physical line of the file the record starts on. */
  line: number;
  /** E.164. */
  phone: string;
  /** Trimmed; null when the cell is empty or the column is absent (keeps the stored value). */
  firstName: string | null;
  lastName: string | null;
  notes: string | null;
}

/** A record that was not imported. */
export interface RejectedRow {
  /** Physical line of the file the record starts on. */
  line: number;
  /** Every reason, joined with "; ". */
  reason: string;
}

/** What {@link parseClientCsv} found in a file. */
export interface ParsedClientCsv {
  rows: ClientRow[];
  rejected: RejectedRow[];
  /** Header names of the columns that were ignored, as written. */
  ignoredColumns: string[];
}

/** Counts of one import (or what a dry run would have done). */
export interface ImportCounts {
  /** Clients created. */
  added: number;
  /** Existing clients whose names or notes changed. */
  updated: number;
  /** Existing clients the file had nothing new for (not written). */
  unchanged: number;
}

/** The file cannot be read as a clients CSV: nothing of it is imported. */
export class ClientCsvError extends OrgCommandError {
  constructor(message: string) {
    super(message);
    this.name = "ClientCsvError";
  }
}

/** Outcome of {@link normalizePhone}: the E.164 number, or why there is none. */
export type NormalizedPhone = { phone: string; reason?: undefined } | {
  phone?: undefined;
  reason: string;
};

const LENGTH_PROBLEMS: Record<Exclude<ValidatePhoneNumberLengthResult, undefined>, string> = {
  TOO_SHORT: "too short",
  TOO_LONG: "too long",
  INVALID_LENGTH: "wrong number of digits",
  INVALID_COUNTRY: "unknown country code",
  NOT_A_NUMBER: "not a number",
};

/**
 * A phone number as written in a file, in E.164.
 * @param input the cell, trimmed, not empty
 * @param defaultRegion region of numbers written without a country code; null: they are rejected
 */
export function normalizePhone(input: string, defaultRegion: CountryCode | null): NormalizedPhone {
  const options = { defaultCountry: defaultRegion ?? undefined, extract: false };
  const parsed = parsePhoneNumberFromString(input, options);
  if (parsed?.isPossible() && E164.test(parsed.number)) return { phone: parsed.number };
  const quoted = quote(input);
  const problem = validatePhoneNumberLength(input, options);
  if (!parsed) {
    if (problem === "INVALID_COUNTRY" && !input.startsWith("+") && /[0-9]/.test(input)) {
      return {
        reason:
          `no country code in ${quoted}: the org has no country, so write numbers as +<country code> <number>`,
      };
    }
    if (problem === "INVALID_COUNTRY") {
      return { reason: `not a phone number: ${quoted} (unknown country code)` };
    }
    return { reason: `not a phone number: ${quoted}` };
  }
  const detail = problem && problem !== "NOT_A_NUMBER"
    ? LENGTH_PROBLEMS[problem]
    : "not a possible number";
  const where = parsed.country ?? `+${parsed.countryCallingCode}`;
  return { reason: `not a phone number: ${quoted} (${detail} for ${where})` };
}

/** A cell as a reason shows it: JSON-quoted, long ones cut to 40 characters. */
function quote(value: string): string {
  return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
}

/**
 * The region a number belongs to: its country, or for a number no country claims (+1 555 ...),
 * the main country of its calling code (US for +1).
 */
export function regionOfNumber(e164: string): CountryCode | null {
  const parsed = parsePhoneNumberFromString(e164);
  if (!parsed) return null;
  const mainCountries = phoneMetadata.country_calling_codes as Record<string, CountryCode[]>;
  return parsed.country ?? parsed.getPossibleCountries()[0] ??
    mainCountries[parsed.countryCallingCode]?.[0] ?? null;
}

/** How the command reads numbers written without a country code for this org. */
export interface DefaultRegion {
  region: CountryCode | null;
  /** Where it came from, for the command's output. */
  source: string;
}

/**
 * The org's default region: its `country`, else the region of its first number (by creation),
 * else none.
 */
export async function orgDefaultRegion(
  sql: postgres.Sql | postgres.TransactionSql,
  org: OrgRef,
): Promise<DefaultRegion> {
  if (org.country && isSupportedCountry(org.country)) {
    return { region: org.country, source: "the org's country" };
  }
  const [first] = await sql<{ phone_number: string }[]>`
    select phone_number from public.org_phone_numbers where org_id = ${org.id}
    order by created_at, phone_number limit 1`;
  const region = first ? regionOfNumber(first.phone_number) : null;
  if (region) return { region, source: `the region of the org's number ${first.phone_number}` };
  return { region: null, source: "the org has no country and no number" };
}

/** Header cell -> column name: trimmed, lower case, runs of spaces or hyphens as `_`. */
function columnName(header: string): string {
  return header.trim().toLowerCase().replace(/[\s-]+/g, "_");
}

/**
 * Characters as Postgres' length() counts them (code points); exact when over `max`, cheap when
 * the UTF-16 length is not.
 */
function charLength(value: string, max: number): number {
  if (value.length <= max) return value.length;
  let count = 0;
  for (const _ of value) count++;
  return count;
}

const CSV_PROBLEMS: Record<string, string> = {
  CSV_QUOTE_NOT_CLOSED: "a quoted field starting in this record is never closed",
  CSV_NON_TRIMABLE_CHAR_AFTER_CLOSING_QUOTE:
    'text after the closing quote of a quoted field (write a quote inside a quoted field as "")',
  CSV_INVALID_CLOSING_QUOTE:
    'text after the closing quote of a quoted field (write a quote inside a quoted field as "")',
};

/**
 * Reads a clients CSV: which records are imported, which are rejected and why.
 * @param input the file's text, or its bytes (UTF-8)
 * @param defaultRegion region of numbers written without a country code; null: they are rejected
 * @throws ClientCsvError when the file has no header, no `phone` column, a column named twice or
 *   broken quoting
 */
export function parseClientCsv(
  input: string | Uint8Array,
  defaultRegion: CountryCode | null,
): ParsedClientCsv {
  const bytes = typeof input === "string" ? new TextEncoder().encode(input) : input;
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

  // Physical line of a byte offset. Records are visited in order, so the scan only moves forward.
  let scanOffset = 0;
  let scanLine = 1;
  const lineAt = (offset: number): number => {
    while (scanOffset < offset) {
      const byte = bytes[scanOffset++];
      if (byte === 0x0a) scanLine++;
      else if (byte === 0x0d) {
        if (bytes[scanOffset] === 0x0a) scanOffset++;
        scanLine++;
      }
    }
    return scanLine;
  };
  // A record starts where the previous one ended (after its line break), past the lines the
  // parser skipped as blank: its first character that is not whitespace.
  let previousEnd = 0;
  const recordStartLine = (): number => {
    let start = previousEnd;
    for (let length; (length = whitespaceLength(bytes, start)) > 0;) start += length;
    return lineAt(start);
  };

  const records: { cells: string[]; line: number }[] = [];
  try {
    parseCsv(buffer, {
      bom: true,
      record_delimiter: ["\r\n", "\n", "\r"],
      skip_empty_lines: true,
      relax_column_count: true,
      relax_quotes: true,
      trim: true,
      on_record: (cells: string[], context: { bytes: number }) => {
        records.push({ cells, line: recordStartLine() });
        previousEnd = context.bytes;
        return null;
      },
    });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (!code?.startsWith("CSV_")) throw error;
    const problem = CSV_PROBLEMS[code] ?? (error as Error).message;
    throw new ClientCsvError(`line ${recordStartLine()}: ${problem}; nothing was imported`);
  }

  const isBlank = (cells: string[]) => cells.every((cell) => cell.trim() === "");
  const headerIndex = records.findIndex((record) => !isBlank(record.cells));
  if (headerIndex === -1) {
    throw new ClientCsvError(
      `the file is empty: its first line must name the columns, e.g. ${CLIENT_COLUMNS.join(",")}`,
    );
  }
  const header = records[headerIndex];
  const columns = new Map<string, number>();
  const ignoredColumns: string[] = [];
  header.cells.forEach((cell, index) => {
    const name = columnName(cell);
    if (!(CLIENT_COLUMNS as readonly string[]).includes(name)) {
      if (cell.trim() !== "") ignoredColumns.push(cell.trim());
      return;
    }
    if (columns.has(name)) {
      throw new ClientCsvError(
        `line ${header.line}: the header names column "${name}" twice (columns ${
          columns.get(name)! + 1
        } and ${index + 1})`,
      );
    }
    columns.set(name, index);
  });
  const phoneIndex = columns.get("phone");
  if (phoneIndex === undefined) {
    const found = header.cells.map((cell) => quote(cell.trim())).join(", ");
    throw new ClientCsvError(
      `line ${header.line}: the header has no "phone" column (found ${found}); the first line ` +
        `must name the columns, e.g. ${CLIENT_COLUMNS.join(",")}`,
    );
  }
  const cellOf = (cells: string[], column: string): string => {
    const index = columns.get(column);
    return index === undefined ? "" : (cells[index] ?? "").trim();
  };

  const rows: ClientRow[] = [];
  const rejected: RejectedRow[] = [];
  const firstLineOf = new Map<string, number>();
  for (let i = headerIndex + 1; i < records.length; i++) {
    const { cells, line } = records[i];
    if (isBlank(cells)) continue;
    const reasons: string[] = [];
    const phoneCell = cells[phoneIndex]?.trim() ?? "";
    let phone: string | undefined;
    if (phoneCell === "") {
      reasons.push("no phone");
    } else {
      const normalized = normalizePhone(phoneCell, defaultRegion);
      if (normalized.reason !== undefined) reasons.push(normalized.reason);
      phone = normalized.phone;
    }
    if (phone !== undefined) {
      const firstLine = firstLineOf.get(phone);
      if (firstLine === undefined) firstLineOf.set(phone, line);
      else {reasons.push(
          `duplicate of line ${firstLine} (${phone}): only a number's first line is imported`,
        );}
    }
    const values: Record<string, string> = {};
    for (const column of ["first_name", "last_name", "notes"] as const) {
      // A name is one line: runs of whitespace (line breaks included) become one space.
      const cell = cellOf(cells, column);
      const value = column === "notes" ? cell : cell.replace(/\s+/g, " ");
      values[column] = value;
      const max = column === "notes" ? MAX_NOTES_CHARS : MAX_NAME_CHARS;
      const length = charLength(value, max);
      if (length > max) {
        reasons.push(`${column} too long (${length} characters, at most ${max})`);
      }
      if (value.includes("\0")) reasons.push(`${column} contains a NUL character`);
    }
    if (reasons.length > 0) {
      rejected.push({ line, reason: reasons.join("; ") });
      continue;
    }
    rows.push({
      line,
      phone: phone!,
      firstName: values.first_name || null,
      lastName: values.last_name || null,
      notes: values.notes || null,
    });
  }
  return { rows, rejected, ignoredColumns };
}

/** Code points csv-parse trims (`trim: true`) besides ASCII whitespace. */
const UNICODE_SPACES = new Set([
  0xa0,
  0x1680,
  ...Array.from({ length: 11 }, (_, i) => 0x2000 + i),
  0x2028,
  0x2029,
  0x202f,
  0x205f,
  0x3000,
  0xfeff,
]);

/** Bytes of the whitespace character (as csv-parse trims it) at `offset` of UTF-8; 0 if none. */
function whitespaceLength(bytes: Uint8Array, offset: number): number {
  const first = bytes[offset];
  if (first === undefined) return 0;
  if (first < 0x80) return first === 0x20 || (first >= 0x09 && first <= 0x0d) ? 1 : 0;
  if (first >= 0xc0 && first < 0xe0) {
    const codePoint = ((first & 0x1f) << 6) | (bytes[offset + 1] & 0x3f);
    return UNICODE_SPACES.has(codePoint) ? 2 : 0;
  }
  if (first >= 0xe0 && first < 0xf0) {
    const codePoint = ((first & 0x0f) << 12) | ((bytes[offset + 1] & 0x3f) << 6) |
      (bytes[offset + 2] & 0x3f);
    return UNICODE_SPACES.has(codePoint) ? 3 : 0;
  }
  return 0;
}

/** Thrown inside the transaction of a dry run, so it rolls back with the counts. */
class DryRunRollback extends Error {
  constructor(readonly counts: ImportCounts) {
    super("dry run: rolled back");
  }
}

/**
 * Upserts the rows into the org's clients through `public.import_clients`, in batches inside one
 * transaction; a dry run rolls it back and reports what would have happened.
 * @param sql a connection pool
 * @param orgId the org
 * @param rows checked rows, each phone once
 * @param options dryRun; batchRows (default {@link IMPORT_BATCH_ROWS})
 */
export async function importClientRows(
  sql: postgres.Sql,
  orgId: string,
  rows: readonly ClientRow[],
  options: { dryRun?: boolean; batchRows?: number } = {},
): Promise<ImportCounts> {
  const batchRows = options.batchRows ?? IMPORT_BATCH_ROWS;
  try {
    const [counts] = await sql.begin(async (tx) => {
      const total: ImportCounts = { added: 0, updated: 0, unchanged: 0 };
      for (let start = 0; start < rows.length; start += batchRows) {
        const batch = rows.slice(start, start + batchRows).map((row) => ({
          phone: row.phone,
          first_name: row.firstName,
          last_name: row.lastName,
          notes: row.notes,
        }));
        const [{ result }] = await tx<{ result: ImportCounts }[]>`
          select public.import_clients(${orgId}, ${tx.json(batch)}) as result`;
        total.added += result.added;
        total.updated += result.updated;
        total.unchanged += result.unchanged;
      }
      if (options.dryRun) throw new DryRunRollback(total);
      // Boxed: `begin` would otherwise treat a returned array as queries to await.
      return [total] as const;
    });
    return counts;
  } catch (error) {
    if (error instanceof DryRunRollback) return error.counts;
    throw error;
  }
}

/** The summary line: `imported N (added A, updated U), rejected R`. */
export function summaryLine(counts: ImportCounts, rejected: number): string {
  const imported = counts.added + counts.updated + counts.unchanged;
  return `imported ${imported} (added ${counts.added}, updated ${
    counts.updated + counts.unchanged
  }), rejected ${rejected}`;
}

async function readCsvFile(path: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? "no such file"
      : error instanceof Deno.errors.IsADirectory
      ? "it is a directory"
      : (error as Error).message;
    throw new ClientCsvError(`Cannot read ${path}: ${reason}`);
  }
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ClientCsvError(
      `Cannot read ${path}: it is not UTF-8 text (save it as "CSV UTF-8")`,
    );
  }
  return bytes;
}

/** `import-clients <slug> <file.csv> [--dry-run]`. */
export const importClientsCommand: OrgCommand = async (args, ctx) => {
  try {
    const { positional, options } = parseOptions(args, []);
    const unknown = [...options.keys()].filter((name) => name !== "dry-run");
    if (unknown.length > 0) {
      throw new OrgCommandError(`Unknown option --${unknown[0]}; ${USAGE}`);
    }
    if (positional.length !== 2) throw new OrgCommandError(USAGE);
    const [slug, path] = positional;
    const dryRun = options.has("dry-run");
    const bytes = await readCsvFile(path);

    return await withDatabase(ctx, async (sql) => {
      const org = await findOrg(sql, slug);
      const { region, source } = await orgDefaultRegion(sql, org);
      ctx.out(
        region
          ? `numbers without a country code are read as ${region} (${source})`
          : `numbers need a country code (${source})`,
      );
      const parsed = parseClientCsv(bytes, region);
      if (parsed.ignoredColumns.length > 0) {
        ctx.out(
          `ignored columns: ${
            parsed.ignoredColumns.map((name) => JSON.stringify(name)).join(", ")
          }`,
        );
      }
      const counts = await importClientRows(sql, org.id, parsed.rows, { dryRun });
      for (const { line, reason } of parsed.rejected) ctx.out(`line ${line}: ${reason}`);
      ctx.out(summaryLine(counts, parsed.rejected.length));
      if (counts.unchanged > 0) {
        ctx.out(`${counts.unchanged} of the updated already had these values (not written)`);
      }
      if (dryRun) ctx.out("dry run: nothing was changed");
      return 0;
    });
  } catch (error) {
    if (error instanceof OrgCommandError) {
      ctx.err(error.message);
      return 1;
    }
    throw error;
  }
};
