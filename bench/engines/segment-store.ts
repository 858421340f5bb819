/**
 * SegmentStore benchmark: put rates (create and overwrite), get rate, the latency of a
 * 100-item scan and of count over ranges and prefixes, snapshot and restore rates, stateHash
 * time, and heap bytes per key, at 1M keys (100k with --quick) of 16-byte ASCII keys and
 * 128-byte Uint8Array values, inserted in a shuffled order.
 *
 *     node --expose-gc --import tsx bench/engines/segment-store.ts [--quick]
 *
 * Without --expose-gc the memory figures are noisier (and may be off by whole megabytes of
 * floating garbage). Memory is reported in three parts: the key strings and value objects
 * themselves (what any store must hold: V8 keeps a Uint8Array's 128 bytes off the heap, in
 * `arrayBuffers`, and its wrapper objects on it), and the store's own overhead beyond them
 * (record objects, B+ tree nodes).
 */
import { SegmentStore } from '../../src/engines/segment-store.js';
import { runIfMain, xorshift32 } from '../common.js';

const KEY_BYTES = 16;
const VALUE_BYTES = 128;
/** ARRAY_SLOT_BYTES is what the bench's own key and value arrays cost per key (two 8-byte slots). */
const ARRAY_SLOT_BYTES = 16;

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g !== undefined) {
    g();
    g();
  }
}

interface Mem {
  heap: number;
  arrayBuffers: number;
}

function mem(): Mem {
  gc();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, arrayBuffers: m.arrayBuffers };
}

const HEX = '0123456789abcdef';

/** makeKey is `k` and 15 hex digits of i: 16 ASCII bytes, a flat string as a decoder makes. */
function makeKey(i: number): string {
  const codes = new Array<number>(KEY_BYTES);
  codes[0] = 107;
  let x = i;
  for (let p = KEY_BYTES - 1; p >= 1; p--) {
    codes[p] = HEX.charCodeAt(x % 16);
    x = Math.floor(x / 16);
  }
  return String.fromCharCode(...codes);
}

/** shuffled is 0..n-1 in a seeded random order. */
function shuffled(n: number, seed: number): Uint32Array {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const rnd = xorshift32(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = rnd() % (i + 1);
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
  return order;
}

function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Latency is the mean and tail of timed calls, in microseconds. */
interface Latency {
  meanUs: number;
  p99Us: number;
}

function timeCalls(calls: number, f: (i: number) => void): Latency {
  const ts = new Float64Array(calls);
  const start = performance.now();
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    f(i);
    ts[i] = performance.now() - t0;
  }
  const total = performance.now() - start;
  ts.sort();
  return { meanUs: (total * 1000) / calls, p99Us: ts[Math.floor(calls * 0.99)]! * 1000 };
}

/** warmUp runs every hot path on a small store, so the first measurement is not the JIT's. */
function warmUp(): void {
  const s = new SegmentStore();
  const v = new Uint8Array(VALUE_BYTES);
  for (let r = 0; r < 3; r++) {
    for (let i = 0; i < 30_000; i++)
      s.put(makeKey((i * 7919) % 30_000), { value: v, valueBytes: VALUE_BYTES });
  }
  for (let i = 0; i < 30_000; i++) s.get(makeKey(i));
  for (let i = 0; i < 2000; i++) s.scan({ start: makeKey(i * 10), limit: 100 });
  for (let i = 0; i < 2000; i++) s.count({ start: makeKey(i), end: makeKey(i * 10) });
  for (const _ of s.snapshot().parts());
  s.stateHash();
}

/** bench measures the figures named in the file comment; `quick` uses 100k keys instead of 1M. */
export async function bench(opts: { quick: boolean }): Promise<Record<string, number | string>> {
  const n = opts.quick ? 100_000 : 1_000_000;
  const out: Record<string, number | string> = {
    keys: n,
    keyBytes: KEY_BYTES,
    valueBytes: VALUE_BYTES,
    gcExposed: typeof (globalThis as { gc?: unknown }).gc === 'function' ? 'yes' : 'no',
  };
  warmUp();

  // The data itself, before any store: key strings and value objects.
  const m0 = mem();
  const order = shuffled(n, 1);
  let keys = new Array<string>(n);
  let values = new Array<Uint8Array>(n);
  for (let i = 0; i < n; i++) {
    keys[i] = makeKey(order[i]!);
    values[i] = new Uint8Array(VALUE_BYTES);
    values[i]![0] = i & 255;
  }
  const m1 = mem();
  const orderBytes = order.byteLength;
  const dataHeapPerKey = (m1.heap - m0.heap - orderBytes) / n - ARRAY_SLOT_BYTES;
  out.dataHeapBytesPerKey = round(dataHeapPerKey, 1);
  out.dataOffHeapBytesPerKey = round((m1.arrayBuffers - m0.arrayBuffers - orderBytes) / n, 1);

  // Puts that create keys, in shuffled order.
  const s = new SegmentStore();
  let t0 = performance.now();
  for (let i = 0; i < n; i++) s.put(keys[i]!, { value: values[i]!, valueBytes: VALUE_BYTES });
  let dt = performance.now() - t0;
  out.putCreateOpsPerSec = round(n / (dt / 1000));
  const m2 = mem();
  out.storeOverheadBytesPerKey = round((m2.heap - m1.heap) / n, 1);
  out.totalHeapBytesPerKey = round(dataHeapPerKey + (m2.heap - m1.heap) / n, 1);
  out.storeBytesCounted = s.bytes;

  // Gets of present keys, in another shuffled order.
  const probe = shuffled(n, 2);
  const getN = Math.min(n, 500_000);
  t0 = performance.now();
  let found = 0;
  for (let i = 0; i < getN; i++) if (s.get(keys[probe[i]!]!) !== undefined) found++;
  dt = performance.now() - t0;
  if (found !== getN) throw new Error('bench: a get missed');
  out.getOpsPerSec = round(getN / (dt / 1000));
  t0 = performance.now();
  for (let i = 0; i < getN; i++) s.getLive(keys[probe[i]!]!, 5);
  dt = performance.now() - t0;
  out.getLiveOpsPerSec = round(getN / (dt / 1000));

  // Overwrites: a new record per put, version + 1.
  const putN = Math.min(n, 500_000);
  t0 = performance.now();
  for (let i = 0; i < putN; i++) {
    const k = probe[i]!;
    s.put(keys[k]!, { value: values[k]!, valueBytes: VALUE_BYTES });
  }
  dt = performance.now() - t0;
  out.putOverwriteOpsPerSec = round(putN / (dt / 1000));

  // A 100-item scan from a random start key (present keys start half of them).
  const rnd = xorshift32(3);
  const scans = 20_000;
  const scan100 = timeCalls(scans, () => {
    const r = s.scan({ start: makeKey(rnd() % n), limit: 100 });
    if (r.items.length === 0) throw new Error('bench: empty scan');
  });
  out.scan100MeanUs = round(scan100.meanUs, 2);
  out.scan100P99Us = round(scan100.p99Us, 2);
  const scan100Rev = timeCalls(scans, () => {
    s.scan({ end: makeKey(rnd() % n), limit: 100, reverse: true, now: 5 });
  });
  out.scan100ReverseWithNowMeanUs = round(scan100Rev.meanUs, 2);

  // count over a random range (on average a third of the keys), and over a prefix of ~n/16^2 keys.
  const counts = 20_000;
  let counted = 0;
  const countRange = timeCalls(counts, () => {
    const a = rnd() % n;
    const b = rnd() % n;
    counted += s.count({ start: makeKey(Math.min(a, b)), end: makeKey(Math.max(a, b)) });
  });
  out.countRangeMeanUs = round(countRange.meanUs, 2);
  out.countRangeMeanKeysCounted = round(counted / counts);
  const countPrefix = timeCalls(counts, () => {
    s.count({ prefix: makeKey(rnd() % n).slice(0, KEY_BYTES - 2), now: 5 });
  });
  out.countPrefixWithNowMeanUs = round(countPrefix.meanUs, 2);

  // Snapshot: clone and walk every part; restore from those parts (no msgpack in between).
  const snapStart = performance.now();
  const snap = s.snapshot();
  out.snapshotTakeUs = round((performance.now() - snapStart) * 1000, 1);
  t0 = performance.now();
  const parts: unknown[] = [];
  for (const p of snap.parts()) parts.push(p);
  dt = performance.now() - t0;
  out.snapshotRecordsPerSec = round(n / (dt / 1000));
  out.snapshotParts = parts.length;
  t0 = performance.now();
  const restored = SegmentStore.restore(parts);
  dt = performance.now() - t0;
  out.restoreRecordsPerSec = round(n / (dt / 1000));
  parts.length = 0;

  // Writes after a snapshot pay for copy-on-write of the tree path they touch, once per node.
  t0 = performance.now();
  for (let i = 0; i < putN; i++) {
    const k = probe[(i + 7) % n]!;
    s.put(keys[k]!, { value: values[k]!, valueBytes: VALUE_BYTES });
  }
  dt = performance.now() - t0;
  out.putOverwriteAfterSnapshotOpsPerSec = round(putN / (dt / 1000));

  t0 = performance.now();
  const hash = restored.stateHash();
  dt = performance.now() - t0;
  out.stateHashMs = round(dt);
  out.stateHash = hash;

  // Deletes of every key.
  t0 = performance.now();
  for (let i = 0; i < n; i++) restored.delete(keys[probe[i]!]!);
  dt = performance.now() - t0;
  out.deleteOpsPerSec = round(n / (dt / 1000));
  if (restored.size !== 0) throw new Error('bench: delete left keys');

  keys = [];
  values = [];
  return out;
}

runIfMain(import.meta.url, bench);
