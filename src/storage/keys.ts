/**
 * The LevelDB key layout. Every key of a group starts with `g`, the group id (u32, big
 * endian) and a one-byte kind, so a group's keys are contiguous and each kind sorts by
 * index. Indexes are u64 big endian (held below 2^53), so byte order is numeric order.
 *
 *     g <group> h                     hard state
 *     g <group> l                     log start (the compaction point: index and term)
 *     g <group> m                     current snapshot metadata
 *     g <group> e <first index>       log block: the entries one round appended (records.ts)
 *     g <group> t <start index>       term run: entries from <start> on have this term
 *     g <group> s <snapshot id> <n>   snapshot chunk n
 *     n                               node record (format version)
 */
export const KeyKind = {
  HardState: 0x68, // h
  LogStart: 0x6c, // l
  SnapshotMeta: 0x6d, // m
  Entry: 0x65, // e
  TermRun: 0x74, // t
  SnapshotChunk: 0x73, // s
} as const;
export type KeyKind = (typeof KeyKind)[keyof typeof KeyKind];

const GROUP_TAG = 0x67; // g

/** NODE_KEY holds the node record. */
export const NODE_KEY: Uint8Array = Uint8Array.of(0x6e);

/** GROUP_ID_MAX is the largest group id (u32). */
export const GROUP_ID_MAX = 0xffff_ffff;

function writeU64(buf: Uint8Array, at: number, v: number): void {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  view.setUint32(at, Math.floor(v / 0x1_0000_0000));
  view.setUint32(at + 4, v >>> 0);
}

/** readU64 reads a big-endian u64 that must be below 2^53. */
export function readU64(buf: Uint8Array, at: number): number {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return view.getUint32(at) * 0x1_0000_0000 + view.getUint32(at + 4);
}

function groupKey(group: number, kind: KeyKind, extra: number): Uint8Array {
  const k = new Uint8Array(6 + extra);
  k[0] = GROUP_TAG;
  new DataView(k.buffer).setUint32(1, group);
  k[5] = kind;
  return k;
}

/** recordKey is the key of a group's single record of `kind` (hard state, log start, snapshot meta). */
export function recordKey(group: number, kind: KeyKind): Uint8Array {
  return groupKey(group, kind, 0);
}

/** indexedKey is the key of a group's log block or term run starting at `index`. */
export function indexedKey(group: number, kind: KeyKind, index: number): Uint8Array {
  const k = groupKey(group, kind, 8);
  writeU64(k, 6, index);
  return k;
}

/** chunkKey is the key of chunk `n` of snapshot `snapshotId`. */
export function chunkKey(group: number, snapshotId: number, n: number): Uint8Array {
  const k = groupKey(group, KeyKind.SnapshotChunk, 12);
  writeU64(k, 6, snapshotId);
  new DataView(k.buffer).setUint32(14, n);
  return k;
}

/** kindRange returns [gte, lt) bounds covering every key of `kind` in `group`. */
export function kindRange(group: number, kind: KeyKind): { gte: Uint8Array; lt: Uint8Array } {
  const gte = groupKey(group, kind, 0);
  const lt = groupKey(group, kind, 0);
  lt[5] = kind + 1;
  return { gte, lt };
}

/** groupIdOf reads the group id of a group key. */
export function groupIdOf(key: Uint8Array): number {
  return new DataView(key.buffer, key.byteOffset, key.byteLength).getUint32(1);
}

/** indexOf reads the index of an entry or term-run key (or the snapshot id of a chunk key). */
export function indexOf(key: Uint8Array): number {
  return readU64(key, 6);
}

/** allGroupsRange bounds every group key. */
export const ALL_GROUPS_RANGE = { gte: Uint8Array.of(GROUP_TAG), lt: Uint8Array.of(GROUP_TAG + 1) };
