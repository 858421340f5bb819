/**
 * Which limit shed a request: the overload benchmark sorts every OVERLOADED answer by the
 * bound that produced it, so a report can say whether the node's pending queue, Raft's
 * uncommitted-size bound, a connection's in-flight cap or the client's own queue pushed back.
 *
 * The code is stable and the messages are not (errors.ts), so this is a benchmark's reading
 * of today's messages, nothing a program should branch on: an unknown message lands in
 * `other` with its text kept as an example, and the report shows it.
 */

/** SHED_LIMITS are the bounds an OVERLOADED can come from, as the report names them. */
export const SHED_LIMITS = [
  /** The node's requests waiting (pendingMax, node.ts checkCapacity). */
  'nodePending',
  /** Raft's bound on the uncommitted log (propose refused: "too much is waiting to commit"). */
  'raftUncommitted',
  /** A server connection's requests in flight (inFlightMax, rpc-server.ts). */
  'connectionInFlight',
  /** The client session's window of unacknowledged requests (sessions.ts resultsMax). */
  'sessionWindow',
  /** A group's oldest request has waited past shedWaitMs (node.ts shedReason). */
  'waitTime',
  /** The client's own connection: its in-flight cap or its send queue (rpc-client.ts). */
  'clientQueue',
  /** Anything else (leases, locks, counters, or a message this file does not know). */
  'other',
] as const;

/** ShedLimit names one of SHED_LIMITS. */
export type ShedLimit = (typeof SHED_LIMITS)[number];

const RULES: readonly (readonly [RegExp, ShedLimit])[] = [
  [/requests waiting; back off/, 'nodePending'],
  [/too much is waiting to commit/, 'raftUncommitted'],
  [/requests in flight on this connection/, 'connectionInFlight'],
  [/past its oldest unacknowledged one/, 'sessionWindow'],
  [/is behind: its oldest request has waited/, 'waitTime'],
  [/requests in flight$|local send queue full|not sent within .* \(connection backed up\)/, 'clientQueue'],
];

/** shedLimitOf names the limit an OVERLOADED error's message comes from (`other` when unknown). */
export function shedLimitOf(message: string): ShedLimit {
  for (const [re, limit] of RULES) if (re.test(message)) return limit;
  return 'other';
}

/** emptyShedCounts is a zero count for every limit, in SHED_LIMITS order. */
export function emptyShedCounts(): Record<ShedLimit, number> {
  return Object.fromEntries(SHED_LIMITS.map((l) => [l, 0])) as Record<ShedLimit, number>;
}
