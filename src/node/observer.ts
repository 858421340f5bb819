/**
 * NodeObserver is how a DkvNode reports what it does, for metrics (metrics.ts) and tracing,
 * without knowing who listens. Every callback is optional and must not throw (the node calls
 * them inside its Ready loop and request path; an exception is caught and dropped).
 *
 * Gauges (terms, indexes, counts) are not pushed: a listener reads them when it needs them,
 * through `DkvNode.groupStats()` and `DkvNode.health()`.
 */

/** RequestOutcome is one finished client request. */
export interface RequestOutcome {
  /** The client op: `cmd`, `read`, `map`, `status`, `admin`, `hello`, or a stream op. */
  readonly op: string;
  /** For `cmd` and `read`, the inner operation (`put`, `get`, `lock.acquire`, ...); else ''. */
  readonly kind: string;
  /** The store named by the request ('' when none). */
  readonly store: string;
  /** Time from arrival to answer (ms, monotonic). */
  readonly ms: number;
  /** The error code of a failed request; undefined when it succeeded. */
  readonly code: string | undefined;
  /** The request id the client sent (tracing), when it sent one. */
  readonly trace: string | undefined;
}

/** CommitOutcome is one group-commit round: every active group's Ready in one batch. */
export interface CommitOutcome {
  /** Time for the whole commit (write + sync when synced), ms. */
  readonly ms: number;
  readonly groups: number;
  readonly entries: number;
  readonly synced: boolean;
  /**
   * Time of the LevelDB batch write inside the commit (its fsync included when synced), ms;
   * undefined when not measured.
   */
  readonly syncMs?: number;
}

export interface NodeObserver {
  request?(r: RequestOutcome): void;
  commit?(c: CommitOutcome): void;
  /** This node saw group `group`'s leader change to `leader` (0: none known). */
  leaderChange?(group: number, leader: number, isLeader: boolean): void;
  /** A proposal was appended to `group`'s log on this node (as its leader). */
  proposal?(group: number): void;
  /** A snapshot was written locally (`created`) or received from a leader (`installed`). */
  snapshot?(group: number, kind: 'created' | 'installed', bytes: number, ms: number): void;
}

/** GroupStats is one hosted group's state, as `DkvNode.groupStats()` reports it. */
export interface GroupStats {
  readonly id: number;
  /** The store ('_meta' for the metadata group). */
  readonly store: string;
  readonly isLeader: boolean;
  readonly leader: number;
  readonly term: number;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly revision: number;
  /** Requests waiting on the group in this node. */
  readonly pending: number;
  readonly voters: readonly number[];
  readonly learners: readonly number[];
  /** Open watch subscriptions on this replica. */
  readonly watches: number;
  readonly leases: number;
  /** Locks held. */
  readonly locks: number;
  /** Bytes of the last stored snapshot (0: none). */
  readonly snapshotBytes: number;
}
