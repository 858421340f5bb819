/**
 * dkv: the public package entry point: the client library and the error catalogue.
 *
 *     import { DkvClient } from 'dkv';
 *     const client = await DkvClient.connect({ servers: ['127.0.0.1:7401'] });
 *     const local = await DkvClient.inProc({ dir: './data' }); // embedded: same API, no sockets
 *
 * Embedded mode (src/embedded.ts) loads the node and LevelDB, so it is loaded only when
 * DkvClient.inProc is first called: a networked client never pays for it.
 */
import { setEmbeddedFactory } from './client/embedded-hook.js';

setEmbeddedFactory(async (opts) => (await import('./embedded.js')).openEmbedded(opts));

export {
  AdminApi,
  type IndexSpec,
  type MemberInfo,
  type PlacementChange,
  type StoreInfo,
  type StoreSummary,
} from './client/admin.js';
export {
  type ClientTlsOptions,
  type ClusterStatus,
  type Consistency,
  DkvClient,
  type DkvClientOptions,
  type Fence,
  type GetOptions,
  type Item,
  type PutOptions,
} from './client/client.js';
export { type CounterAddOptions, CounterHandle, type CounterValue } from './client/counters.js';
export type { InProcOptions } from './client/embedded-hook.js';
export { FenceGuard } from './client/fence.js';
export { Lease, LeaseApi, leaseId, leaseWireId } from './client/leases.js';
export { type AcquireOptions, Lock, LockApi } from './client/locks.js';
export type {
  GroupItem,
  QueryOptions,
  QuerySort,
  ScanOptions,
  TxnCompare,
  TxnOp,
  TxnResult,
  TxnSpec,
} from './client/scan.js';
export type { CompactedInfo, WatchEvent, WatchOptions, WatchStream } from './client/watch.js';
export { DkvError, type DkvErrorDetails, ErrorCode, isDkvError, isErrorCode } from './errors.js';
