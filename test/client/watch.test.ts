/**
 * Watch against an in-process 3-node cluster: snapshot then live, key watches, resume points,
 * expiry causes, a slow consumer cut off and resumed, a compacted resume told to the consumer,
 * close() and AbortSignal, and the proof: a watch across killed leaders (non-graceful stops
 * of the node serving the streams) sees exactly the acknowledged writes per group, in revision
 * order, with no gap and no duplicate.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DkvClient } from '../../src/client/client.js';
import { runTxn } from '../../src/client/scan.js';
import { type CompactedInfo, openWatch, type WatchEvent, type WatchStream } from '../../src/client/watch.js';
import { ErrorCode, isDkvError } from '../../src/errors.js';
import { InProcCluster } from './fixture.js';

async function until(cond: () => boolean, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** take reads `n` events (failing after timeoutMs). */
async function take(w: WatchStream, n: number, timeoutMs = 10_000): Promise<WatchEvent[]> {
  const out: WatchEvent[] = [];
  if (n === 0) return out;
  const it = w[Symbol.asyncIterator]();
  const deadline = Date.now() + timeoutMs;
  while (out.length < n) {
    const r = await Promise.race([
      it.next(),
      new Promise<'timeout'>((resolve) =>
        setTimeout(() => resolve('timeout'), Math.max(1, deadline - Date.now())),
      ),
    ]);
    if (r === 'timeout') throw new Error(`got ${out.length} of ${n} events in time`);
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

/** watchersOnNodes counts the server-side watchers on `prefix` of every live node (a test-only peek). */
function watchersOnNodes(cluster: InProcCluster, prefix: string): number {
  let n = 0;
  for (const node of cluster.nodes) {
    if (!node) continue;
    const groups = (node as unknown as { groups: Map<number, { sm: unknown }> }).groups;
    for (const g of groups.values()) {
      const hub = (g.sm as { hub: { registry: { all: Map<number, { prefix?: string }> } } }).hub;
      for (const w of hub.registry.all.values()) if (w.prefix === prefix) n++;
    }
  }
  return n;
}

/** putMany writes `count` keys `${tag}/${i}` (one group: `tag` is a {hash tag}) in txns of 120. */
async function putMany(c: DkvClient, tag: string, from: number, count: number, parallel = 4): Promise<void> {
  const batches: number[][] = [];
  for (let i = from; i < from + count; i += 120)
    batches.push(Array.from({ length: Math.min(120, from + count - i) }, (_, j) => i + j));
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < batches.length) {
        const b = batches[next++]!;
        await runTxn(c, {
          compare: [],
          success: b.map((i) => ({ op: 'put', key: `${tag}/${i}`, value: i })),
        });
      }
    }),
  );
}

describe('watch', () => {
  let cluster: InProcCluster;
  let c: DkvClient;

  beforeAll(async () => {
    cluster = await InProcCluster.start({ partitions: 3 });
    c = await cluster.client();
  });
  afterAll(async () => {
    await cluster?.close();
  });

  it('refuses bad options at once', () => {
    const bad = (o: object): unknown => {
      try {
        openWatch(c, o);
      } catch (err) {
        return isDkvError(err) ? err.code : err;
      }
      return 'no error';
    };
    expect(bad({})).toBe(ErrorCode.InvalidArgument);
    expect(bad({ key: 'a', prefix: 'b' })).toBe(ErrorCode.InvalidArgument);
    expect(bad({ key: '' })).toBe(ErrorCode.InvalidArgument);
    expect(bad({ prefix: 'a', snapshot: true, fromRevision: 3 })).toBe(ErrorCode.InvalidArgument);
    expect(bad({ prefix: 'a', fromRevision: -1 })).toBe(ErrorCode.InvalidArgument);
    expect(bad({ prefix: 'a', bufferMax: 0 })).toBe(ErrorCode.InvalidArgument);
  });

  it('starts with a snapshot, then streams live changes of every group', async () => {
    for (let i = 0; i < 12; i++) await c.put(`snap/${i}`, { n: i });
    const w = c.watch({ prefix: 'snap/', snapshot: true });
    await w.ready;
    const snap = await take(w, 12);
    expect(snap.every((e) => e.type === 'put' && e.cause === 'snapshot' && e.compacted === undefined)).toBe(
      true,
    );
    expect(snap.map((e) => e.key).sort()).toEqual(Array.from({ length: 12 }, (_, i) => `snap/${i}`).sort());
    expect(new Set(snap.map((e) => e.group)).size).toBeGreaterThan(1);
    for (const e of snap) expect(e.item?.key).toBe(e.key);
    await c.put('snap/new', 'x');
    await c.delete('snap/3');
    await c.put('other/x', 1); // not watched
    const live = await take(w, 2);
    expect(live.map((e) => [e.type, e.cause, e.key])).toEqual([
      ['put', 'write', 'snap/new'],
      ['delete', 'write', 'snap/3'],
    ]);
    expect(live[0]!.value).toBe('x');
    w.close();
    expect(await take(w, 1)).toEqual([]);
  });

  it('watches one key, and a later watch resumes from revisions() exactly', async () => {
    await c.put('one', 1);
    const w = c.watch({ key: 'one', snapshot: true });
    const [first] = await take(w, 1);
    expect(first).toMatchObject({ type: 'put', cause: 'snapshot', key: 'one', value: 1 });
    await c.put('one', 2);
    await c.put('one-more', 0); // same prefix, other key: not watched
    await c.put('one', 3);
    const evs = await take(w, 2);
    expect(evs.map((e) => e.value)).toEqual([2, 3]);
    const pos = w.revisions();
    expect(pos[first!.group]).toBe(evs[1]!.revision);
    w.close();
    await c.put('one', 4);
    await c.delete('one');
    const again = openWatch(c, { key: 'one', fromRevision: pos });
    const more = await take(again, 2);
    expect(more.map((e) => [e.type, e.value])).toEqual([
      ['put', 4],
      ['delete', undefined],
    ]);
    again.close();
  });

  it('tells why a key went: expiry', async () => {
    const w = c.watch({ prefix: 'ttl/' });
    await w.ready;
    await c.put('ttl/a', 'short', { ttlMs: 200 });
    const evs = await take(w, 2, 5000);
    expect(evs.map((e) => [e.type, e.cause])).toEqual([
      ['put', 'write'],
      ['delete', 'expired'],
    ]);
    w.close();
  });

  it('a live watch sees every write that completes after ready', async () => {
    const w = c.watch({ prefix: 'live/' });
    await w.ready;
    await Promise.all(Array.from({ length: 30 }, (_, i) => c.put(`live/${i}`, i)));
    const evs = await take(w, 30);
    expect(evs.map((e) => e.key).sort()).toEqual(Array.from({ length: 30 }, (_, i) => `live/${i}`).sort());
    w.close();
  });

  it('a slow consumer is cut off and resumes from its last revision: nothing lost, nothing twice', async () => {
    const w = c.watch({ prefix: '{slow}/', bufferMax: 20 });
    await w.ready;
    await putMany(c, '{slow}', 0, 3000); // far more than the client and server buffers
    const evs = await take(w, 3000, 20_000);
    const revs = evs.map((e) => e.revision);
    for (let i = 1; i < revs.length; i++) expect(revs[i]).toBe(revs[0]! + i);
    expect(new Set(evs.map((e) => e.key)).size).toBe(3000);
    expect(evs.every((e) => e.cause === 'write')).toBe(true);
    expect(w.reconnects).toBeGreaterThan(0);
    w.close();
  });

  it('a compacted resume gets a fresh snapshot, and the consumer is told', async () => {
    const compactions: CompactedInfo[] = [];
    // The consumer's view of the watched keys: a compacted resume replaces it.
    const view = new Map<string, unknown>();
    const w = c.watch({
      prefix: '{cmp}/',
      bufferMax: 10,
      onCompacted: (i) => {
        compactions.push(i);
        view.clear();
      },
    });
    await w.ready;
    // The consumer reads nothing while more than the history window (10,000) is written.
    await putMany(c, '{cmp}', 0, 11_500);
    await c.delete('{cmp}/7');
    let group = 0;
    const it = w[Symbol.asyncIterator]();
    const deadline = Date.now() + 20_000;
    while (view.size !== 11_499 || compactions.length === 0 || view.has('{cmp}/7')) {
      if (Date.now() > deadline) throw new Error(`view has ${view.size} keys`);
      const r = await it.next();
      if (r.done) throw new Error('watch ended');
      const e = r.value;
      group = e.group;
      if (e.cause === 'snapshot') expect(e.compacted).toBe(true);
      if (e.type === 'put') view.set(e.key, e.value);
      else view.delete(e.key);
    }
    const scanned = new Map<string, unknown>();
    for await (const item of c.scan({ prefix: '{cmp}/' })) scanned.set(item.key, item.value);
    expect(view).toEqual(scanned);
    expect(compactions).toHaveLength(1);
    expect(compactions[0]!.group).toBe(group);
    const pos = w.revisions()[group]!;
    w.close();

    // A watch resuming from revision 1 (long compacted) also gets a compacted snapshot at once.
    const seen: CompactedInfo[] = [];
    const w2 = openWatch(c, { prefix: '{cmp}/', fromRevision: 1, onCompacted: (i) => seen.push(i) });
    const snap = await take(w2, 11_499);
    expect(seen).toEqual([{ group, revision: expect.any(Number), items: 11_499 }]);
    expect(snap.every((e) => e.compacted === true && e.cause === 'snapshot')).toBe(true);
    w2.close();

    // Within the window a resume is a replay, not a snapshot.
    await c.put('{cmp}/a', 1);
    await c.put('{cmp}/b', 2);
    const w3 = openWatch(c, { prefix: '{cmp}/', fromRevision: pos, onCompacted: (i) => seen.push(i) });
    expect((await take(w3, 2)).map((e) => e.key)).toEqual(['{cmp}/a', '{cmp}/b']);
    expect(seen).toHaveLength(1);
    w3.close();
  });

  it('close() ends the iteration quietly and closes the server streams', async () => {
    const w = c.watch({ prefix: 'close/' });
    await w.ready;
    await until(() => watchersOnNodes(cluster, 'close/') === 3, 5000, 'one server watcher per group');
    const pending = w[Symbol.asyncIterator]().next();
    w.close();
    expect(await pending).toEqual({ value: undefined, done: true });
    expect(w.closed).toBe(true);
    await until(() => watchersOnNodes(cluster, 'close/') === 0, 5000, 'server watchers to go');
  });

  it('an aborted signal makes the iteration throw CANCELLED and closes the server streams', async () => {
    const ac = new AbortController();
    const w = c.watch({ prefix: 'abort/', snapshot: true, signal: ac.signal });
    await w.ready;
    expect(watchersOnNodes(cluster, 'abort/')).toBe(3);
    const it = w[Symbol.asyncIterator]();
    const pending = it.next();
    ac.abort();
    await expect(pending).rejects.toMatchObject({ code: ErrorCode.Cancelled });
    expect(await it.next()).toEqual({ value: undefined, done: true });
    await until(() => watchersOnNodes(cluster, 'abort/') === 0, 5000, 'server watchers to go');
    // Already aborted: fails at once.
    const w2 = c.watch({ prefix: 'abort/', signal: ac.signal });
    await expect(w2.ready).rejects.toMatchObject({ code: ErrorCode.Cancelled });
    await expect(w2[Symbol.asyncIterator]().next()).rejects.toMatchObject({ code: ErrorCode.Cancelled });
  });

  it('break in for-await closes the watch', async () => {
    const w = c.watch({ prefix: 'brk/' });
    await w.ready;
    await c.put('brk/1', 1);
    for await (const e of w) {
      expect(e.key).toBe('brk/1');
      break;
    }
    expect(w.closed).toBe(true);
  });
});

describe('watch across killed leaders', () => {
  let cluster: InProcCluster | undefined;
  afterAll(async () => {
    await cluster?.close();
  });

  it('sees exactly the acknowledged writes per group, in revision order, no gap, no duplicate', async () => {
    cluster = await InProcCluster.start({ partitions: 3 });
    const cl = cluster;
    // Let leader balancing settle (one partition group per node), so leaderships stay put.
    await until(() => {
      const leaders = [1, 2, 3].map((g) => cl.leaderOf(g));
      return !leaders.includes(0) && new Set(leaders).size === 3;
    }, 10_000).catch(() => undefined);
    // A leadership may be moving at this instant (leader 0 for a moment): wait for one.
    await until(() => cl.leaderOf(1) > 0, 10_000);
    // The watcher puts a group leader first in its servers order: that node serves the
    // watch streams, and it is the first one stopped (non-gracefully).
    const first = cl.leaderOf(1);
    const order = [first, ...[1, 2, 3].filter((id) => id !== first)];
    const watcher = await cl.client({
      servers: order.map((id) => cl.servers[id - 1]!),
      requestTimeoutMs: 15_000,
    });
    const writer = await cl.client({ requestTimeoutMs: 15_000 });
    const w = watcher.watch({ prefix: 'k/' });
    await w.ready;
    const events: WatchEvent[] = [];
    const reading = (async () => {
      for await (const e of w) events.push(e);
    })();

    const N = 700;
    const acked: { key: string; group: number; revision: number }[] = [];
    const unknown = new Set<string>();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < N) {
        const key = `k/${next++}`;
        try {
          const item = await writer.put(key, key);
          acked.push({ key, group: await writer.groupOfKey(key), revision: item.modRevision });
        } catch {
          unknown.add(key);
        }
      }
    };
    let killedLeader = false;
    const chaos = async (): Promise<void> => {
      await until(() => acked.length >= 120);
      killedLeader = [1, 2, 3].some((g) => cl.leaderOf(g) === first);
      await cl.stopNode(first, false);
      await until(() => acked.length >= 300, 30_000, 'writes after the first kill');
      await cl.startNode(first);
      // The streams moved to the next server in the watcher's order: stop that one too.
      await until(() => acked.length >= 420, 30_000, 'writes after the restart');
      await cl.stopNode(order[1]!, false);
      await until(() => acked.length >= 560, 30_000, 'writes after the second kill');
      await cl.startNode(order[1]!);
    };
    await Promise.all([chaos(), ...Array.from({ length: 8 }, worker)]);

    const covered = (): boolean => {
      const seen = new Set(events.map((e) => e.key));
      return acked.every((a) => seen.has(a.key));
    };
    await until(covered, 30_000, 'the watcher to see every acknowledged write');
    await new Promise((r) => setTimeout(r, 200)); // room for a wrong extra event to show up
    w.close();
    await reading;

    expect(killedLeader).toBe(true);
    expect(w.reconnects).toBeGreaterThanOrEqual(2);
    expect(unknown.size).toBeLessThan(5);
    for (const g of [1, 2, 3]) {
      const got = events.filter((e) => e.group === g);
      const want = acked.filter((a) => a.group === g).sort((a, b) => a.revision - b.revision);
      // Every event is a put of ours; the only writes the store saw, so revisions are gap-free.
      expect(got.every((e) => e.type === 'put' && e.cause === 'write')).toBe(true);
      for (let i = 1; i < got.length; i++) expect(got[i]!.revision).toBe(got[0]!.revision + i);
      if (unknown.size === 0) {
        expect(got.map((e) => [e.key, e.revision])).toEqual(want.map((a) => [a.key, a.revision]));
      } else {
        const ackedKeys = new Set(want.map((a) => a.key));
        expect(got.filter((e) => ackedKeys.has(e.key)).map((e) => [e.key, e.revision])).toEqual(
          want.map((a) => [a.key, a.revision]),
        );
        expect(got.every((e) => ackedKeys.has(e.key) || unknown.has(e.key))).toBe(true);
      }
    }
  });
});
