import { describe, expect, it } from 'vitest';
import { type Entry, EntryType, MemoryStorage } from '../../../src/raft/index.js';
import { SafetyChecker } from './invariants.js';
import { checkLogMatching } from './log-matching.js';
import { encodePayload } from './payload.js';
import { FailureCode, type SimFailure } from './sim-failure.js';

function entry(index: number, term: number, id: number): Entry {
  return { index, term, type: EntryType.Normal, data: encodePayload(id, 3) };
}

function failureCode(f: () => void): string {
  try {
    f();
  } catch (err) {
    return (err as SimFailure).code;
  }
  return 'none';
}

describe('SafetyChecker', () => {
  it('allows one leader per term and catches a second', () => {
    const c = new SafetyChecker();
    c.observeLeader(1, 5);
    c.observeLeader(1, 5);
    c.observeLeader(2, 6);
    expect(failureCode(() => c.observeLeader(3, 5))).toBe(FailureCode.ElectionSafety);
  });

  it('catches a committed index that changes', () => {
    const c = new SafetyChecker();
    c.observeCommitted(1, entry(3, 2, 7));
    c.observeCommitted(2, entry(3, 2, 7));
    expect(failureCode(() => c.observeCommitted(3, entry(3, 3, 7)))).toBe(FailureCode.CommittedChanged);
    expect(failureCode(() => c.observeCommitted(3, entry(3, 2, 8)))).toBe(FailureCode.CommittedChanged);
  });

  it('catches a proposal committed at two indexes', () => {
    const c = new SafetyChecker();
    c.observeCommitted(1, entry(3, 2, 7));
    expect(failureCode(() => c.observeCommitted(1, entry(4, 2, 7)))).toBe(FailureCode.DuplicateEntry);
  });

  it('catches two different durable entries at one (index, term)', () => {
    const c = new SafetyChecker();
    c.observeDurable(1, [entry(3, 2, 7)]);
    c.observeDurable(2, [entry(3, 2, 7), entry(4, 2, 9)]);
    expect(failureCode(() => c.observeDurable(3, [entry(4, 2, 10)]))).toBe(FailureCode.LogMatching);
  });

  it('catches a read served below what was committed when it began', () => {
    const c = new SafetyChecker();
    c.checkRead(1, { context: 'a', requiredIndex: 5, invokeStep: 1 }, 5);
    expect(failureCode(() => c.checkRead(1, { context: 'b', requiredIndex: 6, invokeStep: 2 }, 5))).toBe(
      FailureCode.StaleRead,
    );
  });
});

describe('checkLogMatching', () => {
  function log(ents: Entry[]): MemoryStorage {
    const s = new MemoryStorage();
    s.append(ents);
    return s;
  }

  it('accepts logs that diverge only after their last common (index, term)', () => {
    const a = log([entry(1, 1, 1), entry(2, 1, 2), entry(3, 2, 3)]);
    const b = log([entry(1, 1, 1), entry(2, 1, 2), entry(3, 3, 4), entry(4, 3, 5)]);
    expect(() =>
      checkLogMatching([
        { id: 1, storage: a },
        { id: 2, storage: b },
      ]),
    ).not.toThrow();
  });

  it('catches logs that agree on a later entry but differ before it', () => {
    const a = log([entry(1, 1, 1), entry(2, 1, 2), entry(3, 2, 3)]);
    const b = log([entry(1, 1, 1), entry(2, 1, 9), entry(3, 2, 3)]);
    expect(
      failureCode(() =>
        checkLogMatching([
          { id: 1, storage: a },
          { id: 2, storage: b },
        ]),
      ),
    ).toBe(FailureCode.LogMatching);
  });
});
