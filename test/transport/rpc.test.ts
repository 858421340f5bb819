import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DkvError, ErrorCode, isDkvError } from '../../src/errors.js';
import { SeededRandom } from '../../src/random.js';
import { encodeFrame, FrameDecoder } from '../../src/transport/frame.js';
import { RpcClient, type RpcClientOptions } from '../../src/transport/rpc-client.js';
import {
  type RpcContext,
  type RpcHandlers,
  RpcServer,
  type StreamSink,
} from '../../src/transport/rpc-server.js';
import type { LogLevel } from '../../src/transport/sockets.js';

const FRAME_MAX = 1 << 20;
const HOST = '127.0.0.1';

/** Everything a test opens, closed in afterEach whatever happened. */
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  const fs = cleanups.splice(0).reverse();
  for (const f of fs) {
    try {
      await f();
    } catch {
      // already closed
    }
  }
});

interface LogLine {
  level: LogLevel;
  msg: string;
  fields: Record<string, unknown> | undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** codeOf awaits a promise that must reject with a DkvError and returns its code. */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isDkvError(err)) return err.code;
    throw err;
  }
  throw new Error('expected a rejection');
}

/** Test state the handlers report into. */
interface Probe {
  aborted: string[];
  cleanups: number[];
  backpressure: number;
  slowStarted: number;
  pushedUntilClose: number;
}

function makeHandlers(probe: Probe): RpcHandlers {
  return {
    ops: {
      echo: 'unary',
      syncEcho: 'unary',
      fail: 'unary',
      boom: 'unary',
      slow: 'unary',
      big: 'unary',
      count: 'stream',
      failAfter: 'stream',
      forever: 'stream',
      polite: 'stream',
      reckless: 'stream',
      throws: 'stream',
    },
    unary(op: string, args: unknown, ctx: RpcContext): unknown {
      switch (op) {
        case 'echo':
          return Promise.resolve(args);
        case 'syncEcho':
          return args;
        case 'fail': {
          const a = args as { code: ErrorCode; leaderHint?: number };
          return Promise.reject(
            new DkvError(
              a.code,
              `failed with ${a.code}`,
              a.leaderHint !== undefined ? { leaderHint: a.leaderHint } : {},
            ),
          );
        }
        case 'boom':
          throw new TypeError('handler bug');
        case 'slow':
          probe.slowStarted++;
          return new Promise((resolve) => {
            const timer = setTimeout(() => resolve('late'), (args as number | undefined) ?? 10_000);
            ctx.signal.addEventListener('abort', () => {
              clearTimeout(timer);
              probe.aborted.push(`${ctx.op}#${ctx.id}`);
              resolve('aborted');
            });
          });
        case 'big':
          return new Uint8Array(args as number);
        default:
          throw new Error(`no unary handler for ${op}`);
      }
    },
    stream(op: string, args: unknown, ctx: RpcContext, sink: StreamSink): (() => void) | undefined {
      switch (op) {
        case 'count': {
          for (let i = 0; i < (args as number); i++) sink.push(i);
          sink.end();
          return () => probe.cleanups.push(ctx.id);
        }
        case 'failAfter': {
          for (let i = 0; i < (args as number); i++) sink.push(i);
          sink.fail(new DkvError(ErrorCode.Compacted, 'compacted', { compactRevision: 42 }));
          return undefined;
        }
        case 'forever': {
          let i = 0;
          const timer = setInterval(() => sink.push(i++), 2);
          return () => {
            clearInterval(timer);
            probe.cleanups.push(ctx.id);
          };
        }
        case 'polite': {
          // Pushes until told the client is not keeping up, then cuts it off, as a watch would.
          const chunk = 'x'.repeat(1000);
          const timer = setInterval(() => {
            for (let i = 0; i < 50; i++) {
              if (!sink.push(chunk)) {
                probe.backpressure++;
                sink.fail(new DkvError(ErrorCode.SlowConsumer, 'too slow'));
                return;
              }
            }
          }, 1);
          return () => {
            clearInterval(timer);
            probe.cleanups.push(ctx.id);
          };
        }
        case 'reckless': {
          // Ignores backpressure: the server must close the connection once its output is too big.
          const chunk = 'y'.repeat(10_000);
          const timer = setInterval(() => {
            for (let i = 0; i < 50; i++) {
              sink.push(chunk);
              probe.pushedUntilClose++;
            }
          }, 1);
          return () => {
            clearInterval(timer);
            probe.cleanups.push(ctx.id);
          };
        }
        case 'throws':
          throw new Error('stream handler bug');
        default:
          throw new Error(`no stream handler for ${op}`);
      }
    },
  };
}

interface Fixture {
  server: RpcServer;
  port: number;
  logs: LogLine[];
  probe: Probe;
  client(opts?: Partial<RpcClientOptions>): Promise<RpcClient>;
}

async function startServer(opts: { inFlightMax?: number; outBytesMax?: number } = {}): Promise<Fixture> {
  const logs: LogLine[] = [];
  const probe: Probe = { aborted: [], cleanups: [], backpressure: 0, slowStarted: 0, pushedUntilClose: 0 };
  const server = new RpcServer({
    listen: { host: HOST, port: 0 },
    frameBytesMax: FRAME_MAX,
    inFlightMax: opts.inFlightMax ?? 1000,
    handlers: makeHandlers(probe),
    log: (level, msg, fields) => logs.push({ level, msg, fields }),
    ...(opts.outBytesMax !== undefined && { outBytesMax: opts.outBytesMax }),
  });
  const { port } = await server.start();
  cleanups.push(() => server.close());
  return {
    server,
    port,
    logs,
    probe,
    async client(extra = {}) {
      const c = await RpcClient.connect({ host: HOST, port, frameBytesMax: FRAME_MAX, ...extra });
      cleanups.push(() => c.close());
      return c;
    },
  };
}

/** rawSocket connects a plain socket, for hostile input; it collects what the server sends. */
async function rawSocket(
  port: number,
): Promise<{ socket: net.Socket; closed: Promise<void>; received: Buffer[] }> {
  const socket = net.connect({ host: HOST, port });
  cleanups.push(() => socket.destroy());
  const received: Buffer[] = [];
  socket.on('data', (b: Buffer) => received.push(b));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, closed, received };
}

describe('RpcServer and RpcClient: unary calls', () => {
  it('round-trips many requests in flight on one connection, answered by id', async () => {
    const f = await startServer();
    const c = await f.client();
    const values = Array.from({ length: 500 }, (_, i) => ({
      i,
      s: 'v'.repeat(i % 50),
      b: new Uint8Array([i & 0xff]),
    }));
    const answers = await Promise.all(values.map((v, i) => c.call(i % 2 === 0 ? 'echo' : 'syncEcho', v)));
    expect(answers).toEqual(values);
    expect(await c.call('echo')).toBeUndefined();
    expect(c.inFlight).toBe(0);
  });

  it("answers errors with the handler's code and details; other errors become UNAVAILABLE, logged", async () => {
    const f = await startServer();
    const c = await f.client();
    const err = await c.call('fail', { code: ErrorCode.NotLeader, leaderHint: 3 }).catch((e: unknown) => e);
    expect(isDkvError(err, ErrorCode.NotLeader)).toBe(true);
    expect((err as DkvError).details.leaderHint).toBe(3);
    for (const code of [ErrorCode.VersionMismatch, ErrorCode.StaleFence, ErrorCode.TooLarge])
      expect(await codeOf(c.call('fail', { code }))).toBe(code);
    expect(await codeOf(c.call('boom'))).toBe(ErrorCode.Unavailable);
    expect(f.logs.some((l) => l.level === 'error' && l.msg === 'rpc handler failed')).toBe(true);
    expect(f.server.stats.internalErrors).toBe(1);
    expect(await c.call('echo', 'still fine')).toBe('still fine');
  });

  it('answers an unknown op with INVALID_ARGUMENT, keeping the connection', async () => {
    const f = await startServer();
    const c = await f.client();
    expect(await codeOf(c.call('nope', 1))).toBe(ErrorCode.InvalidArgument);
    expect(await codeOf(c.call('toString', 1))).toBe(ErrorCode.InvalidArgument);
    expect(await c.call('echo', 2)).toBe(2);
    expect(f.server.connectionCount()).toBe(1);
  });

  it('refuses a bad op name or timeout locally, and a request over frameBytesMax with TOO_LARGE', async () => {
    const f = await startServer();
    const c = await f.client({ frameBytesMax: 1000 });
    expect(await codeOf(c.call('', 1))).toBe(ErrorCode.InvalidArgument);
    expect(await codeOf(c.call('x'.repeat(65), 1))).toBe(ErrorCode.InvalidArgument);
    expect(await codeOf(c.call('echo', 1, { timeoutMs: -1 }))).toBe(ErrorCode.InvalidArgument);
    expect(await codeOf(c.call('echo', 'z'.repeat(2000)))).toBe(ErrorCode.TooLarge);
    expect(c.inFlight).toBe(0);
    expect(await c.call('echo', 'ok')).toBe('ok');
  });

  it('answers TOO_LARGE when the answer would exceed frameBytesMax, keeping the connection', async () => {
    const f = await startServer();
    const c = await f.client();
    expect(((await c.call('big', 1000)) as Uint8Array).length).toBe(1000);
    expect(await codeOf(c.call('big', FRAME_MAX + 10))).toBe(ErrorCode.TooLarge);
    expect(await c.call('echo', 'ok')).toBe('ok');
  });

  it('times out with TIMEOUT and cancels the request on the server', async () => {
    const f = await startServer();
    const c = await f.client();
    const t0 = performance.now();
    expect(await codeOf(c.call('slow', 10_000, { timeoutMs: 50 }))).toBe(ErrorCode.Timeout);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(45);
    await until(() => f.probe.aborted.length === 1, 'the server-side abort');
    expect(await c.call('slow', 1, { timeoutMs: 2000 })).toBe('late');
  });

  it('honours AbortSignal: CANCELLED, and the server handler sees its signal abort', async () => {
    const f = await startServer();
    const c = await f.client();
    const ac = new AbortController();
    const p = c.call('slow', 10_000, { signal: ac.signal });
    await until(() => f.probe.slowStarted === 1, 'the handler to start');
    ac.abort();
    expect(await codeOf(p)).toBe(ErrorCode.Cancelled);
    await until(() => f.probe.aborted.length === 1, 'the server-side abort');
    expect(await codeOf(c.call('echo', 1, { signal: AbortSignal.abort() }))).toBe(ErrorCode.Cancelled);
    expect(c.inFlight).toBe(0);
  });

  it('answers OVERLOADED beyond inFlightMax per connection, and recovers', async () => {
    const f = await startServer({ inFlightMax: 4 });
    const c = await f.client();
    const slow = Array.from({ length: 4 }, () => c.call('slow', 200));
    await until(() => f.probe.slowStarted === 4, 'four handlers running');
    const extra = await Promise.allSettled([c.call('echo', 1), c.call('echo', 2)]);
    expect(extra.map((r) => (r.status === 'rejected' ? (r.reason as DkvError).code : 'ok'))).toEqual([
      ErrorCode.Overloaded,
      ErrorCode.Overloaded,
    ]);
    // Another connection has its own budget.
    const c2 = await f.client();
    expect(await c2.call('echo', 'other')).toBe('other');
    expect(await Promise.all(slow)).toEqual(['late', 'late', 'late', 'late']);
    expect(await c.call('echo', 3)).toBe(3);
    expect(f.server.stats.overloaded).toBe(2);
  });

  it('keeps cancelled-but-running handlers in the budget', async () => {
    const f = await startServer({ inFlightMax: 2 });
    const c = await f.client();
    // Handlers that ignore their signal keep running after a cancel; they must still count.
    const p1 = c.call('slow', 300, { timeoutMs: 20 });
    const p2 = c.call('slow', 300, { timeoutMs: 20 });
    expect(await codeOf(p1)).toBe(ErrorCode.Timeout);
    expect(await codeOf(p2)).toBe(ErrorCode.Timeout);
    // 'slow' resolves early on abort, so the budget frees up quickly.
    await until(() => f.probe.aborted.length === 2, 'both aborts');
    expect(await c.call('echo', 'free again')).toBe('free again');
  });
});

describe('RpcServer and RpcClient: streams', () => {
  it('delivers items in order, then ends; cleanup runs once', async () => {
    const f = await startServer();
    const c = await f.client();
    const got: unknown[] = [];
    for await (const v of c.stream('count', 300)) got.push(v);
    expect(got).toEqual(Array.from({ length: 300 }, (_, i) => i));
    await until(() => f.probe.cleanups.length === 1, 'cleanup');
    const empty: unknown[] = [];
    for await (const v of c.stream('count', 0)) empty.push(v);
    expect(empty).toEqual([]);
    expect(c.inFlight).toBe(0);
  });

  it('fails a stream with the server error after its items', async () => {
    const f = await startServer();
    const c = await f.client();
    const got: unknown[] = [];
    let error: unknown;
    try {
      for await (const v of c.stream('failAfter', 5)) got.push(v);
    } catch (err) {
      error = err;
    }
    expect(got).toEqual([0, 1, 2, 3, 4]);
    expect(isDkvError(error, ErrorCode.Compacted)).toBe(true);
    expect((error as DkvError).details.compactRevision).toBe(42);
    // A stream handler that throws is an internal error.
    expect(await codeOf(c.stream('throws').next())).toBe(ErrorCode.Unavailable);
  });

  it('stops a stream from the client (close or break): the server cleans up', async () => {
    const f = await startServer();
    const c = await f.client();
    const s = c.stream('forever');
    const got: unknown[] = [];
    for await (const v of s) {
      got.push(v);
      if (got.length === 20) break;
    }
    expect(got).toEqual(Array.from({ length: 20 }, (_, i) => i));
    await until(() => f.probe.cleanups.length === 1, 'cleanup after break');
    const s2 = c.stream('forever');
    expect((await s2.next()).value).toBe(0);
    await until(() => s2.buffered > 3, 'a few items buffered');
    s2.close();
    expect(s2.buffered).toBe(0);
    expect((await s2.next()).done).toBe(true);
    await until(() => f.probe.cleanups.length === 2, 'cleanup after close');
    expect(c.inFlight).toBe(0);
    expect(await c.call('echo', 'after')).toBe('after');
  });

  it('aborts a stream through its signal with CANCELLED', async () => {
    const f = await startServer();
    const c = await f.client();
    const ac = new AbortController();
    const s = c.stream('forever', undefined, { signal: ac.signal });
    await s.next();
    ac.abort();
    expect(await codeOf(s.next())).toBe(ErrorCode.Cancelled);
    await until(() => f.probe.cleanups.length === 1, 'cleanup');
  });

  it('cuts a slow consumer off with SLOW_CONSUMER after its bounded buffer', async () => {
    const f = await startServer();
    const c = await f.client();
    const s = c.stream('forever', undefined, { bufferMax: 10 });
    await until(() => f.probe.cleanups.length === 1, 'the server to be told');
    expect(s.buffered).toBe(10);
    const got: unknown[] = [];
    let error: unknown;
    try {
      for await (const v of s) got.push(v);
    } catch (err) {
      error = err;
    }
    expect(got).toEqual(Array.from({ length: 10 }, (_, i) => i));
    expect(isDkvError(error, ErrorCode.SlowConsumer)).toBe(true);
  });

  it('tells a stream handler when the client does not read, so it can cut it off', async () => {
    const f = await startServer();
    const raw = await rawSocket(f.port);
    raw.socket.pause(); // never read
    raw.socket.write(encodeFrame({ id: 1, op: 'polite' }));
    await until(() => f.probe.backpressure === 1, 'push() to return false', 10_000);
    await until(() => f.probe.cleanups.length === 1, 'cleanup');
    expect(f.server.connectionCount()).toBe(1);
  });

  it('fails a stream that ignores backpressure beyond outBytesMax with SLOW_CONSUMER, keeping the connection', async () => {
    const f = await startServer({ outBytesMax: 1 << 20 });
    const raw = await rawSocket(f.port);
    raw.socket.pause();
    raw.socket.write(encodeFrame({ id: 1, op: 'reckless' }));
    await until(() => f.probe.cleanups.length === 1, 'cleanup', 10_000);
    expect(f.logs.some((l) => l.msg.includes('stream cut off'))).toBe(true);
    expect(f.server.connectionCount()).toBe(1);
    // The stream's end went out after the items: reading everything shows SLOW_CONSUMER last.
    raw.socket.resume();
    const dec = new FrameDecoder({ frameBytesMax: FRAME_MAX });
    await until(() => {
      const frames = dec.push(Buffer.concat(raw.received.splice(0)));
      return frames.some((fr) => (fr as { ok?: boolean }).ok === false);
    }, 'the SLOW_CONSUMER frame');
  });

  it('answers big pipelined bursts to a client that reads, without closing it', async () => {
    const f = await startServer({ inFlightMax: 5000 });
    const c = await f.client({ inFlightMax: 5000 });
    const answers = await Promise.all(Array.from({ length: 3000 }, () => c.call('big', 20_000)));
    expect(answers.every((a) => (a as Uint8Array).length === 20_000)).toBe(true);
    expect(f.server.connectionCount()).toBe(1);
  });

  it('stops starting requests for a client that does not read its answers', async () => {
    const f = await startServer({ inFlightMax: 100_000 });
    const raw = await rawSocket(f.port);
    raw.socket.pause();
    const frames: Uint8Array[] = [];
    for (let i = 1; i <= 20_000; i++) frames.push(encodeFrame({ id: i, op: 'big', args: 20_000 }));
    raw.socket.write(Buffer.concat(frames));
    await sleep(300);
    // 400 MB of answers were asked for; the server stopped early and holds a bounded amount.
    expect(f.server.stats.requests).toBeLessThan(20_000);
    const conn = [...(f.server as unknown as { conns: Set<{ socket: net.Socket }> }).conns][0]!;
    expect(conn.socket.writableLength).toBeLessThan(64 << 20);
    raw.socket.resume();
    let bytes = 0;
    raw.socket.on('data', (b: Buffer) => {
      bytes += b.length;
    });
    await until(
      () => f.server.stats.requests === 20_000,
      'every request served once the client reads',
      20_000,
    );
    await until(() => bytes >= 20_000 * 20_000, 'every answer read', 20_000);
  });

  it('refuses the wrong call shape for an op cleanly', async () => {
    const f = await startServer();
    const c = await f.client();
    expect(await codeOf(c.call('count', 3))).toBe(ErrorCode.InvalidArgument);
    expect(await codeOf(c.stream('echo', 1).next())).toBe(ErrorCode.InvalidArgument);
    expect(await c.call('echo', 'ok')).toBe('ok');
  });
});

describe('RpcClient: connection loss and closing', () => {
  it('fails a written request with TIMEOUT (outcome unknown) and later calls with UNAVAILABLE', async () => {
    const f = await startServer();
    const c = await f.client();
    let closeReason: unknown = 'not called';
    c.onClose((r) => {
      closeReason = r;
    });
    const pending = codeOf(c.call('slow', 10_000));
    const stream = c.stream('forever');
    await stream.next();
    await until(() => f.probe.slowStarted === 1, 'the handler to start');
    await f.server.close();
    expect(await pending).toBe(ErrorCode.Timeout);
    let streamError: unknown;
    try {
      for await (const _ of stream) {
        // drain what was buffered
      }
    } catch (err) {
      streamError = err;
    }
    expect(isDkvError(streamError, ErrorCode.Unavailable)).toBe(true);
    expect(isDkvError(closeReason, ErrorCode.Unavailable)).toBe(true);
    expect(c.closed).toBe(true);
    expect(await codeOf(c.call('echo', 1))).toBe(ErrorCode.Unavailable);
    expect(f.probe.aborted.length).toBe(1);
    expect(f.probe.cleanups.length).toBe(1);
  });

  it('fails requests never written with UNAVAILABLE; a full local queue or a deadline in it with OVERLOADED', async () => {
    // A server that accepts and never reads: the client's writes back up.
    const sockets: net.Socket[] = [];
    const sink = net.createServer((s) => {
      s.pause();
      sockets.push(s);
    });
    cleanups.push(() => new Promise((resolve) => sink.close(resolve)));
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
    });
    await new Promise<void>((resolve) => sink.listen(0, HOST, resolve));
    const port = (sink.address() as net.AddressInfo).port;
    const c = await RpcClient.connect({ host: HOST, port, frameBytesMax: FRAME_MAX, queueBytesMax: 1 << 20 });
    cleanups.push(() => c.close());
    const payload = new Uint8Array(64 * 1024);
    const written: Promise<unknown>[] = [];
    // Fill the kernel buffers and the socket's own buffer until the client has to queue.
    for (let i = 0; i < 2000; i++) {
      written.push(c.call('echo', payload).catch((e: unknown) => e));
      await sleep(0);
      if ((c as unknown as { queueBytes: number }).queueBytes > 0) break;
    }
    expect((c as unknown as { queueBytes: number }).queueBytes).toBeGreaterThan(0);
    const queued = c.call('echo', 'queued');
    const deadline = c.call('echo', 'deadline', { timeoutMs: 30 });
    expect(await codeOf(deadline)).toBe(ErrorCode.Overloaded);
    const overflow: Promise<unknown>[] = [];
    for (let i = 0; i < 40; i++) overflow.push(c.call('echo', payload).catch((e: unknown) => e));
    const results = await Promise.race([Promise.all(overflow), sleep(50).then(() => undefined)]);
    // Some of these fit in the 1 MiB queue; the rest were refused at once.
    expect(results).toBeUndefined();
    for (const s of sockets) s.destroy();
    expect(await codeOf(queued)).toBe(ErrorCode.Unavailable);
    const codes = new Set((await Promise.all(written)).map((e) => (e as DkvError).code));
    expect(codes.has(ErrorCode.Timeout)).toBe(true); // those that made it onto the wire
    const overflowCodes = (await Promise.all(overflow)).map((e) => (e as DkvError).code);
    expect(overflowCodes).toContain(ErrorCode.Overloaded);
    expect(overflowCodes).toContain(ErrorCode.Unavailable);
  });

  it('close() cancels pending calls and streams, calls onClose without a reason, and is idempotent', async () => {
    const f = await startServer();
    const c = await f.client();
    let closeReason: unknown = 'not called';
    c.onClose((r) => {
      closeReason = r;
    });
    const p = codeOf(c.call('slow', 10_000));
    const s = c.stream('forever');
    await s.next();
    await Promise.all([c.close(), c.close()]);
    expect(await p).toBe(ErrorCode.Cancelled);
    expect(await codeOf(s.next())).toBe(ErrorCode.Cancelled);
    expect(closeReason).toBeUndefined();
    expect(await codeOf(c.call('echo', 1))).toBe(ErrorCode.Cancelled);
    await until(() => f.server.connectionCount() === 0, 'the server to see the close');
    await until(() => f.probe.aborted.length === 1 && f.probe.cleanups.length === 1, 'server cleanup');
  });

  it('fails connect with UNAVAILABLE when nothing listens', async () => {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, HOST, resolve));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    expect(await codeOf(RpcClient.connect({ host: HOST, port, frameBytesMax: FRAME_MAX }))).toBe(
      ErrorCode.Unavailable,
    );
  });

  it('closes on a malformed answer from the server: written calls TIMEOUT', async () => {
    const liar = net.createServer((s) => {
      s.on('data', () => s.write(encodeFrame({ id: 1, ok: 'maybe' })));
    });
    cleanups.push(() => new Promise((resolve) => liar.close(resolve)));
    await new Promise<void>((resolve) => liar.listen(0, HOST, resolve));
    const logs: string[] = [];
    const c = await RpcClient.connect({
      host: HOST,
      port: (liar.address() as net.AddressInfo).port,
      frameBytesMax: FRAME_MAX,
      log: (_l, msg) => logs.push(msg),
    });
    cleanups.push(() => c.close());
    expect(await codeOf(c.call('echo', 1))).toBe(ErrorCode.Timeout);
    expect(c.closed).toBe(true);
    expect(logs.some((m) => m.includes('protocol violation'))).toBe(true);
  });
});

describe('RpcServer: hostile input', () => {
  it('closes a connection on each kind of malformed frame, logs why, and keeps serving others', async () => {
    const f = await startServer();
    const good = await f.client();
    const bad: Uint8Array[] = [
      encodeFrame([1, 2, 3]), // not a map
      encodeFrame({ id: 0, op: 'echo' }), // id not positive
      encodeFrame({ id: 1.5, op: 'echo' }),
      encodeFrame({ id: '1', op: 'echo' }),
      encodeFrame({ id: 1, op: 7 }),
      encodeFrame({ id: 1, op: '' }),
      encodeFrame({ id: 1, op: 'echo', args: 1, extra: true }), // unknown field
      encodeFrame({ id: 1, cancel: false }),
      encodeFrame({ id: 1, cancel: true, op: 'echo' }),
      new Uint8Array([0, 0, 0, 0]), // empty body
      new Uint8Array([0xff, 0xff, 0xff, 0xff]), // 4 GiB claimed
      new Uint8Array([0, 0, 0, 3, 0xd4, 0x05, 0x00]), // unknown msgpack extension
      new Uint8Array([0, 0, 0, 2, 0x01, 0x02]), // trailing bytes
    ];
    for (const frame of bad) {
      const raw = await rawSocket(f.port);
      raw.socket.write(frame);
      await raw.closed;
    }
    expect(f.server.stats.connectionsClosedMalformed).toBe(bad.length);
    expect(f.logs.filter((l) => l.msg.includes('protocol violation')).length).toBe(bad.length);
    expect(await good.call('echo', 'unharmed')).toBe('unharmed');
  });

  it('closes a connection that reuses an in-flight id', async () => {
    const f = await startServer();
    const raw = await rawSocket(f.port);
    raw.socket.write(encodeFrame({ id: 5, op: 'slow', args: 10_000 }));
    raw.socket.write(encodeFrame({ id: 5, op: 'echo', args: 1 }));
    await raw.closed;
    expect(f.logs.some((l) => String(l.fields?.reason).includes('already in flight'))).toBe(true);
    await until(() => f.probe.aborted.length === 1, 'the orphaned handler to be aborted');
  });

  it('answers a valid request sent by hand, and ignores a cancel for an unknown id', async () => {
    const f = await startServer();
    const raw = await rawSocket(f.port);
    raw.socket.write(encodeFrame({ id: 99, cancel: true }));
    raw.socket.write(encodeFrame({ id: 7, op: 'echo', args: 'hi' }));
    await until(() => raw.received.length > 0, 'an answer');
    const dec = new FrameDecoder({ frameBytesMax: FRAME_MAX });
    expect(dec.push(Buffer.concat(raw.received))).toEqual([{ id: 7, ok: true, value: 'hi' }]);
  });

  it('survives random bytes on many connections while a client keeps calling', async () => {
    const f = await startServer();
    const good = await f.client();
    const rnd = new SeededRandom(20240501);
    let calls = 0;
    let stop = false;
    const caller = (async () => {
      while (!stop) {
        expect(await good.call('echo', calls)).toBe(calls);
        calls++;
      }
    })();
    for (let round = 0; round < 10; round++) {
      await Promise.all(
        Array.from({ length: 20 }, async () => {
          const raw = await rawSocket(f.port);
          const n = 1 + rnd.int(300);
          const bytes = new Uint8Array(n);
          for (let i = 0; i < n; i++) bytes[i] = rnd.int(256);
          // Half get a plausible small length prefix so the msgpack layer is exercised.
          if (n >= 4 && rnd.chance(0.5)) new DataView(bytes.buffer).setUint32(0, n - 4);
          raw.socket.write(bytes);
          raw.socket.end();
          await raw.closed;
        }),
      );
    }
    stop = true;
    await caller;
    expect(calls).toBeGreaterThan(10);
    expect(await good.call('echo', 'alive')).toBe('alive');
    await until(() => f.server.connectionCount() === 1, 'garbage connections to be gone');
  });
});
