/**
 * Security checks through the served local stack (the functions behind Supabase's router, a real
 * Postgres, the Twilio and OpenAI Realtime doubles): unsigned and mis-signed requests to every
 * endpoint refused with their documented status, a stream token bound to its call, row level
 * security across every table and view for `anon` and other tenants (the table-by-table cases are
 * in `tests/db/rls_test.ts`), and no secret or full phone number in any log line.
 * @module
 */
import assert from "node:assert/strict";
import { snapshotRowCounts } from "../support/db_snapshot.ts";
import { findLogLeaks, secretsOf } from "../support/log_leaks.ts";
import { watchProcess } from "../support/process_guard.ts";
import { withRole } from "../support/test_db.ts";
import {
  type CallStack,
  DEMO_ORG_NUMBER,
  JANE_DOE_NUMBER,
  startCallStack,
} from "../support/call_stack.ts";
import { signTwilioRequest, twilioSid } from "../doubles/twilio_rest_double.ts";
import { addMember, createOrg, createUser } from "../db/fixtures.ts";
import {
  issueStreamToken,
  signInternalRequest,
} from "../../supabase/functions/_shared/internal_auth.ts";
import { LOCAL_TWILIO_ACCOUNT_SID } from "../../scripts/local_stack.ts";

const E2E = { sanitizeOps: false, sanitizeResources: false } as const;
const FORM = "application/x-www-form-urlencoded";
/** Close code voice-stream uses for a refused stream token (policy violation). */
const POLICY_VIOLATION = 1008;

/** Every function log line of this file's stack, for the final scan. */
let capturedLines: string[] = [];
let capturedSecrets: Record<string, string> = {};

function callParams(callSid: string): Record<string, string> {
  return {
    AccountSid: LOCAL_TWILIO_ACCOUNT_SID,
    ApiVersion: "2010-04-01",
    CallSid: callSid,
    CallStatus: "ringing",
    Direction: "inbound",
    From: JANE_DOE_NUMBER,
    To: DEMO_ORG_NUMBER,
  };
}

/** POSTs a form to a function; `signature` null sends none. */
async function postForm(
  stack: CallStack,
  path: string,
  params: Record<string, string>,
  signature: string | null,
): Promise<Response> {
  const headers: Record<string, string> = { "content-type": FORM };
  if (signature !== null) headers["x-twilio-signature"] = signature;
  return await fetch(`${stack.functionsUrl}/${path}`, {
    method: "POST",
    headers,
    body: new URLSearchParams(params).toString(),
  });
}

/** Opens a Media Streams socket to voice-stream; resolves with how the handshake went. */
function openStream(
  stack: CallStack,
  signature: string | null,
): Promise<{ socket: WebSocket; opened: boolean; closed: Promise<CloseEvent> }> {
  const headers: Record<string, string> = {};
  if (signature !== null) headers["x-twilio-signature"] = signature;
  const socket = new WebSocket(`${stack.functionsUrl.replace(/^http/, "ws")}/voice-stream`, {
    headers,
  });
  const closed = new Promise<CloseEvent>((resolve) => socket.addEventListener("close", resolve));
  return new Promise((resolve) => {
    socket.addEventListener("open", () => resolve({ socket, opened: true, closed }));
    socket.addEventListener("error", () => resolve({ socket, opened: false, closed }));
  });
}

/** The `wss://` URL Twilio signs for the stream upgrade. */
function streamSigningUrl(stack: CallStack): string {
  return `${stack.functionsUrl.replace(/^http/, "ws").replace(/^ws:/, "wss:")}/voice-stream`;
}

/** The `<Parameter>`s of a `<Connect><Stream>` answer. */
function streamParameters(twiml: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const match of twiml.matchAll(/<Parameter name="([^"]+)" value="([^"]*)"\s*\/>/g)) {
    out[match[1]] = match[2].replaceAll("&amp;", "&").replaceAll("&quot;", '"');
  }
  return out;
}

function startMessage(callSid: string, streamSid: string, params: Record<string, string>) {
  return JSON.stringify({
    event: "start",
    sequenceNumber: "1",
    start: {
      accountSid: LOCAL_TWILIO_ACCOUNT_SID,
      streamSid,
      callSid,
      tracks: ["inbound"],
      mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
      customParameters: params,
    },
    streamSid,
  });
}

Deno.test({
  name: "security: signatures, stream tokens, row level security and logs",
  ...E2E,
  async fn(t) {
    const guard = watchProcess();
    const stack = await startCallStack({
      openai: { scenario: [{ kind: "assistant_audio", durationMs: 300, transcript: "Hello." }] },
    });
    const sql = stack.db.sql;
    try {
      const token = stack.env.TWILIO_AUTH_TOKEN;
      const frontdoorUrl = `${stack.functionsUrl}/voice-frontdoor`;
      const actionUrl = `${stack.functionsUrl}/voice-action`;

      await t.step(
        "unsigned or wrongly signed requests to every endpoint are refused",
        async () => {
          const before = await snapshotRowCounts(sql);
          const callSid = twilioSid("CA");
          const params = callParams(callSid);
          const forgeries = async (url: string, body: Record<string, string>) => [
            null,
            "",
            "bm90IGEgc2lnbmF0dXJl",
            await signTwilioRequest(token + "x", url, body),
            await signTwilioRequest(
              token,
              url.replace("http://127.0.0.1", "http://localhost"),
              body,
            ),
            await signTwilioRequest(token, url, { ...body, CallSid: twilioSid("CA") }),
          ];
          for (const signature of await forgeries(frontdoorUrl, params)) {
            const response = await postForm(stack, "voice-frontdoor", params, signature);
            assert.equal(response.status, 403, `frontdoor with ${signature}`);
            assert.equal(await response.text(), "", "a 403 says nothing");
          }
          const routes: Record<string, Record<string, string>> = {
            "call-status": { ...params, CallStatus: "completed" },
            "connect-action": { ...params, CallStatus: "in-progress" },
            "sms-status": {
              AccountSid: LOCAL_TWILIO_ACCOUNT_SID,
              MessageSid: twilioSid("SM"),
              MessageStatus: "delivered",
            },
            recording: { ...params, RecordingSid: twilioSid("RE"), RecordingDuration: "3" },
            voicemail: { ...params, RecordingSid: twilioSid("RE"), RecordingDuration: "3" },
          };
          for (const [route, body] of Object.entries(routes)) {
            for (const signature of await forgeries(`${actionUrl}?route=${route}`, body)) {
              const response = await postForm(
                stack,
                `voice-action?route=${route}`,
                body,
                signature,
              );
              assert.equal(response.status, 403, `${route} with ${signature}`);
              await response.body?.cancel();
            }
            // Signed for another route: the query string is part of what Twilio signs.
            const other = await signTwilioRequest(token, `${actionUrl}?route=sms-status`, body);
            if (route !== "sms-status") {
              const response = await postForm(stack, `voice-action?route=${route}`, body, other);
              assert.equal(response.status, 403, `${route} signed for sms-status`);
              await response.body?.cancel();
            }
          }
          const internal = JSON.stringify({
            type: "call_control",
            callSid,
            traceId: "trace",
            action: "hangup",
            reason: "test",
          });
          const secret = stack.env.VOICE_INTERNAL_SECRET;
          const internalHeaders = [
            {},
            await signInternalRequest(secret + "x", internal, Date.now()),
            await signInternalRequest(secret, internal, Date.now() - 120_000),
            await signInternalRequest(secret, internal.replace("hangup", "recover"), Date.now()),
            // Twilio's signature is no credential here.
            { "x-twilio-signature": await signTwilioRequest(token, actionUrl, {}) },
          ];
          for (const headers of internalHeaders) {
            const response = await fetch(actionUrl, {
              method: "POST",
              headers: { "content-type": "application/json", ...headers },
              body: internal,
            });
            assert.equal(response.status, 401, `internal with ${JSON.stringify(headers)}`);
            assert.deepEqual(await response.json(), { ok: false, error: "Unauthorized" });
          }
          const streamUrl = streamSigningUrl(stack);
          for (
            const signature of [
              null,
              "bm90IGEgc2lnbmF0dXJl",
              await signTwilioRequest(token + "x", streamUrl, {}),
              await signTwilioRequest(token, streamUrl.replace("wss:", "ws:"), {}),
              await signTwilioRequest(token, frontdoorUrl, {}),
            ]
          ) {
            const { socket, opened, closed } = await openStream(stack, signature);
            assert.equal(opened, false, `stream upgrade with ${signature}`);
            if (socket.readyState !== WebSocket.CLOSED) socket.close();
            await closed;
          }
          const plain = await fetch(`${stack.functionsUrl}/voice-stream`);
          assert.equal(plain.status, 426);
          await plain.body?.cancel();
          const streamAnswers = stack.requests.filter((r) => r.fn === "voice-stream")
            .map((r) => r.status);
          assert.deepEqual(streamAnswers, [403, 403, 403, 403, 403, 426]);
          assert.equal(stack.openai.connectionAttempts(), 0, "no model session");
          assert.deepEqual(stack.rest.requests, [], "no Twilio REST call");
          assert.deepEqual(await snapshotRowCounts(sql), before, "nothing was written");
          // The control: the genuine article is accepted.
          const genuine = await postForm(
            stack,
            "voice-frontdoor",
            params,
            await signTwilioRequest(token, frontdoorUrl, params),
          );
          assert.equal(genuine.status, 200);
          assert.match(await genuine.text(), /<Connect/);
        },
      );

      await t.step("a stream token for one call is refused for another", async () => {
        // Call A is answered: its TwiML carries its token.
        const callA = twilioSid("CA");
        const callB = twilioSid("CA");
        const answer = await postForm(
          stack,
          "voice-frontdoor",
          callParams(callA),
          await signTwilioRequest(token, frontdoorUrl, callParams(callA)),
        );
        const paramsA = streamParameters(await answer.text());
        assert.equal(paramsA.callSid, callA);
        const signature = await signTwilioRequest(token, streamSigningUrl(stack), {});
        const secret = stack.env.VOICE_INTERNAL_SECRET;
        const attempts: Array<{ what: string; callSid: string; params: Record<string, string> }> = [
          { what: "A's parameters on B's stream", callSid: callB, params: paramsA },
          { what: "A's token for B", callSid: callB, params: { ...paramsA, callSid: callB } },
          {
            what: "A's token naming B in its parameters",
            callSid: callA,
            params: { ...paramsA, callSid: callB },
          },
          {
            what: "A's token with another traceId",
            callSid: callA,
            params: { ...paramsA, traceId: crypto.randomUUID() },
          },
          {
            what: "an expired token for A",
            callSid: callA,
            params: {
              ...paramsA,
              token: await issueStreamToken(secret, {
                callSid: callA,
                traceId: paramsA.traceId,
                expiresAtMs: Date.now() - 1000,
              }),
            },
          },
          {
            what: "a token signed with another secret",
            callSid: callA,
            params: {
              ...paramsA,
              token: await issueStreamToken(secret + "x", {
                callSid: callA,
                traceId: paramsA.traceId,
                expiresAtMs: Date.now() + 60_000,
              }),
            },
          },
          { what: "no token", callSid: callA, params: { ...paramsA, token: "" } },
        ];
        for (const attempt of attempts) {
          const { socket, opened, closed } = await openStream(stack, signature);
          assert.ok(opened, "a signed upgrade is accepted");
          socket.send(JSON.stringify({ event: "connected", protocol: "Call", version: "1.0.0" }));
          socket.send(startMessage(attempt.callSid, twilioSid("MZ"), attempt.params));
          const event = await closed;
          assert.equal(event.code, POLICY_VIOLATION, attempt.what);
        }
        assert.equal(stack.openai.connectionAttempts(), 0, "no model session for a bad token");
        const reasons = stack.logs("security_rejected").filter((entry) =>
          entry.fn === "voice-stream"
        ).map((entry) => entry.reason);
        assert.deepEqual(reasons.slice(-attempts.length), [
          "token_mismatch",
          "token_mismatch",
          "token_call_mismatch",
          "token_mismatch",
          "token_expired",
          "token_mismatch",
          "token_missing",
        ]);
        // The control: A's own token opens A's stream and its model session.
        const { socket, opened, closed } = await openStream(stack, signature);
        assert.ok(opened);
        socket.send(startMessage(callA, twilioSid("MZ"), paramsA));
        await stack.openai.waitForSession(0, 5000);
        socket.close(1000);
        await closed;
      });

      await t.step("anon and other tenants read nothing, in every table and view", async () => {
        // The seed org now has calls, events and more: another org's member must see none of it.
        const outsiderOrg = await createOrg(sql);
        const outsider = await createUser(sql);
        await addMember(sql, outsiderOrg.id, outsider);
        const loner = await createUser(sql);
        const relations = await sql<{ name: string; kind: string }[]>`
          select c.relname as name, c.relkind as kind from pg_catalog.pg_class c
          join pg_catalog.pg_namespace n on n.oid = c.relnamespace
          where n.nspname = 'public' and c.relkind in ('r', 'v') order by 1`;
        assert.ok(relations.length >= 11, `${relations.length} tables and views`);
        const seedOrg = "00000000-0000-4000-8000-000000000001";
        for (const { name } of relations) {
          const [{ count: total }] = await sql.unsafe<{ count: number }[]>(
            `select count(*)::int as count from public."${name}"`,
          );
          // anon: no grant at all, or no visible row.
          const anon = await withRole(
            sql,
            "anon",
            { role: "anon" },
            (tx) => tx.unsafe(`select * from public."${name}"`),
          ).then((rows) => rows.length, (error) => (error as { code?: string }).code);
          assert.ok(anon === 0 || anon === "42501", `anon reads ${name}: ${anon}`);
          for (const user of [outsider, loner]) {
            const rows = await withRole(
              sql,
              "authenticated",
              { sub: user, role: "authenticated" },
              (tx) => tx.unsafe(`select to_jsonb(x) as row from public."${name}" x`),
            ).catch((error) => {
              assert.equal(error.code, "42501", `${name}: ${error.message}`);
              return [];
            });
            const leaked = rows.filter((row) => JSON.stringify(row.row).includes(seedOrg));
            assert.deepEqual(leaked, [], `another tenant reads the seed org's ${name}`);
            if (user === loner) assert.equal(rows.length, 0, `a user of no org reads ${name}`);
          }
          assert.ok(total >= 0);
        }
        // The service RPCs are the service role's alone.
        for (const fn of ["lookup_caller", "record_call_event", "book_appointment", "get_call"]) {
          const [{ anon, authenticated }] = await sql`
            select bool_or(has_function_privilege('anon', p.oid, 'execute')) as anon,
              bool_or(has_function_privilege('authenticated', p.oid, 'execute')) as authenticated
            from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
            where n.nspname = 'public' and p.proname = ${fn}`;
          assert.deepEqual([anon, authenticated], [false, false], `${fn} executable by others`);
        }
      });
    } finally {
      guard.stop();
      capturedLines = [...stack.logLines];
      capturedSecrets = secretsOf(stack.env);
      await stack.stop();
    }
    assert.equal(guard.rejections.length + guard.errors.length, 0, guard.describe());
    assert.deepEqual(stack.requests.filter((r) => r.error !== null), [], "no handler threw");
  },
});

Deno.test("security: no secret or full phone number in any log line of the security checks", () => {
  // Scans what the test above captured (nothing when it was filtered out).
  const leaks = findLogLeaks(capturedLines, {
    secrets: capturedSecrets,
    phoneNumbers: [JANE_DOE_NUMBER, DEMO_ORG_NUMBER],
  });
  assert.deepEqual(leaks, []);
  assert.ok(
    capturedLines.length === 0 || capturedLines.some((line) => line.includes("security_rejected")),
  );
});
