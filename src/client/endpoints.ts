/**
 * Endpoints: the client's connections, one per server address, and what the client knows
 * about each server's health. The request loop (client.ts) asks `isDown` to skip servers and
 * `connection` for a server's connection; everything else happens here, in the background:
 *
 * - **States.** An endpoint is `idle` (never connected, or closed by us), `up` (connected,
 *   answering) or `down` (its connect failed, its connection dropped or hung, or the client
 *   marked it down). A down server is skipped at once: `connection` refuses it with
 *   UNAVAILABLE instead of waiting for a connect timeout, so failover never sticks to a dead or
 *   partitioned endpoint.
 * - **Probes.** A down server is probed in the background (connect, then a `hello` that must
 *   be answered) after a reconnect delay: exponential with jitter and a cap
 *   (transport/backoff.ts), growing with each failed probe and reset by a success. A probe
 *   that succeeds puts the server back up, so the client moves back to a higher-priority
 *   server (the `servers` order, used by client.ts) as soon as it returns. Requests never pay
 *   for probes.
 * - **Heartbeats.** A TCP connection is pinged with `hello` when it opens and every
 *   `heartbeat.intervalMs` after, whether it is idle or busy (a busy connection whose server
 *   stopped answering looks the same as an idle one). A ping not answered (by anything, even
 *   an error) within `heartbeat.timeoutMs` means the connection is hung: it is dropped the
 *   way a network failure drops it (the socket is destroyed), so its calls in flight fail
 *   with TIMEOUT (outcome unknown, retried with their session) or UNAVAILABLE (never sent),
 *   and the server goes down until a probe gets an answer again.
 * - **Embedded servers** (src/embedded.ts) are registered under reserved addresses
 *   (embedded-hook.ts) and connected in process, with no socket and no heartbeat.
 *
 * Costs: O(1) per request; one timer per down server (its next probe) and one interval per
 * open TCP connection (its heartbeat), all unref'd.
 */
import type { Socket } from 'node:net';
import { DkvError, ErrorCode, isDkvError } from '../errors.js';
import { type Random, randomSeed, SeededRandom } from '../random.js';
import { Backoff, type ReconnectPolicy } from '../transport/backoff.js';
import type { Credentials } from '../transport/protocol.js';
import { RpcClient } from '../transport/rpc-client.js';
import { type SocketFactory, tcpSockets } from '../transport/sockets.js';
import type { ClientStream } from './core.js';
import { type LocalServer, localServer } from './embedded-hook.js';

/**
 * Connection is what a request needs from a server connection: RpcClient's surface (see
 * transport/rpc-client.ts for what each failure code says about an outcome). RpcClient
 * implements it, and so do embedded connections.
 */
export interface Connection {
  /** closed tells whether the connection is over (closed by either side). */
  readonly closed: boolean;
  call(
    op: string,
    args?: unknown,
    opts?: { timeoutMs?: number; signal?: AbortSignal; trace?: string },
  ): Promise<unknown>;
  stream(
    op: string,
    args?: unknown,
    opts?: { signal?: AbortSignal; bufferMax?: number; trace?: string },
  ): ClientStream;
  onClose(listener: (reason: DkvError | undefined) => void): void;
  close(): Promise<void>;
}

/** Link is an open connection and the way to drop it like a network failure would. */
export interface Link {
  readonly conn: Connection;
  /** drop ends the connection as if the network failed: written calls fail with TIMEOUT. */
  drop(reason: string): void;
  /** local links (embedded servers) cannot hang: no heartbeat. */
  readonly local: boolean;
}

/** Connector opens a link to a TCP server address (tests inject their own). */
export type Connector = (address: string, timeoutMs: number) => Promise<Link>;

/** HeartbeatPolicy says how hung connections are detected. */
export interface HeartbeatPolicy {
  /** A ping every this many ms on each open connection (> 0). */
  readonly intervalMs: number;
  /** A ping unanswered this long means the connection is hung (> 0). */
  readonly timeoutMs: number;
}

/** DEFAULT_HEARTBEAT: a hung connection is found within 3 s (1 s between pings, 2 s to answer). */
export const DEFAULT_HEARTBEAT: HeartbeatPolicy = Object.freeze({ intervalMs: 1000, timeoutMs: 2000 });

/** EndpointState is what the client believes about a server. */
export type EndpointState = 'idle' | 'up' | 'down';

/** EndpointEvent reports a state change (for logs, metrics and tests). */
export type EndpointEvent =
  | { readonly type: 'up'; readonly address: string; readonly atMs: number }
  | {
      readonly type: 'down';
      readonly address: string;
      readonly atMs: number;
      readonly reason: string;
      /** Failed probes in a row before this one was scheduled (0: it just went down). */
      readonly attempt: number;
      /** The next probe starts this long after atMs. */
      readonly retryInMs: number;
    }
  | { readonly type: 'probe'; readonly address: string; readonly atMs: number }
  | { readonly type: 'hung'; readonly address: string; readonly atMs: number; readonly timeoutMs: number };

/** EndpointStats describes one endpoint (diagnostics, tests). */
export interface EndpointStats {
  readonly address: string;
  readonly state: EndpointState;
  /** Connections handed to requests. */
  readonly uses: number;
  /** Connect attempts (requests' and probes'). */
  readonly connects: number;
  /** Times the endpoint went down or a probe failed. */
  readonly failures: number;
  readonly lastError: string | undefined;
}

/** EndpointOptions configure the connections. */
export interface EndpointOptions {
  readonly frameBytesMax: number;
  readonly connectTimeoutMs: number;
  readonly reconnect: ReconnectPolicy;
  readonly heartbeat?: Partial<HeartbeatPolicy>;
  /** The jitter source (default: seeded from the OS). */
  readonly random?: Random;
  /** How TCP addresses are connected (default: RpcClient over TCP). */
  readonly connector?: Connector;
  readonly onEvent?: (e: EndpointEvent) => void;
}

interface Endpoint {
  readonly address: string;
  state: EndpointState;
  /** Invariant: set while a connection is open (it may be closing: check link.conn.closed). */
  link: Link | undefined;
  /** The connect in progress, shared by everyone who needs it. */
  connecting: Promise<Link> | undefined;
  readonly backoff: Backoff;
  /** Invariant: state === 'down' implies a probe is scheduled (probeTimer) or running (probing). */
  probeTimer: NodeJS.Timeout | undefined;
  probing: boolean;
  /** Monotonic ms of the next probe. */
  nextProbeAt: number;
  /** Failed probes since the endpoint went down. */
  attempt: number;
  beat: NodeJS.Timeout | undefined;
  pinging: boolean;
  /** The embedded server behind this address, if it is one. */
  local: LocalServer | undefined;
  uses: number;
  connects: number;
  failures: number;
  lastError: string | undefined;
}

/** parseAddress splits `host:port` (IPv6 hosts in brackets), or throws INVALID_ARGUMENT. */
export function parseAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address.trim());
  const port = m === null ? Number.NaN : Number(m[3]);
  if (m === null || !(port >= 1 && port <= 65535))
    throw new DkvError(
      ErrorCode.InvalidArgument,
      `bad server address ${JSON.stringify(address)}: want host:port`,
    );
  return { host: m[1] ?? m[2]!, port };
}

/**
 * tcpConnector connects with RpcClient over TCP, keeping the socket so that a hung
 * connection can be destroyed like a failed one (its calls then fail with TIMEOUT or
 * UNAVAILABLE, never with the CANCELLED of a deliberate close).
 */
export function tcpConnector(frameBytesMax: number, security: ConnectorSecurity = {}): Connector {
  const base = security.sockets ?? tcpSockets;
  return async (address, timeoutMs) => {
    const where = parseAddress(address);
    let socket: Socket | undefined;
    const sockets: SocketFactory = {
      createServer: base.createServer,
      connect: (a, onConnect) => {
        socket = base.connect(a, onConnect);
        return socket;
      },
    };
    const conn = await RpcClient.connect({ ...where, frameBytesMax, connectTimeoutMs: timeoutMs, sockets });
    if (security.auth !== undefined) {
      // Every new connection authenticates before anything else is sent on it.
      try {
        await conn.call('auth', security.auth, { timeoutMs });
      } catch (err) {
        await conn.close();
        throw err;
      }
    }
    return { conn, local: false, drop: (reason) => socket?.destroy(new Error(reason)) };
  };
}

/** ConnectorSecurity: TLS sockets, and the credentials each new connection authenticates with. */
export interface ConnectorSecurity {
  readonly sockets?: SocketFactory;
  readonly auth?: Credentials;
}

/** isConnectionFailure tells a failure of the connection itself from a server's answer. */
function isConnectionFailure(err: unknown): boolean {
  if (!isDkvError(err)) return true;
  return (
    err.code === ErrorCode.Unavailable || err.code === ErrorCode.Cancelled || err.code === ErrorCode.Timeout
  );
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function checkPositive(v: number, what: string): void {
  if (!(v > 0) || !Number.isFinite(v)) throw new RangeError(`${what} must be a positive number, got ${v}`);
}

/** Endpoints owns the client's connections and its view of each server's health. */
export class Endpoints {
  private readonly opts: EndpointOptions;
  private readonly heartbeat: HeartbeatPolicy;
  private readonly random: Random;
  private readonly connector: Connector;
  private readonly byAddress = new Map<string, Endpoint>();
  private closed = false;

  constructor(opts: EndpointOptions) {
    this.opts = opts;
    this.heartbeat = { ...DEFAULT_HEARTBEAT, ...opts.heartbeat };
    checkPositive(this.heartbeat.intervalMs, 'heartbeat.intervalMs');
    checkPositive(this.heartbeat.timeoutMs, 'heartbeat.timeoutMs');
    checkPositive(opts.connectTimeoutMs, 'connectTimeoutMs');
    this.random = opts.random ?? new SeededRandom(randomSeed());
    this.connector = opts.connector ?? tcpConnector(opts.frameBytesMax);
    // Validates the policy now (a RangeError for an impossible one), not at the first failure.
    new Backoff(opts.reconnect, this.random);
  }

  private endpoint(address: string): Endpoint {
    let e = this.byAddress.get(address);
    if (e === undefined) {
      e = {
        address,
        state: 'idle',
        link: undefined,
        connecting: undefined,
        backoff: new Backoff(this.opts.reconnect, this.random),
        probeTimer: undefined,
        probing: false,
        nextProbeAt: 0,
        attempt: 0,
        beat: undefined,
        pinging: false,
        local: undefined,
        uses: 0,
        connects: 0,
        failures: 0,
        lastError: undefined,
      };
      this.byAddress.set(address, e);
    }
    return e;
  }

  /** isDown tells whether `address` is down: requests should skip it until a probe succeeds. */
  isDown(address: string): boolean {
    return this.byAddress.get(address)?.state === 'down';
  }

  /** state is what the client believes about `address` (idle when it never tried it). */
  state(address: string): EndpointState {
    return this.byAddress.get(address)?.state ?? 'idle';
  }

  /** stats describes every endpoint the client has used. */
  stats(): EndpointStats[] {
    return [...this.byAddress.values()].map((e) => ({
      address: e.address,
      state: e.state,
      uses: e.uses,
      connects: e.connects,
      failures: e.failures,
      lastError: e.lastError,
    }));
  }

  /**
   * markDown makes `address` count as down (it answered UNAVAILABLE, or its connection
   * failed): requests skip it until a background probe gets an answer from it again.
   */
  markDown(address: string): void {
    if (this.closed) return;
    this.setDown(this.endpoint(address), 'marked down by the client');
  }

  /**
   * suspect pings `address` now (for example after a call on it timed out), so that a hung
   * connection is found without waiting for the next heartbeat.
   */
  suspect(address: string): void {
    const e = this.byAddress.get(address);
    if (e !== undefined && e.state === 'up') void this.beat(e);
  }

  /**
   * connection returns an open connection to `address`, connecting if needed. A down server
   * is refused at once with UNAVAILABLE (its probe will bring it back); a failed connect
   * fails with UNAVAILABLE and puts the server down.
   */
  connection(address: string): Promise<Connection> {
    if (this.closed) return Promise.reject(new DkvError(ErrorCode.Cancelled, 'client closed'));
    const e = this.endpoint(address);
    e.uses++;
    const link = e.link;
    if (e.state === 'up' && link !== undefined) {
      if (!link.conn.closed) return Promise.resolve(link.conn); // the hot path: no await
      this.setDown(e, 'connection lost');
    }
    if (e.state === 'down') {
      const inMs = Math.max(0, Math.round(e.nextProbeAt - performance.now()));
      return Promise.reject(
        new DkvError(
          ErrorCode.Unavailable,
          `${address} is down (${e.lastError ?? 'unreachable'}); ${e.probing ? 'probing it now' : `next probe in ${inMs} ms`}`,
        ),
      );
    }
    return this.open(e).then((opened) => {
      // A probe may have put it down meanwhile (then its own ping decides).
      if ((e.state as EndpointState) !== 'down') this.setUp(e, true);
      return opened.conn;
    });
  }

  /** close closes every connection and releases embedded servers; later calls fail with CANCELLED. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const closing: Promise<void>[] = [];
    const released: LocalServer[] = [];
    for (const e of this.byAddress.values()) {
      clearTimeout(e.probeTimer);
      clearInterval(e.beat);
      e.probeTimer = undefined;
      e.beat = undefined;
      if (e.link !== undefined) closing.push(e.link.conn.close());
      e.link = undefined;
      if (e.local !== undefined) released.push(e.local);
    }
    await Promise.all(closing);
    for (const s of released) await s.release();
  }

  // ---- connecting ----

  /** open connects `e` (one attempt at a time, shared) and adopts the new link. */
  private open(e: Endpoint): Promise<Link> {
    if (e.connecting !== undefined) return e.connecting;
    e.connects++;
    const local = localServer(e.address);
    if (local !== undefined) e.local = local;
    const attempt: Promise<Link> =
      local !== undefined
        ? Promise.resolve().then(() => {
            const conn = local.connect();
            return { conn, local: true, drop: (reason: string) => conn.drop(reason) };
          })
        : this.connector(e.address, this.opts.connectTimeoutMs);
    const done = attempt.then(
      (link) => {
        e.connecting = undefined;
        if (this.closed) {
          void link.conn.close();
          throw new DkvError(ErrorCode.Cancelled, 'client closed');
        }
        this.adopt(e, link);
        return link;
      },
      (err: unknown) => {
        e.connecting = undefined;
        const why = describe(err);
        this.setDown(e, why);
        throw isDkvError(err) && err.code !== ErrorCode.InvalidArgument
          ? err
          : new DkvError(ErrorCode.Unavailable, `cannot connect to ${e.address}: ${why}`, {}, { cause: err });
      },
    );
    e.connecting = done;
    return done;
  }

  /** adopt makes `link` the endpoint's connection and watches it for a drop. */
  private adopt(e: Endpoint, link: Link): void {
    const old = e.link;
    e.link = link;
    if (old !== undefined && old !== link) void old.conn.close();
    link.conn.onClose((reason) => {
      if (e.link !== link) return;
      e.link = undefined;
      this.stopBeat(e);
      if (this.closed) return;
      if (reason === undefined) {
        if (e.state === 'up') e.state = 'idle';
        return;
      }
      this.setDown(e, `connection lost: ${reason.message}`);
    });
  }

  /** setUp marks `e` up and starts its heartbeat (with a ping now when `pingNow`). */
  private setUp(e: Endpoint, pingNow: boolean): void {
    const was = e.state;
    e.state = 'up';
    e.attempt = 0;
    e.backoff.reset();
    if (was === 'down') this.emit({ type: 'up', address: e.address, atMs: performance.now() });
    const link = e.link;
    if (link === undefined || link.local || e.beat !== undefined) return;
    e.beat = setInterval(() => void this.beat(e), this.heartbeat.intervalMs);
    e.beat.unref();
    if (pingNow) void this.beat(e);
  }

  /** setDown marks `e` down and schedules its first probe; a down endpoint stays as it is. */
  private setDown(e: Endpoint, why: string): void {
    if (this.closed) return;
    e.lastError = why;
    this.stopBeat(e);
    if (e.state === 'down') return;
    e.state = 'down';
    e.attempt = 0;
    e.failures++;
    this.scheduleProbe(e, why);
  }

  private scheduleProbe(e: Endpoint, why: string): void {
    const delay = e.backoff.nextDelayMs();
    const now = performance.now();
    e.nextProbeAt = now + delay;
    e.probeTimer = setTimeout(() => void this.probe(e), delay);
    e.probeTimer.unref();
    this.emit({
      type: 'down',
      address: e.address,
      atMs: now,
      reason: why,
      attempt: e.attempt,
      retryInMs: delay,
    });
  }

  /** probe tries a down server: connect if needed, then a ping that must be answered. */
  private async probe(e: Endpoint): Promise<void> {
    e.probeTimer = undefined;
    if (this.closed || e.state !== 'down') return;
    e.probing = true;
    this.emit({ type: 'probe', address: e.address, atMs: performance.now() });
    let why: string;
    try {
      const link = e.link !== undefined && !e.link.conn.closed ? e.link : await this.open(e);
      const r = await this.ping(link);
      if (r === 'alive') {
        e.probing = false;
        if (this.closed) return;
        this.setUp(e, false);
        return;
      }
      if (r === 'hung') link.drop(`no answer to a probe within ${this.heartbeat.timeoutMs} ms`);
      why = r === 'hung' ? 'no answer to a probe' : 'connection lost during a probe';
    } catch (err) {
      why = describe(err);
    }
    e.probing = false;
    if (this.closed || e.state !== 'down') return;
    e.lastError = why;
    e.attempt++;
    e.failures++;
    this.scheduleProbe(e, why);
  }

  // ---- heartbeats ----

  private stopBeat(e: Endpoint): void {
    clearInterval(e.beat);
    e.beat = undefined;
  }

  /** beat pings `e`'s connection; a ping not answered in time drops the connection as hung. */
  private async beat(e: Endpoint): Promise<void> {
    const link = e.link;
    if (e.pinging || link === undefined || link.local || link.conn.closed) return;
    e.pinging = true;
    const r = await this.ping(link);
    e.pinging = false;
    if (r !== 'hung' || e.link !== link || this.closed) return;
    this.emit({
      type: 'hung',
      address: e.address,
      atMs: performance.now(),
      timeoutMs: this.heartbeat.timeoutMs,
    });
    e.lastError = `no answer to a heartbeat within ${this.heartbeat.timeoutMs} ms`;
    link.drop(e.lastError);
    this.setDown(e, e.lastError);
  }

  /**
   * ping sends `hello` and waits heartbeat.timeoutMs for any answer: a value or a server's
   * error both prove the server reads and answers ('alive'); a connection failure is
   * 'failed'; silence is 'hung'. The call itself has no deadline: if the connection is hung,
   * it ends when the connection is dropped.
   */
  private ping(link: Link): Promise<'alive' | 'failed' | 'hung'> {
    return new Promise((resolve) => {
      let settled = false;
      const finish = (r: 'alive' | 'failed' | 'hung'): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(r);
      };
      const timer = setTimeout(() => finish('hung'), this.heartbeat.timeoutMs);
      timer.unref();
      link.conn.call('hello', {}).then(
        () => finish('alive'),
        (err: unknown) => finish(isConnectionFailure(err) ? 'failed' : 'alive'),
      );
    });
  }

  private emit(e: EndpointEvent): void {
    try {
      this.opts.onEvent?.(e);
    } catch {
      // an observer's bug must not break the connections
    }
  }
}
