/**
 * Calendar feeds on a real database (`20261202000400_calendar_feeds.sql`): `scripts/org.ts
 * rotate-feed` stores a token's hash, voice-action serves the feed through the Postgres store, and
 * ical.js reads it: a booking made by `book_appointment`, a cancelled one marked CANCELLED, a
 * provider's feed with that provider's appointments only, rotated and wrong tokens answered 404,
 * and nobody but the service role near the table or the RPCs.
 * @module
 */
import assert from "node:assert/strict";
import ICAL from "ical.js";
import type postgres from "postgres";
import { rotateFeedCommand } from "../../scripts/org/calendar_feed.ts";
import type { OrgCommandContext } from "../../scripts/org/command.ts";
import { createMemoryLogger } from "../../supabase/functions/_shared/log.ts";
import { createPostgresStore } from "../../supabase/functions/_shared/store/postgres_store.ts";
import { feedTokenSha256 } from "../../supabase/functions/voice-action/calendar.ts";
import { createVoiceActionHandler } from "../../supabase/functions/voice-action/handler.ts";
import { createTestDatabase, withRole } from "../support/test_db.ts";
import { createScheduledOrg, randomPhone, rpc, type ScheduledOrg, startCall } from "./fixtures.ts";

const BASE_URL = "https://abc.supabase.co/functions/v1";
const DAY_MS = 86_400_000;
const WEEKDAYS = {
  1: [["09:00", "17:00"]],
  2: [["09:00", "17:00"]],
  3: [["09:00", "17:00"]],
} as Record<number, [string, string][]>;

interface Booked {
  id: string;
  starts_at: string;
  ends_at: string;
  confirmation_code: string;
}

/** 10:00 UTC on the next Monday, Tuesday or Wednesday at least `minDays` days from now. */
function nextWorkingSlot(minDays: number, hour = 10): string {
  for (let days = minDays;; days++) {
    const date = new Date(Date.now() + days * DAY_MS);
    if ([1, 2, 3].includes(date.getUTCDay())) {
      date.setUTCHours(hour, 0, 0, 0);
      return date.toISOString();
    }
  }
}

/** Runs `rotate-feed` as `scripts/org.ts` would; returns the printed URL and what it said. */
async function rotateFeed(url: string, args: string[]): Promise<{ feedUrl: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const ctx: OrgCommandContext = {
    databaseUrl: url,
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    env: { PUBLIC_FUNCTIONS_URL: BASE_URL },
  };
  assert.equal(await rotateFeedCommand(args, ctx), 0);
  assert.equal(out.length, 1, "the URL alone on standard output");
  return { feedUrl: out[0], err: err.join("\n") };
}

function parseFeed(text: string): Map<string, ICAL.Event> {
  const calendar = new ICAL.Component(ICAL.parse(text));
  const events = calendar.getAllSubcomponents("vevent").map((vevent) => new ICAL.Event(vevent));
  return new Map(events.map((event) => [event.uid.split("@")[0], event]));
}

async function orgSlug(sql: postgres.Sql, org: ScheduledOrg): Promise<string> {
  const [{ slug }] = await sql<
    { slug: string }[]
  >`select slug from public.orgs where id = ${org.id}`;
  return slug;
}

Deno.test("calendar feeds serve an org's and a provider's appointments to their token only", async () => {
  const db = await createTestDatabase();
  const sql = db.sql;
  const store = createPostgresStore(db.url, { maxConnections: 2 });
  const memory = createMemoryLogger("voice-action");
  const handler = createVoiceActionHandler({
    config: {
      publicFunctionsUrl: BASE_URL,
      twilioAuthToken: "t".repeat(32),
      twilioAccountSid: "AC" + "1".repeat(32),
      internalSecret: "s".repeat(40),
    },
    log: memory.logger,
    clock: Date.now,
    store,
    twilio: {
      sendSms: () => Promise.reject(new Error("No SMS in this test")),
      updateCall: () => Promise.reject(new Error("No call updates in this test")),
    },
    waitUntil: () => {},
  });
  const get = (url: string) => handler(new Request(url));
  try {
    const org = await createScheduledOrg(sql, {
      name: "Feed, Test; Dental",
      timezone: "UTC",
      providers: [{ name: "Dr. Ada", hours: WEEKDAYS }, { name: "Sam Ortiz", hours: WEEKDAYS }],
      services: [{ name: "Cleaning", minutes: 30, providers: ["Dr. Ada", "Sam Ortiz"] }],
    });
    const slug = await orgSlug(sql, org);
    const janePhone = randomPhone();
    const callSid = await startCall(sql, { to: org.phoneNumber, from: janePhone });
    const book = async (startsAt: string, provider: string) => {
      const result = await rpc<{ ok: boolean; appointment: Booked }>(sql, "book_appointment", [
        callSid,
        "Jane",
        "Doe",
        startsAt,
        org.services.Cleaning,
        org.providers[provider],
      ]);
      assert.ok(result.ok, JSON.stringify(result));
      return result.appointment;
    };
    const withAda = await book(nextWorkingSlot(2), "Dr. Ada");
    const withSam = await book(nextWorkingSlot(2, 11), "Sam Ortiz");
    const cancelledResult = await rpc<{ ok: boolean }>(sql, "cancel_appointment", [
      callSid,
      withSam.confirmation_code,
    ]);
    assert.ok(cancelledResult.ok);
    // Outside the feed's window: more than 30 days ago, and more than 365 days ahead.
    const [{ client_id: clientId }] = await sql`
      select client_id from public.appointments where id = ${withAda.id}`;
    const outside = await sql<{ id: string }[]>`
      insert into public.appointments (org_id, client_id, provider_id, starts_at, ends_at)
      values
        (${org.id}, ${clientId}, ${org.providers["Dr. Ada"]},
          now() - interval '40 days', now() - interval '40 days' + interval '30 minutes'),
        (${org.id}, ${clientId}, ${org.providers["Dr. Ada"]},
          now() + interval '400 days', now() + interval '400 days' + interval '30 minutes'),
        (${org.id}, ${clientId}, ${org.providers["Dr. Ada"]},
          now() - interval '3 days', now() - interval '3 days' + interval '30 minutes')
      returning id`;
    const recentPastId = outside[2].id;

    // The whole org's feed.
    const orgFeed = await rotateFeed(db.url, [slug]);
    assert.match(
      orgFeed.feedUrl,
      /^https:\/\/abc\.supabase\.co\/functions\/v1\/voice-action\?route=calendar&token=[A-Za-z0-9_-]{43}$/,
    );
    assert.match(orgFeed.err, /stopped working/);
    const token = new URL(orgFeed.feedUrl).searchParams.get("token")!;
    const [stored] = await sql`select token_sha256,
        encode(extensions.digest(${token}, 'sha256'), 'hex') as postgres_sha256
      from public.calendar_feeds where org_id = ${org.id}`;
    assert.equal(stored.token_sha256, await feedTokenSha256(token), "only the hash is stored");
    assert.equal(stored.token_sha256, stored.postgres_sha256, "WebCrypto and pgcrypto agree");

    const response = await get(orgFeed.feedUrl);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "text/calendar; charset=utf-8");
    const text = await response.text();
    assert.match(text, /\r\nX-WR-CALNAME:Feed\\, Test\\; Dental\r\n/);
    const events = parseFeed(text);
    assert.deepEqual([...events.keys()].sort(), [withAda.id, withSam.id, recentPastId].sort());
    const booked = events.get(withAda.id)!;
    assert.equal(booked.startDate.toJSDate().toISOString(), withAda.starts_at);
    assert.equal(booked.endDate.toJSDate().toISOString(), withAda.ends_at);
    assert.equal(booked.summary, `Cleaning: Jane (•••• ${janePhone.slice(-4)})`);
    assert.ok(!text.includes(janePhone), "the full number never leaves the database");
    assert.match(booked.description, /Provider: Dr\. Ada/);
    assert.match(booked.description, new RegExp(`Confirmation code: ${withAda.confirmation_code}`));
    assert.equal(booked.component.getFirstPropertyValue("status"), "CONFIRMED");
    const cancelled = events.get(withSam.id)!;
    assert.equal(cancelled.component.getFirstPropertyValue("status"), "CANCELLED");
    assert.match(cancelled.summary, /^Cancelled: Cleaning: Jane/);
    assert.ok(cancelled.sequence >= 0);
    const modified = cancelled.component.getFirstPropertyValue("last-modified") as ICAL.Time;
    const [{ updated_at: updatedAt }] = await sql`
      select updated_at from public.appointments where id = ${withSam.id}`;
    assert.equal(modified.toJSDate().getTime(), Math.floor(updatedAt.getTime() / 1000) * 1000);
    const [served] = memory.entries("calendar_feed_served");
    assert.equal(served.orgId, org.id);
    assert.ok(memory.lines.every((line) => !line.includes(token)), "the token is never logged");

    // Sam's feed: his appointments only; the org's feed keeps working beside it.
    const samFeed = await rotateFeed(db.url, [slug, "--provider", "sam ortiz"]);
    const samResponse = await get(samFeed.feedUrl);
    assert.equal(samResponse.status, 200);
    const samText = await samResponse.text();
    assert.match(samText, /\r\nX-WR-CALNAME:Feed\\, Test\\; Dental: Sam Ortiz\r\n/);
    assert.deepEqual([...parseFeed(samText).keys()], [withSam.id]);
    assert.equal((await get(orgFeed.feedUrl)).status, 200);

    // Rotating replaces the org's token: the old URL answers as a wrong one does.
    const rotated = await rotateFeed(db.url, [slug]);
    assert.notEqual(rotated.feedUrl, orgFeed.feedUrl);
    assert.equal((await get(orgFeed.feedUrl)).status, 404);
    assert.equal((await get(rotated.feedUrl)).status, 200);
    assert.equal((await get(samFeed.feedUrl)).status, 200);
    const wrong = orgFeed.feedUrl.replace(/token=.*/, `token=${"A".repeat(43)}`);
    const wrongResponse = await get(wrong);
    assert.equal(wrongResponse.status, 404);
    assert.equal(await wrongResponse.text(), "Not found");

    const feeds = await sql`select provider_id, revoked_at is null as active
      from public.calendar_feeds where org_id = ${org.id} order by created_at`;
    assert.deepEqual(feeds.map((row) => [row.provider_id, row.active]), [
      [null, false],
      [org.providers["Sam Ortiz"], true],
      [null, true],
    ]);
  } finally {
    await store.close();
    await db.drop();
  }
});

Deno.test("rotate_calendar_feed and calendar_feed refuse bad input and belong to the service role", async () => {
  const db = await createTestDatabase();
  const sql = db.sql;
  try {
    const org = await createScheduledOrg(sql, {
      providers: [{ name: "Dr. Ada", hours: WEEKDAYS }],
      services: [{ name: "Cleaning", minutes: 30, providers: ["Dr. Ada"] }],
    });
    const other = await createScheduledOrg(sql, {
      providers: [{ name: "Dr. Bo", hours: WEEKDAYS }],
      services: [{ name: "Cleaning", minutes: 30, providers: ["Dr. Bo"] }],
    });
    const hash = await feedTokenSha256("a-token");
    await assert.rejects(
      sql`select public.rotate_calendar_feed(${org.id}::uuid, null, ${hash.toUpperCase()})`,
      { code: "22023" },
    );
    await assert.rejects(
      sql`select public.rotate_calendar_feed(${org.id}::uuid, ${other.providers["Dr. Bo"]}::uuid,
        ${hash})`,
      { code: "P0002" },
    );
    await assert.rejects(
      sql`select public.rotate_calendar_feed(${crypto.randomUUID()}::uuid, null, ${hash})`,
      { code: "P0002" },
    );
    const [{ id }] = await sql`select public.rotate_calendar_feed(${org.id}::uuid, null, ${hash})
      as id`;
    // A hash is one feed's only: another org cannot take it over.
    await assert.rejects(
      sql`select public.rotate_calendar_feed(${other.id}::uuid, null, ${hash})`,
      { code: "23505" },
    );
    const feed = await rpc<{ feed_id: string; events: unknown[] }>(sql, "calendar_feed", [hash]);
    assert.equal(feed.feed_id, id);
    assert.deepEqual(feed.events, []);
    for (const bad of ["", "not-hex", hash.toUpperCase(), hash.slice(1), null]) {
      assert.equal(await rpc(sql, "calendar_feed", [bad]), null, String(bad));
    }

    for (const role of ["anon", "authenticated"] as const) {
      const claims = { role, sub: crypto.randomUUID() };
      for (
        const text of [
          "select * from public.calendar_feeds",
          `select public.calendar_feed('${hash}')`,
          `select public.rotate_calendar_feed('${org.id}', null, '${hash}')`,
        ]
      ) {
        await assert.rejects(
          withRole(sql, role, claims, (tx) => tx.unsafe(text)),
          { code: "42501" },
          `${role}: ${text}`,
        );
      }
    }
    const [{ result }] = await withRole(
      sql,
      "service_role",
      { role: "service_role" },
      (tx) => tx`select public.calendar_feed(${hash}) as result`,
    );
    assert.equal(result.feed_id, id);
  } finally {
    await db.drop();
  }
});

Deno.test("calendar_feed reads appointments through indexes, for the org and for a provider", async () => {
  const db = await createTestDatabase();
  const sql = db.sql;
  try {
    const org = await createScheduledOrg(sql, {
      providers: [{ name: "Dr. Ada", hours: WEEKDAYS }],
      services: [{ name: "Cleaning", minutes: 30, providers: ["Dr. Ada"] }],
    });
    const plans = await sql.begin(async (tx) => {
      await tx`set local enable_seqscan = off`;
      const explain = async (provider: string | null) =>
        (await tx.unsafe(
          `explain select * from public.appointments a
          where a.org_id = $1 and ($2::uuid is null or a.provider_id = $2::uuid)
            and a.starts_at >= now() and a.starts_at < now() + interval '365 days'
          order by a.starts_at limit 2000`,
          [org.id, provider],
        )).map((row) => Object.values(row)[0]).join("\n");
      return [await explain(null), await explain(org.providers["Dr. Ada"])];
    });
    for (const plan of plans) {
      assert.match(plan, /Index (Only )?Scan using appointments_org_(provider_)?starts_idx/, plan);
      assert.doesNotMatch(plan, /Sort/, plan);
    }
  } finally {
    await db.drop();
  }
});
