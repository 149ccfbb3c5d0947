/**
 * `npm run serve`: the local stack (database and the three functions at
 * `http://127.0.0.1:54321/functions/v1/<name>`) until Ctrl-C. Settings come from the
 * environment (see .env.example); DATABASE_URL, else an embedded PGlite.
 *
 * `--edge-runtime` (or `EDGE_RUNTIME=1`) serves each function request in its own worker thread
 * under the edge runtime's limits (scripts/edge_runtime/; `EDGE_LIMITS=free|paid|custom` and the
 * `EDGE_*` overrides of `limits.ts`).
 * @module
 */
import { DEFAULT_FUNCTIONS_PORT } from "./functions_router.ts";
import { startLocalStack } from "./local_stack.ts";
import { parseEdgeLimits } from "./edge_runtime/limits.ts";

if (import.meta.main) {
  const port = Number(Deno.env.get("FUNCTIONS_PORT") ?? DEFAULT_FUNCTIONS_PORT);
  const edgeRuntime = Deno.args.includes("--edge-runtime") || Deno.env.get("EDGE_RUNTIME") === "1"
    ? parseEdgeLimits(Deno.env.toObject())
    : undefined;
  const stack = await startLocalStack({
    port,
    useEnvironment: true,
    progress: (line) => console.error(line),
    edgeRuntime,
  });
  if (edgeRuntime) console.error(`Edge runtime limits: ${JSON.stringify(edgeRuntime)}`);
  console.error(
    `Serving ${stack.functionsUrl}/{voice-frontdoor,voice-stream,voice-action}; Ctrl-C stops.\n` +
      "Twilio and OpenAI settings come from the environment (see .env.example).",
  );
  Deno.addSignalListener("SIGINT", async () => {
    await stack.stop();
    Deno.exit(0);
  });
}
