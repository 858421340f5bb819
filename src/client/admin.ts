/**
 * AdminApi: the control plane from the client library (`client.admin`): stores and members.
 * Every call goes to the metadata group's leader (DkvClient.controlPlane follows NOT_LEADER
 * redirects), the same `admin` op the `dkv store` and `dkv cluster` commands use. Membership
 * changes finish in the background: watch them with `client.status()`.
 */
import type { CallOptions } from './core.js';

/** IndexSpec declares one index of a store: on a field path of structured values, or a label. */
export interface IndexSpec {
  readonly name: string;
  readonly kind: 'eq' | 'range';
  readonly field?: string;
  readonly label?: string;
}

/** StoreSummary is one store in `listStores`. */
export interface StoreSummary {
  readonly name: string;
  readonly partitions: number;
  readonly replicas: number;
  /** Index names. */
  readonly indexes: string[];
  readonly epoch: number;
}

/** StoreInfo describes one store: its groups (slots, target replicas, leader) and indexes. */
export interface StoreInfo {
  readonly name: string;
  readonly epoch: number;
  readonly partitions: number;
  readonly replicas: number;
  readonly indexes: IndexSpec[];
  readonly groups: {
    readonly id: number;
    readonly slots: [number, number][];
    readonly replicas: number[];
    readonly initial: number[];
    /** The leader's member id as last seen (0: unknown). */
    readonly leader: number;
  }[];
  /** From createStore: whether every group had a leader and its indexes when it returned. */
  readonly ready?: boolean;
}

/** MemberInfo is one member as the control plane records it. */
export interface MemberInfo {
  readonly id: number;
  readonly address: string;
  readonly peerAddress?: string;
  readonly state: 'joining' | 'active' | 'leaving';
}

/** PlacementChange is one group whose target replicas a rebalance changed. */
export interface PlacementChange {
  readonly store: string;
  readonly group: number;
  readonly replicas: number[];
  readonly why: string;
}

/** ControlPlane is what AdminApi needs from the client. */
export interface ControlPlane {
  controlPlane(action: string, args: Record<string, unknown>, opts?: CallOptions): Promise<unknown>;
}

export class AdminApi {
  constructor(private readonly client: ControlPlane) {}

  /**
   * createStore creates a store (ALREADY_EXISTS if it exists): `partitions` groups (default 6)
   * of `replicas` replicas (default 3), with `indexes`. It returns once every group has a
   * leader and its indexes (or after about 15 s, with `ready: false`).
   */
  async createStore(
    name: string,
    opts: {
      partitions?: number;
      replicas?: number;
      indexes?: readonly IndexSpec[];
      /** The store's quotas (what is left out: the nodes' defaults; 0: unlimited). */
      quotas?: Partial<Record<'keys' | 'bytes' | 'watches' | 'leases' | 'locks', number>>;
    } & CallOptions = {},
  ): Promise<StoreInfo> {
    const { partitions, replicas, indexes, quotas, ...call } = opts;
    return (await this.client.controlPlane(
      'store.create',
      {
        name,
        ...(partitions !== undefined && { partitions }),
        ...(replicas !== undefined && { replicas }),
        ...(indexes !== undefined && { indexes }),
        ...(quotas !== undefined && { quotas }),
      },
      { timeoutMs: 30_000, ...call },
    )) as StoreInfo;
  }

  /** deleteStore deletes a store and all its data (STORE_NOT_FOUND if missing). */
  async deleteStore(name: string, opts: CallOptions = {}): Promise<void> {
    await this.client.controlPlane('store.delete', { name }, opts);
  }

  /** listStores lists every store. */
  async listStores(opts: CallOptions = {}): Promise<StoreSummary[]> {
    return (await this.client.controlPlane('store.list', {}, opts)) as StoreSummary[];
  }

  /** describeStore describes one store (STORE_NOT_FOUND if missing). */
  async describeStore(name: string, opts: CallOptions = {}): Promise<StoreInfo> {
    return (await this.client.controlPlane('store.describe', { name }, opts)) as StoreInfo;
  }

  /**
   * addMember registers a running node (started with `join: true`; `address` is its client
   * host:port) as a joining member; it becomes active once caught up, and replicas then move
   * onto it.
   */
  async addMember(address: string, opts: CallOptions = {}): Promise<MemberInfo> {
    return (await this.client.controlPlane('member.add', { address }, opts)) as MemberInfo;
  }

  /** removeMember marks a member leaving: its replicas move away, then it is removed. */
  async removeMember(id: number, opts: CallOptions = {}): Promise<MemberInfo> {
    return (await this.client.controlPlane('member.remove', { id }, opts)) as MemberInfo;
  }

  /** rebalance moves replicas (rate-limited) and leaders toward an even spread now. */
  async rebalance(opts: CallOptions = {}): Promise<PlacementChange[]> {
    return ((await this.client.controlPlane('rebalance', {}, opts)) as { changes: PlacementChange[] })
      .changes;
  }

  /** pendingMoves is how many replica moves placement still wants (0: balanced). */
  async pendingMoves(opts: CallOptions = {}): Promise<number> {
    return ((await this.client.controlPlane('placement', {}, opts)) as { pending: number }).pending;
  }
}
