import type { Inflights } from './inflights.js';
import type { Snapshot } from './types.js';

/** ProgressState is how the leader is currently replicating to one follower. */
export const ProgressState = {
  /** Send one append per heartbeat until the follower's match index is found. */
  Probe: 'probe',
  /** Stream appends optimistically, bounded by the in-flight window. */
  Replicate: 'replicate',
  /** The follower needs a snapshot; appends pause until it is installed. */
  Snapshot: 'snapshot',
} as const;
export type ProgressState = (typeof ProgressState)[keyof typeof ProgressState];

/** SnapshotSend tracks the chunks of one snapshot being streamed to a follower. */
export interface SnapshotSend {
  readonly snapshot: Snapshot;
  /** Bytes the follower has acknowledged holding. Invariant: ackedBytes <= sentBytes. */
  ackedBytes: number;
  /** Bytes sent so far (the next chunk starts here). */
  sentBytes: number;
  /** Whether the first chunk has gone out (an empty snapshot is one empty chunk). */
  started: boolean;
  /** ackedBytes as of the previous heartbeat response, to detect a stalled transfer. */
  ackedAtLastHeartbeat: number;
  /** What the follower said it holds in its latest acknowledgement (may be below ackedBytes). */
  lastReportedBytes: number;
  /** Heartbeat responses in a row with no acknowledged progress. */
  stalledRounds: number;
}

/**
 * Progress is the leader's view of one follower: what it holds (`match`), what to send it
 * next (`next`) and how.
 */
export class Progress {
  /** The highest index known to be replicated on the follower. Invariant: match < next. */
  match: number;
  /** The index of the next entry to send. */
  next: number;
  state: ProgressState = ProgressState.Probe;
  /** In Snapshot state: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** The snapshot transfer in progress, in Snapshot state. */
  snapshotSend: SnapshotSend | null = null;
  /** Whether the follower was heard from since the last check-quorum round. */
  recentActive = false;
  /**
   * Whether appends are paused: in Probe, after one append until a response; in Replicate,
   * when the in-flight window is full.
   */
  msgAppFlowPaused = false;
  /** The highest commit index sent to the follower. */
  sentCommit = 0;
  readonly inflights: Inflights;
  isLearner: boolean;

  constructor(match: number, next: number, inflights: Inflights, isLearner: boolean) {
    this.match = match;
    this.next = next;
    this.inflights = inflights;
    this.isLearner = isLearner;
  }

  private resetState(state: ProgressState): void {
    this.msgAppFlowPaused = false;
    this.pendingSnapshot = 0;
    this.snapshotSend = null;
    this.state = state;
    this.inflights.reset();
  }

  /** becomeProbe starts probing: after a rejection, a snapshot, or an unreachable follower. */
  becomeProbe(): void {
    if (this.state === ProgressState.Snapshot) {
      const pending = this.pendingSnapshot;
      this.resetState(ProgressState.Probe);
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState(ProgressState.Probe);
      this.next = this.match + 1;
    }
  }

  /** becomeReplicate starts streaming from just after the match index. */
  becomeReplicate(): void {
    this.resetState(ProgressState.Replicate);
    this.next = this.match + 1;
  }

  /** becomeSnapshot starts sending `snapshot` to the follower. */
  becomeSnapshot(snapshot: Snapshot): void {
    this.resetState(ProgressState.Snapshot);
    this.pendingSnapshot = snapshot.metadata.index;
    this.next = snapshot.metadata.index + 1;
    this.snapshotSend = {
      snapshot,
      ackedBytes: 0,
      sentBytes: 0,
      started: false,
      ackedAtLastHeartbeat: -1,
      lastReportedBytes: 0,
      stalledRounds: 0,
    };
  }

  /**
   * sentEntries records that an append with `entries` entries of `bytes` payload was sent,
   * moving `next` optimistically in Replicate state.
   */
  sentEntries(entries: number, bytes: number): void {
    if (this.state === ProgressState.Replicate) {
      if (entries > 0) {
        this.next += entries;
        this.inflights.add(this.next - 1, bytes);
      }
      this.msgAppFlowPaused = this.inflights.full();
    } else if (this.state === ProgressState.Probe && entries > 0) {
      this.msgAppFlowPaused = true;
    }
  }

  /** maybeUpdate records an acknowledgement of index `n`; it returns false if it was stale. */
  maybeUpdate(n: number): boolean {
    if (n <= this.match) return false;
    this.match = n;
    if (this.next < n + 1) this.next = n + 1;
    this.msgAppFlowPaused = false;
    return true;
  }

  /**
   * maybeDecrTo handles a rejection of the append at `rejected`, with the follower's hint
   * that its log may match up to `matchHint`. It returns false if the rejection was stale.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === ProgressState.Replicate) {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.msgAppFlowPaused = false;
    return true;
  }

  /** isPaused tells whether the leader should hold back appends to this follower. */
  isPaused(): boolean {
    return this.state === ProgressState.Snapshot || this.msgAppFlowPaused;
  }

  /** canBumpCommit tells whether the follower has not yet been told about commit index `commit`. */
  canBumpCommit(commit: number): boolean {
    return commit > this.sentCommit && this.sentCommit < this.next - 1;
  }

  /** describe is a one-line summary for status and traces. */
  describe(): string {
    let s = `${this.state} match=${this.match} next=${this.next}`;
    if (this.isLearner) s += ' learner';
    if (this.isPaused()) s += ' paused';
    if (this.state === ProgressState.Snapshot) s += ` pendingSnap=${this.pendingSnapshot}`;
    if (this.inflights.size() > 0) s += ` inflight=${this.inflights.size()}`;
    return s;
  }
}
