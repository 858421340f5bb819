/**
 * Key to slot: crc32 of the key, or of its hash tag, mod SLOT_COUNT (DESIGN.md, "Ownership
 * and routing"). A hash tag is the part between the first `{` and the next `}` when it is not
 * empty, as in Redis Cluster: `user:{42}:name` and `user:{42}:email` share a slot, so they
 * share a group and may be used in one transaction.
 */
import { crc32 } from 'node:zlib';
import { SLOT_COUNT } from './protocol.js';

const encoder = new TextEncoder();

/** hashTagOf returns the part of `key` that decides its slot. */
export function hashTagOf(key: string): string {
  const open = key.indexOf('{');
  if (open < 0) return key;
  const close = key.indexOf('}', open + 1);
  if (close < 0 || close === open + 1) return key;
  return key.slice(open + 1, close);
}

/** slotOf returns the slot of `key`. */
export function slotOf(key: string): number {
  return crc32(encoder.encode(hashTagOf(key))) % SLOT_COUNT;
}

/**
 * evenSlots splits the slots into `groups` contiguous ranges of (nearly) equal size, in
 * group order: the partition map of a store created with `groups` partitions.
 */
export function evenSlots(groups: number): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < groups; i++) {
    out.push([Math.floor((i * SLOT_COUNT) / groups), Math.floor(((i + 1) * SLOT_COUNT) / groups)]);
  }
  return out;
}
