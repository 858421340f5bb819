import { describe, expect, it } from 'vitest';
import { SimProfile } from '../raft/sim/profiles.js';
import { type RunConfig, runSeedAsync } from '../raft/sim/run.js';
import { runSeedBatchAsync, type SeedBatchResult } from '../raft/sim/seed-batch.js';
import { FailureCode } from '../raft/sim/sim-failure.js';
import { crashHeavyNemesis, DriverFault, StorageBackend } from '../raft/sim/sim-options.js';

/**
 * The seeded whole-cluster simulation (test/raft/sim) on the LevelDB storage: every node's
 * log, hard state and snapshots live in a real NodeStorage in a temporary directory, closed
 * at each crash and reopened from disk at each restart, then checked against what the run
 * made durable. The seed also draws the storage knobs: about half the seeds keep so little
 * in memory that the core waits for on-demand reads, and some let those reads land only after
 * a later write (a truncation, a compaction) of the same log. Fewer seeds than the memory
 * backend runs, since every synced group commit is a real fsync.
 */

/** LEVELDB_DEFAULT_SEEDS and LEVELDB_CRASH_HEAVY_SEEDS are the seed ranges this file runs (1..N each). */
const LEVELDB_DEFAULT_SEEDS = 30;
const LEVELDB_CRASH_HEAVY_SEEDS = 12;

const LEVELDB: RunConfig['pinned'] = { storage: StorageBackend.LevelDb };

/** report puts each failing seed's replay command first, then the full failure reports. */
function report(r: SeedBatchResult, profile: SimProfile): string {
  const flag = profile === SimProfile.Default ? '' : ` --profile ${profile}`;
  const replays = r.failedSeeds.map(
    (seed) =>
      `seed=${seed} failed on LevelDB; replay: npm run sim -- --storage leveldb --seed ${seed}${flag}`,
  );
  return [...replays, '', ...r.failures].join('\n');
}

describe('raft simulation on LevelDB storage', () => {
  it(`default seeds 1..${LEVELDB_DEFAULT_SEEDS} keep every invariant, recover from the reopened database, and converge`, async () => {
    const r = await runSeedBatchAsync(1, LEVELDB_DEFAULT_SEEDS, { pinned: LEVELDB });
    expect(r.failedSeeds, report(r, SimProfile.Default)).toEqual([]);
    // The paths this file exists for were all taken.
    expect(r.totals.crashes).toBeGreaterThan(0);
    expect(r.totals.snapshotsInstalled).toBeGreaterThan(0);
    expect(r.totals.membershipChanges).toBeGreaterThan(0);
    const disk = r.diskTotals!;
    expect(disk.creates).toBeGreaterThanOrEqual(LEVELDB_DEFAULT_SEEDS * 3);
    expect(disk.reopens).toBeGreaterThan(0);
    expect(disk.snapshots).toBeGreaterThan(0);
    expect(disk.backgroundReads).toBeGreaterThan(0);
    expect(disk.heldReads).toBeGreaterThan(0);
  });

  it(`crash-heavy seeds 1..${LEVELDB_CRASH_HEAVY_SEEDS} lose nothing acknowledged across many reopens`, async () => {
    const r = await runSeedBatchAsync(1, LEVELDB_CRASH_HEAVY_SEEDS, {
      pinned: LEVELDB,
      profile: SimProfile.CrashHeavy,
    });
    expect(r.failedSeeds, report(r, SimProfile.CrashHeavy)).toEqual([]);
    expect(r.diskTotals!.reopens).toBeGreaterThan(LEVELDB_CRASH_HEAVY_SEEDS * 10);
  });

  it('is deterministic: the same seed gives the same run on LevelDB, trace and all', async () => {
    // Seed 5 crashes often and keeps 256 bytes of log in memory, so reads wait on the disk.
    const traceA: string[] = [];
    const traceB: string[] = [];
    const a = await runSeedAsync(5, { pinned: LEVELDB, traceSink: (l) => traceA.push(l) });
    const b = await runSeedAsync(5, { pinned: LEVELDB, traceSink: (l) => traceB.push(l) });
    expect(a.failure).toBeNull();
    expect(a.stats.crashes).toBeGreaterThan(0);
    expect(a.disk!.backgroundReads).toBeGreaterThan(0);
    expect(traceA.length).toBeGreaterThan(1000);
    expect(traceB).toEqual(traceA);
    expect(b.stats).toEqual(a.stats);
    expect(b.disk).toEqual(a.disk);
  });

  it('is not vacuous: a driver that sends before its group commit is synced loses acknowledged entries', async () => {
    let caught: { seed: number; code: string } | null = null;
    for (let seed = 1; seed <= 30 && caught === null; seed++) {
      const r = await runSeedAsync(seed, {
        pinned: {
          storage: StorageBackend.LevelDb,
          driverFault: DriverFault.SendBeforeSync,
          faults: true,
          nemesis: crashHeavyNemesis(10),
          fsyncImmediateProbability: 0,
          fsyncStepsMax: 3,
          faultSteps: 1500,
        },
      });
      if (r.failure !== null) caught = { seed, code: r.failure.code };
    }
    expect(caught, 'send-before-sync was never caught on LevelDB').not.toBeNull();
    expect([FailureCode.CommittedChanged, FailureCode.Liveness, FailureCode.ElectionSafety]).toContain(
      caught!.code,
    );
  });
});
