/**
 * The complete test suite, as the README's test command and CI run it: formatting, lint, type
 * check of every entrypoint, then every test. Without DATABASE_URL the tests use embedded
 * PostgreSQL (PGlite) instances they start and stop themselves.
 *
 * Usage: `npm test` (or `DENO_NO_PACKAGE_JSON=1 deno task test`). Extra arguments go to
 * `deno test`. `deno test` itself is not run with `--quiet`, which would hide the tests' output.
 * @module
 */

const deno = Deno.execPath();

async function step(name: string, args: string[], env?: Record<string, string>): Promise<void> {
  const started = performance.now();
  console.log(`\n== ${name}: deno ${args.join(" ")}`);
  const { code } = await new Deno.Command(deno, {
    args,
    env,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (code !== 0) {
    console.error(`\n== ${name} failed (exit ${code}) after ${seconds} s`);
    Deno.exit(code);
  }
  console.log(`== ${name} passed in ${seconds} s`);
}

if (import.meta.main) {
  await step("format", ["fmt", "--check"]);
  await step("lint", ["lint"]);
  // Quiet: no Download line per npm package on a first run, no Check line per file; type errors
  // and failures to fetch a dependency still print. The tests then find every dependency cached.
  await step("type check", ["check", "--quiet", "supabase/functions/", "scripts/", "tests/"]);
  if (Deno.env.get("DATABASE_URL")) {
    console.log(
      "\n== DATABASE_URL is set: tests create and drop their own databases on that server",
    );
  } else {
    // PGlite serves one database, so each test database is its own embedded instance.
    console.log("\n== DATABASE_URL not set: tests use embedded PostgreSQL (PGlite) instances");
  }
  await step("tests", ["test", "-A", ...Deno.args]);
}
