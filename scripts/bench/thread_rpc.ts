/**
 * Numbered commands between a bench's main thread and its load threads (Workers): the main thread
 * `ask`s, the thread answers each command with a reply carrying the same `id`, moving the reply's
 * sample buffers instead of copying them. A thread that throws fails every pending `ask`, so a
 * run fails instead of hanging.
 * @module
 */

/** A load thread seen from the main thread. */
export interface ThreadHandle<Command, Reply> {
  ask(command: Command): Promise<Reply>;
  terminate(): void;
}

/**
 * Starts `moduleUrl` as a Worker and sends it `start` (its first command, which says the
 * thread's role); resolves once the thread answered it.
 * @param label names the thread in the error of a thread that throws
 */
export async function spawnThread<Command extends { type: string }, Reply extends { id: number }>(
  moduleUrl: string,
  label: string,
  start: Command,
): Promise<ThreadHandle<Command, Reply>> {
  const worker = new Worker(moduleUrl, { type: "module" });
  const pending = new Map<number, { resolve(reply: Reply): void; reject(error: Error): void }>();
  let nextId = 0;
  worker.onmessage = (event: MessageEvent<Reply>) => {
    pending.get(event.data.id)?.resolve(event.data);
    pending.delete(event.data.id);
  };
  worker.onerror = (event: ErrorEvent) => {
    event.preventDefault();
    const error = new Error(`load thread (${label}) failed: ${event.message}`);
    for (const waiter of pending.values()) waiter.reject(error);
    pending.clear();
  };
  const handle: ThreadHandle<Command, Reply> = {
    ask(command) {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        worker.postMessage({ ...command, id });
      });
    },
    terminate: () => worker.terminate(),
  };
  await handle.ask(start);
  return handle;
}

/**
 * In the Worker: answers every numbered command with `answer`'s reply, transferring the buffers
 * `transferOf` names.
 */
export function serveThread<Command extends { type: string }, Reply extends { id: number }>(
  answer: (command: Command & { id: number }) => Promise<Reply>,
  transferOf: (reply: Reply) => Transferable[],
): void {
  const scope = globalThis as unknown as {
    onmessage: ((event: MessageEvent<Command & { id: number }>) => void) | null;
    postMessage(message: Reply, transfer?: Transferable[]): void;
  };
  scope.onmessage = async (event) => {
    const reply = await answer(event.data);
    scope.postMessage(reply, transferOf(reply));
  };
}
