/**
 * LinkProxy: the userspace TCP fault proxy that sits on one peer link of the harness's cluster
 * (there is no root and no tc/netem, so this is the only way to inject network faults).
 *
 * The dialing node dials the proxy's port; each accepted connection gets its own connection to
 * the real peer, and the pair lives and dies together. Each direction ("forward" = dialer to
 * target, "backward" = target to dialer) has its own LinkMode, read per frame at arrival, so
 * set() applies to open connections and to future ones.
 *
 * Frames. DKV's wire is `[u32 big-endian body length][body]`. The proxy splits each stream into
 * whole frames (FrameSplitter, pure, any chunking) without decoding the body, and forwards or
 * discards whole frames, so a fault never corrupts the stream. A length over frameBytesMax
 * closes the pair.
 *
 * Faults, per arriving frame of one direction of one connection:
 *   - blackhole: discarded and counted; the sockets stay open, as in a real partition, so the
 *     nodes must notice by their own idle timeouts.
 *   - lossRate: dropped with that probability, except the first frame (the handshake).
 *   - delayMs + uniform [0, jitterMs): held in the direction's FIFO queue with its due time;
 *     one timer per queue, armed for the head. A due time is never before the previous one's,
 *     so order is kept, and frames already held are delivered even after heal().
 *
 * Flow. A source socket is paused while its direction holds more than FLOW_BYTES_HIGH bytes
 * (delay queue plus the destination's write buffer), and resumed on drain or as the queue
 * empties. A half-close (FIN) is passed on once the direction's queue is empty, even while
 * blackholed (a node that closes a link has already decided); an error, or a close while the
 * other side still has work, destroys both sockets (which the peers see as a FIN). No exception
 * escapes a handler, and close() clears every timer.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

/** LinkMode is the fault state of one direction of a link. */
export interface LinkMode {
  readonly blackhole: boolean;
  readonly delayMs: number;
  readonly jitterMs: number;
  /** The probability, in [0, 1], that a frame (not the first of a connection) is dropped. */
  readonly lossRate: number;
}

/** PASS is the mode with every fault off. */
export const PASS: LinkMode = Object.freeze({ blackhole: false, delayMs: 0, jitterMs: 0, lossRate: 0 });

/** Direction names one way of a link: "forward" is dialer to target, "backward" the reverse. */
export type Direction = 'forward' | 'backward';

/**
 * LinkStats are cumulative counters of one direction. `frames` and `bytes` (headers included)
 * count every whole frame that arrived; `dropped` (loss) and `blackholed` count the discarded
 * ones, so `frames - dropped - blackholed` were forwarded or are held by a delay.
 */
export interface LinkStats {
  readonly connections: number;
  readonly frames: number;
  readonly bytes: number;
  readonly dropped: number;
  readonly blackholed: number;
}

/** LinkProxyOptions configure one proxy. */
export interface LinkProxyOptions {
  readonly name: string;
  /** The listening address; default 127.0.0.1. */
  readonly host?: string;
  /** The listening port; default 0 (ephemeral). */
  readonly port?: number;
  readonly targetHost: string;
  readonly targetPort: number;
  /** The random source for loss and jitter, in [0, 1); default Math.random. */
  readonly random?: () => number;
  /** The largest frame body accepted; default 64 MiB. */
  readonly frameBytesMax?: number;
}

const FRAME_HEADER_BYTES = 4;
const FRAME_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;
/** FLOW_BYTES_HIGH is how much one direction may hold before its source is paused. */
const FLOW_BYTES_HIGH = 4 * 1024 * 1024;

/**
 * FrameSplitter cuts a byte stream into whole raw frames (header included), without decoding
 * them. Each byte is copied at most once more than it was received: a frame inside one chunk
 * is a view, one spanning chunks is gathered once all of it is in. Throws a RangeError for a
 * length over `frameBytesMax`; the stream cannot be resynchronised after that.
 */
export class FrameSplitter {
  private chunks: Buffer[] = [];
  /** Invariant: bufferedBytes is the sum of the chunks' lengths. */
  private bufferedBytes = 0;
  /** The whole length of the frame at the head, once its header is in; 0 before. */
  private frameBytes = 0;

  constructor(private readonly frameBytesMax: number) {}

  /** push feeds bytes and returns every frame completed by them, in order. */
  push(chunk: Buffer): Buffer[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.bufferedBytes += chunk.length;
    }
    const frames: Buffer[] = [];
    for (;;) {
      if (this.frameBytes === 0) {
        if (this.bufferedBytes < FRAME_HEADER_BYTES) break;
        const bodyBytes = this.head(FRAME_HEADER_BYTES).readUInt32BE(0);
        if (bodyBytes > this.frameBytesMax)
          throw new RangeError(`frame body of ${bodyBytes} bytes exceeds ${this.frameBytesMax}`);
        this.frameBytes = FRAME_HEADER_BYTES + bodyBytes;
      }
      if (this.bufferedBytes < this.frameBytes) break;
      const head = this.head(this.frameBytes);
      frames.push(head.subarray(0, this.frameBytes));
      if (head.length === this.frameBytes) this.chunks.shift();
      else this.chunks[0] = head.subarray(this.frameBytes);
      this.bufferedBytes -= this.frameBytes;
      this.frameBytes = 0;
    }
    return frames;
  }

  /** head returns the first chunk, merged with the others first if it is shorter than n. */
  private head(n: number): Buffer {
    let first = this.chunks[0]!;
    if (first.length < n) {
      first = Buffer.concat(this.chunks, this.bufferedBytes);
      this.chunks = [first];
    }
    return first;
  }
}

interface Held {
  readonly frame: Buffer;
  readonly dueMs: number;
}

interface DirectionState {
  mode: LinkMode;
  stats: { connections: number; frames: number; bytes: number; dropped: number; blackholed: number };
}

/** What every connection of one proxy shares: the two directions' state and the settings. */
interface LinkContext {
  readonly forward: DirectionState;
  readonly backward: DirectionState;
  readonly random: () => number;
  readonly frameBytesMax: number;
}

/** One direction of one connection pair: src's frames go to dst, through the faults. */
class Half {
  private readonly splitter: FrameSplitter;
  private sawFirst = false;
  /** The delay queue, FIFO from `heldHead`; due times never decrease along it. */
  private held: Held[] = [];
  private heldHead = 0;
  private heldBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private paused = false;
  private srcEnded = false;

  constructor(
    private readonly state: DirectionState,
    readonly src: Socket,
    readonly dst: Socket,
    private readonly random: () => number,
    frameBytesMax: number,
  ) {
    this.splitter = new FrameSplitter(frameBytesMax);
  }

  /** onData takes one chunk from src; it throws only for a stream that must be closed. */
  onData(chunk: Buffer): void {
    const frames = this.splitter.push(chunk);
    const { mode, stats } = this.state;
    const now = performance.now();
    this.dst.cork();
    try {
      for (const frame of frames) {
        stats.frames++;
        stats.bytes += frame.length;
        const first = !this.sawFirst;
        this.sawFirst = true;
        if (mode.blackhole) stats.blackholed++;
        else if (!first && mode.lossRate > 0 && this.random() < mode.lossRate) stats.dropped++;
        else
          this.pass(frame, now + mode.delayMs + (mode.jitterMs > 0 ? this.random() * mode.jitterMs : 0), now);
      }
    } finally {
      this.dst.uncork();
    }
    this.updateFlow();
  }

  onEnd(): void {
    this.srcEnded = true;
    this.maybeEnd();
  }

  /** updateFlow pauses src while too much is held for dst, and resumes it below the mark. */
  updateFlow(): void {
    const over = this.heldBytes + this.dst.writableLength > FLOW_BYTES_HIGH;
    if (over && !this.paused) this.src.pause();
    else if (!over && this.paused) this.src.resume();
    this.paused = over;
  }

  /** stop clears the timer and forgets what is held. */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.held = [];
    this.heldHead = 0;
    this.heldBytes = 0;
  }

  private pass(frame: Buffer, dueMs: number, nowMs: number): void {
    const queued = this.held.length - this.heldHead;
    if (queued === 0 && dueMs <= nowMs) {
      this.dst.write(frame);
      return;
    }
    const lastDueMs = queued > 0 ? this.held[this.held.length - 1]!.dueMs : dueMs;
    this.held.push({ frame, dueMs: Math.max(dueMs, lastDueMs) });
    this.heldBytes += frame.length;
    if (queued === 0) this.arm();
  }

  private arm(): void {
    const head = this.held[this.heldHead];
    if (head === undefined) return;
    this.timer = setTimeout(() => this.release(), Math.max(0, Math.ceil(head.dueMs - performance.now())));
  }

  /** release is the timer: write every held frame that is due, then re-arm for the next. */
  private release(): void {
    this.timer = undefined;
    try {
      const now = performance.now();
      this.dst.cork();
      for (let head = this.held[this.heldHead]; head !== undefined && head.dueMs <= now; ) {
        this.dst.write(head.frame);
        this.heldBytes -= head.frame.length;
        head = this.held[++this.heldHead];
      }
      this.dst.uncork();
      if (this.heldHead === this.held.length) {
        this.held = [];
        this.heldHead = 0;
      } else if (this.heldHead > 1024 && this.heldHead * 2 > this.held.length) {
        this.held = this.held.slice(this.heldHead);
        this.heldHead = 0;
      }
      this.arm();
      this.updateFlow();
      this.maybeEnd();
    } catch {
      this.dst.destroy(); // a write after destroy, say: the pair's close handlers clean up
    }
  }

  private maybeEnd(): void {
    if (this.srcEnded && this.heldHead === this.held.length && !this.dst.writableEnded && !this.dst.destroyed)
      this.dst.end();
  }
}

/** One accepted connection and its connection to the target. */
class Pair {
  readonly forward: Half;
  readonly backward: Half;
  private destroyed = false;

  constructor(
    readonly client: Socket,
    readonly target: Socket,
    link: LinkContext,
    onGone: (pair: Pair) => void,
  ) {
    this.forward = new Half(link.forward, client, target, link.random, link.frameBytesMax);
    this.backward = new Half(link.backward, target, client, link.random, link.frameBytesMax);
    for (const half of [this.forward, this.backward]) {
      const { src, dst } = half;
      src.on('data', (chunk: Buffer) => {
        try {
          half.onData(chunk);
        } catch {
          this.destroy(); // a frame over the limit, or a write after destroy
        }
      });
      src.on('end', () => half.onEnd());
      dst.on('drain', () => half.updateFlow());
      src.on('error', () => this.destroy());
      src.on('close', () => {
        // A graceful close leaves the other socket to finish its own half-close; anything
        // else (an error, a reset, or the other side still open) takes the other one down.
        if (!(dst.readableEnded && dst.writableEnded)) this.destroy();
        if (client.destroyed && target.destroyed) {
          this.destroy();
          onGone(this);
        }
      });
    }
  }

  /** destroy destroys both sockets and clears both timers; idempotent. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.forward.stop();
    this.backward.stop();
    this.client.destroy();
    this.target.destroy();
  }
}

/** LinkProxy is a frame-aware TCP proxy in front of one peer link, with per-direction faults. */
export class LinkProxy {
  readonly name: string;
  /** port is the listening port. */
  readonly port: number;
  private readonly server: Server;
  private readonly targetHost: string;
  private readonly targetPort: number;
  /** The directions' state, shared with every connection pair (so set() reaches them all). */
  private readonly states: LinkContext;
  private readonly pairs = new Set<Pair>();
  private closing: Promise<void> | undefined;

  private constructor(opts: LinkProxyOptions, server: Server, port: number) {
    this.name = opts.name;
    this.port = port;
    this.states = {
      forward: { mode: PASS, stats: zeroStats() },
      backward: { mode: PASS, stats: zeroStats() },
      random: opts.random ?? Math.random,
      frameBytesMax: opts.frameBytesMax ?? FRAME_BYTES_MAX_DEFAULT,
    };
    this.targetHost = opts.targetHost;
    this.targetPort = opts.targetPort;
    this.server = server;
    server.on('connection', (client) => this.accept(client));
    server.on('error', () => {}); // after listen, nothing to report to
  }

  /** start listens and resolves once the port is bound. */
  static start(opts: LinkProxyOptions): Promise<LinkProxy> {
    const frameBytesMax = opts.frameBytesMax ?? FRAME_BYTES_MAX_DEFAULT;
    if (!Number.isSafeInteger(frameBytesMax) || frameBytesMax < 1)
      return Promise.reject(
        new RangeError(`LinkProxy ${opts.name}: frameBytesMax must be a positive integer`),
      );
    const server = createServer({ allowHalfOpen: true, noDelay: true });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        const address = server.address();
        if (address === null || typeof address === 'string') {
          server.close();
          reject(new Error(`LinkProxy ${opts.name}: not listening on TCP`));
          return;
        }
        resolve(new LinkProxy(opts, server, address.port));
      });
    });
  }

  /** mode returns one direction's current mode. */
  mode(dir: Direction): LinkMode {
    return this.states[dir].mode;
  }

  /**
   * set merges `mode` into one direction's mode, for open and future connections. Throws a
   * RangeError naming the field for a negative or non-finite delay or jitter, or a loss rate
   * outside [0, 1].
   */
  set(dir: Direction, mode: Partial<LinkMode>): void {
    const { blackhole, delayMs, jitterMs, lossRate } = mode;
    if (blackhole !== undefined && typeof blackhole !== 'boolean')
      throw new RangeError(`LinkProxy.set: blackhole must be a boolean, got ${String(blackhole)}`);
    for (const [field, value] of [
      ['delayMs', delayMs],
      ['jitterMs', jitterMs],
    ] as const)
      if (value !== undefined && !(Number.isFinite(value) && value >= 0))
        throw new RangeError(`LinkProxy.set: ${field} must be a non-negative finite number, got ${value}`);
    if (lossRate !== undefined && !(lossRate >= 0 && lossRate <= 1))
      throw new RangeError(`LinkProxy.set: lossRate must be in [0, 1], got ${lossRate}`);
    const state = this.states[dir];
    state.mode = Object.freeze({ ...state.mode, ...definedOnly(mode) });
  }

  /** heal puts both directions back to PASS; frames held by a delay are still delivered. */
  heal(): void {
    this.states.forward.mode = PASS;
    this.states.backward.mode = PASS;
  }

  /** stats returns a copy of one direction's cumulative counters. */
  stats(dir: Direction): LinkStats {
    return { ...this.states[dir].stats };
  }

  /** resetConnections destroys every open connection pair now (both sockets). */
  resetConnections(): void {
    for (const pair of this.pairs) pair.destroy();
  }

  /** close stops listening and destroys every connection and timer; idempotent. */
  close(): Promise<void> {
    this.closing ??= new Promise((resolve) => {
      this.server.close(() => resolve());
      this.resetConnections();
    });
    return this.closing;
  }

  private accept(client: Socket): void {
    client.on('error', () => {});
    if (this.closing !== undefined) {
      client.destroy();
      return;
    }
    const target = createConnection({
      host: this.targetHost,
      port: this.targetPort,
      allowHalfOpen: true,
      noDelay: true,
    });
    target.on('error', () => {});
    const pair = new Pair(client, target, this.states, (gone) => this.pairs.delete(gone));
    this.pairs.add(pair);
    this.states.forward.stats.connections++;
    this.states.backward.stats.connections++;
  }
}

function zeroStats(): DirectionState['stats'] {
  return { connections: 0, frames: 0, bytes: 0, dropped: 0, blackholed: 0 };
}

function definedOnly(mode: Partial<LinkMode>): Partial<LinkMode> {
  return Object.fromEntries(Object.entries(mode).filter(([, v]) => v !== undefined));
}
