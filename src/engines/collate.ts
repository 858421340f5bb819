/**
 * Collation of indexed values: the one total order that every index, query bound, sort and
 * continuation uses, so that a range query, a sorted page and the next page all agree.
 *
 * An indexed value (IndexValue) is null, a boolean, a finite number or a string, ordered
 *
 *     null < false < true < numbers < strings
 *
 * Numbers compare numerically (-0 is stored as 0, so 1, 1.0 and 1e0 are one value and -0
 * equals 0); strings compare by UTF-16 code units, exactly like JavaScript's `<` (so "B" <
 * "a" and "Z" < "é"). Values of different types are never equal: "1" and 1 differ, and so do
 * 0 and false. NaN and the infinities are not indexable (a field holding one is not indexed,
 * and a query naming one is refused).
 *
 * Keys (the primary store's keys) are strings ordered the same way, by UTF-16 code units.
 */

/** IndexValue is a value an index can hold: null, a boolean, a finite number or a string. */
export type IndexValue = null | boolean | number | string;

/** typeRank places each type of IndexValue in the collation: null, boolean, number, string. */
function typeRank(v: IndexValue): number {
  if (v === null) return 0;
  switch (typeof v) {
    case 'boolean':
      return 1;
    case 'number':
      return 2;
    default:
      return 3;
  }
}

/**
 * compareIndexValues orders two IndexValues by the collation above: negative, zero or
 * positive. Zero means equal (the same type and the same value).
 */
export function compareIndexValues(a: IndexValue, b: IndexValue): number {
  if (a === b) return 0;
  const ta = typeRank(a);
  const tb = typeRank(b);
  if (ta !== tb) return ta - tb;
  // Same type, not ===: booleans (false < true), numbers, or strings by code units.
  return (a as number | string | boolean) < (b as number | string | boolean) ? -1 : 1;
}

/** compareKeys orders two keys by UTF-16 code units (JavaScript's `<`). */
export function compareKeys(a: string, b: string): number {
  return a === b ? 0 : a < b ? -1 : 1;
}

/**
 * toIndexValue returns `x` as an IndexValue (with -0 turned into 0), or undefined if it
 * cannot be indexed: undefined, NaN, an infinity, an array, an object, a Uint8Array, a bigint.
 */
export function toIndexValue(x: unknown): IndexValue | undefined {
  switch (typeof x) {
    case 'string':
    case 'boolean':
      return x;
    case 'number':
      if (!Number.isFinite(x)) return undefined;
      return x === 0 ? 0 : x;
    case 'object':
      return x === null ? null : undefined;
    default:
      return undefined;
  }
}

/** describeIndexValue renders a value for an error message (bounded in length). */
export function describeIndexValue(x: unknown): string {
  if (typeof x === 'string') return JSON.stringify(x.length > 40 ? `${x.slice(0, 40)}...` : x);
  if (typeof x === 'number' || typeof x === 'boolean' || x === null || x === undefined) return String(x);
  if (typeof x === 'bigint') return `${x}n`;
  if (Array.isArray(x)) return 'an array';
  if (ArrayBuffer.isView(x)) return 'a byte array';
  return `a ${typeof x}`;
}
