/**
 * The linearizability checker and its models: each model's rules by hand, the `info`
 * semantics, budgets that give `unknown`, explanations, and properties: histories generated
 * from a sequential execution with random overlapping intervals are always linearizable, an
 * injected impossible read never is, and on small random histories the verdict equals a
 * brute-force search's.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { HistoryOp } from '../../jepsen-like/history.js';
import {
  checkOperations,
  checkPartition,
  formatExplanation,
  formatResult,
} from '../../jepsen-like/linearizability.js';
import { bindCounter } from '../../jepsen-like/models/counter.js';
import { MODELS } from '../../jepsen-like/models/index.js';
import { bindKv } from '../../jepsen-like/models/kv.js';
import type { BoundModel, Operation } from '../../jepsen-like/models/model.js';
import { bindMutex } from '../../jepsen-like/models/mutex.js';
import { bindRegister } from '../../jepsen-like/models/register.js';
import { bindSet } from '../../jepsen-like/models/set.js';
import { SeededRandom } from '../../src/random.js';
import { bruteForceLinearizable, type OpSpec, op, ops } from './helpers.js';

// biome-ignore lint/suspicious/noExplicitAny: models of every state type
type AnyBound = BoundModel<any, any, any>;

function verdict(bound: AnyBound, list: HistoryOp[], options = {}) {
  return checkOperations(bound.model, bound.operations(list), options);
}

describe('register model', () => {
  it('accepts a read of the last write, rejects a stale one', () => {
    const ok = ops(
      { f: 'write', value: 1, call: 0, ret: 1 },
      { f: 'read', out: 1, call: 2, ret: 3 },
      { f: 'write', value: 2, call: 4, ret: 5 },
      { f: 'read', out: 2, call: 6, ret: 7 },
    );
    expect(verdict(bindRegister({}), ok).valid).toBe(true);
    const stale = ops(
      { f: 'write', value: 1, call: 0, ret: 1 },
      { f: 'write', value: 2, call: 2, ret: 3 },
      { f: 'read', out: 1, call: 4, ret: 5 },
    );
    expect(verdict(bindRegister({}), stale).valid).toBe(false);
  });

  it('lets concurrent ops take either order', () => {
    const h = ops(
      { f: 'write', value: 1, call: 0, ret: 10 },
      { f: 'read', out: 1, call: 1, ret: 2 },
      { f: 'read', out: null, call: 3, ret: 4 },
    );
    // The read of null comes after the read of 1: impossible whichever point the write takes.
    expect(verdict(bindRegister({}), h).valid).toBe(false);
    const h2 = ops(
      { f: 'write', value: 1, call: 0, ret: 10 },
      { f: 'read', out: null, call: 1, ret: 2 },
      { f: 'read', out: 1, call: 3, ret: 4 },
    );
    expect(verdict(bindRegister({}), h2).valid).toBe(true);
  });

  it('starts from --init (default null) and compares values as canonical JSON', () => {
    const h = ops({ f: 'read', out: { a: 1, b: [2] }, call: 0, ret: 1 });
    expect(verdict(bindRegister({}), h).valid).toBe(false);
    expect(verdict(bindRegister({ init: { b: [2], a: 1 } }), h).valid).toBe(true);
    expect(verdict(bindRegister({}), ops({ f: 'read', out: null, call: 0, ret: 1 })).valid).toBe(true);
  });

  it('applies a cas only when the compare holds', () => {
    const h = ops(
      { f: 'write', value: 1, call: 0, ret: 1 },
      { f: 'cas', value: [1, 2], call: 2, ret: 3 },
      { f: 'read', out: 2, call: 4, ret: 5 },
    );
    expect(verdict(bindRegister({}), h).valid).toBe(true);
    const bad = ops({ f: 'write', value: 1, call: 0, ret: 1 }, { f: 'cas', value: [3, 2], call: 2, ret: 3 });
    expect(verdict(bindRegister({}), bad).valid).toBe(false);
  });

  it('drops a failed cas, but reads a VERSION_MISMATCH one as a compare that failed', () => {
    const base: OpSpec[] = [
      { f: 'write', value: 1, call: 0, ret: 1 },
      { f: 'read', out: 1, call: 4, ret: 5 },
    ];
    const plainFail = ops(base[0]!, { f: 'cas', value: [1, 2], status: 'fail', call: 2, ret: 3 }, base[1]!);
    expect(verdict(bindRegister({}), plainFail).valid).toBe(true);
    // The compare [1 -> 2] failed while the register held 1: impossible.
    const mismatch = ops(
      base[0]!,
      { f: 'cas', value: [1, 2], status: 'fail', fields: { error: 'VERSION_MISMATCH' }, call: 2, ret: 3 },
      base[1]!,
    );
    expect(verdict(bindRegister({}), mismatch).valid).toBe(false);
    const fine = ops(
      base[0]!,
      { f: 'cas', value: [7, 2], status: 'fail', fields: { error: 'VERSION_MISMATCH' }, call: 2, ret: 3 },
      base[1]!,
    );
    expect(verdict(bindRegister({}), fine).valid).toBe(true);
  });

  it('splits per key: a stale read on one key is found among valid keys', () => {
    const h = ops(
      { f: 'write', key: 'a', value: 1, call: 0, ret: 2 },
      { f: 'write', key: 'b', value: 1, call: 1, ret: 3 },
      { f: 'read', key: 'b', out: null, call: 4, ret: 6 },
      { f: 'read', key: 'a', out: 1, call: 5, ret: 7 },
    );
    const r = verdict(bindRegister({}), h);
    expect(r.valid).toBe(false);
    expect(r.partitions.map((p) => [p.key, p.valid])).toEqual([
      ['a', true],
      ['b', false],
    ]);
  });

  it('rejects ops it does not know, with the line', () => {
    expect(() => bindRegister({}).operations(ops({ f: 'append', value: 1, call: 0, ret: 1 }))).toThrow(
      /register model: unknown f "append"/,
    );
    expect(() => bindRegister({}).operations(ops({ f: 'cas', value: 1, call: 0, ret: 1 }))).toThrow(
      /\[from, to\]/,
    );
  });
});

describe('info semantics (may take effect any time after the invoke, or never)', () => {
  const reg = () => bindRegister({});
  it('an info write that nobody sees never took effect', () => {
    const h = ops(
      { f: 'write', value: 1, status: 'info', call: 0 },
      { f: 'read', out: null, call: 5, ret: 6 },
      { f: 'read', out: null, call: 7, ret: 8 },
    );
    expect(verdict(reg(), h).valid).toBe(true);
  });
  it('an info write may take effect long after its invoke', () => {
    const h = ops(
      { f: 'write', value: 1, status: 'info', call: 0, ret: 1 },
      { f: 'read', out: null, call: 5, ret: 6 },
      { f: 'read', out: 1, call: 100, ret: 101 },
    );
    expect(verdict(reg(), h).valid).toBe(true);
  });
  it('but not before its invoke', () => {
    const h = ops({ f: 'read', out: 1, call: 0, ret: 1 }, { f: 'write', value: 1, status: 'info', call: 5 });
    expect(verdict(reg(), h).valid).toBe(false);
  });
  it('and once seen it stays (no flicker back)', () => {
    const h = ops(
      { f: 'write', value: 1, status: 'info', call: 0 },
      { f: 'read', out: 1, call: 5, ret: 6 },
      { f: 'read', out: null, call: 7, ret: 8 },
    );
    expect(verdict(reg(), h).valid).toBe(false);
  });
  it('a failed write certainly did not happen', () => {
    const h = ops(
      { f: 'write', value: 1, status: 'fail', call: 0, ret: 1 },
      { f: 'read', out: 1, call: 5, ret: 6 },
    );
    expect(verdict(reg(), h).valid).toBe(false);
  });
  it('an info cas may or may not have swapped', () => {
    const start: OpSpec[] = [
      { f: 'write', value: 1, call: 0, ret: 1 },
      { f: 'cas', value: [1, 2], status: 'info', call: 2 },
    ];
    expect(verdict(reg(), ops(...start, { f: 'read', out: 2, call: 10, ret: 11 })).valid).toBe(true);
    expect(verdict(reg(), ops(...start, { f: 'read', out: 1, call: 10, ret: 11 })).valid).toBe(true);
    expect(verdict(reg(), ops(...start, { f: 'read', out: 3, call: 10, ret: 11 })).valid).toBe(false);
  });
  it('an info acquire may have granted the lock with a token nobody saw', () => {
    const h = ops(
      { f: 'acquire', key: 'L', status: 'info', call: 0 },
      { f: 'release', key: 'L', value: 7, call: 5, ret: 6 },
      { f: 'acquire', key: 'L', out: 9, call: 7, ret: 8 },
    );
    expect(verdict(bindMutex({}), h).valid).toBe(true);
  });
});

describe('kv, counter, mutex and set models', () => {
  it('kv: get sees puts and appends in order; a missing key is ""', () => {
    const h = ops(
      { f: 'get', key: 'x', out: null, call: 0, ret: 1 },
      { f: 'put', key: 'x', value: 'a', call: 2, ret: 3 },
      { f: 'append', key: 'x', value: 'b', call: 4, ret: 5 },
      { f: 'get', key: 'x', out: 'ab', call: 6, ret: 7 },
    );
    expect(verdict(bindKv({}), h).valid).toBe(true);
    const bad = ops(
      { f: 'append', key: 'x', value: 'a', call: 0, ret: 1 },
      { f: 'append', key: 'x', value: 'b', call: 2, ret: 3 },
      { f: 'get', key: 'x', out: 'ba', call: 4, ret: 5 },
    );
    expect(verdict(bindKv({}), bad).valid).toBe(false);
    expect(() => bindKv({}).operations(ops({ f: 'put', key: 'x', value: 3, call: 0, ret: 1 }))).toThrow(
      /must be a string/,
    );
  });

  it('counter: reads see the sum; an add result is checked too', () => {
    const h = ops(
      { f: 'add', value: 2, call: 0, ret: 1 },
      { f: 'add', value: -1, call: 2, ret: 3, fields: { result: 1 } },
      { f: 'read', out: 1, call: 4, ret: 5 },
    );
    expect(verdict(bindCounter({}), h).valid).toBe(true);
    const wrongResult = ops(
      { f: 'add', value: 2, call: 0, ret: 1 },
      { f: 'add', value: -1, call: 2, ret: 3, fields: { result: 5 } },
    );
    expect(verdict(bindCounter({}), wrongResult).valid).toBe(false);
    expect(verdict(bindCounter({ init: 10 }), ops({ f: 'read', out: 10, call: 0, ret: 1 })).valid).toBe(true);
  });

  it('mutex: one holder at a time, tokens strictly increase, release needs the holder token', () => {
    const good = ops(
      { f: 'acquire', key: 'L', out: 3, call: 0, ret: 1 },
      { f: 'release', key: 'L', value: 3, call: 2, ret: 3 },
      { f: 'acquire', key: 'L', out: 5, call: 4, ret: 5 },
    );
    expect(verdict(bindMutex({}), good).valid).toBe(true);
    const twoHolders = ops(
      { f: 'acquire', key: 'L', out: 3, call: 0, ret: 1 },
      { f: 'acquire', key: 'L', out: 5, call: 2, ret: 3 },
    );
    expect(verdict(bindMutex({}), twoHolders).valid).toBe(false);
    const tokenBack = ops(
      { f: 'acquire', key: 'L', out: 5, call: 0, ret: 1 },
      { f: 'release', key: 'L', value: 5, call: 2, ret: 3 },
      { f: 'acquire', key: 'L', out: 4, call: 4, ret: 5 },
    );
    expect(verdict(bindMutex({}), tokenBack).valid).toBe(false);
    const wrongRelease = ops(
      { f: 'acquire', key: 'L', out: 5, call: 0, ret: 1 },
      { f: 'release', key: 'L', value: 4, call: 2, ret: 3 },
    );
    expect(verdict(bindMutex({}), wrongRelease).valid).toBe(false);
    // Different locks are independent.
    const twoLocks = ops(
      { f: 'acquire', key: 'L', out: 3, call: 0, ret: 1 },
      { f: 'acquire', key: 'M', out: 3, call: 2, ret: 3 },
    );
    expect(verdict(bindMutex({}), twoLocks).valid).toBe(true);
  });

  it('set: reads show exactly the adds before them, in any order, as a set', () => {
    const h = ops(
      { f: 'add', value: 'a', call: 0, ret: 1 },
      { f: 'add', value: { n: 1 }, call: 2, ret: 3 },
      { f: 'read', out: [{ n: 1 }, 'a'], call: 4, ret: 5 },
      { f: 'add', value: 'a', call: 6, ret: 7 },
      { f: 'read', out: ['a', { n: 1 }], call: 8, ret: 9 },
    );
    expect(verdict(bindSet({}), h).valid).toBe(true);
    const lost = ops(
      { f: 'add', value: 'a', call: 0, ret: 1 },
      { f: 'add', value: 'b', call: 2, ret: 3 },
      { f: 'read', out: ['b'], call: 4, ret: 5 },
    );
    expect(verdict(bindSet({}), lost).valid).toBe(false);
  });

  it('the registry names the five models', () => {
    expect([...MODELS.keys()]).toEqual(['register', 'kv', 'counter', 'mutex', 'set']);
  });
});

describe('explanations, linearizations and budgets', () => {
  it('explains an invalid history: prefix, blocked op, candidates', () => {
    const h = ops(
      { f: 'write', value: 1, call: 0, ret: 1 },
      { f: 'write', value: 2, call: 2, ret: 3 },
      { f: 'read', out: 1, call: 4, ret: 5 },
    );
    const r = verdict(bindRegister({}), h);
    const p = r.partitions[0]!;
    expect(p.valid).toBe(false);
    const e = p.explanation!;
    expect(e.prefixLength).toBe(2);
    expect(e.prefixTail.map((s) => s.description)).toEqual(['write(1)', 'write(2)']);
    expect(e.state).toBe('2');
    expect(e.blocked.id).toBe(2);
    expect(e.blocked.description).toBe('read() -> 1');
    expect(e.candidates).toEqual([{ id: 2, process: 2, description: 'read() -> 1', rejected: true }]);
    const text = formatExplanation(e).join('\n');
    expect(text).toContain('longest linearizable prefix: 2 op(s)');
    expect(text).toContain('impossible from this state');
    expect(formatResult(r, 'register')[0]).toMatch(/^linearizability \(register\): INVALID/);
  });

  it('gives a linearization that replays when asked', () => {
    const h = ops(
      { f: 'write', value: 1, call: 0, ret: 10 },
      { f: 'write', value: 2, call: 1, ret: 10 },
      { f: 'read', out: 1, call: 11, ret: 12 },
    );
    const bound = bindRegister({});
    const list = bound.operations(h);
    const p = checkPartition(bound.model, list, '', { withLinearization: true });
    expect(p.valid).toBe(true);
    expect(p.linearization).toEqual([1, 0, 2]);
  });

  /** pathological: n fully concurrent writes and a read of a value nobody wrote. */
  function pathological(n: number): HistoryOp[] {
    const specs: OpSpec[] = [];
    for (let i = 0; i < n; i++) specs.push({ f: 'write', value: i, call: i, ret: 1000 + i });
    specs.push({ f: 'read', out: -1, call: n, ret: 999 });
    return ops(...specs);
  }

  it('returns unknown when the step budget runs out', () => {
    const r = verdict(bindRegister({}), pathological(30), { maxSteps: 20_000 });
    expect(r.valid).toBe('unknown');
    expect(r.partitions[0]!.unknownReason).toBe('step-budget');
    expect(formatResult(r, 'register')[1]).toMatch(/unknown \(step-budget/);
  });

  it('returns unknown when the time budget runs out, promptly', () => {
    const t0 = performance.now();
    const r = verdict(bindRegister({}), pathological(40), { timeBudgetMs: 100 });
    const ms = performance.now() - t0;
    expect(r.valid).toBe('unknown');
    expect(r.partitions[0]!.unknownReason).toBe('time-budget');
    expect(ms).toBeLessThan(2000);
  });

  it('returns unknown when the cache memory budget runs out', () => {
    const r = verdict(bindRegister({}), pathological(30), { cacheBytesMax: 1 << 20 });
    expect(r.valid).toBe('unknown');
    expect(r.partitions[0]!.unknownReason).toBe('memory');
  });

  it('finds an easy violation in one key while another key is hard, and can stop there', () => {
    const hard = pathological(40).map((o) => ({ ...o, key: 'hard' }));
    const easy = ops(
      { f: 'write', key: 'easy', value: 1, call: 2000, ret: 2001 },
      { f: 'read', key: 'easy', out: 2, call: 2002, ret: 2003 },
    ).map((o, i) => ({ ...o, id: 100 + i }));
    const bound = bindRegister({});
    const list = bound.operations([...hard, ...easy]);
    const t0 = performance.now();
    const r = checkOperations(bound.model, list, { stopOnInvalid: true, timeBudgetMs: 10_000 });
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(r.valid).toBe(false);
    expect(r.partitions.map((p) => [p.key, p.valid, p.unknownReason])).toEqual([
      ['easy', false, undefined],
      ['hard', 'unknown', 'skipped'],
    ]);
  });
});

// --- Generated histories -------------------------------------------------------------------

/** Abstract is an op of a sequential execution: its spec without times. */
type Abstract = Omit<OpSpec, 'call' | 'ret'>;

interface Generator {
  readonly name: string;
  bind(): AnyBound;
  /** run produces a sequential execution of n ops (outputs consistent with the model). */
  run(rng: SeededRandom, n: number): Abstract[];
  /** never is an op that never takes effect (recorded as info). */
  never(rng: SeededRandom, i: number): Abstract;
  /** impossible is a read no execution could return. */
  impossible(rng: SeededRandom): Abstract;
  /** random is an op with a random, possibly inconsistent, output (for the brute-force comparison). */
  random(rng: SeededRandom): Abstract;
}

const keyOf = (rng: SeededRandom, keys: number) => `k${rng.int(keys)}`;
const pick = <T>(rng: SeededRandom, xs: readonly T[]): T => xs[rng.int(xs.length)]!;

const GENERATORS: Generator[] = [
  {
    name: 'register',
    bind: () => bindRegister({}),
    run(rng, n) {
      const state = new Map<string, number | null>();
      const out: Abstract[] = [];
      for (let i = 0; i < n; i++) {
        const key = keyOf(rng, 2);
        const cur = state.get(key) ?? null;
        const r = rng.int(3);
        if (r === 0) out.push({ f: 'read', key, out: cur });
        else if (r === 1) {
          const v = rng.int(4);
          state.set(key, v);
          out.push({ f: 'write', key, value: v });
        } else {
          const from = rng.int(3) === 0 ? cur : rng.int(4);
          const to = rng.int(4);
          if (from === cur) {
            state.set(key, to);
            out.push({ f: 'cas', key, value: [from, to] });
          } else
            out.push({
              f: 'cas',
              key,
              value: [from, to],
              status: 'fail',
              fields: { error: rng.int(2) ? 'VERSION_MISMATCH' : 'UNAVAILABLE' },
            });
        }
      }
      return out;
    },
    never: (rng, i) => ({ f: 'write', key: keyOf(rng, 2), value: 100 + i }),
    impossible: (rng) => ({ f: 'read', key: keyOf(rng, 2), out: -7 }),
    random(rng) {
      const key = keyOf(rng, 2);
      const r = rng.int(3);
      const v = () => pick(rng, [null, 0, 1, 2]);
      if (r === 0) return { f: 'read', key, out: v() };
      if (r === 1) return { f: 'write', key, value: v() };
      return rng.int(3) === 0
        ? { f: 'cas', key, value: [v(), v()], status: 'fail', fields: { error: 'VERSION_MISMATCH' } }
        : { f: 'cas', key, value: [v(), v()] };
    },
  },
  {
    name: 'kv',
    bind: () => bindKv({}),
    run(rng, n) {
      const state = new Map<string, string>();
      const out: Abstract[] = [];
      for (let i = 0; i < n; i++) {
        const key = keyOf(rng, 2);
        const cur = state.get(key) ?? '';
        const r = rng.int(3);
        if (r === 0) out.push({ f: 'get', key, out: cur });
        else if (r === 1) {
          const v = `p${rng.int(3)}`;
          state.set(key, v);
          out.push({ f: 'put', key, value: v });
        } else {
          const v = `a${i}`;
          state.set(key, cur + v);
          out.push({ f: 'append', key, value: v });
        }
      }
      return out;
    },
    never: (rng, i) => ({ f: 'append', key: keyOf(rng, 2), value: `never${i}` }),
    impossible: (rng) => ({ f: 'get', key: keyOf(rng, 2), out: 'impossible' }),
    random(rng) {
      const key = keyOf(rng, 1);
      const r = rng.int(3);
      if (r === 0) return { f: 'get', key, out: pick(rng, ['', 'x', 'y', 'xy', 'yx']) };
      return { f: r === 1 ? 'put' : 'append', key, value: pick(rng, ['x', 'y']) };
    },
  },
  {
    name: 'counter',
    bind: () => bindCounter({}),
    run(rng, n) {
      const state = new Map<string, number>();
      const out: Abstract[] = [];
      for (let i = 0; i < n; i++) {
        const key = keyOf(rng, 2);
        const cur = state.get(key) ?? 0;
        if (rng.int(2) === 0) out.push({ f: 'read', key, out: cur });
        else {
          const d = rng.int(5) - 2;
          state.set(key, cur + d);
          out.push({ f: 'add', key, value: d, ...(rng.int(2) ? { fields: { result: cur + d } } : {}) });
        }
      }
      return out;
    },
    never: (rng) => ({ f: 'add', key: keyOf(rng, 2), value: 1_000_000 }),
    impossible: (rng) => ({ f: 'read', key: keyOf(rng, 2), out: 1e9 }),
    random(rng) {
      const key = keyOf(rng, 1);
      if (rng.int(2)) return { f: 'read', key, out: rng.int(4) - 1 };
      return {
        f: 'add',
        key,
        value: rng.int(3) - 1,
        ...(rng.int(3) ? {} : { fields: { result: rng.int(3) } }),
      };
    },
  },
  {
    name: 'mutex',
    bind: () => bindMutex({}),
    run(rng, n) {
      const state = new Map<string, { held: number | null; last: number }>();
      const out: Abstract[] = [];
      for (let i = 0; i < n; i++) {
        const key = keyOf(rng, 2);
        const s = state.get(key) ?? { held: null, last: 0 };
        if (s.held === null) {
          const t = s.last + 1 + rng.int(3);
          state.set(key, { held: t, last: t });
          out.push({ f: 'acquire', key, out: t });
        } else if (rng.int(4) === 0) {
          out.push({
            f: 'release',
            key,
            value: s.held + 1000,
            status: 'fail',
            fields: { error: 'NOT_OWNER' },
          });
        } else {
          state.set(key, { held: null, last: s.last });
          out.push({ f: 'release', key, value: s.held });
        }
      }
      return out;
    },
    never: (rng) => ({ f: 'release', key: keyOf(rng, 2), value: 999_999 }),
    impossible: (rng) => ({ f: 'acquire', key: keyOf(rng, 2), out: 0 }),
    random(rng) {
      const key = keyOf(rng, 1);
      if (rng.int(2)) return { f: 'acquire', key, out: 1 + rng.int(4) };
      return { f: 'release', key, value: 1 + rng.int(4) };
    },
  },
  {
    name: 'set',
    bind: () => bindSet({}),
    run(rng, n) {
      const state = new Map<string, Set<number>>();
      const out: Abstract[] = [];
      for (let i = 0; i < n; i++) {
        const key = keyOf(rng, 2);
        const s = state.get(key) ?? new Set<number>();
        state.set(key, s);
        if (rng.int(2) === 0) out.push({ f: 'read', key, out: [...s].sort((a, b) => b - a) });
        else {
          const e = rng.int(6);
          s.add(e);
          out.push({ f: 'add', key, value: e });
        }
      }
      return out;
    },
    never: (rng, i) => ({ f: 'add', key: keyOf(rng, 2), value: `never${i}` }),
    impossible: (rng) => ({ f: 'read', key: keyOf(rng, 2), out: ['impossible'] }),
    random(rng) {
      const key = keyOf(rng, 1);
      if (rng.int(2)) return { f: 'add', key, value: rng.int(3) };
      return { f: 'read', key, out: [0, 1, 2].filter(() => rng.int(2) === 1) };
    },
  },
];

/**
 * timed places a sequential execution in time: op i takes effect at 100 i, inside a random
 * interval around it; some ops become `info` (they took effect, nobody knows when), and
 * ops that never took effect are mixed in as `info`.
 */
function timed(
  g: Generator,
  rng: SeededRandom,
  seq: Abstract[],
  width: number,
  extras: Abstract[],
): HistoryOp[] {
  const out: HistoryOp[] = [];
  const span = () => rng.int(width * 100 + 1);
  seq.forEach((a, i) => {
    const point = 100 * (i + 6);
    const info = rng.int(7) === 0 && a.status !== 'fail';
    out.push(
      op(out.length, {
        ...a,
        ...(info ? { status: 'info' as const } : {}),
        call: point - span(),
        ret: point + span(),
      }),
    );
    if (rng.int(10) === 0)
      out.push(op(out.length, { ...g.never(rng, i), status: 'info', call: point - span() }));
  });
  for (const a of extras) {
    const point = 100 * (6 + rng.int(seq.length + 1)) + 50;
    out.push(op(out.length, { ...a, call: point - span(), ret: point + span() }));
  }
  return out;
}

describe('generated histories', () => {
  for (const g of GENERATORS) {
    it(`${g.name}: a sequential execution in random overlapping intervals is always linearizable`, () => {
      fc.assert(
        fc.property(
          fc.integer(),
          fc.integer({ min: 1, max: 40 }),
          fc.integer({ min: 0, max: 4 }),
          (seed, n, w) => {
            const rng = new SeededRandom(seed);
            const h = timed(g, rng, g.run(rng, n), w, []);
            const r = verdict(g.bind(), h, { timeBudgetMs: 5000 });
            expect(r.valid).toBe(true);
          },
        ),
        { numRuns: 150 },
      );
    });

    it(`${g.name}: an injected impossible read is never linearizable`, () => {
      fc.assert(
        fc.property(
          fc.integer(),
          fc.integer({ min: 0, max: 30 }),
          fc.integer({ min: 0, max: 4 }),
          (seed, n, w) => {
            const rng = new SeededRandom(seed);
            const h = timed(g, rng, g.run(rng, n), w, [g.impossible(rng)]);
            const r = verdict(g.bind(), h, { timeBudgetMs: 5000 });
            expect(r.valid).toBe(false);
          },
        ),
        { numRuns: 100 },
      );
    });

    it(`${g.name}: on small random histories the verdict equals a brute-force search's`, () => {
      let valid = 0;
      let invalid = 0;
      fc.assert(
        fc.property(fc.integer(), fc.integer({ min: 1, max: 7 }), (seed, n) => {
          const rng = new SeededRandom(seed);
          const list: HistoryOp[] = [];
          for (let i = 0; i < n; i++) {
            const call = rng.int(20);
            const info = rng.int(5) === 0;
            list.push(
              op(i, {
                ...g.random(rng),
                ...(info ? { status: 'info' as const } : {}),
                call,
                ret: call + rng.int(8),
              }),
            );
          }
          const bound = g.bind();
          const operations: Operation<unknown, unknown>[] = bound.operations(list);
          const expected = bruteForceLinearizable(bound.model, operations);
          const got = checkOperations(bound.model, operations).valid;
          if (expected) valid++;
          else invalid++;
          expect(got).toBe(expected);
          // With every state hashing alike, the cache must still tell states apart.
          const collide = { ...bound.model, hash: () => 0 };
          expect(checkOperations(collide, operations).valid).toBe(expected);
        }),
        { numRuns: 400 },
      );
      // Both outcomes must be exercised for the comparison to mean anything.
      expect(valid).toBeGreaterThan(20);
      expect(invalid).toBeGreaterThan(20);
    });
  }
});
