/**
 * Per-store quotas on a live in-process cluster: keys, bytes, leases, locks (each partition
 * group holds a share: ceil(quota / partitions)) and watches (per node). A refusal is
 * QUOTA_EXCEEDED and writes nothing; deletes, overwrites and releases stay allowed.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { DkvClient } from '../../src/client/client.js';
import { checkNodeConfig, checkQuotas, QUOTA_DEFAULTS } from '../../src/node/config.js';
import { InProcCluster } from '../client/fixture.js';

let c: InProcCluster;
let root: DkvClient;

beforeAll(async () => {
  // The nodes' default quotas apply to stores without their own: here 1 lease per partition.
  c = await InProcCluster.start({ partitions: 2, config: { quotas: { leases: 2 } } });
  root = await c.client();
}, 60_000);
afterAll(async () => {
  await c?.close();
});

async function storeWith(name: string, quotas: Record<string, number>, partitions = 1): Promise<DkvClient> {
  await root.admin.createStore(name, { partitions, quotas });
  return c.client({ store: name });
}

describe('quotas', () => {
  test('keys: a new key past the quota is refused and not written; overwrites and deletes are not', async () => {
    const s = await storeWith('qkeys', { keys: 3 });
    for (const k of ['a', 'b', 'c']) await s.put(k, k);
    await expect(s.put('d', 'd')).rejects.toMatchObject({
      code: 'QUOTA_EXCEEDED',
      message: expect.stringMatching(/keys quota/),
    });
    expect(await s.get('d')).toBeUndefined();
    await s.put('a', 'again'); // an overwrite adds no key
    expect((await s.get('a'))?.value).toBe('again');
    expect(await s.delete('b')).toBe(true);
    await s.put('d', 'd'); // room again
    await expect(s.put('e', 'e')).rejects.toMatchObject({ code: 'QUOTA_EXCEEDED' });
    const desc = (await root.admin.describeStore('qkeys')) as unknown as { quotas: Record<string, number> };
    expect(desc.quotas.keys).toBe(3);
  });

  test('bytes: a put that would take the store past its bytes is refused', async () => {
    const s = await storeWith('qbytes', { bytes: 1000 });
    await s.put('k1', 'x'.repeat(600));
    await expect(s.put('k2', 'x'.repeat(600))).rejects.toMatchObject({
      code: 'QUOTA_EXCEEDED',
      message: expect.stringMatching(/bytes quota/),
    });
    expect(await s.get('k2')).toBeUndefined();
    await s.put('k2', 'x'.repeat(200));
  });

  test('the share is per partition group: ceil(quota / partitions)', async () => {
    const s = await storeWith('qshare', { keys: 4 }, 2); // 2 keys per group
    let ok = 0;
    let refused = 0;
    for (let i = 0; i < 40 && refused === 0; i++) {
      try {
        await s.put(`k${i}`, i);
        ok++;
      } catch (err) {
        expect(err).toMatchObject({ code: 'QUOTA_EXCEEDED' });
        refused++;
      }
    }
    expect(refused).toBe(1);
    expect(ok).toBeGreaterThanOrEqual(2);
    expect(ok).toBeLessThanOrEqual(4);
  });

  test('leases and locks', async () => {
    const s = await storeWith('qlease', { leases: 1, locks: 1 });
    const l = await s.lease.grant(10_000);
    await expect(s.lease.grant(10_000)).rejects.toMatchObject({ code: 'QUOTA_EXCEEDED' });
    await l.revoke();
    const l2 = await s.lease.grant(10_000); // room again after the revoke
    await l2.revoke();
    const lock = await s.lock.acquire('one', { ttlMs: 10_000 });
    // A second lock needs a lease (over quota with the lock's own) and a lock (over quota).
    await expect(s.lock.acquire('two', { ttlMs: 10_000, waitMs: 0 })).rejects.toMatchObject({
      code: 'QUOTA_EXCEEDED',
    });
    await lock.release();
  });

  test('the nodes default quotas apply to a store without its own', async () => {
    const d = await c.client(); // store default, partitions 2: 1 lease per group
    const leases = [];
    let refused = false;
    for (let i = 0; i < 6 && !refused; i++) {
      try {
        leases.push(await d.lease.grant(10_000));
      } catch (err) {
        expect(err).toMatchObject({ code: 'QUOTA_EXCEEDED' });
        refused = true;
      }
    }
    expect(refused).toBe(true);
    for (const l of leases) await l.revoke();
  });

  test('watches: per node, past the quota a watch fails with QUOTA_EXCEEDED; closing one makes room', async () => {
    const s = await storeWith('qwatch', { watches: 2 });
    const open = async (key: string) => {
      const w = s.watch({ prefix: key });
      const it = w[Symbol.asyncIterator]();
      const first = it.next();
      return { w, first };
    };
    const w1 = await open('a');
    const w2 = await open('b');
    await s.put('a', 1);
    await s.put('b', 1);
    expect((await w1.first).value).toMatchObject({ key: 'a' });
    expect((await w2.first).value).toMatchObject({ key: 'b' });
    const w3 = await open('c');
    await expect(w3.first).rejects.toMatchObject({ code: 'QUOTA_EXCEEDED' });
    await w1.w.close();
    await new Promise((r) => setTimeout(r, 100));
    const w4 = await open('d');
    await s.put('d', 1);
    expect((await w4.first).value).toMatchObject({ key: 'd' });
    await w2.w.close();
    await w4.w.close();
  });

  test('bad quotas are refused, naming the field', async () => {
    expect(() => checkQuotas({ keys: -1 }, QUOTA_DEFAULTS)).toThrow(/quotas\.keys|keys must be/);
    expect(() => checkQuotas({ rows: 1 }, QUOTA_DEFAULTS)).toThrow(/quotas\.rows/);
    expect(checkQuotas({ keys: 5 }, QUOTA_DEFAULTS)).toEqual({ ...QUOTA_DEFAULTS, keys: 5 });
    await expect(root.admin.createStore('qbad', { quotas: { keys: -5 } })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });
});

describe('configured limits', () => {
  let one: InProcCluster | undefined;
  afterAll(async () => {
    await one?.close();
  });

  test('keys, values and transactions past the configured limits are refused at the door', async () => {
    one = await InProcCluster.start({
      nodes: 1,
      partitions: 1,
      config: { keyBytesMax: 16, valueBytesMax: 100, txnOpsMax: 2, watchBufferMax: 5, connectionsMax: 8 },
    });
    const s = await one.client();
    await s.put('k'.repeat(16), 'x'.repeat(90));
    await expect(s.put('k'.repeat(17), 1)).rejects.toMatchObject({
      code: 'TOO_LARGE',
      message: expect.stringMatching(/keyBytesMax/),
    });
    await expect(s.put('v', 'x'.repeat(120))).rejects.toMatchObject({
      code: 'TOO_LARGE',
      message: expect.stringMatching(/valueBytesMax/),
    });
    expect(await s.get('v')).toBeUndefined();
    const put = (key: string) => ({ op: 'put' as const, key, value: 1 });
    await s.txn({ compare: [], success: [put('{t}1'), put('{t}2')], failure: [] });
    await expect(
      s.txn({ compare: [], success: [put('{t}3'), put('{t}4'), put('{t}5')], failure: [] }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/txnOpsMax/),
    });
    expect(await s.get('{t}3')).toBeUndefined();
  });

  test('limits can only be lowered below the state machine ceiling, and bad values are refused by name', () => {
    const base = { id: 1, dataDir: '/x', clientPort: 1, peerPort: 2, peers: [] };
    expect(() => checkNodeConfig({ ...base, keyBytesMax: 5000 })).toThrow(
      /keyBytesMax must be an integer in \[1, 4096\]/,
    );
    expect(() => checkNodeConfig({ ...base, valueBytesMax: 2 << 20 })).toThrow(/valueBytesMax/);
    expect(() => checkNodeConfig({ ...base, connectionsMax: 0 })).toThrow(/connectionsMax/);
    const cfg = checkNodeConfig(base);
    expect([
      cfg.keyBytesMax,
      cfg.valueBytesMax,
      cfg.txnOpsMax,
      cfg.connectionsMax,
      cfg.watchBufferMax,
    ]).toEqual([4096, 1 << 20, 128, 4096, 1000]);
  });
});
