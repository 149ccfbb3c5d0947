import assert from "node:assert/strict";
import {
  formatProblem,
  orgConfigToToml,
  type OrgFileProblem,
  parseOrgFile,
  slugOfPath,
  toOrgConfig,
} from "./org_file.ts";

const HARBOR = await Deno.readTextFile(
  new URL("../../supabase/orgs/harbor-dental.toml", import.meta.url),
);

function problems(text: string, path = "supabase/orgs/acme.toml"): OrgFileProblem[] {
  const result = parseOrgFile(text, path);
  assert.equal(result.ok, false, "the file is refused");
  return result.ok ? [] : result.problems;
}

Deno.test("parseOrgFile() reads the demo org's file", () => {
  const result = parseOrgFile(HARBOR, "supabase/orgs/harbor-dental.toml");
  assert.ok(result.ok, result.ok ? "" : result.problems.map(formatProblem).join("\n"));
  assert.equal(result.slug, "harbor-dental");
  const config = toOrgConfig(result.file);
  assert.deepEqual(config.providers.map((provider) => provider.name), ["Dr. Lee", "Sam Ortiz"]);
  assert.deepEqual(config.providers[0].hours.filter((range) => range.weekday === 1), [
    { weekday: 1, opens: "09:00", closes: "12:00" },
    { weekday: 1, opens: "13:00", closes: "17:00" },
  ]);
  assert.equal(config.providers[0].hours.some((range) => range.weekday === 2), false);
  assert.deepEqual(config.services.map((service) => [service.name, service.default]), [
    ["Check-up", false],
    ["Cleaning", true],
    ["New patient exam", false],
  ]);
  assert.equal(config.max_call_minutes, 10);
});

Deno.test("orgConfigToToml() writes a file that reads back to the same document", () => {
  const first = parseOrgFile(HARBOR, "harbor-dental.toml");
  assert.ok(first.ok);
  const config = toOrgConfig(first.file);
  config.persona = 'Quotes " and backslashes \\ and a tab\t and ünïcødé';
  const again = parseOrgFile(orgConfigToToml(config), "harbor-dental.toml");
  assert.ok(again.ok, again.ok ? "" : again.problems.map(formatProblem).join("\n"));
  assert.deepEqual(toOrgConfig(again.file), config);
});

Deno.test("parseOrgFile() reports five mistakes at once, each with its line and key", () => {
  const text = [
    'name = "Acme Plumbing"', //                                  1
    'timezone = "Mars/Olympus"', //                               2 bad zone
    'numbers = ["+15550100000", "555-0101"]', //                  3 bad number
    "", //                                                        4
    "[[providers]]", //                                           5
    'name = "Ann"', //                                            6
    'hours = { mon = ["09:00-12:00", "11:00-13:00"] }', //        7 overlap
    "", //                                                        8
    "[[services]]", //                                            9
    'name = "Repair"', //                                         10
    "minutes = 60", //                                            11
    'providers = ["Bob"]', //                                     12 unknown provider
    "", //                                                        13
    "[[overrides]]", //                                           14
    'date = "2026-02-30"', //                                     15 no such date
    "closed = true", //                                           16
  ].join("\n");
  const found = problems(text);
  assert.deepEqual(found.map((problem) => [problem.line, problem.key]), [
    [2, "timezone"],
    [3, "numbers[1]"],
    [7, "providers[0].hours.mon"],
    [12, "services[0].providers[0]"],
    [15, "overrides[0].date"],
  ]);
  assert.equal(
    formatProblem(found[0]),
    "supabase/orgs/acme.toml:2: timezone: must be an IANA time zone such as America/New_York",
  );
  assert.match(found[3].message, /"Bob", which is not a provider of this file/);
});

Deno.test("parseOrgFile() locates missing keys, unknown keys and TOML syntax errors", () => {
  const missing = problems(
    'timezone = "UTC"\nnumbers = ["+15550100000"]\n[[providers]]\nhours = {}\n',
  );
  assert.deepEqual(missing.map((problem) => [problem.line, problem.key, problem.message]), [
    [1, "name", "is required"],
    [3, "providers[0].name", "is required"],
  ]);
  const typo = problems(
    'name = "A"\ntimezone = "UTC"\nnumbers = ["+15550100000"]\ngreetng = "hi"\n',
  );
  assert.equal(typo[0].message, "unknown key greetng");
  const syntax = problems('name = "A"\ntimezone = "UTC\n');
  assert.equal(syntax.length, 1);
  assert.equal(syntax[0].line, 2);
});

Deno.test("parseOrgFile() checks overrides, defaults, duplicates and templates", () => {
  const text = [
    'name = "A"',
    'timezone = "Europe/London"',
    'numbers = ["+442071838750"]',
    "[sms]",
    'recovery = "Hi {firstname}"',
    "[[providers]]",
    'name = "Ann"',
    "[[providers]]",
    'name = "ann"',
    "[[services]]",
    'name = "Cut"',
    "minutes = 30",
    'providers = ["Ann"]',
    "default = true",
    "[[services]]",
    'name = "Colour"',
    "minutes = 90",
    'providers = ["Ann"]',
    "default = true",
    "[[overrides]]",
    'date = "2026-12-24"',
    "[[overrides]]",
    'date = "2026-12-24"',
    'hours = ["09:00-12:00"]',
  ].join("\n");
  const found = problems(text, "a.toml");
  assert.deepEqual(found.map((problem) => problem.key), [
    "sms.recovery",
    "providers[1].name",
    "services[1].default",
    "overrides[0]",
    "overrides[1].date",
  ]);
});

Deno.test("slugOfPath() takes the slug from the file name", () => {
  assert.equal(slugOfPath("supabase/orgs/harbor-dental.toml"), "harbor-dental");
  assert.equal(slugOfPath("C:\\orgs\\acme-2.toml"), "acme-2");
  assert.equal(slugOfPath("supabase/orgs/Harbor Dental.toml"), null);
  assert.equal(problems(HARBOR, "Harbor.toml")[0].message.includes("file name"), true);
});
