/**
 * LinkProxy tests: the pure FrameSplitter under arbitrary chunking, then real sockets on
 * 127.0.0.1 through a proxy in front of a small frame target (each accepted connection is a
 * Peer that decodes frames and can send them). Every socket, server and proxy is registered
 * for cleanup in afterEach, even when a test fails. The last test runs a proxy in a child
 * process and checks that the process exits on its own after close().
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { resolve } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { type Direction, FrameSplitter, LinkProxy, PASS } from '../../jepsen-like/runner/proxy.js';
import { SeededRandom } from '../../src/random.js';
import { encodeFrame, FrameDecoder } from '../../src/transport/frame.js';
import { REPO_ROOT } from './helpers.js';

const cleanups: Array<() => unknown> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) {
    try {
      await cleanup();
    } catch {
      // keep cleaning
    }
  }
});

/** until polls `cond` every 5 ms and fails after `timeoutMs`. */
async function until(cond: () => boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Peer is one end of a connection: it decodes incoming frames and records when they came. */
class Peer {
  readonly got: unknown[] = [];
  readonly gotAtMs: number[] = [];
  closed = false;
  ended = false;
  readonly whenClosed: Promise<void>;
  /**
   * whenGone resolves on the first 'end' or 'close': the proxy's destroy() sends a FIN, which
   * these half-open-capable test sockets see as an end, not a close.
   */
  readonly whenGone: Promise<void>;
  private readonly decoder = new FrameDecoder({ frameBytesMax: 64 * 1024 * 1024 });

  constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      for (const value of this.decoder.push(chunk)) {
        this.got.push(value);
        this.gotAtMs.push(performance.now());
      }
    });
    this.whenGone = new Promise((r) => {
      socket.on('end', () => {
        this.ended = true;
        r();
      });
      socket.on('close', () => r());
    });
    this.whenClosed = new Promise((r) =>
      socket.on('close', () => {
        this.closed = true;
        r();
      }),
    );
    cleanups.push(() => socket.destroy());
  }

  send(...values: unknown[]): void {
    for (const value of values) this.socket.write(encodeFrame(value));
  }

  async waitFor(n: number, timeoutMs = 3000): Promise<void> {
    await until(() => this.got.length >= n, timeoutMs, `${n} frames (have ${this.got.length})`);
  }
}

/** startTarget starts a frame server; every accepted connection becomes a Peer. */
async function startTarget(): Promise<{ port: number; peers: Peer[]; server: Server }> {
  const peers: Peer[] = [];
  const server = createServer({ allowHalfOpen: true }, (socket) => peers.push(new Peer(socket)));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { port: address.port, peers, server };
}

/** startEcho starts a server that sends back every byte it receives. */
async function startEcho(): Promise<number> {
  const server = createServer((socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
    cleanups.push(() => socket.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

async function startProxy(targetPort: number, opts: { random?: () => number; frameBytesMax?: number } = {}) {
  const proxy = await LinkProxy.start({ name: 'p', targetHost: '127.0.0.1', targetPort, ...opts });
  cleanups.push(() => proxy.close());
  return proxy;
}

async function dial(port: number): Promise<Peer> {
  const socket = createConnection({ host: '127.0.0.1', port, allowHalfOpen: true });
  const peer = new Peer(socket);
  await once(socket, 'connect');
  return peer;
}

/** link starts a target and a proxy, dials through it, and returns both ends. */
async function link(opts: { random?: () => number; frameBytesMax?: number } = {}) {
  const target = await startTarget();
  const proxy = await startProxy(target.port, opts);
  const client = await dial(proxy.port);
  await until(() => target.peers.length === 1, 3000, 'the target connection');
  return { target, proxy, client, server: target.peers[0]! };
}

function seeded(seed: number): () => number {
  const random = new SeededRandom(seed);
  return () => random.float();
}

describe('FrameSplitter', () => {
  it('returns exactly the frames sent, whatever the chunking', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (bodies, cuts) => {
          const frames = bodies.map((body) => {
            const frame = Buffer.alloc(4 + body.length);
            frame.writeUInt32BE(body.length, 0);
            frame.set(body, 4);
            return frame;
          });
          const stream = Buffer.concat(frames);
          const at = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
          const splitter = new FrameSplitter(1000);
          const out: Buffer[] = [];
          let from = 0;
          for (const to of [...at, stream.length]) {
            out.push(...splitter.push(stream.subarray(from, to)));
            from = to;
          }
          expect(out).toEqual(frames);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('refuses a length over the limit as soon as the header is in', () => {
    const splitter = new FrameSplitter(10);
    expect(() => splitter.push(Buffer.from([0, 0, 0, 11]))).toThrow(RangeError);
  });
});

describe('LinkProxy', () => {
  it('passes frames through unchanged both ways, whatever the chunking', async () => {
    const proxy = await startProxy(await startEcho());
    const value = fc.oneof(
      fc.string(),
      fc.integer(),
      fc.uint8Array({ maxLength: 100_000 }),
      fc.dictionary(fc.string({ maxLength: 5 }), fc.integer()),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(value, { minLength: 1, maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        async (values, cuts) => {
          const client = await dial(proxy.port);
          const stream = Buffer.concat(values.map((v) => encodeFrame(v)));
          const at = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
          let from = 0;
          for (const to of [...at, stream.length]) {
            client.socket.write(stream.subarray(from, to));
            from = to;
            await new Promise((r) => setImmediate(r));
          }
          await client.waitFor(values.length);
          expect(client.got).toEqual(values);
          client.socket.destroy();
        },
      ),
      { numRuns: 15 },
    );
    expect(proxy.stats('forward').connections).toBe(15);
    expect(proxy.stats('forward').frames).toBe(proxy.stats('backward').frames);
  });

  it.each(['forward', 'backward'] as const)(
    'blackholes %s only, keeps the connection open, and heals',
    async (dir: Direction) => {
      const { proxy, client, server, target } = await link();
      client.send('hello-c');
      server.send('hello-s');
      await client.waitFor(1);
      await server.waitFor(1);
      proxy.set(dir, { blackhole: true });
      expect(proxy.mode(dir)).toEqual({ ...PASS, blackhole: true });
      const [cut, open] = dir === 'forward' ? [client, server] : [server, client];
      const [cutTo, openTo] = dir === 'forward' ? [server, client] : [client, server];
      cut.send(1, 2, 3);
      open.send(4, 5);
      await openTo.waitFor(3);
      expect(openTo.got.slice(1)).toEqual([4, 5]);
      await until(() => proxy.stats(dir).blackholed === 3, 3000, 'blackholed frames');
      await sleep(50);
      expect(cutTo.got).toHaveLength(1);
      // A new connection is still accepted and connected while blackholed, and discarded.
      const second = await dial(proxy.port);
      await until(() => target.peers.length === 2, 3000, 'the second target connection');
      if (dir === 'forward') second.send('lost');
      else target.peers[1]!.send('lost');
      await until(() => proxy.stats(dir).blackholed === 4, 3000, 'the fourth blackholed frame');
      expect(client.closed || server.closed || second.closed).toBe(false);
      proxy.heal();
      expect(proxy.mode(dir)).toEqual(PASS);
      cut.send(6);
      await cutTo.waitFor(2);
      expect(cutTo.got).toEqual([cutTo === server ? 'hello-c' : 'hello-s', 6]);
      expect(proxy.stats(dir).frames).toBe(6);
    },
  );

  it('delays each frame by at least delayMs and keeps the order, with jitter', async () => {
    const { proxy, client, server } = await link({ random: seeded(7) });
    proxy.set('forward', { delayMs: 60, jitterMs: 40 });
    const sentAtMs: number[] = [];
    for (let i = 0; i < 30; i++) {
      sentAtMs.push(performance.now());
      client.send(i);
      if (i % 5 === 0) await sleep(3);
    }
    await server.waitFor(30);
    expect(server.got).toEqual([...Array(30).keys()]);
    for (let i = 0; i < 30; i++) expect(server.gotAtMs[i]! - sentAtMs[i]!).toBeGreaterThanOrEqual(60);
    // The other direction is not delayed.
    const t = performance.now();
    server.send('back');
    await client.waitFor(1);
    expect(client.gotAtMs[0]! - t).toBeLessThan(60);
  });

  it('still delivers frames held by a delay after heal, before later frames', async () => {
    const { proxy, client, server } = await link();
    proxy.set('backward', { delayMs: 150 });
    const t = performance.now();
    server.send('a', 'b');
    await until(() => proxy.stats('backward').frames === 2, 3000, 'frames at the proxy');
    proxy.heal();
    server.send('c');
    await client.waitFor(3);
    expect(client.got).toEqual(['a', 'b', 'c']);
    expect(client.gotAtMs[0]! - t).toBeGreaterThanOrEqual(150);
  });

  it('drops about lossRate of the frames, never the first one', async () => {
    const { proxy, client, server } = await link({ random: seeded(42) });
    proxy.set('forward', { lossRate: 0.3 });
    const n = 2000;
    for (let i = 0; i <= n; i++) client.send(i);
    await until(() => proxy.stats('forward').frames === n + 1, 5000, 'every frame at the proxy');
    proxy.set('forward', { lossRate: 0 });
    client.send('end');
    await until(() => server.got.at(-1) === 'end', 5000, 'the end marker');
    expect(server.got[0]).toBe(0);
    const delivered = server.got.length - 2;
    expect(delivered).toBeGreaterThan(n * 0.7 - 100);
    expect(delivered).toBeLessThan(n * 0.7 + 100);
    expect(proxy.stats('forward').dropped).toBe(n - delivered);
    expect((server.got.slice(0, -1) as number[]).every((v, i, a) => i === 0 || v > a[i - 1]!)).toBe(true);
  });

  it('with lossRate 1 passes only the first frame of each direction of each connection', async () => {
    const { proxy, client, server, target } = await link();
    proxy.set('forward', { lossRate: 1 });
    proxy.set('backward', { lossRate: 1 });
    const pairs = [[client, server]];
    for (let i = 1; i < 3; i++) {
      const c = await dial(proxy.port);
      await until(() => target.peers.length === i + 1, 3000, 'a target connection');
      pairs.push([c, target.peers[i]!]);
    }
    for (const [c, s] of pairs) {
      c!.send('hi', 1, 2, 3);
      s!.send('hi', 4, 5);
    }
    await until(() => proxy.stats('forward').frames === 12 && proxy.stats('backward').frames === 9);
    await sleep(50);
    for (const [c, s] of pairs) {
      expect(c!.got).toEqual(['hi']);
      expect(s!.got).toEqual(['hi']);
    }
    expect(proxy.stats('forward').dropped).toBe(9);
    expect(proxy.stats('backward').dropped).toBe(6);
  });

  it('pauses the source while a direction holds more than 4 MiB, then delivers everything', async () => {
    const { proxy, client, server } = await link();
    proxy.set('forward', { delayMs: 400 });
    const body = new Uint8Array(64 * 1024);
    const n = 160; // 10 MiB
    for (let i = 0; i < n; i++) {
      body[0] = i;
      client.socket.write(encodeFrame(body));
    }
    await until(() => proxy.stats('forward').bytes > 4 * 1024 * 1024, 3000, '4 MiB held');
    await sleep(100);
    // Paused: at most one more 64 KiB read (and the frame it completes) got past the mark.
    if (server.got.length === 0) expect(proxy.stats('forward').bytes).toBeLessThan(4.5 * 1024 * 1024);
    await server.waitFor(n, 10_000);
    expect(server.got.map((b) => (b as Uint8Array)[0])).toEqual([...Array(n).keys()]);
  });

  it('resetConnections closes both sockets of every pair; new connections still work', async () => {
    const { proxy, client, server, target } = await link();
    client.send(1);
    await server.waitFor(1);
    proxy.resetConnections();
    await Promise.all([client.whenGone, server.whenGone]);
    const again = await dial(proxy.port);
    again.send(2);
    await until(() => target.peers.length === 2, 3000, 'a new target connection');
    await target.peers[1]!.waitFor(1);
    expect(target.peers[1]!.got).toEqual([2]);
  });

  it('closes the client when the target refuses', async () => {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    await new Promise<void>((r) => server.close(() => r()));
    const proxy = await startProxy(address.port);
    const client = await dial(proxy.port);
    await client.whenGone;
  });

  it('closes one side when the other side closes or resets', async () => {
    const first = await link();
    first.server.socket.destroy();
    await first.client.whenGone;
    const client2 = await dial(first.proxy.port);
    await until(() => first.target.peers.length === 2);
    client2.socket.resetAndDestroy();
    await first.target.peers[1]!.whenGone;
  });

  it('passes a half-close on after the frames before it, even when delayed', async () => {
    const { proxy, client, server } = await link();
    proxy.set('forward', { delayMs: 50 });
    client.send('last');
    client.socket.end();
    await until(() => server.ended, 3000, 'the end at the target');
    expect(server.got).toEqual(['last']);
    expect(server.closed).toBe(false);
    server.send('reply');
    server.socket.end();
    await Promise.all([client.whenClosed, server.whenClosed]);
    expect(client.got).toEqual(['reply']);
  });

  it('closes the pair on a frame over frameBytesMax', async () => {
    const { client, server } = await link({ frameBytesMax: 100 });
    client.send('small');
    await server.waitFor(1);
    client.send('x'.repeat(200));
    await Promise.all([client.whenGone, server.whenGone]);
    expect(server.got).toEqual(['small']);
  });

  it('validates set() and merges partial modes', async () => {
    const proxy = await startProxy(await startEcho());
    expect(() => proxy.set('forward', { delayMs: -1 })).toThrow(/delayMs/);
    expect(() => proxy.set('forward', { delayMs: Number.POSITIVE_INFINITY })).toThrow(/delayMs/);
    expect(() => proxy.set('forward', { jitterMs: Number.NaN })).toThrow(/jitterMs/);
    expect(() => proxy.set('forward', { lossRate: 1.5 })).toThrow(/lossRate/);
    expect(() => proxy.set('backward', { lossRate: -0.1 })).toThrow(RangeError);
    expect(() => proxy.set('backward', { lossRate: Number.NaN })).toThrow(RangeError);
    expect(proxy.mode('forward')).toEqual(PASS);
    proxy.set('forward', { delayMs: 5 });
    proxy.set('forward', { lossRate: 0.5, jitterMs: 1 });
    expect(proxy.mode('forward')).toEqual({ blackhole: false, delayMs: 5, jitterMs: 1, lossRate: 0.5 });
    expect(proxy.mode('backward')).toEqual(PASS);
  });

  it('close() is idempotent, refuses new connections and destroys open ones', async () => {
    const { proxy, client, server } = await link();
    proxy.set('forward', { delayMs: 60_000 });
    client.send(1);
    await until(() => proxy.stats('forward').frames === 1);
    await Promise.all([proxy.close(), proxy.close()]);
    await proxy.close();
    await Promise.all([client.whenGone, server.whenGone]);
    const socket = createConnection({ host: '127.0.0.1', port: proxy.port });
    const [err] = (await once(socket, 'error')) as [NodeJS.ErrnoException];
    expect(err.code).toBe('ECONNREFUSED');
  });

  it('leaves nothing that keeps a process alive after close()', async () => {
    const proxyUrl = new URL(`file://${resolve(REPO_ROOT, 'jepsen-like/runner/proxy.ts')}`).href;
    const script = `
      import { createConnection, createServer } from 'node:net';
      const { LinkProxy } = await import(${JSON.stringify(proxyUrl)});
      const sockets = [];
      const target = createServer((s) => { sockets.push(s); s.on('error', () => {}); s.resume(); });
      await new Promise((r) => target.listen(0, '127.0.0.1', r));
      const proxy = await LinkProxy.start({ name: 'x', targetHost: '127.0.0.1', targetPort: target.address().port });
      proxy.set('forward', { delayMs: 60000, jitterMs: 10 });
      const c = createConnection({ host: '127.0.0.1', port: proxy.port });
      c.on('error', () => {});
      await new Promise((r) => c.on('connect', r));
      const frame = Buffer.from([0, 0, 0, 1, 7]);
      c.write(frame); c.write(frame);
      while (proxy.stats('forward').frames < 2) await new Promise((r) => setTimeout(r, 5));
      await proxy.close();
      c.destroy();
      target.close();
      console.log('closed');
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    cleanups.push(() => child.kill('SIGKILL'));
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const started = performance.now();
    const [code] = (await Promise.race([once(child, 'exit'), sleep(15_000).then(() => ['timeout'])])) as [
      number | string,
    ];
    expect(out.trim()).toBe('closed');
    expect(code).toBe(0);
    expect(performance.now() - started).toBeLessThan(15_000);
  }, 20_000);
});
