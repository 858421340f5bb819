/**
 * Instances: several isolated DKV nodes per host, each a background process with its own
 * ports, config file, data directory and logs (`dkv instance ...`, CONTRACT.md). This file is
 * the logic; cmd-instance.ts wires it to commander.
 *
 * Layout. The home is `--home`, else $DKV_HOME, else ~/.dkv. Instance NAME lives in
 * `<home>/instances/<NAME>/`:
 *
 *     instance.json   what `create` decided: name, id, template, host, ports, memoryMb,
 *                     createdAt, paths (the directory exists iff the instance does)
 *     config.json     the node's config (`dkv node --config`), checked before it is written
 *                     and again before every start; it may be edited by hand
 *     data/           the node's data directory (or `--data-dir`)
 *     node.log        the node's pino log (the config's logFile)
 *     console.log     the process's stdout and stderr, appended to on every start
 *     node.pid        the running process's pid
 *
 * Ports. A port is held by an instance when its instance.json or its config.json names it,
 * whether it runs or not, so a stopped instance keeps its ports. Ports not given are
 * allocated upward from 7401 (client), 7501 (peer) and 7601 (admin), skipping every port an
 * instance of the home holds, every port the --peers list names, and every port that cannot
 * be bound right now. Ports are unique per home, whatever the host.
 *
 * Running. An instance runs when node.pid names a live process whose command line is
 * `... node --config <its config.json>` (read from /proc where there is one, so a pid reused
 * by another program does not count); a stale pid file is removed. `start` spawns the node
 * detached (its own process group, not tied to the CLI's lifetime) and waits for its
 * `DKV node <id> serving` line in console.log; an early exit is an error with the tails of
 * console.log and node.log, and with the code of the node's own `error CODE: message` line.
 * `stop` sends SIGTERM (the node hands its leaderships away and exits) and SIGKILL after a
 * timeout.
 *
 * Concurrent `create`s in one home may pick the same free port: create instances one at a time.
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
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { parseAddress } from '../client/endpoints.js';
import { DkvError, ErrorCode, isDkvError, isErrorCode } from '../errors.js';
import { checkNodeConfig, type NodeConfig, type PeerConfig, type StoreBootstrap } from '../node/config.js';
import { readNodeConfig } from '../node/main.js';
import type { Hello } from '../transport/protocol.js';
import { RpcClient } from '../transport/rpc-client.js';
import { fetchStatus } from './data-commands.js';
import { nodeCommand, portFree, tailOfFile } from './dev.js';
import { DEFAULT_TEMPLATE, type TemplateName, templateOf } from './templates.js';

/** DEFAULT_HOST is where instances listen unless --host (or their --peers entry) says otherwise. */
export const DEFAULT_HOST = '127.0.0.1';
/** FIRST_PORTS are where port allocation starts, per kind. */
export const FIRST_PORTS = { client: 7401, peer: 7501, admin: 7601 } as const;
/** NAME_PATTERN is what instance (and --peers) names may look like. */
export const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
/** File names inside an instance directory. */
export const INSTANCE_FILES = {
  record: 'instance.json',
  config: 'config.json',
  data: 'data',
  log: 'node.log',
  console: 'console.log',
  pid: 'node.pid',
} as const;
/** LOG_TAIL_LINES is how many lines of each log a start failure shows. */
const LOG_TAIL_LINES = 15;
/** POLL_MS is how often start and stop look at the process. */
const POLL_MS = 100;
/** KILL_WAIT_MS bounds the wait for a SIGKILLed process to disappear. */
const KILL_WAIT_MS = 5000;

/** PortKind names an instance's three ports. */
export type PortKind = 'client' | 'peer' | 'admin';

/** InstancePaths are an instance's files (absolute). */
export interface InstancePaths {
  readonly dir: string;
  readonly configFile: string;
  readonly dataDir: string;
  readonly logFile: string;
  readonly consoleFile: string;
  readonly pidFile: string;
}

/** InstanceRecord is the content of instance.json. */
export interface InstanceRecord {
  readonly name: string;
  readonly id: number;
  readonly template: TemplateName;
  readonly host: string;
  readonly ports: { readonly clientPort: number; readonly peerPort: number; readonly adminPort: number };
  /** The node process's heap limit (`--max-old-space-size`), in MiB. */
  readonly memoryMb: number;
  /** ISO time of `create`. */
  readonly createdAt: string;
  readonly paths: InstancePaths;
}

/**
 * InstanceStatus is `dkv instance status --json`: CONTRACT.md's keys first, then more. Ports
 * and files come from config.json when it is valid (it is what the node runs with), else
 * from instance.json.
 */
export interface InstanceStatus {
  readonly name: string;
  readonly running: boolean;
  readonly pid: number | null;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly adminPort: number;
  readonly dataDir: string;
  readonly logFile: string;
  readonly configFile: string;
  readonly id: number;
  readonly template: string;
  readonly host: string;
  /** The node's `GET /health` answer (only with a running node whose admin port answers). */
  readonly health?: unknown;
}

/** Instance is one instance as loaded from its directory. */
interface Instance {
  readonly record: InstanceRecord;
  /** config.json, when it is valid. */
  readonly config: NodeConfig | undefined;
}

/** homeOf resolves the instances home: `--home`, else $DKV_HOME, else ~/.dkv. */
export function homeOf(home?: string): string {
  const env = process.env.DKV_HOME;
  return resolve(home ?? (env !== undefined && env !== '' ? env : join(homedir(), '.dkv')));
}

function instancesDir(home: string): string {
  return join(home, 'instances');
}

/** checkName throws INVALID_ARGUMENT unless `name` is a valid instance name. */
export function checkName(name: string, what = 'instance name'): void {
  if (!NAME_PATTERN.test(name))
    throw new DkvError(
      ErrorCode.InvalidArgument,
      `${what} ${JSON.stringify(name)} must be 1 to 64 letters, digits, '_', '.' or '-'`,
    );
}

function invalid(message: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, message);
}

function portOf(text: string, what: string, min = 1): number {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= min && n <= 65535))
    throw invalid(`${what} must be a port from ${min} to 65535, got ${JSON.stringify(text)}`);
  return n;
}

/** PeerSpec is one item of `--peers NAME=HOST:PEER_PORT[:CLIENT_PORT]`. */
export interface PeerSpec {
  readonly name: string;
  readonly host: string;
  readonly peerPort: number;
  /** Absent: the peer port minus this instance's (peerPort - clientPort). */
  readonly clientPort?: number;
}

/** parsePeers parses `--peers`; errors name the bad item. */
export function parsePeers(text: string): PeerSpec[] {
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (items.length === 0) throw invalid('--peers lists no NAME=HOST:PEER_PORT[:CLIENT_PORT]');
  const seen = new Set<string>();
  return items.map((item) => {
    const m = /^([^=]+)=([^:=]+):(\d+)(?::(\d+))?$/.exec(item);
    if (m === null)
      throw invalid(`--peers item ${JSON.stringify(item)} must be NAME=HOST:PEER_PORT[:CLIENT_PORT]`);
    const name = m[1]!;
    checkName(name, `--peers item ${JSON.stringify(item)}: name`);
    if (seen.has(name)) throw invalid(`--peers names ${name} twice`);
    seen.add(name);
    const peerPort = portOf(m[3]!, `--peers item ${JSON.stringify(item)}: the peer port`);
    return {
      name,
      host: m[2]!,
      peerPort,
      ...(m[4] !== undefined && {
        clientPort: portOf(m[4], `--peers item ${JSON.stringify(item)}: the client port`),
      }),
    };
  });
}

/** parseStores parses `--stores name:partitions,...`. */
export function parseStores(text: string): StoreBootstrap[] {
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (items.length === 0) throw invalid('--stores lists no name:partitions');
  const seen = new Set<string>();
  return items.map((item) => {
    const m = /^([A-Za-z0-9_.-]{1,64}):(\d{1,3})$/.exec(item);
    const partitions = m === null ? Number.NaN : Number(m[2]);
    if (m === null || !(partitions >= 1 && partitions <= 256))
      throw invalid(
        `--stores item ${JSON.stringify(item)} must be name:partitions (a name of letters, digits, _ . -; 1 to 256 partitions)`,
      );
    if (seen.has(m[1]!)) throw invalid(`--stores names ${m[1]} twice`);
    seen.add(m[1]!);
    return { name: m[1]!, partitions };
  });
}

function readJson(file: string): unknown {
  return JSON.parse(readFileSync(file, 'utf8'));
}

function isRecord(v: unknown): v is InstanceRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Partial<InstanceRecord>;
  return (
    typeof r.name === 'string' &&
    typeof r.id === 'number' &&
    typeof r.host === 'string' &&
    typeof r.memoryMb === 'number' &&
    typeof r.ports === 'object' &&
    r.ports !== null &&
    typeof r.paths === 'object' &&
    r.paths !== null &&
    typeof r.paths.configFile === 'string' &&
    typeof r.paths.pidFile === 'string'
  );
}

/** loadInstance reads one instance; NOT_FOUND when the home has no such instance. */
function loadInstance(home: string, name: string): Instance {
  checkName(name);
  const dir = join(instancesDir(home), name);
  const file = join(dir, INSTANCE_FILES.record);
  if (!existsSync(dir)) throw new DkvError(ErrorCode.NotFound, `no instance ${name} in ${home}`);
  let raw: unknown;
  try {
    raw = readJson(file);
  } catch (err) {
    throw invalid(
      `instance ${name}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`,
    );
  }
  if (!isRecord(raw)) throw invalid(`instance ${name}: ${file} is not an instance record`);
  let config: NodeConfig | undefined;
  try {
    config = readNodeConfig(raw.paths.configFile);
  } catch {
    config = undefined; // start reports it; status and list show instance.json's view
  }
  return { record: raw, config };
}

/** loadAll reads every instance of the home; unreadable ones are reported in `problems`. */
function loadAll(home: string): { instances: Instance[]; problems: string[] } {
  const dir = instancesDir(home);
  if (!existsSync(dir)) return { instances: [], problems: [] };
  const instances: Instance[] = [];
  const problems: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (!NAME_PATTERN.test(name)) continue;
    try {
      instances.push(loadInstance(home, name));
    } catch (err) {
      problems.push(err instanceof Error ? err.message : String(err));
    }
  }
  return { instances, problems };
}

/** portsOfInstance lists the ports an instance holds (instance.json's and config.json's). */
function portsOfInstance(inst: Instance): { port: number; kind: PortKind }[] {
  const list: { port: number; kind: PortKind }[] = [
    { port: inst.record.ports.clientPort, kind: 'client' },
    { port: inst.record.ports.peerPort, kind: 'peer' },
    { port: inst.record.ports.adminPort, kind: 'admin' },
  ];
  if (inst.config !== undefined)
    list.push(
      { port: inst.config.clientPort, kind: 'client' },
      { port: inst.config.peerPort, kind: 'peer' },
      { port: inst.config.adminPort, kind: 'admin' },
    );
  return list.filter((p) => p.port > 0);
}

/** view is what the node runs with: config.json when valid, else instance.json. */
function view(inst: Instance): {
  id: number;
  host: string;
  clientPort: number;
  peerPort: number;
  adminPort: number;
  dataDir: string;
  logFile: string;
} {
  const c = inst.config;
  const r = inst.record;
  return c !== undefined
    ? {
        id: c.id,
        host: c.host,
        clientPort: c.clientPort,
        peerPort: c.peerPort,
        adminPort: c.adminPort,
        dataDir: resolve(c.dataDir),
        logFile: resolve(c.logFile ?? join(c.dataDir, 'node.log')),
      }
    : {
        id: r.id,
        host: r.host,
        ...r.ports,
        dataDir: r.paths.dataDir,
        logFile: r.paths.logFile,
      };
}

// ---------------------------------------------------------------------------------------------
// Processes

/**
 * ProcessState is what a pid is to an instance: gone (or a zombie), exiting (its memory is
 * released but it is not a zombie yet: its ports may still be bound), ours (it runs
 * `node --config <the instance's config.json>`), or other (the pid was reused).
 */
type ProcessState = 'gone' | 'exiting' | 'ours' | 'other';

/** stateOf reads a pid's state from /proc; without /proc, any live pid counts as ours. */
function stateOf(pid: number, configFile: string): ProcessState {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return 'gone';
  }
  if (!existsSync('/proc/self/stat')) return 'ours';
  let argv: string[];
  try {
    // The state is the field after the command name, which is in parentheses and may hold any character.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z' || state === 'X' || state === 'x') return 'gone';
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return 'gone';
  }
  if (argv.at(-1) === '') argv.pop();
  if (argv.length === 0) return 'exiting';
  const i = argv.indexOf('--config');
  return i > 0 && argv[i - 1] === 'node' && argv[i + 1] === configFile ? 'ours' : 'other';
}

/** livePid returns the pid of the instance's running node, removing a stale pid file. */
function livePid(rec: InstanceRecord): number | undefined {
  let text: string;
  try {
    text = readFileSync(rec.paths.pidFile, 'utf8').trim();
  } catch {
    return undefined;
  }
  const pid = /^\d+$/.test(text) ? Number(text) : 0;
  if (pid > 0 && stateOf(pid, rec.paths.configFile) === 'ours') return pid;
  rmSync(rec.paths.pidFile, { force: true });
  return undefined;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** waitGone polls until `pid` has fully exited (or was reused), or `ms` pass; it tells whether it did. */
async function waitGone(pid: number, configFile: string, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  for (;;) {
    const state = stateOf(pid, configFile);
    if (state === 'gone' || state === 'other') return true;
    if (performance.now() >= deadline) return false;
    await sleep(POLL_MS);
  }
}

// ---------------------------------------------------------------------------------------------
// Ports

/** Holders maps a port to the instance holding it. */
type Holders = Map<number, string>;

function holdersOf(instances: readonly Instance[], except?: string): Holders {
  const held: Holders = new Map();
  for (const inst of instances) {
    if (inst.record.name === except) continue;
    for (const p of portsOfInstance(inst)) if (!held.has(p.port)) held.set(p.port, inst.record.name);
  }
  return held;
}

function inUse(kind: PortKind, port: number, by: string): DkvError {
  return new DkvError(ErrorCode.InUse, `${kind} port ${port} is already in use (by ${by})`);
}

/** checkGivenPort refuses a port another instance holds or that cannot be bound now. */
async function checkGivenPort(kind: PortKind, port: number, host: string, held: Holders): Promise<void> {
  const holder = held.get(port);
  if (holder !== undefined) throw inUse(kind, port, `instance ${holder}`);
  if (!(await portFree(host, port))) throw inUse(kind, port, 'another process');
}

/** allocatePort finds the first port from FIRST_PORTS[kind] not held, not taken, and free now. */
async function allocatePort(
  kind: PortKind,
  host: string,
  held: Holders,
  taken: Set<number>,
): Promise<number> {
  for (let port = FIRST_PORTS[kind]; port <= 65535; port++) {
    if (held.has(port) || taken.has(port)) continue;
    if (await portFree(host, port)) return port;
  }
  throw new DkvError(ErrorCode.InUse, `no free ${kind} port from ${FIRST_PORTS[kind]} to 65535 on ${host}`);
}

// ---------------------------------------------------------------------------------------------
// create

/** CreateOptions are `dkv instance create`'s options, parsed. */
export interface CreateOptions {
  readonly home: string;
  readonly name: string;
  readonly template?: string;
  readonly host?: string;
  readonly clientPort?: number;
  readonly peerPort?: number;
  /** 0: no admin HTTP port. */
  readonly adminPort?: number;
  /** `--peers NAME=HOST:PEER_PORT[:CLIENT_PORT],...` */
  readonly peers?: string;
  /** `--join HOST:CLIENT_PORT` of a running member. */
  readonly join?: string;
  readonly id?: number;
  readonly clusterId?: string;
  /** `--stores name:partitions,...` */
  readonly stores?: string;
  readonly dataDir?: string;
  /** How long --join may take to ask the seed (default 5000 ms). */
  readonly joinTimeoutMs?: number;
}

/** CreateResult is what `create` made, and for --join, the seed to run add-member against. */
export interface CreateResult {
  readonly record: InstanceRecord;
  readonly status: InstanceStatus;
  readonly joinSeed?: string;
}

/** joinPeers asks a running member for the members and the cluster id (for --join). */
async function joinPeers(
  seed: string,
  timeoutMs: number,
): Promise<{ peers: PeerConfig[]; clusterId: string }> {
  const where = parseAddress(seed);
  let hello: Hello;
  let c: RpcClient | undefined;
  try {
    c = await RpcClient.connect({ ...where, frameBytesMax: 16 << 20, connectTimeoutMs: timeoutMs });
    hello = (await c.call('hello', {}, { timeoutMs })) as Hello;
  } catch (err) {
    throw new DkvError(
      ErrorCode.Unavailable,
      `--join ${seed}: the member does not answer (${err instanceof Error ? err.message : String(err)})`,
    );
  } finally {
    await c?.close();
  }
  const status = await fetchStatus([seed], timeoutMs);
  const peers = status.members.map((m): PeerConfig => {
    if (typeof m.peerAddress !== 'string' || m.peerAddress === '')
      throw new DkvError(
        ErrorCode.Unsupported,
        `--join ${seed}: member ${m.id} has no peer address in the cluster status (an older node?)`,
      );
    const client = parseAddress(m.address);
    const peer = parseAddress(m.peerAddress);
    return { id: m.id, host: peer.host, peerPort: peer.port, clientPort: client.port };
  });
  if (peers.length === 0)
    throw new DkvError(ErrorCode.Unavailable, `--join ${seed}: the cluster lists no members`);
  return { peers, clusterId: hello.clusterId };
}

/**
 * createInstance makes a new instance directory: it checks the name, template, ports and
 * cluster options, allocates the ports not given, and writes config.json (checked with
 * checkNodeConfig) and instance.json. Nothing is written when a check fails.
 */
export async function createInstance(opts: CreateOptions): Promise<CreateResult> {
  const home = resolve(opts.home);
  const name = opts.name;
  checkName(name);
  const template = templateOf(opts.template ?? DEFAULT_TEMPLATE);
  const dir = join(instancesDir(home), name);
  if (existsSync(dir))
    throw new DkvError(ErrorCode.AlreadyExists, `instance ${name} already exists in ${home}`);
  if (opts.peers !== undefined && opts.join !== undefined)
    throw invalid(
      '--peers and --join exclude each other: --peers forms a new cluster, --join joins a running one',
    );
  if (opts.join !== undefined && opts.stores !== undefined)
    throw invalid('--stores is for forming a cluster; a joining node learns the stores from the cluster');
  if (opts.clusterId !== undefined && opts.clusterId === '') throw invalid('--cluster-id must not be empty');
  const peerSpecs = opts.peers === undefined ? [] : parsePeers(opts.peers);
  const stores = opts.stores === undefined ? undefined : parseStores(opts.stores);
  const seed = opts.join === undefined ? undefined : parseAddress(opts.join);
  const joinSeed = seed === undefined ? undefined : `${seed.host}:${seed.port}`;

  // This instance's own --peers entry supplies its host and ports, so one --peers list serves all.
  const self = peerSpecs.find((p) => p.name === name);
  const host = opts.host ?? self?.host ?? DEFAULT_HOST;
  if (self !== undefined) {
    const clash = (
      what: string,
      given: number | string | undefined,
      listed: number | string | undefined,
    ): void => {
      if (given !== undefined && listed !== undefined && given !== listed)
        throw invalid(`${what} ${given} differs from ${name}'s entry in --peers (${listed})`);
    };
    clash('--host', opts.host, self.host);
    clash('--peer-port', opts.peerPort, self.peerPort);
    clash('--port', opts.clientPort, self.clientPort);
  }
  const given: Record<PortKind, number | undefined> = {
    client: opts.clientPort ?? self?.clientPort,
    peer: opts.peerPort ?? self?.peerPort,
    admin: opts.adminPort,
  };

  const { instances } = loadAll(home);
  const dataDir = resolve(opts.dataDir ?? join(dir, INSTANCE_FILES.data));
  for (const inst of instances) {
    if (view(inst).dataDir === dataDir || inst.record.paths.dataDir === dataDir)
      throw new DkvError(
        ErrorCode.InUse,
        `data directory ${dataDir} is in use by instance ${inst.record.name}`,
      );
  }

  // Ports: the given ones are checked, the others allocated.
  const held = holdersOf(instances);
  const taken = new Set<number>();
  for (const kind of ['client', 'peer', 'admin'] as const) {
    const p = given[kind];
    if (p === undefined || p === 0) continue;
    for (const other of ['client', 'peer', 'admin'] as const)
      if (other !== kind && given[other] === p)
        throw invalid(`the ${other} port and the ${kind} port are both ${p}`);
    await checkGivenPort(kind, p, host, held);
    taken.add(p);
  }
  for (const p of peerSpecs) {
    if (p.name === name) continue;
    taken.add(p.peerPort);
    if (p.clientPort !== undefined) taken.add(p.clientPort);
  }
  const ports = {} as Record<PortKind, number>;
  for (const kind of ['client', 'peer', 'admin'] as const) {
    const p = given[kind];
    ports[kind] = p !== undefined ? p : await allocatePort(kind, host, held, taken);
    taken.add(ports[kind]);
  }

  // The cluster: a 1-node cluster, the --peers list, or the members of a running one.
  let id = opts.id;
  let peers: PeerConfig[] = [];
  let clusterId = opts.clusterId;
  if (peerSpecs.length > 0) {
    const names = [...new Set([...peerSpecs.map((p) => p.name), name])].sort();
    const offset = ports.peer - ports.client;
    peers = peerSpecs
      .filter((p) => p.name !== name)
      .map((p) => {
        const clientPort = p.clientPort ?? p.peerPort - offset;
        if (!(clientPort >= 1 && clientPort <= 65535))
          throw invalid(
            `--peers: ${p.name}'s client port would be ${clientPort} (its peer port ${p.peerPort} minus this instance's peer-client offset ${offset}): give it as ${p.name}=${p.host}:${p.peerPort}:CLIENT_PORT`,
          );
        return { id: names.indexOf(p.name) + 1, host: p.host, peerPort: p.peerPort, clientPort };
      });
    id ??= names.indexOf(name) + 1;
    const clash = peers.find((p) => p.id === id);
    if (clash !== undefined)
      throw invalid(
        `--id ${id} is also the id of ${peerSpecs.find((p) => names.indexOf(p.name) + 1 === id)?.name ?? 'a peer'} (ids are positions in the sorted --peers names)`,
      );
  } else if (joinSeed !== undefined) {
    const joined = await joinPeers(joinSeed, opts.joinTimeoutMs ?? 5000);
    if (clusterId !== undefined && clusterId !== joined.clusterId)
      throw invalid(
        `--cluster-id ${clusterId} differs from the cluster id of ${joinSeed} (${joined.clusterId})`,
      );
    clusterId = joined.clusterId;
    peers = joined.peers;
    id ??= Math.max(...peers.map((p) => p.id)) + 1;
    const me = id;
    if (peers.some((p) => p.id === me))
      throw invalid(`--id ${me} is already a member of the cluster at ${joinSeed}`);
  }
  id ??= 1;

  const paths: InstancePaths = {
    dir,
    configFile: join(dir, INSTANCE_FILES.config),
    dataDir,
    logFile: join(dir, INSTANCE_FILES.log),
    consoleFile: join(dir, INSTANCE_FILES.console),
    pidFile: join(dir, INSTANCE_FILES.pid),
  };
  const config: Record<string, unknown> = {
    id,
    ...(clusterId !== undefined && { clusterId }),
    dataDir,
    host,
    clientPort: ports.client,
    peerPort: ports.peer,
    adminPort: ports.admin,
    peers,
    ...(stores !== undefined && { stores }),
    ...template.config,
    ...(joinSeed !== undefined && { join: true }),
    logFile: paths.logFile,
  };
  try {
    checkNodeConfig(config);
  } catch (err) {
    if (isDkvError(err)) throw new DkvError(err.code, `instance ${name}: ${err.message}`);
    throw err;
  }
  const record: InstanceRecord = {
    name,
    id,
    template: template.name,
    host,
    ports: { clientPort: ports.client, peerPort: ports.peer, adminPort: ports.admin },
    memoryMb: template.memoryMb,
    createdAt: new Date().toISOString(),
    paths,
  };
  mkdirSync(instancesDir(home), { recursive: true });
  try {
    mkdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST')
      throw new DkvError(ErrorCode.AlreadyExists, `instance ${name} already exists in ${home}`);
    throw err;
  }
  try {
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(paths.configFile, `${JSON.stringify(config, null, 2)}\n`);
    writeFileSync(paths.logFile, '', { flag: 'a' });
    writeFileSync(paths.consoleFile, '', { flag: 'a' });
    writeFileSync(join(dir, INSTANCE_FILES.record), `${JSON.stringify(record, null, 2)}\n`);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new DkvError(
      ErrorCode.InvalidArgument,
      `cannot create instance ${name} in ${dir}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  return {
    record,
    status: statusOf({ record, config: checkNodeConfig(config) }, undefined),
    ...(joinSeed !== undefined && { joinSeed }),
  };
}

// ---------------------------------------------------------------------------------------------
// start

/** StartOptions are `dkv instance start`'s options. */
export interface StartOptions {
  /** How long to wait for the node to serve (default 30000 ms). */
  readonly waitMs?: number;
}

/** StartResult says what runs now. */
export interface StartResult {
  readonly name: string;
  readonly pid: number;
  /** host:port of the client port. */
  readonly client: string;
}

/** readFrom reads a file from byte `offset` to its end (at most 1 MiB). */
function readFrom(file: string, offset: number): string {
  try {
    const size = statSync(file).size;
    const len = Math.min(Math.max(0, size - offset), 1 << 20);
    if (len === 0) return '';
    const buf = Buffer.alloc(len);
    const fd = openSync(file, 'r');
    try {
      readSync(fd, buf, 0, len, offset);
    } finally {
      closeSync(fd);
    }
    return buf.toString('utf8');
  } catch {
    return '';
  }
}

function tailText(file: string): string[] {
  const lines = tailOfFile(file, LOG_TAIL_LINES);
  return lines.length === 0 ? [] : [`last lines of ${file}:`, ...lines.map((l) => `  ${l}`)];
}

/** startFailure explains an early exit, with the code of the node's own `error CODE:` line. */
function startFailure(rec: InstanceRecord, how: string, output: string, logFile: string): DkvError {
  let code: ErrorCode = ErrorCode.Unavailable;
  let why = '';
  for (const line of output.split('\n')) {
    const m = /^error ([A-Z_]+): (.*)$/.exec(line);
    if (m !== null && isErrorCode(m[1])) {
      code = m[1];
      why = `: ${m[2]}`;
    }
  }
  return new DkvError(
    code,
    [
      `instance ${rec.name} exited while starting (${how})${why}`,
      ...tailText(rec.paths.consoleFile),
      ...tailText(logFile),
    ].join('\n'),
  );
}

/**
 * startInstance runs the instance's node in the background and waits until it serves. It
 * refuses a running instance, a config.json that fails its check, a port that is not free and
 * a data directory another running instance uses, all before spawning.
 */
export async function startInstance(
  home: string,
  name: string,
  opts: StartOptions = {},
): Promise<StartResult> {
  const inst = loadInstance(resolve(home), name);
  const rec = inst.record;
  const running = livePid(rec);
  if (running !== undefined)
    throw new DkvError(ErrorCode.InUse, `instance ${name} is already running (pid ${running})`);
  const cfg = readNodeConfig(rec.paths.configFile); // names the file and the field
  const { instances } = loadAll(resolve(home));
  const dataDir = resolve(cfg.dataDir);
  for (const other of instances) {
    if (other.record.name === name) continue;
    const pid = livePid(other.record);
    if (pid !== undefined && view(other).dataDir === dataDir)
      throw new DkvError(
        ErrorCode.InUse,
        `data directory ${dataDir} is in use by instance ${other.record.name} (running, pid ${pid})`,
      );
  }
  const runningHolders: Holders = new Map();
  for (const other of instances)
    if (other.record.name !== name && livePid(other.record) !== undefined)
      for (const p of portsOfInstance(other)) runningHolders.set(p.port, other.record.name);
  for (const [kind, port] of [
    ['client', cfg.clientPort],
    ['peer', cfg.peerPort],
    ['admin', cfg.adminPort],
  ] as const) {
    if (port === 0) continue;
    if (!(await portFree(cfg.host, port))) {
      const holder = runningHolders.get(port);
      throw inUse(kind, port, holder !== undefined ? `instance ${holder}` : 'another process');
    }
  }

  const logFile = resolve(cfg.logFile ?? join(cfg.dataDir, 'node.log'));
  const fd = openSync(rec.paths.consoleFile, 'a');
  let child: ChildProcess;
  let offset: number;
  try {
    writeSync(fd, `--- dkv instance start ${name} at ${new Date().toISOString()} ---\n`);
    offset = statSync(rec.paths.consoleFile).size;
    const { command, args } = nodeCommand(rec.paths.configFile);
    const env = { ...process.env };
    delete env.DKV_EXIT_WITH_PARENT;
    child = spawn(command, [`--max-old-space-size=${rec.memoryMb}`, ...args], {
      cwd: rec.paths.dir,
      detached: true,
      stdio: ['ignore', fd, fd],
      env,
    });
  } finally {
    closeSync(fd);
  }
  let exit: string | undefined;
  child.once('exit', (code, signal) => {
    exit = signal !== null ? `signal ${signal}` : `exit code ${code}`;
  });
  child.once('error', (err) => {
    exit = `spawn failed: ${err.message}`;
  });
  child.unref();
  const pid = child.pid;
  if (pid === undefined) {
    await sleep(0); // let the 'error' event arrive
    throw new DkvError(
      ErrorCode.Unavailable,
      `instance ${name}: cannot spawn ${process.execPath}: ${exit ?? 'no pid'}`,
    );
  }
  writeFileSync(rec.paths.pidFile, `${pid}\n`);

  const waitMs = opts.waitMs ?? 30_000;
  const deadline = performance.now() + waitMs;
  const serving = `DKV node ${cfg.id} serving`;
  for (;;) {
    const output = readFrom(rec.paths.consoleFile, offset);
    if (output.includes(serving)) break;
    if (exit !== undefined) {
      rmSync(rec.paths.pidFile, { force: true });
      throw startFailure(rec, exit, output, logFile);
    }
    if (performance.now() >= deadline)
      throw new DkvError(
        ErrorCode.Timeout,
        [
          `instance ${name} did not start serving within ${waitMs} ms; it is still running (pid ${pid}): see its logs, or stop it with dkv instance stop ${name}`,
          ...tailText(rec.paths.consoleFile),
          ...tailText(logFile),
        ].join('\n'),
      );
    await sleep(POLL_MS);
  }
  return { name, pid, client: `${cfg.host}:${cfg.clientPort}` };
}

// ---------------------------------------------------------------------------------------------
// stop, status, list, remove

/** StopResult says what stop did. */
export interface StopResult {
  readonly name: string;
  /** Whether a process was running. */
  readonly wasRunning: boolean;
  readonly pid: number | null;
  /** Whether it had to be killed (SIGKILL) after the timeout. */
  readonly killed: boolean;
}

/** stopInstance stops the node gracefully (SIGTERM), and kills it after `timeoutMs` (default 15000). */
export async function stopInstance(home: string, name: string, timeoutMs = 15_000): Promise<StopResult> {
  const { record: rec } = loadInstance(resolve(home), name);
  const pid = livePid(rec);
  if (pid === undefined) return { name, wasRunning: false, pid: null, killed: false };
  const signal = (sig: NodeJS.Signals): void => {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  };
  signal('SIGTERM');
  let killed = false;
  if (!(await waitGone(pid, rec.paths.configFile, timeoutMs))) {
    killed = true;
    signal('SIGKILL');
    if (!(await waitGone(pid, rec.paths.configFile, KILL_WAIT_MS)))
      throw new DkvError(
        ErrorCode.Unavailable,
        `instance ${name} (pid ${pid}) survived SIGKILL for ${KILL_WAIT_MS} ms`,
      );
  }
  rmSync(rec.paths.pidFile, { force: true });
  return { name, wasRunning: true, pid, killed };
}

function statusOf(inst: Instance, pid: number | undefined): InstanceStatus {
  const v = view(inst);
  return {
    name: inst.record.name,
    running: pid !== undefined,
    pid: pid ?? null,
    clientPort: v.clientPort,
    peerPort: v.peerPort,
    adminPort: v.adminPort,
    dataDir: v.dataDir,
    logFile: v.logFile,
    configFile: inst.record.paths.configFile,
    id: v.id,
    template: inst.record.template,
    host: v.host,
  };
}

/** fetchHealth reads a node's `GET /health` (any status code); undefined when it does not answer. */
async function fetchHealth(host: string, port: number, timeoutMs: number): Promise<unknown> {
  const h = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  try {
    const res = await fetch(`http://${h.includes(':') ? `[${h}]` : h}:${port}/health`, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    return (await res.json()) as unknown;
  } catch {
    return undefined;
  }
}

/** instanceStatus describes one instance; with a running node, its /health answer too. */
export async function instanceStatus(
  home: string,
  name: string,
  healthTimeoutMs = 1000,
): Promise<InstanceStatus> {
  const inst = loadInstance(resolve(home), name);
  const pid = livePid(inst.record);
  const s = statusOf(inst, pid);
  if (pid === undefined || s.adminPort === 0) return s;
  const health = await fetchHealth(s.host, s.adminPort, healthTimeoutMs);
  return health === undefined ? s : { ...s, health };
}

/** listInstances describes every instance of the home (without health), by name. */
export function listInstances(home: string): { instances: InstanceStatus[]; problems: string[] } {
  const { instances, problems } = loadAll(resolve(home));
  return { instances: instances.map((i) => statusOf(i, livePid(i.record))), problems };
}

/** RemoveResult says what remove did. */
export interface RemoveResult {
  readonly name: string;
  /** Set when --force stopped a running node first. */
  readonly stopped?: StopResult;
  /** A --data-dir outside the instance directory, which is kept. */
  readonly keptDataDir?: string;
}

/** removeInstance deletes an instance; a running one only with `force` (which stops it first). */
export async function removeInstance(
  home: string,
  name: string,
  opts: { force?: boolean; timeoutMs?: number } = {},
): Promise<RemoveResult> {
  const inst = loadInstance(resolve(home), name);
  const pid = livePid(inst.record);
  let stopped: StopResult | undefined;
  if (pid !== undefined) {
    if (opts.force !== true)
      throw new DkvError(
        ErrorCode.InUse,
        `instance ${name} is running (pid ${pid}): stop it first (dkv instance stop ${name}), or use --force`,
      );
    stopped = await stopInstance(home, name, opts.timeoutMs);
  }
  const dir = inst.record.paths.dir;
  const dataDir = view(inst).dataDir;
  const rel = relative(dir, dataDir);
  const outside = rel.startsWith('..') || isAbsolute(rel);
  rmSync(dir, { recursive: true, force: true });
  return { name, ...(stopped !== undefined && { stopped }), ...(outside && { keptDataDir: dataDir }) };
}
