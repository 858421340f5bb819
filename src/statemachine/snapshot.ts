/**
 * The state machine's snapshot and restore interface. A snapshot is a stream of chunks, so
 * that a large state is neither copied whole nor written in one blocking step: the storage
 * layer consumes the chunks and writes them a few at a time (see
 * src/storage/group-storage.ts, `createSnapshot`), and restore consumes them in order.
 */

/** StateSnapshot is an image of the state machine as of one applied log index. */
export interface StateSnapshot {
  /** The last log index the image includes. */
  readonly index: number;
  /**
   * chunks yields the image. The state machine must keep serving while it is consumed, so
   * it yields from a frozen view (copy-on-write, or a copy taken at `snapshot()`).
   */
  chunks(): Iterable<Uint8Array> | AsyncIterable<Uint8Array>;
}

/** SnapshotableStateMachine can produce a snapshot of itself and be rebuilt from one. */
export interface SnapshotableStateMachine {
  /** appliedIndex is the last log index applied. */
  readonly appliedIndex: number;
  /** snapshot captures the state as of `appliedIndex`. */
  snapshot(): StateSnapshot;
  /**
   * restore replaces the whole state with an image made by `snapshot()`, as of `index`.
   * Malformed input throws a DkvError (CORRUPTED) and leaves the old state untouched.
   */
  restore(index: number, chunks: Iterable<Uint8Array>): void;
}
