import { describe, expect, it } from 'vitest';
import { runSeed } from './run.js';
import { CI_BATCHES, runSeedBatch } from './seed-batch.js';

describe('raft simulation (first half of the CI seeds)', () => {
  for (const b of CI_BATCHES.filter((x) => x.file === 'a')) {
    it(`${b.profile} seeds ${b.first}..${b.first + b.count - 1} keep every invariant and converge after healing`, () => {
      const r = runSeedBatch(b.first, b.count, { profile: b.profile });
      expect(r.failures, r.failures.join('\n\n')).toEqual([]);
      expect(r.totals.proposalsCommitted).toBeGreaterThan(0);
    });
  }

  it('is deterministic: the same seed gives the same run, trace and all', () => {
    for (const seed of [3, 17]) {
      const traceA: string[] = [];
      const traceB: string[] = [];
      const a = runSeed(seed, { traceSink: (l) => traceA.push(l) });
      const b = runSeed(seed, { traceSink: (l) => traceB.push(l) });
      const untraced = runSeed(seed);
      expect(a.failure).toBeNull();
      expect(traceA.length).toBeGreaterThan(1000);
      expect(traceB).toEqual(traceA);
      expect(b.stats).toEqual(a.stats);
      expect(untraced.stats).toEqual(a.stats);
    }
  });
});
