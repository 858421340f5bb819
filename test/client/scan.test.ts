/**
 * Scans, queries and transactions against an in-process 3-node cluster (3 partition groups),
 * compared with a dumb model (the keys sorted with JavaScript's `<`). A counting wrapper of
 * the client's core shows what was read: pages per group, early stops, one group for a
 * hash-tagged prefix, nothing sent for a CROSS_GROUP transaction.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DkvClient } from '../../src/client/client.js';
import type { ClientCore } from '../../src/client/core.js';
import {
  countKeys,
  countQuery,
  defineIndexes,
  runQuery,
  runTxn,
  scanItems,
  streamQuery,
} from '../../src/client/scan.js';
import { ErrorCode, isDkvError } from '../../src/errors.js';
import type { ReadRequest } from '../../src/transport/protocol.js';
import { InProcCluster } from './fixture.js';

interface Counted {
  core: ClientCore;
  reads: { group: number | undefined; read: ReadRequest }[];
  mutates: number;
}

/** counting wraps a client's core, recording every read and counting mutations. */
function counting(c: DkvClient): Counted {
  const out: Counted = { core: undefined as unknown as ClientCore, reads: [], mutates: 0 };
  out.core = {
    store: c.store,
    requestTimeoutMs: c.requestTimeoutMs,
    mutate: (route, cmd, opts) => {
      out.mutates++;
      return c.mutate(route, cmd, opts);
    },
    read: (route, read, consistency, opts) => {
      out.reads.push({ group: 'group' in route ? route.group : undefined, read });
      return c.read(route, read, consistency, opts);
    },
    groups: (opts) => c.groups(opts),
    groupOfKey: (key, opts) => c.groupOfKey(key, opts),
    openStream: (group, op, args, target, opts) => c.openStream(group, op, args, target, opts),
    noteRedirect: (group, err) => c.noteRedirect(group, err),
  };
  return out;
}

async function keysOf(it: AsyncIterable<{ key: string }>): Promise<string[]> {
  const out: string[] = [];
  for await (const x of it) out.push(x.key);
  return out;
}

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<unknown> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    return isDkvError(err) ? err.code : err;
  }
  return 'no error';
}

const byJs = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

describe('scan, query, txn', () => {
  let cluster: InProcCluster;
  let c: DkvClient;
  /** The model: every key written under m/ (and a few around it), sorted. */
  let model: string[];

  beforeAll(async () => {
    cluster = await InProcCluster.start({ partitions: 3 });
    c = await cluster.client();
    const words = new Set<string>();
    const alphabet = ['a', 'b', 'c', 'Z', 'é', '{', '}', '/'];
    let seed = 7;
    const rnd = (n: number): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    while (words.size < 240) {
      const len = 1 + rnd(4);
      let w = '';
      for (let i = 0; i < len; i++) w += alphabet[rnd(alphabet.length)];
      words.add(`m/${w}`);
    }
    for (let i = 0; i < 12; i++) words.add(`m/{t}${i}`);
    for (const k of ['l/x', 'm', 'm0', 'n/a', 'n/b']) words.add(k);
    model = [...words].sort(byJs);
    const keys = [...words];
    await Promise.all(
      Array.from({ length: 16 }, async (_, w) => {
        for (let i = w; i < keys.length; i += 16) await c.put(keys[i]!, `v:${keys[i]}`);
      }),
    );
  });
  afterAll(async () => {
    await cluster?.close();
  });

  it('scans every group, merged in key order, equal to the model', async () => {
    const got = [];
    for await (const item of c.scan({ prefix: 'm/', pageSize: 7 })) got.push(item);
    expect(got.map((i) => i.key)).toEqual(model.filter((k) => k.startsWith('m/')));
    expect(got.every((i) => i.value === `v:${i.key}`)).toBe(true);
    const groups = new Set(got.map((i) => (i as { group?: number }).group));
    expect(groups).toEqual(new Set([1, 2, 3]));
    expect(await keysOf(scanItems(c, {}))).toEqual(model);
    expect(await countKeys(c, { prefix: 'm/' })).toBe(model.filter((k) => k.startsWith('m/')).length);
  });

  it('matches the model for any prefix, range, limit and page size', async () => {
    const bound = fc.option(
      fc.constantFrom('m/', 'm/a', 'm/b', 'm/c', 'm/é', 'm/{', 'm/Z', 'n', 'm/aa', 'l'),
      {
        nil: undefined,
      },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.option(fc.constantFrom('', 'm/', 'm/a', 'm/ab', 'm/{', 'm/{t}', 'n/', 'zz', 'm'), {
          nil: undefined,
        }),
        bound,
        bound,
        fc.option(fc.nat(260), { nil: undefined }),
        fc.integer({ min: 4, max: 80 }),
        fc.constantFrom('linearizable' as const, 'serializable' as const),
        async (prefix, start, end, limit, pageSize, consistency) => {
          const want = model
            .filter(
              (k) =>
                (prefix === undefined || k.startsWith(prefix)) &&
                (start === undefined || k >= start) &&
                (end === undefined || k < end),
            )
            .slice(0, limit ?? Number.POSITIVE_INFINITY);
          const got = await keysOf(
            scanItems(c, {
              ...(prefix !== undefined && { prefix }),
              ...(start !== undefined && { start }),
              ...(end !== undefined && { end }),
              ...(limit !== undefined && { limit }),
              pageSize,
              consistency,
            }),
          );
          expect(got).toEqual(want);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('holds one page per group: an early break and a limit fetch no more', async () => {
    const k = counting(c);
    let n = 0;
    for await (const _ of scanItems(k.core, { prefix: 'm/', pageSize: 10 })) if (++n === 5) break;
    expect(k.reads).toHaveLength(3); // the first page of each group, nothing more
    expect(k.reads.every((r) => r.read.op === 'scan' && r.read.limit === 10)).toBe(true);

    k.reads.length = 0;
    const got = await keysOf(scanItems(k.core, { prefix: 'm/', pageSize: 10, limit: 25 }));
    expect(got).toEqual(model.filter((x) => x.startsWith('m/')).slice(0, 25));
    // Each group's pages: never more than what is left of the limit.
    const fetched = k.reads.reduce((s, r) => s + ((r.read as { limit: number }).limit ?? 0), 0);
    expect(fetched).toBeLessThanOrEqual(25 + 3 * 10);

    k.reads.length = 0;
    expect(await keysOf(scanItems(k.core, { prefix: 'm/', limit: 0 }))).toEqual([]);
    expect(k.reads.filter((r) => r.read.op === 'scan')).toHaveLength(0);
  });

  it('reads only the one group of a hash-tagged prefix', async () => {
    const k = counting(c);
    const got = await keysOf(scanItems(k.core, { prefix: 'm/{t}', pageSize: 5 }));
    expect(got).toEqual(model.filter((x) => x.startsWith('m/{t}')));
    expect(new Set(k.reads.map((r) => r.group)).size).toBe(1);
  });

  it('an aborted signal stops a scan with CANCELLED', async () => {
    const ac = new AbortController();
    const it = scanItems(c, { prefix: 'm/', pageSize: 4, signal: ac.signal })[Symbol.asyncIterator]();
    await it.next();
    ac.abort();
    expect(await codeOf(it.next())).toBe(ErrorCode.Cancelled);
    expect(await codeOf(keysOf(scanItems(c, { signal: ac.signal })))).toBe(ErrorCode.Cancelled);
  });

  it('refuses bad scan options', async () => {
    expect(await codeOf(() => scanItems(c, { pageSize: 0 }))).toBe(ErrorCode.InvalidArgument);
    expect(await codeOf(() => scanItems(c, { limit: -1 }))).toBe(ErrorCode.InvalidArgument);
    expect(await codeOf(() => scanItems(c, { consistency: 'eventual' as never }))).toBe(
      ErrorCode.InvalidArgument,
    );
  });

  describe('queries', () => {
    const colors = ['red', 'green', 'blue'];
    const teams = ['x', 'y'];
    const rows: { key: string; color: string; age: number; team: string }[] = [];

    beforeAll(async () => {
      await defineIndexes(c, [
        { name: 'color', kind: 'eq', field: 'color' },
        { name: 'age', kind: 'range', field: 'age' },
        { name: 'team', kind: 'eq', label: 'team' },
      ]);
      for (let i = 0; i < 150; i++) {
        rows.push({ key: `q/${i}`, color: colors[i % 3]!, age: (i * 37) % 61, team: teams[(i >> 2) % 2]! });
      }
      await Promise.all(
        Array.from({ length: 10 }, async (_, w) => {
          for (let i = w; i < rows.length; i += 10) {
            const r = rows[i]!;
            await c.put(r.key, { color: r.color, age: r.age }, { labels: { team: r.team } });
          }
        }),
      );
    });

    const keysWhere = (f: (r: (typeof rows)[number]) => boolean): string[] =>
      rows
        .filter(f)
        .map((r) => r.key)
        .sort(byJs);

    it('merges an eq query of every group in key order, with limits and small pages', async () => {
      const want = keysWhere((r) => r.color === 'red');
      const got = await runQuery(c, { index: 'color', eq: 'red' }, { pageSize: 4 });
      expect(got.map((i) => i.key)).toEqual(want);
      expect(new Set(got.map((i) => i.group)).size).toBe(3);
      expect(
        (await runQuery(c, { index: 'color', eq: 'red' }, { limit: 7, pageSize: 3 })).map((i) => i.key),
      ).toEqual(want.slice(0, 7));
      expect(await countQuery(c, { index: 'color', eq: 'red' })).toBe(want.length);
      const viaFacade = await c.query({ index: 'team', eq: 'y' });
      expect(viaFacade.map((i) => i.key)).toEqual(keysWhere((r) => r.team === 'y'));
    });

    it('answers ranges, and/or, prefix, and key order descending', async () => {
      expect((await runQuery(c, { index: 'age', gte: 20, lt: 40 })).map((i) => i.key)).toEqual(
        keysWhere((r) => r.age >= 20 && r.age < 40),
      );
      const and = {
        and: [
          { index: 'color', eq: 'blue' },
          { index: 'age', gt: 30 },
        ],
      };
      expect((await runQuery(c, and)).map((i) => i.key)).toEqual(
        keysWhere((r) => r.color === 'blue' && r.age > 30),
      );
      expect(await countQuery(c, and)).toBe(keysWhere((r) => r.color === 'blue' && r.age > 30).length);
      const or = {
        or: [
          { index: 'color', eq: 'green' },
          { index: 'team', eq: 'x' },
        ],
      };
      expect((await runQuery(c, or, { pageSize: 9 })).map((i) => i.key)).toEqual(
        keysWhere((r) => r.color === 'green' || r.team === 'x'),
      );
      expect((await runQuery(c, { prefix: 'q/1' })).map((i) => i.key)).toEqual(
        keysWhere((r) => r.key.startsWith('q/1')),
      );
      expect(
        (await runQuery(c, { index: 'color', eq: 'red' }, { sort: { key: 'desc' }, pageSize: 5 })).map(
          (i) => i.key,
        ),
      ).toEqual(keysWhere((r) => r.color === 'red').reverse());
    });

    it('merges by index value when sorted by a range index', async () => {
      const byAge = (a: (typeof rows)[number], b: (typeof rows)[number]): number =>
        a.age - b.age || byJs(a.key, b.key);
      const want = rows
        .filter((r) => r.age >= 10)
        .sort(byAge)
        .map((r) => r.key);
      const asc = await runQuery(c, { index: 'age', gte: 10 }, { sort: { index: 'age' }, pageSize: 6 });
      expect(asc.map((i) => i.key)).toEqual(want);
      const desc = await runQuery(
        c,
        { index: 'age', gte: 10 },
        { sort: { index: 'age', order: 'desc' }, limit: 20, pageSize: 6 },
      );
      expect(desc.map((i) => i.key)).toEqual([...want].reverse().slice(0, 20));
      // A client that did not define the indexes must be told the index's source.
      const other = await cluster.client();
      expect(
        await codeOf(() => streamQuery(other, { index: 'age', gte: 10 }, { sort: { index: 'age' } })),
      ).toBe(ErrorCode.InvalidArgument);
      const withField = await runQuery(
        other,
        { index: 'age', gte: 10 },
        { sort: { index: 'age', field: 'age' } },
      );
      expect(withField.map((i) => i.key)).toEqual(want);
    });

    it('passes the store errors through: an unknown index is INVALID_ARGUMENT', async () => {
      expect(await codeOf(runQuery(c, { index: 'nope', eq: 1 }))).toBe(ErrorCode.InvalidArgument);
      expect(await codeOf(() => runQuery(c, 'x'))).toBe(ErrorCode.InvalidArgument);
    });
  });

  describe('transactions', () => {
    it('runs compare-and-swap within the group of a hash tag', async () => {
      const spec = {
        compare: [{ key: '{u1}:a', target: 'exists' as const, op: '=' as const, value: false }],
        success: [
          { op: 'put' as const, key: '{u1}:a', value: 1 },
          { op: 'put' as const, key: '{u1}:b', value: 2 },
        ],
        failure: [{ op: 'get' as const, key: '{u1}:a' }],
      };
      const first = await runTxn(c, spec);
      expect(first.succeeded).toBe(true);
      expect(first.results).toHaveLength(2);
      const second = await c.txn(spec);
      expect(second).toMatchObject({ succeeded: false, results: [{ key: '{u1}:a', value: 1 }] });
      expect((await c.get('{u1}:b'))?.value).toBe(2);
    });

    it('refuses keys of different groups locally with CROSS_GROUP (nothing is sent)', async () => {
      const g0 = await c.groupOfKey('x0');
      let other = '';
      for (let i = 1; other === ''; i++) if ((await c.groupOfKey(`x${i}`)) !== g0) other = `x${i}`;
      const k = counting(c);
      const spec = {
        compare: [],
        success: [
          { op: 'put' as const, key: 'x0', value: 1 },
          { op: 'delete' as const, key: other },
        ],
      };
      expect(await codeOf(runTxn(k.core, spec))).toBe(ErrorCode.CrossGroup);
      expect(k.mutates).toBe(0);
      expect(await codeOf(runTxn(c, { compare: [], success: [] }))).toBe(ErrorCode.InvalidArgument);
      expect(await codeOf(runTxn(c, { compare: [], success: [{ op: 'get', key: '' }] }))).toBe(
        ErrorCode.InvalidArgument,
      );
    });
  });
});
