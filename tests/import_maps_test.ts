import assert from "node:assert/strict";

const FUNCTIONS = ["voice-frontdoor", "voice-stream", "voice-action"];

Deno.test("each function's deno.json maps its imports exactly as the root deno.json does", async () => {
  const root = JSON.parse(await Deno.readTextFile("deno.json")).imports as Record<string, string>;
  for (const name of FUNCTIONS) {
    const own = JSON.parse(await Deno.readTextFile(`supabase/functions/${name}/deno.json`))
      .imports as Record<string, string>;
    for (const [specifier, target] of Object.entries(own)) {
      assert.equal(target, root[specifier], `${name}: ${specifier}`);
      assert.match(target, /^npm:(@[^/]+\/)?[^@]+@\d+\.\d+\.\d+$/, "pinned npm version");
    }
  }
});

interface DenoInfo {
  modules: { specifier: string; dependencies?: { specifier: string }[] }[];
}

/**
 * The packages (bare specifiers, `openai/sub/path` counting as `openai`) that a function's own
 * code imports, types included: the edge runtime resolves those through the function's map.
 */
async function packagesImportedBy(name: string): Promise<string[]> {
  const dir = `supabase/functions/${name}`;
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    // --no-lock: reading the graph must not write a deno.lock beside the function.
    args: ["info", "--json", "--no-lock", "--config", `${dir}/deno.json`, `${dir}/index.ts`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  const info = JSON.parse(new TextDecoder().decode(stdout)) as DenoInfo;
  const packages = new Set<string>();
  for (const module of info.modules) {
    // npm packages' own imports resolve inside the package, not through the map.
    if (!module.specifier.startsWith("file:")) continue;
    for (const { specifier } of module.dependencies ?? []) {
      // Relative and absolute paths and `node:`/`npm:`/URL specifiers bypass the map.
      if (/^([./]|[a-z][a-z0-9+.-]*:)/i.test(specifier)) continue;
      const parts = specifier.split("/");
      packages.add(parts.slice(0, specifier.startsWith("@") ? 2 : 1).join("/"));
    }
  }
  return [...packages].sort();
}

Deno.test("each function's deno.json maps exactly the packages its code imports", async () => {
  for (const name of FUNCTIONS) {
    const own = JSON.parse(await Deno.readTextFile(`supabase/functions/${name}/deno.json`))
      .imports as Record<string, string>;
    // Missing: the deployed function fails to resolve. Extra: an unused entry to keep in step.
    assert.deepEqual(Object.keys(own).sort(), await packagesImportedBy(name), name);
  }
});

Deno.test("config.toml disables JWT verification for the three Twilio-facing functions", async () => {
  const toml = await Deno.readTextFile("supabase/config.toml");
  for (const name of FUNCTIONS) {
    const section = toml.split(`[functions.${name}]`)[1]?.split("\n[")[0] ?? "";
    assert.match(section, /verify_jwt = false/, name);
    assert.match(section, new RegExp(`import_map = "./functions/${name}/deno.json"`), name);
  }
});
