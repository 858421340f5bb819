/**
 * The client protocol's operations (version 1): what a client may ask a node over RpcServer,
 * and what comes back. The node (src/node/) serves them; the client (src/client/) calls them.
 * Errors are DkvErrors on the wire (rpc-protocol.ts). Redirects carry hints in `details`:
 * NOT_LEADER `{ group, leaderHint, address }` (the leader's node id and client address when
 * known), WRONG_GROUP `{ group, epoch }`.
 */

import { DkvError, ErrorCode } from '../errors.js';

/** SLOT_COUNT is how many slots keys hash to (DESIGN.md, "Ownership and routing"). */
export const SLOT_COUNT = 1024;

/** CLIENT_OPS names every operation and its kind. */
export const CLIENT_OPS = {
  /** {} -> Hello */
  hello: 'unary',
  /**
   * { user, password } | { token } -> { user }: authenticates the connection (nodes with
   * `auth` configured refuse every other op but hello with UNAUTHENTICATED until then)
   */
  auth: 'unary',
  /** { store } -> PartitionMap */
  map: 'unary',
  /**
   * {} -> ClusterStatus (the answering node gathers every member's nodeStatus);
   * { local: true } -> this node's own view in the same shape (no peer is asked)
   */
  status: 'unary',
  /** {} -> NodeStatus (this node only) */
  nodeStatus: 'unary',
  /** AdminArgs -> the action's result; served by the metadata group's leader (else NOT_LEADER) */
  admin: 'unary',
  /** CmdArgs -> the command's value (a mutation, through the group's log) */
  cmd: 'unary',
  /** ReadArgs -> the read's value */
  read: 'unary',
  /** WatchArgs -> a stream of WatchMessage */
  watch: 'stream',
  /**
   * KeepAliveArgs -> a stream of KeepAliveItem: while it is open, the node keeps the lease
   * alive (one batched, replicated keep-alive entry per group per interval for all such
   * streams); it fails with NOT_LEADER when the node stops leading the group, and with
   * LEASE_NOT_FOUND when the lease is gone. Closing it stops the keep-alives.
   */
  keepalive: 'stream',
} as const;

export type ClientOp = keyof typeof CLIENT_OPS;

/** Credentials are what a connection authenticates with: the `auth` op's arguments. */
export type Credentials = { readonly user: string; readonly password: string } | { readonly token: string };

/**
 * checkCredentials validates credentials (the node checks the `auth` op's arguments with it,
 * the client its `auth` option): exactly { user, password } or { token }, non-empty strings
 * of at most 4096 characters.
 */
export function checkCredentials(v: unknown): Credentials {
  const o =
    typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  const str = (x: unknown): x is string => typeof x === 'string' && x.length > 0 && x.length <= 4096;
  if (o && Object.keys(o).length === 1 && str(o.token)) return { token: o.token };
  if (o && Object.keys(o).length === 2 && str(o.user) && str(o.password))
    return { user: o.user, password: o.password };
  throw new DkvError(ErrorCode.InvalidArgument, 'auth takes { user, password } or { token }');
}

export interface Hello {
  readonly nodeId: number;
  readonly clusterId: string;
  readonly protocol: 1;
  /** host:port of the node's peer port (absent in embedded mode). */
  readonly peerAddress?: string;
}

/** GroupReport is one hosted group as one node sees it (NodeStatus). */
export interface GroupReport {
  readonly id: number;
  readonly store: string;
  readonly isLeader: boolean;
  readonly leader: number;
  readonly term: number;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly voters: number[];
  readonly learners: number[];
  /** Only from the leader: how far the slowest replica is behind the commit index. */
  readonly lag?: number;
  /** The names of the indexes the replica has (data groups). */
  readonly indexes?: string[];
}

/** NodeStatus is one node's own view (the `nodeStatus` op). */
export interface NodeStatus {
  readonly id: number;
  readonly address: string;
  readonly peerAddress: string;
  readonly groups: GroupReport[];
  /** Fraction of the data directory's disk that is free (undefined: unknown). */
  readonly diskFree?: number;
  /** The metadata epoch this node has applied (0: none yet). */
  readonly epoch: number;
}

/**
 * AdminArgs ask the control plane for one action: `store.create` { name, partitions?,
 * replicas?, indexes? }, `store.delete` { name }, `store.list`, `store.describe` { name },
 * `member.add` { address }, `member.remove` { id }, `rebalance`, `placement` (a dry run:
 * `{ pending }` replica moves placement still wants).
 */
export interface AdminArgs {
  readonly action: string;
  readonly [field: string]: unknown;
}

/** Member is one node of the cluster. */
export interface Member {
  readonly id: number;
  /** host:port of its client port. */
  readonly address: string;
}

/** GroupInfo is one partition group of a store's map. */
export interface GroupInfo {
  readonly id: number;
  /** The slots [from, to) it owns. */
  readonly slots: readonly (readonly [number, number])[];
  /** Member ids holding a replica. */
  readonly replicas: readonly number[];
  /** The leader as the answering node knows it (0: unknown). */
  readonly leader: number;
}

/** PartitionMap tells a client which group owns which slots, and where the members are. */
export interface PartitionMap {
  readonly store: string;
  readonly epoch: number;
  readonly slotCount: number;
  readonly groups: readonly GroupInfo[];
  readonly members: readonly Member[];
}

/** MemberState is where a member is in its life: joining (a learner), active, or leaving. */
export type MemberState = 'joining' | 'active' | 'leaving';

/** MemberStatus is one member in ClusterStatus. */
export interface MemberStatus {
  readonly id: number;
  /** host:port of its client port. */
  readonly address: string;
  /** host:port of its peer port. */
  readonly peerAddress: string;
  /** Whether it answered (or, for this node, is serving). */
  readonly healthy: boolean;
  readonly state: MemberState;
}

/** GroupStatus is one group in ClusterStatus, as its leader (or best-informed replica) sees it. */
export interface GroupStatus {
  readonly id: number;
  /** The store ('_meta' for the metadata group). */
  readonly store: string;
  /** The leader's member id (0: none known). */
  readonly leader: number;
  readonly term: number;
  readonly commitIndex: number;
  /** Voters (member ids). */
  readonly replicas: number[];
  /** Learners (member ids): replicas catching up before they are promoted. */
  readonly learners: number[];
  /** Where the control plane wants the replicas (differs from `replicas` while a move runs). */
  readonly target: number[];
  /** Entries the slowest replica is behind the leader's commit index (0 when unknown). */
  readonly lag: number;
}

/** Alarm is a condition an operator should look at. */
export interface Alarm {
  readonly kind: 'no-quorum' | 'no-leader' | 'member-down' | 'disk-nearly-full' | 'replica-lagging';
  readonly message: string;
  readonly group?: number;
  readonly member?: number;
}

/** ClusterStatus is the shape of `dkv cluster status --json` (CONTRACT.md, plus more fields). */
export interface ClusterStatus {
  readonly members: readonly MemberStatus[];
  readonly groups: readonly GroupStatus[];
  readonly alarms: readonly Alarm[];
  /** The metadata epoch: bumps on every change of members, stores or placement. */
  readonly epoch: number;
  /** The member that answered. */
  readonly from: number;
}

/** Session makes a mutation exactly-once (see src/statemachine/sessions.ts). */
export interface SessionArgs {
  readonly client: string;
  readonly seq: number;
  readonly ack: number;
}

/**
 * CmdArgs proposes one command (src/statemachine/commands.ts) to the group that owns `key`
 * (every key the command names must belong to that group), or to `group` for commands that
 * name no key (leases). `epoch` is the map epoch the client routed with.
 */
export interface CmdArgs {
  readonly store: string;
  readonly key?: string;
  readonly group?: number;
  readonly cmd: unknown;
  readonly session?: SessionArgs;
  readonly epoch?: number;
}

/** Consistency of a read: linearizable (ReadIndex through the leader) or serializable (local). */
export type Consistency = 'linearizable' | 'serializable';

/** ReadRequest is what to read from a group's state machine. */
export type ReadRequest =
  | { readonly op: 'get'; readonly key: string }
  | {
      readonly op: 'scan';
      readonly prefix?: string;
      readonly start?: string;
      readonly end?: string;
      readonly after?: string;
      readonly limit?: number;
    }
  | { readonly op: 'count'; readonly prefix?: string; readonly start?: string; readonly end?: string }
  | { readonly op: 'query'; readonly query: unknown; readonly options?: unknown }
  | { readonly op: 'counter.get'; readonly name: string }
  | { readonly op: 'lease.ttl'; readonly id: number }
  | { readonly op: 'lease.list' }
  | { readonly op: 'lock.describe'; readonly name: string };

export interface ReadArgs {
  readonly store: string;
  readonly key?: string;
  readonly group?: number;
  readonly read: ReadRequest;
  readonly consistency?: Consistency;
  readonly epoch?: number;
}

/** WatchArgs subscribe to one group's changes (a prefix watch covers every group: one stream each). */
export interface WatchArgs {
  readonly store: string;
  readonly group: number;
  readonly key?: string;
  readonly prefix?: string;
  readonly fromRevision?: number;
  readonly snapshot?: boolean;
}

/** KeepAliveArgs keep one lease of one group alive while the stream is open. */
export interface KeepAliveArgs {
  readonly store: string;
  readonly group: number;
  readonly lease: number;
  /** How often to renew (ms); default a third of the lease's TTL. */
  readonly intervalMs?: number;
}

/** KeepAliveItem reports one renewal: the lease's TTL and its new replicated deadline. */
export interface KeepAliveItem {
  readonly lease: number;
  readonly ttlMs: number;
  readonly deadline: number;
}
