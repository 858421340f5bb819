/**
 * Peer links: the node-to-node transport that carries Raft messages for every group.
 *
 * Connections. There is one TCP connection per pair of nodes: the node with the lower id
 * dials, the other accepts, and messages flow both ways on it. The first frame each way is a
 * handshake, `{ hello: 1, clusterId, nodeId }` from the dialer and the same from the
 * acceptor (or `{ hello: 1, reject: reason }` before it closes). A wrong cluster id, a node
 * id that is unknown, our own, higher than the acceptor's, or already connected, or any
 * frame that is not what the protocol expects there, closes the connection with a logged
 * reason. After the handshake every frame is a msgpack array of messages; an empty array is
 * a ping. With a cluster secret (`secret`), the dialer's hello also carries a timestamp and an
 * HMAC proving it holds the secret, and the acceptor's answer an HMAC over the dialer's: a
 * process without the secret cannot complete a handshake either way. With TLS (`sockets`),
 * `checkPeer` can also require the certificate to be the claimed node's.
 *
 * Batching. `send()` only encodes the message and queues it. `flush()`, which the node calls
 * once per event-loop round after its group commit, writes each peer's whole queue as one
 * frame (more only if the queue exceeds `frameBytesMax`), corked, so that a round costs one
 * write per peer whatever the number of groups and messages.
 *
 * Backpressure and loss. While a socket needs draining, nothing more is written to it: the
 * peer's queue keeps growing up to `queueBytesMax` (exact encoded sizes), beyond which the
 * OLDEST messages are dropped and counted. Messages for a peer that is not connected are
 * dropped at once, and a link that goes down discards its queue. This is safe because Raft
 * is built for a lossy network: whatever a lost message carried is sent again by the next
 * heartbeat, probe, append or election. Within one connection, messages arrive in the order
 * they were sent, exactly once.
 *
 * Failure detection. A peer is up while a handshaken connection to it is open; transitions
 * are reported through `onPeerState`. TCP keepalive is on, each link sends a ping when it has
 * sent nothing for `idleTimeoutMs / 3`, and a link that receives nothing for `idleTimeoutMs`
 * is closed: this catches hung peers (SIGSTOP, a black-holing partition) that TCP alone
 * would not notice for minutes. The dialer reconnects with exponential backoff and jitter,
 * reset by each successful handshake.
 *
 * Safety. Every received message goes through `validate` before `onMessages` sees it; a
 * frame that fails (or a decoding error) closes only that connection. No exception escapes a
 * socket handler.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Server, Socket } from 'node:net';
import { type Clock, systemClock } from '../clock.js';
import { DkvError, ErrorCode } from '../errors.js';
import type { Random } from '../random.js';
import { Backoff, type ReconnectPolicy } from './backoff.js';
import {
  arrayHeaderBytes,
  checkFrameBytesMax,
  encodeArrayFrame,
  encodeBody,
  encodeFrame,
  FrameDecoder,
} from './frame.js';
import {
  type Address,
  type LogFn,
  type LogLevel,
  listenOn,
  noLog,
  remoteOf,
  type SocketFactory,
  tcpSockets,
} from './sockets.js';

/** PEER_PROTOCOL_VERSION is the `hello` value this build speaks. */
export const PEER_PROTOCOL_VERSION = 1;

/** CLUSTER_ID_LENGTH_MAX bounds the cluster id carried by the handshake. */
export const CLUSTER_ID_LENGTH_MAX = 256;

/** PeerTransportOptions configure a PeerTransport; `M` is the validated message type. */
export interface PeerTransportOptions<M> {
  /** This node's id: a positive safe integer. */
  readonly nodeId: number;
  /** Every node of one cluster has the same cluster id; the handshake refuses others. */
  readonly clusterId: string;
  /** Where to accept connections from lower-id peers (port 0: the OS chooses). */
  readonly listen: Address;
  /** The initial peers (more with addPeer); this node itself must not be among them. */
  readonly peers?: ReadonlyMap<number, Address>;
  /** The largest frame body sent or accepted, in bytes. */
  readonly frameBytesMax: number;
  /** The bound on each peer's queue of encoded messages, in bytes. */
  readonly queueBytesMax: number;
  readonly reconnect: ReconnectPolicy;
  /** The source of reconnect jitter. */
  readonly random: Random;
  /** validate checks a decoded message and returns it typed; it throws on a malformed one. */
  readonly validate: (msg: unknown) => M;
  /** onMessages receives each frame's messages (already validated), in arrival order. */
  readonly onMessages: (from: number, msgs: M[]) => void;
  /** onPeerState reports each transition of a peer between up and down. */
  readonly onPeerState?: (peer: number, up: boolean) => void;
  readonly log?: LogFn;
  /** A link that receives nothing for this long is closed (default 5000 ms). */
  readonly idleTimeoutMs?: number;
  /** A connection that is not handshaken within this long is closed (default idleTimeoutMs). */
  readonly connectTimeoutMs?: number;
  /** The TCP keepalive initial delay (default 1000 ms). */
  readonly keepAliveMs?: number;
  /** Accepted connections still in their handshake at once; more are closed (default 64). */
  readonly handshakesMax?: number;
  readonly clock?: Clock;
  /** The socket seam (default plain TCP); TLS plugs in here. */
  readonly sockets?: SocketFactory;
  /**
   * checkPeer vets the other end of a handshake once it names its node id, on both sides: a
   * reason refuses the connection (with mutual TLS, the node checks that the certificate is
   * that node's own). Undefined accepts.
   */
  readonly checkPeer?: (socket: Socket, nodeId: number) => string | undefined;
  /**
   * secret, when it returns a string, makes both ends of a handshake prove they hold it (the
   * cluster's shared node secret): the dialer's hello carries a timestamp and an HMAC over
   * the cluster id, both node ids and the timestamp; the acceptor checks it (timestamp within
   * HELLO_SKEW_MS) and answers with an HMAC over the dialer's. A peer without it, or with
   * another, is refused. This authenticates peers without TLS (it does not encrypt).
   */
  readonly secret?: () => string | undefined;
}

/** How far a dialer's hello timestamp may be from the acceptor's clock (5 minutes). */
export const HELLO_SKEW_MS = 5 * 60_000;

/** PeerLinkStats counts one peer link's traffic since the transport started. */
export interface PeerLinkStats {
  /** Frames written, pings excluded. */
  framesSent: number;
  messagesSent: number;
  pingsSent: number;
  /** Frames received, pings excluded. */
  framesReceived: number;
  messagesReceived: number;
  /** Messages dropped from the head of the queue because it exceeded queueBytesMax. */
  droppedOverflow: number;
  /** Messages dropped because the peer was not connected (at send, or queued when it went down). */
  droppedDown: number;
  /** Messages dropped because, alone, they exceed frameBytesMax. */
  droppedTooLarge: number;
  /** Handshaken connections to this peer, so far. */
  connections: number;
}

/** PeerState is one peer's view in peerStates(). */
export interface PeerState {
  readonly peer: number;
  readonly address: Address;
  readonly up: boolean;
  /** Whether this node dials the peer (this node's id is lower). */
  readonly dialer: boolean;
  /** The encoded bytes queued for the peer. */
  readonly queuedBytes: number;
  readonly queuedMessages: number;
  readonly stats: Readonly<PeerLinkStats>;
}

/** Connection is one socket, from accept or dial until close. */
class Connection {
  readonly socket: Socket;
  readonly decoder: FrameDecoder;
  readonly outbound: boolean;
  readonly remote: string;
  /** The peer this connection belongs to: known at dial, and after the handshake on accept. */
  peer: number | undefined;
  state: 'connecting' | 'handshake' | 'up' | 'closed' = 'connecting';
  readonly openedMs: number;
  lastReceivedMs: number;
  lastSentMs: number;
  get closed(): boolean {
    return this.state === 'closed';
  }

  /** Why we closed it, for the log line on 'close'. */
  closeReason: string | undefined;
  /** The MAC our hello carried (dialer, with a secret): the acceptor's answer is bound to it. */
  helloMac: string | undefined;

  constructor(socket: Socket, frameBytesMax: number, nowMs: number, outboundTo?: PeerLink) {
    this.socket = socket;
    this.decoder = new FrameDecoder({ frameBytesMax });
    this.outbound = outboundTo !== undefined;
    this.remote =
      outboundTo !== undefined ? `${outboundTo.address.host}:${outboundTo.address.port}` : remoteOf(socket);
    const peer = outboundTo?.peer;
    this.peer = peer;
    this.openedMs = nowMs;
    this.lastReceivedMs = nowMs;
    this.lastSentMs = nowMs;
  }
}

/** PeerLink is everything this node keeps about one peer. */
class PeerLink {
  readonly peer: number;
  address: Address;
  readonly dialer: boolean;
  /** The handshaken connection, while the peer is up. */
  conn: Connection | undefined;
  /** An outbound connection being set up (dialer only). */
  pending: Connection | undefined;
  /** Encoded messages; queue[head..] are live. Invariant: queueBytes is their total length. */
  queue: Uint8Array[] = [];
  head = 0;
  queueBytes = 0;
  readonly backoff: Backoff;
  retryTimer: NodeJS.Timeout | undefined;
  readonly stats: PeerLinkStats = {
    framesSent: 0,
    messagesSent: 0,
    pingsSent: 0,
    framesReceived: 0,
    messagesReceived: 0,
    droppedOverflow: 0,
    droppedDown: 0,
    droppedTooLarge: 0,
    connections: 0,
  };

  constructor(peer: number, address: Address, dialer: boolean, backoff: Backoff) {
    this.peer = peer;
    this.address = address;
    this.dialer = dialer;
    this.backoff = backoff;
  }

  get queuedMessages(): number {
    return this.queue.length - this.head;
  }

  clearQueue(): number {
    const n = this.queuedMessages;
    this.queue = [];
    this.head = 0;
    this.queueBytes = 0;
    return n;
  }
}

const PING_FRAME = encodeFrame([]);

/**
 * PeerTransport links this node to every peer: one connection per pair, batched frames,
 * bounded queues, reconnects and failure detection. Call `start()` before use, `send()` to
 * queue, `flush()` once per event-loop round, and `close()` at shutdown.
 */
export class PeerTransport<M> {
  readonly nodeId: number;
  readonly clusterId: string;
  private readonly opts: PeerTransportOptions<M>;
  private readonly log: LogFn;
  private readonly clock: Clock;
  private readonly sockets: SocketFactory;
  private readonly idleTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly keepAliveMs: number;
  /** The room in one frame for encoded messages: frameBytesMax minus the largest array header. */
  private readonly batchBytesMax: number;
  private readonly links = new Map<number, PeerLink>();
  /** Every open socket (accepted or dialed, in any state), for close() and the idle sweep. */
  private readonly conns = new Set<Connection>();
  private server: Server | undefined;
  private boundAddress: Address | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweepMs = 0;
  private lastSweepMs = 0;
  private started = false;
  private closing: Promise<void> | undefined;

  constructor(opts: PeerTransportOptions<M>) {
    if (!Number.isSafeInteger(opts.nodeId) || opts.nodeId < 1)
      throw new RangeError(`nodeId must be a positive safe integer, got ${opts.nodeId}`);
    if (opts.clusterId.length === 0 || opts.clusterId.length > CLUSTER_ID_LENGTH_MAX)
      throw new RangeError(`clusterId must have 1 to ${CLUSTER_ID_LENGTH_MAX} characters`);
    checkFrameBytesMax(opts.frameBytesMax);
    if (!(opts.frameBytesMax >= 64)) throw new RangeError('frameBytesMax must be at least 64');
    if (!Number.isSafeInteger(opts.queueBytesMax) || opts.queueBytesMax < 1)
      throw new RangeError(`queueBytesMax must be a positive integer, got ${opts.queueBytesMax}`);
    this.nodeId = opts.nodeId;
    this.clusterId = opts.clusterId;
    this.opts = opts;
    this.log = opts.log ?? noLog;
    this.clock = opts.clock ?? systemClock;
    this.sockets = opts.sockets ?? tcpSockets;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 5000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? this.idleTimeoutMs;
    this.keepAliveMs = opts.keepAliveMs ?? 1000;
    if (!(this.idleTimeoutMs >= 30)) throw new RangeError('idleTimeoutMs must be at least 30');
    this.batchBytesMax = opts.frameBytesMax - arrayHeaderBytes(0x1_0000);
    for (const [peer, address] of opts.peers ?? []) this.addPeer(peer, address);
  }

  /** start binds the listener and starts dialing; it resolves with the bound address. */
  async start(): Promise<Address> {
    if (this.started) throw new Error('PeerTransport.start: already started');
    this.started = true;
    const server = this.sockets.createServer((socket) => this.accept(socket));
    server.on('error', (err) => this.log('error', 'peer listener error', { err: String(err) }));
    this.server = server;
    this.boundAddress = await listenOn(server, this.opts.listen);
    this.sweepMs = Math.max(10, Math.floor(this.idleTimeoutMs / 3));
    this.lastSweepMs = this.clock.monotonicMs();
    this.sweepTimer = setInterval(() => this.sweep(), this.sweepMs);
    this.sweepTimer.unref();
    for (const link of this.links.values()) if (link.dialer) this.dial(link);
    this.log('info', 'peer transport listening', { node: this.nodeId, address: this.boundAddress });
    return this.boundAddress;
  }

  /** address is the bound listen address (after start). */
  address(): Address {
    if (this.boundAddress === undefined) throw new Error('PeerTransport.address: not started');
    return this.boundAddress;
  }

  /**
   * addPeer adds a peer, or moves a known one to a new address (its connection, if any, is
   * closed and redialed). The lower id of the pair dials.
   */
  addPeer(peer: number, address: Address): void {
    if (!Number.isSafeInteger(peer) || peer < 1)
      throw new RangeError(`peer id must be a positive integer: ${peer}`);
    if (peer === this.nodeId) throw new RangeError(`peer ${peer} is this node`);
    const known = this.links.get(peer);
    if (known !== undefined) {
      if (known.address.host === address.host && known.address.port === address.port) return;
      known.address = address;
      if (known.dialer) {
        this.dropConnections(known, 'peer address changed');
        known.backoff.reset();
        this.scheduleDial(known, 0);
      }
      return;
    }
    const link = new PeerLink(
      peer,
      address,
      this.nodeId < peer,
      new Backoff(this.opts.reconnect, this.opts.random),
    );
    this.links.set(peer, link);
    if (link.dialer && this.started && this.closing === undefined) this.dial(link);
  }

  /** removePeer forgets a peer: its connection is closed and its queue dropped. */
  removePeer(peer: number): void {
    const link = this.links.get(peer);
    if (link === undefined) return;
    this.links.delete(peer);
    if (link.retryTimer !== undefined) clearTimeout(link.retryTimer);
    link.retryTimer = undefined;
    this.dropConnections(link, 'peer removed');
  }

  /**
   * send queues a message for a peer and returns whether it was queued. It is dropped (and
   * counted) when the peer is unknown or not connected, or when it alone exceeds
   * frameBytesMax. Nothing is written before flush().
   */
  send(peer: number, msg: M): boolean {
    const link = this.links.get(peer);
    if (link === undefined) return false;
    if (link.conn === undefined) {
      link.stats.droppedDown++;
      return false;
    }
    const bytes = encodeBody(msg);
    if (bytes.length > this.batchBytesMax) {
      link.stats.droppedTooLarge++;
      this.log('warn', 'peer message dropped: larger than frameBytesMax', { peer, bytes: bytes.length });
      return false;
    }
    link.queue.push(bytes);
    link.queueBytes += bytes.length;
    if (link.queueBytes > this.opts.queueBytesMax) this.dropOldest(link);
    return true;
  }

  /**
   * flush writes each connected peer's queue, as one frame per peer (split only if larger
   * than frameBytesMax). A peer whose socket needs draining keeps its queue until 'drain'.
   */
  flush(): void {
    for (const link of this.links.values()) {
      if (link.queueBytes > 0 && link.conn !== undefined && !link.conn.socket.writableNeedDrain)
        this.writeQueue(link, link.conn);
    }
  }

  /** peerStates lists every known peer, by id. */
  peerStates(): PeerState[] {
    return [...this.links.values()]
      .sort((a, b) => a.peer - b.peer)
      .map((l) => ({
        peer: l.peer,
        address: l.address,
        up: l.conn !== undefined,
        dialer: l.dialer,
        queuedBytes: l.queueBytes,
        queuedMessages: l.queuedMessages,
        stats: { ...l.stats },
      }));
  }

  /** messageBytesMax is the largest encoded message that send() accepts. */
  get messageBytesMax(): number {
    return this.batchBytesMax;
  }

  /** openConnections counts the sockets open right now, handshaken or not. */
  openConnections(): number {
    return this.conns.size;
  }

  /** close stops listening and closes every connection; idempotent, resolves when all are closed. */
  close(): Promise<void> {
    this.closing ??= this.closeAll();
    return this.closing;
  }

  private async closeAll(): Promise<void> {
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    for (const link of this.links.values()) {
      if (link.retryTimer !== undefined) clearTimeout(link.retryTimer);
      link.retryTimer = undefined;
    }
    const waits: Promise<unknown>[] = [];
    const server = this.server;
    if (server?.listening) waits.push(new Promise<void>((resolve) => server.close(() => resolve())));
    for (const conn of this.conns) {
      if (!conn.socket.closed) waits.push(new Promise((resolve) => conn.socket.once('close', resolve)));
      this.closeConn(conn, 'transport closing', 'debug');
      conn.socket.destroy();
    }
    await Promise.all(waits);
  }

  // ---- connection set-up ----

  private dial(link: PeerLink): void {
    if (this.closing !== undefined || link.conn !== undefined || link.pending !== undefined) return;
    if (this.links.get(link.peer) !== link) return;
    let socket: Socket;
    try {
      socket = this.sockets.connect(link.address, () => this.onDialed(conn));
    } catch (err) {
      this.log('warn', 'peer dial failed', { peer: link.peer, err: String(err) });
      this.scheduleDial(link, link.backoff.nextDelayMs());
      return;
    }
    const conn = new Connection(socket, this.opts.frameBytesMax, this.clock.monotonicMs(), link);
    link.pending = conn;
    this.register(conn);
  }

  private onDialed(conn: Connection): void {
    if (conn.state !== 'connecting') return;
    conn.state = 'handshake';
    this.configureSocket(conn.socket);
    const secret = this.opts.secret?.();
    let proof = {};
    if (secret !== undefined) {
      const ts = Math.round(this.clock.nowMs());
      conn.helloMac = mac(secret, `hello|${this.clusterId}|${this.nodeId}|${conn.peer}|${ts}`);
      proof = { ts, mac: conn.helloMac };
    }
    this.writeFrame(
      conn,
      encodeFrame({ hello: PEER_PROTOCOL_VERSION, clusterId: this.clusterId, nodeId: this.nodeId, ...proof }),
    );
  }

  /** proofRefusal checks a dialer's proof of the secret (undefined: accepted). */
  private proofRefusal(hello: HelloOk): string | undefined {
    const secret = this.opts.secret?.();
    if (secret === undefined) return undefined;
    if (hello.ts === undefined || hello.mac === undefined)
      return `node ${hello.nodeId} did not prove the cluster secret (peer authentication is on)`;
    if (Math.abs(this.clock.nowMs() - hello.ts) > HELLO_SKEW_MS)
      return `node ${hello.nodeId}'s hello is stamped ${Math.round(this.clock.nowMs() - hello.ts)} ms away from this clock`;
    const want = mac(secret, `hello|${this.clusterId}|${hello.nodeId}|${this.nodeId}|${hello.ts}`);
    return macEqual(want, hello.mac) ? undefined : `node ${hello.nodeId} does not hold the cluster secret`;
  }

  private accept(socket: Socket): void {
    if (this.closing !== undefined) {
      socket.destroy();
      return;
    }
    let handshaking = 0;
    for (const c of this.conns) if (!c.outbound && c.state === 'handshake') handshaking++;
    if (handshaking >= (this.opts.handshakesMax ?? 64)) {
      this.log('warn', 'peer connection refused: too many handshakes in progress', {
        remote: remoteOf(socket),
      });
      socket.destroy();
      return;
    }
    const conn = new Connection(socket, this.opts.frameBytesMax, this.clock.monotonicMs());
    conn.state = 'handshake';
    this.configureSocket(socket);
    this.register(conn);
  }

  private configureSocket(socket: Socket): void {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, this.keepAliveMs);
  }

  private register(conn: Connection): void {
    this.conns.add(conn);
    const { socket } = conn;
    socket.on('data', (chunk: Buffer) => this.onData(conn, chunk));
    socket.on('drain', () => this.onDrain(conn));
    socket.on('error', (err) => {
      conn.closeReason ??= `socket error: ${err.message}`;
    });
    socket.on('close', () => this.onClosed(conn));
  }

  private scheduleDial(link: PeerLink, delayMs: number): void {
    if (this.closing !== undefined || !this.started || this.links.get(link.peer) !== link) return;
    if (link.retryTimer !== undefined) clearTimeout(link.retryTimer);
    link.retryTimer = setTimeout(() => {
      link.retryTimer = undefined;
      this.dial(link);
    }, delayMs);
    link.retryTimer.unref();
  }

  // ---- receiving ----

  private onData(conn: Connection, chunk: Buffer): void {
    if (conn.state === 'closed') return;
    conn.lastReceivedMs = this.clock.monotonicMs();
    let frames: unknown[];
    try {
      frames = conn.decoder.push(chunk);
    } catch (err) {
      this.closeConn(conn, `bad frame: ${describe(err)}`, 'warn');
      return;
    }
    for (const frame of frames) {
      if (conn.closed) return;
      try {
        this.onFrame(conn, frame);
      } catch (err) {
        this.closeConn(conn, `frame refused: ${describe(err)}`, 'warn');
        return;
      }
    }
  }

  /** onFrame handles one decoded frame; it throws (to close the connection) on anything unexpected. */
  private onFrame(conn: Connection, frame: unknown): void {
    if (conn.state === 'up') {
      if (!Array.isArray(frame)) throw new DkvError(ErrorCode.InvalidArgument, 'expected a message batch');
      if (frame.length === 0) return; // ping
      const link = this.links.get(conn.peer!);
      if (link === undefined || link.conn !== conn) return;
      const msgs = new Array<M>(frame.length);
      for (let i = 0; i < frame.length; i++) msgs[i] = this.opts.validate(frame[i]);
      link.stats.framesReceived++;
      link.stats.messagesReceived += msgs.length;
      try {
        this.opts.onMessages(link.peer, msgs);
      } catch (err) {
        // A throwing consumer is a bug in the node, not in the peer: keep the link.
        this.log('error', 'onMessages threw', { peer: link.peer, err: describe(err) });
      }
      return;
    }
    if (conn.state !== 'handshake') throw new DkvError(ErrorCode.InvalidArgument, 'frame before connect');
    const hello = checkHello(frame);
    if (conn.outbound) this.onAnswer(conn, hello);
    else this.onHello(conn, hello);
  }

  private onHello(conn: Connection, hello: Hello): void {
    if ('reject' in hello) throw new DkvError(ErrorCode.InvalidArgument, 'a dialer sent a rejection');
    const link = this.links.get(hello.nodeId);
    const refusal =
      hello.clusterId !== this.clusterId
        ? `cluster id ${JSON.stringify(hello.clusterId)} is not ${JSON.stringify(this.clusterId)}`
        : hello.nodeId === this.nodeId
          ? `node id ${hello.nodeId} is the acceptor's own`
          : link === undefined
            ? `node ${hello.nodeId} is not a known peer of node ${this.nodeId}`
            : link.dialer
              ? `node ${hello.nodeId} must wait to be dialed by lower node ${this.nodeId}`
              : link.conn !== undefined
                ? `node ${hello.nodeId} is already connected`
                : (this.proofRefusal(hello) ?? this.opts.checkPeer?.(conn.socket, hello.nodeId));
    if (refusal !== undefined || link === undefined) {
      const reason = refusal ?? 'unknown peer';
      this.writeFrame(conn, encodeFrame({ hello: PEER_PROTOCOL_VERSION, reject: reason }));
      this.closeConn(conn, `handshake refused: ${reason}`, 'warn', true);
      return;
    }
    conn.peer = link.peer;
    const secret = this.opts.secret?.();
    const answer =
      secret !== undefined && hello.mac !== undefined
        ? {
            ts: Math.round(this.clock.nowMs()),
            mac: mac(secret, `answer|${this.clusterId}|${this.nodeId}|${hello.nodeId}|${hello.mac}`),
          }
        : {};
    this.writeFrame(
      conn,
      encodeFrame({
        hello: PEER_PROTOCOL_VERSION,
        clusterId: this.clusterId,
        nodeId: this.nodeId,
        ...answer,
      }),
    );
    this.linkUp(link, conn);
  }

  private onAnswer(conn: Connection, hello: Hello): void {
    const link = this.links.get(conn.peer!);
    if ('reject' in hello) {
      this.closeConn(conn, `handshake rejected by the peer: ${hello.reject}`, 'warn');
      return;
    }
    if (hello.clusterId !== this.clusterId)
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `peer answered with cluster id ${JSON.stringify(hello.clusterId)}`,
      );
    if (hello.nodeId !== conn.peer)
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `dialed node ${conn.peer} but node ${hello.nodeId} answered`,
      );
    const secret = this.opts.secret?.();
    if (secret !== undefined) {
      const want = mac(secret, `answer|${this.clusterId}|${hello.nodeId}|${this.nodeId}|${conn.helloMac}`);
      if (hello.mac === undefined || !macEqual(want, hello.mac))
        throw new DkvError(
          ErrorCode.PermissionDenied,
          `peer refused: node ${hello.nodeId} does not hold the cluster secret`,
        );
    }
    const refusal = this.opts.checkPeer?.(conn.socket, hello.nodeId);
    if (refusal !== undefined) throw new DkvError(ErrorCode.PermissionDenied, `peer refused: ${refusal}`);
    if (link === undefined || link.pending !== conn) {
      this.closeConn(conn, 'connection no longer wanted', 'debug');
      return;
    }
    link.pending = undefined;
    this.linkUp(link, conn);
  }

  private linkUp(link: PeerLink, conn: Connection): void {
    conn.state = 'up';
    link.conn = conn;
    link.stats.connections++;
    link.backoff.reset();
    this.log('info', 'peer up', { node: this.nodeId, peer: link.peer, dialer: link.dialer });
    this.notify(link.peer, true);
  }

  // ---- sending ----

  private dropOldest(link: PeerLink): void {
    const max = this.opts.queueBytesMax;
    while (link.queueBytes > max && link.head < link.queue.length) {
      link.queueBytes -= link.queue[link.head]!.length;
      link.queue[link.head++] = EMPTY;
      link.stats.droppedOverflow++;
    }
    if (link.head > 1024 && link.head * 2 > link.queue.length) {
      link.queue = link.queue.slice(link.head);
      link.head = 0;
    }
  }

  /** writeQueue writes the queue as frames until it is empty or the socket needs draining. */
  private writeQueue(link: PeerLink, conn: Connection): void {
    const { socket } = conn;
    const queue = link.queue;
    socket.cork();
    try {
      let from = link.head;
      while (from < queue.length) {
        let to = from;
        let bytes = 0;
        while (to < queue.length && bytes + queue[to]!.length <= this.batchBytesMax)
          bytes += queue[to++]!.length;
        const frame = encodeArrayFrame(queue, from, to, bytes);
        link.stats.framesSent++;
        link.stats.messagesSent += to - from;
        link.queueBytes -= bytes;
        from = to;
        conn.lastSentMs = this.clock.monotonicMs();
        if (!socket.write(frame)) break;
      }
      if (from >= queue.length) {
        link.queue = [];
        link.head = 0;
      } else {
        link.head = from;
      }
    } finally {
      socket.uncork();
    }
  }

  private writeFrame(conn: Connection, frame: Uint8Array): void {
    if (conn.socket.destroyed) return;
    conn.lastSentMs = this.clock.monotonicMs();
    conn.socket.write(frame);
  }

  private onDrain(conn: Connection): void {
    if (conn.state !== 'up') return;
    const link = this.links.get(conn.peer!);
    if (link !== undefined && link.conn === conn && link.queueBytes > 0) this.writeQueue(link, conn);
  }

  // ---- failure detection and closing ----

  /**
   * sweep runs every idleTimeoutMs/3: handshake deadlines, idle links, pings. A sweep that
   * runs much later than planned means that this process stalled (a long synchronous task,
   * SIGSTOP): data may be waiting unread in the sockets, so it closes nothing this time.
   */
  private sweep(): void {
    const now = this.clock.monotonicMs();
    const stalled = now - this.lastSweepMs > 2 * this.sweepMs;
    this.lastSweepMs = now;
    for (const conn of this.conns) {
      if (stalled) break;
      if (conn.state === 'closed') continue;
      if (conn.state !== 'up') {
        if (now - conn.openedMs > this.connectTimeoutMs)
          this.closeConn(conn, `not connected within ${this.connectTimeoutMs} ms`, 'warn');
        continue;
      }
      if (now - conn.lastReceivedMs > this.idleTimeoutMs) {
        this.closeConn(conn, `nothing received for ${Math.round(now - conn.lastReceivedMs)} ms`, 'warn');
        continue;
      }
      if (now - conn.lastSentMs >= this.idleTimeoutMs / 3 && !conn.socket.writableNeedDrain) {
        this.writeFrame(conn, PING_FRAME);
        const link = this.links.get(conn.peer!);
        if (link !== undefined) link.stats.pingsSent++;
      }
    }
  }

  /** dropConnections closes a link's connections (established and pending). */
  private dropConnections(link: PeerLink, reason: string): void {
    if (link.conn !== undefined) this.closeConn(link.conn, reason, 'info');
    if (link.pending !== undefined) this.closeConn(link.pending, reason, 'info');
  }

  /**
   * closeConn closes a connection at once, logging why. `graceful` lets queued bytes (a
   * handshake rejection) go out first. The link bookkeeping happens here, synchronously, so
   * that a peer is reported down before any new connection can replace it.
   */
  private closeConn(conn: Connection, reason: string, level: LogLevel, graceful = false): void {
    if (conn.state === 'closed') return;
    const wasUp = conn.state === 'up';
    conn.state = 'closed';
    conn.closeReason = reason;
    this.log(level, 'peer connection closed', {
      node: this.nodeId,
      peer: conn.peer,
      remote: conn.remote,
      reason,
    });
    if (graceful) {
      conn.socket.end();
      conn.socket.setTimeout(1000, () => conn.socket.destroy());
    } else {
      conn.socket.destroy();
    }
    this.detach(conn, wasUp);
  }

  private onClosed(conn: Connection): void {
    this.conns.delete(conn);
    if (conn.state === 'closed') return;
    const wasUp = conn.state === 'up';
    conn.state = 'closed';
    this.log(wasUp ? 'info' : 'debug', 'peer connection closed', {
      node: this.nodeId,
      peer: conn.peer,
      remote: conn.remote,
      reason: conn.closeReason ?? 'closed by the remote end',
    });
    this.detach(conn, wasUp);
  }

  /** detach unhooks a closing connection from its link, reports the peer down, schedules a redial. */
  private detach(conn: Connection, wasUp: boolean): void {
    if (conn.peer === undefined) return;
    const link = this.links.get(conn.peer);
    if (link === undefined) {
      if (wasUp) this.notify(conn.peer, false);
      return;
    }
    if (link.pending === conn) link.pending = undefined;
    if (link.conn === conn) {
      link.conn = undefined;
      link.stats.droppedDown += link.clearQueue();
      this.log('info', 'peer down', { node: this.nodeId, peer: link.peer });
      this.notify(link.peer, false);
    }
    if (link.dialer && link.conn === undefined && link.pending === undefined)
      this.scheduleDial(link, link.backoff.nextDelayMs());
  }

  private notify(peer: number, up: boolean): void {
    try {
      this.opts.onPeerState?.(peer, up);
    } catch (err) {
      this.log('error', 'onPeerState threw', { peer, up, err: describe(err) });
    }
  }
}

const EMPTY = new Uint8Array(0);

/** HelloOk is a validated handshake frame that is not a rejection. */
interface HelloOk {
  readonly clusterId: string;
  readonly nodeId: number;
  /** With a cluster secret: the sender's clock, and its proof (hex HMAC-SHA256). */
  readonly ts?: number;
  readonly mac?: string;
}

/** Hello is a validated handshake frame. */
type Hello = HelloOk | { readonly reject: string };

/** mac is hex HMAC-SHA256 of `text` under `secret`. */
function mac(secret: string, text: string): string {
  return createHmac('sha256', secret).update(text).digest('hex');
}

/** macEqual compares two hex MACs in constant time. */
function macEqual(a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

/** checkHello validates a handshake frame: exact fields, right types, bounded lengths. */
function checkHello(frame: unknown): Hello {
  const bad = (why: string): DkvError => new DkvError(ErrorCode.InvalidArgument, `bad handshake: ${why}`);
  if (typeof frame !== 'object' || frame === null || Array.isArray(frame)) throw bad('not an object');
  const o = frame as Record<string, unknown>;
  if (o.hello !== PEER_PROTOCOL_VERSION)
    throw bad(`protocol ${String(o.hello)} is not ${PEER_PROTOCOL_VERSION}`);
  const keys = Object.keys(o);
  if ('reject' in o) {
    if (keys.length !== 2 || typeof o.reject !== 'string') throw bad('malformed rejection');
    return { reject: o.reject.slice(0, 200) };
  }
  const proved = keys.length === 5 && 'ts' in o && 'mac' in o;
  if (keys.length !== 3 && !proved) throw bad(`unexpected fields ${keys.join(',')}`);
  if (typeof o.clusterId !== 'string' || o.clusterId.length > CLUSTER_ID_LENGTH_MAX)
    throw bad('bad clusterId');
  if (typeof o.nodeId !== 'number' || !Number.isSafeInteger(o.nodeId) || o.nodeId < 1)
    throw bad('bad nodeId');
  if (!proved) return { clusterId: o.clusterId, nodeId: o.nodeId };
  if (typeof o.ts !== 'number' || !Number.isSafeInteger(o.ts)) throw bad('bad ts');
  if (typeof o.mac !== 'string' || !/^[0-9a-f]{64}$/.test(o.mac)) throw bad('bad mac');
  return { clusterId: o.clusterId, nodeId: o.nodeId, ts: o.ts, mac: o.mac };
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
