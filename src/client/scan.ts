/**
 * Scans, queries and transactions (issue 6). Scans and queries cover every group of the store
 * and are merged in key order, streamed as async iterables with bounded memory (one page per
 * group at a time). Transactions stay within one group.
 */
import { DkvError, ErrorCode } from '../errors.js';
import type { CallOptions, ClientCore } from './core.js';
import type { Item } from './types.js';

/** ScanOptions select keys by prefix or range, in key order. */
export interface ScanOptions extends CallOptions {
  readonly prefix?: string;
  readonly start?: string;
  readonly end?: string;
  /** The most items in all (default: all). */
  readonly limit?: number;
  /** Items fetched per group per request (default 500). */
  readonly pageSize?: number;
  readonly consistency?: 'linearizable' | 'serializable';
}

/** scanItems streams the matching items of every group, merged in key order. */
export function scanItems(_core: ClientCore, _opts: ScanOptions): AsyncIterable<Item> {
  throw new DkvError(ErrorCode.Unsupported, 'scan is not built yet');
}

/** QueryOptions shape a query's result (see src/engines/index-manager.ts). */
export interface QueryOptions extends CallOptions {
  readonly limit?: number;
  readonly sort?: unknown;
  readonly consistency?: 'linearizable' | 'serializable';
}

/** runQuery runs an index query on every group and merges the results. */
export async function runQuery(_core: ClientCore, _query: unknown, _opts: QueryOptions): Promise<Item[]> {
  throw new DkvError(ErrorCode.Unsupported, 'query is not built yet');
}

/** TxnSpec is a transaction within one group: compares, then the success or failure branch. */
export interface TxnSpec {
  readonly compare: readonly unknown[];
  readonly success: readonly unknown[];
  readonly failure?: readonly unknown[];
}

/** runTxn runs a transaction in the group of its keys (CROSS_GROUP if they span groups). */
export async function runTxn(_core: ClientCore, _spec: TxnSpec, _opts: CallOptions): Promise<unknown> {
  throw new DkvError(ErrorCode.Unsupported, 'txn is not built yet');
}
