// voice-frontdoor on Supabase: wiring only; the logic is in handler.ts.
import { createFrontdoorApp } from "./app.ts";

Deno.serve(createFrontdoorApp(Deno.env.toObject()));
