/**
 * `npm run serve`: the local stack (database and the three functions at
 * `http://127.0.0.1:54321/functions/v1/<name>`) until Ctrl-C. Settings come from the
 * environment (see .env.example); DATABASE_URL, else an embedded PGlite.
 * @module
 */
import { DEFAULT_FUNCTIONS_PORT } from "./functions_router.ts";
import { startLocalStack } from "./local_stack.ts";

if (import.meta.main) {
  const port = Number(Deno.env.get("FUNCTIONS_PORT") ?? DEFAULT_FUNCTIONS_PORT);
  const stack = await startLocalStack({
    port,
    useEnvironment: true,
    progress: (line) => console.error(line),
  });
  console.error(
    `Serving ${stack.functionsUrl}/{voice-frontdoor,voice-stream,voice-action}; Ctrl-C stops.\n` +
      "Twilio and OpenAI settings come from the environment (see .env.example).",
  );
  Deno.addSignalListener("SIGINT", async () => {
    await stack.stop();
    Deno.exit(0);
  });
}
