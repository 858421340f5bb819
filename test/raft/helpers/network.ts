/**
 * A small deterministic in-memory network of Raft replicas for scenario tests. Each replica
 * is a RawNode over a MemoryStorage, driven by the Ready contract (persist, send, apply,
 * advance). Messages wait in one queue until the test delivers, drops, duplicates or
 * reorders them; filters model partitions. Nothing here reads a clock or Math.random: a
 * run replays exactly from its seed.
 */
import {
  type ConfState,
  decodeConfChange,
  type Entry,
  EntryType,
  type HardState,
  MemoryStorage,
  type Message,
  NONE,
  type NodeId,
  type ProposeResult,
  type RaftConfig,
  RaftRole,
  RawNode,
  type ReadState,
  type Ready,
  type Snapshot,
} from '../../../src/raft/index.js';
import { SeededRandom } from '../../../src/random.js';

/** NodeConfig is the part of a RaftConfig a test may choose (the network supplies the rest). */
export type NodeConfig = Omit<RaftConfig, 'id' | 'storage' | 'random'>;

/** NetworkOptions describe a network to build. */
export interface NetworkOptions {
  /** The voters of the initial configuration. */
  readonly voters: readonly NodeId[];
  /** The learners of the initial configuration. */
  readonly learners?: readonly NodeId[];
  /**
   * The replicas to create; by default every voter and learner. Messages to a member that is
   * not created stay in the queue, so a test can read what a lone replica sends.
   */
  readonly replicas?: readonly NodeId[];
  /** Seeds every replica's random source and the network's drop decisions. */
  readonly seed?: number;
  /** Configuration shared by every replica. */
  readonly config?: NodeConfig;
  /** Per-replica configuration, merged over `config`. */
  readonly configFor?: (id: NodeId) => NodeConfig;
  /** Fills a replica's storage (entries, hard state) before its RawNode is built. */
  readonly prepare?: (id: NodeId, storage: MemoryStorage) => void;
}

/** MessageFilter decides whether the network drops a message (true = drop). */
export type MessageFilter = (m: Message) => boolean;

/** MessageRewrite changes a message in transit; returning null drops it. */
export type MessageRewrite = (m: Message) => Message | null;

/** STABILIZE_ROUNDS_MAX bounds `stabilize`, so a livelock fails the test instead of hanging it. */
export const STABILIZE_ROUNDS_MAX = 10_000;

/** READY_LOOPS_MAX bounds the Ready loop of one replica in one `process` call. */
export const READY_LOOPS_MAX = 1_000;

/** ALL_BYTES is a byte limit that never trims (for reading whole logs). */
const ALL_BYTES = Number.MAX_SAFE_INTEGER;

/** confOf builds a non-joint ConfState. */
export function confOf(voters: readonly NodeId[], learners: readonly NodeId[] = []): ConfState {
  return {
    voters: [...voters],
    learners: [...learners],
    votersOutgoing: [],
    learnersNext: [],
    autoLeave: false,
  };
}

/** BootstrapPoint is where a bootstrapped member's log starts, as its MemoryStorage makes it. */
export interface BootstrapPoint {
  /** The index of the initial snapshot: the first entry goes at index + 1. */
  readonly index: number;
  /** The term of that snapshot point. */
  readonly term: number;
  /** The initial hard state's term. */
  readonly hardTerm: number;
}

/**
 * bootstrapPoint reads where a member bootstrapped with `voters` starts, so that tests can
 * place their entries and terms after it whatever convention MemoryStorage uses.
 */
export function bootstrapPoint(voters: readonly NodeId[]): BootstrapPoint {
  const s = new MemoryStorage(confOf(voters));
  const index = s.firstIndex() - 1;
  return { index, term: s.term(index), hardTerm: s.initialState().hardState.term };
}

/** bytes encodes a string payload. */
export function bytes(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

/** text decodes a payload written by `bytes`. */
export function text(b: Uint8Array): string {
  return new TextDecoder().decode(b);
}

/** entriesOfTerms builds entries `terms[i]` at index `from + i`, with payloads that name them. */
export function entriesOfTerms(from: number, terms: readonly number[]): Entry[] {
  return terms.map((term, i) => ({
    index: from + i,
    term,
    type: EntryType.Normal,
    data: bytes(`t${term}i${from + i}`),
  }));
}

/**
 * Replica is one member: its RawNode, its durable storage, and the state machine the
 * driver applies to (the applied entries by index, which a snapshot replaces).
 */
export class Replica {
  readonly id: NodeId;
  readonly storage: MemoryStorage;
  readonly node: RawNode;
  /** Entries applied, by index (no-ops and membership changes too). Invariant: keys <= appliedIndex. */
  readonly applied = new Map<number, Entry>();
  /** The highest index applied, through entries or a snapshot. */
  appliedIndex = 0;
  /** Snapshots installed from a leader, in order. */
  readonly installedSnapshots: Snapshot[] = [];
  /** ReadStates handed out, in order. */
  readonly readStates: ReadState[] = [];
  /** Every hard state persisted, in order. */
  readonly hardStates: HardState[] = [];
  /** Membership after each applied change. */
  confState: ConfState;

  constructor(id: NodeId, storage: MemoryStorage, node: RawNode) {
    this.id = id;
    this.storage = storage;
    this.node = node;
    this.confState = storage.initialState().confState;
    this.appliedIndex = storage.firstIndex() - 1;
  }

  /** log returns the durable log: the snapshot's index and term, then every retained entry. */
  log(): { readonly snapshotIndex: number; readonly snapshotTerm: number; readonly entries: Entry[] } {
    const first = this.storage.firstIndex();
    const last = this.storage.lastIndex();
    return {
      snapshotIndex: first - 1,
      snapshotTerm: this.storage.term(first - 1),
      entries: first <= last ? this.storage.entries(first, last + 1, ALL_BYTES) : [],
    };
  }

  /** termAt is the durable term of entry `index`, or undefined if it is compacted or absent. */
  termAt(index: number): number | undefined {
    if (index < this.storage.firstIndex() - 1 || index > this.storage.lastIndex()) return undefined;
    return this.storage.term(index);
  }
}

/**
 * Network holds the replicas and the message queue. Tests call `process` (run every
 * replica's Ready loop), then deliver with `deliverAll`, `deliverAt` or `stabilize`.
 * Every message that leaves a Ready is recorded in `sent`, delivered or not.
 */
export class Network {
  readonly replicas = new Map<NodeId, Replica>();
  /** Messages sent and not yet delivered or dropped, oldest first. */
  queue: Message[] = [];
  /** Every message that left a Ready, in order. */
  readonly sent: Message[] = [];
  /** Messages dropped by filters, isolation or the drop rate. */
  readonly dropped: Message[] = [];
  /** Ids whose links are all cut. */
  readonly isolated = new Set<NodeId>();
  /** The probability that a delivered message is lost; 0 by default. */
  dropRate = 0;
  /** Messages addressed to members that have no replica here, in order. */
  readonly undeliverable: Message[] = [];
  private rewrites: MessageRewrite[] = [];
  private readonly random: SeededRandom;
  /** Each replica's configuration, to rebuild it on restart. */
  private readonly configs = new Map<NodeId, RaftConfig>();
  /** The configuration shared by every replica. */
  private readonly baseConfig: NodeConfig;

  constructor(opts: NetworkOptions) {
    const seed = opts.seed ?? 1;
    const root = new SeededRandom(seed);
    this.random = root.fork();
    this.baseConfig = opts.config ?? {};
    const learners = opts.learners ?? [];
    const ids = opts.replicas ?? [...opts.voters, ...learners];
    for (const id of ids) {
      const storage = new MemoryStorage(confOf(opts.voters, learners));
      opts.prepare?.(id, storage);
      const config: RaftConfig = {
        electionTicks: 10,
        heartbeatTicks: 1,
        ...opts.config,
        ...opts.configFor?.(id),
        id,
        storage,
        random: root.fork(),
      };
      this.configs.set(id, config);
      this.replicas.set(id, new Replica(id, storage, new RawNode(config)));
    }
  }

  /** replica returns a member, failing loudly if it does not exist. */
  replica(id: NodeId): Replica {
    const r = this.replicas.get(id);
    if (!r) throw new Error(`network: no replica ${id}`);
    return r;
  }

  /** node is a shorthand for `replica(id).node`. */
  node(id: NodeId): RawNode {
    return this.replica(id).node;
  }

  /** ids lists the replicas, sorted. */
  ids(): NodeId[] {
    return [...this.replicas.keys()].sort((a, b) => a - b);
  }

  /**
   * leaders lists the replicas that believe they lead, with their terms. More than one may
   * appear (a stale leader of an older term), never two of the same term.
   */
  leaders(): { id: NodeId; term: number }[] {
    const out: { id: NodeId; term: number }[] = [];
    for (const id of this.ids()) {
      const st = this.node(id).status();
      if (st.role === RaftRole.Leader) out.push({ id, term: st.term });
    }
    return out;
  }

  /** leader returns the leader of the highest term, or NONE. */
  leader(): NodeId {
    let best: { id: NodeId; term: number } | undefined;
    for (const l of this.leaders()) if (!best || l.term > best.term) best = l;
    return best?.id ?? NONE;
  }

  // ------------------------------------------------------------------ driving

  /** process runs every replica's Ready loop until none has work; messages join the queue. */
  process(): void {
    for (const id of this.ids()) this.processOne(id);
  }

  /** processOne runs one replica's Ready loop until it has no work. */
  processOne(id: NodeId): void {
    const r = this.replica(id);
    for (let i = 0; r.node.hasReady(); i++) {
      if (i >= READY_LOOPS_MAX) throw new Error(`network: replica ${id} never ran out of Ready`);
      this.handleReady(r, r.node.ready());
    }
  }

  /** handleReady follows the Ready contract of types.ts, in its order. */
  private handleReady(r: Replica, rd: Ready): void {
    // 1. Persist.
    if (rd.snapshot) r.storage.applySnapshot(rd.snapshot);
    r.storage.append(rd.entries);
    if (rd.hardState) {
      r.storage.setHardState(rd.hardState);
      r.hardStates.push(rd.hardState);
    }
    // 2. Send.
    for (const m of rd.messages) {
      this.sent.push(m);
      this.queue.push(m);
    }
    // 3. Apply.
    if (rd.snapshot) {
      r.installedSnapshots.push(rd.snapshot);
      r.appliedIndex = rd.snapshot.metadata.index;
      r.confState = rd.snapshot.metadata.confState;
    }
    for (const e of rd.committedEntries) {
      if (e.index !== r.appliedIndex + 1) {
        throw new Error(`network: replica ${r.id} applies ${e.index} after ${r.appliedIndex}`);
      }
      if (e.type === EntryType.ConfChange) r.confState = r.node.applyConfChange(decodeConfChange(e.data));
      r.applied.set(e.index, e);
      r.appliedIndex = e.index;
    }
    // 4. Reads.
    for (const rs of rd.readStates) r.readStates.push(rs);
    // 5. Advance.
    r.node.advance();
  }

  /** tick ticks the given replicas (all by default) `n` times, processing after each tick. */
  tick(n = 1, ids: readonly NodeId[] = this.ids()): void {
    for (let i = 0; i < n; i++) {
      for (const id of ids) this.node(id).tick();
      this.process();
    }
  }

  /** campaign makes `id` start an election and processes its Ready. */
  campaign(id: NodeId): void {
    this.node(id).campaign();
    this.process();
  }

  /** propose proposes `data` on `id` and processes its Ready. */
  propose(id: NodeId, data: Uint8Array | string): ProposeResult {
    const res = this.node(id).propose(typeof data === 'string' ? bytes(data) : data);
    this.process();
    return res;
  }

  /** step hands `m` to its addressee directly (no filters) and processes. */
  step(m: Message): void {
    this.node(m.to).step(m);
    this.process();
  }

  // ------------------------------------------------------------------ delivery

  /** transit applies isolation, rewrites and the drop rate to `m`; null means it is lost. */
  private transit(m: Message): Message | null {
    if (this.isolated.has(m.from) || this.isolated.has(m.to)) return null;
    let cur: Message | null = m;
    for (const f of this.rewrites) {
      cur = f(cur);
      if (cur === null) return null;
    }
    if (this.dropRate > 0 && this.random.chance(this.dropRate)) return null;
    return cur;
  }

  /**
   * deliver hands one message to its addressee unless the network loses it. Messages to a
   * replica that does not exist are kept aside in `undeliverable`.
   */
  private deliver(m: Message): void {
    const out = this.transit(m);
    if (out === null) {
      this.dropped.push(m);
      return;
    }
    const r = this.replicas.get(out.to);
    if (!r) {
      this.undeliverable.push(out);
      return;
    }
    r.node.step(out);
  }

  /** deliverAll delivers every queued message once (in order), then processes. */
  deliverAll(): void {
    const q = this.queue;
    this.queue = [];
    for (const m of q) this.deliver(m);
    this.process();
  }

  /** deliverAt removes the queued message at `i` and delivers it, then processes. */
  deliverAt(i: number): void {
    const [m] = this.queue.splice(i, 1);
    if (!m) throw new Error(`network: no queued message at ${i}`);
    this.deliver(m);
    this.process();
  }

  /** dropAt removes the queued message at `i` without delivering it. */
  dropAt(i: number): void {
    const [m] = this.queue.splice(i, 1);
    if (!m) throw new Error(`network: no queued message at ${i}`);
    this.dropped.push(m);
  }

  /** duplicateAt delivers a copy of the queued message at `i` and leaves the original queued. */
  duplicateAt(i: number): void {
    const m = this.queue[i];
    if (!m) throw new Error(`network: no queued message at ${i}`);
    this.deliver(m);
    this.process();
  }

  /**
   * stabilize delivers and processes until the queue is empty, and returns the number of
   * delivery rounds it took. Ticks are not advanced.
   */
  stabilize(maxRounds = STABILIZE_ROUNDS_MAX): number {
    this.process();
    for (let round = 0; round < maxRounds; round++) {
      if (this.queue.length === 0) return round;
      this.deliverAll();
    }
    throw new Error(`network: did not stabilize in ${maxRounds} rounds`);
  }

  /** take removes and returns the queued messages that match `pred` (all by default). */
  take(pred: (m: Message) => boolean = () => true): Message[] {
    const out: Message[] = [];
    const keep: Message[] = [];
    for (const m of this.queue) (pred(m) ? out : keep).push(m);
    this.queue = keep;
    return out;
  }

  // ------------------------------------------------------------------ faults

  /** isolate cuts every link of `id`. */
  isolate(id: NodeId): void {
    this.isolated.add(id);
  }

  /** addRewrite passes every message through `f` until the returned function is called. */
  addRewrite(f: MessageRewrite): () => void {
    this.rewrites.push(f);
    return () => {
      this.rewrites = this.rewrites.filter((g) => g !== f);
    };
  }

  /** addFilter drops every message `f` matches until the returned function is called. */
  addFilter(f: MessageFilter): () => void {
    return this.addRewrite((m) => (f(m) ? null : m));
  }

  /** cut drops messages between `a` and `b`, both ways. */
  cut(a: NodeId, b: NodeId): () => void {
    return this.addFilter((m) => (m.from === a && m.to === b) || (m.from === b && m.to === a));
  }

  /** heal removes every isolation and filter and resets the drop rate. */
  heal(): void {
    this.isolated.clear();
    this.rewrites = [];
    this.dropRate = 0;
  }

  /**
   * addReplica starts a new, empty replica `id` (empty storage and membership), as a node
   * joining the group does: it learns the membership from the leader.
   */
  addReplica(id: NodeId, config: NodeConfig = {}): Replica {
    if (this.replicas.has(id)) throw new Error(`network: replica ${id} exists`);
    const storage = new MemoryStorage();
    const full: RaftConfig = {
      electionTicks: 10,
      heartbeatTicks: 1,
      ...this.baseConfig,
      ...config,
      id,
      storage,
      random: this.random.fork(),
    };
    this.configs.set(id, full);
    const r = new Replica(id, storage, new RawNode(full));
    this.replicas.set(id, r);
    return r;
  }

  /**
   * restart crashes replica `id` and starts it again from its durable storage alone: its
   * volatile state (role, leader, progress, unsent messages) and its state machine are lost,
   * and it re-applies committed entries from its snapshot on.
   */
  restart(id: NodeId): void {
    const old = this.replica(id);
    const config = this.configs.get(id);
    if (!config) throw new Error(`network: no configuration for ${id}`);
    this.replicas.set(id, new Replica(id, old.storage, new RawNode(config)));
    this.process();
  }

  // ------------------------------------------------------------------ snapshots

  /**
   * compact has replica `id` snapshot its state at `index` (default: all applied) with
   * `data`, then discard its log up to that index.
   */
  compact(id: NodeId, data: Uint8Array, index?: number): Snapshot {
    const r = this.replica(id);
    const at = index ?? r.appliedIndex;
    const snap = r.storage.createSnapshot(at, r.confState, data);
    r.storage.compact(at);
    return snap;
  }
}
