/**
 * Storage benchmark (issue 3): entries persisted per second through NodeStorage.commit
 * (group commit: one synced LevelDB batch per round, mustSync) at batch sizes 1, 16, 256
 * and 4096 of 128-byte entries, beside the raw floor of this machine, measured in the same
 * run: one small synced LevelDB batch per round through the `level` package directly. For
 * context it also measures raw LevelDB batches of the same number of 128-byte puts, both as
 * an array batch (`db.batch(ops)`, which NodeStorage uses) and as a chained batch
 * (`db.batch().put().write()`), the ceilings for a layout with one key per entry.
 *
 *     npm run bench:storage -- [--time 3] [--sizes 1,16,256,4096] [--groups 1]
 *                              [--dir /tmp] [--out bench/results/storage.json]
 *
 * The goal from the issue: at 256 entries per batch, at least 100 times the single-write
 * rate in entries per second.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { Level } from 'level';
import { type Entry, EntryType, type Ready } from '../src/raft/index.js';
import type { GroupStorage } from '../src/storage/group-storage.js';
import { NodeStorage, type PersistItem } from '../src/storage/node-storage.js';

/** ENTRY_BYTES is the payload of every benchmark entry. */
const ENTRY_BYTES = 128;
/** GOAL_BATCH and GOAL_RATIO_MIN are the target: 256 per batch, 100x the floor. */
const GOAL_BATCH = 256;
const GOAL_RATIO_MIN = 100;
/** WARMUP_FRACTION of each measurement's time runs first, uncounted. */
const WARMUP_FRACTION = 0.1;
/** SETTLE_MS is the pause after a `sync` before each measurement. */
const SETTLE_MS = 500;
/** LATENCY_SAMPLES_MAX bounds the latencies kept per measurement. */
const LATENCY_SAMPLES_MAX = 1 << 20;

const CONF = { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };

/** Measurement is one timed loop's result. */
interface Measurement {
  readonly rounds: number;
  readonly entries: number;
  readonly elapsedMs: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** Row is one batch size's line of the report. */
interface Row {
  readonly batchEntries: number;
  readonly entriesPerSec: number;
  readonly roundsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** entriesPerSec over the raw floor (set once the floor is measured again at the end). */
  ratioVsFloor: number;
  readonly rawArrayBatchEntriesPerSec: number;
  readonly rawChainedBatchEntriesPerSec: number;
}

/** RawBatchKind is how a raw measurement hands its puts to LevelDB. */
type RawBatchKind = 'array' | 'chained';

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** measure runs `round` (which persists `entriesPerRound` entries) for a warm-up, then for `timeMs`. */
async function measure(
  timeMs: number,
  entriesPerRound: number,
  round: () => Promise<void>,
): Promise<Measurement> {
  const warmupEnd = performance.now() + timeMs * WARMUP_FRACTION;
  while (performance.now() < warmupEnd) await round();
  const latencies = new Float64Array(LATENCY_SAMPLES_MAX);
  let rounds = 0;
  const start = performance.now();
  const end = start + timeMs;
  let now = start;
  while (now < end) {
    await round();
    const t = performance.now();
    if (rounds < LATENCY_SAMPLES_MAX) latencies[rounds] = t - now;
    rounds++;
    now = t;
  }
  const elapsedMs = now - start;
  const sorted = latencies.subarray(0, Math.min(rounds, LATENCY_SAMPLES_MAX)).sort();
  return {
    rounds,
    entries: rounds * entriesPerRound,
    elapsedMs,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
  };
}

function payload(): Uint8Array {
  const data = new Uint8Array(ENTRY_BYTES);
  for (let i = 0; i < data.length; i++) data[i] = (i * 131 + 7) & 0xff;
  return data;
}

function rawKey(n: number): Uint8Array {
  const k = new Uint8Array(9);
  k[0] = 0x65;
  new DataView(k.buffer).setUint32(5, n >>> 0);
  new DataView(k.buffer).setUint32(1, Math.floor(n / 0x1_0000_0000));
  return k;
}

/** rawLevel measures LevelDB directly: `batchEntries` 128-byte puts per synced batch. */
async function rawLevel(
  root: string,
  timeMs: number,
  batchEntries: number,
  kind: RawBatchKind,
): Promise<Measurement> {
  const dir = mkdtempSync(join(root, 'dkv-bench-raw-'));
  const db = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  try {
    const value = payload();
    let n = 0;
    return await measure(timeMs, batchEntries, async () => {
      if (kind === 'chained') {
        const batch = db.batch();
        for (let i = 0; i < batchEntries; i++) batch.put(rawKey(n++), value);
        await batch.write({ sync: true });
        return;
      }
      const ops: { type: 'put'; key: Uint8Array; value: Uint8Array }[] = [];
      for (let i = 0; i < batchEntries; i++) ops.push({ type: 'put', key: rawKey(n++), value });
      await db.batch(ops, { sync: true });
    });
  } finally {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function ready(entries: Entry[], commit: number): Ready {
  return {
    softState: null,
    hardState: { term: 1, vote: 1, commit },
    entries,
    snapshot: null,
    committedEntries: [],
    messages: [],
    readStates: [],
    mustSync: true,
  };
}

/** nodeStorage measures NodeStorage.commit: one round carries `batchEntries` entries spread over `groups` groups. */
async function nodeStorage(
  root: string,
  timeMs: number,
  batchEntries: number,
  groups: number,
): Promise<Measurement> {
  const dir = mkdtempSync(join(root, 'dkv-bench-node-'));
  const ns = await NodeStorage.open(dir);
  try {
    const stores: GroupStorage[] = [];
    for (let g = 1; g <= Math.min(groups, batchEntries); g++) stores.push(await ns.createGroup(g, CONF));
    const data = payload();
    return await measure(timeMs, batchEntries, async () => {
      const items: PersistItem[] = [];
      for (let s = 0; s < stores.length; s++) {
        const gs = stores[s]!;
        const count = Math.floor(batchEntries / stores.length) + (s < batchEntries % stores.length ? 1 : 0);
        const first = gs.lastIndex() + 1;
        const entries: Entry[] = [];
        for (let i = 0; i < count; i++)
          entries.push({ index: first + i, term: 1, type: EntryType.Normal, data });
        items.push({ storage: gs, ready: ready(entries, first + count - 1) });
      }
      await ns.commit(items);
    });
  } finally {
    await ns.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * settle lets the disk go quiet before a measurement: the previous one wrote (and deleted)
 * hundreds of megabytes, and the kernel's write-back of them would otherwise land inside the
 * next measurement's fsyncs.
 */
async function settle(): Promise<void> {
  spawnSync('sync');
  await new Promise((r) => setTimeout(r, SETTLE_MS));
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      time: { type: 'string', default: '3' },
      sizes: { type: 'string', default: '1,16,256,4096' },
      groups: { type: 'string', default: '1' },
      dir: { type: 'string', default: tmpdir() },
      out: { type: 'string', default: 'bench/results/storage.json' },
    },
  });
  const timeMs = Number(values.time) * 1000;
  const sizes = values.sizes.split(',').map(Number);
  const groups = Number(values.groups);
  if (!(timeMs > 0) || timeMs > 600_000) throw new Error('--time must be in (0, 600] seconds');
  if (sizes.some((s) => !Number.isSafeInteger(s) || s < 1 || s > 1 << 16))
    throw new Error('--sizes must be integers in [1, 65536]');
  if (!Number.isSafeInteger(groups) || groups < 1 || groups > 1024)
    throw new Error('--groups must be in [1, 1024]');

  console.log(
    `storage bench: ${ENTRY_BYTES}-byte entries, ${timeMs / 1000} s per measurement, ${groups} group(s), data in ${values.dir}`,
  );
  // The floor drifts on a shared machine: measure it before and after, and divide by the higher
  // of the two, so the ratio is never flattered by a slow moment.
  await settle();
  const floorBefore = await rawLevel(values.dir, timeMs, 1, 'array');
  const rows: Row[] = [];
  for (const size of sizes) {
    await settle();
    const m = await nodeStorage(values.dir, timeMs, size, groups);
    await settle();
    const rawArray = await rawLevel(values.dir, timeMs, size, 'array');
    await settle();
    const rawChained = await rawLevel(values.dir, timeMs, size, 'chained');
    const entriesPerSec = (m.entries * 1000) / m.elapsedMs;
    rows.push({
      batchEntries: size,
      entriesPerSec,
      roundsPerSec: (m.rounds * 1000) / m.elapsedMs,
      p50Ms: m.p50Ms,
      p99Ms: m.p99Ms,
      ratioVsFloor: 0,
      rawArrayBatchEntriesPerSec: (rawArray.entries * 1000) / rawArray.elapsedMs,
      rawChainedBatchEntriesPerSec: (rawChained.entries * 1000) / rawChained.elapsedMs,
    });
  }

  await settle();
  const floorAfter = await rawLevel(values.dir, timeMs, 1, 'array');
  const floorsPerSec = [floorBefore, floorAfter].map((f) => (f.rounds * 1000) / f.elapsedMs);
  const floorPerSec = Math.max(...floorsPerSec);
  console.log(
    `raw floor: one synced 1-put LevelDB batch per round: ${floorsPerSec.map((f) => fmt(f)).join(' rounds/s before, ')} rounds/s after; ratios use ${fmt(floorPerSec)}`,
  );
  for (const r of rows) r.ratioVsFloor = r.entriesPerSec / floorPerSec;

  const header = [
    'batch',
    'entries/s',
    'rounds/s',
    'p50 ms',
    'p99 ms',
    'x raw floor',
    'raw array batch entries/s',
    'raw chained batch entries/s',
  ];
  const lines = rows.map((r) => [
    String(r.batchEntries),
    fmt(r.entriesPerSec),
    fmt(r.roundsPerSec),
    fmt(r.p50Ms, 3),
    fmt(r.p99Ms, 3),
    `${fmt(r.ratioVsFloor, 1)}x`,
    fmt(r.rawArrayBatchEntriesPerSec),
    fmt(r.rawChainedBatchEntriesPerSec),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const row = (cells: string[]): string => `| ${cells.map((c, i) => c.padStart(widths[i]!)).join(' | ')} |`;
  console.log(row(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 1)).join('-|')}-|`);
  for (const l of lines) console.log(row(l));

  const goalRow = rows.find((r) => r.batchEntries === GOAL_BATCH);
  const goal = goalRow
    ? {
        batchEntries: GOAL_BATCH,
        ratioMin: GOAL_RATIO_MIN,
        ratio: goalRow.ratioVsFloor,
        met: goalRow.ratioVsFloor >= GOAL_RATIO_MIN,
      }
    : null;
  if (goal) {
    console.log(
      `goal: at ${GOAL_BATCH} per batch, ${fmt(goal.ratio, 1)}x the single-write rate (target >= ${GOAL_RATIO_MIN}x): ${goal.met ? 'met' : 'NOT met'}`,
    );
  }
  const cpu = cpus();
  const result = {
    date: new Date().toISOString(),
    machine: {
      cpu: cpu[0]?.model ?? 'unknown',
      cpus: cpu.length,
      node: process.version,
      platform: process.platform,
      dataDir: values.dir,
    },
    entryBytes: ENTRY_BYTES,
    measureMs: timeMs,
    groups,
    rawFloor: {
      roundsPerSec: floorPerSec,
      before: { roundsPerSec: floorsPerSec[0], p50Ms: floorBefore.p50Ms, p99Ms: floorBefore.p99Ms },
      after: { roundsPerSec: floorsPerSec[1], p50Ms: floorAfter.p50Ms, p99Ms: floorAfter.p99Ms },
    },
    rows,
    goal,
  };
  mkdirSync(dirname(values.out), { recursive: true });
  writeFileSync(values.out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`wrote ${values.out}`);
}

await main();
