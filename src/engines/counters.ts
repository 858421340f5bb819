/**
 * Counters: named signed 64-bit integers with optional fixed-window TTLs, in their own
 * namespace (not the segment store). They serve atomic increments, sequence numbers and
 * rate limiting: `add(name, 1, now, { ttlMs: 1000 })` counts the requests of a one-second
 * window that starts at the first add.
 *
 * Design:
 * - `byName` is a B+ tree of immutable records (a write replaces the record), so a snapshot
 *   is an O(1) clone of the tree that later writes never disturb, and every listing is in
 *   name order by construction.
 * - `byDeadline` orders the counters that have a deadline by (deadline, name), so `expire`
 *   and `nextDeadline` cost O(log n) per counter and their order is defined by data.
 * - A counter whose deadline has passed (`deadline <= now`) is dead at once: every read and
 *   write treats it as absent (value 0) even before `expire` removes it. The engine never
 *   ends a counter early or late relative to the `now` it is given.
 * - Arithmetic is exact (bigint) and checked against [-2^63, 2^63 - 1]; an overflow is an
 *   INVALID_ARGUMENT and changes nothing.
 *
 * Complexity: add/set/get/delete O(log n); expire O(k log n) for k expired; snapshot O(1)
 * plus O(n) to stream; restore O(n log n).
 */
import BTreeModule from 'sorted-btree';
import { DkvError, ErrorCode } from '../errors.js';
import type { EngineSnapshot } from './types.js';

type BTreeClass = typeof BTreeModule.default;
/** BTree is sorted-btree's class, whether the CJS module arrives as its exports or as `default`. */
const BTree: BTreeClass =
  (BTreeModule as unknown as { default?: BTreeClass }).default ?? (BTreeModule as unknown as BTreeClass);
type Tree<K, V> = InstanceType<typeof BTreeModule.default<K, V>>;

/** INT64_MIN and INT64_MAX bound every counter value and delta. */
export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;

/** COUNTER_PART_ROWS_MAX bounds the counters in one snapshot part. */
export const COUNTER_PART_ROWS_MAX = 1000;

/** CountersConfig holds the engine's limits; every field has a default. */
export interface CountersConfig {
  /** countersMax bounds the live and not-yet-expired counters (OVERLOADED beyond it). */
  readonly countersMax?: number;
  /** nameLengthMax bounds a name, in UTF-16 code units (TOO_LARGE beyond it). */
  readonly nameLengthMax?: number;
  /** ttlMsMax bounds a window (INVALID_ARGUMENT beyond it). */
  readonly ttlMsMax?: number;
}

const DEFAULTS: Required<CountersConfig> = {
  countersMax: 1_000_000,
  nameLengthMax: 1024,
  ttlMsMax: 7 * 24 * 3600 * 1000,
};

/** CounterOptions are the options of `add` and `set`. */
export interface CounterOptions {
  /**
   * ttlMs gives the counter a deadline of `now + ttlMs`. With `add` it applies only when the
   * add creates the counter (absent or expired): later adds never extend the window, which is
   * what fixed-window rate limiting needs. With `set` it always applies.
   */
  readonly ttlMs?: number;
}

/** CounterEntry is one counter as `list` shows it. */
export interface CounterEntry {
  readonly name: string;
  readonly value: bigint;
  /** deadline is the replicated-clock time (ms) at which the counter ends, if it has one. */
  readonly deadline?: number;
}

/** CounterRecord is immutable: a write replaces it, so a cloned tree stays a frozen view. */
interface CounterRecord {
  readonly value: bigint;
  readonly deadline: number | undefined;
}

/** DeadlineKey orders the expiry index by (deadline, name). */
type DeadlineKey = readonly [deadline: number, name: string];

function compareDeadlineKeys(a: DeadlineKey, b: DeadlineKey): number {
  if (a[0] !== b[0]) return a[0] - b[0];
  return a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0;
}

function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`counters: assertion failed: ${message}`);
}

function invalid(message: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, message);
}

function corrupted(message: string): DkvError {
  return new DkvError(ErrorCode.Corrupted, `counters snapshot: ${message}`);
}

/** requireNow asserts the replicated clock value: the state machine's duty, not the client's. */
function requireNow(now: number): void {
  assert(Number.isSafeInteger(now) && now >= 0, `now must be a non-negative safe integer, got ${now}`);
}

/**
 * toInt64 converts a client-supplied integer (bigint, or a number that is a safe integer) to
 * a bigint in the signed 64-bit range, or throws INVALID_ARGUMENT.
 */
export function toInt64(value: unknown, what: string): bigint {
  let big: bigint;
  if (typeof value === 'bigint') big = value;
  else if (typeof value === 'number') {
    if (!Number.isSafeInteger(value))
      throw invalid(`${what} must be a safe integer or a bigint, got ${String(value)}`);
    big = BigInt(value);
  } else throw invalid(`${what} must be an integer (number or bigint), got ${typeof value}`);
  if (big < INT64_MIN || big > INT64_MAX)
    throw invalid(`${what} ${big} is outside the signed 64-bit range [${INT64_MIN}, ${INT64_MAX}]`);
  return big;
}

/**
 * Counters is the counter engine. Every method is deterministic in its arguments: the same
 * calls give the same results and the same state on every replica.
 */
export class Counters {
  private readonly config: Required<CountersConfig>;
  /** byName holds every counter not yet removed, including dead ones that `expire` has not reached. */
  private byName: Tree<string, CounterRecord>;
  /** byDeadline holds (deadline, name) for every record in byName that has a deadline. */
  private readonly byDeadline: Tree<DeadlineKey, undefined>;

  constructor(config: CountersConfig = {}) {
    this.config = { ...DEFAULTS, ...config };
    this.byName = new BTree<string, CounterRecord>(undefined, compareNames);
    this.byDeadline = new BTree<DeadlineKey, undefined>(undefined, compareDeadlineKeys);
  }

  /** size is the number of counters held, counting dead ones that `expire` has not removed yet. */
  get size(): number {
    return this.byName.size;
  }

  /**
   * add adds `delta` to the counter (a missing or expired counter starts at 0) and returns the
   * new value. It throws INVALID_ARGUMENT, changing nothing, if the result leaves the signed
   * 64-bit range or an argument is malformed. `opts.ttlMs` applies only when the add creates
   * the counter (see CounterOptions).
   */
  add(name: string, delta: bigint | number, now: number, opts?: CounterOptions): bigint {
    this.requireName(name);
    const d = toInt64(delta, 'delta');
    requireNow(now);
    const ttlMs = this.ttlOf(opts);
    const rec = this.live(name, now);
    if (rec === undefined) {
      const deadline = ttlMs === undefined ? undefined : now + ttlMs;
      this.put(name, { value: d, deadline });
      return d;
    }
    const next = rec.value + d;
    if (next < INT64_MIN || next > INT64_MAX)
      throw invalid(`counter ${JSON.stringify(name)}: ${rec.value} + ${d} overflows signed 64-bit`);
    this.byName.set(name, { value: next, deadline: rec.deadline });
    return next;
  }

  /** get returns the counter's value, or 0 if it is absent or past its deadline. */
  get(name: string, now: number): bigint {
    this.requireName(name);
    requireNow(now);
    return this.live(name, now)?.value ?? 0n;
  }

  /**
   * set replaces the counter's value and returns the previous one (0 if absent or expired).
   * Like Redis SET, it replaces the deadline too: `now + opts.ttlMs`, or none without ttlMs.
   */
  set(name: string, value: bigint | number, now: number, opts?: CounterOptions): bigint {
    this.requireName(name);
    const v = toInt64(value, 'value');
    requireNow(now);
    const ttlMs = this.ttlOf(opts);
    const prev = this.live(name, now)?.value ?? 0n;
    this.put(name, { value: v, deadline: ttlMs === undefined ? undefined : now + ttlMs });
    return prev;
  }

  /** delete removes the counter and tells whether a live one existed. */
  delete(name: string, now: number): boolean {
    this.requireName(name);
    requireNow(now);
    const existed = this.live(name, now) !== undefined;
    this.remove(name);
    return existed;
  }

  /**
   * expire removes the counters whose deadline is `<= now` and returns their names in
   * (deadline, name) order; `max` bounds how many one call removes (the rest stay dead and
   * invisible until the next call).
   */
  expire(now: number, max = Number.POSITIVE_INFINITY): string[] {
    requireNow(now);
    const out: string[] = [];
    while (out.length < max) {
      const first = this.byDeadline.minKey();
      if (first === undefined || first[0] > now) break;
      this.remove(first[1]);
      out.push(first[1]);
    }
    return out;
  }

  /** deadlineOf returns the counter's deadline, if it exists and has one (dead or not). */
  deadlineOf(name: string): number | undefined {
    return this.byName.get(name)?.deadline;
  }

  /** nextDeadline returns the earliest deadline held, for scheduling the next expiry. */
  nextDeadline(): number | undefined {
    return this.byDeadline.minKey()?.[0];
  }

  /**
   * list returns the live counters in name order, starting after `after` (exclusive) when
   * given, at most `limit` of them.
   */
  list(now: number, opts: { after?: string; limit?: number } = {}): CounterEntry[] {
    requireNow(now);
    const limit = opts.limit ?? Number.POSITIVE_INFINITY;
    const out: CounterEntry[] = [];
    if (limit <= 0) return out;
    for (const [name, rec] of this.byName.entries(opts.after)) {
      if (opts.after !== undefined && name === opts.after) continue;
      if (rec.deadline !== undefined && rec.deadline <= now) continue;
      out.push(rec.deadline === undefined ? { name, value: rec.value } : { name, ...rec });
      if (out.length >= limit) break;
    }
    return out;
  }

  /**
   * snapshot returns a frozen view (an O(1) clone of the name tree), streamed as parts of at
   * most COUNTER_PART_ROWS_MAX rows `[name, value, deadline | null]` in name order. Dead
   * counters that `expire` has not removed are included, so the restored engine expires
   * them exactly as the original would.
   */
  snapshot(): EngineSnapshot {
    const frozen = this.byName.clone();
    return {
      *parts() {
        let rows: [string, bigint, number | null][] = [];
        for (const [name, rec] of frozen.entries()) {
          rows.push([name, rec.value, rec.deadline ?? null]);
          if (rows.length >= COUNTER_PART_ROWS_MAX) {
            yield { t: 'counters', v: 1, rows };
            rows = [];
          }
        }
        if (rows.length > 0) yield { t: 'counters', v: 1, rows };
      },
    };
  }

  /**
   * restore rebuilds an engine from `snapshot().parts()`, validating every part; malformed
   * input throws DkvError CORRUPTED. Values may arrive as bigints or as safe-integer numbers
   * (a codec may narrow small 64-bit integers).
   */
  static restore(parts: Iterable<unknown>, config: CountersConfig = {}): Counters {
    const out = new Counters(config);
    let prevName: string | undefined;
    for (const part of parts) {
      if (typeof part !== 'object' || part === null || Array.isArray(part))
        throw corrupted('part is not an object');
      const p = part as { t?: unknown; v?: unknown; rows?: unknown };
      if (p.t !== 'counters') throw corrupted(`unexpected part type ${String(p.t)}`);
      if (p.v !== 1) throw corrupted(`unsupported version ${String(p.v)}`);
      if (!Array.isArray(p.rows)) throw corrupted('rows is not an array');
      for (const row of p.rows as unknown[]) {
        if (!Array.isArray(row) || row.length !== 3) throw corrupted('row is not [name, value, deadline]');
        const [name, value, deadline] = row as [unknown, unknown, unknown];
        if (typeof name !== 'string' || name.length === 0) throw corrupted('bad counter name');
        if (prevName !== undefined && !(prevName < name))
          throw corrupted(`names out of order: ${JSON.stringify(prevName)} then ${JSON.stringify(name)}`);
        prevName = name;
        let v: bigint;
        try {
          v = toInt64(value, 'value');
        } catch {
          throw corrupted(`bad value for counter ${JSON.stringify(name)}`);
        }
        if (deadline !== null && !(Number.isSafeInteger(deadline) && (deadline as number) >= 0))
          throw corrupted(`bad deadline for counter ${JSON.stringify(name)}`);
        const d = deadline === null ? undefined : (deadline as number);
        out.byName.set(name, { value: v, deadline: d });
        if (d !== undefined) out.byDeadline.set([d, name], undefined);
      }
    }
    return out;
  }

  /** live returns the record if it exists and its deadline has not passed. */
  private live(name: string, now: number): CounterRecord | undefined {
    const rec = this.byName.get(name);
    if (rec === undefined) return undefined;
    if (rec.deadline !== undefined && rec.deadline <= now) return undefined;
    return rec;
  }

  /** put stores a record in place of whatever is there (live or dead), keeping the indexes in step. */
  private put(name: string, rec: CounterRecord): void {
    const old = this.byName.get(name);
    // Dead counters count against the limit until `expire` removes them (each entry does).
    if (old === undefined && this.byName.size >= this.config.countersMax)
      throw new DkvError(
        ErrorCode.Overloaded,
        `too many counters (countersMax ${this.config.countersMax}); delete some or let them expire`,
      );
    if (old?.deadline !== undefined) this.byDeadline.delete([old.deadline, name]);
    this.byName.set(name, rec);
    if (rec.deadline !== undefined) this.byDeadline.set([rec.deadline, name], undefined);
  }

  private remove(name: string): void {
    const old = this.byName.get(name);
    if (old === undefined) return;
    if (old.deadline !== undefined) this.byDeadline.delete([old.deadline, name]);
    this.byName.delete(name);
  }

  private requireName(name: unknown): asserts name is string {
    if (typeof name !== 'string' || name.length === 0)
      throw invalid('a counter name must be a non-empty string');
    if (name.length > this.config.nameLengthMax)
      throw new DkvError(
        ErrorCode.TooLarge,
        `counter name is ${name.length} characters, over nameLengthMax ${this.config.nameLengthMax}`,
      );
  }

  private ttlOf(opts: CounterOptions | undefined): number | undefined {
    const ttlMs = opts?.ttlMs;
    if (ttlMs === undefined) return undefined;
    if (!Number.isSafeInteger(ttlMs) || ttlMs < 1 || ttlMs > this.config.ttlMsMax)
      throw invalid(`ttlMs must be an integer in [1, ${this.config.ttlMsMax}], got ${String(ttlMs)}`);
    return ttlMs;
  }
}
