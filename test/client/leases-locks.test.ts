/**
 * Leases and locks through DkvClient against an in-process three-node cluster: keep-alive
 * keeps a lease (and its keys) alive while the client lives and only then; validUntil stays
 * before the server's deadline; the signal fires before the server could expire the lease
 * when the cluster becomes unreachable, and when the lease is revoked elsewhere; lease ids
 * encode their group. Locks: FIFO hand-off, waitMs time-out, try mode, release, a holder
 * whose lease ends, store-enforced fencing (STALE_FENCE) and FenceGuard.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DkvClient } from '../../src/client/client.js';
import { FenceGuard } from '../../src/client/fence.js';
import {
  LEASE_GROUP_SPAN,
  LEASE_INDEX_MAX,
  type Lease,
  leaseForKey,
  leaseId,
  leaseWireId,
} from '../../src/client/leases.js';
import { DkvError, ErrorCode, isDkvError } from '../../src/errors.js';
import { InProcCluster } from './fixture.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    if (isDkvError(err)) return err.code;
    throw err;
  }
}

/** putLeased writes `key` bound to lease `id` (client.put translates the id for the key's group). */
async function putLeased(c: DkvClient, key: string, value: unknown, id: number): Promise<void> {
  await c.put(key, value, { lease: id });
}

/** serverDeadline reads the lease's replicated deadline (the same clock as Date.now() here). */
/**
 * serverDeadline is when the server will end the lease, in this process's Date.now() terms:
 * the time the read was sent plus the time the server said was left. Replicated time runs at
 * the rate of the leader's monotonic clock but is not wall time (node.ts `replicatedNow`), so
 * the deadline itself is not comparable with Date.now(). The server computed what was left
 * at or after `sent`, so the real deadline is at least this.
 */
async function serverDeadline(c: DkvClient, lease: Lease): Promise<number | undefined> {
  const sent = Date.now();
  try {
    return sent + (await c.lease.timeToLive(lease.id)).remainingMs;
  } catch (err) {
    if (isDkvError(err) && err.code === ErrorCode.LeaseNotFound) return undefined;
    throw err;
  }
}

async function until(
  what: string,
  cond: () => Promise<boolean> | boolean,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

describe('lease ids', () => {
  it('encode the group in the low part and round-trip', () => {
    for (const [g, i] of [
      [1, 1],
      [3, 12345],
      [LEASE_GROUP_SPAN - 1, LEASE_INDEX_MAX],
    ] as const) {
      const id = leaseId(g, i);
      expect(Number.isSafeInteger(id)).toBe(true);
      expect(id).toBe(i * 4096 + g);
      expect(leaseWireId(id)).toEqual({ group: g, lease: i });
    }
    for (const bad of [0, -1, 1.5, 4096, 8192, Number.NaN]) expect(() => leaseWireId(bad)).toThrow(DkvError);
    expect(() => leaseId(4096, 1)).toThrow(DkvError);
    expect(() => leaseId(1, LEASE_INDEX_MAX + 1)).toThrow(DkvError);
  });
});

describe('leases and locks on a cluster', () => {
  let cluster: InProcCluster;
  let a: DkvClient;
  let b: DkvClient;
  const open: Lease[] = [];

  beforeAll(async () => {
    // A short node-side request wait: lock waits outlast it and must survive the retries.
    cluster = await InProcCluster.start({ partitions: 3, config: { requestWaitMs: 1000 } });
    a = await cluster.client();
    b = await cluster.client();
  });
  afterEach(() => {
    for (const l of open.splice(0)) l.close();
  });
  afterAll(async () => {
    await cluster.close();
  });

  const track = <T extends Lease>(l: T): T => {
    open.push(l);
    return l;
  };

  it('get, scan, watch events and watch snapshots show the lease of a key by its user id', async () => {
    const lease = track(await a.lease.grant(5000, { key: '{uid}' }));
    const watch = b.watch({ prefix: '{uid}/', snapshot: true });
    await watch.ready;
    await a.put('{uid}/k', 1, { lease: lease.id });
    expect((await b.get('{uid}/k'))?.lease).toBe(lease.id);
    const scanned: (number | undefined)[] = [];
    for await (const it of b.scan({ prefix: '{uid}/' })) scanned.push(it.lease);
    expect(scanned).toEqual([lease.id]);
    for await (const ev of watch) {
      expect(ev.item?.lease).toBe(lease.id);
      break;
    }
    watch.close();
    const again = b.watch({ prefix: '{uid}/', snapshot: true });
    for await (const ev of again) {
      expect(ev.cause).toBe('snapshot');
      expect(ev.item?.lease).toBe(lease.id);
      break;
    }
    again.close();
  });

  it('keep-alive keeps a lease and its key alive; close lets it expire, revoke ends it at once', async () => {
    const kept = track(await a.lease.grant(1000, { key: '{ka}x' }));
    const closed = track(await a.lease.grant(1000, { key: '{kc}x' }));
    const revoked = track(await a.lease.grant(1000, { key: '{kr}x' }));
    await putLeased(a, '{ka}x', 'kept', kept.id);
    await putLeased(a, '{kc}x', 'closed', closed.id);
    await putLeased(a, '{kr}x', 'revoked', revoked.id);
    // Items carry the lease as the server knows it (the index), or the user id once translated.
    expect([kept.wireId, kept.id]).toContain((await a.get('{ka}x'))?.lease);

    closed.close();
    expect(closed.state).toBe('closed');
    expect(closed.signal.aborted).toBe(true);
    await revoked.revoke();
    await revoked.revoke(); // idempotent
    expect(revoked.state).toBe('revoked');
    expect(await a.get('{kr}x')).toBeUndefined();

    await sleep(2500); // 2.5 TTLs
    expect((await a.get('{ka}x'))?.value).toBe('kept');
    expect(await a.get('{kc}x')).toBeUndefined();
    expect(kept.renewals).toBeGreaterThanOrEqual(5);
    expect(kept.signal.aborted).toBe(false);
    expect(kept.remainingMs()).toBeGreaterThan(500);
    expect(await codeOf(a.lease.timeToLive(closed.id))).toBe(ErrorCode.LeaseNotFound);
    const ttl = await a.lease.timeToLive(kept.id);
    expect(ttl).toMatchObject({ id: kept.id, ttlMs: 1000, keys: ['{ka}x'] });

    kept.close();
    await sleep(1500);
    expect(await a.get('{ka}x')).toBeUndefined();
  });

  it('validUntil stays before the server deadline, and close to it, across a re-anchoring', async () => {
    const lease = track(await a.lease.grant(1000, { key: '{vu}' }));
    let maxGap = 0;
    for (let i = 0; i < 50; i++) {
      const validUntil = lease.validUntil; // sampled before the read: the deadline only grows
      const deadline = await serverDeadline(b, lease);
      expect(deadline).toBeDefined();
      expect(validUntil).toBeLessThanOrEqual(deadline!);
      maxGap = Math.max(maxGap, deadline! - validUntil);
      await sleep(100);
    }
    console.log(`validUntil: at most ${maxGap} ms before the server deadline (ttl 1000 ms, 5 s)`);
    // Conservative by the margins, plus at most one renewal (ttl/4) landing during the read.
    expect(maxGap).toBeLessThan(250 + 300);
  });

  it('a manual keepAlive renews; attach takes over a lease granted elsewhere', async () => {
    const lease = track(await a.lease.grant(2000, { group: 1, keepAlive: false }));
    expect(lease.group).toBe(1);
    const before = lease.validUntil;
    await sleep(300);
    const after = await lease.keepAlive();
    expect(after).toBeGreaterThan(before + 200);
    expect(lease.renewals).toBe(1);

    const attached = track(await b.lease.attach(lease.id));
    expect(attached.id).toBe(lease.id);
    expect(attached.ttlMs).toBe(2000);
    expect(attached.validUntil).toBeLessThanOrEqual((await serverDeadline(b, lease))!);
    await sleep(3000); // b keeps it alive
    expect((await b.lease.timeToLive(lease.id)).ttlMs).toBe(2000);
    expect(await b.lease.keepAlive(lease.id)).toEqual({ id: lease.id, ttlMs: 2000 });
    await b.lease.revoke(lease.id);
    expect(await codeOf(b.lease.revoke(lease.id))).toBe(ErrorCode.LeaseNotFound);
    expect(await codeOf(lease.keepAlive())).toBe(ErrorCode.LeaseNotFound);
    expect(lease.state).toBe('lost');
  });

  it('the signal fires with LEASE_NOT_FOUND when the lease is revoked elsewhere', async () => {
    const lease = track(await a.lease.grant(1000, { key: '{gone}' }));
    await b.lease.revoke(lease.id);
    await until('the lease lost', () => lease.state === 'lost', 5000);
    expect(lease.signal.aborted).toBe(true);
    expect((lease.signal.reason as DkvError).code).toBe(ErrorCode.LeaseNotFound);
    expect(lease.remainingMs()).toBeLessThanOrEqual(0);
  });

  it('a lease key must share the lease group (CROSS_GROUP), options are checked before granting', async () => {
    const lease = track(await a.lease.grant(1000, { group: 1 }));
    let other = '';
    for (let i = 0; other === ''; i++) if ((await a.groupOfKey(`k${i}`)) !== 1) other = `k${i}`;
    expect(await codeOf(leaseForKey(a, other, lease.id))).toBe(ErrorCode.CrossGroup);
    expect(await codeOf(a.put(other, 'v', { lease: lease.id }))).toBe(ErrorCode.CrossGroup);
    expect(await codeOf(a.lease.grant(1000, { key: 'x', group: 1 }))).toBe(ErrorCode.InvalidArgument);
    expect(await codeOf(a.lease.grant(1000, { intervalMs: 5000 }))).toBe(ErrorCode.InvalidArgument);
    expect(await codeOf(a.lease.grant(10))).toBe(ErrorCode.InvalidArgument);
    const random = track(await a.lease.grant(1000));
    expect([1, 2, 3]).toContain(random.group);
  });

  it('locks hand over FIFO between clients, with increasing tokens', async () => {
    const l1 = await a.lock.acquire('fifo', { ttlMs: 5000 });
    const order: string[] = [];
    const pb = b.lock.acquire('fifo', { ttlMs: 5000 }).then((l) => {
      order.push('b');
      return l;
    });
    await until('b queued', async () => (await a.lock.describe('fifo')).waiters.length === 1);
    const pa = a.lock.acquire('fifo', { ttlMs: 5000 }).then((l) => {
      order.push('a2');
      return l;
    });
    await until('a2 queued', async () => (await a.lock.describe('fifo')).waiters.length === 2);
    const info = await a.lock.describe('fifo');
    expect(info.holder).toMatchObject({ token: l1.token, lease: l1.lease.id });
    await l1.release();
    const l2 = await pb;
    expect(l2.token).toBeGreaterThan(l1.token);
    await l2.release();
    const l3 = await pa;
    expect(l3.token).toBeGreaterThan(l2.token);
    expect(order).toEqual(['b', 'a2']);
    await l3.release();
    await l3.release(); // idempotent
    expect((await a.lock.describe('fifo')).holder).toBeUndefined();
  });

  it('a wait longer than the node holds a request survives the retries, queued once', async () => {
    const held = await a.lock.acquire('long', { ttlMs: 5000 });
    let got = false;
    const p = b.lock.acquire('long', { ttlMs: 5000 }).then((l) => {
      got = true;
      return l;
    });
    for (let i = 0; i < 12; i++) {
      await sleep(250); // 3 s: three node-side request time-outs
      const info = await a.lock.describe('long');
      expect(info.waiters.length).toBeLessThanOrEqual(1);
    }
    expect(got).toBe(false);
    await held.release();
    const l = await p;
    expect(l.token).toBeGreaterThan(held.token);
    await l.release();
  });

  it('waitMs runs out with TIMEOUT, try mode too, and neither leaves a waiter', async () => {
    const held = await a.lock.acquire('busy', { ttlMs: 5000 });
    const t0 = Date.now();
    expect(await codeOf(b.lock.acquire('busy', { waitMs: 500 }))).toBe(ErrorCode.Timeout);
    const waited = Date.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(450);
    expect(waited).toBeLessThan(3000);
    const t1 = Date.now();
    expect(await codeOf(b.lock.acquire('busy', { waitMs: 0 }))).toBe(ErrorCode.Timeout);
    expect(Date.now() - t1).toBeLessThan(1000);
    const info = await a.lock.describe('busy');
    expect(info.waiters).toEqual([]);
    expect(info.holder?.token).toBe(held.token);
    await held.release();
    const free = await b.lock.acquire('busy', { waitMs: 0 });
    expect(free.token).toBeGreaterThan(held.token);
    await free.release();
  });

  it('an aborted wait is CANCELLED and leaves no waiter', async () => {
    const held = await a.lock.acquire('abort', { ttlMs: 5000 });
    const ac = new AbortController();
    const p = b.lock.acquire('abort', { signal: ac.signal });
    await until('queued', async () => (await a.lock.describe('abort')).waiters.length === 1);
    ac.abort();
    expect(await codeOf(p)).toBe(ErrorCode.Cancelled);
    await until('no waiter', async () => (await a.lock.describe('abort')).waiters.length === 0, 5000);
    await held.release();
  });

  it('release with a wrong token is NOT_OWNER; a lock lost to its lease end releases with NOT_OWNER', async () => {
    const held = await a.lock.acquire('rel', { ttlMs: 1000 });
    expect(await codeOf(b.lock.release('rel', held.token + 1))).toBe(ErrorCode.NotOwner);
    // The holder stops keeping its lease alive; the waiter gets the lock once the lease ends.
    const t0 = Date.now();
    const next = b.lock.acquire('rel', { ttlMs: 5000 });
    await until('queued', async () => (await a.lock.describe('rel')).waiters.length === 1);
    held.lease.close();
    const l2 = await next;
    expect(Date.now() - t0).toBeLessThan(4000);
    expect(l2.token).toBeGreaterThan(held.token);
    expect(held.signal.aborted).toBe(true);
    expect(await codeOf(held.release())).toBe(ErrorCode.NotOwner);
    await l2.release();
  });

  it('the store refuses a stale fencing token (STALE_FENCE); the current one writes', async () => {
    const lockName = '{fence}lock';
    const key = '{fence}data';
    const l1 = await a.lock.acquire(lockName, { ttlMs: 5000 });
    expect(l1.fence).toEqual({ lock: lockName, token: l1.token });
    await a.put(key, 'one', { fence: l1.fence });
    await l1.release();
    expect(await codeOf(a.put(key, 'late', { fence: l1.fence }))).toBe(ErrorCode.StaleFence);
    const l2 = await b.lock.acquire(lockName, { ttlMs: 5000 });
    expect(await codeOf(a.put(key, 'stale', { fence: l1.fence }))).toBe(ErrorCode.StaleFence);
    await b.put(key, 'two', { fence: l2.fence });
    expect((await a.get(key))?.value).toBe('two');
    await l2.release();
  });
});

describe('FenceGuard', () => {
  it('keeps the highest token per lock and refuses lower ones', () => {
    const g = new FenceGuard();
    expect(g.accept('L', 10)).toBe(true);
    expect(g.accept('L', 10)).toBe(true); // the same holder again
    expect(g.accept('L', 9)).toBe(false);
    expect(g.accept('M', 3)).toBe(true); // locks are independent
    expect(g.accept('L', 12)).toBe(true);
    expect(g.accept('L', 10)).toBe(false);
    expect(g.highest('L')).toBe(12);
    expect(() => g.check({ lock: 'L', token: 11 })).toThrow(
      expect.objectContaining({ code: ErrorCode.StaleFence }),
    );
    g.check({ lock: 'L', token: 12 });
    g.restore('L', 5); // never lowers
    expect(g.highest('L')).toBe(12);
    g.restore('N', 7);
    expect(g.accept('N', 6)).toBe(false);
    expect(g.size).toBe(3);
    expect(g.forget('M')).toBe(true);
    expect(g.accept('M', 1)).toBe(true);
    expect(() => g.accept('', 1)).toThrow(DkvError);
    expect(() => g.accept('L', 0)).toThrow(DkvError);
  });

  it('against a random interleaving, accepts exactly the tokens not below the running maximum', () => {
    const g = new FenceGuard();
    const max = new Map<string, number>();
    let seed = 42;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let i = 0; i < 5000; i++) {
      const lock = `l${rnd(5)}`;
      const token = 1 + rnd(100);
      const want = token >= (max.get(lock) ?? 0);
      if (want) max.set(lock, token);
      expect(g.accept(lock, token)).toBe(want);
    }
  });
});

describe('lease signal when the cluster goes away', () => {
  let cluster: InProcCluster | undefined;
  afterEach(async () => {
    await cluster?.close();
    cluster = undefined;
  });

  it('keep-alive follows a leader change: the lease and its key survive the leader', async () => {
    cluster = await InProcCluster.start({ partitions: 1 });
    const c = await cluster.client({ requestTimeoutMs: 4000 });
    // 5 s: more than an election (1-2 s) and the client's retries even on a loaded machine.
    const lease = await c.lease.grant(5000, { group: 1 });
    await putLeased(c, 'survivor', 'v', lease.id);
    await sleep(800);
    const leader = cluster.leaderOf(1);
    expect(leader).toBeGreaterThan(0);
    const renewalsBefore = lease.renewals;
    const stoppedAt = Date.now();
    await cluster.stopNode(leader); // not graceful: the stream's connection drops
    await until('a renewal through the new leader', () => lease.renewals > renewalsBefore, 10_000);
    const resumedAfter = Date.now() - stoppedAt;
    await sleep(5500); // longer than the TTL
    expect((await c.get('survivor'))?.value).toBe('v');
    expect((await c.lease.timeToLive(lease.id)).keys).toEqual(['survivor']);
    console.log(
      `leader loss: keep-alive resumed ${resumedAfter} ms after the leader stopped (ttl 5000 ms); signal ${
        lease.signal.aborted ? 'fired (at risk)' : 'did not fire'
      }`,
    );
    expect(lease.remainingMs()).toBeGreaterThan(1000);
    lease.close();
  });

  it('fires before the server could have expired the lease', async () => {
    cluster = await InProcCluster.start({ partitions: 1 });
    const c = await cluster.client({ requestTimeoutMs: 2000 });
    const lease = await c.lease.grant(3000, { group: 1 });
    await sleep(1200); // a few renewals
    expect(lease.renewals).toBeGreaterThanOrEqual(2);
    const lastKnownDeadline = (await serverDeadline(c, lease))!;
    const firedAt = new Promise<number>((resolve) =>
      lease.signal.addEventListener('abort', () => resolve(Date.now()), { once: true }),
    );
    const stoppedAt = Date.now();
    await Promise.all([1, 2, 3].map((id) => cluster!.stopNode(id)));
    const fired = await firedAt;
    // Renewals may have landed after the read: the real deadline is at least lastKnownDeadline.
    expect(fired).toBeLessThan(lastKnownDeadline);
    expect(lease.validUntil).toBeLessThanOrEqual(lastKnownDeadline);
    expect((lease.signal.reason as DkvError).code).toBe(ErrorCode.Unavailable);
    expect(lease.state).toBe('active'); // still trying
    console.log(
      `signal: fired ${fired - stoppedAt} ms after the stop, ${lastKnownDeadline - fired} ms before the last known deadline (ttl 3000 ms)`,
    );
    // It fired about when two renewals in a row were missed: well before the deadline.
    expect(lastKnownDeadline - fired).toBeGreaterThan(500);
    expect(fired - stoppedAt).toBeLessThan(3000);
    lease.close();
  });
});
