/**
 * A dumb model of one group's durable state: the compaction point, the term of every
 * retained entry, the hard state and the current snapshot. Entry and snapshot bytes are not
 * modelled; they follow from (group, index, term) (see crash-content.ts).
 */
import { EMPTY_HARD_STATE, type HardState } from '../../src/raft/index.js';
import {
  ChangeKind,
  type GroupChange,
  type LocalSnapshotIntent,
  type SnapshotImageRef,
} from './crash-protocol.js';

/** GroupModel is what a group must hold on disk. */
export interface GroupModel {
  /** The compaction point: entries at or below start.index are gone; start.term is the term there. */
  readonly start: { readonly index: number; readonly term: number };
  /** terms[i] is the term of entry start.index + 1 + i. Invariant: non-decreasing. */
  readonly terms: readonly number[];
  readonly hard: HardState;
  readonly snapshot: SnapshotImageRef;
}

/** bootstrapModel is a group created with a membership: a snapshot at (1, 1) and no entries. */
export function bootstrapModel(): GroupModel {
  return {
    start: { index: 1, term: 1 },
    terms: [],
    hard: EMPTY_HARD_STATE,
    snapshot: { index: 1, term: 1, bytes: 0 },
  };
}

/** modelLastIndex is the index of the model's last entry (the start if it has none). */
export function modelLastIndex(m: GroupModel): number {
  return m.start.index + m.terms.length;
}

/** modelTerm is the term at `index`, which must be in [start.index, last]. */
export function modelTerm(m: GroupModel, index: number): number {
  if (index === m.start.index) return m.start.term;
  const t = m.terms[index - m.start.index - 1];
  if (t === undefined)
    throw new Error(`modelTerm: ${index} is outside [${m.start.index}, ${modelLastIndex(m)}]`);
  return t;
}

/** applyChange is the model after one group's part of a commit round. */
export function applyChange(m: GroupModel, c: GroupChange): GroupModel {
  let base = m;
  if (c.kind === ChangeKind.Install) {
    const s = c.snapshot!;
    base = { start: { index: s.index, term: s.term }, terms: [], hard: m.hard, snapshot: s };
  }
  const keep = c.first - base.start.index - 1;
  if (keep < 0 || keep > base.terms.length) {
    throw new Error(
      `applyChange: entries from ${c.first} do not follow a log ending at ${modelLastIndex(base)}`,
    );
  }
  const terms = base.terms.slice(0, keep);
  for (let i = c.first; i <= c.last; i++) terms.push(c.term);
  return { ...base, terms, hard: c.hard };
}

/** applyLocalSnapshot is the model after a createSnapshot call and the compaction behind it. */
export function applyLocalSnapshot(m: GroupModel, s: LocalSnapshotIntent): GroupModel {
  const startIndex = Math.max(m.start.index, s.index - s.tailEntries);
  return {
    start: { index: startIndex, term: modelTerm(m, startIndex) },
    terms: m.terms.slice(startIndex - m.start.index),
    hard: m.hard,
    snapshot: { index: s.index, term: s.term, bytes: s.bytes },
  };
}

/** diffModels describes the first difference between the expected and the actual state, or returns null. */
export function diffModels(expected: GroupModel, actual: GroupModel): string | null {
  const e = expected;
  const a = actual;
  if (e.start.index !== a.start.index || e.start.term !== a.start.term) {
    return `log start: expected (${e.start.index}, term ${e.start.term}), found (${a.start.index}, term ${a.start.term})`;
  }
  if (modelLastIndex(e) !== modelLastIndex(a)) {
    return `last index: expected ${modelLastIndex(e)}, found ${modelLastIndex(a)}`;
  }
  for (let i = 0; i < e.terms.length; i++) {
    if (e.terms[i] !== a.terms[i]) {
      return `entry ${e.start.index + 1 + i}: expected term ${e.terms[i]}, found term ${a.terms[i]}`;
    }
  }
  if (e.hard.term !== a.hard.term || e.hard.vote !== a.hard.vote || e.hard.commit !== a.hard.commit) {
    return `hard state: expected ${JSON.stringify(e.hard)}, found ${JSON.stringify(a.hard)}`;
  }
  const es = e.snapshot;
  const as = a.snapshot;
  if (es.index !== as.index || es.term !== as.term || es.bytes !== as.bytes) {
    return `snapshot: expected ${JSON.stringify(es)}, found ${JSON.stringify(as)}`;
  }
  return null;
}
