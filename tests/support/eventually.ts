/**
 * Polling waits for tests that watch real sockets and timers.
 * @module
 */

/**
 * Resolves with `predicate()`'s first truthy value, polled every `pollMs` real ms; rejects with
 * "Timed out waiting for <what>" after `timeoutMs`.
 */
export async function eventually<T>(
  predicate: () => Promise<T | null | undefined | false> | T | null | undefined | false,
  what: string,
  timeoutMs = 10_000,
  pollMs = 20,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  while (true) {
    const value = await predicate();
    if (value) return value;
    if (performance.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/** Resolves once `predicate()` holds, polled every real ms; rejects after `timeoutMs`. */
export async function until(predicate: () => boolean, what: string, timeoutMs = 5000) {
  await eventually(predicate, what, timeoutMs, 1);
}
