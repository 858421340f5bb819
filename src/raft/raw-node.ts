import { encodeConfChange } from './conf-change-codec.js';
import type { RaftConfig } from './config.js';
import type { ProgressState } from './progress.js';
import { coalesceAppends, isLocalMessage, makeMessage, Raft } from './raft.js';
import {
  type ConfChange,
  type ConfState,
  EntryType,
  type HardState,
  type Message,
  MessageType,
  type NodeId,
  type ProposeResult,
  type RaftRole,
  type Ready,
  type SoftState,
} from './types.js';

/** FollowerStatus is the leader's view of one member, for status reports. */
export interface FollowerStatus {
  readonly match: number;
  readonly next: number;
  readonly state: ProgressState;
  readonly paused: boolean;
  readonly inflight: number;
  readonly isLearner: boolean;
  readonly recentActive: boolean;
}

/** RaftStatus is a snapshot of a replica's state, for operators and tests. */
export interface RaftStatus {
  readonly id: NodeId;
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly firstIndex: number;
  readonly lastIndex: number;
  readonly role: RaftRole;
  readonly leader: NodeId;
  readonly leadTransferee: NodeId;
  readonly confState: ConfState;
  readonly uncommittedBytes: number;
  /** Only on the leader: every member's progress. */
  readonly progress: ReadonlyMap<NodeId, FollowerStatus> | null;
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/**
 * RawNode is the driver-facing face of one Raft replica: feed it ticks, messages and
 * proposals; take its Ready, handle it in the order the Ready type documents, then call
 * `advance()`. It does no I/O and keeps no timers, so a whole cluster can be simulated.
 */
export class RawNode {
  private readonly raft: Raft;
  private prevSoftState: SoftState;
  private prevHardState: HardState;
  /** The Ready handed out and not yet advanced. Invariant: at most one. */
  private outstanding: Ready | null = null;

  constructor(config: RaftConfig) {
    this.raft = new Raft(config);
    this.prevSoftState = this.softState();
    this.prevHardState = this.raft.hardState();
  }

  /** id is this replica's id. */
  get id(): NodeId {
    return this.raft.id;
  }

  /** tick advances logical time by one tick (heartbeats, election timeouts). */
  tick(): void {
    this.raft.tick();
  }

  /** campaign starts an election now (with a pre-vote first, if enabled). */
  campaign(): void {
    this.raft.step(makeMessage({ type: MessageType.Hup, from: this.raft.id, to: this.raft.id }));
  }

  /** propose appends `data` to the log if this replica is the leader; see ProposeResult. */
  propose(data: Uint8Array): ProposeResult {
    return this.raft.propose(EntryType.Normal, data, null);
  }

  /**
   * proposeConfChange proposes a membership change. Only one may be pending at a time; a
   * change that is invalid for the current membership is refused up front.
   */
  proposeConfChange(cc: ConfChange): ProposeResult {
    return this.raft.propose(EntryType.ConfChange, encodeConfChange(cc), cc);
  }

  /** applyConfChange applies a committed membership entry; call it when applying that entry. */
  applyConfChange(cc: ConfChange): ConfState {
    return this.raft.applyConfChange(cc);
  }

  /**
   * step delivers a message from another replica. Local-only message types, and messages
   * without a term that should carry one, are dropped: they can only come from a bug or a
   * hostile peer, and the transport validates frames before this.
   */
  step(m: Message): void {
    if (isLocalMessage(m.type)) {
      this.raft.trace(`WARN ${this.raft.id} dropped local message type ${m.type} from the network`);
      return;
    }
    if (m.term === 0 && m.type !== MessageType.TransferLeader && m.type !== MessageType.ReadIndex) {
      this.raft.trace(`WARN ${this.raft.id} dropped message type ${m.type} without a term`);
      return;
    }
    this.raft.step(m);
  }

  /**
   * readIndex asks for a linearizable read. The answer arrives as a ReadState with the same
   * context once leadership is confirmed; it returns false if there is no leader to ask. A
   * request may also be lost with a leader change: callers time out and retry.
   */
  readIndex(context: string): boolean {
    if (context === '') throw new RangeError('RawNode.readIndex: the context must not be empty');
    return this.raft.readIndex(context);
  }

  /** transferLeader asks the leader to hand leadership to `transferee`. */
  transferLeader(transferee: NodeId): void {
    this.raft.step(makeMessage({ type: MessageType.TransferLeader, from: transferee, to: this.raft.id }));
  }

  /**
   * entriesFetched tells the core that entries its storage reported as temporarily
   * unavailable are now in memory: applying resumes, and lagging followers are sent to.
   */
  entriesFetched(): void {
    this.raft.entriesFetched();
  }

  /** reportUnreachable tells the leader that the last message to `id` may not have arrived. */
  reportUnreachable(id: NodeId): void {
    this.raft.step(makeMessage({ type: MessageType.Unreachable, from: id, to: this.raft.id }));
  }

  /** reportSnapshot tells the leader that a snapshot transfer to `id` finished or failed. */
  reportSnapshot(id: NodeId, ok: boolean): void {
    this.raft.step(makeMessage({ type: MessageType.SnapStatus, from: id, to: this.raft.id, reject: !ok }));
  }

  private softState(): SoftState {
    return { leader: this.raft.leader, role: this.raft.role };
  }

  /** hasReady tells whether `ready()` has anything to hand out. */
  hasReady(): boolean {
    if (this.outstanding) return false;
    const r = this.raft;
    if (r.hasDeferredWork()) return true;
    if (r.msgs.length > 0 || r.readStates.length > 0) return true;
    if (r.leader !== this.prevSoftState.leader || r.role !== this.prevSoftState.role) return true;
    if (!sameHardState(r.hardState(), this.prevHardState)) return true;
    if (r.log.unstable.nextSnapshot() !== null || r.log.unstable.hasNextEntries()) return true;
    return r.log.hasNextCommittedEntries();
  }

  /** ready returns the work to do now; see the Ready type for the order. Call advance() after. */
  ready(): Ready {
    if (this.outstanding) throw new Error('RawNode.ready: the previous Ready has not been advanced');
    const r = this.raft;
    r.flush();
    const soft = this.softState();
    const softChanged = soft.leader !== this.prevSoftState.leader || soft.role !== this.prevSoftState.role;
    const hs = r.hardState();
    const hsChanged = !sameHardState(hs, this.prevHardState);
    const entries = r.log.unstable.nextEntries();
    const snapshot = r.log.unstable.nextSnapshot();
    const committedEntries = r.log.nextCommittedEntries();
    const messages = r.cfg.coalesceAppends ? coalesceAppends(r.msgs, r.cfg.maxMsgBytes) : r.msgs;
    r.msgs = [];
    const readStates = r.readStates;
    r.readStates = [];
    const mustSync =
      entries.length > 0 ||
      snapshot !== null ||
      (hsChanged && (hs.term !== this.prevHardState.term || hs.vote !== this.prevHardState.vote));
    r.log.unstable.acceptInProgress();
    if (softChanged) this.prevSoftState = soft;
    const rd: Ready = {
      softState: softChanged ? soft : null,
      hardState: hsChanged ? hs : null,
      entries,
      snapshot,
      committedEntries,
      messages,
      readStates,
      mustSync,
    };
    this.outstanding = rd;
    return rd;
  }

  /** advance tells the core that the last Ready has been persisted, sent and applied. */
  advance(): void {
    const rd = this.outstanding;
    if (!rd) throw new Error('RawNode.advance: no Ready outstanding');
    this.outstanding = null;
    const r = this.raft;
    if (rd.hardState) this.prevHardState = rd.hardState;
    if (rd.snapshot) r.log.stableSnapTo(rd.snapshot.metadata.index);
    const lastEntry = rd.entries[rd.entries.length - 1];
    if (lastEntry) r.log.stableTo(lastEntry.index, lastEntry.term);
    const lastApplied = rd.committedEntries[rd.committedEntries.length - 1];
    if (lastApplied) r.appliedTo(lastApplied.index, rd.committedEntries);
    r.afterAdvance();
  }

  /** status reports this replica's state. */
  status(): RaftStatus {
    const r = this.raft;
    let progress: Map<NodeId, FollowerStatus> | null = null;
    if (r.role === 'leader') {
      progress = new Map();
      for (const [id, pr] of r.tracker.progress) {
        progress.set(id, {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          paused: pr.isPaused(),
          inflight: pr.inflights.size(),
          isLearner: pr.isLearner,
          recentActive: pr.recentActive,
        });
      }
    }
    return {
      id: r.id,
      term: r.term,
      vote: r.vote,
      commit: r.log.committed,
      applied: r.log.applied,
      firstIndex: r.log.firstIndex(),
      lastIndex: r.log.lastIndex(),
      role: r.role,
      leader: r.leader,
      leadTransferee: r.leadTransferee,
      confState: r.tracker.confState(),
      uncommittedBytes: r.uncommittedBytes,
      progress,
    };
  }

  /** describeProgress renders the leader's view of every member, one line each (for traces). */
  describeProgress(): string {
    const lines: string[] = [];
    const ids = [...this.raft.tracker.progress.keys()].sort((a, b) => a - b);
    for (const id of ids) lines.push(`${id}: ${this.raft.tracker.progress.get(id)!.describe()}`);
    return lines.join('\n');
  }

  /** isLeader is a shorthand for status().role === 'leader'. */
  isLeader(): boolean {
    return this.raft.role === 'leader';
  }

  /** leader is the leader this replica knows of, or NONE. */
  leader(): NodeId {
    return this.raft.leader;
  }
}
