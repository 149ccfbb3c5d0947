import assert from "node:assert/strict";
import ICAL from "ical.js";
import { rotateFeedCommand } from "../../scripts/org/calendar_feed.ts";
import { JANE_DOE_NUMBER, startCallStack } from "../support/call_stack.ts";
import { bookingCallerScript, bookingScenario, nextTuesday } from "./scenarios.ts";

Deno.test({
  name: "the calendar feed shows a booking made by a call, fetched over HTTP from voice-action",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const date = nextTuesday();
    const e2e = await startCallStack({
      openai: { scenario: bookingScenario(date), speedFactor: 8 },
    });
    try {
      await e2e.placeCall({
        from: JANE_DOE_NUMBER,
        audio: bookingCallerScript(),
        pacing: "realtime",
        maxCallMs: 60_000,
      });
      const sql = e2e.db.sql;
      const [appointment] = await sql`
        select a.id, a.starts_at, a.ends_at, a.confirmation_code
        from public.appointments a join public.clients c on c.id = a.client_id
        where a.status = 'booked' and c.phone = ${JANE_DOE_NUMBER}
        order by a.created_at desc limit 1`;
      assert.ok(appointment, "the call booked an appointment");

      // Staff rotate Sam Ortiz's feed and subscribe to the printed URL.
      const out: string[] = [];
      const code = await rotateFeedCommand(["harbor-dental", "--provider", "Sam Ortiz"], {
        databaseUrl: e2e.db.url,
        out: (line) => out.push(line),
        err: () => {},
        env: { PUBLIC_FUNCTIONS_URL: e2e.functionsUrl },
      });
      assert.equal(code, 0);
      const response = await fetch(out[0]);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-type"), "text/calendar; charset=utf-8");
      const calendar = new ICAL.Component(ICAL.parse(await response.text()));
      const events = calendar.getAllSubcomponents("vevent").map((vevent) => new ICAL.Event(vevent));
      const event = events.find((item) => item.uid.startsWith(`${appointment.id}@`));
      assert.ok(event, "the booking is in Sam Ortiz's feed");
      assert.equal(event.summary, "Cleaning: Jane (•••• 0001)");
      assert.equal(event.startDate.toJSDate().getTime(), appointment.starts_at.getTime());
      assert.equal(event.endDate.toJSDate().getTime(), appointment.ends_at.getTime());
      assert.match(event.description, new RegExp(appointment.confirmation_code));
      assert.equal(event.component.getFirstPropertyValue("status"), "CONFIRMED");

      const token = new URL(out[0]).searchParams.get("token")!;
      assert.ok(!e2e.logLines.join("\n").includes(token), "the token is never logged");
      assert.equal(e2e.logs("calendar_feed_served").length, 1);
      const wrong = await fetch(out[0].replace(token, "A".repeat(43)));
      assert.equal(wrong.status, 404);
      await wrong.body?.cancel();
    } finally {
      await e2e.stop();
    }
  },
});
