import { Inflights } from './inflights.js';
import { Progress } from './progress.js';
import { jointCommittedIndex, jointIds, jointVoteResult, type VoteResult } from './quorum.js';
import type { ConfState, NodeId } from './types.js';

/** TrackerConfig is a group's membership as the tracker uses it. */
export interface TrackerConfig {
  /** [incoming, outgoing]; outgoing is non-empty only in a joint configuration. */
  voters: [Set<NodeId>, Set<NodeId>];
  /** Non-voting members. Invariant: disjoint from both voter sets. */
  learners: Set<NodeId>;
  /** Outgoing voters that become learners when the joint configuration is left. Invariant: a subset of voters[1]. */
  learnersNext: Set<NodeId>;
  /** Whether the leader leaves the joint configuration on its own. */
  autoLeave: boolean;
}

/** emptyTrackerConfig is a configuration with no members. */
export function emptyTrackerConfig(): TrackerConfig {
  return { voters: [new Set(), new Set()], learners: new Set(), learnersNext: new Set(), autoLeave: false };
}

/** cloneTrackerConfig deep-copies a configuration, so a change can be tried on the copy. */
export function cloneTrackerConfig(c: TrackerConfig): TrackerConfig {
  return {
    voters: [new Set(c.voters[0]), new Set(c.voters[1])],
    learners: new Set(c.learners),
    learnersNext: new Set(c.learnersNext),
    autoLeave: c.autoLeave,
  };
}

/** isJoint tells whether a configuration is joint. */
export function isJoint(c: TrackerConfig): boolean {
  return c.voters[1].size > 0;
}

const sorted = (s: Iterable<NodeId>): NodeId[] => [...s].sort((a, b) => a - b);

/** confStateOf converts a configuration to the persisted ConfState. */
export function confStateOf(c: TrackerConfig): ConfState {
  return {
    voters: sorted(c.voters[0]),
    votersOutgoing: sorted(c.voters[1]),
    learners: sorted(c.learners),
    learnersNext: sorted(c.learnersNext),
    autoLeave: c.autoLeave,
  };
}

/** describeConfig renders a configuration like etcd does: `voters=(1 2 3)&&(1 2) learners=(4)`. */
export function describeConfig(c: TrackerConfig): string {
  let s = `voters=(${sorted(c.voters[0]).join(' ')})`;
  if (c.voters[1].size > 0) s += `&&(${sorted(c.voters[1]).join(' ')})`;
  if (c.learners.size > 0) s += ` learners=(${sorted(c.learners).join(' ')})`;
  if (c.learnersNext.size > 0) s += ` learners_next=(${sorted(c.learnersNext).join(' ')})`;
  if (c.autoLeave) s += ' autoleave';
  return s;
}

/** ProgressMap holds the leader's Progress for every member. */
export type ProgressMap = Map<NodeId, Progress>;

/** InflightLimits are the per-follower window bounds. */
export interface InflightLimits {
  readonly countMax: number;
  readonly bytesMax: number;
}

/** newProgress makes the Progress of a member that was just added or restored. */
export function newProgress(limits: InflightLimits, next: number, isLearner: boolean): Progress {
  return new Progress(0, Math.max(1, next), new Inflights(limits.countMax, limits.bytesMax), isLearner);
}

/**
 * ProgressTracker holds a group's membership, the leader's progress for each member and the
 * votes of the current election.
 */
export class ProgressTracker {
  config: TrackerConfig = emptyTrackerConfig();
  /** Invariant: holds an entry for every voter (either half) and every learner. */
  progress: ProgressMap = new Map();
  /** Votes received in the current election: true = granted. */
  readonly votes = new Map<NodeId, boolean>();
  readonly limits: InflightLimits;

  constructor(limits: InflightLimits) {
    this.limits = limits;
  }

  /** committed is the highest index acknowledged by a quorum of the (joint) configuration. */
  committed(): number {
    return jointCommittedIndex(this.config.voters, (id) => this.progress.get(id)?.match);
  }

  /** isSingleton tells whether this is a one-voter, non-joint configuration. */
  isSingleton(): boolean {
    return this.config.voters[0].size === 1 && this.config.voters[1].size === 0;
  }

  /** voterIds lists every voter of the (joint) configuration, sorted. */
  voterIds(): NodeId[] {
    return jointIds(this.config.voters);
  }

  /** isVoter tells whether `id` votes in either half of the configuration. */
  isVoter(id: NodeId): boolean {
    return this.config.voters[0].has(id) || this.config.voters[1].has(id);
  }

  /** quorumActive tells whether a quorum was recently active (the leader counts itself). */
  quorumActive(self: NodeId): boolean {
    const active = new Map<NodeId, boolean>();
    for (const [id, pr] of this.progress) {
      if (!pr.isLearner) active.set(id, id === self || pr.recentActive);
    }
    return jointVoteResult(this.config.voters, active) === 'won';
  }

  /** resetVotes forgets the votes of the previous election. */
  resetVotes(): void {
    this.votes.clear();
  }

  /** recordVote records `id`'s vote; only its first vote in an election counts. */
  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  /** tallyVotes counts the votes of voters and decides the election. */
  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0;
    let rejected = 0;
    for (const id of this.voterIds()) {
      const v = this.votes.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    return { granted, rejected, result: jointVoteResult(this.config.voters, this.votes) };
  }

  /** ackResult decides whether the voters in `acks` form a quorum (for ReadIndex). */
  ackResult(acks: ReadonlySet<NodeId>): VoteResult {
    const votes = new Map<NodeId, boolean>();
    for (const id of acks) votes.set(id, true);
    return jointVoteResult(this.config.voters, votes);
  }

  /** confState is the configuration in its persisted form. */
  confState(): ConfState {
    return confStateOf(this.config);
  }
}
