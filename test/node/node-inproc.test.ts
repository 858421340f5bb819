/**
 * The node core in one process (issue 5): three DkvNodes on loopback, driven through the
 * client protocol. Routing and redirect hints, CROSS_GROUP, command validation at the door,
 * linearizable and serializable reads, TTL expiry through tick entries, a queued lock acquire
 * answered by its grant, watch streams, backpressure, graceful stop with leadership
 * transfer, and restart from disk. Real processes and faults are in cluster.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type DkvError, isDkvError } from '../../src/errors.js';
import type { NodeConfig } from '../../src/node/config.js';
import { DkvNode } from '../../src/node/node.js';
import { RpcClient } from '../../src/transport/index.js';
import { evenSlots, slotOf } from '../../src/transport/slots.js';
import { InProcCluster } from '../client/fixture.js';

const IDS = [1, 2, 3];

interface Cluster {
  fx: InProcCluster;
  cfgs: NodeConfig[];
  nodes: (DkvNode | undefined)[];
  clients: RpcClient[];
}

const open: Cluster[] = [];

afterEach(async () => {
  for (const c of open.splice(0)) {
    for (const cl of c.clients) await cl.close().catch(() => undefined);
    await c.fx.close();
  }
});

async function startCluster(extra: Record<string, unknown> = {}): Promise<Cluster> {
  const fx = await InProcCluster.start({
    nodes: IDS.length,
    partitions: 3,
    config: { balanceLeaders: false, ...extra },
  });
  const c: Cluster = { fx, cfgs: fx.cfgs, nodes: fx.nodes, clients: [] };
  open.push(c);
  c.clients = await Promise.all(
    fx.cfgs.map((cfg) =>
      RpcClient.connect({ host: '127.0.0.1', port: cfg.clientPort, frameBytesMax: 1 << 24 }),
    ),
  );
  return c;
}

function waitLeaders(c: Cluster): Promise<void> {
  return c.fx.waitLeaders();
}

/** groupOf is the partition group (of 3) that owns `key`. */
function groupOf(key: string): number {
  const slot = slotOf(key);
  return 1 + evenSlots(3).findIndex(([lo, hi]) => slot >= lo && slot < hi);
}

/** leaderOf is the index (0-based) of the node leading the group that owns `key`. */
function leaderOf(c: Cluster, key: string): number {
  const st = c.nodes.find((n) => n)!.status();
  const group = groupOf(key);
  const g = st.groups.find((x) => x.id === group)!;
  return g.leader - 1;
}

async function call(c: Cluster, at: number, op: string, args: unknown): Promise<unknown> {
  return c.clients[at]!.call(op, args, { timeoutMs: 5000 });
}

/** send asks the leader of `key`'s group, following NOT_LEADER hints (leaders move while balancing). */
async function send(c: Cluster, key: string, op: string, args: unknown): Promise<unknown> {
  let at = leaderOf(c, key);
  for (let tries = 0; ; tries++) {
    try {
      return await call(c, at, op, args);
    } catch (err) {
      if (!isDkvError(err, 'NOT_LEADER') || tries > 50) throw err;
      const hint = err.details.leaderHint;
      at = hint && c.nodes[hint - 1] ? hint - 1 : leaderOf(c, key);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

async function rejection(p: Promise<unknown>): Promise<DkvError> {
  try {
    await p;
  } catch (err) {
    if (isDkvError(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

const put = (key: string, value: unknown, extra: Record<string, unknown> = {}) => ({
  store: 'default',
  key,
  cmd: { op: 'put', key, value, ...extra },
});
const get = (key: string, consistency = 'linearizable') => ({
  store: 'default',
  key,
  read: { op: 'get', key },
  consistency,
});

describe('a three-node cluster in one process', () => {
  it('routes to the leader, redirects with hints, and reads back', async () => {
    const c = await startCluster();
    const item = (await send(c, 'k1', 'cmd', put('k1', { n: 1 }))) as { version: number };
    const at = leaderOf(c, 'k1');
    expect(item.version).toBe(1);
    const follower = (at + 1) % 3;
    const err = await rejection(call(c, follower, 'cmd', put('k1', 2)));
    expect(err.code).toBe('NOT_LEADER');
    expect(err.details.leaderHint).toBe(at + 1);
    expect(err.details.address).toBe(`127.0.0.1:${c.cfgs[at]!.clientPort}`);
    expect(((await call(c, at, 'read', get('k1'))) as { value: unknown }).value).toEqual({ n: 1 });
    // A serializable read is served by any replica (possibly a little behind).
    const deadline = Date.now() + 5000;
    let local: { value?: unknown } | null = null;
    while (Date.now() < deadline) {
      local = (await call(c, follower, 'read', get('k1', 'serializable'))) as { value?: unknown } | null;
      if (local) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(local?.value).toEqual({ n: 1 });
    // A linearizable read on a follower is redirected.
    expect((await rejection(call(c, follower, 'read', get('k1')))).code).toBe('NOT_LEADER');
  });

  it('refuses bad input at the door: INVALID_ARGUMENT, STORE_NOT_FOUND, CROSS_GROUP', async () => {
    const c = await startCluster();
    const at = leaderOf(c, 'a');
    expect(
      (await rejection(call(c, at, 'cmd', { store: 'default', key: 'a', cmd: { op: 'put', key: 'a' } })))
        .code,
    ).toBe('INVALID_ARGUMENT');
    expect(
      (await rejection(call(c, at, 'cmd', { store: 'nope', key: 'a', cmd: { op: 'delete', key: 'a' } })))
        .code,
    ).toBe('STORE_NOT_FOUND');
    // Two keys in different slots' groups in one transaction.
    let other = 'b0';
    for (let i = 0; leaderOf(c, other) === at && i < 1000; i++) other = `b${i}`;
    const txn = {
      op: 'txn',
      compare: [],
      success: [
        { op: 'put', key: 'a', value: 1 },
        { op: 'put', key: other, value: 1 },
      ],
      failure: [],
    };
    const err = await rejection(call(c, at, 'cmd', { store: 'default', key: 'a', cmd: txn }));
    expect(['CROSS_GROUP', 'NOT_LEADER']).toContain(err.code);
    // Keys with the same hash tag share a group, so the transaction goes through.
    const tagged = {
      op: 'txn',
      compare: [],
      success: [
        { op: 'put', key: 'u:{7}:a', value: 1 },
        { op: 'put', key: 'u:{7}:b', value: 2 },
      ],
      failure: [],
    };
    const tat = leaderOf(c, 'u:{7}:a');
    expect(await call(c, tat, 'cmd', { store: 'default', key: 'u:{7}:a', cmd: tagged })).toMatchObject({
      succeeded: true,
    });
  });

  it('expires TTL keys through tick entries, and answers a queued lock acquire with its grant', async () => {
    const c = await startCluster();
    await send(c, 'ttl', 'cmd', put('ttl', 'x', { ttlMs: 300 }));
    const at = leaderOf(c, 'ttl');
    const sub = c.clients[at]!.stream('watch', {
      store: 'default',
      group: groupOf('ttl'),
      key: 'ttl',
    });
    const seen: unknown[] = [];
    const reading = (async () => {
      for await (const m of sub) {
        seen.push(m);
        if ((m as { kind: string; event?: { cause: string } }).event?.cause === 'expired') break;
      }
    })();
    await new Promise((r) => setTimeout(r, 900));
    expect(await send(c, 'ttl', 'read', get('ttl'))).toBeNull();
    await Promise.race([reading, new Promise((r) => setTimeout(r, 3000))]);
    sub.close();
    expect(seen.some((m) => (m as { event?: { cause: string } }).event?.cause === 'expired')).toBe(true);

    const lat = leaderOf(c, 'L');
    const group = groupOf('L');
    const lease = (n: number) =>
      call(c, lat, 'cmd', {
        store: 'default',
        group,
        cmd: { op: 'lease.grant', ttlMs: 60_000 },
        session: { client: `c${n}`, seq: 1, ack: 1 },
      });
    const l1 = (await lease(1)) as { id: number };
    const l2 = (await lease(2)) as { id: number };
    const first = (await call(c, lat, 'cmd', {
      store: 'default',
      key: 'L',
      cmd: { op: 'lock.acquire', name: 'L', lease: l1.id },
      session: { client: 'c1', seq: 2, ack: 2 },
    })) as { token: number };
    const waiting = call(c, lat, 'cmd', {
      store: 'default',
      key: 'L',
      cmd: { op: 'lock.acquire', name: 'L', lease: l2.id },
      session: { client: 'c2', seq: 2, ack: 2 },
    });
    await new Promise((r) => setTimeout(r, 200));
    await call(c, lat, 'cmd', {
      store: 'default',
      key: 'L',
      cmd: { op: 'lock.release', name: 'L', token: first.token },
    });
    const granted = (await waiting) as { acquired: boolean; token: number };
    expect(granted.acquired).toBe(true);
    expect(granted.token).toBeGreaterThan(first.token);
    // The old token is fenced off by the store itself.
    const fenced = await rejection(
      call(c, lat, 'cmd', {
        store: 'default',
        key: 'L',
        cmd: { op: 'counter.add', name: 'L', delta: 1, fence: { lock: 'L', token: first.token } },
      }),
    );
    expect(fenced.code).toBe('STALE_FENCE');
  });

  it('a keep-alive stream keeps a lease (and its key) alive while open, and only then', async () => {
    const c = await startCluster();
    const group = groupOf('owned');
    const grant = (await send(c, 'owned', 'cmd', {
      store: 'default',
      group,
      cmd: { op: 'lease.grant', ttlMs: 1500 },
    })) as {
      id: number;
    };
    await send(c, 'owned', 'cmd', put('owned', 1, { lease: grant.id }));
    const at = leaderOf(c, 'owned');
    const stream = c.clients[at]!.stream('keepalive', {
      store: 'default',
      group,
      lease: grant.id,
      intervalMs: 300,
    });
    const renewals: unknown[] = [];
    const reading = (async () => {
      for await (const item of stream) renewals.push(item);
    })().catch(() => undefined);
    await new Promise((r) => setTimeout(r, 3000)); // twice the TTL
    expect(renewals.length).toBeGreaterThan(4);
    expect(renewals[0]).toMatchObject({ lease: grant.id, ttlMs: 1500 });
    expect(((await send(c, 'owned', 'read', get('owned'))) as { value: number }).value).toBe(1);
    stream.close();
    await reading;
    await new Promise((r) => setTimeout(r, 2200));
    expect(await send(c, 'owned', 'read', get('owned'))).toBeNull();
    const gone = await rejection(
      send(c, 'owned', 'read', { store: 'default', group, read: { op: 'lease.ttl', id: grant.id } }),
    );
    expect(gone.code).toBe('LEASE_NOT_FOUND');
  });

  it('answers OVERLOADED beyond its bounded queue instead of growing', async () => {
    const c = await startCluster({ pendingMax: 5 });
    await send(c, 'o', 'cmd', put('o', 0)); // settle on the leader
    const results = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) => call(c, leaderOf(c, 'o'), 'cmd', put('o', i))),
    );
    const codes = results.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as DkvError).code));
    expect(codes).toContain('ok');
    expect(codes).toContain('OVERLOADED');
    expect(codes.every((x) => x === 'ok' || x === 'OVERLOADED' || x === 'NOT_LEADER')).toBe(true);
  });

  it('a graceful stop hands leadership away; a restart keeps every acknowledged write', async () => {
    const c = await startCluster({ balanceLeaders: true });
    const written: string[] = [];
    for (let i = 0; i < 60; i++) {
      const key = `w${i}`;
      await send(c, key, 'cmd', put(key, i));
      written.push(key);
    }
    // Balancing gives node 1 the groups it prefers (0 and 3) within seconds.
    const until = Date.now() + 10_000;
    while (c.nodes[0]!.status().groups.filter((g) => g.leader === 1).length === 0 && Date.now() < until)
      await new Promise((r) => setTimeout(r, 100));
    expect(c.nodes[0]!.status().groups.filter((g) => g.leader === 1).length).toBeGreaterThan(0);
    await c.nodes[0]!.stop({ transferLeadership: true });
    c.nodes[0] = undefined;
    // Node 1's groups moved to the others without an election timeout's worth of
    // leaderlessness: node 2 knows every group's new leader well within one (1 s).
    const handedOver = Date.now();
    while (!c.nodes[1]!.status().groups.every((g) => g.leader === 2 || g.leader === 3)) {
      expect(Date.now() - handedOver).toBeLessThan(500);
      await new Promise((r) => setTimeout(r, 10));
    }
    c.nodes[0] = await DkvNode.start(c.cfgs[0]!);
    await waitLeaders(c);
    await c.clients[0]!.close();
    c.clients[0] = await RpcClient.connect({
      host: '127.0.0.1',
      port: c.cfgs[0]!.clientPort,
      frameBytesMax: 1 << 24,
    });
    for (const key of written) {
      expect(((await send(c, key, 'read', get(key))) as { value: number }).value).toBe(Number(key.slice(1)));
    }
  });
});
