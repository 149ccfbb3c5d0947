/**
 * Compile-time check of the codec's zod-parsed server events against the `openai` package's GA
 * Realtime server event types. Types only: nothing here exists at run time.
 *
 * For each parsed event, the SDK event of the same `type` must exist, every field the parser
 * checks must exist there (nested fields too), and every value the SDK declares for it must be
 * accepted by the parser. The parser may be looser (e.g. `status: string`). Whether the SDK marks
 * a field optional is not compared: it marks fields the server always sends optional as well
 * (e.g. `response.id`), and the parser needs them.
 *
 * @module
 */
import type { RealtimeServerEvent } from "openai/resources/realtime/realtime";

type Values<T> = T[keyof T];
type ArrayPart<T> = Extract<T, readonly unknown[]>;
type ObjectPart<T> = Exclude<Extract<T, object>, readonly unknown[]>;

// zod's loose objects add `[x: string]: unknown`; only the named keys are fields the parser checks.
// (`keyof Ours` alone would be just `string`: the index signature absorbs the named keys.)
type NamedKey<K> = K extends string ? string extends K ? never : K : never;

type ObjectDrift<Ours, Sdk, Path extends string> = Values<
  {
    [K in keyof Ours as NamedKey<K>]-?: K extends keyof Sdk & string
      ? FieldDrift<Ours[K], Exclude<Sdk[K], undefined>, `${Path}.${K}`>
      : `${Path}.${NamedKey<K>}: no such field in the openai type`;
  }
>;

type FieldDrift<Ours, Sdk, Path extends string> =
  | ([Exclude<Sdk, object>] extends [Ours] ? never
    : `${Path}: the parser rejects a value the openai type allows`)
  | ([ArrayPart<Sdk>] extends [never] ? never
    : [ArrayPart<Ours>] extends [never] ? `${Path}: the openai type is an array`
    : FieldDrift<ArrayPart<Ours>[number], ArrayPart<Sdk>[number], `${Path}[]`>)
  | ([ObjectPart<Sdk>] extends [never] ? never
    : [ObjectPart<Ours>] extends [never] ? `${Path}: the openai type is an object`
    : ObjectDrift<ObjectPart<Ours>, ObjectPart<Sdk>, Path>);

// Distributes over a union of parsed events, so each one is compared with its own SDK event.
type EventDrift<Ours extends { type: string }> = Ours extends unknown
  ? [Extract<RealtimeServerEvent, { type: Ours["type"] }>] extends [never]
    ? `${Ours["type"]}: no GA server event of this type in the openai package`
  : ObjectDrift<Ours, Extract<RealtimeServerEvent, { type: Ours["type"] }>, Ours["type"]>
  : never;

/**
 * `true` when every parsed event in `Events` conforms; otherwise the drifts as "path: reason"
 * texts, which the compiler prints when {@link AssertConforms} rejects them.
 */
export type ServerEventsConform<Events extends { type: string }> = [EventDrift<Events>] extends
  [never] ? true
  : EventDrift<Events>;

/** Fails type checking, naming the drifts, unless `T` is `true`. */
export type AssertConforms<T extends true> = T;
