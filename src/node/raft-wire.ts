/**
 * Raft messages on the peer links: `{ g: group id, m: Message }`, checked field by field
 * before a replica sees them. A peer link delivers nothing it cannot validate; one bad
 * message closes that connection (src/transport/peer-links.ts).
 */
import { DkvError, ErrorCode } from '../errors.js';
import type { ConfState, Entry, Message, SnapshotChunk } from '../raft/index.js';

/** PeerMessage is one Raft message addressed to one group. */
export interface PeerMessage {
  readonly g: number;
  readonly m: Message;
}

/** Message types a peer may send (the local ones, Hup..CheckQuorum, Unreachable, SnapStatus, never). */
const WIRE_TYPES = new Set([3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 16, 17, 18]);

function bad(what: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, `peer message: ${what}`);
}

function nat(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    throw bad(`${what} must be a non-negative integer`);
  return v;
}

function bytes(v: unknown, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw bad(`${what} must be bytes`);
  return v;
}

function ids(v: unknown, what: string): number[] {
  if (!Array.isArray(v) || v.length > 1000) throw bad(`${what} must be a list of node ids`);
  return v.map((x) => nat(x, what));
}

function confState(v: unknown): ConfState {
  if (typeof v !== 'object' || v === null) throw bad('confState must be an object');
  const o = v as Record<string, unknown>;
  if (typeof o.autoLeave !== 'boolean') throw bad('confState.autoLeave must be a boolean');
  return {
    voters: ids(o.voters, 'voters'),
    learners: ids(o.learners, 'learners'),
    votersOutgoing: ids(o.votersOutgoing, 'votersOutgoing'),
    learnersNext: ids(o.learnersNext, 'learnersNext'),
    autoLeave: o.autoLeave,
  };
}

function entry(v: unknown): Entry {
  if (typeof v !== 'object' || v === null) throw bad('an entry must be an object');
  const o = v as Record<string, unknown>;
  if (o.type !== 0 && o.type !== 1) throw bad('entry type must be 0 or 1');
  return {
    index: nat(o.index, 'entry index'),
    term: nat(o.term, 'entry term'),
    type: o.type,
    data: bytes(o.data, 'entry data'),
  };
}

function chunk(v: unknown): SnapshotChunk | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'object') throw bad('snapshot must be an object');
  const o = v as Record<string, unknown>;
  const md = o.metadata as Record<string, unknown> | null;
  if (typeof md !== 'object' || md === null) throw bad('snapshot metadata must be an object');
  const c: SnapshotChunk = {
    metadata: {
      index: nat(md.index, 'snapshot index'),
      term: nat(md.term, 'snapshot term'),
      confState: confState(md.confState),
    },
    offset: nat(o.offset, 'snapshot offset'),
    totalBytes: nat(o.totalBytes, 'snapshot totalBytes'),
    data: bytes(o.data, 'snapshot data'),
  };
  if (c.offset + c.data.length > c.totalBytes) throw bad('snapshot chunk beyond its total');
  return c;
}

/** validatePeerMessage checks a decoded peer message; it throws on anything malformed. */
export function validatePeerMessage(v: unknown): PeerMessage {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('must be { g, m }');
  const o = v as Record<string, unknown>;
  const g = nat(o.g, 'group');
  const m = o.m as Record<string, unknown> | null;
  if (typeof m !== 'object' || m === null) throw bad('m must be an object');
  const type = nat(m.type, 'type');
  if (!WIRE_TYPES.has(type)) throw bad(`type ${type} is not sent between peers`);
  if (!Array.isArray(m.entries) || m.entries.length > 100_000) throw bad('entries must be a list');
  if (typeof m.reject !== 'boolean') throw bad('reject must be a boolean');
  if (typeof m.context !== 'string' || m.context.length > 1024) throw bad('context must be a short string');
  const msg: Message = {
    type: type as Message['type'],
    from: nat(m.from, 'from'),
    to: nat(m.to, 'to'),
    term: nat(m.term, 'term'),
    logTerm: nat(m.logTerm, 'logTerm'),
    index: nat(m.index, 'index'),
    entries: m.entries.map(entry),
    commit: nat(m.commit, 'commit'),
    reject: m.reject,
    rejectHint: nat(m.rejectHint, 'rejectHint'),
    snapshot: chunk(m.snapshot),
    context: m.context,
  };
  return { g, m: msg };
}
