import fc from 'fast-check';
import { pack, unpack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  type Compare,
  evaluateCompare,
  type PutSpec,
  SCAN_LIMIT_DEFAULT,
  SCAN_LIMIT_MAX,
  type ScanOptions,
  SegmentStore,
  type SegmentStoreLimits,
  SNAPSHOT_PART_RECORDS_MAX,
  validateCompare,
} from '../../src/engines/segment-store.js';
import type { Item } from '../../src/engines/types.js';
import { DkvError, ErrorCode } from '../../src/errors.js';

/** codeOf runs `f` and returns the DkvError code it threw, or 'ok'. */
function codeOf(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (err) {
    if (err instanceof DkvError) return err.code;
    throw err;
  }
}

/** roundTrip passes snapshot parts through msgpack, as the state machine's codec will. */
function roundTrip(parts: Iterable<unknown>): unknown[] {
  return [...parts].map((p) => unpack(pack(p)));
}

/** plainValue copies a value with every Uint8Array (msgpack decodes bin as Buffer) made plain. */
function plainValue(v: unknown): unknown {
  if (v instanceof Uint8Array) return Uint8Array.from(v);
  if (Array.isArray(v)) return v.map(plainValue);
  if (typeof v === 'object' && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plainValue(x)]));
  }
  return v;
}

/** itemView is an item as a plain object, comparable with toEqual across a msgpack round trip. */
function itemView(i: Item | undefined): unknown {
  if (i === undefined) return undefined;
  return { ...i, value: plainValue(i.value) };
}

// ---------------------------------------------------------------------------------------------
// The dumb model: a Map, sorted on every query.

interface ModelItem {
  key: string;
  value: unknown;
  valueBytes: number;
  version: number;
  createRevision: number;
  modRevision: number;
  expiresAt?: number;
  lease?: number;
  labels?: Record<string, string | number>;
}

class Model {
  items = new Map<string, ModelItem>();
  revision = 0;
  constructor(readonly limits: SegmentStoreLimits) {}

  clone(): Model {
    const m = new Model(this.limits);
    m.items = new Map(this.items);
    m.revision = this.revision;
    return m;
  }

  put(key: string, spec: PutSpec): string | { item: unknown; prev: unknown } {
    if (utf8(key) > this.limits.keyBytesMax) return ErrorCode.TooLarge;
    if (spec.valueBytes > this.limits.valueBytesMax) return ErrorCode.TooLarge;
    const cur = this.items.get(key);
    if (spec.ifVersion !== undefined) {
      if (spec.ifVersion < 1 || spec.ifAbsent === true) return ErrorCode.InvalidArgument;
      if (cur?.version !== spec.ifVersion) return ErrorCode.VersionMismatch;
    } else if (spec.ifAbsent === true && cur !== undefined) return ErrorCode.VersionMismatch;
    this.revision++;
    const item: ModelItem = {
      key,
      value: spec.value,
      valueBytes: spec.valueBytes,
      version: cur === undefined ? 1 : cur.version + 1,
      createRevision: cur === undefined ? this.revision : cur.createRevision,
      modRevision: this.revision,
    };
    if (spec.expiresAt !== undefined) item.expiresAt = spec.expiresAt;
    if (spec.lease !== undefined) item.lease = spec.lease;
    if (spec.labels !== undefined) item.labels = { ...spec.labels };
    this.items.set(key, item);
    return { item: publicView(item), prev: cur === undefined ? undefined : publicView(cur) };
  }

  delete(key: string): unknown {
    const cur = this.items.get(key);
    if (cur === undefined) return undefined;
    this.items.delete(key);
    this.revision++;
    return publicView(cur);
  }

  matching(opts: ScanOptions): ModelItem[] {
    const out = [...this.items.values()]
      .filter((i) => opts.prefix === undefined || i.key.startsWith(opts.prefix))
      .filter((i) => opts.start === undefined || i.key >= opts.start)
      .filter((i) => opts.end === undefined || i.key < opts.end)
      .filter((i) => opts.now === undefined || i.expiresAt === undefined || i.expiresAt > opts.now)
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    if (opts.reverse === true) out.reverse();
    return out;
  }

  scan(opts: ScanOptions): { items: unknown[]; more: boolean } {
    const after = opts.after;
    const all = this.matching(opts).filter(
      (i) => after === undefined || (opts.reverse === true ? i.key < after : i.key > after),
    );
    const limit = opts.limit ?? SCAN_LIMIT_DEFAULT;
    return { items: all.slice(0, limit).map(publicView), more: all.length > limit };
  }

  bytes(): number {
    let n = 0;
    for (const i of this.items.values()) n += utf8(i.key) + i.valueBytes;
    return n;
  }
}

function publicView(i: ModelItem): unknown {
  const { valueBytes: _, ...rest } = i;
  return { ...rest, value: plainValue(rest.value) };
}

function utf8(s: string): number {
  return new TextEncoder().encode(s).length;
}

/** canonicalString is the model's own, naive value equality (for the generated values only). */
function canonicalString(v: unknown): string {
  if (v instanceof Uint8Array) return `bytes(${Array.from(v).join(',')})`;
  if (Array.isArray(v)) return `[${v.map(canonicalString).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const rec = v as Record<string, unknown>;
    return `{${Object.keys(rec)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalString(rec[k])}`)
      .join(',')}}`;
  }
  return `${typeof v}:${String(v)}`;
}

function modelCompare(m: Model, c: Compare, now: number | undefined): boolean {
  let item = m.items.get(c.key);
  if (item !== undefined && now !== undefined && item.expiresAt !== undefined && item.expiresAt <= now) {
    item = undefined;
  }
  if (c.target === 'exists') return (item !== undefined) === (c.op === '=' ? c.value : !c.value);
  if (c.target === 'value') {
    if (item === undefined) return c.op === '!=';
    return (canonicalString(item.value) === canonicalString(c.value)) === (c.op === '=');
  }
  const a = item === undefined ? 0 : item[c.target];
  const b = c.value as number;
  return c.op === '=' ? a === b : c.op === '!=' ? a !== b : c.op === '<' ? a < b : a > b;
}

// ---------------------------------------------------------------------------------------------
// Generators. Keys come from a tiny alphabet (so they collide and share prefixes) that includes
// a 2-byte, a 3-byte and a 4-byte (surrogate pair) character, and U+FFFF (the prefix-end edge).

const LIMITS: SegmentStoreLimits = { keyBytesMax: 8, valueBytesMax: 16, labelsMax: 3 };
const keyChar = fc.constantFrom('a', 'b', 'c', '\u00e9', '\u20ac', '\ud83d\ude00', '\uffff');
const keyArb = fc.array(keyChar, { minLength: 1, maxLength: 3 }).map((cs) => cs.join(''));
/** Bounds are code-unit strings, so a lone high surrogate can appear in a prefix. */
const boundArb = fc
  .array(fc.constantFrom('a', 'b', 'c', '\u00e9', '\ud83d', '\uffff'), { maxLength: 2 })
  .map((cs) => cs.join(''));
const valueArb = fc.oneof(
  fc.integer({ min: -3, max: 3 }),
  fc.constantFrom('x', 'y', '1'),
  fc.uint8Array({ maxLength: 3 }),
  fc.record({ a: fc.integer({ min: 0, max: 2 }), b: fc.constantFrom('p', 'q') }),
  fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 2 }),
);
const nowArb = fc.option(fc.integer({ min: 0, max: 12 }), { nil: undefined });

type Op =
  | { t: 'put'; key: string; spec: PutSpec }
  | { t: 'delete'; key: string }
  | { t: 'get'; key: string; now: number | undefined }
  | { t: 'scan'; opts: ScanOptions }
  | { t: 'page'; opts: ScanOptions }
  | { t: 'count'; opts: ScanOptions }
  | { t: 'keys'; prefix: string; after: string | undefined; now: number | undefined }
  | { t: 'compare'; c: Compare; now: number | undefined };

const putArb: fc.Arbitrary<Op> = fc
  .record(
    {
      key: keyArb,
      value: valueArb,
      valueBytes: fc.integer({ min: 0, max: 18 }),
      expiresAt: fc.option(fc.integer({ min: 0, max: 12 }), { nil: undefined }),
      lease: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
      labels: fc.option(
        fc.dictionary(fc.constantFrom('l', 'm'), fc.oneof(fc.string({ maxLength: 2 }), fc.nat(5))),
        {
          nil: undefined,
        },
      ),
      cond: fc.oneof(
        fc.constant({}),
        fc.constant({}),
        fc.constant({ ifAbsent: true }),
        fc.integer({ min: 0, max: 4 }).map((v) => ({ ifVersion: v })),
        fc.constant({ ifAbsent: true, ifVersion: 1 }),
      ),
    },
    { requiredKeys: ['key', 'value', 'valueBytes', 'cond'] },
  )
  .map(({ key, cond, ...rest }) => {
    const spec: PutSpec = { value: rest.value, valueBytes: rest.valueBytes, ...cond };
    if (rest.expiresAt !== undefined) spec.expiresAt = rest.expiresAt;
    if (rest.lease !== undefined) spec.lease = rest.lease;
    if (rest.labels !== undefined) spec.labels = rest.labels;
    return { t: 'put' as const, key, spec };
  });

const scanOptsArb: fc.Arbitrary<ScanOptions> = fc
  .record(
    {
      prefix: boundArb,
      start: boundArb,
      end: boundArb,
      after: keyArb,
      limit: fc.integer({ min: 1, max: 4 }),
      reverse: fc.boolean(),
      now: fc.integer({ min: 0, max: 12 }),
    },
    { requiredKeys: [] },
  )
  .map((o) => o as ScanOptions);

const compareArb: fc.Arbitrary<Compare> = fc.oneof(
  fc.record({
    key: keyArb,
    target: fc.constantFrom('version' as const, 'createRevision' as const, 'modRevision' as const),
    op: fc.constantFrom('=' as const, '!=' as const, '<' as const, '>' as const),
    value: fc.integer({ min: 0, max: 8 }),
  }),
  fc.record({
    key: keyArb,
    target: fc.constant('value' as const),
    op: fc.constantFrom('=' as const, '!=' as const),
    value: valueArb,
  }),
  fc.record({
    key: keyArb,
    target: fc.constant('exists' as const),
    op: fc.constantFrom('=' as const, '!=' as const),
    value: fc.boolean(),
  }),
);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: putArb },
  { weight: 2, arbitrary: keyArb.map((key) => ({ t: 'delete' as const, key })) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('get' as const), key: keyArb, now: nowArb }) },
  { weight: 2, arbitrary: scanOptsArb.map((opts) => ({ t: 'scan' as const, opts })) },
  { weight: 1, arbitrary: scanOptsArb.map((opts) => ({ t: 'page' as const, opts })) },
  { weight: 1, arbitrary: scanOptsArb.map((opts) => ({ t: 'count' as const, opts })) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('keys' as const),
      prefix: boundArb,
      after: fc.option(keyArb, { nil: undefined }),
      now: nowArb,
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('compare' as const), c: compareArb, now: nowArb }) },
);

/** runStore applies one op to the real store and returns a comparable result. */
function runStore(s: SegmentStore, op: Op): unknown {
  switch (op.t) {
    case 'put': {
      const code = codeOf(() => s.checkPut(op.key, op.spec));
      let r: ReturnType<SegmentStore['put']> | undefined;
      const putCode = codeOf(() => {
        r = s.put(op.key, op.spec);
      });
      expect(putCode).toBe(code);
      return r === undefined ? code : { item: itemView(r.item), prev: itemView(r.prev) };
    }
    case 'delete':
      return itemView(s.delete(op.key));
    case 'get':
      return itemView(op.now === undefined ? s.get(op.key) : s.getLive(op.key, op.now));
    case 'scan': {
      const r = s.scan(op.opts);
      return { items: r.items.map(itemView), more: r.more };
    }
    case 'page': {
      // Page through with `after` until exhausted: the pages concatenate to the full result.
      const keys: string[] = [];
      let after: string | undefined;
      for (let guard = 0; guard < 100; guard++) {
        const { after: _, ...rest } = op.opts;
        const r = s.scan(after === undefined ? rest : { ...rest, after });
        keys.push(...r.items.map((i) => i.key));
        if (!r.more) return keys;
        expect(r.items.length).toBe(op.opts.limit ?? SCAN_LIMIT_DEFAULT);
        after = r.items[r.items.length - 1]!.key;
      }
      throw new Error('paging did not end');
    }
    case 'count':
      return s.count({ prefix: op.opts.prefix, start: op.opts.start, end: op.opts.end, now: op.opts.now });
    case 'keys':
      return op.now === undefined
        ? [...s.keysWithPrefix(op.prefix, op.after)]
        : [...s.liveKeys(op.now).keysWithPrefix(op.prefix, op.after)];
    case 'compare':
      return evaluateCompare(s, op.c, op.now);
  }
}

function runModel(m: Model, op: Op): unknown {
  switch (op.t) {
    case 'put':
      return m.put(op.key, op.spec);
    case 'delete':
      return m.delete(op.key);
    case 'get': {
      const i = m.items.get(op.key);
      if (i === undefined) return undefined;
      if (op.now !== undefined && i.expiresAt !== undefined && i.expiresAt <= op.now) return undefined;
      return publicView(i);
    }
    case 'scan':
      return m.scan(op.opts);
    case 'page': {
      const { after: _, limit: __, ...rest } = op.opts;
      return m.matching(rest).map((i) => i.key);
    }
    case 'count':
      return m.matching({ prefix: op.opts.prefix, start: op.opts.start, end: op.opts.end, now: op.opts.now })
        .length;
    case 'keys':
      return m
        .matching({ prefix: op.prefix, now: op.now })
        .map((i) => i.key)
        .filter((k) => op.after === undefined || k > op.after);
    case 'compare':
      return modelCompare(m, op.c, op.now);
  }
}

function expectSameAsModel(s: SegmentStore, m: Model): void {
  expect(s.revision).toBe(m.revision);
  expect(s.size).toBe(m.items.size);
  expect(s.bytes).toBe(m.bytes());
  expect(s.scan({ limit: SCAN_LIMIT_MAX }).items.map(itemView)).toEqual(
    m.scan({ limit: SCAN_LIMIT_MAX }).items,
  );
}

describe('SegmentStore against a Map model', () => {
  it('agrees on every operation of random sequences', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), (ops) => {
        const s = new SegmentStore(LIMITS);
        const m = new Model(LIMITS);
        for (const op of ops) expect(runStore(s, op)).toEqual(runModel(m, op));
        expectSameAsModel(s, m);
      }),
      { numRuns: 1000 },
    );
  });

  it('a snapshot taken midway restores to a store that behaves identically, and stays frozen', () => {
    fc.assert(
      fc.property(
        fc.array(opArb, { minLength: 1, maxLength: 60 }),
        fc.nat(),
        fc.boolean(),
        (ops, cut, viaMsgpack) => {
          const at = cut % (ops.length + 1);
          const a = new SegmentStore(LIMITS);
          const m = new Model(LIMITS);
          for (const op of ops.slice(0, at)) {
            runStore(a, op);
            runModel(m, op);
          }
          const snap = a.snapshot();
          const hashAt = a.stateHash();
          const modelAt = m.clone();
          const parts = viaMsgpack ? roundTrip(snap.parts()) : [...snap.parts()];
          const b = SegmentStore.restore(parts, LIMITS);
          expect(b.stateHash()).toBe(hashAt);
          expectSameAsModel(b, modelAt);
          for (const op of ops.slice(at)) {
            const ra = runStore(a, op);
            expect(runStore(b, op)).toEqual(ra);
            expect(runModel(m, op)).toEqual(ra);
          }
          expect(b.stateHash()).toBe(a.stateHash());
          expectSameAsModel(b, m);
          // The snapshot still yields the state as of the cut, whatever `a` did since.
          const c = SegmentStore.restore(snap.parts(), LIMITS);
          expect(c.stateHash()).toBe(hashAt);
          expectSameAsModel(c, modelAt);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('revisions and versions', () => {
  it('numbers every mutation and follows the version, createRevision and modRevision rules', () => {
    const s = new SegmentStore(undefined, 10);
    expect(s.revision).toBe(10);
    const a1 = s.put('a', { value: 1, valueBytes: 1 });
    expect(a1.prev).toBeUndefined();
    expect('prev' in a1).toBe(false);
    expect(itemView(a1.item)).toEqual({
      key: 'a',
      value: 1,
      version: 1,
      createRevision: 11,
      modRevision: 11,
    });
    s.put('b', { value: 2, valueBytes: 1 });
    const a2 = s.put('a', { value: 3, valueBytes: 1 });
    expect(itemView(a2.item)).toEqual({
      key: 'a',
      value: 3,
      version: 2,
      createRevision: 11,
      modRevision: 13,
    });
    expect(a2.prev).toBe(a1.item);
    expect(s.revision).toBe(13);
    expect(s.delete('zz')).toBeUndefined();
    expect(s.revision).toBe(13);
    expect(s.delete('a')).toBe(a2.item);
    expect(s.revision).toBe(14);
    const a3 = s.put('a', { value: 4, valueBytes: 1 });
    expect(itemView(a3.item)).toEqual({
      key: 'a',
      value: 4,
      version: 1,
      createRevision: 15,
      modRevision: 15,
    });
  });

  it('hands out frozen items that later writes never change, with no extra encoded fields', () => {
    const s = new SegmentStore();
    const labels = { team: 'x', n: 2 };
    const { item } = s.put('k', { value: { v: 1 }, valueBytes: 9, expiresAt: 5, lease: 7, labels });
    expect(Object.isFrozen(item)).toBe(true);
    expect(() => {
      (item as { version: number }).version = 9;
    }).toThrow();
    s.put('k', { value: 'new', valueBytes: 3 });
    expect(item.value).toEqual({ v: 1 });
    expect(item.version).toBe(1);
    expect(Object.keys(item).sort()).toEqual(
      ['createRevision', 'expiresAt', 'key', 'labels', 'lease', 'modRevision', 'value', 'version'].sort(),
    );
    const plain = s.get('k')!;
    expect(Object.keys(plain).sort()).toEqual(
      ['createRevision', 'key', 'modRevision', 'value', 'version'].sort(),
    );
    expect(unpack(pack(plain))).toEqual({
      key: 'k',
      value: 'new',
      version: 2,
      createRevision: 1,
      modRevision: 2,
    });
  });

  it('keeps bytes as key UTF-8 bytes plus value bytes', () => {
    const s = new SegmentStore();
    s.put('\u00e9a', { value: 1, valueBytes: 10 });
    s.put('\ud83d\ude00', { value: 1, valueBytes: 5 });
    expect(s.bytes).toBe(3 + 10 + 4 + 5);
    s.put('\u00e9a', { value: 1, valueBytes: 1 });
    expect(s.bytes).toBe(3 + 1 + 4 + 5);
    s.delete('\ud83d\ude00');
    expect(s.bytes).toBe(4);
  });
});

describe('validation and limits', () => {
  const s = new SegmentStore({ keyBytesMax: 8, valueBytesMax: 100, labelsMax: 2 });
  const ok: PutSpec = { value: 'v', valueBytes: 1 };

  it('bounds keys by UTF-8 bytes, exactly at the limit', () => {
    expect(codeOf(() => s.checkPut('a'.repeat(8), ok))).toBe('ok');
    expect(codeOf(() => s.checkPut('a'.repeat(9), ok))).toBe(ErrorCode.TooLarge);
    expect(codeOf(() => s.checkPut('\u00e9'.repeat(4), ok))).toBe('ok');
    expect(codeOf(() => s.checkPut(`${'\u00e9'.repeat(4)}a`, ok))).toBe(ErrorCode.TooLarge);
    expect(codeOf(() => s.checkPut('\ud83d\ude00\ud83d\ude00', ok))).toBe('ok');
    expect(codeOf(() => s.checkPut('\ud83d\ude00\ud83d\ude00a', ok))).toBe(ErrorCode.TooLarge);
    expect(codeOf(() => s.checkPut('\u20ac\u20aca', ok))).toBe('ok');
    expect(codeOf(() => s.checkPut('\u20ac\u20ac\u20ac', ok))).toBe(ErrorCode.TooLarge);
  });

  it('bounds values by their encoded size, exactly at the limit', () => {
    expect(codeOf(() => s.checkPut('k', { value: 'v', valueBytes: 100 }))).toBe('ok');
    expect(codeOf(() => s.checkPut('k', { value: 'v', valueBytes: 101 }))).toBe(ErrorCode.TooLarge);
    expect(codeOf(() => s.put('k', { value: 'v', valueBytes: 101 }))).toBe(ErrorCode.TooLarge);
    expect(s.revision).toBe(0);
  });

  it('rejects malformed keys and specs with INVALID_ARGUMENT', () => {
    const bad: [unknown, unknown][] = [
      ['', ok],
      [5, ok],
      [undefined, ok],
      ['\ud83d', ok],
      ['a\ude00', ok],
      ['\ude00\ud83d', ok],
      ['k', null],
      ['k', { value: undefined, valueBytes: 1 }],
      ['k', { value: 1, valueBytes: -1 }],
      ['k', { value: 1, valueBytes: 1.5 }],
      ['k', { value: 1, valueBytes: '1' }],
      ['k', { value: 1, valueBytes: 1, expiresAt: Number.NaN }],
      ['k', { value: 1, valueBytes: 1, expiresAt: -1 }],
      ['k', { value: 1, valueBytes: 1, lease: 1.5 }],
      ['k', { value: 1, valueBytes: 1, labels: [] }],
      ['k', { value: 1, valueBytes: 1, labels: { a: true } }],
      ['k', { value: 1, valueBytes: 1, labels: { a: Number.POSITIVE_INFINITY } }],
      ['k', { value: 1, valueBytes: 1, labels: { a: 1, b: 2, c: 3 } }],
      ['k', { value: 1, valueBytes: 1, ifVersion: 0 }],
      ['k', { value: 1, valueBytes: 1, ifVersion: 1.5 }],
      ['k', { value: 1, valueBytes: 1, ifAbsent: 1 }],
      ['k', { value: 1, valueBytes: 1, ifAbsent: true, ifVersion: 1 }],
    ];
    for (const [key, spec] of bad) {
      expect(
        codeOf(() => s.checkPut(key as string, spec as PutSpec)),
        JSON.stringify([key, spec]),
      ).toBe(ErrorCode.InvalidArgument);
    }
    expect(codeOf(() => s.checkPut('k', { value: null, valueBytes: 1, labels: { a: 1, b: 'x' } }))).toBe(
      'ok',
    );
    expect(codeOf(() => s.get(5 as unknown as string))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => s.delete(5 as unknown as string))).toBe(ErrorCode.InvalidArgument);
    expect(s.revision).toBe(0);
  });

  it('checks ifVersion and ifAbsent without mutating in checkPut', () => {
    const t = new SegmentStore();
    expect(codeOf(() => t.checkPut('k', { ...ok, ifVersion: 1 }))).toBe(ErrorCode.VersionMismatch);
    expect(codeOf(() => t.checkPut('k', { ...ok, ifAbsent: true }))).toBe('ok');
    expect(t.revision).toBe(0);
    expect(t.size).toBe(0);
    t.put('k', { ...ok, ifAbsent: true });
    expect(codeOf(() => t.put('k', { ...ok, ifAbsent: true }))).toBe(ErrorCode.VersionMismatch);
    expect(codeOf(() => t.put('k', { ...ok, ifVersion: 2 }))).toBe(ErrorCode.VersionMismatch);
    expect(codeOf(() => t.put('k', { ...ok, ifVersion: 1 }))).toBe('ok');
    expect(codeOf(() => t.put('k', { ...ok, ifAbsent: false }))).toBe('ok');
    expect(t.get('k')!.version).toBe(3);
    expect(t.revision).toBe(3);
  });

  it('validates scan and count options', () => {
    expect(codeOf(() => s.scan({ limit: 0 }))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => s.scan({ limit: SCAN_LIMIT_MAX + 1 }))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => s.scan({ limit: SCAN_LIMIT_MAX }))).toBe('ok');
    expect(codeOf(() => s.scan({ limit: 1.5 }))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => s.scan({ prefix: 1 as unknown as string }))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => s.scan({ reverse: 'yes' as unknown as boolean }))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => s.scan({ now: Number.NaN }))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => s.count({ end: 3 as unknown as string }))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => s.getLive('k', Number.POSITIVE_INFINITY))).toBe(ErrorCode.InvalidArgument);
  });

  it('rejects bad limits and revisions at construction', () => {
    expect(codeOf(() => new SegmentStore({ keyBytesMax: 0 }))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => new SegmentStore({ valueBytesMax: -1 }))).toBe(ErrorCode.InvalidArgument);
    expect(codeOf(() => new SegmentStore(undefined, -1))).toBe(ErrorCode.InvalidArgument);
    expect(new SegmentStore().limits).toEqual({
      keyBytesMax: 4096,
      valueBytesMax: 1024 * 1024,
      labelsMax: 64,
    });
  });
});

describe('scan, count and expiry on a large tree', () => {
  /** Several thousand keys give the B+ tree internal levels, which rank-based count walks. */
  function bigStore(): { s: SegmentStore; keys: string[]; ttl: Map<string, number> } {
    const s = new SegmentStore();
    const keys = new Set<string>();
    const ttl = new Map<string, number>();
    let x = 12345;
    const next = () => {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      return x;
    };
    for (let i = 0; i < 6000; i++) {
      const k = `k${(next() % 20000).toString(36)}`;
      const expiresAt = next() % 3 === 0 ? next() % 100 : undefined;
      s.put(k, { value: i, valueBytes: 4, expiresAt });
      keys.add(k);
      if (expiresAt === undefined) ttl.delete(k);
      else ttl.set(k, expiresAt);
      if (next() % 4 === 0) {
        const d = `k${(next() % 20000).toString(36)}`;
        s.delete(d);
        keys.delete(d);
        ttl.delete(d);
      }
    }
    return { s, keys: [...keys].sort(), ttl };
  }

  it('counts ranges and prefixes like a sorted array does', () => {
    const { s, keys, ttl } = bigStore();
    expect(s.size).toBe(keys.length);
    fc.assert(
      fc.property(
        fc.option(fc.string({ unit: fc.constantFrom('k', '1', '2', 'a', 'z'), maxLength: 3 }), {
          nil: undefined,
        }),
        fc.option(fc.string({ unit: fc.constantFrom('k', '1', '5', 'a', 'z'), maxLength: 4 }), {
          nil: undefined,
        }),
        fc.option(fc.string({ unit: fc.constantFrom('k', '3', '9', 'b', 'z'), maxLength: 4 }), {
          nil: undefined,
        }),
        nowArb,
        (prefix, start, end, now) => {
          const want = keys.filter(
            (k) =>
              (prefix === undefined || k.startsWith(prefix)) &&
              (start === undefined || k >= start) &&
              (end === undefined || k < end) &&
              (now === undefined || !ttl.has(k) || ttl.get(k)! > now),
          );
          expect(s.count({ prefix, start, end, now })).toBe(want.length);
          const r = s.scan({ prefix, start, end, now, limit: SCAN_LIMIT_MAX });
          expect(r.items.map((i) => i.key)).toEqual(want);
          const rev = s.scan({ prefix, start, end, now, limit: 7, reverse: true });
          expect(rev.items.map((i) => i.key)).toEqual(want.slice().reverse().slice(0, 7));
          expect(rev.more).toBe(want.length > 7);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('pages with the default limit of 1000', () => {
    const { s, keys } = bigStore();
    const first = s.scan();
    expect(first.items.length).toBe(SCAN_LIMIT_DEFAULT);
    expect(first.more).toBe(true);
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const r = s.scan(after === undefined ? {} : { after });
      seen.push(...r.items.map((i) => i.key));
      if (!r.more) break;
      after = r.items.at(-1)!.key;
    }
    expect(seen).toEqual(keys);
  });

  it('treats an item as absent from its deadline on, for readers that pass now', () => {
    const s = new SegmentStore();
    s.put('a', { value: 1, valueBytes: 1, expiresAt: 10 });
    s.put('b', { value: 2, valueBytes: 1 });
    expect(s.getLive('a', 9)?.value).toBe(1);
    expect(s.getLive('a', 10)).toBeUndefined();
    expect(s.get('a')?.value).toBe(1);
    expect(s.scan({ now: 10 }).items.map((i) => i.key)).toEqual(['b']);
    expect(s.scan({ now: 9 }).items.map((i) => i.key)).toEqual(['a', 'b']);
    expect(s.count({ now: 10 })).toBe(1);
    expect(s.count({})).toBe(2);
    // `more` looks past expired items: only live ones count as more.
    s.put('c', { value: 3, valueBytes: 1, expiresAt: 5 });
    expect(s.scan({ limit: 1, after: 'a', now: 6 })).toEqual({ items: [s.get('b')], more: false });
    // Overwriting without a deadline clears it.
    s.put('a', { value: 4, valueBytes: 1 });
    expect(s.count({ now: 100 })).toBe(2);
    expect(evaluateCompare(s, { key: 'c', target: 'exists', op: '=', value: true }, 6)).toBe(false);
    expect(evaluateCompare(s, { key: 'c', target: 'exists', op: '=', value: true })).toBe(true);
  });

  it('handles prefixes that end in U+FFFF or a lone surrogate', () => {
    const s = new SegmentStore();
    for (const k of [
      'a',
      'a\uffff',
      'a\uffffb',
      'b',
      '\uffff',
      '\uffff\uffff',
      '\ud83d\ude00',
      '\ud83d\ude01x',
    ]) {
      s.put(k, { value: k, valueBytes: 1 });
    }
    expect(s.scan({ prefix: 'a\uffff' }).items.map((i) => i.key)).toEqual(['a\uffff', 'a\uffffb']);
    expect(s.count({ prefix: 'a\uffff' })).toBe(2);
    expect(s.scan({ prefix: '\uffff' }).items.map((i) => i.key)).toEqual(['\uffff', '\uffff\uffff']);
    expect(s.count({ prefix: '\uffff' })).toBe(2);
    expect(s.count({ prefix: '\ud83d' })).toBe(2);
    expect([...s.keysWithPrefix('\ud83d')]).toEqual(['\ud83d\ude00', '\ud83d\ude01x']);
    expect(s.count({ prefix: '' })).toBe(8);
    expect(s.count({ start: 'b', end: 'a' })).toBe(0);
    expect(s.scan({ start: 'b', end: 'b' }).items).toEqual([]);
  });
});

describe('compare', () => {
  const s = new SegmentStore();
  s.put('k', { value: { a: [1, 2], b: new Uint8Array([1]) }, valueBytes: 9 });
  s.put('k', { value: { b: new Uint8Array([1]), a: [1, 2] }, valueBytes: 9 });

  it('evaluates version, revisions, value and existence', () => {
    const cases: [Compare, boolean][] = [
      [{ key: 'k', target: 'version', op: '=', value: 2 }, true],
      [{ key: 'k', target: 'version', op: '>', value: 1 }, true],
      [{ key: 'k', target: 'version', op: '<', value: 2 }, false],
      [{ key: 'k', target: 'createRevision', op: '=', value: 1 }, true],
      [{ key: 'k', target: 'modRevision', op: '!=', value: 2 }, false],
      [{ key: 'k', target: 'value', op: '=', value: { a: [1, 2], b: new Uint8Array([1]) } }, true],
      [{ key: 'k', target: 'value', op: '=', value: { a: [1, 2n], b: Buffer.from([1]) } }, true],
      [{ key: 'k', target: 'value', op: '!=', value: { a: [1, 2] } }, true],
      [{ key: 'k', target: 'exists', op: '=', value: true }, true],
      [{ key: 'k', target: 'exists', op: '!=', value: true }, false],
      [{ key: 'nope', target: 'version', op: '=', value: 0 }, true],
      [{ key: 'nope', target: 'modRevision', op: '<', value: 1 }, true],
      [{ key: 'nope', target: 'value', op: '=', value: null }, false],
      [{ key: 'nope', target: 'value', op: '!=', value: null }, true],
      [{ key: 'nope', target: 'exists', op: '=', value: false }, true],
    ];
    for (const [c, want] of cases) expect(evaluateCompare(s, c), `${c.key} ${c.target} ${c.op}`).toBe(want);
  });

  it('rejects malformed compares', () => {
    const bad: unknown[] = [
      null,
      { key: '', target: 'version', op: '=', value: 1 },
      { key: '\ud800', target: 'version', op: '=', value: 1 },
      { key: 'k', target: 'size', op: '=', value: 1 },
      { key: 'k', target: 'version', op: '>=', value: 1 },
      { key: 'k', target: 'version', op: '=', value: -1 },
      { key: 'k', target: 'version', op: '=', value: '1' },
      { key: 'k', target: 'value', op: '<', value: 1 },
      { key: 'k', target: 'value', op: '=', value: undefined },
      { key: 'k', target: 'value', op: '=', value: () => 1 },
      { key: 'k', target: 'exists', op: '>', value: true },
      { key: 'k', target: 'exists', op: '=', value: 1 },
    ];
    for (const c of bad) {
      expect(
        codeOf(() => validateCompare(c)),
        String(JSON.stringify(c)),
      ).toBe(ErrorCode.InvalidArgument);
      expect(codeOf(() => evaluateCompare(s, c as Compare))).toBe(ErrorCode.InvalidArgument);
    }
    const deep: unknown[] = [];
    let cur = deep;
    for (let i = 0; i < 600; i++) {
      const next: unknown[] = [];
      cur.push(next);
      cur = next;
    }
    expect(codeOf(() => validateCompare({ key: 'k', target: 'value', op: '=', value: deep }))).toBe(
      ErrorCode.InvalidArgument,
    );
    expect(validateCompare({ key: 'k', target: 'value', op: '=', value: 1, extra: 1 })).toEqual({
      key: 'k',
      target: 'value',
      op: '=',
      value: 1,
    });
  });
});

describe('snapshot and restore', () => {
  function filled(n: number): SegmentStore {
    const s = new SegmentStore();
    for (let i = 0; i < n; i++) {
      s.put(`key${String(i).padStart(5, '0')}`, {
        value: i % 2 === 0 ? new Uint8Array([i & 255, 1]) : { i, s: 'x' },
        valueBytes: 10,
        expiresAt: i % 3 === 0 ? 1000 + i : undefined,
        lease: i % 5 === 0 ? 7 : undefined,
        labels: i % 7 === 0 ? { color: 'red', n: i } : undefined,
      });
    }
    return s;
  }

  it('yields a header and then parts of at most 1000 records in key order', () => {
    const s = filled(2500);
    const parts = [...s.snapshot().parts()];
    expect(parts[0]).toEqual({ kind: 'segment-store', format: 1, revision: 2500, count: 2500 });
    expect(parts.slice(1).map((p) => (p as unknown[]).length)).toEqual([1000, 1000, 500]);
    const r = SegmentStore.restore(roundTrip(parts));
    expect(r.stateHash()).toBe(s.stateHash());
    expect(r.bytes).toBe(s.bytes);
    expect(r.count({ now: 1500 })).toBe(s.count({ now: 1500 }));
    expect(r.scan({ limit: SCAN_LIMIT_MAX }).items.map(itemView)).toEqual(
      s.scan({ limit: SCAN_LIMIT_MAX }).items.map(itemView),
    );
    // The restored store keeps working: revisions continue.
    expect(r.put('key00001', { value: 1, valueBytes: 1 }).item.modRevision).toBe(2501);
  });

  it('closes parts by bytes as well as by records', () => {
    const s = new SegmentStore();
    for (let i = 0; i < 10; i++) s.put(`k${i}`, { value: i, valueBytes: 1024 * 1024 });
    const parts = [...s.snapshot().parts()];
    expect(parts.length).toBe(1 + 3);
    expect(parts.slice(1).map((p) => (p as unknown[]).length)).toEqual([4, 4, 2]);
    expect(SegmentStore.restore(parts).stateHash()).toBe(s.stateHash());
  });

  it('keeps the state as of the snapshot while the store changes', () => {
    const s = filled(1500);
    const before = s.stateHash();
    const snap = s.snapshot();
    for (let i = 0; i < 1500; i += 2) s.delete(`key${String(i).padStart(5, '0')}`);
    for (let i = 0; i < 300; i++) s.put(`key${String(i).padStart(5, '0')}`, { value: 'new', valueBytes: 3 });
    s.put('zzz', { value: 1, valueBytes: 1 });
    expect(SegmentStore.restore(snap.parts()).stateHash()).toBe(before);
    expect(SegmentStore.restore(snap.parts()).stateHash()).toBe(before);
    expect(s.stateHash()).not.toBe(before);
  });

  it('keeps each snapshot as of its call when the same keys are put again and again across snapshots', () => {
    // A key put twice since the last snapshot is overwritten in its slot; one put before a
    // snapshot gets a new slot. Every snapshot must see exactly its own state.
    const s = new SegmentStore();
    const put = (k: string, v: string): void => {
      s.put(k, { value: v, valueBytes: v.length });
    };
    const hashes: string[] = [];
    const snaps: { parts(): Iterable<unknown> }[] = [];
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < 50; i++) put(`k${i % 7}`, `r${round}i${i}`);
      if (round % 2 === 0) s.delete(`k${round}`);
      hashes.push(s.stateHash());
      snaps.push(s.snapshot());
    }
    for (let i = 0; i < 50; i++) put(`k${i % 7}`, `after${i}`);
    snaps.forEach((snap, i) => {
      expect(SegmentStore.restore(snap.parts()).stateHash()).toBe(hashes[i]);
    });
    expect(s.get('k3')?.value).toBe('after45');
    expect(s.get('k3')?.version).toBeGreaterThan(1);
  });

  it('restores an empty store', () => {
    const s = new SegmentStore(undefined, 42);
    const r = SegmentStore.restore(roundTrip(s.snapshot().parts()));
    expect(r.revision).toBe(42);
    expect(r.size).toBe(0);
    expect(r.stateHash()).toBe(s.stateHash());
  });

  it('refuses malformed snapshots with CORRUPTED', () => {
    const header = { kind: 'segment-store', format: 1, revision: 10, count: 2 };
    const r1 = ['a', 1, 1, 1, 1, 1];
    const r2 = ['b', 2, 1, 2, 2, 3];
    expect(codeOf(() => SegmentStore.restore([header, [r1, r2]]))).toBe('ok');
    expect(codeOf(() => SegmentStore.restore([header, [r1], [r2]]))).toBe('ok');
    const bad: unknown[][] = [
      [],
      [null],
      [{ ...header, kind: 'other' }],
      [{ ...header, format: 2 }, [r1, r2]],
      [{ ...header, revision: -1 }, [r1, r2]],
      [{ ...header, count: 1.5 }, [r1, r2]],
      [header, [r1]],
      [header, [r1, r2, ['c', 3, 1, 1, 4, 4]]],
      [header, [r2, r1]],
      [header, [r1, r1]],
      [header, [r1], []],
      [header, [r1], 'x'],
      [header, [r1, ['b', 2, 1, 2, 2]]],
      [header, [r1, ['b', 2, 1, 2, 2, 3, null, null, null, null]]],
      [header, [r1, ['', 2, 1, 1, 2, 2]]],
      [header, [r1, ['b\ud800', 2, 1, 1, 2, 2]]],
      [header, [r1, [5, 2, 1, 1, 2, 2]]],
      [header, [r1, ['b', undefined, 1, 1, 2, 2]]],
      [header, [r1, ['b', 2, -1, 1, 2, 2]]],
      [header, [r1, ['b', 2, 1, 0, 2, 2]]],
      [header, [r1, ['b', 2, 1, 1, 0, 2]]],
      [header, [r1, ['b', 2, 1, 1, 3, 2]]],
      [header, [r1, ['b', 2, 1, 1, 2, 11]]],
      [header, [r1, ['b', 2, 1, 3, 2, 3]]],
      [header, [r1, ['b', 2, 1, 1, 2, 2, -5]]],
      [header, [r1, ['b', 2, 1, 1, 2, 2, null, 'lease']]],
      [header, [r1, ['b', 2, 1, 1, 2, 2, null, null, { x: [] }]]],
      [{ ...header, count: 1001 }, Array.from({ length: 1001 }, (_, i) => [`k${i}`, 1, 1, 1, 1, 1])],
    ];
    for (const parts of bad) {
      expect(
        codeOf(() => SegmentStore.restore(parts)),
        JSON.stringify(parts).slice(0, 200),
      ).toBe(ErrorCode.Corrupted);
    }
    expect(SNAPSHOT_PART_RECORDS_MAX).toBe(1000);
  });
});

describe('stateHash', () => {
  const header = { kind: 'segment-store', format: 1, revision: 20, count: 2 };
  const base: unknown[] = ['b', { x: [1, 'y'] }, 5, 2, 3, 9, 100, 4, { l: 'v' }];
  const other: unknown[] = ['a', 1, 1, 1, 1, 1];
  const hashOf = (rec: unknown[], h: object = header) => SegmentStore.restore([h, [other, rec]]).stateHash();

  it('is deterministic and differs when any field of any item differs', () => {
    const h0 = hashOf(base);
    expect(hashOf([...base])).toBe(h0);
    expect(hashOf(['b', { x: [1, 'y'] }, 5, 2, 3, 9, 100, 4, { l: 'v' }])).toBe(h0);
    const variants: unknown[][] = [
      ['c', ...base.slice(1)],
      ['b', { x: [1, 'z'] }, ...base.slice(2)],
      ['b', { x: [1, 'y'], w: 1 }, ...base.slice(2)],
      ['b', { x: ['y', 1] }, ...base.slice(2)],
      ['b', [1, 'y'], ...base.slice(2)],
      [...base.slice(0, 2), 6, ...base.slice(3)],
      [...base.slice(0, 3), 1, ...base.slice(4)],
      [...base.slice(0, 4), 4, ...base.slice(5)],
      [...base.slice(0, 5), 10, ...base.slice(6)],
      [...base.slice(0, 6), 101, ...base.slice(7)],
      [...base.slice(0, 6), null, ...base.slice(7)],
      [...base.slice(0, 7), 5, base[8]],
      [...base.slice(0, 7), null, base[8]],
      [...base.slice(0, 8), { l: 'w' }],
      [...base.slice(0, 8), { m: 'v' }],
      [...base.slice(0, 8), null],
    ];
    const seen = new Set([h0]);
    for (const v of variants) {
      const h = hashOf(v);
      expect(seen.has(h), JSON.stringify(v)).toBe(false);
      seen.add(h);
    }
    expect(seen.has(hashOf(base, { ...header, revision: 21 }))).toBe(false);
  });

  it('ignores key order inside objects and distinguishes value types', () => {
    const s1 = new SegmentStore();
    const s2 = new SegmentStore();
    s1.put('k', { value: { a: 1, b: 2 }, valueBytes: 1 });
    s2.put('k', { value: { b: 2, a: 1 }, valueBytes: 1 });
    expect(s1.stateHash()).toBe(s2.stateHash());
    const hashes = new Set<string>();
    for (const value of [1, '1', 1.5, true, null, new Uint8Array([1]), [1], { 1: 1 }, 2n ** 64n]) {
      const s = new SegmentStore();
      s.put('k', { value, valueBytes: 1 });
      hashes.add(s.stateHash());
    }
    expect(hashes.size).toBe(9);
  });
});

describe('keysWithPrefix', () => {
  it('yields keys with the prefix in order, strictly after `after`', () => {
    const s = new SegmentStore();
    for (const k of ['a', 'ab', 'abc', 'abd', 'b', 'ba']) s.put(k, { value: 1, valueBytes: 1 });
    expect([...s.keysWithPrefix('ab')]).toEqual(['ab', 'abc', 'abd']);
    expect([...s.keysWithPrefix('ab', 'abc')]).toEqual(['abd']);
    expect([...s.keysWithPrefix('ab', 'a')]).toEqual(['ab', 'abc', 'abd']);
    expect([...s.keysWithPrefix('ab', 'b')]).toEqual([]);
    expect([...s.keysWithPrefix('')]).toEqual(['a', 'ab', 'abc', 'abd', 'b', 'ba']);
    expect(s.has('ab')).toBe(true);
    expect(s.has('zz')).toBe(false);
  });

  it('liveKeys hides keys expired at now', () => {
    const s = new SegmentStore();
    s.put('a1', { value: 1, valueBytes: 1, expiresAt: 5 });
    s.put('a2', { value: 1, valueBytes: 1 });
    s.put('a3', { value: 1, valueBytes: 1, expiresAt: 9 });
    const live = s.liveKeys(5);
    expect([...live.keysWithPrefix('a')]).toEqual(['a2', 'a3']);
    expect([...live.keysWithPrefix('a', 'a2')]).toEqual(['a3']);
    expect(live.has('a1')).toBe(false);
    expect(live.has('a3')).toBe(true);
    expect([...s.keysWithPrefix('a')]).toEqual(['a1', 'a2', 'a3']);
    expect([...s.keysWithPrefix('a', undefined, 9)]).toEqual(['a2']);
    expect(codeOf(() => s.liveKeys(Number.NaN))).toBe(ErrorCode.InvalidArgument);
  });
});
