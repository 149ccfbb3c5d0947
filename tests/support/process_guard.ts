/**
 * Watches this process for failures nobody handled: `unhandledrejection` and uncaught `error`
 * events on `globalThis`. Each is counted and kept instead of failing the test run at once, so a
 * test can assert there were none and say which.
 * @module
 */

/** What a guard saw. */
export interface ProcessGuard {
  /** Reasons of promise rejections nobody handled. */
  readonly rejections: unknown[];
  /** Errors thrown out of callbacks (timers, event listeners). */
  readonly errors: unknown[];
  /** A one-line summary of what was seen, for assertion messages. */
  describe(): string;
  /** Removes the listeners. */
  stop(): void;
}

/** Starts counting unhandled rejections and uncaught errors. */
export function watchProcess(): ProcessGuard {
  const rejections: unknown[] = [];
  const errors: unknown[] = [];
  const onRejection = (event: PromiseRejectionEvent) => {
    rejections.push(event.reason);
    event.preventDefault();
  };
  const onError = (event: ErrorEvent) => {
    errors.push(event.error ?? event.message);
    event.preventDefault();
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  globalThis.addEventListener("error", onError);
  return {
    rejections,
    errors,
    describe() {
      const show = (value: unknown) =>
        value instanceof Error ? `${value.name}: ${value.message}` : String(value);
      return `unhandled rejections: [${rejections.map(show).join("; ")}], uncaught errors: [${
        errors.map(show).join("; ")
      }]`;
    },
    stop() {
      globalThis.removeEventListener("unhandledrejection", onRejection);
      globalThis.removeEventListener("error", onError);
    },
  };
}
