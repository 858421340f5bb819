import { DkvError, ErrorCode, isDkvError } from '../errors.js';
import {
  bootstrapIndex,
  type ConfState,
  EMPTY_CONF_STATE,
  EMPTY_HARD_STATE,
  type Entry,
  entryBytes,
  type HardState,
  type InitialState,
  limitSize,
  type Ready,
  type Snapshot,
  type Storage,
  StorageError,
  StorageErrorKind,
} from '../raft/index.js';
import { checksum } from './checksum.js';
import { chunkKey, indexedKey, indexOf, KeyKind, kindRange, recordKey } from './keys.js';
import type { LevelDb, WriteOp } from './level-db.js';
import {
  blockCount,
  checkHardState,
  checkLogStart,
  checkSnapshotRecord,
  decodeBlock,
  decodeChunk,
  decodeJsonRecord,
  encodeBlock,
  encodeChunk,
  encodeJsonRecord,
  type LogStartRecord,
  type SnapshotRecord,
} from './records.js';

/**
 * LevelStore is what GroupStorage needs of the node's database: the LevelDb itself, or (under
 * the test-only bug `no-fsync`) the DeferredWrites queue in front of it.
 */
export type LevelStore = Pick<LevelDb, 'get' | 'batch' | 'del' | 'clear' | 'keys' | 'entries'>;

/** GroupStorageOptions bound the memory a group's storage uses. */
export interface GroupStorageOptions {
  /** The most entry bytes kept in memory; older entries are read from disk on demand. */
  readonly cacheBytesMax: number;
  /** The size of the chunks a snapshot is stored in. */
  readonly snapshotChunkBytes: number;
  /** The most bytes one on-demand read of old entries fetches. */
  readonly fetchBytesMax: number;
}

/** GROUP_STORAGE_DEFAULTS are the defaults for GroupStorageOptions. */
export const GROUP_STORAGE_DEFAULTS: GroupStorageOptions = Object.freeze({
  cacheBytesMax: 16 << 20,
  snapshotChunkBytes: 1 << 20,
  fetchBytesMax: 4 << 20,
});

/** TermRun says that entries from `start` on (until the next run) have term `term`. */
interface TermRun {
  readonly start: number;
  readonly term: number;
}

/** A SnapshotSource yields a state machine image as chunks (see src/statemachine/snapshot.ts). */
export type ChunkSource = Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

/** CreateSnapshotOptions control a local snapshot and the compaction after it. */
export interface CreateSnapshotOptions {
  /** Entries to keep before the snapshot index, for followers catching up. */
  readonly tailEntries: number;
}

const EMPTY = new Uint8Array(0);
const EMPTY_CRC = checksum(EMPTY);

/** emptySnapshotRecord is the snapshot of a group that has none. */
function emptySnapshotRecord(confState: ConfState = EMPTY_CONF_STATE, at = 0): SnapshotRecord {
  return { id: 0, index: at, term: at, confState, totalBytes: 0, chunkCount: 0, dataCrc: EMPTY_CRC };
}

/** StagedReady is a Ready's write set, plus what to do in memory once it is durable. */
export interface StagedReady {
  readonly ops: WriteOp[];
  /** commit updates the in-memory view; call it only after the ops are synced. */
  readonly commit: () => void;
}

/**
 * GroupStorage is one Raft group's durable log, hard state and snapshots in the node's
 * LevelDB. It implements the core's synchronous Storage: the hard state, the snapshot
 * metadata and the term of every entry (as runs) live in memory, and so do the newest
 * entries up to `cacheBytesMax`. Older entries and the snapshot's data are read on demand:
 * a read that misses answers "temporarily unavailable", fetches in the background, and then
 * calls `onFetched` so the driver can tell the core (`RawNode.entriesFetched()`).
 *
 * Writes are staged by `stageReady` into the node's group-commit batch and take effect in
 * memory only once that batch is synced.
 */
export class GroupStorage implements Storage {
  readonly group: number;
  private readonly db: LevelStore;
  private readonly opts: GroupStorageOptions;

  private hard: HardState;
  private snap: SnapshotRecord;
  /** The snapshot's data once loaded; null until needed. */
  private snapData: Uint8Array | null = null;
  private snapLoading = false;
  /** The compaction point: entries at or below it are gone. Invariant: start.index <= snap.index. */
  private start: LogStartRecord;
  /** The last index in the log (start.index if there are no entries). */
  private last: number;
  /** Terms of entries (start.index, last], as runs sorted by start. */
  private runs: TermRun[];
  /**
   * First indexes of the stored log blocks, ascending. Entry i lives in the block with the
   * greatest start <= i: a later block shadows the tail of an earlier one (a conflicting
   * append rewrites from its first index), and the last block ends the log.
   */
  private blocks: number[];

  /** The newest entries: cache[i - cacheHead] has index cacheFirst + i. */
  private cache: Entry[] = [];
  private cacheHead = 0;
  private cacheFirst: number;
  private cacheBytes = 0;

  /**
   * Bumped whenever entries may be replaced (a conflicting append, a received snapshot), so
   * an on-demand read that started before cannot hand out what was replaced.
   */
  private logEpoch = 0;
  /** The id the next snapshot's chunks are written under; never reused in this process. */
  private nextSnapshotId: number;

  /** Entries read on demand: a contiguous run starting at fetchedFirst. */
  private fetched: Entry[] = [];
  private fetchedFirst = 0;
  private fetching = false;

  /** Set when stored data failed its checksum: every read then throws it. */
  private failure: DkvError | null = null;
  /** Serializes snapshot writes (local and received). */
  private snapLock: Promise<void> = Promise.resolve();

  /** onFetched is called when an on-demand read finishes (or fails). */
  onFetched: (() => void) | null = null;

  private constructor(
    db: LevelStore,
    group: number,
    opts: GroupStorageOptions,
    state: {
      hard: HardState;
      snap: SnapshotRecord;
      start: LogStartRecord;
      last: number;
      runs: TermRun[];
      blocks: number[];
    },
  ) {
    this.db = db;
    this.group = group;
    this.opts = opts;
    this.hard = state.hard;
    this.snap = state.snap;
    this.start = state.start;
    this.last = state.last;
    this.runs = state.runs;
    this.blocks = state.blocks;
    this.cacheFirst = state.last + 1;
    this.nextSnapshotId = state.snap.id + 1;
    if (state.snap.chunkCount === 0) this.snapData = EMPTY;
  }

  /**
   * createOps returns the writes that store a new group's records. With a non-empty `confState` the group is
   * bootstrapped from a snapshot at (index 1, term 1) holding the membership, as
   * MemoryStorage does; with none, the member waits for a snapshot from a leader.
   */
  static createOps(group: number, confState: ConfState = EMPTY_CONF_STATE): WriteOp[] {
    const boot = bootstrapIndex(confState);
    const snap = emptySnapshotRecord(confState, boot);
    return [
      { type: 'put', key: recordKey(group, KeyKind.SnapshotMeta), value: encodeJsonRecord(snap) },
      {
        type: 'put',
        key: recordKey(group, KeyKind.LogStart),
        value: encodeJsonRecord({ index: boot, term: boot }),
      },
      { type: 'put', key: recordKey(group, KeyKind.HardState), value: encodeJsonRecord(EMPTY_HARD_STATE) },
    ];
  }

  /**
   * load recovers a group at start-up: hard state, snapshot metadata (with the membership),
   * log start, term runs, then the newest entries into the cache. It removes what a crash
   * can leave behind: chunks of a snapshot that was never switched in, and entries below the
   * compaction point.
   */
  static async load(db: LevelStore, group: number, opts: GroupStorageOptions): Promise<GroupStorage> {
    const hardRec = await db.get(recordKey(group, KeyKind.HardState));
    const snapRec = await db.get(recordKey(group, KeyKind.SnapshotMeta));
    const startRec = await db.get(recordKey(group, KeyKind.LogStart));
    if (!snapRec || !startRec || !hardRec) {
      throw new DkvError(ErrorCode.NotFound, `group ${group} has no stored state on this node`, { group });
    }
    const hard = checkHardState(group, decodeJsonRecord(group, 'hard state', hardRec));
    const snap = checkSnapshotRecord(group, decodeJsonRecord(group, 'snapshot metadata', snapRec));
    const start = checkLogStart(group, decodeJsonRecord(group, 'log start', startRec));
    if (start.index > snap.index) {
      throw new DkvError(ErrorCode.Corrupted, `group ${group}: log starts after its snapshot`, { group });
    }

    // Clean up after an interrupted snapshot write or compaction.
    const chunks = kindRange(group, KeyKind.SnapshotChunk);
    for (const key of await db.keys(chunks)) {
      if (indexOf(key) !== snap.id) await db.del(key);
    }
    // The log blocks: their keys only (the log is read lazily). The last block ends the log;
    // blocks wholly at or below the compaction point are removed.
    const entryRange = kindRange(group, KeyKind.Entry);
    const blockKeys = await db.keys(entryRange);
    let blocks = blockKeys.map(indexOf);
    let last = start.index;
    const lastBlock = blocks[blocks.length - 1];
    if (lastBlock !== undefined) {
      const rec = await db.get(indexedKey(group, KeyKind.Entry, lastBlock));
      const count = rec ? blockCount(rec) : 0;
      if (count === 0) {
        throw new DkvError(ErrorCode.Corrupted, `group ${group}: log entries from ${lastBlock} are damaged`, {
          group,
          index: lastBlock,
        });
      }
      last = Math.max(start.index, lastBlock + count - 1);
    }
    const dead = blocks.filter((_b, i) => (blocks[i + 1] ?? last + 1) - 1 <= start.index);
    for (const b of dead) await db.del(indexedKey(group, KeyKind.Entry, b));
    blocks = blocks.slice(dead.length);
    if (last > start.index && (blocks.length === 0 || blocks[0]! > start.index + 1)) {
      throw new DkvError(ErrorCode.Corrupted, `group ${group}: log entry ${start.index + 1} is missing`, {
        group,
        index: start.index + 1,
      });
    }

    const runs: TermRun[] = [];
    const runKeys: Uint8Array[] = [];
    for (const [key, value] of await db.entries(kindRange(group, KeyKind.TermRun))) {
      const rec = decodeJsonRecord(group, 'term run', value) as { term?: unknown };
      if (typeof rec.term !== 'number')
        throw new DkvError(ErrorCode.Corrupted, `group ${group}: bad term run`);
      runs.push({ start: indexOf(key), term: rec.term });
      runKeys.push(key);
    }
    // Drop runs that start past the end of the log (left by a truncation that was cut short)
    // and runs wholly below the log start.
    const kept: TermRun[] = [];
    for (let i = 0; i < runs.length; i++) {
      const r = runs[i]!;
      const next = runs[i + 1];
      const belowStart = next !== undefined && next.start <= start.index + 1;
      if (r.start > last || belowStart) await db.del(runKeys[i]!);
      else kept.push(r);
    }
    if (last > start.index && (kept.length === 0 || kept[0]!.start > start.index + 1)) {
      throw new DkvError(ErrorCode.Corrupted, `group ${group}: the terms of the log are missing`, { group });
    }
    if (hard.commit > last) {
      throw new DkvError(
        ErrorCode.Corrupted,
        `group ${group}: hard state commit ${hard.commit} is beyond the last entry ${last}`,
        { group, index: hard.commit },
      );
    }
    const gs = new GroupStorage(db, group, opts, { hard, snap, start, last, runs: kept, blocks });
    await gs.loadTail();
    return gs;
  }

  /** loadTail fills the cache with the newest entries, up to cacheBytesMax, checking each. */
  private async loadTail(): Promise<void> {
    if (this.last <= this.start.index) return;
    const recs = await this.db.entries({
      gte: indexedKey(this.group, KeyKind.Entry, this.blocks[0]!),
      lt: kindRange(this.group, KeyKind.Entry).lt,
      reverse: true,
      bytesMax: this.opts.cacheBytesMax,
    });
    const ents: Entry[] = [];
    let end = this.last; // the last index the next (older) block supplies
    for (const [key, value] of recs) {
      const first = indexOf(key);
      const block = decodeBlock(this.group, first, value);
      const from = Math.max(first, this.start.index + 1);
      if (first + block.length - 1 < end) {
        throw new DkvError(ErrorCode.Corrupted, `group ${this.group}: log entry ${end} is missing`, {
          group: this.group,
          index: end,
        });
      }
      for (let i = end; i >= from; i--) {
        const e = block[i - first]!;
        if (e.term !== this.term(i)) {
          throw new DkvError(ErrorCode.Corrupted, `group ${this.group}: log entry ${i} has the wrong term`, {
            group: this.group,
            index: i,
          });
        }
        ents.push(e);
      }
      end = from - 1;
      if (end <= this.start.index) break;
    }
    ents.reverse();
    this.cache = ents;
    this.cacheHead = 0;
    this.cacheFirst = end + 1;
    this.cacheBytes = 0;
    for (const e of ents) this.cacheBytes += entryBytes(e);
  }

  /** blockAt is the position in `blocks` of the block holding `index` (the greatest start <= index). */
  private blockAt(index: number): number {
    let lo = 0;
    let hi = this.blocks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.blocks[mid]! <= index) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  // ------------------------------------------------------------ Storage (read side)

  private check(): void {
    if (this.failure) throw this.failure;
  }

  initialState(): InitialState {
    this.check();
    return { hardState: this.hard, confState: this.snap.confState };
  }

  firstIndex(): number {
    return this.start.index + 1;
  }

  lastIndex(): number {
    return this.last;
  }

  term(index: number): number {
    this.check();
    if (index < this.start.index)
      throw new StorageError(StorageErrorKind.Compacted, `term: ${index} is compacted`);
    if (index > this.last)
      throw new StorageError(StorageErrorKind.Unavailable, `term: ${index} is beyond ${this.last}`);
    if (index === this.start.index) return this.start.term;
    let lo = 0;
    let hi = this.runs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.runs[mid]!.start <= index) lo = mid;
      else hi = mid - 1;
    }
    const run = this.runs[lo];
    if (!run || run.start > index) throw new Error(`GroupStorage.term: no term run covers ${index}`);
    return run.term;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    this.check();
    if (lo <= this.start.index)
      throw new StorageError(StorageErrorKind.Compacted, `entries: ${lo} is compacted`);
    if (hi > this.last + 1)
      throw new StorageError(StorageErrorKind.Unavailable, `entries: ${hi} is beyond ${this.last}`);
    if (lo >= hi) return [];
    if (lo >= this.cacheFirst) {
      const from = this.cacheHead + (lo - this.cacheFirst);
      return limitSize(this.cache.slice(from, from + (hi - lo)), maxBytes);
    }
    const fetchedEnd = this.fetchedFirst + this.fetched.length;
    if (this.fetched.length > 0 && lo >= this.fetchedFirst && lo < fetchedEnd) {
      const upto = Math.min(hi, fetchedEnd);
      return limitSize(this.fetched.slice(lo - this.fetchedFirst, upto - this.fetchedFirst), maxBytes);
    }
    this.startFetch(lo, Math.min(hi, this.cacheFirst));
    throw new StorageError(
      StorageErrorKind.LogTemporarilyUnavailable,
      `entries: ${lo} is being read from disk`,
    );
  }

  private startFetch(lo: number, hi: number): void {
    if (this.fetching) return;
    this.fetching = true;
    const group = this.group;
    const epoch = this.logEpoch;
    // Where each block's live part ends, as of now: the next block's start shadows the rest.
    const at = this.blockAt(lo);
    const starts = this.blocks.slice(at);
    const endOf = (i: number): number => (starts[i + 1] ?? this.last + 1) - 1;
    void this.db
      .entries({
        gte: indexedKey(group, KeyKind.Entry, starts[0] ?? lo),
        lt: indexedKey(group, KeyKind.Entry, hi),
        bytesMax: this.opts.fetchBytesMax,
      })
      .then((recs) => {
        const ents: Entry[] = [];
        let expect = lo;
        for (let i = 0; i < recs.length && expect < hi; i++) {
          const [key, value] = recs[i]!;
          const first = indexOf(key);
          if (first !== starts[i]) {
            // The log changed under the read (a compaction or truncation): drop it.
            if (epoch !== this.logEpoch) return;
            throw new DkvError(ErrorCode.Corrupted, `group ${group}: log entry ${expect} is missing`, {
              group,
              index: expect,
            });
          }
          const block = decodeBlock(group, first, value);
          const end = Math.min(endOf(i), hi - 1);
          if (first + block.length - 1 < end) {
            throw new DkvError(ErrorCode.Corrupted, `group ${group}: log entry ${end} is missing`, {
              group,
              index: end,
            });
          }
          for (; expect <= end; expect++) ents.push(block[expect - first]!);
        }
        // The log may have been compacted or truncated meanwhile: keep only what is still valid.
        if (epoch !== this.logEpoch) return;
        const valid = ents.filter(
          (e) => e.index > this.start.index && e.index < this.cacheFirst && e.index <= this.last,
        );
        this.fetched = valid;
        this.fetchedFirst = valid[0]?.index ?? 0;
      })
      .catch((err: unknown) => {
        this.failure = isDkvError(err)
          ? err
          : new DkvError(
              ErrorCode.Corrupted,
              `group ${group}: reading the log failed`,
              { group },
              { cause: err },
            );
      })
      .finally(() => {
        this.fetching = false;
        this.onFetched?.();
      });
  }

  snapshot(): Snapshot {
    this.check();
    const metadata = { index: this.snap.index, term: this.snap.term, confState: this.snap.confState };
    if (this.snapData) return { metadata, data: this.snapData };
    if (!this.snapLoading) {
      this.snapLoading = true;
      const rec = this.snap;
      void this.readSnapshotData(rec)
        .then((data) => {
          if (this.snap.id === rec.id) this.snapData = data;
        })
        .catch((err: unknown) => {
          this.failure = isDkvError(err)
            ? err
            : new DkvError(
                ErrorCode.Corrupted,
                `group ${this.group}: reading the snapshot failed`,
                {},
                { cause: err },
              );
        })
        .finally(() => {
          this.snapLoading = false;
          this.onFetched?.();
        });
    }
    throw new StorageError(StorageErrorKind.SnapshotTemporarilyUnavailable, 'snapshot: loading from disk');
  }

  /** hardState is the persisted hard state. */
  hardState(): HardState {
    return this.hard;
  }

  /** snapshotRecord is the current snapshot's metadata (for status and tests). */
  snapshotRecord(): SnapshotRecord {
    return this.snap;
  }

  /** corruption is the checksum failure that stopped this group, if any. */
  corruption(): DkvError | null {
    return this.failure;
  }

  /** cachedFirstIndex is the first entry held in memory (for tests and metrics). */
  cachedFirstIndex(): number {
    return this.cacheFirst;
  }

  /**
   * readSnapshot reads the current snapshot's chunks, checking every chunk and the whole.
   * The state machine restores from it at start-up.
   */
  async readSnapshot(): Promise<Snapshot> {
    this.check();
    const rec = this.snap;
    const data = this.snapData ?? (await this.readSnapshotData(rec));
    return { metadata: { index: rec.index, term: rec.term, confState: rec.confState }, data };
  }

  private async readSnapshotData(rec: SnapshotRecord): Promise<Uint8Array> {
    if (rec.chunkCount === 0) return EMPTY;
    const recs = await this.db.entries({
      gte: chunkKey(this.group, rec.id, 0),
      lt: chunkKey(this.group, rec.id, rec.chunkCount),
    });
    if (recs.length !== rec.chunkCount) {
      throw new DkvError(
        ErrorCode.Corrupted,
        `group ${this.group}: snapshot at index ${rec.index} has ${recs.length} of ${rec.chunkCount} chunks`,
        { group: this.group, index: rec.index },
      );
    }
    const data = new Uint8Array(rec.totalBytes);
    let at = 0;
    let n = 0;
    for (const [, value] of recs) {
      const chunk = decodeChunk(this.group, rec.index, n, value);
      if (at + chunk.length > data.length) {
        throw new DkvError(
          ErrorCode.Corrupted,
          `group ${this.group}: snapshot at index ${rec.index} is too long`,
          {
            group: this.group,
            index: rec.index,
          },
        );
      }
      data.set(chunk, at);
      at += chunk.length;
      n++;
    }
    if (at !== rec.totalBytes || checksum(data) !== rec.dataCrc) {
      throw new DkvError(
        ErrorCode.Corrupted,
        `group ${this.group}: snapshot at index ${rec.index} failed its checksum`,
        {
          group: this.group,
          index: rec.index,
        },
      );
    }
    return data;
  }

  // ------------------------------------------------------------ write side

  /**
   * withSnapshotLock runs `fn` while no other snapshot write of this group runs, so a local
   * snapshot and one received from the leader never interleave.
   */
  async withSnapshotLock<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.snapLock;
    let release!: () => void;
    this.snapLock = new Promise<void>((r) => {
      release = r;
    });
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /**
   * writeChunks stores `source` as the chunks of snapshot `id`, in unsynced batches that
   * yield the event loop between them. Nothing refers to them until a synced batch switches
   * the metadata over, so a crash meanwhile leaves orphans that start-up removes.
   */
  private async writeChunks(
    id: number,
    source: ChunkSource,
  ): Promise<{ chunkCount: number; totalBytes: number; dataCrc: number }> {
    let n = 0;
    let total = 0;
    let crc = 0;
    let batch: WriteOp[] = [];
    let batchBytes = 0;
    const chunkBytes = this.opts.snapshotChunkBytes;
    const put = async (piece: Uint8Array): Promise<void> => {
      batch.push({ type: 'put', key: chunkKey(this.group, id, n), value: encodeChunk(n, piece) });
      crc = checksum(piece, crc);
      total += piece.length;
      batchBytes += piece.length;
      n++;
      if (batchBytes >= 4 * chunkBytes) {
        // Synced: LevelDB may retire an unsynced log file without fsync, so a later synced
        // switch alone would not make these chunks durable on power loss.
        await this.db.batch(batch, true);
        batch = [];
        batchBytes = 0;
      }
    };
    try {
      for await (const part of source as AsyncIterable<Uint8Array>) {
        for (let off = 0; off < part.length; off += chunkBytes)
          await put(part.subarray(off, off + chunkBytes));
      }
      if (batch.length > 0) await this.db.batch(batch, true);
    } catch (err) {
      // The source failed: remove what was written (best effort; start-up removes the rest).
      const written: WriteOp[] = [];
      for (let i = 0; i < n; i++) written.push({ type: 'del', key: chunkKey(this.group, id, i) });
      await this.db.batch(written, false).catch(() => undefined);
      throw err;
    }
    return { chunkCount: n, totalBytes: total, dataCrc: total === 0 ? EMPTY_CRC : crc };
  }

  private deleteChunksOps(rec: SnapshotRecord): WriteOp[] {
    const ops: WriteOp[] = [];
    for (let n = 0; n < rec.chunkCount; n++) ops.push({ type: 'del', key: chunkKey(this.group, rec.id, n) });
    return ops;
  }

  /**
   * prepareReceivedSnapshot writes the chunks of a snapshot received from the leader (the
   * Ready's `snapshot`) ahead of the group-commit batch; `stageReady` then switches it in.
   * Call it under `withSnapshotLock`.
   */
  async prepareReceivedSnapshot(snapshot: Snapshot): Promise<SnapshotRecord> {
    const id = this.nextSnapshotId++;
    const written = await this.writeChunks(id, [snapshot.data]);
    return {
      id,
      index: snapshot.metadata.index,
      term: snapshot.metadata.term,
      confState: snapshot.metadata.confState,
      ...written,
    };
  }

  /**
   * stageReady turns a Ready into write operations for the group-commit batch: a received
   * snapshot (whose chunks `prepareReceivedSnapshot` already wrote), then entries (which may
   * replace a conflicting suffix), then the hard state.
   */
  stageReady(rd: Ready, received: SnapshotRecord | null): StagedReady {
    this.check();
    const ops: WriteOp[] = [];
    const g = this.group;
    const steps: (() => void)[] = [];

    // The log as it will be after this Ready, tracked while staging.
    let start = this.start;
    let last = this.last;
    let runsFrom = this.runs.length; // runs[0, runsFrom) survive
    const newRuns: TermRun[] = [];

    if (rd.snapshot) {
      if (!received) throw new Error('GroupStorage.stageReady: the snapshot was not prepared');
      const old = this.snap;
      ops.push({ type: 'put', key: recordKey(g, KeyKind.SnapshotMeta), value: encodeJsonRecord(received) });
      ops.push(...this.deleteChunksOps(old));
      // A snapshot from the leader replaces the whole log.
      for (const b of this.blocks) ops.push({ type: 'del', key: indexedKey(g, KeyKind.Entry, b) });
      for (const r of this.runs) ops.push({ type: 'del', key: indexedKey(g, KeyKind.TermRun, r.start) });
      start = { index: received.index, term: received.term };
      ops.push({ type: 'put', key: recordKey(g, KeyKind.LogStart), value: encodeJsonRecord(start) });
      last = received.index;
      runsFrom = 0;
      const data = rd.snapshot.data;
      steps.push(() => {
        this.snap = received;
        this.snapData = data;
        this.start = { index: received.index, term: received.term };
        this.last = received.index;
        this.runs = [];
        this.blocks = [];
        this.resetCache(received.index + 1);
        this.fetched = [];
        this.logEpoch++;
      });
    }

    const ents = rd.entries.filter((e) => e.index > start.index);
    if (ents.length > 0) {
      const first = ents[0]!.index;
      const newLast = ents[ents.length - 1]!.index;
      if (first > last + 1) throw new Error(`GroupStorage.stageReady: gap: last ${last}, appending ${first}`);
      // One block holds the whole append; blocks that start after it are replaced or cut
      // off by it, and term runs from `first` on are rewritten.
      ops.push({ type: 'put', key: indexedKey(g, KeyKind.Entry, first), value: encodeBlock(first, ents) });
      const blocksNow = rd.snapshot ? [] : this.blocks;
      for (let i = blocksNow.length - 1; i >= 0 && blocksNow[i]! > first; i--)
        ops.push({ type: 'del', key: indexedKey(g, KeyKind.Entry, blocksNow[i]!) });
      const survivors = rd.snapshot ? [] : this.runs;
      while (runsFrom > 0 && survivors[runsFrom - 1]!.start >= first) {
        runsFrom--;
        ops.push({ type: 'del', key: indexedKey(g, KeyKind.TermRun, survivors[runsFrom]!.start) });
      }
      let prevTerm = runsFrom > 0 ? survivors[runsFrom - 1]!.term : -1;
      for (const e of ents) {
        if (e.term !== prevTerm) {
          newRuns.push({ start: e.index, term: e.term });
          ops.push({
            type: 'put',
            key: indexedKey(g, KeyKind.TermRun, e.index),
            value: encodeJsonRecord({ term: e.term }),
          });
          prevTerm = e.term;
        }
      }
      steps.push(() => {
        // By value, not by position: a compaction may have dropped runs from the head
        // between staging and this commit.
        // Both are sorted: drop from the end (usually nothing), not by a scan of every block.
        while (this.runs.length > 0 && this.runs[this.runs.length - 1]!.start >= first) this.runs.pop();
        for (const r of newRuns) this.runs.push(r);
        while (this.blocks.length > 0 && this.blocks[this.blocks.length - 1]! >= first) this.blocks.pop();
        this.blocks.push(first);
        if (first <= this.last) this.logEpoch++;
        this.last = newLast;
        this.appendToCache(ents);
        if (this.fetched.length > 0 && this.fetchedFirst + this.fetched.length > first) {
          this.fetched = this.fetched.slice(0, Math.max(0, first - this.fetchedFirst));
        }
      });
    }

    if (rd.hardState) {
      const hs = rd.hardState;
      ops.push({ type: 'put', key: recordKey(g, KeyKind.HardState), value: encodeJsonRecord(hs) });
      steps.push(() => {
        this.hard = hs;
      });
    }
    return {
      ops,
      commit: () => {
        for (const s of steps) s();
      },
    };
  }

  private resetCache(first: number): void {
    this.cache = [];
    this.cacheHead = 0;
    this.cacheFirst = first;
    this.cacheBytes = 0;
  }

  private appendToCache(ents: readonly Entry[]): void {
    const first = ents[0]!.index;
    if (first < this.cacheFirst || first > this.cacheFirst + (this.cache.length - this.cacheHead)) {
      // The append replaces entries older than the cache (or the cache is empty): restart it.
      this.resetCache(first);
    } else {
      // Drop the cached suffix the append replaces.
      const keep = this.cacheHead + (first - this.cacheFirst);
      for (let i = keep; i < this.cache.length; i++) this.cacheBytes -= entryBytes(this.cache[i]!);
      this.cache.length = keep;
    }
    for (const e of ents) {
      this.cache.push(e);
      this.cacheBytes += entryBytes(e);
    }
    this.evict();
  }

  private evict(): void {
    while (this.cacheBytes > this.opts.cacheBytesMax && this.cache.length - this.cacheHead > 1) {
      this.cacheBytes -= entryBytes(this.cache[this.cacheHead]!);
      this.cacheHead++;
      this.cacheFirst++;
    }
    if (this.cacheHead > 1024 && this.cacheHead * 2 > this.cache.length) {
      this.cache = this.cache.slice(this.cacheHead);
      this.cacheHead = 0;
    }
  }

  /**
   * createSnapshot stores a snapshot of the state machine as of `index` (which must be
   * applied, hence committed), then compacts the log before it, keeping `tailEntries`
   * entries for followers catching up. Chunks are written without blocking the event loop
   * for long; one synced batch then switches the snapshot in. A crash at any point leaves
   * either the old snapshot or the new one, never a mix.
   */
  async createSnapshot(
    index: number,
    confState: ConfState,
    chunks: ChunkSource,
    options: CreateSnapshotOptions,
  ): Promise<SnapshotRecord> {
    return this.withSnapshotLock(async () => {
      this.check();
      if (index <= this.snap.index) {
        throw new DkvError(
          ErrorCode.InvalidArgument,
          `snapshot at ${index} is not newer than ${this.snap.index}`,
        );
      }
      if (index > this.hard.commit || index > this.last) {
        throw new DkvError(
          ErrorCode.InvalidArgument,
          `snapshot at ${index} is beyond the commit index ${this.hard.commit}`,
        );
      }
      if (!Number.isSafeInteger(options.tailEntries) || options.tailEntries < 0) {
        throw new DkvError(ErrorCode.InvalidArgument, `tailEntries must be a non-negative integer`);
      }
      const term = this.term(index);
      const id = this.nextSnapshotId++;
      const written = await this.writeChunks(id, chunks);
      const rec: SnapshotRecord = { id, index, term, confState, ...written };
      const g = this.group;
      const old = this.snap;
      const ops: WriteOp[] = [
        { type: 'put', key: recordKey(g, KeyKind.SnapshotMeta), value: encodeJsonRecord(rec) },
        ...this.deleteChunksOps(old),
      ];
      // Compact: the new start keeps `tailEntries` before the snapshot, never moving back.
      const newStartIndex = Math.max(this.start.index, index - options.tailEntries);
      const newStart: LogStartRecord = { index: newStartIndex, term: this.term(newStartIndex) };
      // Blocks whose live part lies wholly at or below the new start go.
      const deadBlocks: number[] = [];
      for (let i = 0; i < this.blocks.length; i++) {
        const end = (this.blocks[i + 1] ?? this.last + 1) - 1;
        if (end > newStartIndex) break;
        deadBlocks.push(this.blocks[i]!);
        ops.push({ type: 'del', key: indexedKey(g, KeyKind.Entry, this.blocks[i]!) });
      }
      let dropRuns = 0;
      while (dropRuns + 1 < this.runs.length && this.runs[dropRuns + 1]!.start <= newStartIndex + 1) {
        ops.push({ type: 'del', key: indexedKey(g, KeyKind.TermRun, this.runs[dropRuns]!.start) });
        dropRuns++;
      }
      ops.push({ type: 'put', key: recordKey(g, KeyKind.LogStart), value: encodeJsonRecord(newStart) });
      await this.db.batch(ops, true);
      this.snap = rec;
      this.snapData = null;
      this.start = newStart;
      this.runs = this.runs.slice(dropRuns);
      const gone = new Set(deadBlocks);
      this.blocks = this.blocks.filter((b) => !gone.has(b));
      if (this.cacheFirst <= newStartIndex) {
        const drop = Math.min(newStartIndex + 1 - this.cacheFirst, this.cache.length - this.cacheHead);
        for (let i = 0; i < drop; i++) this.cacheBytes -= entryBytes(this.cache[this.cacheHead + i]!);
        this.cacheHead += drop;
        this.cacheFirst += drop;
      }
      if (this.fetched.length > 0 && this.fetchedFirst <= newStartIndex) {
        this.fetched = this.fetched.filter((e) => e.index > newStartIndex);
        this.fetchedFirst = this.fetched[0]?.index ?? 0;
      }
      return rec;
    });
  }
}
