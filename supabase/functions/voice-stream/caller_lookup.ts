/**
 * Who is calling, within the lookup budget: the caller's record is worth a personal greeting, not
 * a silent line. A slow or failed lookup gives null (an unknown caller) and a log line.
 * @module
 */
import type { Logger } from "../_shared/log.ts";
import type { CallerContext } from "../_shared/store/types.ts";
import type { BridgeDeps, CallIdentity, TimerHandle } from "./bridge_deps.ts";

/** What the lookup found and how long it took. */
export interface CallerLookup {
  context: CallerContext | null;
  lookupMs: number;
}

/** Looks the caller up, giving up after `config.lookupBudgetMs`. */
export async function lookupCallerWithinBudget(
  deps: Pick<BridgeDeps, "store" | "timers" | "now"> & {
    config: Pick<BridgeDeps["config"], "lookupBudgetMs">;
  },
  log: Logger,
  call: Pick<CallIdentity, "from" | "to">,
): Promise<CallerLookup> {
  const started = deps.now();
  const budgetMs = deps.config.lookupBudgetMs;
  let timer: TimerHandle | undefined;
  const budget = new Promise<"timeout">((resolve) => {
    timer = deps.timers.setTimeout(() => resolve("timeout"), budgetMs);
  });
  const elapsed = () => Math.round(deps.now() - started);
  try {
    const result = await Promise.race([deps.store.lookupCaller(call.to, call.from), budget]);
    const lookupMs = elapsed();
    if (result === "timeout") {
      log.warn("lookup_timeout", { lookupMs, budgetMs });
      return { context: null, lookupMs };
    }
    if (result?.client) {
      log.info("client_identified", { lookupMs, clientId: result.client.id });
    } else {
      log.info("client_unknown", { lookupMs, orgKnown: result !== null });
    }
    return { context: result, lookupMs };
  } catch (error) {
    const lookupMs = elapsed();
    log.warn("lookup_failed", { lookupMs, error });
    return { context: null, lookupMs };
  } finally {
    if (timer !== undefined) deps.timers.clearTimeout(timer);
  }
}
