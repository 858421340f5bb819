/**
 * Leases (CONTRACT.md `client.lease.grant(ttlMs)`; DESIGN.md "Time, TTL and leases"): grant,
 * an automatic keep-alive loop, a conservative local `validUntil`, and an AbortSignal that
 * fires before the server can expire the lease.
 *
 * **One group per lease.** A lease lives in the state machine of one partition group (its
 * server id is the log index of the entry that granted it in that group). It is granted in
 * the group of `key` when given, else in `group`, else in a group picked at random among the
 * store's groups (spreading leases over the groups). Keys bound to a lease (`put(key, v,
 * {lease})`) and locks held through it must live in the lease's group: grant it with
 * `{ key }` naming a key of that group, and use a hash tag (`{job42}/a`, `{job42}/b`) to keep
 * several keys together. A put with a lease of another group fails with CROSS_GROUP
 * (checked by the client: see `leaseForKey`).
 *
 * **Ids.** The id users see names the group too: `id = index * LEASE_GROUP_SPAN + group`
 * with LEASE_GROUP_SPAN = 4096, so `group = id % 4096` and `index = floor(id / 4096)`. Ids
 * stay safe integers for indexes up to 2^41 (2.2e12 entries per group) and need group ids
 * below 4096. `leaseId` and `leaseWireId` translate; every call to the server sends the
 * group's own index.
 *
 * **validUntil** (local clock) is never later than the server's deadline, assuming the
 * clocks involved (this process's monotonic clock, the leaders' wall clocks) run at rates
 * within `driftRate` (default 0.2%) of each other and the nodes' wall clocks do not step. The
 * server sets a renewed deadline to (the leader's clock when it proposed the renewal) + ttl,
 * and the lease ends when a leader's clock reaches it, so a lower bound `renewedAt` on when
 * the renewal was proposed, in local time, gives:
 *
 *     validUntil = renewedAt + ttlMs * (1 - driftRate) - clockMarginMs
 *
 * - grant and `keepAlive()` (a request from here): renewedAt = the local time the request was
 *   first sent (the entry commits after that);
 * - a renewal on the node's `keepalive` stream: the node proposes it after the stream was
 *   opened at local time O, and the leader's clock moved T - T1 between the stream's first
 *   renewal (T1) and this one (T), each T being the item's `deadline - ttlMs`; so
 *   renewedAt = O + (T - T1) * (1 - driftRate). The error of that bound grows with T - T1,
 *   so the stream is reopened (re-anchored) once T - T1 passes 4 TTLs.
 *
 * `clockMarginMs` (default 20 ms) covers timer granularity and small offsets between the
 * nodes' clocks (a new leader whose clock is ahead expires leases that much early).
 *
 * **The signal** fires (once, and stays fired) when the lease is at risk: when the local
 * clock reaches `validUntil - atRiskMarginMs` (default a quarter of the TTL, that is, two
 * renewals in a row were not confirmed) with no newer renewal confirmed; when the lease is
 * gone (LEASE_NOT_FOUND); or when this handle stops keeping it alive (close, revoke, the
 * client closed). Its `reason` is a DkvError saying which. Keep-alives go on after an
 * at-risk signal, so `validUntil` may move on again; the signal does not un-fire.
 *
 * **The keep-alive loop** holds one `keepalive` stream open on the group's leader (the node
 * renews every `intervalMs`, default a quarter of the TTL, batching all leases of the group
 * into one replicated entry). It reopens the stream, with backoff, when it fails (NOT_LEADER:
 * after noting the leader hint; a dropped connection), and when no renewal arrived for
 * 1.5 intervals + 250 ms (a hung connection or node). It ends on LEASE_NOT_FOUND, close(),
 * revoke() or the client's close.
 */
import { type Clock, systemClock } from '../clock.js';
import { DkvError, ErrorCode, isDkvError } from '../errors.js';
import { Backoff } from '../transport/backoff.js';
import type { CallOptions, ClientCore, ClientStream } from './core.js';

/** LEASE_GROUP_SPAN is the factor of the id encoding: id = index * LEASE_GROUP_SPAN + group. */
export const LEASE_GROUP_SPAN = 4096;
/** LEASE_INDEX_MAX is the largest group index an id can carry and stay a safe integer. */
export const LEASE_INDEX_MAX = Math.floor(
  (Number.MAX_SAFE_INTEGER - (LEASE_GROUP_SPAN - 1)) / LEASE_GROUP_SPAN,
);

/** DEFAULT_DRIFT_RATE bounds the relative rate error between this clock and the leaders'. */
const DEFAULT_DRIFT_RATE = 0.002;
const DEFAULT_CLOCK_MARGIN_MS = 20;
/** The node refuses keep-alive intervals shorter than this. */
const KEEPALIVE_INTERVAL_MIN_MS = 100;
/** A stream is re-anchored once the leader's clock moved this many TTLs since its first renewal. */
const REANCHOR_TTLS = 4;

/**
 * userLeaseItem shows an item's lease (the index its group's server stores) by the id users
 * know it by (leaseId). Items without a lease are returned as they are.
 */
export function userLeaseItem<T extends { readonly lease?: number }>(item: T, group: number): T {
  return item.lease === undefined ? item : { ...item, lease: leaseId(group, item.lease) };
}

/** leaseId builds the id users see from a group and the lease's index in that group. */
export function leaseId(group: number, index: number): number {
  if (!Number.isSafeInteger(group) || group < 1 || group >= LEASE_GROUP_SPAN)
    throw new DkvError(
      ErrorCode.Unsupported,
      `group ${group} cannot carry leases: lease ids encode groups 1..${LEASE_GROUP_SPAN - 1}`,
    );
  if (!Number.isSafeInteger(index) || index < 1 || index > LEASE_INDEX_MAX)
    throw new DkvError(
      ErrorCode.Unsupported,
      `lease index ${index} of group ${group} is beyond what a lease id can carry (${LEASE_INDEX_MAX})`,
    );
  return index * LEASE_GROUP_SPAN + group;
}

/** WireLease is a lease as the server names it: its group and its index in that group. */
export interface WireLease {
  readonly group: number;
  readonly lease: number;
}

/** leaseWireId splits a user lease id into its group and the index the server knows it by. */
export function leaseWireId(id: number): WireLease {
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 1)
    throw new DkvError(ErrorCode.InvalidArgument, `a lease id must be a positive integer, got ${String(id)}`);
  const group = id % LEASE_GROUP_SPAN;
  const lease = (id - group) / LEASE_GROUP_SPAN;
  if (group === 0 || lease < 1)
    throw new DkvError(ErrorCode.InvalidArgument, `${id} is not a lease id (no group or index in it)`);
  return { group, lease };
}

/**
 * leaseForKey checks that lease `id` lives in the group of `key` and returns the index to
 * send with a command on that key (a put or delete with `lease`); CROSS_GROUP otherwise.
 */
export async function leaseForKey(
  core: ClientCore,
  key: string,
  id: number,
  opts: CallOptions = {},
): Promise<number> {
  const wire = leaseWireId(id);
  const group = await core.groupOfKey(key, opts);
  if (group !== wire.group)
    throw new DkvError(
      ErrorCode.CrossGroup,
      `lease ${id} lives in group ${wire.group} but key ${JSON.stringify(key)} belongs to group ${group}; ` +
        "grant the lease with { key } in the key's group, and use a {hash tag} to keep its keys together",
    );
  return wire.lease;
}

/** LeaseOptions tune a lease handle's keep-alive and safety margins. */
export interface LeaseOptions {
  /** Keep the lease alive automatically (default true). */
  readonly keepAlive?: boolean;
  /** How often the node renews it (default ttl/4, at least 100 ms, below the TTL). */
  readonly intervalMs?: number;
  /** The signal fires this long before validUntil without a newer renewal (default ttl/4). */
  readonly atRiskMarginMs?: number;
  /** Relative clock rate error allowed for (default 0.002). */
  readonly driftRate?: number;
  /** Fixed safety margin subtracted from validUntil (default 20 ms). */
  readonly clockMarginMs?: number;
  /** Called after each confirmed renewal (stream or keepAlive()). */
  readonly onRenewal?: (lease: Lease) => void;
}

/** GrantOptions choose the lease's group and tune its handle. */
export interface GrantOptions extends LeaseOptions, CallOptions {
  /** Grant it in the group of this key (the keys and locks it will hold must share the group). */
  readonly key?: string;
  /** Or in this group. */
  readonly group?: number;
}

/** LeaseState is where a lease handle is in its life. */
export type LeaseState = 'active' | 'lost' | 'closed' | 'revoked';

/** LeaseTimeToLive is what the server says about a live lease. */
export interface LeaseTimeToLive {
  readonly id: number;
  readonly ttlMs: number;
  /** Time left on the server's replicated clock when it answered. */
  readonly remainingMs: number;
  /** Keys bound to it. */
  readonly keys: readonly string[];
}

interface KeepAliveResult {
  readonly id: number;
  readonly ok: boolean;
  readonly ttlMs?: number;
  readonly deadline?: number;
}

const mathRandom = {
  int: (n: number) => Math.floor(Math.random() * n),
  float: () => Math.random(),
};

function callOpts(o: CallOptions): CallOptions {
  return {
    ...(o.timeoutMs !== undefined && { timeoutMs: o.timeoutMs }),
    ...(o.signal !== undefined && { signal: o.signal }),
  };
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

function positiveInt(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1)
    throw new DkvError(ErrorCode.InvalidArgument, `${name} must be a positive integer, got ${String(v)}`);
  return v;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** leaseSettings checks a handle's options against its TTL and fills in the defaults. */
function leaseSettings(
  ttlMs: number,
  opts: LeaseOptions,
): Required<Omit<LeaseOptions, 'onRenewal' | 'keepAlive'>> {
  const interval = opts.intervalMs ?? Math.max(KEEPALIVE_INTERVAL_MIN_MS, Math.floor(ttlMs / 4));
  if (!Number.isSafeInteger(interval) || interval < KEEPALIVE_INTERVAL_MIN_MS || interval >= ttlMs)
    throw new DkvError(
      ErrorCode.InvalidArgument,
      `intervalMs must be an integer in [${KEEPALIVE_INTERVAL_MIN_MS}, ${ttlMs}) for a lease of ${ttlMs} ms, got ${interval}`,
    );
  const driftRate = opts.driftRate ?? DEFAULT_DRIFT_RATE;
  if (!(driftRate >= 0 && driftRate < 0.5))
    throw new DkvError(ErrorCode.InvalidArgument, `driftRate must be in [0, 0.5), got ${driftRate}`);
  const clockMarginMs = opts.clockMarginMs ?? DEFAULT_CLOCK_MARGIN_MS;
  const atRiskMarginMs = opts.atRiskMarginMs ?? Math.floor(ttlMs / 4);
  for (const [name, v] of [
    ['clockMarginMs', clockMarginMs],
    ['atRiskMarginMs', atRiskMarginMs],
  ] as const) {
    if (!(v >= 0) || !Number.isFinite(v) || v >= ttlMs)
      throw new DkvError(ErrorCode.InvalidArgument, `${name} must be in [0, ttlMs), got ${v}`);
  }
  return { intervalMs: interval, atRiskMarginMs, driftRate, clockMarginMs };
}

/**
 * Lease is a granted lease as this client holds it. `validUntil` and `signal` follow the
 * rules in the file comment.
 */
export class Lease {
  /** id is the lease's id (group and index encoded: see leaseId). */
  readonly id: number;
  /** group is the partition group the lease lives in. */
  readonly group: number;
  /** wireId is the lease's index in its group: what the server knows it by. */
  readonly wireId: number;
  readonly ttlMs: number;
  /** signal fires when the lease is at risk, lost, or no longer kept alive by this handle. */
  readonly signal: AbortSignal;

  private readonly core: ClientCore;
  private readonly clock: Clock;
  private readonly opts: Required<Omit<LeaseOptions, 'onRenewal' | 'keepAlive'>>;
  private readonly onRenewal: ((lease: Lease) => void) | undefined;
  private readonly signalCtl = new AbortController();
  /** Aborted when the keep-alive loop must stop. */
  private readonly stopCtl = new AbortController();
  /** Invariant: only ever moves forward while active; the monotonic-clock validUntil. */
  private validUntilMono: number;
  private riskTimer: ReturnType<typeof setTimeout> | undefined;
  private stream: ClientStream | undefined;
  private loop: Promise<void> | undefined;
  private revoking: Promise<boolean> | undefined;
  private stateNow: LeaseState = 'active';
  private renewalCount = 0;

  /** Use LeaseApi.grant or LeaseApi.attach. `renewedAt` is a lower bound (monotonic clock) on the last renewal. */
  constructor(
    core: ClientCore,
    group: number,
    wireId: number,
    ttlMs: number,
    renewedAt: number,
    opts: LeaseOptions = {},
    clock: Clock = systemClock,
  ) {
    this.core = core;
    this.clock = clock;
    this.group = group;
    this.wireId = wireId;
    this.id = leaseId(group, wireId);
    this.ttlMs = positiveInt('ttlMs', ttlMs);
    this.opts = leaseSettings(ttlMs, opts);
    this.onRenewal = opts.onRenewal;
    this.signal = this.signalCtl.signal;
    this.validUntilMono = Number.NEGATIVE_INFINITY;
    this.confirm(renewedAt, false);
  }

  /**
   * validUntil is the conservative local deadline, in Date.now() milliseconds: the lease is
   * certainly still held on the server before it. Prefer remainingMs() for comparisons (it
   * uses the monotonic clock, immune to wall-clock steps).
   */
  get validUntil(): number {
    return Math.round(this.validUntilMono + (this.clock.nowMs() - this.clock.monotonicMs()));
  }

  /** remainingMs is how long the lease is certainly still held (<= 0: no longer certain). */
  remainingMs(): number {
    return this.validUntilMono - this.clock.monotonicMs();
  }

  /** state says whether the handle is active, or why it stopped. */
  get state(): LeaseState {
    return this.stateNow;
  }

  /** renewals counts the renewals confirmed so far (the grant excluded). */
  get renewals(): number {
    return this.renewalCount;
  }

  /** keepAlive renews the lease once, now, and resolves with the new validUntil. */
  async keepAlive(opts: CallOptions = {}): Promise<number> {
    const sentAt = this.clock.monotonicMs();
    const out = await this.core.mutate(
      { group: this.group },
      { op: 'lease.keepAlive', ids: [this.wireId] },
      callOpts(opts),
    );
    const r = Array.isArray(out) ? (out[0] as KeepAliveResult | undefined) : undefined;
    if (r === undefined || r.id !== this.wireId)
      throw new DkvError(ErrorCode.Unavailable, `unexpected keep-alive answer for lease ${this.id}`);
    if (!r.ok) {
      const err = new DkvError(ErrorCode.LeaseNotFound, `lease ${this.id} is gone (expired or revoked)`);
      this.end('lost', err);
      throw err;
    }
    this.confirm(sentAt, true);
    return this.validUntil;
  }

  /**
   * revoke ends the lease on the server now (its keys are deleted, its locks released). A
   * lease already gone counts as revoked. Idempotent; after a failure it may be retried (the
   * keep-alives have stopped, so the lease ends within its TTL anyway).
   */
  revoke(opts: CallOptions = {}): Promise<void> {
    return this.revokeWith(undefined, opts).then(() => undefined);
  }

  /**
   * revokeReleasing revokes the lease and, in the same entry, releases lock `name` held
   * through it: true when `token` still held the lock (a lease already gone held nothing).
   * For Lock.release. Internal.
   */
  revokeReleasing(lock: { name: string; token: number }, opts: CallOptions = {}): Promise<boolean> {
    return this.revokeWith(lock, opts);
  }

  private revokeWith(lock: { name: string; token: number } | undefined, opts: CallOptions): Promise<boolean> {
    if (this.revoking) return this.revoking;
    const run = async (): Promise<boolean> => {
      this.stopKeepAlive();
      let released = false;
      try {
        const r = await this.core.mutate(
          { group: this.group },
          { op: 'lease.revoke', id: this.wireId, ...(lock !== undefined && { lock }) },
          callOpts(opts),
        );
        released = (r as { released?: unknown } | null)?.released === true;
      } catch (err) {
        if (!isDkvError(err, ErrorCode.LeaseNotFound)) {
          this.revoking = undefined;
          this.end(
            'closed',
            new DkvError(ErrorCode.Cancelled, `lease ${this.id}: keep-alive stopped (revoke failed)`),
          );
          throw err;
        }
      }
      this.end('revoked', new DkvError(ErrorCode.Cancelled, `lease ${this.id} was revoked`));
      return released;
    };
    this.revoking = run();
    return this.revoking;
  }

  /** close stops the keep-alives without revoking: the lease ends on the server within its TTL. */
  close(): void {
    this.stopKeepAlive();
    this.end('closed', new DkvError(ErrorCode.Cancelled, `lease ${this.id}: keep-alive stopped (closed)`));
  }

  /** startKeepAlive starts the automatic keep-alive loop (LeaseApi does, unless keepAlive: false). */
  startKeepAlive(): void {
    if (this.loop !== undefined || this.stateNow !== 'active') return;
    this.loop = this.keepAliveLoop().catch(() => undefined);
  }

  /** stopped resolves when the keep-alive loop has ended (at once if it never ran). */
  async stopped(): Promise<void> {
    await this.loop;
  }

  toJSON(): { id: number; group: number; ttlMs: number; validUntil: number; state: LeaseState } {
    return {
      id: this.id,
      group: this.group,
      ttlMs: this.ttlMs,
      validUntil: this.validUntil,
      state: this.stateNow,
    };
  }

  // ---- internals ----

  /** confirm records a renewal proposed no earlier than `renewedAt` (monotonic ms). */
  private confirm(renewedAt: number, renewal: boolean): void {
    if (this.stateNow !== 'active' && this.stateNow !== 'closed') return;
    const { driftRate, clockMarginMs } = this.opts;
    const until = renewedAt + this.ttlMs * (1 - driftRate) - clockMarginMs;
    if (until > this.validUntilMono) this.validUntilMono = until;
    if (renewal) this.renewalCount++;
    if (this.stateNow === 'active') this.armRiskTimer();
    if (renewal) this.onRenewal?.(this);
  }

  private armRiskTimer(): void {
    if (this.riskTimer !== undefined) clearTimeout(this.riskTimer);
    this.riskTimer = undefined;
    if (this.signal.aborted) return;
    const fireIn = this.validUntilMono - this.opts.atRiskMarginMs - this.clock.monotonicMs();
    if (fireIn <= 0) {
      this.fire(this.atRiskError());
      return;
    }
    this.riskTimer = setTimeout(() => {
      this.riskTimer = undefined;
      this.armRiskTimer();
    }, Math.ceil(fireIn));
    this.riskTimer.unref?.();
  }

  private atRiskError(): DkvError {
    return new DkvError(
      ErrorCode.Unavailable,
      `lease ${this.id} is at risk: no renewal confirmed, ${Math.max(0, Math.round(this.remainingMs()))} ms of certain validity left`,
    );
  }

  private fire(reason: DkvError): void {
    if (!this.signal.aborted) this.signalCtl.abort(reason);
  }

  /** end stops the handle for good (lost, closed, revoked) and fires the signal. */
  private end(state: LeaseState, reason: DkvError): void {
    this.stopKeepAlive();
    if (this.riskTimer !== undefined) clearTimeout(this.riskTimer);
    this.riskTimer = undefined;
    if (this.stateNow === 'active' || (this.stateNow === 'closed' && state === 'revoked'))
      this.stateNow = state;
    if (state === 'lost' || state === 'revoked')
      this.validUntilMono = Math.min(this.validUntilMono, this.clock.monotonicMs());
    this.fire(reason);
  }

  private stopKeepAlive(): void {
    if (!this.stopCtl.signal.aborted) this.stopCtl.abort();
    this.stream?.close();
    this.stream = undefined;
  }

  private async keepAliveLoop(): Promise<void> {
    const stop = this.stopCtl.signal;
    const { intervalMs } = this.opts;
    const backoff = new Backoff(
      {
        initialDelayMs: 25,
        maxDelayMs: Math.max(50, Math.min(1000, Math.floor(intervalMs / 2))),
        multiplier: 2,
        jitter: 0.2,
      },
      mathRandom,
    );
    const stallMs = Math.ceil(intervalMs * 1.5) + 250;
    const reanchorMs = this.ttlMs * REANCHOR_TTLS;
    while (!stop.aborted) {
      const openedAt = this.clock.monotonicMs();
      let stream: ClientStream;
      try {
        stream = await this.core.openStream(
          this.group,
          'keepalive',
          { lease: this.wireId, intervalMs },
          'leader',
          { signal: stop, bufferMax: 16 },
        );
      } catch (err) {
        if (stop.aborted) return;
        const e = toDkvError(err);
        if (e.code === ErrorCode.Cancelled) {
          this.end(
            'closed',
            new DkvError(ErrorCode.Cancelled, `lease ${this.id}: keep-alive stopped (${e.message})`),
          );
          return;
        }
        if (e.code === ErrorCode.InvalidArgument || REFUSED.has(e.code)) {
          this.end('lost', e);
          return;
        }
        await sleep(backoff.nextDelayMs(), stop);
        continue;
      }
      if (stop.aborted) {
        stream.close();
        return;
      }
      this.stream = stream;
      let first: number | undefined;
      let stalled = false;
      let reanchor = false;
      let watchdog: ReturnType<typeof setTimeout> | undefined;
      const arm = (): void => {
        if (watchdog !== undefined) clearTimeout(watchdog);
        watchdog = setTimeout(() => {
          stalled = true;
          stream.close();
        }, stallMs);
        watchdog.unref?.();
      };
      arm();
      let failure: DkvError | undefined;
      try {
        for await (const raw of stream) {
          const item = raw as { lease?: unknown; ttlMs?: unknown; deadline?: unknown };
          if (
            typeof item !== 'object' ||
            item === null ||
            item.lease !== this.wireId ||
            typeof item.ttlMs !== 'number' ||
            typeof item.deadline !== 'number'
          )
            continue;
          arm();
          backoff.reset();
          const t = item.deadline - item.ttlMs;
          first ??= t;
          const elapsed = Math.max(0, t - first);
          this.confirm(openedAt + elapsed * (1 - this.opts.driftRate), true);
          if (elapsed >= reanchorMs) {
            reanchor = true;
            stream.close();
            break;
          }
        }
      } catch (err) {
        failure = toDkvError(err);
      } finally {
        if (watchdog !== undefined) clearTimeout(watchdog);
        if (this.stream === stream) this.stream = undefined;
      }
      if (stop.aborted) return;
      if (failure?.code === ErrorCode.LeaseNotFound || (failure !== undefined && REFUSED.has(failure.code))) {
        // Gone, or this client may not keep it alive: retrying cannot help.
        this.end('lost', failure);
        return;
      }
      if (reanchor) continue;
      if (failure?.code === ErrorCode.NotLeader || failure?.code === ErrorCode.Unavailable) {
        // A hint moves the client to the new leader; none (or a dropped connection) refreshes the map.
        this.core.noteRedirect(this.group, failure);
      } else if (stalled) {
        this.core.noteRedirect(
          this.group,
          new DkvError(ErrorCode.NotLeader, `no keep-alive renewal for ${stallMs} ms`, { group: this.group }),
        );
      }
      await sleep(backoff.nextDelayMs(), stop);
    }
  }
}

/** REFUSED codes end a keep-alive loop: the caller may not keep the lease alive. */
const REFUSED: ReadonlySet<string> = new Set([
  ErrorCode.PermissionDenied,
  ErrorCode.Unauthenticated,
  ErrorCode.QuotaExceeded,
]);

/** LeaseApi grants and manages leases: `client.lease`. */
export class LeaseApi {
  constructor(
    readonly core: ClientCore,
    readonly clock: Clock = systemClock,
  ) {}

  /** checkGrant refuses a bad TTL or bad lease options before anything is granted. */
  checkGrant(ttlMs: number, opts: LeaseOptions): void {
    positiveInt('ttlMs', ttlMs);
    leaseSettings(Math.max(ttlMs, 1000), opts);
  }

  /**
   * adoptGranted is the handle of a lease granted by another entry (a lock try with its own
   * lease), requested at monotonic time `sentAt`; kept alive unless keepAlive: false. Internal.
   */
  adoptGranted(group: number, wire: number, ttlMs: number, sentAt: number, opts: LeaseOptions): Lease {
    return this.handle(group, wire, ttlMs, sentAt, opts);
  }

  /**
   * grant asks for a lease of `ttlMs` (at least 1000 ms) in the group of `opts.key`, or
   * `opts.group`, or a random group of the store, and keeps it alive until close() or
   * revoke() unless `keepAlive: false`.
   */
  async grant(ttlMs: number, opts: GrantOptions = {}): Promise<Lease> {
    this.checkGrant(ttlMs, opts);
    if (opts.key !== undefined && opts.group !== undefined)
      throw new DkvError(ErrorCode.InvalidArgument, 'grant takes key or group, not both');
    const group = await this.pickGroup(opts);
    const sentAt = this.clock.monotonicMs();
    const r = (await this.core.mutate({ group }, { op: 'lease.grant', ttlMs }, callOpts(opts))) as {
      id?: unknown;
      ttlMs?: unknown;
    };
    if (typeof r?.id !== 'number' || typeof r.ttlMs !== 'number')
      throw new DkvError(ErrorCode.Unavailable, 'unexpected lease.grant answer');
    return this.handle(group, r.id, r.ttlMs, sentAt, opts);
  }

  /**
   * attach takes over an existing lease by id (granted elsewhere, say by `dkv lease grant`):
   * it reads the lease's TTL and keeps it alive like a granted one (unless keepAlive: false).
   * LEASE_NOT_FOUND when it is gone.
   */
  async attach(id: number, opts: LeaseOptions & CallOptions = {}): Promise<Lease> {
    const wire = leaseWireId(id);
    const sentAt = this.clock.monotonicMs();
    const ttl = await this.timeToLive(id, opts);
    // The server's clock read at or after sentAt: remainingMs from then is a safe lower bound.
    const renewedAt = sentAt + ttl.remainingMs - ttl.ttlMs;
    return this.handle(wire.group, wire.lease, ttl.ttlMs, renewedAt, opts);
  }

  /** revoke ends lease `id` on the server (LEASE_NOT_FOUND when it is gone). */
  async revoke(id: number, opts: CallOptions = {}): Promise<void> {
    const wire = leaseWireId(id);
    await this.core.mutate({ group: wire.group }, { op: 'lease.revoke', id: wire.lease }, callOpts(opts));
  }

  /** keepAlive renews lease `id` once and returns its TTL (LEASE_NOT_FOUND when it is gone). */
  async keepAlive(id: number, opts: CallOptions = {}): Promise<{ id: number; ttlMs: number }> {
    const wire = leaseWireId(id);
    const out = await this.core.mutate(
      { group: wire.group },
      { op: 'lease.keepAlive', ids: [wire.lease] },
      callOpts(opts),
    );
    const r = Array.isArray(out) ? (out[0] as KeepAliveResult | undefined) : undefined;
    if (r === undefined)
      throw new DkvError(ErrorCode.Unavailable, `unexpected keep-alive answer for lease ${id}`);
    if (!r.ok || r.ttlMs === undefined)
      throw new DkvError(ErrorCode.LeaseNotFound, `lease ${id} is gone (expired or revoked)`);
    return { id, ttlMs: r.ttlMs };
  }

  /** timeToLive reads a live lease from the server (linearizable); LEASE_NOT_FOUND when gone. */
  async timeToLive(id: number, opts: CallOptions = {}): Promise<LeaseTimeToLive> {
    const wire = leaseWireId(id);
    const r = (await this.core.read(
      { group: wire.group },
      { op: 'lease.ttl', id: wire.lease },
      'linearizable',
      callOpts(opts),
    )) as { ttlMs?: unknown; remainingMs?: unknown; keys?: unknown };
    if (typeof r?.ttlMs !== 'number' || typeof r.remainingMs !== 'number' || !Array.isArray(r.keys))
      throw new DkvError(ErrorCode.Unavailable, 'unexpected lease.ttl answer');
    return { id, ttlMs: r.ttlMs, remainingMs: r.remainingMs, keys: r.keys as string[] };
  }

  private handle(group: number, wire: number, ttlMs: number, renewedAt: number, opts: LeaseOptions): Lease {
    const lease = new Lease(this.core, group, wire, ttlMs, renewedAt, opts, this.clock);
    if (opts.keepAlive !== false) lease.startKeepAlive();
    return lease;
  }

  private async pickGroup(opts: GrantOptions): Promise<number> {
    if (opts.key !== undefined) {
      if (typeof opts.key !== 'string' || opts.key.length === 0)
        throw new DkvError(ErrorCode.InvalidArgument, 'key must be a non-empty string');
      return this.core.groupOfKey(opts.key, callOpts(opts));
    }
    if (opts.group !== undefined) return positiveInt('group', opts.group);
    const groups = await this.core.groups(callOpts(opts));
    const g = groups[Math.floor(Math.random() * groups.length)];
    if (g === undefined) throw new DkvError(ErrorCode.Unavailable, 'the store has no groups');
    return g.id;
  }
}
