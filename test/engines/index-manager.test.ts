import fc from 'fast-check';
import { pack, unpack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { compareIndexValues, toIndexValue } from '../../src/engines/collate.js';
import {
  type Continuation,
  DEFAULT_TUNING,
  INDEX_LIMITS,
  type IndexDef,
  IndexManager,
  type IndexValue,
  type KeySource,
  type PlannerTuning,
  type Query,
  type QueryOptions,
  type QueryResult,
} from '../../src/engines/index-manager.js';
import type { Item, Labels } from '../../src/engines/types.js';
import { ErrorCode, isDkvError } from '../../src/errors.js';

// ---------------------------------------------------------------------------------------------
// The reference: a Map of items, and every query answered by filter + sort over all of them.
// Its collation and field extraction are written out separately from the engine's.
// ---------------------------------------------------------------------------------------------

const TYPE_ORDER = ['null', 'boolean', 'number', 'string'];

function refTypeOf(v: IndexValue): string {
  return v === null ? 'null' : typeof v;
}

function refCompareValues(a: IndexValue, b: IndexValue): number {
  const ta = TYPE_ORDER.indexOf(refTypeOf(a));
  const tb = TYPE_ORDER.indexOf(refTypeOf(b));
  if (ta !== tb) return ta < tb ? -1 : 1;
  if (typeof a === 'boolean') return Number(a) - Number(b as boolean);
  if (typeof a === 'number') return a < (b as number) ? -1 : a > (b as number) ? 1 : 0;
  if (typeof a === 'string') {
    // Code unit by code unit, the long way.
    const bs = b as string;
    for (let i = 0; i < Math.min(a.length, bs.length); i++) {
      const d = a.charCodeAt(i) - bs.charCodeAt(i);
      if (d !== 0) return d < 0 ? -1 : 1;
    }
    return a.length - bs.length < 0 ? -1 : a.length === bs.length ? 0 : 1;
  }
  return 0;
}

function refCompareKeys(a: string, b: string): number {
  return refCompareValues(a, b);
}

function refIndexable(x: unknown): IndexValue | undefined {
  if (x === null || typeof x === 'boolean' || typeof x === 'string') return x;
  if (typeof x === 'number' && Number.isFinite(x)) return Object.is(x, -0) ? 0 : x;
  return undefined;
}

function refExtract(def: IndexDef, item: Item): IndexValue | undefined {
  if (def.label !== undefined) {
    const labels = item.labels;
    if (!labels || !Object.hasOwn(labels, def.label)) return undefined;
    return refIndexable(labels[def.label]);
  }
  let cur: unknown = item.value;
  for (const seg of def.field!.split('.')) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur) || cur instanceof Uint8Array)
      return undefined;
    if (!Object.hasOwn(cur, seg)) return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return refIndexable(cur);
}

class Reference {
  readonly items = new Map<string, Item>();
  constructor(readonly defs: readonly IndexDef[]) {}

  clone(): Reference {
    const r = new Reference(this.defs);
    for (const [k, v] of this.items) r.items.set(k, v);
    return r;
  }

  valueOf(index: string, key: string): IndexValue | undefined {
    const def = this.defs.find((d) => d.name === index)!;
    return refExtract(def, this.items.get(key)!);
  }

  matches(q: Query, key: string): boolean {
    if ('and' in q) return q.and.every((b) => this.matches(b, key));
    if ('or' in q) return q.or.some((b) => this.matches(b, key));
    if ('prefix' in q) return key.startsWith(q.prefix);
    const v = this.valueOf(q.index, key);
    if (v === undefined) return false;
    if ('eq' in q) return refCompareValues(v, refIndexable(q.eq)!) === 0;
    if (q.gte !== undefined && refCompareValues(v, q.gte) < 0) return false;
    if (q.gt !== undefined && refCompareValues(v, q.gt) <= 0) return false;
    if (q.lte !== undefined && refCompareValues(v, q.lte) > 0) return false;
    if (q.lt !== undefined && refCompareValues(v, q.lt) >= 0) return false;
    return true;
  }

  /** All matches in the requested order, after the continuation. */
  ordered(q: Query, opts: QueryOptions): string[] {
    const sort = opts.sort;
    const byIndex = sort !== undefined && 'index' in sort ? sort.index : undefined;
    const desc = sort === undefined ? false : 'key' in sort ? sort.key === 'desc' : sort.order === 'desc';
    let keys = [...this.items.keys()].filter((k) => this.matches(q, k));
    if (byIndex !== undefined) keys = keys.filter((k) => this.valueOf(byIndex, k) !== undefined);
    const cmp = (a: string, b: string): number => {
      let c = 0;
      if (byIndex !== undefined) c = refCompareValues(this.valueOf(byIndex, a)!, this.valueOf(byIndex, b)!);
      if (c === 0) c = refCompareKeys(a, b);
      return desc ? -c : c;
    };
    keys.sort(cmp);
    const after = opts.after;
    if (after !== undefined) {
      keys = keys.filter((k) => {
        let c = 0;
        if (byIndex !== undefined) c = refCompareValues(this.valueOf(byIndex, k)!, after.v!);
        if (c === 0) c = refCompareKeys(k, after.k);
        return desc ? c < 0 : c > 0;
      });
    }
    return keys;
  }

  query(q: Query, opts: QueryOptions): { keys: string[]; count?: number; next?: Continuation } {
    const all = this.ordered(q, opts);
    if (opts.countOnly) return { keys: [], count: all.length };
    const limit = opts.limit ?? INDEX_LIMITS.limitDefault;
    const keys = all.slice(0, limit);
    if (all.length <= limit) return { keys };
    const k = keys[keys.length - 1]!;
    const sort = opts.sort;
    const next = sort !== undefined && 'index' in sort ? { k, v: this.valueOf(sort.index, k)! } : { k };
    return { keys, next };
  }

  /** The store as the engine sees it. */
  source(): KeySource {
    return {
      keysWithPrefix: (prefix: string, after?: string) =>
        [...this.items.keys()]
          .filter((k) => k.startsWith(prefix) && (after === undefined || k > after))
          .sort(refCompareKeys),
      has: (key: string) => this.items.has(key),
    };
  }

  /** The snapshot entry parts the engine should hold: per index, (value, key) ascending. */
  expectedEntries(): { index: number; values: IndexValue[]; keys: string[] }[] {
    const out: { index: number; values: IndexValue[]; keys: string[] }[] = [];
    this.defs.forEach((def, index) => {
      const pairs: [IndexValue, string][] = [];
      for (const [k, item] of this.items) {
        const v = refExtract(def, item);
        if (v !== undefined) pairs.push([v, k]);
      }
      pairs.sort((a, b) => refCompareValues(a[0], b[0]) || refCompareKeys(a[1], b[1]));
      for (let i = 0; i < pairs.length; i += INDEX_LIMITS.snapshotPartEntries) {
        const chunk = pairs.slice(i, i + INDEX_LIMITS.snapshotPartEntries);
        out.push({ index, values: chunk.map((p) => p[0]), keys: chunk.map((p) => p[1]) });
      }
    });
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

const DEFS: IndexDef[] = [
  { name: 'ra', kind: 'range', field: 'a' },
  { name: 'rb', kind: 'range', field: 'o.b' },
  { name: 'eb', kind: 'eq', field: 'o.b' },
  { name: 'rl', kind: 'range', label: 'l' },
  { name: 'em', kind: 'eq', label: 'm' },
];
const RANGE_INDEXES = ['ra', 'rb', 'rl'];
const ALL_INDEXES = DEFS.map((d) => d.name);

const KEYS = [
  '',
  'a',
  'a/1',
  'a/2',
  'a/é',
  'ab',
  'B',
  'b',
  'b/x',
  'é',
  'a\u00e9',
  '\ud83d\ude00',
  '\uffff',
  'z',
];
const PREFIXES = ['', 'a', 'a/', 'b', 'é', '\ud83d', 'q'];

const SCALARS: IndexValue[] = [
  null,
  true,
  false,
  0,
  -0,
  1,
  1.5,
  -2,
  1e300,
  '',
  'a',
  'b',
  '1',
  'é',
  '\ud83d\ude00',
];
/** Common values are favoured, so that eq queries find several keys. */
const arbScalar = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom<IndexValue>(0, 1, 'a') },
  { weight: 2, arbitrary: fc.constantFrom(...SCALARS) },
);
const arbUnindexable = fc.constantFrom<unknown>(
  Number.NaN,
  Number.POSITIVE_INFINITY,
  [1],
  { x: 1 },
  new Uint8Array([1]),
);
const arbFieldValue = fc.oneof({ weight: 5, arbitrary: arbScalar }, { weight: 1, arbitrary: arbUnindexable });

const arbObject = (requiredKeys: ('a' | 'o')[]) =>
  fc.record(
    {
      a: arbFieldValue,
      o: fc.oneof(
        { weight: 4, arbitrary: fc.record({ b: arbFieldValue }, { requiredKeys: [] }) },
        { weight: 1, arbitrary: arbUnindexable },
      ),
      z: fc.constant('ignored'),
    },
    { requiredKeys },
  );
const arbValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: arbObject(['a', 'o']) },
  { weight: 3, arbitrary: arbObject([]) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>('a string', new Uint8Array([1, 2]), null, [{ a: 1 }]) },
);

const arbLabels: fc.Arbitrary<Labels | undefined> = fc.option(
  fc.record(
    {
      l: fc.constantFrom<string | number>(0, 1, 2, -1, 'a', 'b', ''),
      m: fc.constantFrom<string | number>('x', 'y', 1),
    },
    { requiredKeys: [] },
  ),
  { nil: undefined },
);

const arbEq: fc.Arbitrary<Query> = fc.record({ index: fc.constantFrom(...ALL_INDEXES), eq: arbScalar });
const arbRange: fc.Arbitrary<Query> = fc
  .record({
    index: fc.constantFrom(...RANGE_INDEXES),
    lo: fc.option(fc.tuple(fc.constantFrom('gt', 'gte'), arbScalar), { nil: undefined }),
    hi: fc.option(fc.tuple(fc.constantFrom('lt', 'lte'), arbScalar), { nil: undefined }),
  })
  .map(({ index, lo, hi }) => {
    const q: Record<string, unknown> = { index };
    if (lo) q[lo[0]] = lo[1];
    if (hi) q[hi[0]] = hi[1];
    return q as unknown as Query;
  });
const arbPrefix: fc.Arbitrary<Query> = fc.record({ prefix: fc.constantFrom(...PREFIXES) });

const arbQuery: fc.Arbitrary<Query> = fc.letrec<{ q: Query }>((tie) => ({
  q: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 3, arbitrary: arbEq },
    { weight: 3, arbitrary: arbRange },
    { weight: 2, arbitrary: arbPrefix },
    { weight: 2, arbitrary: fc.record({ and: fc.array(tie('q'), { minLength: 1, maxLength: 3 }) }) },
    { weight: 1, arbitrary: fc.record({ or: fc.array(tie('q'), { minLength: 1, maxLength: 3 }) }) },
  ),
})).q;

const arbOptions: fc.Arbitrary<QueryOptions> = fc
  .record({
    sort: fc.oneof(
      fc.constant(undefined),
      fc.record({ key: fc.constantFrom<'asc' | 'desc'>('asc', 'desc') }),
      fc.record(
        { index: fc.constantFrom(...RANGE_INDEXES), order: fc.constantFrom<'asc' | 'desc'>('asc', 'desc') },
        { requiredKeys: ['index'] },
      ),
    ),
    limit: fc.option(fc.integer({ min: 1, max: 3 }), { freq: 8, nil: undefined }),
    countOnly: fc.option(fc.boolean(), { freq: 4, nil: undefined }),
  })
  .map((o) => {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
    return out as QueryOptions;
  });

type Op =
  | { op: 'put'; key: string; value: unknown; labels: Labels | undefined }
  | { op: 'del'; key: string }
  | { op: 'query'; q: Query; opts: QueryOptions };

const arbPut: fc.Arbitrary<Op> = fc.record({
  op: fc.constant('put' as const),
  key: fc.constantFrom(...KEYS),
  value: arbValue,
  labels: arbLabels,
});
const arbOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: arbPut },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('del' as const), key: fc.constantFrom(...KEYS) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('query' as const), q: arbQuery, opts: arbOptions }) },
);

/** arbOps loads some keys first, so that most queries have something to find. */
function arbOps(maxLength: number): fc.Arbitrary<Op[]> {
  return fc
    .tuple(
      fc.array(arbPut, { minLength: 8, maxLength: 20, size: 'max' }),
      fc.array(arbOp, { minLength: maxLength >> 1, maxLength, size: 'max' }),
    )
    .map(([puts, ops]) => [...puts, ...ops]);
}

/** arbTuning is the default planner, or one that collects nearly always, or ones with tight stream budgets. */
const arbTuning = fc.constantFrom<PlannerTuning>(
  DEFAULT_TUNING,
  { streamFactor: 0, streamSlack: 0, examinedMax: Number.POSITIVE_INFINITY },
  { streamFactor: 1, streamSlack: 1, examinedMax: Number.POSITIVE_INFINITY },
  { streamFactor: 0.5, streamSlack: 0, examinedMax: Number.POSITIVE_INFINITY },
);

/** COVERAGE counts the kinds of plan the model-based test exercised with two or more pages. */
const COVERAGE = new Map<string, number>();

// ---------------------------------------------------------------------------------------------
// Driving both
// ---------------------------------------------------------------------------------------------

function makeItem(key: string, value: unknown, labels: Labels | undefined, version: number): Item {
  return labels === undefined
    ? { key, value, version, createRevision: 1, modRevision: version }
    : { key, value, version, createRevision: 1, modRevision: version, labels };
}

/** apply runs one op on the engine and the reference, returning the engine's output. */
function apply(mgr: IndexManager, ref: Reference, op: Op): QueryResult | undefined {
  if (op.op === 'put') {
    const prev = ref.items.get(op.key);
    const next = makeItem(op.key, op.value, op.labels, (prev?.version ?? 0) + 1);
    ref.items.set(op.key, next);
    mgr.update(op.key, prev, next);
    return undefined;
  }
  if (op.op === 'del') {
    const prev = ref.items.get(op.key);
    ref.items.delete(op.key);
    mgr.update(op.key, prev, undefined);
    return undefined;
  }
  return mgr.query(op.q, op.opts, ref.source());
}

/** checkQuery compares one query's page, and its whole pagination, with the reference. */
function checkQuery(mgr: IndexManager, ref: Reference, q: Query, opts: QueryOptions, got: QueryResult): void {
  if (got.plan.includes('gave up')) COVERAGE.set('gave up', (COVERAGE.get('gave up') ?? 0) + 1);
  const want = ref.query(q, opts);
  expect({ keys: got.keys, count: got.count, next: got.next }).toEqual({
    keys: want.keys,
    count: want.count,
    next: want.next,
  });
  if (opts.countOnly) return;
  // Page through the whole result with the continuation: no duplicates, no gaps.
  const all = ref.ordered(q, { sort: opts.sort });
  const limit = opts.limit ?? 2;
  const pages: string[] = [];
  let after: Continuation | undefined;
  for (let i = 0; i <= all.length + 1; i++) {
    const page = mgr.query(q, { ...opts, limit, ...(after === undefined ? {} : { after }) }, ref.source());
    expect(page.keys.length).toBeLessThanOrEqual(limit);
    pages.push(...page.keys);
    // Counting after a cursor agrees with the rest of the pages.
    if (after !== undefined && i === 1) {
      const rest = mgr.query(q, { sort: opts.sort, after, countOnly: true } as QueryOptions, ref.source());
      expect(rest.count).toBe(all.length - (pages.length - page.keys.length));
    }
    if (page.next === undefined) break;
    if (i === 0) {
      const [, verb, source, by, dir] = /^(\w+) (\w+).* order=(\S+) (\w+)/.exec(page.plan)!;
      const kind = `${verb} ${source} ${by} ${dir}`;
      COVERAGE.set(kind, (COVERAGE.get(kind) ?? 0) + 1);
    }
    after = unpack(pack(page.next)) as Continuation; // it must survive the wire
  }
  expect(pages).toEqual(all);
}

function snapshotParts(mgr: IndexManager): unknown[] {
  return [...mgr.snapshot().parts()];
}

/** wire round-trips parts through msgpack, as the state machine will. */
function wire(parts: unknown[]): unknown[] {
  return parts.map((p) => unpack(pack(p)));
}

function entryParts(parts: unknown[]): unknown[] {
  return parts.slice(1).map((p) => {
    const { index, values, keys } = p as { index: number; values: IndexValue[]; keys: string[] };
    return { index, values, keys };
  });
}

function expectDkvError(fn: () => unknown, code: string = ErrorCode.InvalidArgument): string {
  try {
    fn();
  } catch (err) {
    if (!isDkvError(err)) throw err;
    expect(err.code).toBe(code);
    return err.message;
  }
  throw new Error('expected a DkvError');
}

// ---------------------------------------------------------------------------------------------

describe('collation', () => {
  it('orders null < false < true < numbers < strings, numbers numerically, strings by code units', () => {
    const sorted: IndexValue[] = [
      null,
      false,
      true,
      -1e300,
      -2,
      0,
      1,
      1.5,
      1e300,
      '',
      '1',
      'B',
      'a',
      'é',
      '\ud83d\ude00',
      '\uffff',
    ];
    for (let i = 0; i < sorted.length; i++)
      for (let j = 0; j < sorted.length; j++)
        expect(Math.sign(compareIndexValues(sorted[i]!, sorted[j]!))).toBe(Math.sign(i - j));
  });

  it('equality: 1 and 1.0 and -0 and 0 are one value; "1" and 1, 0 and false, null and "" differ', () => {
    expect(compareIndexValues(1, 1.0)).toBe(0);
    expect(compareIndexValues(toIndexValue(-0)!, 0)).toBe(0);
    expect(Object.is(toIndexValue(-0), 0)).toBe(true);
    expect(compareIndexValues('1', 1)).not.toBe(0);
    expect(compareIndexValues(0, false)).not.toBe(0);
    expect(compareIndexValues(null, '')).not.toBe(0);
  });

  it('agrees with the reference collation on arbitrary values', () => {
    const arb = fc.oneof(
      fc.constant(null),
      fc.boolean(),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.string({ unit: 'binary' }),
    );
    fc.assert(
      fc.property(arb, arb, (a, b) => {
        const x = toIndexValue(a)!;
        const y = toIndexValue(b)!;
        expect(Math.sign(compareIndexValues(x, y))).toBe(Math.sign(refCompareValues(x, y)));
      }),
      { numRuns: 2000 },
    );
  });

  it('does not index NaN, infinities, arrays, objects, bytes, bigints or undefined', () => {
    for (const x of [Number.NaN, Number.POSITIVE_INFINITY, [], {}, new Uint8Array(1), 1n, undefined])
      expect(toIndexValue(x)).toBeUndefined();
  });
});

describe('index manager: model-based', () => {
  it('answers every query like the filter-and-sort reference, and pages without gaps or duplicates', () => {
    fc.assert(
      fc.property(arbTuning, arbOps(40), (tuning, ops) => {
        const mgr = new IndexManager(DEFS, tuning);
        const ref = new Reference(DEFS);
        for (const op of ops) {
          const got = apply(mgr, ref, op);
          if (op.op === 'query') checkQuery(mgr, ref, op.q, op.opts, got!);
        }
        // The whole internal state equals what the reference says should be indexed.
        expect(entryParts(snapshotParts(mgr))).toEqual(ref.expectedEntries());
      }),
      { numRuns: 500 },
    );
    // Every way of running a query was paged through, many times.
    const kinds = [
      'stream eq key asc',
      'stream eq key desc',
      'stream prefix key asc',
      'stream range',
      'stream has',
      'collect range key asc',
      'collect range key desc',
      'collect prefix key desc',
      'collect union key asc',
      'collect union key desc',
      'collect eq',
      'collect range',
      'collect union',
      'gave up',
    ];
    if (process.env.INDEX_COVERAGE) console.log(JSON.stringify([...COVERAGE]));
    for (const kind of kinds) {
      let n = 0;
      for (const [k, count] of COVERAGE) if (k.startsWith(kind)) n += count;
      expect(n, `${kind} in ${JSON.stringify([...COVERAGE])}`).toBeGreaterThanOrEqual(3);
    }
    expect([...COVERAGE].filter(([k]) => /^collect \w+ r[abl] /.test(k)).length).toBeGreaterThan(3);
  });

  it('a replica restored midway behaves identically afterwards, and the snapshot is a frozen view', () => {
    fc.assert(
      fc.property(
        arbTuning,
        arbOps(20),
        fc.array(arbOp, { minLength: 1, maxLength: 30, size: 'max' }),
        (tuning, before, after) => {
          const a = new IndexManager(DEFS, tuning);
          const ref = new Reference(DEFS);
          for (const op of before) apply(a, ref, op);
          const snap = a.snapshot();
          const refAtSnap = ref.clone();
          const b = IndexManager.restore(wire([...snap.parts()]), tuning);
          const refB = ref.clone();
          expect(b.defs()).toEqual(a.defs());
          for (const op of after) {
            const outA = apply(a, ref, op);
            const outB = apply(b, refB, op);
            expect(outB).toEqual(outA); // keys, count, next and plan
          }
          expect(snapshotParts(b)).toEqual(snapshotParts(a));
          // Parts read now still show the state at snapshot time.
          const late = IndexManager.restore(wire([...snap.parts()]));
          expect(entryParts(snapshotParts(late))).toEqual(refAtSnap.expectedEntries());
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('index manager: values and labels', () => {
  const mgr = new IndexManager([
    { name: 'age', kind: 'range', field: 'user.age' },
    { name: 'tier', kind: 'eq', label: 'tier' },
  ]);
  const store = new Reference(mgr.defs());
  const put = (key: string, value: unknown, labels?: Labels) =>
    apply(mgr, store, { op: 'put', key, value, labels });
  put('k1', { user: { age: 30 } }, { tier: 'gold' });
  put('k2', { user: { age: 30.0 } }, { tier: 1 });
  put('k3', { user: { age: '30' } });
  put('k4', { user: { age: [30] } });
  put('k5', { user: [{ age: 30 }] });
  put('k6', { user: { age: null } });
  put('k7', { user: { age: Number.NaN } });
  put('k8', new Uint8Array([1]));
  put('k9', { user: { age: -0 } });
  const q = (query: Query, opts: QueryOptions = {}) => mgr.query(query, opts, store.source()).keys;

  it('indexes scalars at the path, and skips missing fields, arrays, objects, bytes and NaN', () => {
    expect(q({ index: 'age', eq: 30 })).toEqual(['k1', 'k2']);
    expect(q({ index: 'age', eq: '30' })).toEqual(['k3']);
    expect(q({ index: 'age', eq: null })).toEqual(['k6']);
    expect(q({ index: 'age', eq: 0 })).toEqual(['k9']);
    expect(q({ index: 'age' }, { sort: { index: 'age' } })).toEqual(['k6', 'k9', 'k1', 'k2', 'k3']);
  });

  it('indexes labels: strings and numbers are different values', () => {
    expect(q({ index: 'tier', eq: 'gold' })).toEqual(['k1']);
    expect(q({ index: 'tier', eq: 1 })).toEqual(['k2']);
    expect(q({ index: 'tier', eq: '1' })).toEqual([]);
  });

  it('moves a key between values on update and drops it on delete', () => {
    put('k1', { user: { age: 31 } }, { tier: 'gold' });
    expect(q({ index: 'age', eq: 30 })).toEqual(['k2']);
    expect(q({ index: 'age', gte: 31, lte: 31 })).toEqual(['k1']);
    apply(mgr, store, { op: 'del', key: 'k1' });
    expect(q({ index: 'age', gt: 30 })).toEqual(['k3']);
    expect(q({ index: 'tier', eq: 'gold' })).toEqual([]);
  });

  it('update is idempotent and does not depend on prev', () => {
    const m = new IndexManager([{ name: 'n', kind: 'range', field: 'n' }]);
    const item = makeItem('x', { n: 5 }, undefined, 1);
    m.update('x', undefined, item);
    m.update('x', undefined, item);
    m.update('x', makeItem('x', { n: 99 }, undefined, 1), makeItem('x', { n: 6 }, undefined, 2));
    const src: KeySource = { keysWithPrefix: () => [], has: () => true };
    expect(m.query({ index: 'n' }, { countOnly: true }, src).count).toBe(1);
    expect(m.query({ index: 'n', eq: 6 }, {}, src).keys).toEqual(['x']);
  });
});

describe('index manager: plans touch only what they need', () => {
  const N = 10_000;
  const mgr = new IndexManager([
    { name: 'c', kind: 'eq', field: 'c' },
    { name: 'n', kind: 'range', field: 'n' },
    { name: 'g', kind: 'eq', label: 'g' },
  ]);
  const keys: string[] = [];
  for (let i = 0; i < N; i++) {
    const key = `key/${String(i).padStart(5, '0')}`;
    keys.push(key);
    mgr.update(
      key,
      undefined,
      makeItem(key, { c: `c${i % 1000}`, n: i }, { g: i % 2 === 0 ? 'even' : 'odd' }, 1),
    );
  }
  let prefixReads = 0;
  const store: KeySource = {
    *keysWithPrefix(prefix: string, after?: string) {
      // keys is sorted; a real store seeks, so count only what is yielded.
      for (const k of keys) {
        if (!k.startsWith(prefix) || (after !== undefined && k <= after)) continue;
        prefixReads++;
        yield k;
      }
    },
    has: (key: string) => keys.includes(key),
  };
  const run = (q: Query, opts: QueryOptions = {}) => {
    const r = mgr.query(q, opts, store);
    const examined = Number(/examined=(\d+)/.exec(r.plan)![1]);
    return { ...r, examined };
  };

  it('eq on 10k keys reads only the matching entries', () => {
    const r = run({ index: 'c', eq: 'c7' });
    expect(r.keys).toHaveLength(10);
    expect(r.plan).toMatch(/^stream eq\(c\) order=key asc/);
    expect(r.examined).toBeLessThanOrEqual(11);
  });

  it('and is driven by its most selective branch, whichever comes first', () => {
    for (const q of [
      {
        and: [
          { index: 'n', gte: 0 },
          { index: 'g', eq: 'even' },
          { index: 'c', eq: 'c8' },
        ],
      },
      {
        and: [
          { index: 'c', eq: 'c8' },
          { index: 'n', gte: 0 },
        ],
      },
    ] as Query[]) {
      const r = run(q);
      expect(r.keys).toHaveLength(10);
      expect(r.plan).toMatch(/^stream eq\(c\)/);
      expect(r.examined).toBeLessThanOrEqual(11);
    }
    const r = run({
      and: [
        { index: 'g', eq: 'odd' },
        { index: 'n', gte: 500, lt: 600 },
      ],
    });
    expect(r.keys).toHaveLength(50);
    expect(r.plan).toMatch(/^collect range\(n\) order=key asc/);
    expect(r.examined).toBeLessThanOrEqual(101);
  });

  it('streams from a big ordered branch only when the limit lets it stop early, and gives up at a budget', () => {
    const wide = run({
      and: [
        { index: 'g', eq: 'even' },
        { index: 'n', gte: 0, lt: 1000 },
      ],
    });
    expect(wide.keys).toHaveLength(500);
    expect(wide.plan).toMatch(/^collect range\(n\) order=key asc examined/);
    expect(wide.examined).toBeLessThanOrEqual(1001);
    const early = run(
      {
        and: [
          { index: 'g', eq: 'even' },
          { index: 'n', gte: 0, lt: 1000 },
        ],
      },
      { limit: 10 },
    );
    expect(early.keys).toEqual(wide.keys.slice(0, 10));
    expect(early.plan).toMatch(/^stream eq\(g\) order=key asc/);
    expect(early.examined).toBeLessThanOrEqual(11);
    // The matches are at the far end of the even keys: the stream gives up after 2x1000+64.
    const late = run(
      {
        and: [
          { index: 'g', eq: 'even' },
          { index: 'n', gte: 9000, lt: 10_000 },
        ],
      },
      { limit: 10 },
    );
    expect(late.keys[0]).toBe('key/09000');
    expect(late.keys).toHaveLength(10);
    expect(late.plan).toMatch(/^collect range\(n\) order=key asc after stream eq\(g\) gave up examined/);
    expect(late.examined).toBeLessThanOrEqual(2065 + 1001);
  });

  it('a range sorted by its own index streams and stops at the limit, both ways', () => {
    const asc = run({ index: 'n', gte: 5000, lt: 9000 }, { sort: { index: 'n' }, limit: 10 });
    expect(asc.plan).toMatch(/^stream range\(n\) order=n asc/);
    expect(asc.keys[0]).toBe('key/05000');
    expect(asc.examined).toBeLessThanOrEqual(11);
    const desc = run({ index: 'n', gte: 5000, lt: 9000 }, { sort: { index: 'n', order: 'desc' }, limit: 10 });
    expect(desc.keys[0]).toBe('key/08999');
    expect(desc.examined).toBeLessThanOrEqual(11);
    const page2 = run(
      { index: 'n', gte: 5000, lt: 9000 },
      { sort: { index: 'n', order: 'desc' }, limit: 10, after: desc.next! },
    );
    expect(page2.keys[0]).toBe('key/08989');
    expect(page2.examined).toBeLessThanOrEqual(11);
  });

  it('a selective eq sorted by another index collects then sorts instead of walking the sort index', () => {
    const r = run({ index: 'c', eq: 'c3' }, { sort: { index: 'n', order: 'desc' } });
    expect(r.plan).toMatch(/^collect eq\(c\) order=n desc/);
    expect(r.keys[0]).toBe('key/09003');
    expect(r.examined).toBeLessThanOrEqual(11);
  });

  it('counts an index branch by rank without reading entries', () => {
    const r = run({ index: 'n', gte: 100, lt: 7100 }, { countOnly: true });
    expect(r.count).toBe(7000);
    expect(r.plan).toBe('count range(n) examined=0');
    expect(run({ index: 'g', eq: 'even' }, { countOnly: true }).count).toBe(5000);
  });

  it('a query that would read more than examinedMax entries fails with TOO_LARGE', () => {
    const small = IndexManager.restore(mgr.snapshot().parts(), { ...DEFAULT_TUNING, examinedMax: 2000 });
    expect(small.query({ index: 'c', eq: 'c7' }, {}, store).keys).toHaveLength(10);
    expect(small.query({ index: 'n' }, { countOnly: true }, store).count).toBe(N);
    expect(
      expectDkvError(
        () => small.query({ index: 'n', gte: 10 }, { sort: { key: 'desc' } }, store),
        ErrorCode.TooLarge,
      ),
    ).toMatch(/more than 2000/);
    expect(
      small.query({ index: 'n', gte: 10 }, { sort: { index: 'n', order: 'desc' }, limit: 5 }, store).keys,
    ).toEqual(['key/09999', 'key/09998', 'key/09997', 'key/09996', 'key/09995']);
    prefixReads = 0;
    expectDkvError(() => small.query({ prefix: 'key/' }, { countOnly: true }, store), ErrorCode.TooLarge);
    expect(prefixReads).toBe(2001);
  });

  it('or unions its branches; prefix streams from the store and stops at the limit', () => {
    const r = run({
      or: [
        { index: 'c', eq: 'c1' },
        { index: 'c', eq: 'c2' },
        { index: 'n', lt: 5 },
      ],
    });
    expect(r.keys).toHaveLength(23); // keys 1 and 2 are in two branches
    expect(r.plan).toMatch(/^collect union\(eq\(c\),eq\(c\),range\(n\)\)/);
    expect(r.examined).toBeLessThanOrEqual(30);
    prefixReads = 0;
    const p = run({ prefix: 'key/0' }, { limit: 5 });
    expect(p.keys).toEqual(['key/00000', 'key/00001', 'key/00002', 'key/00003', 'key/00004']);
    expect(p.plan).toMatch(/^stream prefix/);
    expect(prefixReads).toBeLessThanOrEqual(6);
    prefixReads = 0;
    const a = run({ and: [{ prefix: 'key/0' }, { index: 'c', eq: 'c5' }] });
    expect(a.keys).toHaveLength(10);
    expect(a.plan).toMatch(/^stream eq\(c\)/);
    expect(prefixReads).toBeLessThanOrEqual(10);
  });
});

describe('index manager: validation', () => {
  const mgr = new IndexManager([
    { name: 'r', kind: 'range', field: 'a.b' },
    { name: 'e', kind: 'eq', label: 'l' },
  ]);
  const src: KeySource = { keysWithPrefix: () => [], has: () => false };
  const nested = (depth: number): unknown => (depth === 1 ? { prefix: 'a' } : { and: [nested(depth - 1)] });

  it('refuses bad definitions', () => {
    const bad: unknown[] = [
      'x',
      [null],
      [{ name: '', kind: 'eq', field: 'a' }],
      [{ name: 'x', kind: 'hash', field: 'a' }],
      [{ name: 'x', kind: 'eq' }],
      [{ name: 'x', kind: 'eq', field: 'a', label: 'b' }],
      [{ name: 'x', kind: 'eq', field: 'a..b' }],
      [{ name: 'x', kind: 'eq', field: 7 }],
      [{ name: 'x', kind: 'eq', field: 'a', extra: 1 }],
      [
        { name: 'x', kind: 'eq', field: 'a' },
        { name: 'x', kind: 'range', label: 'b' },
      ],
      Array.from({ length: 65 }, (_, i) => ({ name: `i${i}`, kind: 'eq', field: 'a' })),
    ];
    for (const defs of bad) expectDkvError(() => IndexManager.validateDefs(defs));
    expectDkvError(() => new IndexManager([{ name: 'x', kind: 'eq' } as IndexDef]));
    expect(IndexManager.validateDefs([{ name: 'x', kind: 'eq', field: 'a.b' }])).toEqual([
      { name: 'x', kind: 'eq', field: 'a.b' },
    ]);
  });

  it('refuses bad queries with a clear message', () => {
    const bad: [unknown, RegExp][] = [
      [null, /must be an object/],
      [[], /must be an object/],
      [{}, /must have one of/],
      [{ index: 'nope', eq: 1 }, /no index named "nope"/],
      [{ index: 'e', gte: 1 }, /eq index/],
      [{ index: 'e' }, /eq index/],
      [{ index: 'r', eq: Number.NaN }, /finite number/],
      [{ index: 'r', eq: [1] }, /got an array/],
      [{ index: 'r', eq: 1, gte: 1 }, /only "index" and "eq"/],
      [{ index: 'r', gt: 1, gte: 1 }, /at most one of gt and gte/],
      [{ index: 'r', lt: 1, lte: 1 }, /at most one of lt and lte/],
      [{ index: 'r', gte: undefined }, /finite number/],
      [{ index: 'r', within: 1 }, /unknown field "within"/],
      [{ prefix: 1 }, /prefix must be a string/],
      [{ prefix: 'a', index: 'r' }, /only field/],
      [{ and: [] }, /1\.\.64 queries/],
      [{ or: {} }, /1\.\.64 queries/],
      [{ and: [{ prefix: 'a' }], or: [] }, /only field/],
      [{ and: [{ prefix: 'a' }, { index: 'r', eq: {} }] }, /query\.and\[1\]\.eq/],
      [nested(9), /at most 8 levels/],
      [{ or: Array.from({ length: 65 }, () => ({ prefix: 'a' })) }, /1\.\.64/],
      [
        {
          or: [
            { and: Array.from({ length: 40 }, () => ({ prefix: 'a' })) },
            { and: Array.from({ length: 30 }, () => ({ prefix: 'a' })) },
          ],
        },
        /at most 64/,
      ],
    ];
    for (const [q, message] of bad)
      expect(expectDkvError(() => mgr.query(q as Query, {}, src))).toMatch(message);
    expect(mgr.query(nested(8) as Query, {}, src).keys).toEqual([]);
  });

  it('refuses bad options and continuations', () => {
    const q: Query = { prefix: '' };
    const bad: unknown[] = [
      'x',
      { limit: 0 },
      { limit: 10_001 },
      { limit: 1.5 },
      { limit: '5' },
      { sort: { index: 'e' } },
      { sort: { index: 'nope' } },
      { sort: { key: 'up' } },
      { sort: { index: 'r', order: 'up' } },
      { sort: {} },
      { countOnly: 1 },
      { page: 1 },
      { after: 'k' },
      { after: { k: 1 } },
      { after: { k: 'a', v: 1 } },
      { sort: { index: 'r' }, after: { k: 'a' } },
      { sort: { index: 'r' }, after: { k: 'a', v: [1] } },
      { sort: { index: 'r' }, after: { k: 'a', v: 1, x: 2 } },
    ];
    for (const opts of bad) expectDkvError(() => mgr.query(q, opts as QueryOptions, src));
    expect(
      mgr.query(q, { limit: 10_000, sort: { index: 'r' }, after: { k: 'a', v: null } }, src).keys,
    ).toEqual([]);
  });
});

describe('index manager: snapshot restore validation', () => {
  const mgr = new IndexManager(DEFS);
  const ref = new Reference(DEFS);
  for (let i = 0; i < 2500; i++)
    apply(mgr, ref, {
      op: 'put',
      key: `k${i}`,
      value: { a: i % 3 === 0 ? `s${i}` : i },
      labels: { l: i % 5 },
    });
  const good = wire(snapshotParts(mgr));

  it('writes bounded parts and restores them', () => {
    expect(good.length).toBe(1 + 3 + 3); // header, ra in 3 parts, rl in 3 parts
    for (const p of good.slice(1)) expect((p as { keys: string[] }).keys.length).toBeLessThanOrEqual(1000);
    expect(snapshotParts(IndexManager.restore(good))).toEqual(snapshotParts(mgr));
    expect(snapshotParts(IndexManager.restore(wire(snapshotParts(new IndexManager([])))))).toEqual(
      snapshotParts(new IndexManager([])),
    );
  });

  it('refuses malformed, reordered, duplicated or truncated parts with CORRUPTED', () => {
    const header = good[0] as Record<string, unknown>;
    const first = good[1] as { t: string; index: number; values: IndexValue[]; keys: string[] };
    const variants: unknown[][] = [
      [],
      ['x'],
      good.slice(1),
      [{ ...header, version: 2 }, ...good.slice(1)],
      [{ ...header, defs: [{ name: 'x' }] }, ...good.slice(1)],
      [{ ...header, counts: [1] }, ...good.slice(1)],
      good.slice(0, -1),
      [...good, good[good.length - 1]],
      [header, good[2], good[1], ...good.slice(3)],
      [header, { ...first, index: 9 }],
      [header, { ...first, t: 'other' }],
      [header, { ...first, keys: first.keys.slice(1) }],
      [header, { ...first, values: first.values.map((v, i) => (i === 5 ? Number.NaN : v)) }],
      [header, { ...first, keys: first.keys.map((k, i) => (i === 5 ? 7 : k)) }],
      [header, { ...first, values: [...first.values].reverse(), keys: [...first.keys].reverse() }],
      [header, { ...first, values: [1, 2], keys: ['k1', 'k1'] }],
      [header, { ...first, values: [], keys: [] }],
    ];
    for (const parts of variants) expectDkvError(() => IndexManager.restore(parts), ErrorCode.Corrupted);
  });
});
