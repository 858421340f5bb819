/**
 * Section "nodes": put and linearizable get at C=64 on clusters of 3 and of 5 node processes
 * (default config and store: 6 partitions, 3 replicas each, so with 5 nodes each group lives on
 * 3 of them), driven by one DkvClient with the same workloads, fill and load generator as the
 * side-by-side benchmark (bench/compare: the put and get workloads, fillKeys over the
 * 10 000-key space, runPoint).
 */
import { runPoint } from '../compare/loadgen.js';
import type { TargetOps } from '../compare/targets.js';
import { fillKeys, KEY_SPACE, WORKLOADS } from '../compare/workloads.js';
import { ScaleCluster } from './cluster.js';

/** NODES_CONCURRENCY is the closed loop's requests in flight. */
export const NODES_CONCURRENCY = 64;

/** NodesRow is one workload on one cluster size. CPU in CPU seconds per second. */
export interface NodesRow {
  readonly nodes: number;
  readonly workload: 'put' | 'get';
  readonly startS: number;
  readonly opsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  readonly firstError?: string;
  readonly serverCpu: number;
  readonly clientCpu: number;
}

/** NodesTiming are a point's windows (ms). */
export interface NodesTiming {
  readonly warmupMs: number;
  readonly measureMs: number;
}

/** measureNodesAt starts `nodes` nodes, fills the key space, runs put then get, and stops. */
export async function measureNodesAt(
  nodes: number,
  timing: NodesTiming,
  say: (line: string) => void,
): Promise<NodesRow[]> {
  say(`nodes: ${nodes}: starting`);
  const c = await ScaleCluster.start({ nodes, warn: say });
  const startS = Math.round(c.startMs / 100) / 10;
  const rows: NodesRow[] = [];
  try {
    const client = await c.connect();
    const ops: TargetOps = {
      put: async (key, value) => {
        await client.put(key, value);
      },
      get: async (key) => (await client.get(key)) !== undefined,
    };
    await fillKeys(ops, KEY_SPACE);
    for (const name of ['put', 'get'] as const) {
      const w = WORKLOADS.find((x) => x.name === name)!;
      const prepared = await w.prepare(ops, KEY_SPACE, NODES_CONCURRENCY);
      try {
        const r = await runPoint(prepared.op, {
          concurrency: prepared.workers,
          warmupMs: timing.warmupMs,
          measureMs: timing.measureMs,
          pids: () => c.pids(),
        });
        rows.push({
          nodes,
          workload: name,
          startS,
          opsPerSec: r.opsPerSec,
          p50Ms: r.p50Ms,
          p99Ms: r.p99Ms,
          errors: r.errors,
          ...(r.firstError !== undefined && { firstError: r.firstError }),
          serverCpu: r.serverCpu,
          clientCpu: r.clientCpu,
        });
        say(
          `nodes: ${nodes}: ${name} C=${NODES_CONCURRENCY} ${r.opsPerSec} ops/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, server CPU ${r.serverCpu}${r.errors > 0 ? `, ${r.errors} errors (${r.firstError})` : ''}`,
        );
      } finally {
        await prepared.close();
      }
    }
  } finally {
    await c.stop();
  }
  return rows;
}

/** measureNodes measures every cluster size in turn. */
export async function measureNodes(
  sizes: readonly number[],
  timing: NodesTiming,
  say: (line: string) => void,
): Promise<NodesRow[]> {
  const rows: NodesRow[] = [];
  for (const n of sizes) rows.push(...(await measureNodesAt(n, timing, say)));
  return rows;
}
