/**
 * The CI seed plan and the batch runner the vitest files share. sim-a.test.ts and
 * sim-b.test.ts each take half of CI_BATCHES, so vitest's two workers split the load.
 */
import type { LevelDiskStats } from './level-disk.js';
import { SimProfile } from './profiles.js';
import {
  formatFailure,
  type RunConfig,
  type RunResult,
  type RunStats,
  runSeedReported,
  runSeedReportedAsync,
} from './run.js';

/** SeedBatch is a range of seeds run under one profile. */
export interface SeedBatch {
  /** Which test file runs it. */
  readonly file: 'a' | 'b';
  readonly profile: SimProfile;
  readonly first: number;
  readonly count: number;
}

/** CI_BATCH_SEEDS is the size of one test case: small enough to show progress, big enough to amortise. */
export const CI_BATCH_SEEDS = 50;

function batches(file: 'a' | 'b', profile: SimProfile, first: number, count: number): SeedBatch[] {
  const out: SeedBatch[] = [];
  for (let s = first; s < first + count; s += CI_BATCH_SEEDS) {
    out.push({ file, profile, first: s, count: Math.min(CI_BATCH_SEEDS, first + count - s) });
  }
  return out;
}

/**
 * CI_BATCHES is every seed CI runs: 800 distinct default seeds plus 100 seeds of each
 * stress profile (profiles pin options on top of the seed's draw, so those are distinct runs).
 */
export const CI_BATCHES: readonly SeedBatch[] = [
  ...batches('a', SimProfile.Default, 1, 400),
  ...batches('b', SimProfile.Default, 401, 400),
  ...batches('a', SimProfile.CrashHeavy, 1, 100),
  ...batches('a', SimProfile.NoPreVote, 1, 100),
  ...batches('a', SimProfile.TinyLimits, 1, 100),
  ...batches('b', SimProfile.MembershipChurn, 1, 100),
  ...batches('b', SimProfile.PauseHeavy, 1, 100),
  ...batches('b', SimProfile.LeaseReads, 1, 100),
];

/** SeedBatchResult is what a batch of seeds came to. */
export interface SeedBatchResult {
  readonly seeds: number;
  /** Every RunStats field summed over the batch. */
  readonly totals: RunStats;
  /** Every LevelDiskStats field summed over the batch (null with the memory backend). */
  readonly diskTotals: LevelDiskStats | null;
  /** One formatted report per failing seed (empty when all passed). */
  readonly failures: readonly string[];
  /** The failing seeds, in order. */
  readonly failedSeeds: readonly number[];
}

/** runSeedBatch runs seeds first..first+count-1 under `config` (memory backend). */
export function runSeedBatch(first: number, count: number, config: RunConfig = {}): SeedBatchResult {
  const tally = new BatchTally(count);
  for (let seed = first; seed < first + count; seed++) {
    tally.add(runSeedReported(seed, { traceTailLines: 40, ...config }));
  }
  return tally.result();
}

/** runSeedBatchAsync is runSeedBatch on any backend; seeds run one after another. */
export async function runSeedBatchAsync(
  first: number,
  count: number,
  config: RunConfig = {},
): Promise<SeedBatchResult> {
  const tally = new BatchTally(count);
  for (let seed = first; seed < first + count; seed++) {
    tally.add(await runSeedReportedAsync(seed, { traceTailLines: 40, ...config }));
  }
  return tally.result();
}

/** BatchTally sums the runs of a batch. */
class BatchTally {
  private readonly seeds: number;
  private readonly totals: Record<string, number> = {};
  private readonly diskTotals: Record<string, number> = {};
  private readonly failures: string[] = [];
  private readonly failedSeeds: number[] = [];

  constructor(seeds: number) {
    this.seeds = seeds;
  }

  add(r: RunResult): void {
    for (const [k, v] of Object.entries(r.stats)) this.totals[k] = (this.totals[k] ?? 0) + v;
    if (r.disk !== null) {
      for (const [k, v] of Object.entries(r.disk)) this.diskTotals[k] = (this.diskTotals[k] ?? 0) + v;
    }
    if (r.failure !== null) {
      this.failures.push(formatFailure(r));
      this.failedSeeds.push(r.seed);
    }
  }

  result(): SeedBatchResult {
    return {
      seeds: this.seeds,
      totals: this.totals as unknown as RunStats,
      diskTotals:
        Object.keys(this.diskTotals).length > 0 ? (this.diskTotals as unknown as LevelDiskStats) : null,
      failures: this.failures,
      failedSeeds: this.failedSeeds,
    };
  }
}
