// voice-stream on Supabase: wiring only; the logic is in handler.ts and bridge.ts.
import { createStreamApp } from "./app.ts";

Deno.serve(createStreamApp(Deno.env.toObject()));
