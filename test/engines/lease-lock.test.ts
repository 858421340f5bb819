import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  type Grant,
  LeaseLockEngine,
  type LeasesEnded,
  LeaseTable,
  type LockInfo,
  LockTable,
} from '../../src/engines/lease-lock.js';
import { DkvError, ErrorCode, isDkvError } from '../../src/errors.js';

/** codeOf runs `f` and returns its result, or the DkvError code it threw. */
function codeOf<T>(f: () => T): T | { error: string } {
  try {
    return f();
  } catch (err) {
    if (err instanceof DkvError) return { error: err.code };
    throw err;
  }
}

function expectCode(f: () => unknown, code: string): void {
  let thrown: unknown;
  try {
    f();
  } catch (err) {
    thrown = err;
  }
  expect(isDkvError(thrown) ? thrown.code : thrown).toBe(code);
}

const TEST_CONFIG = { leases: { ttlMsMin: 1, ttlMsMax: 1000 } };

// ---------------------------------------------------------------------------------------
// Examples

describe('LeaseTable', () => {
  it('grants with deadline now + ttl and validates the TTL', () => {
    const t = new LeaseTable();
    expect(t.grant(5, 2000, 100)).toEqual({ id: 5, ttlMs: 2000, deadline: 2100 });
    for (const ttl of [0, 999, 1000.5, Number.NaN, 86_400_001, -5])
      expectCode(() => t.grant(6, ttl, 0), ErrorCode.InvalidArgument);
    expect(t.size).toBe(1);
    expect(() => t.grant(5, 2000, 100)).toThrow(/granted twice/);
  });

  it('bounds the number of leases', () => {
    const t = new LeaseTable({ leasesMax: 2 });
    t.grant(1, 1000, 0);
    t.grant(2, 1000, 0);
    expectCode(() => t.grant(3, 1000, 0), ErrorCode.Overloaded);
  });

  it('is dead at its deadline, before expire runs', () => {
    const t = new LeaseTable();
    t.grant(1, 1000, 0);
    expect(t.isLive(1, 999)).toBe(true);
    expect(t.isLive(1, 1000)).toBe(false);
    expectCode(() => t.keepAlive(1, 1000), ErrorCode.LeaseNotFound);
    expectCode(() => t.timeToLive(1, 1000), ErrorCode.LeaseNotFound);
    expect(t.timeToLive(1, 400)).toEqual({ id: 1, ttlMs: 1000, remainingMs: 600, keys: [] });
    expect(t.keepAlive(1, 999)).toEqual({ id: 1, ttlMs: 1000, deadline: 1999 });
    expect(t.expire(1998)).toEqual([]);
    expect(t.expire(1999).map((l) => l.id)).toEqual([1]);
    expect(t.size).toBe(0);
  });

  it('expires in (deadline, id) order, bounded by max', () => {
    const t = new LeaseTable();
    t.grant(9, 1000, 0);
    t.grant(3, 2000, 0);
    t.grant(4, 1000, 0);
    t.grant(7, 1500, 0);
    expect(t.nextDeadline()).toBe(1000);
    expect(t.expire(5000, 2).map((l) => l.id)).toEqual([4, 9]);
    expect(t.expire(5000).map((l) => l.id)).toEqual([7, 3]);
    expect(t.nextDeadline()).toBeUndefined();
  });

  it('keeps alive in batches, one result per id', () => {
    const t = new LeaseTable({ keepAliveBatchMax: 3 });
    t.grant(1, 1000, 0);
    t.grant(2, 1000, 0);
    expect(t.keepAliveMany([2, 8, 1], 500)).toEqual([
      { id: 2, ok: true, ttlMs: 1000, deadline: 1500 },
      { id: 8, ok: false, code: ErrorCode.LeaseNotFound },
      { id: 1, ok: true, ttlMs: 1000, deadline: 1500 },
    ]);
    expectCode(() => t.keepAliveMany([1, 2, 1, 2], 500), ErrorCode.TooLarge);
  });

  it('tracks keys and returns them on revoke and expiry', () => {
    const t = new LeaseTable();
    t.grant(1, 1000, 0);
    t.grant(2, 1000, 0);
    t.attachKey(1, 'b');
    t.attachKey(1, 'a');
    t.attachKey(2, 'c');
    expect(t.keysOf(1)).toEqual(['a', 'b']);
    expect(t.detachKey(1, 'b')).toBe(true);
    expect(t.detachKey(1, 'b')).toBe(false);
    expectCode(() => t.attachKey(3, 'x'), ErrorCode.LeaseNotFound);
    expect(t.revoke(1)).toEqual({ id: 1, ttlMs: 1000, deadline: 1000, keys: ['a'] });
    expectCode(() => t.revoke(1), ErrorCode.LeaseNotFound);
    expect(t.end(1)).toBeUndefined();
    expect(t.expire(1000)).toEqual([{ id: 2, ttlMs: 1000, deadline: 1000, keys: ['c'] }]);
  });

  it('checkWrite: only the live lease holder may modify a bound key', () => {
    const t = new LeaseTable();
    t.grant(1, 1000, 0);
    t.checkWrite(undefined, undefined, 10);
    t.checkWrite(undefined, 1, 10);
    t.checkWrite(1, 1, 10);
    expectCode(() => t.checkWrite(1, undefined, 10), ErrorCode.NotOwner);
    expectCode(() => t.checkWrite(1, 2, 10), ErrorCode.NotOwner);
    t.checkWrite(1, undefined, 1000); // dead at its deadline, even before expire
    t.checkWrite(7, undefined, 10); // ended lease
  });
});

describe('LockTable', () => {
  function setup() {
    const e = new LeaseLockEngine();
    for (const id of [1, 2, 3, 4]) e.leases.grant(id, 10_000, 0);
    return { e, l: e.locks };
  }

  it('grants a free lock with token = index, re-entrantly to the same lease', () => {
    const { l } = setup();
    expect(l.acquire('m', 1, 10, 5, { waiterId: 'a' })).toEqual({
      acquired: true,
      token: 10,
      reentrant: false,
    });
    expect(l.acquire('m', 1, 11, 6, { waiterId: 'a2' })).toEqual({
      acquired: true,
      token: 10,
      reentrant: true,
    });
    expect(l.acquire('m', 2, 12, 7, { waiterId: 'b', waitMs: 0 })).toEqual({
      acquired: false,
      queued: false,
    });
    expect(l.describe('m', 9)).toEqual({
      name: 'm',
      holder: { lease: 1, token: 10, waiterId: 'a', since: 5, heldMs: 4 },
      waiters: [],
      lastToken: 10,
    });
    expectCode(() => l.acquire('m', 99, 13, 7, { waiterId: 'x' }), ErrorCode.LeaseNotFound);
  });

  it('queues FIFO and hands over on release with token = the release index', () => {
    const { l } = setup();
    l.acquire('m', 1, 10, 0, { waiterId: 'a' });
    expect(l.acquire('m', 2, 11, 0, { waiterId: 'b' })).toEqual({ acquired: false, queued: true });
    expect(l.acquire('m', 3, 12, 0, { waiterId: 'c', waitMs: 50 })).toEqual({
      acquired: false,
      queued: true,
      waitDeadline: 50,
    });
    expectCode(() => l.acquire('m', 2, 13, 0, { waiterId: 'b2' }), ErrorCode.InvalidArgument);
    expect(l.acquire('m', 2, 13, 0, { waiterId: 'b2', waitMs: 0 })).toEqual({
      acquired: false,
      queued: false,
    });
    expectCode(() => l.release('m', 11, 14, 1), ErrorCode.NotOwner);
    expectCode(() => l.release('zz', 10, 14, 1), ErrorCode.NotOwner);
    expect(l.release('m', 10, 14, 1)).toEqual({
      released: { name: 'm', lease: 1, token: 10 },
      grant: { name: 'm', lease: 2, waiterId: 'b', token: 14 },
    });
    expect(l.release('m', 14, 15, 2)).toEqual({
      released: { name: 'm', lease: 2, token: 14 },
      grant: { name: 'm', lease: 3, waiterId: 'c', token: 15 },
    });
    expect(l.release('m', 15, 16, 3)).toEqual({ released: { name: 'm', lease: 3, token: 15 } });
    expect(l.size).toBe(0);
    expect(l.describe('m', 3)).toEqual({ name: 'm', waiters: [], lastToken: 0 });
  });

  it('times out waiters in (deadline, name, lease) order without handing anything over', () => {
    const { e, l } = setup();
    expect(e.nextDeadline()).toBe(10_000);
    l.acquire('b', 1, 10, 0, { waiterId: 'h1' });
    l.acquire('a', 1, 11, 0, { waiterId: 'h2' });
    l.acquire('b', 3, 12, 0, { waiterId: 'w3', waitMs: 100 });
    l.acquire('b', 2, 13, 0, { waiterId: 'w2', waitMs: 100 });
    l.acquire('a', 4, 14, 0, { waiterId: 'w4', waitMs: 100 });
    l.acquire('a', 2, 15, 50, { waiterId: 'w5', waitMs: 10 });
    expect(l.nextWaitDeadline()).toBe(60);
    expect(e.nextDeadline()).toBe(60);
    expect(l.expireWaits(100).map((w) => [w.name, w.lease, w.waitDeadline])).toEqual([
      ['a', 2, 60],
      ['a', 4, 100],
      ['b', 2, 100],
      ['b', 3, 100],
    ]);
    expect(l.list(100).map((i) => [i.name, i.holder?.lease, i.waiters.length])).toEqual([
      ['a', 1, 0],
      ['b', 1, 0],
    ]);
  });

  it('a waiter whose wait ran out is skipped at hand-off even before expireWaits', () => {
    const { l } = setup();
    l.acquire('m', 1, 10, 0, { waiterId: 'a' });
    l.acquire('m', 2, 11, 0, { waiterId: 'b', waitMs: 10 });
    l.acquire('m', 3, 12, 0, { waiterId: 'c' });
    expect(l.release('m', 10, 13, 10).grant).toEqual({ name: 'm', lease: 3, waiterId: 'c', token: 13 });
  });

  it('lease end releases and cancels all ended leases first, then hands over by name', () => {
    const { e, l } = setup();
    // lease 1 holds x and y; lease 2 waits on x then holds z; lease 3 waits on x and y.
    l.acquire('x', 1, 10, 0, { waiterId: '1x' });
    l.acquire('y', 1, 11, 0, { waiterId: '1y' });
    l.acquire('z', 2, 12, 0, { waiterId: '2z' });
    l.acquire('x', 2, 13, 0, { waiterId: '2x' });
    l.acquire('x', 3, 14, 0, { waiterId: '3x' });
    l.acquire('y', 3, 15, 0, { waiterId: '3y' });
    l.acquire('z', 4, 16, 0, { waiterId: '4z' });
    const out = e.end([2, 1], 20, 5);
    expect(out.leases.map((x) => x.id)).toEqual([1, 2]);
    expect(out.released).toEqual([
      { name: 'x', lease: 1, token: 10 },
      { name: 'y', lease: 1, token: 11 },
      { name: 'z', lease: 2, token: 12 },
    ]);
    expect(out.cancelled).toEqual([{ name: 'x', lease: 2, waiterId: '2x' }]);
    // x goes to 3 (not 2, which ended in the same entry); y also to 3; z to 4. One grant per lock.
    expect(out.grants).toEqual([
      { name: 'x', lease: 3, waiterId: '3x', token: 20 },
      { name: 'y', lease: 3, waiterId: '3y', token: 20 },
      { name: 'z', lease: 4, waiterId: '4z', token: 20 },
    ]);
    expect(l.locksOf(3)).toEqual({ held: ['x', 'y'], waiting: [] });
  });

  it('never hands a lock to a waiter whose lease is past its deadline', () => {
    const e = new LeaseLockEngine();
    e.leases.grant(1, 10_000, 0);
    e.leases.grant(2, 1000, 0);
    e.leases.grant(3, 10_000, 0);
    e.locks.acquire('m', 1, 10, 0, { waiterId: 'a' });
    e.locks.acquire('m', 2, 11, 0, { waiterId: 'b' });
    e.locks.acquire('m', 3, 12, 0, { waiterId: 'c' });
    // lease 2 is dead at 1000 but not yet ended: skipped, and cancelled when it ends.
    expect(e.locks.release('m', 10, 13, 1000).grant?.lease).toBe(3);
    expect(e.expire(1000, 14).cancelled).toEqual([{ name: 'm', lease: 2, waiterId: 'b' }]);
  });

  it('grants a lock at most once per entry; a pending lock goes over in the next entry', () => {
    const { e, l } = setup();
    l.acquire('m', 1, 10, 0, { waiterId: 'a' });
    l.acquire('m', 2, 11, 0, { waiterId: 'b' });
    l.acquire('m', 3, 12, 0, { waiterId: 'c' });
    // Entry 20: lease 1 ends (m goes to 2 with token 20), then lease 2 is revoked in the same entry.
    expect(e.end([1], 20, 5).grants).toEqual([{ name: 'm', lease: 2, waiterId: 'b', token: 20 }]);
    const revoked = e.revoke(2, 20, 5);
    expect(revoked.released).toEqual([{ name: 'm', lease: 2, token: 20 }]);
    expect(revoked.grants).toEqual([]);
    expect(l.hasPending).toBe(true);
    expectCode(() => l.checkFence({ lock: 'm', token: 20 }, 5), ErrorCode.StaleFence);
    expect(l.acquire('m', 4, 20, 5, { waiterId: 'd', waitMs: 0 })).toEqual({
      acquired: false,
      queued: false,
    });
    expect(l.grantPending(21, 6)).toEqual([{ name: 'm', lease: 3, waiterId: 'c', token: 21 }]);
    expect(l.hasPending).toBe(false);
  });

  it('a lock freed and forgotten within an entry is not granted again in that entry', () => {
    const { l } = setup();
    l.acquire('m', 1, 10, 0, { waiterId: 'a' });
    l.release('m', 10, 10, 0);
    expect(l.size).toBe(0);
    expect(l.acquire('m', 2, 10, 0, { waiterId: 'b', waitMs: 0 })).toEqual({
      acquired: false,
      queued: false,
    });
    expect(l.size).toBe(0);
    expect(l.acquire('m', 2, 10, 0, { waiterId: 'b' })).toEqual({ acquired: false, queued: true });
    expect(l.grantPending(11, 1)).toEqual([{ name: 'm', lease: 2, waiterId: 'b', token: 11 }]);
  });

  it('checkFence accepts only the current holder token while its lease is live', () => {
    const { e, l } = setup();
    expectCode(() => l.checkFence({ lock: 'm', token: 1 }, 0), ErrorCode.StaleFence);
    l.acquire('m', 1, 10, 0, { waiterId: 'a' });
    l.acquire('m', 2, 11, 0, { waiterId: 'b' });
    l.checkFence({ lock: 'm', token: 10 }, 0);
    expectCode(() => l.checkFence({ lock: 'm', token: 11 }, 0), ErrorCode.StaleFence);
    expectCode(() => l.checkFence({ lock: 'm', token: 10 }, 10_000), ErrorCode.StaleFence);
    expectCode(() => l.checkFence({ lock: 'm', token: 0 }, 0), ErrorCode.InvalidArgument);
    expectCode(() => l.checkFence(null as never, 0), ErrorCode.InvalidArgument);
    e.revoke(1, 12, 1);
    expectCode(() => l.checkFence({ lock: 'm', token: 10 }, 1), ErrorCode.StaleFence);
    l.checkFence({ lock: 'm', token: 12 }, 1);
  });

  it('validates its arguments and bounds its queues', () => {
    const e = new LeaseLockEngine({ locks: { waitersPerLockMax: 1, locksMax: 1, nameLengthMax: 4 } });
    for (const id of [1, 2, 3]) e.leases.grant(id, 10_000, 0);
    const l = e.locks;
    expectCode(() => l.acquire('', 1, 10, 0, { waiterId: 'a' }), ErrorCode.InvalidArgument);
    expectCode(() => l.acquire('toolong', 1, 10, 0, { waiterId: 'a' }), ErrorCode.TooLarge);
    expectCode(() => l.acquire('m', 1, 10, 0, { waiterId: 'a', waitMs: -1 }), ErrorCode.InvalidArgument);
    expectCode(() => l.acquire('m', 1, 10, 0, { waiterId: 'a', waitMs: 1.5 }), ErrorCode.InvalidArgument);
    expectCode(() => l.acquire('m', 1, 10, 0, { waiterId: 'x'.repeat(257) }), ErrorCode.TooLarge);
    l.acquire('m', 1, 10, 0, { waiterId: 'a' });
    expectCode(() => l.acquire('n', 1, 11, 0, { waiterId: 'a' }), ErrorCode.Overloaded);
    l.acquire('m', 2, 11, 0, { waiterId: 'b' });
    expectCode(() => l.acquire('m', 3, 12, 0, { waiterId: 'c' }), ErrorCode.Overloaded);
    expectCode(() => l.release('m', 1.5, 12, 0), ErrorCode.InvalidArgument);
    expect(() => l.release('m', 10, 9, 0)).toThrow(/index went back/);
  });
});

describe('snapshot validation', () => {
  function sample(): unknown[] {
    const e = new LeaseLockEngine();
    e.leases.grant(1, 10_000, 0);
    e.leases.grant(2, 10_000, 0);
    e.leases.attachKey(1, 'k');
    e.locks.acquire('m', 1, 10, 0, { waiterId: 'a' });
    e.locks.acquire('m', 2, 11, 0, { waiterId: 'b', waitMs: 5 });
    return [...e.snapshot().parts()];
  }

  it('round-trips', () => {
    const parts = sample();
    const r = LeaseLockEngine.restore(parts);
    expect([...r.snapshot().parts()]).toEqual(parts);
    expect(r.locks.nextWaitDeadline()).toBe(5);
    expect(LockTable.restore(parts.slice(1), LeaseTable.restore(parts.slice(0, 1))).size).toBe(1);
  });

  it('throws CORRUPTED on malformed parts', () => {
    const good = sample() as { t: string; v: number; rows: unknown[][] }[];
    const mutate = (f: (p: { t: string; v: number; rows: unknown[][] }[]) => void): unknown[] => {
      const copy = structuredClone(good);
      f(copy);
      return copy;
    };
    const bad: unknown[][] = [
      [null],
      [42],
      mutate((p) => {
        p[0]!.v = 2;
      }),
      mutate((p) => {
        p[0]!.t = 'locks';
      }),
      mutate((p) => {
        p[0]!.rows[0] = ['lease', 0, 1, 1];
      }),
      mutate((p) => {
        p[0]!.rows.unshift(['key', 'x']);
      }),
      mutate((p) => {
        p[0]!.rows.push(['lease', 1, 10_000, 10_000]); // duplicate id
      }),
      mutate((p) => {
        p[0]!.rows.push(['frob']);
      }),
      mutate((p) => {
        p[1]!.rows.shift(); // no index row
      }),
      mutate((p) => {
        p[1]!.rows.push(['wait', 1, 'again', 0, null]); // holder also waits
      }),
      mutate((p) => {
        p[1]!.rows.push(['wait', 9, 'ghost', 0, null]); // unknown lease
      }),
      mutate((p) => {
        p[1]!.rows.push(['lock', 'n', 0, null]); // neither holder nor waiters
      }),
      mutate((p) => {
        p[1]!.rows.push(['lock', 'a', 0, null]); // out of order
      }),
      mutate((p) => {
        (p[1]!.rows[1] as unknown[])[2] = 99; // lastToken != holder token, above index
      }),
      mutate((p) => {
        p.reverse();
      }),
      mutate((p) => {
        p.pop();
      }),
    ];
    for (const parts of bad) expectCode(() => LeaseLockEngine.restore(parts), ErrorCode.Corrupted);
  });
});

// ---------------------------------------------------------------------------------------
// The naive reference: arrays, linear scans and a sort on every query.

interface MLease {
  ttlMs: number;
  deadline: number;
  keys: Set<string>;
}
interface MWaiter {
  lease: number;
  waiterId: string;
  since: number;
  waitDeadline: number | undefined;
}
interface MLock {
  holder: { lease: number; token: number; since: number; waiterId: string } | undefined;
  queue: MWaiter[];
  lastToken: number;
}

class Model {
  leases = new Map<number, MLease>();
  locks = new Map<string, MLock>();
  lastGrantIndex = new Map<string, number>();

  live(id: number, now: number): boolean {
    const l = this.leases.get(id);
    return l !== undefined && now < l.deadline;
  }

  eligible(w: MWaiter, now: number): boolean {
    return this.live(w.lease, now) && (w.waitDeadline === undefined || now < w.waitDeadline);
  }

  lock(name: string): MLock {
    let l = this.locks.get(name);
    if (!l) {
      l = { holder: undefined, queue: [], lastToken: 0 };
      this.locks.set(name, l);
    }
    return l;
  }

  handOff(name: string, index: number, now: number): Grant | undefined {
    const l = this.lock(name);
    if (l.holder || this.lastGrantIndex.get(name) === index) return undefined;
    const w = l.queue.find((x) => this.eligible(x, now));
    if (!w) return undefined;
    l.queue = l.queue.filter((x) => x !== w);
    l.holder = { lease: w.lease, token: index, since: now, waiterId: w.waiterId };
    l.lastToken = index;
    this.lastGrantIndex.set(name, index);
    return { name, lease: w.lease, waiterId: w.waiterId, token: index };
  }

  grantPending(index: number, now: number): Grant[] {
    const out: Grant[] = [];
    for (const name of [...this.locks.keys()].sort()) {
      const l = this.locks.get(name)!;
      if (!l.holder && l.queue.length > 0) {
        const g = this.handOff(name, index, now);
        if (g) out.push(g);
      }
    }
    return out;
  }

  endLeases(ids: number[], index: number, now: number) {
    const set = new Set(ids);
    const released: { name: string; lease: number; token: number }[] = [];
    const cancelled: { name: string; lease: number; waiterId: string }[] = [];
    const touched: string[] = [];
    for (const [name, l] of this.locks) {
      if (l.holder && set.has(l.holder.lease)) {
        released.push({ name, lease: l.holder.lease, token: l.holder.token });
        l.holder = undefined;
        touched.push(name);
      }
      for (const w of l.queue.filter((x) => set.has(x.lease))) {
        cancelled.push({ name, lease: w.lease, waiterId: w.waiterId });
        touched.push(name);
      }
      l.queue = l.queue.filter((x) => !set.has(x.lease));
    }
    const grants: Grant[] = [];
    for (const name of [...new Set(touched)].sort()) {
      const g = this.handOff(name, index, now);
      if (g) grants.push(g);
    }
    const byNameLease = (a: { name: string; lease: number }, b: { name: string; lease: number }) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : a.lease - b.lease;
    return { released: released.sort(byNameLease), grants, cancelled: cancelled.sort(byNameLease) };
  }

  expireLeases(now: number, index: number) {
    const ended = [...this.leases.entries()]
      .filter(([, l]) => l.deadline <= now)
      .sort(([ia, a], [ib, b]) => a.deadline - b.deadline || ia - ib)
      .map(([id, l]) => ({ id, ttlMs: l.ttlMs, deadline: l.deadline, keys: [...l.keys].sort() }));
    for (const l of ended) this.leases.delete(l.id);
    return {
      leases: ended,
      ...this.endLeases(
        ended.map((l) => l.id),
        index,
        now,
      ),
    };
  }

  endIds(ids: number[], index: number, now: number) {
    const ended = [...ids]
      .sort((a, b) => a - b)
      .map((id) => {
        const l = this.leases.get(id)!;
        this.leases.delete(id);
        return { id, ttlMs: l.ttlMs, deadline: l.deadline, keys: [...l.keys].sort() };
      });
    return { leases: ended, ...this.endLeases(ids, index, now) };
  }

  revoke(id: number, index: number, now: number) {
    const l = this.leases.get(id);
    if (!l) return { error: ErrorCode.LeaseNotFound };
    this.leases.delete(id);
    const lease = { id, ttlMs: l.ttlMs, deadline: l.deadline, keys: [...l.keys].sort() };
    return { leases: [lease], ...this.endLeases([id], index, now) };
  }

  expireWaits(now: number) {
    const out: { name: string; lease: number; waiterId: string; waitDeadline: number; timedOut: true }[] = [];
    for (const [name, l] of this.locks) {
      for (const w of l.queue)
        if (w.waitDeadline !== undefined && w.waitDeadline <= now)
          out.push({
            name,
            lease: w.lease,
            waiterId: w.waiterId,
            waitDeadline: w.waitDeadline,
            timedOut: true,
          });
      l.queue = l.queue.filter((w) => w.waitDeadline === undefined || w.waitDeadline > now);
    }
    return out.sort(
      (a, b) =>
        a.waitDeadline - b.waitDeadline ||
        (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) ||
        a.lease - b.lease,
    );
  }

  acquire(
    name: string,
    lease: number,
    index: number,
    now: number,
    waitMs: number | undefined,
    waiterId: string,
  ) {
    if (!this.live(lease, now)) return { error: ErrorCode.LeaseNotFound };
    const l = this.lock(name);
    if (l.holder?.lease === lease) return { acquired: true, token: l.holder.token, reentrant: true };
    if (l.queue.some((w) => w.lease === lease))
      return waitMs === 0 ? { acquired: false, queued: false } : { error: ErrorCode.InvalidArgument };
    if (!l.holder && this.lastGrantIndex.get(name) !== index) {
      l.holder = { lease, token: index, since: now, waiterId };
      l.lastToken = index;
      this.lastGrantIndex.set(name, index);
      return { acquired: true, token: index, reentrant: false };
    }
    if (waitMs === 0) return { acquired: false, queued: false };
    const waitDeadline = waitMs === undefined ? undefined : now + waitMs;
    l.queue.push({ lease, waiterId, since: now, waitDeadline });
    return waitDeadline === undefined
      ? { acquired: false, queued: true }
      : { acquired: false, queued: true, waitDeadline };
  }

  release(name: string, token: number, index: number, now: number) {
    const l = this.locks.get(name);
    if (!l?.holder || l.holder.token !== token) return { error: ErrorCode.NotOwner };
    const released = { name, lease: l.holder.lease, token };
    l.holder = undefined;
    const grant = this.handOff(name, index, now);
    return grant ? { released, grant } : { released };
  }

  fenceOk(name: string, token: number, now: number): boolean {
    const h = this.locks.get(name)?.holder;
    return h !== undefined && h.token === token && this.live(h.lease, now);
  }

  list(now: number): LockInfo[] {
    const out: LockInfo[] = [];
    for (const name of [...this.locks.keys()].sort()) {
      const l = this.locks.get(name)!;
      if (!l.holder && l.queue.length === 0) continue;
      const waiters = l.queue.map((w) =>
        w.waitDeadline === undefined
          ? { lease: w.lease, waiterId: w.waiterId, since: w.since }
          : { lease: w.lease, waiterId: w.waiterId, since: w.since, waitDeadline: w.waitDeadline },
      );
      const h = l.holder;
      out.push(
        h
          ? {
              name,
              holder: {
                lease: h.lease,
                token: h.token,
                waiterId: h.waiterId,
                since: h.since,
                heldMs: now - h.since,
              },
              waiters,
              lastToken: l.lastToken,
            }
          : { name, waiters, lastToken: 0 },
      );
    }
    return out;
  }
}

/** normalizeList hides lastToken of free locks (the engine forgets it when it forgets a lock). */
function normalizeList(list: LockInfo[]): LockInfo[] {
  return list.map((i) => (i.holder ? i : { ...i, lastToken: 0 }));
}

// ---------------------------------------------------------------------------------------
// The driver: each step is one log entry, applied as the state machine would.

type Cmd =
  | { k: 'grant'; ttl: number }
  | { k: 'keepAlive'; lease: number }
  | { k: 'keepAliveMany'; leases: number[] }
  | { k: 'revoke'; lease: number }
  | { k: 'revokeHolder'; lock: number }
  | { k: 'acquire'; lock: number; lease: number; wait: number | undefined }
  | { k: 'release'; lock: number; token: number }
  | { k: 'fence'; lock: number; lease: number }
  | { k: 'attach'; lease: number; key: number }
  | { k: 'detach'; lease: number; key: number }
  | { k: 'write'; lease: number; key: number; as: number | undefined };

interface Step {
  dt: number;
  /**
   * lag > 0 plays a coarse time wheel: only the leases and waits that ran out `lag` ms ago
   * are ended this entry, so dead-but-not-ended leases and waits meet the commands.
   */
  lag?: number;
  cmds: Cmd[];
}

const lagArb = fc.constantFrom(0, 0, 0, 0, 10, 50);

const LOCK_NAMES = ['a', 'b', 'lock/c'];

const pick = fc.nat({ max: 50 });
const lockPick = fc.nat({ max: LOCK_NAMES.length - 1 });
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant('grant' as const),
      ttl: fc.oneof(
        { weight: 5, arbitrary: fc.integer({ min: 50, max: 600 }) },
        { weight: 1, arbitrary: fc.integer({ min: 1, max: 50 }) },
        { weight: 1, arbitrary: fc.constantFrom(0, 2.5, 5000) },
      ),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('keepAlive' as const), lease: pick }) },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('keepAliveMany' as const),
      leases: fc.array(pick, { maxLength: 4 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('revoke' as const), lease: pick }) },
  {
    weight: 5,
    arbitrary: fc.record({
      k: fc.constant('acquire' as const),
      lock: lockPick,
      lease: pick,
      wait: fc.constantFrom(undefined, undefined, undefined, 0, 5, 40, 200),
    }),
  },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('release' as const), lock: lockPick, token: pick }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('fence' as const), lock: lockPick, lease: pick }) },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant('attach' as const), lease: pick, key: fc.nat({ max: 5 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant('detach' as const), lease: pick, key: fc.nat({ max: 5 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('write' as const),
      lease: pick,
      key: fc.nat({ max: 5 }),
      as: fc.option(pick, { nil: undefined }),
    }),
  },
);
const stepArb: fc.Arbitrary<Step> = fc.record({
  lag: lagArb,
  dt: fc.oneof(
    { weight: 2, arbitrary: fc.constant(0) },
    { weight: 4, arbitrary: fc.integer({ min: 1, max: 10 }) },
    { weight: 1, arbitrary: fc.integer({ min: 10, max: 150 }) },
  ),
  cmds: fc.oneof(
    { weight: 6, arbitrary: fc.array(cmdArb, { minLength: 1, maxLength: 1 }) },
    { weight: 3, arbitrary: fc.array(cmdArb, { minLength: 2, maxLength: 3 }) },
    // A burst in one entry: hand the lock over, end the new holder's lease, ask for it again.
    {
      weight: 1,
      arbitrary: fc.tuple(lockPick, pick).map(([lock, lease]): Cmd[] => [
        { k: 'release', lock, token: 0 },
        { k: 'revokeHolder', lock },
        { k: 'acquire', lock, lease, wait: undefined },
      ]),
    },
  ),
});

/**
 * World runs steps against an engine and (optionally) the model, checks the engine against
 * the model and the safety properties, and records every output.
 */
class World {
  index = 0;
  now = 0;
  /** ids: every lease id ever granted, so picks can name dead leases too. */
  ids: number[] = [];
  /** tokens: per lock, every token ever granted, in order. */
  tokens = new Map<string, number[]>();
  /** believed: per lease, the token its client believes it holds for each lock. */
  believed = new Map<number, Map<string, number>>();
  /** accepted: per lock, the tokens of the fenced writes the resource applied, in order. */
  accepted = new Map<string, number[]>();
  /** keyLease: the simulated store's binding of keys to leases. */
  keyLease = new Map<string, number>();
  outputs: unknown[] = [];
  staleRejected = 0;
  /** handOffs counts grants to queued waiters; pendingGrants those made by grantPending. */
  handOffs = 0;
  pendingGrants = 0;

  constructor(
    public e: LeaseLockEngine,
    public model: Model | undefined,
  ) {}

  /** leaseOf picks one of the 6 most recent leases (live or not), or one never granted. */
  leaseOf(p: number): number {
    const j = p % 7;
    if (j === 6 || this.ids.length === 0) return 999_999;
    return this.ids[this.ids.length - 1 - (j % this.ids.length)]!;
  }

  out(label: string, engineValue: unknown, modelValue?: unknown, hasModel = false): void {
    this.outputs.push([label, engineValue]);
    if (this.model && hasModel) expect(engineValue, `${label} at index ${this.index}`).toEqual(modelValue);
  }

  /** onGrant checks a grant's safety and updates the clients' beliefs. */
  onGrant(name: string, lease: number, token: number): void {
    const prior = this.tokens.get(name) ?? [];
    const last = prior.at(-1);
    expect(last === undefined || token > last, `token ${token} after ${last} on ${name}`).toBe(true);
    expect(this.e.leases.isLive(lease, this.now), `granted ${name} to dead lease ${lease}`).toBe(true);
    prior.push(token);
    this.tokens.set(name, prior);
    let b = this.believed.get(lease);
    if (!b) this.believed.set(lease, (b = new Map()));
    b.set(name, token);
  }

  onGrants(grants: Grant[]): void {
    this.handOffs += grants.length;
    for (const g of grants) this.onGrant(g.name, g.lease, g.token);
  }

  step(s: Step): void {
    this.index += 1;
    this.now += s.dt;
    const { e, model: m, index, now } = this;
    // The order the state machine follows in every entry.
    const pending = e.locks.grantPending(index, now);
    this.out('pending', pending, m?.grantPending(index, now), true);
    this.pendingGrants += pending.length;
    this.onGrants(pending);
    // No lease acts early or late: liveness flips exactly at the deadline.
    for (const id of this.ids) {
      const d = e.leases.deadlineOf(id);
      expect(e.leases.isLive(id, now)).toBe(d !== undefined && now < d);
    }
    const lag = s.lag ?? 0;
    const cutoff = Math.max(0, now - lag);
    let expired: LeasesEnded;
    if (lag === 0) {
      expired = e.expire(now, index);
      this.out('expire', expired, m?.expireLeases(now, index), true);
    } else {
      const ids = e.leases
        .list()
        .filter((l) => l.deadline <= cutoff)
        .map((l) => l.id);
      expired = e.end(ids, index, now);
      this.out('expire', expired, m?.endIds(ids, index, now), true);
    }
    for (const l of expired.leases) for (const k of l.keys) this.keyLease.delete(k);
    for (const l of expired.leases) if (l.deadline > cutoff) throw new Error(`lease ${l.id} ended early`);
    for (const l of e.leases.list()) if (l.deadline <= cutoff) throw new Error(`lease ${l.id} not ended`);
    this.onGrants(expired.grants);
    const timedOut = e.locks.expireWaits(cutoff);
    this.out('expireWaits', timedOut, m?.expireWaits(cutoff), true);
    for (const c of s.cmds) this.apply(c);
    this.out('list', e.locks.list(now), m ? m.list(now) : undefined, false);
    if (m) expect(normalizeList(e.locks.list(now))).toEqual(m.list(now));
  }

  revoke(id: number): void {
    const { e, model: m, index, now } = this;
    const r = codeOf(() => e.revoke(id, index, now));
    this.out('revoke', r, m?.revoke(id, index, now), true);
    if (!('error' in r)) {
      this.onGrants(r.grants);
      for (const k of r.leases[0]!.keys) this.keyLease.delete(k);
    }
  }

  apply(c: Cmd): void {
    const { e, model: m, index, now } = this;
    switch (c.k) {
      case 'grant': {
        if (this.ids.includes(index)) return; // one grant per entry: the id is the entry index
        const r = codeOf(() => e.leases.grant(index, c.ttl, now));
        const valid = Number.isInteger(c.ttl) && c.ttl >= 1 && c.ttl <= 1000;
        if (m && valid) m.leases.set(index, { ttlMs: c.ttl, deadline: now + c.ttl, keys: new Set() });
        this.out(
          'grant',
          r,
          valid ? { id: index, ttlMs: c.ttl, deadline: now + c.ttl } : { error: ErrorCode.InvalidArgument },
          true,
        );
        if (valid) this.ids.push(index);
        return;
      }
      case 'keepAlive': {
        const id = this.leaseOf(c.lease);
        const r = codeOf(() => e.leases.keepAlive(id, now));
        let want: unknown = { error: ErrorCode.LeaseNotFound };
        const ml = m?.leases.get(id);
        if (m && ml && m.live(id, now)) {
          ml.deadline = now + ml.ttlMs;
          want = { id, ttlMs: ml.ttlMs, deadline: ml.deadline };
        }
        this.out('keepAlive', r, want, m !== undefined);
        return;
      }
      case 'keepAliveMany': {
        const ids = c.leases.map((p) => this.leaseOf(p));
        const r = e.leases.keepAliveMany(ids, now);
        const want = ids.map((id) => {
          const ml = m?.leases.get(id);
          if (!m || !ml || !m.live(id, now)) return { id, ok: false, code: ErrorCode.LeaseNotFound };
          ml.deadline = now + ml.ttlMs;
          return { id, ok: true, ttlMs: ml.ttlMs, deadline: ml.deadline };
        });
        this.out('keepAliveMany', r, want, m !== undefined);
        return;
      }
      case 'revoke':
        this.revoke(this.leaseOf(c.lease));
        return;
      case 'revokeHolder': {
        // Revoke whichever lease holds the lock now (a client ending its session).
        const h = e.locks.describe(LOCK_NAMES[c.lock]!, now).holder;
        if (h) this.revoke(h.lease);
        return;
      }
      case 'acquire': {
        const name = LOCK_NAMES[c.lock]!;
        const lease = this.leaseOf(c.lease);
        const waiterId = `w${index}`;
        const r = codeOf(() => e.locks.acquire(name, lease, index, now, { waiterId, waitMs: c.wait }));
        this.out('acquire', r, m?.acquire(name, lease, index, now, c.wait, waiterId), true);
        if (!('error' in r) && r.acquired && !r.reentrant) this.onGrant(name, lease, r.token);
        return;
      }
      case 'release': {
        const name = LOCK_NAMES[c.lock]!;
        // Mostly a token that was once valid (current or stale), sometimes a made-up one.
        const known = this.tokens.get(name) ?? [];
        const token =
          known.length === 0 || c.token % 5 === 4
            ? c.token + 1
            : known[known.length - 1 - (c.token % Math.min(3, known.length))]!;
        const r = codeOf(() => e.locks.release(name, token, index, now));
        this.out('release', r, m?.release(name, token, index, now), true);
        if (!('error' in r) && r.grant) this.onGrants([r.grant]);
        return;
      }
      case 'fence': {
        // A client writes to the protected resource with the token it believes it holds.
        const name = LOCK_NAMES[c.lock]!;
        const lease = this.leaseOf(c.lease);
        const token = this.believed.get(lease)?.get(name);
        if (token === undefined) return;
        const r = codeOf(() => e.locks.checkFence({ lock: name, token }, now));
        this.out(
          'fence',
          r === undefined ? 'ok' : r,
          m ? (m.fenceOk(name, token, now) ? 'ok' : { error: ErrorCode.StaleFence }) : undefined,
          true,
        );
        const all = this.tokens.get(name) ?? [];
        if (r === undefined) {
          // Applied: it must carry the newest token ever granted for this lock...
          expect(token).toBe(all.at(-1));
          const acc = this.accepted.get(name) ?? [];
          // ...and the resource sees tokens that never go back.
          expect(acc.length === 0 || token >= acc.at(-1)!).toBe(true);
          acc.push(token);
          this.accepted.set(name, acc);
        } else {
          expect(r).toEqual({ error: ErrorCode.StaleFence });
          this.staleRejected += 1;
        }
        return;
      }
      case 'attach': {
        const id = this.leaseOf(c.lease);
        const r = codeOf(() => e.leases.attachKey(id, `k${c.key}`));
        const ml = m?.leases.get(id);
        if (ml) ml.keys.add(`k${c.key}`);
        this.out('attach', r, ml || !m ? undefined : { error: ErrorCode.LeaseNotFound }, m !== undefined);
        return;
      }
      case 'detach': {
        const id = this.leaseOf(c.lease);
        const r = e.leases.detachKey(id, `k${c.key}`);
        this.out('detach', r, m?.leases.get(id)?.keys.delete(`k${c.key}`) ?? false, m !== undefined);
        return;
      }
      case 'write': {
        // A put of key k (bound to `keyLease`) carrying lease `as`, as the state machine would do it.
        const key = `k${c.key}`;
        const bound = this.keyLease.get(key);
        const as = c.as === undefined ? undefined : this.leaseOf(c.as);
        const r = codeOf(() => {
          e.leases.checkWrite(bound, as, now);
          if (as !== undefined) e.leases.requireLive(as, now);
          return 'ok';
        });
        const ownerBlocks = bound !== undefined && as !== bound && m?.live(bound, now);
        const want = ownerBlocks
          ? { error: ErrorCode.NotOwner }
          : as !== undefined && !m?.live(as, now)
            ? { error: ErrorCode.LeaseNotFound }
            : 'ok';
        this.out('write', r, want, m !== undefined);
        if (r === 'ok') {
          if (bound !== undefined && bound !== as) {
            e.leases.detachKey(bound, key);
            m?.leases.get(bound)?.keys.delete(key);
          }
          if (as !== undefined) {
            e.leases.attachKey(as, key);
            m?.leases.get(as)?.keys.add(key);
            this.keyLease.set(key, as);
          } else this.keyLease.delete(key);
        }
        return;
      }
    }
  }
}

const packr = new Packr({ useRecords: false });

describe('lease and lock model', () => {
  it('matches the naive reference and keeps tokens, liveness and FIFO safe', () => {
    let stale = 0;
    let grants = 0;
    let handOffs = 0;
    let pendingGrants = 0;
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 30, maxLength: 150, size: 'max' }), (steps) => {
        const w = new World(new LeaseLockEngine(TEST_CONFIG), new Model());
        for (const s of steps) w.step(s);
        stale += w.staleRejected;
        handOffs += w.handOffs;
        pendingGrants += w.pendingGrants;
        for (const t of w.tokens.values()) grants += t.length;
      }),
      { numRuns: 300 },
    );
    // The generator must actually exercise stale fences and hand-offs.
    console.log(
      `model: ${grants} grants (${handOffs} hand-offs, ${pendingGrants} deferred), ${stale} stale fences rejected`,
    );
    expect(stale).toBeGreaterThan(100);
    expect(grants).toBeGreaterThan(1000);
    expect(handOffs).toBeGreaterThan(200);
    expect(pendingGrants).toBeGreaterThan(0);
  });

  it('fencing: no write carrying a superseded token is ever applied', () => {
    // Heavier on acquires, expiries and fenced writes; the checks live in World.apply('fence').
    const fenceStep = fc.record({
      dt: fc.integer({ min: 0, max: 25 }),
      lag: lagArb,
      cmds: fc.array(
        fc.oneof(
          fc.record({ k: fc.constant('grant' as const), ttl: fc.integer({ min: 50, max: 300 }) }),
          fc.record({ k: fc.constant('keepAlive' as const), lease: fc.nat({ max: 8 }) }),
          fc.record({
            k: fc.constant('acquire' as const),
            lock: fc.nat({ max: 1 }),
            lease: fc.nat({ max: 8 }),
            wait: fc.option(fc.constantFrom(0, 100), { nil: undefined }),
          }),
          fc.record({
            k: fc.constant('release' as const),
            lock: fc.nat({ max: 1 }),
            token: fc.nat({ max: 8 }),
          }),
          fc.record({ k: fc.constant('revoke' as const), lease: fc.nat({ max: 8 }) }),
          fc.record({
            k: fc.constant('fence' as const),
            lock: fc.nat({ max: 1 }),
            lease: fc.nat({ max: 8 }),
          }),
          fc.record({
            k: fc.constant('fence' as const),
            lock: fc.nat({ max: 1 }),
            lease: fc.nat({ max: 8 }),
          }),
        ),
        { minLength: 1, maxLength: 2 },
      ),
    });
    let stale = 0;
    let applied = 0;
    fc.assert(
      fc.property(fc.array(fenceStep, { minLength: 30, maxLength: 150, size: 'max' }), (steps) => {
        const w = new World(new LeaseLockEngine(TEST_CONFIG), undefined);
        for (const s of steps) w.step(s);
        stale += w.staleRejected;
        for (const acc of w.accepted.values()) {
          applied += acc.length;
          for (let i = 1; i < acc.length; i++) expect(acc[i]!).toBeGreaterThanOrEqual(acc[i - 1]!);
        }
      }),
      { numRuns: 300 },
    );
    console.log(`fencing: ${applied} fenced writes applied, ${stale} stale ones rejected`);
    expect(stale).toBeGreaterThan(100);
    expect(applied).toBeGreaterThan(100);
  });

  it('FIFO: a lock goes to its surviving waiters in the order they queued', () => {
    const waiterArb = fc.record({
      ttl: fc.integer({ min: 50, max: 1000 }),
      wait: fc.option(fc.integer({ min: 1, max: 1000 }), { nil: undefined }),
    });
    fc.assert(
      fc.property(
        fc.array(waiterArb, { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 1, max: 100 }),
        (waiters, holdMs) => {
          const e = new LeaseLockEngine(TEST_CONFIG);
          e.leases.grant(1, 1000, 0);
          e.locks.acquire('m', 1, 1, 0, { waiterId: 'holder' });
          let index = 1;
          for (const w of waiters) {
            index += 1;
            e.leases.grant(index, w.ttl, 0);
            e.locks.acquire('m', index, index, 0, { waiterId: `w${index}`, waitMs: w.wait });
          }
          // Every holdMs, one entry: the holder releases (or its lease has ended).
          const order: number[] = [];
          let now = 0;
          while (e.locks.describe('m', now).holder) {
            now += holdMs;
            index += 1;
            const grants = [...e.locks.grantPending(index, now), ...e.expire(now, index).grants];
            e.locks.expireWaits(now);
            const h = e.locks.describe('m', now).holder;
            if (grants.length === 0 && h) {
              const r = e.locks.release('m', h.token, index, now);
              if (r.grant) grants.push(r.grant);
            }
            expect(grants.length).toBeLessThanOrEqual(1);
            for (const g of grants) order.push(g.lease);
          }
          // The reference: at each hand-off time t, drop the waiters whose lease or wait has run
          // out by t; the lock goes to the first one left, in queue order.
          const expected: number[] = [];
          let remaining = waiters.map((w, i) => ({
            id: i + 2,
            end: Math.min(w.ttl, w.wait ?? Number.POSITIVE_INFINITY),
          }));
          for (let t = holdMs; remaining.length > 0; t += holdMs) {
            remaining = remaining.filter((w) => w.end > t);
            const next = remaining.shift();
            if (next) expected.push(next.id);
          }
          expect(order).toEqual(expected);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('lease and lock snapshot', () => {
  it('a restored engine behaves exactly like the original', () => {
    fc.assert(
      fc.property(
        fc.array(stepArb, { minLength: 2, maxLength: 100, size: 'max' }),
        fc.nat(),
        (steps, cut) => {
          const k = cut % steps.length;
          const a = new World(new LeaseLockEngine(TEST_CONFIG), undefined);
          for (const s of steps.slice(0, k)) a.step(s);
          const snap = a.e.snapshot();
          const parts = [...snap.parts()].map((p) => packr.unpack(packr.pack(p)));
          const b = new World(LeaseLockEngine.restore(parts, TEST_CONFIG), undefined);
          Object.assign(b, {
            index: a.index,
            now: a.now,
            ids: [...a.ids],
            tokens: new Map([...a.tokens].map(([n, t]) => [n, [...t]])),
            believed: new Map([...a.believed].map(([l, m]) => [l, new Map(m)])),
            accepted: new Map([...a.accepted].map(([n, t]) => [n, [...t]])),
            keyLease: new Map(a.keyLease),
          });
          const before = [...a.e.snapshot().parts()];
          a.outputs = [];
          for (const s of steps.slice(k)) {
            a.step(s);
            b.step(s);
          }
          // The snapshot taken before the suffix is a frozen view: still what it was.
          expect([...snap.parts()]).toEqual(before);
          expect(b.outputs).toEqual(a.outputs);
          expect([...b.e.snapshot().parts()]).toEqual([...a.e.snapshot().parts()]);
          expect(b.e.leases.list()).toEqual(a.e.leases.list());
          expect(b.e.locks.nextWaitDeadline()).toBe(a.e.locks.nextWaitDeadline());
          expect(b.e.leases.nextDeadline()).toBe(a.e.leases.nextDeadline());
        },
      ),
      { numRuns: 200 },
    );
  });

  it('splits large tables into bounded parts', () => {
    const e = new LeaseLockEngine();
    for (let id = 1; id <= 1500; id++) e.leases.grant(id, 10_000, 0);
    for (let i = 0; i < 2500; i++) e.leases.attachKey(1, `key${i}`);
    for (let id = 1; id <= 1200; id++) e.locks.acquire(`l${id}`, id, 2000 + id, 0, { waiterId: 'x' });
    const parts = [...e.snapshot().parts()] as { rows: unknown[] }[];
    for (const p of parts) expect(p.rows.length).toBeLessThanOrEqual(1000);
    expect(parts.length).toBe(4 + 2);
    const r = LeaseLockEngine.restore(parts);
    expect(r.leases.keysOf(1).length).toBe(2500);
    expect(r.locks.size).toBe(1200);
  });
});
