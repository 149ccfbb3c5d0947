/**
 * Turns the service and provider names the model speaks ("cleaning", "Dr Lee", "Sam") into the
 * org's services and providers from `lookup_caller`, or into a refusal the model can act on (the
 * names it may use). Pure: no I/O.
 * @module
 */
import type { OrgSettings, ProviderInfo, ServiceInfo } from "../_shared/store/types.ts";

/** A name resolved, or why not with the names that would have worked. */
export type Resolved<T> =
  | { ok: true; value: T }
  | { ok: false; reason: "unknown" | "ambiguous" | "needs_choice"; message: string };

/** Lower case, punctuation and repeated spaces dropped: "Dr. Lee" and "dr lee" compare equal. */
export function nameKey(name: string): string {
  return name.toLowerCase().normalize("NFKD").replace(/[\u0300-\u036f]/g, "")
    .replace(/[^\p{L}\p{N}]+/gu, " ").trim();
}

/**
 * Finds the one item whose name matches `spoken`: exactly (ignoring case and punctuation), else
 * the only item whose name contains it or its words ("Lee" for "Dr. Lee").
 */
function match<T extends { name: string }>(items: readonly T[], spoken: string): T[] {
  const key = nameKey(spoken);
  if (key === "") return [];
  const exact = items.filter((item) => nameKey(item.name) === key);
  if (exact.length > 0) return exact;
  const contained = items.filter((item) => ` ${nameKey(item.name)} `.includes(` ${key} `));
  if (contained.length > 0) return contained;
  // "teeth cleaning" for "Cleaning": every word of the item's name among the spoken words.
  const words = new Set(key.split(" "));
  return items.filter((item) => nameKey(item.name).split(" ").every((word) => words.has(word)));
}

function list(names: readonly string[]): string {
  return names.map((name) => `'${name}'`).join(", ");
}

/**
 * The service the caller means. Without a name: the org's default service, else its only one;
 * with several and none named, the model must ask.
 */
export function resolveService(org: OrgSettings, spoken?: string): Resolved<ServiceInfo> {
  const names = org.services.map((service) => service.name);
  if (org.services.length === 0) {
    return {
      ok: false,
      reason: "unknown",
      message: "This business has no bookable services set up. Offer a transfer to a person.",
    };
  }
  if (spoken === undefined || nameKey(spoken) === "") {
    const fallback = org.services.find((service) => service.isDefault) ??
      (org.services.length === 1 ? org.services[0] : undefined);
    if (fallback) return { ok: true, value: fallback };
    return {
      ok: false,
      reason: "needs_choice",
      message: `Ask the caller which service they want: ${list(names)}. Then call again with ` +
        "`service`.",
    };
  }
  const found = match(org.services, spoken);
  if (found.length === 1) return { ok: true, value: found[0] };
  return {
    ok: false,
    reason: found.length === 0 ? "unknown" : "ambiguous",
    message: `${JSON.stringify(spoken)} is not one of the services. The services are: ` +
      `${list(names)}. Ask the caller which one they mean, then call again with that name.`,
  };
}

/**
 * The provider the caller means, among those offering `service` (any of the org's when the
 * service is not known yet: the database then checks the provider offers it).
 */
export function resolveProvider(
  org: OrgSettings,
  service: ServiceInfo | null,
  spoken: string,
): Resolved<ProviderInfo> {
  if (service === null) {
    const found = match(org.providers, spoken);
    if (found.length === 1) return { ok: true, value: found[0] };
    return {
      ok: false,
      reason: found.length === 0 ? "unknown" : "ambiguous",
      message: `${JSON.stringify(spoken)} is not one of the providers: ` +
        `${list(org.providers.map((provider) => provider.name))}. Ask the caller which one ` +
        "they mean, or leave the provider out.",
    };
  }
  const offering = org.providers.filter((provider) => service.providers.includes(provider.name));
  const found = match(offering, spoken);
  if (found.length === 1) return { ok: true, value: found[0] };
  const elsewhere = match(org.providers, spoken);
  const names = offering.map((provider) => provider.name);
  if (found.length === 0 && elsewhere.length === 1) {
    return {
      ok: false,
      reason: "unknown",
      message: `${elsewhere[0].name} does not offer ${service.name}. ${service.name} is with ` +
        `${list(names)}. Tell the caller and offer one of them.`,
    };
  }
  return {
    ok: false,
    reason: found.length === 0 ? "unknown" : "ambiguous",
    message: `${JSON.stringify(spoken)} is not a provider of ${service.name}. Its providers are ` +
      `${list(names)}. Ask the caller which one they mean, or leave the provider out.`,
  };
}
