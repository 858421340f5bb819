/**
 * The permission matrix on a live cluster (issue 10: "for every operation: allowed, denied,
 * and denied with no side effect"). One in-process cluster of three nodes with auth on serves
 * the whole file; its auth file has:
 * - root (role root: everything);
 * - rw: read and write on store default under `app/`;
 * - ro: read on store default under `app/`;
 * - whole: read and write on the whole store default (no prefix);
 * - nobody: authenticated, with no roles;
 * - idxadmin: admin on store idx2 only (and read under default/app/, to connect a client).
 *
 * The matrix is a table of client operations. For each: root sets the scene, the user who
 * may not is refused with PERMISSION_DENIED, root reads back the state the op would have
 * changed and finds it unchanged, and then the user who may succeeds. A second table sends
 * each request kind (map, cmd, read, admin, status, the watch and keepalive streams) on a
 * raw connection that never authenticated (UNAUTHENTICATED) and on one authenticated as
 * nobody (PERMISSION_DENIED). Then the prefix edge cases, watches, tokens and passwords, and
 * the auth file changing under the running cluster. The unit rules themselves (needsOf,
 * authorize) are test/node/auth.test.ts.
 *
 * Three tests were written first as failures this file found, and pass since the fixes: a
 * live watch under a prefix grant (its revision probe key lay outside the prefix); a refused
 * keepalive stream (the lease handle retried it forever); a removed user's open connections
 * (they kept their rights).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  addRole,
  addToken,
  addUser,
  initAuthFile,
  parseGrant,
  readAuthFile,
  writeAuthFile,
} from '../../src/admin/cmd-auth.js';
import type { DkvClient } from '../../src/client/client.js';
import type { Lease } from '../../src/client/leases.js';
import type { Lock } from '../../src/client/locks.js';
import type { GroupItem } from '../../src/client/scan.js';
import type { WatchEvent } from '../../src/client/watch.js';
import { isDkvError } from '../../src/errors.js';
import { RpcClient } from '../../src/transport/rpc-client.js';
import { InProcCluster } from '../client/fixture.js';

type User = 'root' | 'rw' | 'ro' | 'whole' | 'idxadmin';
const pw = (user: string): string => `${user}-password`;

const dir = mkdtempSync(join(tmpdir(), 'dkv-perms-'));
const file = join(dir, 'auth.json');
let cluster: InProcCluster | undefined;
const clients = new Map<User, DkvClient>();
const raws: RpcClient[] = [];
let rwToken = '';
let expiredToken = '';

beforeAll(async () => {
  initAuthFile(file, pw('root'));
  let f = readAuthFile(file);
  f = addRole(f, 'app-rw', [parseGrant('default/app/=read,write')]);
  f = addRole(f, 'app-ro', [parseGrant('default/app/=read')]);
  f = addRole(f, 'default-rw', [parseGrant('default=read,write')]);
  f = addUser(f, 'rw', pw('rw'), ['app-rw']);
  f = addUser(f, 'ro', pw('ro'), ['app-ro']);
  f = addUser(f, 'whole', pw('whole'), ['default-rw']);
  f = addUser(f, 'nobody', pw('nobody'), []);
  f = addRole(f, 'idx2-admin', [parseGrant('idx2=admin'), parseGrant('default/app/=read')]);
  f = addUser(f, 'idxadmin', pw('idxadmin'), ['idx2-admin']);
  const live = addToken(f, 'rw-token', 'rw');
  const dead = addToken(live.file, 'old-token', 'rw', Date.now() - 60_000);
  rwToken = live.token;
  expiredToken = dead.token;
  writeAuthFile(file, dead.file);
  cluster = await InProcCluster.start({ nodes: 3, partitions: 2, config: { auth: { file } } });
  for (const u of ['root', 'rw', 'ro', 'whole', 'idxadmin'] as const)
    clients.set(u, await cluster.client({ auth: { user: u, password: pw(u) } }));
  // An index on the default store, for the query rows.
  await as('root').defineIndexes([{ name: 'color', kind: 'eq', field: 'color' }]);
});

afterAll(async () => {
  for (const r of raws.splice(0)) await r.close().catch(() => undefined);
  await cluster?.close();
  rmSync(dir, { recursive: true, force: true });
});

function as(user: User): DkvClient {
  const c = clients.get(user);
  if (c === undefined) throw new Error(`no client for ${user}`);
  return c;
}

function fixture(): InProcCluster {
  if (cluster === undefined) throw new Error('no cluster');
  return cluster;
}

/** codeOf is 'ok' when `p` resolves, else the DkvError's code (anything else is rethrown). */
async function codeOf(p: Promise<unknown> | (() => Promise<unknown>)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p);
    return 'ok';
  } catch (err) {
    if (isDkvError(err)) return err.code;
    throw err;
  }
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const keysOf = (items: readonly GroupItem[]): string[] => items.map((i) => i.key);

/** rootValue is what root reads at `key` (undefined: absent). */
async function rootValue(key: string): Promise<unknown> {
  return (await as('root').get(key))?.value;
}

/** leases lists every lease of the default store, as root reads them (group, wire id, deadline). */
async function leases(): Promise<{ group: number; id: number; deadline: number }[]> {
  const root = as('root');
  const out: { group: number; id: number; deadline: number }[] = [];
  for (const g of await root.groups()) {
    const list = (await root.read({ group: g.id }, { op: 'lease.list' }, 'linearizable')) as {
      id: number;
      deadline: number;
    }[];
    for (const l of list) out.push({ group: g.id, id: l.id, deadline: l.deadline });
  }
  return out.sort((a, b) => a.group - b.group || a.id - b.id);
}

async function leaseIds(): Promise<string[]> {
  return (await leases()).map((l) => `${l.group}/${l.id}`);
}

/** lockState is a lock as root sees it, without the fields that move with time. */
async function lockState(name: string): Promise<unknown> {
  const d = await as('root').lock.describe(name);
  return {
    holder: d.holder && { lease: d.holder.lease, token: d.holder.token },
    waiters: d.waiters.length,
    last: d.lastToken,
  };
}

async function storeNames(): Promise<string[]> {
  return (await as('root').admin.listStores()).map((s) => s.name).sort();
}

/** Held carries what a row's setup made (as root) to its run and cleanup. */
interface Held {
  lease?: Lease;
  lock?: Lock;
}

/**
 * Row is one operation of the matrix. `setup` (as root) makes the state that `state` reads;
 * `run` is the operation; `mayNot` is refused with PERMISSION_DENIED and `state` reads the same
 * before and after; then `may` runs it and `after` checks the result (and cleans up).
 */
interface Row {
  readonly name: string;
  readonly may: User;
  readonly mayNot: User;
  readonly setup?: (h: Held) => Promise<void>;
  readonly run: (c: DkvClient, h: Held) => Promise<unknown>;
  readonly state?: (h: Held) => Promise<unknown>;
  readonly after?: (result: unknown, h: Held) => Promise<void> | void;
}

const rows: Row[] = [
  {
    name: 'put',
    may: 'rw',
    mayNot: 'ro',
    setup: async () => void (await as('root').put('app/put', 'old')),
    run: (c) => c.put('app/put', 'new'),
    state: () => rootValue('app/put'),
    after: async () => expect(await rootValue('app/put')).toBe('new'),
  },
  {
    name: 'put with ifVersion',
    may: 'whole',
    mayNot: 'rw',
    setup: async () => void (await as('root').put('data/pv', 'v1')),
    run: (c) => c.put('data/pv', 'v2', { ifVersion: 1 }),
    state: async () => (await as('root').get('data/pv'))?.version,
    after: async () => expect(await as('root').get('data/pv')).toMatchObject({ value: 'v2', version: 2 }),
  },
  {
    name: 'put with ifAbsent',
    may: 'rw',
    mayNot: 'ro',
    run: (c) => c.put('app/absent', 1, { ifAbsent: true }),
    state: () => rootValue('app/absent'),
    after: async () => expect(await rootValue('app/absent')).toBe(1),
  },
  {
    name: 'get (linearizable)',
    may: 'whole',
    mayNot: 'ro',
    setup: async () => void (await as('root').put('data/get', 42)),
    run: (c) => c.get('data/get'),
    after: (r) => expect((r as GroupItem).value).toBe(42),
  },
  {
    name: 'get (serializable)',
    may: 'whole',
    mayNot: 'ro',
    setup: async () => void (await as('root').put('data/get-s', 43)),
    run: (c) => c.get('data/get-s', { consistency: 'serializable' }),
  },
  {
    name: 'delete',
    may: 'rw',
    mayNot: 'ro',
    setup: async () => void (await as('root').put('app/del', 1)),
    run: (c) => c.delete('app/del'),
    state: () => rootValue('app/del'),
    after: async (r) => {
      expect(r).toBe(true);
      expect(await rootValue('app/del')).toBeUndefined();
    },
  },
  {
    name: 'scan with a prefix',
    may: 'whole',
    mayNot: 'ro',
    setup: async () => {
      await as('root').put('data/s1', 1);
      await as('root').put('data/s2', 2);
    },
    run: (c) => collect(c.scan({ prefix: 'data/s' })),
    after: (r) => expect(keysOf(r as GroupItem[])).toEqual(['data/s1', 'data/s2']),
  },
  {
    name: 'count with a prefix',
    may: 'whole',
    mayNot: 'ro',
    run: (c) => c.count({ prefix: 'data/s' }),
    after: (r) => expect(r).toBe(2),
  },
  {
    name: 'txn',
    may: 'rw',
    mayNot: 'ro',
    setup: async () => void (await as('root').put('app/{tx}a', 0)),
    run: (c) =>
      c.txn({
        compare: [{ key: 'app/{tx}a', target: 'value', op: '=', value: 0 }],
        success: [
          { op: 'put', key: 'app/{tx}a', value: 1 },
          { op: 'put', key: 'app/{tx}b', value: 1 },
        ],
      }),
    state: async () => [await rootValue('app/{tx}a'), await rootValue('app/{tx}b')],
    after: async (r) => {
      expect(r).toMatchObject({ succeeded: true });
      expect([await rootValue('app/{tx}a'), await rootValue('app/{tx}b')]).toEqual([1, 1]);
    },
  },
  {
    name: 'txn comparing a key outside the prefix',
    may: 'whole',
    mayNot: 'rw',
    setup: async () => void (await as('root').put('data/{ty}c', 1)),
    run: (c) =>
      c.txn({
        compare: [{ key: 'data/{ty}c', target: 'exists', op: '=', value: true }],
        success: [{ op: 'put', key: 'app/{ty}d', value: 'set' }],
      }),
    state: () => rootValue('app/{ty}d'),
    after: async (r) => {
      expect(r).toMatchObject({ succeeded: true });
      expect(await rootValue('app/{ty}d')).toBe('set');
    },
  },
  {
    name: 'counter add',
    may: 'rw',
    mayNot: 'ro',
    setup: async () => void (await as('root').counter('app/ctr').set(5)),
    run: (c) => c.counter('app/ctr').add(1),
    state: () => as('root').counter('app/ctr').get(),
    after: (r) => expect(r).toBe(6),
  },
  {
    name: 'counter get',
    may: 'whole',
    mayNot: 'ro',
    setup: async () => void (await as('root').counter('data/ctr').set(7)),
    run: (c) => c.counter('data/ctr').get(),
    after: (r) => expect(r).toBe(7),
  },
  {
    name: 'counter set',
    may: 'rw',
    mayNot: 'ro',
    setup: async () => void (await as('root').counter('app/ctr-set').set(1)),
    run: (c) => c.counter('app/ctr-set').set(9),
    state: () => as('root').counter('app/ctr-set').get(),
    after: async () => expect(await as('root').counter('app/ctr-set').get()).toBe(9),
  },
  {
    name: 'counter delete',
    may: 'rw',
    mayNot: 'ro',
    setup: async () => void (await as('root').counter('app/ctr-del').set(1)),
    run: (c) => c.counter('app/ctr-del').delete(),
    state: () => as('root').counter('app/ctr-del').get(),
    after: async (r) => {
      expect(r).toBe(true);
      expect(await as('root').counter('app/ctr-del').get()).toBe(0);
    },
  },
  {
    name: 'lease grant',
    may: 'rw',
    mayNot: 'ro',
    run: (c) => c.lease.grant(5000, { keepAlive: false, key: 'app/lease' }),
    state: () => leaseIds(),
    after: async (r) => {
      const lease = r as Lease;
      expect((await leases()).some((l) => l.group === lease.group && l.id === lease.wireId)).toBe(true);
      await lease.revoke();
    },
  },
  {
    name: 'lease revoke',
    may: 'rw',
    mayNot: 'ro',
    setup: async (h) => void (h.lease = await as('root').lease.grant(30_000, { keepAlive: false })),
    run: (c, h) => c.lease.revoke(h.lease!.id),
    state: () => leaseIds(),
    after: async (_r, h) => {
      const l = h.lease!;
      expect((await leases()).some((x) => x.group === l.group && x.id === l.wireId)).toBe(false);
    },
  },
  {
    name: 'lease keepAlive',
    may: 'rw',
    mayNot: 'ro',
    setup: async (h) => void (h.lease = await as('root').lease.grant(30_000, { keepAlive: false })),
    run: (c, h) => c.lease.keepAlive(h.lease!.id),
    // A renewal would move the lease's replicated deadline.
    state: async (h) => (await leases()).find((l) => l.group === h.lease!.group && l.id === h.lease!.wireId),
    after: async (r, h) => {
      expect(r).toMatchObject({ id: h.lease!.id, ttlMs: 30_000 });
      await h.lease!.revoke();
    },
  },
  {
    name: 'lock acquire',
    may: 'rw',
    mayNot: 'ro',
    run: (c) => c.lock.acquire('app/lock1', { waitMs: 0, ttlMs: 5000 }),
    state: () => lockState('app/lock1'),
    after: async (r) => {
      const lock = r as Lock;
      expect(await lockState('app/lock1')).toMatchObject({ holder: { token: lock.token } });
      await lock.release();
      expect(await lockState('app/lock1')).toMatchObject({ holder: undefined });
    },
  },
  {
    name: 'lock release',
    may: 'rw',
    mayNot: 'ro',
    setup: async (h) =>
      void (h.lock = await as('root').lock.acquire('app/lock2', { waitMs: 0, ttlMs: 5000 })),
    run: (c, h) => c.lock.release('app/lock2', h.lock!.token),
    state: () => lockState('app/lock2'),
    after: async (_r, h) => {
      expect(await lockState('app/lock2')).toMatchObject({ holder: undefined });
      await h.lock!.lease.revoke();
    },
  },
  {
    name: 'lock describe',
    may: 'whole',
    mayNot: 'ro',
    run: (c) => c.lock.describe('data/lock'),
    after: (r) => expect(r).toMatchObject({ name: 'data/lock', lastToken: 0 }),
  },
  {
    name: 'query (needs read on the whole store)',
    may: 'whole',
    mayNot: 'rw',
    setup: async () => void (await as('root').put('app/q1', { color: 'red' })),
    run: (c) => c.query({ index: 'color', eq: 'red' }),
    after: (r) => expect(keysOf(r as GroupItem[])).toContain('app/q1'),
  },
  {
    name: 'query count',
    may: 'whole',
    mayNot: 'ro',
    run: (c) => c.queryCount({ index: 'color', eq: 'red' }),
    after: (r) => expect(r).toBeGreaterThanOrEqual(1),
  },
  {
    name: 'define indexes (admin on the store)',
    may: 'root',
    mayNot: 'whole',
    run: (c) =>
      c.defineIndexes([
        { name: 'color', kind: 'eq', field: 'color' },
        { name: 'size', kind: 'range', field: 'size' },
      ]),
    // Before: no index `size`; a denied definition must not add it.
    setup: async () => expect(await codeOf(as('root').query({ index: 'size', gte: 0 }))).not.toBe('ok'),
    state: () => codeOf(as('root').query({ index: 'size', gte: 0 })),
    after: async () => expect(await codeOf(as('root').query({ index: 'size', gte: 0 }))).toBe('ok'),
  },
  {
    name: 'admin createStore',
    may: 'root',
    mayNot: 'whole',
    run: (c) =>
      c.admin.createStore('idx', { partitions: 1, indexes: [{ name: 'color', kind: 'eq', field: 'color' }] }),
    state: () => storeNames(),
    after: async () => expect(await storeNames()).toContain('idx'),
  },
  {
    name: 'admin describeStore',
    may: 'root',
    mayNot: 'whole',
    run: (c) => c.admin.describeStore('idx'),
    after: (r) => expect(r).toMatchObject({ name: 'idx', partitions: 1 }),
  },
  {
    name: 'admin listStores',
    may: 'root',
    mayNot: 'whole',
    run: (c) => c.admin.listStores(),
  },
  {
    name: 'admin deleteStore',
    may: 'root',
    mayNot: 'whole',
    run: (c) => c.admin.deleteStore('idx'),
    state: () => storeNames(),
    after: async () => expect(await storeNames()).not.toContain('idx'),
  },
  {
    name: 'admin pendingMoves (placement)',
    may: 'root',
    mayNot: 'whole',
    run: (c) => c.admin.pendingMoves(),
  },
];

describe('the matrix: allowed, denied, and denied with no side effect', () => {
  test.each(rows)('$name: $may may; $mayNot gets PERMISSION_DENIED and nothing changes', async (row) => {
    const h: Held = {};
    await row.setup?.(h);
    const before = await row.state?.(h);
    expect(await codeOf(() => row.run(as(row.mayNot), h))).toBe('PERMISSION_DENIED');
    if (row.state) expect(await row.state(h)).toEqual(before);
    const result = await row.run(as(row.may), h);
    await row.after?.(result, h);
  });
});

describe('admin on one store (idxadmin: admin on idx2)', () => {
  test('creates, describes and deletes idx2; touches no other store and no cluster action', async () => {
    const c = as('idxadmin');
    const stores = await storeNames();
    const members = async (): Promise<number[]> =>
      (await as('root').status()).members.map((m) => m.id).sort();
    const membersBefore = await members();
    expect(await codeOf(c.admin.createStore('other', { partitions: 1 }))).toBe('PERMISSION_DENIED');
    expect(await codeOf(c.admin.describeStore('default'))).toBe('PERMISSION_DENIED');
    expect(await codeOf(c.admin.deleteStore('default'))).toBe('PERMISSION_DENIED');
    expect(await codeOf(c.admin.listStores())).toBe('PERMISSION_DENIED');
    expect(await codeOf(c.admin.pendingMoves())).toBe('PERMISSION_DENIED');
    expect(await codeOf(c.admin.rebalance())).toBe('PERMISSION_DENIED');
    expect(await codeOf(c.admin.removeMember(3))).toBe('PERMISSION_DENIED');
    expect(await codeOf(c.admin.addMember('127.0.0.1:1'))).toBe('PERMISSION_DENIED');
    expect(await storeNames()).toEqual(stores);
    expect(await members()).toEqual(membersBefore);
    await c.admin.createStore('idx2', { partitions: 1 });
    expect(await c.admin.describeStore('idx2')).toMatchObject({ name: 'idx2', partitions: 1 });
    expect(await storeNames()).toContain('idx2');
    // Admin is not read or write: the data of its own store stays out of reach.
    expect(
      await codeOf(fixture().client({ store: 'idx2', auth: { user: 'idxadmin', password: pw('idxadmin') } })),
    ).toBe('PERMISSION_DENIED');
    await c.admin.deleteStore('idx2');
    expect(await storeNames()).toEqual(stores);
  });
});

describe('what any grant on the store allows', () => {
  // Ops a prefix-bound user may do whatever its prefix: no connected user here lacks them
  // (nobody cannot even fetch the partition map), so their refusals are in the raw table.
  test('ro may read under app/, read leases and locks there, and see the cluster status', async () => {
    const ro = as('ro');
    await as('root').put('app/ro-1', 'r');
    expect((await ro.get('app/ro-1'))?.value).toBe('r');
    expect((await ro.get('app/ro-1', { consistency: 'serializable' }))?.value).toBeOneOf(['r', undefined]);
    expect(keysOf(await collect(ro.scan({ prefix: 'app/ro-' })))).toEqual(['app/ro-1']);
    expect(await ro.count({ prefix: 'app/ro-' })).toBe(1);
    expect(await ro.lock.describe('app/lock1')).toMatchObject({ name: 'app/lock1' });
    const lease = await as('root').lease.grant(5000, { keepAlive: false });
    try {
      expect(await ro.lease.timeToLive(lease.id)).toMatchObject({ id: lease.id, ttlMs: 5000 });
    } finally {
      await lease.revoke();
    }
    expect((await ro.status()).members.length).toBe(3);
    expect((await as('rw').status()).members.length).toBe(3);
  });
});

/** RawRequest is one request kind as DkvClient sends it, for a raw connection. */
interface RawRequest {
  readonly name: string;
  readonly op: string;
  readonly args: Record<string, unknown>;
  readonly stream?: boolean;
  /** Any authenticated user may (nobody too). */
  readonly anyone?: boolean;
}

const rawRequests: RawRequest[] = [
  { name: 'map', op: 'map', args: { store: 'default' } },
  {
    name: 'put',
    op: 'cmd',
    args: { store: 'default', key: 'app/raw', cmd: { op: 'put', key: 'app/raw', value: 1 } },
  },
  {
    name: 'delete',
    op: 'cmd',
    args: { store: 'default', key: 'app/put', cmd: { op: 'delete', key: 'app/put' } },
  },
  {
    name: 'txn',
    op: 'cmd',
    args: {
      store: 'default',
      key: 'app/raw',
      cmd: { op: 'txn', compare: [], success: [{ op: 'put', key: 'app/raw', value: 2 }], failure: [] },
    },
  },
  {
    name: 'counter add',
    op: 'cmd',
    args: { store: 'default', key: 'app/raw-ctr', cmd: { op: 'counter.add', name: 'app/raw-ctr', delta: 1 } },
  },
  {
    name: 'lease grant',
    op: 'cmd',
    args: { store: 'default', group: 1, cmd: { op: 'lease.grant', ttlMs: 5000 } },
  },
  {
    name: 'lock acquire',
    op: 'cmd',
    args: {
      store: 'default',
      key: 'app/raw-lock',
      cmd: { op: 'lock.acquire', name: 'app/raw-lock', ttlMs: 5000, waitMs: 0 },
    },
  },
  {
    name: 'define indexes (configure)',
    op: 'cmd',
    args: { store: 'default', group: 1, cmd: { op: 'configure', indexes: [] } },
  },
  {
    name: 'get',
    op: 'read',
    args: {
      store: 'default',
      key: 'app/put',
      read: { op: 'get', key: 'app/put' },
      consistency: 'serializable',
    },
  },
  {
    name: 'scan',
    op: 'read',
    args: { store: 'default', group: 1, read: { op: 'scan', prefix: 'app/' }, consistency: 'serializable' },
  },
  {
    name: 'query',
    op: 'read',
    args: {
      store: 'default',
      group: 1,
      read: { op: 'query', query: { index: 'color', eq: 'red' } },
      consistency: 'serializable',
    },
  },
  {
    name: 'lease ttl',
    op: 'read',
    args: { store: 'default', group: 1, read: { op: 'lease.ttl', id: 1 }, consistency: 'serializable' },
  },
  { name: 'admin store.create', op: 'admin', args: { action: 'store.create', name: 'raw' } },
  { name: 'admin store.list', op: 'admin', args: { action: 'store.list' } },
  { name: 'admin member.remove', op: 'admin', args: { action: 'member.remove', id: 3 } },
  { name: 'admin rebalance', op: 'admin', args: { action: 'rebalance' } },
  { name: 'status', op: 'status', args: {}, anyone: true },
  { name: 'nodeStatus', op: 'nodeStatus', args: {}, anyone: true },
  {
    name: 'watch (stream)',
    op: 'watch',
    args: { store: 'default', group: 1, prefix: 'app/', snapshot: true },
    stream: true,
  },
  {
    name: 'keepalive (stream)',
    op: 'keepalive',
    args: { store: 'default', group: 1, lease: 1 },
    stream: true,
  },
];

/** rawClient opens a raw connection to node `i`'s client port, authenticated as `user` if given. */
async function rawClient(i: number, user?: string): Promise<RpcClient> {
  const c = await RpcClient.connect({
    host: '127.0.0.1',
    port: fixture().cfgs[i]!.clientPort,
    frameBytesMax: 16 << 20,
    connectTimeoutMs: 2000,
  });
  raws.push(c);
  if (user !== undefined) await c.call('auth', { user, password: pw(user) }, { timeoutMs: 5000 });
  return c;
}

/** ask sends a raw request: a call's answer, or a stream's first item. */
async function ask(c: RpcClient, r: RawRequest): Promise<unknown> {
  if (r.stream !== true) return c.call(r.op, r.args, { timeoutMs: 5000 });
  const s = c.stream(r.op, r.args);
  try {
    return await s.next();
  } finally {
    s.close();
  }
}

describe('raw connections: who has not authenticated, and who has no grant', () => {
  let before: unknown;
  beforeAll(async () => {
    before = await sideEffects();
  });

  /** sideEffects is what the refused raw requests would have changed. */
  async function sideEffects(): Promise<unknown> {
    const root = as('root');
    return {
      raw: await rootValue('app/raw'),
      put: await rootValue('app/put'),
      ctr: await root.counter('app/raw-ctr').get(),
      lock: await lockState('app/raw-lock'),
      leases: await leaseIds(),
      stores: await storeNames(),
      members: (await root.status()).members.map((m) => m.id).sort(),
      color: keysOf(await root.query({ index: 'color', eq: 'red' })),
    };
  }

  test.each(rawRequests)(
    '$name: UNAUTHENTICATED before auth; nobody: PERMISSION_DENIED unless anyone may',
    async (r) => {
      const anon = await rawClient(raws.length % 3);
      expect(await codeOf(ask(anon, r))).toBe('UNAUTHENTICATED');
      const nobody = await rawClient(raws.length % 3, 'nobody');
      expect(await codeOf(ask(nobody, r))).toBe(r.anyone ? 'ok' : 'PERMISSION_DENIED');
    },
  );

  test('none of the refused requests changed anything', async () => {
    expect(await sideEffects()).toEqual(before);
  });

  test('nobody cannot even connect a client: the partition map needs a grant on the store', async () => {
    expect(await codeOf(fixture().client({ auth: { user: 'nobody', password: pw('nobody') } }))).toBe(
      'PERMISSION_DENIED',
    );
  });
});

describe('prefix edges (rw: read and write under app/)', () => {
  test('app/ covers neither apple, nor app, nor a wider prefix; it covers a narrower one', async () => {
    const rw = as('rw');
    const root = as('root');
    for (const key of ['apple', 'app', 'ap/x']) {
      expect(await codeOf(rw.put(key, 1))).toBe('PERMISSION_DENIED');
      expect(await rootValue(key)).toBeUndefined();
      expect(await codeOf(rw.get(key))).toBe('PERMISSION_DENIED');
    }
    expect(await codeOf(rw.counter('apple').add(1))).toBe('PERMISSION_DENIED');
    expect(await root.counter('apple').get()).toBe(0);
    expect(await codeOf(rw.lock.acquire('apple', { waitMs: 0, ttlMs: 5000 }))).toBe('PERMISSION_DENIED');
    expect(await lockState('apple')).toEqual({ holder: undefined, waiters: 0, last: 0 });

    await root.put('app/x1', 1);
    await root.put('app/y1', 1);
    expect(await codeOf(collect(rw.scan({ prefix: 'ap' })))).toBe('PERMISSION_DENIED');
    expect(await codeOf(collect(rw.scan({ prefix: 'app' })))).toBe('PERMISSION_DENIED');
    expect(await codeOf(collect(rw.scan({})))).toBe('PERMISSION_DENIED');
    expect(await codeOf(rw.count({ prefix: 'ap' }))).toBe('PERMISSION_DENIED');
    expect(keysOf(await collect(rw.scan({ prefix: 'app/x' })))).toEqual(['app/x1']);
    expect(await rw.count({ prefix: 'app/x' })).toBe(1);
    // Ranges: both ends under app/ (or at its successor, app0, as the exclusive end).
    expect(keysOf(await collect(rw.scan({ start: 'app/x', end: 'app/y' })))).toEqual(['app/x1']);
    expect(keysOf(await collect(rw.scan({ start: 'app/x', end: 'app0' })))).toContain('app/y1');
    expect(await codeOf(collect(rw.scan({ start: 'app/x', end: 'b' })))).toBe('PERMISSION_DENIED');
    expect(await codeOf(collect(rw.scan({ start: 'app/x' })))).toBe('PERMISSION_DENIED');
    expect(await codeOf(collect(rw.scan({ start: 'a', end: 'app/y' })))).toBe('PERMISSION_DENIED');
    // Paging under a narrower prefix stays allowed (every page's `after` is under app/x).
    for (let i = 2; i <= 5; i++) await root.put(`app/x${i}`, i);
    expect(keysOf(await collect(rw.scan({ prefix: 'app/x', pageSize: 2 })))).toEqual([
      'app/x1',
      'app/x2',
      'app/x3',
      'app/x4',
      'app/x5',
    ]);
  });

  test('a txn touching one allowed and one denied key is refused as a whole and writes neither', async () => {
    const rw = as('rw');
    await as('root').put('zz/{h}keep', 'kept');
    const cases = [
      [
        { op: 'put', key: 'app/{h}ok', value: 1 },
        { op: 'put', key: 'zz/{h}no', value: 1 },
      ],
      [
        { op: 'put', key: 'app/{h}ok', value: 1 },
        { op: 'delete', key: 'zz/{h}keep' },
      ],
      [
        { op: 'put', key: 'app/{h}ok', value: 1 },
        { op: 'get', key: 'zz/{h}keep' },
      ],
    ] as const;
    for (const success of cases)
      expect(await codeOf(rw.txn({ compare: [], success }))).toBe('PERMISSION_DENIED');
    // The failure branch counts too, though it would not run.
    expect(
      await codeOf(
        rw.txn({
          compare: [],
          success: [{ op: 'put', key: 'app/{h}ok', value: 1 }],
          failure: [{ op: 'put', key: 'zz/{h}no', value: 1 }],
        }),
      ),
    ).toBe('PERMISSION_DENIED');
    expect(await rootValue('app/{h}ok')).toBeUndefined();
    expect(await rootValue('zz/{h}no')).toBeUndefined();
    expect(await rootValue('zz/{h}keep')).toBe('kept');
    // The same txn within the prefix goes through.
    expect(await rw.txn({ compare: [], success: [{ op: 'put', key: 'app/{h}ok', value: 1 }] })).toMatchObject(
      {
        succeeded: true,
      },
    );
  });

  test('a fence naming a lock outside the prefix is refused (put, counter, txn), and writes nothing', async () => {
    const rw = as('rw');
    const fence = { lock: 'locks/f', token: 1 };
    expect(await codeOf(rw.put('app/f', 1, { fence }))).toBe('PERMISSION_DENIED');
    expect(await rootValue('app/f')).toBeUndefined();
    expect(await codeOf(rw.counter('app/fc').add(1, { fence }))).toBe('PERMISSION_DENIED');
    expect(await as('root').counter('app/fc').get()).toBe(0);
    expect(
      await codeOf(rw.txn({ compare: [], success: [{ op: 'put', key: 'app/f', value: 1 }], fence })),
    ).toBe('PERMISSION_DENIED');
    expect(await rootValue('app/f')).toBeUndefined();
    // A fence on a lock under the prefix passes.
    const lock = await rw.lock.acquire('app/flock', { waitMs: 0, ttlMs: 5000 });
    try {
      await rw.put('app/f', 2, { fence: lock.fence });
      expect(await rootValue('app/f')).toBe(2);
    } finally {
      await lock.release();
    }
  });

  test('revoking a lease while releasing a lock outside the prefix is refused, and the lease stays', async () => {
    const rw = as('rw');
    const lease = await rw.lease.grant(5000, { keepAlive: false });
    const listed = async (): Promise<boolean> =>
      (await leases()).some((l) => l.group === lease.group && l.id === lease.wireId);
    try {
      expect(
        await codeOf(
          rw.mutate(
            { group: lease.group },
            { op: 'lease.revoke', id: lease.wireId, lock: { name: 'locks/x', token: 1 } },
          ),
        ),
      ).toBe('PERMISSION_DENIED');
      expect(await listed()).toBe(true);
    } finally {
      await lease.revoke();
    }
    expect(await listed()).toBe(false);
  });
});

describe('watch', () => {
  /** firstEvent opens `w`'s iterator, runs `write` once the watch is ready, and returns the first event. */
  async function firstEvent(
    w: ReturnType<DkvClient['watch']>,
    write: () => Promise<unknown>,
  ): Promise<WatchEvent | undefined> {
    try {
      const it = w[Symbol.asyncIterator]();
      const next = it.next();
      next.catch(() => undefined); // awaited below, unless ready fails first
      await w.ready;
      await write();
      return (await next).value as WatchEvent | undefined;
    } finally {
      w.close();
    }
  }

  test('ro may watch under app/ (from a snapshot) and sees a write', async () => {
    const ev = await firstEvent(as('ro').watch({ prefix: 'app/w/', snapshot: true }), () =>
      as('root').put('app/w/1', 'x'),
    );
    expect(ev).toMatchObject({ type: 'put', key: 'app/w/1', value: 'x' });
    const one = await firstEvent(as('ro').watch({ key: 'app/w/2', snapshot: true }), () =>
      as('root').put('app/w/2', 'y'),
    );
    expect(one).toMatchObject({ type: 'put', key: 'app/w/2', value: 'y' });
  });

  test('whole may open a live watch (no snapshot)', async () => {
    const ev = await firstEvent(as('whole').watch({ prefix: 'data/lw/' }), () =>
      as('root').put('data/lw/1', 'z'),
    );
    expect(ev).toMatchObject({ type: 'put', key: 'data/lw/1', value: 'z' });
  });

  // Found by this file: a live watch (neither snapshot nor fromRevision) first learns each
  // group's revision with a probe, a snapshot watch of the key "\u0000dkv-probe-<n>", outside
  // any prefix grant. The probe now needs only a read right on the store.
  test('ro may open a live watch under app/ (its revision probe is allowed)', async () => {
    const ev = await firstEvent(as('ro').watch({ prefix: 'app/lw/' }), () => as('root').put('app/lw/1', 'z'));
    expect(ev).toMatchObject({ type: 'put', key: 'app/lw/1', value: 'z' });
  });

  test('a watch outside the grant fails: its first next() rejects with PERMISSION_DENIED', async () => {
    for (const opts of [
      { prefix: 'data/', snapshot: true },
      { prefix: 'ap', snapshot: true },
      { prefix: '', snapshot: true },
      { key: 'data/wk', snapshot: true },
      { key: 'data/wk', fromRevision: 0 },
    ]) {
      const w = as('ro').watch(opts);
      try {
        expect(await codeOf(w[Symbol.asyncIterator]().next())).toBe('PERMISSION_DENIED');
        expect(w.closed).toBe(true);
      } finally {
        w.close();
      }
    }
  });
});

describe('the keepalive stream', () => {
  /** attachRo has ro attach root's lease (reading it is allowed; renewing it is not). */
  async function attachRo(): Promise<{ lease: Lease; att: Lease; deadline: () => Promise<unknown> }> {
    const lease = await as('root').lease.grant(30_000, { keepAlive: false });
    const att = await as('ro').lease.attach(lease.id, { intervalMs: 200 });
    const deadline = async (): Promise<unknown> =>
      (await leases()).find((l) => l.group === lease.group && l.id === lease.wireId)?.deadline;
    return { lease, att, deadline };
  }

  test("ro attaching root's lease renews nothing: its keepalive stream is refused", async () => {
    const { lease, att, deadline } = await attachRo();
    try {
      const before = await deadline();
      expect(before).toBeDefined();
      await new Promise((r) => setTimeout(r, 800));
      expect(att.renewals).toBe(0);
      expect(await deadline()).toEqual(before);
    } finally {
      att.close();
      await lease.revoke();
    }
  });

  // Found by this file: a keepalive stream refused with PERMISSION_DENIED was retried with
  // backoff for as long as the handle lived. It now ends the handle ('lost', with the error).
  test('a refused keepalive stream ends the lease handle', async () => {
    const { lease, att } = await attachRo();
    try {
      await new Promise((r) => setTimeout(r, 1000));
      expect(att.state).toBe('lost');
    } finally {
      att.close();
      await lease.revoke();
    }
  });
});

describe('authentication', () => {
  const connect = (auth: { user: string; password: string } | { token: string }) =>
    fixture().client({ auth, requestTimeoutMs: 4000 });

  test('a wrong password, an unknown user, an expired token and an unknown token are UNAUTHENTICATED', async () => {
    expect(await codeOf(connect({ user: 'rw', password: 'wrong' }))).toBe('UNAUTHENTICATED');
    expect(await codeOf(connect({ user: 'mallory', password: 'x' }))).toBe('UNAUTHENTICATED');
    expect(await codeOf(connect({ token: expiredToken }))).toBe('UNAUTHENTICATED');
    expect(await codeOf(connect({ token: `dkv_${'0'.repeat(64)}` }))).toBe('UNAUTHENTICATED');
    expect(await codeOf(connect({ token: `${rwToken}x` }))).toBe('UNAUTHENTICATED');
    const raw = await rawClient(0);
    await expect(raw.call('auth', { token: expiredToken }, { timeoutMs: 5000 })).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
      message: expect.stringMatching(/expired/),
    });
    // A failed auth leaves the connection unauthenticated.
    expect(await codeOf(raw.call('map', { store: 'default' }, { timeoutMs: 5000 }))).toBe('UNAUTHENTICATED');
  });

  test("a valid token acts as its user: rw's rights, no more", async () => {
    const c = await connect({ token: rwToken });
    await c.put('app/tok', 1);
    expect(await rootValue('app/tok')).toBe(1);
    expect(await codeOf(c.put('data/tok', 1))).toBe('PERMISSION_DENIED');
    expect(await rootValue('data/tok')).toBeUndefined();
  });
});

describe('the auth file changes while the cluster runs', () => {
  /** onEveryNode polls a raw login as `user` on every node until each gives `want`. */
  async function onEveryNode(
    user: string,
    password: string,
    want: 'ok' | 'UNAUTHENTICATED',
  ): Promise<number> {
    const t0 = Date.now();
    for (let i = 0; i < 3; i++) {
      const c = await rawClient(i);
      for (;;) {
        if ((await codeOf(c.call('auth', { user, password }, { timeoutMs: 5000 }))) === want) break;
        if (Date.now() - t0 > 5000) throw new Error(`node ${i + 1}: login as ${user} never gave ${want}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    return Date.now() - t0;
  }

  test('a user added to the file can log in within seconds; once removed, new connections are refused', async () => {
    expect(await codeOf(fixture().client({ auth: { user: 'late', password: 'late-pw' } }))).toBe(
      'UNAUTHENTICATED',
    );
    writeAuthFile(file, addUser(readAuthFile(file), 'late', 'late-pw', ['app-rw']));
    expect(await onEveryNode('late', 'late-pw', 'ok')).toBeLessThan(3000);
    const late = await fixture().client({ auth: { user: 'late', password: 'late-pw' } });
    await late.put('app/late', 1);
    expect(await codeOf(late.put('data/late', 1))).toBe('PERMISSION_DENIED');

    const f = readAuthFile(file);
    writeAuthFile(file, { ...f, users: f.users.filter((u) => u.name !== 'late') });
    expect(await onEveryNode('late', 'late-pw', 'UNAUTHENTICATED')).toBeLessThan(3000);
    expect(await codeOf(fixture().client({ auth: { user: 'late', password: 'late-pw' } }))).toBe(
      'UNAUTHENTICATED',
    );
    // The others are unaffected.
    expect((await as('rw').put('app/after-reload', 1)).version).toBe(1);
  });

  // Found by this file: the principal was kept on the connection's session, so a removed user
  // kept its rights on connections opened before. Each use now revalidates it against the
  // current file (one compare when nothing changed).
  test("a removed user's open connections are refused within seconds", async () => {
    writeAuthFile(file, addUser(readAuthFile(file), 'gone', 'gone-pw', ['app-rw']));
    await onEveryNode('gone', 'gone-pw', 'ok');
    const gone = await fixture().client({ auth: { user: 'gone', password: 'gone-pw' } });
    await gone.put('app/gone-1', 1);
    const f = readAuthFile(file);
    writeAuthFile(file, { ...f, users: f.users.filter((u) => u.name !== 'gone') });
    await onEveryNode('gone', 'gone-pw', 'UNAUTHENTICATED');
    expect(await codeOf(gone.put('app/gone-2', 1))).toBe('UNAUTHENTICATED');
    expect(await rootValue('app/gone-2')).toBeUndefined();
  });

  test('a role narrowed in the file narrows open connections too', async () => {
    let f = addRole(readAuthFile(file), 'narrowing', [parseGrant('default/app/=read,write')]);
    writeAuthFile(file, addUser(f, 'narrow', 'narrow-pw', ['narrowing']));
    await onEveryNode('narrow', 'narrow-pw', 'ok');
    const n = await fixture().client({ auth: { user: 'narrow', password: 'narrow-pw' } });
    await n.put('app/narrow-1', 1);
    f = addRole(readAuthFile(file), 'narrowing', [parseGrant('default/app/=read')]);
    writeAuthFile(file, f);
    let code = 'ok';
    for (let i = 0; i < 30 && code === 'ok'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      code = await codeOf(n.put('app/narrow-2', i));
    }
    expect(code).toBe('PERMISSION_DENIED');
    expect((await n.get('app/narrow-1'))?.value).toBe(1); // reading is still granted
  });

  test('a user whose password changed must authenticate again on open connections', async () => {
    writeAuthFile(file, addUser(readAuthFile(file), 'rotate', 'old-pw', ['app-rw']));
    await onEveryNode('rotate', 'old-pw', 'ok');
    const c = await fixture().client({ auth: { user: 'rotate', password: 'old-pw' } });
    await c.put('app/rotate-1', 1);
    writeAuthFile(file, addUser(readAuthFile(file), 'rotate', 'new-pw', ['app-rw']));
    let code = 'ok';
    for (let i = 0; i < 30 && code === 'ok'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      code = await codeOf(c.put('app/rotate-2', i));
    }
    expect(code).toBe('UNAUTHENTICATED');
  });
});
