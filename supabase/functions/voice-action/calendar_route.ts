/**
 * Serves the iCalendar feed staff subscribe to (`GET ?route=calendar&token=...`): looks up the
 * feed the token opens and answers the text `calendar.ts` writes. Unknown, revoked and malformed
 * tokens get the same 404; the token is never logged, only the feed it opened.
 * @module
 */
import type { Logger } from "../_shared/log.ts";
import type { CalendarFeed, Store } from "../_shared/store/types.ts";
import { buildCalendar, CALENDAR_CONTENT_TYPE, feedTokenSha256, isFeedToken } from "./calendar.ts";

/** What the feed route uses. */
export interface CalendarRouteDeps {
  store: Pick<Store, "calendarFeed">;
  /** Milliseconds since the epoch (the feed's time of writing). */
  clock: () => number;
  log: Logger;
}

/**
 * Answers a feed request: 405 unless GET or HEAD, 503 when the store fails.
 * @param token the `token` query parameter, as given
 */
export async function serveCalendarFeed(
  deps: CalendarRouteDeps,
  req: Request,
  token: string | null,
): Promise<Response> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    return new Response("Method not allowed", { status: 405, headers: { allow: "GET, HEAD" } });
  }
  let feed: CalendarFeed | null = null;
  // A malformed token cannot match: it gets the unknown token's answer without a lookup.
  if (isFeedToken(token)) {
    try {
      feed = await deps.store.calendarFeed(await feedTokenSha256(token));
    } catch (error) {
      deps.log.error("calendar_feed_failed", { error });
      return new Response("The calendar is unavailable; retry later", {
        status: 503,
        headers: { "retry-after": "60", "cache-control": "no-store" },
      });
    }
  }
  if (feed === null) {
    deps.log.info("calendar_feed_not_found");
    return new Response("Not found", { status: 404, headers: { "cache-control": "no-store" } });
  }
  const body = buildCalendar(feed, { nowMs: deps.clock() });
  deps.log.info("calendar_feed_served", {
    feedId: feed.feedId,
    orgId: feed.org.id,
    providerId: feed.provider?.id ?? null,
    events: feed.events.length,
  });
  return new Response(req.method === "HEAD" ? null : body, {
    status: 200,
    headers: {
      "content-type": CALENDAR_CONTENT_TYPE,
      "cache-control": "private, max-age=300",
      "content-disposition": `inline; filename="${feed.org.slug}.ics"`,
    },
  });
}
