/**
 * RpcServer: the server side of the client protocol (frames in rpc-protocol.ts).
 *
 * Each connection has its own decoder and table of in-flight requests. A request runs its
 * op's handler: `unary` answers once; `stream` pushes items through a sink until it ends,
 * fails, or the client cancels. Limits, so that no client can grow the server without bound:
 * - At most `inFlightMax` requests (unary and streams) per connection; beyond it a request
 *   gets an OVERLOADED answer at once. A cancelled request still counts until its handler
 *   settles, so cancelling cannot be used to run more than inFlightMax handlers.
 * - When the socket needs draining (the client is not reading fast enough), the server
 *   stops starting requests on that connection (frames already decoded wait, at most one
 *   chunk's worth) and stops reading it, until 'drain'. Unsent unary answers are therefore
 *   bounded by about inFlightMax answers, however many requests the client pipelines.
 * - Stream sinks report backpressure too (`push` returns false once the connection's unsent
 *   output reaches STREAM_PAUSE_BYTES), so a stream's owner can hold back or cut a slow
 *   consumer off; a stream that keeps pushing while the connection's unsent output exceeds
 *   `outBytesMax` is failed with SLOW_CONSUMER (the connection stays).
 * - At most `connectionsMax` connections; more are closed on accept.
 * - A frame is at most `frameBytesMax`, both ways: an answer too large to send becomes a
 *   TOO_LARGE error instead.
 *
 * Failures: a malformed frame (bad framing, bad msgpack, bad shape, unknown field, an id
 * already in flight) closes that connection with a logged reason; an unknown op is a clean
 * INVALID_ARGUMENT answer. A handler's DkvError is answered with its code; any other error is
 * a bug, logged, and answered as UNAVAILABLE ("internal error"). Nothing a client sends can
 * throw out of a socket handler.
 *
 * Writes are batched per tick: the socket is corked at the first write of a tick and
 * uncorked on process.nextTick, so answers produced together leave in one write.
 */
import type { Server, Socket } from 'node:net';
import { DkvError, ErrorCode } from '../errors.js';
import { checkFrameBytesMax, encodeFrame, FrameDecoder } from './frame.js';
import { checkRequest, errorToWire } from './rpc-protocol.js';
import {
  type Address,
  describeError,
  type LogFn,
  listenOn,
  noLog,
  remoteOf,
  type SocketFactory,
  tcpSockets,
} from './sockets.js';
import { certCommonName } from './tls.js';

/** Unsent output on a connection at which stream pushes report backpressure (1 MiB). */
const STREAM_PAUSE_BYTES = 1 << 20;

/** OpKind says how an op answers: once, or with a stream of items. */
export type OpKind = 'unary' | 'stream';

/** RpcContext describes the request a handler serves. */
export interface RpcContext {
  readonly id: number;
  readonly op: string;
  /** A per-server sequence number of the connection. */
  readonly connectionId: number;
  readonly remoteAddress: string;
  /** The request id the client sent for tracing (the request frame's `trace`), if any. */
  readonly trace?: string | undefined;
  /** Aborted when the client cancels the request or the connection closes (created on first use). */
  readonly signal: AbortSignal;
  /** The connection's session: who is on the other end (shared by its requests). */
  readonly session: ConnectionSession;
}

/**
 * ConnectionSession is per-connection state the handlers keep: who authenticated on it. The
 * transport only fills in what it knows from TLS.
 */
export interface ConnectionSession {
  /** Set by the handlers once the connection authenticates (the node's auth op). */
  principal: unknown;
  /** The subject CN of the client certificate the CA verified (TLS only). */
  readonly certCommonName: string | undefined;
}

/** StreamSink is how a stream handler sends; every call after the stream finished is ignored. */
export interface StreamSink {
  /** push sends an item; false means the client is not keeping up (or the stream is over). */
  push(value: unknown): boolean;
  /** end finishes the stream normally. */
  end(): void;
  /** fail finishes the stream with an error (a DkvError's code is kept). */
  fail(err: unknown): void;
}

/** RpcHandlers serve the ops; `ops` names every op and its kind, anything else is unknown. */
export interface RpcHandlers {
  readonly ops: Readonly<Record<string, OpKind>>;
  /** unary answers a unary op, synchronously or through a promise. */
  unary(op: string, args: unknown, ctx: RpcContext): unknown;
  /**
   * stream starts a stream op. It may return a cleanup function, which runs exactly once when
   * the stream is over, whatever the reason (end, fail, cancel, disconnect, server close).
   */
  stream?(op: string, args: unknown, ctx: RpcContext, sink: StreamSink): (() => void) | undefined;
}

/** RpcServerOptions configure an RpcServer. */
export interface RpcServerOptions {
  readonly listen: Address;
  readonly frameBytesMax: number;
  /** Requests (unary and streams) in flight per connection. */
  readonly inFlightMax: number;
  readonly handlers: RpcHandlers;
  readonly log?: LogFn;
  /** Connections at once (default 4096). */
  readonly connectionsMax?: number;
  /** Unsent output per connection beyond which stream pushes fail the stream (default 8 MiB). */
  readonly outBytesMax?: number;
  /** TCP keepalive initial delay (default 10 s). */
  readonly keepAliveMs?: number;
  /** How long close() lets connections flush before destroying them (default 1000 ms). */
  readonly closeGraceMs?: number;
  readonly sockets?: SocketFactory;
}

/** RpcServerStats counts what the server did since it started. */
export interface RpcServerStats {
  connectionsAccepted: number;
  connectionsRefused: number;
  /** Connections closed because of a malformed frame or a protocol violation. */
  connectionsClosedMalformed: number;
  requests: number;
  overloaded: number;
  internalErrors: number;
}

interface InFlight {
  readonly ctx: Context;
  /** The stream's sink, for stream ops. */
  sink: Sink | undefined;
}

/** Context is the RpcContext with a lazily created AbortController. */
class Context implements RpcContext {
  readonly id: number;
  readonly op: string;
  readonly connectionId: number;
  readonly remoteAddress: string;
  readonly trace: string | undefined;
  readonly session: ConnectionSession;
  private controller: AbortController | undefined;
  private aborted = false;

  constructor(id: number, op: string, conn: ServerConnection, trace: string | undefined) {
    this.id = id;
    this.op = op;
    this.connectionId = conn.id;
    this.remoteAddress = conn.remote;
    this.trace = trace;
    this.session = conn.session;
  }

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(new DkvError(ErrorCode.Cancelled, 'request cancelled'));
    }
    return this.controller.signal;
  }

  abort(reason: string): void {
    if (this.aborted) return;
    this.aborted = true;
    this.controller?.abort(new DkvError(ErrorCode.Cancelled, reason));
  }
}

/** ServerConnection is one client connection. */
class ServerConnection {
  readonly id: number;
  readonly socket: Socket;
  readonly remote: string;
  readonly decoder: FrameDecoder;
  readonly session: ConnectionSession;
  /** Requests whose answer is still owed, by id. */
  readonly inFlight = new Map<number, InFlight>();
  /** Handlers still running, cancelled ones included. Invariant: busy >= inFlight.size. */
  busy = 0;
  corked = false;
  /** Whether we paused reading because the socket needs draining. */
  paused = false;
  /** Decoded requests not started yet because the socket needs draining: backlog[backlogHead..]. */
  backlog: unknown[] = [];
  backlogHead = 0;
  closed = false;

  constructor(id: number, socket: Socket, frameBytesMax: number) {
    this.id = id;
    this.socket = socket;
    this.remote = remoteOf(socket);
    this.decoder = new FrameDecoder({ frameBytesMax });
    this.session = { principal: undefined, certCommonName: certCommonName(socket) };
  }
}

/** Sink is a StreamSink bound to one request. */
class Sink implements StreamSink {
  private readonly server: RpcServer;
  readonly conn: ServerConnection;
  private readonly id: number;
  done = false;
  cleanup: (() => void) | undefined;

  constructor(server: RpcServer, conn: ServerConnection, id: number) {
    this.server = server;
    this.conn = conn;
    this.id = id;
  }

  push(value: unknown): boolean {
    if (this.done) return false;
    return this.server.pushItem(this.conn, this.id, value);
  }

  end(): void {
    if (this.done) return;
    this.server.finishStream(this.conn, this.id, undefined);
  }

  fail(err: unknown): void {
    if (this.done) return;
    this.server.finishStream(this.conn, this.id, err ?? new Error('stream failed'));
  }
}

/** RpcServer serves the client protocol on one listener. */
export class RpcServer {
  private readonly opts: RpcServerOptions;
  private readonly log: LogFn;
  private readonly sockets: SocketFactory;
  private readonly connectionsMax: number;
  private readonly outBytesMax: number;
  private readonly conns = new Set<ServerConnection>();
  private server: Server | undefined;
  private bound: Address | undefined;
  private nextConnectionId = 1;
  private closing: Promise<void> | undefined;
  /** What the server did so far. */
  readonly stats: RpcServerStats = {
    connectionsAccepted: 0,
    connectionsRefused: 0,
    connectionsClosedMalformed: 0,
    requests: 0,
    overloaded: 0,
    internalErrors: 0,
  };

  constructor(opts: RpcServerOptions) {
    checkFrameBytesMax(opts.frameBytesMax);
    if (!Number.isSafeInteger(opts.inFlightMax) || opts.inFlightMax < 1)
      throw new RangeError(`inFlightMax must be a positive integer, got ${opts.inFlightMax}`);
    this.opts = opts;
    this.log = opts.log ?? noLog;
    this.sockets = opts.sockets ?? tcpSockets;
    this.connectionsMax = opts.connectionsMax ?? 4096;
    this.outBytesMax = opts.outBytesMax ?? 8 << 20;
  }

  /** start binds the listener and resolves with the bound address. */
  async start(): Promise<Address> {
    if (this.server !== undefined) throw new Error('RpcServer.start: already started');
    const server = this.sockets.createServer((socket) => this.accept(socket));
    server.on('error', (err) => this.log('error', 'rpc listener error', { err: String(err) }));
    this.server = server;
    this.bound = await listenOn(server, this.opts.listen);
    return this.bound;
  }

  /** address is the bound address (after start). */
  address(): Address {
    if (this.bound === undefined) throw new Error('RpcServer.address: not started');
    return this.bound;
  }

  /** connectionCount is the number of open client connections. */
  connectionCount(): number {
    return this.conns.size;
  }

  /**
   * close stops accepting, cancels every request (handlers see their signal abort, streams
   * their cleanup), lets written answers flush for up to closeGraceMs, and resolves when every
   * connection is closed. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.closeAll();
    return this.closing;
  }

  private async closeAll(): Promise<void> {
    const waits: Promise<unknown>[] = [];
    const server = this.server;
    if (server?.listening) waits.push(new Promise<void>((resolve) => server.close(() => resolve())));
    const graceMs = this.opts.closeGraceMs ?? 1000;
    for (const conn of this.conns) {
      if (!conn.socket.closed) waits.push(new Promise((resolve) => conn.socket.once('close', resolve)));
      this.shutConnection(conn, 'server closing');
      conn.socket.end();
      setTimeout(() => conn.socket.destroy(), graceMs).unref();
    }
    await Promise.all(waits);
  }

  private accept(socket: Socket): void {
    if (this.closing !== undefined || this.conns.size >= this.connectionsMax) {
      this.stats.connectionsRefused++;
      this.log('warn', 'rpc connection refused', {
        remote: remoteOf(socket),
        reason: this.closing ? 'server closing' : `${this.connectionsMax} connections already`,
      });
      socket.destroy();
      return;
    }
    this.stats.connectionsAccepted++;
    const conn = new ServerConnection(this.nextConnectionId++, socket, this.opts.frameBytesMax);
    this.conns.add(conn);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, this.opts.keepAliveMs ?? 10_000);
    socket.on('data', (chunk: Buffer) => this.onData(conn, chunk));
    socket.on('drain', () => this.onDrain(conn));
    socket.on('error', (err) =>
      this.log('debug', 'rpc socket error', { remote: conn.remote, err: describeError(err) }),
    );
    socket.on('close', () => {
      this.conns.delete(conn);
      this.shutConnection(conn, 'connection closed');
    });
  }

  // ---- receiving ----

  private onData(conn: ServerConnection, chunk: Buffer): void {
    if (conn.closed) return;
    let frames: unknown[];
    try {
      frames = conn.decoder.push(chunk);
    } catch (err) {
      this.refuse(conn, `bad frame: ${describeError(err)}`);
      return;
    }
    if (conn.backlogHead < conn.backlog.length) {
      // (Only if a 'data' event slipped in after pause(): keep the order.)
      for (const f of frames) conn.backlog.push(f);
      return;
    }
    conn.backlog = frames;
    conn.backlogHead = 0;
    this.runBacklog(conn);
  }

  /** runBacklog starts the decoded requests in order, until the socket needs draining. */
  private runBacklog(conn: ServerConnection): void {
    const frames = conn.backlog;
    while (conn.backlogHead < frames.length) {
      if (conn.closed || conn.paused) return;
      const frame = frames[conn.backlogHead];
      frames[conn.backlogHead++] = undefined;
      let req: ReturnType<typeof checkRequest>;
      try {
        req = checkRequest(frame);
      } catch (err) {
        this.refuse(conn, describeError(err));
        return;
      }
      if (req.kind === 'cancel') this.cancel(conn, req.id);
      else if (conn.inFlight.has(req.id)) {
        this.refuse(conn, `request id ${req.id} is already in flight`);
        return;
      } else this.dispatch(conn, req.id, req.op, req.args, req.trace);
    }
    conn.backlog = [];
    conn.backlogHead = 0;
  }

  private onDrain(conn: ServerConnection): void {
    if (!conn.paused || conn.closed) return;
    conn.paused = false;
    this.runBacklog(conn);
    if (!conn.paused && !conn.closed) conn.socket.resume();
  }

  /** refuse closes a connection that broke the protocol. */
  private refuse(conn: ServerConnection, reason: string): void {
    this.stats.connectionsClosedMalformed++;
    this.log('warn', 'rpc connection closed: protocol violation', { remote: conn.remote, reason });
    this.shutConnection(conn, reason);
    conn.socket.destroy();
  }

  private cancel(conn: ServerConnection, id: number): void {
    const f = conn.inFlight.get(id);
    if (f === undefined) return; // already answered: the cancel crossed the answer
    conn.inFlight.delete(id);
    f.ctx.abort('cancelled by the client');
    if (f.sink !== undefined) this.stopSink(f.sink);
  }

  private dispatch(
    conn: ServerConnection,
    id: number,
    op: string,
    args: unknown,
    trace: string | undefined,
  ): void {
    this.stats.requests++;
    const { handlers } = this.opts;
    const kind = Object.hasOwn(handlers.ops, op) ? handlers.ops[op] : undefined;
    if (kind === undefined || (kind === 'stream' && handlers.stream === undefined)) {
      this.sendError(
        conn,
        id,
        new DkvError(ErrorCode.InvalidArgument, `unknown operation ${JSON.stringify(op)}`),
      );
      return;
    }
    if (conn.busy >= this.opts.inFlightMax) {
      this.stats.overloaded++;
      this.sendError(
        conn,
        id,
        new DkvError(
          ErrorCode.Overloaded,
          `more than ${this.opts.inFlightMax} requests in flight on this connection`,
        ),
      );
      return;
    }
    const ctx = new Context(id, op, conn, trace);
    const f: InFlight = { ctx, sink: undefined };
    conn.inFlight.set(id, f);
    conn.busy++;
    if (kind === 'unary') this.runUnary(conn, f, args);
    else this.runStream(conn, f, args);
  }

  private runUnary(conn: ServerConnection, f: InFlight, args: unknown): void {
    let result: unknown;
    try {
      result = this.opts.handlers.unary(f.ctx.op, args, f.ctx);
    } catch (err) {
      this.settleUnary(conn, f, false, err);
      return;
    }
    if (isThenable(result)) {
      result.then(
        (value) => this.settleUnary(conn, f, true, value),
        (err: unknown) => this.settleUnary(conn, f, false, err),
      );
    } else {
      this.settleUnary(conn, f, true, result);
    }
  }

  private settleUnary(conn: ServerConnection, f: InFlight, ok: boolean, result: unknown): void {
    conn.busy--;
    const id = f.ctx.id;
    if (conn.inFlight.get(id) !== f) {
      if (!ok) this.noteError(f.ctx, result);
      return; // cancelled, or the connection closed
    }
    conn.inFlight.delete(id);
    if (conn.closed) return;
    if (ok) this.sendValue(conn, id, result);
    else this.sendError(conn, id, this.toDkvError(f.ctx, result));
  }

  private runStream(conn: ServerConnection, f: InFlight, args: unknown): void {
    const sink = new Sink(this, conn, f.ctx.id);
    f.sink = sink;
    let cleanup: (() => void) | undefined;
    try {
      cleanup = this.opts.handlers.stream!(f.ctx.op, args, f.ctx, sink);
    } catch (err) {
      sink.fail(err);
      return;
    }
    if (typeof cleanup === 'function') {
      if (sink.done) runCleanup(cleanup, this.log);
      else sink.cleanup = cleanup;
    }
  }

  /** pushItem sends one stream item; false when the stream is over or the socket needs draining. */
  pushItem(conn: ServerConnection, id: number, value: unknown): boolean {
    if (conn.closed) return false;
    if (conn.socket.writableLength > this.outBytesMax) {
      this.log('warn', 'rpc stream cut off: the client is not reading', {
        remote: conn.remote,
        id,
        unsentBytes: conn.socket.writableLength,
      });
      this.finishStream(
        conn,
        id,
        new DkvError(ErrorCode.SlowConsumer, 'the client is not reading this connection'),
      );
      return false;
    }
    let frame: Uint8Array;
    try {
      frame = encodeFrame({ id, stream: 'item', value }, this.opts.frameBytesMax);
    } catch (err) {
      this.finishStream(conn, id, this.encodeFailure(err, 'stream item', id));
      return false;
    }
    this.write(conn, frame);
    // Not the socket's own high-water mark (16 KiB): answers and items of one tick are corked
    // together, so one event fanned out to a few dozen watchers passes it without any client
    // being slow, and a stream told to wait would deliver late for nothing.
    return !conn.closed && conn.socket.writableLength < Math.min(STREAM_PAUSE_BYTES, this.outBytesMax);
  }

  /** finishStream ends a stream (err undefined) or fails it, and releases its slot. */
  finishStream(conn: ServerConnection, id: number, err: unknown): void {
    const f = conn.inFlight.get(id);
    if (f?.sink === undefined) return;
    conn.inFlight.delete(id);
    this.stopSink(f.sink);
    if (conn.closed) return;
    if (err === undefined) this.write(conn, encodeFrame({ id, stream: 'end' }));
    else this.sendError(conn, id, this.toDkvError(f.ctx, err));
  }

  /** stopSink marks a stream over, releases its slot and runs its cleanup once. */
  private stopSink(sink: Sink): void {
    if (sink.done) return;
    sink.done = true;
    sink.conn.busy--;
    const cleanup = sink.cleanup;
    sink.cleanup = undefined;
    if (cleanup !== undefined) runCleanup(cleanup, this.log);
  }

  // ---- sending ----

  private sendValue(conn: ServerConnection, id: number, value: unknown): void {
    let frame: Uint8Array;
    try {
      frame = encodeFrame({ id, ok: true, value }, this.opts.frameBytesMax);
    } catch (err) {
      this.sendError(conn, id, this.encodeFailure(err, 'answer', id));
      return;
    }
    this.write(conn, frame);
  }

  private sendError(conn: ServerConnection, id: number, err: DkvError): void {
    this.write(conn, encodeFrame({ id, ok: false, error: errorToWire(err) }));
  }

  private write(conn: ServerConnection, frame: Uint8Array): void {
    if (conn.closed) return;
    const { socket } = conn;
    if (!conn.corked) {
      conn.corked = true;
      socket.cork();
      process.nextTick(uncork, conn);
    }
    if (!socket.write(frame) && !conn.paused) {
      conn.paused = true;
      socket.pause();
    }
  }

  // ---- errors and closing ----

  /** encodeFailure turns a failure to encode an answer into the error the client gets. */
  private encodeFailure(err: unknown, what: string, id: number): DkvError {
    if (err instanceof DkvError && err.code === ErrorCode.TooLarge)
      return new DkvError(ErrorCode.TooLarge, `${what} too large: ${err.message}`);
    this.stats.internalErrors++;
    this.log('error', `rpc ${what} cannot be encoded`, { id, err: describeError(err) });
    return new DkvError(ErrorCode.Unavailable, `internal error: ${what} cannot be encoded`);
  }

  private toDkvError(ctx: Context, err: unknown): DkvError {
    if (err instanceof DkvError) return err;
    this.noteError(ctx, err);
    return new DkvError(ErrorCode.Unavailable, `internal error serving ${ctx.op}`);
  }

  private noteError(ctx: Context, err: unknown): void {
    if (err instanceof DkvError) return;
    this.stats.internalErrors++;
    this.log('error', 'rpc handler failed', {
      op: ctx.op,
      id: ctx.id,
      err: err instanceof Error ? (err.stack ?? err.message) : String(err),
    });
  }

  /** shutConnection cancels everything in flight on a connection; the socket is closed by the caller. */
  private shutConnection(conn: ServerConnection, reason: string): void {
    if (conn.closed) return;
    conn.closed = true;
    const flights = [...conn.inFlight.values()];
    conn.inFlight.clear();
    for (const f of flights) {
      f.ctx.abort(reason);
      if (f.sink !== undefined) this.stopSink(f.sink);
    }
  }
}

function uncork(conn: ServerConnection): void {
  conn.corked = false;
  conn.socket.uncork();
}

function runCleanup(cleanup: () => void, log: LogFn): void {
  try {
    cleanup();
  } catch (err) {
    log('error', 'rpc stream cleanup threw', { err: describeError(err) });
  }
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (
    (typeof v === 'object' || typeof v === 'function') &&
    v !== null &&
    typeof (v as { then?: unknown }).then === 'function'
  );
}
