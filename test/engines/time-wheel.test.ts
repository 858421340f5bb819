import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SNAPSHOT_PART_RECORDS_MAX, TimeWheel, type TimeWheelOptions } from '../../src/engines/time-wheel.js';
import { DkvError, ErrorCode, isDkvError } from '../../src/errors.js';

/** Model is the deliberately dumb reference: a Map, scanned and sorted on every query. */
class Model {
  readonly deadlines = new Map<string, number>();
  constructor(public now: number) {}

  schedule(id: string, deadline: number): void {
    this.deadlines.set(id, deadline);
  }

  cancel(id: string): boolean {
    return this.deadlines.delete(id);
  }

  advance(now: number): string[] {
    if (now < this.now) return [];
    this.now = now;
    const due = this.sorted().filter(([, d]) => d <= now);
    for (const [id] of due) this.deadlines.delete(id);
    return due.map(([id]) => id);
  }

  nextDeadline(): number | undefined {
    let min: number | undefined;
    for (const d of this.deadlines.values()) if (min === undefined || d < min) min = d;
    return min;
  }

  sorted(): [string, number][] {
    return [...this.deadlines].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }
}

function records(wheel: TimeWheel): [string, number][] {
  const out: [string, number][] = [];
  for (const part of wheel.snapshot().parts()) out.push(...(part as [string, number][]));
  return out;
}

/** A time offset, either in ms or as k ticks plus a small delta, so tick boundaries are hit. */
type Offset = { ms: number } | { ticks: number; delta: number };

function resolve(off: Offset, tickMs: number): number {
  return 'ms' in off ? off.ms : off.ticks * tickMs + off.delta;
}

type Op =
  | { k: 'schedule'; id: string; off: Offset }
  | { k: 'cancel'; id: string }
  | { k: 'advance'; off: Offset }
  | { k: 'next' };

const IDS = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'aa', ''];

const offsetArb: fc.Arbitrary<Offset> = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: -30, max: 60 }).map((ms) => ({ ms })) },
  {
    weight: 4,
    arbitrary: fc
      .record({ ticks: fc.integer({ min: 0, max: 40 }), delta: fc.constantFrom(-1, 0, 1) })
      .map((o) => o),
  },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 200_000 }).map((ms) => ({ ms })) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 2 ** 42 }).map((ms) => ({ ms })) },
  {
    weight: 1,
    arbitrary: fc
      .record({
        ticks: fc.constantFrom(2 ** 16, 2 ** 24, 2 ** 32, 2 ** 36),
        delta: fc.integer({ min: -2, max: 2 }),
      })
      .map((o) => o),
  },
);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant('schedule' as const),
      id: fc.constantFrom(...IDS),
      off: offsetArb,
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('cancel' as const), id: fc.constantFrom(...IDS) }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant('advance' as const), off: offsetArb }) },
  { weight: 1, arbitrary: fc.constant({ k: 'next' as const }) },
);

/** startArb is the initial clock: small, or just before a top-level block boundary of the default layout. */
const startArb = fc.oneof(
  fc.integer({ min: 0, max: 1000 }),
  fc
    .integer({ min: 1, max: 3 })
    .chain((m) => fc.integer({ min: 1, max: 5000 }).map((back) => m * 2 ** 32 * 10 - back)),
  fc.integer({ min: 0, max: 2 ** 41 }),
);

const CONFIGS: readonly TimeWheelOptions[] = [
  { tickMs: 10 },
  { tickMs: 10, slotsPerLevel: 64 },
  { tickMs: 1, slotsPerLevel: 4, levels: 2 },
  { tickMs: 7, slotsPerLevel: 8, levels: 3 },
  { tickMs: 3, slotsPerLevel: 2, levels: 5 },
];

/** Runner applies one op to a wheel and returns its output, so wheels and model compare as values. */
function apply(wheel: TimeWheel, op: Op, tickMs: number): unknown {
  switch (op.k) {
    case 'schedule': {
      const d = wheel.now + resolve(op.off, tickMs);
      wheel.schedule(op.id, d);
      return [wheel.has(op.id), wheel.deadlineOf(op.id)];
    }
    case 'cancel':
      return wheel.cancel(op.id);
    case 'advance':
      return wheel.advance(Math.max(0, wheel.now + resolve(op.off, tickMs)));
    case 'next':
      return wheel.nextDeadline();
  }
}

function applyModel(model: Model, op: Op, tickMs: number): unknown {
  switch (op.k) {
    case 'schedule': {
      const d = model.now + resolve(op.off, tickMs);
      model.schedule(op.id, d);
      return [true, d];
    }
    case 'cancel':
      return model.cancel(op.id);
    case 'advance':
      return model.advance(Math.max(0, model.now + resolve(op.off, tickMs)));
    case 'next':
      return model.nextDeadline();
  }
}

function expectSame(wheel: TimeWheel, model: Model, checkNext: boolean): void {
  expect(wheel.size).toBe(model.deadlines.size);
  expect(wheel.now).toBe(model.now);
  if (checkNext) expect(wheel.nextDeadline()).toBe(model.nextDeadline());
}

describe('TimeWheel against a Map model', () => {
  for (const config of CONFIGS) {
    const other = CONFIGS[(CONFIGS.indexOf(config) + 2) % CONFIGS.length]!;
    it(`matches the model, and a wheel restored midway stays identical (${JSON.stringify(config)})`, () => {
      fc.assert(
        fc.property(
          startArb,
          fc.array(opArb, { minLength: 1, maxLength: 150 }),
          fc.nat(),
          fc.boolean(),
          fc.boolean(),
          (start, ops, cutSeed, checkNext, restoreOther) => {
            const tickMs = config.tickMs;
            const wheel = new TimeWheel(config, start);
            const model = new Model(start);
            const cut = cutSeed % ops.length;
            let restored: TimeWheel | undefined;
            const restoredOpts = restoreOther ? other : config;
            for (let i = 0; i < ops.length; i++) {
              if (i === cut) {
                restored = TimeWheel.restore(wheel.snapshot().parts(), restoredOpts, wheel.now);
                expect(records(restored)).toEqual(records(wheel));
              }
              const op = ops[i]!;
              const want = applyModel(model, op, tickMs);
              expect(apply(wheel, op, tickMs)).toEqual(want);
              if (restored !== undefined) {
                expect(apply(restored, op, tickMs)).toEqual(want);
                expectSame(restored, model, checkNext);
              }
              expectSame(wheel, model, checkNext);
            }
            expect(records(wheel)).toEqual(model.sorted());
            expect(records(restored!)).toEqual(model.sorted());
            expect(wheel.nextDeadline()).toBe(model.nextDeadline());
            for (const id of IDS) {
              expect(wheel.deadlineOf(id)).toBe(model.deadlines.get(id));
              expect(restored!.has(id)).toBe(model.deadlines.has(id));
            }
            // Draining everything returns the rest in order.
            const end = Number.MAX_SAFE_INTEGER;
            expect(wheel.advance(end)).toEqual(model.advance(end));
            expect(wheel.size).toBe(0);
            expect(wheel.nextDeadline()).toBeUndefined();
          },
        ),
        { numRuns: 250 },
      );
    });
  }
});

describe('TimeWheel edge cases', () => {
  it('never expires early inside a tick, and expires exactly at the deadline', () => {
    const w = new TimeWheel({ tickMs: 10 }, 100);
    w.schedule('x', 105);
    w.schedule('y', 109);
    w.schedule('z', 110);
    expect(w.advance(104)).toEqual([]);
    expect(w.advance(105)).toEqual(['x']);
    expect(w.advance(108)).toEqual([]);
    expect(w.nextDeadline()).toBe(109);
    expect(w.advance(109)).toEqual(['y']);
    expect(w.advance(110)).toEqual(['z']);
    expect(w.size).toBe(0);
  });

  it('expires a crowded current tick millisecond by millisecond', () => {
    const w = new TimeWheel({ tickMs: 100 }, 1000);
    for (let i = 0; i < 500; i++) w.schedule(`k${String(i).padStart(3, '0')}`, 1001 + ((i * 37) % 99));
    const seen: string[] = [];
    for (let t = 1000; t < 1100; t++) {
      const got = w.advance(t);
      for (const id of got) expect(1001 + ((Number(id.slice(1)) * 37) % 99)).toBe(t);
      seen.push(...got);
    }
    expect(seen.length).toBe(500);
    expect(w.size).toBe(0);
  });

  it('returns due deadlines (<= now) on the next advance, even at the same now', () => {
    const w = new TimeWheel({ tickMs: 10 }, 1000);
    w.schedule('past', 5);
    w.schedule('now', 1000);
    expect(w.has('past')).toBe(true);
    expect(w.nextDeadline()).toBe(5);
    expect(w.advance(999)).toEqual([]);
    expect(w.now).toBe(1000);
    expect(w.advance(1000)).toEqual(['past', 'now']);
    expect(w.size).toBe(0);
  });

  it('orders ids with the same deadline by id, across levels and the due list', () => {
    const w = new TimeWheel({ tickMs: 10, slotsPerLevel: 4, levels: 2 }, 0);
    for (const id of ['m', 'b', 'z', 'a']) w.schedule(id, 500);
    w.schedule('c', 0);
    w.schedule('0', 499);
    expect(w.advance(10_000)).toEqual(['c', '0', 'a', 'b', 'm', 'z']);
  });

  it('reschedules earlier and later, moving between levels', () => {
    const w = new TimeWheel({ tickMs: 10, slotsPerLevel: 8 }, 0);
    w.schedule('x', 100_000);
    w.schedule('x', 50);
    expect(w.deadlineOf('x')).toBe(50);
    expect(w.size).toBe(1);
    expect(w.advance(49)).toEqual([]);
    w.schedule('x', 10_000_000);
    expect(w.advance(60)).toEqual([]);
    expect(w.nextDeadline()).toBe(10_000_000);
    w.schedule('x', 10);
    expect(w.advance(60)).toEqual(['x']);
  });

  it('cancels an entry after it cascaded down a level', () => {
    const w = new TimeWheel({ tickMs: 1, slotsPerLevel: 4, levels: 3 }, 0);
    w.schedule('x', 37);
    w.schedule('y', 38);
    expect(w.advance(33)).toEqual([]); // x and y cascaded from level 2 to level 0
    expect(w.cancel('x')).toBe(true);
    expect(w.cancel('x')).toBe(false);
    expect(w.nextDeadline()).toBe(38);
    expect(w.advance(40)).toEqual(['y']);
  });

  it('jumps far ahead (a day, a year, past the top level) without walking ticks', () => {
    const w = new TimeWheel({ tickMs: 10 }, 1_700_000_000_000);
    const day = 86_400_000;
    const ids: string[] = [];
    for (let i = 0; i < 1000; i++) {
      const id = `k${i}`;
      ids.push(id);
      w.schedule(id, w.now + 1 + i * 997 * 60_000); // up to ~1.9 years
    }
    w.schedule('far', w.now + 2 ** 35 * 10); // beyond 2^32 ticks (~11 years): the overflow list
    let got: string[] = [];
    const t0 = w.now;
    got = got.concat(w.advance(t0 + day));
    got = got.concat(w.advance(t0 + 400 * day));
    got = got.concat(w.advance(t0 + 3 * 365 * day));
    expect(got).toEqual(ids);
    expect(w.nextDeadline()).toBe(t0 + 2 ** 35 * 10);
    expect(w.advance(t0 + 2 ** 35 * 10 - 1)).toEqual([]);
    expect(w.advance(t0 + 2 ** 35 * 10)).toEqual(['far']);
  });

  it('takes entries from the overflow list when crossing a top-level block', () => {
    const w = new TimeWheel({ tickMs: 1, slotsPerLevel: 4, levels: 2 }, 14); // levels span 16 ticks
    w.schedule('a', 17); // next top block: overflow
    w.schedule('b', 40);
    w.schedule('c', 15);
    expect(w.nextDeadline()).toBe(15);
    expect(w.advance(16)).toEqual(['c']);
    expect(w.advance(17)).toEqual(['a']);
    expect(w.advance(39)).toEqual([]);
    expect(w.advance(40)).toEqual(['b']);
  });

  it('keeps time monotonic: a smaller now is a no-op', () => {
    const w = new TimeWheel({ tickMs: 10 }, 500);
    w.schedule('x', 505);
    expect(w.advance(400)).toEqual([]);
    expect(w.now).toBe(500);
    expect(w.advance(505)).toEqual(['x']);
  });

  it('behaves the same whatever the insertion order or layout', () => {
    const entries: [string, number][] = [];
    for (let i = 0; i < 300; i++) entries.push([`id${(i * 7919) % 300}`, 1000 + ((i * 104_729) % 5000)]);
    const a = new TimeWheel({ tickMs: 10 }, 1000);
    const b = new TimeWheel({ tickMs: 3, slotsPerLevel: 4 }, 1000);
    for (const [id, d] of entries) a.schedule(id, d);
    for (const [id, d] of [...entries].reverse()) b.schedule(id, d);
    expect(records(a)).toEqual(records(b));
    for (let t = 1000; t <= 7000; t += 37) expect(a.advance(t)).toEqual(b.advance(t));
  });
});

describe('TimeWheel snapshot', () => {
  it('is frozen at call time and cut into bounded parts', () => {
    const w = new TimeWheel({ tickMs: 10 }, 0);
    for (let i = 0; i < 2500; i++) w.schedule(`k${i}`, 1 + (i % 977));
    const snap = w.snapshot();
    w.advance(500);
    w.schedule('new', 3);
    w.cancel('k976');
    const parts = [...snap.parts()] as [string, number][][];
    expect(parts.map((p) => p.length)).toEqual([SNAPSHOT_PART_RECORDS_MAX, SNAPSHOT_PART_RECORDS_MAX, 452]);
    const flat = parts.flat();
    expect(flat.length).toBe(2500);
    expect(flat.some(([id]) => id === 'new')).toBe(false);
    expect(flat.some(([id]) => id === 'k976')).toBe(true);
    // parts() can be read again, with the same result.
    expect([...snap.parts()]).toEqual(parts);
    const r = TimeWheel.restore(snap.parts(), { tickMs: 10 }, 0);
    expect(r.size).toBe(2500);
    expect(r.nextDeadline()).toBe(1);
  });

  it('an empty wheel has no parts and restores empty', () => {
    const w = new TimeWheel({ tickMs: 10 }, 42);
    expect([...w.snapshot().parts()]).toEqual([]);
    const r = TimeWheel.restore([], { tickMs: 10 }, 42);
    expect(r.size).toBe(0);
    expect(r.nextDeadline()).toBeUndefined();
  });

  const bad: [string, unknown][] = [
    ['not iterable', 5],
    ['a part that is not an array', [{ a: 1 }]],
    ['an empty part', [[]]],
    ['an oversized part', [Array.from({ length: SNAPSHOT_PART_RECORDS_MAX + 1 }, (_, i) => [`k${i}`, i])]],
    ['a record that is not a pair', [[['a', 1, 2]]]],
    ['a non-string id', [[[1, 1]]]],
    ['a fractional deadline', [[['a', 1.5]]]],
    ['a NaN deadline', [[['a', Number.NaN]]]],
    ['an unsafe deadline', [[['a', 2 ** 60]]]],
    ['unsorted deadlines', [[['a', 2]], [['b', 1]]]],
    [
      'unsorted ids',
      [
        [
          ['b', 1],
          ['a', 1],
        ],
      ],
    ],
    [
      'a duplicate id',
      [
        [
          ['a', 1],
          ['a', 1],
        ],
      ],
    ],
  ];
  for (const [what, parts] of bad) {
    it(`rejects ${what} with CORRUPTED`, () => {
      let caught: unknown;
      try {
        TimeWheel.restore(parts as Iterable<unknown>, { tickMs: 10 }, 0);
      } catch (err) {
        caught = err;
      }
      expect(isDkvError(caught, ErrorCode.Corrupted)).toBe(true);
    });
  }
});

describe('TimeWheel arguments', () => {
  it('rejects bad options, clocks and deadlines with INVALID_ARGUMENT', () => {
    const invalid = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        return err instanceof DkvError && err.code === ErrorCode.InvalidArgument;
      }
      return false;
    };
    expect(invalid(() => new TimeWheel({ tickMs: 0 }, 0))).toBe(true);
    expect(invalid(() => new TimeWheel({ tickMs: 1.5 }, 0))).toBe(true);
    expect(invalid(() => new TimeWheel({ tickMs: 10, slotsPerLevel: 100 }, 0))).toBe(true);
    expect(invalid(() => new TimeWheel({ tickMs: 10, slotsPerLevel: 1 }, 0))).toBe(true);
    expect(invalid(() => new TimeWheel({ tickMs: 10, levels: 0 }, 0))).toBe(true);
    expect(invalid(() => new TimeWheel({ tickMs: 10 }, -1))).toBe(true);
    const w = new TimeWheel({ tickMs: 10 }, 0);
    expect(invalid(() => w.schedule('a', Number.POSITIVE_INFINITY))).toBe(true);
    expect(invalid(() => w.schedule('a', 1.5))).toBe(true);
    expect(invalid(() => w.advance(Number.NaN))).toBe(true);
    expect(w.size).toBe(0);
  });
});
