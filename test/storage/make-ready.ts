import type { Ready } from '../../src/raft/index.js';

/** ready builds a Ready for storage tests: empty except for `parts`, and needing a sync. */
export function ready(parts: Partial<Ready>): Ready {
  return {
    softState: null,
    hardState: null,
    entries: [],
    snapshot: null,
    committedEntries: [],
    messages: [],
    readStates: [],
    mustSync: true,
    ...parts,
  };
}
