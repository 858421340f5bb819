/**
 * DkvClient: the TypeScript client of a DKV cluster (CONTRACT.md, "Client library"). This is
 * the minimal client of issue 5: put, get, delete and status; the rest of the contract's API
 * grows on the same request loop.
 *
 * How a request travels:
 * 1. The key's slot picks its group in the partition map (fetched on connect, again on
 *    WRONG_GROUP, and in the background when leaders are unknown).
 * 2. Mutations and linearizable reads go to the group's leader as best known (a NOT_LEADER
 *    hint, else the map); serializable reads go to the first replica in the `servers` order.
 *    With no leader known, the replicas are tried in turn.
 * 3. Redirects (NOT_LEADER, WRONG_GROUP), UNAVAILABLE, OVERLOADED and lost answers are
 *    retried with a short backoff until `requestTimeoutMs` runs out. A server that cannot be
 *    reached is skipped for a backoff delay (endpoints.ts).
 * 4. Every mutation carries a session (client id, seq, ack; session.ts) that it keeps across
 *    its retries, so a retry after a lost answer is applied at most once and answered with the
 *    first answer. The call fails with TIMEOUT only when some attempt may have taken effect
 *    and none came back with an answer before the deadline; otherwise with the last error.
 * 5. Every call has a request id, `<clientId>-<n>` unless the caller names it
 *    (`CallOptions.requestId`). Every attempt carries it in its frame's `trace`, and the
 *    servers log it (`rid`), so one slow or failed call can be followed into the leader's
 *    log. A DkvError thrown to the caller carries it in `details.requestId`.
 *
 * Every call is bounded by requestTimeoutMs; nothing retries forever.
 */

import { DkvError, ErrorCode, isDkvError } from '../errors.js';
import type { ReconnectPolicy } from '../transport/backoff.js';
import {
  type ClusterStatus,
  type Consistency,
  type Credentials,
  checkCredentials,
  type GroupInfo,
  type ReadRequest,
} from '../transport/protocol.js';
import { isTraceId, TRACE_LENGTH_MAX } from '../transport/rpc-protocol.js';
import { tlsSockets } from '../transport/tls.js';
import { AdminApi } from './admin.js';
import type { CallOptions, ClientCore, ClientStream, Route, Target } from './core.js';
import { CounterHandle } from './counters.js';
import { embeddedFactory, type InProcOptions } from './embedded-hook.js';
import { type Connection, Endpoints, type HeartbeatPolicy, parseAddress, tcpConnector } from './endpoints.js';
import { LeaseApi, leaseForKey, leaseId } from './leases.js';
import { LockApi } from './locks.js';
import { checkPartitionMap, Routes } from './routing.js';
import {
  countKeys,
  countQuery,
  defineIndexes,
  type GroupItem,
  type QueryOptions,
  runQuery,
  runTxn,
  type ScanOptions,
  scanItems,
  streamQuery,
  type TxnResult,
  type TxnSpec,
} from './scan.js';
import { ClientSession, randomClientId } from './session.js';
import type { Item } from './types.js';
import { openWatch, type WatchOptions, type WatchStream } from './watch.js';

export type { ClusterStatus, Consistency } from '../transport/protocol.js';
export type { CallOptions, Route, Target } from './core.js';
export type { Item } from './types.js';

/** DkvClientOptions configure DkvClient.connect. */
export interface DkvClientOptions {
  /** Server client addresses (`host:port`), in priority order. */
  readonly servers: readonly string[];
  /** The store to use (default `default`). */
  readonly store?: string;
  /** How long one call may take, retries included (default 5000 ms). */
  readonly requestTimeoutMs?: number;
  /** Backoff for servers that cannot be reached. */
  readonly reconnect?: Partial<ReconnectPolicy>;
  /** Largest frame either way (default 16 MiB, the nodes' default). */
  readonly frameBytesMax?: number;
  /** Hung-connection detection: a ping every intervalMs, hung after timeoutMs (default 1000/2000). */
  readonly heartbeat?: Partial<HeartbeatPolicy>;
  /**
   * What a call does when a node sheds it with OVERLOADED: retry after a pause, within the
   * call's timeout (true, the default), or fail at once with the OVERLOADED error (false: for
   * callers with their own load shedding, and the overload benchmark).
   */
  readonly retryOverloaded?: boolean;
  /**
   * TLS: verify the servers against `ca` (PEM), and present `cert`/`key` when given (a client
   * certificate the cluster's CA signed authenticates as the user its CN names).
   */
  readonly tls?: ClientTlsOptions;
  /** Credentials every connection authenticates with (nodes with auth on require them). */
  readonly auth?: Credentials;
}

/** ClientTlsOptions are the client's TLS files' contents (PEM strings or buffers). */
export interface ClientTlsOptions {
  readonly ca: string | Uint8Array;
  readonly cert?: string | Uint8Array;
  readonly key?: string | Uint8Array;
  /** The name the servers' certificates must carry, when it is not the host dialed. */
  readonly servername?: string;
}

/** Fence names a lock and the token its holder was granted. */
export interface Fence {
  readonly lock: string;
  readonly token: number;
}

/** PutOptions are a put's conditions and extras. */
export interface PutOptions extends CallOptions {
  /** The key expires this long after the put (replicated clock). */
  readonly ttlMs?: number;
  /** Bind the key to a lease: it goes when the lease does. */
  readonly lease?: number;
  /** Only if the key's current version is this (an integer >= 1; use ifAbsent to require absence). */
  readonly ifVersion?: number;
  /** Only if the key does not exist. */
  readonly ifAbsent?: boolean;
  /** Only while this lock token is current. */
  readonly fence?: Fence;
  readonly labels?: Readonly<Record<string, string | number>>;
}

/** GetOptions choose a read's consistency (default linearizable). */
export interface GetOptions extends CallOptions {
  readonly consistency?: Consistency;
}

const DEFAULT_RECONNECT: ReconnectPolicy = {
  initialDelayMs: 50,
  maxDelayMs: 2000,
  multiplier: 2,
  jitter: 0.2,
};
const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_FRAME_BYTES_MAX = 16 << 20;
/** Retry pauses when no leader is known: RETRY_BASE_MS doubling up to RETRY_MAX_MS. */
const RETRY_BASE_MS = 20;
const RETRY_MAX_MS = 250;
/** Background map refreshes happen at most this often. */
const MAP_REFRESH_MIN_MS = 200;
/** One attempt waits at most this long for its answer before the client tries again. */
const ATTEMPT_TIMEOUT_MIN_MS = 1000;
/** No attempt starts with less time than this left before the deadline. */
const LAST_ATTEMPT_MIN_MS = 20;

/** callOptions picks the call options out of a method's options. */
export function callOptions(o: CallOptions): CallOptions {
  return {
    ...(o.timeoutMs !== undefined && { timeoutMs: o.timeoutMs }),
    ...(o.signal !== undefined && { signal: o.signal }),
    ...(o.requestId !== undefined && { requestId: o.requestId }),
  };
}

/** withRequestId is `err` (a DkvError) carrying `requestId` in its details; anything else as is. */
function withRequestId(err: unknown, requestId: string): unknown {
  if (!isDkvError(err) || err.details.requestId === requestId) return err;
  const e = new DkvError(
    err.code,
    err.message,
    { ...err.details, requestId },
    err.cause === undefined ? undefined : { cause: err.cause },
  );
  if (err.stack !== undefined) e.stack = err.stack;
  return e;
}

function aborted(signal: AbortSignal | undefined): DkvError {
  const reason = signal?.reason;
  return new DkvError(
    ErrorCode.Cancelled,
    `the call was aborted${reason instanceof Error ? `: ${reason.message}` : ''}`,
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function toDkvError(err: unknown): DkvError {
  if (isDkvError(err)) return err;
  return new DkvError(
    ErrorCode.Unavailable,
    err instanceof Error ? err.message : String(err),
    {},
    { cause: err },
  );
}

/** DkvClient talks to a DKV cluster. */
/** MutateOptions: CallOptions, and whether the mutation runs in a session of its own. */
export interface MutateOptions extends CallOptions {
  readonly ownSession?: boolean;
}

export class DkvClient implements ClientCore {
  readonly store: string;
  readonly requestTimeoutMs: number;
  private readonly servers: readonly string[];
  private readonly retryOverloaded: boolean;
  private readonly endpoints: Endpoints;
  private readonly session = new ClientSession(randomClientId());
  private routes: Routes | undefined;
  private mapFetch: Promise<Routes> | undefined;
  private lastMapFetchAt = Number.NEGATIVE_INFINITY;
  private closed = false;
  /** Where the metadata group's leader was last found (control-plane calls go there first). */
  private metaLeader: string | undefined;
  /** The n of the last default request id (`<clientId>-<n>`). */
  private requestSeq = 0;

  private constructor(opts: DkvClientOptions) {
    if (!Array.isArray(opts.servers) || opts.servers.length === 0)
      throw new DkvError(ErrorCode.InvalidArgument, 'servers must list at least one host:port');
    for (const s of opts.servers) parseAddress(s);
    const timeout = opts.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(timeout > 0) || !Number.isFinite(timeout))
      throw new DkvError(ErrorCode.InvalidArgument, `requestTimeoutMs must be positive, got ${timeout}`);
    this.servers = opts.servers.map((s) => s.trim());
    this.store = opts.store ?? 'default';
    this.requestTimeoutMs = timeout;
    this.retryOverloaded = opts.retryOverloaded !== false;
    const frameBytesMax = opts.frameBytesMax ?? DEFAULT_FRAME_BYTES_MAX;
    const tls = opts.tls;
    if (opts.auth !== undefined) checkCredentials(opts.auth);
    const secure = tls !== undefined || opts.auth !== undefined;
    this.endpoints = new Endpoints({
      frameBytesMax,
      ...(secure && {
        connector: tcpConnector(frameBytesMax, {
          ...(tls !== undefined && {
            sockets: tlsSockets(
              {
                ca: Buffer.from(tls.ca),
                ...(tls.cert !== undefined && { cert: Buffer.from(tls.cert) }),
                ...(tls.key !== undefined && { key: Buffer.from(tls.key) }),
              },
              { requireClientCert: false },
              tls.servername !== undefined ? { servername: tls.servername } : {},
            ),
          }),
          ...(opts.auth !== undefined && { auth: opts.auth }),
        }),
      }),
      connectTimeoutMs: Math.min(timeout, 2000),
      reconnect: { ...DEFAULT_RECONNECT, ...opts.reconnect },
      ...(opts.heartbeat !== undefined && { heartbeat: opts.heartbeat }),
    });
  }

  /**
   * connect fetches the store's partition map from the first server that answers, and
   * resolves with a client ready to route (UNAVAILABLE when none answered in time,
   * STORE_NOT_FOUND when the store does not exist).
   */
  static async connect(opts: DkvClientOptions): Promise<DkvClient> {
    const client = new DkvClient(opts);
    try {
      await client.fetchMap(performance.now() + client.requestTimeoutMs);
    } catch (err) {
      await client.close();
      throw err;
    }
    return client;
  }

  /**
   * inProc opens an embedded store: the same API in one process with no sockets, a single-node
   * store in a temporary directory, or persisted to `dir` (src/embedded.ts; enabled by the
   * package entry, 'dkv').
   */
  static async inProc(opts: InProcOptions = {}): Promise<DkvClient> {
    return embeddedFactory()(opts);
  }

  /** clientId is this client's session id (exactly-once mutations). */
  get clientId(): string {
    return this.session.clientId;
  }

  /**
   * requestIdOf is a call's request id: the caller's (checked: 1 to 64 printable ASCII
   * characters), else the next `<clientId>-<n>`.
   */
  private requestIdOf(opts: CallOptions): string {
    const given = opts.requestId;
    if (given === undefined) return `${this.clientId}-${++this.requestSeq}`;
    if (!isTraceId(given))
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `requestId must be 1 to ${TRACE_LENGTH_MAX} printable ASCII characters, got ${JSON.stringify(String(given).slice(0, 80))}`,
      );
    return given;
  }

  /** put writes a value and resolves with the key's new Item. */
  async put(key: string, value: unknown, opts: PutOptions = {}): Promise<Item> {
    checkKey(key);
    const cmd: Record<string, unknown> = { op: 'put', key, value };
    if (opts.ttlMs !== undefined) cmd.ttlMs = opts.ttlMs;
    // A user lease id names its group too (leases.ts); the server knows it by its index.
    if (opts.lease !== undefined) cmd.lease = await leaseForKey(this, key, opts.lease, callOptions(opts));
    if (opts.ifVersion !== undefined) cmd.ifVersion = opts.ifVersion;
    if (opts.ifAbsent !== undefined) cmd.ifAbsent = opts.ifAbsent;
    if (opts.fence !== undefined) cmd.fence = { lock: opts.fence.lock, token: opts.fence.token };
    if (opts.labels !== undefined) cmd.labels = opts.labels;
    return this.userItem((await this.mutate({ key }, cmd, callOptions(opts))) as Item);
  }

  /** delete removes a key; resolves with whether it existed. */
  async delete(key: string, opts: CallOptions = {}): Promise<boolean> {
    checkKey(key);
    return (await this.mutate({ key }, { op: 'delete', key }, callOptions(opts))) === true;
  }

  /** get reads a key's Item (undefined when absent); linearizable unless asked otherwise. */
  async get(key: string, opts: GetOptions = {}): Promise<Item | undefined> {
    checkKey(key);
    const consistency = opts.consistency ?? 'linearizable';
    if (consistency !== 'linearizable' && consistency !== 'serializable')
      throw new DkvError(ErrorCode.InvalidArgument, `consistency must be linearizable or serializable`);
    const value = await this.read({ key }, { op: 'get', key }, consistency, callOptions(opts));
    return value === null || value === undefined ? undefined : this.userItem(value as Item);
  }

  /**
   * userItem shows an item's lease by the id users know it by (leases.ts: the index in its
   * group, and the group), rather than the index alone that the server stores.
   */
  async userItem(item: Item): Promise<Item> {
    if (item.lease === undefined) return item;
    return { ...item, lease: leaseId(await this.groupOfKey(item.key), item.lease) };
  }

  /** scan streams the items of every group whose key matches, in key order. */
  scan(opts: ScanOptions = {}): AsyncIterable<GroupItem> {
    return scanItems(this, opts);
  }

  /** count counts the keys in a prefix or range, over every group. */
  count(opts: { prefix?: string; start?: string; end?: string } & CallOptions = {}): Promise<number> {
    return countKeys(this, opts);
  }

  /** defineIndexes declares the store's indexes (on every group; existing data is indexed). */
  defineIndexes(defs: Parameters<typeof defineIndexes>[1], opts: CallOptions = {}): Promise<void> {
    return defineIndexes(this, defs, opts) as Promise<void>;
  }

  /** query runs an index query across the store's groups. */
  query(query: unknown, opts: QueryOptions = {}): Promise<GroupItem[]> {
    return runQuery(this, query, opts);
  }

  /** queryStream streams a query's results (bounded memory). */
  queryStream(query: unknown, opts: QueryOptions = {}): AsyncIterable<GroupItem> {
    return streamQuery(this, query, opts);
  }

  /** queryCount counts a query's matches. */
  queryCount(query: unknown, opts: QueryOptions = {}): Promise<number> {
    return countQuery(this, query, opts);
  }

  /** txn runs a transaction within one group (the group of its keys). */
  txn(spec: TxnSpec, opts: CallOptions = {}): Promise<TxnResult> {
    return runTxn(this, spec, opts);
  }

  /** watch streams changes: a snapshot first if asked, then every event. */
  watch(opts: WatchOptions): WatchStream {
    return openWatch(this, opts);
  }

  /** counter names a counter. */
  counter(name: string): CounterHandle {
    return new CounterHandle(this, name);
  }

  /** lease grants leases (kept alive automatically). */
  readonly lease: LeaseApi = new LeaseApi(this);

  /** lock acquires locks with fencing tokens. */
  readonly lock: LockApi = new LockApi(this);

  /** admin manages stores and members (the control plane). */
  readonly admin: AdminApi = new AdminApi(this);

  /**
   * controlPlane runs one control-plane action (the `admin` op) on the metadata group's
   * leader: it goes where the last NOT_LEADER answer pointed, else to the servers in order,
   * until `timeoutMs` runs out. `client.admin` wraps it.
   */
  async controlPlane(
    action: string,
    args: Record<string, unknown>,
    opts: CallOptions = {},
  ): Promise<unknown> {
    const requestId = this.requestIdOf(opts);
    const deadline = performance.now() + (opts.timeoutMs ?? this.requestTimeoutMs);
    let lastError: DkvError | undefined;
    let pauses = 0;
    try {
      while (performance.now() < deadline) {
        const order = [...(this.metaLeader ? [this.metaLeader] : []), ...this.serverList()];
        for (const address of order) {
          if (this.closed) throw new DkvError(ErrorCode.Cancelled, 'client closed');
          opts.signal?.throwIfAborted();
          const remaining = deadline - performance.now();
          if (remaining <= 0) break;
          try {
            const conn = await this.endpoints.connection(address);
            const out = await conn.call(
              'admin',
              { ...args, action },
              { timeoutMs: remaining, trace: requestId },
            );
            this.metaLeader = address;
            return out;
          } catch (err) {
            const e = toDkvError(err);
            if (!isRetryable(e.code)) throw e;
            lastError = e;
            const hint = (e.details as { address?: unknown } | undefined)?.address;
            if (e.code === ErrorCode.NotLeader && typeof hint === 'string' && hint !== address) {
              this.metaLeader = hint;
              break; // go to the leader at once
            }
            if (address === this.metaLeader) this.metaLeader = undefined;
          }
        }
        const ms = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** pauses++);
        await sleep(Math.max(0, Math.min(ms, deadline - performance.now())));
      }
      throw lastError ?? new DkvError(ErrorCode.Unavailable, `no server completed ${action} in time`);
    } catch (err) {
      throw withRequestId(err, requestId);
    }
  }

  /** status returns the cluster's members and groups as the first server that answers sees them. */
  async status(): Promise<ClusterStatus> {
    const requestId = this.requestIdOf({});
    return (await this.anyServer(
      'status',
      {},
      performance.now() + this.requestTimeoutMs,
      requestId,
    )) as ClusterStatus;
  }

  /** close drops every connection; calls in progress fail with CANCELLED. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    await this.endpoints.close();
  }

  // ---- the request loop ----

  /**
   * mutate proposes one command (commands.ts) to the group of `route`, exactly once: the
   * session seq is kept across retries. For the client's own modules (leases, locks, ...).
   */
  mutate(route: Route, cmd: Record<string, unknown>, opts: MutateOptions = {}): Promise<unknown> {
    // A request that may wait long (a queued lock acquire) gets a session of its own: in the
    // client's session it would hold `ack` down, and the group keeps every later answer until
    // `ack` passes it (at most 1024, then OVERLOADED).
    const session = opts.ownSession ? new ClientSession(randomClientId()) : this.session;
    const seq = session.begin();
    const args = { store: this.store, ...route, cmd };
    return this.routed(route, 'cmd', args, 'leader', { session, seq }, opts).finally(() =>
      session.finish(seq),
    );
  }

  /** read runs a read on the group of `route`: on its leader (linearizable) or any replica. */
  read(route: Route, read: ReadRequest, consistency: Consistency, opts: CallOptions = {}): Promise<unknown> {
    const args = { store: this.store, ...route, read, consistency };
    return this.routed(
      route,
      'read',
      args,
      consistency === 'linearizable' ? 'leader' : 'local',
      undefined,
      opts,
    );
  }

  /** groups lists the store's partition groups (the map is fetched when not known yet). */
  async groups(opts: CallOptions = {}): Promise<readonly GroupInfo[]> {
    const routes = await this.currentRoutes(performance.now() + (opts.timeoutMs ?? this.requestTimeoutMs));
    return routes.map.groups;
  }

  /** groupOfKey is the id of the group that owns `key`. */
  async groupOfKey(key: string, opts: CallOptions = {}): Promise<number> {
    const routes = await this.currentRoutes(performance.now() + (opts.timeoutMs ?? this.requestTimeoutMs));
    const g = routes.groupOf(key);
    if (!g) throw new DkvError(ErrorCode.Unavailable, `the partition map has no group for key ${key}`);
    return g.id;
  }

  /**
   * openStream opens a stream op (`watch`, `keepalive`) on a replica of `group` (its leader
   * when `target` is 'leader'), trying replicas until one accepts or the deadline passes.
   * Errors on the stream later (NOT_LEADER, a dropped connection) are the caller's to handle,
   * typically by opening it again.
   */
  async openStream(
    group: number,
    op: 'watch' | 'keepalive',
    args: Record<string, unknown>,
    target: Target,
    opts: CallOptions & { bufferMax?: number } = {},
  ): Promise<ClientStream> {
    const requestId = this.requestIdOf(opts);
    try {
      return await this.openStreamAttempts(group, op, args, target, opts, requestId);
    } catch (err) {
      throw withRequestId(err, requestId);
    }
  }

  private async openStreamAttempts(
    group: number,
    op: 'watch' | 'keepalive',
    args: Record<string, unknown>,
    target: Target,
    opts: CallOptions & { bufferMax?: number },
    requestId: string,
  ): Promise<ClientStream> {
    const deadline = performance.now() + (opts.timeoutMs ?? this.requestTimeoutMs);
    let lastError: DkvError | undefined;
    const failed = new Set<string>();
    while (performance.now() < deadline) {
      if (this.closed) throw new DkvError(ErrorCode.Cancelled, 'client closed');
      if (opts.signal?.aborted) throw aborted(opts.signal);
      const routes = await this.currentRoutes(deadline);
      const info = routes.group(group);
      if (!info) throw new DkvError(ErrorCode.InvalidArgument, `store ${this.store} has no group ${group}`);
      const address = this.pick(routes, info, target, failed);
      if (address === undefined) {
        failed.clear();
        this.refreshMapSoon();
        await sleep(Math.min(RETRY_MAX_MS, Math.max(0, deadline - performance.now())));
        continue;
      }
      try {
        const conn = await this.endpoints.connection(address);
        const stream = conn.stream(
          op,
          { store: this.store, group, ...args },
          {
            ...(opts.signal && { signal: opts.signal }),
            ...(opts.bufferMax !== undefined && { bufferMax: opts.bufferMax }),
            trace: requestId,
          },
        );
        return stream;
      } catch (err) {
        lastError = toDkvError(err);
        if (!isRetryable(lastError.code)) throw lastError;
        failed.add(address);
      }
    }
    throw (
      lastError ??
      new DkvError(ErrorCode.Unavailable, `no replica of group ${group} accepted the ${op} stream in time`)
    );
  }

  /** noteLeader records a NOT_LEADER hint learned outside the request loop (streams). */
  noteRedirect(group: number, err: DkvError): void {
    const routes = this.routes;
    if (!routes) return;
    const hint = leaderHintOf(err, routes);
    routes.noteLeader(group, hint ?? 0);
    if (hint === undefined) this.refreshMapSoon();
  }

  /**
   * routed sends `op` for `key` to the right replica of its group, following redirects and
   * retrying until the deadline. `seq` is the mutation's session seq (undefined for reads).
   * Every attempt carries the call's request id; an error thrown carries it in its details.
   */
  private async routed(
    route: Route,
    op: 'cmd' | 'read',
    args: Record<string, unknown>,
    target: Target,
    tag: { session: ClientSession; seq: number } | undefined,
    opts: CallOptions,
  ): Promise<unknown> {
    const requestId = this.requestIdOf(opts);
    try {
      return await this.attempts(route, op, args, target, tag, opts, requestId);
    } catch (err) {
      throw withRequestId(err, requestId);
    }
  }

  /** attempts is routed's loop: one logical call, each attempt with the same request id. */
  private async attempts(
    route: Route,
    op: 'cmd' | 'read',
    args: Record<string, unknown>,
    target: Target,
    tag: { session: ClientSession; seq: number } | undefined,
    opts: CallOptions,
    requestId: string,
  ): Promise<unknown> {
    const seq = tag?.seq;
    const budget = opts.timeoutMs ?? this.requestTimeoutMs;
    const deadline = performance.now() + budget;
    const signal = opts.signal;
    let ambiguous = false;
    let lastError: DkvError | undefined;
    let pauses = 0;
    /** Redirects followed: every few, pause (leaders pointing at each other during a change). */
    let hops = 0;
    /** Replicas that failed this request since the last pause (skipped unless all did). */
    const failed = new Set<string>();
    const pause = async (): Promise<void> => {
      const ms = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** pauses++) * (0.75 + 0.5 * Math.random());
      await sleep(Math.max(0, Math.min(ms, deadline - performance.now())));
      failed.clear();
    };
    while (performance.now() < deadline) {
      if (this.closed) throw new DkvError(ErrorCode.Cancelled, 'client closed');
      if (signal?.aborted) throw aborted(signal);
      let routes: Routes;
      try {
        routes = await this.currentRoutes(deadline);
      } catch (err) {
        const e = toDkvError(err);
        if (!isRetryable(e.code)) throw e;
        lastError = e;
        await pause();
        continue;
      }
      const group = 'key' in route ? routes.groupOf(route.key) : routes.group(route.group);
      if (group === undefined && !('key' in route))
        throw new DkvError(ErrorCode.InvalidArgument, `store ${this.store} has no group ${route.group}`);
      if (group === undefined) {
        lastError = new DkvError(ErrorCode.Unavailable, `the partition map has no group for this request`);
        this.refreshMapSoon();
        await pause();
        continue;
      }
      const address = this.pick(routes, group, target, failed);
      if (address === undefined) {
        lastError ??= new DkvError(ErrorCode.Unavailable, `no replica of group ${group.id} is reachable`);
        await pause();
        continue;
      }
      let conn: Connection;
      try {
        conn = await this.endpoints.connection(address);
      } catch (err) {
        lastError = toDkvError(err);
        if (lastError.code === ErrorCode.Cancelled) throw lastError;
        failed.add(address);
        if (routes.leaderOf(group.id) === routes.memberAt(address)) routes.noteLeader(group.id, 0);
        continue;
      }
      const remaining = deadline - performance.now();
      // An attempt with almost no time left would only turn a known failure into TIMEOUT.
      if (remaining < LAST_ATTEMPT_MIN_MS) break;
      const timeoutMs = Math.max(1, Math.min(remaining, Math.max(ATTEMPT_TIMEOUT_MIN_MS, budget / 2)));
      const wire: Record<string, unknown> = { ...args, epoch: routes.map.epoch };
      if (tag !== undefined) wire.session = tag.session.tag(tag.seq);
      try {
        return await conn.call(op, wire, { timeoutMs, trace: requestId, ...(signal && { signal }) });
      } catch (err) {
        const e = toDkvError(err);
        lastError = e;
        switch (e.code) {
          case ErrorCode.NotLeader: {
            const hint = leaderHintOf(e, routes);
            const asked = routes.memberAt(address);
            if (hint !== undefined && hint !== 0 && hint !== asked && routes.addressOf(hint) !== undefined) {
              routes.noteLeader(group.id, hint);
              if (++hops % 4 === 0) await pause();
            } else {
              routes.noteLeader(group.id, 0);
              failed.add(address);
              this.refreshMapSoon();
              if (this.allFailed(routes, group, failed)) await pause();
            }
            continue;
          }
          case ErrorCode.WrongGroup:
            await this.fetchMap(deadline).catch(() => undefined);
            continue;
          case ErrorCode.Timeout:
            ambiguous ||= seq !== undefined;
            failed.add(address);
            if (conn.closed) {
              this.endpoints.markDown(address);
              routes.noteLeader(group.id, 0);
              this.refreshMapSoon();
            } else {
              this.endpoints.suspect(address); // a ping now: is the connection hung?
            }
            continue;
          case ErrorCode.Unavailable:
            failed.add(address);
            if (conn.closed) this.endpoints.markDown(address);
            routes.noteLeader(group.id, 0);
            this.refreshMapSoon();
            if (this.allFailed(routes, group, failed)) await pause();
            continue;
          case ErrorCode.Overloaded:
            if (!this.retryOverloaded) throw e;
            await pause();
            continue;
          case ErrorCode.Cancelled:
            if (this.closed) throw e;
            if (signal?.aborted) throw aborted(signal);
            continue;
          default:
            throw e;
        }
      }
    }
    if (ambiguous)
      throw new DkvError(
        ErrorCode.Timeout,
        `no answer within ${budget} ms; the outcome is unknown (last: ${lastError?.message ?? 'none'})`,
      );
    // Redirects are the client's to handle (CONTRACT.md): running out of time on them means
    // no leader was reachable.
    if (
      lastError !== undefined &&
      (lastError.code === ErrorCode.NotLeader || lastError.code === ErrorCode.WrongGroup)
    )
      throw new DkvError(
        ErrorCode.Unavailable,
        `no leader reachable within ${budget} ms (last: ${lastError.message})`,
        {},
        { cause: lastError },
      );
    throw lastError ?? new DkvError(ErrorCode.Timeout, `no answer within ${budget} ms`);
  }

  /** pick chooses the server for one attempt, or undefined when every candidate failed or is down. */
  private pick(
    routes: Routes,
    group: GroupInfo,
    target: Target,
    failed: ReadonlySet<string>,
  ): string | undefined {
    const usable = (a: string | undefined): a is string =>
      a !== undefined && !failed.has(a) && !this.endpoints.isDown(a);
    if (target === 'leader') {
      const leader = routes.leaderOf(group.id);
      const a = leader === 0 ? undefined : routes.addressOf(leader);
      if (usable(a)) return a;
    }
    for (const c of this.candidates(routes, group)) if (usable(c)) return c;
    return undefined;
  }

  /** candidates lists a group's replicas: those in the `servers` order first, then the rest. */
  private candidates(routes: Routes, group: GroupInfo): string[] {
    const replicas = group.replicas.map((id) => routes.addressOf(id)).filter((a) => a !== undefined);
    if (replicas.length === 0) return [...this.servers];
    const inOrder = this.servers.filter((s) => replicas.includes(s));
    return [...inOrder, ...replicas.filter((a) => !inOrder.includes(a))];
  }

  private allFailed(routes: Routes, group: GroupInfo, failed: ReadonlySet<string>): boolean {
    return this.candidates(routes, group).every((a) => failed.has(a) || this.endpoints.isDown(a));
  }

  /**
   * anyServer sends a request that any server can answer, trying them in order until the
   * deadline, each attempt with `requestId`; an error thrown carries it.
   */
  private async anyServer(op: string, args: unknown, deadline: number, requestId: string): Promise<unknown> {
    try {
      return await this.anyServerAttempts(op, args, deadline, requestId);
    } catch (err) {
      throw withRequestId(err, requestId);
    }
  }

  private async anyServerAttempts(
    op: string,
    args: unknown,
    deadline: number,
    requestId: string,
  ): Promise<unknown> {
    let lastError: DkvError | undefined;
    let pauses = 0;
    while (performance.now() < deadline) {
      for (const address of this.serverList()) {
        if (this.closed) throw new DkvError(ErrorCode.Cancelled, 'client closed');
        if (this.endpoints.isDown(address)) continue;
        const remaining = deadline - performance.now();
        if (remaining <= 0) break;
        try {
          const conn = await this.endpoints.connection(address);
          // One attempt may not eat the whole budget: a slow or hung server is left for the next.
          const timeoutMs = Math.max(1, Math.min(remaining, Math.max(ATTEMPT_TIMEOUT_MIN_MS, remaining / 2)));
          return await conn.call(op, args, { timeoutMs, trace: requestId });
        } catch (err) {
          const e = toDkvError(err);
          if (!isRetryable(e.code)) throw e;
          lastError = e;
          if (e.code === ErrorCode.Unavailable) this.endpoints.markDown(address);
        }
      }
      const ms = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** pauses++);
      await sleep(Math.max(0, Math.min(ms, deadline - performance.now())));
    }
    throw lastError ?? new DkvError(ErrorCode.Unavailable, `no server answered ${op} in time`);
  }

  /** serverList is the configured servers, then the members the map names besides. */
  private serverList(): string[] {
    const out = [...this.servers];
    for (const m of this.routes?.map.members ?? []) if (!out.includes(m.address)) out.push(m.address);
    return out;
  }

  // ---- the partition map ----

  private currentRoutes(deadline: number): Promise<Routes> {
    if (this.routes !== undefined) return Promise.resolve(this.routes);
    return this.fetchMap(deadline);
  }

  /** fetchMap fetches the store's map (one fetch at a time; concurrent callers share it). */
  private fetchMap(deadline: number): Promise<Routes> {
    if (this.mapFetch !== undefined) return this.mapFetch;
    this.lastMapFetchAt = performance.now();
    const fetch = this.fetchMapNow(deadline).finally(() => {
      if (this.mapFetch === fetch) this.mapFetch = undefined;
    });
    this.mapFetch = fetch;
    return fetch;
  }

  private async fetchMapNow(deadline: number): Promise<Routes> {
    const raw = await this.anyServer('map', { store: this.store }, deadline, this.requestIdOf({}));
    const routes = new Routes(checkPartitionMap(raw));
    if (routes.map.store !== this.store)
      throw new DkvError(
        ErrorCode.Unavailable,
        `asked for the map of ${this.store}, got ${routes.map.store}`,
      );
    this.routes = routes;
    return routes;
  }

  /** refreshMapSoon fetches a new map in the background, at most every MAP_REFRESH_MIN_MS. */
  private refreshMapSoon(): void {
    if (this.mapFetch !== undefined || this.closed) return;
    if (performance.now() - this.lastMapFetchAt < MAP_REFRESH_MIN_MS) return;
    this.fetchMap(performance.now() + this.requestTimeoutMs).catch(() => undefined);
  }
}

/** isRetryable tells whether a failure may pass by itself (redirects, overload, no quorum). */
function isRetryable(code: ErrorCode): boolean {
  return (
    code === ErrorCode.NotLeader ||
    code === ErrorCode.WrongGroup ||
    code === ErrorCode.Unavailable ||
    code === ErrorCode.Overloaded ||
    code === ErrorCode.Timeout
  );
}

/** leaderHintOf reads a NOT_LEADER answer's leader member id, if it names one. */
function leaderHintOf(e: DkvError, routes: Routes): number | undefined {
  const d = e.details as Record<string, unknown>;
  for (const k of ['leaderHint', 'leader']) {
    const v = d[k];
    if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) return v;
  }
  return typeof d.address === 'string' ? routes.memberAt(d.address) : undefined;
}

function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0)
    throw new DkvError(ErrorCode.InvalidArgument, 'key must be a non-empty string');
}
