import { DkvError, ErrorCode } from '../errors.js';
import type { ConfState, Entry, EntryType, HardState } from '../raft/index.js';
import { crc32c } from './crc32c.js';

/**
 * Encoding of the stored records. Every value starts with the CRC-32C of what follows, and
 * entry and chunk checksums also cover their key's index, so a record moved to the wrong
 * key is caught as surely as a flipped bit.
 */

const u64Scratch = new Uint8Array(8);

function seedWithIndex(index: number): number {
  const v = new DataView(u64Scratch.buffer);
  v.setUint32(0, Math.floor(index / 0x1_0000_0000));
  v.setUint32(4, index >>> 0);
  return crc32c(u64Scratch);
}

function corrupted(group: number, what: string, index?: number): DkvError {
  return new DkvError(
    ErrorCode.Corrupted,
    `group ${group}: ${what}${index === undefined ? '' : ` at index ${index}`} failed its checksum; the group refuses to serve`,
    index === undefined ? { group } : { group, index },
  );
}

/** ENTRY_HEADER_BYTES is the size of an entry record before its payload. */
export const ENTRY_HEADER_BYTES = 4 + 8 + 1;

/** encodeEntry stores an entry as [crc u32][term u64][type u8][data]. */
export function encodeEntry(e: Entry): Uint8Array {
  const out = new Uint8Array(ENTRY_HEADER_BYTES + e.data.length);
  const v = new DataView(out.buffer);
  v.setUint32(4, Math.floor(e.term / 0x1_0000_0000));
  v.setUint32(8, e.term >>> 0);
  out[12] = e.type;
  out.set(e.data, ENTRY_HEADER_BYTES);
  v.setUint32(0, crc32c(out.subarray(4), seedWithIndex(e.index)));
  return out;
}

/** decodeEntry reads an entry record stored at `index`, checking its checksum. */
export function decodeEntry(group: number, index: number, rec: Uint8Array): Entry {
  if (rec.length < ENTRY_HEADER_BYTES) throw corrupted(group, 'log entry (truncated)', index);
  const v = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
  if (v.getUint32(0) !== crc32c(rec.subarray(4), seedWithIndex(index)))
    throw corrupted(group, 'log entry', index);
  const type = rec[12]!;
  if (type !== 0 && type !== 1) throw corrupted(group, 'log entry (bad type)', index);
  const term = v.getUint32(4) * 0x1_0000_0000 + v.getUint32(8);
  return { index, term, type: type as EntryType, data: copyOf(rec.subarray(ENTRY_HEADER_BYTES)) };
}

/** encodeChunk stores snapshot chunk `n` as [crc u32][data]; the checksum covers `n`. */
export function encodeChunk(n: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + data.length);
  out.set(data, 4);
  new DataView(out.buffer).setUint32(0, crc32c(data, seedWithIndex(n)));
  return out;
}

/** decodeChunk reads and checks snapshot chunk `n` of the snapshot at `index`. */
export function decodeChunk(group: number, index: number, n: number, rec: Uint8Array): Uint8Array {
  if (rec.length < 4) throw corrupted(group, `snapshot chunk ${n} (truncated)`, index);
  const data = rec.subarray(4);
  if (new DataView(rec.buffer, rec.byteOffset, 4).getUint32(0) !== crc32c(data, seedWithIndex(n))) {
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
  new DataView(out.buffer).setUint32(0, crc32c(body));
  return out;
}

/** decodeJsonRecord reads a record written by encodeJsonRecord; `what` names it in errors. */
export function decodeJsonRecord(group: number, what: string, rec: Uint8Array): unknown {
  if (rec.length < 4) throw corrupted(group, `${what} (truncated)`);
  const body = rec.subarray(4);
  if (new DataView(rec.buffer, rec.byteOffset, 4).getUint32(0) !== crc32c(body)) throw corrupted(group, what);
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
  /** CRC-32C of the whole data, checked when it is reassembled. */
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
