import { Changer, ConfChangeError, isLeaveJoint, restoreConfig } from './conf-change.js';
import { type RaftConfig, ReadOnlyOption, type ResolvedRaftConfig, resolveRaftConfig } from './config.js';
import { RaftLog } from './log.js';
import { type Progress, ProgressState } from './progress.js';
import { jointCommittedIndex, VoteResult } from './quorum.js';
import { ReadOnly } from './read-only.js';
import { isStorageError, StorageErrorKind } from './storage.js';
import { describeConfig, isJoint, ProgressTracker } from './tracker.js';
import {
  type ConfChange,
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  MESSAGE_TYPE_NAMES,
  type Message,
  MessageType,
  NONE,
  type NodeId,
  ProposeRefusal,
  type ProposeResult,
  RaftRole,
  type ReadState,
  type Snapshot,
  type SnapshotChunk,
} from './types.js';

/** CAMPAIGN_TRANSFER is the Vote context that marks a campaign forced by a leader transfer. */
export const CAMPAIGN_TRANSFER = 'transfer';

/** SNAPSHOT_WINDOW_CHUNKS bounds the snapshot chunks in flight to one follower. */
export const SNAPSHOT_WINDOW_CHUNKS = 8;

/**
 * SNAPSHOT_STALL_ROUNDS is how many heartbeat responses in a row without acknowledged
 * progress make the leader resend snapshot chunks. More than one, so that acknowledgements
 * that are merely slower than a heartbeat do not cause duplicate sends.
 */
export const SNAPSHOT_STALL_ROUNDS = 3;

/** READ_INDEX_PENDING_MAX bounds the ReadIndex requests queued on a leader. */
export const READ_INDEX_PENDING_MAX = 4096;

const EMPTY_ENTRIES: readonly Entry[] = Object.freeze([]);
const EMPTY_DATA = new Uint8Array(0);

type CampaignType = 'pre-election' | 'election' | 'transfer';
type StepFn = (r: Raft, m: Message) => void;
type TickFn = (r: Raft) => void;

/** IncomingSnapshot gathers the chunks of a snapshot a follower is receiving. */
interface IncomingSnapshot {
  readonly chunk: SnapshotChunk;
  /** The term of the leader sending it. */
  readonly term: number;
  readonly parts: Uint8Array[];
  /** Bytes received in order. Invariant: the sum of the lengths of `parts`. */
  receivedBytes: number;
  /** Chunks that arrived ahead of `receivedBytes` (the network reorders), by offset. Bounded. */
  readonly early: Map<number, Uint8Array>;
}

/**
 * makeMessage builds a Message with every field present, so that all messages share one
 * object shape.
 */
export function makeMessage(m: Partial<Message> & Pick<Message, 'type' | 'to'>): Message {
  return {
    type: m.type,
    from: m.from ?? NONE,
    to: m.to,
    term: m.term ?? 0,
    logTerm: m.logTerm ?? 0,
    index: m.index ?? 0,
    entries: m.entries ?? EMPTY_ENTRIES,
    commit: m.commit ?? 0,
    reject: m.reject ?? false,
    rejectHint: m.rejectHint ?? 0,
    snapshot: m.snapshot ?? null,
    context: m.context ?? '',
  };
}

/**
 * coalesceAppends merges a leader's appends to one follower that continue one another (the
 * next starts where the previous one's entries end, in the same term, under the same
 * previous entry) into one append carrying both runs of entries and the higher commit index,
 * as long as the payload stays within `maxBytes`. Proposals are appended one call at a time
 * and each sends its own append, so a busy round would otherwise hand each follower one
 * message (and get one acknowledgement back) per proposal. The merged append takes the place
 * of the first; a message of any other type to that follower in between ends the chain, so
 * nothing is reordered around it.
 */
export function coalesceAppends(msgs: Message[], maxBytes: number): Message[] {
  if (msgs.length < 2) return msgs;
  const out: Message[] = [];
  const open = new Map<NodeId, { at: number; bytes: number }>();
  for (const m of msgs) {
    if (m.type !== MessageType.App) {
      open.delete(m.to);
      out.push(m);
      continue;
    }
    const o = open.get(m.to);
    const p = o === undefined ? undefined : out[o.at];
    if (o !== undefined && p !== undefined && p.term === m.term) {
      const last = p.entries[p.entries.length - 1];
      const endIndex = p.index + p.entries.length;
      const endTerm = last === undefined ? p.logTerm : last.term;
      const bytes = o.bytes + payloadBytes(m.entries);
      if (m.index === endIndex && m.logTerm === endTerm && (bytes <= maxBytes || m.entries.length === 0)) {
        out[o.at] = {
          ...p,
          entries: m.entries.length === 0 ? p.entries : p.entries.concat(m.entries),
          commit: Math.max(p.commit, m.commit),
        };
        o.bytes = bytes;
        continue;
      }
    }
    open.set(m.to, { at: out.length, bytes: payloadBytes(m.entries) });
    out.push(m);
  }
  return out;
}

/** isLocalMessage tells whether a message type is only ever handed to the core locally. */
export function isLocalMessage(t: MessageType): boolean {
  return (
    t === MessageType.Hup ||
    t === MessageType.Beat ||
    t === MessageType.CheckQuorum ||
    t === MessageType.Unreachable ||
    t === MessageType.SnapStatus
  );
}

function voteRespType(t: MessageType): MessageType {
  return t === MessageType.PreVote ? MessageType.PreVoteResp : MessageType.VoteResp;
}

function payloadBytes(ents: readonly Entry[]): number {
  let n = 0;
  for (const e of ents) n += e.data.length;
  return n;
}

/**
 * Raft is one replica's protocol state: a pure state machine driven by `step` and `tick`
 * that accumulates messages and log changes for the RawNode to hand out. The role is held
 * as a pair of functions (`stepFn`, `tickFn`), swapped by the become* methods.
 */
export class Raft {
  readonly id: NodeId;
  readonly cfg: ResolvedRaftConfig;
  term = 0;
  vote: NodeId = NONE;
  role: RaftRole = RaftRole.Follower;
  /** The leader of `term` as far as this replica knows, or NONE. */
  leader: NodeId = NONE;
  readonly log: RaftLog;
  readonly tracker: ProgressTracker;
  /** Whether this replica is a learner in the current configuration. */
  isLearner = false;
  /** Outgoing messages, taken by the RawNode. */
  msgs: Message[] = [];
  /** Answers to ReadIndex, taken by the RawNode. */
  readStates: ReadState[] = [];

  /** Ticks since the last election timeout reset (followers: since hearing from a leader). */
  electionElapsed = 0;
  /** Leader only: ticks since the last heartbeat. */
  heartbeatElapsed = 0;
  /** Invariant: electionTicks <= randomizedElectionTimeout < 2*electionTicks. */
  randomizedElectionTimeout = 0;

  /** Leader only: the target of a leadership transfer in progress, or NONE. */
  leadTransferee: NodeId = NONE;
  /**
   * Leader only: the index of the newest membership entry that may be unapplied. A new one
   * may be proposed only once applied >= pendingConfIndex.
   */
  pendingConfIndex = 0;
  /** Leader only: payload bytes of entries appended in this term and not yet applied. */
  uncommittedBytes = 0;

  private readOnly = new ReadOnly(READ_INDEX_PENDING_MAX, 0);
  /** Ticks since this replica started: the leader's clock for read leases. */
  private tickCount = 0;
  /** Leader only, lease-based reads: per member, the newest tick of ours it acknowledged. */
  private leaseAckTick = new Map<NodeId, number>();
  /** Leader only: the lease is void for the rest of the term (TimeoutNow was sent). */
  private leaseRevoked = false;
  /**
   * Lease-based reads only: ticks left during which this replica, just started, refuses
   * votes. It may have acknowledged a leader's lease before it restarted and forgot.
   */
  private voteGuardTicks = 0;
  /** Leader only: reads that arrived before this term's no-op committed. */
  private pendingReadIndex: { from: NodeId; context: string }[] = [];
  /** Leader only: a heartbeat round for ReadIndex is due at the next flush. */
  private readIndexHeartbeatDue = false;
  /** Leader only: new entries are due to be broadcast at the next flush. */
  private broadcastDue = false;
  /** Follower only: a snapshot being received in chunks. */
  private incomingSnapshot: IncomingSnapshot | null = null;
  /** Follower only: a complete snapshot waiting for the outstanding Ready's entries to be applied. */
  private deferredSnapshot: { from: NodeId; inc: IncomingSnapshot } | null = null;

  private stepFn: StepFn = stepFollower;
  private tickFn: TickFn = tickElection;

  constructor(config: RaftConfig) {
    this.cfg = resolveRaftConfig(config);
    this.id = this.cfg.id;
    this.log = new RaftLog(this.cfg.storage, this.cfg.maxCommittedBytesPerReady);
    this.tracker = new ProgressTracker({
      countMax: this.cfg.maxInflightMsgs,
      bytesMax: this.cfg.maxInflightBytes,
    });
    const { hardState, confState } = this.cfg.storage.initialState();
    const restored = restoreConfig(confState, this.log.lastIndex(), this.tracker.limits);
    this.switchToConfig(restored.config, restored.progress);
    if (hardState.term !== 0 || hardState.vote !== NONE || hardState.commit !== 0) this.loadState(hardState);
    if (this.cfg.applied > 0) this.log.appliedTo(this.cfg.applied);
    this.becomeFollower(this.term, NONE);
    // A lease we acknowledged before a restart lasts at most electionTicks - 1 ticks past our
    // acknowledgement, which came before the restart.
    if (this.cfg.readOnlyOption === ReadOnlyOption.LeaseBased)
      this.voteGuardTicks = this.cfg.electionTicks - 1;
    this.trace(
      `newRaft ${this.id} [${describeConfig(this.tracker.config)}] term=${this.term} commit=${this.log.committed} applied=${this.log.applied} lastIndex=${this.log.lastIndex()} lastTerm=${this.log.lastTerm()}`,
    );
  }

  private loadState(hs: HardState): void {
    if (hs.commit < this.log.committed || hs.commit > this.log.lastIndex()) {
      throw new Error(
        `raft ${this.id}: persisted commit ${hs.commit} is out of range [${this.log.committed}, ${this.log.lastIndex()}]`,
      );
    }
    this.log.committed = hs.commit;
    this.term = hs.term;
    this.vote = hs.vote;
  }

  /** hardState is the state to persist. */
  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  trace(line: string): void {
    this.cfg.trace?.(line);
  }

  // ---------------------------------------------------------------- sending

  private send(m: Message): void {
    this.msgs.push(m);
  }

  /** sendAppend sends entries (or just the commit index) to `to`, or a snapshot if it is too far behind. */
  sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  /**
   * maybeSendAppend sends one append to `to` if flow control allows. With `sendIfEmpty`
   * false, an append with no entries is not sent. It returns whether a message was sent.
   */
  maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.tracker.progress.get(to);
    if (!pr || to === this.id) return false;
    if (pr.state === ProgressState.Snapshot) return this.pumpSnapshot(to, pr);
    if (pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.termOrUndefined(prevIndex);
    let ents: Entry[] = [];
    let compacted = prevTerm === undefined;
    if (!compacted && (pr.state !== ProgressState.Replicate || !pr.inflights.full())) {
      try {
        ents = this.log.entriesFrom(pr.next, this.cfg.maxMsgBytes);
      } catch (err) {
        // Not in memory yet: send nothing now; a heartbeat response or entriesFetched() retries.
        if (isStorageError(err, StorageErrorKind.LogTemporarilyUnavailable)) return false;
        if (!isStorageError(err, StorageErrorKind.Compacted)) throw err;
        compacted = true;
      }
    }
    if (compacted) return this.startSnapshot(to, pr);
    if (ents.length === 0 && !sendIfEmpty) return false;
    const commit = this.log.committed;
    this.send(
      makeMessage({
        type: MessageType.App,
        from: this.id,
        to,
        term: this.term,
        index: prevIndex,
        logTerm: prevTerm,
        entries: ents,
        commit,
      }),
    );
    pr.sentEntries(ents.length, payloadBytes(ents));
    if (pr.sentCommit < commit) pr.sentCommit = commit;
    return true;
  }

  /** startSnapshot switches `to` to Snapshot state and sends the first chunks. */
  private startSnapshot(to: NodeId, pr: Progress): boolean {
    if (!pr.recentActive) return false;
    let snap: Snapshot;
    try {
      snap = this.log.snapshot();
    } catch (err) {
      if (isStorageError(err, StorageErrorKind.SnapshotTemporarilyUnavailable)) return false;
      throw err;
    }
    if (snap.metadata.index === 0)
      throw new Error(`raft ${this.id}: need a snapshot for ${to} but have none`);
    this.trace(
      `${this.id} [firstindex: ${this.log.firstIndex()}, commit: ${this.log.committed}] sent snapshot[index: ${snap.metadata.index}, term: ${snap.metadata.term}] to ${to} [${pr.describe()}]`,
    );
    pr.becomeSnapshot(snap);
    return this.pumpSnapshot(to, pr);
  }

  /** pumpSnapshot sends snapshot chunks to `to` while the chunk window allows; true if any were sent. */
  private pumpSnapshot(to: NodeId, pr: Progress): boolean {
    const s = pr.snapshotSend;
    if (!s) return false;
    const total = s.snapshot.data.length;
    const chunkBytes = this.cfg.snapshotChunkBytes;
    let sent = false;
    while (
      (!s.started || s.sentBytes < total) &&
      s.sentBytes - s.ackedBytes < chunkBytes * SNAPSHOT_WINDOW_CHUNKS
    ) {
      const end = Math.min(total, s.sentBytes + chunkBytes);
      this.send(
        makeMessage({
          type: MessageType.Snap,
          from: this.id,
          to,
          term: this.term,
          snapshot: {
            metadata: s.snapshot.metadata,
            offset: s.sentBytes,
            totalBytes: total,
            data: s.snapshot.data.subarray(s.sentBytes, end),
          },
        }),
      );
      s.started = true;
      s.sentBytes = end;
      sent = true;
    }
    return sent;
  }

  /** bcastAppend sends appends (or the commit index) to every other member. */
  bcastAppend(): void {
    for (const id of this.tracker.progress.keys()) {
      if (id !== this.id) this.sendAppend(id);
    }
  }

  private sendHeartbeat(to: NodeId, context: string): void {
    const pr = this.tracker.progress.get(to);
    if (!pr) return;
    // A follower may not have the leader's whole log yet: never tell it a commit index it
    // cannot hold.
    const commit = Math.min(pr.match, this.log.committed);
    // With lease-based reads, the heartbeat carries our tick so the answer dates the lease.
    const index = this.cfg.readOnlyOption === ReadOnlyOption.LeaseBased ? this.tickCount : 0;
    this.send(
      makeMessage({
        type: MessageType.Heartbeat,
        from: this.id,
        to,
        term: this.term,
        index,
        commit,
        context,
      }),
    );
  }

  /** bcastHeartbeat sends a heartbeat, carrying the newest pending read context, to every member. */
  bcastHeartbeat(): void {
    const ctx = this.readOnly.lastPendingKey();
    for (const id of this.tracker.progress.keys()) {
      if (id !== this.id) this.sendHeartbeat(id, ctx);
    }
  }

  /**
   * flush sends what was deferred to batch it: one append per follower for all proposals
   * since the last flush, and one heartbeat round for all ReadIndex requests.
   */
  flush(): void {
    if (this.role !== RaftRole.Leader) {
      this.broadcastDue = false;
      this.readIndexHeartbeatDue = false;
      return;
    }
    if (this.broadcastDue) {
      this.broadcastDue = false;
      for (const id of this.tracker.progress.keys()) {
        if (id !== this.id) this.maybeSendAppend(id, false);
      }
    }
    if (this.readIndexHeartbeatDue) {
      this.readIndexHeartbeatDue = false;
      this.bcastHeartbeat();
    }
  }

  /** hasDeferredWork tells whether `flush` has something to send. */
  hasDeferredWork(): boolean {
    return this.role === RaftRole.Leader && (this.broadcastDue || this.readIndexHeartbeatDue);
  }

  // ---------------------------------------------------------------- roles

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.leader = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.tracker.resetVotes();
    const last = this.log.lastIndex();
    for (const [id, pr] of this.tracker.progress) {
      pr.becomeProbe();
      pr.match = id === this.id ? last : 0;
      pr.next = last + 1;
      pr.recentActive = false;
      pr.sentCommit = 0;
    }
    this.pendingConfIndex = 0;
    this.uncommittedBytes = 0;
    this.readOnly = new ReadOnly(READ_INDEX_PENDING_MAX, this.term);
    this.pendingReadIndex = [];
    this.leaseAckTick = new Map();
    this.leaseRevoked = false;
    this.readIndexHeartbeatDue = false;
    this.broadcastDue = false;
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.cfg.electionTicks + this.cfg.random.int(this.cfg.electionTicks);
  }

  /** becomeFollower makes this replica a follower of `leader` in `term`. */
  becomeFollower(term: number, leader: NodeId): void {
    this.stepFn = stepFollower;
    this.tickFn = tickElection;
    this.reset(term);
    this.leader = leader;
    this.role = RaftRole.Follower;
    this.trace(`INFO ${this.id} became follower at term ${this.term}`);
  }

  /** becomePreCandidate starts a pre-election: no term change, no vote. */
  becomePreCandidate(): void {
    if (this.role === RaftRole.Leader) throw new Error('invalid transition [leader -> pre-candidate]');
    // A pre-candidate keeps its term and vote: it asks whether it could win, without
    // disturbing anyone.
    this.stepFn = stepCandidate;
    this.tickFn = tickElection;
    this.tracker.resetVotes();
    this.leader = NONE;
    this.role = RaftRole.PreCandidate;
    this.trace(`INFO ${this.id} became pre-candidate at term ${this.term}`);
  }

  /** becomeCandidate starts an election in the next term, voting for itself. */
  becomeCandidate(): void {
    if (this.role === RaftRole.Leader) throw new Error('invalid transition [leader -> candidate]');
    this.stepFn = stepCandidate;
    this.tickFn = tickElection;
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = RaftRole.Candidate;
    this.trace(`INFO ${this.id} became candidate at term ${this.term}`);
  }

  /** becomeLeader takes leadership of the current term and appends its no-op. */
  becomeLeader(): void {
    if (this.role === RaftRole.Follower) throw new Error('invalid transition [follower -> leader]');
    this.stepFn = stepLeader;
    this.tickFn = tickHeartbeat;
    this.reset(this.term);
    this.leader = this.id;
    this.role = RaftRole.Leader;
    const self = this.tracker.progress.get(this.id);
    if (self) {
      self.becomeReplicate();
      self.recentActive = true;
    }
    // Conservatively, any entry in the log may be an unapplied membership change.
    this.pendingConfIndex = this.log.lastIndex();
    this.appendEntries([{ term: 0, index: 0, type: EntryType.Normal, data: EMPTY_DATA }], true);
    // The no-op is not counted against the uncommitted limit.
    this.uncommittedBytes = 0;
    this.trace(`INFO ${this.id} became leader at term ${this.term}`);
  }

  /** promotable tells whether this replica may campaign: a voter with no snapshot pending. */
  promotable(): boolean {
    return this.tracker.isVoter(this.id) && this.log.unstable.snapshot === null;
  }

  /** hup starts a campaign of type `t` if this replica may campaign. */
  hup(t: CampaignType): void {
    if (this.role === RaftRole.Leader) return;
    if (!this.promotable()) {
      this.trace(`WARN ${this.id} is unpromotable and can not campaign`);
      return;
    }
    if (this.hasUnappliedConfChanges()) {
      this.trace(
        `WARN ${this.id} cannot campaign at term ${this.term}: unapplied configuration changes pending`,
      );
      return;
    }
    this.trace(`INFO ${this.id} is starting a new election at term ${this.term}`);
    this.campaign(t);
  }

  private hasUnappliedConfChanges(): boolean {
    if (this.log.applied >= this.log.committed) return false;
    let lo = this.log.applied + 1;
    const hi = this.log.committed + 1;
    while (lo < hi) {
      let ents: Entry[];
      try {
        ents = this.log.slice(lo, hi, this.cfg.maxMsgBytes);
      } catch (err) {
        // Cannot look: assume there may be one, and campaign later.
        if (isStorageError(err, StorageErrorKind.LogTemporarilyUnavailable)) return true;
        throw err;
      }
      for (const e of ents) if (e.type === EntryType.ConfChange) return true;
      lo += ents.length;
    }
    return false;
  }

  /** campaign becomes (pre-)candidate and asks every voter for its vote. */
  campaign(t: CampaignType): void {
    let voteMsg: MessageType;
    let term: number;
    if (t === 'pre-election') {
      this.becomePreCandidate();
      voteMsg = MessageType.PreVote;
      // Pre-votes are asked for the term we would campaign in, without moving to it.
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteMsg = MessageType.Vote;
      term = this.term;
    }
    this.tracker.recordVote(this.id, true);
    const { result } = this.tracker.tallyVotes();
    if (result === VoteResult.Won) {
      // A one-voter group wins at once.
      if (t === 'pre-election') this.campaign('election');
      else this.becomeLeader();
      return;
    }
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const id of this.tracker.voterIds()) {
      if (id === this.id) continue;
      this.trace(
        `INFO ${this.id} [logterm: ${lastTerm}, index: ${lastIndex}] sent ${MESSAGE_TYPE_NAMES[voteMsg]} request to ${id} at term ${term}`,
      );
      this.send(
        makeMessage({
          type: voteMsg,
          from: this.id,
          to: id,
          term,
          index: lastIndex,
          logTerm: lastTerm,
          context: t === 'transfer' ? CAMPAIGN_TRANSFER : '',
        }),
      );
    }
  }

  /** pollVote records a vote and returns the election's outcome so far. */
  pollVote(id: NodeId, type: MessageType, granted: boolean): VoteResult {
    this.trace(
      `INFO ${this.id} received ${MESSAGE_TYPE_NAMES[type]} ${granted ? '' : 'rejection '}from ${id} at term ${this.term}`,
    );
    this.tracker.recordVote(id, granted);
    return this.tracker.tallyVotes().result;
  }

  // ---------------------------------------------------------------- step

  /** tick advances logical time by one tick. */
  tick(): void {
    this.tickCount++;
    if (this.voteGuardTicks > 0) this.voteGuardTicks--;
    this.tickFn(this);
  }

  /** step handles one message: from the network, or a local one (Hup, Beat, ...). */
  step(m: Message): void {
    if (m.term === 0) {
      // local message
    } else if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        const force = m.context === CAMPAIGN_TRANSFER;
        const inLease =
          this.cfg.checkQuorum &&
          ((this.leader !== NONE && this.electionElapsed < this.cfg.electionTicks) ||
            this.voteGuardTicks > 0);
        if (!force && inLease) {
          // Leader stickiness: while we hear from a live leader, ignore a disruptive
          // candidate, without updating our term or granting a vote.
          this.trace(
            `INFO ${this.id} [logterm: ${this.log.lastTerm()}, index: ${this.log.lastIndex()}, vote: ${this.vote}] ignored ${MESSAGE_TYPE_NAMES[m.type]} from ${m.from} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}: lease is not expired (remaining ticks: ${this.cfg.electionTicks - this.electionElapsed})`,
          );
          return;
        }
      }
      if (m.type === MessageType.PreVote) {
        // Never change term in response to a pre-vote.
      } else if (m.type === MessageType.PreVoteResp && !m.reject) {
        // We send pre-votes with term+1; the term moves when the pre-election is won.
      } else {
        this.trace(
          `INFO ${this.id} [term: ${this.term}] received a ${MESSAGE_TYPE_NAMES[m.type]} message with higher term from ${m.from} [term: ${m.term}]`,
        );
        if (m.type === MessageType.App || m.type === MessageType.Heartbeat || m.type === MessageType.Snap) {
          this.becomeFollower(m.term, m.from);
        } else {
          this.becomeFollower(m.term, NONE);
        }
      }
    } else if (m.term < this.term) {
      if (m.type === MessageType.Heartbeat || m.type === MessageType.App || m.type === MessageType.Snap) {
        // A stale leader (for example, one that was partitioned) learns of the newer term
        // from this response and steps down, as the paper has every RPC answer with the
        // current term. Without it, a node whose term ran ahead could never rejoin: with
        // pre-vote or check-quorum its votes are ignored, and without them it may hold a
        // membership whose other voters are gone.
        this.send(makeMessage({ type: MessageType.AppResp, from: this.id, to: m.from, term: this.term }));
      } else if (m.type === MessageType.PreVote) {
        this.send(
          makeMessage({
            type: MessageType.PreVoteResp,
            from: this.id,
            to: m.from,
            term: this.term,
            reject: true,
          }),
        );
      }
      // Anything else from an older term is ignored.
      return;
    }

    switch (m.type) {
      case MessageType.Hup:
        this.hup(this.cfg.preVote ? 'pre-election' : 'election');
        return;
      case MessageType.Vote:
      case MessageType.PreVote: {
        // We can vote for a candidate we already voted for, or anyone if we have not voted
        // and know of no leader in this term; and we grant pre-votes for a future term.
        const canVote =
          this.vote === m.from ||
          (this.vote === NONE && this.leader === NONE) ||
          (m.type === MessageType.PreVote && m.term > this.term);
        if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
          this.trace(
            `INFO ${this.id} [logterm: ${this.log.lastTerm()}, index: ${this.log.lastIndex()}, vote: ${this.vote}] cast ${MESSAGE_TYPE_NAMES[m.type]} for ${m.from} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}`,
          );
          // The response carries the request's term: for a pre-vote that is the future term.
          this.send(makeMessage({ type: voteRespType(m.type), from: this.id, to: m.from, term: m.term }));
          if (m.type === MessageType.Vote) {
            this.electionElapsed = 0;
            this.vote = m.from;
          }
        } else {
          this.trace(
            `INFO ${this.id} [logterm: ${this.log.lastTerm()}, index: ${this.log.lastIndex()}, vote: ${this.vote}] rejected ${MESSAGE_TYPE_NAMES[m.type]} from ${m.from} [logterm: ${m.logTerm}, index: ${m.index}] at term ${this.term}`,
          );
          this.send(
            makeMessage({
              type: voteRespType(m.type),
              from: this.id,
              to: m.from,
              term: this.term,
              reject: true,
            }),
          );
        }
        return;
      }
      default:
        this.stepFn(this, m);
    }
  }

  // ---------------------------------------------------------------- follower handlers

  handleAppendEntries(m: Message): void {
    if (m.index < this.log.committed) {
      this.send(
        makeMessage({
          type: MessageType.AppResp,
          from: this.id,
          to: m.from,
          term: this.term,
          index: this.log.committed,
        }),
      );
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      this.send(
        makeMessage({
          type: MessageType.AppResp,
          from: this.id,
          to: m.from,
          term: this.term,
          index: lastNew,
        }),
      );
      return;
    }
    // Reject, with a hint: the largest index <= min(m.index, lastIndex) whose term is <=
    // m.logTerm. The leader can skip every entry after it (fast backtracking).
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.trace(
      `DEBUG ${this.id} [logterm: ${this.log.term(m.index)}, index: ${m.index}] rejected MsgApp [logterm: ${m.logTerm}, index: ${m.index}] from ${m.from}`,
    );
    this.send(
      makeMessage({
        type: MessageType.AppResp,
        from: this.id,
        to: m.from,
        term: this.term,
        index: m.index,
        reject: true,
        rejectHint: hint.index,
        logTerm: hint.term,
      }),
    );
  }

  handleHeartbeat(m: Message): void {
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
    this.send(
      makeMessage({
        type: MessageType.HeartbeatResp,
        from: this.id,
        to: m.from,
        term: this.term,
        index: m.index,
        context: m.context,
      }),
    );
  }

  handleSnapshotChunk(m: Message): void {
    const chunk = m.snapshot;
    if (!chunk) return;
    const meta = chunk.metadata;
    if (meta.index <= this.log.committed) {
      // We already have (at least) this much: tell the leader where we are.
      this.incomingSnapshot = null;
      this.send(
        makeMessage({
          type: MessageType.AppResp,
          from: this.id,
          to: m.from,
          term: this.term,
          index: this.log.committed,
        }),
      );
      return;
    }
    let inc = this.incomingSnapshot;
    const same =
      inc !== null &&
      inc.chunk.metadata.index === meta.index &&
      inc.chunk.metadata.term === meta.term &&
      inc.chunk.totalBytes === chunk.totalBytes;
    const newer =
      inc === null || m.term > inc.term || (m.term === inc.term && meta.index >= inc.chunk.metadata.index);
    if (!same && newer) {
      // A new transfer (a newer snapshot, or a new leader): start over. Its first chunk to
      // arrive need not be chunk 0: the network reorders.
      inc = { chunk, term: m.term, parts: [], receivedBytes: 0, early: new Map() };
      this.incomingSnapshot = inc;
    } else if (!same) {
      // A chunk of an older snapshot than the one being received: ignore it.
      inc = null;
    }
    if (inc !== null) {
      if (chunk.offset > inc.receivedBytes) {
        // Ahead of what we hold: keep it for later, within a bound; duplicates are dropped.
        if (inc.early.size < 2 * SNAPSHOT_WINDOW_CHUNKS) inc.early.set(chunk.offset, chunk.data.slice());
      } else if (chunk.offset === inc.receivedBytes) {
        if (chunk.data.length > 0) {
          inc.parts.push(chunk.data.slice());
          inc.receivedBytes += chunk.data.length;
        }
        for (
          let next = inc.early.get(inc.receivedBytes);
          next !== undefined;
          next = inc.early.get(inc.receivedBytes)
        ) {
          inc.early.delete(inc.receivedBytes);
          if (next.length === 0) break;
          inc.parts.push(next);
          inc.receivedBytes += next.length;
        }
      }
      // Chunks below receivedBytes are duplicates: just acknowledge again.
      if (inc.receivedBytes === chunk.totalBytes) {
        this.incomingSnapshot = null;
        this.installSnapshot(m.from, inc);
        return;
      }
    }
    this.send(
      makeMessage({
        type: MessageType.SnapResp,
        from: this.id,
        to: m.from,
        term: this.term,
        index: meta.index,
        logTerm: meta.term,
        rejectHint: inc?.receivedBytes ?? 0,
      }),
    );
  }

  private installSnapshot(from: NodeId, inc: IncomingSnapshot): void {
    if (this.log.applying > this.log.applied) {
      // Committed entries handed out in the outstanding Ready are being applied right now.
      // Switching to the snapshot's membership under them would make their ConfChanges
      // apply to the wrong configuration, so install once they are done (see afterAdvance).
      this.deferredSnapshot = { from, inc };
      return;
    }
    const meta = inc.chunk.metadata;
    let data: Uint8Array;
    if (inc.parts.length === 1) data = inc.parts[0]!;
    else {
      data = new Uint8Array(inc.receivedBytes);
      let at = 0;
      for (const p of inc.parts) {
        data.set(p, at);
        at += p.length;
      }
    }
    const snap: Snapshot = { metadata: meta, data };
    if (this.restore(snap)) {
      this.trace(
        `INFO ${this.id} [commit: ${this.log.committed}] restored snapshot [index: ${meta.index}, term: ${meta.term}]`,
      );
      this.send(
        makeMessage({
          type: MessageType.AppResp,
          from: this.id,
          to: from,
          term: this.term,
          index: this.log.lastIndex(),
        }),
      );
    } else {
      this.trace(
        `INFO ${this.id} [commit: ${this.log.committed}] ignored snapshot [index: ${meta.index}, term: ${meta.term}]`,
      );
      this.send(
        makeMessage({
          type: MessageType.AppResp,
          from: this.id,
          to: from,
          term: this.term,
          index: this.log.committed,
        }),
      );
    }
  }

  /** entriesFetched resumes what waited for the storage to fetch entries. */
  entriesFetched(): void {
    this.log.applyWaitingForFetch = false;
    if (this.role === RaftRole.Leader) {
      for (const id of this.tracker.progress.keys()) {
        if (id !== this.id) this.maybeSendAppend(id, false);
      }
    }
  }

  /** afterAdvance does what had to wait for the outstanding Ready to be handled. */
  afterAdvance(): void {
    const d = this.deferredSnapshot;
    if (d === null) return;
    this.deferredSnapshot = null;
    if (this.role === RaftRole.Follower) this.installSnapshot(d.from, d.inc);
  }

  /** restore installs a snapshot from the leader; false if it is not needed or not valid here. */
  restore(s: Snapshot): boolean {
    const meta = s.metadata;
    if (meta.index <= this.log.committed) return false;
    if (this.role !== RaftRole.Follower) {
      // Defence in depth: only a follower installs a snapshot. Should not happen.
      this.trace(`WARN ${this.id} attempted to restore snapshot as ${this.role}; stepping down`);
      this.becomeFollower(this.term + 1, NONE);
      return false;
    }
    // A snapshot taken before this replica was added does not list it. Installing it is
    // still right: the log entries after it add this replica, and until they are applied
    // this replica is not promotable, so it cannot campaign on a configuration it is not in.
    const cs = meta.confState;
    if (this.log.matchTerm(meta.index, meta.term)) {
      // Our log already holds the snapshot's last entry: fast-forward the commit index.
      this.log.commitTo(meta.index);
      return false;
    }
    this.log.restore(s);
    const restored = restoreConfig(cs, this.log.lastIndex(), this.tracker.limits);
    this.switchToConfig(restored.config, restored.progress);
    return true;
  }

  // ---------------------------------------------------------------- leader handlers

  /**
   * appendEntries assigns term and index to `ents`, appends them to the leader's log and
   * counts the leader's own copy. False if it would pass the uncommitted limit.
   */
  appendEntries(ents: Entry[], force = false): boolean {
    const last = this.log.lastIndex();
    const stamped = ents.map((e, i) => ({
      term: this.term,
      index: last + 1 + i,
      type: e.type,
      data: e.data,
    }));
    if (!force && !this.increaseUncommittedBytes(stamped)) return false;
    if (force) this.uncommittedBytes += payloadBytes(stamped);
    const li = this.log.append(stamped);
    this.tracker.progress.get(this.id)?.maybeUpdate(li);
    this.maybeCommit();
    return true;
  }

  private increaseUncommittedBytes(ents: readonly Entry[]): boolean {
    const s = payloadBytes(ents);
    // Always admit a proposal when nothing is uncommitted, so that one large entry can pass.
    if (this.uncommittedBytes > 0 && s > 0 && this.uncommittedBytes + s > this.cfg.maxUncommittedBytes)
      return false;
    this.uncommittedBytes += s;
    return true;
  }

  /** reduceUncommittedBytes releases the budget of applied entries. */
  reduceUncommittedBytes(ents: readonly Entry[]): void {
    if (this.uncommittedBytes === 0) return;
    const s = payloadBytes(ents);
    this.uncommittedBytes = s > this.uncommittedBytes ? 0 : this.uncommittedBytes - s;
  }

  /** maybeCommit advances the commit index to what a quorum holds, if that is an entry of this term. */
  maybeCommit(): boolean {
    return this.log.maybeCommit(this.tracker.committed(), this.term);
  }

  committedEntryInCurrentTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  /** propose appends one entry on the leader; see ProposeResult. */
  propose(type: EntryType, data: Uint8Array, cc: ConfChange | null): ProposeResult {
    if (this.role !== RaftRole.Leader)
      return { ok: false, code: ProposeRefusal.NotLeader, leader: this.leader };
    if (!this.tracker.progress.has(this.id)) {
      // Removed from the configuration: cannot lead it any more.
      return { ok: false, code: ProposeRefusal.NotLeader, leader: NONE };
    }
    if (this.leadTransferee !== NONE) {
      return { ok: false, code: ProposeRefusal.Transferring, leader: this.leader };
    }
    if (data.length > this.cfg.maxEntryBytes)
      return { ok: false, code: ProposeRefusal.TooLarge, leader: this.leader };
    if (cc !== null && !this.confChangeAllowed(cc)) {
      return { ok: false, code: ProposeRefusal.ConfChangeRefused, leader: this.leader };
    }
    if (!this.appendEntries([{ term: 0, index: 0, type, data }])) {
      return { ok: false, code: ProposeRefusal.Overloaded, leader: this.leader };
    }
    const index = this.log.lastIndex();
    if (cc !== null) this.pendingConfIndex = index;
    this.broadcastDue = true;
    return { ok: true, index, term: this.term };
  }

  private confChangeAllowed(cc: ConfChange): boolean {
    if (this.pendingConfIndex > this.log.applied) {
      this.trace(
        `INFO ${this.id} refused conf change: a previous one at ${this.pendingConfIndex} is not yet applied`,
      );
      return false;
    }
    const joint = isJoint(this.tracker.config);
    if (joint !== isLeaveJoint(cc)) {
      this.trace(
        `INFO ${this.id} refused conf change: ${joint ? 'must leave joint first' : 'not in a joint config'}`,
      );
      return false;
    }
    try {
      new Changer(
        this.tracker.config,
        this.tracker.progress,
        this.log.lastIndex(),
        this.tracker.limits,
      ).apply(cc);
    } catch (err) {
      if (err instanceof ConfChangeError) {
        this.trace(`INFO ${this.id} refused conf change: ${err.message}`);
        return false;
      }
      throw err;
    }
    return true;
  }

  /**
   * readIndex asks for a linearizable read point. It returns false when the read cannot be
   * taken: no leader to ask, or (on the leader) the same context is already pending or the
   * queue is full. A read forwarded to the leader may still be lost with a leader change.
   */
  readIndex(context: string): boolean {
    if (this.role === RaftRole.Leader) return this.leaderReadIndex(this.id, context);
    if (this.role === RaftRole.Follower && this.leader !== NONE) {
      this.send(
        makeMessage({ type: MessageType.ReadIndex, from: this.id, to: this.leader, term: 0, context }),
      );
      return true;
    }
    return false;
  }

  /** leaderReadIndex takes a read on the leader, from itself or forwarded by `from`. */
  leaderReadIndex(from: NodeId, context: string): boolean {
    if (this.tracker.isSingleton()) {
      this.respondReadIndex(from, context, this.log.committed);
      return true;
    }
    if (!this.committedEntryInCurrentTerm()) {
      // A new leader does not know the true commit index until its no-op commits.
      if (this.pendingReadIndex.length >= READ_INDEX_PENDING_MAX) return false;
      this.pendingReadIndex.push({ from, context });
      return true;
    }
    return this.sendReadIndexResponse(from, context);
  }

  private sendReadIndexResponse(from: NodeId, context: string): boolean {
    if (this.cfg.readOnlyOption === ReadOnlyOption.LeaseBased && this.leaseValid()) {
      this.respondReadIndex(from, context, this.log.committed);
      return true;
    }
    // Safe reads, and lease reads when the lease cannot be trusted: confirm leadership with
    // a heartbeat round, shared by every read queued before it goes out.
    const key = this.readOnly.addRequest(this.log.committed, from, context);
    if (key === null) return false;
    this.readOnly.recvAck(this.id, key);
    this.readIndexHeartbeatDue = true;
    return true;
  }

  /**
   * leaseValid tells whether this leader may answer a read without a heartbeat round: a
   * quorum acknowledged heartbeats sent less than `electionTicks - 1` ticks ago, so no
   * follower of that quorum can have granted a vote to anyone since (they ignore votes for
   * an election timeout after hearing from the leader). It assumes tick rates drift
   * little, and is void once this leader has sent TimeoutNow (a forced campaign ignores
   * the followers' lease).
   */
  leaseValid(): boolean {
    if (this.leaseRevoked) return false;
    const quorumTick = jointCommittedIndex(this.tracker.config.voters, (id) =>
      id === this.id ? this.tickCount : this.leaseAckTick.get(id),
    );
    return quorumTick > 0 && this.tickCount < quorumTick + this.cfg.electionTicks - 1;
  }

  private respondReadIndex(from: NodeId, context: string, index: number): void {
    if (from === NONE || from === this.id) {
      this.readStates.push({ index, context });
      return;
    }
    this.send(
      makeMessage({
        type: MessageType.ReadIndexResp,
        from: this.id,
        to: from,
        term: this.term,
        index,
        context,
      }),
    );
  }

  releasePendingReadIndex(): void {
    if (this.pendingReadIndex.length === 0 || !this.committedEntryInCurrentTerm()) return;
    const pending = this.pendingReadIndex;
    this.pendingReadIndex = [];
    for (const r of pending) this.sendReadIndexResponse(r.from, r.context);
  }

  handleReadIndexAck(m: Message): void {
    if (m.context === '') return;
    const acks = this.readOnly.recvAck(m.from, m.context);
    if (!acks || this.tracker.ackResult(acks) !== VoteResult.Won) return;
    for (const rs of this.readOnly.advance(m.context)) this.respondReadIndex(rs.from, rs.context, rs.index);
  }

  handleTransferLeader(m: Message): void {
    const transferee = m.from;
    const pr = this.tracker.progress.get(transferee);
    if (!pr || pr.isLearner) {
      this.trace(`DEBUG ${this.id} ignored transferring leadership to ${transferee}: not a voter`);
      return;
    }
    if (this.leadTransferee !== NONE) {
      if (this.leadTransferee === transferee) return;
      this.abortLeaderTransfer();
    }
    if (transferee === this.id) return;
    this.trace(`INFO ${this.id} [term ${this.term}] starts to transfer leadership to ${transferee}`);
    // The transfer must complete within one election timeout, or it is aborted.
    this.electionElapsed = 0;
    this.leadTransferee = transferee;
    if (pr.match === this.log.lastIndex()) {
      this.trace(
        `INFO ${this.id} sends MsgTimeoutNow to ${transferee} immediately as ${transferee} already has up-to-date log`,
      );
      this.sendTimeoutNow(transferee);
    } else {
      this.sendAppend(transferee);
    }
  }

  sendTimeoutNow(to: NodeId): void {
    // The transferee campaigns past every follower's lease, so ours is void from now on.
    this.leaseRevoked = true;
    this.send(makeMessage({ type: MessageType.TimeoutNow, from: this.id, to, term: this.term }));
  }

  abortLeaderTransfer(): void {
    if (this.leadTransferee !== NONE)
      this.trace(`INFO ${this.id} abort leadership transfer to ${this.leadTransferee}`);
    this.leadTransferee = NONE;
  }

  handleAppendResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    if (m.reject) {
      // Fast backtracking: the follower's hint names the last index where its log may
      // match; skip to the last entry of ours whose term is <= its term there.
      let nextProbe = m.rejectHint;
      if (m.logTerm > 0) nextProbe = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (pr.maybeDecrTo(m.index, nextProbe)) {
        this.trace(`DEBUG ${this.id} decreased progress of ${m.from} to [${pr.describe()}]`);
        if (pr.state === ProgressState.Replicate) pr.becomeProbe();
        this.sendAppend(m.from);
      }
      return;
    }
    const updated = pr.maybeUpdate(m.index);
    const idle =
      pr.match === m.index && (pr.state === ProgressState.Probe || pr.state === ProgressState.Snapshot);
    if (!updated && !idle) return;
    if (pr.state === ProgressState.Probe) {
      pr.becomeReplicate();
    } else if (pr.state === ProgressState.Snapshot && pr.match >= pr.pendingSnapshot) {
      // The snapshot is installed (or was not needed). If the log has been compacted past
      // it meanwhile, probing finds that out and starts a newer snapshot.
      this.trace(
        `DEBUG ${this.id} recovered from needing snapshot, resumed sending replication messages to ${m.from}`,
      );
      pr.becomeProbe();
      if (pr.match + 1 >= this.log.firstIndex()) pr.becomeReplicate();
    } else if (pr.state === ProgressState.Replicate) {
      pr.inflights.freeLE(m.index);
    }
    if (this.maybeCommit()) {
      this.releasePendingReadIndex();
      this.bcastAppend();
    } else if (m.from !== this.id && pr.canBumpCommit(this.log.committed)) {
      // The follower has not heard of the commit index yet: tell it now.
      this.sendAppend(m.from);
    }
    // Stream whatever the window allows (catch-up after a probe, or a freed slot).
    while (this.maybeSendAppend(m.from, false)) {
      // keep sending
    }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
      this.trace(`INFO ${this.id} sent MsgTimeoutNow to ${m.from} after received MsgAppResp`);
      this.sendTimeoutNow(m.from);
    }
  }

  handleSnapshotResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    const s = pr.snapshotSend;
    if (pr.state !== ProgressState.Snapshot || !s) return;
    if (s.snapshot.metadata.index !== m.index || s.snapshot.metadata.term !== m.logTerm) return;
    // Acks can arrive reordered or duplicated: only a higher one moves the transfer on. The
    // latest report is kept, so that a stall rewinds to what the follower really holds (it
    // may have restarted and lost its partial snapshot).
    s.lastReportedBytes = Math.min(m.rejectHint, s.sentBytes);
    if (m.rejectHint > s.ackedBytes) s.ackedBytes = Math.min(m.rejectHint, s.sentBytes);
    this.pumpSnapshot(m.from, pr);
  }

  handleHeartbeatResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    pr.msgAppFlowPaused = false;
    if (m.index > 0 && m.index <= this.tickCount && m.index > (this.leaseAckTick.get(m.from) ?? 0)) {
      this.leaseAckTick.set(m.from, m.index);
    }
    const s = pr.snapshotSend;
    if (pr.state === ProgressState.Snapshot && s) {
      s.stalledRounds = s.ackedBytes === s.ackedAtLastHeartbeat ? s.stalledRounds + 1 : 0;
      if (s.stalledRounds >= SNAPSHOT_STALL_ROUNDS) {
        // No progress for several heartbeat rounds: chunks were lost, or the follower lost
        // its partial snapshot. Resend from what it last said it holds.
        s.stalledRounds = 0;
        s.ackedBytes = Math.min(s.ackedBytes, s.lastReportedBytes);
        s.sentBytes = s.ackedBytes;
        if (s.sentBytes === 0) s.started = false;
        this.pumpSnapshot(m.from, pr);
      }
      s.ackedAtLastHeartbeat = s.ackedBytes;
    } else if (pr.match < this.log.lastIndex() || pr.state === ProgressState.Probe) {
      this.sendAppend(m.from);
    }
    this.handleReadIndexAck(m);
  }

  // ---------------------------------------------------------------- membership

  /** applyConfChange applies a committed membership change and returns the new membership. */
  applyConfChange(cc: ConfChange): ConfState {
    const result = new Changer(
      this.tracker.config,
      this.tracker.progress,
      this.log.lastIndex(),
      this.tracker.limits,
    ).apply(cc);
    return this.switchToConfig(result.config, result.progress);
  }

  private switchToConfig(
    config: ProgressTracker['config'],
    progress: ProgressTracker['progress'],
  ): ConfState {
    this.tracker.config = config;
    this.tracker.progress = progress;
    this.trace(`INFO ${this.id} switched to configuration ${describeConfig(config)}`);
    const cs = this.tracker.confState();
    const pr = progress.get(this.id);
    this.isLearner = pr?.isLearner ?? false;
    if ((!pr || this.isLearner) && this.role === RaftRole.Leader) {
      // A leader that was removed or demoted steps down; the remaining voters elect a new one.
      this.trace(`INFO ${this.id} was removed or demoted and steps down`);
      this.becomeFollower(this.term, NONE);
      return cs;
    }
    if (this.role !== RaftRole.Leader || cs.voters.length === 0) return cs;
    if (this.maybeCommit()) {
      // The new configuration may have a smaller quorum.
      this.releasePendingReadIndex();
      this.bcastAppend();
    } else {
      for (const id of progress.keys()) if (id !== this.id) this.maybeSendAppend(id, false);
    }
    if (this.leadTransferee !== NONE && !this.tracker.config.voters[0].has(this.leadTransferee)) {
      this.abortLeaderTransfer();
    }
    return cs;
  }

  /**
   * appliedTo records that the application has applied through `index` (and `bytes` of
   * payload); a leader leaves an auto-leave joint configuration once its entering entry applies.
   */
  appliedTo(index: number, applied: readonly Entry[]): void {
    this.log.appliedTo(index);
    if (this.role === RaftRole.Leader) this.reduceUncommittedBytes(applied);
    const c = this.tracker.config;
    if (c.autoLeave && isJoint(c) && index >= this.pendingConfIndex && this.role === RaftRole.Leader) {
      // An empty ConfChange payload is the change that leaves the joint configuration;
      // like the no-op, it is forced past the uncommitted limit and costs none of it.
      this.appendEntries([{ term: 0, index: 0, type: EntryType.ConfChange, data: EMPTY_DATA }], true);
      this.pendingConfIndex = this.log.lastIndex();
      this.broadcastDue = true;
      this.trace(
        `INFO ${this.id} initiating automatic transition out of joint configuration ${describeConfig(c)}`,
      );
    }
  }
}

// ---------------------------------------------------------------- tick functions

function tickElection(r: Raft): void {
  r.electionElapsed++;
  if (r.promotable() && r.electionElapsed >= r.randomizedElectionTimeout) {
    r.electionElapsed = 0;
    r.step(makeMessage({ type: MessageType.Hup, from: r.id, to: r.id }));
  }
}

function tickHeartbeat(r: Raft): void {
  r.heartbeatElapsed++;
  r.electionElapsed++;
  if (r.electionElapsed >= r.cfg.electionTicks) {
    r.electionElapsed = 0;
    if (r.cfg.checkQuorum) r.step(makeMessage({ type: MessageType.CheckQuorum, from: r.id, to: r.id }));
    // A transfer that has not finished within an election timeout is abandoned.
    if (r.role === RaftRole.Leader && r.leadTransferee !== NONE) r.abortLeaderTransfer();
  }
  if (r.role !== RaftRole.Leader) return;
  if (r.heartbeatElapsed >= r.cfg.heartbeatTicks) {
    r.heartbeatElapsed = 0;
    r.step(makeMessage({ type: MessageType.Beat, from: r.id, to: r.id }));
  }
}

// ---------------------------------------------------------------- step functions

function stepLeader(r: Raft, m: Message): void {
  switch (m.type) {
    case MessageType.Beat:
      // Heartbeats carry the newest ReadIndex context, so they double as read confirmations.
      r.bcastHeartbeat();
      return;
    case MessageType.CheckQuorum:
      if (!r.tracker.quorumActive(r.id)) {
        r.trace(`WARN ${r.id} stepped down to follower since quorum is not active`);
        r.becomeFollower(r.term, NONE);
      }
      for (const [id, pr] of r.tracker.progress) if (id !== r.id) pr.recentActive = false;
      return;
    case MessageType.ReadIndex:
      r.leaderReadIndex(m.from, m.context);
      return;
    default:
  }
  const pr = r.tracker.progress.get(m.from);
  if (!pr) return;
  switch (m.type) {
    case MessageType.AppResp:
      r.handleAppendResponse(m, pr);
      return;
    case MessageType.HeartbeatResp:
      r.handleHeartbeatResponse(m, pr);
      return;
    case MessageType.SnapResp:
      r.handleSnapshotResponse(m, pr);
      return;
    case MessageType.SnapStatus:
      if (pr.state !== ProgressState.Snapshot) return;
      if (m.reject) pr.pendingSnapshot = 0;
      pr.becomeProbe();
      // Wait for a heartbeat response before probing, so as not to flood a struggling follower.
      pr.msgAppFlowPaused = true;
      return;
    case MessageType.Unreachable:
      // An unreachable follower probably lost the appends in flight: probe again.
      if (pr.state === ProgressState.Replicate) pr.becomeProbe();
      return;
    case MessageType.TransferLeader:
      r.handleTransferLeader(m);
      return;
    default:
  }
}

function stepCandidate(r: Raft, m: Message): void {
  const myVoteResp = r.role === RaftRole.PreCandidate ? MessageType.PreVoteResp : MessageType.VoteResp;
  switch (m.type) {
    case MessageType.App:
      r.becomeFollower(m.term, m.from);
      r.handleAppendEntries(m);
      return;
    case MessageType.Heartbeat:
      r.becomeFollower(m.term, m.from);
      r.handleHeartbeat(m);
      return;
    case MessageType.Snap:
      r.becomeFollower(m.term, m.from);
      r.handleSnapshotChunk(m);
      return;
    case myVoteResp: {
      const res = r.pollVote(m.from, m.type, !m.reject);
      if (res === VoteResult.Won) {
        if (r.role === RaftRole.PreCandidate) r.campaign('election');
        else {
          r.becomeLeader();
          r.bcastAppend();
        }
      } else if (res === VoteResult.Lost) {
        // A rejected pre-vote or vote with a higher term already made us a follower in Step.
        r.becomeFollower(r.term, NONE);
      }
      return;
    }
    default:
    // TimeoutNow and everything else: ignored by a candidate.
  }
}

function stepFollower(r: Raft, m: Message): void {
  switch (m.type) {
    case MessageType.App:
      r.electionElapsed = 0;
      r.leader = m.from;
      r.handleAppendEntries(m);
      return;
    case MessageType.Heartbeat:
      r.electionElapsed = 0;
      r.leader = m.from;
      r.handleHeartbeat(m);
      return;
    case MessageType.Snap:
      r.electionElapsed = 0;
      r.leader = m.from;
      r.handleSnapshotChunk(m);
      return;
    case MessageType.TransferLeader:
      if (r.leader === NONE) return;
      r.msgs.push({ ...m, to: r.leader });
      return;
    case MessageType.TimeoutNow:
      r.trace(
        `INFO ${r.id} [term ${r.term}] received MsgTimeoutNow from ${m.from} and starts an election to get leadership`,
      );
      // A leadership transfer: campaign at once, without a pre-vote, overriding stickiness.
      r.hup('transfer');
      return;
    case MessageType.ReadIndex:
      // A read forwarded to us by a follower that thought we lead: pass it on once.
      if (r.leader === NONE || r.leader === m.from) return;
      r.msgs.push({ ...m, to: r.leader });
      return;
    case MessageType.ReadIndexResp:
      r.readStates.push({ index: m.index, context: m.context });
      return;
    default:
  }
}
