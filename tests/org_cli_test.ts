/**
 * `scripts/org.ts` against a real database: apply is all-or-nothing and a second apply changes
 * nothing, numbers leave with the file, providers with future bookings are never removed, export
 * brings the stored org back as its file.
 * @module
 */
import assert from "node:assert/strict";
import { runOrgCli } from "../scripts/org.ts";
import { createTestDatabase } from "./support/test_db.ts";
import { randomPhone, rpc, startCall } from "./db/fixtures.ts";

const HARBOR_FILE = new URL("../supabase/orgs/harbor-dental.toml", import.meta.url);

/** Runs the CLI; returns its exit code and what it printed. */
async function org(databaseUrl: string, ...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runOrgCli([...argv, "--database-url", databaseUrl], {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    env: {},
  });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

function acmeFile(numbers: string[], providers: string[] = ["Ann", "Bo"]): string {
  return [
    'name = "Acme Plumbing"',
    'timezone = "America/Chicago"',
    'country = "US"',
    `numbers = [${numbers.map((number) => JSON.stringify(number)).join(", ")}]`,
    "[booking]",
    "min_notice_minutes = 0",
    ...providers.flatMap((name) => [
      "[[providers]]",
      `name = ${JSON.stringify(name)}`,
      'hours = { mon = ["08:00-16:00"], tue = ["08:00-16:00"], wed = ["08:00-16:00"], ' +
      'thu = ["08:00-16:00"], fri = ["08:00-16:00"] }',
    ]),
    "[[services]]",
    'name = "Repair"',
    "minutes = 60",
    `providers = [${providers.map((name) => JSON.stringify(name)).join(", ")}]`,
    "default = true",
    "[[overrides]]",
    'date = "2030-12-25"',
    "closed = true",
  ].join("\n") + "\n";
}

Deno.test({
  name: "scripts/org.ts on a real database",
  sanitizeResources: false,
  async fn(t) {
    const db = await createTestDatabase();
    const dir = await Deno.makeTempDir();
    const acme = `${dir}/acme-plumbing.toml`;
    const numbers = [randomPhone(), randomPhone()];
    try {
      await t.step("apply creates an org, and a second apply changes nothing", async () => {
        await Deno.writeTextFile(acme, acmeFile(numbers));
        const dry = await org(db.url, "apply", acme, "--dry-run");
        assert.equal(dry.code, 0, dry.err);
        assert.match(dry.out, /created org "Acme Plumbing": 2 numbers, 2 providers, 1 services/);
        assert.match(dry.out, /nothing was applied \(dry run\)/);
        const [{ count }] = await db.sql`
          select count(*)::int from public.orgs where slug = 'acme-plumbing'`;
        assert.equal(count, 0, "a dry run creates nothing");

        const first = await org(db.url, "apply", acme);
        assert.equal(first.code, 0, first.err);
        assert.match(first.out, /acme-plumbing:\n {2}created org/);
        const second = await org(db.url, "apply", acme, String(HARBOR_FILE.pathname));
        assert.equal(second.code, 0, second.err);
        assert.equal(
          second.out,
          "acme-plumbing: no changes\nharbor-dental: no changes\n2 orgs read, 0 changed",
        );
        // The org books: a call to its number gets Repair with Ann or Bo.
        const callSid = await startCall(db.sql, { to: numbers[0], from: randomPhone() });
        const booked = await rpc<{ ok: boolean; appointment: { provider_name: string } }>(
          db.sql,
          "book_appointment",
          [callSid, "Pat", "Doe", "2030-03-11T14:00:00Z"],
        );
        assert.equal(booked.ok, true);
        assert.equal(booked.appointment.provider_name, "Ann");
      });

      await t.step(
        "a file with five mistakes is refused whole with five located messages",
        async () => {
          const before = await org(db.url, "export", "acme-plumbing");
          const broken = acmeFile(numbers)
            .replace('timezone = "America/Chicago"', 'timezone = "America/Chicgo"')
            .replace("min_notice_minutes = 0", "min_notice_minutes = -5")
            .replace('name = "Repair"', 'name = ""')
            .replace("minutes = 60", 'minutes = "sixty"')
            .replace('date = "2030-12-25"', 'date = "25/12/2030"');
          await Deno.writeTextFile(acme, broken);
          const result = await org(db.url, "apply", acme);
          assert.equal(result.code, 1);
          const lines = result.err.split("\n");
          assert.equal(lines.length, 6, result.err);
          for (const line of lines.slice(0, 5)) {
            assert.match(line, /acme-plumbing\.toml:\d+: \S+: /);
          }
          assert.deepEqual(
            lines.slice(0, 5).map((line) => line.split(": ")[1]),
            [
              "timezone",
              "booking.min_notice_minutes",
              "services[0].name",
              "services[0].minutes",
              "overrides[0].date",
            ],
          );
          assert.equal(lines[5], "5 problems found; nothing was applied");
          assert.equal((await org(db.url, "export", "acme-plumbing")).out, before.out);
        },
      );

      await t.step("a number removed from the file is detached from the org", async () => {
        await Deno.writeTextFile(acme, acmeFile([numbers[0]]));
        const result = await org(db.url, "apply", acme);
        assert.match(result.out, new RegExp(`detached number \\${numbers[1]}`));
        const rows = await db.sql`
          select phone_number from public.org_phone_numbers where phone_number in ${
          db.sql(numbers)
        }`;
        assert.deepEqual(rows.map((row) => row.phone_number), [numbers[0]]);
      });

      await t.step(
        "a provider with future bookings is never removed; the error lists them",
        async () => {
          await Deno.writeTextFile(acme, acmeFile([numbers[0]], ["Bo"]));
          const refused = await org(db.url, "apply", acme);
          assert.equal(refused.code, 1);
          assert.match(
            refused.err,
            /providers removed from the file have future bookings: Ann on 2030-03-11 09:00 \(code [A-Z0-9]{6}\); nothing was applied/,
          );
          const [{ active }] = await db.sql`
          select p.active from public.providers p join public.orgs o on o.id = p.org_id
          where o.slug = 'acme-plumbing' and p.name = 'Ann'`;
          assert.equal(active, true);
          // Once the booking is cancelled, Ann is retired (kept for the history), not deleted.
          await db.sql`update public.appointments a set status = 'cancelled'
          from public.providers p where p.id = a.provider_id and p.name = 'Ann'
            and p.org_id = (select id from public.orgs where slug = 'acme-plumbing')`;
          const applied = await org(db.url, "apply", acme);
          assert.equal(applied.code, 0, applied.err);
          assert.match(applied.out, /removed provider "Ann"/);
          assert.match(applied.out, /changed service "Repair": providers/);
          const [{ count }] = await db.sql`select count(*)::int from public.appointments a
          join public.orgs o on o.id = a.org_id where o.slug = 'acme-plumbing'`;
          assert.equal(count, 1, "appointments are never deleted");
        },
      );

      await t.step("a number of another org is refused and nothing is applied", async () => {
        await Deno.writeTextFile(acme, acmeFile([numbers[0], "+15550100000"], ["Bo"]));
        const result = await org(db.url, "apply", acme);
        assert.equal(result.code, 1);
        assert.match(result.err, /\+15550100000 \(org harbor-dental\)/);
      });

      await t.step("export prints the org as its file, which applies as no change", async () => {
        const exported = await org(db.url, "export", "harbor-dental");
        assert.equal(exported.code, 0, exported.err);
        assert.match(exported.out, /^name = "Harbor Dental"$/m);
        assert.match(exported.out, /^hours = \{ mon = \["09:00-17:00"\], tue = /m);
        const copy = `${dir}/harbor-dental.toml`;
        await Deno.writeTextFile(copy, exported.out);
        const again = await org(db.url, "apply", copy);
        assert.equal(again.out, "harbor-dental: no changes\n1 org read, 0 changed");
        const unknown = await org(db.url, "export", "no-such-org");
        assert.equal(unknown.code, 1);
        assert.equal(unknown.err, 'org export: Cannot find org "no-such-org"');
      });

      await t.step("the CLI explains itself", async () => {
        const help = await org(db.url, "help");
        assert.equal(help.code, 0);
        assert.match(help.out, /apply <file>\.\.\. \[--dry-run\]/);
        const wrong = await org(db.url, "frobnicate");
        assert.equal(wrong.code, 2);
        const none = await runOrgCli(["apply", acme], { out: () => {}, err: () => {}, env: {} })
          .catch((error) => error);
        assert.equal(none, 1);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
      await db.drop();
    }
  },
});
