/**
 * Locks with fencing (CONTRACT.md `client.lock.acquire(name, { ttlMs, waitMs })`; DESIGN.md
 * "Locks and fencing").
 *
 * A lock named N lives in the group of key N. Acquiring it first tries, in one entry,
 * `lock.acquire {name, ttlMs, waitMs: 0}`: the server grants the lock's lease and the lock
 * together when the lock is free (and leaves no lease behind when it is not). That is the
 * whole acquire for a free lock. Otherwise (and for a lock found taken in the last
 * CONTENDED_MS, whose acquires skip the try):
 * 1. grants a lease of `ttlMs` in that group (LeaseApi.grant with `key: N`) and keeps it
 *    alive (the keep-alive stream, see leases.ts);
 * 2. proposes `lock.acquire {name, lease, waitMs}`: free, it is granted at once; held, the
 *    request queues FIFO on the server, which answers when it is granted (the holder
 *    released it, or the holder's lease ended) or when `waitMs` ran out. The call's timeout
 *    is `waitMs + requestTimeoutMs` (no waitMs: wait until granted, bounded only by the
 *    call's `timeoutMs` and `signal`). A retry after a lost answer is the same session
 *    request, so it is answered from the server's session table, never queued twice.
 *
 * The fencing token is the log index of the entry that granted the lock: it strictly
 * increases per lock. A lock not acquired within `waitMs` (including try mode, `waitMs: 0`,
 * on a held lock) is a DkvError TIMEOUT ("not acquired within waitMs"); whatever the
 * failure, the lease granted for the attempt is revoked, so a grant that raced with the
 * failure is released at once.
 *
 * Holding: `lock.signal` is the lease's signal: it fires when the lease is at risk (no
 * renewal confirmed for a while), lost, or given up, before the server can expire it. From
 * then on the holder must stop acting on the lock. `lock.validUntil` is the lease's
 * conservative local deadline. Someone releasing the lock with its token from elsewhere
 * (`dkv lock release`) does not fire the signal; fenced writes catch that case.
 *
 * Fencing: `lock.fence` (`{ lock, token }`) passed to a mutation (`put(k, v, { fence })`)
 * makes the store refuse it atomically with STALE_FENCE once the token is no longer the
 * lock's current one, or its holder's lease is past its deadline. The fence is checked in
 * the group of the written key, so the key must share the lock's group: name them with one
 * hash tag (lock `{job42}`, keys `{job42}/out`). For resources outside the store, FenceGuard
 * (fence.ts) applies the same rule at the resource.
 *
 * Release: `lock.release {name, token}`, then revoke the lease. Idempotent. It fails with
 * NOT_OWNER when the token was no longer current (the lease had ended and the lock moved on:
 * the holder learns its critical section may have overlapped another), after revoking.
 */
import { DkvError, ErrorCode } from '../errors.js';
import type { CallOptions, ClientCore } from './core.js';
import { type Lease, LeaseApi, type LeaseOptions, leaseId } from './leases.js';

/** DEFAULT_LOCK_TTL_MS is the TTL of a lock's lease unless acquire is told otherwise. */
export const DEFAULT_LOCK_TTL_MS = 10_000;
/** WAIT_FOREVER_TIMEOUT_MS bounds a wait with no waitMs and no timeoutMs (setTimeout's limit). */
const WAIT_FOREVER_TIMEOUT_MS = 2 ** 31 - 1;
/**
 * A lock found taken is acquired the two-entry way (grant, then a queued acquire) for this
 * long (ms) before the one-entry try is attempted again: under contention the try would only
 * add an entry.
 */
const CONTENDED_MS = 1000;
/** How many recently contended lock names an API remembers. */
const CONTENDED_NAMES_MAX = 1024;

/** Fence names a lock and a token its holder was granted. */
export interface Fence {
  readonly lock: string;
  readonly token: number;
}

/** AcquireOptions shape one acquire. */
export interface AcquireOptions extends CallOptions {
  /** The TTL of the lock's lease (default 10 000 ms; at least 1000). */
  readonly ttlMs?: number;
  /** How long to wait in the queue (0: only try); default until granted. */
  readonly waitMs?: number;
  /** Keep-alive tuning of the lock's lease (leases.ts). */
  readonly lease?: Omit<LeaseOptions, 'keepAlive'>;
}

/** LockInfo is a lock as the server describes it (lease ids as users see them; times on the replicated clock). */
export interface LockInfo {
  readonly name: string;
  readonly holder?: {
    readonly lease: number;
    readonly token: number;
    /** since is the replicated time (ms) at which it was granted. */
    readonly since: number;
    readonly heldMs: number;
  };
  readonly waiters: readonly {
    readonly lease: number;
    readonly since: number;
    readonly waitDeadline?: number;
  }[];
  /** lastToken is the last token granted (0: none that the server remembers). */
  readonly lastToken: number;
}

function callOpts(o: CallOptions): CallOptions {
  return {
    ...(o.timeoutMs !== undefined && { timeoutMs: o.timeoutMs }),
    ...(o.signal !== undefined && { signal: o.signal }),
  };
}

function checkName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0)
    throw new DkvError(ErrorCode.InvalidArgument, 'a lock name must be a non-empty string');
  return name;
}

/** Lock is a held lock. */
export class Lock {
  readonly name: string;
  /** token is the fencing token: the grant's log index, strictly increasing per lock. */
  readonly token: number;
  /** lease is the lease the lock is held through (kept alive while the lock is held). */
  readonly lease: Lease;
  /** fence is what to pass to fenced mutations: `put(k, v, { fence: lock.fence })`. */
  readonly fence: Fence;
  private releasing: Promise<void> | undefined;

  /** Use LockApi.acquire. */
  constructor(name: string, token: number, lease: Lease) {
    this.name = name;
    this.token = token;
    this.lease = lease;
    this.fence = Object.freeze({ lock: name, token });
  }

  /** signal fires when the lock can no longer be relied on (its lease is at risk, lost or given up). */
  get signal(): AbortSignal {
    return this.lease.signal;
  }

  /** validUntil is the conservative local deadline (Date.now() ms) of the lock's lease. */
  get validUntil(): number {
    return this.lease.validUntil;
  }

  /**
   * release frees the lock (handing it to the next waiter) and revokes its lease. Idempotent.
   * NOT_OWNER when the token was no longer current (the lease is revoked all the same).
   */
  release(opts: CallOptions = {}): Promise<void> {
    this.releasing ??= this.releaseOnce(opts);
    return this.releasing;
  }

  toJSON(): { name: string; token: number; lease: number; validUntil: number } {
    return { name: this.name, token: this.token, lease: this.lease.id, validUntil: this.validUntil };
  }

  /**
   * One entry: the lease is revoked and, with it, the lock released (lease.revoke with the
   * lock named, which also says whether this token still held it). On a failure the
   * keep-alives have stopped all the same: the lease, and the lock, end within its TTL.
   */
  private async releaseOnce(opts: CallOptions): Promise<void> {
    const released = await this.lease.revokeReleasing({ name: this.name, token: this.token }, callOpts(opts));
    if (!released) {
      throw new DkvError(
        ErrorCode.NotOwner,
        `token ${this.token} no longer held lock ${JSON.stringify(this.name)} (its lease had ended or the lock was taken over); the lease is revoked`,
      );
    }
  }
}

/** LockApi acquires and releases locks: `client.lock`. */
export class LockApi {
  private readonly leases: LeaseApi;
  /** Locks recently found taken, by name (monotonic ms): their acquires skip the try. */
  private readonly contendedAt = new Map<string, number>();

  constructor(
    readonly core: ClientCore,
    leases?: LeaseApi,
  ) {
    this.leases = leases ?? new LeaseApi(core);
  }

  /**
   * acquire takes lock `name`, waiting up to `waitMs` (default: until granted, or the call's
   * timeoutMs or signal). TIMEOUT when it was not acquired within waitMs.
   */
  async acquire(name: string, opts: AcquireOptions = {}): Promise<Lock> {
    checkName(name);
    const ttlMs = opts.ttlMs ?? DEFAULT_LOCK_TTL_MS;
    const waitMs = opts.waitMs;
    if (waitMs !== undefined && (!Number.isSafeInteger(waitMs) || waitMs < 0))
      throw new DkvError(ErrorCode.InvalidArgument, `waitMs must be a non-negative integer, got ${waitMs}`);
    const leaseOpts = { ...opts.lease, keepAlive: true };
    this.leases.checkGrant(ttlMs, leaseOpts);
    const seen = this.contendedAt.get(name);
    if (waitMs === 0 || seen === undefined || this.leases.clock.monotonicMs() - seen > CONTENDED_MS) {
      const got = await this.tryWithOwnLease(name, ttlMs, leaseOpts, opts);
      if (got !== undefined) return got;
      if (waitMs === 0)
        throw new DkvError(
          ErrorCode.Timeout,
          `lock ${JSON.stringify(name)} is held by another (not acquired: waitMs 0, try mode)`,
        );
      this.noteContended(name);
    }
    const lease = await this.leases.grant(ttlMs, {
      ...opts.lease,
      key: name,
      keepAlive: true,
      ...callOpts(opts),
    });
    try {
      const timeoutMs =
        opts.timeoutMs ??
        (waitMs === undefined
          ? WAIT_FOREVER_TIMEOUT_MS
          : Math.min(WAIT_FOREVER_TIMEOUT_MS, waitMs + this.core.requestTimeoutMs));
      const r = (await this.core.mutate(
        { key: name },
        { op: 'lock.acquire', name, lease: lease.wireId, ...(waitMs !== undefined && { waitMs }) },
        // Its own session: a long wait must not hold back the client's other requests (core.ts).
        { timeoutMs, ownSession: true, ...(opts.signal !== undefined && { signal: opts.signal }) },
      )) as { acquired?: unknown; token?: unknown };
      if (r?.acquired === true && typeof r.token === 'number') return new Lock(name, r.token, lease);
      throw new DkvError(
        ErrorCode.Timeout,
        waitMs === 0
          ? `lock ${JSON.stringify(name)} is held by another (not acquired: waitMs 0, try mode)`
          : `lock ${JSON.stringify(name)} not acquired within waitMs (${waitMs} ms)`,
      );
    } catch (err) {
      await lease.revoke().catch(() => lease.close());
      throw err;
    }
  }

  /**
   * tryWithOwnLease is the one-entry try: `lock.acquire {name, ttlMs, waitMs: 0}` grants the
   * lock's lease in the same entry. Undefined when the lock is taken (no lease is left behind).
   */
  private async tryWithOwnLease(
    name: string,
    ttlMs: number,
    leaseOpts: LeaseOptions,
    opts: AcquireOptions,
  ): Promise<Lock | undefined> {
    const group = await this.core.groupOfKey(name, callOpts(opts));
    const sentAt = this.leases.clock.monotonicMs();
    const r = (await this.core.mutate(
      { key: name },
      { op: 'lock.acquire', name, ttlMs, waitMs: 0 },
      callOpts(opts),
    )) as { acquired?: unknown; token?: unknown; lease?: unknown; ttlMs?: unknown } | null;
    if (r?.acquired !== true) return undefined;
    if (typeof r.token !== 'number' || typeof r.lease !== 'number' || typeof r.ttlMs !== 'number')
      throw new DkvError(ErrorCode.Unavailable, 'unexpected lock.acquire answer');
    this.contendedAt.delete(name);
    return new Lock(name, r.token, this.leases.adoptGranted(group, r.lease, r.ttlMs, sentAt, leaseOpts));
  }

  /** noteContended remembers that lock `name` was taken just now (bounded: oldest forgotten first). */
  private noteContended(name: string): void {
    this.contendedAt.delete(name);
    if (this.contendedAt.size >= CONTENDED_NAMES_MAX) {
      const oldest = this.contendedAt.keys().next().value;
      if (oldest !== undefined) this.contendedAt.delete(oldest);
    }
    this.contendedAt.set(name, this.leases.clock.monotonicMs());
  }

  /** release frees lock `name` if `token` is its current holder's (NOT_OWNER otherwise). */
  async release(name: string, token: number, opts: CallOptions = {}): Promise<void> {
    checkName(name);
    if (!Number.isSafeInteger(token) || token < 1)
      throw new DkvError(ErrorCode.InvalidArgument, `a token must be a positive integer, got ${token}`);
    await this.core.mutate({ key: name }, { op: 'lock.release', name, token }, callOpts(opts));
  }

  /** describe reads lock `name` from the server: its holder, waiters and last token. */
  async describe(name: string, opts: CallOptions = {}): Promise<LockInfo> {
    checkName(name);
    const group = await this.core.groupOfKey(name, callOpts(opts));
    const r = (await this.core.read(
      { key: name },
      { op: 'lock.describe', name },
      'linearizable',
      callOpts(opts),
    )) as {
      name: string;
      holder?: { lease: number; token: number; since: number; heldMs: number };
      waiters: { lease: number; since: number; waitDeadline?: number }[];
      lastToken: number;
    };
    const h = r.holder;
    return {
      name: r.name,
      ...(h !== undefined && {
        holder: { lease: leaseId(group, h.lease), token: h.token, since: h.since, heldMs: h.heldMs },
      }),
      waiters: r.waiters.map((w) => ({
        lease: leaseId(group, w.lease),
        since: w.since,
        ...(w.waitDeadline !== undefined && { waitDeadline: w.waitDeadline }),
      })),
      lastToken: r.lastToken,
    };
  }
}
