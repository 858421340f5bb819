import type { NodeId } from './types.js';

/** VoteResult is the outcome of counting votes in a configuration. */
export const VoteResult = {
  /** Not decided yet: enough voters have not answered. */
  Pending: 'pending',
  /** A majority said no (or can no longer say yes). */
  Lost: 'lost',
  /** A majority said yes. */
  Won: 'won',
} as const;
export type VoteResult = (typeof VoteResult)[keyof typeof VoteResult];

/**
 * COMMIT_INDEX_INFINITE is what an empty majority "commits": everything. It makes a joint
 * configuration with an empty outgoing half behave like its incoming half alone.
 */
export const COMMIT_INDEX_INFINITE = Number.MAX_SAFE_INTEGER;

/** AckedIndexer returns the highest log index a voter is known to hold, if any. */
export type AckedIndexer = (id: NodeId) => number | undefined;

/**
 * majorityCommittedIndex returns the largest index that a majority of `voters` have
 * acknowledged. For n voters it is the (n/2+1)-th largest acked index; missing voters
 * count as 0.
 */
export function majorityCommittedIndex(voters: ReadonlySet<NodeId>, acked: AckedIndexer): number {
  const n = voters.size;
  if (n === 0) return COMMIT_INDEX_INFINITE;
  if (n === 1) {
    for (const id of voters) return acked(id) ?? 0;
  }
  // Small configurations are the norm: insertion-sort a stack-sized array, descending.
  const srt: number[] = new Array(n);
  let i = 0;
  for (const id of voters) {
    const v = acked(id) ?? 0;
    let j = i;
    while (j > 0 && srt[j - 1]! < v) {
      srt[j] = srt[j - 1]!;
      j--;
    }
    srt[j] = v;
    i++;
  }
  return srt[n >> 1]!;
}

/**
 * majorityVoteResult counts `votes` (true = granted) among `voters`. An empty configuration
 * wins, so that a joint configuration with an empty outgoing half needs only the incoming.
 */
export function majorityVoteResult(
  voters: ReadonlySet<NodeId>,
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  if (voters.size === 0) return VoteResult.Won;
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) granted++;
  }
  const q = (voters.size >> 1) + 1;
  if (granted >= q) return VoteResult.Won;
  if (granted + missing >= q) return VoteResult.Pending;
  return VoteResult.Lost;
}

/**
 * JointConfig is a pair of voter sets. A decision needs a majority of each; outside a
 * membership change the outgoing set is empty and only the incoming set counts.
 */
export type JointConfig = readonly [incoming: ReadonlySet<NodeId>, outgoing: ReadonlySet<NodeId>];

/** jointCommittedIndex is the smaller of the two halves' committed indexes. */
export function jointCommittedIndex(cfg: JointConfig, acked: AckedIndexer): number {
  const a = majorityCommittedIndex(cfg[0], acked);
  const b = majorityCommittedIndex(cfg[1], acked);
  return a < b ? a : b;
}

/** jointVoteResult wins when both halves win, and loses when either loses. */
export function jointVoteResult(cfg: JointConfig, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const a = majorityVoteResult(cfg[0], votes);
  const b = majorityVoteResult(cfg[1], votes);
  if (a === b) return a;
  if (a === VoteResult.Lost || b === VoteResult.Lost) return VoteResult.Lost;
  return VoteResult.Pending;
}

/** jointIds returns every voter of either half, sorted. */
export function jointIds(cfg: JointConfig): NodeId[] {
  const ids = new Set<NodeId>(cfg[0]);
  for (const id of cfg[1]) ids.add(id);
  return [...ids].sort((x, y) => x - y);
}
