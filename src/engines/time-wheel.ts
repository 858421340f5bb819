/**
 * TimeWheel schedules deadlines (TTL'd keys, leases, lock-wait timeouts, sessions) on the
 * replicated clock and hands back, in (deadline, id) order, every id whose deadline has
 * passed. It is a hierarchical timing wheel (Varghese and Lauck; the Linux timer wheel's
 * aligned levels) with exact deadlines.
 *
 * Layout. Time is cut into ticks of `tickMs`; tick(d) = floor(d / tickMs). There are L levels
 * of S slots (S a power of two); a level-i slot spans W_i = S^i ticks. Write ticks in base S:
 * an entry with tick t sits at the level of the highest base-S digit in which t differs from
 * the wheel's current tick `cur`, in the slot named by t's digit at that level (t == cur sits
 * in level 0's slot of `cur`, the current bucket). Entries that differ above the top level go
 * to an unsorted overflow list, revisited only when `cur` crosses into a new top-level block
 * (once every S^L >= 2^32 ticks). Entries already due when scheduled (deadline <= now) go to a
 * due list that the next `advance` empties.
 *
 * This layout orders the buckets: due < current bucket < later level-0 slots < level-1
 * slots < ... < overflow, and every bucket of level i holds one aligned W_i-tick range.
 *
 * Exactness. Ticks only decide where an entry waits; expiry compares the exact deadline.
 * When the tick moves from c to n > c, every slot whose range ends at or before n is expired
 * whole (its deadlines are < n * tickMs <= now), the one slot per level whose range holds n
 * is cascaded (each entry placed again, lower down, or expired if due), and the rest stay.
 * While the tick stays the same, the current bucket is scanned only when `now` reaches its
 * minimum deadline.
 *
 * Costs. schedule, cancel, has, deadlineOf: O(1), independent of how many entries are
 * pending (a Map lookup, a list link, and L divisions with L = ceil(32 / log2 S), 4 for
 * S = 256). advance: O(L * S) slot visits at most, however far time jumps, plus O(1) per
 * entry that cascades (at most L + 1 times in its life) and O(k log k) for the k that expire
 * (the sort); within one tick, a scan of the current bucket costs its size and happens at
 * most once per distinct `now` at or past its minimum. Cascades are not spread out: the tick
 * that enters a busy slot of a high level moves all of that slot's entries at once (for keys
 * spread over hours, a level-2 slot is 11 minutes of deadlines at tickMs 10; a level-3 slot,
 * 46 hours). Crossing a top-level block rescans the whole overflow list. nextDeadline: O(1)
 * while cached; after the earliest entry expires or is cancelled, one call costs O(L * S)
 * plus the size of the earliest non-empty bucket when that bucket lost its minimum.
 * snapshot: O(n log b) to freeze (bucket-wise sorts), with parts of at most
 * SNAPSHOT_PART_RECORDS_MAX records.
 *
 * Determinism: every output (expiry order, nextDeadline, snapshot) is a function of the
 * (id, deadline) pairs and the clock (ids compare as JavaScript strings, by UTF-16 code
 * unit), never of insertion order or of tickMs and S, so a restored wheel, even one with
 * another layout, behaves exactly like the original.
 */

import { DkvError, ErrorCode } from '../errors.js';
import type { EngineSnapshot } from './types.js';

/** TimeWheelOptions configures a wheel's layout; outputs never depend on it. */
export interface TimeWheelOptions {
  /** Resolution of the wheel in ms (a positive integer), e.g. 10. */
  readonly tickMs: number;
  /** Slots per level, a power of two from 2 to 4096; default 256. */
  readonly slotsPerLevel?: number;
  /**
   * Levels before the overflow list; default ceil(32 / log2(slotsPerLevel)), so the levels
   * span at least 2^32 ticks. Small values exist for tests that want to exercise overflow.
   */
  readonly levels?: number;
}

/** SNAPSHOT_PART_RECORDS_MAX bounds the [id, deadline] records of one snapshot part. */
export const SNAPSHOT_PART_RECORDS_MAX = 1024;

const SLOTS_DEFAULT = 256;
const SLOTS_MAX = 4096;
const LEVEL_SPAN_BITS_MIN = 32;
const LEVELS_MAX = 32;

/** Entry is one scheduled id, linked into exactly one bucket's list. */
class Entry {
  readonly id: string;
  deadline: number;
  /** The bucket holding the entry, or -1 while detached. */
  bucket: number;
  prev: Entry | undefined;
  next: Entry | undefined;

  constructor(id: string, deadline: number) {
    this.id = id;
    this.deadline = deadline;
    this.bucket = -1;
    this.prev = undefined;
    this.next = undefined;
  }
}

function byDeadlineThenId(a: Entry, b: Entry): number {
  return a.deadline - b.deadline || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function corrupted(message: string): DkvError {
  return new DkvError(ErrorCode.Corrupted, `time wheel snapshot: ${message}`);
}

/**
 * TimeWheel is the replicated TTL scheduler: `schedule` and `cancel` in O(1), `advance(now)`
 * returns exactly the ids whose deadline is <= now, sorted by (deadline, id), and removes
 * them. See the file comment for the layout and the costs.
 */
export class TimeWheel {
  private readonly tickMs: number;
  /** S: slots per level, a power of two. */
  private readonly slots: number;
  /** L: levels before the overflow list. */
  private readonly levels: number;
  /** widths[i] = S^i ticks, for i in 0..L. */
  private readonly widths: number[];
  /** The due list's bucket: entries scheduled with deadline <= now. */
  private readonly dueBucket: number;
  /** The overflow list's bucket: entries beyond the top level's current block. */
  private readonly overflowBucket: number;

  /** heads[b] is the first entry of bucket b (level i slot s is b = i * S + s), or undefined. */
  private readonly heads: (Entry | undefined)[];
  /** Invariant: mins[b] <= every deadline in bucket b; Infinity when the bucket is empty. */
  private readonly mins: Float64Array;
  /** Invariant: minExact[b] = 1 implies mins[b] is the minimum deadline in bucket b. */
  private readonly minExact: Uint8Array;
  /** counts[i] is the number of entries at level i; counts[L] due, counts[L + 1] overflow. */
  private readonly counts: Int32Array;
  private readonly byId = new Map<string, Entry>();

  /** Invariant: nowMs never decreases. */
  private nowMs: number;
  /** Invariant: cur = tick(nowMs); every entry with tick < cur has been expired. */
  private cur: number;
  /** curBlocks[i] = floor(cur / widths[i + 1]): cur's block above level i. */
  private readonly curBlocks: Float64Array;
  /** Invariant: nextValid implies nextCache is the earliest pending deadline (Infinity if none). */
  private nextValid = true;
  private nextCache = Number.POSITIVE_INFINITY;

  /** constructor builds an empty wheel at the replicated time `now` (ms). */
  constructor(opts: TimeWheelOptions, now: number) {
    const tickMs = opts.tickMs;
    if (!Number.isSafeInteger(tickMs) || tickMs < 1) {
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `time wheel: tickMs must be a positive integer, got ${tickMs}`,
      );
    }
    const slots = opts.slotsPerLevel ?? SLOTS_DEFAULT;
    if (!Number.isSafeInteger(slots) || slots < 2 || slots > SLOTS_MAX || (slots & (slots - 1)) !== 0) {
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `time wheel: slotsPerLevel must be a power of two in [2, ${SLOTS_MAX}], got ${slots}`,
      );
    }
    const bits = Math.log2(slots);
    const levels = opts.levels ?? Math.ceil(LEVEL_SPAN_BITS_MIN / bits);
    if (!Number.isSafeInteger(levels) || levels < 1 || levels > LEVELS_MAX || bits * levels > 52) {
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `time wheel: levels must be in [1, ${LEVELS_MAX}] with slotsPerLevel^levels <= 2^52, got ${levels}`,
      );
    }
    checkNow(now);
    this.tickMs = tickMs;
    this.slots = slots;
    this.levels = levels;
    this.widths = [];
    for (let i = 0; i <= levels; i++) this.widths.push(slots ** i);
    this.dueBucket = levels * slots;
    this.overflowBucket = levels * slots + 1;
    const buckets = levels * slots + 2;
    this.heads = new Array<Entry | undefined>(buckets).fill(undefined);
    this.mins = new Float64Array(buckets).fill(Number.POSITIVE_INFINITY);
    this.minExact = new Uint8Array(buckets).fill(1);
    this.counts = new Int32Array(levels + 2);
    this.nowMs = now;
    this.cur = this.tickOf(now);
    this.curBlocks = new Float64Array(levels);
    this.updateCurBlocks();
  }

  /** size is the number of pending ids. */
  get size(): number {
    return this.byId.size;
  }

  /** now is the replicated time (ms) the wheel has advanced to. */
  get now(): number {
    return this.nowMs;
  }

  /**
   * schedule sets `id` to expire at `deadline` (ms, a safe integer), replacing any deadline
   * it had. A deadline <= now is returned by the next advance.
   */
  schedule(id: string, deadline: number): void {
    if (!Number.isSafeInteger(deadline)) {
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `time wheel: deadline must be a safe integer, got ${deadline}`,
      );
    }
    let e = this.byId.get(id);
    if (e === undefined) {
      e = new Entry(id, deadline);
      this.byId.set(id, e);
    } else {
      this.unlink(e);
      if (e.deadline === this.nextCache) this.nextValid = false;
      e.deadline = deadline;
    }
    if (deadline <= this.nowMs) {
      this.link(e, this.dueBucket);
    } else {
      this.place(e);
    }
    if (this.nextValid && deadline < this.nextCache) this.nextCache = deadline;
  }

  /** cancel removes `id`; it tells whether the id was pending. */
  cancel(id: string): boolean {
    const e = this.byId.get(id);
    if (e === undefined) return false;
    this.unlink(e);
    this.byId.delete(id);
    if (this.byId.size === 0) {
      this.nextValid = true;
      this.nextCache = Number.POSITIVE_INFINITY;
    } else if (e.deadline === this.nextCache) {
      this.nextValid = false;
    }
    return true;
  }

  /** deadlineOf is the pending deadline of `id`, or undefined if it is not pending. */
  deadlineOf(id: string): number | undefined {
    return this.byId.get(id)?.deadline;
  }

  /** has tells whether `id` is pending. */
  has(id: string): boolean {
    return this.byId.has(id);
  }

  /**
   * nextDeadline is the exact earliest pending deadline, or undefined when nothing is pending.
   * It is cached; recomputing it costs O(L * S) plus, when the earliest bucket lost its
   * minimum, a scan of that bucket.
   */
  nextDeadline(): number | undefined {
    if (this.byId.size === 0) return undefined;
    if (!this.nextValid) {
      this.nextCache = this.exactMin(this.firstBucket());
      this.nextValid = true;
    }
    return this.nextCache;
  }

  /**
   * advance moves the wheel to `now` (ms) and returns every id whose deadline is <= now,
   * sorted by (deadline, id), removing them. A `now` below the wheel's time changes nothing
   * and returns [].
   */
  advance(now: number): string[] {
    checkNow(now);
    if (now < this.nowMs) return [];
    const expired: Entry[] = [];
    if (this.heads[this.dueBucket] !== undefined) this.detachBucket(this.dueBucket, expired);
    const tick = this.tickOf(now);
    if (tick === this.cur) {
      this.nowMs = now;
      const current = this.currentBucket();
      if (this.mins[current]! <= now) this.expireFromCurrent(now, expired);
    } else {
      const cascading: Entry[] = [];
      this.passTo(tick, expired, cascading);
      this.nowMs = now;
      this.cur = tick;
      this.updateCurBlocks();
      for (const e of cascading) {
        if (e.deadline <= now) expired.push(e);
        else this.place(e);
      }
    }
    if (expired.length === 0) return [];
    expired.sort(byDeadlineThenId);
    const ids = new Array<string>(expired.length);
    for (let i = 0; i < expired.length; i++) {
      const e = expired[i]!;
      this.byId.delete(e.id);
      ids[i] = e.id;
    }
    this.nextValid = this.byId.size === 0;
    if (this.nextValid) this.nextCache = Number.POSITIVE_INFINITY;
    return ids;
  }

  /**
   * snapshot freezes the pending (id, deadline) pairs, sorted by (deadline, id), and yields
   * them as parts: arrays of at most SNAPSHOT_PART_RECORDS_MAX [id, deadline] records.
   */
  snapshot(): EngineSnapshot {
    const n = this.byId.size;
    const ids = new Array<string>(n);
    const deadlines = new Float64Array(n);
    let k = 0;
    const bucket: Entry[] = [];
    for (const b of this.bucketsInOrder()) {
      bucket.length = 0;
      for (let e = this.heads[b]; e !== undefined; e = e.next) bucket.push(e);
      bucket.sort(byDeadlineThenId);
      for (const e of bucket) {
        ids[k] = e.id;
        deadlines[k] = e.deadline;
        k++;
      }
    }
    if (k !== n) throw new Error(`TimeWheel.snapshot: found ${k} entries in buckets, expected ${n}`);
    return {
      *parts(): Iterable<unknown> {
        for (let start = 0; start < n; start += SNAPSHOT_PART_RECORDS_MAX) {
          const end = Math.min(n, start + SNAPSHOT_PART_RECORDS_MAX);
          const part: [string, number][] = new Array(end - start);
          for (let i = start; i < end; i++) part[i - start] = [ids[i]!, deadlines[i]!];
          yield part;
        }
      },
    };
  }

  /**
   * restore rebuilds a wheel at `now` from snapshot parts. It validates every part (arrays of
   * [string, safe integer] records, strictly increasing by (deadline, id) across all parts)
   * and throws DkvError CORRUPTED otherwise.
   */
  static restore(parts: Iterable<unknown>, opts: TimeWheelOptions, now: number): TimeWheel {
    const wheel = new TimeWheel(opts, now);
    if (parts === null || typeof parts !== 'object' || !(Symbol.iterator in parts)) {
      throw corrupted('parts are not iterable');
    }
    let prevDeadline = Number.NEGATIVE_INFINITY;
    let prevId = '';
    let partNo = 0;
    for (const part of parts) {
      if (!Array.isArray(part) || part.length === 0 || part.length > SNAPSHOT_PART_RECORDS_MAX) {
        throw corrupted(`part ${partNo} is not an array of 1 to ${SNAPSHOT_PART_RECORDS_MAX} records`);
      }
      for (const record of part as unknown[]) {
        if (!Array.isArray(record) || record.length !== 2) {
          throw corrupted(`part ${partNo} holds a record that is not an [id, deadline] pair`);
        }
        const id: unknown = record[0];
        const deadline: unknown = record[1];
        if (typeof id !== 'string' || typeof deadline !== 'number' || !Number.isSafeInteger(deadline)) {
          throw corrupted(`part ${partNo} holds a record with a bad id or deadline`);
        }
        if (deadline < prevDeadline || (deadline === prevDeadline && id <= prevId)) {
          throw corrupted(`part ${partNo}: records are not strictly increasing by (deadline, id)`);
        }
        prevDeadline = deadline;
        prevId = id;
        wheel.schedule(id, deadline);
      }
      partNo++;
    }
    return wheel;
  }

  /** tickOf is floor(ms / tickMs) for ms >= 0, computed exactly for every safe integer. */
  private tickOf(ms: number): number {
    return (ms - (ms % this.tickMs)) / this.tickMs;
  }

  private updateCurBlocks(): void {
    for (let i = 0; i < this.levels; i++) this.curBlocks[i] = Math.floor(this.cur / this.widths[i + 1]!);
  }

  /** currentBucket holds the entries whose tick is cur (and deadline > now). */
  private currentBucket(): number {
    return this.cur % this.slots;
  }

  /** area is a bucket's index into counts: its level, or L for due, L + 1 for overflow. */
  private area(bucket: number): number {
    return bucket < this.dueBucket ? Math.floor(bucket / this.slots) : this.levels + bucket - this.dueBucket;
  }

  /** place links a detached entry with deadline > now (so its tick is >= cur) into its bucket. */
  private place(e: Entry): void {
    const t = this.tickOf(e.deadline);
    for (let i = 0; i < this.levels; i++) {
      if (Math.floor(t / this.widths[i + 1]!) === this.curBlocks[i]) {
        this.link(e, i * this.slots + (Math.floor(t / this.widths[i]!) % this.slots));
        return;
      }
    }
    this.link(e, this.overflowBucket);
  }

  private link(e: Entry, b: number): void {
    const head = this.heads[b];
    e.bucket = b;
    e.prev = undefined;
    e.next = head;
    if (head !== undefined) head.prev = e;
    this.heads[b] = e;
    if (e.deadline < this.mins[b]!) this.mins[b] = e.deadline;
    this.counts[this.area(b)]!++;
  }

  private unlink(e: Entry): void {
    const b = e.bucket;
    if (b < 0) throw new Error(`TimeWheel: entry ${e.id} is not in a bucket`);
    if (e.prev === undefined) this.heads[b] = e.next;
    else e.prev.next = e.next;
    if (e.next !== undefined) e.next.prev = e.prev;
    e.prev = undefined;
    e.next = undefined;
    e.bucket = -1;
    this.counts[this.area(b)]!--;
    if (this.heads[b] === undefined) {
      this.mins[b] = Number.POSITIVE_INFINITY;
      this.minExact[b] = 1;
    } else if (e.deadline === this.mins[b]) {
      this.minExact[b] = 0;
    }
  }

  /** detachBucket empties bucket b, appending its entries (detached) to `out`. */
  private detachBucket(b: number, out: Entry[]): void {
    let n = 0;
    let e = this.heads[b];
    while (e !== undefined) {
      const next = e.next;
      e.prev = undefined;
      e.next = undefined;
      e.bucket = -1;
      out.push(e);
      n++;
      e = next;
    }
    this.heads[b] = undefined;
    this.mins[b] = Number.POSITIVE_INFINITY;
    this.minExact[b] = 1;
    this.counts[this.area(b)]! -= n;
  }

  /**
   * passTo detaches, for a move of the current tick from cur to `tick` > cur, every bucket
   * whose range ends at or before `tick` into `expired`, and every bucket whose range holds
   * `tick` (one per level at most, plus the overflow list when the top block changes) into
   * `cascading`. Buckets past `tick` keep their level: their higher digits still match.
   */
  private passTo(tick: number, expired: Entry[], cascading: Entry[]): void {
    const S = this.slots;
    for (let i = 0; i < this.levels; i++) {
      const width = this.widths[i]!;
      const curDigit = Math.floor(this.cur / width) % S;
      const newDigit = Math.floor(tick / width) % S;
      const sameBlock = Math.floor(tick / this.widths[i + 1]!) === this.curBlocks[i];
      // Same block and digit here means the same block on every level above: nothing moves.
      if (sameBlock && curDigit === newDigit) return;
      if (this.counts[i] === 0) continue;
      const base = i * S;
      const last = sameBlock ? newDigit - 1 : S - 1;
      for (let s = curDigit; s <= last && this.counts[i]! > 0; s++) {
        if (this.heads[base + s] !== undefined) this.detachBucket(base + s, expired);
      }
      if (sameBlock && this.heads[base + newDigit] !== undefined) {
        this.detachBucket(base + newDigit, cascading);
      }
    }
    const top = this.widths[this.levels]!;
    if (this.counts[this.levels + 1]! > 0 && Math.floor(tick / top) !== Math.floor(this.cur / top)) {
      this.detachBucket(this.overflowBucket, cascading);
    }
  }

  /** expireFromCurrent moves the current bucket's entries with deadline <= now to `expired`. */
  private expireFromCurrent(now: number, expired: Entry[]): void {
    const b = this.currentBucket();
    let min = Number.POSITIVE_INFINITY;
    let e = this.heads[b];
    while (e !== undefined) {
      const next = e.next;
      if (e.deadline <= now) {
        this.unlink(e);
        expired.push(e);
      } else if (e.deadline < min) {
        min = e.deadline;
      }
      e = next;
    }
    this.mins[b] = min;
    this.minExact[b] = 1;
  }

  /** exactMin is the minimum deadline in a non-empty bucket, rescanning it if needed. */
  private exactMin(b: number): number {
    if (this.minExact[b] === 0) {
      let min = Number.POSITIVE_INFINITY;
      for (let e = this.heads[b]; e !== undefined; e = e.next) if (e.deadline < min) min = e.deadline;
      this.mins[b] = min;
      this.minExact[b] = 1;
    }
    return this.mins[b]!;
  }

  /** firstBucket is the non-empty bucket holding the earliest deadline (the wheel is not empty). */
  private firstBucket(): number {
    for (const b of this.bucketsInOrder()) return b;
    throw new Error('TimeWheel: no bucket holds an entry, yet size > 0');
  }

  /** bucketsInOrder yields the non-empty buckets in deadline order (see the file comment). */
  private *bucketsInOrder(): Generator<number> {
    if (this.heads[this.dueBucket] !== undefined) yield this.dueBucket;
    const S = this.slots;
    for (let i = 0; i < this.levels; i++) {
      if (this.counts[i] === 0) continue;
      const base = i * S;
      for (let s = Math.floor(this.cur / this.widths[i]!) % S; s < S; s++) {
        if (this.heads[base + s] !== undefined) yield base + s;
      }
    }
    if (this.heads[this.overflowBucket] !== undefined) yield this.overflowBucket;
  }
}

function checkNow(now: number): void {
  if (!Number.isSafeInteger(now) || now < 0) {
    throw new DkvError(
      ErrorCode.InvalidArgument,
      `time wheel: now must be a non-negative integer, got ${now}`,
    );
  }
}
