/**
 * scripts/deploy.sh, run by bash in a sandbox copy of the project: shellcheck, the dry run, the
 * real path against a fake Supabase CLI (tests/fixtures/fake_supabase/supabase), the Twilio number
 * step against a fake of Twilio's IncomingPhoneNumbers REST endpoints, and the smoke test against
 * the real voice-frontdoor handler, which verifies the signature bash and openssl computed.
 * @module
 */
import assert from "node:assert/strict";
import { createMemoryLogger } from "../supabase/functions/_shared/log.ts";
import type { CallEventInput } from "../supabase/functions/_shared/store/types.ts";
import { createFrontdoorHandler } from "../supabase/functions/voice-frontdoor/handler.ts";
import { createTestDatabase } from "./support/test_db.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");
const REF = "abcdefghijklmnopqrst";
const ACCOUNT_SID = "AC" + "0123456789abcdef".repeat(2);
const AUTH_TOKEN = "twilio-auth-token-value-0123456789";
const OPENAI_KEY = "sk-test-openai-key-never-printed";
const INTERNAL_SECRET = "internal-secret-value-".repeat(2);
const PHONE = "+15550100000";
const NUMBER_SID = "PN" + "a".repeat(32);
const SMOKE_CALL_SID = "CA" + "0".repeat(32);
const SECRET_VALUES = [AUTH_TOKEN, OPENAI_KEY, INTERNAL_SECRET];

/** Every setting a deploy needs, plus keys that must never be sent as secrets. */
function completeSettings(extra: Record<string, string> = {}): Record<string, string> {
  return {
    TWILIO_AUTH_TOKEN: AUTH_TOKEN,
    TWILIO_ACCOUNT_SID: ACCOUNT_SID,
    TWILIO_PHONE_NUMBER: PHONE,
    OPENAI_API_KEY: OPENAI_KEY,
    VOICE_INTERNAL_SECRET: INTERNAL_SECRET,
    OPENAI_REALTIME_MODEL: "gpt-realtime-mini",
    LOG_LEVEL: "",
    SUPABASE_URL: "https://elsewhere.supabase.co",
    DATABASE_URL: "postgres://postgres@127.0.0.1:5432/postgres",
    NOT_A_SETTING: "1",
    ...extra,
  };
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A copy of the files deploy.sh reads, a fake CLI and docker on PATH, and an empty HOME. */
interface Sandbox {
  dir: string;
  home: string;
  writeSettings(settings: Record<string, string>): Promise<void>;
  /** Runs deploy.sh; `undefined` in `env` removes a variable set by default. */
  run(args: string[], env?: Record<string, string | undefined>): Promise<RunResult>;
  /** The fake CLI's invocations, one array of arguments each. */
  calls(): Promise<string[][]>;
  /** The env file the fake CLI was given by `secrets set`, parsed. */
  sentSecrets(): Promise<Record<string, string>>;
  cleanup(): Promise<void>;
}

async function createSandbox(): Promise<Sandbox> {
  const dir = await Deno.makeTempDir({ prefix: "deploy_test_" });
  const bin = `${dir}/.bin`;
  const home = `${dir}/.home`;
  const log = `${dir}/.supabase-calls.log`;
  await Deno.mkdir(`${dir}/scripts`, { recursive: true });
  await Deno.mkdir(`${dir}/supabase`, { recursive: true });
  await Deno.mkdir(bin);
  await Deno.mkdir(home);
  for (
    const path of ["scripts/deploy.sh", ".env.example", "package.json", "supabase/config.toml"]
  ) {
    await Deno.copyFile(`${ROOT}/${path}`, `${dir}/${path}`);
  }
  await Deno.copyFile(`${ROOT}/tests/fixtures/fake_supabase/supabase`, `${bin}/supabase`);
  await Deno.chmod(`${bin}/supabase`, 0o755);
  await Deno.writeTextFile(
    `${bin}/docker`,
    '#!/usr/bin/env bash\n[[ "${1:-}" == info && ${FAKE_DOCKER_RUNNING:-0} == 1 ]]\n',
  );
  await Deno.chmod(`${bin}/docker`, 0o755);
  return {
    dir,
    home,
    async writeSettings(settings) {
      const lines = Object.entries(settings).map(([key, value]) => `${key}=${value}`);
      await Deno.writeTextFile(`${dir}/supabase/.env`, `# test settings\n${lines.join("\n")}\n`);
    },
    async run(args, env = {}) {
      const base: Record<string, string | undefined> = {
        PATH: `${bin}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
        HOME: home,
        SUPABASE_CLI: `${bin}/supabase`,
        SUPABASE_ACCESS_TOKEN: "sbp_test_token",
        FAKE_SUPABASE_LOG: log,
        ...env,
      };
      const defined = Object.fromEntries(
        Object.entries(base).filter((entry): entry is [string, string] => entry[1] !== undefined),
      );
      const output = await new Deno.Command("bash", {
        args: [`${dir}/scripts/deploy.sh`, ...args],
        cwd: dir,
        clearEnv: true,
        env: defined,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const decoder = new TextDecoder();
      return {
        code: output.code,
        stdout: decoder.decode(output.stdout),
        stderr: decoder.decode(output.stderr),
      };
    },
    async calls() {
      try {
        const text = await Deno.readTextFile(log);
        return text.split("\n").filter((line) => line !== "").map((line) => line.split("\t"));
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return [];
        throw error;
      }
    },
    async sentSecrets() {
      const text = await Deno.readTextFile(`${log}.env-file`);
      return Object.fromEntries(
        text.split("\n").filter((line) => line.includes("=")).map((line) => {
          const at = line.indexOf("=");
          return [line.slice(0, at), line.slice(at + 1)];
        }),
      );
    },
    cleanup: () => Deno.remove(dir, { recursive: true }),
  };
}

/** A request to the IncomingPhoneNumbers fake. */
interface NumbersRequest {
  method: string;
  path: string;
  params: Record<string, string>;
  authorized: boolean;
}

/**
 * Twilio's IncomingPhoneNumbers endpoints (list filtered by `PhoneNumber`, update by SID), which
 * tests/doubles/twilio_rest_double.ts does not serve. Checks Basic auth like Twilio (401, code
 * 20003) and, like Twilio's partial-number filter, lists every number containing the query.
 */
function startIncomingNumbersFake(numbers: Record<string, string>) {
  const requests: NumbersRequest[] = [];
  const prefix = `/2010-04-01/Accounts/${ACCOUNT_SID}/IncomingPhoneNumbers`;
  const expectedAuth = `Basic ${btoa(`${ACCOUNT_SID}:${AUTH_TOKEN}`)}`;
  const numberJson = (phone: string, sid: string, params: Record<string, string> = {}) => ({
    sid,
    account_sid: ACCOUNT_SID,
    phone_number: phone,
    voice_url: params.VoiceUrl ?? null,
    voice_method: params.VoiceMethod ?? "POST",
    status_callback: params.StatusCallback ?? "",
    status_callback_method: params.StatusCallbackMethod ?? "POST",
  });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    const params = req.method === "POST"
      ? Object.fromEntries(new URLSearchParams(await req.text()))
      : Object.fromEntries(url.searchParams);
    const authorized = req.headers.get("authorization") === expectedAuth;
    requests.push({ method: req.method, path: url.pathname, params, authorized });
    if (!authorized) {
      return Response.json({ code: 20003, message: "Authenticate", status: 401 }, { status: 401 });
    }
    if (req.method === "GET" && url.pathname === `${prefix}.json`) {
      const query = params.PhoneNumber ?? "";
      const matches = Object.entries(numbers).filter(([phone]) => phone.includes(query));
      return Response.json({
        incoming_phone_numbers: matches.map(([phone, sid]) => numberJson(phone, sid)),
        page: 0,
        page_size: 50,
        next_page_uri: null,
      });
    }
    const update = new RegExp(`^${prefix}/(PN[0-9a-f]{32})\\.json$`).exec(url.pathname);
    const phone = Object.keys(numbers).find((key) => numbers[key] === update?.[1]);
    if (req.method === "POST" && update && phone) {
      return Response.json(numberJson(phone, update[1], params));
    }
    return Response.json({ code: 20404, message: "Not found", status: 404 }, { status: 404 });
  });
  return {
    baseUrl: `http://127.0.0.1:${server.addr.port}`,
    requests,
    close: () => server.shutdown(),
  };
}

/**
 * The real voice-frontdoor handler behind `/functions/v1/voice-frontdoor`, seeing the request at
 * an internal URL as on hosted Supabase, so only a signature over the public URL passes.
 * @param publicBase the public base the handler verifies against; defaults to its own URL
 */
function startFrontdoor(publicBase?: string) {
  const events: CallEventInput[] = [];
  const memory = createMemoryLogger("voice-frontdoor");
  let handler: ((req: Request) => Promise<Response>) | null = null;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    if (url.pathname !== "/functions/v1/voice-frontdoor" || !handler) {
      return Response.json({ msg: "Function not found" }, { status: 404 });
    }
    const internal = new Request("http://edge-runtime.supabase.internal:9000/voice-frontdoor", {
      method: req.method,
      headers: req.headers,
      body: await req.arrayBuffer(),
    });
    return await handler(internal);
  });
  const baseUrl = `http://127.0.0.1:${server.addr.port}/functions/v1`;
  handler = createFrontdoorHandler({
    config: {
      publicFunctionsUrl: publicBase ?? baseUrl,
      twilioAuthToken: AUTH_TOKEN,
      twilioAccountSid: ACCOUNT_SID,
      internalSecret: INTERNAL_SECRET,
      streamTokenTtlSeconds: 60,
    },
    log: memory.logger,
    clock: Date.now,
    newTraceId: () => crypto.randomUUID(),
    recordCallEvent: (event) => {
      events.push(event);
      return Promise.resolve();
    },
    waitUntil: () => {},
  });
  return { baseUrl, events, memory, close: () => server.shutdown() };
}

function assertNoSecrets(result: RunResult): void {
  for (const value of SECRET_VALUES) {
    assert.ok(!result.stdout.includes(value), "a secret value was printed on stdout");
    assert.ok(!result.stderr.includes(value), "a secret value was printed on stderr");
  }
}

function assertInOrder(text: string, fragments: string[]): void {
  let from = 0;
  for (const fragment of fragments) {
    const at = text.indexOf(fragment, from);
    assert.ok(at >= 0, `missing (in order): ${fragment}\n--- output ---\n${text}`);
    from = at + fragment.length;
  }
}

const shellcheckPath = (() => {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/shellcheck`).isFile) return `${dir}/shellcheck`;
    } catch {
      // not in this directory
    }
  }
  return null;
})();
const inCi = Boolean(Deno.env.get("CI"));
if (!shellcheckPath && !inCi) {
  console.warn(
    "deploy_test: shellcheck is not installed, so the shellcheck test is skipped " +
      "(apt-get install -y shellcheck; in CI, where CI is set, it is required)",
  );
}

Deno.test({
  name: "deploy.sh passes shellcheck",
  ignore: !shellcheckPath && !inCi,
  async fn() {
    assert.ok(shellcheckPath, "shellcheck is required in CI: apt-get install -y shellcheck");
    const output = await new Deno.Command(shellcheckPath, {
      args: ["scripts/deploy.sh", "tests/fixtures/fake_supabase/supabase"],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, text);
  },
});

Deno.test("deploy.sh --dry-run lists every step with secrets masked and changes nothing", async () => {
  const sandbox = await createSandbox();
  try {
    await sandbox.writeSettings(completeSettings());
    const result = await sandbox.run(["--dry-run", "--project-ref", REF]);
    assert.equal(result.code, 0, result.stderr);
    const functions = `https://${REF}.supabase.co/functions/v1`;
    const numbers =
      `https://api.twilio.com/2010-04-01/Accounts/${ACCOUNT_SID}/IncomingPhoneNumbers`;
    assertInOrder(result.stdout, [
      `+ supabase link --project-ref ${REF} --yes`,
      "+ supabase db push --remote --yes",
      "TWILIO_AUTH_TOKEN=****",
      "OPENAI_API_KEY=****",
      "VOICE_INTERNAL_SECRET=****",
      "not sent (platform-set, local-only or unknown): DATABASE_URL NOT_A_SETTING SUPABASE_URL",
      "+ supabase secrets set --env-file ",
      "+ supabase functions deploy voice-frontdoor voice-stream voice-action --use-api --yes",
      `+ GET ${numbers}.json?PhoneNumber=%2B15550100000 (Basic auth ${ACCOUNT_SID}:****)`,
      `+ POST ${numbers}/<sid of ${PHONE}>.json`,
      `VoiceUrl=${functions}/voice-frontdoor`,
      "VoiceMethod=POST",
      `StatusCallback=${functions}/voice-action?route=call-status#rc=3&rp=all`,
      "StatusCallbackMethod=POST",
      `+ POST ${functions}/voice-frontdoor (X-Twilio-Signature ****)`,
      `CallSid=${SMOKE_CALL_SID}`,
      "Dry run: nothing was changed.",
      `${functions}/voice-frontdoor`,
      `wss://${REF}.supabase.co/functions/v1/voice-stream`,
    ]);
    assertNoSecrets(result);
    assert.deepEqual(await sandbox.calls(), [], "the dry run ran the CLI");

    // With Docker running, the CLI bundles locally.
    const withDocker = await sandbox.run(["--dry-run", `--project-ref=${REF}`], {
      FAKE_DOCKER_RUNNING: "1",
    });
    assert.equal(withDocker.code, 0, withDocker.stderr);
    assert.match(
      withDocker.stdout,
      /^\+ supabase functions deploy voice-frontdoor voice-stream voice-action --yes$/m,
    );
  } finally {
    await sandbox.cleanup();
  }
});

Deno.test("deploy.sh deploys, wires the Twilio number and passes the signed smoke test, twice", async () => {
  const sandbox = await createSandbox();
  const twilio = startIncomingNumbersFake({
    // Twilio's filter matches partial numbers: the longer number also contains PHONE.
    "+155501000001": "PN" + "b".repeat(32),
    [PHONE]: NUMBER_SID,
  });
  const frontdoor = startFrontdoor();
  try {
    await sandbox.writeSettings(completeSettings({
      PUBLIC_FUNCTIONS_URL: `${frontdoor.baseUrl}/`,
      TWILIO_API_BASE_URL: twilio.baseUrl,
    }));
    const first = await sandbox.run([], { SUPABASE_PROJECT_REF: REF });
    assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}`);
    assertNoSecrets(first);
    const calls = await sandbox.calls();
    const secretsFile = calls[2]?.[3] ?? "";
    assert.deepEqual(calls, [
      ["link", "--project-ref", REF, "--yes"],
      ["db", "push", "--remote", "--yes"],
      ["secrets", "set", "--env-file", secretsFile, "--yes"],
      [
        "functions",
        "deploy",
        "voice-frontdoor",
        "voice-stream",
        "voice-action",
        "--use-api",
        "--yes",
      ],
    ]);
    await assert.rejects(Deno.stat(secretsFile), Deno.errors.NotFound, "secrets file left behind");
    assert.deepEqual(await sandbox.sentSecrets(), {
      OPENAI_API_KEY: OPENAI_KEY,
      OPENAI_REALTIME_MODEL: "gpt-realtime-mini",
      PUBLIC_FUNCTIONS_URL: `${frontdoor.baseUrl}/`,
      TWILIO_ACCOUNT_SID: ACCOUNT_SID,
      TWILIO_API_BASE_URL: twilio.baseUrl,
      TWILIO_AUTH_TOKEN: AUTH_TOKEN,
      TWILIO_PHONE_NUMBER: PHONE,
      VOICE_INTERNAL_SECRET: INTERNAL_SECRET,
    });

    const prefix = `/2010-04-01/Accounts/${ACCOUNT_SID}/IncomingPhoneNumbers`;
    const expectedTwilio = [
      { method: "GET", path: `${prefix}.json`, params: { PhoneNumber: PHONE }, authorized: true },
      {
        method: "POST",
        path: `${prefix}/${NUMBER_SID}.json`,
        params: {
          VoiceUrl: `${frontdoor.baseUrl}/voice-frontdoor`,
          VoiceMethod: "POST",
          StatusCallback: `${frontdoor.baseUrl}/voice-action?route=call-status#rc=3&rp=all`,
          StatusCallbackMethod: "POST",
        },
        authorized: true,
      },
    ];
    assert.deepEqual(twilio.requests, expectedTwilio);

    // The real handler verified the signature computed by bash and openssl.
    assert.equal(frontdoor.memory.entries("security_rejected").length, 0);
    assert.equal(frontdoor.events.length, 1);
    assert.equal(frontdoor.events[0].callSid, SMOKE_CALL_SID);
    assert.equal(frontdoor.events[0].kind, "call_incoming");
    assertInOrder(first.stdout, [
      `Twilio number ${PHONE} (${NUMBER_SID}) now calls voice-frontdoor`,
      "voice-frontdoor answered <Connect><Stream> TwiML",
      `Voice URL (A call comes in, POST): ${frontdoor.baseUrl}/voice-frontdoor`,
    ]);

    // Again: the same commands and requests, the same smoke call (one idempotency key).
    const second = await sandbox.run([], { SUPABASE_PROJECT_REF: REF });
    assert.equal(second.code, 0, `${second.stdout}\n${second.stderr}`);
    const again = await sandbox.calls();
    assert.equal(again.length, 8);
    assert.deepEqual(again.slice(4).map((call) => call.filter((arg) => !arg.startsWith("/"))), [
      ["link", "--project-ref", REF, "--yes"],
      ["db", "push", "--remote", "--yes"],
      ["secrets", "set", "--env-file", "--yes"],
      [
        "functions",
        "deploy",
        "voice-frontdoor",
        "voice-stream",
        "voice-action",
        "--use-api",
        "--yes",
      ],
    ]);
    assert.deepEqual(twilio.requests.slice(2), expectedTwilio);
    assert.deepEqual(frontdoor.events.map((event) => event.idempotencyKey), [
      `incoming:${SMOKE_CALL_SID}`,
      `incoming:${SMOKE_CALL_SID}`,
    ]);
  } finally {
    await Promise.all([twilio.close(), frontdoor.close()]);
    await sandbox.cleanup();
  }
});

Deno.test("deploy.sh names every missing or bad setting at once and changes nothing", async () => {
  const sandbox = await createSandbox();
  try {
    const noFile = await sandbox.run(["--project-ref", REF]);
    assert.equal(noFile.code, 1);
    assert.match(noFile.stderr, /env file not found: .*supabase\/\.env \(copy \.env\.example/);

    await sandbox.writeSettings({
      OPENAI_API_KEY: OPENAI_KEY,
      VOICE_INTERNAL_SECRET: "too-short",
      TWILIO_PHONE_NUMBER: "5550100000",
    });
    const result = await sandbox.run(["--project-ref", REF]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /^deploy: missing in .*\/supabase\/\.env: TWILIO_AUTH_TOKEN TWILIO_ACCOUNT_SID$/m,
    );
    assert.match(result.stderr, /VOICE_INTERNAL_SECRET must be at least 32 characters/);
    assert.match(result.stderr, /TWILIO_PHONE_NUMBER must be E\.164/);
    assert.match(result.stderr, /nothing was changed/);
    assert.equal(result.stdout, "");
    assertNoSecrets(result);
    assert.deepEqual(await sandbox.calls(), []);

    // --env-file is read relative to the directory the script is started from.
    await Deno.writeTextFile(
      `${sandbox.dir}/other.env`,
      Object.entries(completeSettings()).map(([key, value]) => `${key}=${value}`).join("\n"),
    );
    const other = await sandbox.run(["--dry-run", "--project-ref", REF, "--env-file", "other.env"]);
    assert.equal(other.code, 0, other.stderr);
  } finally {
    await sandbox.cleanup();
  }
});

Deno.test("deploy.sh finds the project ref in the flag, the environment or the link", async () => {
  const sandbox = await createSandbox();
  try {
    await sandbox.writeSettings(completeSettings());
    const none = await sandbox.run(["--dry-run"]);
    assert.equal(none.code, 1);
    assert.match(
      none.stderr,
      /no Supabase project ref: pass --project-ref REF, set SUPABASE_PROJECT_REF, or link once/,
    );
    const bad = await sandbox.run(["--dry-run", "--project-ref", "Not-A-Ref"]);
    assert.equal(bad.code, 1);
    assert.match(
      bad.stderr,
      /project ref 'Not-A-Ref' from --project-ref is not a Supabase project ref/,
    );

    const other = "zyxwvutsrqponmlkjihg";
    const fromEnv = await sandbox.run(["--dry-run"], { SUPABASE_PROJECT_REF: other });
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    assert.match(fromEnv.stdout, new RegExp(`Project ${other} \\(from SUPABASE_PROJECT_REF\\)`));
    const flagWins = await sandbox.run(["--dry-run", "--project-ref", REF], {
      SUPABASE_PROJECT_REF: other,
    });
    assert.match(flagWins.stdout, new RegExp(`link --project-ref ${REF} --yes`));

    await Deno.mkdir(`${sandbox.dir}/supabase/.temp`);
    await Deno.writeTextFile(`${sandbox.dir}/supabase/.temp/project-ref`, `${REF}\n`);
    const linked = await sandbox.run(["--dry-run"]);
    assert.equal(linked.code, 0, linked.stderr);
    assert.match(linked.stdout, /from the linked project \(supabase\/\.temp\/project-ref\)/);
  } finally {
    await sandbox.cleanup();
  }
});

Deno.test("deploy.sh needs a Supabase login: token, token file or keyring", async () => {
  const sandbox = await createSandbox();
  try {
    await sandbox.writeSettings(completeSettings());
    const args = ["--dry-run", "--project-ref", REF];
    const none = await sandbox.run(args, { SUPABASE_ACCESS_TOKEN: undefined });
    assert.equal(none.code, 1);
    assert.match(
      none.stderr,
      /not logged in to Supabase: run npx supabase login, or set SUPABASE_ACCESS_TOKEN/,
    );
    assert.deepEqual(await sandbox.calls(), [["whoami"]]);

    const keyring = await sandbox.run(args, {
      SUPABASE_ACCESS_TOKEN: undefined,
      FAKE_SUPABASE_LOGGED_IN: "1",
    });
    assert.equal(keyring.code, 0, keyring.stderr);

    await Deno.mkdir(`${sandbox.home}/.supabase`);
    await Deno.writeTextFile(`${sandbox.home}/.supabase/access-token`, "sbp_from_login");
    const loggedIn = await sandbox.run(args, { SUPABASE_ACCESS_TOKEN: undefined });
    assert.equal(loggedIn.code, 0, loggedIn.stderr);
    assert.equal((await sandbox.calls()).length, 2, "whoami runs only without a token");
  } finally {
    await sandbox.cleanup();
  }
});

Deno.test("deploy.sh stops at the first failing step", async () => {
  const sandbox = await createSandbox();
  try {
    await sandbox.writeSettings(completeSettings({ TWILIO_PHONE_NUMBER: "" }));
    const result = await sandbox.run(["--project-ref", REF], { FAKE_SUPABASE_FAIL: "db push" });
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /fake supabase: failing as asked/);
    assert.deepEqual((await sandbox.calls()).map((call) => call[0]), ["link", "db"]);
  } finally {
    await sandbox.cleanup();
  }
});

Deno.test("deploy.sh explains Twilio refusals and unknown numbers", async () => {
  const sandbox = await createSandbox();
  const twilio = startIncomingNumbersFake({ "+15550109999": NUMBER_SID });
  try {
    await sandbox.writeSettings(completeSettings({ TWILIO_API_BASE_URL: twilio.baseUrl }));
    const unknown = await sandbox.run(["--project-ref", REF]);
    assert.equal(unknown.code, 1);
    assert.match(
      unknown.stderr,
      new RegExp(`TWILIO_PHONE_NUMBER \\${PHONE} is not a number of Twilio account ${ACCOUNT_SID}`),
    );

    await sandbox.writeSettings(completeSettings({
      TWILIO_API_BASE_URL: twilio.baseUrl,
      TWILIO_AUTH_TOKEN: "a-revoked-auth-token-0000000000",
    }));
    const refused = await sandbox.run(["--project-ref", REF]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /Twilio refused TWILIO_ACCOUNT_SID\/TWILIO_AUTH_TOKEN \(HTTP 401\)/,
    );
    assert.equal(twilio.requests.at(-1)?.authorized, false);
    assert.equal(twilio.requests.filter((request) => request.method === "POST").length, 0);
  } finally {
    await twilio.close();
    await sandbox.cleanup();
  }
});

Deno.test("deploy.sh smoke test fails with a hint when the public URL is not the one signed", async () => {
  const sandbox = await createSandbox();
  // The functions believe they are served at a custom domain, but the env file names another base.
  const frontdoor = startFrontdoor("https://voice.example.com/functions/v1");
  try {
    await sandbox.writeSettings(completeSettings({
      TWILIO_PHONE_NUMBER: "",
      PUBLIC_FUNCTIONS_URL: frontdoor.baseUrl,
    }));
    const result = await sandbox.run(["--project-ref", REF]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /voice-frontdoor refused the signature \(HTTP 403\): PUBLIC_FUNCTIONS_URL must be the exact public base/,
    );
    assert.equal(frontdoor.memory.entries("security_rejected")[0]?.reason, "signature_mismatch");
    assertNoSecrets(result);
  } finally {
    await frontdoor.close();
    await sandbox.cleanup();
  }
});

/**
 * What the sandbox's Deno needs of this process's environment: the binary, the module cache the
 * suite's type check filled (the sandbox's HOME is empty) and the machine's certificates.
 */
function denoEnv(): Record<string, string> {
  const env: Record<string, string> = {
    DENO_BIN: Deno.execPath(),
    DENO_DIR: Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`,
  };
  for (const name of ["SSL_CERT_FILE", "SSL_CERT_DIR", "DENO_CERT", "HTTPS_PROXY", "NO_PROXY"]) {
    const value = Deno.env.get(name);
    if (value) env[name] = value;
  }
  return env;
}

Deno.test({
  name: "deploy.sh applies the org files after the migrations; its dry run shows the diff only",
  sanitizeResources: false,
  async fn() {
    const sandbox = await createSandbox();
    const db = await createTestDatabase({ seed: false });
    try {
      await sandbox.writeSettings(completeSettings());
      // scripts/org.ts and what it resolves imports with, as in a checkout.
      for (
        const path of [
          "scripts/org.ts",
          "scripts/org",
          "supabase/functions",
          "deno.json",
          "deno.lock",
        ]
      ) {
        await Deno.symlink(`${ROOT}/${path}`, `${sandbox.dir}/${path}`);
      }
      await Deno.mkdir(`${sandbox.dir}/supabase/orgs`);
      await Deno.writeTextFile(
        `${sandbox.dir}/supabase/orgs/corner-clinic.toml`,
        [
          'name = "Corner Clinic"',
          'timezone = "Europe/Dublin"',
          'numbers = ["+35315550100"]',
          "[[providers]]",
          'name = "Dr. Byrne"',
          'hours = { mon = ["09:00-13:00"] }',
          "[[services]]",
          'name = "Consultation"',
          "minutes = 20",
          'providers = ["Dr. Byrne"]',
        ].join("\n"),
      );
      // Any password: the test server trusts loopback, and it must never be printed.
      const password = "db-password-never-printed";
      const dbUrl = db.url.replace("://postgres@", `://postgres:${password}@`);
      const env = { SUPABASE_DB_URL: dbUrl, ...denoEnv() };
      const dry = await sandbox.run(["--dry-run", "--project-ref", REF], env);
      assert.equal(dry.code, 0, `${dry.stdout}\n${dry.stderr}`);
      assertInOrder(dry.stdout, [
        "+ supabase db push --remote --yes",
        "==> Apply the org files (supabase/orgs/*.toml)",
        "+ deno run -A scripts/org.ts apply supabase/orgs/corner-clinic.toml --dry-run " +
        "--database-url postgres://postgres:****@",
        'created org "Corner Clinic": 1 numbers, 1 providers, 1 services',
        "nothing was applied (dry run)",
        "+ supabase secrets set --env-file ",
      ]);
      assert.ok(!dry.stdout.includes(password) && !dry.stderr.includes(password));
      const count = async () =>
        (await db.sql`select count(*)::int as n from public.orgs where slug = 'corner-clinic'`)[0]
          .n;
      assert.equal(await count(), 0, "the dry run applied nothing");

      // A server that is not there (port 1 refuses): fails the same on PostgreSQL and on PGlite,
      // whose socket server answers for any database name.
      const broken = await sandbox.run(["--dry-run", "--project-ref", REF], {
        ...env,
        SUPABASE_DB_URL: `postgres://postgres:${password}@127.0.0.1:1/postgres`,
      });
      assert.notEqual(broken.code, 0);
      assert.match(broken.stderr, /the org files were not applied/);

      const skipped = await sandbox.run(["--dry-run", "--project-ref", REF], denoEnv());
      assert.equal(skipped.code, 0, skipped.stderr);
      assert.match(skipped.stdout, /skipped: set SUPABASE_DB_URL .* supabase\/orgs\/corner-clinic/);
    } finally {
      await db.drop();
      await sandbox.cleanup();
    }
  },
});
