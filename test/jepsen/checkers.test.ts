/**
 * The checkers that need no search: fencing, set, counter and watch, each on hand-made
 * valid histories and on one invalid history per rule.
 */
import { describe, expect, it } from 'vitest';
import { checkCounter } from '../../jepsen-like/checkers/counter.js';
import { checkFencing } from '../../jepsen-like/checkers/fencing.js';
import { checkSet } from '../../jepsen-like/checkers/set.js';
import { checkWatch } from '../../jepsen-like/checkers/watch.js';
import { type CheckerResult, formatCheckerResult } from '../../jepsen-like/verdict.js';
import { history, type OpSpec, ops } from './helpers.js';

function kinds(r: CheckerResult): string[] {
  return [...new Set(r.violations.map((v) => v.kind))].sort();
}

const run = (check: (h: ReturnType<typeof history>) => CheckerResult, ...specs: OpSpec[]) =>
  check(history(ops(...specs)));

describe('fencing checker', () => {
  const fencing = (...specs: OpSpec[]) => run(checkFencing, ...specs.map((s) => ({ key: 'L', ...s })));

  it('accepts a history where stale tokens are rejected', () => {
    const r = fencing(
      { f: 'acquire', out: 1, call: 0, ret: 1 },
      { f: 'access', value: 1, call: 2, ret: 3 },
      { f: 'release', value: 1, call: 4, ret: 5 },
      { f: 'acquire', out: 4, call: 6, ret: 7 },
      { f: 'access', value: 4, call: 8, ret: 9 },
      { f: 'access', value: 1, status: 'fail', call: 10, ret: 11 },
      { f: 'access', value: 4, call: 12, ret: 13 },
      { f: 'read-accepted', out: [1, 4, 4], call: 14, ret: 15 },
    );
    expect(r.valid).toBe(true);
    expect(r.stats).toMatchObject({ locks: 1, grants: 2, accepted: 3, rejected: 1, logs: 1 });
  });

  it('allows concurrent accesses in either order', () => {
    const r = fencing(
      { f: 'acquire', out: 1, call: 0, ret: 1 },
      { f: 'acquire', out: 2, call: 2, ret: 3 },
      { f: 'access', value: 2, call: 4, ret: 10 },
      { f: 'access', value: 1, call: 1, ret: 8 },
    );
    expect(kinds(r)).toEqual([]);
  });

  const cases: [string, OpSpec[]][] = [
    [
      'grant-order',
      [
        { f: 'acquire', out: 5, call: 0, ret: 1 },
        { f: 'acquire', out: 3, call: 2, ret: 3 },
      ],
    ],
    [
      'grant-order',
      [
        { f: 'acquire', out: 5, call: 0, ret: 3 },
        { f: 'acquire', out: 5, call: 1, ret: 2 },
      ],
    ],
    [
      'stale-accept',
      [
        { f: 'acquire', out: 1, call: 0, ret: 1 },
        // The grant of 2 is acknowledged late, so only the resource's own order shows the problem.
        { f: 'acquire', out: 2, call: 0, ret: 10 },
        { f: 'access', value: 2, call: 2, ret: 3 },
        { f: 'access', value: 1, call: 4, ret: 5 },
      ],
    ],
    [
      'accept-after-grant',
      [
        { f: 'acquire', out: 1, call: 0, ret: 1 },
        { f: 'acquire', out: 2, call: 2, ret: 3 },
        { f: 'access', value: 1, call: 4, ret: 5 },
      ],
    ],
    [
      'accept-after-release',
      [
        { f: 'acquire', out: 1, call: 0, ret: 1 },
        { f: 'release', value: 1, call: 2, ret: 3 },
        { f: 'access', value: 1, call: 4, ret: 5 },
      ],
    ],
    [
      'unknown-token',
      [
        { f: 'acquire', out: 1, call: 0, ret: 1 },
        { f: 'access', value: 7, call: 2, ret: 3 },
      ],
    ],
    [
      'log-order',
      [
        { f: 'acquire', out: 1, call: 0, ret: 1 },
        { f: 'read-accepted', out: [1, 3, 2], call: 2, ret: 3 },
      ],
    ],
    [
      'log-lost',
      [
        { f: 'acquire', out: 1, call: 0, ret: 1 },
        { f: 'access', value: 1, call: 2, ret: 3 },
        { f: 'read-accepted', out: [], call: 4, ret: 5 },
      ],
    ],
  ];
  for (const [kind, specs] of cases)
    it(`finds ${kind}`, () => {
      const r = fencing(...specs);
      expect(r.valid).toBe(false);
      expect(kinds(r)).toEqual([kind]);
      expect(formatCheckerResult(r)[0]).toMatch(/^fencing: INVALID/);
      expect(formatCheckerResult(r)[1]).toContain(`[${kind}]`);
    });

  it('does not call a token unknown when some acquire outcome is unknown', () => {
    const r = fencing({ f: 'acquire', status: 'info', call: 0 }, { f: 'access', value: 7, call: 2, ret: 3 });
    expect(r.valid).toBe(true);
  });
});

describe('set checker', () => {
  const set = (...specs: OpSpec[]) => run(checkSet, ...specs);

  it('accepts acknowledged, unknown and failed adds read correctly', () => {
    const r = set(
      { f: 'add', value: 'a', call: 0, ret: 1 },
      { f: 'add', value: 'b', status: 'info', call: 2 },
      { f: 'add', value: 'c', status: 'fail', call: 3, ret: 4 },
      { f: 'add', value: 'd', call: 5, ret: 20 },
      { f: 'read', out: ['a'], call: 6, ret: 7 },
      { f: 'read', out: ['b', 'a', 'd'], call: 21, ret: 22 },
    );
    expect(r.valid).toBe(true);
    expect(r.stats).toMatchObject({ attempted: 4, acknowledged: 2, lost: 0, recovered: 1, reads: 2 });
  });

  const cases: [string, OpSpec[]][] = [
    [
      'lost',
      [
        { f: 'add', value: 'a', call: 0, ret: 1 },
        { f: 'read', out: [], call: 2, ret: 3 },
      ],
    ],
    [
      'stale-read',
      [
        { f: 'add', value: 'a', call: 0, ret: 1 },
        { f: 'read', out: [], call: 2, ret: 3 },
        { f: 'read', out: ['a'], call: 4, ret: 5 },
      ],
    ],
    [
      'lost',
      [
        { f: 'add', value: 'a', status: 'info', call: 0 },
        { f: 'read', out: ['a'], call: 2, ret: 3 },
        { f: 'read', out: [], call: 4, ret: 5 },
      ],
    ],
    ['unexpected', [{ f: 'read', out: ['z'], call: 0, ret: 1 }]],
    [
      'unexpected',
      [
        { f: 'read', out: ['a'], call: 0, ret: 1 },
        { f: 'add', value: 'a', call: 2, ret: 3 },
      ],
    ],
    [
      'failed-add-present',
      [
        { f: 'add', value: 'a', status: 'fail', call: 0, ret: 1 },
        { f: 'read', out: ['a'], call: 2, ret: 3 },
      ],
    ],
    [
      'duplicate',
      [
        { f: 'add', value: 'a', call: 0, ret: 1 },
        { f: 'read', out: ['a', 'a'], call: 2, ret: 3 },
      ],
    ],
  ];
  for (const [kind, specs] of cases)
    it(`finds ${kind}`, () => {
      const r = set(...specs);
      expect(r.valid).toBe(false);
      expect(kinds(r)).toEqual([kind]);
    });

  it('checks sets (keys) independently', () => {
    const r = set(
      { f: 'add', key: 's1', value: 'a', call: 0, ret: 1 },
      { f: 'read', key: 's2', out: [], call: 2, ret: 3 },
      { f: 'read', key: 's1', out: ['a'], call: 4, ret: 5 },
    );
    expect(r.valid).toBe(true);
    expect(r.stats.sets).toBe(2);
  });
});

describe('counter checker', () => {
  const counter = (...specs: OpSpec[]) => run(checkCounter, ...specs);

  it('accepts reads between the acknowledged and the attempted adds', () => {
    const r = counter(
      { f: 'add', value: 1, call: 0, ret: 1 },
      { f: 'add', value: 2, status: 'info', call: 2 },
      { f: 'add', value: 10, status: 'fail', call: 3, ret: 4 },
      { f: 'read', out: 1, call: 5, ret: 6 },
      { f: 'read', out: 3, call: 7, ret: 8 },
      { f: 'add', value: 4, call: 9, ret: 20, fields: { result: 5 } },
      { f: 'read', out: 7, call: 21, ret: 22 },
    );
    expect(r.valid).toBe(true);
    expect(r.stats).toMatchObject({ attempted: 3, acknowledged: 2, reads: 4 });
  });

  it('finds a read below the acknowledged adds and one above the attempted ones', () => {
    const below = counter({ f: 'add', value: 1, call: 0, ret: 1 }, { f: 'read', out: 0, call: 2, ret: 3 });
    expect(kinds(below)).toEqual(['read-below']);
    const above = counter(
      { f: 'add', value: 1, call: 0, ret: 1 },
      { f: 'add', value: 1, call: 5, ret: 6 },
      { f: 'read', out: 2, call: 2, ret: 3 },
    );
    expect(kinds(above)).toEqual(['read-above']);
    const failedCounted = counter(
      { f: 'add', value: 1, status: 'fail', call: 0, ret: 1 },
      { f: 'read', out: 1, call: 2, ret: 3 },
    );
    expect(kinds(failedCounted)).toEqual(['read-above']);
  });

  it('handles negative deltas, an add result, and the initial value', () => {
    const neg = counter(
      { f: 'add', value: -2, call: 0, ret: 10 },
      { f: 'add', value: 3, call: 0, ret: 10 },
      { f: 'read', out: -2, call: 1, ret: 2 },
      { f: 'read', out: 3, call: 3, ret: 4 },
      { f: 'read', out: 1, call: 11, ret: 12 },
    );
    expect(neg.valid).toBe(true);
    const tooLow = counter(
      { f: 'add', value: -2, call: 0, ret: 10 },
      { f: 'read', out: -3, call: 1, ret: 2 },
    );
    expect(kinds(tooLow)).toEqual(['read-below']);
    const result = counter(
      { f: 'add', value: 1, call: 0, ret: 1 },
      { f: 'add', value: 1, call: 2, ret: 3, fields: { result: 1 } },
    );
    expect(kinds(result)).toEqual(['read-below']);
    const init = checkCounter(history(ops({ f: 'read', out: 10, call: 0, ret: 1 })), { initial: 10 });
    expect(init.valid).toBe(true);
  });
});

describe('watch checker', () => {
  const w = (id: number, events: unknown[], more: Partial<OpSpec> = {}, from?: unknown): OpSpec => ({
    f: 'watch',
    key: 'k/',
    process: `w${id}`,
    value: from === undefined ? null : { fromRevision: from },
    out: events,
    call: 100 + id * 10,
    ret: 105 + id * 10,
    ...more,
  });
  const put = (key: string, v: unknown, revision: number, call: number, group?: number): OpSpec => ({
    f: 'put',
    key,
    value: v,
    fields: { revision, ...(group === undefined ? {} : { group }) },
    call,
    ret: call + 1,
  });
  const writes: OpSpec[] = [
    put('k/a', 1, 1, 0),
    put('k/b', 2, 2, 2),
    { f: 'delete', key: 'k/a', fields: { revision: 3 }, call: 4, ret: 5 },
    put('z', 9, 4, 6),
    put('k/b', 3, 5, 8),
  ];
  const e = (revision: number, key: string, type = 'put', value?: unknown, more = {}) => ({
    revision,
    key,
    type,
    ...(value === undefined ? {} : { value }),
    ...more,
  });
  const all = [e(1, 'k/a', 'put', 1), e(2, 'k/b', 'put', 2), e(3, 'k/a', 'delete'), e(5, 'k/b', 'put', 3)];
  const watch = (...specs: OpSpec[]) => run(checkWatch, ...writes, ...specs);

  it('accepts complete, ordered logs, resumes that continue where they left off, and live watches', () => {
    const r = watch(
      w(0, all, {}, 1),
      w(1, all.slice(0, 2), { status: 'fail', fields: { error: 'SLOW_CONSUMER' } }, 1),
      w(1, all.slice(2), { call: 200, ret: 201 }, 3),
      w(2, all.slice(1)),
      w(3, [e(7, 'k/c', 'put', 0, { cause: 'snapshot' }), ...all.slice(3)], {}, 5),
    );
    expect(r.valid).toBe(true);
    expect(r.stats).toMatchObject({ writes: 5, watchers: 4, sessions: 5, snapshots: 1, lost: 0 });
  });

  const cases: [string, OpSpec[]][] = [
    ['lost', [w(0, [all[0], all[2], all[3]], {}, 1)]],
    ['lost', [w(0, all.slice(0, 1), {}, 1), w(0, all.slice(2), { call: 200, ret: 201 }, 3)]],
    ['repeated', [w(0, all.slice(0, 2), {}, 1), w(0, all.slice(1), { call: 200, ret: 201 }, 2)]],
    ['out-of-order', [w(0, [all[1], all[0], all[2], all[3]], {}, 1)]],
    ['divergent', [w(0, [all[0], e(2, 'k/b', 'put', 99), all[2], all[3]], {}, 1)]],
    ['foreign-key', [w(0, [...all.slice(0, 3), e(4, 'z', 'put', 9), all[3]], {}, 1)]],
  ];
  for (const [kind, specs] of cases)
    it(`finds ${kind}`, () => {
      const r = watch(...specs);
      expect(r.valid).toBe(false);
      expect(kinds(r)).toEqual([kind]);
    });

  it('finds two acknowledged writes with one revision', () => {
    const r = run(checkWatch, put('k/a', 1, 1, 0), put('k/b', 1, 1, 2));
    expect(kinds(r)).toEqual(['divergent']);
  });

  it('requires events only other watchers saw (an expiry) and keeps groups apart', () => {
    const expiry = e(6, 'k/b', 'delete', undefined, { cause: 'expired' });
    const r = watch(
      w(0, [...all, expiry, e(7, 'k/c', 'put', 1)], {}, 1),
      w(1, [...all, e(7, 'k/c', 'put', 1)], {}, 1),
    );
    expect(kinds(r)).toEqual(['lost']);
    expect(r.violations[0]!.message).toContain('watcher w1 missed group 0 revision 6');
    const groups = run(
      checkWatch,
      put('k/a', 1, 1, 0, 0),
      put('k/b', 1, 1, 2, 1),
      put('k/b', 2, 2, 4, 1),
      w(
        0,
        [
          e(1, 'k/a', 'put', 1, { group: 0 }),
          e(1, 'k/b', 'put', 1, { group: 1 }),
          e(2, 'k/b', 'put', 2, { group: 1 }),
        ],
        {},
        1,
      ),
      w(1, [e(1, 'k/a', 'put', 1, { group: 0 }), e(2, 'k/b', 'put', 2, { group: 1 })], {}, { 0: 1, 1: 1 }),
    );
    expect(kinds(groups)).toEqual(['lost']);
    expect(groups.violations[0]!.message).toContain('watcher w1 missed group 1 revision 1');
  });
});
