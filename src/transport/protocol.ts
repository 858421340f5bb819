/**
 * The client protocol's operations (version 1): what a client may ask a node over RpcServer,
 * and what comes back. The node (src/node/) serves them; the client (src/client/) calls them.
 * Errors are DkvErrors on the wire (rpc-protocol.ts). Redirects carry hints in `details`:
 * NOT_LEADER `{ group, leaderHint, address }` (the leader's node id and client address when
 * known), WRONG_GROUP `{ group, epoch }`.
 */

/** SLOT_COUNT is how many slots keys hash to (DESIGN.md, "Ownership and routing"). */
export const SLOT_COUNT = 1024;

/** CLIENT_OPS names every operation and its kind. */
export const CLIENT_OPS = {
  /** {} -> Hello */
  hello: 'unary',
  /** { store } -> PartitionMap */
  map: 'unary',
  /** {} -> ClusterStatus */
  status: 'unary',
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

export interface Hello {
  readonly nodeId: number;
  readonly clusterId: string;
  readonly protocol: 1;
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

/** ClusterStatus is the shape of `dkv cluster status --json` (CONTRACT.md). */
export interface ClusterStatus {
  readonly members: readonly { id: number; address: string; healthy: boolean }[];
  readonly groups: readonly {
    id: number;
    store: string;
    leader: number;
    term: number;
    commitIndex: number;
    replicas: number[];
  }[];
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
