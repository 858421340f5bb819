/**
 * The overload benchmark's record of every put it issued, and the check that no acknowledged
 * put was lost.
 *
 * Each key has one writer (a generator process owns the keys `i` with i % generators ===
 * its number), and every put writes a value unique to it, `<writer>:<seq>:` padded to
 * VALUE_BYTES, seq increasing from 1. The ledger keeps per seq its key, when it was issued,
 * when it was acknowledged and how it ended, in growable typed arrays (no object per put).
 *
 * Open-loop puts to one key overlap, so the final value need not be the highest acknowledged
 * seq: two puts in flight together may apply in either order. The check is the real-time rule
 * of a linearizable register instead. A final read returning put f is wrong exactly when
 * - f was acknowledged, and some acknowledged put to the key was issued after f's
 *   acknowledgement (it is ordered after f, so it must have replaced f): that put is lost;
 * - the key is absent, or holds a value this writer never put there, while puts to it were
 *   acknowledged: every one of them is lost.
 * A final value whose put was shed (OVERLOADED: never applied, by contract) is counted apart
 * (`finalFromShed`), as is one older than the highest acknowledged seq but allowed by the rule
 * (`reordered`), one whose put's outcome is unknown (a TIMEOUT: it may apply late), and a
 * value the writer never put there (`foreign`).
 */
import { VALUE_BYTES } from '../compare/workloads.js';

/** Outcome is how a put ended, as the ledger stores it. */
export const Outcome = {
  Pending: 0,
  /** Acknowledged. */
  Ok: 1,
  /** OVERLOADED: refused, never applied. */
  Shed: 2,
  /** Any other error: not applied, or unknown (TIMEOUT). */
  Failed: 3,
} as const;
/** Outcome's values. */
export type Outcome = (typeof Outcome)[keyof typeof Outcome];

/** LOST_KEYS_LISTED is how many lost keys a check lists (it counts them all). */
export const LOST_KEYS_LISTED = 20;

/** valueOfPut is the unique value of put `seq` by `writer`: VALUE_BYTES ASCII characters. */
export function valueOfPut(writer: number, seq: number): string {
  return `${writer}:${seq}:`.padEnd(VALUE_BYTES, 'x');
}

/** parsePutValue reads writer and seq back out of a value; undefined for a value not made by valueOfPut. */
export function parsePutValue(value: unknown): { writer: number; seq: number } | undefined {
  if (typeof value !== 'string' || value.length !== VALUE_BYTES) return undefined;
  const m = /^(\d{1,9}):(\d{1,15}):x*$/.exec(value);
  if (m === null) return undefined;
  return { writer: Number(m[1]), seq: Number(m[2]) };
}

/** LostKey says what a check found wrong with one key. */
export interface LostKey {
  readonly key: number;
  /** Acknowledged puts to the key that the final value does not account for. */
  readonly lostPuts: number;
  readonly reason: string;
}

/** LedgerCheck is the result of checking the final values of a writer's keys. */
export interface LedgerCheck {
  readonly keysChecked: number;
  /** Keys with at least one acknowledged put. */
  readonly keysWithAcks: number;
  /** Acknowledged puts in all. */
  readonly acked: number;
  /** Acknowledged puts lost (0 is the only right answer). */
  readonly lostAcked: number;
  /** Keys with a lost put, the first LOST_KEYS_LISTED of them. */
  readonly lostKeys: LostKey[];
  /** Final values older than the key's highest acknowledged seq, allowed because the puts overlapped. */
  readonly reordered: number;
  /** Final values from a put that was shed with OVERLOADED (should be 0: shed means not applied). */
  readonly finalFromShed: number;
  /** Final values from a put whose outcome the writer does not know (an error such as TIMEOUT, or no answer yet). */
  readonly finalFromUnknown: number;
  /** Keys holding a value this writer never put there (0 unless something is badly wrong). */
  readonly foreign: number;
}

/** WriteLedger records one writer's puts; see the file comment. */
export class WriteLedger {
  readonly writer: number;
  private keyOf = new Int32Array(1 << 16);
  private issuedMs = new Float64Array(1 << 16);
  private ackedMs = new Float64Array(1 << 16);
  private outcome = new Uint8Array(1 << 16);
  /** Invariant: seqs 1..last are recorded; slot 0 is unused. */
  private last = 0;
  private readonly ackedCount: Uint32Array;
  private readonly maxAckedSeq: Float64Array;
  /** Per key, the latest issue time of an acknowledged put (-Infinity: none). */
  private readonly maxAckedIssuedMs: Float64Array;

  constructor(writer: number, keySpace: number) {
    this.writer = writer;
    this.ackedCount = new Uint32Array(keySpace);
    this.maxAckedSeq = new Float64Array(keySpace);
    this.maxAckedIssuedMs = new Float64Array(keySpace).fill(Number.NEGATIVE_INFINITY);
  }

  /** puts is how many puts were issued. */
  get puts(): number {
    return this.last;
  }

  /** begin records a put of `key` issued at `nowMs` and returns its seq. */
  begin(key: number, nowMs: number): number {
    if (key < 0 || key >= this.ackedCount.length) throw new Error(`key ${key} outside the key space`);
    const seq = ++this.last;
    if (seq >= this.keyOf.length) this.grow();
    this.keyOf[seq] = key;
    this.issuedMs[seq] = nowMs;
    this.outcome[seq] = Outcome.Pending;
    return seq;
  }

  /** end records how put `seq` ended (at `nowMs`). */
  end(seq: number, outcome: Outcome, nowMs: number): void {
    if (seq < 1 || seq > this.last || this.outcome[seq] !== Outcome.Pending)
      throw new Error(`put ${seq} is not pending`);
    this.outcome[seq] = outcome;
    if (outcome !== Outcome.Ok) return;
    this.ackedMs[seq] = nowMs;
    const k = this.keyOf[seq]!;
    this.ackedCount[k]!++;
    if (seq > this.maxAckedSeq[k]!) this.maxAckedSeq[k] = seq;
    if (this.issuedMs[seq]! > this.maxAckedIssuedMs[k]!) this.maxAckedIssuedMs[k] = this.issuedMs[seq]!;
  }

  private grow(): void {
    const n = this.keyOf.length * 2;
    const keyOf = new Int32Array(n);
    keyOf.set(this.keyOf);
    this.keyOf = keyOf;
    const issued = new Float64Array(n);
    issued.set(this.issuedMs);
    this.issuedMs = issued;
    const acked = new Float64Array(n);
    acked.set(this.ackedMs);
    this.ackedMs = acked;
    const outcome = new Uint8Array(n);
    outcome.set(this.outcome);
    this.outcome = outcome;
  }

  /** ackedPutsOf counts the acknowledged puts of `key` issued after `afterMs`. */
  private ackedPutsOf(key: number, afterMs: number): number {
    let n = 0;
    for (let s = 1; s <= this.last; s++)
      if (this.keyOf[s] === key && this.outcome[s] === Outcome.Ok && this.issuedMs[s]! > afterMs) n++;
    return n;
  }

  /**
   * check checks the final values of keys (`finalOf(key)`: the value a linearizable read
   * returned, undefined for an absent key) against the rule of the file comment.
   */
  check(keys: Iterable<number>, finalOf: (key: number) => unknown): LedgerCheck {
    let keysChecked = 0;
    let keysWithAcks = 0;
    let acked = 0;
    let lostAcked = 0;
    let reordered = 0;
    let finalFromShed = 0;
    let finalFromUnknown = 0;
    let foreign = 0;
    const lostKeys: LostKey[] = [];
    const lose = (key: number, lostPuts: number, reason: string): void => {
      lostAcked += lostPuts;
      if (lostKeys.length < LOST_KEYS_LISTED) lostKeys.push({ key, lostPuts, reason });
    };
    for (const k of keys) {
      keysChecked++;
      const n = this.ackedCount[k]!;
      acked += n;
      if (n > 0) keysWithAcks++;
      const value = finalOf(k);
      if (value === undefined) {
        if (n > 0) lose(k, n, `absent, after ${n} acknowledged put(s)`);
        continue;
      }
      const put = parsePutValue(value);
      if (
        put === undefined ||
        put.writer !== this.writer ||
        put.seq > this.last ||
        this.keyOf[put.seq] !== k
      ) {
        foreign++;
        if (n > 0) lose(k, n, `holds a value never put there: ${JSON.stringify(String(value).slice(0, 24))}`);
        continue;
      }
      const f = put.seq;
      const outcome = this.outcome[f]!;
      if (outcome === Outcome.Ok) {
        const ackedAt = this.ackedMs[f]!;
        if (this.maxAckedIssuedMs[k]! > ackedAt) {
          const lost = this.ackedPutsOf(k, ackedAt);
          lose(
            k,
            lost,
            `holds put ${f}, but ${lost} acknowledged put(s) issued after its acknowledgement are gone`,
          );
          continue;
        }
      } else if (outcome === Outcome.Shed) finalFromShed++;
      else finalFromUnknown++;
      if (f < this.maxAckedSeq[k]!) reordered++;
    }
    return {
      keysChecked,
      keysWithAcks,
      acked,
      lostAcked,
      lostKeys,
      reordered,
      finalFromShed,
      finalFromUnknown,
      foreign,
    };
  }
}
