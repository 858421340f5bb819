/**
 * Load shedding at the door (node.ts shedReason): a client command to a group whose oldest
 * proposal has waited past `shedWaitMs` is refused with OVERLOADED before it is proposed, and
 * so is a request past its client's exactly-once window. A shed request never takes effect;
 * the node's own proposals (lease keep-alives) are never shed.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isDkvError } from '../../src/errors.js';
import { RpcClient } from '../../src/transport/rpc-client.js';
import { InProcCluster } from '../client/fixture.js';

let c: InProcCluster;

beforeAll(async () => {
  // 1 ms: any proposal still waiting after a millisecond sheds what comes after it.
  c = await InProcCluster.start({ partitions: 1, config: { shedWaitMs: 1 } });
}, 60_000);
afterAll(async () => {
  await c?.close();
});

describe('shedding', () => {
  test('a burst past what the group commits in shedWaitMs is shed at the door, and shed puts are not written', async () => {
    // Six clients of 500 puts each: no client passes its exactly-once window (1,024), so what
    // sheds here is the waiting time alone.
    const clients = await Promise.all(Array.from({ length: 6 }, () => c.client({ retryOverloaded: false })));
    const keys = Array.from({ length: 3000 }, (_, i) => `burst/${i}`);
    const results = await Promise.allSettled(keys.map((k, i) => clients[i % 6]!.put(k, k)));
    const shed = results.flatMap((r, i) =>
      r.status === 'rejected' && isDkvError(r.reason) && r.reason.code === 'OVERLOADED' ? [i] : [],
    );
    const ok = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    expect(ok.length + shed.length).toBe(keys.length); // nothing else went wrong
    expect(shed.length).toBeGreaterThan(0);
    expect(ok.length).toBeGreaterThan(0);
    for (const r of results)
      if (r.status === 'rejected')
        expect(String((r.reason as Error).message)).toMatch(
          /is behind: its oldest request has waited \d+ ms \(shedWaitMs 1\)/,
        );
    const root = await c.client();
    for (const i of shed.slice(0, 200)) expect(await root.get(keys[i]!)).toBeUndefined();
    for (const i of ok.slice(0, 200)) expect((await root.get(keys[i]!))?.value).toBe(keys[i]);
  });

  test('a lease stays alive through the burst: keep-alives are the node’s own, never shed', async () => {
    const cl = await c.client({ retryOverloaded: false });
    const lease = await cl.lease.grant(2000);
    const burst = Array.from({ length: 4000 }, (_, i) =>
      cl.put(`lease-burst/${i % 50}`, i).catch(() => undefined),
    );
    await Promise.all(burst);
    await new Promise((r) => setTimeout(r, 2500)); // past the TTL: alive only if renewed
    const root = await c.client();
    const put = await root.put('held', 1, { lease: lease.id });
    expect(put.lease).toBeDefined();
    await lease.revoke();
  });

  test('a request past its exactly-once window is refused before it is proposed', async () => {
    const cfg = c.cfgs[0]!;
    const rc = await RpcClient.connect({
      host: '127.0.0.1',
      port: cfg.clientPort,
      frameBytesMax: 1 << 20,
      connectTimeoutMs: 2000,
    });
    try {
      const map = (await rc.call('map', { store: 'default' }, { timeoutMs: 2000 })) as {
        groups: { id: number; leader: number }[];
        members: { id: number; address: string }[];
      };
      const leader = map.members.find((m) => m.id === map.groups[0]!.leader)!;
      const [host, port] = leader.address.split(':');
      const lc = await RpcClient.connect({
        host: host!,
        port: Number(port),
        frameBytesMax: 1 << 20,
        connectTimeoutMs: 2000,
      });
      try {
        const args = (seq: number) => ({
          store: 'default',
          key: 'window',
          cmd: { op: 'put', key: 'window', value: seq },
          session: { client: 'window-test', seq, ack: 1 },
        });
        await expect(lc.call('cmd', args(1 + 1024), { timeoutMs: 2000 })).rejects.toMatchObject({
          code: 'OVERLOADED',
          message: expect.stringMatching(/past its oldest unacknowledged/),
        });
        const root = await c.client();
        expect(await root.get('window')).toBeUndefined();
        await lc.call('cmd', args(1 + 1023), { timeoutMs: 5000 }); // the window's last seq gets in
        expect((await root.get('window'))?.value).toBe(1024);
      } finally {
        await lc.close();
      }
    } finally {
      await rc.close();
    }
  });
});
