// voice-action on Supabase: wiring only; the logic is in handler.ts.
import { createVoiceActionApp } from "./app.ts";

Deno.serve(createVoiceActionApp(Deno.env.toObject()));
