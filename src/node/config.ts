/**
 * A node's configuration: who it is, where it listens, who its peers are, the stores it
 * bootstraps, and its timing. `checkNodeConfig` validates a parsed config file and fills in
 * the defaults, with an error that names the bad field.
 */
import { DkvError, ErrorCode } from '../errors.js';

/** PeerConfig is another member of the cluster. */
export interface PeerConfig {
  readonly id: number;
  readonly host: string;
  readonly peerPort: number;
  readonly clientPort: number;
}

/** TlsConfig names the PEM files of the node's TLS set-up (all three are required). */
export interface TlsConfig {
  /** The CA that signed every node's certificate (and the client certificates accepted). */
  readonly ca: string;
  /** This node's certificate: CN `node-<id>`, subjectAltName covering its host. */
  readonly cert: string;
  readonly key: string;
}

/** AuthConfig turns authentication on: every client connection must authenticate first. */
export interface AuthConfig {
  /** The auth file (users, roles, tokens; `dkv auth init` makes one), re-read when it changes. */
  readonly file: string;
}

/**
 * StoreQuotas bound what one store may hold. Keys, bytes, leases and locks are enforced per
 * partition group, as an equal share of the store's figure (ceil(quota / partitions)); watches
 * per node. 0 is unlimited.
 */
export interface StoreQuotas {
  readonly keys: number;
  /** Keys' UTF-8 bytes plus values' encoded bytes. */
  readonly bytes: number;
  readonly watches: number;
  readonly leases: number;
  readonly locks: number;
}

/** QUOTA_DEFAULTS apply to a store created without its own quotas. */
export const QUOTA_DEFAULTS: StoreQuotas = Object.freeze({
  keys: 10_000_000,
  bytes: 2 * 1024 ** 3,
  watches: 100_000,
  leases: 1_000_000,
  locks: 1_000_000,
});

/** checkQuotas validates a (partial) quotas object and fills in `base` for what it leaves out. */
export function checkQuotas(raw: unknown, base: StoreQuotas, field = 'quotas'): StoreQuotas {
  if (raw === undefined) return base;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw bad(field, 'an object of keys, bytes, watches, leases, locks');
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o))
    if (!(k in base)) throw bad(`${field}.${k}`, 'one of keys, bytes, watches, leases, locks');
  const out: Record<string, number> = { ...base };
  for (const k of Object.keys(base)) if (o[k] !== undefined) out[k] = int(o, k, 0, Number.MAX_SAFE_INTEGER);
  return out as unknown as StoreQuotas;
}

/** StoreBootstrap is a store created when the cluster is first formed. */
export interface StoreBootstrap {
  readonly name: string;
  readonly partitions: number;
}

export interface NodeConfig {
  readonly id: number;
  readonly clusterId: string;
  readonly dataDir: string;
  readonly host: string;
  readonly clientPort: number;
  readonly peerPort: number;
  /** 0: no admin HTTP port. */
  readonly adminPort: number;
  /** Every member but this one. */
  readonly peers: readonly PeerConfig[];
  /** Stores created when the cluster is formed (ignored once the data directory holds groups). */
  readonly stores: readonly StoreBootstrap[];
  /** Raft tick interval (ms); elections take electionTicks..2*electionTicks ticks. */
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  /** Entries applied since the last snapshot that trigger a new one. */
  readonly snapshotEntries: number;
  /** Entries kept behind a snapshot for followers catching up. */
  readonly snapshotTailEntries: number;
  /** Requests waiting in the node (proposals and reads) beyond which new ones get OVERLOADED. */
  readonly pendingMax: number;
  /** Client requests in flight per connection. */
  readonly inFlightMax: number;
  /** Largest frame on any port. */
  readonly frameBytesMax: number;
  /**
   * Keys, values and transactions are refused at the door (TOO_LARGE, INVALID_ARGUMENT) past
   * these. They can only be lowered: the state machine's own limits (4 KiB, 1 MiB, 128), the
   * same on every replica, are the ceiling.
   */
  readonly keyBytesMax: number;
  readonly valueBytesMax: number;
  readonly txnOpsMax: number;
  /** Client connections at once; more are closed on accept. */
  readonly connectionsMax: number;
  /** Unsent output of a connection past which its streams (watches) get SLOW_CONSUMER. */
  readonly streamOutBytesMax: number;
  /** Events a watcher may have queued before it is cut off (SLOW_CONSUMER). */
  readonly watchBufferMax: number;
  /** Bytes a group's leader may hold proposed but uncommitted before OVERLOADED. */
  readonly uncommittedBytesMax: number;
  /**
   * Load shedding by waiting time: while a group's oldest proposal has waited longer than
   * this, new client commands to that group get OVERLOADED at once (0: off). The node's own
   * proposals (lease keep-alives, ticks) are never shed. This is what bounds
   * the latency of accepted requests under overload; pendingMax only bounds memory.
   */
  readonly shedWaitMs: number;
  /** How long a proposal or read may wait inside the node before it answers TIMEOUT. */
  readonly requestWaitMs: number;
  /** Move leaderships to each group's preferred replica (spreads leaders over the nodes). */
  readonly balanceLeaders: boolean;
  /**
   * join: this node joins a running cluster (`dkv cluster add-member`) instead of forming one:
   * it bootstraps no group, and waits for the cluster to add it. `peers` are the members it
   * knows of to start with; it learns the rest from the metadata group.
   */
  readonly join: boolean;
  /** The node's log file (default `<dataDir>/node.log`). */
  readonly logFile: string | undefined;
  /** TLS on every port (client: TLS; peer: mutual TLS; admin: HTTPS); undefined: plain TCP. */
  readonly tls: TlsConfig | undefined;
  /** Authentication and permissions; undefined: every client may do everything. */
  readonly auth: AuthConfig | undefined;
  /** Quotas of stores created without their own. */
  readonly quotas: StoreQuotas;
}

export const NODE_DEFAULTS = Object.freeze({
  clusterId: 'dkv',
  host: '127.0.0.1',
  adminPort: 0,
  stores: [{ name: 'default', partitions: 6 }],
  tickMs: 100,
  electionTicks: 10,
  heartbeatTicks: 1,
  snapshotEntries: 10_000,
  snapshotTailEntries: 2_000,
  pendingMax: 20_000,
  inFlightMax: 1024,
  frameBytesMax: 16 << 20,
  keyBytesMax: 4096,
  valueBytesMax: 1 << 20,
  txnOpsMax: 128,
  connectionsMax: 4096,
  streamOutBytesMax: 8 << 20,
  watchBufferMax: 1000,
  uncommittedBytesMax: 64 << 20,
  requestWaitMs: 15_000,
  shedWaitMs: 200,
  balanceLeaders: true,
  join: false,
});

function bad(field: string, want: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, `config: ${field} must be ${want}`);
}

function int(o: Record<string, unknown>, field: string, min: number, max: number, dflt?: number): number {
  const v = o[field] ?? dflt;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max)
    throw bad(field, `an integer in [${min}, ${max}]`);
  return v;
}

function str(o: Record<string, unknown>, field: string, dflt?: string): string {
  const v = o[field] ?? dflt;
  if (typeof v !== 'string' || v.length === 0) throw bad(field, 'a non-empty string');
  return v;
}

/** checkNodeConfig validates a parsed config and fills in defaults. */
export function checkNodeConfig(raw: unknown): NodeConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('the config', 'an object');
  const o = raw as Record<string, unknown>;
  const known = [
    'id',
    'clusterId',
    'dataDir',
    'host',
    'clientPort',
    'peerPort',
    'adminPort',
    'peers',
    'stores',
    'tickMs',
    'electionTicks',
    'heartbeatTicks',
    'snapshotEntries',
    'snapshotTailEntries',
    'pendingMax',
    'inFlightMax',
    'frameBytesMax',
    'keyBytesMax',
    'valueBytesMax',
    'txnOpsMax',
    'connectionsMax',
    'streamOutBytesMax',
    'watchBufferMax',
    'uncommittedBytesMax',
    'requestWaitMs',
    'shedWaitMs',
    'balanceLeaders',
    'join',
    'logFile',
    'tls',
    'auth',
    'quotas',
  ];
  for (const k of Object.keys(o))
    if (!known.includes(k)) throw bad(k, `one of the known fields (${known.join(', ')})`);
  const id = int(o, 'id', 1, 0xffff);
  if (!Array.isArray(o.peers)) throw bad('peers', 'an array of { id, host, peerPort, clientPort }');
  const peers = o.peers.map((p, i): PeerConfig => {
    if (typeof p !== 'object' || p === null) throw bad(`peers[${i}]`, 'an object');
    const q = p as Record<string, unknown>;
    return {
      id: int(q, 'id', 1, 0xffff),
      host: str(q, 'host'),
      peerPort: int(q, 'peerPort', 1, 65535),
      clientPort: int(q, 'clientPort', 1, 65535),
    };
  });
  const ids = new Set([id, ...peers.map((p) => p.id)]);
  if (ids.size !== peers.length + 1) throw bad('peers', 'distinct ids, none equal to this node id');
  const storesRaw = o.stores ?? NODE_DEFAULTS.stores;
  if (!Array.isArray(storesRaw)) throw bad('stores', 'an array of { name, partitions }');
  const stores = storesRaw.map((s, i): StoreBootstrap => {
    if (typeof s !== 'object' || s === null) throw bad(`stores[${i}]`, 'an object');
    const q = s as Record<string, unknown>;
    const name = str(q, 'name');
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name))
      throw bad(`stores[${i}].name`, 'letters, digits, _ . - (1 to 64)');
    return { name, partitions: int(q, 'partitions', 1, 256) };
  });
  const balance = o.balanceLeaders ?? NODE_DEFAULTS.balanceLeaders;
  if (typeof balance !== 'boolean') throw bad('balanceLeaders', 'true or false');
  const join = o.join ?? NODE_DEFAULTS.join;
  if (typeof join !== 'boolean') throw bad('join', 'true or false');
  const logFile = o.logFile === undefined ? undefined : str(o, 'logFile');
  const obj = (field: string, fields: string[]): Record<string, unknown> | undefined => {
    const v = o[field];
    if (v === undefined) return undefined;
    if (typeof v !== 'object' || v === null || Array.isArray(v))
      throw bad(field, `an object of ${fields.join(', ')}`);
    for (const k of Object.keys(v))
      if (!fields.includes(k)) throw bad(`${field}.${k}`, `one of ${fields.join(', ')}`);
    return v as Record<string, unknown>;
  };
  const tlsRaw = obj('tls', ['ca', 'cert', 'key']);
  const tls =
    tlsRaw === undefined
      ? undefined
      : { ca: str(tlsRaw, 'ca'), cert: str(tlsRaw, 'cert'), key: str(tlsRaw, 'key') };
  const authRaw = obj('auth', ['file']);
  const auth = authRaw === undefined ? undefined : { file: str(authRaw, 'file') };
  const cfg: NodeConfig = {
    id,
    clusterId: str(o, 'clusterId', NODE_DEFAULTS.clusterId),
    dataDir: str(o, 'dataDir'),
    host: str(o, 'host', NODE_DEFAULTS.host),
    clientPort: int(o, 'clientPort', 0, 65535),
    peerPort: int(o, 'peerPort', 0, 65535),
    adminPort: int(o, 'adminPort', 0, 65535, NODE_DEFAULTS.adminPort),
    peers,
    stores,
    tickMs: int(o, 'tickMs', 1, 10_000, NODE_DEFAULTS.tickMs),
    electionTicks: int(o, 'electionTicks', 2, 1000, NODE_DEFAULTS.electionTicks),
    heartbeatTicks: int(o, 'heartbeatTicks', 1, 1000, NODE_DEFAULTS.heartbeatTicks),
    snapshotEntries: int(o, 'snapshotEntries', 10, 100_000_000, NODE_DEFAULTS.snapshotEntries),
    snapshotTailEntries: int(o, 'snapshotTailEntries', 0, 100_000_000, NODE_DEFAULTS.snapshotTailEntries),
    pendingMax: int(o, 'pendingMax', 1, 10_000_000, NODE_DEFAULTS.pendingMax),
    inFlightMax: int(o, 'inFlightMax', 1, 1_000_000, NODE_DEFAULTS.inFlightMax),
    frameBytesMax: int(o, 'frameBytesMax', 1024, 1 << 30, NODE_DEFAULTS.frameBytesMax),
    keyBytesMax: int(o, 'keyBytesMax', 1, NODE_DEFAULTS.keyBytesMax, NODE_DEFAULTS.keyBytesMax),
    valueBytesMax: int(o, 'valueBytesMax', 1, NODE_DEFAULTS.valueBytesMax, NODE_DEFAULTS.valueBytesMax),
    txnOpsMax: int(o, 'txnOpsMax', 1, NODE_DEFAULTS.txnOpsMax, NODE_DEFAULTS.txnOpsMax),
    connectionsMax: int(o, 'connectionsMax', 1, 1_000_000, NODE_DEFAULTS.connectionsMax),
    streamOutBytesMax: int(o, 'streamOutBytesMax', 1 << 16, 1 << 30, NODE_DEFAULTS.streamOutBytesMax),
    watchBufferMax: int(o, 'watchBufferMax', 1, 1_000_000, NODE_DEFAULTS.watchBufferMax),
    uncommittedBytesMax: int(o, 'uncommittedBytesMax', 1 << 16, 1 << 30, NODE_DEFAULTS.uncommittedBytesMax),
    requestWaitMs: int(o, 'requestWaitMs', 1, 3_600_000, NODE_DEFAULTS.requestWaitMs),
    shedWaitMs: int(o, 'shedWaitMs', 0, 3_600_000, NODE_DEFAULTS.shedWaitMs),
    balanceLeaders: balance,
    join,
    logFile,
    tls,
    auth,
    quotas: checkQuotas(o.quotas, QUOTA_DEFAULTS),
  };
  if (cfg.heartbeatTicks >= cfg.electionTicks) throw bad('heartbeatTicks', 'less than electionTicks');
  return cfg;
}
