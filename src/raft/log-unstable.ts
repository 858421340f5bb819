import type { Entry, Snapshot } from './types.js';

/**
 * Unstable holds what the core has accepted but the driver has not yet persisted: at most
 * one incoming snapshot, then entries. Entries handed out in a Ready are "in progress"
 * until `stableTo` says they are durable.
 */
export class Unstable {
  /** An incoming snapshot not yet persisted. */
  snapshot: Snapshot | null = null;
  /** Whether `snapshot` has been handed out in a Ready. */
  snapshotInProgress = false;
  /** Entries not yet persisted. Invariant: entries[i].index === offset + i. */
  entries: Entry[] = [];
  /** The index of entries[0] (or where the next entry would go). */
  offset: number;
  /** Entries with index < offsetInProgress have been handed out in a Ready. Invariant: offset <= offsetInProgress. */
  offsetInProgress: number;

  constructor(offset: number) {
    this.offset = offset;
    this.offsetInProgress = offset;
  }

  /** maybeFirstIndex is the first log index if only a snapshot is known, else undefined. */
  maybeFirstIndex(): number | undefined {
    return this.snapshot ? this.snapshot.metadata.index + 1 : undefined;
  }

  /** maybeLastIndex is the last index held here, if any. */
  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot ? this.snapshot.metadata.index : undefined;
  }

  /** maybeTerm is the term of entry `i` if this holds it. */
  maybeTerm(i: number): number | undefined {
    if (i < this.offset) {
      if (this.snapshot && this.snapshot.metadata.index === i) return this.snapshot.metadata.term;
      return undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || i > last) return undefined;
    return this.entries[i - this.offset]!.term;
  }

  /** nextEntries are the entries not yet handed out. */
  nextEntries(): Entry[] {
    const inProgress = this.offsetInProgress - this.offset;
    if (this.entries.length === inProgress) return [];
    return this.entries.slice(inProgress);
  }

  /** hasNextEntries tells whether some entries have not been handed out yet. */
  hasNextEntries(): boolean {
    return this.offset + this.entries.length > this.offsetInProgress;
  }

  /** nextSnapshot is the snapshot if not yet handed out. */
  nextSnapshot(): Snapshot | null {
    return this.snapshot && !this.snapshotInProgress ? this.snapshot : null;
  }

  /** acceptInProgress marks everything currently held as handed out. */
  acceptInProgress(): void {
    if (this.entries.length > 0) this.offsetInProgress = this.offset + this.entries.length;
    if (this.snapshot) this.snapshotInProgress = true;
  }

  /**
   * stableTo records that entries up to (`i`, `t`) are durable. If the entry at `i` has been
   * replaced by one of another term since it was handed out, nothing is released.
   */
  stableTo(i: number, t: number): void {
    const gt = this.maybeTerm(i);
    if (gt === undefined || gt !== t || i < this.offset) return;
    const num = i + 1 - this.offset;
    this.entries = this.entries.slice(num);
    this.offset = i + 1;
    if (this.offsetInProgress < this.offset) this.offsetInProgress = this.offset;
  }

  /** stableSnapTo records that the snapshot at index `i` is durable. */
  stableSnapTo(i: number): void {
    if (this.snapshot && this.snapshot.metadata.index === i) {
      this.snapshot = null;
      this.snapshotInProgress = false;
    }
  }

  /** restore replaces everything with an incoming snapshot. */
  restore(s: Snapshot): void {
    this.offset = s.metadata.index + 1;
    this.offsetInProgress = this.offset;
    this.entries = [];
    this.snapshot = s;
    this.snapshotInProgress = false;
  }

  /** truncateAndAppend appends `ents`, first dropping any held entries they conflict with. */
  truncateAndAppend(ents: readonly Entry[]): void {
    if (ents.length === 0) return;
    const fromIndex = ents[0]!.index;
    const end = this.offset + this.entries.length;
    if (fromIndex === end) {
      for (const e of ents) this.entries.push(e);
    } else if (fromIndex <= this.offset) {
      // Replaces everything held; the log before `fromIndex` is in storage.
      this.offset = fromIndex;
      this.offsetInProgress = this.offset;
      this.entries = ents.slice();
    } else {
      // Keep [offset, fromIndex), then append.
      this.entries = this.entries.slice(0, fromIndex - this.offset);
      for (const e of ents) this.entries.push(e);
      if (this.offsetInProgress > fromIndex) this.offsetInProgress = fromIndex;
    }
  }

  /** slice returns held entries [lo, hi). Both must lie within what is held. */
  slice(lo: number, hi: number): Entry[] {
    if (lo > hi || lo < this.offset || hi > this.offset + this.entries.length) {
      throw new Error(
        `Unstable.slice: [${lo}, ${hi}) out of bounds [${this.offset}, ${this.offset + this.entries.length})`,
      );
    }
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}
