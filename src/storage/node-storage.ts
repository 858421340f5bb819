/**
 * NodeStorage: a node's one LevelDB holding every group it hosts, with group commit (see the
 * class). Under the test-only bug `no-fsync` (NodeStorageTestOptions) every write goes
 * through a DeferredWrites queue instead, which acknowledges a commit before writing it; the
 * normal path never creates one.
 */
import { DkvError, ErrorCode, isDkvError } from '../errors.js';
import type { ConfState, Ready } from '../raft/index.js';
import { DeferredWrites } from './deferred-writes.js';
import {
  GROUP_STORAGE_DEFAULTS,
  GroupStorage,
  type GroupStorageOptions,
  type LevelStore,
} from './group-storage.js';
import { ALL_GROUPS_RANGE, GROUP_ID_MAX, groupIdOf, NODE_KEY } from './keys.js';
import { LevelDb, type WriteOp } from './level-db.js';
import { decodeJsonRecord, encodeJsonRecord, type SnapshotRecord } from './records.js';

/** groupRange bounds every key of one group. */
function groupRange(id: number): { gte: Uint8Array; lt: Uint8Array } {
  const gte = Uint8Array.of(0x67, 0, 0, 0, 0);
  new DataView(gte.buffer).setUint32(1, id);
  const lt = gte.slice();
  if (id === GROUP_ID_MAX) lt.set([0x68, 0, 0, 0, 0]);
  else new DataView(lt.buffer).setUint32(1, id + 1);
  return { gte, lt };
}

/**
 * STORAGE_FORMAT_VERSION is written in the node record; a node refuses a format it does not
 * know. 2: the log is stored as packed blocks (format 1 kept one key per entry).
 */
export const STORAGE_FORMAT_VERSION = 2;

interface NodeRecord {
  readonly version: number;
  readonly groups: number[];
}

/** PersistItem is one group's Ready to persist in a group-commit round. */
export interface PersistItem {
  readonly storage: GroupStorage;
  readonly ready: Ready;
}

/**
 * NodeStorageTestOptions are TEST ONLY (src/node/test-hooks.ts); no config file reaches them.
 * `unsafeDeferWritesMs` plants the bug `no-fsync`: commits are acknowledged at once and
 * written out (unsynced) every that many ms, so a kill loses acknowledged writes.
 */
export interface NodeStorageTestOptions {
  readonly unsafeDeferWritesMs?: number;
}

/** CommitStats describe one group-commit round. */
export interface CommitStats {
  readonly groups: number;
  readonly entries: number;
  readonly ops: number;
  readonly synced: boolean;
  /** Time of the LevelDB batch write (with its fsync when synced), ms; 0 when nothing was written. */
  readonly syncMs: number;
}

/**
 * NodeStorage is a node's single LevelDB, holding every group it hosts. Its `commit`
 * is group commit: the Readies of every group in one event-loop round are written in one
 * atomic batch, synced once, before any of them is acknowledged.
 */
export class NodeStorage {
  /** The database itself. Under `no-fsync` it lacks the writes still queued in `deferred`. */
  readonly db: LevelDb;
  /** What every read and write goes through: `db`, or `deferred` in front of it. */
  private readonly store: LevelStore;
  /** Set only under the test-only bug `no-fsync`. */
  private readonly deferred: DeferredWrites | undefined;
  private readonly opts: GroupStorageOptions;
  private readonly groupMap = new Map<number, GroupStorage>();
  /** Groups whose stored data failed its checks at start-up: they are not served. */
  private readonly failures = new Map<number, DkvError>();
  private record: NodeRecord;
  private closed = false;

  private constructor(
    db: LevelDb,
    opts: GroupStorageOptions,
    record: NodeRecord,
    deferred: DeferredWrites | undefined,
  ) {
    this.db = db;
    this.deferred = deferred;
    this.store = deferred ?? db;
    this.opts = opts;
    this.record = record;
  }

  /**
   * open opens the node's database in `dir` and recovers every group in it. Errors name the
   * directory (in use, unreadable, not a DKV directory) or the group (corrupted).
   */
  static async open(
    dir: string,
    options: Partial<GroupStorageOptions> = {},
    test: NodeStorageTestOptions = {},
  ): Promise<NodeStorage> {
    const opts: GroupStorageOptions = { ...GROUP_STORAGE_DEFAULTS, ...options };
    for (const [k, v] of Object.entries(opts)) {
      if (!Number.isSafeInteger(v) || v <= 0)
        throw new DkvError(ErrorCode.InvalidArgument, `storage option ${k} must be a positive integer`);
    }
    const deferMs = test.unsafeDeferWritesMs;
    if (deferMs !== undefined && (!Number.isSafeInteger(deferMs) || deferMs <= 0))
      throw new DkvError(ErrorCode.InvalidArgument, 'unsafeDeferWritesMs must be a positive integer');
    const db = await LevelDb.open(dir);
    const deferred = deferMs === undefined ? undefined : new DeferredWrites(db, deferMs);
    try {
      const raw = await db.get(NODE_KEY);
      let record: NodeRecord;
      if (raw) {
        const v = decodeJsonRecord(0, 'node record', raw) as Partial<NodeRecord>;
        if (v.version !== STORAGE_FORMAT_VERSION || !Array.isArray(v.groups)) {
          throw new DkvError(
            ErrorCode.Unsupported,
            `data directory ${dir} has storage format ${String(v.version)}; this build reads format ${STORAGE_FORMAT_VERSION}`,
          );
        }
        record = { version: v.version, groups: v.groups.filter((g) => Number.isSafeInteger(g)) };
      } else {
        record = { version: STORAGE_FORMAT_VERSION, groups: [] };
        await db.batch([{ type: 'put', key: NODE_KEY, value: encodeJsonRecord(record) }], true);
      }
      const ns = new NodeStorage(db, opts, record, deferred);
      await ns.removeUnlistedGroups();
      for (const g of record.groups) {
        try {
          ns.groupMap.set(g, await GroupStorage.load(ns.store, g, opts));
        } catch (err) {
          // One damaged group must not take the others down: it is set aside, reported by
          // `failure(id)`, and never served; the node can rebuild it from its peers.
          if (!isDkvError(err, ErrorCode.Corrupted)) throw err;
          ns.failures.set(g, err);
        }
      }
      return ns;
    } catch (err) {
      deferred?.discard();
      await deferred?.close().catch(() => undefined);
      await db.close();
      throw err;
    }
  }

  /** groupIds lists the groups stored on this node. */
  groupIds(): number[] {
    return [...this.groupMap.keys()].sort((a, b) => a - b);
  }

  /**
   * removeUnlistedGroups deletes the keys of groups that the node record does not list:
   * what a deleteGroup cut short by a crash leaves behind. It costs one seek per group.
   */
  private async removeUnlistedGroups(): Promise<void> {
    const listed = new Set(this.record.groups);
    let gte: Uint8Array = ALL_GROUPS_RANGE.gte;
    for (;;) {
      const [key] = await this.store.keys({ gte, lt: ALL_GROUPS_RANGE.lt, limit: 1 });
      if (!key) return;
      const id = groupIdOf(key);
      const range = groupRange(id);
      if (!listed.has(id)) await this.store.clear(range);
      if (id === GROUP_ID_MAX) return;
      gte = range.lt;
    }
  }

  /** failure returns why a stored group could not be loaded (CORRUPTED), if it could not. */
  failure(id: number): DkvError | undefined {
    return this.failures.get(id);
  }

  /** failedGroupIds lists the stored groups that failed their checks at start-up. */
  failedGroupIds(): number[] {
    return [...this.failures.keys()].sort((a, b) => a - b);
  }

  /** group returns a stored group, or undefined (also for a group that failed its checks). */
  group(id: number): GroupStorage | undefined {
    return this.groupMap.get(id);
  }

  /**
   * createGroup stores a new group: bootstrapped with `confState` (a snapshot at index 1
   * holding the membership), or empty for a replica that will receive a snapshot.
   */
  async createGroup(id: number, confState?: ConfState): Promise<GroupStorage> {
    this.checkOpen();
    if (!Number.isSafeInteger(id) || id < 0 || id > GROUP_ID_MAX) {
      throw new DkvError(ErrorCode.InvalidArgument, `group id ${id} is out of range`);
    }
    if (this.groupMap.has(id) || this.failures.has(id)) {
      throw new DkvError(ErrorCode.InvalidArgument, `group ${id} already exists on this node`);
    }
    // A deleteGroup cut short by a crash can leave keys behind: never let them come back.
    await this.store.clear(groupRange(id));
    const record: NodeRecord = { ...this.record, groups: [...this.record.groups, id].sort((a, b) => a - b) };
    const ops: WriteOp[] = [
      ...GroupStorage.createOps(id, confState),
      { type: 'put', key: NODE_KEY, value: encodeJsonRecord(record) },
    ];
    await this.store.batch(ops, true);
    this.record = record;
    const gs = await GroupStorage.load(this.store, id, this.opts);
    this.groupMap.set(id, gs);
    return gs;
  }

  /** deleteGroup removes a group and all its data from this node. */
  async deleteGroup(id: number): Promise<void> {
    this.checkOpen();
    if (!this.groupMap.has(id) && !this.failures.has(id)) return;
    this.failures.delete(id);
    const record: NodeRecord = { ...this.record, groups: this.record.groups.filter((g) => g !== id) };
    await this.store.batch([{ type: 'put', key: NODE_KEY, value: encodeJsonRecord(record) }], true);
    this.record = record;
    this.groupMap.delete(id);
    await this.store.clear(groupRange(id));
  }

  /**
   * commit persists the Readies of one round: first the chunks of any snapshot received from
   * a leader, then one atomic batch with every group's entries and hard state, synced if any
   * Ready needs it. It resolves only after the sync returns; only then may the Readies'
   * messages be sent and their entries applied. The in-memory views update at the same time.
   */
  async commit(items: readonly PersistItem[]): Promise<CommitStats> {
    this.checkOpen();
    const withSnapshot = items.filter((it) => it.ready.snapshot !== null);
    if (withSnapshot.length === 0) return this.commitBatch(items, new Map());
    // Hold each receiving group's snapshot lock across chunk writes, the switch and the memory update.
    const run = async (i: number, prepared: Map<GroupStorage, SnapshotRecord>): Promise<CommitStats> => {
      const it = withSnapshot[i];
      if (!it) return this.commitBatch(items, prepared);
      return it.storage.withSnapshotLock(async () => {
        prepared.set(it.storage, await it.storage.prepareReceivedSnapshot(it.ready.snapshot!));
        return run(i + 1, prepared);
      });
    };
    return run(0, new Map());
  }

  private async commitBatch(
    items: readonly PersistItem[],
    prepared: ReadonlyMap<GroupStorage, SnapshotRecord>,
  ): Promise<CommitStats> {
    const ops: WriteOp[] = [];
    const commits: (() => void)[] = [];
    let sync = false;
    let entries = 0;
    for (const { storage, ready } of items) {
      const staged = storage.stageReady(ready, prepared.get(storage) ?? null);
      for (const op of staged.ops) ops.push(op);
      commits.push(staged.commit);
      if (ready.mustSync) sync = true;
      entries += ready.entries.length;
    }
    let syncMs = 0;
    if (this.deferred)
      this.deferred.enqueue(ops); // the bug `no-fsync`: acknowledged unwritten
    else if (ops.length > 0) {
      const t0 = performance.now();
      await this.db.batch(ops, sync);
      syncMs = performance.now() - t0;
    }
    for (const c of commits) c();
    return {
      groups: items.length,
      entries,
      ops: ops.length,
      synced: !this.deferred && sync && ops.length > 0,
      syncMs,
    };
  }

  private checkOpen(): void {
    if (this.closed) throw new DkvError(ErrorCode.Cancelled, 'node storage is closed');
  }

  /**
   * discardQueuedWrites is TEST ONLY: under `no-fsync` it drops the writes still queued, as a
   * kill would (a later close then writes nothing of them); returns how many it dropped.
   */
  discardQueuedWrites(): number {
    return this.deferred?.discard() ?? 0;
  }

  /** close closes the database (writing out any queued writes first); the storage may not be used afterwards. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.deferred?.close();
    } finally {
      await this.db.close();
    }
  }
}
