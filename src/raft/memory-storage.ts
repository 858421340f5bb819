import { type InitialState, limitSize, type Storage, StorageError, StorageErrorKind } from './storage.js';
import { type ConfState, EMPTY_HARD_STATE, type Entry, type HardState, type Snapshot } from './types.js';

/** EMPTY_CONF_STATE is a membership with nobody in it. */
export const EMPTY_CONF_STATE: ConfState = Object.freeze({
  voters: [],
  learners: [],
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
});

/**
 * MemoryStorage is a Storage held entirely in memory, for tests and simulation. It follows
 * the same rules a durable implementation must: appends may overwrite a conflicting suffix,
 * and a snapshot replaces the log up to its index.
 */
export class MemoryStorage implements Storage {
  private hard: HardState = EMPTY_HARD_STATE;
  private snap: Snapshot;
  /**
   * ents[0] is a dummy entry standing for the snapshot: its index and term are the
   * snapshot's. Invariant: ents[i].index === ents[0].index + i.
   */
  private ents: Entry[];

  /**
   * A storage made with a non-empty `confState` is a bootstrapped member: it starts from a
   * snapshot at (index 1, term 1) that holds the initial membership (its hard state stays
   * empty, so the first election is for term 1, as in etcd).
   * Index 0 is never sent to anyone, so the membership must live at index 1 or later: a
   * member added later (made with no `confState`) receives this or a newer snapshot from the
   * leader, and learns the membership from it. Every bootstrapped member must get the same
   * `confState`.
   */
  constructor(confState: ConfState = EMPTY_CONF_STATE) {
    const boot = bootstrapIndex(confState);
    this.snap = { metadata: { index: boot, term: boot, confState }, data: new Uint8Array(0) };
    this.ents = [dummy(boot, boot)];
  }

  initialState(): InitialState {
    return { hardState: this.hard, confState: this.snap.metadata.confState };
  }

  /** setHardState records the persisted hard state. */
  setHardState(hs: HardState): void {
    this.hard = hs;
  }

  hardState(): HardState {
    return this.hard;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    const offset = this.ents[0]!.index;
    if (lo <= offset) throw new StorageError(StorageErrorKind.Compacted, `entries: ${lo} is compacted`);
    if (hi > this.lastIndex() + 1) {
      throw new StorageError(StorageErrorKind.Unavailable, `entries: ${hi} is beyond ${this.lastIndex()}`);
    }
    if (lo >= hi) return [];
    return limitSize(this.ents.slice(lo - offset, hi - offset), maxBytes);
  }

  term(index: number): number {
    const offset = this.ents[0]!.index;
    if (index < offset) throw new StorageError(StorageErrorKind.Compacted, `term: ${index} is compacted`);
    if (index - offset >= this.ents.length) {
      throw new StorageError(StorageErrorKind.Unavailable, `term: ${index} is beyond ${this.lastIndex()}`);
    }
    return this.ents[index - offset]!.term;
  }

  firstIndex(): number {
    return this.ents[0]!.index + 1;
  }

  lastIndex(): number {
    return this.ents[0]!.index + this.ents.length - 1;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** applySnapshot replaces the whole log with a snapshot received from the leader. */
  applySnapshot(snap: Snapshot): void {
    if (snap.metadata.index <= this.snap.metadata.index) {
      throw new StorageError(
        StorageErrorKind.Compacted,
        `applySnapshot: ${snap.metadata.index} is out of date`,
      );
    }
    this.snap = snap;
    this.ents = [dummy(snap.metadata.index, snap.metadata.term)];
  }

  /**
   * createSnapshot records a snapshot of the application's state as of `index` (which must
   * be applied and in the log). The log is not compacted; call `compact` for that.
   */
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot {
    if (index <= this.snap.metadata.index) {
      throw new StorageError(StorageErrorKind.Compacted, `createSnapshot: ${index} is out of date`);
    }
    if (index > this.lastIndex()) {
      throw new RangeError(`createSnapshot: ${index} is beyond the last index ${this.lastIndex()}`);
    }
    this.snap = { metadata: { index, term: this.term(index), confState }, data };
    return this.snap;
  }

  /** compact discards entries before `compactIndex`; it must not pass the last index. */
  compact(compactIndex: number): void {
    const offset = this.ents[0]!.index;
    if (compactIndex <= offset) return;
    if (compactIndex > this.lastIndex()) {
      throw new RangeError(`compact: ${compactIndex} is beyond the last index ${this.lastIndex()}`);
    }
    const i = compactIndex - offset;
    const kept = this.ents.slice(i);
    kept[0] = dummy(this.ents[i]!.index, this.ents[i]!.term);
    this.ents = kept;
  }

  /**
   * append writes entries to the log. Entries before the first index are ignored; the log
   * is truncated at the first entry written, whether or not it matches (the core only hands
   * out entries that are new or replace a conflicting suffix).
   */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[0]!.index + entries.length - 1;
    if (last < first) return;
    const fresh = first > entries[0]!.index ? entries.slice(first - entries[0]!.index) : entries;
    const offset = fresh[0]!.index - this.ents[0]!.index;
    if (offset > this.ents.length) {
      throw new RangeError(`append: gap, last index ${this.lastIndex()}, appending at ${fresh[0]!.index}`);
    }
    this.ents.length = offset;
    for (const e of fresh) this.ents.push(e);
  }
}

/**
 * bootstrapIndex is where a new member's log starts: 1 (a snapshot at index 1, term 1
 * holding the membership) when it is given its group's initial membership, 0 when it is
 * given none and must receive a snapshot from the leader. Every Storage uses this rule.
 */
export function bootstrapIndex(cs: ConfState): 0 | 1 {
  return cs.voters.length + cs.learners.length + cs.votersOutgoing.length > 0 ? 1 : 0;
}

function dummy(index: number, term: number): Entry {
  return { index, term, type: 0, data: new Uint8Array(0) };
}
