/**
 * The client's connections (src/client/endpoints.ts and the request loop that uses it):
 * - backoff under refused connections: probe delays follow the reconnect policy exactly
 *   (no jitter) or within its jitter band, capped; requests never wait on a down server;
 * - a server that returns is found by its probe and used again;
 * - hung connections: a server that stops answering, and one that accepts and never
 *   answers, are found by the heartbeat; calls in flight on them fail with TIMEOUT;
 * - against a real in-process cluster: priority order, failover when the first server dies,
 *   fail-back when it returns, a hung first server, and AbortSignal and timeouts on calls.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { DkvClient } from '../../src/client/client.js';
import { type EndpointEvent, type EndpointStats, Endpoints } from '../../src/client/endpoints.js';
import { type DkvError, ErrorCode, isDkvError } from '../../src/errors.js';
import type { Random } from '../../src/random.js';
import { SeededRandom } from '../../src/random.js';
import { RpcServer } from '../../src/transport/rpc-server.js';
import { InProcCluster } from './fixture.js';

const HOST = '127.0.0.1';
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f().catch(() => undefined);
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitFor(what: string, pred: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!pred()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** closedPort is a loopback port with nothing listening (connections are refused). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, HOST, r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** FakeServer answers hello (and `echo`) until told to hang: then it reads and never answers. */
class FakeServer {
  hung = false;
  server: RpcServer;
  port = 0;
  private readonly never: (() => void)[] = [];

  constructor(port = 0) {
    this.server = this.make(port);
  }

  private make(port: number): RpcServer {
    return new RpcServer({
      listen: { host: HOST, port },
      frameBytesMax: 1 << 20,
      inFlightMax: 100,
      closeGraceMs: 10,
      handlers: {
        ops: { hello: 'unary', echo: 'unary', map: 'unary' },
        unary: (op, args) => {
          if (this.hung) return new Promise((resolve) => this.never.push(() => resolve(null)));
          if (op === 'hello') return { nodeId: 1, clusterId: 'fake', protocol: 1 };
          return args;
        },
      },
    });
  }

  async start(): Promise<string> {
    const a = await this.server.start();
    this.port = a.port;
    cleanups.push(() => this.close());
    return `${HOST}:${a.port}`;
  }

  async close(): Promise<void> {
    for (const f of this.never.splice(0)) f();
    await this.server.close();
  }
}

/** silentServer accepts connections, reads everything and never answers. */
async function silentServer(): Promise<{ address: string; sockets: Socket[]; server: Server }> {
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    s.on('data', () => {});
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, HOST, r));
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { address: `${HOST}:${(server.address() as { port: number }).port}`, sockets, server };
}

/** fixedRandom makes jitter u = 0 (float 0.5): delays are exactly the policy's bases. */
const fixedRandom: Random = { int: (n) => Math.floor(n / 2), float: () => 0.5 };

function endpoints(
  opts: Partial<ConstructorParameters<typeof Endpoints>[0]> & { events?: EndpointEvent[] } = {},
): Endpoints {
  const events = opts.events;
  const e = new Endpoints({
    frameBytesMax: 1 << 20,
    connectTimeoutMs: 1000,
    reconnect: { initialDelayMs: 40, maxDelayMs: 320, multiplier: 2, jitter: 0 },
    random: fixedRandom,
    ...opts,
    ...(events && { onEvent: (ev: EndpointEvent) => events.push(ev) }),
  });
  cleanups.push(() => e.close());
  return e;
}

function statsOf(e: Endpoints, address: string): EndpointStats | undefined {
  return e.stats().find((s) => s.address === address);
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    if (isDkvError(err)) return err.code;
    throw err;
  }
}

describe('Endpoints: backoff, probes and heartbeats', () => {
  it('probes a refused server on the reconnect schedule (exponential, capped), and requests never wait on it', async () => {
    const address = `${HOST}:${await closedPort()}`;
    const events: EndpointEvent[] = [];
    const e = endpoints({ events });
    expect(await codeOf(e.connection(address))).toBe(ErrorCode.Unavailable);
    expect(e.isDown(address)).toBe(true);
    // While it is down, a request is refused at once, without a connect attempt.
    for (let i = 0; i < 50; i++) {
      const t0 = performance.now();
      const err = await e.connection(address).catch((x: unknown) => x as DkvError);
      expect(performance.now() - t0).toBeLessThan(20);
      expect((err as DkvError).code).toBe(ErrorCode.Unavailable);
    }
    await waitFor('six scheduled probes', () => events.filter((x) => x.type === 'down').length >= 6, 4000);
    const downs = events.filter((x) => x.type === 'down');
    expect(downs.slice(0, 6).map((d) => d.retryInMs)).toEqual([40, 80, 160, 320, 320, 320]);
    expect(downs.slice(0, 6).map((d) => d.attempt)).toEqual([0, 1, 2, 3, 4, 5]);
    // Each probe started when it was due (timers may be late on a busy machine, never early).
    for (let i = 0; i < 5; i++) {
      const d = downs[i]!;
      const probe = events.find((x) => x.type === 'probe' && x.atMs > d.atMs)!;
      const waited = probe.atMs - d.atMs;
      expect(waited).toBeGreaterThanOrEqual(d.retryInMs - 2);
      expect(waited).toBeLessThan(d.retryInMs + 150);
    }
    // Connect attempts: the request's first one and one per probe, none for the 50 refused requests.
    const probes = events.filter((x) => x.type === 'probe').length;
    expect(statsOf(e, address)?.connects).toBe(1 + probes);
  });

  it('spreads the probe delays within the jitter band, and never above the cap', async () => {
    const address = `${HOST}:${await closedPort()}`;
    const events: EndpointEvent[] = [];
    const e = endpoints({
      events,
      random: new SeededRandom(7),
      reconnect: { initialDelayMs: 20, maxDelayMs: 200, multiplier: 3, jitter: 0.5 },
    });
    await codeOf(e.connection(address));
    await waitFor('eight scheduled probes', () => events.filter((x) => x.type === 'down').length >= 8, 4000);
    const delays = events.filter((x) => x.type === 'down').map((d) => d.retryInMs);
    let base = 20;
    for (const d of delays.slice(0, 8)) {
      expect(d).toBeGreaterThanOrEqual(Math.floor(base * 0.5));
      expect(d).toBeLessThanOrEqual(Math.min(200, Math.ceil(base * 1.5)));
      base = Math.min(200, base * 3);
    }
    expect(new Set(delays).size).toBeGreaterThan(2); // jittered, not a fixed schedule
  });

  it('finds a server that comes back with its next probe, and resets the backoff', async () => {
    const port = await closedPort();
    const address = `${HOST}:${port}`;
    const events: EndpointEvent[] = [];
    const e = endpoints({ events });
    await codeOf(e.connection(address));
    await sleep(200);
    const server = new FakeServer(port);
    await server.start();
    await waitFor('up', () => events.some((x) => x.type === 'up'), 2000);
    expect(e.isDown(address)).toBe(false);
    const conn = await e.connection(address);
    expect(await conn.call('echo', { a: 1 })).toEqual({ a: 1 });
    // It fails again: the schedule starts over at the initial delay.
    await server.close();
    await waitFor('down again', () => e.isDown(address), 2000);
    const last = events.filter((x) => x.type === 'down').at(-1)!;
    expect(last.attempt).toBe(0);
    expect(last.retryInMs).toBe(40);
  });

  it('drops a connection whose server stops answering (heartbeat): calls in flight fail with TIMEOUT', async () => {
    const server = new FakeServer();
    const address = await server.start();
    const events: EndpointEvent[] = [];
    const e = endpoints({ events, heartbeat: { intervalMs: 100, timeoutMs: 200 } });
    const conn = await e.connection(address);
    expect(await conn.call('echo', 1)).toBe(1);
    await sleep(250); // a few heartbeats answered: still up
    expect(e.state(address)).toBe('up');
    server.hung = true;
    const t0 = performance.now();
    const inFlight = conn.call('echo', 2).catch((x: unknown) => x as DkvError);
    const err = await inFlight;
    const took = performance.now() - t0;
    expect((err as DkvError).code).toBe(ErrorCode.Timeout); // written, unanswered: outcome unknown
    expect(took).toBeLessThan(100 + 200 + 400); // interval + timeout + slack for a busy machine
    expect(events.some((x) => x.type === 'hung')).toBe(true);
    expect(e.isDown(address)).toBe(true);
    expect(await codeOf(e.connection(address))).toBe(ErrorCode.Unavailable);
    // It answers again: a probe brings it back.
    server.hung = false;
    await waitFor('up', () => e.state(address) === 'up', 3000);
    expect(await (await e.connection(address)).call('echo', 3)).toBe(3);
  });

  it('finds a server that accepts connections and never answers within the heartbeat timeout', async () => {
    const silent = await silentServer();
    const events: EndpointEvent[] = [];
    const e = endpoints({ events, heartbeat: { intervalMs: 1000, timeoutMs: 150 } });
    const t0 = performance.now();
    const conn = await e.connection(silent.address); // TCP connects fine
    const err = await conn.call('echo', 1).catch((x: unknown) => x as DkvError);
    expect((err as DkvError).code).toBe(ErrorCode.Timeout);
    expect(performance.now() - t0).toBeLessThan(150 + 400);
    expect(e.isDown(silent.address)).toBe(true);
    // Probes keep failing (each waits for an answer that never comes): it stays down.
    await sleep(500);
    expect(e.isDown(silent.address)).toBe(true);
    expect(events.filter((x) => x.type === 'probe').length).toBeGreaterThanOrEqual(1);
  });
});

// ---- against a real cluster (three DkvNodes in this process) ----

function endpointsOf(c: DkvClient): Endpoints {
  return (c as unknown as { endpoints: Endpoints }).endpoints;
}

function usesOf(c: DkvClient, address: string): number {
  return statsOf(endpointsOf(c), address)?.uses ?? 0;
}

async function cluster(): Promise<InProcCluster> {
  const c = await InProcCluster.start({ partitions: 2 });
  cleanups.push(() => c.close());
  return c;
}

const FAST_RECONNECT = { initialDelayMs: 20, maxDelayMs: 200, multiplier: 2, jitter: 0.2 };

describe('DkvClient against a cluster: priority, failover, fail-back, hung servers', () => {
  it('serves reads that need no leader from the highest-priority server, fails over when it dies and moves back when it returns', async () => {
    const c = await cluster();
    const [s1, s2, s3] = c.servers as [string, string, string];
    // Priority: node 2, then node 1, then node 3.
    const client = await c.client({ servers: [s2, s1, s3], reconnect: FAST_RECONNECT });
    await client.put('k', 'v');
    const read = (): Promise<unknown> => client.get('k', { consistency: 'serializable' });
    // A serializable read may be stale: wait until node 2's replica has applied the put.
    for (let i = 0; i < 100 && (await read()) === undefined; i++) await sleep(10);
    const before = { s1: usesOf(client, s1), s2: usesOf(client, s2), s3: usesOf(client, s3) };
    for (let i = 0; i < 20; i++) expect((await read()) as { value: string }).toMatchObject({ value: 'v' });
    await client.status();
    expect(usesOf(client, s2) - before.s2).toBe(21);
    expect(usesOf(client, s1)).toBe(before.s1);
    expect(usesOf(client, s3)).toBe(before.s3);

    // Node 2 dies: reads go on, from node 1, with no error.
    await c.stopNode(2);
    let worst = 0;
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      expect(await read()).toMatchObject({ value: 'v' });
      worst = Math.max(worst, performance.now() - t0);
    }
    expect(endpointsOf(client).isDown(s2)).toBe(true);
    const afterKill = { s1: usesOf(client, s1), s3: usesOf(client, s3) };
    for (let i = 0; i < 10; i++) await read();
    expect(usesOf(client, s1) - afterKill.s1).toBe(10);
    expect(usesOf(client, s3)).toBe(afterKill.s3);
    expect(worst).toBeLessThan(2000);

    // Node 2 returns: its probe finds it, and reads move back to it.
    await c.startNode(2);
    await waitFor('node 2 up again', () => endpointsOf(client).state(s2) === 'up', 5000);
    const back = usesOf(client, s2);
    for (let i = 0; i < 10; i++) expect(await read()).toMatchObject({ value: 'v' });
    expect(usesOf(client, s2) - back).toBe(10);
    const st = await client.status();
    expect(st.members.length).toBe(3);
  });

  it('never sticks to a dead server: writes and linearizable reads fail over while its node is down', async () => {
    const c = await cluster();
    const client = await c.client({ reconnect: FAST_RECONNECT });
    for (let i = 0; i < 20; i++) await client.put(`a${i}`, i);
    const leader = c.leaderOf(1);
    await c.stopNode(leader);
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) await client.put(`a${i}`, i + 100);
    const failover = performance.now() - t0;
    for (let i = 0; i < 20; i++) expect(await client.get(`a${i}`)).toMatchObject({ value: i + 100 });
    expect(endpointsOf(client).isDown(c.servers[leader - 1]!)).toBe(true);
    expect(failover).toBeLessThan(7000);
  });

  it('skips a first server that accepts connections and never answers', async () => {
    const c = await cluster();
    const silent = await silentServer();
    const t0 = performance.now();
    const client = await c.client({ servers: [silent.address, ...c.servers] });
    const connectMs = performance.now() - t0;
    // Found hung by the heartbeat sent when the connection opened (default timeout 2 s).
    expect(connectMs).toBeLessThan(2000 + 1500);
    expect(endpointsOf(client).isDown(silent.address)).toBe(true);
    const uses = usesOf(client, silent.address);
    const t1 = performance.now();
    await client.status();
    await client.put('x', 1);
    expect(await client.get('x')).toMatchObject({ value: 1 });
    expect(performance.now() - t1).toBeLessThan(1000);
    expect(usesOf(client, silent.address)).toBe(uses);
  });

  it('connects when its only server starts listening after the first refusal (probe with backoff)', async () => {
    const c = await cluster();
    await c.stopNode(1);
    const s1 = c.servers[0]!;
    const connecting = c.client({ servers: [s1], requestTimeoutMs: 5000, reconnect: FAST_RECONNECT });
    await sleep(300);
    await c.startNode(1);
    const client = await connecting;
    expect((await client.status()).members.length).toBe(3);
  });

  it('fails with UNAVAILABLE at its deadline when every server refuses', async () => {
    const a = `${HOST}:${await closedPort()}`;
    const b = `${HOST}:${await closedPort()}`;
    const c = await cluster();
    const t0 = performance.now();
    const code = await codeOf(c.client({ servers: [a, b], requestTimeoutMs: 600 }));
    const took = performance.now() - t0;
    expect(code).toBe(ErrorCode.Unavailable);
    expect(took).toBeGreaterThan(500);
    expect(took).toBeLessThan(1500);
  });
});

describe('DkvClient: AbortSignal and timeouts on calls', () => {
  it('honours an aborted signal at once, a signal aborted in flight, and per-call timeouts', async () => {
    const c = await cluster();
    const client = await c.client();
    await client.put('k', 1);
    // Already aborted: CANCELLED, nothing is sent.
    const ac = new AbortController();
    ac.abort();
    expect(await codeOf(client.put('k', 2, { signal: ac.signal }))).toBe(ErrorCode.Cancelled);
    expect(await codeOf(client.get('k', { signal: ac.signal }))).toBe(ErrorCode.Cancelled);
    expect(await client.get('k')).toMatchObject({ value: 1 });

    // No quorum: two of three nodes down. Calls end at their own deadlines.
    await c.stopNode(2);
    await c.stopNode(3);
    // NOT_LEADER is accepted here only until client.ts stops surfacing it (see the next test).
    const outOfTime = [ErrorCode.Timeout, ErrorCode.Unavailable];
    let t0 = performance.now();
    const put = await codeOf(client.put('k', 3, { timeoutMs: 400 }));
    let took = performance.now() - t0;
    expect(outOfTime).toContain(put);
    expect(took).toBeGreaterThan(300);
    expect(took).toBeLessThan(1200);

    t0 = performance.now();
    const get = await codeOf(client.get('k', { timeoutMs: 300 }));
    took = performance.now() - t0;
    expect(outOfTime).toContain(get);
    expect(took).toBeLessThan(1000);

    t0 = performance.now();
    expect(await codeOf(client.put('k', 4, { signal: AbortSignal.timeout(250) }))).toBe(ErrorCode.Cancelled);
    took = performance.now() - t0;
    expect(took).toBeGreaterThan(200);
    expect(took).toBeLessThan(800);

    const ac2 = new AbortController();
    setTimeout(() => ac2.abort(new Error('user gave up')), 100);
    t0 = performance.now();
    const err = await client.delete('k', { signal: ac2.signal }).catch((x: unknown) => x as DkvError);
    expect((err as DkvError).code).toBe(ErrorCode.Cancelled);
    expect(performance.now() - t0).toBeLessThan(600);

    // Quorum back: the client works again.
    await c.startNode(2);
    await c.waitLeaders();
    await client.put('k', 5);
    expect(await client.get('k')).toMatchObject({ value: 5 });
  });

  // When a call's deadline passes while the only reachable replica answers NOT_LEADER (no
  // leader: the group lost its quorum), the call fails with UNAVAILABLE (or TIMEOUT when an
  // attempt may have taken effect): NOT_LEADER is handled inside the client (CONTRACT.md).
  it('a call that runs out of time with no leader reachable fails with UNAVAILABLE or TIMEOUT, never NOT_LEADER', async () => {
    const c = await cluster();
    const client = await c.client();
    await client.put('k', 1);
    await c.stopNode(2);
    await c.stopNode(3);
    // Node 1 notices it lost its quorum (check-quorum) and steps down.
    await waitFor('no leader', () => c.leaderOf(1) === 0, 10_000);
    const codes = [
      await codeOf(client.put('k', 2, { timeoutMs: 300 })),
      await codeOf(client.get('k', { timeoutMs: 300 })),
    ];
    for (const code of codes) expect([ErrorCode.Timeout, ErrorCode.Unavailable]).toContain(code);
  });
});
