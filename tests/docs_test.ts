/**
 * The documentation keeps up with the project: the README's two set-up commands are the npm
 * scripts CI runs, every relative link of README.md and docs/*.md (anchors included) resolves, and
 * the operator's guide (docs/operating.md) lists every setting config.ts reads and every log event
 * the functions write.
 * @module
 */

import assert from "node:assert/strict";
import { productSourceFiles } from "../scripts/function_lengths.ts";

const README = "README.md";
const OPERATING = "docs/operating.md";

/** Lines of a Markdown file outside fenced code blocks, with their 1-based line numbers. */
function proseLines(text: string): { line: string; number: number }[] {
  const out: { line: string; number: number }[] = [];
  let fenced = false;
  text.split("\n").forEach((line, index) => {
    if (/^\s*```/.test(line)) {
      fenced = !fenced;
      return;
    }
    if (!fenced) out.push({ line, number: index + 1 });
  });
  return out;
}

/** The anchors GitHub gives a Markdown file's headings (`## Put your business on it` -> `put-your-business-on-it`). */
function headingAnchors(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const { line } of proseLines(text)) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const base = heading.toLowerCase().replace(/[^\p{L}\p{N}\p{M}\s_-]/gu, "").replace(/\s/g, "-");
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}

/** The text of a Markdown section, from its `## title` heading to the next heading of its level. */
function section(text: string, title: string): string {
  const lines = text.split("\n");
  const start = lines.findIndex((line) => line === `## ${title}`);
  assert.ok(start >= 0, `section "## ${title}" missing`);
  const end = lines.findIndex((line, index) => index > start && /^##? /.test(line));
  return lines.slice(start + 1, end < 0 ? undefined : end).join("\n");
}

/** Backticked names in the first column of a section's tables (`| \`NAME\` | ...`). */
function tableNames(sectionText: string): string[] {
  return [...sectionText.matchAll(/^\|\s*`([^`]+)`\s*\|/gm)].map((m) => m[1]);
}

/** Every setting config.ts validates (the keys of its `envSchema`). */
async function configSettings(): Promise<string[]> {
  const source = await Deno.readTextFile("supabase/functions/_shared/config.ts");
  const schemaBlock = source.slice(source.indexOf("const envSchema"), source.indexOf("});"));
  const settings = [...schemaBlock.matchAll(/^\s{2}([A-Z][A-Z0-9_]+):/gm)].map((m) => m[1]);
  assert.ok(settings.length >= 20, `found ${settings.length} settings in config.ts`);
  return settings;
}

/** The functions' source files (tests and benchmarks left out), with their text. */
async function functionSources(): Promise<string[]> {
  const sources: string[] = [];
  for await (const path of productSourceFiles()) {
    sources.push(await Deno.readTextFile(path));
  }
  return sources;
}

/**
 * The events the three functions log, in the ways they log them: `log.info("call_incoming", ...)`,
 * the call session's `log("info", "barge_in", ...)` effects and the bridge's
 * `logFrameProblem("frame_rejected", ...)`.
 */
function loggedEvents(sources: string[]): Set<string> {
  const call = new RegExp(
    String.raw`(?:\.(?:debug|info|warn|error)\(|\blog\(\s*"(?:debug|info|warn|error)",|` +
      String.raw`\blogFrameProblem\()\s*"([a-z][a-z0-9_]*)"`,
    "g",
  );
  const events = new Set<string>();
  for (const source of sources) {
    for (const m of source.matchAll(call)) events.add(m[1]);
  }
  assert.ok(events.size >= 50, `found ${events.size} logged events in supabase/functions`);
  return events;
}

Deno.test("the README's two set-up commands are the package.json scripts CI runs", async () => {
  const readme = await Deno.readTextFile(README);
  assert.match(readme, /^npm install && npm run demo(\s|$)/m, "the demo command");
  assert.match(readme, /^npm install && npm test(\s|$)/m, "the test command");
  const scripts = JSON.parse(await Deno.readTextFile("package.json")).scripts;
  assert.match(scripts.demo, /\bscripts\/demo\.ts$/);
  assert.match(scripts.test, /\bscripts\/test_all\.ts$/);
  const ci = await Deno.readTextFile(".ci/run");
  assert.match(ci, /^npm install && npm test$/m, ".ci/run runs the README's test command");
});

Deno.test("the two commands' first screen stays clean: deno's install script approved, quiet Deno", async () => {
  const pkg = JSON.parse(await Deno.readTextFile("package.json"));
  // npm 11 warns about every install script allowScripts does not cover; deno's installs the binary.
  assert.deepEqual(pkg.allowScripts, { deno: true });
  // Without --quiet, a first run prints a Download line per npm package Deno fetches.
  for (const name of ["demo", "test", "serve"]) {
    assert.match(pkg.scripts[name], /^deno run (-q|--quiet) -A scripts\/\w+\.ts$/, name);
  }
});

Deno.test("the README points to every page under docs/", async () => {
  const readme = section(await Deno.readTextFile(README), "Where to go next");
  for await (const entry of Deno.readDir("docs")) {
    if (!entry.name.endsWith(".md")) continue;
    assert.ok(readme.includes(`](docs/${entry.name})`), `README: no link to docs/${entry.name}`);
  }
  assert.ok(readme.includes(`](${OPERATING})`));
});

Deno.test("every relative link of README.md and docs/*.md resolves, anchors included", async () => {
  const files = [README];
  for await (const entry of Deno.readDir("docs")) {
    if (entry.name.endsWith(".md")) files.push(`docs/${entry.name}`);
  }
  const broken: string[] = [];
  let checked = 0;
  for (const file of files) {
    const base = new URL(file, `file://${Deno.cwd()}/`);
    for (const { line, number } of proseLines(await Deno.readTextFile(file))) {
      for (const m of line.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1];
        if (/^[a-z]+:/i.test(target)) continue; // https:, mailto:
        checked++;
        const [path, anchor] = target.split("#");
        const url = path === "" ? base : new URL(path, base);
        let text: string | null = null;
        try {
          const info = await Deno.stat(url);
          if (info.isFile && url.pathname.endsWith(".md")) text = await Deno.readTextFile(url);
        } catch {
          broken.push(`${file}:${number}: ${target} (no such file)`);
          continue;
        }
        if (anchor !== undefined && text !== null && !headingAnchors(text).has(anchor)) {
          broken.push(`${file}:${number}: ${target} (no such heading)`);
        }
      }
    }
  }
  assert.ok(checked >= 30, `only ${checked} links found`);
  assert.deepEqual(broken, []);
});

Deno.test("docs/operating.md's settings table lists every setting config.ts reads", async () => {
  const documented = new Set(tableNames(section(await Deno.readTextFile(OPERATING), "Settings")));
  const missing = (await configSettings()).filter((name) => !documented.has(name));
  assert.deepEqual(missing, [], "settings missing from docs/operating.md, Settings");
});

Deno.test("the README's configuration table names the settings a deploy requires", async () => {
  const names = tableNames(section(await Deno.readTextFile(README), "Configuration"));
  const deploy = await Deno.readTextFile("scripts/deploy.sh");
  const required = /^readonly REQUIRED_SETTINGS=\(([^)]*)\)/m.exec(deploy)?.[1].split(/\s+/);
  assert.ok(required && required.length >= 4, "REQUIRED_SETTINGS in scripts/deploy.sh");
  for (const name of required) assert.ok(names.includes(name), `README: ${name} missing`);
  const example = await Deno.readTextFile(".env.example");
  for (const name of names) {
    assert.match(example, new RegExp(`^${name}=`, "m"), `${name} is not in .env.example`);
  }
});

Deno.test("docs/operating.md's log events are exactly the events the functions log", async () => {
  const catalogue = section(await Deno.readTextFile(OPERATING), "Log events");
  const sources = await functionSources();
  const logged = loggedEvents(sources);
  const undocumented = [...logged].filter((event) => !catalogue.includes(`\`${event}\``)).sort();
  assert.deepEqual(undocumented, [], "logged but missing from docs/operating.md, Log events");
  // A documented event must at least be a string in the functions' code (not only in a comment).
  const stale = tableNames(catalogue)
    .filter((event) => !sources.some((source) => source.includes(`"${event}"`)))
    .sort();
  assert.deepEqual(stale, [], "in docs/operating.md, Log events, but in no function's code");
});
