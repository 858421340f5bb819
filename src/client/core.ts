/**
 * ClientCore is what the client's modules (watch, scan and query, transactions, counters,
 * leases, locks) need from DkvClient's request loop: routed mutations (exactly once) and
 * reads, the partition map's groups, and streams to a group's replicas. DkvClient implements
 * it; embedded mode implements it too, with no sockets.
 */
import type { DkvError } from '../errors.js';
import type { Consistency, GroupInfo, ReadRequest } from '../transport/protocol.js';

/** Route names what a request is about: a key (its group owns it) or a group directly. */
export type Route = { readonly key: string } | { readonly group: number };

/** Target says where a stream goes: the group's leader, or any replica (local). */
export type Target = 'leader' | 'local';

/**
 * CallOptions bound one call: its own timeout (default requestTimeoutMs) and an AbortSignal;
 * and name it: `requestId` is sent with every attempt of the call, for tracing it in the
 * servers' logs (default `<clientId>-<n>`; 1 to 64 printable ASCII characters).
 */
export interface CallOptions {
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  readonly requestId?: string;
}

/** ClientStream is an open server stream: an async iterable of items, with close(). */
export interface ClientStream extends AsyncIterable<unknown> {
  close(): void;
}

export interface ClientCore {
  readonly store: string;
  readonly requestTimeoutMs: number;
  /** mutate proposes one command (src/statemachine/commands.ts) to the group of `route`, exactly once. */
  mutate(
    route: Route,
    cmd: Record<string, unknown>,
    opts?: CallOptions & { ownSession?: boolean },
  ): Promise<unknown>;
  /** read runs a read on the group of `route`. */
  read(route: Route, read: ReadRequest, consistency: Consistency, opts?: CallOptions): Promise<unknown>;
  /** groups lists the store's partition groups. */
  groups(opts?: CallOptions): Promise<readonly GroupInfo[]>;
  /** groupOfKey is the id of the group that owns `key`. */
  groupOfKey(key: string, opts?: CallOptions): Promise<number>;
  /** openStream opens `watch` or `keepalive` on a replica of `group` (its leader for 'leader'). */
  openStream(
    group: number,
    op: 'watch' | 'keepalive',
    args: Record<string, unknown>,
    target: Target,
    opts?: CallOptions & { bufferMax?: number },
  ): Promise<ClientStream>;
  /** noteRedirect records a NOT_LEADER hint a stream failed with. */
  noteRedirect(group: number, err: DkvError): void;
}
