import { describe, expect, it } from 'vitest';
import { runSeed } from './run.js';
import { FailureCode } from './sim-failure.js';
import { crashHeavyNemesis, DriverFault } from './sim-options.js';

/**
 * The checker must not be vacuous: each test plants a broken replica driver (breaking the
 * Ready contract from outside the core) and requires the simulator to catch it within a
 * bounded number of seeds, with the right kind of failure.
 */
function firstFailure(
  fault: DriverFault,
  seedsMax: number,
): { seed: number; code: string; message: string } | null {
  for (let seed = 1; seed <= seedsMax; seed++) {
    const r = runSeed(seed, {
      pinned: {
        driverFault: fault,
        faults: true,
        nemesis: crashHeavyNemesis(10),
        fsyncImmediateProbability: 0,
        fsyncStepsMax: 3,
        faultSteps: 1500,
      },
    });
    if (r.failure !== null) return { seed, code: r.failure.code, message: r.failure.message };
  }
  return null;
}

describe('planted driver bugs are caught', () => {
  it('a replica that sends before its fsync completes loses acknowledged entries in a crash', () => {
    const f = firstFailure(DriverFault.SendBeforeSync, 60);
    expect(f, 'send-before-sync was never caught').not.toBeNull();
    expect([FailureCode.CommittedChanged, FailureCode.Liveness, FailureCode.ElectionSafety]).toContain(
      f!.code,
    );
  });

  it('a replica that votes twice in a term lets two leaders win it', () => {
    const f = firstFailure(DriverFault.DoubleVote, 20);
    expect(f, 'double-vote was never caught').not.toBeNull();
    expect([FailureCode.ElectionSafety, FailureCode.CommittedChanged]).toContain(f!.code);
  });

  it('a replica that serves reads before applying up to the read index serves stale reads', () => {
    const f = firstFailure(DriverFault.ServeReadsEarly, 60);
    expect(f, 'serve-reads-early was never caught').not.toBeNull();
    expect(f!.code).toBe(FailureCode.StaleRead);
  });

  it('the same harsh settings with a correct driver pass', () => {
    expect(firstFailure(DriverFault.None, 20)).toBeNull();
  });
});
