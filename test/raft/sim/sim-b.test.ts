import { describe, expect, it } from 'vitest';
import { CI_BATCHES, runSeedBatch } from './seed-batch.js';

describe('raft simulation (second half of the CI seeds)', () => {
  for (const b of CI_BATCHES.filter((x) => x.file === 'b')) {
    it(`${b.profile} seeds ${b.first}..${b.first + b.count - 1} keep every invariant and converge after healing`, () => {
      const r = runSeedBatch(b.first, b.count, { profile: b.profile });
      expect(r.failures, r.failures.join('\n\n')).toEqual([]);
      expect(r.totals.proposalsCommitted).toBeGreaterThan(0);
    });
  }

  it('is not vacuous: the default seeds exercise every fault and feature', () => {
    const r = runSeedBatch(801, 40);
    expect(r.failures, r.failures.join('\n\n')).toEqual([]);
    const t = r.totals;
    expect(t.readsServed).toBeGreaterThan(1000);
    expect(t.leaders).toBeGreaterThan(100);
    expect(t.crashes).toBeGreaterThan(20);
    expect(t.partitions).toBeGreaterThan(20);
    expect(t.pauses).toBeGreaterThan(0);
    expect(t.snapshotsInstalled).toBeGreaterThan(20);
    expect(t.membershipChanges).toBeGreaterThan(20);
  });
});
