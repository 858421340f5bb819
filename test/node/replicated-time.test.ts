/**
 * Replicated time under a moving wall clock (node.ts `replicatedNow`): a leader's wall clock
 * that jumps forward or back never ends a lease or a TTL early, and never runs time
 * backwards. The harness's clock nemesis does this to real nodes; here a SkewedClock drives
 * one in-process node.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { checkNodeConfig } from '../../src/node/config.js';
import { DkvNode } from '../../src/node/node.js';
import { SkewedClock } from '../../src/node/test-hooks.js';
import { sleep } from './harness.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function start(clock: SkewedClock): Promise<DkvNode> {
  const dir = mkdtempSync(join(tmpdir(), 'dkv-time-'));
  cleanup.push(async () => rmSync(dir, { recursive: true, force: true }));
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
  const node = await DkvNode.start(cfg, { network: false, clock });
  cleanup.push(() => node.stop().catch(() => undefined));
  for (let i = 0; i < 500 && !node.health().ok; i++) await sleep(10);
  expect(node.health().ok).toBe(true);
  return node;
}

const get = (node: DkvNode, key: string) =>
  node.handle('read', { store: 'default', key, read: { op: 'get', key } }) as Promise<{
    value: unknown;
  } | null>;

describe('replicated time', () => {
  it('a forward jump of the leader wall clock ends no lease and no TTL early; a backward one stops nothing', async () => {
    const clock = new SkewedClock();
    const node = await start(clock);
    const lease = (await node.handle('cmd', {
      store: 'default',
      group: 1,
      cmd: { op: 'lease.grant', ttlMs: 3000 },
    })) as { id: number };
    await node.handle('cmd', {
      store: 'default',
      key: 'owned',
      cmd: { op: 'put', key: 'owned', value: 1, lease: lease.id },
    });
    await node.handle('cmd', {
      store: 'default',
      key: 'ttl',
      cmd: { op: 'put', key: 'ttl', value: 2, ttlMs: 3000 },
    });
    const t0 = performance.now();
    clock.set({ offsetMs: 60_000 });
    await sleep(500);
    // Before the fix, the next stamps carried the jumped wall clock: both were gone at once.
    expect((await get(node, 'owned'))?.value).toBe(1);
    expect((await get(node, 'ttl'))?.value).toBe(2);
    const ttl = (await node.handle('read', {
      store: 'default',
      group: 1,
      read: { op: 'lease.ttl', id: lease.id },
    })) as { remainingMs: number };
    expect(ttl.remainingMs).toBeGreaterThan(1500);
    expect(ttl.remainingMs).toBeLessThanOrEqual(3000 - (performance.now() - t0) + 200);
    clock.set({ offsetMs: -60_000 });
    // Time keeps running on the monotonic clock: both end about 3 s after they were written.
    let goneAt = 0;
    for (let i = 0; i < 100; i++) {
      if ((await get(node, 'owned')) === null && (await get(node, 'ttl')) === null) {
        goneAt = performance.now() - t0;
        break;
      }
      await sleep(50);
    }
    expect(goneAt).toBeGreaterThan(2000);
    expect(goneAt).toBeLessThan(4500);
  });
});
