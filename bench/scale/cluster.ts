/**
 * The clusters the scaling benchmark runs: real node processes on loopback, spawned exactly as
 * `dkv dev` spawns them (src/admin/dev.ts: planNodes, writeNodeConfigs, LocalCluster), each in
 * its own temp dir, with extra config fields where a section needs them (the stores and their
 * partitions, snapshotEntries). Also what the sections read of those processes from /proc:
 * CPU (bench/compare/loadgen.ts cpuSecondsOf) and resident memory.
 *
 * Every cluster started is registered until it is stopped, so that a signal handler can kill
 * every node and remove every temp dir synchronously (`killAllClusters`). The nodes also stop
 * by themselves when this process goes (their stdin pipe closes: DKV_EXIT_WITH_PARENT).
 */
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  freeBasePort,
  LocalCluster,
  type NodeSpec,
  planNodes,
  writeNodeConfigs,
} from '../../src/admin/dev.js';
import { DkvClient, type DkvClientOptions } from '../../src/client/client.js';
import { DkvError, ErrorCode } from '../../src/errors.js';
import { cpuSecondsOf } from '../compare/loadgen.js';

/** ClusterOptions shape one benchmark cluster. */
export interface ClusterOptions {
  readonly nodes: number;
  /** Extra node config fields (stores, snapshotEntries...), the same for every node. */
  readonly config?: Readonly<Record<string, unknown>>;
  /** How long the cluster may take until every group has a leader (default 180 s). */
  readonly readyTimeoutMs?: number;
  /** Where the nodes' unexpected exits and other warnings go. */
  readonly warn?: (line: string) => void;
}

/** live are the clusters started and not yet stopped (killed by killAllClusters). */
const live = new Set<ScaleCluster>();

/** liveClusters counts the clusters started and not yet stopped (0 after a clean run). */
export function liveClusters(): number {
  return live.size;
}

/** killAllClusters kills (SIGKILL) every node of every live cluster and removes their dirs; synchronous, for signal handlers. */
export function killAllClusters(): void {
  for (const c of live) c.killNow();
  live.clear();
}

/** ScaleCluster is one running cluster of node processes and the clients the benchmark opened on it. */
export class ScaleCluster {
  readonly cluster: LocalCluster;
  readonly dir: string;
  /** How long the start took: spawn until every node listed every group with a leader (ms). */
  startMs = 0;
  private readonly clients = new Set<DkvClient>();
  private stopped = false;

  private constructor(cluster: LocalCluster, dir: string) {
    this.cluster = cluster;
    this.dir = dir;
  }

  /** start starts a cluster and waits until it is ready; on failure it cleans up and throws. */
  static async start(opts: ClusterOptions): Promise<ScaleCluster> {
    const dir = await mkdtemp(join(tmpdir(), 'dkv-scale-'));
    let c: ScaleCluster | undefined;
    try {
      const specs = planNodes(dir, opts.nodes, await freeBasePort(opts.nodes, dir));
      writeNodeConfigs(specs, opts.config ?? {});
      const warn = opts.warn ?? ((line: string) => void process.stderr.write(`${line}\n`));
      const cluster = new LocalCluster(specs, {
        onExit: (id, exit) => {
          if (!exit.expected) warn(cluster.node(id).describeExit(exit));
        },
      });
      c = new ScaleCluster(cluster, dir);
      live.add(c);
      const t0 = performance.now();
      cluster.startAll();
      await cluster.waitReady(opts.readyTimeoutMs ?? 180_000);
      c.startMs = performance.now() - t0;
      return c;
    } catch (err) {
      if (c !== undefined) await c.stop();
      else rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** specs are the nodes' layouts (ports, dirs). */
  get specs(): readonly NodeSpec[] {
    return this.cluster.specs;
  }

  /** servers lists the client addresses, in node order. */
  get servers(): string[] {
    return this.cluster.servers;
  }

  /** pids are the running node processes, in node order. */
  pids(): number[] {
    return [...this.cluster.nodes.values()].map((n) => n.pid).filter((p): p is number => p !== undefined);
  }

  /** connect opens a client on the cluster (closed by stop); `servers` defaults to every node. */
  async connect(opts: Partial<DkvClientOptions> = {}): Promise<DkvClient> {
    const client = await DkvClient.connect({ servers: this.servers, requestTimeoutMs: 30_000, ...opts });
    this.clients.add(client);
    return client;
  }

  /** release closes one client opened by connect. */
  async release(client: DkvClient): Promise<void> {
    this.clients.delete(client);
    await client.close().catch(() => undefined);
  }

  /** stop closes the clients, stops every node (SIGTERM, SIGKILL after 10 s) and removes the dir. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const clients = [...this.clients];
    this.clients.clear();
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await this.cluster.stopAll(10_000);
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }

  /** killNow kills every node (SIGKILL) and removes the dir at once, without waiting. */
  killNow(): void {
    this.stopped = true;
    for (const n of this.cluster.nodes.values()) n.signal('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** rssBytesOf is a process's resident set size (VmRSS of /proc/<pid>/status); 0 when it is gone. */
export function rssBytesOf(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? 0 : Number(m[1]) * 1024;
  } catch {
    return 0;
  }
}

/** CpuShare is each process's CPU over a window, in CPU seconds per second (1.0 is one whole core). */
export interface CpuShare {
  readonly perProcess: number[];
  readonly total: number;
}

/** sleep resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** cpuShareOver measures each process's CPU (user + system, from /proc) over the next `ms`. */
export async function cpuShareOver(pids: readonly number[], ms: number): Promise<CpuShare> {
  const t0 = performance.now();
  const before = pids.map((p) => cpuSecondsOf([p]));
  await sleep(ms);
  const after = pids.map((p) => cpuSecondsOf([p]));
  const s = (performance.now() - t0) / 1000;
  const perProcess = pids.map((_, i) => (after[i]! - before[i]!) / s);
  return { perProcess, total: perProcess.reduce((a, b) => a + b, 0) };
}

/** waitFor polls `check` every `everyMs` until it holds, or throws UNAVAILABLE naming `what` after timeoutMs. */
export async function waitFor(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
  everyMs = 20,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline)
      throw new DkvError(
        ErrorCode.Unavailable,
        `${what} (waited ${timeoutMs} ms${last instanceof Error ? `; last error: ${last.message}` : ''})`,
      );
    await sleep(everyMs);
  }
}
