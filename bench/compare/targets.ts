/**
 * The systems the side-by-side benchmark drives, each behind one small interface (Target):
 * start it on loopback in a temp dir, hand out its client operations, name its server
 * processes (for their CPU), stop it and remove its files.
 *
 * - dkv: 3 node processes spawned as `dkv dev` spawns them (src/admin/dev.ts: LocalCluster),
 *   default config (fsync on), driven by one DkvClient.
 * - etcd: Debian's etcd 3.4 as 3 members on loopback, default fsync, each with its own data
 *   dir; driven by one etcd3 client (gRPC) that spreads calls over the 3 members as it does
 *   by default (a follower forwards writes and linearizable reads to the leader).
 * - redis: one redis-server, no replication, `--appendonly yes --appendfsync everysec --save ''`;
 *   one ioredis connection (commands pipelined on it, as ioredis does).
 *
 * etcd and redis run under a tiny sh wrapper that holds our stdin pipe: when this process
 * goes away, even killed with SIGKILL, the pipe closes and the wrapper kills the server, so
 * no server outlives a benchmark (the DKV nodes do the same by themselves). Every server
 * process started is also killed on this process's exit.
 *
 * How each system does the coordination workloads (workloads.ts):
 * - counter +1: DKV `client.counter(name).add(1)` (one replicated op); etcd the compare-and-
 *   swap loop (get value and mod_revision, then a txn `if mod_revision == r then put v+1 else
 *   get`, retrying from the else branch's value); redis INCR.
 * - lock then unlock: DKV `client.lock.acquire(name, { ttlMs: 10000 })` then `release()`, the
 *   natural API: a fresh lease per acquire, kept alive while held, revoked on release (a
 *   free lock: 2 replicated ops, the try that grants lease and lock together, then the revoke
 *   that releases it; a taken one: lease grant, lock.acquire queued FIFO by the server, then
 *   the revoke). etcd: the lowest-revision recipe of the Go client's
 *   concurrency.Mutex with a fresh lease per acquire as etcd3's own Lock takes (lease grant
 *   with keep-alive; txn putting `<name>/<lease>` bound to it and reading the lowest
 *   creator; if not ours, wait for the deletion of the key created just before ours (range +
 *   watch), repeat; release = lease revoke, which deletes the key). etcd3's own `lock()` is a
 *   try-lock that fails when held, so it cannot queue. redis: skipped (SET NX has no queue).
 * - watch: DKV `client.watch({ key })` (a server stream per watcher), etcd3's watcher per
 *   watcher (etcd3 multiplexes them on one gRPC stream); redis: skipped.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { Etcd3, type IKeyValue } from 'etcd3';
import { Redis } from 'ioredis';
import { freeBasePort, LocalCluster, planNodes, writeNodeConfigs } from '../../src/admin/dev.js';
import { DkvClient } from '../../src/client/client.js';
import { DkvError, ErrorCode } from '../../src/errors.js';

/** SYSTEMS are the systems that can be compared, in the order they run. */
export const SYSTEMS = ['dkv', 'etcd', 'redis'] as const;
/** SystemName names one of them. */
export type SystemName = (typeof SYSTEMS)[number];

/**
 * TargetOps are a running system's operations. Each resolves when the system acknowledged
 * it and throws on failure; an optional one is a workload the system does not do.
 */
export interface TargetOps {
  put(key: string, value: string): Promise<void>;
  /** get is a linearizable read (redis: GET); resolves with whether the key was found. */
  get(key: string): Promise<boolean>;
  /** getSerializable reads from the member it reaches, without a quorum round. */
  getSerializable?(key: string): Promise<boolean>;
  /** incr adds 1 to counter `name`. */
  incr?(name: string): Promise<void>;
  /** lock acquires lock `name` (waiting for it), then releases it. */
  lock?(name: string): Promise<void>;
  /**
   * watch watches `key`, calling onValue with the value of every put to it; resolves once the
   * watch is ready (a put after that is seen) with the function that closes it.
   */
  watch?(key: string, onValue: (value: string) => void): Promise<() => Promise<void>>;
}

/** Target is one system under test. */
export interface Target {
  readonly name: SystemName;
  /** describe says what runs, for the report (members, durability settings). */
  readonly describe: string;
  /** version is the server's version line. */
  readonly version: string;
  /** start starts the servers and connects the client; it cleans up after itself on failure. */
  start(): Promise<void>;
  /** ops are the client operations (after start). */
  readonly ops: TargetOps;
  /** pids are the server processes (their CPU is measured). */
  pids(): number[];
  /** stop closes the client, stops the servers and removes their files. Idempotent. */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Installed or not

/** APT_PACKAGES are the Debian packages that provide the other systems' servers. */
export const APT_PACKAGES = ['etcd-server', 'redis-server'] as const;

/** BINARIES are the server executables each other system needs. */
export const BINARIES: Readonly<Record<Exclude<SystemName, 'dkv'>, string>> = {
  etcd: 'etcd',
  redis: 'redis-server',
};

/** findExecutable looks `name` up in PATH (and /usr/bin, /usr/sbin); undefined when absent. */
export function findExecutable(name: string, pathEnv = process.env.PATH ?? ''): string | undefined {
  const dirs = [...pathEnv.split(delimiter).filter((d) => d.length > 0), '/usr/bin', '/usr/sbin'];
  for (const d of dirs) {
    const p = join(d, name);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** installCommandLine is the shell line that installs the packages (with sudo unless root). */
export function installCommandLine(isRoot: boolean): string {
  const sudo = isRoot ? '' : 'sudo ';
  return `${sudo}apt-get update && ${sudo}apt-get install -y ${APT_PACKAGES.join(' ')}`;
}

/** notInstalledError says which servers are missing and how to get them. */
export function notInstalledError(systems: readonly Exclude<SystemName, 'dkv'>[]): DkvError {
  const what = systems.map((s) => `${s} (${BINARIES[s]})`).join(' and ');
  return new DkvError(
    ErrorCode.NotFound,
    `${what} ${systems.length > 1 ? 'are' : 'is'} not installed (not on PATH, /usr/bin or /usr/sbin): install with \`${installCommandLine(isRoot())}\` (Debian/Ubuntu), or run the benchmark with --install to have it do that`,
  );
}

/** isRoot tells whether this process runs as root. */
export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** installPackages runs apt-get (through sudo unless root), streaming its output; throws on failure. */
export async function installPackages(say: (line: string) => void): Promise<void> {
  const line = installCommandLine(isRoot());
  say(`installing ${APT_PACKAGES.join(' ')} with: ${line}`);
  const child = spawn('sh', ['-c', line], { stdio: ['ignore', 'inherit', 'inherit'] });
  const code = await new Promise<number | null>((resolve) => {
    child.once('exit', (c) => resolve(c));
    child.once('error', () => resolve(null));
  });
  if (code !== 0)
    throw new DkvError(
      ErrorCode.Unavailable,
      `\`${line}\` failed (exit ${code}): install ${APT_PACKAGES.join(' ')} by hand and run again`,
    );
}

/** versionOf runs `<binary> --version` and returns its first line ('' when it fails). */
function versionOf(binary: string): string {
  try {
    return execFileSync(binary, ['--version'], { encoding: 'utf8', timeout: 10_000 }).split('\n')[0]!.trim();
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------------------------------------
// Server processes

/** freePorts finds `n` distinct loopback ports free right now (bound to port 0, then released). */
export async function freePorts(n: number, host = '127.0.0.1'): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen({ host, port: 0, exclusive: true }, () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const a = s.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  });
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/**
 * WRAPPER runs "$0" "$@" with /dev/null as its stdin, prints its pid, and kills it (SIGTERM)
 * once our stdin pipe closes: on stop(), or when this process dies. It exits with the server.
 */
const WRAPPER = [
  'exec 3<&0',
  '"$0" "$@" </dev/null 3<&- &',
  'pid=$!',
  'echo "bench-pid $pid"',
  '( read -r _ <&3; kill -TERM "$pid" 2>/dev/null ) >/dev/null 2>&1 &',
  'exec 3<&-',
  'wait "$pid"',
].join('\n');

/** OUTPUT_TAIL_LINES is how many output lines a ServerProcess keeps for error reports. */
const OUTPUT_TAIL_LINES = 40;

/** live are the server pids started and not known to have ended (killed on exit). */
const live = new Set<number>();
let exitHookInstalled = false;

/** killAllServers kills (SIGKILL) every server process still running; synchronous, for exit paths. */
export function killAllServers(): void {
  for (const pid of live) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}

/** ServerProcess is one etcd member or redis-server under the wrapper. */
export class ServerProcess {
  readonly name: string;
  readonly pid: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last lines the server wrote (both streams), oldest first. */
  readonly outputTail: string[];
  private readonly child: ChildProcess;
  private ended = false;

  private constructor(
    name: string,
    child: ChildProcess,
    pid: number,
    tail: string[],
    exited: ServerProcess['exited'],
  ) {
    this.name = name;
    this.child = child;
    this.pid = pid;
    this.outputTail = tail;
    this.exited = exited.then((e) => {
      this.ended = true;
      live.delete(pid);
      return e;
    });
  }

  /** running tells whether the server has not ended yet. */
  get running(): boolean {
    return !this.ended;
  }

  /** start spawns `command args` under the wrapper in `cwd`; resolves once its pid is known. */
  static async start(
    name: string,
    command: string,
    args: readonly string[],
    cwd: string,
  ): Promise<ServerProcess> {
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.on('exit', killAllServers);
    }
    const child = spawn('sh', ['-c', WRAPPER, command, ...args], { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin?.on('error', () => undefined);
    const tail: string[] = [];
    let onPid: (pid: number) => void = () => {};
    const pidSeen = new Promise<number>((resolve) => {
      onPid = resolve;
    });
    for (const stream of [child.stdout, child.stderr]) {
      if (stream === null) continue;
      createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => {
        const m = /^bench-pid (\d+)$/.exec(line);
        if (m !== null) return onPid(Number(m[1]));
        tail.push(line);
        if (tail.length > OUTPUT_TAIL_LINES) tail.shift();
      });
    }
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', (err) => {
        tail.push(`spawn failed: ${err.message}`);
        resolve({ code: null, signal: null });
      });
    });
    const pid = await Promise.race([pidSeen, exited.then(() => 0)]);
    if (pid === 0)
      throw new DkvError(
        ErrorCode.Unavailable,
        `${name} (${command}) did not start: ${tail.slice(-5).join(' | ') || 'no output'}`,
      );
    live.add(pid);
    return new ServerProcess(name, child, pid, tail, exited);
  }

  /** describe names the server, whether it ended, and its last output lines. */
  describe(lines = 8): string {
    return `${this.name} (pid ${this.pid})${this.ended ? ' ended' : ''}; last output: ${this.outputTail.slice(-lines).join(' | ') || 'none'}`;
  }

  /** stop asks the server to stop (SIGTERM through the wrapper) and kills it after graceMs. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.ended) return;
    this.child.stdin?.end();
    const timer = setTimeout(() => {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }, graceMs);
    try {
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** waitUntil polls `check` every 100 ms until it holds, or throws `what` after timeoutMs. */
async function waitUntil(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: () => string,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (performance.now() > deadline)
      throw new DkvError(ErrorCode.Unavailable, `${what()} (waited ${timeoutMs} ms)`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------
// DKV

/** DkvTarget is a 3-node DKV cluster of real node processes on loopback. */
export class DkvTarget implements Target {
  readonly name = 'dkv' as const;
  readonly describe = '3 DKV node processes on 127.0.0.1 (default config: fsync on), one DkvClient';
  readonly version: string;
  private cluster: LocalCluster | undefined;
  private client: DkvClient | undefined;
  private dir: string | undefined;
  private readonly nodes: number;

  constructor(opts: { nodes?: number } = {}) {
    this.nodes = opts.nodes ?? 3;
    this.version = dkvVersion();
  }

  async start(): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'dkv-compare-'));
    this.dir = dir;
    try {
      const specs = planNodes(dir, this.nodes, await freeBasePort(this.nodes, dir));
      writeNodeConfigs(specs);
      const cluster = new LocalCluster(specs, {
        onExit: (id, exit) => {
          if (!exit.expected) process.stderr.write(`${cluster.node(id).describeExit(exit)}\n`);
        },
      });
      this.cluster = cluster;
      cluster.startAll();
      await cluster.waitReady(60_000);
      this.client = await DkvClient.connect({ servers: cluster.servers, requestTimeoutMs: 30_000 });
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private c(): DkvClient {
    if (this.client === undefined) throw new Error('dkv target not started');
    return this.client;
  }

  readonly ops: TargetOps = {
    put: async (key, value) => {
      await this.c().put(key, value);
    },
    get: async (key) => (await this.c().get(key)) !== undefined,
    getSerializable: async (key) => (await this.c().get(key, { consistency: 'serializable' })) !== undefined,
    incr: async (name) => {
      await this.c().counter(name).add(1);
    },
    lock: async (name) => {
      const lock = await this.c().lock.acquire(name, { ttlMs: 10_000 });
      await lock.release();
    },
    watch: async (key, onValue) => {
      const stream = this.c().watch({ key });
      await stream.ready;
      const pump = (async () => {
        for await (const ev of stream)
          if (ev.type === 'put' && typeof ev.value === 'string') onValue(ev.value);
      })().catch(() => undefined);
      return async () => {
        stream.close();
        await pump;
      };
    },
  };

  pids(): number[] {
    if (this.cluster === undefined) return [];
    return [...this.cluster.nodes.values()].map((n) => n.pid).filter((p): p is number => p !== undefined);
  }

  async stop(): Promise<void> {
    const client = this.client;
    const cluster = this.cluster;
    const dir = this.dir;
    this.client = undefined;
    this.cluster = undefined;
    this.dir = undefined;
    await client?.close().catch(() => undefined);
    await cluster?.stopAll(10_000);
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  }
}

/** dkvVersion is the package version and, when known, the git commit it runs from. */
function dkvVersion(): string {
  const root = join(import.meta.dirname, '..', '..');
  let version = 'dkv';
  try {
    version = `dkv ${(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version}`;
  } catch {
    // keep the bare name
  }
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: root,
      encoding: 'utf8',
    }).trim();
    if (commit.length > 0) version += ` (${commit})`;
  } catch {
    // not a git checkout
  }
  return version;
}

// ---------------------------------------------------------------------------------------------
// etcd

/** revisionOf reads an etcd revision (int64 as a decimal string) as a number. */
function revisionOf(s: string | undefined): number {
  return s === undefined ? 0 : Number(s);
}

/** EtcdTarget is Debian's etcd as a 3-member cluster on loopback. */
export class EtcdTarget implements Target {
  readonly name = 'etcd' as const;
  readonly describe: string;
  readonly version: string;
  private readonly binary: string;
  private readonly members: number;
  private servers: ServerProcess[] = [];
  private client: Etcd3 | undefined;
  private dir: string | undefined;

  constructor(opts: { binary: string; members?: number }) {
    this.binary = opts.binary;
    this.members = opts.members ?? 3;
    this.version = versionOf(this.binary);
    this.describe = `${this.members} etcd members on 127.0.0.1 (default fsync, --quota-backend-bytes 8 GiB), one etcd3 client over all members`;
  }

  async start(): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'dkv-compare-etcd-'));
    this.dir = dir;
    try {
      const ports = await freePorts(this.members * 2);
      const names = Array.from({ length: this.members }, (_, i) => `m${i + 1}`);
      const peerUrl = (i: number): string => `http://127.0.0.1:${ports[this.members + i]}`;
      const clientUrl = (i: number): string => `http://127.0.0.1:${ports[i]}`;
      const initialCluster = names.map((n, i) => `${n}=${peerUrl(i)}`).join(',');
      const token = `dkv-bench-${process.pid}-${Date.now()}`;
      for (let i = 0; i < this.members; i++) {
        const dataDir = join(dir, names[i]!);
        mkdirSync(dataDir, { recursive: true });
        this.servers.push(
          await ServerProcess.start(
            `etcd member ${names[i]}`,
            this.binary,
            [
              '--name',
              names[i]!,
              '--data-dir',
              dataDir,
              '--listen-client-urls',
              clientUrl(i),
              '--advertise-client-urls',
              clientUrl(i),
              '--listen-peer-urls',
              peerUrl(i),
              '--initial-advertise-peer-urls',
              peerUrl(i),
              '--initial-cluster',
              initialCluster,
              '--initial-cluster-state',
              'new',
              '--initial-cluster-token',
              token,
              '--quota-backend-bytes',
              String(8 * 1024 ** 3),
              '--logger',
              'zap',
              '--log-outputs',
              'stderr',
              '--log-level',
              'warn',
            ],
            dir,
          ),
        );
      }
      const urls = names.map((_, i) => clientUrl(i));
      await waitUntil(
        async () => {
          for (const s of this.servers)
            if (!s.running) throw new DkvError(ErrorCode.Unavailable, `etcd stopped: ${s.describe()}`);
          const ok = await Promise.all(
            urls.map(async (u) => {
              const r = await fetch(`${u}/health`, { signal: AbortSignal.timeout(2000) });
              const body = (await r.json()) as { health?: unknown };
              return body.health === 'true' || body.health === true;
            }),
          );
          return ok.every((x) => x);
        },
        60_000,
        () => `the etcd cluster did not become healthy: ${this.servers.map((s) => s.describe(3)).join('; ')}`,
      );
      for (const s of this.servers)
        if (!s.running) throw new DkvError(ErrorCode.Unavailable, `etcd stopped: ${s.describe()}`);
      this.client = new Etcd3({
        hosts: urls,
        defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 30_000 }),
      });
      await this.client.put('bench:probe').value('1');
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private c(): Etcd3 {
    if (this.client === undefined) throw new Error('etcd target not started');
    return this.client;
  }

  readonly ops: TargetOps = {
    put: async (key, value) => {
      await this.c().put(key).value(value);
    },
    get: async (key) => (await this.c().get(key).string()) !== null,
    getSerializable: async (key) => (await this.c().get(key).serializable(true).string()) !== null,
    incr: (name) => this.casIncr(name),
    lock: (name) => this.lockUnlock(name),
    watch: async (key, onValue) => {
      const watcher = await this.c().watch().key(key).create();
      watcher.on('put', (kv) => onValue(kv.value.toString()));
      watcher.on('error', () => undefined);
      return async () => {
        await watcher.cancel();
      };
    },
  };

  /** casIncr is the transaction compare-and-swap loop (see the file comment). */
  private async casIncr(name: string): Promise<void> {
    const c = this.c();
    let kv: IKeyValue | undefined = (await c.get(name).exec()).kvs[0];
    for (let attempt = 0; attempt < 10_000; attempt++) {
      const value = kv === undefined ? 0 : Number(kv.value.toString());
      const mod = kv === undefined ? 0 : revisionOf(kv.mod_revision);
      const r = await c
        .if(name, 'Mod', '==', mod)
        .then(c.put(name).value(String(value + 1)))
        .else(c.get(name))
        .commit();
      if (r.succeeded) return;
      kv = r.responses[0]?.response_range?.kvs[0];
    }
    throw new Error(`counter ${name}: gave up after 10000 conflicting transactions`);
  }

  /** lockUnlock acquires lock `name` (lowest-revision recipe) and releases it (see the file comment). */
  private async lockUnlock(name: string): Promise<void> {
    const c = this.c();
    const lease = c.lease(10);
    lease.on('lost', () => undefined);
    try {
      const id = await lease.grant();
      const pfx = `${name}/`;
      const myKey = `${pfx}${BigInt(id).toString(16)}`;
      const owner = (): ReturnType<Etcd3['getAll']> =>
        c.getAll().prefix(pfx).sort('Create', 'Ascend').limit(1);
      const r = await c
        .if(myKey, 'Create', '==', 0)
        .then(c.put(myKey).value('').lease(id), owner())
        .else(c.get(myKey), owner())
        .commit();
      const myRev = r.succeeded
        ? revisionOf(r.header.revision)
        : revisionOf(r.responses[0]?.response_range?.kvs[0]?.create_revision);
      const ownerRev = revisionOf(r.responses[1]?.response_range?.kvs[0]?.create_revision);
      if (ownerRev !== myRev) {
        // Wait for every key created before ours to go, the last one first.
        for (;;) {
          const before = await c
            .getAll()
            .prefix(pfx)
            .maxCreateRevision(myRev - 1)
            .sort('Create', 'Descend')
            .limit(1)
            .exec();
          const prev = before.kvs[0];
          if (prev === undefined) break;
          await this.waitDeleted(prev.key, revisionOf(before.header.revision) + 1);
        }
      }
    } finally {
      // Revoking the lease deletes the lock's key: the release.
      await lease.revoke();
    }
  }

  /** waitDeleted resolves when `key` is deleted at or after revision `from`. */
  private async waitDeleted(key: Buffer, from: number): Promise<void> {
    const watcher = this.c().watch().key(key).startRevision(String(from)).watcher();
    try {
      await new Promise<void>((resolve, reject) => {
        watcher.on('delete', () => resolve());
        watcher.on('error', (err) => reject(err));
      });
    } finally {
      await watcher.cancel().catch(() => undefined);
    }
  }

  pids(): number[] {
    return this.servers.filter((s) => s.running).map((s) => s.pid);
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    try {
      client?.close();
    } catch {
      // closing a client with calls in flight: they fail, nothing to keep
    }
    const servers = this.servers;
    this.servers = [];
    await Promise.all(servers.map((s) => s.stop(10_000)));
    if (this.dir !== undefined) rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// redis

/** RedisTarget is one redis-server with an append-only file synced every second, no replication. */
export class RedisTarget implements Target {
  readonly name = 'redis' as const;
  readonly describe =
    'one redis-server on 127.0.0.1 (no replication; --appendonly yes --appendfsync everysec --save ""), one ioredis connection';
  readonly version: string;
  private readonly binary: string;
  private server: ServerProcess | undefined;
  private client: Redis | undefined;
  private dir: string | undefined;

  constructor(opts: { binary: string }) {
    this.binary = opts.binary;
    this.version = versionOf(this.binary);
  }

  async start(): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'dkv-compare-redis-'));
    this.dir = dir;
    try {
      const [port] = await freePorts(1);
      this.server = await ServerProcess.start(
        'redis-server',
        this.binary,
        [
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--dir',
          dir,
          '--appendonly',
          'yes',
          '--appendfsync',
          'everysec',
          '--save',
          '',
          '--daemonize',
          'no',
          '--loglevel',
          'warning',
        ],
        dir,
      );
      const client = new Redis({
        host: '127.0.0.1',
        port: port!,
        lazyConnect: true,
        maxRetriesPerRequest: 3,
      });
      client.on('error', () => undefined);
      this.client = client;
      await waitUntil(
        async () => {
          if (this.server?.running !== true)
            throw new DkvError(ErrorCode.Unavailable, `redis stopped: ${this.server?.describe()}`);
          if (client.status === 'wait' || client.status === 'end') await client.connect();
          return (await client.ping()) === 'PONG';
        },
        30_000,
        () => `redis-server did not answer PING: ${this.server?.describe()}`,
      );
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private c(): Redis {
    if (this.client === undefined) throw new Error('redis target not started');
    return this.client;
  }

  readonly ops: TargetOps = {
    put: async (key, value) => {
      await this.c().set(key, value);
    },
    get: async (key) => (await this.c().get(key)) !== null,
    incr: async (name) => {
      await this.c().incr(name);
    },
  };

  pids(): number[] {
    return this.server?.running === true ? [this.server.pid] : [];
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    client?.disconnect();
    const server = this.server;
    this.server = undefined;
    await server?.stop(10_000);
    if (this.dir !== undefined) rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
  }
}

/** makeTarget builds the target of `system`; NOT_FOUND (naming the apt packages) when its server is not installed. */
export function makeTarget(system: SystemName): Target {
  if (system === 'dkv') return new DkvTarget();
  const binary = findExecutable(BINARIES[system]);
  if (binary === undefined) throw notInstalledError([system]);
  return system === 'etcd' ? new EtcdTarget({ binary }) : new RedisTarget({ binary });
}
