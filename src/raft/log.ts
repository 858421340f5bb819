import { Unstable } from './log-unstable.js';
import {
  entryBytes,
  isStorageError,
  limitSize,
  type Storage,
  StorageError,
  StorageErrorKind,
} from './storage.js';
import type { Entry, Snapshot } from './types.js';

/**
 * RaftLog is a replica's log: the persisted part (in Storage) followed by the unstable part
 * (accepted, not yet persisted). It also tracks the commit and apply positions.
 */
export class RaftLog {
  readonly storage: Storage;
  readonly unstable: Unstable;
  /** The highest index known to be committed. Invariant: applied <= committed <= lastIndex(). */
  committed: number;
  /** Committed entries up to here have been handed out to apply. Invariant: applied <= applying <= committed. */
  applying: number;
  /** The highest index the application has applied. */
  applied: number;
  /** The most committed-entry bytes handed out in one Ready. */
  readonly maxApplyingBytes: number;
  /**
   * Set when the storage could not hand out committed entries synchronously; cleared by
   * `entriesFetched()`. While set, no committed entries are offered (so the driver is not
   * asked to spin).
   */
  applyWaitingForFetch = false;

  constructor(storage: Storage, maxApplyingBytes: number) {
    this.storage = storage;
    this.maxApplyingBytes = maxApplyingBytes;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    this.committed = first - 1;
    this.applying = first - 1;
    this.applied = first - 1;
  }

  /** firstIndex is the first index that may be read. */
  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  /** lastIndex is the index of the last entry. */
  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  /** lastTerm is the term of the last entry. */
  lastTerm(): number {
    return this.term(this.lastIndex());
  }

  /**
   * term returns the term of entry `i`, or 0 when it is out of range or compacted. Callers
   * that must tell those apart use `termOrUndefined`.
   */
  term(i: number): number {
    return this.termOrUndefined(i) ?? 0;
  }

  /** termOrUndefined returns the term of entry `i`, or undefined if it is compacted or beyond the log. */
  termOrUndefined(i: number): number | undefined {
    const t = this.unstable.maybeTerm(i);
    if (t !== undefined) return t;
    const dummy = this.firstIndex() - 1;
    if (i < dummy || i > this.lastIndex()) return undefined;
    try {
      return this.storage.term(i);
    } catch (err) {
      if (
        isStorageError(err, StorageErrorKind.Compacted) ||
        isStorageError(err, StorageErrorKind.Unavailable)
      ) {
        return undefined;
      }
      throw err;
    }
  }

  /** matchTerm tells whether entry `i` exists with term `t`. */
  matchTerm(i: number, t: number): boolean {
    const got = this.termOrUndefined(i);
    return got !== undefined && got === t;
  }

  /** isUpToDate tells whether a log ending at (`lasti`, `term`) is at least as up to date as ours (§5.4.1). */
  isUpToDate(lasti: number, term: number): boolean {
    const ourTerm = this.lastTerm();
    return term > ourTerm || (term === ourTerm && lasti >= this.lastIndex());
  }

  /**
   * maybeAppend is the follower side of AppendEntries: if our entry at `index` has term
   * `logTerm`, it appends `ents` (truncating any conflicting suffix), advances the commit
   * index, and returns the index of the last new entry; otherwise it returns undefined.
   */
  maybeAppend(index: number, logTerm: number, committed: number, ents: readonly Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + ents.length;
    const ci = this.findConflict(ents);
    if (ci !== 0) {
      if (ci <= this.committed) {
        throw new Error(
          `RaftLog.maybeAppend: entry ${ci} conflicts with committed entry (committed ${this.committed})`,
        );
      }
      this.append(ents.slice(ci - (index + 1)));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  /** append adds entries after the last one (or over a conflicting suffix) and returns the new last index. */
  append(ents: readonly Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = ents[0]!.index - 1;
    if (after < this.committed) {
      throw new Error(`RaftLog.append: ${after} is before the commit index ${this.committed}`);
    }
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /**
   * findConflict returns the index of the first entry of `ents` that is not in our log with
   * the same term (a conflict, or simply new), or 0 if all are present.
   */
  findConflict(ents: readonly Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * findConflictByTerm returns the largest index <= `index` whose term is <= `term`, with
   * that term; it lets a leader skip a whole term of mismatching entries at once.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (let i = index; ; i--) {
      const t = this.termOrUndefined(i);
      if (t === undefined) return { index: i, term: 0 };
      if (t <= term) return { index: i, term: t };
    }
  }

  /** commitTo raises the commit index; it never lowers it. */
  commitTo(toCommit: number): void {
    if (toCommit <= this.committed) return;
    if (toCommit > this.lastIndex()) {
      throw new Error(`RaftLog.commitTo: ${toCommit} is beyond the last index ${this.lastIndex()}`);
    }
    this.committed = toCommit;
  }

  /**
   * maybeCommit commits up to `maxIndex` if that entry is from `term` (the Figure-8 rule: a
   * leader commits only entries of its own term by counting replicas).
   */
  maybeCommit(maxIndex: number, term: number): boolean {
    if (maxIndex > this.committed && this.term(maxIndex) === term) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  /** appliedTo records that the application applied up to `i`. */
  appliedTo(i: number): void {
    if (i === 0) return;
    if (i > this.committed || i < this.applied) {
      throw new Error(`RaftLog.appliedTo: ${i} is out of range [${this.applied}, ${this.committed}]`);
    }
    this.applied = i;
    if (this.applying < i) this.applying = i;
  }

  /** hasNextCommittedEntries tells whether committed entries wait to be handed out. */
  hasNextCommittedEntries(): boolean {
    if (this.unstable.snapshot || this.applyWaitingForFetch) return false;
    return this.committed > this.applying;
  }

  /**
   * nextCommittedEntries returns committed entries not yet handed out, bounded in bytes, and
   * marks them as applying. Entries are handed out only once persisted (see Ready).
   */
  nextCommittedEntries(): Entry[] {
    if (!this.hasNextCommittedEntries()) return [];
    const lo = this.applying + 1;
    const hi = this.committed + 1;
    let ents: Entry[];
    try {
      ents = this.slice(lo, hi, this.maxApplyingBytes);
    } catch (err) {
      if (!isStorageError(err, StorageErrorKind.LogTemporarilyUnavailable)) throw err;
      this.applyWaitingForFetch = true;
      return [];
    }
    if (ents.length > 0) this.applying = ents[ents.length - 1]!.index;
    return ents;
  }

  /** entriesFrom returns entries from `i` to the end, bounded in bytes. */
  entriesFrom(i: number, maxBytes: number): Entry[] {
    if (i > this.lastIndex()) return [];
    return this.slice(i, this.lastIndex() + 1, maxBytes);
  }

  /** slice returns entries [lo, hi), bounded in bytes (at least one). Throws a Compacted StorageError. */
  slice(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo > hi) throw new Error(`RaftLog.slice: invalid range [${lo}, ${hi})`);
    if (lo === hi) return [];
    const first = this.firstIndex();
    if (lo < first)
      throw new StorageError(StorageErrorKind.Compacted, `slice: ${lo} is before the first index ${first}`);
    if (hi > this.lastIndex() + 1) throw new Error(`RaftLog.slice: ${hi} is beyond ${this.lastIndex() + 1}`);
    let ents: Entry[] = [];
    const uoff = this.unstable.offset;
    if (lo < uoff) {
      ents = this.storage.entries(lo, Math.min(hi, uoff), maxBytes);
      // Stop if the storage trimmed the result.
      if (ents.length < Math.min(hi, uoff) - lo) return ents;
      let size = 0;
      for (const e of ents) size += entryBytes(e);
      if (size >= maxBytes) return ents;
    }
    if (hi > uoff) {
      const tail = this.unstable.slice(Math.max(lo, uoff), hi);
      ents = ents.length > 0 ? ents.concat(tail) : tail;
    }
    return limitSize(ents, maxBytes);
  }

  /** snapshot returns the newest snapshot: an incoming one not yet persisted, or the storage's. */
  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  /** restore replaces the log with a snapshot received from the leader. */
  restore(s: Snapshot): void {
    this.committed = s.metadata.index;
    this.unstable.restore(s);
  }

  /** stableTo records that entries up to (`i`, `t`) are durable. */
  stableTo(i: number, t: number): void {
    this.unstable.stableTo(i, t);
  }

  /** stableSnapTo records that the snapshot at `i` is durable and applied. */
  stableSnapTo(i: number): void {
    this.unstable.stableSnapTo(i);
    if (this.applied < i) this.applied = i;
    if (this.applying < i) this.applying = i;
  }
}
