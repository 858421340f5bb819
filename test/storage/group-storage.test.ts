import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isDkvError } from '../../src/errors.js';
import {
  type ConfState,
  EMPTY_HARD_STATE,
  type Entry,
  EntryType,
  isStorageError,
  StorageErrorKind,
} from '../../src/raft/index.js';
import { NodeStorage } from '../../src/storage/node-storage.js';
import { ready } from './make-ready.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'dkv-storage-'));
  dirs.push(d);
  return d;
}

const CONF: ConfState = {
  voters: [1, 2, 3],
  learners: [],
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
};

function ent(index: number, term: number, text = `e${index}`): Entry {
  return { index, term, type: EntryType.Normal, data: new TextEncoder().encode(text) };
}

describe('GroupStorage on LevelDB', () => {
  it('bootstraps a group like MemoryStorage: a snapshot at index 1 with the membership', async () => {
    const ns = await NodeStorage.open(tempDir());
    const g = await ns.createGroup(7, CONF);
    expect(g.firstIndex()).toBe(2);
    expect(g.lastIndex()).toBe(1);
    expect(g.term(1)).toBe(1);
    expect(g.initialState()).toEqual({ hardState: EMPTY_HARD_STATE, confState: CONF });
    expect(g.snapshot().metadata.index).toBe(1);
    await ns.close();
  });

  it('persists entries and hard state with one synced batch, and recovers them after a restart', async () => {
    const dir = tempDir();
    let ns = await NodeStorage.open(dir);
    const a = await ns.createGroup(1, CONF);
    const b = await ns.createGroup(2, CONF);
    const stats = await ns.commit([
      {
        storage: a,
        ready: ready({ entries: [ent(2, 1), ent(3, 1)], hardState: { term: 1, vote: 1, commit: 3 } }),
      },
      { storage: b, ready: ready({ entries: [ent(2, 1)], hardState: { term: 1, vote: 2, commit: 1 } }) },
    ]);
    expect(stats).toMatchObject({ groups: 2, entries: 3, synced: true });
    expect(a.entries(2, 4, 1 << 20).map((e) => e.index)).toEqual([2, 3]);
    await ns.close();

    ns = await NodeStorage.open(dir);
    expect(ns.groupIds()).toEqual([1, 2]);
    const a2 = ns.group(1)!;
    expect(a2.lastIndex()).toBe(3);
    expect(a2.initialState().hardState).toEqual({ term: 1, vote: 1, commit: 3 });
    expect(a2.entries(2, 4, 1 << 20)).toEqual([ent(2, 1), ent(3, 1)]);
    expect(ns.group(2)!.lastIndex()).toBe(2);
    await ns.close();
  });

  it('a conflicting append truncates the suffix, in memory and on disk, with terms to match', async () => {
    const dir = tempDir();
    let ns = await NodeStorage.open(dir);
    const g = await ns.createGroup(1, CONF);
    await ns.commit([{ storage: g, ready: ready({ entries: [2, 3, 4, 5].map((i) => ent(i, 1)) }) }]);
    await ns.commit([{ storage: g, ready: ready({ entries: [ent(4, 2, 'x4')] }) }]);
    expect(g.lastIndex()).toBe(4);
    expect(g.term(3)).toBe(1);
    expect(g.term(4)).toBe(2);
    expect(g.entries(4, 5, 100)).toEqual([ent(4, 2, 'x4')]);
    await ns.close();
    ns = await NodeStorage.open(dir);
    const g2 = ns.group(1)!;
    expect(g2.lastIndex()).toBe(4);
    expect([2, 3, 4].map((i) => g2.term(i))).toEqual([1, 1, 2]);
    expect(g2.entries(2, 5, 1 << 20)).toEqual([ent(2, 1), ent(3, 1), ent(4, 2, 'x4')]);
    await ns.close();
  });

  it('reads old entries from disk on demand when they are out of the cache', async () => {
    const dir = tempDir();
    const ns = await NodeStorage.open(dir, { cacheBytesMax: 200 });
    const g = await ns.createGroup(1, CONF);
    const ents = Array.from({ length: 50 }, (_, i) => ent(i + 2, 1, `value-${i + 2}`));
    await ns.commit([{ storage: g, ready: ready({ entries: ents }) }]);
    expect(g.cachedFirstIndex()).toBeGreaterThan(2);
    let fetched = 0;
    const done = new Promise<void>((resolve) => {
      g.onFetched = () => {
        fetched++;
        resolve();
      };
    });
    let err: unknown;
    try {
      g.entries(2, 10, 1 << 20);
    } catch (e) {
      err = e;
    }
    expect(isStorageError(err, StorageErrorKind.LogTemporarilyUnavailable)).toBe(true);
    await done;
    expect(fetched).toBe(1);
    expect(g.entries(2, 10, 1 << 20)).toEqual(ents.slice(0, 8));
    await ns.close();
  });

  it('creates a snapshot in chunks, compacts keeping a tail, and recovers it', async () => {
    const dir = tempDir();
    let ns = await NodeStorage.open(dir, { snapshotChunkBytes: 4 });
    const g = await ns.createGroup(1, CONF);
    await ns.commit([
      {
        storage: g,
        ready: ready({
          entries: Array.from({ length: 20 }, (_, i) => ent(i + 2, 1)),
          hardState: { term: 1, vote: 1, commit: 21 },
        }),
      },
    ]);
    const image = new TextEncoder().encode('state machine image of some length');
    const rec = await g.createSnapshot(15, CONF, [image.subarray(0, 10), image.subarray(10)], {
      tailEntries: 5,
    });
    expect(rec.chunkCount).toBe(Math.ceil(10 / 4) + Math.ceil((image.length - 10) / 4));
    expect(g.firstIndex()).toBe(11);
    expect(g.term(10)).toBe(1);
    expect(() => g.entries(9, 12, 100)).toThrow();
    await ns.close();
    ns = await NodeStorage.open(dir, { snapshotChunkBytes: 4 });
    const g2 = ns.group(1)!;
    expect(g2.firstIndex()).toBe(11);
    expect(g2.lastIndex()).toBe(21);
    const snap = await g2.readSnapshot();
    expect(snap.metadata.index).toBe(15);
    expect(new TextDecoder().decode(snap.data)).toBe('state machine image of some length');
    await ns.close();
  });

  it('installs a snapshot from the leader atomically, replacing the log', async () => {
    const dir = tempDir();
    let ns = await NodeStorage.open(dir, { snapshotChunkBytes: 3 });
    const g = await ns.createGroup(1);
    await ns.commit([{ storage: g, ready: ready({ entries: [ent(1, 1), ent(2, 1)] }) }]);
    const data = new TextEncoder().encode('leader state');
    await ns.commit([
      {
        storage: g,
        ready: ready({
          snapshot: { metadata: { index: 40, term: 3, confState: CONF }, data },
          entries: [ent(41, 3)],
          hardState: { term: 3, vote: 0, commit: 40 },
        }),
      },
    ]);
    expect(g.firstIndex()).toBe(41);
    expect(g.lastIndex()).toBe(41);
    expect(g.term(40)).toBe(3);
    expect(g.snapshot().data).toEqual(data);
    await ns.close();
    ns = await NodeStorage.open(dir, { snapshotChunkBytes: 3 });
    const g2 = ns.group(1)!;
    expect(g2.initialState().confState).toEqual(CONF);
    expect(g2.entries(41, 42, 100)).toEqual([ent(41, 3)]);
    expect((await g2.readSnapshot()).data).toEqual(data);
    await ns.close();
  });

  it('refuses a data directory already in use, with a plain error', async () => {
    const dir = tempDir();
    const ns = await NodeStorage.open(dir);
    let err: unknown;
    try {
      await NodeStorage.open(dir);
    } catch (e) {
      err = e;
    }
    expect(isDkvError(err, 'IN_USE')).toBe(true);
    expect((err as Error).message).toContain(dir);
    await ns.close();
  });
});
