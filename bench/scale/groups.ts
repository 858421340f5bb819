/**
 * Section "groups": how the cost of a node grows with the partition groups it hosts. For each
 * P, a fresh 3-node cluster whose stores hold P partition groups in all, every group with a
 * replica on every node (3 replicas), plus the metadata group. A node config accepts at most
 * STORE_PARTITIONS_MAX partitions per store, so a larger P is split over several stores of
 * equal size (`default`, `s2`, ...), and the load goes to all of them.
 *
 * Per P: the start time (spawn until every node lists every group with a leader), the idle CPU
 * of each node process over a window with no client load (after a settle period, so elections
 * and leader balancing are over), their RSS at that point, then put throughput and latency at
 * C=64 (random keys of a 10 000-key space spread over every store; 128-byte values) with the
 * servers' CPU under that load (bench/compare/loadgen.ts runPoint).
 */
import type { DkvClient } from '../../src/client/client.js';
import { runPoint } from '../compare/loadgen.js';
import { cpuShareOver, rssBytesOf, ScaleCluster, sleep } from './cluster.js';
import { keyOf, valueOfKey } from './data.js';

/** STORE_PARTITIONS_MAX is the most partitions one store may have in a node config (src/node/config.ts). */
export const STORE_PARTITIONS_MAX = 256;
/** KEY_SPACE is how many distinct keys the put load writes. */
const KEY_SPACE = 10_000;
/** CONCURRENCY is the closed loop's requests in flight. */
export const GROUPS_CONCURRENCY = 64;

/** GroupsTiming are the section's windows (ms). */
export interface GroupsTiming {
  readonly settleMs: number;
  readonly idleMs: number;
  readonly warmupMs: number;
  readonly measureMs: number;
}

/** GroupsRow is what one P measured. CPU in CPU seconds per second (1.0 = one core). */
export interface GroupsRow {
  /** Partition groups of the stores (the metadata group not counted). */
  readonly partitions: number;
  readonly stores: number;
  readonly startS: number;
  readonly idleCpuPerNode: number[];
  readonly idleCpuTotal: number;
  readonly rssMiBPerNode: number[];
  readonly putOpsPerSec: number;
  readonly putP50Ms: number;
  readonly putP99Ms: number;
  readonly putErrors: number;
  readonly putFirstError?: string;
  readonly putServerCpu: number;
  readonly putClientCpu: number;
}

/** storesFor splits P partitions into stores of at most STORE_PARTITIONS_MAX, as equal as can be. */
export function storesFor(partitions: number): { name: string; partitions: number }[] {
  const n = Math.ceil(partitions / STORE_PARTITIONS_MAX);
  return Array.from({ length: n }, (_, i) => ({
    name: i === 0 ? 'default' : `s${i + 1}`,
    partitions: Math.floor(partitions / n) + (i < partitions % n ? 1 : 0),
  }));
}

const MiB = 1024 * 1024;

/** measureGroupsAt measures one P on a fresh cluster (stopped before it returns). */
export async function measureGroupsAt(
  partitions: number,
  timing: GroupsTiming,
  say: (line: string) => void,
): Promise<GroupsRow> {
  const stores = storesFor(partitions);
  say(`groups: P=${partitions} (${stores.length} store${stores.length > 1 ? 's' : ''}): starting 3 nodes`);
  const c = await ScaleCluster.start({ nodes: 3, config: { stores }, warn: say });
  try {
    say(
      `groups: P=${partitions}: ready in ${(c.startMs / 1000).toFixed(1)} s; settling ${timing.settleMs} ms`,
    );
    await sleep(timing.settleMs);
    const pids = c.pids();
    const idle = await cpuShareOver(pids, timing.idleMs);
    const rss = pids.map((p) => Math.round((rssBytesOf(p) / MiB) * 10) / 10);
    say(
      `groups: P=${partitions}: idle CPU ${(idle.total * 100).toFixed(1)}% of a core (${idle.perProcess.map((x) => `${(x * 100).toFixed(1)}%`).join(' ')}), RSS ${rss.join(' ')} MiB`,
    );
    const clients: DkvClient[] = [];
    for (const s of stores) clients.push(await c.connect({ store: s.name }));
    const put = await runPoint(
      async (w) => {
        const k = w.next(KEY_SPACE);
        await clients[k % clients.length]!.put(keyOf(k), valueOfKey(k));
      },
      {
        concurrency: GROUPS_CONCURRENCY,
        warmupMs: timing.warmupMs,
        measureMs: timing.measureMs,
        pids: () => c.pids(),
      },
    );
    say(
      `groups: P=${partitions}: put C=${GROUPS_CONCURRENCY} ${put.opsPerSec} ops/s, p50 ${put.p50Ms} ms, p99 ${put.p99Ms} ms, server CPU ${put.serverCpu}${put.errors > 0 ? `, ${put.errors} errors (${put.firstError})` : ''}`,
    );
    return {
      partitions,
      stores: stores.length,
      startS: Math.round(c.startMs / 100) / 10,
      idleCpuPerNode: idle.perProcess.map((x) => Math.round(x * 1000) / 1000),
      idleCpuTotal: Math.round(idle.total * 1000) / 1000,
      rssMiBPerNode: rss,
      putOpsPerSec: put.opsPerSec,
      putP50Ms: put.p50Ms,
      putP99Ms: put.p99Ms,
      putErrors: put.errors,
      ...(put.firstError !== undefined && { putFirstError: put.firstError }),
      putServerCpu: put.serverCpu,
      putClientCpu: put.clientCpu,
    };
  } finally {
    await c.stop();
  }
}

/** measureGroups measures every P in turn. */
export async function measureGroups(
  sizes: readonly number[],
  timing: GroupsTiming,
  say: (line: string) => void,
): Promise<GroupsRow[]> {
  const rows: GroupsRow[] = [];
  for (const p of sizes) rows.push(await measureGroupsAt(p, timing, say));
  return rows;
}
