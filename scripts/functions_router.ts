/**
 * The local stack's function router: serves the three functions at
 * `http://127.0.0.1:54321/functions/v1/<name>` (the paths of Supabase's local stack), importing
 * each handler unchanged. The request a handler sees looks like hosted Supabase's: an internal
 * host and a path starting at `/<name>`, so a handler that trusts `req.url` fails here as it would
 * in production.
 * @module
 */
import type { Handler } from "../supabase/functions/_shared/runtime.ts";

/** The host hosted Supabase's edge runtime shows handlers instead of the public one. */
export const INTERNAL_ORIGIN = "http://edge-runtime.supabase.internal:9000";
/** The local stack's functions port. */
export const DEFAULT_FUNCTIONS_PORT = 54321;

/** The functions a local server serves, by name. */
export type FunctionHandlers = Partial<
  Record<"voice-frontdoor" | "voice-stream" | "voice-action", Handler>
>;

/** Routes `/functions/v1/<name>[/...]` to the named handler, rewriting the URL as Supabase does. */
export function createFunctionsRouter(handlers: FunctionHandlers): Handler {
  return (req) => {
    const url = new URL(req.url);
    const match = /^\/functions\/v1\/([a-z0-9-]+)(\/.*)?$/.exec(url.pathname);
    const handler = match ? handlers[match[1] as keyof FunctionHandlers] : undefined;
    if (!match || !handler) {
      return Response.json({ msg: "Function not found" }, { status: 404 });
    }
    const internalUrl = `${INTERNAL_ORIGIN}/${match[1]}${match[2] ?? ""}${url.search}`;
    // Redefining `url` on the original request (not a copy) keeps it upgradable to a WebSocket.
    Object.defineProperty(req, "url", { value: internalUrl, configurable: true });
    return handler(req);
  };
}

/** Starts the router on loopback; resolves once listening. */
export function serveFunctions(
  handlers: FunctionHandlers,
  options: { port?: number; hostname?: string; onListen?: (url: string) => void } = {},
): Deno.HttpServer<Deno.NetAddr> {
  const hostname = options.hostname ?? "127.0.0.1";
  return Deno.serve({
    port: options.port ?? DEFAULT_FUNCTIONS_PORT,
    hostname,
    onListen: (addr) => options.onListen?.(`http://${hostname}:${addr.port}/functions/v1`),
  }, createFunctionsRouter(handlers));
}
