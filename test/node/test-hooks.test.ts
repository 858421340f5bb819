/**
 * The test hooks (src/node/test-hooks.ts): DKV_TEST_HOOKS parsing, the SkewedClock, the admin
 * clock endpoint of a real node process, and one focused check per planted bug showing that it
 * is really active (and, for contrast, that the same steps are safe without it). Bugs are
 * checked on a single in-process node without network (fast), on the storage directly
 * (no-fsync), and with a SIGKILL of a real process (no-fsync's lost writes).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { NodeProcess, planNodes, writeNodeConfigs } from '../../src/admin/dev.js';
import { ManualClock } from '../../src/clock.js';
import { LeaseLockEngine } from '../../src/engines/lease-lock.js';
import { isDkvError } from '../../src/errors.js';
import { checkNodeConfig } from '../../src/node/config.js';
import { DkvNode } from '../../src/node/node.js';
import {
  BUG_NAMES,
  type BugName,
  checkClockSetting,
  describeTestHooks,
  NO_TEST_HOOKS,
  parseTestHooks,
  SkewedClock,
  stateMachineBugConfig,
  type TestHooks,
} from '../../src/node/test-hooks.js';
import {
  type ConfState,
  type Entry,
  EntryType,
  isStorageError,
  RawNode,
  StorageErrorKind,
} from '../../src/raft/index.js';
import { encodeEnvelope } from '../../src/statemachine/codec.js';
import { GroupStateMachine } from '../../src/statemachine/state-machine.js';
import { indexedKey, KeyKind, kindRange } from '../../src/storage/keys.js';
import { NodeStorage } from '../../src/storage/node-storage.js';
import type { StreamSink } from '../../src/transport/index.js';
import { ready } from '../storage/make-ready.js';
import { adminUrl, destroyAllClusters, sleep, TestCluster } from './harness.js';

const dirs: string[] = [];
const nodes: DkvNode[] = [];

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'dkv-hooks-'));
  dirs.push(d);
  return d;
}

afterEach(async () => {
  vi.restoreAllMocks();
  for (const n of nodes.splice(0)) await n.stop().catch(() => undefined);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

afterAll(async () => {
  await destroyAllClusters();
});

function hooksWith(...bugs: BugName[]): TestHooks {
  return { clock: false, bugs: new Set(bugs) };
}

/** startEmbedded starts a one-node DkvNode with no network (as embedded mode does), with `hooks`. */
async function startEmbedded(hooks: TestHooks, dir = tempDir()): Promise<DkvNode> {
  const cfg = checkNodeConfig({
    id: 1,
    dataDir: dir,
    clientPort: 1,
    peerPort: 0,
    peers: [],
    stores: [{ name: 'default', partitions: 1 }],
    tickMs: 10,
    balanceLeaders: false,
  });
  const node = await DkvNode.start(cfg, { network: false, testHooks: hooks });
  nodes.push(node);
  for (let i = 0; i < 500 && !node.health().ok; i++) await sleep(10);
  expect(node.health().ok).toBe(true);
  return node;
}

function cmd(key: string, command: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return { store: 'default', key, cmd: command, ...extra };
}

async function failure(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isDkvError(err)) return err.code;
    throw err;
  }
  return 'no error';
}

// ---------------------------------------------------------------- parsing

describe('parseTestHooks (DKV_TEST_HOOKS)', () => {
  it('reads the clock and every bug, with spaces and empty items', () => {
    const h = parseTestHooks(' clock, bug:stale-read,,bug:no-fsync ');
    expect(h.clock).toBe(true);
    expect([...h.bugs].sort()).toEqual(['no-fsync', 'stale-read']);
    const all = parseTestHooks(BUG_NAMES.map((b) => `bug:${b}`).join(','));
    expect(all.clock).toBe(false);
    expect(all.bugs.size).toBe(5);
    expect(describeTestHooks(parseTestHooks('bug:watch-skip,clock'))).toBe('clock,bug:watch-skip');
  });

  it('is off when unset, empty or blank', () => {
    for (const text of [undefined, '', '  ', ',']) {
      const h = parseTestHooks(text);
      expect(h.clock).toBe(false);
      expect(h.bugs.size).toBe(0);
    }
  });

  it('refuses an unknown item, naming it', () => {
    for (const text of ['bug:nope', 'stale-read', 'clock,clocks', 'bug:', 'BUG:stale-read']) {
      let err: unknown;
      try {
        parseTestHooks(text);
      } catch (e) {
        err = e;
      }
      expect(isDkvError(err, 'INVALID_ARGUMENT')).toBe(true);
      expect((err as Error).message).toContain('DKV_TEST_HOOKS');
    }
  });

  it('maps only the replicated bugs into the state machine config', () => {
    expect(stateMachineBugConfig(new Set())).toEqual({});
    expect(stateMachineBugConfig(new Set(['stale-read', 'no-fsync']))).toEqual({});
    const all = stateMachineBugConfig(new Set(BUG_NAMES));
    expect(all.unsafeIgnoreSessions).toBe(true);
    expect(all.leaseLock?.locks?.unsafeSkipLeaseCheck).toBe(true);
    expect(all.watch?.unsafeSkipFirstResumedEvent).toBe(true);
    expect(all.watch?.historyMax).toBeGreaterThan(0);
  });
});

// ---------------------------------------------------------------- the clock

describe('SkewedClock', () => {
  it('jumps by the offset, runs at the rate, and stays continuous across a rate change', () => {
    const base = new ManualClock(1_000_000);
    const c = new SkewedClock(base);
    expect(c.nowMs()).toBe(1_000_000);
    c.set({ offsetMs: 60_000 });
    expect(c.nowMs()).toBe(1_060_000);
    base.advance(1000);
    expect(c.nowMs()).toBe(1_061_000);
    c.set({ rate: 2 });
    expect(c.nowMs()).toBe(1_061_000); // no jump on a rate change
    base.advance(1000);
    expect(c.nowMs()).toBe(1_063_000);
    c.set({ offsetMs: -60_000 }); // back 2 minutes at once, the rate kept
    expect(c.nowMs()).toBe(943_000);
    expect(c.skew()).toEqual({ offsetMs: -60_000, rate: 2 });
    base.advance(500);
    expect(c.nowMs()).toBe(944_000);
  });

  it('runs monotonic time at the rate, ignoring the offset, never backwards', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ advance: fc.integer({ min: 0, max: 5000 }) }),
            fc.record({
              offsetMs: fc.integer({ min: -3_600_000, max: 3_600_000 }),
              rate: fc.double({ min: 0.1, max: 10, noNaN: true }),
            }),
          ),
          { maxLength: 40 },
        ),
        (steps) => {
          const base = new ManualClock();
          const c = new SkewedClock(base);
          let last = c.monotonicMs();
          for (const s of steps) {
            if ('advance' in s) {
              const before = c.monotonicMs();
              const rate = c.skew().rate;
              base.advance(s.advance);
              expect(c.monotonicMs()).toBeCloseTo(before + s.advance * rate, 6);
            } else {
              c.set(s);
            }
            const m = c.monotonicMs();
            expect(m).toBeGreaterThanOrEqual(last);
            expect(Number.isInteger(c.nowMs())).toBe(true);
            last = m;
          }
        },
      ),
    );
  });

  it('refuses settings out of bounds', () => {
    const c = new SkewedClock(new ManualClock());
    for (const bad of [
      { offsetMs: 3_600_001 },
      { offsetMs: Number.NaN },
      { rate: 0.05 },
      { rate: 11 },
      { rate: Number.POSITIVE_INFINITY },
    ]) {
      expect(() => c.set(bad)).toThrow(/offsetMs|rate/);
    }
    expect(() => checkClockSetting({ offset: 1 })).toThrow(/unknown field/);
    expect(() => checkClockSetting([1])).toThrow(/object/);
    expect(checkClockSetting({ offsetMs: -3_600_000, rate: 0.1 })).toEqual({
      offsetMs: -3_600_000,
      rate: 0.1,
    });
    expect(c.skew()).toEqual({ offsetMs: 0, rate: 1 });
  });
});

// ---------------------------------------------------------------- real processes

/** clusterWithHooks starts a one-node test cluster with DKV_TEST_HOOKS set (or unset) while it spawns. */
async function clusterWithHooks(hooks: string | undefined): Promise<TestCluster> {
  const saved = process.env.DKV_TEST_HOOKS;
  if (hooks === undefined) delete process.env.DKV_TEST_HOOKS;
  else process.env.DKV_TEST_HOOKS = hooks;
  try {
    return await TestCluster.start({ nodes: 1, config: { balanceLeaders: false } });
  } finally {
    if (saved === undefined) delete process.env.DKV_TEST_HOOKS;
    else process.env.DKV_TEST_HOOKS = saved;
  }
}

async function http(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; body: Record<string, unknown> | string }> {
  const res = await fetch(url, init);
  const text = await res.text();
  let body: Record<string, unknown> | string = text;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // plain text
  }
  return { status: res.status, body };
}

function post(
  url: string,
  body: string,
): Promise<{ status: number; body: Record<string, unknown> | string }> {
  return http(url, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
}

describe('a node process with DKV_TEST_HOOKS', () => {
  it('serves /test/clock with the clock hook, announces it, and moves its clock (replicated time does not jump)', async () => {
    const c = await clusterWithHooks('clock');
    try {
      const url = `${adminUrl(c.spec(1))}/test/clock`;
      const got = await http(url);
      expect(got.status).toBe(200);
      const b0 = got.body as { nowMs: number; offsetMs: number; rate: number };
      expect(b0.offsetMs).toBe(0);
      expect(b0.rate).toBe(1);
      expect(Math.abs(b0.nowMs - Date.now())).toBeLessThan(5000);

      const moved = await post(url, JSON.stringify({ offsetMs: 600_000, rate: 2 }));
      expect(moved.status).toBe(200);
      const b1 = moved.body as { nowMs: number; offsetMs: number; rate: number };
      expect(b1).toMatchObject({ offsetMs: 600_000, rate: 2 });
      expect(b1.nowMs - Date.now()).toBeGreaterThan(590_000);

      for (const bad of ['{"offsetMs": 4000000}', '{"rate": 0}', '{"rate": "2"}', 'nope', '{"x": 1}']) {
        const r = await post(url, bad);
        expect(r.status).toBe(400);
        expect(typeof (r.body as { error?: unknown }).error).toBe('string');
      }
      expect(((await http(url)).body as { rate: number }).rate).toBe(2);

      // Replicated time does not jump with the wall clock (node.ts replicatedNow): it runs on
      // the monotonic clock from where it was when this node became leader, so a key's TTL
      // deadline is about 60 s from now, not 600 s further.
      const client = await c.client();
      await client.put('ttl-key', 1, { ttlMs: 60_000 });
      const item = await client.get('ttl-key');
      expect(item?.expiresAt).toBeGreaterThan(Date.now() + 50_000);
      expect(item?.expiresAt).toBeLessThan(Date.now() + 120_000);

      // Still a working admin port, and other paths still refuse other methods.
      expect((await http(`${adminUrl(c.spec(1))}/health`)).status).toBe(200);
      expect((await post(`${adminUrl(c.spec(1))}/health`, '{}')).status).toBe(405);
      expect(c.local.node(1).outputTail.join('\n')).toContain('DKV node 1 TEST HOOKS ON: clock');
    } finally {
      await c.destroy();
    }
  }, 30_000);

  it('answers 404 on /test/clock without the hook, and refuses an unknown hook at start', async () => {
    const c = await clusterWithHooks(undefined);
    try {
      const url = `${adminUrl(c.spec(1))}/test/clock`;
      expect((await http(url)).status).toBe(404);
      expect((await post(url, '{"offsetMs": 1000}')).status).toBe(404);
      expect(c.local.node(1).outputTail.join('\n')).not.toContain('TEST HOOKS');
    } finally {
      await c.destroy();
    }

    const dir = tempDir();
    const [spec] = planNodes(dir, 1, 40_000);
    writeNodeConfigs([spec!]);
    const saved = process.env.DKV_TEST_HOOKS;
    process.env.DKV_TEST_HOOKS = 'clock,bug:everything';
    const p = new NodeProcess(spec!);
    try {
      p.start();
    } finally {
      if (saved === undefined) delete process.env.DKV_TEST_HOOKS;
      else process.env.DKV_TEST_HOOKS = saved;
    }
    const exit = await Promise.race([p.exited, sleep(20_000).then(() => undefined)]);
    if (exit === undefined) await p.kill();
    expect(exit?.code).not.toBe(0);
    expect(p.outputTail.join('\n')).toContain('DKV_TEST_HOOKS: unknown item "bug:everything"');
  }, 40_000);

  it('no-fsync: a SIGKILL right after acknowledged writes loses them', async () => {
    const c = await clusterWithHooks('bug:no-fsync');
    try {
      expect(c.local.node(1).outputTail.join('\n')).toContain('TEST HOOKS ON: bug:no-fsync');
      // The write-out runs every second: the writes of one try are lost unless it fell
      // between the last acknowledgement and the kill (a few ms), so three tries suffice.
      let lost = false;
      for (let attempt = 0; attempt < 3 && !lost; attempt++) {
        const client = await c.client();
        for (let i = 0; i < 5; i++) await client.put(`k${attempt}-${i}`, i);
        await c.kill(1);
        await client.close();
        await c.restart(1);
        const again = await c.client();
        lost = (await again.get(`k${attempt}-4`)) === undefined;
        await again.close();
      }
      expect(lost).toBe(true);
    } finally {
      await c.destroy();
    }
  }, 60_000);
});

// ---------------------------------------------------------------- the bugs, in process

describe('planted bugs on an in-process node', () => {
  it('double-apply: a retried (client, seq) is applied twice, once without the bug', async () => {
    for (const [hooks, want] of [
      [NO_TEST_HOOKS, 1],
      [hooksWith('double-apply'), 2],
    ] as const) {
      const node = await startEmbedded(hooks);
      const add = cmd(
        'c',
        { op: 'counter.add', name: 'c', delta: 1 },
        { session: { client: 'x', seq: 1, ack: 1 } },
      );
      expect(await node.handle('cmd', add)).toBe(1);
      expect(await node.handle('cmd', add)).toBe(want); // the retry of a lost answer
      const read = { store: 'default', key: 'c', read: { op: 'counter.get', name: 'c' } };
      expect(await node.handle('read', read)).toBe(want);
      await node.stop();
    }
  });

  it('double-apply also reaches the state machine directly (a plain config boolean)', () => {
    const run = (unsafeIgnoreSessions: boolean): unknown => {
      const sm = new GroupStateMachine({ unsafeIgnoreSessions });
      const data = encodeEnvelope({
        time: 1000,
        client: 'x',
        seq: 1,
        ack: 1,
        cmd: { op: 'counter.add', name: 'n', delta: 5 },
      });
      expect(sm.apply(1, data).result).toEqual({ ok: true, value: 5 });
      sm.apply(2, data); // the same request committed again (a retry)
      return sm.counterGet('n');
    };
    expect(run(false)).toBe(5);
    expect(run(true)).toBe(10);
  });

  it('watch-skip: a resumed watch misses exactly the first event after its revision', async () => {
    for (const [hooks, skipped] of [
      [NO_TEST_HOOKS, false],
      [hooksWith('watch-skip'), true],
    ] as const) {
      const node = await startEmbedded(hooks);
      const revs: number[] = [];
      for (let i = 1; i <= 4; i++) {
        const item = (await node.handle('cmd', cmd('w', { op: 'put', key: 'w', value: i }))) as {
          modRevision: number;
        };
        revs.push(item.modRevision);
      }
      const watch = (args: Record<string, unknown>): { seen: number[]; close: () => void } => {
        const seen: number[] = [];
        const sink: StreamSink = {
          push: (m) => {
            const ev = (m as { event?: { revision: number } }).event;
            if (ev) seen.push(ev.revision);
            return true;
          },
          end: () => undefined,
          fail: () => undefined,
        };
        const close = node.openStream('watch', { store: 'default', key: 'w', ...args }, sink);
        return { seen, close };
      };
      const replayed = watch({ fromRevision: revs[0] }); // replays revs 2..4
      const atHead = watch({ fromRevision: revs[3] }); // resumes at the head: the next event is live
      const live = watch({});
      const item = (await node.handle('cmd', cmd('w', { op: 'put', key: 'w', value: 5 }))) as {
        modRevision: number;
      };
      const r5 = item.modRevision;
      for (let i = 0; i < 100 && live.seen.length < 1; i++) await sleep(5);
      await sleep(20);
      const want = skipped ? [revs[2]!, revs[3]!, r5] : [revs[1]!, revs[2]!, revs[3]!, r5];
      expect(replayed.seen).toEqual(want);
      expect(atHead.seen).toEqual(skipped ? [] : [r5]);
      expect(live.seen).toEqual([r5]);
      for (const w of [replayed, atHead, live]) w.close();
      await node.stop();
    }
  });

  it('lock-no-lease-check: an acquire with a revoked lease is granted, refused without the bug', async () => {
    for (const [hooks, buggy] of [
      [NO_TEST_HOOKS, false],
      [hooksWith('lock-no-lease-check'), true],
    ] as const) {
      const node = await startEmbedded(hooks);
      const lease = (await node.handle('cmd', {
        store: 'default',
        group: 1,
        cmd: { op: 'lease.grant', ttlMs: 5000 },
      })) as {
        id: number;
      };
      await node.handle('cmd', { store: 'default', group: 1, cmd: { op: 'lease.revoke', id: lease.id } });
      const acquire = node.handle(
        'cmd',
        cmd('L', { op: 'lock.acquire', name: 'L', lease: lease.id, waitMs: 0 }),
      );
      if (buggy) expect(await acquire).toMatchObject({ acquired: true, lease: lease.id });
      else expect(await failure(acquire)).toBe('LEASE_NOT_FOUND');
      await node.stop();
    }
  });

  it('lock-no-lease-check in the engine: an ended lease keeps its waits and is handed the lock', () => {
    for (const unsafe of [false, true]) {
      const e = new LeaseLockEngine({ locks: { unsafeSkipLeaseCheck: unsafe } });
      e.leases.grant(1, 5000, 0);
      e.leases.grant(2, 5000, 0);
      expect(e.locks.acquire('L', 1, 3, 0, { waiterId: 'a' })).toMatchObject({ acquired: true, token: 3 });
      expect(e.locks.acquire('L', 2, 4, 0, { waiterId: 'b' })).toMatchObject({
        acquired: false,
        queued: true,
      });
      const ended = e.revoke(2, 5, 10);
      expect(ended.cancelled.length).toBe(unsafe ? 0 : 1);
      expect(e.locks.locksOf(2).waiting).toEqual(unsafe ? ['L'] : []);
      // The holder's lease ends too: the lock goes to the dead waiter only under the bug.
      const second = e.revoke(1, 6, 20);
      expect(second.grants.map((g) => g.lease)).toEqual(unsafe ? [2] : []);
      // A snapshot naming a dead lease still restores under the bug.
      const back = LeaseLockEngine.restore(e.snapshot().parts(), { locks: { unsafeSkipLeaseCheck: unsafe } });
      expect(back.locks.describe('L', 20).holder?.lease).toBe(unsafe ? 2 : undefined);
    }
  });

  it('stale-read: a leader answers a linearizable read without ReadIndex, with ReadIndex without the bug', async () => {
    for (const [hooks, buggy] of [
      [NO_TEST_HOOKS, false],
      [hooksWith('stale-read'), true],
    ] as const) {
      const node = await startEmbedded(hooks);
      await node.handle('cmd', cmd('r', { op: 'put', key: 'r', value: 'v' }));
      const spy = vi.spyOn(RawNode.prototype, 'readIndex');
      const got = (await node.handle('read', {
        store: 'default',
        key: 'r',
        read: { op: 'get', key: 'r' },
        consistency: 'linearizable',
      })) as { value: unknown };
      expect(got.value).toBe('v');
      expect(spy.mock.calls.length > 0).toBe(!buggy);
      spy.mockRestore();
      await node.stop();
    }
  });

  it('no-fsync on a node: acknowledged writes survive a graceful stop (the queue is written out)', async () => {
    const dir = tempDir();
    let node = await startEmbedded(hooksWith('no-fsync'), dir);
    for (let i = 0; i < 20; i++)
      await node.handle('cmd', cmd(`g${i}`, { op: 'put', key: `g${i}`, value: i }));
    await node.stop();
    nodes.splice(nodes.indexOf(node), 1);
    node = await startEmbedded(hooksWith('no-fsync'), dir);
    const got = (await node.handle('read', {
      store: 'default',
      key: 'g19',
      read: { op: 'get', key: 'g19' },
    })) as {
      value: unknown;
    };
    expect(got.value).toBe(19);
  });
});

// ---------------------------------------------------------------- no-fsync in the storage

const CONF: ConfState = { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };

function ent(index: number, term: number): Entry {
  return { index, term, type: EntryType.Normal, data: new TextEncoder().encode(`value-${index}`) };
}

describe('no-fsync in NodeStorage (deferred writes)', () => {
  it('acknowledges before LevelDB has the batch, and a kill (no write-out) loses it', async () => {
    const dir = tempDir();
    let ns = await NodeStorage.open(dir, {}, { unsafeDeferWritesMs: 60_000 });
    const g = await ns.createGroup(1, CONF);
    const stats = await ns.commit([
      {
        storage: g,
        ready: ready({ entries: [ent(2, 1), ent(3, 1)], hardState: { term: 1, vote: 1, commit: 3 } }),
      },
    ]);
    expect(stats.synced).toBe(false);
    // In memory at once, as an acknowledged write must be...
    expect(g.lastIndex()).toBe(3);
    expect(g.entries(2, 4, 1 << 20)).toEqual([ent(2, 1), ent(3, 1)]);
    // ...but not in LevelDB yet.
    expect(await ns.db.keys(kindRange(1, KeyKind.Entry))).toEqual([]);
    expect(ns.discardQueuedWrites()).toBe(1);
    await ns.close();

    ns = await NodeStorage.open(dir);
    expect(ns.group(1)!.lastIndex()).toBe(1);
    expect(ns.group(1)!.initialState().hardState).toEqual({ term: 0, vote: 0, commit: 0 });
    await ns.close();
  });

  it('writes the queue out on close, and reads from disk see queued writes', async () => {
    const dir = tempDir();
    let ns = await NodeStorage.open(dir, { cacheBytesMax: 100 }, { unsafeDeferWritesMs: 60_000 });
    const g = await ns.createGroup(1, CONF);
    const ents = Array.from({ length: 30 }, (_, i) => ent(i + 2, 1));
    await ns.commit([{ storage: g, ready: ready({ entries: ents }) }]);
    expect(await ns.db.get(indexedKey(1, KeyKind.Entry, 2))).toBeUndefined();
    // The oldest entries fell out of the cache: the read from disk must find the queued batch.
    expect(g.cachedFirstIndex()).toBeGreaterThan(2);
    const fetched = new Promise<void>((resolve) => {
      g.onFetched = () => resolve();
    });
    let err: unknown;
    try {
      g.entries(2, 6, 1 << 20);
    } catch (e) {
      err = e;
    }
    expect(isStorageError(err, StorageErrorKind.LogTemporarilyUnavailable)).toBe(true);
    await fetched;
    expect(g.corruption()).toBeNull();
    expect(g.entries(2, 6, 1 << 20)).toEqual(ents.slice(0, 4));

    // A later batch waits again; close writes it out.
    await ns.commit([
      { storage: g, ready: ready({ entries: [ent(32, 1)], hardState: { term: 1, vote: 1, commit: 32 } }) },
    ]);
    await ns.close();
    ns = await NodeStorage.open(dir);
    expect(ns.group(1)!.lastIndex()).toBe(32);
    expect(ns.group(1)!.initialState().hardState.commit).toBe(32);
    await ns.close();
  });
});
