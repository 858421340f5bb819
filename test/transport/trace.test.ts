/**
 * Tracing: a request id from the client through the wire into the server's handlers.
 * - The request frame's optional `trace`: validated like every field (1 to 64 printable ASCII
 *   characters), a frame without it as valid as ever.
 * - RpcClient sends it (calls and streams) and RpcServer hands it to the handler as
 *   `ctx.trace`; a bad one is refused by the client before sending, and a raw frame with a
 *   bad one closes the connection like any malformed frame.
 * - DkvClient gives every call an id (`<clientId>-<n>`, or the caller's `requestId`), keeps it
 *   across the call's retries, and puts it in `details.requestId` of the DkvError it throws.
 * - End to end on a real 1-node DkvNode: the node's observer and its debug log see the id.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DkvClient } from '../../src/client/client.js';
import { DkvError, ErrorCode, isDkvError } from '../../src/errors.js';
import { checkNodeConfig } from '../../src/node/config.js';
import { DkvNode } from '../../src/node/node.js';
import type { RequestOutcome } from '../../src/node/observer.js';
import { encodeFrame, FrameDecoder } from '../../src/transport/frame.js';
import type { PartitionMap } from '../../src/transport/protocol.js';
import { RpcClient } from '../../src/transport/rpc-client.js';
import { checkRequest, isTraceId, TRACE_LENGTH_MAX } from '../../src/transport/rpc-protocol.js';
import { type RpcContext, RpcServer } from '../../src/transport/rpc-server.js';

const HOST = '127.0.0.1';
const FRAME_MAX = 1 << 20;

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

/** rejection is the error a promise rejects with (fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<DkvError> {
  try {
    await p;
  } catch (err) {
    if (isDkvError(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('the request frame trace field', () => {
  it('is optional, and passed through when valid', () => {
    expect(checkRequest({ id: 1, op: 'x', args: {} })).toEqual({
      kind: 'request',
      id: 1,
      op: 'x',
      args: {},
      trace: undefined,
    });
    const edge = ` ~${'a'.repeat(TRACE_LENGTH_MAX - 2)}`;
    expect(checkRequest({ id: 2, op: 'x', trace: 'abc-1' })).toMatchObject({ trace: 'abc-1' });
    expect(checkRequest({ id: 2, op: 'x', trace: edge })).toMatchObject({ trace: edge });
    expect(isTraceId(edge)).toBe(true);
  });

  it.each([
    ['a number', 12],
    ['null', null],
    ['an empty string', ''],
    [`${TRACE_LENGTH_MAX + 1} characters`, 'a'.repeat(TRACE_LENGTH_MAX + 1)],
    ['a newline', 'a\nb'],
    ['DEL', 'a\x7f'],
    ['a non-ASCII letter', 'café'],
    ['an array', ['a']],
  ])('refuses %s', (_why, trace) => {
    expect(() => checkRequest({ id: 1, op: 'x', trace })).toThrow(/malformed frame: trace must be/);
    expect(isTraceId(trace)).toBe(false);
  });

  it('still refuses unknown fields', () => {
    expect(() => checkRequest({ id: 1, op: 'x', traceId: 'a' })).toThrow(/unknown field "traceId"/);
  });
});

// ---------------------------------------------------------------- RpcClient and RpcServer

async function echoServer(): Promise<{ server: RpcServer; port: number; seen: (string | undefined)[] }> {
  const seen: (string | undefined)[] = [];
  const server = new RpcServer({
    listen: { host: HOST, port: 0 },
    frameBytesMax: FRAME_MAX,
    inFlightMax: 100,
    handlers: {
      ops: { echo: 'unary', tail: 'stream' },
      unary: (_op, _args, ctx: RpcContext) => {
        seen.push(ctx.trace);
        return ctx.trace ?? null;
      },
      stream: (_op, _args, ctx, sink) => {
        seen.push(ctx.trace);
        sink.push(ctx.trace ?? null);
        sink.end();
        return undefined;
      },
    },
  });
  const { port } = await server.start();
  cleanups.push(() => server.close());
  return { server, port, seen };
}

async function rpcClient(port: number): Promise<RpcClient> {
  const c = await RpcClient.connect({ host: HOST, port, frameBytesMax: FRAME_MAX });
  cleanups.push(() => c.close());
  return c;
}

/**
 * rawExchange sends frames on a bare socket and collects what comes back, until `wanted`
 * answers came, the server closed the connection, or `ms` passed.
 */
async function rawExchange(
  port: number,
  frames: unknown[],
  wanted: number,
  ms = 3000,
): Promise<{ answers: unknown[]; closed: boolean }> {
  const socket: Socket = connect(port, HOST);
  cleanups.push(async () => {
    socket.destroy();
  });
  const decoder = new FrameDecoder({ frameBytesMax: FRAME_MAX });
  const answers: unknown[] = [];
  return new Promise((resolve) => {
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ answers, closed });
    };
    const timer = setTimeout(() => finish(false), ms);
    socket.on('data', (chunk: Buffer) => {
      for (const f of decoder.push(chunk)) answers.push(f);
      if (answers.length >= wanted) finish(false);
    });
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('connect', () => {
      for (const f of frames) socket.write(encodeFrame(f));
    });
  });
}

describe('RpcClient and RpcServer carry the trace', () => {
  it('hands a call or stream trace to the handler, and none when none was sent', async () => {
    const { port, seen } = await echoServer();
    const c = await rpcClient(port);
    expect(await c.call('echo', {}, { trace: 'rid-1' })).toBe('rid-1');
    expect(await c.call('echo', {})).toBeNull();
    const items: unknown[] = [];
    for await (const item of c.stream('tail', {}, { trace: 'rid-stream' })) items.push(item);
    expect(items).toEqual(['rid-stream']);
    expect(seen).toEqual(['rid-1', undefined, 'rid-stream']);
  });

  it('refuses a bad trace in the client, before anything is sent', async () => {
    const { server, port } = await echoServer();
    const c = await rpcClient(port);
    const before = server.stats.requests;
    for (const trace of ['', 'x'.repeat(TRACE_LENGTH_MAX + 1), 'tab\there', 'ünïcode']) {
      const e = await rejection(c.call('echo', {}, { trace }));
      expect(e.code).toBe(ErrorCode.InvalidArgument);
      expect(e.message).toMatch(/trace must be 1 to 64 printable ASCII characters/);
    }
    const items: unknown[] = [];
    const e = await rejection(
      (async () => {
        for await (const item of c.stream('tail', {}, { trace: '\n' })) items.push(item);
      })(),
    );
    expect(e.code).toBe(ErrorCode.InvalidArgument);
    expect(server.stats.requests).toBe(before);
    // The connection is still fine.
    expect(await c.call('echo', {}, { trace: 'after' })).toBe('after');
  });

  it('answers a frame without trace (older clients), and closes the connection on a bad one', async () => {
    const { server, port } = await echoServer();
    const old = await rawExchange(port, [{ id: 1, op: 'echo', args: {} }], 1);
    expect(old.answers).toEqual([{ id: 1, ok: true, value: null }]);
    const good = await rawExchange(port, [{ id: 1, op: 'echo', trace: 'raw-1' }], 1);
    expect(good.answers).toEqual([{ id: 1, ok: true, value: 'raw-1' }]);
    const bad = await rawExchange(port, [{ id: 1, op: 'echo', trace: 'x'.repeat(65) }], 1);
    expect(bad.closed).toBe(true);
    expect(bad.answers).toEqual([]);
    expect(server.stats.connectionsClosedMalformed).toBe(1);
  });
});

// ---------------------------------------------------------------- DkvClient against a fake node

interface Seen {
  readonly op: string;
  readonly trace: string | undefined;
  readonly key: string | undefined;
}

/** FakeNode is one RpcServer speaking enough of the client protocol for DkvClient (one group). */
class FakeNode {
  readonly seen: Seen[] = [];
  /** Answer the next N cmd attempts with OVERLOADED (the client retries them). */
  overloadNext = 0;
  address = '';

  async start(): Promise<void> {
    const server = new RpcServer({
      listen: { host: HOST, port: 0 },
      frameBytesMax: FRAME_MAX,
      inFlightMax: 100,
      handlers: {
        ops: { map: 'unary', status: 'unary', cmd: 'unary', read: 'unary' },
        unary: (op, args, ctx) => this.serve(op, args as Record<string, unknown>, ctx),
      },
    });
    const a = await server.start();
    this.address = `${HOST}:${a.port}`;
    cleanups.push(() => server.close());
  }

  private map(): PartitionMap {
    return {
      store: 'default',
      epoch: 1,
      slotCount: 1024,
      groups: [{ id: 1, slots: [[0, 1024]], replicas: [1], leader: 1 }],
      members: [{ id: 1, address: this.address }],
    };
  }

  private serve(op: string, a: Record<string, unknown>, ctx: RpcContext): unknown {
    const inner = (op === 'cmd' ? a.cmd : a.read) as Record<string, unknown> | undefined;
    const key = typeof inner?.key === 'string' ? inner.key : undefined;
    this.seen.push({ op, trace: ctx.trace, key });
    if (op === 'map') return this.map();
    if (op === 'status') return { members: [], groups: [] };
    if (key === 'conflict') throw new DkvError(ErrorCode.VersionMismatch, 'version 3, not 99');
    if (key === 'silent')
      return new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve(null)));
    if (op === 'cmd') {
      if (this.overloadNext > 0) {
        this.overloadNext--;
        throw new DkvError(ErrorCode.Overloaded, 'try again');
      }
      return { key, value: inner?.value, version: 1, createRevision: 1, modRevision: 1 };
    }
    return null;
  }

  traces(op: string, key?: string): (string | undefined)[] {
    return this.seen.filter((s) => s.op === op && (key === undefined || s.key === key)).map((s) => s.trace);
  }

  get requests(): number {
    return this.seen.length;
  }
}

async function fakeClient(): Promise<{ node: FakeNode; client: DkvClient }> {
  const node = new FakeNode();
  await node.start();
  const client = await DkvClient.connect({ servers: [node.address], requestTimeoutMs: 3000 });
  cleanups.push(() => client.close());
  return { node, client };
}

describe('DkvClient request ids', () => {
  it('gives every call its own <clientId>-<n>, the map fetch and status included', async () => {
    const { node, client } = await fakeClient();
    await client.put('a', 1);
    await client.get('a');
    await client.delete('a');
    await client.status();
    const traces = node.seen.map((s) => s.trace);
    expect(traces.length).toBe(5); // map (connect), put, get, delete, status
    const pattern = new RegExp(`^${client.clientId}-(\\d+)$`);
    const ns = traces.map((t) => Number(pattern.exec(t ?? '')?.[1]));
    expect(ns.every((n) => Number.isSafeInteger(n) && n >= 1)).toBe(true);
    for (let i = 1; i < ns.length; i++) expect(ns[i]!).toBeGreaterThan(ns[i - 1]!);
    expect(node.seen[0]!.op).toBe('map');
    expect(client.clientId.length + 1 + 16).toBeLessThanOrEqual(TRACE_LENGTH_MAX);
  });

  it('keeps one id across the retries of one call', async () => {
    const { node, client } = await fakeClient();
    node.overloadNext = 2;
    await client.put('retried', 'v');
    const traces = node.traces('cmd', 'retried');
    expect(traces.length).toBe(3);
    expect(new Set(traces).size).toBe(1);
    expect(traces[0]).toMatch(new RegExp(`^${client.clientId}-\\d+$`));
    node.overloadNext = 1;
    await client.put('retried2', 'v', { requestId: 'order-42' });
    expect(node.traces('cmd', 'retried2')).toEqual(['order-42', 'order-42']);
  });

  it('sends the caller requestId, and refuses a bad one without sending', async () => {
    const { node, client } = await fakeClient();
    await client.put('k', 1, { requestId: 'checkout:7f3a' });
    await client.get('k', { requestId: 'checkout:7f3a/read' });
    expect(node.traces('cmd', 'k')).toEqual(['checkout:7f3a']);
    expect(node.traces('read', 'k')).toEqual(['checkout:7f3a/read']);
    const before = node.requests;
    for (const requestId of ['', 'x'.repeat(65), 'line\nbreak', 'naïve']) {
      const e = await rejection(client.put('k', 1, { requestId }));
      expect(e.code).toBe(ErrorCode.InvalidArgument);
      expect(e.message).toMatch(/requestId must be 1 to 64 printable ASCII characters/);
    }
    expect(node.requests).toBe(before);
  });

  it('puts the request id in the details of the errors it throws', async () => {
    const { node, client } = await fakeClient();
    const given = await rejection(client.put('conflict', 1, { ifVersion: 99, requestId: 'mine-1' }));
    expect(given.code).toBe(ErrorCode.VersionMismatch);
    expect(given.details.requestId).toBe('mine-1');
    expect(given.message).toBe('version 3, not 99');

    const dflt = await rejection(client.put('conflict', 1, { ifVersion: 99 }));
    expect(dflt.details.requestId).toBe(node.traces('cmd', 'conflict').at(-1));
    expect(dflt.details.requestId).toMatch(new RegExp(`^${client.clientId}-\\d+$`));

    // A call that runs out of time: the id of every attempt is the one in the error.
    const slow = await rejection(client.get('silent', { timeoutMs: 300 }));
    expect([ErrorCode.Timeout, ErrorCode.Unavailable]).toContain(slow.code);
    const attempts = node.traces('read', 'silent');
    expect(attempts.length).toBeGreaterThanOrEqual(1);
    expect(new Set(attempts)).toEqual(new Set([slow.details.requestId]));
  });
});

// ---------------------------------------------------------------- end to end

describe('a request id from DkvClient into a real node', () => {
  it('reaches the node observer and its debug log, for requests that succeed and fail', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dkv-trace-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const outcomes: RequestOutcome[] = [];
    const logs: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
    const node = await DkvNode.start(
      checkNodeConfig({
        id: 1,
        dataDir: join(dir, 'n1'),
        clientPort: 0,
        peerPort: 0,
        peers: [],
        stores: [{ name: 'default', partitions: 1 }],
        tickMs: 10,
      }),
      {
        observer: { request: (r) => outcomes.push(r) },
        debugLog: true,
        log: (level, msg, fields) => logs.push({ level, msg, fields: fields ?? {} }),
      },
    );
    cleanups.push(() => node.stop());
    const deadline = Date.now() + 10_000;
    while (!node.groupStats().every((g) => g.isLeader)) {
      if (Date.now() > deadline) throw new Error('no leader within 10 s');
      await new Promise((r) => setTimeout(r, 20));
    }
    const client = await DkvClient.connect({ servers: [`${HOST}:${node.clientAddress().port}`] });
    cleanups.push(() => client.close());

    await client.put('e2e', 1, { requestId: 'e2e-put-1' });
    const e = await rejection(client.put('e2e', 2, { ifVersion: 99, requestId: 'e2e-put-2' }));
    expect(e.code).toBe(ErrorCode.VersionMismatch);
    expect(e.details.requestId).toBe('e2e-put-2');
    await client.get('e2e');

    const put1 = outcomes.find((o) => o.trace === 'e2e-put-1');
    expect(put1).toMatchObject({ op: 'cmd', kind: 'put', store: 'default', code: undefined });
    expect(outcomes.find((o) => o.trace === 'e2e-put-2')).toMatchObject({
      kind: 'put',
      code: 'VERSION_MISMATCH',
    });
    const get = outcomes.find((o) => o.op === 'read' && o.kind === 'get');
    expect(get?.trace).toMatch(new RegExp(`^${client.clientId}-\\d+$`));

    const logged = logs.filter((l) => l.fields.rid === 'e2e-put-2');
    expect(logged.length).toBe(1);
    expect(logged[0]).toMatchObject({
      level: 'debug',
      fields: { op: 'cmd', kind: 'put', code: 'VERSION_MISMATCH' },
    });
    expect(logs.some((l) => l.fields.rid === 'e2e-put-1')).toBe(true);
  });
});
