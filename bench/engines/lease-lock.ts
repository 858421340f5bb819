/**
 * Lease, lock and counter engine benchmark: apply rates (operations per second, as the state
 * machine would call them, one entry index per operation) for lease grant and keep-alive,
 * lock acquire and release on 1 lock and round-robin over 100 locks, a contended hand-off
 * chain on 1 lock, fence checks, counter adds on 1 and on 100 names, plus heap bytes per
 * lease, held lock and counter, and snapshot/restore rates.
 *
 *     node --expose-gc --import tsx bench/engines/lease-lock.ts [--quick]
 */
import { Counters } from '../../src/engines/counters.js';
import { LeaseLockEngine } from '../../src/engines/lease-lock.js';
import { runIfMain } from '../common.js';

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g !== undefined) {
    g();
    g();
  }
}

function heapUsed(): number {
  gc();
  return process.memoryUsage().heapUsed;
}

function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * rate runs `batch` (which performs `opsPerBatch` operations) repeatedly for a warm-up and
 * then for `timeMs`, and returns operations per second.
 */
function rate(timeMs: number, opsPerBatch: number, batch: () => void): number {
  const warmEnd = performance.now() + timeMs * 0.2;
  while (performance.now() < warmEnd) batch();
  let ops = 0;
  const start = performance.now();
  let now = start;
  while (now - start < timeMs) {
    batch();
    ops += opsPerBatch;
    now = performance.now();
  }
  return round((ops * 1000) / (now - start));
}

const TTL_MS = 60_000;

function leaseLockMemory(n: number): Record<string, number> {
  const out: Record<string, number> = {};
  let before = heapUsed();
  const e = new LeaseLockEngine({ locks: { locksMax: n } });
  for (let i = 1; i <= n; i++) e.leases.grant(i, TTL_MS, 0);
  out.heapBytesPerLease = round((heapUsed() - before) / n);
  before = heapUsed();
  for (let i = 1; i <= n; i++) e.locks.acquire(`lock/${i}`, i, n + i, 0, { waiterId: `c:${i}` });
  out.heapBytesPerHeldLock = round((heapUsed() - before) / n);
  let t = performance.now();
  const parts = [...e.snapshot().parts()];
  out.leaseLockSnapshotRecordsPerSec = round((2 * n) / ((performance.now() - t) / 1000));
  t = performance.now();
  const r = LeaseLockEngine.restore(parts);
  out.leaseLockRestoreRecordsPerSec = round((2 * n) / ((performance.now() - t) / 1000));
  if (r.locks.size !== n) throw new Error('restore lost locks');
  return out;
}

function counterMemory(n: number): Record<string, number> {
  const out: Record<string, number> = {};
  const names = Array.from({ length: n }, (_, i) => `counter/${i}`);
  const before = heapUsed();
  const c = new Counters();
  for (let i = 0; i < n; i++) c.add(names[i]!, i, 0);
  out.heapBytesPerCounter = round((heapUsed() - before) / n);
  let t = performance.now();
  const parts = [...c.snapshot().parts()];
  out.counterSnapshotPerSec = round(n / ((performance.now() - t) / 1000));
  t = performance.now();
  const r = Counters.restore(parts);
  out.counterRestorePerSec = round(n / ((performance.now() - t) / 1000));
  if (r.size !== n) throw new Error('restore lost counters');
  return out;
}

/** bench measures the figures named in the file comment; `quick` finishes in a few seconds. */
export async function bench(opts: { quick: boolean }): Promise<Record<string, number | string>> {
  const timeMs = opts.quick ? 150 : 1500;
  const population = opts.quick ? 20_000 : 200_000;
  const out: Record<string, number | string> = {};
  out.gcExposed = (globalThis as { gc?: unknown }).gc === undefined ? 'no' : 'yes';

  // --- leases
  {
    const e = new LeaseLockEngine();
    let index = 0;
    let now = 0;
    out.leaseGrantPerSec = rate(timeMs, 1000, () => {
      for (let i = 0; i < 1000; i++) e.leases.grant(++index, TTL_MS, now);
      now += 1;
      // Keep the table at a steady size: drop the oldest thousand.
      if (e.leases.size > population) e.expire(now + TTL_MS - 1, ++index, 1000);
    });
    const ids = e.leases.list().map((l) => l.id);
    let k = 0;
    out.leaseKeepAlivePerSec = rate(timeMs, 1000, () => {
      for (let i = 0; i < 1000; i++) {
        e.leases.keepAlive(ids[k]!, now);
        k = (k + 7919) % ids.length;
      }
      now += 1;
    });
    const batch = ids.slice(0, 100);
    out.leaseKeepAliveManyIdsPerSec = rate(timeMs, 100 * 10, () => {
      for (let i = 0; i < 10; i++) e.leases.keepAliveMany(batch, now);
      now += 1;
    });
    out.leasesHeld = e.leases.size;
  }

  // --- locks
  {
    const e = new LeaseLockEngine();
    let index = 1;
    e.leases.grant(index, TTL_MS, 0);
    out.lockAcquireRelease1LockOpsPerSec = rate(timeMs, 2000, () => {
      for (let i = 0; i < 1000; i++) {
        const r = e.locks.acquire('lock', 1, ++index, 0, { waiterId: 'w' });
        if (!r.acquired) throw new Error('not acquired');
        e.locks.release('lock', r.token, ++index, 0);
      }
    });
  }
  {
    const e = new LeaseLockEngine();
    let index = 0;
    const names: string[] = [];
    for (let i = 0; i < 100; i++) {
      e.leases.grant(++index, TTL_MS, 0);
      names.push(`lock/${i}`);
    }
    out.lockAcquireRelease100LocksOpsPerSec = rate(timeMs, 2000, () => {
      for (let i = 0; i < 1000; i++) {
        const j = i % 100;
        const r = e.locks.acquire(names[j]!, j + 1, ++index, 0, { waiterId: 'w' });
        if (!r.acquired) throw new Error('not acquired');
        e.locks.release(names[j]!, r.token, ++index, 0);
      }
    });
  }
  {
    // 100 leases queue on one lock; each release hands it to the next, and the releaser
    // queues again at the back: every operation is a hand-off through a 99-deep queue.
    const e = new LeaseLockEngine();
    let index = 0;
    for (let i = 1; i <= 100; i++) e.leases.grant(++index, TTL_MS, 0);
    for (let i = 1; i <= 100; i++) e.locks.acquire('hot', i, ++index, 0, { waiterId: `w${i}` });
    let holder = e.locks.describe('hot', 0).holder!;
    let token = holder.token;
    let lease = holder.lease;
    out.lockHandOffChain100WaitersPerSec = rate(timeMs, 1000, () => {
      for (let i = 0; i < 1000; i++) {
        const r = e.locks.release('hot', token, ++index, 0);
        e.locks.acquire('hot', lease, index, 0, { waiterId: 'again' });
        token = r.grant!.token;
        lease = r.grant!.lease;
      }
    });
    holder = e.locks.describe('hot', 0).holder!;
    out.lockCheckFencePerSec = rate(timeMs, 1000, () => {
      for (let i = 0; i < 1000; i++) e.locks.checkFence({ lock: 'hot', token: holder.token }, 0);
    });
  }

  // --- counters
  {
    const c = new Counters();
    out.counterAdd1NamePerSec = rate(timeMs, 1000, () => {
      for (let i = 0; i < 1000; i++) c.add('hits', 1, 0);
    });
    const names = Array.from({ length: 100 }, (_, i) => `rate/${i}`);
    out.counterAdd100NamesPerSec = rate(timeMs, 1000, () => {
      for (let i = 0; i < 1000; i++) c.add(names[i % 100]!, 1n, 0);
    });
    let now = 0;
    out.counterAddWindowed100NamesPerSec = rate(timeMs, 1000, () => {
      for (let i = 0; i < 1000; i++) c.add(names[i % 100]!, 1, now, { ttlMs: 1000 });
      now += 50;
      c.expire(now);
    });
    out.counterGet100NamesPerSec = rate(timeMs, 1000, () => {
      for (let i = 0; i < 1000; i++) c.get(names[i % 100]!, now);
    });
  }

  // --- memory and snapshots (each in its own scope, so one's garbage never counts in another)
  Object.assign(out, leaseLockMemory(population), counterMemory(population));
  out.memoryPopulation = population;
  return out;
}

runIfMain(import.meta.url, bench);
