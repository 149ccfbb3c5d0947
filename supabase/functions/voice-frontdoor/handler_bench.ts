// voice-frontdoor handler time per request, in-process: a Twilio-signed incoming-call webhook (seen
// at Supabase's internal URL) through the real handler (body read, signature check, zod fields,
// stream token HMAC, TwiML, log line formatted), against a handler answering a constant Response
// for the same Request (the baseline). Request construction is inside both rows.
// Results and how to read them: docs/benchmarks.md, "voice-frontdoor".
// Run: node_modules/.bin/deno bench -A supabase/functions/voice-frontdoor/handler_bench.ts
import {
  createBenchFrontdoorHandler,
  createConstantHandler,
  frontdoorRequest,
  signedIncomingCall,
} from "../../../scripts/bench/frontdoor_fixture.ts";

const PUBLIC_BASE = "https://abc.supabase.co/functions/v1";
const webhook = signedIncomingCall(`${PUBLIC_BASE}/voice-frontdoor`);
const handler = createBenchFrontdoorHandler(PUBLIC_BASE);
const constant = createConstantHandler();

// Fail loudly rather than time a rejection path.
const check = await handler(frontdoorRequest(webhook));
if (check.status !== 200 || !(await check.text()).includes("<Stream")) {
  throw new Error("Cannot bench: the signed request was not accepted");
}

Deno.bench("baseline: constant Response", { group: "frontdoor", baseline: true }, async () => {
  const response = constant(frontdoorRequest(webhook));
  await response.text();
});

Deno.bench(
  "voice-frontdoor handler (signed call -> Stream TwiML)",
  { group: "frontdoor" },
  async () => {
    const response = await handler(frontdoorRequest(webhook));
    await response.text();
  },
);
