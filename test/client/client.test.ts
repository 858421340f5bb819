/**
 * DkvClient against a fake cluster: three RpcServers on loopback that speak the client
 * protocol (map, status, cmd, read) over a shared in-memory state, with knobs for the
 * situations the client must handle: a stale map leader (NOT_LEADER with a hint), a moved
 * partition (WRONG_GROUP), a server that is down, an answer lost after the write was applied
 * (the retry must be answered from the session table, never applied twice), and no quorum.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DkvClient } from '../../src/client/client.js';
import { ClientSession } from '../../src/client/session.js';
import { DkvError, ErrorCode, isDkvError } from '../../src/errors.js';
import type { ClusterStatus, PartitionMap } from '../../src/transport/protocol.js';
import { RpcServer } from '../../src/transport/rpc-server.js';
import { evenSlots, slotOf } from '../../src/transport/slots.js';

const HOST = '127.0.0.1';

interface FakeItem {
  key: string;
  value: unknown;
  version: number;
  createRevision: number;
  modRevision: number;
}

/** FakeCluster is the shared truth behind the fake nodes. */
class FakeCluster {
  readonly servers: RpcServer[] = [];
  readonly addresses: string[] = [];
  epoch = 1;
  groups = 2;
  /** The real leader of each group (member id); -1 = none (no quorum). */
  leaders = new Map<number, number>([
    [1, 1],
    [2, 2],
  ]);
  /** The leader each node reports in its map (possibly stale). */
  mapLeaders = new Map<number, number>([
    [1, 1],
    [2, 2],
  ]);
  readonly data = new Map<string, FakeItem>();
  revision = 0;
  /** Applied (client, seq) -> answer. */
  readonly sessions = new Map<string, unknown>();
  /** How many times each command was applied (key -> count). */
  readonly applied = new Map<string, number>();
  /** Per node: the ops it received. */
  readonly received: { node: number; op: string; args: Record<string, unknown> }[] = [];
  /** Drop the connection instead of answering the next N cmds (after applying them). */
  loseAnswers = 0;

  slotsOf(group: number): [number, number][] {
    return [evenSlots(this.groups)[group - 1]!];
  }

  groupOfKey(key: string): number {
    const slot = slotOf(key);
    const ranges = evenSlots(this.groups);
    return ranges.findIndex(([a, b]) => slot >= a && slot < b) + 1;
  }

  map(): PartitionMap {
    return {
      store: 'default',
      epoch: this.epoch,
      slotCount: 1024,
      groups: Array.from({ length: this.groups }, (_, i) => ({
        id: i + 1,
        slots: this.slotsOf(i + 1),
        replicas: [1, 2, 3],
        leader: this.mapLeaders.get(i + 1) ?? 0,
      })),
      members: this.addresses.map((address, i) => ({ id: i + 1, address })),
    };
  }

  async start(n = 3): Promise<void> {
    for (let i = 0; i < n; i++) {
      const node = i + 1;
      const server = new RpcServer({
        listen: { host: HOST, port: 0 },
        frameBytesMax: 1 << 20,
        inFlightMax: 1000,
        handlers: {
          ops: { map: 'unary', status: 'unary', cmd: 'unary', read: 'unary' },
          unary: (op, args, ctx) => this.serve(node, op, args as Record<string, unknown>, ctx.connectionId),
        },
      });
      const a = await server.start();
      this.servers.push(server);
      this.addresses.push(`${HOST}:${a.port}`);
    }
  }

  private serve(node: number, op: string, args: Record<string, unknown>, _conn: number): unknown {
    this.received.push({ node, op, args });
    if (op === 'map') {
      if (args.store !== 'default')
        throw new DkvError(ErrorCode.StoreNotFound, `no store ${String(args.store)}`);
      return this.map();
    }
    if (op === 'status') {
      const s: ClusterStatus = {
        members: this.addresses.map((address, i) => ({
          id: i + 1,
          address,
          peerAddress: address,
          healthy: true,
          state: 'active' as const,
        })),
        groups: [...this.leaders].map(([id, leader]) => ({
          id,
          store: 'default',
          leader,
          term: 1,
          commitIndex: 1,
          replicas: [1, 2, 3],
          learners: [],
          target: [1, 2, 3],
          lag: 0,
        })),
        alarms: [],
        epoch: 1,
        from: 1,
      };
      return s;
    }
    const key = args.key as string;
    const group = this.groupOfKey(key);
    if (args.epoch !== this.epoch)
      throw new DkvError(ErrorCode.WrongGroup, 'map changed', { epoch: this.epoch });
    const leader = this.leaders.get(group)!;
    const consistency = (args.consistency as string | undefined) ?? 'linearizable';
    if (op === 'read' && consistency === 'serializable') return this.data.get(key) ?? null;
    if (leader < 0) throw new DkvError(ErrorCode.Unavailable, `group ${group} has no leader`);
    if (leader !== node)
      throw new DkvError(ErrorCode.NotLeader, 'not the leader', { leaderHint: leader, group });
    if (op === 'read') return this.data.get(key) ?? null;
    const session = args.session as { client: string; seq: number; ack: number };
    const sid = `${session.client}/${session.seq}`;
    let answer = this.sessions.get(sid);
    if (answer === undefined) {
      answer = this.apply(args.cmd as Record<string, unknown>);
      this.sessions.set(sid, answer);
      this.applied.set(key, (this.applied.get(key) ?? 0) + 1);
    }
    if (this.loseAnswers > 0) {
      this.loseAnswers--;
      // Applied, but the answer never arrives: the connection breaks first.
      return new Promise(() => {
        setTimeout(() => void this.servers[node - 1]!.close().then(() => this.restart(node)), 5);
      });
    }
    return answer;
  }

  /** restart brings a closed node's server back on the same port. */
  private async restart(node: number): Promise<void> {
    if (this.closed) return;
    const port = Number(this.addresses[node - 1]!.split(':')[1]);
    const server = new RpcServer({
      listen: { host: HOST, port },
      frameBytesMax: 1 << 20,
      inFlightMax: 1000,
      handlers: {
        ops: { map: 'unary', status: 'unary', cmd: 'unary', read: 'unary' },
        unary: (op, args, ctx) => this.serve(node, op, args as Record<string, unknown>, ctx.connectionId),
      },
    });
    await server.start();
    this.servers[node - 1] = server;
    if (this.closed) await server.close();
  }

  private apply(cmd: Record<string, unknown>): unknown {
    const key = cmd.key as string;
    const prev = this.data.get(key);
    if (cmd.op === 'delete') {
      this.data.delete(key);
      return prev !== undefined;
    }
    this.revision++;
    const item: FakeItem = {
      key,
      value: cmd.value,
      version: (prev?.version ?? 0) + 1,
      createRevision: prev?.createRevision ?? this.revision,
      modRevision: this.revision,
    };
    this.data.set(key, item);
    return item;
  }

  private closed = false;

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.servers.map((s) => s.close()));
  }
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f().catch(() => undefined);
});

async function fake(): Promise<FakeCluster> {
  const c = new FakeCluster();
  await c.start();
  cleanups.push(() => c.close());
  return c;
}

async function connect(servers: string[], requestTimeoutMs = 3000): Promise<DkvClient> {
  const client = await DkvClient.connect({ servers, requestTimeoutMs });
  cleanups.push(() => client.close());
  return client;
}

/** keyIn finds a key that the fake routes to `group`. */
function keyIn(c: FakeCluster, group: number, prefix = 'k'): string {
  for (let i = 0; ; i++) if (c.groupOfKey(`${prefix}${i}`) === group) return `${prefix}${i}`;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isDkvError(err)) return err.code;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('ClientSession', () => {
  it('acks the smallest seq in flight, or the next seq when none is', () => {
    const s = new ClientSession('c');
    expect(s.ack).toBe(1);
    const a = s.begin();
    const b = s.begin();
    const c = s.begin();
    expect([a, b, c]).toEqual([1, 2, 3]);
    expect(s.tag(c)).toEqual({ client: 'c', seq: 3, ack: 1 });
    s.finish(b);
    expect(s.ack).toBe(1);
    s.finish(a);
    expect(s.ack).toBe(3);
    expect(s.inFlight).toBe(1);
    s.finish(c);
    expect(s.ack).toBe(4);
    expect(s.inFlight).toBe(0);
    s.finish(c); // twice: no effect
    expect(s.ack).toBe(4);
  });

  it('matches a naive model on random interleavings', () => {
    let x = 12345;
    const rnd = (n: number): number => {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      return x % n;
    };
    for (let run = 0; run < 200; run++) {
      const s = new ClientSession('c');
      const open = new Set<number>();
      let next = 1;
      for (let step = 0; step < 100; step++) {
        if (open.size === 0 || rnd(2) === 0) {
          const seq = s.begin();
          expect(seq).toBe(next++);
          open.add(seq);
        } else {
          const seqs = [...open];
          const seq = seqs[rnd(seqs.length)]!;
          open.delete(seq);
          s.finish(seq);
        }
        const want = open.size === 0 ? next : Math.min(...open);
        expect(s.ack).toBe(want);
        expect(s.inFlight).toBe(open.size);
      }
    }
  });
});

describe('DkvClient (fake cluster)', () => {
  it('puts, gets and deletes through each group leader', async () => {
    const c = await fake();
    const client = await connect(c.addresses);
    const k1 = keyIn(c, 1);
    const k2 = keyIn(c, 2);
    const item = await client.put(k1, 'v1');
    expect(item).toMatchObject({ key: k1, value: 'v1', version: 1 });
    await client.put(k2, { a: [1, 2] });
    expect((await client.get(k1))?.value).toBe('v1');
    expect((await client.get(k2))?.value).toEqual({ a: [1, 2] });
    expect(await client.get('missing')).toBeUndefined();
    expect(await client.delete(k1)).toBe(true);
    expect(await client.delete(k1)).toBe(false);
    const cmds = c.received.filter((r) => r.op === 'cmd');
    for (const r of cmds) expect(r.node).toBe(c.groupOfKey(r.args.key as string)); // leader g = node g
    for (const r of cmds) expect(r.args.session).toMatchObject({ client: client.clientId });
  });

  it('follows a NOT_LEADER hint when the map names a stale leader', async () => {
    const c = await fake();
    c.mapLeaders.set(1, 3); // the map says 3, the leader is 1
    const client = await connect(c.addresses);
    const k = keyIn(c, 1);
    await client.put(k, 'x');
    const nodes = c.received.filter((r) => r.op === 'cmd').map((r) => r.node);
    expect(nodes).toEqual([3, 1]);
    await client.put(k, 'y'); // the hint is remembered
    expect(c.received.filter((r) => r.op === 'cmd').map((r) => r.node)).toEqual([3, 1, 1]);
  });

  it('refetches the map on WRONG_GROUP', async () => {
    const c = await fake();
    const client = await connect(c.addresses);
    c.epoch = 2;
    c.groups = 3;
    c.leaders.set(3, 3);
    c.mapLeaders.set(3, 3);
    for (let i = 0; i < 20; i++) await client.put(`w${i}`, i);
    for (let i = 0; i < 20; i++) expect((await client.get(`w${i}`))?.value).toBe(i);
    expect(c.received.filter((r) => r.op === 'map').length).toBeGreaterThanOrEqual(2);
  });

  it('skips a server that is down, and connects through a later one', async () => {
    const c = await fake();
    await c.servers[0]!.close();
    c.leaders.set(1, 2);
    c.mapLeaders.set(1, 2);
    const client = await connect(c.addresses);
    for (let i = 0; i < 10; i++) await client.put(`d${i}`, i);
    for (let i = 0; i < 10; i++) expect((await client.get(`d${i}`))?.value).toBe(i);
  });

  it('serves serializable reads from the first replica in servers order', async () => {
    const c = await fake();
    const client = await connect([c.addresses[2]!, c.addresses[0]!]);
    const k = keyIn(c, 1);
    await client.put(k, 'v');
    c.received.length = 0;
    expect((await client.get(k, { consistency: 'serializable' }))?.value).toBe('v');
    expect(c.received.map((r) => r.node)).toEqual([3]);
  });

  it('retries a mutation whose answer was lost with the same session: applied once', async () => {
    const c = await fake();
    const client = await connect(c.addresses, 5000);
    const k = keyIn(c, 1);
    c.loseAnswers = 1;
    const item = await client.put(k, 'once');
    expect(item.version).toBe(1);
    expect(c.applied.get(k)).toBe(1);
    const sessions = c.received.filter((r) => r.op === 'cmd').map((r) => r.args.session);
    expect(sessions.length).toBeGreaterThanOrEqual(2);
    expect(new Set(sessions.map((s) => JSON.stringify({ ...(s as object), ack: 0 }))).size).toBe(1);
  });

  it('fails with UNAVAILABLE when a group has no quorum, and TIMEOUT when the outcome is unknown', async () => {
    const c = await fake();
    const client = await connect(c.addresses, 600);
    c.leaders.set(1, -1);
    c.mapLeaders.set(1, 0);
    const t0 = performance.now();
    expect(await codeOf(client.put(keyIn(c, 1), 'x'))).toBe(ErrorCode.Unavailable);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(await codeOf(client.get(keyIn(c, 1)))).toBe(ErrorCode.Unavailable);
    // A write whose answer is lost every time: the outcome is unknown.
    c.loseAnswers = 1000;
    expect(await codeOf(client.put(keyIn(c, 2), 'x'))).toBe(ErrorCode.Timeout);
  });

  it('reports a missing store and unreachable servers on connect', async () => {
    const c = await fake();
    await expect(DkvClient.connect({ servers: c.addresses, store: 'nope' })).rejects.toMatchObject({
      code: ErrorCode.StoreNotFound,
    });
    await c.close();
    await expect(DkvClient.connect({ servers: c.addresses, requestTimeoutMs: 300 })).rejects.toMatchObject({
      code: ErrorCode.Unavailable,
    });
    await expect(DkvClient.connect({ servers: ['nonsense'] })).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
  });

  it('returns the status of the first server that answers', async () => {
    const c = await fake();
    const client = await connect(c.addresses);
    const s = await client.status();
    expect(s.members.map((m) => m.id)).toEqual([1, 2, 3]);
    expect(s.groups.map((g) => g.leader)).toEqual([1, 2]);
  });
});
