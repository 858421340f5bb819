/**
 * Index manager benchmark: N keys of 16 bytes with structured values {n, s}: `n` a distinct
 * integer (a shuffled 0..N-1) under a range index, `s` one of 16 strings under an eq index.
 *
 * Figures: index build rate (first put of each key) and update rate (puts that move a key to
 * a new `n`), heap bytes per key per index, and query latency p50/p99 for an eq that finds
 * one key, a range that finds 100 (key order, and sorted by the index), an `and` of the two
 * indexes that finds about 100, and a count of one eq value (a rank probe).
 *
 *     node --expose-gc --import tsx bench/engines/index-manager.ts [--quick]
 *
 * Without --expose-gc the memory figure is left out. Full: 1M keys; quick: 100k.
 */
import {
  type IndexDef,
  IndexManager,
  type KeySource,
  type Query,
  type QueryOptions,
} from '../../src/engines/index-manager.js';
import type { Item } from '../../src/engines/types.js';
import { runIfMain, uniform } from '../common.js';

const DEFS: IndexDef[] = [
  { name: 'n', kind: 'range', field: 'n' },
  { name: 's', kind: 'eq', field: 's' },
];
/** S_VALUES is the cardinality of the low-cardinality string field. */
const S_VALUES = 16;

function gc(): boolean {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g === undefined) return false;
  g();
  g();
  return true;
}

function nowMs(): number {
  return performance.now();
}

/** latency runs `fn` `rounds` times (after a tenth as warm-up) and returns p50 and p99 in µs. */
function latency(rounds: number, fn: (i: number) => void): { p50Us: number; p99Us: number } {
  for (let i = 0; i < rounds / 10; i++) fn(i);
  const samples = new Float64Array(rounds);
  for (let i = 0; i < rounds; i++) {
    const t0 = process.hrtime.bigint();
    fn(i);
    samples[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  samples.sort();
  const at = (q: number) => Math.round(samples[Math.min(rounds - 1, Math.floor(q * rounds))]! * 10) / 10;
  return { p50Us: at(0.5), p99Us: at(0.99) };
}

/** bench runs the measurements and returns the figures. */
export async function bench(opts: { quick: boolean }): Promise<Record<string, number | string>> {
  const n = opts.quick ? 100_000 : 1_000_000;
  const rounds = opts.quick ? 2_000 : 10_000;
  const rand = uniform(42);

  // Keys of 16 bytes, and a shuffled 0..n-1 for the numeric field.
  const keys: string[] = new Array(n);
  for (let i = 0; i < n; i++) keys[i] = `key:${i.toString(16).padStart(12, '0')}`;
  const perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = perm[i]!;
    perm[i] = perm[j]!;
    perm[j] = t;
  }
  const items: Item[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const key = keys[i]!;
    items[i] = {
      key,
      value: { n: perm[i]!, s: `s${i % S_VALUES}` },
      version: 1,
      createRevision: i,
      modRevision: i,
    };
  }
  const store: KeySource = { keysWithPrefix: () => [], has: () => true };

  const hasGc = gc();
  const heapBefore = process.memoryUsage().heapUsed;
  const mgr = new IndexManager(DEFS);
  let t0 = nowMs();
  for (let i = 0; i < n; i++) mgr.update(keys[i]!, undefined, items[i]);
  const buildMs = nowMs() - t0;
  gc();
  const heapAfter = process.memoryUsage().heapUsed;

  // Updates: move a tenth of the keys to new n values (beyond the current range) and back.
  const moves = Math.floor(n / 10);
  t0 = nowMs();
  for (let r = 0; r < 2; r++) {
    for (let m = 0; m < moves; m++) {
      const i = (m * 7919) % n;
      const key = keys[i]!;
      const value = { n: r === 0 ? n + i : perm[i]!, s: `s${i % S_VALUES}` };
      mgr.update(key, items[i], { key, value, version: 2 + r, createRevision: i, modRevision: n + m });
    }
  }
  const updateMs = nowMs() - t0;

  const q = (query: Query, options: QueryOptions = {}) => mgr.query(query, options, store);
  const check = (query: Query, options: QueryOptions, want: (got: number) => boolean, what: string) => {
    const r = q(query, options);
    if (!want(r.count ?? r.keys.length)) throw new Error(`${what}: unexpected ${r.count ?? r.keys.length}`);
    return r.plan.replace(/ examined=.*/, '');
  };
  const lo = (i: number) => Math.floor((((i * 2654435761) % 1000) / 1000) * (n - 2000));
  const eqQuery = (i: number): Query => ({ index: 'n', eq: lo(i) + 7 });
  const rangeQuery = (i: number): Query => ({ index: 'n', gte: lo(i), lt: lo(i) + 100 });
  const andQuery = (i: number): Query => ({
    and: [
      { index: 's', eq: `s${i % S_VALUES}` },
      { index: 'n', gte: lo(i), lt: lo(i) + 100 * S_VALUES },
    ],
  });
  const plans = {
    eq: check(eqQuery(1), {}, (c) => c === 1, 'eq'),
    range: check(rangeQuery(1), {}, (c) => c === 100, 'range'),
    rangeSorted: check(rangeQuery(1), { sort: { index: 'n' } }, (c) => c === 100, 'range sorted'),
    and: check(andQuery(1), {}, (c) => c > 50 && c < 200, 'and'),
    count: check({ index: 's', eq: 's3' }, { countOnly: true }, (c) => c === n / S_VALUES, 'count'),
  };
  const eq = latency(rounds, (i) => q(eqQuery(i)));
  const range = latency(rounds, (i) => q(rangeQuery(i)));
  const rangeSorted = latency(rounds, (i) => q(rangeQuery(i), { sort: { index: 'n' } }));
  const and = latency(rounds, (i) => q(andQuery(i)));
  const count = latency(rounds, (i) => q({ index: 's', eq: `s${i % S_VALUES}` }, { countOnly: true }));

  // Snapshot and restore of the whole thing.
  t0 = nowMs();
  let parts = 0;
  const collected: unknown[] = [];
  for (const p of mgr.snapshot().parts()) {
    collected.push(p);
    parts++;
  }
  const snapshotMs = nowMs() - t0;
  t0 = nowMs();
  IndexManager.restore(collected);
  const restoreMs = nowMs() - t0;

  const round = (x: number, d = 0) => Math.round(x * 10 ** d) / 10 ** d;
  return {
    keys: n,
    indexes: DEFS.length,
    buildOpsPerSec: round(n / (buildMs / 1000)),
    updateOpsPerSec: round((2 * moves) / (updateMs / 1000)),
    bytesPerKeyPerIndex: hasGc
      ? round((heapAfter - heapBefore) / n / DEFS.length, 1)
      : 'n/a (run with --expose-gc)',
    eqP50Us: eq.p50Us,
    eqP99Us: eq.p99Us,
    range100P50Us: range.p50Us,
    range100P99Us: range.p99Us,
    range100SortedP50Us: rangeSorted.p50Us,
    range100SortedP99Us: rangeSorted.p99Us,
    and100P50Us: and.p50Us,
    and100P99Us: and.p99Us,
    countEqP50Us: count.p50Us,
    countEqP99Us: count.p99Us,
    snapshotMs: round(snapshotMs),
    snapshotParts: parts,
    restoreMs: round(restoreMs),
    planEq: plans.eq,
    planRange: plans.range,
    planRangeSorted: plans.rangeSorted,
    planAnd: plans.and,
    planCount: plans.count,
  };
}

runIfMain(import.meta.url, bench);
