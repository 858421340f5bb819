/**
 * The harness's cluster: real node processes (spawned as `dkv dev` spawns them, through
 * LocalCluster of src/admin/dev.ts), each with its own data directory and log, and a fault
 * proxy (proxy.ts) on every peer connection.
 *
 * Nodes keep one TCP connection per pair, dialed by the lower id (src/transport/peer-links.ts).
 * So each pair (a < b) gets one LinkProxy: node a's config names the proxy's port as b's peer
 * port, and the proxy forwards to b's real peer port. The proxy's "forward" direction is
 * a → b and "backward" is b → a, so each directed link can be cut, delayed or made lossy on
 * its own. Client connections go straight to the nodes: a partition separates nodes, not the
 * harness's clients from them (as in Jepsen, where clients talk to their node directly).
 *
 * A node can also be reset (`resetNode`): its data wiped but for its log and its config
 * rewritten, for the membership nemesis, which brings a removed member back as a new one.
 *
 * Test hooks (the clock admin call, planted bugs) reach the node processes through the
 * DKV_TEST_HOOKS environment variable (src/node/test-hooks.ts), never through a config file.
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeBasePort, LocalCluster, type NodeSpec, nodeConfigOf, planNodes } from '../../src/admin/dev.js';
import { TEST_HOOKS_ENV } from '../../src/node/test-hooks.js';
import type { ClusterStatus } from '../../src/transport/protocol.js';
import { RpcClient } from '../../src/transport/rpc-client.js';
import { type Direction, type LinkMode, LinkProxy } from './proxy.js';

/** HarnessClusterOptions shape a harness cluster. */
export interface HarnessClusterOptions {
  readonly nodes: number;
  /** Comma-separated DKV_TEST_HOOKS items (e.g. "clock,bug:stale-read"). */
  readonly testHooks: string;
  /** Extra node config fields. */
  readonly config: Readonly<Record<string, unknown>>;
  /** Called with each line a node prints. */
  readonly onOutput?: (id: number, line: string) => void;
  /** Called when a node ends without being asked to. */
  readonly onUnexpectedExit?: (id: number, description: string) => void;
}

/** Link is one directed peer link: from a node to another, through a proxy direction. */
export interface Link {
  readonly from: number;
  readonly to: number;
  readonly proxy: LinkProxy;
  readonly dir: Direction;
}

/** HarnessCluster is a running cluster with its proxies. */
export class HarnessCluster {
  readonly dir: string;
  readonly specs: readonly NodeSpec[];
  readonly local: LocalCluster;
  private readonly proxies = new Map<string, LinkProxy>();
  private readonly rpcs = new Map<number, RpcClient>();
  private readonly paused = new Set<number>();
  private destroyed = false;

  private constructor(dir: string, specs: readonly NodeSpec[], opts: HarnessClusterOptions) {
    this.dir = dir;
    this.specs = specs;
    this.local = new LocalCluster(specs, {
      onOutput: (id, line) => opts.onOutput?.(id, line),
      onExit: (id, exit) => {
        if (!exit.expected && !this.destroyed)
          opts.onUnexpectedExit?.(id, this.local.node(id).describeExit(exit));
      },
    });
  }

  /** start lays out the nodes and proxies, starts every node, and waits until it is ready. */
  static async start(opts: HarnessClusterOptions, readyTimeoutMs = 60_000): Promise<HarnessCluster> {
    const dir = await mkdtemp(join(tmpdir(), 'dkv-jepsen-'));
    let c: HarnessCluster | undefined;
    try {
      const base = await freeBasePort(opts.nodes, dir);
      const specs = planNodes(dir, opts.nodes, base);
      c = new HarnessCluster(dir, specs, opts);
      for (const a of specs)
        for (const b of specs) {
          if (a.id >= b.id) continue;
          const p = await LinkProxy.start({
            name: `${a.id}-${b.id}`,
            targetHost: b.host,
            targetPort: b.peerPort,
          });
          c.proxies.set(`${a.id}-${b.id}`, p);
        }
      for (const s of specs) {
        const cfg = nodeConfigOf(s, specs, opts.config);
        cfg.peers = specs
          .filter((p) => p.id !== s.id)
          .map((p) => ({
            id: p.id,
            host: p.host,
            peerPort: p.id > s.id ? c!.pairProxy(s.id, p.id).port : p.peerPort,
            clientPort: p.clientPort,
          }));
        mkdirSync(s.dataDir, { recursive: true });
        writeFileSync(s.configFile, `${JSON.stringify(cfg, null, 2)}\n`);
      }
      c.hooks = opts.testHooks;
      c.withHooksEnv(() => c!.local.startAll());
      await c.local.waitReady(readyTimeoutMs);
      return c;
    } catch (err) {
      if (c !== undefined) await c.destroy();
      else rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  private hooks = '';

  get ids(): number[] {
    return this.specs.map((s) => s.id);
  }

  get servers(): string[] {
    return this.local.servers;
  }

  spec(id: number): NodeSpec {
    return this.local.node(id).spec;
  }

  private pairProxy(a: number, b: number): LinkProxy {
    const p = this.proxies.get(`${Math.min(a, b)}-${Math.max(a, b)}`);
    if (p === undefined) throw new Error(`no proxy between ${a} and ${b}`);
    return p;
  }

  /** link is the directed link from → to. */
  link(from: number, to: number): Link {
    const proxy = this.pairProxy(from, to);
    return { from, to, proxy, dir: from < to ? 'forward' : 'backward' };
  }

  /** links lists every directed link. */
  links(): Link[] {
    return this.ids.flatMap((a) => this.ids.filter((b) => b !== a).map((b) => this.link(a, b)));
  }

  /** setLink changes one directed link's mode. */
  setLink(from: number, to: number, mode: Partial<LinkMode>): void {
    const l = this.link(from, to);
    l.proxy.set(l.dir, mode);
  }

  /** healLinks puts every link back to pass-through. */
  healLinks(): void {
    for (const p of this.proxies.values()) p.heal();
  }

  /** linkStats sums a set of links' stats. */
  linkCounters(links: readonly Link[]): { frames: number; dropped: number; blackholed: number } {
    let frames = 0;
    let dropped = 0;
    let blackholed = 0;
    for (const l of links) {
      const s = l.proxy.stats(l.dir);
      frames += s.frames;
      dropped += s.dropped;
      blackholed += s.blackholed;
    }
    return { frames, dropped, blackholed };
  }

  running(id: number): boolean {
    return this.local.node(id).running;
  }

  isPaused(id: number): boolean {
    return this.paused.has(id);
  }

  /** kill SIGKILLs a node and waits for it to end. */
  async kill(id: number): Promise<void> {
    this.paused.delete(id);
    await this.local.node(id).kill('SIGKILL');
    this.dropRpc(id);
  }

  /** restart starts a node that ended (with the same test hooks). */
  restart(id: number): void {
    const n = this.local.node(id);
    if (!n.running) this.withHooksEnv(() => n.start());
  }

  /**
   * resetNode prepares a stopped node for a fresh start, as a new machine with the same id and
   * ports (the membership nemesis re-adds a removed member this way): it deletes everything in
   * the node's data directory but its log (the new process appends to it, so the node's log
   * stays whole), and rewrites its config file with `patch` merged in. Everything else in the
   * config is kept, the peer list included, so the node still reaches its peers through the
   * fault proxies. It returns the new config.
   */
  resetNode(id: number, patch: Readonly<Record<string, unknown>>): Record<string, unknown> {
    const s = this.spec(id);
    if (this.running(id)) throw new Error(`node ${id} is running: stop it before resetting it`);
    if (existsSync(s.dataDir))
      for (const entry of readdirSync(s.dataDir))
        if (join(s.dataDir, entry) !== s.logFile)
          rmSync(join(s.dataDir, entry), { recursive: true, force: true });
    mkdirSync(s.dataDir, { recursive: true });
    const cfg = { ...(JSON.parse(readFileSync(s.configFile, 'utf8')) as Record<string, unknown>), ...patch };
    writeFileSync(s.configFile, `${JSON.stringify(cfg, null, 2)}\n`);
    return cfg;
  }

  /** withHooksEnv runs `spawn` with DKV_TEST_HOOKS set to this cluster's hooks (spawned nodes inherit the environment). */
  private withHooksEnv(spawn: () => void): void {
    const saved = process.env[TEST_HOOKS_ENV];
    if (this.hooks === '') delete process.env[TEST_HOOKS_ENV];
    else process.env[TEST_HOOKS_ENV] = this.hooks;
    try {
      spawn();
    } finally {
      if (saved === undefined) delete process.env[TEST_HOOKS_ENV];
      else process.env[TEST_HOOKS_ENV] = saved;
    }
  }

  /** pause stops a node with SIGSTOP. */
  pause(id: number): void {
    const pid = this.local.node(id).pid;
    if (pid === undefined) return;
    process.kill(pid, 'SIGSTOP');
    this.paused.add(id);
  }

  /** resume continues a paused node. */
  resume(id: number): void {
    const pid = this.local.node(id).pid;
    this.paused.delete(id);
    if (pid === undefined) return;
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // it ended meanwhile
    }
  }

  /** processState reads a node's state letter from /proc (R, S, T = stopped, ...), or undefined. */
  processState(id: number): string | undefined {
    const pid = this.local.node(id).pid;
    if (pid === undefined) return undefined;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    } catch {
      return undefined;
    }
  }

  private dropRpc(id: number): void {
    const c = this.rpcs.get(id);
    if (c !== undefined) {
      this.rpcs.delete(id);
      void c.close().catch(() => undefined);
    }
  }

  /** status asks one node for its view (undefined when it does not answer within timeoutMs). */
  async status(id: number, timeoutMs = 1500): Promise<ClusterStatus | undefined> {
    if (!this.running(id) || this.paused.has(id)) return undefined;
    const s = this.spec(id);
    try {
      let c = this.rpcs.get(id);
      if (c === undefined || c.closed) {
        c = await RpcClient.connect({
          host: s.host,
          port: s.clientPort,
          frameBytesMax: 16 << 20,
          connectTimeoutMs: timeoutMs,
        });
        this.rpcs.set(id, c);
      }
      // This node's own view (its commit indexes, its idea of each leader), not the merged one.
      return (await c.call('status', { local: true }, { timeoutMs })) as ClusterStatus;
    } catch {
      this.dropRpc(id);
      return undefined;
    }
  }

  /** statuses asks every running, unpaused node. */
  async statuses(timeoutMs = 1500): Promise<Map<number, ClusterStatus>> {
    const out = new Map<number, ClusterStatus>();
    await Promise.all(
      this.ids.map(async (id) => {
        const s = await this.status(id, timeoutMs);
        if (s !== undefined) out.set(id, s);
      }),
    );
    return out;
  }

  /**
   * leaders counts, per node, the groups it says it leads (each node speaks for itself), so
   * the node leading the most groups is a fair "leader" target.
   */
  async leaders(): Promise<Map<number, number[]>> {
    const out = new Map<number, number[]>();
    for (const [id, st] of await this.statuses()) {
      out.set(
        id,
        st.groups.filter((g) => g.leader === id).map((g) => g.id),
      );
    }
    return out;
  }

  /** clock sets a node's test clock (needs the `clock` test hook). */
  async clock(id: number, body: { offsetMs?: number; rate?: number } | undefined): Promise<unknown> {
    const s = this.spec(id);
    const url = `http://${s.host}:${s.adminPort}/test/clock`;
    const res = await fetch(url, {
      method: body === undefined ? 'GET' : 'POST',
      ...(body !== undefined && {
        body: JSON.stringify(body),
        headers: { 'content-type': 'application/json' },
      }),
      signal: AbortSignal.timeout(2000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`node ${id} ${url}: HTTP ${res.status}: ${text.trim()}`);
    return JSON.parse(text);
  }

  /** waitReady waits until every running node answers and knows every group's leader. */
  async waitReady(timeoutMs: number): Promise<void> {
    const ids = this.ids.filter((id) => this.running(id));
    await this.local.waitReady(timeoutMs, ids);
  }

  /** copyLogs copies every node's log into `dir` as node<i>.log. */
  copyLogs(dir: string): string[] {
    mkdirSync(dir, { recursive: true });
    const out: string[] = [];
    for (const s of this.specs) {
      if (!existsSync(s.logFile)) continue;
      const to = join(dir, `node${s.id}.log`);
      copyFileSync(s.logFile, to);
      out.push(to);
    }
    return out;
  }

  /** destroy resumes paused nodes, kills everything, closes the proxies, removes the dir. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const id of [...this.paused]) this.resume(id);
    for (const id of [...this.rpcs.keys()]) this.dropRpc(id);
    await this.local.killAll('SIGKILL');
    await Promise.all([...this.proxies.values()].map((p) => p.close()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
