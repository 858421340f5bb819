/**
 * Watch (issue 6): an async iterable of WatchEvents over every group the watch covers.
 */
import { DkvError, ErrorCode } from '../errors.js';
import type { ClientCore } from './core.js';

/** WatchEvent is one change, as CONTRACT.md describes it. */
export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly cause: 'write' | 'expired' | 'lease' | 'snapshot';
  readonly key: string;
  readonly value?: unknown;
  readonly revision: number;
  readonly group: number;
}

export interface WatchOptions {
  readonly key?: string;
  readonly prefix?: string;
  /** Resume after this revision (one number: for a single-group watch; else per group). */
  readonly fromRevision?: number | Readonly<Record<number, number>>;
  /** Start with the current items as `cause: 'snapshot'` put events. */
  readonly snapshot?: boolean;
  readonly signal?: AbortSignal;
}

/** WatchStream is an async iterable of events that close() or the signal stops. */
export interface WatchStream extends AsyncIterable<WatchEvent> {
  close(): void;
}

export function openWatch(_core: ClientCore, _opts: WatchOptions): WatchStream {
  throw new DkvError(ErrorCode.Unsupported, 'watch is not built yet');
}
