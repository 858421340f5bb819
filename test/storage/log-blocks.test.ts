/**
 * The packed log layout (one block per group per commit round; a later block shadows the
 * tail of an earlier one): random appends, conflicting suffixes, local snapshots with
 * compaction and reopens, with a tiny cache so that most reads go through the on-demand
 * path. After every step the log must read back exactly as a plain model says, from memory
 * and from disk, and a reopened node must agree.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type Entry, isStorageError, StorageErrorKind } from '../../src/raft/index.js';
import { SeededRandom } from '../../src/random.js';
import type { GroupStorage } from '../../src/storage/group-storage.js';
import { NodeStorage } from '../../src/storage/node-storage.js';
import { CRASH_CONF, entryFor, sameBytes } from './crash-content.js';
import { ready } from './make-ready.js';

const G = 3;
const OPTS = { cacheBytesMax: 600, fetchBytesMax: 900, snapshotChunkBytes: 256 };

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** read reads entries [lo, hi), waiting out on-demand fetches as a driver would. */
async function read(gs: GroupStorage, lo: number, hi: number): Promise<Entry[]> {
  const out: Entry[] = [];
  for (let spins = 0; lo < hi; spins++) {
    if (spins > 1000) throw new Error(`read(${lo}, ${hi}) makes no progress`);
    try {
      const got = gs.entries(lo, hi, Number.MAX_SAFE_INTEGER);
      out.push(...got);
      lo += got.length;
    } catch (err) {
      if (!isStorageError(err, StorageErrorKind.LogTemporarilyUnavailable)) throw err;
      await new Promise<void>((resolve) => {
        gs.onFetched = resolve;
      });
    }
  }
  return out;
}

async function runSeed(seed: number, steps: number): Promise<{ reopens: number; conflicts: number }> {
  const rng = new SeededRandom(seed);
  const dir = mkdtempSync(join(tmpdir(), 'dkv-blocks-'));
  dirs.push(dir);
  let ns = await NodeStorage.open(dir, OPTS);
  let gs = await ns.createGroup(G, CRASH_CONF);
  // The model: the compaction point and the term of every entry after it.
  let start = 1;
  let terms: number[] = []; // terms[i] is the term of entry start + 1 + i
  let reopens = 0;
  let conflicts = 0;
  try {
    for (let step = 0; step < steps; step++) {
      const last = start + terms.length;
      const hard = gs.hardState();
      const term = Math.max(1, hard.term);
      const fixed = Math.max(hard.commit, start);
      let first = last + 1;
      let t = term;
      if (last > fixed && rng.chance(0.2)) {
        t = term + 1;
        first = fixed + 1 + rng.int(last - fixed);
        conflicts++;
      }
      const n = 1 + rng.int(rng.chance(0.2) ? 40 : 6);
      const ents: Entry[] = [];
      for (let i = first; i < first + n; i++) ents.push(entryFor(G, i, t));
      const newLast = first + n - 1;
      const commit = Math.min(newLast, hard.commit + rng.int(8));
      await ns.commit([
        { storage: gs, ready: ready({ entries: ents, hardState: { term: t, vote: 1, commit } }) },
      ]);
      terms = terms.slice(0, first - start - 1);
      for (let i = 0; i < n; i++) terms.push(t);

      if (rng.chance(0.08) && commit > gs.snapshotRecord().index) {
        const at = gs.snapshotRecord().index + 1 + rng.int(commit - gs.snapshotRecord().index);
        const tail = rng.int(30);
        await gs.createSnapshot(at, CRASH_CONF, [new Uint8Array(10)], { tailEntries: tail });
        const newStart = Math.max(start, at - tail);
        terms = terms.slice(newStart - start);
        start = newStart;
      }
      if (rng.chance(0.06)) {
        await ns.close();
        ns = await NodeStorage.open(dir, OPTS);
        gs = ns.group(G)!;
        expect(gs).toBeDefined();
        reopens++;
      }

      const lastNow = start + terms.length;
      expect([gs.firstIndex(), gs.lastIndex()]).toEqual([start + 1, lastNow]);
      if (lastNow > start) {
        const lo = start + 1 + rng.int(lastNow - start);
        const hi = Math.min(lastNow + 1, lo + 1 + rng.int(60));
        const got = await read(gs, lo, hi);
        expect(got.map((e) => e.index)).toEqual(Array.from({ length: hi - lo }, (_, i) => lo + i));
        for (const e of got) {
          const want = entryFor(G, e.index, terms[e.index - start - 1]!);
          if (e.term !== want.term || e.type !== want.type || !sameBytes(e.data, want.data)) {
            throw new Error(`seed ${seed} step ${step}: entry ${e.index} reads back wrong`);
          }
          expect(gs.term(e.index)).toBe(want.term);
        }
      }
    }
    // A final reopen reads the whole log back.
    await ns.close();
    ns = await NodeStorage.open(dir, OPTS);
    gs = ns.group(G)!;
    const last = start + terms.length;
    const all = await read(gs, start + 1, last + 1);
    expect(all.map((e) => e.term)).toEqual(terms);
  } finally {
    await ns.close();
  }
  return { reopens, conflicts };
}

describe('packed log blocks', () => {
  it('read back like the model through appends, conflicting suffixes, compaction and reopens', async () => {
    let reopens = 0;
    let conflicts = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const r = await runSeed(seed, 250);
      reopens += r.reopens;
      conflicts += r.conflicts;
    }
    // Not vacuous: the runs reopened and replaced suffixes many times.
    expect(reopens).toBeGreaterThan(50);
    expect(conflicts).toBeGreaterThan(200);
  });
});
