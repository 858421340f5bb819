import type { Storage } from './storage.js';
import { NONE, type NodeId } from './types.js';

/** RandomSource is the core's view of the injected random source (see src/random.ts). */
export interface RandomSource {
  /** int returns an integer uniformly drawn from [0, maxExclusive). */
  int(maxExclusive: number): number;
}

/** ReadOnlyOption chooses how ReadIndex confirms leadership. */
export const ReadOnlyOption = {
  /** Confirm with a heartbeat round to a quorum (the default, always safe). */
  Safe: 'safe',
  /**
   * Answer reads from the leader's lease when it is fresh: a quorum acknowledged a heartbeat
   * sent less than `electionTicks - 1` ticks ago. Falls back to a heartbeat round otherwise.
   * Needs check-quorum, and assumes the replicas' tick rates drift little.
   */
  LeaseBased: 'lease-based',
} as const;
export type ReadOnlyOption = (typeof ReadOnlyOption)[keyof typeof ReadOnlyOption];

/** RaftConfig configures one replica of one group. Sizes are in bytes, times in ticks. */
export interface RaftConfig {
  /** This replica's id; never NONE. */
  readonly id: NodeId;
  /** The stable log, read by the core. */
  readonly storage: Storage;
  /** The seeded or system random source for election timeouts. */
  readonly random: RandomSource;
  /**
   * electionTicks is the base election timeout. A follower campaigns after a random timeout
   * in [electionTicks, 2*electionTicks). Must exceed heartbeatTicks.
   */
  readonly electionTicks?: number;
  /** heartbeatTicks is how often a leader sends heartbeats. */
  readonly heartbeatTicks?: number;
  /** applied is the last index already applied to the state machine at restart. */
  readonly applied?: number;
  /** maxMsgBytes bounds the entries in one append message (at least one entry is sent). */
  readonly maxMsgBytes?: number;
  /** maxCommittedBytesPerReady bounds the committed entries handed out in one Ready. */
  readonly maxCommittedBytesPerReady?: number;
  /** maxUncommittedBytes bounds the leader's uncommitted tail; a proposal past it is OVERLOADED. */
  readonly maxUncommittedBytes?: number;
  /** maxEntryBytes bounds a single proposal's payload. */
  readonly maxEntryBytes?: number;
  /** maxInflightMsgs bounds the append messages in flight to one follower. */
  readonly maxInflightMsgs?: number;
  /** maxInflightBytes bounds the entry bytes in flight to one follower. */
  readonly maxInflightBytes?: number;
  /** snapshotChunkBytes is the size of each snapshot chunk sent to a follower. */
  readonly snapshotChunkBytes?: number;
  /** checkQuorum makes a leader step down when a quorum has not been heard from in an election timeout. */
  readonly checkQuorum?: boolean;
  /** preVote runs a pre-election so that a partitioned node cannot disrupt a live leader. */
  readonly preVote?: boolean;
  /** readOnlyOption chooses how ReadIndex is confirmed. */
  readonly readOnlyOption?: ReadOnlyOption;
  /**
   * coalesceAppends makes each Ready hand out one append per follower where the core sent
   * several that continue one another (one per proposal, in a busy round): see
   * `coalesceAppends` in raft.ts. Off by default, so that the core's messages are etcd's, one
   * for one (the interaction transcripts check them); the node turns it on.
   */
  readonly coalesceAppends?: boolean;
  /** trace, when set, receives one line per notable event (role change, election, step-down). */
  readonly trace?: (line: string) => void;
}

/** ResolvedRaftConfig is a RaftConfig with every default filled in and validated. */
export type ResolvedRaftConfig = Required<Omit<RaftConfig, 'trace'>> & Pick<RaftConfig, 'trace'>;

/** RAFT_DEFAULTS are the defaults for every optional RaftConfig field. */
export const RAFT_DEFAULTS = Object.freeze({
  electionTicks: 10,
  heartbeatTicks: 1,
  applied: 0,
  maxMsgBytes: 1 << 20,
  maxCommittedBytesPerReady: 4 << 20,
  maxUncommittedBytes: 64 << 20,
  maxEntryBytes: 8 << 20,
  maxInflightMsgs: 256,
  maxInflightBytes: 32 << 20,
  snapshotChunkBytes: 1 << 20,
  checkQuorum: true,
  preVote: true,
  readOnlyOption: ReadOnlyOption.Safe,
  coalesceAppends: false,
});

/**
 * resolveRaftConfig fills in defaults and checks every bound. A bad configuration is a
 * programmer error: it throws a RangeError naming the field.
 */
export function resolveRaftConfig(config: RaftConfig): ResolvedRaftConfig {
  const c: ResolvedRaftConfig = { ...RAFT_DEFAULTS, ...stripUndefined(config) } as ResolvedRaftConfig;
  const positive = (name: keyof ResolvedRaftConfig): void => {
    const v = c[name];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw new RangeError(`raft config: ${name} must be a positive integer, got ${String(v)}`);
    }
  };
  if (!Number.isSafeInteger(c.id) || c.id === NONE || c.id < 0) {
    throw new RangeError(`raft config: id must be a positive integer, got ${c.id}`);
  }
  for (const name of [
    'electionTicks',
    'heartbeatTicks',
    'maxMsgBytes',
    'maxCommittedBytesPerReady',
    'maxUncommittedBytes',
    'maxEntryBytes',
    'maxInflightMsgs',
    'maxInflightBytes',
    'snapshotChunkBytes',
  ] as const) {
    positive(name);
  }
  if (c.electionTicks <= c.heartbeatTicks) {
    throw new RangeError(
      `raft config: electionTicks (${c.electionTicks}) must exceed heartbeatTicks (${c.heartbeatTicks})`,
    );
  }
  if (!Number.isSafeInteger(c.applied) || c.applied < 0) {
    throw new RangeError(`raft config: applied must be a non-negative integer, got ${c.applied}`);
  }
  if (c.readOnlyOption === ReadOnlyOption.LeaseBased && !c.checkQuorum) {
    throw new RangeError('raft config: lease-based reads need checkQuorum');
  }
  if (c.readOnlyOption !== ReadOnlyOption.Safe && c.readOnlyOption !== ReadOnlyOption.LeaseBased) {
    throw new RangeError(`raft config: unknown readOnlyOption ${String(c.readOnlyOption)}`);
  }
  return c;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) {
    if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  }
  return out;
}
