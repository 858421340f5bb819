/**
 * The client's public data types (CONTRACT.md, "Client library"). They describe what comes
 * off the wire; they match the state machine's shapes (src/engines/types.ts) structurally,
 * without the client importing the engines.
 */

/** Item is a key's current state. */
export interface Item {
  readonly key: string;
  /** What was put: a string, a Uint8Array, or a structured value. */
  readonly value: unknown;
  /** 1 on create, +1 on every put; a delete and re-create starts again at 1. */
  readonly version: number;
  /** The group revision of the put that created the key. */
  readonly createRevision: number;
  /** The group revision of the last put. */
  readonly modRevision: number;
  /**
   * The deadline after which the key is gone, on the replicated clock: milliseconds that run
   * at real rate and start near wall time, but do not follow wall-clock jumps and fall behind
   * wall time by a little at each leader change (README, "Time").
   */
  readonly expiresAt?: number;
  /** The lease the key is bound to. */
  readonly lease?: number;
  readonly labels?: Readonly<Record<string, string | number>>;
}
