/**
 * checkLogMatching tests Raft's log matching property on durable logs: if two logs hold an
 * entry with the same index and term, they hold identical entries up to it. It compares
 * every pair of logs over the newest LOG_MATCHING_WINDOW entries both retain, so the check
 * stays cheap on long logs; older entries are committed, and every committed entry is
 * already compared with the committed history as it is persisted.
 */
import type { Entry, MemoryStorage } from '../../../src/raft/index.js';
import { bytesEqual } from './payload.js';
import { FailureCode, SimFailure } from './sim-failure.js';

/** LOG_MATCHING_WINDOW bounds how many of the newest common entries each pair compares. */
export const LOG_MATCHING_WINDOW = 2048;

/** DurableLog names a replica's durable storage. */
export interface DurableLog {
  readonly id: number;
  readonly storage: MemoryStorage;
}

/** checkLogMatching throws a LOG_MATCHING SimFailure on the first pair that breaks the property. */
export function checkLogMatching(logs: readonly DurableLog[]): void {
  const all = logs.map((l) => ({ id: l.id, ents: retained(l.storage) }));
  for (let a = 0; a < all.length; a++) {
    for (let b = a + 1; b < all.length; b++) comparePair(all[a]!, all[b]!);
  }
}

function retained(s: MemoryStorage): Entry[] {
  const last = s.lastIndex();
  const first = Math.max(s.firstIndex(), last - 2 * LOG_MATCHING_WINDOW);
  return last >= first ? s.entries(first, last + 1, Number.MAX_SAFE_INTEGER) : [];
}

function comparePair(a: { id: number; ents: Entry[] }, b: { id: number; ents: Entry[] }): void {
  if (a.ents.length === 0 || b.ents.length === 0) return;
  const hi = Math.min(a.ents[a.ents.length - 1]!.index, b.ents[b.ents.length - 1]!.index);
  const lo = Math.max(a.ents[0]!.index, b.ents[0]!.index, hi - LOG_MATCHING_WINDOW + 1);
  const at = (x: { ents: Entry[] }, i: number): Entry => x.ents[i - x.ents[0]!.index]!;
  // Find the highest common index where the terms agree; below it everything must agree.
  let i = hi;
  while (i >= lo && at(a, i).term !== at(b, i).term) i--;
  for (; i >= lo; i--) {
    const ea = at(a, i);
    const eb = at(b, i);
    if (ea.term !== eb.term || ea.type !== eb.type || !bytesEqual(ea.data, eb.data)) {
      throw new SimFailure(
        FailureCode.LogMatching,
        `n${a.id} and n${b.id} agree on a later entry but differ at index ${i} (terms ${ea.term} vs ${eb.term})`,
      );
    }
  }
}
