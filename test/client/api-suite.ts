/**
 * ONE API test suite for DkvClient, run against every way of reaching a store: the networked
 * client on a three-node cluster (api-networked.test.ts) and the embedded one
 * (api-embedded.test.ts). It is written against the contract's API (CONTRACT.md, "Client
 * library"): put/get/delete with every option, transactions, scan, watch, query, counters,
 * leases, locks, status, errors, timeouts and AbortSignal.
 *
 * A part whose module is not built yet (it throws UNSUPPORTED) is skipped at run time with
 * that reason, so the suite grows with the client without edits.
 *
 * Each test uses keys of its own (its prefix), so the tests share one store per file.
 */
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import type { DkvClient, Item } from '../../src/client/client.js';
import * as scanModule from '../../src/client/scan.js';
import { type DkvError, ErrorCode, isDkvError } from '../../src/errors.js';

/** Target is a store the suite runs against, and how to let it go. */
export interface Target {
  readonly client: DkvClient;
  close(): Promise<void>;
}

async function codeOf(p: Promise<unknown> | (() => Promise<unknown>)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p);
    return 'ok';
  } catch (err) {
    if (isDkvError(err)) return err.code;
    throw err;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function eventually<T>(
  what: string,
  f: () => Promise<T>,
  ok: (v: T) => boolean,
  ms = 5000,
): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    const v = await f();
    if (ok(v)) return v;
    if (performance.now() > deadline)
      throw new Error(`timed out waiting for ${what}: last ${JSON.stringify(v)}`);
    await sleep(20);
  }
}

/**
 * built runs a test body, and skips the test (with the reason) if the module it exercises
 * still throws UNSUPPORTED.
 */
async function built(ctx: TestContext, what: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    if (isDkvError(err) && err.code === ErrorCode.Unsupported) {
      ctx.skip(`${what} is not built yet (UNSUPPORTED: ${err.message})`);
      return;
    }
    throw err;
  }
}

/** take reads n items of an async iterable, failing after ms. */
async function take<T>(it: AsyncIterator<T>, n: number, ms = 5000): Promise<T[]> {
  const out: T[] = [];
  const deadline = performance.now() + ms;
  while (out.length < n) {
    const left = deadline - performance.now();
    if (left <= 0) throw new Error(`only ${out.length} of ${n} items within ${ms} ms`);
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([
      it.next(),
      new Promise<'late'>((resolve) => {
        timer = setTimeout(() => resolve('late'), left);
      }),
    ]);
    clearTimeout(timer);
    if (r === 'late') throw new Error(`only ${out.length} of ${n} items within ${ms} ms`);
    if (r.done) throw new Error(`the iterable ended after ${out.length} of ${n} items`);
    out.push(r.value);
  }
  return out;
}

/** apiSuite defines the suite against the store that `open` gives (once per file). */
export function apiSuite(name: string, open: () => Promise<Target>): void {
  describe(`DkvClient API (${name})`, () => {
    let target: Target;
    let c: DkvClient;
    beforeAll(async () => {
      target = await open();
      c = target.client;
    }, 60_000);
    afterAll(async () => {
      await target?.close();
    });

    // ---- put, get, delete ----

    it('round-trips every kind of value, and what comes back is a copy', async () => {
      const values: unknown[] = [
        'a string',
        '',
        new Uint8Array([0, 1, 2, 254, 255]),
        { nested: { list: [1, 'two', { three: 3 }], flag: true, nil: null }, n: -1.5 },
        [1, 2, 3],
        42,
        0,
        true,
        null,
      ];
      for (const [i, v] of values.entries()) {
        const put = await c.put(`rt/${i}`, v);
        expect(put.key).toBe(`rt/${i}`);
        const got = await c.get(`rt/${i}`);
        expect(got?.value).toEqual(v);
        if (v instanceof Uint8Array) expect(got?.value).toBeInstanceOf(Uint8Array);
      }
      // Changing what was put, or what was read, does not change the store.
      const obj = { a: 1, list: [1, 2] };
      await c.put('rt/obj', obj);
      obj.a = 2;
      obj.list.push(3);
      const got = (await c.get('rt/obj'))!;
      expect(got.value).toEqual({ a: 1, list: [1, 2] });
      (got.value as { a: number }).a = 99;
      expect((await c.get('rt/obj'))?.value).toEqual({ a: 1, list: [1, 2] });
    });

    it('keeps versions and revisions', async () => {
      const a = await c.put('ver/k', 'one');
      expect(a.version).toBe(1);
      expect(a.createRevision).toBe(a.modRevision);
      const b = await c.put('ver/k', 'two');
      expect(b.version).toBe(2);
      expect(b.createRevision).toBe(a.createRevision);
      expect(b.modRevision).toBeGreaterThan(a.modRevision);
      expect(await c.get('ver/k')).toMatchObject({ key: 'ver/k', value: 'two', version: 2 });
      expect(await c.delete('ver/k')).toBe(true);
      expect(await c.delete('ver/k')).toBe(false);
      expect(await c.get('ver/k')).toBeUndefined();
      expect((await c.put('ver/k', 'again')).version).toBe(1);
    });

    it('applies ifAbsent and ifVersion, refusing with VERSION_MISMATCH', async () => {
      expect((await c.put('cas/k', 1, { ifAbsent: true })).version).toBe(1);
      expect(await codeOf(c.put('cas/k', 2, { ifAbsent: true }))).toBe(ErrorCode.VersionMismatch);
      expect(await codeOf(c.put('cas/k', 2, { ifVersion: 7 }))).toBe(ErrorCode.VersionMismatch);
      expect((await c.put('cas/k', 2, { ifVersion: 1 })).version).toBe(2);
      expect(await codeOf(c.put('cas/none', 1, { ifVersion: 1 }))).toBe(ErrorCode.VersionMismatch);
      expect((await c.get('cas/k'))?.value).toBe(2);
    });

    it('expires a key put with ttlMs', async () => {
      const item = await c.put('ttl/k', 'soon gone', { ttlMs: 300 });
      expect(typeof item.expiresAt).toBe('number');
      expect((await c.get('ttl/k'))?.value).toBe('soon gone');
      await eventually(
        'expiry',
        () => c.get('ttl/k'),
        (v) => v === undefined,
        5000,
      );
    });

    it('stores labels', async () => {
      await c.put('lbl/k', { x: 1 }, { labels: { team: 'a', level: 3 } });
      expect((await c.get('lbl/k'))?.labels).toEqual({ team: 'a', level: 3 });
    });

    it('reads with either consistency', async () => {
      await c.put('cons/k', 'v');
      expect((await c.get('cons/k', { consistency: 'linearizable' }))?.value).toBe('v');
      await eventually(
        'a serializable read of the put',
        () => c.get('cons/k', { consistency: 'serializable' }),
        (v) => v?.value === 'v',
      );
      expect(await codeOf(c.get('cons/k', { consistency: 'eventual' as never }))).toBe(
        ErrorCode.InvalidArgument,
      );
    });

    it('refuses bad requests with the contract codes', async () => {
      expect(await codeOf(() => c.put('', 1))).toBe(ErrorCode.InvalidArgument);
      expect(await codeOf(() => c.get(''))).toBe(ErrorCode.InvalidArgument);
      expect(await codeOf(() => c.put('bad/k', undefined))).toBe(ErrorCode.InvalidArgument);
      expect(await codeOf(() => c.put('bad/k', 1, { ttlMs: -5 }))).toBe(ErrorCode.InvalidArgument);
      expect(await codeOf(() => c.put('bad/k', 'x'.repeat(17 << 20)))).toBe(ErrorCode.TooLarge);
      // The client is fine after all of that.
      expect((await c.put('bad/k', 'fine')).version).toBe(1);
    });

    it('honours AbortSignal and per-call timeouts', async () => {
      const ac = new AbortController();
      ac.abort();
      expect(await codeOf(c.put('abort/k', 1, { signal: ac.signal }))).toBe(ErrorCode.Cancelled);
      expect(await codeOf(c.get('abort/k', { signal: ac.signal }))).toBe(ErrorCode.Cancelled);
      expect(await codeOf(c.delete('abort/k', { signal: ac.signal }))).toBe(ErrorCode.Cancelled);
      expect(await c.get('abort/k')).toBeUndefined();
      expect((await c.put('abort/k', 1, { timeoutMs: 5000 })).version).toBe(1);
      expect(await codeOf(c.get('abort/k', { timeoutMs: 0 }))).not.toBe('ok');
    });

    it('reports the cluster status', async () => {
      const st = await c.status();
      expect(st.members.length).toBeGreaterThanOrEqual(1);
      expect(st.members.every((m) => typeof m.id === 'number' && typeof m.address === 'string')).toBe(true);
      const groups = st.groups.filter((g) => g.store === c.store);
      expect(groups.length).toBeGreaterThanOrEqual(1);
      for (const g of groups) expect(st.members.map((m) => m.id)).toContain(g.leader);
    });

    // ---- transactions ----

    it('runs transactions within a group, and refuses keys of two groups with CROSS_GROUP', async (ctx) => {
      await built(ctx, 'txn', async () => {
        const spec = {
          compare: [{ key: '{tx}a', target: 'version' as const, op: '=' as const, value: 0 }],
          success: [
            { op: 'put' as const, key: '{tx}a', value: 'first' },
            { op: 'put' as const, key: '{tx}b', value: 'first' },
          ],
          failure: [{ op: 'get' as const, key: '{tx}a' }],
        };
        const first = (await c.txn(spec)) as { succeeded: boolean; results: unknown[] };
        expect(first.succeeded).toBe(true);
        expect((await c.get('{tx}b'))?.value).toBe('first');
        const second = (await c.txn(spec)) as { succeeded: boolean; results: unknown[] };
        expect(second.succeeded).toBe(false);
        expect(second.results[0]).toMatchObject({ key: '{tx}a', value: 'first' });
        // Two keys of different groups (when the store has more than one).
        const groups = await c.groups();
        if (groups.length > 1) {
          const g0 = await c.groupOfKey('xg/0');
          let other = 'xg/1';
          for (let i = 1; (await c.groupOfKey(other)) === g0; i++) other = `xg/${i}`;
          const cross = {
            compare: [],
            success: [
              { op: 'put' as const, key: 'xg/0', value: 1 },
              { op: 'put' as const, key: other, value: 1 },
            ],
          };
          expect(await codeOf(() => c.txn(cross))).toBe(ErrorCode.CrossGroup);
        }
      });
    });

    // ---- scan ----

    it('scans a prefix across groups in key order, with a limit', async (ctx) => {
      await built(ctx, 'scan', async () => {
        const keys = Array.from({ length: 30 }, (_, i) => `scan/${String(i).padStart(2, '0')}`);
        await Promise.all(keys.map((k, i) => c.put(k, i)));
        await c.put('scan0/outside', 'x');
        const all: Item[] = [];
        for await (const item of c.scan({ prefix: 'scan/' })) all.push(item);
        expect(all.map((i) => i.key)).toEqual(keys);
        expect(all.map((i) => i.value)).toEqual(keys.map((_, i) => i));
        const some: string[] = [];
        for await (const item of c.scan({ prefix: 'scan/', limit: 5 })) some.push(item.key);
        expect(some).toEqual(keys.slice(0, 5));
      });
    });

    // ---- watch ----

    it('watches a prefix: a snapshot first, then every change, until close()', async (ctx) => {
      await built(ctx, 'watch', async () => {
        await c.put('watch/a', 1);
        await c.put('watch/b', 2);
        const w = c.watch({ prefix: 'watch/', snapshot: true });
        const it = w[Symbol.asyncIterator]();
        const snap = await take(it, 2);
        expect(snap.map((e) => [e.type, e.cause, e.key, e.value])).toEqual([
          ['put', 'snapshot', 'watch/a', 1],
          ['put', 'snapshot', 'watch/b', 2],
        ]);
        await c.put('watch/a', 10);
        await c.delete('watch/b');
        await c.put('other/x', 0);
        await c.put('watch/c', 3);
        const live = await take(it, 3);
        expect(live.map((e) => [e.type, e.cause, e.key, e.value])).toEqual([
          ['put', 'write', 'watch/a', 10],
          ['delete', 'write', 'watch/b', undefined],
          ['put', 'write', 'watch/c', 3],
        ]);
        for (const e of [...snap, ...live]) {
          expect(typeof e.group).toBe('number');
          expect(typeof e.revision).toBe('number');
        }
        w.close();
        expect((await it.next()).done).toBe(true);
      });
    });

    // ---- query ----

    it('queries indexes: eq, range, and, limit', async (ctx) => {
      await built(ctx, 'query', async () => {
        const define = (scanModule as Record<string, unknown>).defineIndexes as
          | ((core: DkvClient, defs: unknown[]) => Promise<void>)
          | undefined;
        if (define === undefined) ctx.skip('no way to declare indexes from the client yet');
        await define!(c, [
          { name: 'color', kind: 'eq', field: 'color' },
          { name: 'size', kind: 'range', field: 'size' },
        ]);
        const colors = ['red', 'green', 'blue'];
        await Promise.all(
          Array.from({ length: 12 }, (_, i) =>
            c.put(`q/${String(i).padStart(2, '0')}`, { color: colors[i % 3], size: i }),
          ),
        );
        const red = await c.query({ index: 'color', eq: 'red' });
        expect(red.map((i) => i.key)).toEqual(['q/00', 'q/03', 'q/06', 'q/09']);
        const mid = await c.query({ index: 'size', gte: 4, lt: 8 });
        expect(mid.map((i) => i.key)).toEqual(['q/04', 'q/05', 'q/06', 'q/07']);
        const both = await c.query({
          and: [
            { index: 'color', eq: 'green' },
            { index: 'size', gte: 4, lt: 100 },
          ],
        });
        expect(both.map((i) => i.key)).toEqual(['q/04', 'q/07', 'q/10']);
        expect((await c.query({ index: 'color', eq: 'blue' }, { limit: 2 })).length).toBe(2);
      });
    });

    // ---- counters ----

    it('counts: add, get, set, and a TTL window', async (ctx) => {
      await built(ctx, 'counters', async () => {
        const n = c.counter('ctr/a');
        expect(Number(await n.add(5))).toBe(5);
        expect(Number(await n.add(-2))).toBe(3);
        expect(Number(await n.get())).toBe(3);
        const ext = n as unknown as { set?: (v: number) => Promise<unknown> };
        if (ext.set !== undefined) {
          await ext.set(100);
          expect(Number(await n.get())).toBe(100);
        }
        const w = c.counter('ctr/window');
        expect(Number(await w.add(1, { ttlMs: 300 }))).toBe(1);
        expect(Number(await w.add(1, { ttlMs: 300 }))).toBe(2);
        await eventually(
          'the window to end',
          async () => Number(await w.get()),
          (v) => v === 0,
          5000,
        );
      });
    });

    // ---- leases ----

    it('grants leases: keys bound to a lease go when it is revoked', async (ctx) => {
      await built(ctx, 'leases', async () => {
        const key = '{lease1}/k';
        const lease = (await c.lease.grant(5000, { key })) as {
          id: number;
          validUntil: number;
          revoke(): Promise<void>;
        };
        expect(typeof lease.id).toBe('number');
        expect(lease.validUntil).toBeGreaterThan(Date.now());
        expect(lease.validUntil).toBeLessThanOrEqual(Date.now() + 5000);
        const item = await c.put(key, 'held', { lease: lease.id });
        expect(item.lease).toBe(lease.id);
        expect((await c.get(key))?.lease).toBe(lease.id);
        await lease.revoke();
        expect(await c.get(key)).toBeUndefined();
      });
    });

    // ---- locks ----

    it('locks with fencing: tokens grow, and a stale token is refused with STALE_FENCE', async (ctx) => {
      await built(ctx, 'locks', async () => {
        type Held = {
          name: string;
          token: number;
          validUntil: number;
          signal: AbortSignal;
          release(): Promise<void>;
        };
        const first = (await c.lock.acquire('lock/a', { ttlMs: 5000 })) as Held;
        expect(first.name).toBe('lock/a');
        expect(first.token).toBeGreaterThan(0);
        expect(first.validUntil).toBeGreaterThan(Date.now());
        expect(first.signal.aborted).toBe(false);
        const fence1 = { lock: 'lock/a', token: first.token };
        expect((await c.put('lock/a', 'by first', { fence: fence1 })).version).toBe(1);
        // A second acquire with no wait finds it held.
        expect(await codeOf(c.lock.acquire('lock/a', { ttlMs: 5000, waitMs: 0 }))).not.toBe('ok');
        await first.release();
        const second = (await c.lock.acquire('lock/a', { ttlMs: 5000, waitMs: 2000 })) as Held;
        expect(second.token).toBeGreaterThan(first.token);
        expect(await codeOf(c.put('lock/a', 'stale', { fence: fence1 }))).toBe(ErrorCode.StaleFence);
        expect(
          (await c.put('lock/a', 'by second', { fence: { lock: 'lock/a', token: second.token } })).value,
        ).toBe('by second');
        await second.release();
      });
    });

    // A waiting lock acquire runs in a session of its own, so it does not pin the client's
    // session `ack` (each group keeps at most 1024 answers from `ack` on).
    it('keeps writing while one of its lock acquires waits (more than 1024 other mutations)', async (ctx) => {
      await built(ctx, 'locks', async () => {
        const held = (await c.lock.acquire('lock/pin', { ttlMs: 5000 })) as {
          release(o?: { timeoutMs?: number }): Promise<void>;
        };
        const waiting = c.lock
          .acquire('lock/pin', { ttlMs: 5000, waitMs: 10_000 })
          .then((l) => (l as { release(): Promise<void> }).release())
          .catch(() => undefined);
        await sleep(100);
        try {
          // In the lock's group (its hash tag): each group keeps its own answers.
          for (let i = 0; i < 1100; i++) await c.put(`{lock/pin}/${i}`, i, { timeoutMs: 500 });
        } finally {
          await held.release({ timeoutMs: 500 }).catch(() => undefined);
        }
        await waiting;
      });
    });
  });
}

/** isUnsupported tells whether an error is UNSUPPORTED (for callers outside the suite). */
export function isUnsupported(err: unknown): err is DkvError {
  return isDkvError(err) && err.code === ErrorCode.Unsupported;
}
