/**
 * The lines a crash-test child writes to stdout, one JSON object per line. The child writes
 * an intent before each write and an acknowledgement once it is durable, so the parent knows
 * both what was acknowledged and what may or may not have reached the disk when the child was
 * killed. Lines are decoded and validated here, at the edge.
 */
import type { HardState } from '../../src/raft/index.js';

/** ChangeKind is how a commit round changes one group's log. */
export const ChangeKind = {
  /** Entries appended after the last one. */
  Append: 'append',
  /** A higher-term suffix replacing uncommitted entries, as a new leader's append does. */
  Conflict: 'conflict',
  /** A leader's snapshot switched in (it replaces the whole log), then entries after it. */
  Install: 'install',
} as const;
export type ChangeKind = (typeof ChangeKind)[keyof typeof ChangeKind];

/** SnapshotImageRef names a snapshot image; its bytes are snapshotImage(group, index, term, bytes). */
export interface SnapshotImageRef {
  readonly index: number;
  readonly term: number;
  readonly bytes: number;
}

/**
 * GroupChange is one group's part of a commit round: the log is cut after `first - 1` and
 * entries `first..last` (none when last < first), all of term `term`, are written; then the
 * hard state. With kind Install, `snapshot` is switched in first.
 */
export interface GroupChange {
  readonly group: number;
  readonly kind: ChangeKind;
  readonly first: number;
  readonly last: number;
  readonly term: number;
  readonly hard: HardState;
  readonly snapshot: SnapshotImageRef | null;
}

/** LocalSnapshotIntent is a createSnapshot call: the image as of `index`, keeping `tailEntries`. */
export interface LocalSnapshotIntent extends SnapshotImageRef {
  readonly group: number;
  readonly tailEntries: number;
}

/** ChildLine is one line of a crash-test child's stdout. */
export type ChildLine =
  | { readonly k: 'ready' }
  | { readonly k: 'intent'; readonly round: number; readonly changes: readonly GroupChange[] }
  | { readonly k: 'ack'; readonly round: number }
  | { readonly k: 'snap-intent'; readonly snap: LocalSnapshotIntent }
  | { readonly k: 'snap-ack'; readonly group: number; readonly index: number };

/** formatLine encodes a line, newline included. */
export function formatLine(line: ChildLine): string {
  return `${JSON.stringify(line)}\n`;
}

function nat(o: Record<string, unknown>, field: string): number {
  const v = o[field];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new Error(`crash protocol: field ${field} is not a natural number: ${JSON.stringify(v)}`);
  }
  return v;
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new Error(`crash protocol: ${what} is not an object`);
  return v as Record<string, unknown>;
}

function imageRef(v: unknown): SnapshotImageRef {
  const o = obj(v, 'snapshot');
  return { index: nat(o, 'index'), term: nat(o, 'term'), bytes: nat(o, 'bytes') };
}

function change(v: unknown): GroupChange {
  const o = obj(v, 'change');
  const kind = o.kind;
  if (kind !== ChangeKind.Append && kind !== ChangeKind.Conflict && kind !== ChangeKind.Install) {
    throw new Error(`crash protocol: unknown change kind ${JSON.stringify(kind)}`);
  }
  const h = obj(o.hard, 'hard state');
  const snapshot = o.snapshot === null ? null : imageRef(o.snapshot);
  if ((kind === ChangeKind.Install) !== (snapshot !== null)) {
    throw new Error('crash protocol: a snapshot comes with, and only with, an install');
  }
  return {
    group: nat(o, 'group'),
    kind,
    first: nat(o, 'first'),
    last: nat(o, 'last'),
    term: nat(o, 'term'),
    hard: { term: nat(h, 'term'), vote: nat(h, 'vote'), commit: nat(h, 'commit') },
    snapshot,
  };
}

/** parseLine decodes and validates one line; anything malformed throws. */
export function parseLine(text: string): ChildLine {
  const o = obj(JSON.parse(text) as unknown, 'line');
  switch (o.k) {
    case 'ready':
      return { k: 'ready' };
    case 'intent': {
      if (!Array.isArray(o.changes) || o.changes.length === 0)
        throw new Error('crash protocol: intent without changes');
      return { k: 'intent', round: nat(o, 'round'), changes: o.changes.map(change) };
    }
    case 'ack':
      return { k: 'ack', round: nat(o, 'round') };
    case 'snap-intent': {
      const s = obj(o.snap, 'snap');
      return {
        k: 'snap-intent',
        snap: { group: nat(s, 'group'), tailEntries: nat(s, 'tailEntries'), ...imageRef(s) },
      };
    }
    case 'snap-ack':
      return { k: 'snap-ack', group: nat(o, 'group'), index: nat(o, 'index') };
    default:
      throw new Error(`crash protocol: unknown line kind ${JSON.stringify(o.k)}`);
  }
}
