/**
 * `import-clients`: the CSV edge cases with the exact lines reported (pure), then the command
 * against a real database (`createTestDatabase()`): import into harbor-dental, a re-import updates
 * instead of duplicating and never erases with empty cells, a dry run changes nothing, unknown
 * orgs and unreadable files exit 1.
 * @module
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import {
  ClientCsvError,
  type ClientRow,
  importClientRows,
  importClientsCommand,
  normalizePhone,
  parseClientCsv,
  regionOfNumber,
  summaryLine,
} from "./import_clients.ts";
import { createTestDatabase, withRole } from "../../tests/support/test_db.ts";
import { createOrg, HARBOR_DENTAL } from "../../tests/db/fixtures.ts";
import { createRandom } from "../../tests/support/random.ts";

/** line -> reason of the rejections, for exact comparisons. */
function rejections(text: string, region: "US" | "GB" | null = "US"): Record<number, string> {
  return Object.fromEntries(
    parseClientCsv(text, region).rejected.map(({ line, reason }) => [line, reason]),
  );
}

/** [line, phone] of the imported rows. */
function imported(text: string, region: "US" | "GB" | null = "US"): [number, string][] {
  return parseClientCsv(text, region).rows.map((row) => [row.line, row.phone]);
}

Deno.test("a UTF-8 byte order mark, CRLF and a header in any case with spaces are read", () => {
  const parsed = parseClientCsv(
    "\uFEFF Phone ,FIRST_NAME, Last_Name ,Notes\r\n(555) 010-2233,Jane,Doe,Likes tea\r\n" +
      "555.010.2234,John,,\r\n",
    "US",
  );
  assert.deepEqual(parsed.rows, [
    { line: 2, phone: "+15550102233", firstName: "Jane", lastName: "Doe", notes: "Likes tea" },
    { line: 3, phone: "+15550102234", firstName: "John", lastName: null, notes: null },
  ]);
  assert.deepEqual(parsed.rejected, []);
  assert.deepEqual(parsed.ignoredColumns, []);
  // The BOM is not part of the first column's name, in a byte input too.
  const bytes = new TextEncoder().encode("\uFEFFphone\n+15550102233\n");
  assert.deepEqual(parseClientCsv(bytes, null).rows.map((row) => row.phone), ["+15550102233"]);
});

Deno.test("quoted fields keep commas, quotes and line breaks; later lines stay exact", () => {
  const text = [
    "phone,first_name,last_name,notes",
    '"(555) 010-2233","Doe, Jane",Smith,"Allergic to latex, ""very"" careful"', // line 2
    '5550102234,"Mary',
    'Ann",Lee,"first line\r\nsecond line', // CRLF inside quotes counts as one line break
    'third line"', // the record of line 3 ends here, on line 6
    "555 010 223,Short,,", // line 7: rejected, so its line shows
    "",
  ].join("\n");
  const parsed = parseClientCsv(text, "US");
  assert.deepEqual(parsed.rows, [
    {
      line: 2,
      phone: "+15550102233",
      firstName: "Doe, Jane",
      lastName: "Smith",
      notes: 'Allergic to latex, "very" careful',
    },
    // A name is one line: the line break in it becomes a space; notes keep theirs.
    {
      line: 3,
      phone: "+15550102234",
      firstName: "Mary Ann",
      lastName: "Lee",
      notes: "first line\r\nsecond line\nthird line",
    },
  ]);
  assert.deepEqual(parsed.rejected, [{
    line: 7,
    reason: 'not a phone number: "555 010 223" (too short for US)',
  }]);
});

Deno.test("blank lines, whitespace-only lines and rows of empty cells are skipped", () => {
  const text =
    "\n\nphone,first_name\r\n\r\n5550102233,A\n   \n,,\n\t\nnope,B\n\u00a0\u3000\n \n5550102235,C";
  assert.deepEqual(imported(text), [[5, "+15550102233"], [12, "+15550102235"]]);
  assert.deepEqual(rejections(text), { 9: 'not a phone number: "nope"' });
  // Mixed line breaks, CR alone included.
  assert.deepEqual(imported("phone\r5550102233\r\n5550102234\n5550102235"), [
    [2, "+15550102233"],
    [3, "+15550102234"],
    [4, "+15550102235"],
  ]);
});

Deno.test("fuzz: every record's line is where it starts, whatever the line breaks and quoting", () => {
  for (let seed = 1; seed <= 200; seed++) {
    const random = createRandom(seed);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
    const breaks = ["\n", "\r\n", "\r"] as const;
    let text = random() < 0.5 ? "\uFEFF" : "";
    const add = (piece: string) => text += piece;
    // Counted over the whole text: a "\r" followed by a "\n" is one CRLF.
    const currentLine = () => 1 + (text.match(/\r\n|\r|\n/g)?.length ?? 0);
    add(`phone,notes${pick(breaks)}`);
    const expected: [number, string][] = [];
    for (let i = 0; i < 30; i++) {
      while (random() < 0.3) add(pick(["", " ", "\t", ",", " , ", "\u00a0"]) + pick(breaks));
      const phone = `+1555${String(1_000_000 + i)}`;
      const indent = random() < 0.2 ? "  " : "";
      expected.push([currentLine(), phone]);
      const notes = Array.from(
        { length: Math.floor(random() * 3) + 1 },
        () => pick(["a", "b,c", 'say ""hi""']),
      )
        .join(pick(breaks));
      const quotedPhone = random() < 0.3;
      add(`${indent}${quotedPhone ? `"${phone}"` : phone},"${notes}"`);
      if (i < 29 || random() < 0.5) add(pick(breaks));
    }
    const found = parseClientCsv(text, "US");
    assert.deepEqual(found.rejected, [], `seed ${seed}`);
    assert.deepEqual(found.rows.map((row) => [row.line, row.phone]), expected, `seed ${seed}`);
  }
});

Deno.test("a missing header, a missing phone column or an empty file is a clear error", () => {
  assert.throws(
    () => parseClientCsv("(555) 010-2233,Jane,Doe\n(555) 010-2234,John,Roe\n", "US"),
    (error: Error) =>
      error instanceof ClientCsvError &&
      error.message ===
        'line 1: the header has no "phone" column (found "(555) 010-2233", "Jane", "Doe"); ' +
          "the first line must name the columns, e.g. phone,first_name,last_name,notes",
  );
  assert.throws(
    () => parseClientCsv("\n\nname,notes\nJane,hi\n", "US"),
    { name: "ClientCsvError", message: /^line 3: the header has no "phone" column/ },
  );
  for (const empty of ["", "\uFEFF", "\r\n\r\n", " , \n"]) {
    assert.throws(() => parseClientCsv(empty, "US"), {
      name: "ClientCsvError",
      message: /^the file is empty: its first line must name the columns/,
    });
  }
  assert.throws(() => parseClientCsv("phone,notes,PHONE\n1,2,3\n", "US"), {
    name: "ClientCsvError",
    message: 'line 1: the header names column "phone" twice (columns 1 and 3)',
  });
});

Deno.test("broken quoting stops the whole file with the line of the record", () => {
  assert.throws(() =>
    parseClientCsv(
      'phone,notes\n5550102233,ok\n5550102234,"never closed\n' +
        "5550102235,x\n",
      "US",
    ), {
    name: "ClientCsvError",
    message: "line 3: a quoted field starting in this record is never closed; nothing was imported",
  });
  assert.throws(
    () => parseClientCsv('phone,notes\r\n"a\r\nb",x\r\n5550102233,"ok"then\r\n', "US"),
    {
      name: "ClientCsvError",
      message: /^line 4: text after the closing quote of a quoted field/,
    },
  );
  // A quote inside an unquoted field is just a character.
  assert.deepEqual(
    parseClientCsv('phone,first_name\n5550102233,Dwayne "The Rock"\n', "US").rows[0].firstName,
    'Dwayne "The Rock"',
  );
});

Deno.test("extra columns are ignored and listed; missing optional columns are fine", () => {
  const parsed = parseClientCsv(
    "email,Phone,Date of birth,First Name,first-name-2\nj@example.com,5550102233,1990-01-01,Jane,x\n" +
      "only an email\n", // no phone cell at all: a short record
    "US",
  );
  assert.deepEqual(parsed.ignoredColumns, ["email", "Date of birth", "first-name-2"]);
  assert.deepEqual(parsed.rows, [
    { line: 2, phone: "+15550102233", firstName: "Jane", lastName: null, notes: null },
  ]);
  assert.deepEqual(parsed.rejected, [{ line: 3, reason: "no phone" }]);
});

Deno.test("the same number twice, however written: the first line wins, later ones are rejected", () => {
  const text = [
    "phone,first_name", // 1
    "(555) 010-2233,First", // 2
    "+1 555 010 2234,Other", // 3
    "555.010.2233,Second", // 4: the same number as line 2
    "1-555-010-2233,Third", // 5: and again
    "+15550102234,Again", // 6: the same as line 3
    "011 1 555 010 2233,Fourth", // 7: with the US international prefix
  ].join("\n");
  assert.deepEqual(imported(text), [[2, "+15550102233"], [3, "+15550102234"]]);
  const only = "only a number's first line is imported";
  assert.deepEqual(rejections(text), {
    4: `duplicate of line 2 (+15550102233): ${only}`,
    5: `duplicate of line 2 (+15550102233): ${only}`,
    6: `duplicate of line 3 (+15550102234): ${only}`,
    7: `duplicate of line 2 (+15550102233): ${only}`,
  });
  // The first line holds the number even when it is rejected for something else.
  const long = "x".repeat(101);
  assert.deepEqual(rejections(`phone,first_name\n5550102233,${long}\n5550102233,Ok\n`), {
    2: "first_name too long (101 characters, at most 100)",
    3: `duplicate of line 2 (+15550102233): ${only}`,
  });
});

Deno.test("numbers of other countries keep their country; national ones take the org's", () => {
  const text = [
    "phone",
    "+44 20 7946 0958", // 2: London, written with +
    "011 44 20 7946 0958", // 3: the same through the US international prefix: a duplicate
    "+33 1 23 45 67 89", // 4: Paris
    "+49 30 901820", // 5: Berlin
    "(555) 010-2233", // 6: US by default
    "15550102234", // 7: US with its trunk prefix 1
  ].join("\n");
  assert.deepEqual(imported(text), [
    [2, "+442079460958"],
    [4, "+33123456789"],
    [5, "+4930901820"],
    [6, "+15550102233"],
    [7, "+15550102234"],
  ]);
  assert.match(rejections(text)[3], /^duplicate of line 2 \(\+442079460958\)/);
  // In a British org, a national number is British.
  assert.deepEqual(imported("phone\n020 7946 0958\n07911 123456\n+1 555 010 2233\n", "GB"), [
    [2, "+442079460958"],
    [3, "+447911123456"],
    [4, "+15550102233"],
  ]);
  // No default region: only numbers with their country code.
  assert.deepEqual(imported("phone\n5550102233\n+15550102233\n", null), [[3, "+15550102233"]]);
  assert.deepEqual(rejections("phone\n5550102233\n", null), {
    2: 'no country code in "5550102233": the org has no country, so write numbers as ' +
      "+<country code> <number>",
  });
});

Deno.test("impossible numbers are rejected with why; possible but unassigned ones are kept", () => {
  const text = [
    "phone",
    "(555) 010-2233", // 2: 555 numbers are not valid but possible: kept
    "555 010 223", // 3: nine digits
    "555 010 22334", // 4: eleven digits
    "abc", // 5
    "+999 1234567", // 6: no such country code
    "Jane 555-010-2233", // 7: text around a number
    "1.5550102233E+10", // 8: a spreadsheet's scientific notation
    "+33 1 23 45 67 89 0", // 9: a digit too many for France
    "12", // 10
    "555-010-2235 ext. 12", // 11: the extension is dropped
  ].join("\n");
  assert.deepEqual(imported(text), [[2, "+15550102233"], [11, "+15550102235"]]);
  assert.deepEqual(rejections(text), {
    3: 'not a phone number: "555 010 223" (too short for US)',
    4: 'not a phone number: "555 010 22334" (too long for US)',
    5: 'not a phone number: "abc"',
    6: 'not a phone number: "+999 1234567" (unknown country code)',
    7: 'not a phone number: "Jane 555-010-2233"',
    8: 'not a phone number: "1.5550102233E+10"',
    9: 'not a phone number: "+33 1 23 45 67 89 0" (too long for FR)',
    10: 'not a phone number: "12" (too short for US)',
  });
});

Deno.test("names over 100 characters and notes over 2,000 are rejected, counted as Postgres does", () => {
  const name100 = "é".repeat(100);
  const emoji100 = "😀".repeat(100); // 200 UTF-16 code units, 100 characters
  const text = [
    "phone,first_name,last_name,notes",
    `5550102231,${name100},${emoji100},${"n".repeat(2_000)}`, // 2: at the limits
    `5550102232,${"a".repeat(101)},,`, // 3
    `5550102233,,${"😀".repeat(101)},`, // 4
    `5550102234,,,${"n".repeat(2_001)}`, // 5
    `,${"a".repeat(101)},,`, // 6: every reason is given
    `5550102236,"  Jane \t ",  Doe  ,"  spaced notes  "`, // 7: cells are trimmed
    "5550102237,a\0b,,", // 8
  ].join("\n");
  assert.deepEqual(imported(text), [[2, "+15550102231"], [7, "+15550102236"]]);
  const rows = parseClientCsv(text, "US").rows;
  assert.equal(rows[0].lastName, emoji100);
  assert.deepEqual(
    [rows[1].firstName, rows[1].lastName, rows[1].notes],
    ["Jane", "Doe", "spaced notes"],
  );
  assert.deepEqual(rejections(text), {
    3: "first_name too long (101 characters, at most 100)",
    4: "last_name too long (101 characters, at most 100)",
    5: "notes too long (2001 characters, at most 2000)",
    6: "no phone; first_name too long (101 characters, at most 100)",
    8: "first_name contains a NUL character",
  });
});

Deno.test("normalizePhone, regionOfNumber and the summary line", () => {
  assert.deepEqual(normalizePhone("(555) 010-2233", "US"), { phone: "+15550102233" });
  assert.deepEqual(normalizePhone("+1 (555) 010-2233", null), { phone: "+15550102233" });
  assert.deepEqual(normalizePhone("00 44 20 7946 0958", "FR"), { phone: "+442079460958" });
  assert.equal(regionOfNumber("+15550100000"), "US"); // no country claims 555: +1's main one
  assert.equal(regionOfNumber("+442079460958"), "GB");
  assert.equal(regionOfNumber("+77011234567"), "KZ");
  assert.equal(regionOfNumber("not a number"), null);
  assert.equal(
    summaryLine({ added: 2, updated: 1, unchanged: 3 }, 4),
    "imported 6 (added 2, updated 4), rejected 4",
  );
});

// ---------------------------------------------------------------------------------------------
// Against a real database.

/** A random possible US number in the 555 range, as a person might write it. */
function randomUsNumber(): string {
  const digits = String(crypto.getRandomValues(new Uint32Array(1))[0] % 10_000_000).padStart(
    7,
    "0",
  );
  return `(555) ${digits.slice(0, 3)}-${digits.slice(3)}`;
}

interface Run {
  code: number;
  out: string[];
  err: string[];
}

async function runImport(url: string, ...args: string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await importClientsCommand(args, {
    databaseUrl: url,
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    env: {},
  });
  return { code, out, err };
}

interface StoredClient {
  phone: string;
  first_name: string | null;
  last_name: string | null;
  notes: string;
}

async function clientsOf(sql: postgres.Sql, orgId: string): Promise<StoredClient[]> {
  return [
    ...await sql<StoredClient[]>`
      select phone, first_name, last_name, notes from public.clients
      where org_id = ${orgId} order by phone`,
  ];
}

async function writeCsv(dir: string, name: string, lines: string[]): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, lines.join("\r\n") + "\r\n");
  return path;
}

Deno.test({
  name: "import-clients against a real database",
  sanitizeResources: false,
  async fn(t) {
    const db = await createTestDatabase();
    const dir = await Deno.makeTempDir();
    try {
      const seeded = await clientsOf(db.sql, HARBOR_DENTAL.id);
      const jane = seeded.find((client) => client.phone === HARBOR_DENTAL.janeDoePhone)!;
      assert.equal(jane.first_name, "Jane");
      assert.notEqual(jane.notes, "");
      const file = await writeCsv(dir, "clients.csv", [
        "phone,first_name,last_name,notes,email",
        '(555) 010-2233,Ada,Lovelace,"Prefers email, not calls",ada@example.com', // 2: new
        "+44 20 7946 0958,Alan,Turing,,", // 3: new, British
        // 4: Jane, already a client: the empty first name and notes keep hers.
        `${HARBOR_DENTAL.janeDoePhone.slice(2)},,Doe-Smith,,`,
        "555.010.2233,Ada,Again,,", // 5: duplicate of line 2
        "not-a-number,Bob,,,", // 6
      ]);

      await t.step("dry run: the counts of a real import, and nothing changes", async () => {
        const run = await runImport(db.url, "harbor-dental", file, "--dry-run");
        assert.equal(run.code, 0, run.err.join("\n"));
        assert.deepEqual(run.err, []);
        assert.deepEqual(run.out, [
          "numbers without a country code are read as US (the org's country)",
          'ignored columns: "email"',
          "line 5: duplicate of line 2 (+15550102233): only a number's first line is imported",
          'line 6: not a phone number: "not-a-number"',
          "imported 3 (added 2, updated 1), rejected 2",
          "dry run: nothing was changed",
        ]);
        assert.deepEqual(await clientsOf(db.sql, HARBOR_DENTAL.id), seeded);
      });

      await t.step("import adds new clients and updates existing ones", async () => {
        const run = await runImport(db.url, "harbor-dental", file);
        assert.equal(run.code, 0, run.err.join("\n"));
        assert.equal(run.out.at(-1), "imported 3 (added 2, updated 1), rejected 2");
        const stored = await clientsOf(db.sql, HARBOR_DENTAL.id);
        assert.equal(stored.length, seeded.length + 2);
        assert.deepEqual(stored.find((client) => client.phone === "+15550102233"), {
          phone: "+15550102233",
          first_name: "Ada",
          last_name: "Lovelace",
          notes: "Prefers email, not calls",
        });
        assert.deepEqual(stored.find((client) => client.phone === "+442079460958"), {
          phone: "+442079460958",
          first_name: "Alan",
          last_name: "Turing",
          notes: "",
        });
        assert.deepEqual(stored.find((client) => client.phone === HARBOR_DENTAL.janeDoePhone), {
          ...jane,
          last_name: "Doe-Smith",
        });
      });

      await t.step(
        "a re-import updates, never duplicates, and writes nothing unchanged",
        async () => {
          const before = await db.sql<{ phone: string; updated_at: Date }[]>`
          select phone, updated_at from public.clients where org_id = ${HARBOR_DENTAL.id}
          order by phone`;
          const again = await runImport(db.url, "harbor-dental", file);
          assert.equal(again.code, 0);
          assert.deepEqual(again.out.slice(-2), [
            "imported 3 (added 0, updated 3), rejected 2",
            "3 of the updated already had these values (not written)",
          ]);
          const after = await db.sql<{ phone: string; updated_at: Date }[]>`
          select phone, updated_at from public.clients where org_id = ${HARBOR_DENTAL.id}
          order by phone`;
          assert.deepEqual(after, before);

          // New values replace stored ones; empty cells keep them.
          const changed = await writeCsv(dir, "changed.csv", [
            "last_name,phone,notes",
            "Byron,+1 555 010 2233,", // Ada: new last name, notes kept
            ",+44 20 7946 0958,Call after 5pm", // Alan: notes set, name kept
          ]);
          const run = await runImport(db.url, "harbor-dental", changed);
          assert.equal(run.out.at(-1), "imported 2 (added 0, updated 2), rejected 0");
          const stored = await clientsOf(db.sql, HARBOR_DENTAL.id);
          assert.equal(stored.length, seeded.length + 2);
          assert.deepEqual(
            stored.filter((client) => ["+15550102233", "+442079460958"].includes(client.phone)),
            [
              {
                phone: "+15550102233",
                first_name: "Ada",
                last_name: "Byron",
                notes: "Prefers email, not calls",
              },
              {
                phone: "+442079460958",
                first_name: "Alan",
                last_name: "Turing",
                notes: "Call after 5pm",
              },
            ],
          );
        },
      );

      await t.step("a dry run of new rows counts them as added and adds nothing", async () => {
        const before = await clientsOf(db.sql, HARBOR_DENTAL.id);
        const fresh = await writeCsv(dir, "fresh.csv", [
          "phone",
          randomUsNumber(),
          randomUsNumber(),
          "+1 555 010 2233",
        ]);
        const run = await runImport(db.url, "harbor-dental", "--dry-run", fresh);
        assert.deepEqual(run.out.slice(-3), [
          "imported 3 (added 2, updated 1), rejected 0",
          "1 of the updated already had these values (not written)",
          "dry run: nothing was changed",
        ]);
        assert.deepEqual(await clientsOf(db.sql, HARBOR_DENTAL.id), before);
      });

      await t.step("an unknown org, an unreadable file or a bad header exits 1", async () => {
        const before = await clientsOf(db.sql, HARBOR_DENTAL.id);
        const unknown = await runImport(db.url, "no-such-org", file);
        assert.equal(unknown.code, 1);
        assert.deepEqual(unknown.err, ['Cannot find org "no-such-org": no org has that slug']);
        assert.deepEqual(unknown.out, []);

        const missing = await runImport(db.url, "harbor-dental", `${dir}/missing.csv`);
        assert.equal(missing.code, 1);
        assert.deepEqual(missing.err, [`Cannot read ${dir}/missing.csv: no such file`]);

        const latin1 = `${dir}/latin1.csv`;
        await Deno.writeFile(
          latin1,
          new Uint8Array([
            ...new TextEncoder().encode("phone,first_name\n5550102233,Ren"),
            0xe9,
            0x0a,
          ]),
        );
        const notUtf8 = await runImport(db.url, "harbor-dental", latin1);
        assert.equal(notUtf8.code, 1);
        assert.match(notUtf8.err[0], /is not UTF-8 text/);

        const headerless = await writeCsv(dir, "headerless.csv", ["5550102299,Jane,Doe"]);
        const noHeader = await runImport(db.url, "harbor-dental", headerless);
        assert.equal(noHeader.code, 1);
        assert.match(noHeader.err[0], /^line 1: the header has no "phone" column/);

        const usage = await runImport(db.url, "harbor-dental");
        assert.equal(usage.code, 1);
        assert.match(usage.err[0], /^usage: import-clients <slug> <file.csv> \[--dry-run\]/);
        const option = await runImport(db.url, "harbor-dental", file, "--force");
        assert.equal(option.code, 1);
        assert.match(option.err[0], /^Unknown option --force/);

        assert.deepEqual(await clientsOf(db.sql, HARBOR_DENTAL.id), before);
      });

      await t.step(
        "an org without a country reads numbers in its first number's region",
        async () => {
          const org = await createOrg(db.sql); // a +1 555 number, no country
          const [{ slug }] = await db.sql<{ slug: string }[]>`
          select slug from public.orgs where id = ${org.id}`;
          const path = await writeCsv(dir, "nocountry.csv", ["phone", "(555) 010-4444"]);
          const run = await runImport(db.url, slug, path);
          assert.equal(run.code, 0, run.err.join("\n"));
          assert.equal(
            run.out[0],
            `numbers without a country code are read as US (the region of the org's number ${org.phoneNumber})`,
          );
          assert.deepEqual((await clientsOf(db.sql, org.id)).map((client) => client.phone), [
            "+15550104444",
          ]);

          await db.sql`delete from public.org_phone_numbers where org_id = ${org.id}`;
          const bare = await runImport(db.url, slug, path);
          assert.equal(
            bare.out[0],
            "numbers need a country code (the org has no country and no number)",
          );
          assert.match(bare.out[1], /^line 2: no country code in "\(555\) 010-4444"/);
        },
      );

      await t.step("batches: counts add up across calls in one transaction", async () => {
        const org = await createOrg(db.sql);
        const rows: ClientRow[] = Array.from({ length: 7 }, (_, i) => ({
          line: i + 2,
          phone: `+1555020${String(i).padStart(4, "0")}`,
          firstName: `F${i}`,
          lastName: null,
          notes: null,
        }));
        assert.deepEqual(
          await importClientRows(db.sql, org.id, rows.slice(0, 3), { batchRows: 2 }),
          { added: 3, updated: 0, unchanged: 0 },
        );
        const changed = rows.map((row, i) => i === 0 ? { ...row, firstName: "New" } : row);
        assert.deepEqual(await importClientRows(db.sql, org.id, changed, { batchRows: 2 }), {
          added: 4,
          updated: 1,
          unchanged: 2,
        });
        assert.equal((await clientsOf(db.sql, org.id)).length, 7);
        // A failing batch rolls back the batches before it.
        const bad = [{ ...rows[0], phone: "+15550209999" }, { ...rows[1], phone: "555" }];
        await assert.rejects(importClientRows(db.sql, org.id, bad, { batchRows: 1 }));
        assert.equal((await clientsOf(db.sql, org.id)).length, 7);
      });

      await t.step("import_clients is for the service role only", async () => {
        const rows = db.sql.json([{ phone: "+15550301111", first_name: "S" }]);
        const result = await withRole(
          db.sql,
          "service_role",
          null,
          (tx) => tx`select public.import_clients(${HARBOR_DENTAL.id}, ${rows}) as r`,
        );
        assert.deepEqual(result[0].r, { added: 1, updated: 0, unchanged: 0 });
        for (const role of ["anon", "authenticated"] as const) {
          await assert.rejects(
            withRole(
              db.sql,
              role,
              null,
              (tx) => tx`select public.import_clients(${HARBOR_DENTAL.id}, ${rows})`,
            ),
            /permission denied for function import_clients/,
          );
        }
        await assert.rejects(
          db.sql`select public.import_clients(${crypto.randomUUID()}, '[]'::jsonb)`,
          /Cannot find org/,
        );
        await assert.rejects(
          db.sql`select public.import_clients(${HARBOR_DENTAL.id}, '{}'::jsonb)`,
          /needs a jsonb array/,
        );
      });
    } finally {
      await db.drop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
