import assert from "node:assert/strict";
import { HARBOR_DENTAL } from "../../../tests/support/fake_store.ts";
import { nameKey, resolveProvider, resolveService } from "./schedule_names.ts";

const org = structuredClone(HARBOR_DENTAL);
const cleaning = org.services.find((service) => service.name === "Cleaning")!;
const exam = org.services.find((service) => service.name === "New patient exam")!;

Deno.test("nameKey() ignores case, accents and punctuation", () => {
  assert.equal(nameKey("  Dr. Lée "), "dr lee");
  assert.equal(nameKey("Check-up"), nameKey("check up"));
});

Deno.test("resolveService() matches exact names, parts of names and names within words", () => {
  assert.equal(resolveService(org, "CLEANING").ok && "Cleaning", "Cleaning");
  const exam = resolveService(org, "exam");
  assert.equal(exam.ok && exam.value.name, "New patient exam");
  const teeth = resolveService(org, "teeth cleaning please");
  assert.equal(teeth.ok && teeth.value.name, "Cleaning");
  const unknown = resolveService(org, "root canal");
  assert.equal(!unknown.ok && unknown.reason, "unknown");
});

Deno.test("resolveService() falls back to the default service, else asks", () => {
  const fallback = resolveService(org);
  assert.equal(fallback.ok && fallback.value.name, "Cleaning");
  const noDefault = {
    ...org,
    services: org.services.map((service) => ({ ...service, isDefault: false })),
  };
  const ask = resolveService(noDefault, " ");
  assert.equal(!ask.ok && ask.reason, "needs_choice");
  const single = { ...noDefault, services: [exam] };
  assert.equal(resolveService(single).ok, true);
  const none = resolveService({ ...org, services: [] }, "Cleaning");
  assert.equal(none.ok, false);
});

Deno.test("resolveProvider() finds a provider of the service by any part of the name", () => {
  const lee = resolveProvider(org, cleaning, "lee");
  assert.equal(lee.ok && lee.value.id, "prov-lee");
  const sam = resolveProvider(org, cleaning, "Sam");
  assert.equal(sam.ok && sam.value.id, "prov-sam");
  const notOffering = resolveProvider(org, exam, "Sam");
  assert.equal(!notOffering.ok && notOffering.reason, "unknown");
  assert.match(!notOffering.ok ? notOffering.message : "", /does not offer New patient exam/);
  const anyService = resolveProvider(org, null, "ortiz");
  assert.equal(anyService.ok && anyService.value.name, "Sam Ortiz");
  const nobody = resolveProvider(org, null, "Dr. Who");
  assert.equal(!nobody.ok && nobody.reason, "unknown");
});

Deno.test("resolveProvider() reports a name shared by two providers as ambiguous", () => {
  const twoLees = {
    ...org,
    providers: [...org.providers, { id: "prov-lee-2", name: "Amy Lee" }],
    services: [{ ...cleaning, providers: ["Dr. Lee", "Sam Ortiz", "Amy Lee"] }],
  };
  const result = resolveProvider(twoLees, twoLees.services[0], "Lee");
  assert.equal(!result.ok && result.reason, "ambiguous");
});
