/**
 * Canonical JSON: one string per JSON value, equal exactly when the values are equal
 * (object keys sorted, no whitespace). Models compare values read from a history through it,
 * so `{"a":1,"b":2}` and `{"b":2,"a":1}` are the same register value. Linear in the value's size.
 */

/** canonicalJson renders a decoded JSON value canonically (undefined renders as null). */
export function canonicalJson(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  if (typeof v === 'number' && Object.is(v, -0)) return '0';
  return JSON.stringify(v) ?? 'null';
}
