/**
 * Leases and fenced locks (DESIGN.md "Time, TTL and leases", "Locks and fencing").
 *
 * LeaseTable holds leases: an id (the grant entry's log index), a TTL, a deadline on the
 * replicated clock, and the keys bound to it. LockTable holds locks held through leases:
 * a holder with its fencing token, a FIFO queue of waiters, and the last token granted.
 * LeaseLockEngine ties the two together (ending a lease releases its locks) and owns their
 * joint snapshot; the state machine should end leases only through it.
 *
 * Liveness is judged against the `now` each call is given, never against when the state
 * machine gets round to `expire`: a lease is live while `now < deadline`. A lease past its
 * deadline cannot be kept alive, acquire or wait for a lock, protect its keys (NOT_OWNER),
 * or pass a fence check, even before it is removed. So no lease acts early or late relative
 * to `now`; the only lag is in the side effects (key deletes, lock hand-offs), which happen
 * when the state machine calls `expire` / `end`.
 *
 * Fencing tokens are log indexes. A grant's token is the index of the entry that granted it
 * (the acquire, the release that handed the lock over, or the entry in which the holder's
 * lease ended), so tokens strictly increase per lock as long as a lock is granted at most
 * once per entry. The table enforces that rule: a lock freed in the same entry that granted
 * it is not granted again in that entry; its waiters stay queued ("pending") and
 * `grantPending` hands it over at the start of the next entry. Because tokens are log
 * indexes, which increase regardless of any lock's history, a free lock with no waiters is
 * forgotten (bounded memory) without endangering monotonicity.
 *
 * Determinism: every externally visible order is defined by data: expiry by (deadline, id),
 * wait time-outs by (wait deadline, lock name, lease), hand-offs and releases by lock name,
 * queues by their explicit FIFO order (which the snapshot records).
 *
 * Complexity: grant, keep-alive, end O(log n) (plus O(k log k) to list k keys); acquire,
 * release O(log n + w) for w waiters of that lock (w is bounded); lease end O(l log l + l w)
 * for l locks it touched; fence check O(1); snapshot O(n log n) (an eager copy).
 */
import BTreeModule from 'sorted-btree';
import { DkvError, ErrorCode } from '../errors.js';
import type { EngineSnapshot } from './types.js';

type BTreeClass = typeof BTreeModule.default;
/** BTree is sorted-btree's class, whether the CJS module arrives as its exports or as `default`. */
const BTree: BTreeClass =
  (BTreeModule as unknown as { default?: BTreeClass }).default ?? (BTreeModule as unknown as BTreeClass);
type Tree<K, V> = InstanceType<typeof BTreeModule.default<K, V>>;

/** LEASE_LOCK_PART_ROWS_MAX bounds the rows in one snapshot part. */
export const LEASE_LOCK_PART_ROWS_MAX = 1000;

// ---------------------------------------------------------------------------------------
// Shared helpers

function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`lease-lock: assertion failed: ${message}`);
}

function invalid(message: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, message);
}

function corrupted(message: string): DkvError {
  return new DkvError(ErrorCode.Corrupted, `lease-lock snapshot: ${message}`);
}

function leaseNotFound(id: number): DkvError {
  return new DkvError(ErrorCode.LeaseNotFound, `lease ${id} not found (never granted, expired or revoked)`);
}

/** requireNow asserts the replicated clock value: the state machine's duty, not the client's. */
function requireNow(now: number): void {
  assert(Number.isSafeInteger(now) && now >= 0, `now must be a non-negative safe integer, got ${now}`);
}

function requireIndex(index: number): void {
  assert(Number.isSafeInteger(index) && index >= 1, `index must be a positive safe integer, got ${index}`);
}

function isId(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 1;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function sortedStrings(values: Iterable<string>): string[] {
  return [...values].sort(compareStrings);
}

// ---------------------------------------------------------------------------------------
// Leases

/** LeaseConfig holds the lease table's limits; every field has a default. */
export interface LeaseConfig {
  /**
   * ttlMsMin is the shortest TTL granted. Keep-alives are replicated, so a lease much shorter
   * than a few commit round-trips plus the tick interval cannot be kept alive reliably.
   */
  readonly ttlMsMin?: number;
  /** ttlMsMax is the longest TTL granted. */
  readonly ttlMsMax?: number;
  /** leasesMax bounds the leases held (OVERLOADED beyond it). */
  readonly leasesMax?: number;
  /** keepAliveBatchMax bounds the ids of one `keepAliveMany` (TOO_LARGE beyond it). */
  readonly keepAliveBatchMax?: number;
}

const LEASE_DEFAULTS: Required<LeaseConfig> = {
  ttlMsMin: 1000,
  ttlMsMax: 24 * 3600 * 1000,
  leasesMax: 1_000_000,
  keepAliveBatchMax: 10_000,
};

/** Lease is a lease as callers see it: a fresh copy, never the table's own record. */
export interface Lease {
  /** id is the log index of the entry that granted it. */
  readonly id: number;
  readonly ttlMs: number;
  /** deadline is the replicated-clock time (ms) at which the lease ends unless kept alive. */
  readonly deadline: number;
}

/** EndedLease is a lease that was revoked or expired, with the keys that were bound to it. */
export interface EndedLease extends Lease {
  /** keys were bound to the lease, sorted; the state machine deletes them (cause 'lease'). */
  readonly keys: string[];
}

/** LeaseTimeToLive answers a time-to-live query. */
export interface LeaseTimeToLive {
  readonly id: number;
  readonly ttlMs: number;
  /** remainingMs is `deadline - now`, always > 0 for a live lease. */
  readonly remainingMs: number;
  readonly keys: string[];
}

/** KeepAliveResult is the outcome for one id of `keepAliveMany`, in request order. */
export type KeepAliveResult =
  | { readonly id: number; readonly ok: true; readonly ttlMs: number; readonly deadline: number }
  | { readonly id: number; readonly ok: false; readonly code: typeof ErrorCode.LeaseNotFound };

interface LeaseRecord {
  readonly id: number;
  readonly ttlMs: number;
  /** deadline may change only while the record is out of `byDeadline`. */
  deadline: number;
  readonly keys: Set<string>;
}

function compareLeaseDeadlines(a: LeaseRecord, b: LeaseRecord): number {
  return a.deadline - b.deadline || a.id - b.id;
}

function leaseOf(rec: LeaseRecord): Lease {
  return { id: rec.id, ttlMs: rec.ttlMs, deadline: rec.deadline };
}

/**
 * LeaseTable holds the leases and the keys bound to them.
 *
 * Invariant: `byDeadline` holds exactly the records of `byId`, ordered by (deadline, id).
 */
export class LeaseTable {
  private readonly config: Required<LeaseConfig>;
  private readonly byId = new Map<number, LeaseRecord>();
  private readonly byDeadline: Tree<LeaseRecord, undefined>;

  constructor(config: LeaseConfig = {}) {
    this.config = { ...LEASE_DEFAULTS, ...config };
    assert(
      Number.isSafeInteger(this.config.ttlMsMin) &&
        this.config.ttlMsMin >= 1 &&
        this.config.ttlMsMax >= this.config.ttlMsMin,
      'lease TTL bounds must satisfy 1 <= ttlMsMin <= ttlMsMax',
    );
    this.byDeadline = new BTree<LeaseRecord, undefined>(undefined, compareLeaseDeadlines);
  }

  /** size is the number of leases held, counting dead ones not yet ended. */
  get size(): number {
    return this.byId.size;
  }

  /**
   * grant creates lease `id` (the grant entry's log index) with deadline `now + ttlMs`.
   * A TTL outside [ttlMsMin, ttlMsMax] or not an integer is INVALID_ARGUMENT.
   */
  grant(id: number, ttlMs: number, now: number): Lease {
    requireIndex(id);
    requireNow(now);
    assert(!this.byId.has(id), `lease ${id} granted twice (ids are log indexes)`);
    const { ttlMsMin, ttlMsMax } = this.config;
    if (typeof ttlMs !== 'number' || !Number.isSafeInteger(ttlMs) || ttlMs < ttlMsMin || ttlMs > ttlMsMax)
      throw invalid(`lease ttlMs must be an integer in [${ttlMsMin}, ${ttlMsMax}], got ${String(ttlMs)}`);
    if (this.byId.size >= this.config.leasesMax)
      throw new DkvError(ErrorCode.Overloaded, `too many leases (leasesMax ${this.config.leasesMax})`);
    const rec: LeaseRecord = { id, ttlMs, deadline: now + ttlMs, keys: new Set() };
    this.byId.set(id, rec);
    this.byDeadline.set(rec, undefined);
    return leaseOf(rec);
  }

  /** keepAlive moves a live lease's deadline to `now + ttlMs`; LEASE_NOT_FOUND if absent or dead. */
  keepAlive(id: number, now: number): Lease {
    requireNow(now);
    const rec = this.liveRecord(id, now);
    if (rec === undefined) throw leaseNotFound(id);
    this.byDeadline.delete(rec);
    rec.deadline = now + rec.ttlMs;
    this.byDeadline.set(rec, undefined);
    return leaseOf(rec);
  }

  /**
   * keepAliveMany keeps several leases alive in one entry (clients batch their keep-alives)
   * and returns one result per id, in request order; a missing lease is a result, not an error.
   */
  keepAliveMany(ids: readonly number[], now: number): KeepAliveResult[] {
    if (ids.length > this.config.keepAliveBatchMax)
      throw new DkvError(
        ErrorCode.TooLarge,
        `${ids.length} keep-alives in one batch, over keepAliveBatchMax ${this.config.keepAliveBatchMax}`,
      );
    return ids.map((id): KeepAliveResult => {
      if (this.liveRecord(id, now) === undefined) return { id, ok: false, code: ErrorCode.LeaseNotFound };
      const lease = this.keepAlive(id, now);
      return { id, ok: true, ttlMs: lease.ttlMs, deadline: lease.deadline };
    });
  }

  /**
   * revoke removes the lease (live or dead but not yet ended) and returns it with its keys.
   * LEASE_NOT_FOUND if absent. Use LeaseLockEngine.revoke, which also releases its locks.
   */
  revoke(id: number): EndedLease {
    const ended = this.end(id);
    if (ended === undefined) throw leaseNotFound(id);
    return ended;
  }

  /**
   * end removes the lease whatever its deadline and returns it with its keys, or undefined
   * if absent (a stale time-wheel alarm). The caller checks `deadlineOf(id) <= now` first.
   */
  end(id: number): EndedLease | undefined {
    const rec = this.byId.get(id);
    if (rec === undefined) return undefined;
    this.byId.delete(id);
    this.byDeadline.delete(rec);
    return { ...leaseOf(rec), keys: sortedStrings(rec.keys) };
  }

  /**
   * expire removes every lease whose deadline is `<= now` (at most `max` of them) and returns
   * them in (deadline, id) order with their keys.
   */
  expire(now: number, max = Number.POSITIVE_INFINITY): EndedLease[] {
    requireNow(now);
    const out: EndedLease[] = [];
    while (out.length < max) {
      const first = this.byDeadline.minKey();
      if (first === undefined || first.deadline > now) break;
      out.push(this.end(first.id)!);
    }
    return out;
  }

  /**
   * deadKeys returns the keys bound to leases whose deadline is at or before `now` but that
   * have not been ended yet (their deletes are still to be applied): reads must not see them.
   * O(d log n + k) for d such leases holding k keys; empty at once when none is due.
   */
  deadKeys(now: number): Set<string> {
    const out = new Set<string>();
    for (const rec of this.byDeadline.keys()) {
      if (rec.deadline > now) break;
      for (const k of rec.keys) out.add(k);
    }
    return out;
  }

  /** nextDeadline returns the earliest lease deadline, for scheduling the next expiry. */
  nextDeadline(): number | undefined {
    return this.byDeadline.minKey()?.deadline;
  }

  /** deadlineOf returns the lease's deadline, or undefined if it is not held. */
  deadlineOf(id: number): number | undefined {
    return this.byId.get(id)?.deadline;
  }

  /** get returns the lease (live or dead but not yet ended), or undefined. */
  get(id: number): Lease | undefined {
    const rec = this.byId.get(id);
    return rec === undefined ? undefined : leaseOf(rec);
  }

  /** isLive tells whether the lease is held and `now` is before its deadline. */
  isLive(id: number, now: number): boolean {
    return this.liveRecord(id, now) !== undefined;
  }

  /** requireLive returns the lease if live, else throws LEASE_NOT_FOUND. */
  requireLive(id: number, now: number): Lease {
    const rec = this.liveRecord(id, now);
    if (rec === undefined) throw leaseNotFound(id);
    return leaseOf(rec);
  }

  /** timeToLive describes a live lease; LEASE_NOT_FOUND if absent or dead. */
  timeToLive(id: number, now: number): LeaseTimeToLive {
    requireNow(now);
    const rec = this.liveRecord(id, now);
    if (rec === undefined) throw leaseNotFound(id);
    return { id, ttlMs: rec.ttlMs, remainingMs: rec.deadline - now, keys: sortedStrings(rec.keys) };
  }

  /** list returns every lease held (including dead ones not yet ended), sorted by id. */
  list(): Lease[] {
    return [...this.byId.values()].map(leaseOf).sort((a, b) => a.id - b.id);
  }

  /**
   * attachKey binds a key to the lease (a put carrying the lease). The state machine checks
   * `requireLive` before it applies the put; a missing lease here is LEASE_NOT_FOUND.
   */
  attachKey(lease: number, key: string): void {
    const rec = this.byId.get(lease);
    if (rec === undefined) throw leaseNotFound(lease);
    rec.keys.add(key);
  }

  /** detachKey unbinds a key (a delete, or a put without this lease); tells whether it was bound. */
  detachKey(lease: number, key: string): boolean {
    return this.byId.get(lease)?.keys.delete(key) ?? false;
  }

  /** keysOf returns the keys bound to the lease, sorted; LEASE_NOT_FOUND if absent. */
  keysOf(lease: number): string[] {
    const rec = this.byId.get(lease);
    if (rec === undefined) throw leaseNotFound(lease);
    return sortedStrings(rec.keys);
  }

  /**
   * checkWrite enforces key ownership: while the lease a key is bound to (`itemLease`) is
   * live at `now`, a mutation of that key (put, delete, or any other write) must carry that
   * same lease (`requestLease`), else NOT_OWNER. Creating a key, writing a key bound to no
   * lease, and writing a key whose lease is dead (past its deadline, ended or not) are
   * allowed to anyone; such a write unbinds the key from the dead lease if it binds it to
   * another lease or deletes it. To move a key to another lease, its holder deletes it first.
   */
  checkWrite(itemLease: number | undefined, requestLease: number | undefined, now: number): void {
    if (itemLease === undefined || requestLease === itemLease) return;
    if (!this.isLive(itemLease, now)) return;
    throw new DkvError(
      ErrorCode.NotOwner,
      `the key is bound to live lease ${itemLease}; only a write carrying that lease may change it`,
    );
  }

  /** snapshotRows copies the table into rows: ['lease', id, ttlMs, deadline] then ['key', key]... */
  snapshotRows(): unknown[][] {
    const rows: unknown[][] = [];
    const recs = [...this.byId.values()].sort((a, b) => a.id - b.id);
    for (const rec of recs) {
      rows.push(['lease', rec.id, rec.ttlMs, rec.deadline]);
      for (const key of sortedStrings(rec.keys)) rows.push(['key', key]);
    }
    return rows;
  }

  /** snapshot returns a frozen copy of the table as parts `{ t: 'leases', v: 1, rows }`. */
  snapshot(): EngineSnapshot {
    return partsOf('leases', this.snapshotRows());
  }

  /** restore rebuilds a table from `snapshot().parts()`; malformed input throws CORRUPTED. */
  static restore(parts: Iterable<unknown>, config: LeaseConfig = {}): LeaseTable {
    const table = new LeaseTable(config);
    const loader = new LeaseLoader(table);
    for (const part of parts) loader.push(rowsOf(part, 'leases'));
    return table;
  }

  /** restoreLease is LeaseLoader's entry point: it installs one validated record. */
  private restoreLease(rec: LeaseRecord): void {
    this.byId.set(rec.id, rec);
    this.byDeadline.set(rec, undefined);
  }

  private liveRecord(id: number, now: number): LeaseRecord | undefined {
    const rec = this.byId.get(id);
    return rec !== undefined && now < rec.deadline ? rec : undefined;
  }

  /** loaderInstall is internal to this module (snapshot restore); not for callers. */
  static loaderInstall(table: LeaseTable, rec: LeaseRecord): void {
    table.restoreLease(rec);
  }
}

/** LeaseLoader validates lease rows one by one, across part boundaries. */
class LeaseLoader {
  private current: LeaseRecord | undefined;
  private lastKey: string | undefined;
  private lastId = 0;

  constructor(private readonly table: LeaseTable) {}

  push(rows: readonly unknown[]): void {
    for (const row of rows) {
      if (!Array.isArray(row)) throw corrupted('lease row is not an array');
      if (row[0] === 'lease') {
        const [, id, ttlMs, deadline] = row as unknown[];
        if (row.length !== 4 || !isId(id) || !isId(ttlMs) || !Number.isSafeInteger(deadline))
          throw corrupted(`malformed lease row ${JSON.stringify(row)}`);
        if (id <= this.lastId) throw corrupted(`lease ids out of order: ${this.lastId} then ${id}`);
        this.lastId = id;
        this.current = { id, ttlMs, deadline: deadline as number, keys: new Set() };
        this.lastKey = undefined;
        LeaseTable.loaderInstall(this.table, this.current);
      } else if (row[0] === 'key') {
        const key = row[1];
        if (row.length !== 2 || typeof key !== 'string') throw corrupted('malformed key row');
        if (this.current === undefined) throw corrupted('key row before any lease row');
        if (this.lastKey !== undefined && !(this.lastKey < key))
          throw corrupted(`keys of lease ${this.current.id} out of order`);
        this.lastKey = key;
        this.current.keys.add(key);
      } else throw corrupted(`unknown lease row kind ${JSON.stringify(row[0])}`);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Locks

/** LockConfig holds the lock table's limits; every field has a default. */
export interface LockConfig {
  /** locksMax bounds the locks held or waited on (OVERLOADED beyond it). */
  readonly locksMax?: number;
  /** waitersPerLockMax bounds one lock's queue (OVERLOADED beyond it). */
  readonly waitersPerLockMax?: number;
  /** nameLengthMax bounds a lock name, in UTF-16 code units (TOO_LARGE beyond it). */
  readonly nameLengthMax?: number;
  /** waiterIdLengthMax bounds a waiter id (TOO_LARGE beyond it). */
  readonly waiterIdLengthMax?: number;
  /** waitMsMax bounds a finite wait (INVALID_ARGUMENT beyond it). */
  readonly waitMsMax?: number;
  /**
   * unsafeSkipLeaseCheck: TEST ONLY (the planted bug `lock-no-lease-check`,
   * src/node/test-hooks.ts). `acquire` does not require the lease to exist or be live, a
   * waiter's lease is not checked at hand-off, and a lease that ends keeps its queued waits
   * (its held locks are still released). A snapshot may then name leases that are gone.
   */
  readonly unsafeSkipLeaseCheck?: boolean;
}

const LOCK_DEFAULTS: Required<LockConfig> = {
  locksMax: 1_000_000,
  waitersPerLockMax: 10_000,
  nameLengthMax: 1024,
  waiterIdLengthMax: 256,
  waitMsMax: 24 * 3600 * 1000,
  unsafeSkipLeaseCheck: false,
};

/** AcquireOptions are the options of `acquire`. */
export interface AcquireOptions {
  /** waitMs: undefined waits until granted or the lease ends; 0 only tries; > 0 waits that long. */
  readonly waitMs?: number;
  /** waiterId names the request (for example `clientId:seq`), so a later grant can answer it. */
  readonly waiterId: string;
}

/** AcquireResult is the immediate answer to an acquire. */
export type AcquireResult =
  /** Granted now, or already held by the same lease (`reentrant`, same token). */
  | { readonly acquired: true; readonly token: number; readonly reentrant: boolean }
  /** Queued: the answer comes later, as a Grant, a TimedOutWaiter or a CancelledWaiter. */
  | { readonly acquired: false; readonly queued: true; readonly waitDeadline?: number }
  /** Try mode (waitMs 0) and the lock is not available now. Not an error. */
  | { readonly acquired: false; readonly queued: false };

/** Grant hands a lock to a queued waiter; the state machine answers `waiterId` with `token`. */
export interface Grant {
  readonly name: string;
  readonly lease: number;
  readonly waiterId: string;
  readonly token: number;
}

/** Released is a lock that lost its holder (release, or its lease ended). */
export interface Released {
  readonly name: string;
  readonly lease: number;
  readonly token: number;
}

/** CancelledWaiter is a waiter removed because its lease ended; its acquire answers LEASE_NOT_FOUND. */
export interface CancelledWaiter {
  readonly name: string;
  readonly lease: number;
  readonly waiterId: string;
}

/** TimedOutWaiter is a waiter whose wait ran out; its acquire answers `{acquired: false, timedOut: true}`. */
export interface TimedOutWaiter {
  readonly name: string;
  readonly lease: number;
  readonly waiterId: string;
  readonly waitDeadline: number;
  readonly timedOut: true;
}

/** ReleaseResult answers a release: what was released and whom the lock went to next, if anyone. */
export interface ReleaseResult {
  readonly released: Released;
  readonly grant?: Grant;
}

/** LeaseEndOutcome is what ending leases did to the locks, each list in a data-defined order. */
export interface LeaseEndOutcome {
  /** released: the locks the ended leases held, by name. */
  readonly released: Released[];
  /** grants: the hand-offs that followed, by lock name. */
  readonly grants: Grant[];
  /** cancelled: the ended leases' waiters, by (lock name, lease). */
  readonly cancelled: CancelledWaiter[];
}

/** LockInfo describes a lock for inspection. */
export interface LockInfo {
  readonly name: string;
  readonly holder?: {
    readonly lease: number;
    readonly token: number;
    readonly waiterId: string;
    /** since is the replicated time (ms) at which it was granted. */
    readonly since: number;
    readonly heldMs: number;
  };
  readonly waiters: {
    readonly lease: number;
    readonly waiterId: string;
    readonly since: number;
    readonly waitDeadline?: number;
  }[];
  /** lastToken is the last token granted (0 for a lock that was forgotten while free). */
  readonly lastToken: number;
}

/** Fence is what a fenced mutation carries. */
export interface Fence {
  readonly lock: string;
  readonly token: number;
}

interface Holder {
  readonly lease: number;
  readonly token: number;
  readonly since: number;
  readonly waiterId: string;
}

interface Waiter {
  readonly name: string;
  readonly lease: number;
  readonly waiterId: string;
  readonly since: number;
  readonly waitDeadline: number | undefined;
}

/**
 * LockRecord is one lock. Invariants: a record has a holder or waiters (else it is
 * forgotten); if it has a holder, `holder.token === lastToken`; a lease appears at most once
 * among holder and waiters; a record with no holder but waiters is in `pending`.
 */
interface LockRecord {
  readonly name: string;
  holder: Holder | undefined;
  /** waiters in FIFO order. */
  readonly waiters: Waiter[];
  lastToken: number;
}

interface LeaseLocks {
  readonly held: Set<string>;
  readonly waiting: Set<string>;
}

function compareWaitDeadlines(a: Waiter, b: Waiter): number {
  return (a.waitDeadline ?? 0) - (b.waitDeadline ?? 0) || compareStrings(a.name, b.name) || a.lease - b.lease;
}

/**
 * LockTable holds the locks. It reads lease liveness from a LeaseTable; ending leases goes
 * through `leaseEnded` (LeaseLockEngine does both).
 *
 * The state machine drives it once per entry, in this order: `grantPending(index, now)`, then
 * lease ends (`leaseEnded`), then `expireWaits(now)`, then the entry's commands. `index`
 * never decreases across calls.
 */
export class LockTable {
  private readonly config: Required<LockConfig>;
  private readonly locks = new Map<string, LockRecord>();
  /** byLease indexes which locks each lease holds and waits on. */
  private readonly byLease = new Map<number, LeaseLocks>();
  /** waitIndex holds the waiters with a finite wait, by (waitDeadline, name, lease). */
  private readonly waitIndex: Tree<Waiter, undefined>;
  /** pending holds the names of free locks that still have waiters. */
  private readonly pending = new Set<string>();
  /** currentIndex is the highest entry index seen. */
  private currentIndex = 0;
  /** grantedThisIndex names the locks granted in entry `currentIndex` (forgotten ones too). */
  private readonly grantedThisIndex = new Set<string>();

  constructor(
    private readonly leases: LeaseTable,
    config: LockConfig = {},
  ) {
    this.config = { ...LOCK_DEFAULTS, ...config };
    this.waitIndex = new BTree<Waiter, undefined>(undefined, compareWaitDeadlines);
  }

  /** size is the number of locks held or waited on. */
  get size(): number {
    return this.locks.size;
  }

  /**
   * acquire asks for lock `name` through `lease` in entry `index` at time `now`.
   * - The lease must be live (LEASE_NOT_FOUND).
   * - Free: granted with token `index`.
   * - Held by the same lease: `{acquired: true, reentrant: true}` with the current token. It
   *   is not counted: one release frees it.
   * - Held by another lease (or freed earlier in this same entry): try mode (`waitMs: 0`)
   *   answers `{acquired: false, queued: false}`; otherwise the request queues FIFO, until
   *   `now + waitMs` or, without waitMs, until granted or its lease ends.
   * - A lease that already waits for this lock may only try (INVALID_ARGUMENT otherwise).
   */
  acquire(name: string, lease: number, index: number, now: number, opts: AcquireOptions): AcquireResult {
    this.requireName(name);
    const { waiterId, waitMs } = opts;
    if (typeof waiterId !== 'string') throw invalid('waiterId must be a string');
    if (waiterId.length > this.config.waiterIdLengthMax)
      throw new DkvError(
        ErrorCode.TooLarge,
        `waiterId is ${waiterId.length} characters, over waiterIdLengthMax ${this.config.waiterIdLengthMax}`,
      );
    if (
      waitMs !== undefined &&
      (typeof waitMs !== 'number' ||
        !Number.isSafeInteger(waitMs) ||
        waitMs < 0 ||
        waitMs > this.config.waitMsMax)
    )
      throw invalid(`waitMs must be an integer in [0, ${this.config.waitMsMax}], got ${String(waitMs)}`);
    requireNow(now);
    this.enterIndex(index);
    if (!this.config.unsafeSkipLeaseCheck) this.leases.requireLive(lease, now);

    const lock = this.locks.get(name);
    if (lock?.holder?.lease === lease) return { acquired: true, token: lock.holder.token, reentrant: true };
    if (lock?.waiters.some((w) => w.lease === lease)) {
      if (waitMs === 0) return { acquired: false, queued: false };
      throw invalid(`lease ${lease} already waits for lock ${JSON.stringify(name)}; only one wait per lease`);
    }
    if (lock?.holder === undefined && !this.grantedThisIndex.has(name)) {
      // Free: its waiters (if any) are all ineligible, since grantPending ran first this entry.
      assert(
        lock === undefined || !lock.waiters.some((w) => this.eligible(w, now)),
        `lock ${name} is free with an eligible waiter: grantPending was not called for entry ${index}`,
      );
      const rec = lock ?? this.createLock(name);
      this.grantTo(rec, { lease, token: index, since: now, waiterId });
      return { acquired: true, token: index, reentrant: false };
    }
    if (waitMs === 0) return { acquired: false, queued: false };
    const rec = lock ?? this.createLock(name);
    if (rec.waiters.length >= this.config.waitersPerLockMax) {
      if (rec.holder === undefined && rec.waiters.length === 0) this.forget(rec);
      throw new DkvError(
        ErrorCode.Overloaded,
        `lock ${JSON.stringify(name)} has ${rec.waiters.length} waiters (waitersPerLockMax)`,
      );
    }
    const waiter: Waiter = {
      name,
      lease,
      waiterId,
      since: now,
      waitDeadline: waitMs === undefined ? undefined : now + waitMs,
    };
    rec.waiters.push(waiter);
    this.leaseLocks(lease).waiting.add(name);
    if (waiter.waitDeadline !== undefined) this.waitIndex.set(waiter, undefined);
    if (rec.holder === undefined) this.pending.add(name);
    return waiter.waitDeadline === undefined
      ? { acquired: false, queued: true }
      : { acquired: false, queued: true, waitDeadline: waiter.waitDeadline };
  }

  /**
   * release frees lock `name` if `token` is its current holder's token (else NOT_OWNER and
   * nothing changes), then hands it to the first waiter whose lease is live and whose wait
   * has not run out, with token `index`; unless the lock was granted earlier in this same
   * entry, in which case the waiters stay queued until `grantPending` in the next entry.
   */
  release(name: string, token: number, index: number, now: number): ReleaseResult {
    this.requireName(name);
    if (!isId(token)) throw invalid(`token must be a positive safe integer, got ${String(token)}`);
    requireNow(now);
    this.enterIndex(index);
    const lock = this.locks.get(name);
    const holder = lock?.holder;
    if (lock === undefined || holder === undefined || holder.token !== token)
      throw new DkvError(
        ErrorCode.NotOwner,
        `token ${token} does not hold lock ${JSON.stringify(name)} (current: ${holder?.token ?? 'none'})`,
      );
    this.unhold(lock);
    const released: Released = { name, lease: holder.lease, token };
    const grant = this.handOff(lock, index, now);
    return grant === undefined ? { released } : { released, grant };
  }

  /**
   * leaseEnded releases every lock the ended leases hold and removes them from every queue,
   * all of them first, and only then hands each freed or affected lock (in name order) to its
   * first eligible waiter with token `index`. So a lock never goes to a waiter whose lease
   * ended in the same entry, and it is granted at most once per entry.
   */
  leaseEnded(leaseIds: readonly number[], index: number, now: number): LeaseEndOutcome {
    requireNow(now);
    this.enterIndex(index);
    const ids = [...new Set(leaseIds)].sort((a, b) => a - b);
    const released: Released[] = [];
    const cancelled: CancelledWaiter[] = [];
    const touched = new Set<string>();
    for (const id of ids) {
      const entry = this.byLease.get(id);
      if (entry === undefined) continue;
      for (const name of sortedStrings(entry.held)) {
        const lock = this.locks.get(name)!;
        const holder = lock.holder!;
        this.unhold(lock);
        released.push({ name, lease: id, token: holder.token });
        touched.add(name);
      }
      // The planted bug `lock-no-lease-check` leaves the ended lease's waits queued.
      if (this.config.unsafeSkipLeaseCheck) continue;
      for (const name of sortedStrings(entry.waiting)) {
        const lock = this.locks.get(name)!;
        const w = this.removeWaiter(lock, id);
        cancelled.push({ name, lease: id, waiterId: w.waiterId });
        touched.add(name);
      }
      assert(!this.byLease.has(id), `lease ${id} still indexed after its locks were removed`);
    }
    const grants: Grant[] = [];
    for (const name of sortedStrings(touched)) {
      const lock = this.locks.get(name);
      if (lock === undefined) continue;
      if (lock.holder !== undefined) continue;
      const grant = this.handOff(lock, index, now);
      if (grant !== undefined) grants.push(grant);
    }
    released.sort((a, b) => compareStrings(a.name, b.name) || a.lease - b.lease);
    cancelled.sort((a, b) => compareStrings(a.name, b.name) || a.lease - b.lease);
    return { released, grants, cancelled };
  }

  /**
   * grantPending hands over, in name order, the free locks whose waiters could not be served
   * earlier (freed in the entry that granted them, or with no eligible waiter then). Call it
   * first in every entry; it costs nothing when no lock is pending.
   */
  grantPending(index: number, now: number): Grant[] {
    requireNow(now);
    this.enterIndex(index);
    if (this.pending.size === 0) return [];
    const grants: Grant[] = [];
    for (const name of sortedStrings(this.pending)) {
      const lock = this.locks.get(name)!;
      const grant = this.handOff(lock, index, now);
      if (grant !== undefined) grants.push(grant);
    }
    return grants;
  }

  /** hasPending tells whether `grantPending` has anything to consider. */
  get hasPending(): boolean {
    return this.pending.size > 0;
  }

  /**
   * expireWaits removes the waiters whose wait deadline is `<= now` (at most `max`) and
   * returns them in (waitDeadline, lock name, lease) order. A waiter that times out holds
   * nothing, so nothing is handed over.
   */
  expireWaits(now: number, max = Number.POSITIVE_INFINITY): TimedOutWaiter[] {
    requireNow(now);
    const out: TimedOutWaiter[] = [];
    while (out.length < max) {
      const first = this.waitIndex.minKey();
      if (first === undefined || first.waitDeadline! > now) break;
      const lock = this.locks.get(first.name)!;
      this.removeWaiter(lock, first.lease);
      out.push({
        name: first.name,
        lease: first.lease,
        waiterId: first.waiterId,
        waitDeadline: first.waitDeadline!,
        timedOut: true,
      });
    }
    return out;
  }

  /** nextWaitDeadline returns the earliest wait deadline, for scheduling `expireWaits`. */
  nextWaitDeadline(): number | undefined {
    return this.waitIndex.minKey()?.waitDeadline;
  }

  /**
   * checkFence throws STALE_FENCE unless `fence.token` is lock `fence.lock`'s current
   * holder's token and that holder's lease is live at `now`. A free lock, a later token, or
   * a holder whose lease is past its deadline (even if not yet ended) all make it stale. A
   * malformed fence is INVALID_ARGUMENT.
   */
  checkFence(fence: Fence, now: number): void {
    if (typeof fence !== 'object' || fence === null || typeof fence.lock !== 'string' || !isId(fence.token))
      throw invalid('a fence must be { lock: string, token: positive integer }');
    const holder = this.locks.get(fence.lock)?.holder;
    if (holder !== undefined && holder.token === fence.token && this.leases.isLive(holder.lease, now)) return;
    throw new DkvError(
      ErrorCode.StaleFence,
      `fencing token ${fence.token} for lock ${JSON.stringify(fence.lock)} is stale (current: ${
        holder === undefined ? 'none' : holder.token
      })`,
    );
  }

  /** holderToken is the token lock `name` is held with now (undefined: free). */
  holderToken(name: string): number | undefined {
    return this.locks.get(name)?.holder?.token;
  }

  /** describe inspects one lock; a lock never used or forgotten shows no holder, no waiters, lastToken 0. */
  describe(name: string, now: number): LockInfo {
    const lock = this.locks.get(name);
    if (lock === undefined) return { name, waiters: [], lastToken: 0 };
    return infoOf(lock, now);
  }

  /** list inspects every lock held or waited on, by name. */
  list(now: number): LockInfo[] {
    return sortedStrings(this.locks.keys()).map((name) => infoOf(this.locks.get(name)!, now));
  }

  /** locksOf lists the locks a lease holds and waits on, each sorted. */
  locksOf(lease: number): { held: string[]; waiting: string[] } {
    const entry = this.byLease.get(lease);
    return {
      held: entry === undefined ? [] : sortedStrings(entry.held),
      waiting: entry === undefined ? [] : sortedStrings(entry.waiting),
    };
  }

  /**
   * snapshotRows copies the table into rows: ['index', currentIndex], ['granted', name]...,
   * then per lock ['lock', name, lastToken, holder | null] followed by its waiters in FIFO
   * order ['wait', lease, waiterId, since, waitDeadline | null]; holder is
   * [lease, token, since, waiterId].
   */
  snapshotRows(): unknown[][] {
    const rows: unknown[][] = [['index', this.currentIndex]];
    for (const name of sortedStrings(this.grantedThisIndex)) rows.push(['granted', name]);
    for (const name of sortedStrings(this.locks.keys())) {
      const lock = this.locks.get(name)!;
      const h = lock.holder;
      rows.push([
        'lock',
        name,
        lock.lastToken,
        h === undefined ? null : [h.lease, h.token, h.since, h.waiterId],
      ]);
      for (const w of lock.waiters) rows.push(['wait', w.lease, w.waiterId, w.since, w.waitDeadline ?? null]);
    }
    return rows;
  }

  /** snapshot returns a frozen copy of the table as parts `{ t: 'locks', v: 1, rows }`. */
  snapshot(): EngineSnapshot {
    return partsOf('locks', this.snapshotRows());
  }

  /**
   * restore rebuilds a table from `snapshot().parts()` over an already restored LeaseTable;
   * every holder and waiter must name a lease in it. Malformed input throws CORRUPTED.
   */
  static restore(parts: Iterable<unknown>, leases: LeaseTable, config: LockConfig = {}): LockTable {
    const table = new LockTable(leases, config);
    const loader = new LockLoader(table);
    for (const part of parts) loader.push(rowsOf(part, 'locks'));
    loader.finish();
    return table;
  }

  /** loaderAccess is internal to this module (snapshot restore); not for callers. */
  static loaderAccess(table: LockTable): LockTableInternals {
    return {
      leases: table.leases,
      leasesMayBeGone: table.config.unsafeSkipLeaseCheck,
      locks: table.locks,
      grantedThisIndex: table.grantedThisIndex,
      setCurrentIndex: (index) => {
        table.currentIndex = index;
      },
      install: (lock) => table.install(lock),
    };
  }

  // --- internals

  private install(lock: LockRecord): void {
    this.locks.set(lock.name, lock);
    if (lock.holder !== undefined) this.leaseLocks(lock.holder.lease).held.add(lock.name);
    else this.pending.add(lock.name);
    for (const w of lock.waiters) {
      this.leaseLocks(w.lease).waiting.add(lock.name);
      if (w.waitDeadline !== undefined) this.waitIndex.set(w, undefined);
    }
  }

  private enterIndex(index: number): void {
    requireIndex(index);
    assert(index >= this.currentIndex, `index went back from ${this.currentIndex} to ${index}`);
    if (index > this.currentIndex) {
      this.currentIndex = index;
      this.grantedThisIndex.clear();
    }
  }

  private eligible(w: Waiter, now: number): boolean {
    return (
      (w.waitDeadline === undefined || now < w.waitDeadline) &&
      (this.config.unsafeSkipLeaseCheck || this.leases.isLive(w.lease, now))
    );
  }

  private createLock(name: string): LockRecord {
    if (this.locks.size >= this.config.locksMax)
      throw new DkvError(ErrorCode.Overloaded, `too many locks (locksMax ${this.config.locksMax})`);
    const lock: LockRecord = { name, holder: undefined, waiters: [], lastToken: 0 };
    this.locks.set(name, lock);
    return lock;
  }

  private forget(lock: LockRecord): void {
    assert(lock.holder === undefined && lock.waiters.length === 0, `forgetting lock ${lock.name} in use`);
    this.locks.delete(lock.name);
    this.pending.delete(lock.name);
  }

  private leaseLocks(lease: number): LeaseLocks {
    let entry = this.byLease.get(lease);
    if (entry === undefined) {
      entry = { held: new Set(), waiting: new Set() };
      this.byLease.set(lease, entry);
    }
    return entry;
  }

  private dropLeaseLock(lease: number, name: string, kind: 'held' | 'waiting'): void {
    const entry = this.byLease.get(lease);
    assert(entry?.[kind].delete(name) === true, `lease ${lease} not indexed as ${kind} on ${name}`);
    if (entry.held.size === 0 && entry.waiting.size === 0) this.byLease.delete(lease);
  }

  private grantTo(lock: LockRecord, holder: Holder): void {
    assert(lock.holder === undefined, `granting held lock ${lock.name}`);
    assert(
      holder.token > lock.lastToken,
      `token ${holder.token} for lock ${lock.name} does not exceed ${lock.lastToken}`,
    );
    lock.holder = holder;
    lock.lastToken = holder.token;
    this.grantedThisIndex.add(lock.name);
    this.pending.delete(lock.name);
    this.leaseLocks(holder.lease).held.add(lock.name);
  }

  /** unhold clears the holder; the caller then hands the lock off (which may forget it). */
  private unhold(lock: LockRecord): void {
    const holder = lock.holder!;
    lock.holder = undefined;
    this.dropLeaseLock(holder.lease, lock.name, 'held');
  }

  /**
   * removeWaiter takes a lease's waiter out of a queue; a free lock left empty is forgotten
   * unless the caller is about to grant it (`forgetIfEmpty` false).
   */
  private removeWaiter(lock: LockRecord, lease: number, forgetIfEmpty = true): Waiter {
    const i = lock.waiters.findIndex((w) => w.lease === lease);
    assert(i >= 0, `lease ${lease} does not wait on ${lock.name}`);
    const w = lock.waiters[i]!;
    lock.waiters.splice(i, 1);
    if (w.waitDeadline !== undefined) this.waitIndex.delete(w);
    this.dropLeaseLock(lease, lock.name, 'waiting');
    if (forgetIfEmpty && lock.holder === undefined && lock.waiters.length === 0) this.forget(lock);
    return w;
  }

  /**
   * handOff gives a free lock to its first eligible waiter with token `index`, unless it was
   * granted earlier in this entry or no waiter is eligible (then it stays pending). A free
   * lock with no waiters is forgotten.
   */
  private handOff(lock: LockRecord, index: number, now: number): Grant | undefined {
    assert(lock.holder === undefined, `handing off held lock ${lock.name}`);
    if (lock.waiters.length === 0) {
      this.forget(lock);
      return undefined;
    }
    this.pending.add(lock.name);
    if (this.grantedThisIndex.has(lock.name)) return undefined;
    const w = lock.waiters.find((x) => this.eligible(x, now));
    if (w === undefined) return undefined;
    this.removeWaiter(lock, w.lease, false);
    this.grantTo(lock, { lease: w.lease, token: index, since: now, waiterId: w.waiterId });
    return { name: lock.name, lease: w.lease, waiterId: w.waiterId, token: index };
  }

  private requireName(name: unknown): asserts name is string {
    if (typeof name !== 'string' || name.length === 0)
      throw invalid('a lock name must be a non-empty string');
    if (name.length > this.config.nameLengthMax)
      throw new DkvError(
        ErrorCode.TooLarge,
        `lock name is ${name.length} characters, over nameLengthMax ${this.config.nameLengthMax}`,
      );
  }
}

function infoOf(lock: LockRecord, now: number): LockInfo {
  const h = lock.holder;
  const waiters = lock.waiters.map((w) =>
    w.waitDeadline === undefined
      ? { lease: w.lease, waiterId: w.waiterId, since: w.since }
      : { lease: w.lease, waiterId: w.waiterId, since: w.since, waitDeadline: w.waitDeadline },
  );
  if (h === undefined) return { name: lock.name, waiters, lastToken: lock.lastToken };
  return {
    name: lock.name,
    holder: { lease: h.lease, token: h.token, waiterId: h.waiterId, since: h.since, heldMs: now - h.since },
    waiters,
    lastToken: lock.lastToken,
  };
}

interface LockTableInternals {
  readonly leases: LeaseTable;
  /** Set under the planted bug `lock-no-lease-check`: holders and waiters may name ended leases. */
  readonly leasesMayBeGone: boolean;
  readonly locks: Map<string, LockRecord>;
  readonly grantedThisIndex: Set<string>;
  setCurrentIndex(index: number): void;
  install(lock: LockRecord): void;
}

/** LockLoader validates lock rows one by one, across part boundaries. */
class LockLoader {
  private readonly t: LockTableInternals;
  private state: 'start' | 'granted' | 'locks' = 'start';
  private currentIndex = 0;
  private lastGranted: string | undefined;
  private current: LockRecord | undefined;
  private lastName: string | undefined;
  /** leasesOfCurrent are the leases already seen on the current lock (holder and waiters). */
  private readonly leasesOfCurrent = new Set<number>();

  constructor(table: LockTable) {
    this.t = LockTable.loaderAccess(table);
  }

  push(rows: readonly unknown[]): void {
    for (const row of rows) {
      if (!Array.isArray(row)) throw corrupted('lock row is not an array');
      const kind = row[0];
      if (kind === 'index') {
        if (
          this.state !== 'start' ||
          row.length !== 2 ||
          !Number.isSafeInteger(row[1]) ||
          (row[1] as number) < 0
        )
          throw corrupted('malformed or misplaced index row');
        this.currentIndex = row[1] as number;
        this.t.setCurrentIndex(this.currentIndex);
        this.state = 'granted';
      } else if (kind === 'granted') {
        const name = row[1];
        if (this.state !== 'granted' || row.length !== 2 || typeof name !== 'string' || name.length === 0)
          throw corrupted('malformed or misplaced granted row');
        if (this.lastGranted !== undefined && !(this.lastGranted < name))
          throw corrupted('granted rows out of order');
        this.lastGranted = name;
        this.t.grantedThisIndex.add(name);
      } else if (kind === 'lock') {
        if (this.state === 'start') throw corrupted('lock row before the index row');
        this.closeCurrent();
        this.state = 'locks';
        this.current = this.parseLock(row);
      } else if (kind === 'wait') {
        if (this.current === undefined) throw corrupted('wait row before any lock row');
        this.current.waiters.push(this.parseWaiter(row, this.current.name));
      } else throw corrupted(`unknown lock row kind ${JSON.stringify(kind)}`);
    }
  }

  finish(): void {
    if (this.state === 'start') throw corrupted('no index row');
    this.closeCurrent();
  }

  private parseLock(row: unknown[]): LockRecord {
    const [, name, lastToken, holder] = row;
    if (row.length !== 4 || typeof name !== 'string' || name.length === 0)
      throw corrupted(`malformed lock row ${JSON.stringify(row)}`);
    if (this.lastName !== undefined && !(this.lastName < name)) throw corrupted('lock names out of order');
    this.lastName = name;
    if (
      !Number.isSafeInteger(lastToken) ||
      (lastToken as number) < 0 ||
      (lastToken as number) > this.currentIndex
    )
      throw corrupted(`bad lastToken for lock ${JSON.stringify(name)}`);
    this.leasesOfCurrent.clear();
    let h: Holder | undefined;
    if (holder !== null) {
      if (!Array.isArray(holder) || holder.length !== 4)
        throw corrupted(`bad holder of ${JSON.stringify(name)}`);
      const [lease, token, since, waiterId] = holder as unknown[];
      if (!isId(lease) || !isId(token) || !Number.isSafeInteger(since) || typeof waiterId !== 'string')
        throw corrupted(`bad holder of ${JSON.stringify(name)}`);
      if (token !== lastToken)
        throw corrupted(`holder token of ${JSON.stringify(name)} is not its lastToken`);
      this.requireLease(lease, name);
      this.leasesOfCurrent.add(lease);
      h = { lease, token, since: since as number, waiterId };
    }
    return { name, holder: h, waiters: [], lastToken: lastToken as number };
  }

  private parseWaiter(row: unknown[], name: string): Waiter {
    const [, lease, waiterId, since, waitDeadline] = row;
    if (
      row.length !== 5 ||
      !isId(lease) ||
      typeof waiterId !== 'string' ||
      !Number.isSafeInteger(since) ||
      (waitDeadline !== null && !Number.isSafeInteger(waitDeadline))
    )
      throw corrupted(`malformed wait row on ${JSON.stringify(name)}`);
    this.requireLease(lease, name);
    if (this.leasesOfCurrent.has(lease))
      throw corrupted(`lease ${lease} appears twice on ${JSON.stringify(name)}`);
    this.leasesOfCurrent.add(lease);
    return {
      name,
      lease,
      waiterId,
      since: since as number,
      waitDeadline: waitDeadline === null ? undefined : (waitDeadline as number),
    };
  }

  private requireLease(lease: number, name: string): void {
    if (!this.t.leasesMayBeGone && this.t.leases.get(lease) === undefined)
      throw corrupted(`lock ${JSON.stringify(name)} names lease ${lease}, which is not in the lease table`);
  }

  private closeCurrent(): void {
    const lock = this.current;
    if (lock === undefined) return;
    if (lock.holder === undefined && lock.waiters.length === 0)
      throw corrupted(`lock ${JSON.stringify(lock.name)} has neither holder nor waiters`);
    this.t.install(lock);
    this.current = undefined;
  }
}

// ---------------------------------------------------------------------------------------
// Snapshot parts

function partsOf(t: 'leases' | 'locks', rows: unknown[][]): EngineSnapshot {
  return {
    *parts() {
      for (let i = 0; i < rows.length; i += LEASE_LOCK_PART_ROWS_MAX)
        yield { t, v: 1, rows: rows.slice(i, i + LEASE_LOCK_PART_ROWS_MAX) };
    },
  };
}

function partHeader(part: unknown): { t: unknown; rows: unknown[] } {
  if (typeof part !== 'object' || part === null || Array.isArray(part))
    throw corrupted('part is not an object');
  const p = part as { t?: unknown; v?: unknown; rows?: unknown };
  if (p.v !== 1) throw corrupted(`unsupported part version ${String(p.v)}`);
  if (!Array.isArray(p.rows)) throw corrupted('part rows is not an array');
  return { t: p.t, rows: p.rows };
}

function rowsOf(part: unknown, t: 'leases' | 'locks'): unknown[] {
  const h = partHeader(part);
  if (h.t !== t) throw corrupted(`expected a ${t} part, got ${String(h.t)}`);
  return h.rows;
}

// ---------------------------------------------------------------------------------------
// The engine

/** LeaseLockConfig configures both tables. */
export interface LeaseLockConfig {
  readonly leases?: LeaseConfig;
  readonly locks?: LockConfig;
}

/** LeasesEnded is what ending leases did: the leases with their keys, and the lock outcome. */
export interface LeasesEnded extends LeaseEndOutcome {
  /** leases ended, in the order they ended ((deadline, id) for expiry, id order for `end`). */
  readonly leases: EndedLease[];
}

/**
 * LeaseLockEngine is the lease-and-lock engine the state machine holds: `leases` and `locks`
 * for everything else, and the three ways a lease ends, which also release its locks.
 */
export class LeaseLockEngine {
  readonly leases: LeaseTable;
  readonly locks: LockTable;

  constructor(config: LeaseLockConfig = {}, tables?: { leases: LeaseTable; locks: LockTable }) {
    this.leases = tables?.leases ?? new LeaseTable(config.leases);
    this.locks = tables?.locks ?? new LockTable(this.leases, config.locks);
  }

  /**
   * revoke ends lease `id` in entry `index` (LEASE_NOT_FOUND if absent): its keys are
   * returned for deletion (cause 'lease'), its locks released and handed over, its waits
   * cancelled.
   */
  revoke(id: number, index: number, now: number): LeasesEnded {
    const lease = this.leases.revoke(id);
    return { leases: [lease], ...this.locks.leaseEnded([id], index, now) };
  }

  /** expire ends every lease whose deadline is `<= now` (at most `max`), in (deadline, id) order. */
  expire(now: number, index: number, max = Number.POSITIVE_INFINITY): LeasesEnded {
    const leases = this.leases.expire(now, max);
    return {
      leases,
      ...this.locks.leaseEnded(
        leases.map((l) => l.id),
        index,
        now,
      ),
    };
  }

  /**
   * end ends the given leases (the time-wheel path; the caller checks their deadlines),
   * skipping ids not held, in id order.
   */
  end(ids: readonly number[], index: number, now: number): LeasesEnded {
    const sorted = [...new Set(ids)].sort((a, b) => a - b);
    const leases: EndedLease[] = [];
    for (const id of sorted) {
      const ended = this.leases.end(id);
      if (ended !== undefined) leases.push(ended);
    }
    return { leases, ...this.locks.leaseEnded(sorted, index, now) };
  }

  /** nextDeadline is the earliest lease deadline or wait deadline, for scheduling the next tick. */
  nextDeadline(): number | undefined {
    const a = this.leases.nextDeadline();
    const b = this.locks.nextWaitDeadline();
    return a === undefined ? b : b === undefined ? a : Math.min(a, b);
  }

  /** snapshot returns a frozen copy of both tables: the lease parts, then the lock parts. */
  snapshot(): EngineSnapshot {
    const leases = this.leases.snapshot();
    const locks = this.locks.snapshot();
    return {
      *parts() {
        yield* leases.parts();
        yield* locks.parts();
      },
    };
  }

  /** restore rebuilds the engine from `snapshot().parts()`; malformed input throws CORRUPTED. */
  static restore(parts: Iterable<unknown>, config: LeaseLockConfig = {}): LeaseLockEngine {
    const leases = new LeaseTable(config.leases);
    const locks = new LockTable(leases, config.locks);
    const leaseLoader = new LeaseLoader(leases);
    const lockLoader = new LockLoader(locks);
    let phase: 'leases' | 'locks' = 'leases';
    for (const part of parts) {
      const { t, rows } = partHeader(part);
      if (t === 'leases' && phase === 'leases') leaseLoader.push(rows);
      else if (t === 'locks') {
        phase = 'locks';
        lockLoader.push(rows);
      } else throw corrupted(`unexpected part ${String(t)} in phase ${phase}`);
    }
    lockLoader.finish();
    return new LeaseLockEngine(config, { leases, locks });
  }
}
