/**
 * Benchmarks `scripts/org.ts import-clients` on a generated 100,000-row CSV (numbers written six
 * ways, three countries, quoted commas and line breaks, a few bad rows): reading and normalising
 * the file (the CSV parser alone, libphonenumber-js alone, both as the command runs them), then
 * the import into a fresh database, end to end through the command and the database part alone,
 * for a first import, a re-import of the same file (nothing to write) and a re-import that changes
 * every row. Target: 100,000 rows in under 60 s.
 *
 * Run by hand (not part of the test suite); needs a real server, about half a minute:
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
 *     deno run -A scripts/bench/import_clients_bench.ts [--rows 100000] [--batch-rows 5000]
 * A fresh database is created beside `DATABASE_URL`'s (tests/support/test_db.ts) and dropped.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { parse as parseCsv } from "csv-parse/sync";
import {
  IMPORT_BATCH_ROWS,
  importClientRows,
  importClientsCommand,
  normalizePhone,
  parseClientCsv,
} from "../org/import_clients.ts";
import type { OrgCommandContext } from "../org/command.ts";
import { createTestDatabase } from "../../tests/support/test_db.ts";
import { createOrg } from "../../tests/db/fixtures.ts";
import { createRandom } from "../../tests/support/random.ts";

const DEFAULT_ROWS = 100_000;
const DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432/postgres";
/** One row in this many is bad (rejected), cycling through the kinds below. */
const BAD_EVERY = 997;

function parseArgs(args: string[]): { rows: number; batchRows: number } {
  const value = (name: string, fallback: number) => {
    const index = args.indexOf(name);
    const parsed = index === -1 ? fallback : Number(args[index + 1]);
    if (!Number.isInteger(parsed) || parsed <= 0) throw new Error(`${name} must be a count`);
    return parsed;
  };
  return {
    rows: value("--rows", DEFAULT_ROWS),
    batchRows: value("--batch-rows", IMPORT_BATCH_ROWS),
  };
}

/** Row i's number, unique per i, in one of six ways of writing it. */
function phoneCell(i: number, random: () => number): string {
  const n = String((i * 7_919 + 13) % 10_000_000).padStart(7, "0");
  const [a, b] = [n.slice(0, 3), n.slice(3)];
  const style = Math.floor(random() * 20);
  if (style === 0) return `+44 20 7${a} ${b}`; // London
  if (style === 1) return `+33 1 4${a[0]} ${a.slice(1)} ${b.slice(0, 2)} ${b.slice(2)}`; // Paris
  switch (style % 6) {
    case 0:
      return `(555) ${a}-${b}`;
    case 1:
      return `555.${a}.${b}`;
    case 2:
      return `+1 555 ${a} ${b}`;
    case 3:
      return `1-555-${a}-${b}`;
    case 4:
      return `555${n}`;
    default:
      return `"+1 (555) ${a}-${b}"`;
  }
}

const FIRST = ["Ada", "Alan", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances"];
const LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Liskov", "Thompson", "Hamilton"];

/** The CSV text and how many rows of it are bad. */
function generateCsv(rows: number, seed: number): { text: string; bad: number } {
  const random = createRandom(seed);
  const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)];
  const lines = ["\uFEFFphone,first_name,last_name,notes,email"];
  let bad = 0;
  let previousPhone = "";
  for (let i = 0; i < rows; i++) {
    const first = pick(FIRST);
    const last = random() < 0.1 ? `"${pick(LAST)}, Jr."` : pick(LAST);
    const notes = random() < 0.2
      ? `"Prefers mornings, ${i % 7} reminders.\nAsk for ""${first}""."`
      : random() < 0.5
      ? ""
      : `Client ${i}`;
    let phone = phoneCell(i, random);
    if (i % BAD_EVERY === BAD_EVERY - 1) {
      bad++;
      const kind = Math.floor(i / BAD_EVERY) % 4;
      if (kind === 0) phone = "not a number";
      else if (kind === 1) phone = "";
      else if (kind === 2) phone = "555 010 22"; // too short
      else phone = previousPhone; // a duplicate of the row before
    }
    previousPhone = phone;
    lines.push(`${phone},${first},${last},${notes},${first.toLowerCase()}${i}@example.com`);
    if (random() < 0.001) lines.push("");
  }
  return { text: lines.join("\r\n") + "\r\n", bad };
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(2);
}

function perSecond(count: number, ms: number): string {
  return Math.round(count / (ms / 1000)).toLocaleString("en-US");
}

async function timed<T>(fn: () => Promise<T> | T): Promise<[T, number]> {
  const startedMs = performance.now();
  const result = await fn();
  return [result, performance.now() - startedMs];
}

if (import.meta.main) {
  const { rows, batchRows } = parseArgs(Deno.args);
  const serverUrl = Deno.env.get("DATABASE_URL") || DEFAULT_SERVER_URL;
  const log = (line: string) => console.log(line);
  const results: [string, number, number][] = [];
  const record = (name: string, count: number, ms: number) => {
    results.push([name, count, ms]);
    log(`  ${name}: ${seconds(ms)} s (${perSecond(count, ms)} rows/s)`);
  };

  log(`generating ${rows.toLocaleString("en-US")} rows`);
  const { text, bad } = generateCsv(rows, 20261202);
  const dir = await Deno.makeTempDir({ prefix: "import_clients_bench_" });
  const path = `${dir}/clients.csv`;
  await Deno.writeTextFile(path, text);
  const bytes = await Deno.readFile(path);
  log(`  ${path}: ${(bytes.length / 1e6).toFixed(1)} MB, ${bad} bad rows generated`);

  log("reading (best of 3)");
  const best = async <T>(fn: () => T): Promise<[T, number]> => {
    let result: [T, number] | null = null;
    for (let round = 0; round < 3; round++) {
      const run = await timed(fn);
      if (!result || run[1] < result[1]) result = run;
    }
    return result!;
  };
  const [records, csvMs] = await best(() =>
    parseCsv(Buffer.from(bytes), {
      bom: true,
      record_delimiter: ["\r\n", "\n", "\r"],
      skip_empty_lines: true,
      relax_column_count: true,
      relax_quotes: true,
      trim: true,
    }) as string[][]
  );
  record("CSV parsing alone (csv-parse)", rows, csvMs);
  const phoneCells = records.slice(1).map((cells) => cells[0]).filter((cell) => cell !== "");
  const [, phoneMs] = await best(() => phoneCells.map((cell) => normalizePhone(cell, "US")));
  record("phone normalisation alone (libphonenumber-js)", phoneCells.length, phoneMs);
  const [parsed, parseMs] = await best(() => parseClientCsv(bytes, "US"));
  record("parseClientCsv (CSV + line numbers + checks + phones)", rows, parseMs);
  log(`  ${parsed.rows.length} rows to import, ${parsed.rejected.length} rejected`);

  log(`database (fresh, beside ${new URL(serverUrl).host}; batches of ${batchRows})`);
  const db = await createTestDatabase({ serverUrl });
  try {
    const out: string[] = [];
    const ctx: OrgCommandContext = {
      databaseUrl: db.url,
      out: (line) => out.push(line),
      err: (line) => out.push(line),
      env: {},
    };
    const command = async (name: string, ...extra: string[]) => {
      out.length = 0;
      const [code, ms] = await timed(() =>
        importClientsCommand(["harbor-dental", path, ...extra], ctx)
      );
      if (code !== 0) throw new Error(`import-clients exited ${code}: ${out.join("\n")}`);
      record(name, rows, ms);
      log(`    ${out.filter((line) => !line.startsWith("line ")).join(" | ")}`);
    };
    await command("command, dry run (everything rolled back)", "--dry-run");
    await command("command, first import");
    await command("command, re-import of the same file");

    const org = await createOrg(db.sql);
    const direct = async (name: string, input: typeof parsed.rows) => {
      const [counts, ms] = await timed(() =>
        importClientRows(db.sql, org.id, input, { batchRows })
      );
      record(name, input.length, ms);
      log(`    ${JSON.stringify(counts)}`);
    };
    await direct("database alone, first import", parsed.rows);
    await direct("database alone, re-import, nothing changed", parsed.rows);
    await direct(
      "database alone, re-import, every row changed",
      parsed.rows.map((row) => ({ ...row, notes: `${row.notes ?? ""} (updated)` })),
    );
    const [[{ count }]] = await Promise.all([
      db.sql<{ count: number }[]>`
        select count(*)::int as count from public.clients where org_id = ${org.id}`,
    ]);
    log(`  clients of the fresh org: ${count}`);
  } finally {
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }

  log("\n| step | rows | seconds | rows/s |\n| ---- | ---: | ------: | -----: |");
  for (const [name, count, ms] of results) {
    log(
      `| ${name} | ${count.toLocaleString("en-US")} | ${seconds(ms)} | ${perSecond(count, ms)} |`,
    );
  }
}
