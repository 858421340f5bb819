/**
 * The Raft core: a pure, deterministic Raft (modelled on etcd-io/raft) for one group.
 * Nothing here does I/O; see RawNode and the Ready type for the driver contract.
 */
export { decodeConfChange, encodeConfChange } from './conf-change-codec.js';
export {
  RAFT_DEFAULTS,
  type RaftConfig,
  type RandomSource,
  ReadOnlyOption,
  resolveRaftConfig,
} from './config.js';
export { Inflights } from './inflights.js';
export { bootstrapIndex, EMPTY_CONF_STATE, MemoryStorage } from './memory-storage.js';
export { ProgressState } from './progress.js';
export {
  COMMIT_INDEX_INFINITE,
  jointCommittedIndex,
  jointVoteResult,
  majorityCommittedIndex,
  majorityVoteResult,
  VoteResult,
} from './quorum.js';
export { CAMPAIGN_TRANSFER, makeMessage } from './raft.js';
export { type FollowerStatus, type RaftStatus, RawNode } from './raw-node.js';
export {
  ENTRY_OVERHEAD_BYTES,
  entryBytes,
  type InitialState,
  isStorageError,
  limitSize,
  type Storage,
  StorageError,
  StorageErrorKind,
} from './storage.js';
export * from './types.js';
