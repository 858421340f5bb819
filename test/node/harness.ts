/**
 * A test harness for real clusters: N node processes on loopback, spawned exactly as
 * `dkv dev` spawns them (LocalCluster from src/admin/dev.ts), in a temp dir on free ports.
 *
 * Everything a TestCluster opens (processes, clients, connections, the temp dir) is tracked
 * and released by destroy(); `destroyAllClusters()` in an afterEach/afterAll releases every
 * cluster still alive, whatever happened in the test. Node processes also stop by themselves
 * if this process dies (their stdin pipe closes).
 */
import { rmSync } from 'node:fs';
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

export { freeBasePort };

import { DkvClient, type DkvClientOptions } from '../../src/client/client.js';
import type { ClusterStatus } from '../../src/transport/protocol.js';
import { RpcClient } from '../../src/transport/rpc-client.js';

/** TestClusterOptions shape a test cluster. */
export interface TestClusterOptions {
  readonly nodes?: number;
  /** Extra node config fields (tickMs, snapshotEntries, ...). */
  readonly config?: Readonly<Record<string, unknown>>;
  readonly readyTimeoutMs?: number;
  /** Print node output lines to the console (default: only when a node dies unexpectedly). */
  readonly verbose?: boolean;
}

const live = new Set<TestCluster>();

/** destroyAllClusters kills and removes every cluster not destroyed yet. */
export async function destroyAllClusters(): Promise<void> {
  await Promise.all([...live].map((c) => c.destroy()));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** TestCluster is a running (or stopped) local cluster owned by one test. */
export class TestCluster {
  readonly dir: string;
  readonly local: LocalCluster;
  readonly readyTimeoutMs: number;
  private readonly clients = new Set<DkvClient>();
  private readonly rpcs = new Set<RpcClient>();
  private destroyed = false;

  private constructor(dir: string, specs: NodeSpec[], opts: TestClusterOptions) {
    this.dir = dir;
    this.readyTimeoutMs = opts.readyTimeoutMs ?? 60_000;
    this.local = new LocalCluster(specs, {
      onOutput: (id, line) => {
        if (opts.verbose) console.log(`[node${id}] ${line}`);
      },
      onExit: (id, exit) => {
        if (!exit.expected && !this.destroyed)
          console.error(`[harness] ${this.local.node(id).describeExit(exit)}`);
      },
    });
    live.add(this);
  }

  /** start creates the dir and configs, starts every node and waits until the cluster is ready. */
  static async start(opts: TestClusterOptions = {}): Promise<TestCluster> {
    const nodes = opts.nodes ?? 3;
    const dir = await mkdtemp(join(tmpdir(), 'dkv-test-'));
    const base = await freeBasePort(nodes, dir);
    const specs = planNodes(dir, nodes, base);
    writeNodeConfigs(specs, opts.config);
    const c = new TestCluster(dir, specs, opts);
    try {
      c.local.startAll();
      await c.local.waitReady(c.readyTimeoutMs);
    } catch (err) {
      await c.destroy();
      throw err;
    }
    return c;
  }

  get servers(): string[] {
    return this.local.servers;
  }

  get ids(): number[] {
    return this.local.specs.map((s) => s.id);
  }

  spec(id: number): NodeSpec {
    return this.local.node(id).spec;
  }

  /** client connects a DkvClient (closed by destroy). */
  async client(opts: Partial<DkvClientOptions> = {}): Promise<DkvClient> {
    const c = await DkvClient.connect({ servers: this.servers, requestTimeoutMs: 10_000, ...opts });
    this.clients.add(c);
    return c;
  }

  /** rpc opens a raw protocol connection to one node (closed by destroy). */
  async rpc(id: number): Promise<RpcClient> {
    const s = this.spec(id);
    const c = await RpcClient.connect({ host: s.host, port: s.clientPort, frameBytesMax: 16 << 20 });
    this.rpcs.add(c);
    return c;
  }

  /** status asks one node for its view of the cluster. */
  async status(id: number): Promise<ClusterStatus> {
    const c = await this.rpc(id);
    try {
      return (await c.call('status', {}, { timeoutMs: 5000 })) as ClusterStatus;
    } finally {
      this.rpcs.delete(c);
      await c.close();
    }
  }

  /** leaderOf returns the leader of `group` as the running nodes agree on it (0: none yet). */
  async leaderOf(group: number): Promise<number> {
    for (const id of this.ids) {
      if (!this.local.node(id).running) continue;
      try {
        const g = (await this.status(id)).groups.find((x) => x.id === group);
        if (g !== undefined && g.leader > 0 && this.local.node(g.leader).running) return g.leader;
      } catch {
        // try the next node
      }
    }
    return 0;
  }

  /** kill kills one node (SIGKILL by default) and waits for it to end. */
  async kill(id: number, sig: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.local.node(id).kill(sig);
  }

  /** restart starts a node that ended, and waits until every running node is ready. */
  async restart(id: number): Promise<void> {
    this.local.node(id).start();
    await this.waitReady();
  }

  /** killAll kills every node at once. */
  async killAll(): Promise<void> {
    await this.local.killAll('SIGKILL');
  }

  /** restartAll starts every node that is not running and waits until the cluster is ready. */
  async restartAll(): Promise<void> {
    this.local.startAll();
    await this.waitReady();
  }

  /** waitReady waits until every running node answers and knows every group's leader. */
  async waitReady(): Promise<void> {
    const running = this.ids.filter((id) => this.local.node(id).running);
    await this.local.waitReady(this.readyTimeoutMs, running);
  }

  /** destroy kills every node, closes every connection and removes the dir. Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    await Promise.all([...this.clients].map((c) => c.close().catch(() => undefined)));
    await Promise.all([...this.rpcs].map((c) => c.close().catch(() => undefined)));
    await this.local.killAll('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** adminUrl is a node's admin HTTP base URL. */
export function adminUrl(spec: NodeSpec): string {
  return `http://${spec.host}:${spec.adminPort}`;
}
