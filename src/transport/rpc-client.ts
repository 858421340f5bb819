/**
 * RpcClient: the client side of the client protocol (frames in rpc-protocol.ts), over one
 * connection with many requests in flight.
 *
 * Writes are batched per tick (cork at the first write, uncork on process.nextTick). While
 * the socket needs draining, new requests wait in a local queue bounded by `queueBytesMax`;
 * beyond it, or beyond `inFlightMax` pending requests, a call fails at once with OVERLOADED.
 *
 * What a failed call's code says about its outcome (the contract's TIMEOUT = unknown):
 * - the server's code: the server answered with an error;
 * - TIMEOUT: the request was written to the socket but not answered, before `timeoutMs`
 *   or before the connection dropped: it may or may not have taken effect;
 * - UNAVAILABLE: the request was never written (the connection was down, or dropped while the
 *   request waited in the local queue): it certainly did not take effect;
 * - OVERLOADED: the local queue was full, or the deadline passed while the request was still
 *   in it: it was never written either;
 * - CANCELLED: the caller aborted it (its signal, or close()); if it had been written, its
 *   outcome is unknown, which the caller chose.
 * A written request that times out or is aborted is also cancelled on the server
 * (`{ id, cancel: true }`), best effort.
 *
 * Streams: `stream()` returns an async iterable with `close()`. Items are buffered up to
 * `bufferMax`; a consumer that falls further behind is cut off: the stream is cancelled on
 * the server, and the iterator yields what it buffered and then throws SLOW_CONSUMER. A
 * connection drop ends a stream with UNAVAILABLE (after its buffered items), an abort with
 * CANCELLED at once, and close() or `break` ends it quietly.
 */
import type { Socket } from 'node:net';
import { DkvError, ErrorCode } from '../errors.js';
import { checkFrameBytesMax, encodeFrame, FrameDecoder } from './frame.js';
import {
  checkResponse,
  isTraceId,
  OP_LENGTH_MAX,
  type ResponseFrame,
  TRACE_LENGTH_MAX,
} from './rpc-protocol.js';
import { type Address, describeError, type LogFn, noLog, type SocketFactory, tcpSockets } from './sockets.js';

/** RpcClientOptions configure RpcClient.connect. */
export interface RpcClientOptions {
  readonly host: string;
  readonly port: number;
  readonly frameBytesMax: number;
  /** How long connect may take (default 5000 ms); then it fails with UNAVAILABLE. */
  readonly connectTimeoutMs?: number;
  /** Requests (calls and streams) pending at once (default 10000). */
  readonly inFlightMax?: number;
  /** Encoded requests waiting for the socket to drain (default 8 MiB). */
  readonly queueBytesMax?: number;
  /** TCP keepalive initial delay (default 10 s). */
  readonly keepAliveMs?: number;
  readonly log?: LogFn;
  readonly sockets?: SocketFactory;
}

/** CallOptions bound one call. */
export interface CallOptions {
  /** The deadline, in ms from now; none by default. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  /** The request id sent in the frame's `trace` (1 to 64 printable ASCII characters), for tracing. */
  readonly trace?: string;
}

/** StreamOptions configure one stream. */
export interface StreamOptions {
  readonly signal?: AbortSignal;
  /** The request id sent in the frame's `trace`, as for CallOptions. */
  readonly trace?: string;
  /** Items buffered before the consumer is cut off with SLOW_CONSUMER (default 1024). */
  readonly bufferMax?: number;
}

/** Request is what the client keeps about a call or stream until it is over. */
interface Request {
  readonly id: number;
  readonly op: string;
  /** The encoded request while it waits in the local queue; undefined once written or dropped. */
  frame: Uint8Array | undefined;
  written: boolean;
  readonly call: PendingCall | undefined;
  readonly stream: RpcStream | undefined;
}

interface PendingCall {
  resolve(value: unknown): void;
  reject(err: DkvError): void;
  timer: NodeJS.Timeout | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/** RpcClient is one connection to an RpcServer. */
export class RpcClient {
  private readonly socket: Socket;
  private readonly decoder: FrameDecoder;
  private readonly frameBytesMax: number;
  private readonly inFlightMax: number;
  private readonly queueBytesMax: number;
  private readonly log: LogFn;
  /** Every call and stream not over yet, by id. */
  private readonly requests = new Map<number, Request>();
  /** Requests waiting for 'drain', oldest first; entries with no frame were dropped. */
  private queue: (Request | undefined)[] = [];
  private queueHead = 0;
  /** Invariant: the total length of the frames in queue[queueHead..]. */
  private queueBytes = 0;
  private nextId = 1;
  private corked = false;
  private closedReason: DkvError | undefined;
  private closedByUser = false;
  /** Set once the connection is over and every request has been failed. */
  private closedFinal = false;
  private closing: Promise<void> | undefined;
  private readonly closeListeners: ((reason: DkvError | undefined) => void)[] = [];
  private readonly socketClosed: Promise<void>;

  private constructor(socket: Socket, opts: RpcClientOptions) {
    this.socket = socket;
    this.frameBytesMax = opts.frameBytesMax;
    this.decoder = new FrameDecoder({ frameBytesMax: opts.frameBytesMax });
    this.inFlightMax = opts.inFlightMax ?? 10_000;
    this.queueBytesMax = opts.queueBytesMax ?? 8 << 20;
    this.log = opts.log ?? noLog;
    this.socketClosed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.onDrain());
    socket.on('error', (err) => {
      this.closedReason ??= new DkvError(ErrorCode.Unavailable, `connection failed: ${describeError(err)}`);
    });
    socket.on('close', () => this.onClosed());
  }

  /** connect opens a connection; it fails with UNAVAILABLE when the server cannot be reached in time. */
  static connect(opts: RpcClientOptions): Promise<RpcClient> {
    checkFrameBytesMax(opts.frameBytesMax);
    const sockets = opts.sockets ?? tcpSockets;
    const timeoutMs = opts.connectTimeoutMs ?? 5000;
    const where = `${opts.host}:${opts.port}`;
    return new Promise((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const fail = (why: string, cause?: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        reject(new DkvError(ErrorCode.Unavailable, `cannot connect to ${where}: ${why}`, {}, { cause }));
      };
      const address: Address = { host: opts.host, port: opts.port };
      const socket = sockets.connect(address, () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.off('error', onError);
        socket.setNoDelay(true);
        socket.setKeepAlive(true, opts.keepAliveMs ?? 10_000);
        resolve(new RpcClient(socket, opts));
      });
      const onError = (err: Error): void => fail(describeError(err), err);
      socket.once('error', onError);
      timer = setTimeout(() => fail(`no connection within ${timeoutMs} ms`), timeoutMs);
    });
  }

  /** closed tells whether the connection is over (closed by either side). */
  get closed(): boolean {
    return this.closedReason !== undefined || this.closedByUser;
  }

  /** inFlight is the number of calls and streams not over yet. */
  get inFlight(): number {
    return this.requests.size;
  }

  /**
   * onClose registers a listener called once when the connection is over: with the reason when
   * it dropped, with undefined after close(). A listener added after that is called at once.
   */
  onClose(listener: (reason: DkvError | undefined) => void): void {
    if (this.closedFinal) {
      listener(this.closedByUser ? undefined : this.closedReason);
      return;
    }
    this.closeListeners.push(listener);
  }

  /** call sends a unary request and resolves with the server's answer (see the file comment for errors). */
  call(op: string, args?: unknown, opts: CallOptions = {}): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const pending: PendingCall = {
        resolve,
        reject,
        timer: undefined,
        signal: opts.signal,
        onAbort: undefined,
      };
      let req: Request;
      try {
        req = this.open(op, args, pending, undefined, opts.signal, opts.trace);
      } catch (err) {
        reject(err);
        return;
      }
      const { timeoutMs } = opts;
      if (timeoutMs !== undefined) {
        if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
          this.settle(
            req,
            new DkvError(ErrorCode.InvalidArgument, `timeoutMs must be positive, got ${timeoutMs}`),
          );
          return;
        }
        pending.timer = setTimeout(() => this.expire(req, timeoutMs), timeoutMs);
      }
      if (opts.signal !== undefined) {
        const onAbort = (): void => this.abandon(req, new DkvError(ErrorCode.Cancelled, `${op} cancelled`));
        pending.onAbort = onAbort;
        opts.signal.addEventListener('abort', onAbort, { once: true });
      }
      this.enqueue(req);
    });
  }

  /** stream starts a stream request; iterate it with for-await, and close() (or break) to stop it. */
  stream(op: string, args?: unknown, opts: StreamOptions = {}): RpcStream {
    const bufferMax = opts.bufferMax ?? 1024;
    if (!Number.isSafeInteger(bufferMax) || bufferMax < 1)
      throw new RangeError(`bufferMax must be a positive integer, got ${bufferMax}`);
    const stream = new RpcStream(this, op, bufferMax);
    let req: Request;
    try {
      req = this.open(op, args, undefined, stream, opts.signal, opts.trace);
    } catch (err) {
      stream.finish(err as DkvError, false);
      return stream;
    }
    stream.bind(req.id);
    if (opts.signal !== undefined) {
      const signal = opts.signal;
      const onAbort = (): void => this.abandon(req, new DkvError(ErrorCode.Cancelled, `${op} cancelled`));
      signal.addEventListener('abort', onAbort, { once: true });
      stream.onDone = () => signal.removeEventListener('abort', onAbort);
    }
    this.enqueue(req);
    return stream;
  }

  /**
   * close ends the connection: every pending call fails with CANCELLED and every stream ends
   * with CANCELLED. Idempotent; resolves when the socket is closed.
   */
  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    this.closedByUser = this.closedReason === undefined;
    this.failAll(() => new DkvError(ErrorCode.Cancelled, 'client closed'));
    this.socket.end();
    const timer = setTimeout(() => this.socket.destroy(), 1000);
    timer.unref();
    this.closing = this.socketClosed.then(() => clearTimeout(timer));
    return this.closing;
  }

  // ---- requests ----

  /** open validates and registers a request; it throws the error the caller should get. */
  private open(
    op: string,
    args: unknown,
    call: PendingCall | undefined,
    stream: RpcStream | undefined,
    signal: AbortSignal | undefined,
    trace: string | undefined,
  ): Request {
    if (typeof op !== 'string' || op.length === 0 || op.length > OP_LENGTH_MAX)
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `op must be a string of 1 to ${OP_LENGTH_MAX} characters`,
      );
    if (trace !== undefined && !isTraceId(trace))
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `${op}: trace must be 1 to ${TRACE_LENGTH_MAX} printable ASCII characters, got ${JSON.stringify(String(trace).slice(0, 80))}`,
      );
    if (this.closed)
      throw this.closedByUser
        ? new DkvError(ErrorCode.Cancelled, 'client closed')
        : new DkvError(ErrorCode.Unavailable, `not connected: ${this.closedReason?.message ?? 'closed'}`);
    if (signal?.aborted) throw new DkvError(ErrorCode.Cancelled, `${op} cancelled`);
    if (this.requests.size >= this.inFlightMax)
      throw new DkvError(ErrorCode.Overloaded, `more than ${this.inFlightMax} requests in flight`);
    const id = this.nextId;
    this.nextId = id >= Number.MAX_SAFE_INTEGER ? 1 : id + 1;
    let frame: Uint8Array;
    try {
      const body: Record<string, unknown> = { id, op };
      if (args !== undefined) body.args = args;
      if (trace !== undefined) body.trace = trace;
      frame = encodeFrame(body, this.frameBytesMax);
    } catch (err) {
      if (err instanceof DkvError) throw err;
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `${op}: arguments cannot be encoded: ${describeError(err)}`,
      );
    }
    const req: Request = { id, op, frame, written: false, call, stream };
    this.requests.set(id, req);
    return req;
  }

  /** enqueue writes a request now, or queues it while the socket needs draining. */
  private enqueue(req: Request): void {
    const frame = req.frame;
    if (frame === undefined) return; // settled synchronously (an invalid timeout, an abort)
    if (this.queueHead >= this.queue.length && !this.socket.writableNeedDrain) {
      req.frame = undefined;
      req.written = true;
      this.write(frame);
      return;
    }
    if (this.queueBytes + frame.length > this.queueBytesMax) {
      req.frame = undefined;
      this.settle(
        req,
        new DkvError(ErrorCode.Overloaded, 'the connection is backed up: local send queue full'),
      );
      return;
    }
    this.queue.push(req);
    this.queueBytes += frame.length;
  }

  private onDrain(): void {
    const q = this.queue;
    while (this.queueHead < q.length && !this.socket.writableNeedDrain) {
      const req = q[this.queueHead]!;
      q[this.queueHead++] = undefined;
      const frame = req.frame;
      if (frame === undefined) continue;
      this.queueBytes -= frame.length;
      req.frame = undefined;
      req.written = true;
      this.write(frame);
    }
    if (this.queueHead >= q.length) {
      this.queue = [];
      this.queueHead = 0;
    }
  }

  private write(frame: Uint8Array): void {
    if (this.socket.destroyed) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    this.socket.write(frame);
  }

  /** uncork is the per-tick flush. */
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  /** unqueue takes a request that was never written out of the local queue. */
  private unqueue(req: Request): void {
    if (req.frame === undefined) return;
    this.queueBytes -= req.frame.length;
    req.frame = undefined;
  }

  private expire(req: Request, timeoutMs: number): void {
    if (this.requests.get(req.id) !== req) return;
    if (req.written) {
      this.sendCancel(req);
      this.settle(req, new DkvError(ErrorCode.Timeout, `${req.op}: no answer within ${timeoutMs} ms`));
    } else {
      this.unqueue(req);
      this.settle(
        req,
        new DkvError(
          ErrorCode.Overloaded,
          `${req.op}: not sent within ${timeoutMs} ms (connection backed up)`,
        ),
      );
    }
  }

  /** abandon ends a request at the caller's wish: cancel it on the server if it was written. */
  private abandon(req: Request, err: DkvError | undefined): void {
    if (this.requests.get(req.id) !== req) return;
    if (req.written) this.sendCancel(req);
    else this.unqueue(req);
    this.settle(req, err);
  }

  /** closeStream is RpcStream.close: cancel the stream quietly. */
  closeStream(id: number): void {
    const req = this.requests.get(id);
    if (req !== undefined) this.abandon(req, undefined);
  }

  private sendCancel(req: Request): void {
    if (this.closed) return;
    this.write(encodeFrame({ id: req.id, cancel: true }));
  }

  /**
   * settle ends a request: a call resolves (ok) or rejects, a stream ends (err undefined) or
   * fails. `value` is the call's answer.
   */
  private settle(req: Request, err: DkvError | undefined, value?: unknown): void {
    if (this.requests.get(req.id) !== req) return;
    this.requests.delete(req.id);
    const call = req.call;
    if (call !== undefined) {
      if (call.timer !== undefined) clearTimeout(call.timer);
      if (call.onAbort !== undefined) call.signal?.removeEventListener('abort', call.onAbort);
      if (err === undefined) call.resolve(value);
      else call.reject(err);
    }
    req.stream?.finish(err, err?.code === ErrorCode.Cancelled);
  }

  // ---- receiving ----

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    if (!this.receivedAny) {
      this.receivedAny = true;
      // A TLS server answers plaintext with a TLS alert record (0x15 0x03 ...) and closes:
      // say so, and since it never parsed a request, nothing sent can have taken effect.
      if (chunk.length >= 2 && chunk[0] === 0x15 && chunk[1] === 0x03) {
        this.notServed = true;
        this.protocolError('the server speaks TLS: connect with TLS (client option tls, CLI --tls-ca)');
        return;
      }
    }
    let frames: unknown[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.protocolError(`bad frame from the server: ${describeError(err)}`);
      return;
    }
    for (const raw of frames) {
      let frame: ResponseFrame;
      try {
        frame = checkResponse(raw);
      } catch (err) {
        this.protocolError(describeError(err));
        return;
      }
      this.onFrame(frame);
      if (this.closed) return;
    }
  }

  private onFrame(frame: ResponseFrame): void {
    const req = this.requests.get(frame.id);
    if (req === undefined) return; // answered after we gave up on it
    const stream = req.stream;
    switch (frame.kind) {
      case 'ok':
        if (stream === undefined) this.settle(req, undefined, frame.value);
        else
          this.settle(req, new DkvError(ErrorCode.InvalidArgument, `${req.op} is not a stream; use call()`));
        return;
      case 'error':
        this.settle(req, frame.error);
        return;
      case 'item':
        if (stream === undefined) {
          this.sendCancel(req);
          this.settle(req, new DkvError(ErrorCode.InvalidArgument, `${req.op} is a stream; use stream()`));
        } else if (!stream.offer(frame.value)) {
          this.sendCancel(req);
          this.settle(
            req,
            new DkvError(ErrorCode.SlowConsumer, `${req.op}: consumer fell ${stream.bufferMax} items behind`),
          );
        }
        return;
      case 'end':
        if (stream === undefined)
          this.settle(req, new DkvError(ErrorCode.InvalidArgument, `${req.op} is a stream; use stream()`));
        else this.settle(req, undefined);
        return;
    }
  }

  private protocolError(reason: string): void {
    this.log('warn', 'rpc client closing: protocol violation by the server', { reason });
    this.closedReason ??= new DkvError(
      ErrorCode.Unavailable,
      this.notServed ? reason : `protocol violation by the server: ${reason}`,
    );
    this.socket.destroy();
    this.onClosed();
  }

  // ---- closing ----

  /** Whether any byte came from the server yet. */
  private receivedAny = false;
  /** Set when the server certainly never served a request (it turned out to speak TLS). */
  private notServed = false;

  private onClosed(): void {
    if (this.closedFinal) return;
    this.closedFinal = true;
    this.closedReason ??= new DkvError(ErrorCode.Unavailable, 'connection closed by the server');
    const reason = this.closedReason;
    this.failAll((req) =>
      req.written && req.call !== undefined && !this.notServed
        ? new DkvError(ErrorCode.Timeout, `${req.op}: connection lost before the answer; outcome unknown`)
        : new DkvError(ErrorCode.Unavailable, `${req.op}: ${reason.message}`),
    );
    const listeners = this.closeListeners.splice(0);
    for (const l of listeners) {
      try {
        l(this.closedByUser ? undefined : reason);
      } catch (err) {
        this.log('error', 'rpc client onClose listener threw', { err: describeError(err) });
      }
    }
  }

  private failAll(errorFor: (req: Request) => DkvError): void {
    const reqs = [...this.requests.values()];
    this.queue = [];
    this.queueHead = 0;
    this.queueBytes = 0;
    for (const req of reqs) {
      req.frame = undefined;
      this.settle(req, errorFor(req));
    }
  }
}

/**
 * RpcStream is a stream's receiving end: an async iterable of the items, buffered up to
 * bufferMax. One consumer only. close() (or leaving a for-await loop) cancels it.
 */
export class RpcStream implements AsyncIterableIterator<unknown> {
  readonly op: string;
  readonly bufferMax: number;
  private readonly client: RpcClient;
  private id = 0;
  /** Items not consumed yet: items[head..]. */
  private items: unknown[] = [];
  private head = 0;
  private over = false;
  /** The error to throw once the buffered items are consumed; cleared once thrown. */
  private error: DkvError | undefined;
  private waiter: { resolve(r: IteratorResult<unknown>): void; reject(err: unknown): void } | undefined;
  /** onDone runs once when the stream is over (the client uses it to drop its abort listener). */
  onDone: (() => void) | undefined;

  constructor(client: RpcClient, op: string, bufferMax: number) {
    this.client = client;
    this.op = op;
    this.bufferMax = bufferMax;
  }

  /** bind records the request id (client side). */
  bind(id: number): void {
    this.id = id;
  }

  /** buffered is the number of items received and not consumed yet. */
  get buffered(): number {
    return this.items.length - this.head;
  }

  /** offer hands over one item; false when the buffer is full (the consumer is too slow). */
  offer(value: unknown): boolean {
    if (this.over) return true;
    const w = this.waiter;
    if (w !== undefined) {
      this.waiter = undefined;
      w.resolve({ value, done: false });
      return true;
    }
    if (this.buffered >= this.bufferMax) return false;
    this.items.push(value);
    return true;
  }

  /**
   * finish ends the stream: quietly with no error, else by throwing `err` after the buffered
   * items (or at once, dropping them, when `now`).
   */
  finish(err: DkvError | undefined, now: boolean): void {
    if (this.over) return;
    this.over = true;
    this.error = err;
    if (now) {
      this.items = [];
      this.head = 0;
    }
    const done = this.onDone;
    this.onDone = undefined;
    done?.();
    const w = this.waiter;
    if (w !== undefined) {
      this.waiter = undefined;
      this.settleWaiter(w);
    }
  }

  private settleWaiter(w: { resolve(r: IteratorResult<unknown>): void; reject(err: unknown): void }): void {
    const err = this.error;
    if (err !== undefined) {
      this.error = undefined;
      w.reject(err);
    } else w.resolve({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<unknown>> {
    if (this.head < this.items.length) {
      const value = this.items[this.head];
      this.items[this.head++] = undefined;
      if (this.head >= this.items.length) {
        this.items = [];
        this.head = 0;
      } else if (this.head > 1024 && this.head * 2 > this.items.length) {
        this.items = this.items.slice(this.head);
        this.head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.over) {
      const err = this.error;
      this.error = undefined;
      return err !== undefined ? Promise.reject(err) : Promise.resolve({ value: undefined, done: true });
    }
    if (this.waiter !== undefined) return Promise.reject(new Error('RpcStream: one consumer only'));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** close stops the stream (cancelled on the server); iteration ends quietly. */
  close(): void {
    if (this.over) return;
    this.finish(undefined, true); // first, so that the buffered items are dropped
    this.client.closeStream(this.id);
  }

  return(): Promise<IteratorResult<unknown>> {
    this.close();
    this.items = [];
    this.head = 0;
    this.error = undefined;
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): RpcStream {
    return this;
  }
}
