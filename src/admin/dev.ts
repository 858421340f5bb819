/**
 * `dkv dev`: a local cluster of real node processes on 127.0.0.1, in the foreground
 * (CONTRACT.md). The pieces are exported for the test harness and the benchmarks, which run
 * clusters the same way:
 *
 * - planNodes / writeNodeConfigs / loadNodeSpecs: the on-disk layout. Node i (1-based) gets
 *   id i, client port base+i-1, peer port base+100+i-1, admin port base+200+i-1, and lives
 *   in `<dir>/node<i>/` (config.json, data/, data/node.log). A restart with the same dir
 *   reuses the configs, so the data is kept.
 * - checkPortsFree: every port is tried (bind and release) before anything is spawned, so a
 *   port in use is an error that names it.
 * - NodeProcess: one child `dkv node --config FILE` (from dist/, or from src/ through tsx
 *   when running from source), its output split into lines, its exit observed. Children run
 *   in their own process group (a terminal's Ctrl-C reaches only `dkv dev`, which then stops
 *   them in order) and stop by themselves when their stdin pipe closes, so they never
 *   outlive a parent that was killed.
 * - LocalCluster: the set of node processes, readiness (every node answers `status` and
 *   every group it lists has a leader), and cluster.json.
 * - runDev: the command itself.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type Connection, type Connector, tcpConnector } from '../client/endpoints.js';
import { DkvError, ErrorCode } from '../errors.js';
import { LOG_FILE_NAME, readNodeConfig } from '../node/main.js';
import type { ClusterStatus } from '../transport/protocol.js';
import { tlsSockets } from '../transport/tls.js';

/** DEV_HOST is where dev clusters listen. */
export const DEV_HOST = '127.0.0.1';
/** NODES_MAX bounds a dev cluster (the port layout leaves 100 ports per kind). */
export const NODES_MAX = 99;
/** The offsets of the peer and admin ports from the base port. */
export const PEER_PORT_OFFSET = 100;
export const ADMIN_PORT_OFFSET = 200;

/** NodeSpec is one node of a local cluster: its id, ports and files. */
export interface NodeSpec {
  readonly id: number;
  readonly host: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly adminPort: number;
  /** `<dir>/node<i>` */
  readonly nodeDir: string;
  readonly dataDir: string;
  readonly logFile: string;
  readonly configFile: string;
}

/** ClusterJson is the shape of `<dir>/cluster.json` (CONTRACT.md). */
export interface ClusterJson {
  readonly servers: string[];
  readonly nodes: {
    id: number;
    pid: number;
    clientPort: number;
    peerPort: number;
    adminPort: number;
    dataDir: string;
    logFile: string;
  }[];
  /** With --tls: the CA to check the nodes against, and root's client certificate. */
  readonly tls?: { ca: string; cert: string; key: string };
  /** With --auth: the auth file, and the file holding root's password. */
  readonly auth?: { file: string; user: string; passwordFile: string };
}

/** planNodes lays out `nodes` nodes under `dir` from `basePort`. */
export function planNodes(dir: string, nodes: number, basePort: number, host = DEV_HOST): NodeSpec[] {
  if (!Number.isSafeInteger(nodes) || nodes < 1 || nodes > NODES_MAX)
    throw new DkvError(
      ErrorCode.InvalidArgument,
      `--nodes must be an integer from 1 to ${NODES_MAX}, got ${nodes}`,
    );
  if (!Number.isSafeInteger(basePort) || basePort < 1 || basePort + ADMIN_PORT_OFFSET + nodes - 1 > 65535)
    throw new DkvError(
      ErrorCode.InvalidArgument,
      `--base-port must be an integer from 1 to ${65535 - ADMIN_PORT_OFFSET - nodes + 1} (ports base..base+${ADMIN_PORT_OFFSET + nodes - 1} are used), got ${basePort}`,
    );
  const root = resolve(dir);
  return Array.from({ length: nodes }, (_, i) => {
    const nodeDir = join(root, `node${i + 1}`);
    const dataDir = join(nodeDir, 'data');
    return {
      id: i + 1,
      host,
      clientPort: basePort + i,
      peerPort: basePort + PEER_PORT_OFFSET + i,
      adminPort: basePort + ADMIN_PORT_OFFSET + i,
      nodeDir,
      dataDir,
      logFile: join(dataDir, LOG_FILE_NAME),
      configFile: join(nodeDir, 'config.json'),
    };
  });
}

/** nodeConfigOf is the config file content of one node of `specs`, with `extra` fields (tickMs...). */
export function nodeConfigOf(
  spec: NodeSpec,
  specs: readonly NodeSpec[],
  extra: Readonly<Record<string, unknown>> | ((spec: NodeSpec) => Readonly<Record<string, unknown>>) = {},
): Record<string, unknown> {
  return {
    id: spec.id,
    dataDir: spec.dataDir,
    host: spec.host,
    clientPort: spec.clientPort,
    peerPort: spec.peerPort,
    adminPort: spec.adminPort,
    peers: specs
      .filter((s) => s.id !== spec.id)
      .map((s) => ({ id: s.id, host: s.host, peerPort: s.peerPort, clientPort: s.clientPort })),
    ...(typeof extra === 'function' ? extra(spec) : extra),
  };
}

/** writeNodeConfigs creates each node's directory and writes its config.json. */
export function writeNodeConfigs(
  specs: readonly NodeSpec[],
  extra: Readonly<Record<string, unknown>> | ((spec: NodeSpec) => Readonly<Record<string, unknown>>) = {},
): void {
  for (const s of specs) {
    mkdirSync(s.dataDir, { recursive: true });
    writeFileSync(s.configFile, `${JSON.stringify(nodeConfigOf(s, specs, extra), null, 2)}\n`);
  }
}

/**
 * loadNodeSpecs reads the node configs a dir holds (`node<i>/config.json`), or returns
 * undefined when it holds none. The nodes must be numbered 1..n with matching ids.
 */
export function loadNodeSpecs(dir: string): NodeSpec[] | undefined {
  const root = resolve(dir);
  if (!existsSync(root)) return undefined;
  const found = readdirSync(root)
    .map((name) => /^node(\d+)$/.exec(name))
    .filter((m) => m !== null)
    .map((m) => Number(m[1]))
    .filter((i) => existsSync(join(root, `node${i}`, 'config.json')))
    .sort((a, b) => a - b);
  if (found.length === 0) return undefined;
  return found.map((i, k) => {
    const configFile = join(root, `node${i}`, 'config.json');
    if (i !== k + 1)
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `${root} holds node${i} but not node${k + 1}: not a dev cluster dir`,
      );
    const cfg = readNodeConfig(configFile);
    if (cfg.id !== i)
      throw new DkvError(ErrorCode.InvalidArgument, `${configFile}: id is ${cfg.id}, expected ${i}`);
    return {
      id: cfg.id,
      host: cfg.host,
      clientPort: cfg.clientPort,
      peerPort: cfg.peerPort,
      adminPort: cfg.adminPort,
      nodeDir: join(root, `node${i}`),
      dataDir: cfg.dataDir,
      logFile: join(cfg.dataDir, LOG_FILE_NAME),
      configFile,
    };
  });
}

/** portsOf lists a cluster's ports, each with what it is for. */
export function portsOf(specs: readonly NodeSpec[]): { host: string; port: number; what: string }[] {
  return specs.flatMap((s) => [
    { host: s.host, port: s.clientPort, what: `node ${s.id} client port` },
    { host: s.host, port: s.peerPort, what: `node ${s.id} peer port` },
    ...(s.adminPort === 0 ? [] : [{ host: s.host, port: s.adminPort, what: `node ${s.id} admin port` }]),
  ]);
}

/** portFree tells whether `port` can be bound on `host` right now. */
export function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** checkPortsFree throws IN_USE naming the first port of `specs` that cannot be bound. */
export async function checkPortsFree(specs: readonly NodeSpec[]): Promise<void> {
  for (const p of portsOf(specs)) {
    if (!(await portFree(p.host, p.port)))
      throw new DkvError(ErrorCode.InUse, `port ${p.port} (${p.what}) on ${p.host} is already in use`);
  }
}

/** freeBasePort finds a base port whose whole layout (client, peer, admin ports) is free now. */
export async function freeBasePort(nodes: number, dir: string): Promise<number> {
  // Below the kernel's ephemeral range: a port that is free now could otherwise be taken, before
  // the node binds it, by the source port of any outbound connection on the machine.
  const [low] = ephemeralPortRange();
  const top = Math.max(11_000, low - ADMIN_PORT_OFFSET - nodes - 1);
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 10_000 + Math.floor(Math.random() * (top - 10_000));
    try {
      await checkPortsFree(planNodes(dir, nodes, base));
      return base;
    } catch {
      // taken: try another range
    }
  }
  throw new DkvError(ErrorCode.InUse, 'no free port range found in 50 attempts');
}

/** ephemeralPortRange is the kernel's range for outbound source ports (Linux; else the IANA one). */
function ephemeralPortRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    if (Number.isSafeInteger(lo) && Number.isSafeInteger(hi)) return [lo!, hi!];
  } catch {
    // not Linux
  }
  return [49_152, 65_535];
}

/**
 * nodeCommand is how to run `dkv node --config FILE` with this very build: the compiled
 * dist/admin/cli.js, or src/admin/cli.ts under tsx when this module runs from source.
 */
export function nodeCommand(configFile: string): { command: string; args: string[] } {
  const here = fileURLToPath(import.meta.url);
  const fromSource = here.endsWith('.ts');
  const cli = join(dirname(here), fromSource ? 'cli.ts' : 'cli.js');
  const loader = fromSource
    ? ['--import', pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href]
    : [];
  // DKV_NODE_ARGS: extra flags for node itself, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
  // (profiling a cluster; node refuses --cpu-prof in NODE_OPTIONS).
  const extra = (process.env.DKV_NODE_ARGS ?? '').split(/\s+/).filter((a) => a.length > 0);
  return { command: process.execPath, args: [...extra, ...loader, cli, 'node', '--config', configFile] };
}

/** tailOfFile returns the last `lines` lines of a file (read from its last 64 KiB). */
export function tailOfFile(path: string, lines: number): string[] {
  try {
    const size = statSync(path).size;
    const len = Math.min(size, 64 << 10);
    const buf = Buffer.alloc(len);
    const fd = openSync(path, 'r');
    try {
      readSync(fd, buf, 0, len, size - len);
    } finally {
      closeSync(fd);
    }
    const all = buf.toString('utf8').split('\n');
    if (all.at(-1) === '') all.pop();
    return all.slice(-lines);
  } catch {
    return [];
  }
}

/** ExitInfo says how a node process ended. */
export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Whether we asked for it (stop or kill). */
  readonly expected: boolean;
}

/** NodeProcessEvents are what a NodeProcess reports. */
export interface NodeProcessEvents {
  /** A line the node wrote to stdout or stderr. */
  onOutput?(id: number, line: string, stream: 'stdout' | 'stderr'): void;
  /** The process ended. */
  onExit?(id: number, exit: ExitInfo): void;
}

/** OUTPUT_TAIL_LINES is how many output lines a NodeProcess keeps for error reports. */
const OUTPUT_TAIL_LINES = 50;

/** NodeProcess is one node child process; it can be started again after it ended. */
export class NodeProcess {
  readonly spec: NodeSpec;
  private readonly events: NodeProcessEvents;
  private child: ChildProcess | undefined;
  private exitPromise: Promise<ExitInfo> = Promise.resolve({ code: null, signal: null, expected: true });
  private expectExit = false;
  /** The last lines the process wrote (both streams), oldest first. */
  readonly outputTail: string[] = [];

  constructor(spec: NodeSpec, events: NodeProcessEvents = {}) {
    this.spec = spec;
    this.events = events;
  }

  /** running tells whether the process was started and has not ended yet. */
  get running(): boolean {
    return this.child !== undefined;
  }

  /** pid is the process id while it runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** exited resolves when the current (or last) process ended. */
  get exited(): Promise<ExitInfo> {
    return this.exitPromise;
  }

  /** start spawns the node; it must not be running. */
  start(): void {
    if (this.child !== undefined) throw new Error(`node ${this.spec.id} is already running`);
    const { command, args } = nodeCommand(this.spec.configFile);
    const child = spawn(command, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
      env: { ...process.env, DKV_EXIT_WITH_PARENT: '1' },
    });
    this.child = child;
    this.expectExit = false;
    child.stdin?.on('error', () => undefined);
    for (const [stream, name] of [
      [child.stdout, 'stdout'],
      [child.stderr, 'stderr'],
    ] as const) {
      if (stream === null) continue;
      createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => {
        this.outputTail.push(line);
        if (this.outputTail.length > OUTPUT_TAIL_LINES) this.outputTail.shift();
        this.events.onOutput?.(this.spec.id, line, name);
      });
    }
    this.exitPromise = new Promise((resolve) => {
      let done = false;
      const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (done) return;
        done = true;
        if (this.child === child) this.child = undefined;
        const info: ExitInfo = { code, signal, expected: this.expectExit };
        this.events.onExit?.(this.spec.id, info);
        resolve(info);
      };
      child.once('exit', (code, signal) => finish(code, signal));
      child.once('error', (err) => {
        this.outputTail.push(`spawn failed: ${err.message}`);
        finish(null, null);
      });
    });
  }

  /** signal sends a signal to the running process (no-op when it is not running). */
  signal(sig: NodeJS.Signals): void {
    const child = this.child;
    if (child === undefined) return;
    this.expectExit = true;
    try {
      child.kill(sig);
    } catch {
      // already gone
    }
  }

  /** stop asks the node to stop gracefully (SIGTERM), and kills it after graceMs. */
  async stop(graceMs = 10_000): Promise<ExitInfo> {
    if (this.child === undefined) return this.exitPromise;
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    try {
      return await this.exitPromise;
    } finally {
      clearTimeout(timer);
    }
  }

  /** kill kills the node with `sig` (SIGKILL by default) and waits for it to end. */
  async kill(sig: NodeJS.Signals = 'SIGKILL'): Promise<ExitInfo> {
    this.signal(sig);
    return this.exitPromise;
  }

  /** describeExit explains an exit, with the last lines of the log file and of the output. */
  describeExit(exit: ExitInfo, lines = 10): string {
    const how = exit.signal !== null ? `signal ${exit.signal}` : `exit code ${exit.code}`;
    const parts = [`node ${this.spec.id} ended (${how})`];
    const log = tailOfFile(this.spec.logFile, lines);
    if (log.length > 0) parts.push(`last lines of ${this.spec.logFile}:`, ...log.map((l) => `  ${l}`));
    const out = this.outputTail.slice(-lines);
    if (out.length > 0) parts.push('last output:', ...out.map((l) => `  ${l}`));
    return parts.join('\n');
  }
}

/** ReadyProblem says what keeps one node from being ready. */
type ReadyProblem = string | undefined;

/** problemOf checks one node's status: it answers, and every group it lists has a leader. */
function problemOf(status: ClusterStatus): ReadyProblem {
  if (!Array.isArray(status.groups) || status.groups.length === 0) return 'lists no groups yet';
  const leaderless = status.groups.filter((g) => !(g.leader > 0)).map((g) => g.id);
  if (leaderless.length > 0)
    return `knows no leader for group${leaderless.length > 1 ? 's' : ''} ${leaderless.join(', ')}`;
  return undefined;
}

/** LocalCluster runs the node processes of one cluster. */
export class LocalCluster {
  readonly specs: readonly NodeSpec[];
  readonly nodes: ReadonlyMap<number, NodeProcess>;

  /** How waitReady connects (default plain TCP; TLS and credentials for a secured cluster). */
  private readonly connector: Connector;
  /** What clusterJson reports about TLS and auth. */
  security: Pick<ClusterJson, 'tls' | 'auth'> = {};

  constructor(specs: readonly NodeSpec[], events: NodeProcessEvents = {}, connector?: Connector) {
    this.connector = connector ?? tcpConnector(16 << 20);
    this.specs = specs;
    this.nodes = new Map(specs.map((s) => [s.id, new NodeProcess(s, events)]));
  }

  /** servers lists the client addresses, in node order. */
  get servers(): string[] {
    return this.specs.map((s) => `${s.host}:${s.clientPort}`);
  }

  node(id: number): NodeProcess {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  /** startAll starts every node that is not running. */
  startAll(): void {
    for (const n of this.nodes.values()) if (!n.running) n.start();
  }

  /** stopAll stops every node gracefully at once (SIGTERM, SIGKILL after graceMs). */
  async stopAll(graceMs = 10_000): Promise<ExitInfo[]> {
    return Promise.all([...this.nodes.values()].map((n) => n.stop(graceMs)));
  }

  /** killAll kills every node at once (SIGKILL by default). */
  async killAll(sig: NodeJS.Signals = 'SIGKILL'): Promise<ExitInfo[]> {
    const nodes = [...this.nodes.values()];
    for (const n of nodes) n.signal(sig);
    return Promise.all(nodes.map((n) => n.exited));
  }

  /**
   * waitReady waits until every running node answers `status` and every group it lists has a
   * leader. It fails early when a node process ends, and after timeoutMs with what is missing.
   * `ids` limits the check to some nodes.
   */
  async waitReady(timeoutMs = 60_000, ids?: readonly number[]): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    const which = ids ?? this.specs.map((s) => s.id);
    const clients = new Map<number, Connection>();
    const problems = new Map<number, string>();
    try {
      for (;;) {
        for (const id of which) {
          const n = this.node(id);
          if (!n.running) {
            const exit = await n.exited;
            throw new DkvError(ErrorCode.Unavailable, `node ${id} is not running: ${n.describeExit(exit)}`);
          }
        }
        problems.clear();
        await Promise.all(
          which.map(async (id) => {
            const spec = this.node(id).spec;
            try {
              let c = clients.get(id);
              if (c === undefined || c.closed) {
                c = (await this.connector(`${spec.host}:${spec.clientPort}`, 1000)).conn;
                clients.set(id, c);
              }
              const p = problemOf((await c.call('status', {}, { timeoutMs: 2000 })) as ClusterStatus);
              if (p !== undefined) problems.set(id, p);
            } catch (err) {
              problems.set(
                id,
                `does not answer status (${err instanceof Error ? err.message : String(err)})`,
              );
            }
          }),
        );
        if (problems.size === 0) return;
        if (performance.now() >= deadline) {
          const what = [...problems].map(([id, p]) => `node ${id} ${p}`).join('; ');
          throw new DkvError(
            ErrorCode.Unavailable,
            `the cluster was not ready within ${timeoutMs} ms: ${what}`,
          );
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      await Promise.all([...clients.values()].map((c) => c.close()));
    }
  }

  /** clusterJson describes the running cluster (CONTRACT.md's cluster.json). */
  clusterJson(): ClusterJson {
    return {
      servers: this.servers,
      nodes: this.specs.map((s) => ({
        id: s.id,
        pid: this.node(s.id).pid ?? 0,
        clientPort: s.clientPort,
        peerPort: s.peerPort,
        adminPort: s.adminPort,
        dataDir: s.dataDir,
        logFile: s.logFile,
      })),
      ...this.security,
    };
  }
}

/** devFiles are where `dkv dev --tls --auth` keeps its certificates and auth file. */
function devFiles(dir: string) {
  const root = resolve(dir);
  const certs = join(root, 'certs');
  return {
    certs,
    ca: join(certs, 'ca.pem'),
    nodeCert: (id: number) => join(certs, `node-${id}.pem`),
    nodeKey: (id: number) => join(certs, `node-${id}-key.pem`),
    clientCert: join(certs, 'client-root.pem'),
    clientKey: join(certs, 'client-root-key.pem'),
    authFile: join(root, 'auth.json'),
    passwordFile: join(root, 'root-password'),
  };
}

/**
 * makeDevSecurity makes a new dev cluster's certificates (a CA, one per node, one for the
 * client root) and auth file (user root; the password, generated unless DKV_ROOT_PASSWORD
 * gives one, goes to <dir>/root-password, mode 0600), and returns each node's config fields.
 */
async function makeDevSecurity(
  dir: string,
  specs: readonly NodeSpec[],
  want: { tls: boolean; auth: boolean },
  out: (line: string) => void,
): Promise<(spec: NodeSpec) => Record<string, unknown>> {
  const f = devFiles(dir);
  if (want.tls) {
    const { writeDevCerts } = await import('./certs.js');
    await writeDevCerts(f.certs, { nodes: specs.map((s) => s.id), clients: ['root'] });
    out(`[dev] certificates in ${f.certs}`);
  }
  if (want.auth) {
    const { initAuthFile } = await import('./cmd-auth.js');
    mkdirSync(resolve(dir), { recursive: true });
    const r = initAuthFile(f.authFile, process.env.DKV_ROOT_PASSWORD);
    writeFileSync(f.passwordFile, `${r.password}\n`, { mode: 0o600 });
  }
  return (spec) => ({
    ...(want.tls && { tls: { ca: f.ca, cert: f.nodeCert(spec.id), key: f.nodeKey(spec.id) } }),
    ...(want.auth && { auth: { file: f.authFile } }),
  });
}

/**
 * devSecurityOf reads what a dev dir's node configs turned on, and returns how to connect to
 * its nodes (as root: the root client certificate, else the node token) and what
 * cluster.json says about it.
 */
export function devSecurityOf(
  dir: string,
  specs: readonly NodeSpec[],
): { connector: Connector; json: Pick<ClusterJson, 'tls' | 'auth'> } {
  const f = devFiles(dir);
  const first = specs[0];
  const cfg =
    first === undefined
      ? {}
      : (JSON.parse(readFileSync(first.configFile, 'utf8')) as Record<string, unknown>);
  const tls = cfg.tls !== undefined;
  const authCfg = cfg.auth as { file?: string } | undefined;
  let token: string | undefined;
  if (authCfg?.file !== undefined) {
    const text = JSON.parse(readFileSync(authCfg.file, 'utf8')) as { nodeToken?: string };
    token = text.nodeToken;
  }
  const connector = tcpConnector(16 << 20, {
    ...(tls && {
      sockets: tlsSockets(
        { ca: readFileSync(f.ca), cert: readFileSync(f.clientCert), key: readFileSync(f.clientKey) },
        { requireClientCert: false },
      ),
    }),
    ...(token !== undefined && { auth: { token } }),
  });
  return {
    connector,
    json: {
      ...(tls && { tls: { ca: f.ca, cert: f.clientCert, key: f.clientKey } }),
      ...(authCfg?.file !== undefined && {
        auth: { file: authCfg.file, user: 'root', passwordFile: f.passwordFile },
      }),
    },
  };
}

/** DevOptions are `dkv dev`'s options. */
export interface DevOptions {
  readonly nodes: number;
  readonly dir: string;
  readonly basePort: number;
  /** Whether --base-port was given (a restart refuses a different one), or only defaulted. */
  readonly basePortGiven?: boolean;
  readonly readyTimeoutMs?: number;
  /** Extra config fields for new clusters (tickMs, snapshotEntries...), or per node. */
  readonly config?:
    | Readonly<Record<string, unknown>>
    | ((spec: NodeSpec) => Readonly<Record<string, unknown>>);
  /** A new cluster gets TLS (a development CA in <dir>/certs) and mutual TLS between nodes. */
  readonly tls?: boolean;
  /** A new cluster requires authentication (<dir>/auth.json, user root). */
  readonly auth?: boolean;
  /** Where lines go (default: process.stdout / process.stderr). */
  readonly out?: (line: string) => void;
  readonly err?: (line: string) => void;
  /** Resolves when the cluster should stop (default: the first SIGINT or SIGTERM). */
  readonly stopSignal?: Promise<string>;
}

/**
 * prepareDevDir returns the node specs of a dev dir: the existing configs on a restart
 * (refusing a different --nodes or --base-port), else a new layout with its configs written.
 */
export function prepareDevDir(opts: DevOptions): { specs: NodeSpec[]; restarted: boolean } {
  const existing = loadNodeSpecs(opts.dir);
  if (existing !== undefined) {
    if (existing.length !== opts.nodes)
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `${resolve(opts.dir)} holds a cluster of ${existing.length} nodes, not ${opts.nodes}: use --nodes ${existing.length}, or another --dir`,
      );
    const base = existing[0]!.clientPort;
    if (opts.basePortGiven === true && base !== opts.basePort)
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `${resolve(opts.dir)} holds a cluster on base port ${base}, not ${opts.basePort}: use --base-port ${base}, or another --dir`,
      );
    return { specs: existing, restarted: true };
  }
  const specs = planNodes(opts.dir, opts.nodes, opts.basePort);
  writeNodeConfigs(specs, opts.config);
  return { specs, restarted: false };
}

/** signalOnce resolves with the name of the first SIGINT or SIGTERM; dispose removes the handlers. */
function signalOnce(): { promise: Promise<string>; onSecond: (f: () => void) => void; dispose: () => void } {
  let resolveFn: (s: string) => void = () => {};
  let second: () => void = () => {};
  let count = 0;
  const promise = new Promise<string>((r) => {
    resolveFn = r;
  });
  const handler = (sig: NodeJS.Signals): void => {
    count++;
    if (count === 1) resolveFn(sig);
    else second();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    promise,
    onSecond: (f) => {
      second = f;
    },
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}

/**
 * runDev runs `dkv dev` until SIGINT or SIGTERM, then stops every node and resolves. It
 * rejects (after stopping what it started) when the cluster cannot start or is not ready in
 * time.
 */
export async function runDev(opts: DevOptions): Promise<void> {
  const out = opts.out ?? ((line: string) => void process.stdout.write(`${line}\n`));
  const err = opts.err ?? ((line: string) => void process.stderr.write(`${line}\n`));
  const fresh = loadNodeSpecs(opts.dir) === undefined;
  let config = opts.config;
  if (fresh && (opts.tls === true || opts.auth === true)) {
    const planned = planNodes(opts.dir, opts.nodes, opts.basePort);
    const sec = await makeDevSecurity(
      opts.dir,
      planned,
      { tls: opts.tls === true, auth: opts.auth === true },
      out,
    );
    const base = opts.config;
    config = (spec) => ({ ...(typeof base === 'function' ? base(spec) : base), ...sec(spec) });
  }
  const { specs, restarted } = prepareDevDir({ ...opts, ...(config !== undefined && { config }) });
  await checkPortsFree(specs);
  const security = devSecurityOf(opts.dir, specs);
  if (
    restarted &&
    (opts.tls === true || opts.auth === true) &&
    security.json.tls === undefined &&
    security.json.auth === undefined
  )
    err('[dev] --tls/--auth apply to a new cluster: this dir holds one without them (use another --dir)');
  const signals = opts.stopSignal === undefined ? signalOnce() : undefined;
  const stopRequested = opts.stopSignal ?? signals!.promise;
  let stopping = false;
  const cluster = new LocalCluster(
    specs,
    {
      onOutput: (id, line) => out(`[node${id}] ${line}`),
      onExit: (id, exit) => {
        if (exit.expected || stopping) return;
        err(`[dev] ${cluster.node(id).describeExit(exit)}`);
        err(`[dev] node ${id} died unexpectedly; the other nodes keep running`);
      },
    },
    security.connector,
  );
  cluster.security = security.json;
  if (security.json.tls)
    out(
      `[dev] TLS on: connect with --tls-ca ${security.json.tls.ca} (add --tls-cert ${security.json.tls.cert} --tls-key ${security.json.tls.key} to authenticate as root)`,
    );
  if (security.json.auth)
    out(
      `[dev] auth on: user root, password in ${security.json.auth.passwordFile}; users, roles, tokens: dkv auth ... --file ${security.json.auth.file}`,
    );
  signals?.onSecond(() => {
    err('[dev] second signal: killing the nodes');
    void cluster.killAll();
  });
  const stop = async (): Promise<void> => {
    stopping = true;
    const exits = await cluster.stopAll(10_000);
    const forced = exits.filter((e) => e.signal === 'SIGKILL').length;
    if (forced > 0) err(`[dev] ${forced} node(s) did not stop within 10 s and were killed`);
  };
  try {
    out(
      `[dev] ${restarted ? 'restarting' : 'starting'} ${specs.length} nodes in ${resolve(opts.dir)} (client ports ${specs[0]!.clientPort}..${specs.at(-1)!.clientPort})`,
    );
    cluster.startAll();
    const ready = cluster.waitReady(opts.readyTimeoutMs ?? 60_000);
    const first = await Promise.race([ready.then(() => 'ready'), stopRequested]);
    if (first !== 'ready') {
      ready.catch(() => undefined);
      out(`[dev] ${first} before the cluster was ready: stopping`);
      await stop();
      return;
    }
    const json = cluster.clusterJson();
    writeFileSync(join(resolve(opts.dir), 'cluster.json'), `${JSON.stringify(json, null, 2)}\n`);
    out(`DKV ready servers=${json.servers.join(',')}`);
    const why = await stopRequested;
    out(`[dev] ${why}: stopping the nodes`);
    await stop();
    out('[dev] stopped');
  } catch (e) {
    await stop();
    throw e;
  } finally {
    signals?.dispose();
  }
}
