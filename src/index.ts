/**
 * dkv: the public package entry point: the client library and the error catalogue.
 *
 *     import { DkvClient } from 'dkv';
 *     const client = await DkvClient.connect({ servers: ['127.0.0.1:7401'] });
 */
export {
  type ClusterStatus,
  type Consistency,
  DkvClient,
  type DkvClientOptions,
  type Fence,
  type GetOptions,
  type Item,
  type PutOptions,
} from './client/client.js';
export { DkvError, type DkvErrorDetails, ErrorCode, isDkvError, isErrorCode } from './errors.js';
