/**
 * Counters (issue 6): exact signed 64-bit add, get, set and delete, with optional TTL windows.
 *
 * A counter lives in the group of the key equal to its name (a {hash tag} places it), so every
 * operation is one routed request. Mutations are exactly-once (the client's session): an add
 * retried across a failover is applied once. Values come back as numbers while they are safe
 * integers and as bigints beyond 2^53; deltas may be either (a number must be a safe integer).
 * A counter past its TTL window reads as 0 and starts again.
 */
import { DkvError, ErrorCode } from '../errors.js';
import type { Consistency } from '../transport/protocol.js';
import type { CallOptions, ClientCore } from './core.js';

/** CounterValue is a counter's value: a number while safe, a bigint beyond 2^53. */
export type CounterValue = number | bigint;

/** CounterAddOptions: `ttlMs` starts a window when the add creates the counter; `fence` guards it. */
export interface CounterAddOptions extends CallOptions {
  readonly ttlMs?: number;
  readonly fence?: { readonly lock: string; readonly token: number };
}

/** CounterSetOptions: `ttlMs` replaces the counter's window (none without it), like Redis SET. */
export type CounterSetOptions = CounterAddOptions;

/** CounterGetOptions choose the read's consistency (default linearizable). */
export interface CounterGetOptions extends CallOptions {
  readonly consistency?: Consistency;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function checkInt64(v: unknown, what: string): CounterValue {
  if (typeof v === 'bigint') {
    if (v < INT64_MIN || v > INT64_MAX)
      throw new DkvError(ErrorCode.InvalidArgument, `${what} is outside 64-bit range`);
    return v;
  }
  if (typeof v !== 'number' || !Number.isSafeInteger(v))
    throw new DkvError(
      ErrorCode.InvalidArgument,
      `${what} must be a safe integer or a bigint (beyond 2^53 use a bigint), got ${String(v)}`,
    );
  return v;
}

function checkValue(v: unknown, what: string): CounterValue {
  if ((typeof v === 'number' && Number.isSafeInteger(v)) || typeof v === 'bigint') return v;
  throw new DkvError(ErrorCode.Unavailable, `${what}: the server answered with a malformed value`);
}

function callOpts(o: CallOptions): CallOptions {
  return {
    ...(o.timeoutMs !== undefined && { timeoutMs: o.timeoutMs }),
    ...(o.signal !== undefined && { signal: o.signal }),
  };
}

/** CounterHandle names one counter; it holds no state, so making one is free. */
export class CounterHandle {
  constructor(
    readonly core: ClientCore,
    readonly name: string,
  ) {
    if (typeof name !== 'string' || name.length === 0)
      throw new DkvError(ErrorCode.InvalidArgument, 'a counter name must be a non-empty string');
  }

  private cmd(op: string, field: string, n: unknown, opts: CounterAddOptions): Record<string, unknown> {
    const cmd: Record<string, unknown> = { op, name: this.name, [field]: checkInt64(n, field) };
    if (opts.ttlMs !== undefined) cmd.ttlMs = opts.ttlMs;
    if (opts.fence !== undefined) cmd.fence = { lock: opts.fence.lock, token: opts.fence.token };
    return cmd;
  }

  /**
   * add adds `delta` (may be negative) and resolves with the new value. A missing or expired
   * counter starts at 0 (with a window of `ttlMs` if given). Leaving the 64-bit range fails
   * with INVALID_ARGUMENT and changes nothing.
   */
  async add(delta: CounterValue, opts: CounterAddOptions = {}): Promise<CounterValue> {
    const r = await this.core.mutate(
      { key: this.name },
      this.cmd('counter.add', 'delta', delta, opts),
      callOpts(opts),
    );
    return checkValue(r, 'counter.add');
  }

  /** get reads the value (0 when absent or expired). */
  async get(opts: CounterGetOptions = {}): Promise<CounterValue> {
    const consistency = opts.consistency ?? 'linearizable';
    if (consistency !== 'linearizable' && consistency !== 'serializable')
      throw new DkvError(ErrorCode.InvalidArgument, 'consistency must be linearizable or serializable');
    const r = await this.core.read(
      { key: this.name },
      { op: 'counter.get', name: this.name },
      consistency,
      callOpts(opts),
    );
    return checkValue(r, 'counter.get');
  }

  /** set replaces the value (and the window: `ttlMs`, or none) and resolves with the previous value. */
  async set(value: CounterValue, opts: CounterSetOptions = {}): Promise<CounterValue> {
    const r = await this.core.mutate(
      { key: this.name },
      this.cmd('counter.set', 'value', value, opts),
      callOpts(opts),
    );
    return checkValue(r, 'counter.set');
  }

  /** delete removes the counter; resolves with whether a live one existed. */
  async delete(
    opts: CallOptions & { readonly fence?: { lock: string; token: number } } = {},
  ): Promise<boolean> {
    const cmd: Record<string, unknown> = { op: 'counter.delete', name: this.name };
    if (opts.fence !== undefined) cmd.fence = { lock: opts.fence.lock, token: opts.fence.token };
    return (await this.core.mutate({ key: this.name }, cmd, callOpts(opts))) === true;
  }
}
