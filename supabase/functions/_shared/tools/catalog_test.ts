import assert from "node:assert/strict";
import {
  isCalendarDate,
  normalizeTime,
  safeParseToolCall,
  TOOL_NAMES,
  toolDefinitionsForRealtime,
} from "./catalog.ts";

Deno.test("toolDefinitionsForRealtime() lists the six tools as Realtime function tools", () => {
  const tools = toolDefinitionsForRealtime();
  assert.deepEqual(tools.map((tool) => tool.name), [
    "check_availability",
    "book_appointment",
    "cancel_appointment",
    "reschedule_appointment",
    "transfer_to_human",
    "end_call",
  ]);
  for (const tool of tools) {
    assert.equal(tool.type, "function");
    assert.ok(tool.description.length > 40, tool.name);
    assert.equal(tool.parameters.type, "object", tool.name);
    assert.equal("$schema" in tool.parameters, false, tool.name);
    const properties = tool.parameters.properties as Record<string, { description?: string }>;
    for (const [name, property] of Object.entries(properties)) {
      assert.ok(property.description, `${tool.name}.${name} has a description for the model`);
    }
  }
});

Deno.test("toolDefinitionsForRealtime() exports required arguments and formats as JSON Schema", () => {
  const byName = Object.fromEntries(toolDefinitionsForRealtime().map((tool) => [tool.name, tool]));
  const book = byName.book_appointment.parameters;
  assert.deepEqual(book.required, [
    "first_name",
    "last_name",
    "date",
    "time",
    "confirmed_by_caller",
  ]);
  const properties = book.properties as Record<string, Record<string, unknown>>;
  assert.equal(properties.confirmed_by_caller.type, "boolean");
  assert.equal(properties.date.pattern, "^\\d{4}-\\d{2}-\\d{2}$");
  assert.deepEqual(byName.check_availability.parameters.required, ["date"]);
  assert.deepEqual(byName.transfer_to_human.parameters.required, ["reason"]);
  // Never the caller's phone or the org: those come from the call.
  for (const tool of Object.values(byName)) {
    const names = Object.keys(tool.parameters.properties as object);
    assert.ok(!names.some((name) => /phone|org|number/.test(name)), tool.name);
  }
});

Deno.test("toolDefinitionsForRealtime() returns copies callers cannot corrupt", () => {
  const first = toolDefinitionsForRealtime();
  first[0].description = "changed";
  assert.notEqual(toolDefinitionsForRealtime()[0].description, "changed");
});

Deno.test("safeParseToolCall() accepts JSON text or objects and normalizes nothing it need not", () => {
  const fromText = safeParseToolCall(
    "book_appointment",
    '{"first_name":" Jane ","last_name":"Doe","date":"2026-11-24","time":"9:30","confirmed_by_caller":true}',
  );
  assert.deepEqual(fromText, {
    success: true,
    data: {
      name: "book_appointment",
      arguments: {
        first_name: "Jane",
        last_name: "Doe",
        date: "2026-11-24",
        time: "9:30",
        confirmed_by_caller: true,
      },
    },
  });
  const fromObject = safeParseToolCall("end_call", { reason: "bye", extra: 1 });
  assert.deepEqual(fromObject, {
    success: true,
    data: { name: "end_call", arguments: { reason: "bye" } },
  });
  assert.equal(safeParseToolCall("check_availability", "").success, false);
});

Deno.test("safeParseToolCall() explains every bad argument in one sentence for the model", () => {
  const result = safeParseToolCall("reschedule_appointment", {
    confirmation_code: 42,
    date: "2026-02-30",
  });
  assert.equal(result.success, false);
  if (result.success) return;
  assert.equal(
    result.error.message,
    "Invalid arguments for reschedule_appointment: confirmation_code must be a string; date must " +
      "be a real calendar date; time is required. Fix them and call reschedule_appointment again",
  );
  assert.deepEqual(result.error.issues.map((issue) => issue.path), [
    "confirmation_code",
    "date",
    "time",
  ]);
});

Deno.test("safeParseToolCall() refuses unknown tools and invalid JSON", () => {
  const unknown = safeParseToolCall("__proto__", {});
  assert.equal(unknown.success, false);
  assert.match(!unknown.success ? unknown.error.message : "", /There is no tool named "__proto__"/);
  const broken = safeParseToolCall("end_call", "{reason:");
  assert.equal(broken.success, false);
  assert.match(!broken.success ? broken.error.message : "", /not valid JSON/);
  assert.equal(TOOL_NAMES.length, 6);
});

Deno.test("safeParseToolCall() checks time windows and 24-hour times", () => {
  assert.equal(
    safeParseToolCall("check_availability", { date: "2026-11-24", after: "13:00" }).success,
    true,
  );
  for (const time of ["24:00", "9", "9:5", "1:00 PM", "noon"]) {
    assert.equal(
      safeParseToolCall("check_availability", { date: "2026-11-24", before: time }).success,
      false,
      time,
    );
  }
});

Deno.test("isCalendarDate() accepts real days only", () => {
  assert.equal(isCalendarDate("2028-02-29"), true);
  assert.equal(isCalendarDate("2026-02-29"), false);
  assert.equal(isCalendarDate("2026-13-01"), false);
  assert.equal(isCalendarDate("26-11-24"), false);
});

Deno.test("normalizeTime() pads one-digit hours", () => {
  assert.equal(normalizeTime("9:30"), "09:30");
  assert.equal(normalizeTime("14:00"), "14:00");
});
