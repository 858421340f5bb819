/**
 * Corruption test (issue 3): write entries and a multi-chunk snapshot, close, damage the raw
 * LevelDB records (flipped bits, truncated or misplaced values, missing records), reopen,
 * and check that the damage is detected and reported as CORRUPTED naming the group (and the
 * index where there is one), and that damaged data is never served. Damage found at open
 * sets the group aside (`NodeStorage.failure`); a second, intact group still loads and serves.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type DkvError, isDkvError } from '../../src/errors.js';
import { isStorageError, StorageErrorKind } from '../../src/raft/index.js';
import type { GroupStorage, GroupStorageOptions } from '../../src/storage/group-storage.js';
import { chunkKey, indexedKey, KeyKind, NODE_KEY, recordKey } from '../../src/storage/keys.js';
import { NodeStorage } from '../../src/storage/node-storage.js';
import { CRASH_CONF, entryFor, sameBytes, snapshotImage } from './crash-content.js';
import { openRawLevel } from './durable-state.js';
import { ready } from './make-ready.js';

const G = 5;
/** OTHER is an intact group beside the damaged one. */
const OTHER = 9;
const LAST = 200;
const COMMIT = 150;
const SNAP_INDEX = 100;
const TAIL_ENTRIES = 50;
const IMAGE_BYTES = 1000;
const OPTS: Partial<GroupStorageOptions> = {
  cacheBytesMax: 2048,
  snapshotChunkBytes: 64,
  fetchBytesMax: 1 << 20,
};

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** BLOCK is how many entries each commit round (hence each stored log block) carries. */
const BLOCK = 10;

/** blockOf is the first index of the log block holding `index` (blocks start at 2, 12, 22, ...). */
function blockOf(index: number): number {
  return 2 + Math.floor((index - 2) / BLOCK) * BLOCK;
}

/**
 * buildDir writes group G: entries 2..LAST (term 1 then 2) in rounds of BLOCK entries, so
 * the log is stored as blocks at 2, 12, ..., 192; a 16-chunk snapshot at SNAP_INDEX, log
 * from 51; and group OTHER with a few entries.
 */
async function buildDir(): Promise<{ dir: string; snapshotId: number; chunkCount: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'dkv-corruption-'));
  dirs.push(dir);
  const ns = await NodeStorage.open(dir, OPTS);
  try {
    const g = await ns.createGroup(G, CRASH_CONF);
    const entries = Array.from({ length: LAST - 1 }, (_, i) => entryFor(G, i + 2, i + 2 < 120 ? 1 : 2));
    for (let at = 0; at < entries.length; at += BLOCK) {
      const hardState = { term: 2, vote: 1, commit: Math.min(COMMIT, entries[at]!.index) };
      await ns.commit([{ storage: g, ready: ready({ entries: entries.slice(at, at + BLOCK), hardState }) }]);
    }
    await ns.commit([{ storage: g, ready: ready({ hardState: { term: 2, vote: 1, commit: COMMIT } }) }]);
    const image = snapshotImage(G, SNAP_INDEX, 1, IMAGE_BYTES);
    const rec = await g.createSnapshot(
      SNAP_INDEX,
      CRASH_CONF,
      [image.subarray(0, 300), image.subarray(300)],
      {
        tailEntries: TAIL_ENTRIES,
      },
    );
    expect(rec.chunkCount).toBeGreaterThan(10);
    const other = await ns.createGroup(OTHER, CRASH_CONF);
    const otherEntries = Array.from({ length: 9 }, (_, i) => entryFor(OTHER, i + 2, 1));
    await ns.commit([{ storage: other, ready: ready({ entries: otherEntries }) }]);
    return { dir, snapshotId: rec.id, chunkCount: rec.chunkCount };
  } finally {
    await ns.close();
  }
}

/** damage rewrites (or, with a null result, deletes) the raw value under `key`. */
async function damage(dir: string, key: Uint8Array, fn: (v: Uint8Array) => Uint8Array | null): Promise<void> {
  const db = await openRawLevel(dir);
  try {
    const v = await db.get(key);
    if (v === undefined) throw new Error('damage: no such key');
    const out = fn(Uint8Array.from(v));
    if (out === null) await db.del(key);
    else await db.put(key, out);
  } finally {
    await db.close();
  }
}

function flipAt(at: number): (v: Uint8Array) => Uint8Array {
  return (v) => {
    const i = at < 0 ? v.length + at : at;
    v[i] = v[i]! ^ 0x10;
    return v;
  };
}

function truncateTo(bytes: number): (v: Uint8Array) => Uint8Array {
  return (v) => v.slice(0, bytes);
}

async function rejection(p: Promise<unknown>): Promise<DkvError> {
  try {
    await p;
  } catch (err) {
    if (isDkvError(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection, got success');
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

/** expectOtherGroupServes checks that the intact group loaded and serves its entries. */
function expectOtherGroupServes(ns: NodeStorage): void {
  const other = ns.group(OTHER);
  expect(other).toBeDefined();
  expect(other!.entries(2, 11, 1 << 20).map((e) => e.index)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10]);
}

/**
 * expectSetAside checks that the node opens, sets group G aside with a CORRUPTED error naming
 * the group (and index), never hands it out, still serves the intact group, and does the
 * same after another restart (the damage is reported, not silently repaired).
 */
async function expectSetAside(dir: string, index?: number): Promise<DkvError> {
  let first: DkvError | undefined;
  for (let open = 0; open < 2; open++) {
    const ns = await NodeStorage.open(dir, OPTS);
    try {
      expect(ns.groupIds()).toEqual([OTHER]);
      expect(ns.failedGroupIds()).toEqual([G]);
      expect(ns.group(G)).toBeUndefined();
      const err = ns.failure(G);
      expect(isDkvError(err, 'CORRUPTED')).toBe(true);
      expect(err!.details.group).toBe(G);
      expect(err!.message).toContain(`group ${G}`);
      if (index !== undefined) {
        expect(err!.details.index).toBe(index);
        expect(err!.message).toContain(String(index));
      }
      await expect(ns.createGroup(G, CRASH_CONF)).rejects.toThrow('already exists');
      expectOtherGroupServes(ns);
      first ??= err;
    } finally {
      await ns.close();
    }
  }
  return first!;
}

/** expectRefusesToServe checks that every read of the group now throws CORRUPTED. */
function expectRefusesToServe(g: GroupStorage, first: number): void {
  for (const read of [
    () => g.entries(g.lastIndex(), g.lastIndex() + 1, 1 << 20),
    () => g.term(first),
    () => g.initialState(),
  ]) {
    const err = thrown(read);
    expect(isDkvError(err, 'CORRUPTED')).toBe(true);
  }
}

/** waitFetched resolves on the group's next onFetched. */
function waitFetched(g: GroupStorage): Promise<void> {
  return new Promise((resolve) => {
    g.onFetched = resolve;
  });
}

describe('corruption is detected and never served', () => {
  it('the intact directory reads back whole (the baseline for every case below)', async () => {
    const { dir } = await buildDir();
    const ns = await NodeStorage.open(dir, OPTS);
    expect([ns.groupIds(), ns.failedGroupIds()]).toEqual([[G, OTHER], []]);
    expectOtherGroupServes(ns);
    const g = ns.group(G)!;
    expect([g.firstIndex(), g.lastIndex(), g.cachedFirstIndex() > 60]).toEqual([
      TAIL_ENTRIES + 1,
      LAST,
      true,
    ]);
    const fetched = waitFetched(g);
    expect(
      isStorageError(
        thrown(() => g.entries(55, 65, 1 << 20)),
        StorageErrorKind.LogTemporarilyUnavailable,
      ),
    ).toBe(true);
    await fetched;
    expect(g.entries(55, 65, 1 << 20).map((e) => e.index)).toEqual([55, 56, 57, 58, 59, 60, 61, 62, 63, 64]);
    const snap = await g.readSnapshot();
    expect(sameBytes(snap.data, snapshotImage(G, SNAP_INDEX, 1, IMAGE_BYTES))).toBe(true);
    await ns.close();
  });

  describe('(a) a log block in the tail is caught at open', () => {
    // Offsets in a block: [crc 0..3][count 4..7], then the first entry's [term 8..15][type 16]
    // [length 17..20][data].
    it.each([
      ['its checksum', 0],
      ['its entry count', 7],
      ['an entry term', 15],
      ['an entry type', 16],
      ['an entry length', 20],
      ['a payload', -1],
    ])('a flipped bit in %s', async (_what, at) => {
      const { dir } = await buildDir();
      const block = blockOf(LAST - 1);
      await damage(dir, indexedKey(G, KeyKind.Entry, block), flipAt(at));
      await expectSetAside(dir, block);
    });

    it('a block moved to another index (valid bytes, wrong place)', async () => {
      const { dir } = await buildDir();
      const db = await openRawLevel(dir);
      const last = blockOf(LAST);
      await db.put(
        indexedKey(G, KeyKind.Entry, last),
        (await db.get(indexedKey(G, KeyKind.Entry, last - BLOCK)))!,
      );
      await db.close();
      await expectSetAside(dir, last);
    });

    it('a block missing from the middle of the tail', async () => {
      const { dir } = await buildDir();
      const gone = blockOf(LAST) - BLOCK;
      await damage(dir, indexedKey(G, KeyKind.Entry, gone), () => null);
      // The block before the gap holds fewer entries than the gap needs: the last missing one is named.
      await expectSetAside(dir, gone + BLOCK - 1);
    });
  });

  it('(b) an old entry out of the cache is caught on the on-demand read, and the group stops serving', async () => {
    const { dir } = await buildDir();
    const bad = blockOf(60);
    await damage(dir, indexedKey(G, KeyKind.Entry, bad), flipAt(-1));
    const ns = await NodeStorage.open(dir, OPTS);
    try {
      const g = ns.group(G)!;
      expect(g.cachedFirstIndex()).toBeGreaterThan(bad);
      const fetched = waitFetched(g);
      expect(
        isStorageError(
          thrown(() => g.entries(55, 65, 1 << 20)),
          StorageErrorKind.LogTemporarilyUnavailable,
        ),
      ).toBe(true);
      await fetched;
      const err = thrown(() => g.entries(55, 65, 1 << 20));
      expect(isDkvError(err, 'CORRUPTED')).toBe(true);
      expect((err as DkvError).details).toEqual({ group: G, index: bad });
      expect(g.corruption()).toBe(err);
      // Not even the intact entries before it, nor the cached tail, are served any more.
      expect(
        isDkvError(
          thrown(() => g.entries(55, 56, 1 << 20)),
          'CORRUPTED',
        ),
      ).toBe(true);
      expectRefusesToServe(g, g.firstIndex());
      // Other groups are unaffected: only the damaged group refuses to serve.
      expectOtherGroupServes(ns);
    } finally {
      await ns.close();
    }
  });

  describe('(c) a snapshot chunk is caught when the snapshot is read', () => {
    it.each([
      ['a flipped bit in a chunk', 'flip'],
      ['a truncated chunk', 'truncate'],
      ['a chunk swapped with the next one', 'swap'],
      ['a missing chunk', 'delete'],
    ])('%s', async (_what, how) => {
      const { dir, snapshotId } = await buildDir();
      const key = chunkKey(G, snapshotId, 3);
      if (how === 'flip') await damage(dir, key, flipAt(-2));
      if (how === 'truncate') await damage(dir, key, truncateTo(2));
      if (how === 'delete') await damage(dir, key, () => null);
      if (how === 'swap') {
        const db = await openRawLevel(dir);
        const a = (await db.get(key))!;
        const b = (await db.get(chunkKey(G, snapshotId, 4)))!;
        await db.batch([
          { type: 'put', key, value: b },
          { type: 'put', key: chunkKey(G, snapshotId, 4), value: a },
        ]);
        await db.close();
      }
      const ns = await NodeStorage.open(dir, OPTS);
      try {
        const g = ns.group(G)!;
        const err = await rejection(g.readSnapshot());
        expect(err.code).toBe('CORRUPTED');
        expect(err.details).toEqual({ group: G, index: SNAP_INDEX });
        expect(err.message).toContain(`group ${G}`);
        // The Raft core's synchronous path: it asks, the load fails, the group stops serving.
        const loaded = waitFetched(g);
        expect(
          isStorageError(
            thrown(() => g.snapshot()),
            StorageErrorKind.SnapshotTemporarilyUnavailable,
          ),
        ).toBe(true);
        await loaded;
        expect(
          isDkvError(
            thrown(() => g.snapshot()),
            'CORRUPTED',
          ),
        ).toBe(true);
        expectRefusesToServe(g, g.firstIndex());
      } finally {
        await ns.close();
      }
    });
  });

  describe('(d) the records every group starts from are caught at open', () => {
    it.each([
      ['hard state', KeyKind.HardState],
      ['snapshot metadata', KeyKind.SnapshotMeta],
      ['log start', KeyKind.LogStart],
    ])('a flipped bit in the %s', async (_what, kind) => {
      const { dir } = await buildDir();
      await damage(dir, recordKey(G, kind), flipAt(-2));
      await expectSetAside(dir);
    });

    it('a flipped bit in a term run', async () => {
      const { dir } = await buildDir();
      await damage(dir, indexedKey(G, KeyKind.TermRun, 120), flipAt(-2));
      await expectSetAside(dir);
    });

    it('a flipped bit in the node record', async () => {
      const { dir } = await buildDir();
      await damage(dir, NODE_KEY, flipAt(-2));
      const err = await rejection(NodeStorage.open(dir, OPTS));
      expect(err.code).toBe('CORRUPTED');
      expect(err.message).toContain('node record');
    });
  });

  describe('(e) a truncated value is caught', () => {
    it.each([
      ['the tail block cut inside its header', 7],
      ['the tail block cut inside an entry header', 14],
      ['the tail block cut inside a payload', -1],
      ['the tail block cut to nothing', 0],
    ])('%s', async (_what, bytes) => {
      const { dir } = await buildDir();
      const block = blockOf(LAST);
      await damage(dir, indexedKey(G, KeyKind.Entry, block), (v) =>
        v.slice(0, bytes < 0 ? v.length + bytes : bytes),
      );
      await expectSetAside(dir, block);
    });

    it.each([
      ['hard state', KeyKind.HardState],
      ['snapshot metadata', KeyKind.SnapshotMeta],
    ])('the %s cut short', async (_what, kind) => {
      const { dir } = await buildDir();
      await damage(dir, recordKey(G, kind), truncateTo(3));
      await expectSetAside(dir);
    });

    it('an old entry cut short is caught on the on-demand read', async () => {
      const { dir } = await buildDir();
      await damage(dir, indexedKey(G, KeyKind.Entry, blockOf(70)), truncateTo(10));
      const ns = await NodeStorage.open(dir, OPTS);
      try {
        const g = ns.group(G)!;
        const fetched = waitFetched(g);
        thrown(() => g.entries(70, 71, 1 << 20));
        await fetched;
        const err = thrown(() => g.entries(70, 71, 1 << 20));
        expect(isDkvError(err, 'CORRUPTED')).toBe(true);
        expect((err as DkvError).details).toEqual({ group: G, index: blockOf(70) });
      } finally {
        await ns.close();
      }
    });
  });
});
