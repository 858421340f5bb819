/**
 * Types shared by the engines (src/engines/). The engines are plain, deterministic data
 * structures: no I/O, no clock, no timers, no Promises, no randomness. Time arrives as an
 * argument (`now`, the replicated clock in milliseconds), and every order that can be seen
 * from outside (expiry order, lock hand-off, dispatch order, snapshot order) is defined by
 * data (keys, ids, deadlines), never by Map insertion order, so a replica restored from a
 * snapshot behaves exactly like one that applied the whole log.
 */

/** Value is any msgpack-encodable value: a string, a Uint8Array, or structured data. */
export type Value = unknown;

/** Labels are sent with a put, for label indexes. */
export type Labels = Readonly<Record<string, string | number>>;

/** Item is a key's current state, as users see it (CONTRACT.md). */
export interface Item {
  readonly key: string;
  readonly value: Value;
  /** 1 on create, +1 on every put; a delete and re-create starts again at 1. */
  readonly version: number;
  /** The group revision of the put that created the key. */
  readonly createRevision: number;
  /** The group revision of the last put. */
  readonly modRevision: number;
  /** Replicated-clock deadline (ms) after which the key is gone. */
  readonly expiresAt?: number;
  /** The lease the key is bound to. */
  readonly lease?: number;
  readonly labels?: Labels;
}

/** EventCause says why a key changed: a client write, a TTL expiry, or its lease ending. */
export type EventCause = 'write' | 'expired' | 'lease';

/** ChangeEvent is one mutation of one key, numbered by the group revision. */
export interface ChangeEvent {
  readonly type: 'put' | 'delete';
  readonly cause: EventCause;
  readonly key: string;
  /** The new value (puts only). */
  readonly value?: Value;
  readonly revision: number;
  /** The item after a put. */
  readonly item?: Item;
  /** The item before the change, if the key existed. */
  readonly prev?: Item;
}

/**
 * An engine snapshot is a frozen view taken at one applied index, yielded as parts: plain
 * msgpack-encodable values of bounded size (about a thousand records each), so that a large
 * state is streamed in chunks rather than encoded in one blocking step. Restore reads the
 * parts back in order and validates every one (a malformed part throws DkvError CORRUPTED).
 */
export interface EngineSnapshot {
  parts(): Iterable<unknown>;
}
