/**
 * coalesceAppends (raft.ts): a Ready's appends to one follower that continue one another
 * become one, and nothing else changes order or content.
 */
import { describe, expect, it } from 'vitest';
import { coalesceAppends, makeMessage } from '../../src/raft/raft.js';
import { type Entry, EntryType, type Message, MessageType } from '../../src/raft/types.js';

function ents(from: number, n: number, term = 2, bytes = 10): Entry[] {
  return Array.from({ length: n }, (_, i) => ({
    index: from + i,
    term,
    type: EntryType.Normal,
    data: new Uint8Array(bytes),
  }));
}

function app(to: number, index: number, logTerm: number, entries: Entry[], commit: number): Message {
  return makeMessage({ type: MessageType.App, from: 1, to, term: 2, index, logTerm, entries, commit });
}

describe('coalesceAppends', () => {
  it('merges each follower’s contiguous appends into the first, with the higher commit', () => {
    const msgs = [
      app(2, 10, 2, ents(11, 1), 9),
      app(3, 10, 2, ents(11, 1), 9),
      app(2, 11, 2, ents(12, 2), 10),
      app(3, 11, 2, ents(12, 2), 10),
      app(2, 13, 2, [], 12), // commit only
    ];
    const out = coalesceAppends(msgs, 1 << 20);
    expect(out).toHaveLength(2);
    expect(out[0]).toMatchObject({ to: 2, index: 10, logTerm: 2, commit: 12 });
    expect(out[0]!.entries.map((e) => e.index)).toEqual([11, 12, 13]);
    expect(out[1]).toMatchObject({ to: 3, index: 10, commit: 10 });
    expect(out[1]!.entries.map((e) => e.index)).toEqual([11, 12, 13]);
  });

  it('merges a commit-only append into the append that follows it at the same index', () => {
    const out = coalesceAppends([app(2, 10, 2, [], 8), app(2, 10, 2, ents(11, 1), 9)], 1 << 20);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ index: 10, commit: 9 });
    expect(out[0]!.entries.map((e) => e.index)).toEqual([11]);
  });

  it('keeps apart what does not continue: a gap, a different previous term, another term, another type between', () => {
    const gap = [app(2, 10, 2, ents(11, 1), 9), app(2, 12, 2, ents(13, 1), 9)];
    expect(coalesceAppends(gap, 1 << 20)).toHaveLength(2);
    const otherPrevTerm = [app(2, 10, 2, ents(11, 1, 2), 9), app(2, 11, 1, ents(12, 1), 9)];
    expect(coalesceAppends(otherPrevTerm, 1 << 20)).toHaveLength(2);
    const otherTerm = [app(2, 10, 2, ents(11, 1), 9), { ...app(2, 11, 2, ents(12, 1), 9), term: 3 }];
    expect(coalesceAppends(otherTerm, 1 << 20)).toHaveLength(2);
    const hb = makeMessage({ type: MessageType.Heartbeat, from: 1, to: 2, term: 2, commit: 9 });
    const between = [app(2, 10, 2, ents(11, 1), 9), hb, app(2, 11, 2, ents(12, 1), 9)];
    expect(coalesceAppends(between, 1 << 20)).toEqual(between);
  });

  it('stops merging at maxBytes of entries', () => {
    const msgs = [app(2, 10, 2, ents(11, 1, 2, 60), 9), app(2, 11, 2, ents(12, 1, 2, 60), 9)];
    expect(coalesceAppends(msgs, 100)).toHaveLength(2);
    expect(coalesceAppends(msgs, 120)).toHaveLength(1);
  });

  it('leaves every other message as it was, in order', () => {
    const vote = makeMessage({ type: MessageType.VoteResp, from: 1, to: 3, term: 2 });
    const resp = makeMessage({ type: MessageType.AppResp, from: 1, to: 2, term: 2, index: 5 });
    expect(coalesceAppends([vote, resp], 1 << 20)).toEqual([vote, resp]);
  });
});
