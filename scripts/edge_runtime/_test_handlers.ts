/**
 * Handlers the supervisor tests run in user workers (`createTestHandler(env, { kind })`): a
 * webhook that reports its thread, a WebSocket that burns CPU, one that idles, an echo.
 * WebSocket handlers send each `beforeunload` reason they see as `{"beforeunload": reason}`.
 * @module
 */
import { currentThreadId } from "./thread_stat.ts";

/** Which test handler to build. */
export type TestHandlerKind =
  | "hello"
  | "background"
  | "busy_socket"
  | "idle_socket"
  | "echo_socket";

/** Burns CPU in 5 ms slices, yielding between them as an event-driven handler does. */
function burnCpu(): void {
  const until = performance.now() + 5;
  while (performance.now() < until) {
    // Busy.
  }
  setTimeout(burnCpu, 0);
}

function upgrade(
  req: Request,
  onOpen: (socket: WebSocket) => void,
): Response {
  const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: 0 });
  const closed = Promise.withResolvers<void>();
  socket.onclose = () => closed.resolve();
  socket.onopen = () => {
    addEventListener("beforeunload", (event) => {
      const reason = (event as CustomEvent<{ reason: string }>).detail?.reason;
      if (socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify({ beforeunload: reason }));
      }
    });
    onOpen(socket);
  };
  // What voice-stream does: keep the worker until the socket closes.
  (globalThis as { EdgeRuntime?: { waitUntil(p: Promise<unknown>): void } }).EdgeRuntime
    ?.waitUntil(closed.promise);
  return response;
}

/**
 * A test handler.
 * @param _env unused
 * @param args which handler
 */
export function createTestHandler(
  _env: Record<string, string>,
  args: { kind: TestHandlerKind },
): (req: Request) => Response | Promise<Response> {
  switch (args.kind) {
    case "hello":
      return (req) =>
        Response.json({
          tid: currentThreadId(),
          path: new URL(req.url).pathname,
          edgeRuntime: "EdgeRuntime" in globalThis,
        });
    case "background":
      return () => {
        const edge = (globalThis as { EdgeRuntime?: { waitUntil(p: Promise<unknown>): void } })
          .EdgeRuntime;
        edge?.waitUntil(new Promise((resolve) => setTimeout(resolve, 300)));
        return new Response("accepted", { status: 202 });
      };
    case "busy_socket":
      return (req) => upgrade(req, () => burnCpu());
    case "idle_socket":
      return (req) => upgrade(req, () => {});
    case "echo_socket":
      return (req) =>
        upgrade(req, (socket) => {
          socket.onmessage = (event) => socket.send(event.data);
        });
  }
}
