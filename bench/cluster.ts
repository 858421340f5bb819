/**
 * Cluster benchmark: a real 3-node cluster on loopback (node processes spawned exactly as
 * `dkv dev` spawns them), driven by DkvClient from this process with closed loops:
 * - put: 16-byte keys over a 10 000-key space, 128-byte values;
 * - get: linearizable reads (ReadIndex through each group's leader) of those keys;
 * at 1, 16, 64 and 256 requests in flight, reporting ops/s, p50 and p99 latency (ms).
 *
 * Every process (three nodes and this load generator) shares the machine's cores, so the
 * figures are for the whole system on one box, not per node.
 *
 *     npx tsx bench/cluster.ts [--quick]
 */
import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeBasePort, LocalCluster, planNodes, writeNodeConfigs } from '../src/admin/dev.js';
import { DkvClient } from '../src/client/client.js';
import { type Figures, runIfMain, xorshift32 } from './common.js';

const CONCURRENCY = [1, 16, 64, 256] as const;
const KEYS = 10_000;
const VALUE = 'v'.repeat(128);

/** keyOf is the i-th key: 16 characters. */
function keyOf(i: number): string {
  return `key:${i.toString().padStart(12, '0')}`;
}

function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted.length === 0
    ? Number.NaN
    : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/** closedLoop runs `inFlight` loops of `op` for `ms` after `warmupMs`, and measures the part after. */
async function closedLoop(
  inFlight: number,
  warmupMs: number,
  ms: number,
  op: (next: () => number) => Promise<unknown>,
): Promise<{ perSec: number; p50Ms: number; p99Ms: number; errors: number }> {
  const lat: number[] = [];
  const start = performance.now();
  const measureFrom = start + warmupMs;
  const end = measureFrom + ms;
  let done = 0;
  let errors = 0;
  const loop = async (w: number): Promise<void> => {
    const rnd = xorshift32(w * 7919 + 1);
    const next = (): number => rnd() % KEYS;
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        await op(next);
      } catch {
        errors++;
        continue;
      }
      const t1 = performance.now();
      if (t0 >= measureFrom && t1 <= end) {
        lat.push(t1 - t0);
        done++;
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, (_, w) => loop(w)));
  const sorted = Float64Array.from(lat).sort();
  return {
    perSec: round(done / (ms / 1000)),
    p50Ms: round(percentile(sorted, 0.5), 2),
    p99Ms: round(percentile(sorted, 0.99), 2),
    errors,
  };
}

/** startCluster starts a 3-node cluster in a temp dir on free ports. */
async function startCluster(): Promise<{ cluster: LocalCluster; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'dkv-bench-'));
  const specs = planNodes(dir, 3, await freeBasePort(3, dir));
  writeNodeConfigs(specs);
  const cluster = new LocalCluster(specs, {
    onExit: (id, exit) => {
      if (!exit.expected) console.error(cluster.node(id).describeExit(exit));
    },
  });
  cluster.startAll();
  try {
    await cluster.waitReady(60_000);
  } catch (err) {
    await cluster.killAll();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return { cluster, dir };
}

/** bench runs the cluster workloads and returns their figures. */
export async function bench(opts: { quick: boolean }): Promise<Figures> {
  const warmupMs = opts.quick ? 300 : 1000;
  const ms = opts.quick ? 1500 : 5000;
  const { cluster, dir } = await startCluster();
  const out: Figures = {};
  const client = await DkvClient.connect({ servers: cluster.servers, requestTimeoutMs: 10_000 });
  try {
    // Fill the key space, so that every get finds its key.
    let i = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (i < KEYS) await client.put(keyOf(i++), VALUE);
      }),
    );
    for (const c of CONCURRENCY) {
      const put = await closedLoop(c, warmupMs, ms, (next) => client.put(keyOf(next()), VALUE));
      out[`put_c${c}_ops_per_sec`] = put.perSec;
      out[`put_c${c}_p50_ms`] = put.p50Ms;
      out[`put_c${c}_p99_ms`] = put.p99Ms;
      if (put.errors > 0) out[`put_c${c}_errors`] = put.errors;
      const get = await closedLoop(c, warmupMs, ms, (next) => client.get(keyOf(next())));
      out[`get_c${c}_ops_per_sec`] = get.perSec;
      out[`get_c${c}_p50_ms`] = get.p50Ms;
      out[`get_c${c}_p99_ms`] = get.p99Ms;
      if (get.errors > 0) out[`get_c${c}_errors`] = get.errors;
    }
  } finally {
    await client.close();
    await cluster.stopAll(10_000);
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

runIfMain(import.meta.url, bench);
