import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { COUNTER_PART_ROWS_MAX, Counters, INT64_MAX, INT64_MIN } from '../../src/engines/counters.js';
import { DkvError, ErrorCode, isDkvError } from '../../src/errors.js';

function codeOf<T>(f: () => T): T | { error: string } {
  try {
    return f();
  } catch (err) {
    if (err instanceof DkvError) return { error: err.code };
    throw err;
  }
}

function expectCode(f: () => unknown, code: string): void {
  let thrown: unknown;
  try {
    f();
  } catch (err) {
    thrown = err;
  }
  expect(isDkvError(thrown) ? thrown.code : thrown).toBe(code);
}

describe('Counters: 64-bit arithmetic', () => {
  it('starts at 0 and adds numbers and bigints exactly', () => {
    const c = new Counters();
    expect(c.get('x', 0)).toBe(0n);
    expect(c.add('x', 5, 0)).toBe(5n);
    expect(c.add('x', -7n, 0)).toBe(-2n);
    expect(c.add('x', Number.MAX_SAFE_INTEGER, 0)).toBe(BigInt(Number.MAX_SAFE_INTEGER) - 2n);
    expect(c.get('x', 0)).toBe(BigInt(Number.MAX_SAFE_INTEGER) - 2n);
  });

  it('reaches both ends of the range exactly', () => {
    const c = new Counters();
    expect(c.add('hi', INT64_MAX, 0)).toBe(9223372036854775807n);
    expect(c.add('lo', INT64_MIN, 0)).toBe(-9223372036854775808n);
    expect(c.add('hi', INT64_MIN, 0)).toBe(-1n);
    expect(c.add('lo', INT64_MAX, 0)).toBe(-1n);
    expect(c.set('s', INT64_MIN, 0)).toBe(0n);
    expect(c.add('s', 0, 0)).toBe(INT64_MIN);
  });

  it('refuses overflow both ways and changes nothing', () => {
    const c = new Counters();
    c.set('hi', INT64_MAX, 0);
    c.set('lo', INT64_MIN, 0);
    expectCode(() => c.add('hi', 1, 0), ErrorCode.InvalidArgument);
    expectCode(() => c.add('hi', INT64_MAX, 0), ErrorCode.InvalidArgument);
    expectCode(() => c.add('lo', -1n, 0), ErrorCode.InvalidArgument);
    expectCode(() => c.add('lo', INT64_MIN, 0), ErrorCode.InvalidArgument);
    expect(() => c.add('hi', 1, 0)).toThrow(/overflows signed 64-bit/);
    expect(c.get('hi', 0)).toBe(INT64_MAX);
    expect(c.get('lo', 0)).toBe(INT64_MIN);
    expect(c.add('hi', -1, 0)).toBe(INT64_MAX - 1n);
  });

  it('refuses malformed deltas and values', () => {
    const c = new Counters();
    for (const bad of [
      1.5,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      2 ** 53,
      -(2 ** 53),
      2n ** 63n,
      -(2n ** 63n) - 1n,
      '5',
      null,
      undefined,
    ]) {
      expectCode(() => c.add('x', bad as never, 0), ErrorCode.InvalidArgument);
      expectCode(() => c.set('x', bad as never, 0), ErrorCode.InvalidArgument);
    }
    expect(c.size).toBe(0);
    expectCode(() => c.add('', 1, 0), ErrorCode.InvalidArgument);
    expectCode(() => c.add(5 as never, 1, 0), ErrorCode.InvalidArgument);
    expectCode(() => new Counters({ nameLengthMax: 3 }).add('abcd', 1, 0), ErrorCode.TooLarge);
    for (const ttlMs of [0, -1, 1.5, Number.NaN, 7 * 24 * 3600 * 1000 + 1])
      expectCode(() => c.add('x', 1, 0, { ttlMs }), ErrorCode.InvalidArgument);
    expect(() => c.add('x', 1, -1)).toThrow(/assertion failed/);
  });

  it('bounds the number of counters', () => {
    const c = new Counters({ countersMax: 2 });
    c.add('a', 1, 0);
    c.add('b', 1, 0, { ttlMs: 10 });
    expectCode(() => c.add('c', 1, 0), ErrorCode.Overloaded);
    c.add('a', 1, 0); // existing counters still work
    c.add('b', 1, 20); // replacing a dead one does not count as new
    expect(c.get('b', 20)).toBe(1n);
    c.delete('a', 20);
    c.add('c', 1, 20);
  });
});

describe('Counters: TTL windows', () => {
  it('starts a fixed window at the first add; later adds do not extend it', () => {
    const c = new Counters();
    expect(c.add('rate', 1, 1000, { ttlMs: 100 })).toBe(1n);
    expect(c.add('rate', 1, 1050, { ttlMs: 100 })).toBe(2n);
    expect(c.add('rate', 1, 1099)).toBe(3n);
    expect(c.deadlineOf('rate')).toBe(1100);
    // Dead at its deadline, before expire runs: reads 0, and the next add opens a new window.
    expect(c.get('rate', 1100)).toBe(0n);
    expect(c.list(1100)).toEqual([]);
    expect(c.add('rate', 1, 1100, { ttlMs: 100 })).toBe(1n);
    expect(c.deadlineOf('rate')).toBe(1200);
    expect(c.expire(1199)).toEqual([]);
    expect(c.expire(1200)).toEqual(['rate']);
    expect(c.size).toBe(0);
  });

  it('an add without ttlMs on an expired counter makes a counter without deadline', () => {
    const c = new Counters();
    c.add('x', 5, 0, { ttlMs: 10 });
    expect(c.add('x', 1, 10)).toBe(1n);
    expect(c.deadlineOf('x')).toBeUndefined();
    expect(c.nextDeadline()).toBeUndefined();
  });

  it('set replaces the deadline and returns the previous live value', () => {
    const c = new Counters();
    c.add('x', 5, 0, { ttlMs: 10 });
    expect(c.set('x', 7, 5, { ttlMs: 100 })).toBe(5n);
    expect(c.deadlineOf('x')).toBe(105);
    expect(c.set('x', 8, 6)).toBe(7n);
    expect(c.deadlineOf('x')).toBeUndefined();
    expect(c.get('x', 1_000_000)).toBe(8n);
    c.set('y', 1, 0, { ttlMs: 5 });
    expect(c.set('y', 2, 5)).toBe(0n);
  });

  it('expires in (deadline, name) order, bounded by max', () => {
    const c = new Counters();
    c.add('b', 1, 0, { ttlMs: 10 });
    c.add('a', 1, 0, { ttlMs: 20 });
    c.add('c', 1, 0, { ttlMs: 10 });
    c.add('d', 1, 0);
    expect(c.nextDeadline()).toBe(10);
    expect(c.expire(100, 1)).toEqual(['b']);
    expect(c.expire(100)).toEqual(['c', 'a']);
    expect(c.list(100)).toEqual([{ name: 'd', value: 1n }]);
  });

  it('delete tells whether a live counter existed', () => {
    const c = new Counters();
    c.add('x', 1, 0, { ttlMs: 10 });
    expect(c.delete('x', 10)).toBe(false);
    expect(c.size).toBe(0);
    c.add('x', 1, 0);
    expect(c.delete('x', 10)).toBe(true);
    expect(c.delete('x', 10)).toBe(false);
  });

  it('lists in name order with paging', () => {
    const c = new Counters();
    for (const n of ['d', 'a', 'c', 'b']) c.add(n, 1, 0, n === 'c' ? { ttlMs: 5 } : undefined);
    expect(c.list(0).map((e) => e.name)).toEqual(['a', 'b', 'c', 'd']);
    expect(c.list(0)[2]).toEqual({ name: 'c', value: 1n, deadline: 5 });
    expect(c.list(5).map((e) => e.name)).toEqual(['a', 'b', 'd']);
    expect(c.list(0, { after: 'a', limit: 2 }).map((e) => e.name)).toEqual(['b', 'c']);
    expect(c.list(0, { after: 'bb' }).map((e) => e.name)).toEqual(['c', 'd']);
    expect(c.list(0, { limit: 0 })).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------
// Model-based: the naive reference is a Map with a sort on every query.

type Op =
  | { k: 'add'; name: string; delta: unknown; ttlMs?: number }
  | { k: 'set'; name: string; value: unknown; ttlMs?: number }
  | { k: 'get'; name: string }
  | { k: 'delete'; name: string }
  | { k: 'step'; dt: number; lag: number }
  | { k: 'list' };

const NAMES = ['a', 'b', 'rate/1', 'rate/2', 'z'];
const nameArb = fc.constantFrom(...NAMES);
const int64Arb = fc.bigInt({ min: INT64_MIN, max: INT64_MAX });
const deltaArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: -5, max: 5 }) },
  { weight: 2, arbitrary: fc.constantFrom(INT64_MAX, INT64_MIN, 2n ** 62n, -(2n ** 62n), 1n, -1n) },
  { weight: 2, arbitrary: int64Arb },
  { weight: 1, arbitrary: fc.maxSafeInteger() },
  { weight: 1, arbitrary: fc.constantFrom(1.5, Number.NaN, 2 ** 53, 2n ** 63n, -(2n ** 63n) - 1n, '1') },
);
const ttlArb = fc.option(fc.constantFrom(1, 5, 20, 100, 0, 2.5), { nil: undefined, freq: 2 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({ k: fc.constant('add' as const), name: nameArb, delta: deltaArb, ttlMs: ttlArb }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant('set' as const), name: nameArb, value: deltaArb, ttlMs: ttlArb }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('get' as const), name: nameArb }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('delete' as const), name: nameArb }) },
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant('step' as const),
      dt: fc.integer({ min: 0, max: 30 }),
      lag: fc.constantFrom(0, 0, 3, 40),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('list' as const) }) },
);

class CounterModel {
  m = new Map<string, { value: bigint; deadline?: number }>();

  toInt(v: unknown): bigint | undefined {
    if (typeof v === 'bigint') return v >= INT64_MIN && v <= INT64_MAX ? v : undefined;
    if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v);
    return undefined;
  }

  ttlOk(t: number | undefined): boolean {
    return t === undefined || (Number.isInteger(t) && t >= 1);
  }

  live(name: string, now: number) {
    const r = this.m.get(name);
    return r && (r.deadline === undefined || r.deadline > now) ? r : undefined;
  }

  add(name: string, delta: unknown, now: number, ttlMs: number | undefined) {
    const d = this.toInt(delta);
    if (d === undefined || !this.ttlOk(ttlMs)) return { error: ErrorCode.InvalidArgument };
    const r = this.live(name, now);
    if (!r) {
      this.m.set(name, ttlMs === undefined ? { value: d } : { value: d, deadline: now + ttlMs });
      return d;
    }
    const next = r.value + d;
    if (next > INT64_MAX || next < INT64_MIN) return { error: ErrorCode.InvalidArgument };
    r.value = next;
    return next;
  }

  set(name: string, value: unknown, now: number, ttlMs: number | undefined) {
    const v = this.toInt(value);
    if (v === undefined || !this.ttlOk(ttlMs)) return { error: ErrorCode.InvalidArgument };
    const prev = this.live(name, now)?.value ?? 0n;
    this.m.set(name, ttlMs === undefined ? { value: v } : { value: v, deadline: now + ttlMs });
    return prev;
  }

  expire(now: number): string[] {
    const out = [...this.m.entries()]
      .filter(([, r]) => r.deadline !== undefined && r.deadline <= now)
      .sort(([na, a], [nb, b]) => a.deadline! - b.deadline! || (na < nb ? -1 : na > nb ? 1 : 0))
      .map(([n]) => n);
    for (const n of out) this.m.delete(n);
    return out;
  }

  list(now: number) {
    return [...this.m.keys()]
      .sort()
      .filter((n) => this.live(n, now))
      .map((n) => ({ name: n, ...this.m.get(n)! }));
  }
}

/** run applies ops to a Counters (and the model, if given) and returns every output. */
function run(c: Counters, ops: Op[], start: { now: number }, model?: CounterModel): unknown[] {
  const outputs: unknown[] = [];
  const check = (engine: unknown, want: () => unknown) => {
    outputs.push(engine);
    if (model) expect(engine).toEqual(want());
  };
  for (const op of ops) {
    const now = start.now;
    const opts = 'ttlMs' in op && op.ttlMs !== undefined ? { ttlMs: op.ttlMs } : undefined;
    switch (op.k) {
      case 'add':
        check(
          codeOf(() => c.add(op.name, op.delta as bigint, now, opts)),
          () => model!.add(op.name, op.delta, now, op.ttlMs),
        );
        break;
      case 'set':
        check(
          codeOf(() => c.set(op.name, op.value as bigint, now, opts)),
          () => model!.set(op.name, op.value, now, op.ttlMs),
        );
        break;
      case 'get':
        check(c.get(op.name, now), () => model!.live(op.name, now)?.value ?? 0n);
        break;
      case 'delete':
        check(c.delete(op.name, now), () => {
          const had = model!.live(op.name, now) !== undefined;
          model!.m.delete(op.name);
          return had;
        });
        break;
      case 'step': {
        start.now += op.dt;
        const cutoff = Math.max(0, start.now - op.lag);
        check(c.expire(cutoff), () => model!.expire(cutoff));
        check(c.nextDeadline(), () => {
          const ds = [...model!.m.values()].map((r) => r.deadline).filter((d) => d !== undefined);
          return ds.length === 0 ? undefined : Math.min(...ds);
        });
        break;
      }
      case 'list':
        check(c.list(now), () => model!.list(now));
        break;
    }
    if (model) {
      expect(c.size).toBe(model.m.size);
      for (const n of NAMES) expect(c.deadlineOf(n)).toBe(model.m.get(n)?.deadline);
    }
  }
  return outputs;
}

const packr = new Packr({ useRecords: false });

describe('Counters: model-based', () => {
  it('matches the naive reference', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 150, size: 'max' }), (ops) => {
        run(new Counters(), ops, { now: 0 }, new CounterModel());
      }),
      { numRuns: 400 },
    );
  });

  it('a restored engine behaves exactly like the original', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 2, maxLength: 120, size: 'max' }), fc.nat(), (ops, cut) => {
        const k = cut % ops.length;
        const a = new Counters();
        const clock = { now: 0 };
        run(a, ops.slice(0, k), clock);
        const snap = a.snapshot();
        const parts = [...snap.parts()];
        const b = Counters.restore(parts.map((p) => packr.unpack(packr.pack(p))));
        const clockB = { now: clock.now };
        const outA = run(a, ops.slice(k), clock);
        const outB = run(b, ops.slice(k), clockB);
        expect(outB).toEqual(outA);
        expect([...b.snapshot().parts()]).toEqual([...a.snapshot().parts()]);
        // The snapshot taken midway is a frozen view: later writes do not show through.
        expect([...snap.parts()]).toEqual(parts);
      }),
      { numRuns: 300 },
    );
  });
});

describe('Counters: snapshot', () => {
  it('streams bounded parts in name order and restores them', () => {
    const c = new Counters();
    for (let i = 0; i < 2500; i++)
      c.add(
        `n${String(i).padStart(5, '0')}`,
        BigInt(i) * 2n ** 40n,
        0,
        i % 3 === 0 ? { ttlMs: 10 + i } : undefined,
      );
    const parts = [...c.snapshot().parts()] as { rows: unknown[][] }[];
    expect(parts.map((p) => p.rows.length)).toEqual([COUNTER_PART_ROWS_MAX, COUNTER_PART_ROWS_MAX, 500]);
    const r = Counters.restore(parts);
    expect(r.list(0)).toEqual(c.list(0));
    expect(r.nextDeadline()).toBe(10);
    expect(r.expire(20)).toEqual(c.expire(20));
  });

  it('accepts small values narrowed to numbers by a codec', () => {
    const r = Counters.restore([
      {
        t: 'counters',
        v: 1,
        rows: [
          ['a', 5, null],
          ['b', 7n, 10],
        ],
      },
    ]);
    expect(r.get('a', 0)).toBe(5n);
    expect(r.get('b', 0)).toBe(7n);
    expect(r.deadlineOf('b')).toBe(10);
  });

  it('throws CORRUPTED on malformed parts', () => {
    const bad: unknown[][] = [
      [null],
      ['x'],
      [{ t: 'leases', v: 1, rows: [] }],
      [{ t: 'counters', v: 2, rows: [] }],
      [{ t: 'counters', v: 1, rows: {} }],
      [{ t: 'counters', v: 1, rows: [['a', 1n]] }],
      [{ t: 'counters', v: 1, rows: [['', 1n, null]] }],
      [{ t: 'counters', v: 1, rows: [['a', 2n ** 63n, null]] }],
      [{ t: 'counters', v: 1, rows: [['a', 1.5, null]] }],
      [{ t: 'counters', v: 1, rows: [['a', 1n, -1]] }],
      [{ t: 'counters', v: 1, rows: [['a', 1n, 'soon']] }],
      [
        {
          t: 'counters',
          v: 1,
          rows: [
            ['b', 1n, null],
            ['a', 1n, null],
          ],
        },
      ],
      [
        { t: 'counters', v: 1, rows: [['a', 1n, null]] },
        { t: 'counters', v: 1, rows: [['a', 1n, null]] },
      ],
    ];
    for (const parts of bad) expectCode(() => Counters.restore(parts), ErrorCode.Corrupted);
  });
});
