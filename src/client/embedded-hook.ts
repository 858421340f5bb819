/**
 * The client layer's seam for embedded mode (`DkvClient.inProc`). The client may not import
 * the node (DESIGN.md, "Layers and folders"), so embedded mode is plugged in from above:
 * `src/embedded.ts` (top level, which may import the node) registers
 * - the factory that `DkvClient.inProc` calls (`setEmbeddedFactory`), and
 * - each embedded server it starts, under a reserved address (`registerLocalServer`), which
 *   Endpoints connects to in process instead of over TCP.
 * So an embedded client is an ordinary DkvClient whose one server happens to live in the same
 * process: every request runs the very same request loop, routing and retries.
 */

import { DkvError, ErrorCode } from '../errors.js';
import type { DkvClient } from './client.js';
import type { ClientStream } from './core.js';

/** InProcOptions configure an embedded store (DkvClient.inProc). */
export interface InProcOptions {
  /**
   * Where the store persists; it survives close and reopens with its data. Without it the
   * store lives in a temporary directory (on tmpfs when the machine has /dev/shm) that close
   * removes: LevelDB has no in-memory mode.
   */
  readonly dir?: string;
  /** The store's name (default `default`). */
  readonly store?: string;
  /** Partition groups (default 1: a single total order). Fixed once `dir` holds a store. */
  readonly partitions?: number;
  /** How long one call may take, retries included (default 5000 ms). */
  readonly requestTimeoutMs?: number;
}

/** EmbeddedFactory opens an embedded store and a DkvClient on it. */
export type EmbeddedFactory = (opts: InProcOptions) => Promise<DkvClient>;

let factory: EmbeddedFactory | undefined;

/** setEmbeddedFactory installs what DkvClient.inProc calls (src/embedded.ts does, on import). */
export function setEmbeddedFactory(f: EmbeddedFactory): void {
  factory = f;
}

/** embeddedFactory is the installed factory, or throws UNSUPPORTED when none is. */
export function embeddedFactory(): EmbeddedFactory {
  if (factory === undefined)
    throw new DkvError(
      ErrorCode.Unsupported,
      "embedded mode is not loaded: import DkvClient from the package entry ('dkv'), which enables it",
    );
  return factory;
}

/** LocalCallOptions bound one in-process call (the same as RpcClient's). */
export interface LocalCallOptions {
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** LocalStreamOptions configure one in-process stream (the same as RpcClient's). */
export interface LocalStreamOptions {
  readonly signal?: AbortSignal;
  readonly bufferMax?: number;
}

/**
 * LocalConnection is an in-process connection with RpcClient's call, stream and close
 * semantics (see src/transport/rpc-client.ts for what each error code says about an outcome).
 */
export interface LocalConnection {
  readonly closed: boolean;
  call(op: string, args?: unknown, opts?: LocalCallOptions): Promise<unknown>;
  stream(op: string, args?: unknown, opts?: LocalStreamOptions): ClientStream;
  onClose(listener: (reason: DkvError | undefined) => void): void;
  close(): Promise<void>;
  /** drop ends it the way a network failure would: written calls fail with TIMEOUT. */
  drop(reason: string): void;
}

/** LocalServer is an embedded server a client reaches in process. */
export interface LocalServer {
  /** connect opens a new in-process connection (UNAVAILABLE once the server stopped). */
  connect(): LocalConnection;
  /** release is called when a client that used it closes; the owning client's close stops it. */
  release(): Promise<void>;
}

/** LOCAL_HOST_PREFIX starts the host part of every embedded server's address. */
export const LOCAL_HOST_PREFIX = 'dkv-embedded-';

const localServers = new Map<string, LocalServer>();
let nextLocal = 1;

/**
 * registerLocalServer registers an embedded server and returns its reserved address
 * (`dkv-embedded-N:1`, a valid host:port that no DNS name resolves to).
 */
export function registerLocalServer(server: LocalServer): string {
  const address = `${LOCAL_HOST_PREFIX}${nextLocal++}:1`;
  localServers.set(address, server);
  return address;
}

/** unregisterLocalServer forgets an embedded server (it stopped). */
export function unregisterLocalServer(address: string): void {
  localServers.delete(address);
}

/** localServer is the embedded server registered under `address`, if any. */
export function localServer(address: string): LocalServer | undefined {
  return localServers.get(address);
}
