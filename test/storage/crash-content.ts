/**
 * Deterministic content for the crash and corruption tests. The bytes of an entry or of a
 * snapshot image are a pure function of where they belong (group, index, term), so a
 * verifier that never saw the writer can still tell an intact record from a torn, stale or
 * misplaced one.
 */
import { type ConfState, type Entry, EntryType } from '../../src/raft/index.js';

/** CRASH_CONF is the membership every test group is bootstrapped with. */
export const CRASH_CONF: ConfState = Object.freeze({
  voters: [1, 2, 3],
  learners: [],
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
});

/** ENTRY_DATA_BYTES_MAX bounds an entry's payload (0 bytes stands for a leader's no-op). */
export const ENTRY_DATA_BYTES_MAX = 64;

/** mix32 hashes safe integers into 32 bits (a murmur3-style mix per 32-bit word). */
export function mix32(...words: readonly number[]): number {
  let h = 0x811c9dc5;
  for (const w of words) {
    const lo = w >>> 0;
    const hi = Math.floor(w / 0x1_0000_0000) >>> 0;
    h = Math.imul(h ^ lo, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h ^ hi, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** fillBytes fills `out` with an xorshift32 stream started from `seed`. */
function fillBytes(out: Uint8Array, seed: number): void {
  let x = seed >>> 0 || 0x9e3779b9;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
}

/** entryFor is the one entry that may sit at (`index`, `term`) in `group`. */
export function entryFor(group: number, index: number, term: number): Entry {
  const h = mix32(group, index, term);
  const data = new Uint8Array(h % (ENTRY_DATA_BYTES_MAX + 1));
  fillBytes(data, mix32(h, 1));
  return { index, term, type: h % 61 === 0 ? EntryType.ConfChange : EntryType.Normal, data };
}

/** snapshotImage is the state machine image of `group` as of (`index`, `term`), `bytes` long. */
export function snapshotImage(group: number, index: number, term: number, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  fillBytes(out, mix32(group, index, term, bytes, 0x5a));
  return out;
}

/** sameBytes tells whether two byte arrays are equal. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
