/**
 * Embedded mode (`DkvClient.inProc({ dir? })`): the whole of DKV in one process, with no
 * socket. A single-node DkvNode (one member, one replica of each group, no peer transport and
 * no client port) serves an ordinary DkvClient through an in-process connection, so the
 * embedded client runs the very same request loop, routing, sessions and modules (scan,
 * watch, leases, locks, counters) as the networked one, against the very same node and state
 * machine. Only the wire is missing:
 *
 * - Requests and answers still go through the transport's framing (msgpack encode, then
 *   decode), so a value behaves exactly as it would over TCP: what the caller passes is
 *   copied in, what comes back is a fresh copy (nobody can mutate the store's state through a
 *   shared object), the frame limit gives TOO_LARGE, and errors carry the same codes and
 *   details as the wire's.
 * - Calls keep RpcClient's meaning of failures (TIMEOUT after the request was handed over,
 *   CANCELLED on abort or close) and streams its bounded buffer (SLOW_CONSUMER).
 *
 * Storage: LevelDB, always. With `dir`, the store persists there and reopens with its data
 * (its store name and partition count are kept in `dir/dkv-embedded.json` and fixed from the
 * first open). Without it, it lives in a fresh temporary directory, on tmpfs (/dev/shm) when
 * the machine has one, which close() removes (and process exit, should close never run):
 * LevelDB has no in-memory mode, and a second storage engine only for this mode would be
 * code that the networked nodes never exercise.
 *
 * The node runs with a fast Raft clock (10 ms ticks), so TTLs and leases expire within about
 * 10 ms of their deadline; its only voter campaigns at once, so a store opens in tens of ms.
 *
 * The node (node.ts, `network: false`) names itself `inproc:0`; the server answers with its
 * own reserved address instead (`nameSelf`), so that several embedded stores can share a
 * process and the client's routing reaches the right one.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DkvClient } from './client/client.js';
import type { ClientStream } from './client/core.js';
import {
  type InProcOptions,
  type LocalCallOptions,
  type LocalConnection,
  type LocalServer,
  type LocalStreamOptions,
  registerLocalServer,
  setEmbeddedFactory,
  unregisterLocalServer,
} from './client/embedded-hook.js';
import { DkvError, ErrorCode, isDkvError } from './errors.js';
import { checkNodeConfig, type NodeConfig } from './node/config.js';
import { DkvNode } from './node/node.js';
import { encodeFrame, FrameDecoder } from './transport/frame.js';
import type { StreamSink } from './transport/index.js';
import { errorFromWire, errorToWire, OP_LENGTH_MAX } from './transport/rpc-protocol.js';

export type { InProcOptions } from './client/embedded-hook.js';

/** LAYOUT_FILE records an embedded dir's store and partitions, fixed at its first open. */
const LAYOUT_FILE = 'dkv-embedded.json';
const FRAME_BYTES_MAX = 16 << 20;
const PARTITIONS_MAX = 256;
/** How long start-up may wait for every group to elect its (only) leader. */
const ELECT_TIMEOUT_MS = 10_000;
const STREAM_BUFFER_DEFAULT = 1024;

// ---------------------------------------------------------------- the node, with no network

/**
 * NODE_SELF_ADDRESS is the client address a DkvNode without network gives itself in its maps
 * and redirects. The embedded server answers with its own reserved address instead, so that
 * several embedded stores can live in one process (see `nameSelf`).
 */
const NODE_SELF_ADDRESS = 'inproc:0';

/** startNode starts a single-node DkvNode that opens no socket (no peer transport, no client port). */
async function startNode(cfg: NodeConfig, onFatal: (err: unknown) => void): Promise<DkvNode> {
  return DkvNode.start(cfg, { onFatal, network: false });
}

// ---------------------------------------------------------------- temporary directories

const tempDirs = new Set<string>();
let exitHook = false;

/** makeTempDir makes a directory for an in-memory store, on tmpfs when there is one. */
function makeTempDir(): string {
  let lastError: unknown;
  for (const base of [...(existsSync('/dev/shm') ? ['/dev/shm'] : []), tmpdir()]) {
    try {
      return registerTemp(mkdtempSync(join(base, 'dkv-inproc-')));
    } catch (err) {
      lastError = err; // not writable: the next candidate
    }
  }
  throw new DkvError(ErrorCode.Unavailable, `cannot make a temporary directory: ${String(lastError)}`);
}

function registerTemp(dir: string): string {
  tempDirs.add(dir);
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
    });
  }
  return dir;
}

function removeTemp(dir: string): void {
  tempDirs.delete(dir);
  rmSync(dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------- options and layout

interface Layout {
  readonly version: 1;
  readonly store: string;
  readonly partitions: number;
}

function checkOptions(opts: InProcOptions): void {
  if (typeof opts !== 'object' || opts === null)
    throw new DkvError(ErrorCode.InvalidArgument, 'inProc options must be an object');
  if (opts.dir !== undefined && (typeof opts.dir !== 'string' || opts.dir.length === 0))
    throw new DkvError(ErrorCode.InvalidArgument, 'dir must be a non-empty path');
  if (
    opts.partitions !== undefined &&
    (!Number.isSafeInteger(opts.partitions) || opts.partitions < 1 || opts.partitions > PARTITIONS_MAX)
  )
    throw new DkvError(ErrorCode.InvalidArgument, `partitions must be an integer in [1, ${PARTITIONS_MAX}]`);
}

/** layoutOf reads (or decides, for a new dir) the store name and partitions. */
function layoutOf(dir: string | undefined, opts: InProcOptions): Layout {
  const wanted: Layout = { version: 1, store: opts.store ?? 'default', partitions: opts.partitions ?? 1 };
  if (dir === undefined) return wanted;
  const file = join(dir, LAYOUT_FILE);
  if (!existsSync(file)) return wanted;
  let saved: Layout;
  try {
    const raw = JSON.parse(readFileSync(file, 'utf8')) as Partial<Layout>;
    if (
      raw.version !== 1 ||
      typeof raw.store !== 'string' ||
      !Number.isSafeInteger(raw.partitions) ||
      (raw.partitions as number) < 1
    )
      throw new Error('unexpected contents');
    saved = raw as Layout;
  } catch (err) {
    throw new DkvError(
      ErrorCode.Corrupted,
      `${file} is not an embedded store layout: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  if (opts.store !== undefined && opts.store !== saved.store)
    throw new DkvError(
      ErrorCode.InvalidArgument,
      `${dir} holds store ${saved.store}, not ${opts.store}; a store's name is fixed at its first open`,
    );
  if (opts.partitions !== undefined && opts.partitions !== saved.partitions)
    throw new DkvError(
      ErrorCode.InvalidArgument,
      `${dir} holds ${saved.partitions} partitions, not ${opts.partitions}; partitions are fixed at the first open`,
    );
  return saved;
}

// ---------------------------------------------------------------- the embedded server

/** EmbeddedServer is one embedded node, reachable in process under its reserved address. */
class EmbeddedServer implements LocalServer {
  readonly address: string;
  readonly store: string;
  private node: DkvNode | undefined;
  private readonly dataDir: string;
  private readonly tempDir: string | undefined;
  private readonly connections = new Set<InProcConnection>();
  private stopping: Promise<void> | undefined;
  private nextConnection = 1;

  private constructor(address: string, store: string, dataDir: string, tempDir: string | undefined) {
    this.address = address;
    this.store = store;
    this.dataDir = dataDir;
    this.tempDir = tempDir;
  }

  /** start opens (or creates) the store and waits until every group has elected its leader. */
  static async start(opts: InProcOptions): Promise<EmbeddedServer> {
    checkOptions(opts);
    const layout = layoutOf(opts.dir, opts);
    let tempDir: string | undefined;
    let root: string;
    if (opts.dir !== undefined) {
      root = opts.dir;
      mkdirSync(root, { recursive: true });
    } else {
      tempDir = makeTempDir();
      root = tempDir;
    }
    // The address is reserved first: the node names itself by it in its partition map.
    let server: EmbeddedServer | undefined;
    const address = registerLocalServer({
      connect: () => {
        if (server === undefined) throw new DkvError(ErrorCode.Unavailable, 'the embedded store is starting');
        return server.connect();
      },
      release: () => server?.release() ?? Promise.resolve(),
    });
    const host = address.slice(0, address.lastIndexOf(':'));
    server = new EmbeddedServer(address, layout.store, join(root, 'data'), tempDir);
    try {
      const cfg = checkNodeConfig({
        id: 1,
        dataDir: server.dataDir,
        host,
        clientPort: 1,
        peerPort: 0,
        peers: [],
        stores: [{ name: layout.store, partitions: layout.partitions }],
        tickMs: 10,
        balanceLeaders: false,
      });
      const s = server;
      s.node = await startNode(cfg, () => void s.release());
      await s.waitLeaders();
      if (opts.dir !== undefined) writeFileSync(join(opts.dir, LAYOUT_FILE), `${JSON.stringify(layout)}\n`);
    } catch (err) {
      await server.release();
      throw err;
    }
    return server;
  }

  private async waitLeaders(): Promise<void> {
    const deadline = performance.now() + ELECT_TIMEOUT_MS;
    for (;;) {
      const node = this.node;
      if (node === undefined) throw new DkvError(ErrorCode.Unavailable, 'the embedded store stopped');
      if (node.status().groups.every((g) => g.leader === 1)) return;
      if (performance.now() > deadline)
        throw new DkvError(
          ErrorCode.Unavailable,
          `the embedded store did not start within ${ELECT_TIMEOUT_MS} ms`,
        );
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** connect opens an in-process connection (UNAVAILABLE once stopped). */
  connect(): InProcConnection {
    if (this.stopping !== undefined || this.node === undefined)
      throw new DkvError(ErrorCode.Unavailable, 'the embedded store is closed');
    const c = new InProcConnection(this, this.nextConnection++);
    this.connections.add(c);
    return c;
  }

  /** forget drops a connection that ended. */
  forget(c: InProcConnection): void {
    this.connections.delete(c);
  }

  /** handle runs one unary op on the node. */
  async handle(op: string, args: unknown): Promise<unknown> {
    const node = this.node;
    if (node === undefined || this.stopping !== undefined)
      throw new DkvError(ErrorCode.Unavailable, 'the embedded store is closed');
    try {
      return this.nameSelf(op, await node.handle(op, args));
    } catch (err) {
      if (isDkvError(err) && err.details.address === NODE_SELF_ADDRESS)
        throw new DkvError(err.code, err.message, { ...err.details, address: this.address });
      throw err;
    }
  }

  /**
   * nameSelf puts this server's reserved address where the node named itself by
   * NODE_SELF_ADDRESS (the members of `map` and `status`), so that the client's routing
   * reaches this server. A no-op once the node names itself by its config's host and port.
   */
  private nameSelf(op: string, value: unknown): unknown {
    if (op !== 'map' && op !== 'status') return value;
    const v = value as { members?: { address: string }[] };
    if (!Array.isArray(v.members)) return value;
    return {
      ...v,
      members: v.members.map((m) => (m.address === NODE_SELF_ADDRESS ? { ...m, address: this.address } : m)),
    };
  }

  /** openStream starts one stream op on the node. */
  openStream(op: string, args: unknown, sink: StreamSink): (() => void) | undefined {
    const node = this.node;
    if (node === undefined || this.stopping !== undefined)
      throw new DkvError(ErrorCode.Unavailable, 'the embedded store is closed');
    return node.openStream(op, args, sink);
  }

  /** release stops the node, drops the connections and removes a temporary dir. Idempotent. */
  release(): Promise<void> {
    this.stopping ??= this.stopNow();
    return this.stopping;
  }

  private async stopNow(): Promise<void> {
    unregisterLocalServer(this.address);
    for (const c of [...this.connections]) c.drop('the embedded store closed');
    const node = this.node;
    this.node = undefined;
    try {
      await node?.stop();
    } finally {
      if (this.tempDir !== undefined) removeTemp(this.tempDir);
    }
  }
}

// ---------------------------------------------------------------- in-process connections

interface PendingCall {
  readonly op: string;
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: DkvError) => void;
  timer: NodeJS.Timeout | undefined;
  cleanup: (() => void) | undefined;
}

/**
 * InProcConnection is an in-process connection to an EmbeddedServer with RpcClient's
 * semantics: arguments and answers are copied through the wire's framing; a call settles
 * with the server's answer, TIMEOUT at its deadline (outcome unknown), CANCELLED on abort or
 * close(), and TIMEOUT when the connection is dropped with it in flight.
 */
class InProcConnection implements LocalConnection {
  private readonly server: EmbeddedServer;
  readonly id: number;
  private readonly decoder = new FrameDecoder({ frameBytesMax: FRAME_BYTES_MAX });
  private readonly calls = new Set<PendingCall>();
  private readonly streams = new Set<InProcStream>();
  private closedReason: DkvError | undefined;
  private closedByUser = false;
  private listeners: ((reason: DkvError | undefined) => void)[] = [];

  constructor(server: EmbeddedServer, id: number) {
    this.server = server;
    this.id = id;
  }

  get closed(): boolean {
    return this.closedByUser || this.closedReason !== undefined;
  }

  onClose(listener: (reason: DkvError | undefined) => void): void {
    if (this.closed) listener(this.closedByUser ? undefined : this.closedReason);
    else this.listeners.push(listener);
  }

  /** copy sends a value through the wire's framing: a fresh copy, limits included. */
  copy(value: unknown): unknown {
    const frame = encodeFrame(value, FRAME_BYTES_MAX);
    const out = this.decoder.push(frame);
    return out[0];
  }

  private checkOpen(op: string, signal: AbortSignal | undefined): void {
    if (typeof op !== 'string' || op.length === 0 || op.length > OP_LENGTH_MAX)
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `op must be a string of 1 to ${OP_LENGTH_MAX} characters`,
      );
    if (this.closedByUser) throw new DkvError(ErrorCode.Cancelled, 'client closed');
    if (this.closedReason !== undefined)
      throw new DkvError(ErrorCode.Unavailable, `not connected: ${this.closedReason.message}`);
    if (signal?.aborted) throw new DkvError(ErrorCode.Cancelled, `${op} cancelled`);
  }

  private copyArgs(op: string, args: unknown): unknown {
    try {
      return args === undefined ? undefined : this.copy(args);
    } catch (err) {
      if (isDkvError(err)) throw new DkvError(err.code, err.message);
      throw new DkvError(ErrorCode.InvalidArgument, `${op}: arguments cannot be encoded: ${String(err)}`);
    }
  }

  call(op: string, args?: unknown, opts: LocalCallOptions = {}): Promise<unknown> {
    return new Promise((resolve, reject) => {
      let input: unknown;
      try {
        this.checkOpen(op, opts.signal);
        input = this.copyArgs(op, args);
      } catch (err) {
        reject(err);
        return;
      }
      const { timeoutMs, signal } = opts;
      if (timeoutMs !== undefined && (!(timeoutMs > 0) || !Number.isFinite(timeoutMs))) {
        reject(new DkvError(ErrorCode.InvalidArgument, `timeoutMs must be positive, got ${timeoutMs}`));
        return;
      }
      const pending: PendingCall = { op, resolve, reject, timer: undefined, cleanup: undefined };
      const settle = (fn: () => void): void => {
        if (!this.calls.delete(pending)) return;
        clearTimeout(pending.timer);
        pending.cleanup?.();
        fn();
      };
      this.calls.add(pending);
      if (timeoutMs !== undefined)
        pending.timer = setTimeout(
          () =>
            settle(() => reject(new DkvError(ErrorCode.Timeout, `${op}: no answer within ${timeoutMs} ms`))),
          timeoutMs,
        );
      if (signal !== undefined) {
        const onAbort = (): void =>
          settle(() => reject(new DkvError(ErrorCode.Cancelled, `${op} cancelled`)));
        signal.addEventListener('abort', onAbort, { once: true });
        pending.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      // The server handles it on a later turn, as it would a request off the wire.
      Promise.resolve()
        .then(() => this.server.handle(op, input))
        .then(
          (value) => {
            let answer: unknown;
            try {
              answer = value === undefined ? undefined : this.copy(value);
            } catch (err) {
              const e =
                isDkvError(err) && err.code === ErrorCode.TooLarge
                  ? new DkvError(ErrorCode.TooLarge, `answer too large: ${err.message}`)
                  : new DkvError(ErrorCode.Unavailable, `internal error: answer cannot be encoded`);
              settle(() => reject(e));
              return;
            }
            settle(() => resolve(answer));
          },
          (err: unknown) => settle(() => reject(wireError(err, op))),
        );
    });
  }

  stream(op: string, args?: unknown, opts: LocalStreamOptions = {}): ClientStream {
    const bufferMax = opts.bufferMax ?? STREAM_BUFFER_DEFAULT;
    if (!Number.isSafeInteger(bufferMax) || bufferMax < 1)
      throw new RangeError(`bufferMax must be a positive integer, got ${bufferMax}`);
    const stream = new InProcStream(op, bufferMax, (s) => this.streams.delete(s));
    let input: unknown;
    try {
      this.checkOpen(op, opts.signal);
      input = this.copyArgs(op, args);
    } catch (err) {
      stream.finish(err as DkvError, false);
      return stream;
    }
    this.streams.add(stream);
    const signal = opts.signal;
    if (signal !== undefined) {
      const onAbort = (): void => stream.finish(new DkvError(ErrorCode.Cancelled, `${op} cancelled`), true);
      signal.addEventListener('abort', onAbort, { once: true });
      stream.onDone(() => signal.removeEventListener('abort', onAbort));
    }
    const sink: StreamSink = {
      push: (value) => {
        if (stream.over) return false;
        let item: unknown;
        try {
          item = this.copy(value);
        } catch (err) {
          stream.finish(wireError(err, op), false);
          return false;
        }
        return stream.offer(item);
      },
      end: () => stream.finish(undefined, false),
      fail: (err) => stream.finish(wireError(err, op), false),
    };
    Promise.resolve()
      .then(() => this.server.openStream(op, input, sink))
      .then(
        (cleanup) => {
          if (typeof cleanup === 'function') stream.onDone(cleanup);
        },
        (err: unknown) => stream.finish(wireError(err, op), false),
      );
    return stream;
  }

  /** close ends the connection: calls fail with CANCELLED, streams end with CANCELLED. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closedByUser = true;
    this.end(() => new DkvError(ErrorCode.Cancelled, 'client closed'));
  }

  /** drop ends it like a lost network connection: calls fail with TIMEOUT (outcome unknown). */
  drop(reason: string): void {
    if (this.closed) return;
    this.closedReason = new DkvError(ErrorCode.Unavailable, `connection failed: ${reason}`);
    const why = this.closedReason.message;
    this.end(
      (op) => new DkvError(ErrorCode.Timeout, `${op}: connection lost before the answer; outcome unknown`),
      new DkvError(ErrorCode.Unavailable, why),
    );
  }

  private end(callError: (op: string) => DkvError, streamError?: DkvError): void {
    this.server.forget(this);
    for (const c of [...this.calls]) {
      this.calls.delete(c);
      clearTimeout(c.timer);
      c.cleanup?.();
      c.reject(callError(c.op));
    }
    for (const s of [...this.streams]) s.finish(streamError ?? callError(s.op), streamError === undefined);
    const listeners = this.listeners;
    this.listeners = [];
    for (const l of listeners) l(this.closedByUser ? undefined : this.closedReason);
  }
}

/** wireError is what a client would receive for `err` thrown by a handler. */
function wireError(err: unknown, op: string): DkvError {
  if (isDkvError(err)) return errorFromWire(errorToWire(err));
  return new DkvError(ErrorCode.Unavailable, `internal error serving ${op}`);
}

/**
 * InProcStream is the receiving end of an in-process stream: items buffered up to
 * bufferMax, as RpcClient buffers them. `offer` delivers the item and answers false once the
 * buffer is half full, the in-process counterpart of a socket that needs draining (the node
 * then paces the stream); an item offered to a full buffer cuts the stream off with
 * SLOW_CONSUMER, as RpcClient does.
 */
class InProcStream implements ClientStream, AsyncIterator<unknown> {
  readonly op: string;
  readonly bufferMax: number;
  /** Items not consumed yet: items[head..]. */
  private items: unknown[] = [];
  private head = 0;
  over = false;
  private error: DkvError | undefined;
  private waiter: { resolve(r: IteratorResult<unknown>): void; reject(e: unknown): void } | undefined;
  private readonly done: (() => void)[] = [];

  constructor(op: string, bufferMax: number, onOver: (s: InProcStream) => void) {
    this.op = op;
    this.bufferMax = bufferMax;
    this.done.push(() => onOver(this));
  }

  /** onDone runs `f` once the stream is over (at once if it is). */
  onDone(f: () => void): void {
    if (this.over) f();
    else this.done.push(f);
  }

  private get buffered(): number {
    return this.items.length - this.head;
  }

  offer(value: unknown): boolean {
    if (this.over) return false;
    const w = this.waiter;
    if (w !== undefined) {
      this.waiter = undefined;
      w.resolve({ value, done: false });
      return true;
    }
    if (this.buffered >= this.bufferMax) {
      this.finish(
        new DkvError(ErrorCode.SlowConsumer, `${this.op}: consumer fell ${this.bufferMax} items behind`),
        false,
      );
      return false;
    }
    this.items.push(value);
    // Past half the buffer, ask the server to slow down (as a socket that needs draining
    // does); the item is delivered all the same.
    return this.buffered * 2 < this.bufferMax;
  }

  /** finish ends the stream: quietly, or with `err` after the buffered items (at once when `now`). */
  finish(err: DkvError | undefined, now: boolean): void {
    if (this.over) return;
    this.over = true;
    this.error = err;
    if (now) {
      this.items = [];
      this.head = 0;
    }
    for (const f of this.done.splice(0)) f();
    const w = this.waiter;
    if (w !== undefined) {
      this.waiter = undefined;
      const e = this.error;
      this.error = undefined;
      if (e !== undefined) w.reject(e);
      else w.resolve({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<unknown>> {
    if (this.head < this.items.length) {
      const value = this.items[this.head];
      this.items[this.head++] = undefined;
      if (this.head >= this.items.length) {
        this.items = [];
        this.head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.over) {
      const e = this.error;
      this.error = undefined;
      return e !== undefined ? Promise.reject(e) : Promise.resolve({ value: undefined, done: true });
    }
    if (this.waiter !== undefined) return Promise.reject(new Error('InProcStream: one consumer only'));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** close stops the stream (its server side is cleaned up); iteration ends quietly. */
  close(): void {
    this.finish(undefined, true);
  }

  return(): Promise<IteratorResult<unknown>> {
    this.close();
    this.error = undefined;
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<unknown> {
    return this;
  }
}

// ---------------------------------------------------------------- the entry

/**
 * openEmbedded starts an embedded store and returns a DkvClient on it (DkvClient.inProc).
 * Closing the client stops the store (and removes it unless it lives in `dir`). A `dir` in
 * use by another process fails with IN_USE.
 */
export async function openEmbedded(opts: InProcOptions = {}): Promise<DkvClient> {
  const server = await EmbeddedServer.start(opts);
  try {
    return await DkvClient.connect({
      servers: [server.address],
      store: server.store,
      ...(opts.requestTimeoutMs !== undefined && { requestTimeoutMs: opts.requestTimeoutMs }),
    });
  } catch (err) {
    await server.release();
    throw err;
  }
}

setEmbeddedFactory(openEmbedded);
