/**
 * LevelDisk is one simulated node's real disk for the leveldb backend: a NodeStorage in its
 * own directory, holding the node's one Raft group. A crash closes it and a restart reopens
 * it from the directory, so recovery runs on what LevelDB really kept.
 *
 * The replica keeps its MemoryStorage as the model of what is durable (it is written only
 * once a write here has returned), and LevelDisk checks the database against that model:
 * cheaply after every write, and completely (every stored entry, term and the snapshot) after
 * every reopen. Every call is awaited by the simulator one at a time, in a fixed order.
 */
import type { ConfState, Entry, MemoryStorage, Ready, Snapshot, Storage } from '../../../src/raft/index.js';
import type { SeededRandom } from '../../../src/random.js';
import type { GroupStorage } from '../../../src/storage/group-storage.js';
import { indexedKey, indexOf, KeyKind, kindRange } from '../../../src/storage/keys.js';
import { NodeStorage } from '../../../src/storage/node-storage.js';
import { decodeBlock } from '../../../src/storage/records.js';
import { FetchTracker } from './fetch-tracker.js';
import { bytesEqual } from './payload.js';
import { FailureCode, SimFailure } from './sim-failure.js';
import type { LevelKnobs } from './sim-options.js';

/** SIM_GROUP_ID is the id of the one Raft group every simulated node hosts. */
export const SIM_GROUP_ID = 1;

/** LevelDiskStats count what the database did, for run reports. */
export interface LevelDiskStats {
  /** Databases created (one per node, at its first start). */
  creates: number;
  /** Reopens of an existing database (one per restart after a crash). */
  reopens: number;
  /** Group-commit batches written (Readies with something to persist). */
  commits: number;
  /** Local snapshots written through GroupStorage.createSnapshot. */
  snapshots: number;
  /** On-demand reads (log fetches and snapshot loads) the core waited for. */
  backgroundReads: number;
  /** Times the background reads in flight were held past a drain point (to land after a write). */
  heldReads: number;
}

/** LevelDisk is one node's NodeStorage, its lifecycle and its checks. */
export class LevelDisk {
  readonly dir: string;
  private readonly knobs: LevelKnobs;
  /** Draws which background reads land after a write (the disk's own stream). */
  private readonly random: SeededRandom;
  /** The membership the group is created with (empty for a node added later). */
  private readonly bootConfState: ConfState;
  /** Whether the group exists in the database (it is created on the first open). */
  private created = false;
  /** The open database, or null while the node is down. Invariant: group and tracker are non-null iff ns is. */
  private ns: NodeStorage | null = null;
  private group: GroupStorage | null = null;
  private tracker: FetchTracker | null = null;
  readonly stats: LevelDiskStats = {
    creates: 0,
    reopens: 0,
    commits: 0,
    snapshots: 0,
    backgroundReads: 0,
    heldReads: 0,
  };

  constructor(dir: string, knobs: LevelKnobs, bootConfState: ConfState, random: SeededRandom) {
    this.dir = dir;
    this.knobs = knobs;
    this.random = random;
    this.bootConfState = bootConfState;
  }

  /** storage is what the core reads: the group, through the tracker of its background reads. */
  get storage(): Storage {
    if (this.tracker === null) throw new Error(`LevelDisk ${this.dir}: not open`);
    return this.tracker;
  }

  /** open opens (the first time, creates) the database and returns the snapshot to restore from. */
  async open(): Promise<Snapshot> {
    if (this.ns !== null) throw new Error(`LevelDisk ${this.dir}: already open`);
    const ns = await NodeStorage.open(this.dir, {
      cacheBytesMax: this.knobs.cacheBytesMax,
      fetchBytesMax: this.knobs.fetchBytesMax,
      snapshotChunkBytes: this.knobs.snapshotChunkBytes,
    });
    let group: GroupStorage | undefined;
    const reopen = this.created;
    try {
      if (reopen) {
        group = ns.group(SIM_GROUP_ID);
        if (group === undefined) {
          const why = ns.failure(SIM_GROUP_ID);
          throw diverged(
            `the reopened database in ${this.dir} ${why === undefined ? 'lost its group' : `set its group aside: ${why.message}`}`,
          );
        }
      } else {
        group = await ns.createGroup(SIM_GROUP_ID, this.bootConfState);
        this.created = true;
      }
    } catch (err) {
      await ns.close();
      throw err;
    }
    this.ns = ns;
    this.group = group;
    this.tracker = new FetchTracker(group, ns.db);
    if (reopen) this.stats.reopens++;
    else this.stats.creates++;
    return group.readSnapshot();
  }

  /** persist writes a Ready's snapshot, entries and hard state with one group commit, and waits for its sync. */
  async persist(rd: Ready): Promise<void> {
    const ns = this.openNs();
    if (rd.snapshot === null && rd.entries.length === 0 && rd.hardState === null) return;
    await ns.commit([{ storage: this.group!, ready: rd }]);
    this.stats.commits++;
  }

  /**
   * snapshot stores the state machine image as of `index` (handed over in parts, stored in
   * small chunks) and compacts the log, keeping `tailEntries` before it.
   */
  async snapshot(index: number, confState: ConfState, image: Uint8Array, tailEntries: number): Promise<void> {
    this.openNs();
    await this.group!.createSnapshot(index, confState, partsOf(image, this.knobs.snapshotPartBytes), {
      tailEntries,
    });
    this.stats.snapshots++;
  }

  /**
   * holdReads decides, from the seed, whether the background reads in flight are held a while
   * longer, so that some land after a write: then the storage must not serve what the write
   * replaced or compacted (the read saw the database as it was when it started).
   */
  holdReads(): boolean {
    if (this.tracker === null || this.tracker.inFlight === 0 || this.knobs.holdReadProbability === 0) {
      return false;
    }
    if (!this.random.chance(this.knobs.holdReadProbability)) return false;
    this.stats.heldReads++;
    return true;
  }

  /** drainReads lets the background reads in flight land and waits for them; it returns whether there were any. */
  async drainReads(): Promise<boolean> {
    if (this.tracker === null || this.tracker.inFlight === 0) return false;
    const n = this.tracker.inFlight;
    await this.tracker.drain();
    this.stats.backgroundReads += n;
    return true;
  }

  /** close waits for the background reads, then closes the database (a crash: the process is gone). */
  async close(): Promise<void> {
    const ns = this.ns;
    if (ns === null) return;
    try {
      await this.drainReads();
    } finally {
      this.tracker!.detach();
      this.ns = null;
      this.group = null;
      this.tracker = null;
      await ns.close();
    }
  }

  /**
   * checkSummary compares what is cheap to compare with the durable model: the log bounds,
   * the hard state and the snapshot's position.
   */
  checkSummary(model: MemoryStorage): void {
    const g = this.group;
    if (g === null) return;
    if (g.firstIndex() !== model.firstIndex() || g.lastIndex() !== model.lastIndex()) {
      throw diverged(
        `log ${g.firstIndex()}..${g.lastIndex()} in LevelDB, ${model.firstIndex()}..${model.lastIndex()} durable`,
      );
    }
    const a = g.hardState();
    const b = model.hardState();
    if (a.term !== b.term || a.vote !== b.vote || a.commit !== b.commit) {
      throw diverged(
        `hard state ${a.term}/${a.vote}/${a.commit} in LevelDB, ${b.term}/${b.vote}/${b.commit} durable`,
      );
    }
    const s = g.snapshotRecord();
    const m = model.snapshot().metadata;
    if (s.index !== m.index || s.term !== m.term || !sameConfState(s.confState, m.confState)) {
      throw diverged(`snapshot ${s.index}@${s.term} in LevelDB, ${m.index}@${m.term} durable`);
    }
  }

  /**
   * checkReopened compares the reopened database with the durable model completely: the
   * summary, the snapshot image, the term of every index, and every entry record stored on
   * disk (read straight from LevelDB, checksums and all). Nothing the model holds may be
   * missing, and nothing else may be there.
   */
  async checkReopened(model: MemoryStorage, snap: Snapshot): Promise<void> {
    this.checkSummary(model);
    const g = this.group!;
    if (!bytesEqual(snap.data, model.snapshot().data)) {
      throw diverged(`the snapshot image at ${snap.metadata.index} differs from the one written`);
    }
    const first = model.firstIndex();
    const last = model.lastIndex();
    for (let i = first - 1; i <= last; i++) {
      if (g.term(i) !== model.term(i))
        throw diverged(`term of ${i} is ${g.term(i)} in LevelDB, ${model.term(i)} durable`);
    }
    const stored = await this.openNs().db.entries({
      gte: indexedKey(SIM_GROUP_ID, KeyKind.Entry, 0),
      lt: kindRange(SIM_GROUP_ID, KeyKind.Entry).lt,
    });
    // Each block's live part runs up to the next block's start; the last one ends the log.
    const got: Entry[] = [];
    for (let k = 0; k < stored.length; k++) {
      const [key, value] = stored[k]!;
      const start = indexOf(key);
      const block = decodeBlock(SIM_GROUP_ID, start, value);
      const end = k + 1 < stored.length ? indexOf(stored[k + 1]![0]) - 1 : start + block.length - 1;
      if (end < first) throw diverged(`LevelDB keeps a log block at ${start}, wholly below ${first}`);
      if (start + block.length - 1 < end) throw diverged(`the log block at ${start} is short`);
      for (const e of block) if (e.index >= first && e.index <= end) got.push(e);
    }
    const want = last >= first ? model.entries(first, last + 1, Number.MAX_SAFE_INTEGER) : [];
    if (got.length !== want.length) {
      throw diverged(`${got.length} entries stored in LevelDB, ${want.length} durable (${first}..${last})`);
    }
    for (let k = 0; k < got.length; k++) {
      const g2 = got[k]!;
      const e = want[k]!;
      if (g2.index !== e.index)
        throw diverged(`LevelDB holds entry ${g2.index} where ${e.index} was written`);
      if (g2.term !== e.term || g2.type !== e.type || !bytesEqual(g2.data, e.data)) {
        throw diverged(`entry ${e.index} in LevelDB differs from the one written`);
      }
    }
  }

  private openNs(): NodeStorage {
    if (this.ns === null) throw new Error(`LevelDisk ${this.dir}: not open`);
    return this.ns;
  }
}

/** partsOf hands an image over in parts of `partBytes`, as a state machine streaming its snapshot would. */
function* partsOf(image: Uint8Array, partBytes: number): Generator<Uint8Array> {
  for (let off = 0; off < image.length; off += partBytes) yield image.subarray(off, off + partBytes);
}

function sameConfState(a: ConfState, b: ConfState): boolean {
  const same = (x: readonly number[], y: readonly number[]): boolean =>
    x.length === y.length && x.every((v, i) => v === y[i]);
  return (
    same(a.voters, b.voters) &&
    same(a.learners, b.learners) &&
    same(a.votersOutgoing, b.votersOutgoing) &&
    same(a.learnersNext, b.learnersNext) &&
    a.autoLeave === b.autoLeave
  );
}

function diverged(what: string): SimFailure {
  return new SimFailure(FailureCode.StorageDiverged, what);
}
