/**
 * FetchTracker is the core's view of a GroupStorage that knows which background reads are in
 * flight, and decides when they land. GroupStorage answers a read that misses its memory with
 * LogTemporarilyUnavailable (or SnapshotTemporarilyUnavailable), reads LevelDB in the
 * background, then calls `onFetched`. When that read lands would depend on the disk, so the
 * tracker holds every background read's result until the simulator drains it, at a point of
 * its choosing: before the replica's next write, or (to test reads that overlap a write)
 * after it. LevelDB reads from a snapshot taken when the read starts, so what a read returns
 * and when it lands are both fixed by the seed.
 */
import {
  type Entry,
  type InitialState,
  isStorageError,
  type Snapshot,
  type Storage,
  StorageErrorKind,
} from '../../../src/raft/index.js';
import type { GroupStorage } from '../../../src/storage/group-storage.js';
import type { LevelDb } from '../../../src/storage/level-db.js';

/** FETCH_WAIT_MS_MAX bounds the wait for one background read (a read on a local LevelDB takes milliseconds). */
export const FETCH_WAIT_MS_MAX = 10_000;

/** FetchTracker wraps one GroupStorage for the core; it holds no data of its own. */
export class FetchTracker implements Storage {
  readonly inner: GroupStorage;
  private readonly db: LevelDb;
  private readonly realEntries: LevelDb['entries'];
  /** Set while the core is inside a storage read: a LevelDB read started then is a background read. */
  private inCoreRead = false;
  /** Releases of the background reads whose results are held back until `drain`. */
  private held: (() => void)[] = [];
  /** An entries() read answered "temporarily unavailable": a log fetch is in flight (GroupStorage runs one at a time). */
  private logFetchInFlight = false;
  /** A snapshot() read answered "temporarily unavailable": a snapshot load is in flight. */
  private snapshotLoadInFlight = false;
  /** onFetched calls not yet matched by a drain. Invariant: at most the number of reads in flight. */
  private completions = 0;
  private wake: (() => void) | null = null;

  /** The tracker takes over `db.entries` (GroupStorage's only background read) until `detach`. */
  constructor(inner: GroupStorage, db: LevelDb) {
    this.inner = inner;
    this.db = db;
    this.realEntries = db.entries;
    const real = db.entries.bind(db);
    db.entries = (range) => {
      const read = real(range);
      if (!this.inCoreRead) return read;
      read.catch(() => undefined); // Its failure reaches GroupStorage once released.
      return new Promise<void>((release) => this.held.push(release)).then(() => read);
    };
    inner.onFetched = () => {
      this.completions++;
      const wake = this.wake;
      this.wake = null;
      wake?.();
    };
  }

  /** inFlight counts the background reads started and not yet drained. */
  get inFlight(): number {
    return (this.logFetchInFlight ? 1 : 0) + (this.snapshotLoadInFlight ? 1 : 0);
  }

  /**
   * drain lets every background read in flight land and waits until it has; it returns
   * whether there was any (then the core must be told, with `RawNode.entriesFetched()`).
   */
  async drain(): Promise<boolean> {
    const expected = this.inFlight;
    for (const release of this.held.splice(0)) release();
    while (this.completions < expected) {
      await new Promise<void>((resolve, reject) => {
        // A read that never reports back is a storage bug: fail the run instead of hanging it.
        const timer = setTimeout(() => {
          this.wake = null;
          reject(
            new Error(
              `a background read of group ${this.inner.group} did not finish in ${FETCH_WAIT_MS_MAX} ms`,
            ),
          );
        }, FETCH_WAIT_MS_MAX);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    if (this.completions !== expected) {
      throw new Error(`FetchTracker: ${this.completions} reads finished but ${expected} were started`);
    }
    this.completions = 0;
    this.logFetchInFlight = false;
    this.snapshotLoadInFlight = false;
    return expected > 0;
  }

  /** detach gives `db.entries` back and stops listening to the storage (it is being closed). */
  detach(): void {
    for (const release of this.held.splice(0)) release();
    this.db.entries = this.realEntries;
    this.inner.onFetched = null;
  }

  initialState(): InitialState {
    return this.inner.initialState();
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    this.inCoreRead = true;
    try {
      return this.inner.entries(lo, hi, maxBytes);
    } catch (err) {
      if (isStorageError(err, StorageErrorKind.LogTemporarilyUnavailable)) this.logFetchInFlight = true;
      throw err;
    } finally {
      this.inCoreRead = false;
    }
  }

  term(index: number): number {
    return this.inner.term(index);
  }

  firstIndex(): number {
    return this.inner.firstIndex();
  }

  lastIndex(): number {
    return this.inner.lastIndex();
  }

  snapshot(): Snapshot {
    this.inCoreRead = true;
    try {
      return this.inner.snapshot();
    } catch (err) {
      if (isStorageError(err, StorageErrorKind.SnapshotTemporarilyUnavailable))
        this.snapshotLoadInFlight = true;
      throw err;
    } finally {
      this.inCoreRead = false;
    }
  }
}
