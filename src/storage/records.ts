import { DkvError, ErrorCode } from '../errors.js';
import type { ConfState, Entry, EntryType, HardState } from '../raft/index.js';
import { checksum } from './checksum.js';

/**
 * Encoding of the stored records. Every value starts with the CRC-32 (checksum.ts) of what follows, and
 * entry and chunk checksums also cover their key's index, so a record moved to the wrong
 * key is caught as surely as a flipped bit.
 */

const u64Scratch = new Uint8Array(8);

function seedWithIndex(index: number): number {
  const v = new DataView(u64Scratch.buffer);
  v.setUint32(0, Math.floor(index / 0x1_0000_0000));
  v.setUint32(4, index >>> 0);
  return checksum(u64Scratch);
}

function corrupted(group: number, what: string, index?: number): DkvError {
  return new DkvError(
    ErrorCode.Corrupted,
    `group ${group}: ${what}${index === undefined ? '' : ` at index ${index}`} failed its checksum; the group refuses to serve`,
    index === undefined ? { group } : { group, index },
  );
}

/** ENTRY_HEADER_BYTES is the size of each entry's header inside a log block. */
export const ENTRY_HEADER_BYTES = 8 + 1 + 4;
/** BLOCK_HEADER_BYTES is the size of a log block's header: [crc u32][count u32]. */
export const BLOCK_HEADER_BYTES = 4 + 4;

/**
 * encodeBlock packs a run of consecutive entries, starting at `first`, into one record:
 * [crc u32][count u32] then, per entry, [term u64][type u8][length u32][data]. One record
 * (and one checksum) per group per round is what lets a synced batch of hundreds of entries
 * cost little more than a single write. The checksum covers the block's first index too.
 */
export function encodeBlock(first: number, ents: readonly Entry[]): Uint8Array {
  let size = BLOCK_HEADER_BYTES;
  for (const e of ents) size += ENTRY_HEADER_BYTES + e.data.length;
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint32(4, ents.length);
  let at = BLOCK_HEADER_BYTES;
  for (let i = 0; i < ents.length; i++) {
    const e = ents[i]!;
    if (e.index !== first + i) throw new Error(`encodeBlock: entry ${e.index} is not at ${first + i}`);
    v.setUint32(at, Math.floor(e.term / 0x1_0000_0000));
    v.setUint32(at + 4, e.term >>> 0);
    out[at + 8] = e.type;
    v.setUint32(at + 9, e.data.length);
    out.set(e.data, at + ENTRY_HEADER_BYTES);
    at += ENTRY_HEADER_BYTES + e.data.length;
  }
  v.setUint32(0, checksum(out.subarray(4), seedWithIndex(first)));
  return out;
}

/** blockCount reads how many entries a block holds, without checking it (for recovery). */
export function blockCount(rec: Uint8Array): number {
  if (rec.length < BLOCK_HEADER_BYTES) return 0;
  return new DataView(rec.buffer, rec.byteOffset, rec.byteLength).getUint32(4);
}

/**
 * decodeBlock reads the block stored at `first`, checking its checksum and structure. A
 * damaged block is reported with the group and the index range it covers, and nothing in
 * it is served.
 */
export function decodeBlock(group: number, first: number, rec: Uint8Array): Entry[] {
  const bad = (why: string): DkvError =>
    corrupted(group, `log entries from ${first}${why ? ` (${why})` : ''}`, first);
  if (rec.length < BLOCK_HEADER_BYTES) throw bad('truncated');
  const own = copyOf(rec);
  const v = new DataView(own.buffer);
  if (v.getUint32(0) !== checksum(own.subarray(4), seedWithIndex(first))) throw bad('');
  const count = v.getUint32(4);
  const ents: Entry[] = [];
  let at = BLOCK_HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    if (at + ENTRY_HEADER_BYTES > own.length) throw bad('truncated');
    const term = v.getUint32(at) * 0x1_0000_0000 + v.getUint32(at + 4);
    const type = own[at + 8]!;
    const len = v.getUint32(at + 9);
    if (type !== 0 && type !== 1) throw bad('bad entry type');
    const from = at + ENTRY_HEADER_BYTES;
    if (from + len > own.length) throw bad('truncated');
    ents.push({ index: first + i, term, type: type as EntryType, data: own.subarray(from, from + len) });
    at = from + len;
  }
  if (at !== own.length || count === 0) throw bad('bad length');
  return ents;
}

/** encodeChunk stores snapshot chunk `n` as [crc u32][data]; the checksum covers `n`. */
export function encodeChunk(n: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + data.length);
  out.set(data, 4);
  new DataView(out.buffer).setUint32(0, checksum(data, seedWithIndex(n)));
  return out;
}

/** decodeChunk reads and checks snapshot chunk `n` of the snapshot at `index`. */
export function decodeChunk(group: number, index: number, n: number, rec: Uint8Array): Uint8Array {
  if (rec.length < 4) throw corrupted(group, `snapshot chunk ${n} (truncated)`, index);
  const data = rec.subarray(4);
  if (new DataView(rec.buffer, rec.byteOffset, 4).getUint32(0) !== checksum(data, seedWithIndex(n))) {
    throw corrupted(group, `snapshot chunk ${n} of the snapshot`, index);
  }
  return copyOf(data);
}

/** copyOf copies bytes into a plain Uint8Array (LevelDB hands out Buffers and shared slabs). */
function copyOf(src: Uint8Array): Uint8Array {
  const out = new Uint8Array(src.length);
  out.set(src);
  return out;
}

/** encodeJsonRecord stores a small JSON record with a checksum: [crc u32][utf-8 json]. */
export function encodeJsonRecord(value: unknown): Uint8Array {
  const body = new TextEncoder().encode(JSON.stringify(value));
  const out = new Uint8Array(4 + body.length);
  out.set(body, 4);
  new DataView(out.buffer).setUint32(0, checksum(body));
  return out;
}

/** decodeJsonRecord reads a record written by encodeJsonRecord; `what` names it in errors. */
export function decodeJsonRecord(group: number, what: string, rec: Uint8Array): unknown {
  if (rec.length < 4) throw corrupted(group, `${what} (truncated)`);
  const body = rec.subarray(4);
  if (new DataView(rec.buffer, rec.byteOffset, 4).getUint32(0) !== checksum(body))
    throw corrupted(group, what);
  try {
    return JSON.parse(new TextDecoder().decode(body));
  } catch {
    throw corrupted(group, `${what} (not JSON)`);
  }
}

/** SnapshotRecord is the metadata of the group's current snapshot. */
export interface SnapshotRecord {
  /** Which chunk keys hold this snapshot's data. */
  readonly id: number;
  readonly index: number;
  readonly term: number;
  readonly confState: ConfState;
  readonly totalBytes: number;
  readonly chunkCount: number;
  /** CRC-32 of the whole data, checked when it is reassembled. */
  readonly dataCrc: number;
}

/** LogStartRecord is the compaction point: entries at or below `index` are gone. */
export interface LogStartRecord {
  readonly index: number;
  readonly term: number;
}

function isNat(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function isIdList(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((x) => isNat(x) && x > 0);
}

/** checkHardState validates a decoded hard state record. */
export function checkHardState(group: number, v: unknown): HardState {
  const o = v as Partial<HardState> | null;
  if (!o || !isNat(o.term) || !isNat(o.vote) || !isNat(o.commit)) {
    throw new DkvError(ErrorCode.Corrupted, `group ${group}: hard state record is malformed`, { group });
  }
  return { term: o.term, vote: o.vote, commit: o.commit };
}

/** checkSnapshotRecord validates a decoded snapshot metadata record. */
export function checkSnapshotRecord(group: number, v: unknown): SnapshotRecord {
  const o = v as Partial<SnapshotRecord> | null;
  const cs = o?.confState as Partial<ConfState> | undefined;
  const ok =
    o &&
    isNat(o.id) &&
    isNat(o.index) &&
    isNat(o.term) &&
    isNat(o.totalBytes) &&
    isNat(o.chunkCount) &&
    isNat(o.dataCrc) &&
    cs &&
    isIdList(cs.voters) &&
    isIdList(cs.learners) &&
    isIdList(cs.votersOutgoing) &&
    isIdList(cs.learnersNext) &&
    typeof cs.autoLeave === 'boolean';
  if (!ok)
    throw new DkvError(ErrorCode.Corrupted, `group ${group}: snapshot metadata is malformed`, { group });
  return o as SnapshotRecord;
}

/** checkLogStart validates a decoded log start record. */
export function checkLogStart(group: number, v: unknown): LogStartRecord {
  const o = v as Partial<LogStartRecord> | null;
  if (!o || !isNat(o.index) || !isNat(o.term)) {
    throw new DkvError(ErrorCode.Corrupted, `group ${group}: log start record is malformed`, { group });
  }
  return { index: o.index, term: o.term };
}
