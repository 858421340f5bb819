/**
 * Canonical value walk: one definition of "the same value" for stored values, shared by
 * structural equality (`deepEqualValues`, used by transaction compares) and by hashing
 * (`hashValue`, used by the segment store's `stateHash`), so the two never disagree.
 *
 * Values are msgpack values, so equality follows what survives a msgpack round trip rather
 * than JavaScript identity:
 *
 * - numbers: -0 equals 0, NaN equals NaN; a bigint within the safe-integer range equals the
 *   number of the same value (msgpack has one integer type). Larger bigints compare as bigints.
 * - Uint8Array (and Buffer, and a bare ArrayBuffer) compare by bytes. Other typed arrays compare
 *   by constructor name and bytes.
 * - arrays compare element-wise; plain objects (prototype Object.prototype or null) compare by
 *   their own enumerable string keys, in any order. `{a: undefined}` differs from `{}`.
 * - outside the msgpack data model, for totality: a Date compares by its time; a Map or Set as an
 *   unordered collection (by the sorted 64-bit canonical hashes of its entries); any other object
 *   by its constructor name and own enumerable properties. Functions and symbols throw.
 *
 * The canonical byte stream (what `hashValue` feeds to the hash) is, per value, one tag byte and
 * then: nothing (undefined 0x00, null 0x01, false 0x02, true 0x03); number 0x04: float64 LE with
 * -0 as 0 and NaN as 0x7ff8000000000000 (a safe-range bigint is first converted to a number);
 * bigint 0x05: its base-16 text as a string; string 0x06: u32 LE count of UTF-16 code units,
 * then each unit as u16 LE; bytes 0x07: u32 LE length, then the bytes; other typed array 0x08:
 * constructor name string, then as bytes; array 0x09: u32 LE length, then each element; plain
 * object 0x0a: u32 LE key count, then for each key in ascending UTF-16 order the key as a string
 * and its value; Date 0x0b: float64 of its time; Map 0x0c / Set 0x0d: u32 LE size, then each
 * entry's 64-bit digest (hi u32 LE, lo u32 LE) in ascending order, where an entry's digest is
 * FNV-1a 64 of (key, value) or (element); other object 0x0e: constructor name string, then as a
 * plain object. "As a string" means the string encoding without its tag.
 *
 * The hash is FNV-1a 64 over those bytes (offset basis 0xcbf29ce484222325, prime 0x100000001b3),
 * computed in two 32-bit halves. Nesting deeper than VALUE_DEPTH_MAX throws INVALID_ARGUMENT.
 * Cost: O(size of the value) for both walks.
 */
import { DkvError, ErrorCode } from '../errors.js';

/** VALUE_DEPTH_MAX bounds the nesting of arrays and objects that the walks will follow. */
export const VALUE_DEPTH_MAX = 512;

const TAG_UNDEFINED = 0x00;
const TAG_NULL = 0x01;
const TAG_FALSE = 0x02;
const TAG_TRUE = 0x03;
const TAG_NUMBER = 0x04;
const TAG_BIGINT = 0x05;
const TAG_STRING = 0x06;
const TAG_BYTES = 0x07;
const TAG_TYPED_ARRAY = 0x08;
const TAG_ARRAY = 0x09;
const TAG_OBJECT = 0x0a;
const TAG_DATE = 0x0b;
const TAG_MAP = 0x0c;
const TAG_SET = 0x0d;
const TAG_OTHER_OBJECT = 0x0e;

const TWO_POW_32 = 4294967296;
const MIN_SAFE_BIGINT = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE_BIGINT = BigInt(Number.MAX_SAFE_INTEGER);

/** scratch is the float64 encoder's buffer (engines are single-threaded and non-reentrant here). */
const scratch = new DataView(new ArrayBuffer(8));

/**
 * Fnv1a64 is an incremental FNV-1a 64-bit hash over a byte stream, kept as two unsigned 32-bit
 * halves so that it needs no BigInt. Invariant: 0 <= hi, lo < 2^32.
 */
export class Fnv1a64 {
  private hi = 0xcbf29ce4;
  private lo = 0x84222325;

  /** byte feeds one byte (the low 8 bits of `b`). */
  byte(b: number): void {
    const lo = (this.lo ^ (b & 0xff)) >>> 0;
    // (hi:lo) * (2^40 + 0x1b3) mod 2^64. lo * 0x1b3 < 2^41 is exact in a double.
    const t = lo * 0x1b3;
    const tLo = t >>> 0;
    const carry = (t - tLo) / TWO_POW_32;
    this.hi = (Math.imul(this.hi, 0x1b3) + (lo << 8) + carry) >>> 0;
    this.lo = tLo;
  }

  /** u32 feeds an unsigned 32-bit integer, little-endian. */
  u32(n: number): void {
    this.byte(n);
    this.byte(n >>> 8);
    this.byte(n >>> 16);
    this.byte(n >>> 24);
  }

  /** f64 feeds a number as float64 little-endian, with -0 as 0 and one NaN. */
  f64(n: number): void {
    if (n === 0) n = 0;
    if (Number.isNaN(n)) {
      this.u32(0);
      this.u32(0x7ff80000);
      return;
    }
    scratch.setFloat64(0, n, true);
    for (let i = 0; i < 8; i++) this.byte(scratch.getUint8(i));
  }

  /** str feeds a string: its UTF-16 length (u32), then each code unit as u16 LE. */
  str(s: string): void {
    this.u32(s.length);
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      this.byte(c);
      this.byte(c >>> 8);
    }
  }

  /** bytes feeds a byte array: its length (u32), then the bytes. */
  bytes(b: Uint8Array): void {
    this.u32(b.length);
    for (let i = 0; i < b.length; i++) this.byte(b[i]!);
  }

  /** digestHi and digestLo are the current hash's halves. */
  get digestHi(): number {
    return this.hi;
  }
  get digestLo(): number {
    return this.lo;
  }

  /** digest is the current hash as 16 lowercase hex digits. */
  digest(): string {
    return this.hi.toString(16).padStart(8, '0') + this.lo.toString(16).padStart(8, '0');
  }
}

/** hashValue feeds the canonical encoding of `value` (see the file comment) into `h`. */
export function hashValue(h: Fnv1a64, value: unknown): void {
  walkHash(h, value, 0);
}

/** valueDigest is FNV-1a 64 of `value`'s canonical encoding, as 16 hex digits. */
export function valueDigest(value: unknown): string {
  const h = new Fnv1a64();
  walkHash(h, value, 0);
  return h.digest();
}

/**
 * deepEqualValues is structural equality under the canonical rules of this file: two values are
 * equal exactly when their canonical encodings are equal (up to 64-bit hash collisions inside
 * Maps and Sets).
 */
export function deepEqualValues(a: unknown, b: unknown): boolean {
  return walkEqual(a, b, 0);
}

/**
 * checkValueDepth throws INVALID_ARGUMENT if `value` nests deeper than VALUE_DEPTH_MAX, or holds
 * a function or symbol, so that a value accepted from a client can always be hashed and compared.
 */
export function checkValueDepth(value: unknown): void {
  walkHash(nullHasher, value, 0);
}

/** nullHasher discards its input: checkValueDepth reuses the hash walk for its checks. */
const nullHasher = new (class extends Fnv1a64 {
  override byte(_b: number): void {}
})();

function tooDeep(): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, `value nests deeper than ${VALUE_DEPTH_MAX} levels`);
}

/** normalizeNumeric turns a safe-range bigint into a number; other values pass through. */
function normalizeNumeric(v: unknown): unknown {
  if (typeof v === 'bigint' && v >= MIN_SAFE_BIGINT && v <= MAX_SAFE_BIGINT) return Number(v);
  return v;
}

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function constructorName(v: object): string {
  const ctor = (v as { constructor?: unknown }).constructor;
  return typeof ctor === 'function' && typeof ctor.name === 'string' ? ctor.name : '';
}

/** asBytes views a Uint8Array (including Buffer) or an ArrayBuffer as bytes, else undefined. */
function asBytes(v: object): Uint8Array | undefined {
  if (v instanceof Uint8Array) return v;
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  return undefined;
}

function viewBytes(v: ArrayBufferView): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

function walkHash(h: Fnv1a64, raw: unknown, depth: number): void {
  const v = normalizeNumeric(raw);
  switch (typeof v) {
    case 'undefined':
      h.byte(TAG_UNDEFINED);
      return;
    case 'boolean':
      h.byte(v ? TAG_TRUE : TAG_FALSE);
      return;
    case 'number':
      h.byte(TAG_NUMBER);
      h.f64(v);
      return;
    case 'bigint':
      h.byte(TAG_BIGINT);
      h.str(v.toString(16));
      return;
    case 'string':
      h.byte(TAG_STRING);
      h.str(v);
      return;
    case 'object':
      break;
    default:
      throw new DkvError(ErrorCode.InvalidArgument, `a ${typeof v} is not a storable value`);
  }
  if (v === null) {
    h.byte(TAG_NULL);
    return;
  }
  if (depth >= VALUE_DEPTH_MAX) throw tooDeep();
  const bytes = asBytes(v);
  if (bytes !== undefined) {
    h.byte(TAG_BYTES);
    h.bytes(bytes);
    return;
  }
  if (ArrayBuffer.isView(v)) {
    h.byte(TAG_TYPED_ARRAY);
    h.str(constructorName(v));
    h.bytes(viewBytes(v));
    return;
  }
  if (Array.isArray(v)) {
    h.byte(TAG_ARRAY);
    h.u32(v.length);
    for (let i = 0; i < v.length; i++) walkHash(h, v[i], depth + 1);
    return;
  }
  if (v instanceof Date) {
    h.byte(TAG_DATE);
    h.f64(v.getTime());
    return;
  }
  if (v instanceof Map || v instanceof Set) {
    h.byte(v instanceof Map ? TAG_MAP : TAG_SET);
    h.u32(v.size);
    for (const d of entryDigests(v, depth)) {
      h.u32(d[0]);
      h.u32(d[1]);
    }
    return;
  }
  if (isPlainObject(v)) {
    h.byte(TAG_OBJECT);
  } else {
    h.byte(TAG_OTHER_OBJECT);
    h.str(constructorName(v));
  }
  const rec = v as Record<string, unknown>;
  const keys = Object.keys(rec).sort();
  h.u32(keys.length);
  for (const k of keys) {
    h.str(k);
    walkHash(h, rec[k], depth + 1);
  }
}

/** entryDigests hashes each entry of a Map or Set on its own and sorts the digests. */
function entryDigests(v: Map<unknown, unknown> | Set<unknown>, depth: number): [number, number][] {
  const out: [number, number][] = [];
  if (v instanceof Map) {
    for (const [k, x] of v) {
      const e = new Fnv1a64();
      walkHash(e, k, depth + 1);
      walkHash(e, x, depth + 1);
      out.push([e.digestHi, e.digestLo]);
    }
  } else {
    for (const x of v) {
      const e = new Fnv1a64();
      walkHash(e, x, depth + 1);
      out.push([e.digestHi, e.digestLo]);
    }
  }
  return out.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
}

function walkEqual(rawA: unknown, rawB: unknown, depth: number): boolean {
  const a = normalizeNumeric(rawA);
  const b = normalizeNumeric(rawB);
  const ta = typeof a;
  if (ta !== typeof b) return false;
  if (ta === 'number') return a === b || (Number.isNaN(a) && Number.isNaN(b));
  if (ta !== 'object') {
    if (ta === 'function' || ta === 'symbol') {
      throw new DkvError(ErrorCode.InvalidArgument, `a ${ta} is not a storable value`);
    }
    return a === b;
  }
  if (a === null || b === null) return a === b;
  if (depth >= VALUE_DEPTH_MAX) throw tooDeep();
  const x = a as object;
  const y = b as object;
  const bx = asBytes(x);
  if (bx !== undefined) {
    const by = asBytes(y);
    return by !== undefined && bytesEqual(bx, by);
  }
  if (asBytes(y) !== undefined) return false;
  if (ArrayBuffer.isView(x) || ArrayBuffer.isView(y)) {
    return (
      ArrayBuffer.isView(x) &&
      ArrayBuffer.isView(y) &&
      constructorName(x) === constructorName(y) &&
      bytesEqual(viewBytes(x), viewBytes(y))
    );
  }
  if (Array.isArray(x) || Array.isArray(y)) {
    if (!Array.isArray(x) || !Array.isArray(y) || x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (!walkEqual(x[i], y[i], depth + 1)) return false;
    return true;
  }
  if (x instanceof Date || y instanceof Date) {
    if (!(x instanceof Date) || !(y instanceof Date)) return false;
    const tx = x.getTime();
    const ty = y.getTime();
    return tx === ty || (Number.isNaN(tx) && Number.isNaN(ty));
  }
  if (x instanceof Map || y instanceof Map || x instanceof Set || y instanceof Set) {
    const bothMaps = x instanceof Map && y instanceof Map;
    const bothSets = x instanceof Set && y instanceof Set;
    if (!(bothMaps || bothSets)) return false;
    const mx = x as Map<unknown, unknown> | Set<unknown>;
    const my = y as Map<unknown, unknown> | Set<unknown>;
    if (mx.size !== my.size) return false;
    const dx = entryDigests(mx, depth);
    const dy = entryDigests(my, depth);
    for (let i = 0; i < dx.length; i++) {
      if (dx[i]![0] !== dy[i]![0] || dx[i]![1] !== dy[i]![1]) return false;
    }
    return true;
  }
  const plainX = isPlainObject(x);
  if (plainX !== isPlainObject(y)) return false;
  if (!plainX && constructorName(x) !== constructorName(y)) return false;
  const rx = x as Record<string, unknown>;
  const ry = y as Record<string, unknown>;
  const keys = Object.keys(rx);
  if (keys.length !== Object.keys(ry).length) return false;
  for (const k of keys) {
    if (!Object.prototype.propertyIsEnumerable.call(ry, k)) return false;
    if (!walkEqual(rx[k], ry[k], depth + 1)) return false;
  }
  return true;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
