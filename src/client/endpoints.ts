/**
 * Endpoints: the client's connections, one RpcClient per server address, opened lazily on
 * first use and dropped when they close (the next use reconnects). A server that cannot be
 * reached is marked down for a backoff delay (the reconnect policy, growing per failure and
 * reset by a success), so requests skip it instead of waiting for its connect timeout again.
 * Concurrent users of a connection being opened share the one attempt.
 */
import { DkvError, ErrorCode } from '../errors.js';
import { type Random, randomSeed, SeededRandom } from '../random.js';
import { Backoff, type ReconnectPolicy } from '../transport/backoff.js';
import { RpcClient } from '../transport/rpc-client.js';

/** EndpointOptions configure the connections. */
export interface EndpointOptions {
  readonly frameBytesMax: number;
  readonly connectTimeoutMs: number;
  readonly reconnect: ReconnectPolicy;
  readonly random?: Random;
}

interface Endpoint {
  client: RpcClient | undefined;
  connecting: Promise<RpcClient> | undefined;
  /** Monotonic ms until which the server counts as down. */
  downUntil: number;
  readonly backoff: Backoff;
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

/** Endpoints owns the client's connections. */
export class Endpoints {
  private readonly opts: EndpointOptions;
  private readonly random: Random;
  private readonly byAddress = new Map<string, Endpoint>();
  private closed = false;

  constructor(opts: EndpointOptions) {
    this.opts = opts;
    this.random = opts.random ?? new SeededRandom(randomSeed());
  }

  private endpoint(address: string): Endpoint {
    let e = this.byAddress.get(address);
    if (e === undefined) {
      e = {
        client: undefined,
        connecting: undefined,
        downUntil: 0,
        backoff: new Backoff(this.opts.reconnect, this.random),
      };
      this.byAddress.set(address, e);
    }
    return e;
  }

  /** isDown tells whether `address` failed recently and should be skipped for now. */
  isDown(address: string): boolean {
    const e = this.byAddress.get(address);
    return e !== undefined && e.client === undefined && e.downUntil > performance.now();
  }

  /** markDown makes `address` count as down for its next backoff delay. */
  markDown(address: string): void {
    const e = this.endpoint(address);
    e.downUntil = performance.now() + e.backoff.nextDelayMs();
    const c = e.client;
    e.client = undefined;
    if (c !== undefined) void c.close();
  }

  /** get returns an open connection to `address`, connecting if needed (UNAVAILABLE on failure). */
  get(address: string): Promise<RpcClient> {
    if (this.closed) return Promise.reject(new DkvError(ErrorCode.Cancelled, 'client closed'));
    const e = this.endpoint(address);
    if (e.client !== undefined && !e.client.closed) return Promise.resolve(e.client);
    e.client = undefined;
    if (e.connecting !== undefined) return e.connecting;
    let where: { host: string; port: number };
    try {
      where = parseAddress(address);
    } catch (err) {
      return Promise.reject(err);
    }
    const attempt = RpcClient.connect({
      ...where,
      frameBytesMax: this.opts.frameBytesMax,
      connectTimeoutMs: this.opts.connectTimeoutMs,
    }).then(
      (client) => {
        e.connecting = undefined;
        if (this.closed) {
          void client.close();
          throw new DkvError(ErrorCode.Cancelled, 'client closed');
        }
        e.client = client;
        e.downUntil = 0;
        e.backoff.reset();
        client.onClose(() => {
          if (e.client === client) e.client = undefined;
        });
        return client;
      },
      (err: unknown) => {
        e.connecting = undefined;
        e.downUntil = performance.now() + e.backoff.nextDelayMs();
        throw err;
      },
    );
    e.connecting = attempt;
    return attempt;
  }

  /** close closes every connection; later calls fail with CANCELLED. */
  async close(): Promise<void> {
    this.closed = true;
    const closing: Promise<void>[] = [];
    for (const e of this.byAddress.values()) {
      if (e.client !== undefined) closing.push(e.client.close());
      e.client = undefined;
    }
    await Promise.all(closing);
  }
}
