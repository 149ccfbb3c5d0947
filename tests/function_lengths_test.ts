import assert from "node:assert/strict";
import { functionLengths, productFunctionLengths } from "../scripts/function_lengths.ts";

/** A reader should be able to hold any product function in view (issue: "a house a newcomer..."). */
const MAX_FUNCTION_LINES = 150;

Deno.test("functionLengths counts each function from its declaration to its closing brace", () => {
  const text = [
    "export function outer() {", // 1
    "  const inner = () => {", // 2
    "    return 1;",
    "  };", // 4
    "  return inner();",
    "}", // 6
    "class Part {",
    "  #method(): void {", // 8
    "  }", // 9
    "}",
  ].join("\n");
  const found = functionLengths("part.ts", text);
  const byName = Object.fromEntries(found.map((f) => [f.name, [f.line, f.lines]]));
  assert.deepEqual(byName, { outer: [1, 6], inner: [2, 3], "#method": [8, 2] });
  assert.deepEqual(found.map((f) => f.name), ["outer", "inner", "#method"]);
});

Deno.test(`no product function is longer than ${MAX_FUNCTION_LINES} lines`, async () => {
  const lengths = await productFunctionLengths(new URL("../", import.meta.url));
  assert.ok(lengths.length > 300, `only ${lengths.length} functions found: the walk broke`);
  const over = lengths.filter((f) => f.lines > MAX_FUNCTION_LINES)
    .map((f) => `${f.file}:${f.line} ${f.name} (${f.lines} lines)`);
  assert.deepEqual(over, []);
});
