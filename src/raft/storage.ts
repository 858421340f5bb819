import type { ConfState, Entry, HardState, Snapshot } from './types.js';

/** StorageErrorKind names the expected, recoverable ways a Storage read can fail. */
export const StorageErrorKind = {
  /** The requested index is before the first retained entry (it was compacted into a snapshot). */
  Compacted: 'compacted',
  /** The requested index is after the last entry. */
  Unavailable: 'unavailable',
  /** The snapshot is being produced; ask again later. */
  SnapshotTemporarilyUnavailable: 'snapshot-temporarily-unavailable',
  /**
   * The entries exist but are not in memory; the storage is fetching them. The core skips
   * the work that needed them and retries after the driver calls `RawNode.entriesFetched()`
   * (or, for replication, on the next heartbeat response).
   */
  LogTemporarilyUnavailable: 'log-temporarily-unavailable',
} as const;
export type StorageErrorKind = (typeof StorageErrorKind)[keyof typeof StorageErrorKind];

/** StorageError is thrown by Storage reads for the expected conditions in StorageErrorKind. */
export class StorageError extends Error {
  override readonly name = 'StorageError';
  readonly kind: StorageErrorKind;

  constructor(kind: StorageErrorKind, message: string) {
    super(message);
    this.kind = kind;
  }
}

/** isStorageError narrows a thrown value to a StorageError, optionally of one kind. */
export function isStorageError(err: unknown, kind?: StorageErrorKind): err is StorageError {
  return err instanceof StorageError && (kind === undefined || err.kind === kind);
}

/** InitialState is what a replica recovers at start-up. */
export interface InitialState {
  readonly hardState: HardState;
  readonly confState: ConfState;
}

/**
 * Storage is the core's read-only view of the stable log. The driver writes to it (in the
 * order the Ready contract gives) and the core reads from it. Reads are synchronous; an
 * implementation backed by an asynchronous store keeps what the core reads (terms, the
 * retained tail) in memory.
 *
 * Indexes: the storage holds a snapshot at `firstIndex() - 1` (possibly the empty one at 0)
 * followed by entries `firstIndex()..lastIndex()`.
 */
export interface Storage {
  /** initialState returns the persisted hard state and membership. */
  initialState(): InitialState;
  /**
   * entries returns entries [lo, hi), trimmed to at most `maxBytes` of payload, but always at
   * least one entry when lo < hi. Throws Compacted if lo < firstIndex(), and may throw
   * LogTemporarilyUnavailable if an asynchronous store must fetch them first.
   */
  entries(lo: number, hi: number, maxBytes: number): Entry[];
  /**
   * term returns the term of entry `index`, which must be in [firstIndex()-1, lastIndex()].
   * The term of firstIndex()-1 is the snapshot's term. Throws Compacted or Unavailable.
   */
  term(index: number): number;
  /** firstIndex is the index of the first entry that may be read with `entries`. */
  firstIndex(): number;
  /** lastIndex is the index of the last entry in the log (snapshot index if there is none). */
  lastIndex(): number;
  /** snapshot returns the most recent snapshot. Throws SnapshotTemporarilyUnavailable. */
  snapshot(): Snapshot;
}

/** entryBytes is the size that limits count for an entry: its payload plus fixed overhead. */
export function entryBytes(entry: Entry): number {
  return entry.data.length + ENTRY_OVERHEAD_BYTES;
}

/** ENTRY_OVERHEAD_BYTES approximates an encoded entry's header (term, index, type). */
export const ENTRY_OVERHEAD_BYTES = 16;

/**
 * limitSize trims `entries` in place so their total size stays within `maxBytes`, keeping at
 * least the first entry, and returns it.
 */
export function limitSize(entries: Entry[], maxBytes: number): Entry[] {
  if (entries.length === 0) return entries;
  let size = entryBytes(entries[0]!);
  let limit = 1;
  for (; limit < entries.length; limit++) {
    size += entryBytes(entries[limit]!);
    if (size > maxBytes) break;
  }
  entries.length = limit;
  return entries;
}
