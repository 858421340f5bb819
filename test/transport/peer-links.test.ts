import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SeededRandom } from '../../src/random.js';
import { encodeFrame, FrameDecoder } from '../../src/transport/frame.js';
import { PeerTransport, type PeerTransportOptions } from '../../src/transport/peer-links.js';
import type { Address, LogLevel } from '../../src/transport/sockets.js';

const HOST = '127.0.0.1';
const CLUSTER = 'test-cluster';

/** Msg is the test's message type: a group id and a payload. */
interface Msg {
  g: number;
  p: string;
}

function validate(m: unknown): Msg {
  if (typeof m !== 'object' || m === null) throw new Error('not an object');
  const o = m as Record<string, unknown>;
  if (typeof o.g !== 'number' || typeof o.p !== 'string' || Object.keys(o).length !== 2)
    throw new Error('bad message');
  return { g: o.g, p: o.p };
}

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

/** Node is one PeerTransport with everything it reported. */
interface Node {
  id: number;
  t: PeerTransport<Msg>;
  address: Address;
  /** Each onMessages call: [from, msgs]. */
  batches: [number, Msg[]][];
  states: [number, boolean][];
  logs: { level: LogLevel; msg: string; fields: Record<string, unknown> | undefined }[];
  received(from?: number): Msg[];
  up(peer: number): boolean;
}

type NodeOptions = Partial<Omit<PeerTransportOptions<Msg>, 'onMessages' | 'onPeerState' | 'log'>> & {
  throwOnMessages?: boolean;
};

async function startNode(id: number, opts: NodeOptions = {}): Promise<Node> {
  const node: Node = {
    id,
    t: undefined as unknown as PeerTransport<Msg>,
    address: { host: HOST, port: 0 },
    batches: [],
    states: [],
    logs: [],
    received: (from) => node.batches.filter(([f]) => from === undefined || f === from).flatMap(([, m]) => m),
    up: (peer) => node.t.peerStates().find((s) => s.peer === peer)?.up === true,
  };
  node.t = new PeerTransport<Msg>({
    nodeId: id,
    clusterId: CLUSTER,
    listen: { host: HOST, port: 0 },
    frameBytesMax: 1 << 20,
    queueBytesMax: 4 << 20,
    reconnect: { initialDelayMs: 10, maxDelayMs: 100, multiplier: 2, jitter: 0.2 },
    random: new SeededRandom(id),
    validate,
    onMessages: (from, msgs) => {
      node.batches.push([from, msgs]);
      if (opts.throwOnMessages) throw new Error('consumer bug');
    },
    onPeerState: (peer, up) => node.states.push([peer, up]),
    log: (level, msg, fields) => node.logs.push({ level, msg, fields }),
    ...opts,
  });
  cleanups.push(() => node.t.close());
  node.address = await node.t.start();
  return node;
}

/** cluster starts n nodes (ids 1..n) and tells each about the others. */
async function cluster(n: number, opts: NodeOptions = {}): Promise<Node[]> {
  const nodes: Node[] = [];
  for (let i = 1; i <= n; i++) nodes.push(await startNode(i, opts));
  for (const a of nodes) for (const b of nodes) if (a !== b) a.t.addPeer(b.id, b.address);
  await until(() => nodes.every((a) => nodes.every((b) => a === b || a.up(b.id))), 'every link up');
  return nodes;
}

/** rawConnect opens a plain socket to a node's peer port. */
async function rawConnect(
  port: number,
): Promise<{ socket: net.Socket; closed: Promise<void>; frames: unknown[]; decoder: FrameDecoder }> {
  const socket = net.connect({ host: HOST, port });
  cleanups.push(() => socket.destroy());
  const decoder = new FrameDecoder({ frameBytesMax: 1 << 20 });
  const frames: unknown[] = [];
  socket.on('data', (b: Buffer) => frames.push(...decoder.push(b)));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, closed, frames, decoder };
}

/**
 * fakePeer listens like node `id` would, answers the handshake, and then behaves as told:
 * 'silent' reads but never sends, 'stalled' stops reading too.
 */
async function fakePeer(
  id: number,
  mode: 'silent' | 'stalled',
): Promise<{ address: Address; accepted: () => number; sockets: net.Socket[] }> {
  const sockets: net.Socket[] = [];
  let accepted = 0;
  const server = net.createServer((s) => {
    accepted++;
    sockets.push(s);
    s.on('error', () => {});
    const dec = new FrameDecoder({ frameBytesMax: 1 << 20 });
    let greeted = false;
    s.on('data', (b: Buffer) => {
      if (greeted) return;
      const frames = dec.push(b);
      if (frames.length > 0) {
        greeted = true;
        s.write(encodeFrame({ hello: 1, clusterId: CLUSTER, nodeId: id }));
        if (mode === 'stalled') s.pause();
      }
    });
  });
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  return {
    address: { host: HOST, port: (server.address() as net.AddressInfo).port },
    accepted: () => accepted,
    sockets,
  };
}

describe('PeerTransport: connections', () => {
  it('links 3 nodes with exactly one connection per pair, messages flowing both ways', async () => {
    const [n1, n2, n3] = await cluster(3);
    for (const n of [n1!, n2!, n3!]) {
      expect(n.t.openConnections()).toBe(2);
      for (const s of n.t.peerStates()) {
        expect(s.up).toBe(true);
        expect(s.stats.connections).toBe(1);
        expect(s.dialer).toBe(n.id < s.peer);
      }
    }
    // Both directions on each connection: the dialer and the acceptor send.
    n1!.t.send(3, { g: 1, p: '1->3' });
    n3!.t.send(1, { g: 1, p: '3->1' });
    n2!.t.send(3, { g: 2, p: '2->3' });
    n3!.t.send(2, { g: 2, p: '3->2' });
    n2!.t.send(1, { g: 3, p: '2->1' });
    n1!.t.send(2, { g: 3, p: '1->2' });
    for (const n of [n1!, n2!, n3!]) n.t.flush();
    await until(() => [n1!, n2!, n3!].every((n) => n.received().length === 2), 'six messages');
    expect(n3!.received(1)).toEqual([{ g: 1, p: '1->3' }]);
    expect(n1!.received(3)).toEqual([{ g: 1, p: '3->1' }]);
    expect(n1!.received(2)).toEqual([{ g: 3, p: '2->1' }]);
    expect(n2!.received(1)).toEqual([{ g: 3, p: '1->2' }]);
    // Still one connection per pair after traffic.
    expect([n1!, n2!, n3!].map((n) => n.t.openConnections())).toEqual([2, 2, 2]);
    expect(n1!.states.sort()).toEqual([
      [2, true],
      [3, true],
    ]);
  });

  it('batches every message queued for a peer into one frame per flush', async () => {
    const [n1, n2, n3] = await cluster(3);
    for (let i = 0; i < 1000; i++) {
      n1!.t.send(2, { g: i % 7, p: `m${i}` });
      n1!.t.send(3, { g: i % 5, p: `m${i}` });
    }
    expect(n2!.received(1)).toEqual([]); // nothing is written before flush()
    n1!.t.flush();
    await until(() => n2!.received(1).length === 1000 && n3!.received(1).length === 1000, 'all messages');
    const to2 = n1!.t.peerStates().find((s) => s.peer === 2)!.stats;
    expect(to2.framesSent).toBe(1);
    expect(to2.messagesSent).toBe(1000);
    expect(n2!.batches.filter(([f]) => f === 1).length).toBe(1);
    expect(n2!.received(1).map((m) => m.p)).toEqual(Array.from({ length: 1000 }, (_, i) => `m${i}`));
    const from1 = n2!.t.peerStates().find((s) => s.peer === 1)!.stats;
    expect(from1.framesReceived).toBe(1);
    expect(from1.messagesReceived).toBe(1000);
  });

  it('splits a queue larger than frameBytesMax into several frames, in order', async () => {
    const [n1, n2] = await cluster(2, { frameBytesMax: 4096 });
    const p = 'z'.repeat(1000);
    for (let i = 0; i < 20; i++) n1!.t.send(2, { g: i, p });
    n1!.t.flush();
    await until(() => n2!.received(1).length === 20, 'all messages');
    expect(n2!.received(1).map((m) => m.g)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(n1!.t.peerStates()[0]!.stats.framesSent).toBeGreaterThanOrEqual(5);
    // A message that alone exceeds a frame is dropped and counted, not sent.
    expect(n1!.t.send(2, { g: 0, p: 'z'.repeat(5000) })).toBe(false);
    expect(n1!.t.peerStates()[0]!.stats.droppedTooLarge).toBe(1);
  });

  it('reports a peer down when its transport closes, and reconnects when it comes back on the same port', async () => {
    const [n1, n2, n3] = await cluster(3);
    const port2 = n2!.address.port;
    await n2!.t.close();
    await until(() => !n1!.up(2) && !n3!.up(2), 'peer 2 down');
    expect(n1!.states).toContainEqual([2, false]);
    expect(n3!.states).toContainEqual([2, false]);
    // Messages for a down peer are dropped and counted.
    expect(n1!.t.send(2, { g: 1, p: 'lost' })).toBe(false);
    expect(n1!.t.peerStates().find((s) => s.peer === 2)!.stats.droppedDown).toBe(1);
    // Node 2 restarts on the same port: node 1 redials it; node 2 redials node 3.
    await sleep(50); // several failed redials, so the backoff has grown
    const n2b = await startNode(2, { listen: { host: HOST, port: port2 } });
    n2b.t.addPeer(1, n1!.address);
    n2b.t.addPeer(3, n3!.address);
    await until(() => n1!.up(2) && n3!.up(2) && n2b.up(1) && n2b.up(3), 'peer 2 back');
    n1!.t.send(2, { g: 9, p: 'again' });
    n1!.t.flush();
    n2b.t.send(3, { g: 9, p: 'again' });
    n2b.t.flush();
    await until(
      () => n2b.received(1).length === 1 && n3!.received(2).length === 1,
      'messages after reconnect',
    );
    expect(n1!.t.peerStates().find((s) => s.peer === 2)!.stats.connections).toBe(2);
    expect(n1!.t.openConnections()).toBe(2);
  });

  it('follows a peer to a new address given by addPeer', async () => {
    const [n1, n2] = await cluster(2);
    await n2!.t.close();
    await until(() => !n1!.up(2), 'peer 2 down');
    const n2b = await startNode(2);
    expect(n2b.address.port).not.toBe(n2!.address.port);
    n2b.t.addPeer(1, n1!.address);
    n1!.t.addPeer(2, n2b.address);
    await until(() => n1!.up(2) && n2b.up(1), 'link to the new address');
    expect(n1!.t.peerStates()[0]!.address).toEqual(n2b.address);
  });

  it('removePeer closes the link, addPeer brings it back', async () => {
    const [n1, n2] = await cluster(2);
    n1!.t.removePeer(2);
    await until(() => !n2!.up(1), 'node 2 to see node 1 go');
    expect(n1!.t.peerStates()).toEqual([]);
    expect(n1!.states).toContainEqual([2, false]);
    n1!.t.addPeer(2, n2!.address);
    await until(() => n1!.up(2) && n2!.up(1), 'link back');
  });

  it('close() is idempotent and closes every connection', async () => {
    const [n1, n2] = await cluster(2);
    await Promise.all([n1!.t.close(), n1!.t.close()]);
    await n1!.t.close();
    expect(n1!.t.openConnections()).toBe(0);
    await until(() => !n2!.up(1), 'node 2 to notice');
  });
});

describe('PeerTransport: handshake', () => {
  it('refuses a node of another cluster, on both sides, with a logged reason', async () => {
    const n2 = await startNode(2);
    const stranger = await startNode(1, { clusterId: 'other-cluster' });
    n2.t.addPeer(1, stranger.address);
    stranger.t.addPeer(2, n2.address);
    await until(
      () => stranger.logs.some((l) => String(l.fields?.reason).includes('handshake rejected by the peer')),
      'the rejection',
    );
    expect(n2.logs.some((l) => String(l.fields?.reason).includes('cluster id'))).toBe(true);
    expect(stranger.up(2)).toBe(false);
    expect(n2.up(1)).toBe(false);
    expect(n2.states).toEqual([]);
  });

  it('refuses unknown, own, higher and duplicate node ids, keeping the real link up', async () => {
    const [n1, n2] = await cluster(2);
    const cases: [unknown, string][] = [
      [{ hello: 1, clusterId: CLUSTER, nodeId: 9 }, 'not a known peer'],
      [{ hello: 1, clusterId: CLUSTER, nodeId: 2 }, "acceptor's own"],
      [{ hello: 1, clusterId: CLUSTER, nodeId: 1 }, 'already connected'],
      [{ hello: 2, clusterId: CLUSTER, nodeId: 1 }, 'protocol'],
      [{ hello: 1, clusterId: CLUSTER, nodeId: 1, extra: 1 }, 'unexpected fields'],
      [[{ g: 1, p: 'batch before hello' }], 'not an object'],
    ];
    for (const [hello, why] of cases) {
      const raw = await rawConnect(n2!.address.port);
      raw.socket.write(encodeFrame(hello));
      await raw.closed;
      expect(n2!.logs.some((l) => String(l.fields?.reason).includes(why))).toBe(true);
    }
    // Node 1 dialing node 2 is expected; node 2 dialing node 1 is not.
    const raw = await rawConnect(n1!.address.port);
    raw.socket.write(encodeFrame({ hello: 1, clusterId: CLUSTER, nodeId: 2 }));
    await raw.closed;
    expect(raw.frames[0]).toMatchObject({
      hello: 1,
      reject: expect.stringContaining('must wait to be dialed'),
    });
    expect(n1!.up(2) && n2!.up(1)).toBe(true);
    n1!.t.send(2, { g: 1, p: 'still up' });
    n1!.t.flush();
    await until(() => n2!.received(1).length === 1, 'a message on the real link');
  });

  it('bounds the handshakes in progress', async () => {
    const n2 = await startNode(2, { handshakesMax: 2 });
    await rawConnect(n2.address.port);
    await rawConnect(n2.address.port);
    await until(() => n2.t.openConnections() === 2, 'two handshakes pending');
    const third = await rawConnect(n2.address.port);
    await third.closed;
    expect(n2.logs.some((l) => l.msg.includes('too many handshakes'))).toBe(true);
  });

  it('closes a connection that never handshakes', async () => {
    const n2 = await startNode(2, { idleTimeoutMs: 90, connectTimeoutMs: 90 });
    const raw = await rawConnect(n2.address.port);
    await raw.closed;
    expect(n2.logs.some((l) => String(l.fields?.reason).includes('not connected within'))).toBe(true);
  });
});

describe('PeerTransport: bad input', () => {
  it('closes only the connection that sent garbage; the transport keeps working', async () => {
    const [n1, n2, n3] = await cluster(3);
    const rnd = new SeededRandom(99);
    for (let i = 0; i < 30; i++) {
      const raw = await rawConnect(n3!.address.port);
      const bytes = new Uint8Array(1 + rnd.int(200));
      for (let j = 0; j < bytes.length; j++) bytes[j] = rnd.int(256);
      if (bytes.length >= 4 && rnd.chance(0.5)) new DataView(bytes.buffer).setUint32(0, bytes.length - 4);
      raw.socket.write(bytes);
      raw.socket.end();
      await raw.closed;
    }
    expect(n3!.t.openConnections()).toBe(2);
    n1!.t.send(3, { g: 1, p: 'after garbage' });
    n2!.t.send(3, { g: 2, p: 'after garbage' });
    n1!.t.flush();
    n2!.t.flush();
    await until(() => n3!.received().length === 2, 'messages after garbage');
    expect(n3!.states.filter(([, up]) => !up)).toEqual([]);
  });

  it('closes a link whose peer sends a message that fails validation, or a non-batch frame', async () => {
    // Node 2 knows a peer 1 that is really a raw socket.
    const n2 = await startNode(2);
    n2.t.addPeer(1, { host: HOST, port: 1 });
    for (const bad of [
      [{ g: 'x', p: 1 }],
      [{ g: 1, p: 'ok' }, { g: 1 }],
      { g: 1, p: 'not a batch' },
      'text',
    ]) {
      const raw = await rawConnect(n2.address.port);
      raw.socket.write(encodeFrame({ hello: 1, clusterId: CLUSTER, nodeId: 1 }));
      await until(() => n2.up(1), 'the fake peer up');
      raw.socket.write(encodeFrame(bad));
      await raw.closed;
      await until(() => !n2.up(1), 'the fake peer down');
    }
    expect(n2.batches).toEqual([]); // a frame with one bad message delivers none of it
    expect(n2.states).toEqual([
      [1, true],
      [1, false],
      [1, true],
      [1, false],
      [1, true],
      [1, false],
      [1, true],
      [1, false],
    ]);
    expect(n2.logs.filter((l) => String(l.fields?.reason).startsWith('frame refused')).length).toBe(4);
  });

  it('keeps the link when onMessages throws (a consumer bug), logging it', async () => {
    const [n1, n2] = await cluster(2, { throwOnMessages: true });
    n1!.t.send(2, { g: 1, p: 'a' });
    n1!.t.flush();
    await until(() => n2!.batches.length === 1, 'first delivery');
    n1!.t.send(2, { g: 1, p: 'b' });
    n1!.t.flush();
    await until(() => n2!.batches.length === 2, 'second delivery');
    expect(n2!.logs.some((l) => l.level === 'error' && l.msg === 'onMessages threw')).toBe(true);
    expect(n2!.up(1)).toBe(true);
  });
});

describe('PeerTransport: failure detection and backpressure', () => {
  it('keeps idle links up with pings', async () => {
    const [n1, n2] = await cluster(2, { idleTimeoutMs: 150 });
    await sleep(600);
    expect(n1!.up(2) && n2!.up(1)).toBe(true);
    expect(n1!.t.peerStates()[0]!.stats.pingsSent).toBeGreaterThan(2);
    expect(n2!.t.peerStates()[0]!.stats.pingsSent).toBeGreaterThan(2);
    expect(n1!.states).toEqual([[2, true]]);
  });

  it('closes a link to a peer that stops sending (hung), and redials it', async () => {
    const fake = await fakePeer(2, 'silent');
    const n1 = await startNode(1, { idleTimeoutMs: 150 });
    n1.t.addPeer(2, fake.address);
    await until(() => n1.up(2), 'link up');
    await until(() => n1.states.some(([, up]) => !up), 'link down', 3000);
    expect(n1.logs.some((l) => String(l.fields?.reason).includes('nothing received'))).toBe(true);
    await until(() => fake.accepted() >= 2 && n1.up(2), 'redialed');
  });

  it('bounds the queue of a peer that stops reading: oldest dropped, counted, memory bounded', async () => {
    const fake = await fakePeer(2, 'stalled');
    const queueBytesMax = 256 * 1024;
    const n1 = await startNode(1, { queueBytesMax, frameBytesMax: 64 * 1024, idleTimeoutMs: 60_000 });
    n1.t.addPeer(2, fake.address);
    await until(() => n1.up(2), 'link up');
    const p = 'q'.repeat(1000);
    let maxQueued = 0;
    let maxUnsent = 0;
    const socketOf = (): net.Socket =>
      (n1.t as unknown as { links: Map<number, { conn: { socket: net.Socket } }> }).links.get(2)!.conn.socket;
    // 100 rounds of 1000 messages of ~1 KB: 100 MB offered to a peer that reads nothing.
    for (let round = 0; round < 100; round++) {
      for (let i = 0; i < 1000; i++) n1.t.send(2, { g: round, p });
      n1.t.flush();
      const s = n1.t.peerStates()[0]!;
      maxQueued = Math.max(maxQueued, s.queuedBytes);
      maxUnsent = Math.max(maxUnsent, socketOf().writableLength);
      await sleep(0);
    }
    const s = n1.t.peerStates()[0]!;
    expect(s.up).toBe(true);
    expect(maxQueued).toBeLessThanOrEqual(queueBytesMax);
    // The socket holds at most what was written before it asked to drain: one queue's worth.
    expect(maxUnsent).toBeLessThanOrEqual(queueBytesMax + 64 * 1024);
    expect(s.stats.droppedOverflow).toBeGreaterThan(50_000);
    expect(s.stats.messagesSent + s.stats.droppedOverflow + s.queuedMessages).toBe(100_000);
    // The peer wakes up: what is still queued (the newest) goes out on 'drain'.
    const stalled = fake.sockets[0]!;
    let bytes = 0;
    stalled.on('data', (b: Buffer) => {
      bytes += b.length;
    });
    stalled.resume();
    await until(() => n1.t.peerStates()[0]!.queuedBytes === 0, 'the queue to drain', 10_000);
    expect(bytes).toBeGreaterThan(0);
  });
});

describe('PeerTransport: a shared secret authenticates peers without TLS', () => {
  it('links nodes that hold the same secret, and messages flow', async () => {
    const [n1, n2, n3] = await cluster(3, { secret: () => 's3cret-s3cret-s3cret-s3cret-s3cret' });
    n1!.t.send(3, { g: 1, p: 'proved' });
    n1!.t.flush();
    await until(() => n3!.received(1).length === 1, 'a message');
    expect(n2!.up(1) && n2!.up(3)).toBe(true);
  });

  it('refuses a peer with another secret or none, both ways, and one that replays an old hello', async () => {
    const secret = () => 'the-cluster-secret-the-cluster-secret';
    const n1 = await startNode(1, { secret });
    const n2 = await startNode(2, { secret });
    // A dialer (node 1) without the secret: node 2 refuses it.
    const plain = await startNode(1, {});
    plain.t.addPeer(2, n2.address);
    n2.t.addPeer(1, plain.address);
    await sleep(400);
    expect(n2.up(1)).toBe(false);
    expect(n2.logs.some((l) => String(l.fields?.reason).includes('did not prove the cluster secret'))).toBe(
      true,
    );
    await plain.t.close();
    // A dialer with another secret.
    const wrong = await startNode(1, { secret: () => 'another-secret-another-secret-xx' });
    wrong.t.addPeer(2, n2.address);
    await sleep(400);
    expect(n2.up(1)).toBe(false);
    expect(n2.logs.some((l) => String(l.fields?.reason).includes('does not hold the cluster secret'))).toBe(
      true,
    );
    await wrong.t.close();
    // An acceptor without the secret: the dialer (node 1, with it) refuses its answer.
    const acceptor = await startNode(2, {});
    n1.t.addPeer(2, acceptor.address);
    acceptor.t.addPeer(1, n1.address);
    await sleep(400);
    expect(n1.up(2)).toBe(false);
    expect(n1.logs.some((l) => String(l.fields?.reason ?? l.fields?.err).includes('cluster secret'))).toBe(
      true,
    );
    // A hello stamped far from now (a replay) is refused even with a well-formed proof.
    const raw = await rawConnect(n2.address.port);
    raw.socket.write(
      encodeFrame({
        hello: 1,
        clusterId: CLUSTER,
        nodeId: 1,
        ts: Date.now() - 3_600_000,
        mac: 'a'.repeat(64),
      }),
    );
    await raw.closed;
    expect(n2.logs.some((l) => String(l.fields?.reason).includes('stamped'))).toBe(true);
    // And the pair that shares the secret links.
    n1.t.addPeer(2, n2.address);
    n2.t.addPeer(1, n1.address);
    await until(() => n1.up(2) && n2.up(1), 'the real pair linked');
  });
});
