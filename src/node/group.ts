/**
 * GroupReplica is this node's replica of one Raft group: the Raft core (RawNode), its
 * durable storage (GroupStorage), its state machine, and the requests waiting on it
 * (proposals by log index, reads by ReadIndex batch, lock acquires by waiter). The node
 * (node.ts) drives every replica through one Ready loop; this class holds what belongs to a
 * single group and the rules for answering its waiters.
 */
import { DkvError, ErrorCode } from '../errors.js';
import {
  type ConfState,
  decodeConfChange,
  type Entry,
  EntryType,
  RaftRole,
  RawNode,
  type ReadState,
  type Snapshot,
} from '../raft/index.js';
import type { Random } from '../random.js';
import type { ApplyResult, Notification, StateMachineConfig } from '../statemachine/state-machine.js';
import { GroupStateMachine } from '../statemachine/state-machine.js';
import type { GroupStorage } from '../storage/group-storage.js';

/** Waiter is a request waiting inside the node for its answer. */
export interface Waiter {
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: unknown) => void;
  /** When the node gives up and answers TIMEOUT (ms, the node clock's monotonicMs). */
  readonly deadline: number;
}

/** Proposal is a waiter for the entry appended at one log index. */
interface Proposal extends Waiter {
  readonly term: number;
  /** A lock acquire keeps waiting after a `queued` answer, under this key. */
  readonly waiterKey: string | undefined;
}

/** ReadWaiter serves one read once the group has applied far enough. */
export interface ReadWaiter extends Waiter {
  readonly run: () => unknown;
}

export interface GroupReplicaOptions {
  readonly id: number;
  readonly store: string;
  readonly nodeId: number;
  readonly storage: GroupStorage;
  readonly random: Random;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly stateMachine: Partial<StateMachineConfig>;
  /** The Raft bound on proposed, uncommitted bytes (default the core's 64 MiB). */
  readonly uncommittedBytesMax?: number;
}

function errorOf(r: ApplyResult & { ok: false }): DkvError {
  return new DkvError(r.code, r.message);
}

export class GroupReplica {
  readonly id: number;
  /** The store the group belongs to (updated when the metadata is read). */
  store: string;
  readonly storage: GroupStorage;
  readonly raw: RawNode;
  sm: GroupStateMachine;
  confState: ConfState;
  /** The leader as of the last Ready (0: none known). */
  leader = 0;
  role: RaftRole = RaftRole.Follower;
  /** Set while a local snapshot is being written. */
  snapshotting = false;
  /** Set while a tick entry is proposed and not yet applied. */
  tickInFlight = false;
  /** Set while a `configure` entry (the store's indexes) is proposed and not yet applied. */
  indexConfiguring = false;
  /**
   * Where this node's replicated clock for the group started, as its leader (node.ts
   * `replicatedNow`): the replicated time then and the monotonic clock then. Cleared when
   * leadership is lost.
   */
  timeAnchor: { readonly stamp: number; readonly mono: number } | undefined;
  /** The applied time (sm.time) as of `appliedTimeMono`, the monotonic time this node applied it. */
  appliedTime = 0;
  appliedTimeMono = 0;

  private readonly proposals = new Map<number, Proposal>();
  /** Reads waiting for the next ReadIndex batch. */
  readQueue: ReadWaiter[] = [];
  /** ReadIndex batches sent, by context. */
  private readonly readBatches = new Map<string, ReadWaiter[]>();
  /** Batches whose read index is known, waiting until it is applied. */
  private readsAtIndex: { index: number; waiters: ReadWaiter[] }[] = [];
  /** Lock acquires answered `queued`, waiting for their grant (or time-out) notification. */
  private readonly lockWaits = new Map<string, Waiter>();

  private readonly smConfig: Partial<StateMachineConfig>;

  private constructor(opts: GroupReplicaOptions, sm: GroupStateMachine, applied: number) {
    this.id = opts.id;
    this.store = opts.store;
    this.storage = opts.storage;
    this.smConfig = opts.stateMachine;
    this.sm = sm;
    this.confState = opts.storage.initialState().confState;
    this.raw = new RawNode({
      id: opts.nodeId,
      storage: opts.storage,
      random: opts.random,
      electionTicks: opts.electionTicks,
      heartbeatTicks: opts.heartbeatTicks,
      applied,
      checkQuorum: true,
      preVote: true,
      coalesceAppends: true,
      ...(opts.uncommittedBytesMax !== undefined && { maxUncommittedBytes: opts.uncommittedBytesMax }),
    });
  }

  /**
   * open builds the replica from its storage: the state machine is restored from the stored
   * snapshot, and Raft then replays the committed entries after it.
   */
  static async open(opts: GroupReplicaOptions): Promise<GroupReplica> {
    const snap = await opts.storage.readSnapshot();
    const sm = new GroupStateMachine(opts.stateMachine);
    const at = snap.metadata.index;
    if (snap.data.length > 0) sm.restore(at, [snap.data]);
    else if (at > 0) sm.skip(at);
    return new GroupReplica(opts, sm, at);
  }

  get isLeader(): boolean {
    return this.role === RaftRole.Leader;
  }

  /** pendingCount is how many requests wait on this group. */
  get pendingCount(): number {
    let n = this.proposals.size + this.readQueue.length + this.lockWaits.size;
    for (const w of this.readBatches.values()) n += w.length;
    for (const b of this.readsAtIndex) n += b.waiters.length;
    return n;
  }

  /** oldestProposalDeadline is the deadline of the oldest proposal still waiting (undefined: none). */
  oldestProposalDeadline(): number | undefined {
    for (const p of this.proposals.values()) return p.deadline;
    return undefined;
  }

  /** addProposal waits for the entry proposed at (index, term). */
  addProposal(index: number, term: number, w: Waiter, waiterKey?: string): void {
    this.proposals.set(index, { ...w, term, waiterKey });
  }

  /** startReadBatch moves the queued reads into a batch under `context`. */
  startReadBatch(context: string): void {
    this.readBatches.set(context, this.readQueue);
    this.readQueue = [];
  }

  /** failQueuedReads answers every read not yet in a batch (no leader to ask). */
  failQueuedReads(err: DkvError): void {
    for (const r of this.readQueue) r.reject(err);
    this.readQueue = [];
  }

  /** installSnapshot replaces the state machine with a snapshot received from the leader. */
  installSnapshot(snap: Snapshot): void {
    const at = snap.metadata.index;
    const sm = new GroupStateMachine(this.smConfig);
    if (snap.data.length > 0) sm.restore(at, [snap.data]);
    else sm.skip(at);
    this.sm.cancelWatchers(
      'the replica was replaced by a snapshot from the leader; resume from your last revision',
    );
    this.sm = sm;
    this.confState = snap.metadata.confState;
    // Entries up to `at` were applied inside the snapshot: their answers are unknown here.
    for (const [index, p] of this.proposals) {
      if (index <= at) {
        this.proposals.delete(index);
        p.reject(
          new DkvError(ErrorCode.Timeout, 'the outcome is unknown: the replica was replaced by a snapshot'),
        );
      }
    }
  }

  /** applyEntries applies committed entries and answers the proposals they decide. */
  applyEntries(entries: readonly Entry[]): void {
    for (const e of entries) {
      if (e.index <= this.sm.appliedIndex) continue;
      const p = this.proposals.get(e.index);
      if (p) this.proposals.delete(e.index);
      if (p && p.term !== e.term) {
        // Another leader's entry took that index: the proposal was dropped, certainly not applied.
        p.reject(
          new DkvError(ErrorCode.NotLeader, 'leadership changed before the request was committed; retry', {
            group: this.id,
          }),
        );
      }
      const mine = p && p.term === e.term ? p : undefined;
      if (e.type === EntryType.ConfChange) {
        this.confState = this.raw.applyConfChange(decodeConfChange(e.data));
        this.sm.skip(e.index);
        mine?.resolve(true);
        continue;
      }
      if (e.data.length === 0) {
        this.sm.skip(e.index);
        continue;
      }
      const out = this.sm.apply(e.index, e.data);
      if (mine) this.answer(mine, out.result);
      for (const n of out.notifications) this.notify(n);
    }
  }

  private answer(p: Proposal, r: ApplyResult): void {
    if (!r.ok) {
      p.reject(errorOf(r));
      return;
    }
    const v = r.value as { acquired?: boolean; queued?: boolean } | null;
    if (p.waiterKey !== undefined && v && v.acquired === false && v.queued === true) {
      // Queued behind the holder: the answer comes with the grant or the time-out.
      this.lockWaits.set(p.waiterKey, p);
      return;
    }
    p.resolve(r.value);
  }

  private notify(n: Notification): void {
    const key = n.client !== undefined ? `${n.seq}@${n.client}` : `@${n.index}`;
    const w = this.lockWaits.get(key);
    if (!w) return;
    this.lockWaits.delete(key);
    if (n.result.ok) w.resolve(n.result.value);
    else w.reject(errorOf(n.result));
  }

  /** noteReadStates records the read index of each batch the leader confirmed. */
  noteReadStates(states: readonly ReadState[]): void {
    for (const rs of states) {
      const waiters = this.readBatches.get(rs.context);
      if (!waiters) continue;
      this.readBatches.delete(rs.context);
      this.readsAtIndex.push({ index: rs.index, waiters });
    }
  }

  /** serveReads answers every read whose index has been applied. */
  serveReads(): void {
    if (this.readsAtIndex.length === 0) return;
    const applied = this.sm.appliedIndex;
    const later: { index: number; waiters: ReadWaiter[] }[] = [];
    for (const b of this.readsAtIndex) {
      if (b.index > applied) {
        later.push(b);
        continue;
      }
      for (const w of b.waiters) {
        try {
          w.resolve(w.run());
        } catch (err) {
          w.reject(err);
        }
      }
    }
    this.readsAtIndex = later;
  }

  /** lostLeadership fails the reads whose batches this replica can no longer confirm. */
  lostLeadership(): void {
    const err = new DkvError(ErrorCode.NotLeader, 'leadership changed during the read; retry', {
      group: this.id,
    });
    for (const ws of this.readBatches.values()) for (const w of ws) w.reject(err);
    this.readBatches.clear();
  }

  /** expire answers TIMEOUT to every waiter past its deadline (`now`: monotonic ms). */
  expire(now: number): void {
    const timeout = (what: string): DkvError =>
      new DkvError(ErrorCode.Timeout, `${what} did not finish in time; the outcome is unknown`, {
        group: this.id,
      });
    for (const [i, p] of this.proposals) {
      if (p.deadline <= now) {
        this.proposals.delete(i);
        p.reject(timeout('the request'));
      }
    }
    for (const [k, w] of this.lockWaits) {
      if (w.deadline <= now) {
        this.lockWaits.delete(k);
        w.reject(timeout('the lock wait'));
      }
    }
    const keep = (ws: ReadWaiter[]): ReadWaiter[] =>
      ws.filter((w) => {
        if (w.deadline > now) return true;
        w.reject(
          new DkvError(ErrorCode.Unavailable, 'the read could not be confirmed by a quorum in time', {
            group: this.id,
          }),
        );
        return false;
      });
    this.readQueue = keep(this.readQueue);
    for (const [ctx, ws] of this.readBatches) {
      const left = keep(ws);
      if (left.length === 0) this.readBatches.delete(ctx);
      else this.readBatches.set(ctx, left);
    }
    this.readsAtIndex = this.readsAtIndex
      .map((b) => ({ index: b.index, waiters: keep(b.waiters) }))
      .filter((b) => b.waiters.length > 0);
  }

  /** failAll answers every waiter with `err` (shutdown). */
  failAll(err: DkvError): void {
    for (const p of this.proposals.values()) p.reject(err);
    this.proposals.clear();
    for (const w of this.lockWaits.values()) w.reject(err);
    this.lockWaits.clear();
    this.failQueuedReads(err);
    for (const ws of this.readBatches.values()) for (const w of ws) w.reject(err);
    this.readBatches.clear();
    for (const b of this.readsAtIndex) for (const w of b.waiters) w.reject(err);
    this.readsAtIndex = [];
  }
}
