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
 * Test hooks (test-hooks.ts; only `dkv node` sets them, from DKV_TEST_HOOKS): a SkewedClock,
 * and planted bugs: `stale-read` here (any replica answers linearizable reads locally),
 * `no-fsync` in NodeStorage, and the others in the state machine config.
 */
import { type Clock, systemClock } from '../clock.js';
import { DkvError, ErrorCode, isDkvError } from '../errors.js';
import { type ConfState, EMPTY_CONF_STATE, type Ready } from '../raft/index.js';
import { SeededRandom } from '../random.js';
import { encodeEnvelope } from '../statemachine/codec.js';
import { type Command, validateCommand } from '../statemachine/commands.js';
import { NodeStorage, type PersistItem } from '../storage/node-storage.js';
import {
  type Address,
  type LogFn,
  PeerTransport,
  type RpcContext,
  RpcServer,
  type StreamSink,
} from '../transport/index.js';
import {
  CLIENT_OPS,
  type ClusterStatus,
  type CmdArgs,
  type Consistency,
  type Hello,
  type KeepAliveArgs,
  type PartitionMap,
  type ReadArgs,
  type ReadRequest,
  SLOT_COUNT,
  type WatchArgs,
} from '../transport/protocol.js';
import { evenSlots, slotOf } from '../transport/slots.js';
import type { NodeConfig } from './config.js';
import { GroupReplica, type ReadWaiter } from './group.js';
import { type PeerMessage, validatePeerMessage } from './raft-wire.js';
import { NO_FSYNC_FLUSH_MS, NO_TEST_HOOKS, stateMachineBugConfig, type TestHooks } from './test-hooks.js';

/** METADATA_GROUP is the id of the group that holds the cluster's own state. */
export const METADATA_GROUP = 0;
/** REPLICAS is how many replicas each partition group has (fewer when the cluster is smaller). */
export const REPLICAS = 3;
/** How often leaderships are moved toward each group's preferred replica. */
const BALANCE_EVERY_MS = 2000;

/** StoreLayout is a store's partition groups and the slots each owns. */
interface StoreLayout {
  readonly name: string;
  readonly epoch: number;
  readonly groups: { id: number; slots: [number, number][]; replicas: number[] }[];
  /** slotGroup[slot] is the group id that owns it. */
  readonly slotGroup: Int32Array;
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

export class DkvNode {
  readonly id: number;
  private readonly cfg: NodeConfig;
  private readonly log: LogFn;
  private readonly onFatal: ((err: unknown) => void) | undefined;
  private readonly clock: Clock;
  private readonly hooks: TestHooks;
  private readonly storage: NodeStorage;
  /** Snapshots received from leaders and installed, since start. */
  private snapshotsInstalled = 0;
  private readonly groups = new Map<number, GroupReplica>();
  private readonly layout: ReturnType<typeof layoutOf>;
  private readonly storeByName = new Map<string, StoreLayout>();
  private readonly storeOfGroup = new Map<number, string>();
  private readonly peerUp = new Map<number, boolean>();
  private readonly clientAddrOf = new Map<number, string>();
  private transport: PeerTransport<PeerMessage> | undefined;
  private rpc: RpcServer | undefined;
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
    this.layout = layoutOf(cfg);
    for (const s of this.layout.stores) {
      this.storeByName.set(s.name, s);
      for (const g of s.groups) this.storeOfGroup.set(g.id, s.name);
    }
    for (const p of cfg.peers) this.clientAddrOf.set(p.id, `${p.host}:${p.clientPort}`);
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
    if (cfg.balanceLeaders) node.balancer = setInterval(() => node.balanceLeaders(), BALANCE_EVERY_MS);
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
    const wanted: { id: number; replicas: number[] }[] = [
      { id: METADATA_GROUP, replicas: this.layout.metadataReplicas },
      ...this.layout.stores.flatMap((s) => s.groups),
    ];
    for (const g of wanted) {
      if (!g.replicas.includes(this.id)) continue;
      const gs = this.storage.group(g.id) ?? (await this.storage.createGroup(g.id, confOf(g.replicas)));
      const replica = await GroupReplica.open({
        id: g.id,
        store: this.storeOfGroup.get(g.id) ?? '',
        nodeId: this.id,
        storage: gs,
        random: new SeededRandom((this.id * 7919 + g.id * 104729 + this.clock.nowMs()) >>> 0),
        electionTicks: this.cfg.electionTicks,
        heartbeatTicks: this.cfg.heartbeatTicks,
        stateMachine: { tickMs: this.cfg.tickMs, ...stateMachineBugConfig(this.hooks.bugs) },
      });
      gs.onFetched = () => {
        replica.raw.entriesFetched();
        this.schedule();
      };
      this.groups.set(g.id, replica);
      // The only voter need not wait out an election timeout.
      const voters = replica.confState.voters;
      if (voters.length === 1 && voters[0] === this.id) replica.raw.campaign();
    }
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
      onMessages: (from, msgs) => this.onPeerMessages(from, msgs),
      onPeerState: (peer, up) => this.onPeerState(peer, up),
      log: this.log,
    });
    await this.transport.start();
    this.rpc = new RpcServer({
      listen: { host: this.cfg.host, port: this.cfg.clientPort },
      frameBytesMax: this.cfg.frameBytesMax,
      inFlightMax: this.cfg.inFlightMax,
      log: this.log,
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
        this.sendReadBatches();
        const work: [GroupReplica, Ready][] = [];
        for (const g of this.groups.values()) if (g.raw.hasReady()) work.push([g, g.raw.ready()]);
        if (work.length === 0) break;
        const items: PersistItem[] = work.map(([g, rd]) => ({ storage: g.storage, ready: rd }));
        await this.storage.commit(items);
        if (this.stopped) return;
        if (this.transport) {
          for (const [g, rd] of work) for (const m of rd.messages) this.transport.send(m.to, { g: g.id, m });
          this.transport.flush();
        }
        for (const [g, rd] of work) this.applyReady(g, rd);
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
      if (g.isLeader && g.id === METADATA_GROUP) this.publishLayout();
    }
    if (rd.snapshot) {
      g.installSnapshot(rd.snapshot);
      this.snapshotsInstalled++;
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
    const snap = g.sm.snapshot();
    const conf = g.confState;
    g.storage
      .createSnapshot(snap.index, conf, snap.chunks(), { tailEntries: this.cfg.snapshotTailEntries })
      .then((rec) => this.log('info', 'snapshot', { group: g.id, index: rec.index, bytes: rec.totalBytes }))
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

  /** balanceLeaders hands each group to its preferred replica (round-robin), spreading leaders. */
  private balanceLeaders(): void {
    for (const g of this.groups.values()) {
      if (!g.isLeader) continue;
      const voters = [...g.confState.voters].sort((a, b) => a - b);
      if (voters.length < 2) continue;
      const preferred = voters[g.id % voters.length]!;
      if (preferred === this.id || !this.peerUp.get(preferred)) continue;
      const st = g.raw.status();
      const p = st.progress?.get(preferred);
      if (!p || p.match < st.commit) continue;
      g.raw.transferLeader(preferred);
    }
    this.schedule();
  }

  // ---------------------------------------------------------------- metadata

  /** publishLayout writes the bootstrap layout into the metadata group, once (ifAbsent). */
  private publishLayout(): void {
    const g = this.groups.get(METADATA_GROUP);
    if (!g) return;
    const members = [
      { id: this.id, address: `${this.cfg.host}:${this.cfg.clientPort}` },
      ...this.cfg.peers.map((p) => ({ id: p.id, address: `${p.host}:${p.clientPort}` })),
    ].sort((a, b) => a.id - b.id);
    const puts: Command[] = [
      { op: 'put', key: 'members', value: members, ifAbsent: true },
      { op: 'put', key: 'epoch', value: 1, ifAbsent: true },
      ...this.layout.stores.map(
        (s): Command => ({
          op: 'put',
          key: `stores/${s.name}`,
          value: { name: s.name, epoch: s.epoch, groups: s.groups },
          ifAbsent: true,
        }),
      ),
    ];
    for (const cmd of puts) {
      if (g.sm.get((cmd as { key: string }).key)) continue;
      this.proposeTo(g, cmd, undefined).catch(() => undefined);
    }
  }

  // ---------------------------------------------------------------- requests

  private pendingTotal(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.pendingCount;
    return n;
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
    if (!s) throw new DkvError(ErrorCode.StoreNotFound, `store ${JSON.stringify(name)} does not exist`);
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
    for (const k of this.keysOf(cmd)) {
      if (s.slotGroup[slotOf(k)] !== g.id) {
        throw new DkvError(
          ErrorCode.CrossGroup,
          `key ${JSON.stringify(k)} belongs to another group than group ${g.id}; use a {hash tag} to keep keys together`,
        );
      }
    }
    return this.proposeTo(g, cmd, args.session);
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
        throw new DkvError(
          ErrorCode.InvalidArgument,
          `unknown read op ${JSON.stringify((r as { op?: unknown }).op)}`,
        );
    }
  }

  private unary(op: string, args: unknown, _ctx: RpcContext): unknown {
    if (this.stopped) throw new DkvError(ErrorCode.Unavailable, `node ${this.id} is stopping`);
    const a = (typeof args === 'object' && args !== null ? args : {}) as Record<string, unknown>;
    switch (op) {
      case 'hello':
        return { nodeId: this.id, clusterId: this.cfg.clusterId, protocol: 1 } satisfies Hello;
      case 'map':
        return this.partitionMap(this.store(a.store));
      case 'status':
        return this.status();
      case 'cmd':
        return this.cmd(a as unknown as CmdArgs);
      case 'read':
        return this.read(a as unknown as ReadArgs);
      default:
        throw new DkvError(ErrorCode.InvalidArgument, `unknown op ${op}`);
    }
  }

  private stream(op: string, args: unknown, _ctx: RpcContext, sink: StreamSink): (() => void) | undefined {
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
    drain();
    return () => {
      over = true;
      sub.close();
    };
  }

  /** partitionMap describes a store's groups and where their leaders are. */
  private partitionMap(s: StoreLayout): PartitionMap {
    const members = [
      { id: this.id, address: hostPort(this.clientAddress()) },
      ...this.cfg.peers.map((p) => ({ id: p.id, address: `${p.host}:${p.clientPort}` })),
    ].sort((a, b) => a.id - b.id);
    return {
      store: s.name,
      epoch: s.epoch,
      slotCount: SLOT_COUNT,
      members,
      groups: s.groups.map((x) => ({ ...x, leader: this.groups.get(x.id)?.leader ?? 0 })),
    };
  }

  // ---------------------------------------------------------------- status and shutdown

  status(): ClusterStatus {
    const members = [
      { id: this.id, address: hostPort(this.clientAddress()), healthy: !this.stopped },
      ...this.cfg.peers.map((p) => ({
        id: p.id,
        address: `${p.host}:${p.clientPort}`,
        healthy: this.peerUp.get(p.id) === true,
      })),
    ].sort((a, b) => a.id - b.id);
    const groups = [...this.groups.values()]
      .sort((a, b) => a.id - b.id)
      .map((g) => {
        const st = g.raw.status();
        return {
          id: g.id,
          store: g.id === METADATA_GROUP ? '_meta' : g.store,
          leader: g.leader,
          term: st.term,
          commitIndex: st.commit,
          replicas: [...g.confState.voters].sort((a, b) => a - b),
        };
      });
    return { members, groups };
  }

  health(): {
    ok: boolean;
    nodeId: number;
    groups: number;
    leaderOf: number;
    peersUp: number;
    peersTotal: number;
  } {
    let leaderOf = 0;
    let leaderless = 0;
    for (const g of this.groups.values()) {
      if (g.isLeader) leaderOf++;
      if (g.leader === 0) leaderless++;
    }
    const peersUp = [...this.peerUp.values()].filter(Boolean).length;
    return {
      ok: !this.stopped && leaderless === 0,
      nodeId: this.id,
      groups: this.groups.size,
      leaderOf,
      peersUp,
      peersTotal: this.peerUp.size,
    };
  }

  /** metrics is the node's state in the Prometheus text format. */
  metrics(): string {
    const lines: string[] = [];
    const metric = (name: string, help: string, type: string, rows: [string, number][]): void => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of rows) lines.push(`${name}${labels} ${v}`);
    };
    const gs = [...this.groups.values()];
    const lbl = (g: GroupReplica): string => `{group="${g.id}"}`;
    metric(
      'dkv_group_is_leader',
      'Whether this node leads the group.',
      'gauge',
      gs.map((g) => [lbl(g), g.isLeader ? 1 : 0]),
    );
    metric(
      'dkv_group_term',
      'Raft term.',
      'gauge',
      gs.map((g) => [lbl(g), g.raw.status().term]),
    );
    metric(
      'dkv_group_commit_index',
      'Raft commit index.',
      'gauge',
      gs.map((g) => [lbl(g), g.raw.status().commit]),
    );
    metric(
      'dkv_group_applied_index',
      'Last applied index.',
      'gauge',
      gs.map((g) => [lbl(g), g.sm.appliedIndex]),
    );
    metric(
      'dkv_group_revision',
      'Key revision.',
      'gauge',
      gs.map((g) => [lbl(g), g.sm.revision]),
    );
    metric(
      'dkv_group_pending_requests',
      'Requests waiting.',
      'gauge',
      gs.map((g) => [lbl(g), g.pendingCount]),
    );
    metric('dkv_snapshots_installed_total', 'Snapshots received from leaders and installed.', 'counter', [
      ['', this.snapshotsInstalled],
    ]);
    metric(
      'dkv_peer_up',
      'Whether the peer link is up.',
      'gauge',
      [...this.peerUp].map(([p, up]) => [`{peer="${p}"}`, up ? 1 : 0]),
    );
    return `${lines.join('\n')}\n`;
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
    // Let a round in flight finish its batch before the database closes.
    for (let i = 0; i < 200 && this.running; i++) await new Promise((r) => setTimeout(r, 10));
    await this.storage.close();
    this.log('info', 'node stopped', { node: this.id });
  }
}
