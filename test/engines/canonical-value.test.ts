import fc from 'fast-check';
import { pack, unpack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  checkValueDepth,
  deepEqualValues,
  Fnv1a64,
  VALUE_DEPTH_MAX,
  valueDigest,
} from '../../src/engines/canonical-value.js';
import { DkvError, ErrorCode } from '../../src/errors.js';

function fnvOf(text: string): string {
  const h = new Fnv1a64();
  for (const b of new TextEncoder().encode(text)) h.byte(b);
  return h.digest();
}

/** A msgpack-shaped value: what the codec hands the store. */
const valueArb = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double(),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    fc.string({ unit: 'binary', maxLength: 6 }),
    fc.uint8Array({ maxLength: 6 }),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.string({ maxLength: 3 }), tie('value'), { maxKeys: 4 }),
  ),
})).value;

/** shuffleKeys rebuilds every plain object with its keys in reverse insertion order. */
function shuffleKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(shuffleKeys);
  if (v instanceof Uint8Array || typeof v !== 'object' || v === null) return v;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v).reverse()) out[k] = shuffleKeys((v as Record<string, unknown>)[k]);
  return out;
}

describe('Fnv1a64', () => {
  it('matches the published FNV-1a 64 test vectors', () => {
    expect(fnvOf('')).toBe('cbf29ce484222325');
    expect(fnvOf('a')).toBe('af63dc4c8601ec8c');
    expect(fnvOf('foobar')).toBe('85944171f73967e8');
  });

  it('matches a BigInt reference on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        let ref = 0xcbf29ce484222325n;
        const h = new Fnv1a64();
        for (const b of bytes) {
          ref = ((ref ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn;
          h.byte(b);
        }
        expect(h.digest()).toBe(ref.toString(16).padStart(16, '0'));
      }),
      { numRuns: 200 },
    );
  });
});

describe('canonical equality and hashing', () => {
  it('equal values have equal digests, and unequal ones (here) differ', () => {
    fc.assert(
      fc.property(valueArb, valueArb, (a, b) => {
        const eq = deepEqualValues(a, b);
        expect(deepEqualValues(b, a)).toBe(eq);
        expect(valueDigest(a) === valueDigest(b)).toBe(eq);
      }),
      { numRuns: 500 },
    );
  });

  it('a value equals its copies: structured clone, reordered keys, msgpack round trip', () => {
    fc.assert(
      fc.property(valueArb, (v) => {
        expect(deepEqualValues(v, v)).toBe(true);
        expect(deepEqualValues(v, structuredClone(v))).toBe(true);
        const shuffled = shuffleKeys(v);
        expect(deepEqualValues(v, shuffled)).toBe(true);
        expect(valueDigest(shuffled)).toBe(valueDigest(v));
        const decoded = unpack(pack(v));
        // msgpack keeps the data model, up to float/integer representation and -0.
        expect(deepEqualValues(v, decoded)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('follows the documented rules', () => {
    const equal: [unknown, unknown][] = [
      [0, -0],
      [Number.NaN, Number.NaN],
      [5, 5n],
      [2n ** 70n, 2n ** 70n],
      [new Uint8Array([1, 2]), Buffer.from([1, 2])],
      [new Uint8Array([1, 2]).buffer, new Uint8Array([1, 2])],
      [
        { a: 1, b: [2] },
        { b: [2], a: 1 },
      ],
      [Object.create(null), {}],
      [new Date(5), new Date(5)],
      [
        new Map<unknown, unknown>([
          ['a', 1],
          [2, 'b'],
        ]),
        new Map<unknown, unknown>([
          [2, 'b'],
          ['a', 1],
        ]),
      ],
      [new Set([1, 'x']), new Set(['x', 1])],
      [new Float32Array([1.5]), new Float32Array([1.5])],
      [undefined, undefined],
    ];
    const different: [unknown, unknown][] = [
      [1, '1'],
      [1, true],
      [0, null],
      [null, undefined],
      [2n ** 70n, 2 ** 70],
      [new Uint8Array([1]), [1]],
      [new Uint8Array([1]), new Int8Array([1])],
      [new Float32Array([1]), new Int32Array([1065353216])],
      [
        [1, 2],
        [2, 1],
      ],
      [[1], { 0: 1 }],
      [{ a: undefined }, {}],
      [{ a: 1 }, { a: 1, b: 1 }],
      [new Date(5), 5],
      [new Map([['a', 1]]), { a: 1 }],
      [new Map([['a', 1]]), new Map([['a', 2]])],
      [new Set([1]), new Map([[1, 1]])],
      [new (class Foo {})(), {}],
      ['\ud83d\ude00', '\ude00\ud83d'],
    ];
    for (const [i, [a, b]] of equal.entries()) {
      expect(deepEqualValues(a, b), `equal[${i}]`).toBe(true);
      expect(valueDigest(a)).toBe(valueDigest(b));
    }
    for (const [i, [a, b]] of different.entries()) {
      expect(deepEqualValues(a, b), `different[${i}]`).toBe(false);
      expect(deepEqualValues(b, a), `different[${i}]`).toBe(false);
      expect(valueDigest(a)).not.toBe(valueDigest(b));
    }
  });

  it('bounds nesting and refuses functions', () => {
    const nest = (n: number): unknown => {
      let v: unknown = 1;
      for (let i = 0; i < n; i++) v = [v];
      return v;
    };
    expect(() => checkValueDepth(nest(VALUE_DEPTH_MAX))).not.toThrow();
    for (const f of [
      () => checkValueDepth(nest(VALUE_DEPTH_MAX + 1)),
      () => checkValueDepth({ f: () => 1 }),
    ]) {
      let code = '';
      try {
        f();
      } catch (err) {
        code = err instanceof DkvError ? err.code : 'other';
      }
      expect(code).toBe(ErrorCode.InvalidArgument);
    }
    expect(() => deepEqualValues(nest(VALUE_DEPTH_MAX + 1), nest(VALUE_DEPTH_MAX + 1))).toThrow(DkvError);
  });
});
