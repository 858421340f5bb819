/**
 * The Raft core's data types: entries, messages, hard state, snapshots and the Ready batch.
 * Everything here is a plain typed object. Encoding to bytes happens only at the edges
 * (storage and transport), never inside the core.
 */

/** NodeId identifies a replica within one Raft group. 0 means "none". */
export type NodeId = number;

/** NONE is the NodeId that stands for "no node" (no leader, no vote). */
export const NONE: NodeId = 0;

/** EntryType says how an entry's data is to be read. */
export const EntryType = {
  /** Application data (an empty one is the leader's no-op). */
  Normal: 0,
  /** A membership change, encoded with `encodeConfChange`. */
  ConfChange: 1,
} as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

/** Entry is one slot of the replicated log. */
export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  /** The payload. A leader's no-op has zero length. */
  readonly data: Uint8Array;
}

/** HardState is what a replica must persist before it sends any message that depends on it. */
export interface HardState {
  readonly term: number;
  /** The candidate this replica voted for in `term`, or NONE. */
  readonly vote: NodeId;
  /** The highest index known to be committed. Invariant: commit <= last persisted index. */
  readonly commit: number;
}

/** EMPTY_HARD_STATE is the hard state of a replica that has never run. */
export const EMPTY_HARD_STATE: HardState = Object.freeze({ term: 0, vote: NONE, commit: 0 });

/**
 * ConfState is a group's membership. While `votersOutgoing` is non-empty the group is in a
 * joint configuration and decisions need a majority of both `voters` and `votersOutgoing`.
 */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /** The voters of the outgoing configuration while joint; empty otherwise. */
  readonly votersOutgoing: readonly NodeId[];
  /** Learners that become learners once the joint configuration is left (demoted voters). */
  readonly learnersNext: readonly NodeId[];
  /** Whether the joint configuration is left automatically by the leader. */
  readonly autoLeave: boolean;
}

/** SnapshotMetadata says which prefix of the log a snapshot replaces. */
export interface SnapshotMetadata {
  readonly index: number;
  readonly term: number;
  readonly confState: ConfState;
}

/** Snapshot is an application state image covering the log up to `metadata.index`. */
export interface Snapshot {
  readonly metadata: SnapshotMetadata;
  readonly data: Uint8Array;
}

/** MessageType enumerates every message the core sends, receives, or is handed locally. */
export const MessageType = {
  /** Local: start an election (the election timer fired, or the application asked). */
  Hup: 0,
  /** Local: the leader should send heartbeats now. */
  Beat: 1,
  /** Local: the leader should check that a quorum has been active. */
  CheckQuorum: 2,
  /** Append entries (also carries the leader's commit index). */
  App: 3,
  AppResp: 4,
  Vote: 5,
  VoteResp: 6,
  PreVote: 7,
  PreVoteResp: 8,
  /** One chunk of a snapshot, leader to follower. */
  Snap: 9,
  /** A follower's acknowledgement of snapshot chunks received so far. */
  SnapResp: 10,
  Heartbeat: 11,
  HeartbeatResp: 12,
  /** Local, to the leader: the transport could not reach `from`. */
  Unreachable: 13,
  /** Local, to the leader: the application failed (reject=true) or finished sending a snapshot. */
  SnapStatus: 14,
  /** Ask the leader to hand leadership to `from` (local on the leader, or from a follower). */
  TransferLeader: 15,
  /** Leader to transferee: campaign now, ignoring the election timer and leader stickiness. */
  TimeoutNow: 16,
  /** A linearizable read request (local, or forwarded from a follower to the leader). */
  ReadIndex: 17,
  ReadIndexResp: 18,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

/** MESSAGE_TYPE_NAMES maps a MessageType to its name, for traces and errors. */
export const MESSAGE_TYPE_NAMES: Readonly<Record<MessageType, string>> = Object.freeze(
  Object.fromEntries(Object.entries(MessageType).map(([k, v]) => [v, `Msg${k}`])) as Record<
    MessageType,
    string
  >,
);

/** SnapshotChunk is a piece of a snapshot in flight. */
export interface SnapshotChunk {
  readonly metadata: SnapshotMetadata;
  /** Byte offset of `data` within the whole snapshot. */
  readonly offset: number;
  /** Total length of the snapshot's data in bytes. */
  readonly totalBytes: number;
  readonly data: Uint8Array;
}

/**
 * Message is the unit exchanged between replicas of a group. It is a flat record with every
 * field present, so that all messages share one object shape.
 */
export interface Message {
  readonly type: MessageType;
  readonly from: NodeId;
  readonly to: NodeId;
  /** The sender's term; 0 for local messages. */
  readonly term: number;
  /** App: term of the entry before `entries`; Vote/PreVote: term of the candidate's last entry. */
  readonly logTerm: number;
  /** App: index of the entry before `entries`; AppResp: highest matched (or rejected) index. */
  readonly index: number;
  readonly entries: readonly Entry[];
  /** The sender's commit index (App, Heartbeat). */
  readonly commit: number;
  readonly reject: boolean;
  /** AppResp rejections: the follower's hint for where the logs may match. SnapResp: bytes held. */
  readonly rejectHint: number;
  /** Snap: the chunk carried. */
  readonly snapshot: SnapshotChunk | null;
  /** ReadIndex request context; heartbeats echo the newest pending one. Vote: "transfer" marks a forced campaign. */
  readonly context: string;
}

/** ReadState answers a `readIndex(context)` call: once `index` is applied, the read may be served. */
export interface ReadState {
  readonly index: number;
  readonly context: string;
}

/** RaftRole is a replica's role in its group. */
export const RaftRole = {
  Follower: 'follower',
  PreCandidate: 'pre-candidate',
  Candidate: 'candidate',
  Leader: 'leader',
} as const;
export type RaftRole = (typeof RaftRole)[keyof typeof RaftRole];

/** SoftState is volatile state that need not be persisted but is worth reporting. */
export interface SoftState {
  readonly leader: NodeId;
  readonly role: RaftRole;
}

/**
 * Ready is the batch of work the core hands its driver. The driver must handle it in exactly
 * this order, then call `advance()`:
 *
 * 1. Persist `snapshot` (if set), then `entries`, then `hardState` (if set), atomically and
 *    durably (fsync). A replica that crashes before this finishes may lose them; one that
 *    acknowledges anything before it has broken Raft's safety.
 * 2. Send `messages`. Their content depends on step 1 having been persisted (a vote, an
 *    append acknowledgement, and the leader's own copy, which it counts toward the commit
 *    quorum at once), so none may leave before the sync returns, with one exception: a
 *    leader's append (App) whose `commit` covers only entries already durable may leave
 *    before it, provided the driver handles Readies one at a time (nothing of the next Ready,
 *    where a commit counting the leader's unsynced copy can first appear, is applied or sent
 *    before this sync returns). That takes the leader's fsync off the commit path.
 * 3. Apply `snapshot` (if set) to the state machine, then apply `committedEntries` in order.
 *    Membership entries are applied by calling `applyConfChange` on the core.
 * 4. Hand `readStates` to waiting readers: each read may be served once the applied index
 *    reaches its `index`.
 * 5. Call `advance()`.
 *
 * Between `ready()` and `advance()` the driver may still call `step`, `tick` and `propose`;
 * their effects show up in the next Ready.
 */
export interface Ready {
  /** Set when the leader or role changed since the previous Ready. */
  readonly softState: SoftState | null;
  /** Set when term, vote or commit changed and must be persisted. */
  readonly hardState: HardState | null;
  /** Entries to append to stable storage (they may overwrite a conflicting suffix). */
  readonly entries: readonly Entry[];
  /** A snapshot received from the leader, to persist and then install. */
  readonly snapshot: Snapshot | null;
  /** Entries known to be committed and persisted, to apply in order. */
  readonly committedEntries: readonly Entry[];
  /** Messages to send once step 1 is durable. */
  readonly messages: readonly Message[];
  /** Answers to `readIndex` calls. */
  readonly readStates: readonly ReadState[];
  /** Whether step 1 needs an fsync (false when only the commit index moved). */
  readonly mustSync: boolean;
}

/**
 * ProposeResult says whether the core accepted a proposal. An accepted proposal is appended
 * at (`index`, `term`); it has taken effect only if that exact entry is later committed.
 */
export type ProposeResult =
  | { readonly ok: true; readonly index: number; readonly term: number }
  | { readonly ok: false; readonly code: ProposeRefusal; readonly leader: NodeId };

/**
 * ProposeRefusal names why a proposal was refused. None of these put anything in the log,
 * so the caller may retry (elsewhere, or later) without risk of a duplicate.
 */
export const ProposeRefusal = {
  /** This replica is not the leader; `leader` is the one it knows of, or NONE. */
  NotLeader: 'NOT_LEADER',
  /** A leadership transfer is in progress; retry after it ends. */
  Transferring: 'TRANSFERRING',
  /** The uncommitted tail of the log is at its size limit. */
  Overloaded: 'OVERLOADED',
  /** A membership change is still pending, or the change is not valid now. */
  ConfChangeRefused: 'CONF_CHANGE_REFUSED',
  /** The entry is larger than the configured maximum. */
  TooLarge: 'TOO_LARGE',
} as const;
export type ProposeRefusal = (typeof ProposeRefusal)[keyof typeof ProposeRefusal];

/** ConfChangeType is one kind of single-replica membership change. */
export const ConfChangeType = {
  AddVoter: 'add-voter',
  AddLearner: 'add-learner',
  RemoveNode: 'remove-node',
} as const;
export type ConfChangeType = (typeof ConfChangeType)[keyof typeof ConfChangeType];

/** ConfChangeSingle changes one replica's membership. */
export interface ConfChangeSingle {
  readonly type: ConfChangeType;
  readonly nodeId: NodeId;
}

/**
 * ConfChangeTransition says how a change with several parts is carried out.
 * - `auto`: a single voter change is applied directly; anything else goes through a joint
 *   configuration that the leader leaves automatically.
 * - `joint-implicit`: always joint, left automatically.
 * - `joint-explicit`: always joint, left only by proposing an empty change.
 */
export const ConfChangeTransition = {
  Auto: 'auto',
  JointImplicit: 'joint-implicit',
  JointExplicit: 'joint-explicit',
} as const;
export type ConfChangeTransition = (typeof ConfChangeTransition)[keyof typeof ConfChangeTransition];

/**
 * ConfChange is a membership change (etcd's ConfChangeV2). An empty `changes` list leaves a
 * joint configuration.
 */
export interface ConfChange {
  readonly transition: ConfChangeTransition;
  readonly changes: readonly ConfChangeSingle[];
  /** Opaque application data, for example the new member's address. */
  readonly context: string;
}
