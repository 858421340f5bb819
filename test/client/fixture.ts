/**
 * An in-process cluster for client tests: three DkvNodes on loopback in this process (fast to
 * start, no child processes), and DkvClients connected to them. `stopNode`/`startNode` kill
 * and restart one node (a stop is graceful or not); `close` cleans up everything, and is safe
 * to call from afterEach whatever happened. For SIGKILL of real processes use
 * test/node/harness.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DkvClient, type DkvClientOptions } from '../../src/client/client.js';
import { checkNodeConfig, type NodeConfig } from '../../src/node/config.js';
import { DkvNode } from '../../src/node/node.js';

/** isFree tells whether a port can be bound on 127.0.0.1 now. */
function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/**
 * freePort finds a free port below the kernel's ephemeral range (10000-32000): a port there,
 * free now, cannot be taken before the node binds it by some outbound connection's source
 * port (what port 0 hands out is in that range).
 */
async function freePort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 10_000 + Math.floor(Math.random() * 22_000);
    if (await isFree(port)) return port;
  }
  throw new Error('no free port found in 200 tries');
}

export interface FixtureOptions {
  readonly nodes?: number;
  readonly partitions?: number;
  /** Extra node config fields (tickMs, snapshotEntries, balanceLeaders, ...), or per node id. */
  readonly config?: Record<string, unknown> | ((id: number) => Record<string, unknown>);
}

export class InProcCluster {
  readonly dir: string;
  readonly cfgs: NodeConfig[];
  readonly nodes: (DkvNode | undefined)[];
  private readonly clients: DkvClient[] = [];
  /** Options every client gets unless the test overrides them (credentials, TLS). */
  clientDefaults: Partial<DkvClientOptions> = {};

  private constructor(dir: string, cfgs: NodeConfig[]) {
    this.dir = dir;
    this.cfgs = cfgs;
    this.nodes = cfgs.map(() => undefined);
  }

  /** start starts the nodes and waits until every group has a leader. */
  static async start(opts: FixtureOptions = {}): Promise<InProcCluster> {
    const n = opts.nodes ?? 3;
    const ids = Array.from({ length: n }, (_, i) => i + 1);
    const dir = mkdtempSync(join(tmpdir(), 'dkv-client-'));
    const ports = await Promise.all(ids.flatMap(() => [freePort(), freePort()]));
    const client = (id: number): number => ports[(id - 1) * 2]!;
    const peer = (id: number): number => ports[(id - 1) * 2 + 1]!;
    const cfgs = ids.map((id) =>
      checkNodeConfig({
        id,
        dataDir: join(dir, `n${id}`),
        clientPort: client(id),
        peerPort: peer(id),
        peers: ids
          .filter((x) => x !== id)
          .map((x) => ({ id: x, host: '127.0.0.1', peerPort: peer(x), clientPort: client(x) })),
        stores: [{ name: 'default', partitions: opts.partitions ?? 3 }],
        ...(typeof opts.config === 'function' ? opts.config(id) : opts.config),
      }),
    );
    const c = new InProcCluster(dir, cfgs);
    try {
      await Promise.all(ids.map((id) => c.startNode(id)));
      await c.waitLeaders();
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  /** servers lists the client addresses in node order. */
  get servers(): string[] {
    return this.cfgs.map((cfg) => `127.0.0.1:${cfg.clientPort}`);
  }

  /** client connects a DkvClient (closed by `close`). */
  async client(opts: Partial<DkvClientOptions> = {}): Promise<DkvClient> {
    const c = await DkvClient.connect({
      servers: this.servers,
      requestTimeoutMs: 8000,
      ...this.clientDefaults,
      ...opts,
    });
    this.clients.push(c);
    return c;
  }

  async startNode(id: number): Promise<DkvNode> {
    const node = await DkvNode.start(this.cfgs[id - 1]!);
    this.nodes[id - 1] = node;
    return node;
  }

  /** stopNode stops node `id` (gracefully: leaderships handed over first; else at once). */
  async stopNode(id: number, graceful = false): Promise<void> {
    const node = this.nodes[id - 1];
    this.nodes[id - 1] = undefined;
    await node?.stop({ transferLeadership: graceful });
  }

  /**
   * leaderOf is the node id leading `group`, as the live nodes see it (0: none). The leader's
   * own view wins; else the first live node that knows one (a node may not know the leader
   * for a moment while leadership moves).
   */
  leaderOf(group: number): number {
    const views = this.nodes
      .filter((n): n is DkvNode => n !== undefined)
      .map((n) => ({ id: n.id, leader: n.status().groups.find((g) => g.id === group)?.leader ?? 0 }));
    return views.find((v) => v.leader === v.id)?.leader ?? views.find((v) => v.leader > 0)?.leader ?? 0;
  }

  /** waitLeaders waits until every group has a leader among the live nodes, and every live node has loaded the metadata. */
  async waitLeaders(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const live = this.nodes.filter((n): n is DkvNode => n !== undefined);
      // Every group led by a live node, and every node past loading the cluster metadata
      // (epoch 0: until it has, a node answers UNAVAILABLE to anything naming a store).
      const ok = live.every((n) => {
        const st = n.status();
        return st.epoch > 0 && st.groups.every((g) => g.leader !== 0 && live.some((m) => m.id === g.leader));
      });
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`no leaders: ${JSON.stringify(live[0]?.status())}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** close closes every client and node and removes the data. Never throws. */
  async close(): Promise<void> {
    for (const c of this.clients.splice(0)) await c.close().catch(() => undefined);
    for (let i = 0; i < this.nodes.length; i++) {
      await this.nodes[i]?.stop().catch(() => undefined);
      this.nodes[i] = undefined;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
