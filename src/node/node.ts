/**
 * DkvNode is one DKV process: it hosts the metadata group and a replica of every partition
 * group it is given, in one LevelDB (NodeStorage), behind one peer transport and one client
 * port.
 *
 * One event-loop round (`round`) drives every group:
 *   1. Reads queued since the last round go out as one ReadIndex per group (batching).
 *   2. Every group's Ready is collected.
 *   3. They are persisted together: one synced LevelDB batch (group commit).
 *   4. Only then are their messages sent (one frame per peer: the transport batches).
 *   5. Committed entries are applied, answering the proposals they decide.
 *   6. Reads whose index is applied are answered; the Readies are advanced.
 * Rounds never overlap; work that arrives during one (messages, proposals, ticks) is picked
 * up by the next. A tick timer drives every group's Raft clock, proposes `tick` entries for
 * groups whose state machine has a deadline due, and expires requests that waited too long.
 *
 * Routing: a key's slot (crc32 of the key or its {hash tag}, mod 1024) belongs to one
 * partition group; the node answers WRONG_GROUP for a group it has no replica of and
 * NOT_LEADER (with the leader's client address) when it is not the group's leader.
 * Linearizable reads go through a batched ReadIndex on the leader; serializable reads are
 * served from the local replica.
 *
 * Time: the node reads clocks only through its Clock (`clock` option; the machine's by
 * default). Replicated time, which stamps proposed entries and hides expired keys from
 * reads, runs on the monotonic clock from an anchor each leader takes (`replicatedNow`);
 * wall time only starts a new group's clock. Monotonic time also bounds how long requests
 * wait and paces keep-alives, so a wall-clock jump neither ends a lease early, nor expires
 * every waiter at once, nor stalls them.
 *
 * Control plane (metadata.ts, status.ts): the node reads the cluster's layout from its own
 * metadata replica (`reloadMeta`) and reconciles its replicas with it between Readies
 * (`maintain`: create the replicas the targets name, delete the ones moved away or of a deleted
 * store). Every CONTROL_EVERY_MS the control loop moves the membership of each group this node
 * leads one step toward its target (`confSteps`), configures the store's indexes
 * (`indexSteps`), spreads leaders (`balanceLeaders`), and on the metadata leader runs
 * placement (`place`). Admin actions (`admin` op) run on the metadata leader, one at a time,
 * each one epoch-compared transaction. `status` merges every member's `nodeStatus`.
 *
 * Test hooks (test-hooks.ts; only `dkv node` sets them, from DKV_TEST_HOOKS): a SkewedClock,
 * and planted bugs: `stale-read` here (any replica answers linearizable reads locally),
 * `no-fsync` in NodeStorage, and the others in the state machine config.
 */
import { statfsSync } from 'node:fs';
import { type Clock, systemClock } from '../clock.js';
import { type IndexDef, IndexManager } from '../engines/index-manager.js';
import { DkvError, ErrorCode, isDkvError, quote } from '../errors.js';
import {
  type ConfChange,
  ConfChangeTransition,
  ConfChangeType,
  type ConfState,
  EMPTY_CONF_STATE,
  type Message,
  MessageType,
  type Ready,
} from '../raft/index.js';
import { SeededRandom } from '../random.js';
import { encodeEnvelope, valueBytes } from '../statemachine/codec.js';
import { type Command, validateCommand } from '../statemachine/commands.js';
import { SESSION_DEFAULTS } from '../statemachine/sessions.js';
import { NodeStorage, type PersistItem } from '../storage/node-storage.js';
import {
  type Address,
  type LogFn,
  PeerTransport,
  RpcClient,
  type RpcContext,
  RpcServer,
  type StreamSink,
} from '../transport/index.js';
import {
  CLIENT_OPS,
  type ClusterStatus,
  type CmdArgs,
  type Consistency,
  checkCredentials,
  type GroupStatus,
  type Hello,
  type KeepAliveArgs,
  type MemberStatus,
  type NodeStatus,
  type PartitionMap,
  type ReadArgs,
  type ReadRequest,
  SLOT_COUNT,
  type WatchArgs,
} from '../transport/protocol.js';
import { evenSlots, slotOf } from '../transport/slots.js';
import type { SocketFactory } from '../transport/sockets.js';
import { certCommonName, readTlsFiles, type TlsMaterial, tlsSockets } from '../transport/tls.js';
import { ALL_ACCESS, Authenticator, authorize, needsOf, type Principal } from './auth.js';
import { checkQuotas, NODE_DEFAULTS, type NodeConfig, type StoreQuotas } from './config.js';
import { GroupReplica, type ReadWaiter } from './group.js';
import {
  groupTargets,
  METADATA_GROUP,
  type Meta,
  MetaKeys,
  type MetaMember,
  type MetaStore,
  metaLearnerTarget,
  metaVoterTarget,
  nextConfStep,
  type PlacementChange,
  planPlacement,
  planStore,
  preferredLeaders,
  readMeta,
} from './metadata.js';
import type { GroupStats, NodeObserver } from './observer.js';
import { type PeerMessage, validatePeerMessage } from './raft-wire.js';
import { actualMembership, mergeStatus } from './status.js';
import { NO_FSYNC_FLUSH_MS, NO_TEST_HOOKS, stateMachineBugConfig, type TestHooks } from './test-hooks.js';

export { METADATA_GROUP } from './metadata.js';
/** REPLICAS is how many replicas each partition group has (fewer when the cluster is smaller). */
export const REPLICAS = 3;
/** How often the control loop runs (membership steps, leader balance, placement). */
const CONTROL_EVERY_MS = 500;
/** Leaderships are moved toward each group's preferred replica every this many control rounds. */
const BALANCE_EVERY_ROUNDS = 4;
/** The placement planner (on the metadata leader) runs every this many control rounds. */
const PLACE_EVERY_ROUNDS = 2;
/** Replica moves running at once, cluster-wide (the rate limit of rebalancing). */
const MOVES_MAX = 2;
/** How long a node waits for a peer's nodeStatus when gathering the cluster's status. */
const STATUS_TIMEOUT_MS = 1000;
/** A request slower than this is logged at warn level with its request id. */
const SLOW_REQUEST_MS = 1000;
/** A learner this close to the commit index counts as caught up (promotion, joining). */
const CATCH_UP_ENTRIES = 64;

/** StoreLayout is a store's partition groups and the slots each owns. */
interface StoreLayout {
  readonly name: string;
  readonly epoch: number;
  readonly groups: { id: number; slots: [number, number][]; replicas: number[] }[];
  /** slotGroup[slot] is the group id that owns it. */
  readonly slotGroup: Int32Array;
  /** The store's own quotas (else the node's defaults). */
  readonly quotas?: StoreQuotas | undefined;
}

/** KeepAliveStream is one open `keepalive` stream. */
interface KeepAliveStream {
  readonly sink: StreamSink;
  readonly intervalMs: number;
  nextAt: number;
  inFlight: boolean;
}

/** INPROC_CONTEXT stands for the connection of an in-process (embedded) request. */
const INPROC_CONTEXT: RpcContext = {
  id: 0,
  op: '',
  connectionId: 0,
  remoteAddress: 'inproc',
  signal: new AbortController().signal,
  session: { principal: ALL_ACCESS, certCommonName: undefined },
};

/** WATCH_DRAIN_RETRY_MS is how soon a watch stream whose socket was full tries again. */
const WATCH_DRAIN_RETRY_MS = 5;

/** KEEPALIVE_INTERVAL_MIN_MS bounds how often one stream may renew its lease. */
const KEEPALIVE_INTERVAL_MIN_MS = 100;

export interface DkvNodeOptions {
  readonly log?: LogFn;
  /**
   * onFatal is told when the node had to stop by itself (its storage failed, so it can no
   * longer acknowledge anything safely); a process should log it and exit non-zero.
   */
  readonly onFatal?: (err: unknown) => void;
  /**
   * network false runs the node with no sockets at all (embedded mode): no peer transport and
   * no client port; requests come through `handle` and `openStream`. Only a node with no
   * peers may run so.
   */
  readonly network?: boolean;
  /** clock is where the node reads time (default: the machine's clocks). */
  readonly clock?: Clock;
  /**
   * testHooks plant the test-only bugs (test-hooks.ts); default none. Only the process entry
   * (main.ts, from DKV_TEST_HOOKS) sets them.
   */
  readonly testHooks?: TestHooks;
  /** observer is told about requests, commits, leader changes and snapshots (metrics). */
  readonly observer?: NodeObserver;
  /** debugLog: log every request (with its request id) at debug level (default false). */
  readonly debugLog?: boolean;
}

function noLog(): void {}

function hostPort(a: Address): string {
  return `${a.host}:${a.port}`;
}

/**
 * layoutOf computes the cluster's layout from its configuration, the same on every node:
 * the metadata group on (up to) the first five members, then each store's partition groups
 * numbered from 1 in config order, each on REPLICAS members chosen round-robin, each owning
 * an even share of the slots.
 */
export function layoutOf(cfg: NodeConfig): { metadataReplicas: number[]; stores: StoreLayout[] } {
  const members = [cfg.id, ...cfg.peers.map((p) => p.id)].sort((a, b) => a - b);
  const metadataReplicas = members.slice(0, Math.min(5, members.length));
  const replicasOf = (i: number): number[] => {
    const n = Math.min(REPLICAS, members.length);
    const out: number[] = [];
    for (let k = 0; k < n; k++) out.push(members[(i + k) % members.length]!);
    return out.sort((a, b) => a - b);
  };
  let next = 1;
  const stores = cfg.stores.map((s): StoreLayout => {
    const ranges = evenSlots(s.partitions);
    const slotGroup = new Int32Array(SLOT_COUNT);
    const groups = ranges.map((r) => {
      const id = next++;
      slotGroup.fill(id, r[0], r[1]);
      return { id, slots: [r], replicas: replicasOf(id - 1) };
    });
    return { name: s.name, epoch: 1, groups, slotGroup };
  });
  return { metadataReplicas, stores };
}

function confOf(voters: number[]): ConfState {
  return { ...EMPTY_CONF_STATE, voters: [...voters] };
}

/** storeLayoutOf builds the routing view of a store from its metadata record. */
function storeLayoutOf(s: MetaStore): StoreLayout {
  const slotGroup = new Int32Array(SLOT_COUNT);
  for (const g of s.groups) for (const [a, b] of g.slots) slotGroup.fill(g.id, a, b);
  return {
    name: s.name,
    epoch: s.epoch,
    groups: s.groups.map((g) => ({ id: g.id, slots: g.slots, replicas: g.replicas })),
    slotGroup,
    quotas: s.quotas,
  };
}

function parseHostPort(a: string): Address | undefined {
  const i = a.lastIndexOf(':');
  const port = Number(a.slice(i + 1));
  if (i <= 0 || !Number.isSafeInteger(port) || port < 1 || port > 65535) return undefined;
  return { host: a.slice(0, i), port };
}

export class DkvNode {
  readonly id: number;
  private readonly cfg: NodeConfig;
  private readonly log: LogFn;
  private readonly onFatal: ((err: unknown) => void) | undefined;
  private readonly clock: Clock;
  private readonly hooks: TestHooks;
  private readonly observer: NodeObserver;
  private readonly debugLog: boolean;
  private readonly storage: NodeStorage;
  private readonly groups = new Map<number, GroupReplica>();
  /** The layout the configuration bootstraps (used until the metadata is published). */
  private readonly layout: ReturnType<typeof layoutOf>;
  private storeByName = new Map<string, StoreLayout>();
  private storeOfGroup = new Map<number, string>();
  private readonly peerUp = new Map<number, boolean>();
  private readonly clientAddrOf = new Map<number, string>();
  /** The metadata as this node's metadata replica last applied it (undefined: not yet). */
  private meta: Meta | undefined;
  /** The metadata group's applied index when `meta` was read. */
  private metaReadAt = -1;
  /** Set when the hosted groups must be reconciled with the metadata (next round). */
  private maintenance = true;
  private controlRounds = 0;
  private controlBusy = false;
  /** Admin actions and placement run one at a time (on the metadata leader). */
  private adminChain: Promise<unknown> = Promise.resolve();
  /** Connections to peers' client ports, for gathering the cluster status. */
  private readonly statusClients = new Map<string, Promise<RpcClient>>();
  /** The last gathered node reports (by member id) and when (monotonic ms). */
  private lastReports: { at: number; reports: Map<number, NodeStatus> } | undefined;
  private transport: PeerTransport<PeerMessage> | undefined;
  private rpc: RpcServer | undefined;
  /** TLS material (config `tls`), loaded at construction. */
  private readonly tls: TlsMaterial | undefined;
  /** Authentication (config `auth`); undefined: every client may do everything. */
  private readonly auth: Authenticator | undefined;
  /** Open watch streams of this node, by store (the watches quota). */
  private readonly watchesByStore = new Map<string, number>();
  /** Proposals refused by shedReason (waiting time, session window). */
  shedCount = 0;
  /** Failed TLS handshakes and authentications (metrics, tests). */
  readonly securityStats = {
    tlsHandshakeFailures: 0,
    authFailures: 0,
    permissionDenied: 0,
    quotaExceeded: 0,
  };
  private ticker: NodeJS.Timeout | undefined;
  private balancer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private stopped = false;
  private readSeq = 0;
  /** Keep-alive streams, by group, then lease. */
  private readonly keepAlives = new Map<number, Map<number, KeepAliveStream>>();

  private constructor(cfg: NodeConfig, storage: NodeStorage, log: LogFn, opts: DkvNodeOptions) {
    this.id = cfg.id;
    this.cfg = cfg;
    this.storage = storage;
    this.log = log;
    this.onFatal = opts.onFatal;
    this.clock = opts.clock ?? systemClock;
    this.hooks = opts.testHooks ?? NO_TEST_HOOKS;
    this.observer = opts.observer ?? {};
    this.debugLog = opts.debugLog === true;
    this.layout = layoutOf(cfg);
    for (const s of this.layout.stores) {
      this.storeByName.set(s.name, s);
      for (const g of s.groups) this.storeOfGroup.set(g.id, s.name);
    }
    for (const p of cfg.peers) this.clientAddrOf.set(p.id, `${p.host}:${p.clientPort}`);
    this.tls = cfg.tls === undefined ? undefined : readTlsFiles(cfg.tls);
    this.auth = cfg.auth === undefined ? undefined : Authenticator.fromFile(cfg.auth.file, log);
  }

  /** socketsFor makes the TLS socket factory of one port (undefined: plain TCP). */
  private socketsFor(port: 'client' | 'peer'): SocketFactory | undefined {
    if (this.tls === undefined) return undefined;
    return tlsSockets(this.tls, {
      requireClientCert: port === 'peer',
      onHandshakeError: (err, remote) => {
        this.securityStats.tlsHandshakeFailures++;
        this.log('warn', 'tls handshake refused', { port, remote, err: err.message });
      },
    });
  }

  /** checkPeerCert: with TLS, a peer's certificate must be the one of the node id it claims. */
  private checkPeerCert(socket: import('node:net').Socket, nodeId: number): string | undefined {
    if (this.tls === undefined) return undefined;
    const cn = certCommonName(socket);
    return cn === `node-${nodeId}`
      ? undefined
      : `node ${nodeId} presented the certificate of ${cn === undefined ? 'nobody' : quote(cn)}`;
  }

  /** internalClient connects to another node's client port, authenticated as a node. */
  private async internalClient(address: Address, timeoutMs: number): Promise<RpcClient> {
    const sockets = this.socketsFor('client');
    const c = await RpcClient.connect({
      ...address,
      frameBytesMax: this.cfg.frameBytesMax,
      connectTimeoutMs: timeoutMs,
      ...(sockets && { sockets }),
    });
    if (this.auth !== undefined) {
      try {
        await c.call('auth', { token: this.auth.nodeToken }, { timeoutMs });
      } catch (err) {
        await c.close();
        throw err;
      }
    }
    return c;
  }

  /**
   * start opens the node's storage (creating its groups on first start), joins the peer
   * network and opens the client port. Any failure closes what was opened and rethrows.
   */
  static async start(cfg: NodeConfig, opts: DkvNodeOptions = {}): Promise<DkvNode> {
    const log = opts.log ?? noLog;
    const noFsync = opts.testHooks?.bugs.has('no-fsync') === true;
    const storage = await NodeStorage.open(
      cfg.dataDir,
      {},
      noFsync ? { unsafeDeferWritesMs: NO_FSYNC_FLUSH_MS } : {},
    );
    const node = new DkvNode(cfg, storage, log, opts);
    try {
      await node.openGroups();
      if (opts.network === false) {
        if (cfg.peers.length > 0)
          throw new DkvError(ErrorCode.InvalidArgument, 'a node without network has no peers');
      } else {
        await node.openNetwork();
      }
    } catch (err) {
      await node.closeAll();
      throw err;
    }
    node.ticker = setInterval(() => node.onTick(), cfg.tickMs);
    node.schedule();
    node.balancer = setInterval(() => node.controlTick(), CONTROL_EVERY_MS);
    log('info', 'node started', {
      node: cfg.id,
      groups: node.groups.size,
      client: hostPort(node.clientAddress()),
      peer: hostPort(node.peerAddress()),
    });
    return node;
  }

  private async openGroups(): Promise<void> {
    const failed = this.storage.failedGroupIds();
    if (failed.length > 0) {
      throw new DkvError(
        ErrorCode.Corrupted,
        `groups ${failed.join(', ')} failed their checks at start-up: ${failed.map((g) => this.storage.failure(g)?.message).join('; ')}`,
      );
    }
    const stored = this.storage.groupIds();
    if (stored.length === 0) {
      // First start. A joining node bootstraps nothing: it waits for the cluster to make it
      // a learner of the metadata group. Otherwise the configured layout is bootstrapped,
      // identically on every node, and published into the metadata group by its first leader.
      if (this.cfg.join) {
        await this.storage.createGroup(METADATA_GROUP);
      } else {
        const wanted: { id: number; replicas: number[] }[] = [
          { id: METADATA_GROUP, replicas: this.layout.metadataReplicas },
          ...this.layout.stores.flatMap((s) => s.groups),
        ];
        for (const g of wanted) {
          if (g.replicas.includes(this.id)) await this.storage.createGroup(g.id, confOf(g.replicas));
        }
      }
    }
    // On a restart the stored groups are this node's replicas, and the metadata (replayed from
    // the metadata group's log in the first rounds) says what they are; until then routing
    // uses the configured layout.
    for (const id of this.storage.groupIds()) await this.openGroup(id);
    this.reloadMeta();
  }

  /** openGroup opens the replica of a stored group and adds it to the node. */
  private async openGroup(id: number): Promise<GroupReplica> {
    const gs = this.storage.group(id);
    if (!gs) throw new DkvError(ErrorCode.NotFound, `group ${id} is not stored on node ${this.id}`);
    const replica = await GroupReplica.open({
      id,
      store: this.storeOfGroup.get(id) ?? '',
      nodeId: this.id,
      storage: gs,
      random: new SeededRandom((this.id * 7919 + id * 104729 + this.clock.nowMs()) >>> 0),
      electionTicks: this.cfg.electionTicks,
      heartbeatTicks: this.cfg.heartbeatTicks,
      uncommittedBytesMax: this.cfg.uncommittedBytesMax,
      stateMachine: {
        tickMs: this.cfg.tickMs,
        watch: { historyMax: 10_000, bufferMax: this.cfg.watchBufferMax },
        ...stateMachineBugConfig(this.hooks.bugs),
      },
    });
    gs.onFetched = () => {
      replica.raw.entriesFetched();
      this.schedule();
    };
    this.groups.set(id, replica);
    // The only voter need not wait out an election timeout.
    const voters = replica.confState.voters;
    if (voters.length === 1 && voters[0] === this.id) replica.raw.campaign();
    return replica;
  }

  private async openNetwork(): Promise<void> {
    const peers = new Map<number, Address>();
    for (const p of this.cfg.peers) {
      peers.set(p.id, { host: p.host, port: p.peerPort });
      this.peerUp.set(p.id, false);
    }
    this.transport = new PeerTransport<PeerMessage>({
      nodeId: this.id,
      clusterId: this.cfg.clusterId,
      listen: { host: this.cfg.host, port: this.cfg.peerPort },
      peers,
      frameBytesMax: this.cfg.frameBytesMax,
      queueBytesMax: 64 << 20,
      reconnect: { initialDelayMs: 50, maxDelayMs: 1000, multiplier: 2, jitter: 0.2 },
      random: new SeededRandom((this.id * 31 + this.clock.nowMs()) >>> 0),
      validate: validatePeerMessage,
      // With auth on, peers prove the cluster's node secret in the handshake (with or without TLS).
      ...(this.auth && { secret: () => this.auth?.nodeToken }),
      ...(this.tls && {
        sockets: this.socketsFor('peer'),
        checkPeer: (socket, nodeId) => this.checkPeerCert(socket, nodeId),
      }),
      onMessages: (from, msgs) => this.onPeerMessages(from, msgs),
      onPeerState: (peer, up) => this.onPeerState(peer, up),
      log: this.log,
    });
    await this.transport.start();
    this.rpc = new RpcServer({
      listen: { host: this.cfg.host, port: this.cfg.clientPort },
      frameBytesMax: this.cfg.frameBytesMax,
      inFlightMax: this.cfg.inFlightMax,
      connectionsMax: this.cfg.connectionsMax,
      outBytesMax: this.cfg.streamOutBytesMax,
      log: this.log,
      ...(this.tls && { sockets: this.socketsFor('client') }),
      handlers: {
        ops: CLIENT_OPS,
        unary: (op, args, ctx) => this.unary(op, args, ctx),
        stream: (op, args, ctx, sink) => this.stream(op, args, ctx, sink),
      },
    });
    await this.rpc.start();
  }

  clientAddress(): Address {
    return this.rpc ? this.rpc.address() : { host: 'inproc', port: 0 };
  }

  peerAddress(): Address {
    return this.transport ? this.transport.address() : { host: 'inproc', port: 0 };
  }

  /**
   * handle serves one unary client op (CLIENT_OPS) in process, exactly as the client port
   * would: embedded mode calls it directly. It answers through a promise, never throws.
   */
  async handle(op: string, args: unknown): Promise<unknown> {
    if (CLIENT_OPS[op as keyof typeof CLIENT_OPS] !== 'unary') {
      throw new DkvError(ErrorCode.InvalidArgument, `unknown op ${op}`);
    }
    return this.unary(op, args, INPROC_CONTEXT);
  }

  /** openStream starts one stream op (`watch`, `keepalive`) in process; returns its cleanup. */
  openStream(op: string, args: unknown, sink: StreamSink): () => void {
    if (CLIENT_OPS[op as keyof typeof CLIENT_OPS] !== 'stream') {
      throw new DkvError(ErrorCode.InvalidArgument, `unknown stream op ${op}`);
    }
    return this.stream(op, args, INPROC_CONTEXT, sink) ?? (() => undefined);
  }

  // ---------------------------------------------------------------- the Ready loop

  /** schedule makes sure a round runs soon (now, or right after the current one). */
  private schedule(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    setImmediate(() => {
      void this.round();
    });
  }

  private async round(): Promise<void> {
    try {
      for (;;) {
        this.again = false;
        if (this.maintenance && this.meta) {
          this.maintenance = false;
          await this.maintain();
          if (this.stopped) return;
        }
        this.sendReadBatches();
        const work: [GroupReplica, Ready][] = [];
        for (const g of this.groups.values()) if (g.raw.hasReady()) work.push([g, g.raw.ready()]);
        if (work.length === 0) break;
        const items: PersistItem[] = work.map(([g, rd]) => ({ storage: g.storage, ready: rd }));
        // A round that only moves commit indexes (no entries, term, vote or snapshot to make
        // durable) writes the commit index for a restart's sake alone: nothing it sends or
        // applies depends on that write, so it answers first and writes after.
        const commitOnly = work.every(
          ([, rd]) => !rd.mustSync && rd.snapshot === null && rd.entries.length === 0,
        );
        const late = commitOnly ? work.map(([, rd]) => rd.messages) : this.sendAppendsEarly(work);
        if (commitOnly) this.deliver(work, late);
        const t0 = this.clock.monotonicMs();
        const stats = await this.storage.commit(items);
        this.observe(() =>
          this.observer.commit?.({
            ms: this.clock.monotonicMs() - t0,
            groups: stats.groups,
            entries: stats.entries,
            synced: stats.synced,
            syncMs: stats.syncMs,
          }),
        );
        if (this.stopped) return;
        if (!commitOnly) this.deliver(work, late);
        for (const [g] of work) g.raw.advance();
        for (const [g] of work) {
          g.serveReads();
          this.maybeSnapshot(g);
        }
        if (!this.again) {
          let more = false;
          for (const g of this.groups.values()) if (g.raw.hasReady()) more = true;
          if (!more) break;
        }
      }
    } catch (err) {
      // A storage failure: the node cannot go on safely (never acknowledge what is not durable).
      this.log('error', 'the Ready loop failed; stopping the node', { error: String(err) });
      this.fatal(err);
    } finally {
      this.running = false;
    }
    if (this.again) this.schedule();
  }

  /** deliver sends a round's messages (`late`, per Ready) and applies its Readies. */
  private deliver(work: readonly [GroupReplica, Ready][], late: readonly (readonly Message[])[]): void {
    if (this.transport) {
      for (let i = 0; i < work.length; i++) {
        const gid = work[i]![0].id;
        for (const m of late[i]!) this.transport.send(m.to, { g: gid, m });
      }
      this.transport.flush();
    }
    for (const [g, rd] of work) this.applyReady(g, rd);
    const mg = this.groups.get(METADATA_GROUP);
    if (mg && mg.sm.appliedIndex !== this.metaReadAt) this.reloadMeta();
  }

  /**
   * sendAppendsEarly sends a leader's appends before its own write is durable, so followers
   * persist in parallel with it (one fsync off the commit path; etcd's leader does the same).
   * It is safe because the leader's own copy, which Raft counts toward the commit quorum at
   * once, only becomes observable in a later round: rounds never overlap, so no entry is
   * applied and no commit index covering it leaves this node before this round's write
   * returns. An append leaves early only when the commit index it carries covers nothing
   * beyond what is already durable here (a group with one voter commits its leader's entries
   * at once: those appends wait). Every other message (acknowledgements, votes) waits for
   * the sync. Returns, per Ready, the messages still to send.
   */
  private sendAppendsEarly(work: readonly [GroupReplica, Ready][]): Message[][] {
    const late: Message[][] = [];
    let sent = false;
    for (const [g, rd] of work) {
      const rest: Message[] = [];
      const durable = g.storage.lastIndex();
      for (const m of rd.messages) {
        if (this.transport && m.type === MessageType.App && m.commit <= durable) {
          this.transport.send(m.to, { g: g.id, m });
          sent = true;
        } else {
          rest.push(m);
        }
      }
      late.push(rest);
    }
    if (sent) this.transport?.flush();
    return late;
  }

  private applyReady(g: GroupReplica, rd: Ready): void {
    if (rd.softState) {
      const wasLeader = g.isLeader;
      g.leader = rd.softState.leader;
      g.role = rd.softState.role;
      if (wasLeader && !g.isLeader) {
        g.timeAnchor = undefined;
        g.lostLeadership();
      }
      if (g.isLeader && !wasLeader) this.log('info', 'leader', { group: g.id, term: g.raw.status().term });
      this.observe(() => this.observer.leaderChange?.(g.id, g.leader, g.isLeader));
      if (g.isLeader && g.id === METADATA_GROUP) this.publishLayout();
    }
    if (rd.snapshot) {
      g.installSnapshot(rd.snapshot);
      const bytes = rd.snapshot.data.length;
      this.observe(() => this.observer.snapshot?.(g.id, 'installed', bytes, 0));
      this.log('info', 'snapshot installed', {
        group: g.id,
        index: rd.snapshot.metadata.index,
        bytes: rd.snapshot.data.length,
      });
    }
    g.applyEntries(rd.committedEntries);
    this.noteAppliedTime(g, this.clock.monotonicMs());
    // A new leader anchors its replicated clock now, not at its first proposal.
    if (g.isLeader && g.timeAnchor === undefined) this.replicatedNow(g);
    g.noteReadStates(rd.readStates);
  }

  private sendReadBatches(): void {
    for (const g of this.groups.values()) {
      if (g.readQueue.length === 0) continue;
      const ctx = `${this.id}.${++this.readSeq}`;
      if (!g.isLeader) {
        g.failQueuedReads(this.notLeader(g));
        continue;
      }
      g.startReadBatch(ctx);
      if (!g.raw.readIndex(ctx)) g.lostLeadership();
    }
  }

  private maybeSnapshot(g: GroupReplica): void {
    if (g.snapshotting) return;
    const since = g.sm.appliedIndex - g.storage.snapshotRecord().index;
    if (since < this.cfg.snapshotEntries) return;
    g.snapshotting = true;
    const t0 = this.clock.monotonicMs();
    const snap = g.sm.snapshot();
    const conf = g.confState;
    g.storage
      .createSnapshot(snap.index, conf, snap.chunks(), { tailEntries: this.cfg.snapshotTailEntries })
      .then((rec) => {
        const ms = this.clock.monotonicMs() - t0;
        this.log('info', 'snapshot', { group: g.id, index: rec.index, bytes: rec.totalBytes, ms });
        this.observe(() => this.observer.snapshot?.(g.id, 'created', rec.totalBytes, ms));
      })
      .catch((err: unknown) => this.log('warn', 'snapshot failed', { group: g.id, error: String(err) }))
      .finally(() => {
        g.snapshotting = false;
      });
  }

  private fatal(err: unknown): void {
    for (const g of this.groups.values()) {
      g.failAll(new DkvError(ErrorCode.Unavailable, `the node stopped: ${String(err)}`));
    }
    void this.stop({ transferLeadership: false }).finally(() => this.onFatal?.(err));
  }

  // ---------------------------------------------------------------- time and peers

  /**
   * replicatedNow is the time this node stamps g's entries with, and reads g against, as its
   * leader; a follower has only the applied time.
   *
   * A leader's replicated clock runs on its monotonic clock from an anchor taken when it
   * becomes leader, so a jump of the wall clock never moves replicated time
   * (the harness's clock nemesis jumps it by up to 10 s): no lease or TTL ends early because a
   * leader's wall clock is ahead. The anchor continues the previous leader's clock: the last
   * applied time plus the time since this node applied it, which is at most the previous
   * leader's clock now (it stamped that time before this node applied it). So across a leader
   * change, time loses only the replication delay of the last stamp (plus the downtime, for
   * a node that restarted since: while no node runs nothing expires). Only a group that has
   * never stamped an entry starts from the wall clock. A clock running fast by a factor r
   * shortens TTLs by r.
   */
  private replicatedNow(g: GroupReplica): number {
    if (!g.isLeader) return g.sm.time;
    const mono = this.clock.monotonicMs();
    let a = g.timeAnchor;
    if (a === undefined) {
      this.noteAppliedTime(g, mono);
      const continued = Math.floor(g.appliedTime + (mono - g.appliedTimeMono));
      const base = g.sm.time === 0 ? this.clock.nowMs() : continued;
      a = g.timeAnchor = { stamp: Math.max(g.sm.time, base), mono };
    }
    return Math.max(g.sm.time, Math.floor(a.stamp + (mono - a.mono)));
  }

  /** noteAppliedTime remembers when this node saw g's applied time advance (replicatedNow). */
  private noteAppliedTime(g: GroupReplica, mono: number): void {
    if (g.sm.time !== g.appliedTime) {
      g.appliedTime = g.sm.time;
      g.appliedTimeMono = mono;
    }
  }

  private onTick(): void {
    const mono = this.clock.monotonicMs();
    for (const g of this.groups.values()) {
      g.raw.tick();
      g.expire(mono);
      if (g.isLeader && !g.tickInFlight) {
        const due = g.sm.nextDeadline();
        if (due !== undefined) {
          const now = this.replicatedNow(g);
          if (due <= now) this.proposeTick(g, now);
        }
      }
    }
    this.renewLeases(mono);
    this.schedule();
  }

  /**
   * renewLeases proposes, per group this node leads, one keep-alive entry for every lease
   * whose stream is due (`now` is monotonic), and reports each renewal on its stream.
   */
  private renewLeases(now: number): void {
    for (const [gid, streams] of this.keepAlives) {
      const g = this.groups.get(gid);
      if (!g) continue;
      if (!g.isLeader) {
        for (const k of streams.values()) k.sink.fail(this.notLeader(g));
        this.keepAlives.delete(gid);
        continue;
      }
      const due = [...streams].filter(([, k]) => !k.inFlight && k.nextAt <= now);
      if (due.length === 0) continue;
      for (const [, k] of due) k.inFlight = true;
      this.proposeTo(g, { op: 'lease.keepAlive', ids: due.map(([id]) => id) }, undefined).then(
        (results) => {
          for (const r of results as { id: number; ok: boolean; ttlMs?: number; deadline?: number }[]) {
            const k = streams.get(r.id);
            if (!k) continue;
            k.inFlight = false;
            k.nextAt = this.clock.monotonicMs() + k.intervalMs;
            if (!r.ok) {
              streams.delete(r.id);
              k.sink.fail(
                new DkvError(ErrorCode.LeaseNotFound, `lease ${r.id} is gone (expired or revoked)`),
              );
            } else if (!k.sink.push({ lease: r.id, ttlMs: r.ttlMs, deadline: r.deadline })) {
              streams.delete(r.id);
            }
          }
        },
        (err: unknown) => {
          for (const [id, k] of due) {
            k.inFlight = false;
            if (isDkvError(err) && err.code === ErrorCode.NotLeader) {
              streams.delete(id);
              k.sink.fail(err);
            }
          }
        },
      );
    }
  }

  private openKeepAlive(a: KeepAliveArgs, sink: StreamSink): () => void {
    const g = this.route(a);
    if (!Number.isSafeInteger(a.lease) || a.lease < 1)
      throw new DkvError(ErrorCode.InvalidArgument, 'lease must be a lease id');
    if (!g.isLeader) throw this.notLeader(g);
    const ttl = g.sm.leaseTimeToLive(a.lease, this.replicatedNow(g));
    const every = a.intervalMs ?? Math.floor(ttl.ttlMs / 3);
    if (!Number.isSafeInteger(every) || every < KEEPALIVE_INTERVAL_MIN_MS || every >= ttl.ttlMs) {
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `intervalMs must be an integer in [${KEEPALIVE_INTERVAL_MIN_MS}, ${ttl.ttlMs}) for a lease of ${ttl.ttlMs} ms`,
      );
    }
    let streams = this.keepAlives.get(g.id);
    if (!streams) {
      streams = new Map();
      this.keepAlives.set(g.id, streams);
    }
    streams
      .get(a.lease)
      ?.sink.fail(new DkvError(ErrorCode.Cancelled, 'another keep-alive stream took over this lease'));
    const entry: KeepAliveStream = { sink, intervalMs: every, nextAt: 0, inFlight: false };
    streams.set(a.lease, entry);
    const mine = streams;
    return () => {
      if (mine.get(a.lease) === entry) mine.delete(a.lease);
    };
  }

  private proposeTick(g: GroupReplica, now: number): void {
    const data = encodeEnvelope({ time: Math.max(now, g.sm.time), cmd: { op: 'tick' } });
    const r = g.raw.propose(data);
    if (!r.ok) return;
    g.tickInFlight = true;
    g.addProposal(r.index, r.term, {
      resolve: () => {
        g.tickInFlight = false;
      },
      reject: () => {
        g.tickInFlight = false;
      },
      deadline: this.clock.monotonicMs() + this.cfg.requestWaitMs,
    });
  }

  private onPeerMessages(_from: number, msgs: PeerMessage[]): void {
    for (const { g: id, m } of msgs) {
      const g = this.groups.get(id);
      if (!g) continue;
      try {
        g.raw.step(m);
      } catch (err) {
        this.log('warn', 'a peer message was refused', { group: id, type: m.type, error: String(err) });
      }
    }
    this.schedule();
  }

  private onPeerState(peer: number, up: boolean): void {
    this.peerUp.set(peer, up);
    this.log(up ? 'info' : 'warn', up ? 'peer up' : 'peer down', { peer });
    if (!up) {
      for (const g of this.groups.values()) {
        if (g.isLeader) g.raw.reportUnreachable(peer);
      }
      this.schedule();
    }
  }

  // ---------------------------------------------------------------- control plane

  /**
   * controlTick runs the control loop: membership steps for the groups this node leads, and
   * every few rounds leader balancing and (on the metadata leader) placement.
   */
  private controlTick(): void {
    if (this.stopped) return;
    this.controlRounds++;
    this.auth?.reloadIfChanged();
    try {
      if (this.meta) {
        this.confSteps();
        this.indexSteps();
      }
      if (this.cfg.balanceLeaders && this.controlRounds % BALANCE_EVERY_ROUNDS === 0) this.balanceLeaders();
    } catch (err) {
      this.log('warn', 'control step failed', { error: String(err) });
    }
    const mg = this.groups.get(METADATA_GROUP);
    if (mg?.isLeader && this.meta && !this.controlBusy && this.controlRounds % PLACE_EVERY_ROUNDS === 0) {
      this.controlBusy = true;
      this.serially(() => this.place())
        .catch((err: unknown) => this.log('warn', 'placement failed', { error: String(err) }))
        .finally(() => {
          this.controlBusy = false;
        });
    }
    this.schedule();
  }

  /**
   * confSteps moves the membership of every group this node leads one step toward its target
   * (metadata.ts, nextConfStep). A learner counts as caught up once it is within a small
   * window of the commit index: promoting it then costs commits nothing noticeable.
   */
  private confSteps(): void {
    const meta = this.meta;
    if (!meta) return;
    const targets = groupTargets(meta);
    const metaLearners = metaLearnerTarget(meta);
    const members = new Set(meta.members.map((m) => m.id));
    const known = (n: number): boolean => members.has(n) && (n === this.id || this.peerUp.has(n));
    for (const g of this.groups.values()) {
      if (!g.isLeader) continue;
      const target = targets.get(g.id);
      if (!target) continue;
      const st = g.raw.status();
      const caughtUp = (n: number): boolean => {
        const p = st.progress?.get(n);
        return (
          p !== undefined &&
          p.match > 0 &&
          p.match + CATCH_UP_ENTRIES >= st.commit &&
          this.peerUp.get(n) === true
        );
      };
      const step = nextConfStep(
        this.id,
        g.confState,
        target,
        g.id === METADATA_GROUP ? metaLearners : [],
        caughtUp,
        known,
      );
      if (!step) continue;
      if (step.kind === 'transfer-leader') {
        if (st.leadTransferee === 0) {
          this.log('info', 'membership: handing leadership away before leaving', {
            group: g.id,
            to: step.to,
          });
          g.raw.transferLeader(step.to);
        }
        continue;
      }
      const type =
        step.kind === 'add-learner' || step.kind === 'demote'
          ? ConfChangeType.AddLearner
          : step.kind === 'promote'
            ? ConfChangeType.AddVoter
            : ConfChangeType.RemoveNode;
      const cc: ConfChange = {
        transition: ConfChangeTransition.Auto,
        changes: [{ type, nodeId: step.node }],
        context: '',
      };
      const r = g.raw.proposeConfChange(cc);
      if (r.ok)
        this.log('info', 'membership change proposed', { group: g.id, step: step.kind, node: step.node });
    }
  }

  /**
   * indexSteps makes the indexes a store declares (in the metadata) exist in every group of
   * it this node leads: one replicated `configure` entry with the group's other indexes kept
   * (a client may have defined more with defineIndexes).
   */
  private indexSteps(): void {
    const meta = this.meta;
    if (!meta) return;
    for (const s of meta.stores) {
      if (s.indexes.length === 0) continue;
      for (const mg of s.groups) {
        const g = this.groups.get(mg.id);
        if (!g?.isLeader || g.indexConfiguring) continue;
        const have = g.sm.indexDefs();
        const same = (a: IndexDef, b: IndexDef): boolean => JSON.stringify(a) === JSON.stringify(b);
        if (s.indexes.every((d) => have.some((h) => same(h, d)))) continue;
        const defs = [...have.filter((h) => !s.indexes.some((d) => d.name === h.name)), ...s.indexes];
        g.indexConfiguring = true;
        this.proposeTo(g, { op: 'configure', indexes: defs }, undefined)
          .then(() => this.log('info', 'store indexes configured', { group: g.id, store: s.name }))
          .catch((err: unknown) =>
            this.log('warn', 'index configure failed', { group: g.id, error: String(err) }),
          )
          .finally(() => {
            g.indexConfiguring = false;
          });
      }
    }
  }

  /**
   * balanceLeaders hands each group this node leads to its preferred leader (metadata.ts,
   * preferredLeaders: an even spread), when that replica is a voter, up and caught up.
   */
  private balanceLeaders(): void {
    const preferred = this.meta ? preferredLeaders(this.meta) : undefined;
    for (const g of this.groups.values()) {
      if (!g.isLeader) continue;
      const voters = [...g.confState.voters].sort((a, b) => a - b);
      if (voters.length < 2 || g.confState.votersOutgoing.length > 0) continue;
      const want = preferred?.get(g.id) ?? voters[g.id % voters.length]!;
      if (want === this.id || !voters.includes(want) || !this.peerUp.get(want)) continue;
      const st = g.raw.status();
      const p = st.progress?.get(want);
      if (!p || p.match < st.commit || st.leadTransferee !== 0) continue;
      g.raw.transferLeader(want);
    }
    this.schedule();
  }

  /** serially runs control-plane work one piece at a time. */
  private serially<T>(f: () => Promise<T>): Promise<T> {
    const p = this.adminChain.then(f, f);
    this.adminChain = p.catch(() => undefined);
    return p;
  }

  /** freshMeta confirms this node still leads the metadata group (ReadIndex) and reads it. */
  private async freshMeta(): Promise<Meta> {
    const g = this.groups.get(METADATA_GROUP);
    if (!g) throw new DkvError(ErrorCode.Unavailable, `node ${this.id} holds no metadata replica yet`);
    if (!g.isLeader) throw this.notLeader(g);
    await new Promise((resolve, reject) => {
      g.readQueue.push({
        resolve,
        reject,
        run: () => undefined,
        deadline: this.clock.monotonicMs() + this.cfg.requestWaitMs,
      });
      this.schedule();
    });
    this.reloadMeta();
    if (!this.meta) throw new DkvError(ErrorCode.Unavailable, 'the cluster metadata is not published yet');
    return this.meta;
  }

  /**
   * metaWrite applies `ops` to the metadata and bumps the epoch, in one transaction that
   * applies only if the epoch is still `meta.epoch` (nothing changed since `meta` was read).
   */
  private async metaWrite(meta: Meta, ops: unknown[]): Promise<Meta> {
    const g = this.groups.get(METADATA_GROUP);
    if (!g) throw new DkvError(ErrorCode.Unavailable, `node ${this.id} holds no metadata replica`);
    const cmd = validateCommand({
      op: 'txn',
      compare: [{ key: MetaKeys.epoch, target: 'value', op: '=', value: meta.epoch }],
      success: [...ops, { op: 'put', key: MetaKeys.epoch, value: meta.epoch + 1 }],
      failure: [],
    });
    const r = (await this.proposeTo(g, cmd, undefined)) as { succeeded?: boolean };
    if (r?.succeeded !== true) {
      throw new DkvError(ErrorCode.Unavailable, 'the cluster metadata changed meanwhile; retry');
    }
    this.reloadMeta();
    return this.meta ?? meta;
  }

  /**
   * place is the placement driver, run by the metadata leader: it gathers every member's
   * report, promotes joining members that caught up with the metadata to active, drops
   * leaving members that no group holds any more, keeps the metadata group's voters at
   * min(5, active members), and changes replica targets (planPlacement, rate-limited).
   */
  private async place(): Promise<PlacementChange[]> {
    const meta = await this.freshMeta();
    const reports = await this.gatherReports();
    const mg = this.groups.get(METADATA_GROUP);
    if (!mg?.isLeader) return [];
    const actual = actualMembership(reports);
    const healthy = new Set(reports.keys());
    const metaCommit = mg.raw.status().commit;
    let membersChanged = false;
    const members = meta.members.flatMap((m): MetaMember[] => {
      if (m.state === 'joining') {
        const r0 = reports.get(m.id)?.groups.find((x) => x.id === METADATA_GROUP);
        const a0 = actual.get(METADATA_GROUP);
        const inGroup = a0 !== undefined && [...a0.voters, ...a0.learners].includes(m.id);
        if (r0 && inGroup && r0.appliedIndex + CATCH_UP_ENTRIES >= metaCommit) {
          membersChanged = true;
          this.log('info', 'member caught up: now active', { member: m.id });
          return [{ ...m, state: 'active' }];
        }
      }
      if (m.state === 'leaving') {
        // Held: a replica of a data group, or a metadata voter (it stays a metadata learner,
        // to follow the moves, until it is removed here).
        const held = [...actual].some(
          ([gid, a]) => a.voters.includes(m.id) || (gid !== METADATA_GROUP && a.learners.includes(m.id)),
        );
        const wanted = [...groupTargets(meta).values()].some((t) => t.includes(m.id));
        if (!held && !wanted && reports.size > 0 && actual.has(METADATA_GROUP)) {
          membersChanged = true;
          this.log('info', 'member left: removed from the cluster', { member: m.id });
          return [];
        }
      }
      return [m];
    });
    const view: Meta = { ...meta, members };
    const ops: unknown[] = [];
    if (membersChanged) ops.push({ op: 'put', key: MetaKeys.members, value: members });
    const mv = metaVoterTarget(view);
    const a0 = actual.get(METADATA_GROUP);
    const metaSettled =
      a0 !== undefined &&
      a0.voters.length === meta.metaReplicas.length &&
      meta.metaReplicas.every((n) => a0.voters.includes(n));
    if (metaSettled && mv.join(',') !== meta.metaReplicas.join(',')) {
      // One voter change of the metadata group at a time.
      const add = mv.find((n) => !meta.metaReplicas.includes(n));
      const drop = meta.metaReplicas.find((n) => !mv.includes(n));
      const next =
        add !== undefined ? [...meta.metaReplicas, add] : meta.metaReplicas.filter((n) => n !== drop);
      ops.push({ op: 'put', key: MetaKeys.metaReplicas, value: next.sort((a, b) => a - b) });
    }
    const changes = planPlacement({ meta: view, actual, healthy, movesMax: MOVES_MAX });
    const touched = new Map<string, MetaStore>();
    for (const c of changes) {
      const st = touched.get(c.store) ?? view.stores.find((x) => x.name === c.store);
      if (!st) continue;
      touched.set(c.store, {
        ...st,
        epoch: meta.epoch + 1,
        groups: st.groups.map((x) => (x.id === c.group ? { ...x, replicas: c.replicas } : x)),
      });
    }
    for (const st of touched.values())
      ops.push({ op: 'put', key: `${MetaKeys.storePrefix}${st.name}`, value: st });
    if (ops.length === 0) return [];
    await this.metaWrite(meta, ops);
    for (const c of changes) this.log('info', 'placement: replica target changed', { ...c });
    return changes;
  }

  /** statusClient is a pooled connection to a member's client port. */
  private statusClient(address: string): Promise<RpcClient> {
    let c = this.statusClients.get(address);
    if (!c) {
      const a = parseHostPort(address);
      if (!a) return Promise.reject(new DkvError(ErrorCode.InvalidArgument, `bad address ${address}`));
      c = this.internalClient(a, STATUS_TIMEOUT_MS);
      c.catch(() => this.statusClients.delete(address));
      this.statusClients.set(address, c);
    }
    return c;
  }

  /** gatherReports asks every member for its nodeStatus (those that answer in time). */
  private async gatherReports(): Promise<Map<number, NodeStatus>> {
    const out = new Map<number, NodeStatus>([[this.id, this.nodeStatus()]]);
    const others = this.memberList().filter((m) => m.id !== this.id);
    await Promise.all(
      others.map(async (m) => {
        try {
          const c = await this.statusClient(m.address);
          const r = (await c.call('nodeStatus', {}, { timeoutMs: STATUS_TIMEOUT_MS })) as NodeStatus;
          if (r && r.id === m.id) out.set(m.id, r);
        } catch {
          const c = this.statusClients.get(m.address);
          this.statusClients.delete(m.address);
          c?.then((x) => x.close()).catch(() => undefined);
        }
      }),
    );
    this.lastReports = { at: this.clock.monotonicMs(), reports: out };
    return out;
  }

  /** memberList is every member with its addresses and state (metadata, else configuration). */
  private memberList(): MetaMember[] {
    if (this.meta) return this.meta.members;
    const p = this.peerAddress();
    return [
      {
        id: this.id,
        address: hostPort(this.clientAddress()),
        peerAddress: `${this.cfg.host}:${p.port}`,
        state: 'active' as const,
      },
      ...this.cfg.peers.map((q) => ({
        id: q.id,
        address: `${q.host}:${q.clientPort}`,
        peerAddress: `${q.host}:${q.peerPort}`,
        state: 'active' as const,
      })),
    ].sort((a, b) => a.id - b.id);
  }

  /** nodeStatus is this node's own report: its groups as it sees them, and its disk. */
  nodeStatus(): NodeStatus {
    let diskFree: number | undefined;
    try {
      const fs = statfsSync(this.cfg.dataDir);
      diskFree = fs.blocks > 0 ? fs.bavail / fs.blocks : undefined;
    } catch {
      diskFree = undefined;
    }
    const p = this.peerAddress();
    return {
      id: this.id,
      address: hostPort(this.clientAddress()),
      peerAddress: `${this.cfg.host}:${p.port}`,
      epoch: this.meta?.epoch ?? 0,
      ...(diskFree !== undefined && { diskFree }),
      groups: [...this.groups.values()]
        .sort((a, b) => a.id - b.id)
        .map((g) => {
          const x = this.groupStat(g);
          const progress = g.isLeader ? g.raw.status().progress : null;
          let lag: number | undefined;
          if (progress) {
            lag = 0;
            for (const [id, pr] of progress)
              if (id !== this.id) lag = Math.max(lag, x.commitIndex - pr.match);
          }
          return {
            id: x.id,
            store: x.store,
            isLeader: x.isLeader,
            leader: x.leader,
            term: x.term,
            commitIndex: x.commitIndex,
            appliedIndex: x.appliedIndex,
            voters: [...x.voters],
            learners: [...x.learners],
            ...(lag !== undefined && { lag }),
            ...(g.id !== METADATA_GROUP && { indexes: g.sm.indexDefs().map((d) => d.name) }),
          };
        }),
    };
  }

  /**
   * clusterStatus gathers every member's report and merges them: each group as its leader
   * reports it (else the replica with the highest term), members with their health, and the
   * alarms an operator should look at.
   */
  async clusterStatus(): Promise<ClusterStatus> {
    const reports = await this.gatherReports();
    return mergeStatus({
      members: this.memberList(),
      reports,
      targets: this.meta ? groupTargets(this.meta) : new Map(),
      storeOf: (id) => this.storeOfGroup.get(id),
      epoch: this.meta?.epoch ?? 0,
      from: this.id,
    });
  }

  // ---------------------------------------------------------------- admin

  /** admin serves one control-plane action; only the metadata group's leader does. */
  private admin(a: Record<string, unknown>): Promise<unknown> {
    const g = this.groups.get(METADATA_GROUP);
    if (!g) throw new DkvError(ErrorCode.Unavailable, `node ${this.id} holds no metadata replica yet`);
    if (!g.isLeader) throw this.notLeader(g);
    return this.serially(() => this.runAdmin(a));
  }

  private async runAdmin(a: Record<string, unknown>): Promise<unknown> {
    const name = (): string => {
      if (typeof a.name !== 'string') throw new DkvError(ErrorCode.InvalidArgument, 'name must be a string');
      return a.name;
    };
    const meta = await this.freshMeta();
    const storeOf = (n: string): MetaStore => {
      const s = meta.stores.find((x) => x.name === n);
      if (!s) throw new DkvError(ErrorCode.StoreNotFound, `store ${JSON.stringify(n)} does not exist`);
      return s;
    };
    switch (a.action) {
      case 'store.list':
        return meta.stores.map((s) => ({
          name: s.name,
          partitions: s.partitions,
          replicas: s.replicas,
          indexes: s.indexes.map((i) => i.name),
          epoch: s.epoch,
        }));
      case 'store.describe':
        return this.describeStore(storeOf(name()));
      case 'store.create': {
        const indexes = IndexManager.validateDefs(a.indexes ?? []) as IndexDef[];
        const partitions = a.partitions ?? 6;
        const replicas = a.replicas ?? REPLICAS;
        const quotas = a.quotas === undefined ? undefined : checkQuotas(a.quotas, this.cfg.quotas);
        const s = planStore(
          meta,
          name(),
          partitions as number,
          replicas as number,
          [...indexes],
          evenSlots,
          quotas,
        );
        await this.metaWrite(meta, [
          { op: 'put', key: `${MetaKeys.storePrefix}${s.name}`, value: s },
          { op: 'put', key: MetaKeys.nextGroup, value: meta.nextGroup + s.groups.length },
        ]);
        this.log('info', 'store created', { store: s.name, partitions: s.partitions, replicas: s.replicas });
        // Wait (a little) until every new group has a leader, so the store is usable at once.
        const until = this.clock.monotonicMs() + Math.min(this.cfg.requestWaitMs, 15_000);
        let ready = false;
        while (!ready && this.clock.monotonicMs() < until && !this.stopped) {
          await new Promise((r) => setTimeout(r, 100));
          const reports = await this.gatherReports();
          const led = actualMembership(reports);
          const names = s.indexes.map((i) => i.name);
          ready = s.groups.every((x) => {
            const l = led.get(x.id);
            const rep = l && reports.get(l.leader)?.groups.find((y) => y.id === x.id);
            return rep !== undefined && names.every((n) => (rep.indexes ?? []).includes(n));
          });
        }
        return { ...(this.describeStore(s) as object), ready };
      }
      case 'store.delete': {
        const s = storeOf(name());
        await this.metaWrite(meta, [{ op: 'delete', key: `${MetaKeys.storePrefix}${s.name}` }]);
        this.log('info', 'store deleted', { store: s.name });
        return { name: s.name, deleted: true };
      }
      case 'member.add':
        return this.addMember(meta, a.address);
      case 'member.remove': {
        const id = a.id;
        const m = meta.members.find((x) => x.id === id);
        if (!m) throw new DkvError(ErrorCode.NotFound, `no member ${String(id)}`);
        if (m.state === 'leaving') return { id: m.id, state: m.state };
        const others = meta.members.filter((x) => x.id !== m.id && x.state === 'active');
        if (others.length === 0)
          throw new DkvError(ErrorCode.InvalidArgument, `member ${m.id} is the last active member`);
        const members = meta.members.map((x) => (x.id === m.id ? { ...x, state: 'leaving' as const } : x));
        await this.metaWrite(meta, [{ op: 'put', key: MetaKeys.members, value: members }]);
        this.log('info', 'member leaving: moving its replicas away', { member: m.id });
        return { id: m.id, state: 'leaving' };
      }
      case 'placement': {
        // A dry run: how many replica moves placement still wants (0: balanced).
        const reports = await this.gatherReports();
        const pending = planPlacement({
          meta,
          actual: actualMembership(reports),
          healthy: new Set(reports.keys()),
          movesMax: Number.MAX_SAFE_INTEGER,
        });
        return { pending: pending.length, moves: pending };
      }
      case 'rebalance': {
        const changes = await this.place();
        this.balanceLeaders();
        return { changes };
      }
      default:
        throw new DkvError(ErrorCode.InvalidArgument, `unknown admin action ${quote(a.action)}`);
    }
  }

  /** describeStore is a store's record with each group's leader as this node knows it. */
  private describeStore(s: MetaStore): unknown {
    const led = this.lastReports ? actualMembership(this.lastReports.reports) : new Map();
    return {
      ...s,
      quotas: s.quotas ?? this.cfg.quotas,
      groups: s.groups.map((g) => ({
        ...g,
        leader: led.get(g.id)?.leader ?? this.groups.get(g.id)?.leader ?? 0,
      })),
    };
  }

  /** addMember registers a running node (reached at `address`) as a joining member. */
  private async addMember(meta: Meta, address: unknown): Promise<unknown> {
    if (typeof address !== 'string' || !parseHostPort(address)) {
      throw new DkvError(
        ErrorCode.InvalidArgument,
        "address must be host:port of the new node's client port",
      );
    }
    let hello: Hello;
    const c = await this.internalClient(parseHostPort(address)!, 3000).catch((err: unknown) => {
      throw new DkvError(ErrorCode.Unavailable, `cannot reach the new node at ${address}: ${String(err)}`);
    });
    try {
      hello = (await c.call('hello', {}, { timeoutMs: 3000 })) as Hello;
    } finally {
      await c.close();
    }
    if (hello.clusterId !== this.cfg.clusterId) {
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `the node at ${address} belongs to cluster ${quote(hello.clusterId)}, not ${quote(this.cfg.clusterId)}`,
      );
    }
    if (!hello.peerAddress)
      throw new DkvError(ErrorCode.InvalidArgument, `the node at ${address} has no peer port`);
    const existing = meta.members.find((m) => m.id === hello.nodeId);
    if (existing) {
      if (existing.address === address) return existing;
      throw new DkvError(
        ErrorCode.AlreadyExists,
        `member id ${hello.nodeId} is taken (by ${existing.address}); give the new node another id`,
      );
    }
    const m: MetaMember = { id: hello.nodeId, address, peerAddress: hello.peerAddress, state: 'joining' };
    await this.metaWrite(meta, [
      { op: 'put', key: MetaKeys.members, value: [...meta.members, m].sort((a, b) => a.id - b.id) },
    ]);
    this.log('info', 'member joining', { ...m });
    return m;
  }

  // ---------------------------------------------------------------- metadata

  /**
   * publishLayout writes the bootstrap layout into the metadata group, once: one transaction
   * that applies only while `members` is absent, so the whole layout appears at once.
   */
  private publishLayout(): void {
    const g = this.groups.get(METADATA_GROUP);
    if (!g || this.cfg.join || g.sm.get(MetaKeys.members)) return;
    const p = this.peerAddress();
    const members: MetaMember[] = (<MetaMember[]>[
      {
        id: this.id,
        address: hostPort(this.clientAddress()),
        peerAddress: `${this.cfg.host}:${p.port}`,
        state: 'active',
      },
      ...this.cfg.peers.map(
        (q): MetaMember => ({
          id: q.id,
          address: `${q.host}:${q.clientPort}`,
          peerAddress: `${q.host}:${q.peerPort}`,
          state: 'active',
        }),
      ),
    ]).sort((a, b) => a.id - b.id);
    const stores = this.layout.stores.map(
      (s): MetaStore => ({
        name: s.name,
        epoch: 1,
        partitions: s.groups.length,
        replicas: REPLICAS,
        indexes: [],
        groups: s.groups.map((x) => ({
          id: x.id,
          slots: x.slots,
          replicas: x.replicas,
          initial: x.replicas,
        })),
      }),
    );
    const nextGroup = 1 + Math.max(0, ...stores.flatMap((s) => s.groups.map((x) => x.id)));
    const cmd = validateCommand({
      op: 'txn',
      compare: [{ key: MetaKeys.members, target: 'exists', op: '=', value: false }],
      success: [
        { op: 'put', key: MetaKeys.members, value: members },
        { op: 'put', key: MetaKeys.epoch, value: 1 },
        { op: 'put', key: MetaKeys.metaReplicas, value: this.layout.metadataReplicas },
        { op: 'put', key: MetaKeys.nextGroup, value: nextGroup },
        ...stores.map((s) => ({ op: 'put', key: `${MetaKeys.storePrefix}${s.name}`, value: s })),
      ],
      failure: [],
    });
    this.proposeTo(g, cmd, undefined).catch(() => undefined);
  }

  /**
   * reloadMeta re-reads the metadata from this node's metadata replica: routing (stores and
   * their groups), member addresses, and the peer links (members added or removed). The
   * hosted groups are reconciled with it in the next round (`maintain`).
   */
  private reloadMeta(): void {
    const g = this.groups.get(METADATA_GROUP);
    if (!g) return;
    this.metaReadAt = g.sm.appliedIndex;
    const t = g.sm.time;
    const items = g.sm.scan({ prefix: MetaKeys.storePrefix, limit: 10_000 }, t).items;
    const meta = readMeta(
      (k) => g.sm.get(k, t)?.value,
      items.map((i) => i.value),
    );
    if (!meta) return;
    const before = this.meta;
    this.meta = meta;
    if (before && before.epoch === meta.epoch) return;
    this.storeByName = new Map(meta.stores.map((s) => [s.name, storeLayoutOf(s)]));
    this.storeOfGroup = new Map(meta.stores.flatMap((s) => s.groups.map((x) => [x.id, s.name] as const)));
    for (const r of this.groups.values()) {
      if (r.id !== METADATA_GROUP) r.store = this.storeOfGroup.get(r.id) ?? r.store;
    }
    const ids = new Set<number>();
    for (const m of meta.members) {
      ids.add(m.id);
      if (m.id === this.id) continue;
      this.clientAddrOf.set(m.id, m.address);
      // The configuration's address of a peer wins over the one the metadata records: it may
      // be a route only this node should take (a proxy, another interface).
      const configured = this.cfg.peers.find((p) => p.id === m.id);
      const addr = configured
        ? { host: configured.host, port: configured.peerPort }
        : parseHostPort(m.peerAddress);
      if (this.transport && addr && !this.peerUp.has(m.id)) {
        this.transport.addPeer(m.id, addr);
        this.peerUp.set(m.id, false);
        this.log('info', 'member added to the peer links', {
          peer: m.id,
          address: `${addr.host}:${addr.port}`,
        });
      }
    }
    for (const id of [...this.peerUp.keys()]) {
      if (ids.has(id)) continue;
      this.transport?.removePeer(id);
      this.peerUp.delete(id);
      this.clientAddrOf.delete(id);
      this.log('info', 'member removed from the peer links', { peer: id });
    }
    this.maintenance = true;
    this.schedule();
  }

  /**
   * maintain reconciles the hosted groups with the metadata: it creates a replica of every
   * group whose target names this node (bootstrapped with the group's initial voters when
   * this node is one of them, so every initial replica starts identical; otherwise empty, to
   * be filled by a snapshot from the leader once the leader adds it), and deletes a replica
   * whose store was deleted, or that is neither wanted nor a member any more (it applied its
   * own removal). It runs inside a round, between Readies.
   */
  private async maintain(): Promise<void> {
    const meta = this.meta;
    if (!meta) return;
    const targets = groupTargets(meta);
    for (const s of meta.stores) {
      for (const mg of s.groups) {
        if (!mg.replicas.includes(this.id) || this.groups.has(mg.id)) continue;
        if (!this.storage.group(mg.id)) {
          await this.storage.createGroup(
            mg.id,
            mg.initial.includes(this.id) ? confOf(mg.initial) : undefined,
          );
        }
        const r = await this.openGroup(mg.id);
        r.store = s.name;
        this.log('info', 'replica created', {
          group: mg.id,
          store: s.name,
          bootstrapped: mg.initial.includes(this.id),
        });
      }
    }
    for (const r of [...this.groups.values()]) {
      if (r.id === METADATA_GROUP) continue;
      const target = targets.get(r.id);
      const cs = r.confState;
      const inConf = [...cs.voters, ...cs.learners, ...cs.votersOutgoing].includes(this.id);
      const deleted = target === undefined && r.id < meta.nextGroup;
      const removed = target !== undefined && !target.includes(this.id) && !inConf;
      if (deleted || removed)
        await this.dropGroup(r, deleted ? 'its store was deleted' : 'it was moved away');
    }
  }

  /** dropGroup deletes this node's replica of a group (its store was deleted, or it moved). */
  private async dropGroup(r: GroupReplica, why: string): Promise<void> {
    this.groups.delete(r.id);
    const err = new DkvError(ErrorCode.WrongGroup, `node ${this.id} no longer holds group ${r.id}: ${why}`, {
      group: r.id,
      epoch: this.meta?.epoch ?? 0,
    });
    r.failAll(err);
    r.sm.cancelWatchers(`group ${r.id} left this node (${why}); resume elsewhere from your last revision`);
    for (const k of this.keepAlives.get(r.id)?.values() ?? []) k.sink.fail(err);
    this.keepAlives.delete(r.id);
    await this.storage.deleteGroup(r.id);
    this.log('info', 'replica deleted', { group: r.id, why });
  }

  // ---------------------------------------------------------------- requests

  private pendingTotal(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.pendingCount;
    return n;
  }

  /**
   * shedReason says why a proposal to `g` should be refused now, before it costs anything:
   * - the group's oldest proposal has waited longer than shedWaitMs (the node is behind:
   *   accepting more would only make everyone wait longer);
   * - the client's request is past its exactly-once window (the state machine would refuse it
   *   too, but only after it went through the log: refusing it here costs nothing).
   */
  private shedReason(g: GroupReplica, session: CmdArgs['session']): string | undefined {
    if (session !== undefined && session.seq >= session.ack + SESSION_DEFAULTS.resultsMax)
      return `request ${session.seq} of client ${session.client} is ${session.seq - session.ack} past its oldest unacknowledged one (the most is ${SESSION_DEFAULTS.resultsMax - 1})`;
    const waitMax = this.cfg.shedWaitMs;
    if (waitMax === 0) return undefined;
    const oldest = g.oldestProposalDeadline();
    if (oldest === undefined) return undefined;
    const waited = this.clock.monotonicMs() - (oldest - this.cfg.requestWaitMs);
    if (waited <= waitMax) return undefined;
    return `group ${g.id} is behind: its oldest request has waited ${Math.round(waited)} ms (shedWaitMs ${waitMax}); back off and retry`;
  }

  private checkCapacity(): void {
    if (this.pendingTotal() >= this.cfg.pendingMax) {
      throw new DkvError(
        ErrorCode.Overloaded,
        `node ${this.id} has ${this.cfg.pendingMax} requests waiting; back off and retry`,
      );
    }
  }

  private notLeader(g: GroupReplica): DkvError {
    const leader = g.leader;
    const address = leader === this.id ? hostPort(this.clientAddress()) : this.clientAddrOf.get(leader);
    return new DkvError(
      ErrorCode.NotLeader,
      leader
        ? `node ${this.id} is not the leader of group ${g.id}; node ${leader} is`
        : `group ${g.id} has no leader right now`,
      { group: g.id, leaderHint: leader, ...(address !== undefined && { address }) },
    );
  }

  private store(name: unknown): StoreLayout {
    if (typeof name !== 'string') throw new DkvError(ErrorCode.InvalidArgument, 'store must be a string');
    const s = this.storeByName.get(name);
    if (!s) {
      if (!this.meta)
        throw new DkvError(ErrorCode.Unavailable, `node ${this.id} has not loaded the cluster metadata yet`);
      throw new DkvError(ErrorCode.StoreNotFound, `store ${JSON.stringify(name)} does not exist`);
    }
    return s;
  }

  /** route finds the local replica that owns `key` (or `group`) in `store`. */
  private route(args: { store?: unknown; key?: unknown; group?: unknown }): GroupReplica {
    const s = this.store(args.store);
    let id: number;
    if (typeof args.key === 'string') {
      id = s.slotGroup[slotOf(args.key)]!;
    } else if (typeof args.group === 'number' && s.groups.some((x) => x.id === args.group)) {
      id = args.group;
    } else {
      throw new DkvError(ErrorCode.InvalidArgument, 'a request names a key (string) or a group of its store');
    }
    const g = this.groups.get(id);
    if (!g)
      throw new DkvError(ErrorCode.WrongGroup, `node ${this.id} holds no replica of group ${id}`, {
        group: id,
        epoch: s.epoch,
      });
    return g;
  }

  /** keysOf lists every key a command names, to check they all live in one group. */
  private keysOf(cmd: Command): string[] {
    // A fence is checked in the group that applies the command: its lock must live there too.
    const fence = 'fence' in cmd && cmd.fence ? [cmd.fence.lock] : [];
    return [...fence, ...this.commandKeys(cmd)];
  }

  private commandKeys(cmd: Command): string[] {
    switch (cmd.op) {
      case 'put':
      case 'delete':
        return [cmd.key];
      case 'txn':
        return [
          ...cmd.compare.map((c) => c.key),
          ...cmd.success.map((o) => o.key),
          ...cmd.failure.map((o) => o.key),
        ];
      case 'lock.acquire':
      case 'lock.release':
      case 'counter.add':
      case 'counter.set':
      case 'counter.delete':
        return [cmd.name];
      default:
        return [];
    }
  }

  private proposeTo(g: GroupReplica, cmd: Command, session: CmdArgs['session']): Promise<unknown> {
    if (!g.isLeader) return Promise.reject(this.notLeader(g));
    const now = this.replicatedNow(g);
    const data = encodeEnvelope({
      time: Math.max(now, g.sm.time),
      cmd,
      ...(session && { client: session.client, seq: session.seq, ack: session.ack }),
    });
    const r = g.raw.propose(data);
    if (!r.ok) {
      if (r.code === 'NOT_LEADER' || r.code === 'TRANSFERRING') return Promise.reject(this.notLeader(g));
      if (r.code === 'OVERLOADED')
        return Promise.reject(
          new DkvError(ErrorCode.Overloaded, `group ${g.id}: too much is waiting to commit`),
        );
      return Promise.reject(new DkvError(ErrorCode.TooLarge, `group ${g.id} refused the entry: ${r.code}`));
    }
    this.observe(() => this.observer.proposal?.(g.id));
    const waiterKey =
      cmd.op === 'lock.acquire' ? (session ? `${session.seq}@${session.client}` : `@${r.index}`) : undefined;
    this.schedule();
    return new Promise((resolve, reject) => {
      const deadline = this.clock.monotonicMs() + this.cfg.requestWaitMs;
      g.addProposal(r.index, r.term, { resolve, reject, deadline }, waiterKey);
    });
  }

  private async cmd(args: CmdArgs): Promise<unknown> {
    this.checkCapacity();
    const g = this.route(args);
    // Validate now (INVALID_ARGUMENT before anything is proposed), and use the clean copy.
    const cmd = validateCommand(args.cmd);
    const s = this.store(args.store);
    this.checkSizes(cmd);
    this.checkQuota(s, g, cmd);
    for (const k of this.keysOf(cmd)) {
      if (s.slotGroup[slotOf(k)] !== g.id) {
        throw new DkvError(
          ErrorCode.CrossGroup,
          `key ${JSON.stringify(k)} belongs to another group than group ${g.id}; use a {hash tag} to keep keys together`,
        );
      }
    }
    // Client commands only: the node's own proposals (lease keep-alives, ticks, index and
    // metadata changes) are never shed, so time and leases keep going under overload.
    const shed = g.isLeader ? this.shedReason(g, args.session) : undefined;
    if (shed !== undefined) {
      this.shedCount++;
      throw new DkvError(ErrorCode.Overloaded, shed);
    }
    return this.proposeTo(g, cmd, args.session);
  }

  /**
   * checkSizes applies the configured key, value and transaction limits at the door, when they
   * are set below the state machine's own (which every replica applies in any case). With the
   * defaults it costs nothing: the values are not encoded twice.
   */
  private checkSizes(cmd: Command): void {
    const c = this.cfg;
    const txn = cmd.op === 'txn';
    if (txn && Math.max(cmd.compare.length, cmd.success.length, cmd.failure.length) > c.txnOpsMax)
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `txn: more than ${c.txnOpsMax} ops in a branch (txnOpsMax)`,
      );
    const puts = cmd.op === 'put' ? [cmd] : txn ? [...cmd.success, ...cmd.failure] : [];
    const keyCheck = c.keyBytesMax < NODE_DEFAULTS.keyBytesMax;
    const valueCheck = c.valueBytesMax < NODE_DEFAULTS.valueBytesMax;
    if (!keyCheck && !valueCheck) return;
    for (const o of puts) {
      if (keyCheck && Buffer.byteLength(o.key) > c.keyBytesMax)
        throw new DkvError(
          ErrorCode.TooLarge,
          `key is ${Buffer.byteLength(o.key)} bytes, over the limit of ${c.keyBytesMax} (keyBytesMax)`,
        );
      if (valueCheck && o.op === 'put') {
        const n = valueBytes(o.value);
        if (n > c.valueBytesMax)
          throw new DkvError(
            ErrorCode.TooLarge,
            `value is ${n} bytes encoded, over the limit of ${c.valueBytesMax} (valueBytesMax)`,
          );
      }
    }
  }

  /**
   * checkQuota refuses, with QUOTA_EXCEEDED, a command that would take its group past its
   * share of the store's quotas (ceil(quota / partitions)): a new key past `keys`, bytes past
   * `bytes`, a new lease past `leases`, a new lock past `locks`. The leader checks before it
   * proposes (the quota is not part of the replicated state, so replicas never disagree on an
   * entry's outcome); proposals already in flight may take a group a little past it.
   * Deletes, overwrites that shrink, releases and revokes are always allowed.
   */
  private checkQuota(s: StoreLayout, g: GroupReplica, cmd: Command): void {
    const q = s.quotas ?? this.cfg.quotas;
    const parts = Math.max(1, s.groups.length);
    const share = (n: number): number => (n === 0 ? Number.POSITIVE_INFINITY : Math.ceil(n / parts));
    const st = g.sm.stats();
    const refuse = (what: keyof StoreQuotas, have: number): never => {
      this.securityStats.quotaExceeded++;
      throw new DkvError(
        ErrorCode.QuotaExceeded,
        `store ${quote(s.name)} is at its ${what} quota in group ${g.id} (${have} of a share of ${share(q[what])}; quota ${q[what]} over ${parts} partitions)`,
        { group: g.id },
      );
    };
    const puts: { key: string; value: unknown }[] =
      cmd.op === 'put'
        ? [cmd]
        : cmd.op === 'txn'
          ? [...cmd.success, ...cmd.failure].filter(
              (o): o is typeof o & { op: 'put'; key: string; value: unknown } => o.op === 'put',
            )
          : [];
    if (puts.length > 0) {
      // Looking the keys up is only needed when new ones could pass the share.
      if (st.keys + puts.length > share(q.keys)) {
        const newKeys = puts.filter((o) => g.sm.get(o.key, this.replicatedNow(g)) === undefined).length;
        if (newKeys > 0 && st.keys + newKeys > share(q.keys)) refuse('keys', st.keys);
      }
      // Encoding is only worth it near the limit: far from it, no frame can reach it.
      if (st.bytes + this.cfg.frameBytesMax >= share(q.bytes)) {
        let add = 0;
        for (const o of puts) add += Buffer.byteLength(o.key) + valueBytes(o.value);
        if (st.bytes + add > share(q.bytes)) refuse('bytes', st.bytes);
      }
    }
    if (cmd.op === 'lease.grant' || (cmd.op === 'lock.acquire' && 'ttlMs' in cmd)) {
      if (st.leases + 1 > share(q.leases)) refuse('leases', st.leases);
    }
    if (
      cmd.op === 'lock.acquire' &&
      st.locks + 1 > share(q.locks) &&
      g.sm.lockDescribe(cmd.name, this.replicatedNow(g)) === undefined
    )
      refuse('locks', st.locks);
  }

  private read(args: ReadArgs): unknown {
    this.checkCapacity();
    const g = this.route(args);
    const r = args.read as ReadRequest;
    const run = (): unknown => this.runRead(g, r);
    const consistency: Consistency = args.consistency ?? 'linearizable';
    if (consistency === 'serializable') return run();
    if (consistency !== 'linearizable')
      throw new DkvError(ErrorCode.InvalidArgument, 'consistency is linearizable or serializable');
    // The planted bug `stale-read`: any replica answers from its own state at once, without
    // confirming leadership (ReadIndex) or redirecting: a deposed or cut-off leader, and any
    // lagging follower a client still routes to, answer stale data.
    if (this.hooks.bugs.has('stale-read')) return run();
    if (!g.isLeader) throw this.notLeader(g);
    run(); // validate the request now, so a bad one fails at once
    return new Promise((resolve, reject) => {
      const deadline = this.clock.monotonicMs() + this.cfg.requestWaitMs;
      const w: ReadWaiter = { resolve, reject, run, deadline };
      g.readQueue.push(w);
      this.schedule();
    });
  }

  private runRead(g: GroupReplica, r: ReadRequest): unknown {
    if (typeof r !== 'object' || r === null)
      throw new DkvError(ErrorCode.InvalidArgument, 'read must be an object');
    const now = this.replicatedNow(g);
    const sm = g.sm;
    const str = (v: unknown, what: string): string => {
      if (typeof v !== 'string') throw new DkvError(ErrorCode.InvalidArgument, `${what} must be a string`);
      return v;
    };
    switch (r.op) {
      case 'get':
        return sm.get(str(r.key, 'key'), now) ?? null;
      case 'scan':
        return sm.scan(
          {
            ...(r.prefix !== undefined && { prefix: str(r.prefix, 'prefix') }),
            ...(r.start !== undefined && { start: str(r.start, 'start') }),
            ...(r.end !== undefined && { end: str(r.end, 'end') }),
            ...(r.after !== undefined && { after: str(r.after, 'after') }),
            ...(r.limit !== undefined && { limit: r.limit }),
          },
          now,
        );
      case 'count':
        return sm.count(
          {
            ...(r.prefix !== undefined && { prefix: str(r.prefix, 'prefix') }),
            ...(r.start !== undefined && { start: str(r.start, 'start') }),
            ...(r.end !== undefined && { end: str(r.end, 'end') }),
          },
          now,
        );
      case 'query':
        return sm.query(r.query as never, (r.options ?? {}) as never, now);
      case 'counter.get':
        return sm.counterGet(str(r.name, 'name'), now);
      case 'lease.ttl':
        return sm.leaseTimeToLive(r.id, now);
      case 'lease.list':
        return sm.leaseList();
      case 'lock.describe':
        return sm.lockDescribe(str(r.name, 'name'), now);
      default:
        throw new DkvError(ErrorCode.InvalidArgument, `unknown read op ${quote((r as { op?: unknown }).op)}`);
    }
  }

  /**
   * unary serves one request and reports it (observer: metrics; log: tracing). Every request
   * is logged at debug level with the request id the client sent (`rid`), its op, store and
   * outcome; one slower than SLOW_REQUEST_MS is logged at warn level, so a slow request can
   * be followed by its id from the client into the leader's log.
   */
  private unary(op: string, args: unknown, ctx: RpcContext): unknown {
    const t0 = this.clock.monotonicMs();
    const a = (typeof args === 'object' && args !== null ? args : {}) as Record<string, unknown>;
    const done = (err: unknown): void => this.finishRequest(op, a, ctx, t0, err);
    let r: unknown;
    try {
      r = this.auth !== undefined && op !== 'hello' ? this.guarded(op, a, ctx) : this.serve(op, a, ctx);
    } catch (err) {
      done(err);
      throw err;
    }
    if (r instanceof Promise) {
      return r.then(
        (v: unknown) => {
          done(undefined);
          return v;
        },
        (err: unknown) => {
          done(err);
          throw err;
        },
      );
    }
    done(undefined);
    return r;
  }

  private finishRequest(
    op: string,
    a: Record<string, unknown>,
    ctx: RpcContext,
    t0: number,
    err: unknown,
  ): void {
    const ms = this.clock.monotonicMs() - t0;
    const inner =
      op === 'cmd'
        ? (a.cmd as { op?: unknown } | undefined)?.op
        : op === 'read'
          ? (a.read as { op?: unknown } | undefined)?.op
          : op === 'admin'
            ? a.action
            : undefined;
    const kind = typeof inner === 'string' ? inner.slice(0, 32) : '';
    const store = typeof a.store === 'string' ? a.store.slice(0, 64) : '';
    const code = err === undefined ? undefined : isDkvError(err) ? err.code : 'INTERNAL';
    this.observe(() => this.observer.request?.({ op, kind, store, ms, code, trace: ctx.trace }));
    if (op === 'nodeStatus' || op === 'status' || op === 'hello') return;
    const slow = ms >= SLOW_REQUEST_MS;
    if (!slow && !this.debugLog) return;
    const fields = {
      rid: ctx.trace ?? null,
      op,
      kind,
      store,
      ...(typeof a.key === 'string' && { key: a.key.slice(0, 128) }),
      ...(typeof a.group === 'number' && { group: a.group }),
      ms: Math.round(ms * 10) / 10,
      ...(code !== undefined && { code }),
      from: ctx.remoteAddress,
    };
    this.log(slow ? 'warn' : 'debug', slow ? 'slow request' : 'request', fields);
  }

  /**
   * principalOf is who the connection is: authenticated with the auth op, else its verified
   * client certificate's user, else nobody (UNAUTHENTICATED).
   */
  private principalOf(ctx: RpcContext): Principal {
    const auth = this.auth!;
    let p = ctx.session.principal as Principal | undefined;
    if (p !== undefined) {
      // The file may have changed (a user removed, a token revoked or expired, roles narrowed)
      // since the connection authenticated: open connections follow it too.
      const now = auth.revalidate(p, this.clock.nowMs());
      if (now === undefined) {
        ctx.session.principal = undefined;
        throw new DkvError(
          ErrorCode.Unauthenticated,
          `the credentials of user ${p.user} were revoked or expired: authenticate again`,
        );
      }
      if (now !== p) ctx.session.principal = now;
      p = now;
    } else {
      p = auth.principalOfCert(ctx.session.certCommonName);
      if (p !== undefined) ctx.session.principal = p;
    }
    if (p === undefined)
      throw new DkvError(
        ErrorCode.Unauthenticated,
        'authenticate first (a user and password, a token, or a client certificate)',
      );
    return p;
  }

  /** guarded serves an op on a node with authentication on: who, then may they. */
  private guarded(op: string, a: Record<string, unknown>, ctx: RpcContext): unknown {
    if (op === 'auth') return this.authenticate(a, ctx);
    this.checkAccess(op, a, ctx);
    return this.serve(op, a, ctx);
  }

  /** checkAccess: who the connection is (UNAUTHENTICATED), and may they do op (PERMISSION_DENIED). */
  private checkAccess(op: string, a: Record<string, unknown>, ctx: RpcContext): void {
    const p = this.principalOf(ctx);
    const { needs, what } = needsOf(op, a);
    try {
      authorize(p, needs, what);
    } catch (err) {
      this.securityStats.permissionDenied++;
      throw err;
    }
  }

  private async authenticate(a: Record<string, unknown>, ctx: RpcContext): Promise<unknown> {
    const creds = checkCredentials(a);
    try {
      const p = await this.auth!.authenticate(creds, this.clock.nowMs());
      ctx.session.principal = p;
      return { user: p.user };
    } catch (err) {
      this.securityStats.authFailures++;
      this.log('warn', 'authentication failed', {
        user: 'user' in creds ? creds.user.slice(0, 64) : '(token)',
        from: ctx.remoteAddress,
        reason: (err as Error).message,
      });
      throw err;
    }
  }

  private serve(op: string, a: Record<string, unknown>, ctx: RpcContext): unknown {
    if (this.stopped) throw new DkvError(ErrorCode.Unavailable, `node ${this.id} is stopping`);
    switch (op) {
      case 'auth':
        // Without auth configured, authenticating always succeeds (clients need not know).
        if (this.auth === undefined) {
          checkCredentials(a);
          return { user: 'user' in a ? a.user : 'token' };
        }
        return this.authenticate(a, ctx);
      case 'hello': {
        const hello: Hello = { nodeId: this.id, clusterId: this.cfg.clusterId, protocol: 1 };
        return this.transport
          ? { ...hello, peerAddress: `${this.cfg.host}:${this.peerAddress().port}` }
          : hello;
      }
      case 'map':
        return this.partitionMap(this.store(a.store));
      case 'status':
        // { local: true }: this node's own view only (no peer is asked; the harness uses it).
        return a.local === true ? this.status() : this.clusterStatus();
      case 'nodeStatus':
        return this.nodeStatus();
      case 'admin':
        return this.admin(a);
      case 'cmd':
        return this.cmd(a as unknown as CmdArgs);
      case 'read':
        return this.read(a as unknown as ReadArgs);
      default:
        throw new DkvError(ErrorCode.InvalidArgument, `unknown op ${op}`);
    }
  }

  private stream(op: string, args: unknown, ctx: RpcContext, sink: StreamSink): (() => void) | undefined {
    if (this.auth !== undefined)
      this.checkAccess(
        op,
        (typeof args === 'object' && args !== null ? args : {}) as Record<string, unknown>,
        ctx,
      );
    if (op === 'keepalive') {
      const a = (typeof args === 'object' && args !== null ? args : {}) as KeepAliveArgs;
      const cleanup = this.openKeepAlive(a, sink);
      this.renewLeases(this.clock.monotonicMs());
      this.schedule();
      return cleanup;
    }
    if (op !== 'watch') throw new DkvError(ErrorCode.InvalidArgument, `unknown stream op ${op}`);
    const a = (typeof args === 'object' && args !== null ? args : {}) as WatchArgs;
    const g = this.route(a);
    const storeName = a.store;
    const s = this.store(storeName);
    const watchMax = (s.quotas ?? this.cfg.quotas).watches;
    const open = this.watchesByStore.get(storeName) ?? 0;
    if (watchMax > 0 && open >= watchMax) {
      this.securityStats.quotaExceeded++;
      throw new DkvError(
        ErrorCode.QuotaExceeded,
        `store ${quote(storeName)} has ${open} watches open on node ${this.id}, its quota (watches ${watchMax} per node)`,
      );
    }
    const sub = g.sm.watch(
      {
        ...(a.key !== undefined && { key: a.key }),
        ...(a.prefix !== undefined && { prefix: a.prefix }),
        ...(a.fromRevision !== undefined && { fromRevision: a.fromRevision }),
        ...(a.snapshot !== undefined && { snapshot: a.snapshot }),
      },
      () => drain(),
    );
    // One message at a time, so the hub's own cut-off (SLOW_CONSUMER, beyond its bounded
    // buffer) names exactly the last revision sent. A push that fills the socket was still
    // sent; the rest wait in the hub's buffer until the socket drains.
    let paused = false;
    let over = false;
    const drain = (): void => {
      if (paused || over) return;
      for (;;) {
        const [m] = sub.take(1);
        if (m === undefined) return;
        if (m.kind === 'cancelled') {
          over = true;
          sink.fail(
            new DkvError(m.code as ErrorCode, m.message, { lastRevision: m.lastRevision, group: g.id }),
          );
          return;
        }
        if (!sink.push({ group: g.id, ...m })) {
          paused = true;
          setTimeout(() => {
            paused = false;
            drain();
          }, WATCH_DRAIN_RETRY_MS);
          return;
        }
      }
    };
    this.watchesByStore.set(storeName, open + 1);
    drain();
    let closed = false;
    return () => {
      over = true;
      sub.close();
      if (closed) return;
      closed = true;
      const n = (this.watchesByStore.get(storeName) ?? 1) - 1;
      if (n <= 0) this.watchesByStore.delete(storeName);
      else this.watchesByStore.set(storeName, n);
    };
  }

  /** partitionMap describes a store's groups and where their leaders are. */
  private partitionMap(s: StoreLayout): PartitionMap {
    const members = this.memberList().map((m) => ({ id: m.id, address: m.address }));
    return {
      store: s.name,
      epoch: s.epoch,
      slotCount: SLOT_COUNT,
      members,
      groups: s.groups.map((x) => ({ ...x, leader: this.groups.get(x.id)?.leader ?? 0 })),
    };
  }

  // ---------------------------------------------------------------- status and shutdown

  /** status is this node's local view in the ClusterStatus shape (no peer is asked). */
  status(): ClusterStatus {
    const targets = this.meta ? groupTargets(this.meta) : new Map<number, number[]>();
    const members: MemberStatus[] = this.memberList().map((m) => ({
      id: m.id,
      address: m.address,
      peerAddress: m.peerAddress,
      healthy: m.id === this.id ? !this.stopped : this.peerUp.get(m.id) === true,
      state: m.state,
    }));
    const groups: GroupStatus[] = this.nodeStatus().groups.map((g) => ({
      id: g.id,
      store: g.store,
      leader: g.leader,
      term: g.term,
      commitIndex: g.commitIndex,
      replicas: g.voters,
      learners: g.learners,
      target: targets.get(g.id) ?? g.voters,
      lag: g.lag ?? 0,
    }));
    return { members, groups, alarms: [], epoch: this.meta?.epoch ?? 0, from: this.id };
  }

  /**
   * health answers liveness and readiness. `live`: the node serves. `ready` (and `ok`, which
   * sets the HTTP status): every hosted group has a leader and a quorum of its voters
   * reachable from here (this node, or a peer whose link is up). `noQuorum` and `noLeader`
   * list the groups that fail.
   */
  health(): {
    ok: boolean;
    live: boolean;
    ready: boolean;
    nodeId: number;
    groups: number;
    leaderOf: number;
    noLeader: number[];
    noQuorum: number[];
    peersUp: number;
    peersTotal: number;
    epoch: number;
  } {
    let leaderOf = 0;
    const noLeader: number[] = [];
    const noQuorum: number[] = [];
    for (const g of this.groups.values()) {
      if (g.isLeader) leaderOf++;
      const voters = g.confState.voters;
      if (voters.length === 0) continue; // an empty replica waiting for its first snapshot
      if (g.leader === 0) noLeader.push(g.id);
      const up = voters.filter((v) => v === this.id || this.peerUp.get(v) === true).length;
      if (up * 2 <= voters.length) noQuorum.push(g.id);
    }
    const peersUp = [...this.peerUp.values()].filter(Boolean).length;
    const live = !this.stopped;
    const ready = live && noLeader.length === 0 && noQuorum.length === 0;
    return {
      ok: ready,
      live,
      ready,
      nodeId: this.id,
      groups: this.groups.size,
      leaderOf,
      noLeader,
      noQuorum,
      peersUp,
      peersTotal: this.peerUp.size,
      epoch: this.meta?.epoch ?? 0,
    };
  }

  /** peerStates reports each peer link's state (metrics). */
  peerStates(): { peer: number; up: boolean }[] {
    return [...this.peerUp].map(([peer, up]) => ({ peer, up })).sort((a, b) => a.peer - b.peer);
  }

  /** observe calls an observer callback; a listener's exception never reaches the node. */
  private observe(f: () => void): void {
    try {
      f();
    } catch {
      // a broken listener must not break the node
    }
  }

  /** groupStats reports every hosted group's state (for metrics, status and the dashboard). */
  groupStats(): GroupStats[] {
    return [...this.groups.values()].sort((a, b) => a.id - b.id).map((g) => this.groupStat(g));
  }

  private groupStat(g: GroupReplica): GroupStats {
    const st = g.raw.status();
    const sm = g.sm.stats();
    return {
      id: g.id,
      store: g.id === METADATA_GROUP ? '_meta' : g.store,
      isLeader: g.isLeader,
      leader: g.leader,
      term: st.term,
      commitIndex: st.commit,
      appliedIndex: g.sm.appliedIndex,
      revision: g.sm.revision,
      pending: g.pendingCount,
      voters: [...g.confState.voters].sort((a, b) => a - b),
      learners: [...g.confState.learners].sort((a, b) => a - b),
      watches: sm.watches,
      leases: sm.leases,
      locks: sm.locks,
      snapshotBytes: g.storage.snapshotRecord().totalBytes,
    };
  }

  /**
   * stop shuts the node down. With transferLeadership it first hands every group it leads to
   * another up-to-date voter and waits (up to two election timeouts) for that to happen, so
   * clients see a short redirect rather than an election.
   */
  async stop(opts: { transferLeadership?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    if (opts.transferLeadership) {
      const deadline = this.clock.monotonicMs() + 2 * this.cfg.electionTicks * this.cfg.tickMs;
      while (this.clock.monotonicMs() < deadline) {
        let leading = 0;
        let movable = 0;
        for (const g of this.groups.values()) {
          if (!g.isLeader) continue;
          leading++;
          const st = g.raw.status();
          const target = [...(st.progress?.entries() ?? [])]
            .filter(([id, p]) => id !== this.id && this.peerUp.get(id) && p.match >= st.commit)
            .map(([id]) => id)[0];
          if (target !== undefined || st.leadTransferee !== 0) movable++;
          if (target !== undefined && st.leadTransferee === 0) g.raw.transferLeader(target);
        }
        // Done when nothing is led any more, or when no peer is up to take over (a peer that
        // is up but still catching up may become a target in a moment).
        const anyPeerUp = [...this.peerUp.values()].some(Boolean);
        if (leading === 0 || (movable === 0 && !anyPeerUp)) break;
        this.schedule();
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    this.stopped = true;
    await this.closeAll();
  }

  private async closeAll(): Promise<void> {
    this.stopped = true;
    if (this.ticker) clearInterval(this.ticker);
    if (this.balancer) clearInterval(this.balancer);
    const err = new DkvError(ErrorCode.Unavailable, `node ${this.id} stopped`);
    for (const g of this.groups.values()) g.failAll(err);
    await this.rpc?.close().catch(() => undefined);
    await this.transport?.close().catch(() => undefined);
    const pooled = [...this.statusClients.values()];
    this.statusClients.clear();
    await Promise.all(pooled.map((c) => c.then((x) => x.close()).catch(() => undefined)));
    // Let a round in flight finish its batch before the database closes.
    for (let i = 0; i < 200 && this.running; i++) await new Promise((r) => setTimeout(r, 10));
    await this.storage.close();
    this.log('info', 'node stopped', { node: this.id });
  }
}
