/**
 * Crash test for snapshots (issue 3): the child of crash.test.ts, in `snapshot` mode, also
 * takes multi-chunk local snapshots while it appends and installs leader snapshots. Kills
 * are aimed at snapshot writes as well as at random moments. After every kill the directory
 * must hold the acknowledged state, or that plus what was in flight: the snapshot's image
 * reads back and matches its checksum and content, firstIndex-1 <= snapshot index <=
 * lastIndex, the retained entries are intact, and no chunk of an unfinished snapshot is
 * left behind. DKV_CRASH_SEED and DKV_CRASH_SNAPSHOT_ROUNDS as in crash.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { randomSeed } from '../../src/random.js';
import { killAllChildren, removeTempDirs, runCampaign } from './crash-harness.js';

const ROUNDS = Number(process.env.DKV_CRASH_SNAPSHOT_ROUNDS ?? 30);
const SEED = process.env.DKV_CRASH_SEED ? Number(process.env.DKV_CRASH_SEED) : randomSeed();

let campaign = new AbortController();
afterEach(async () => {
  campaign.abort();
  campaign = new AbortController();
  await killAllChildren();
  removeTempDirs();
});

describe('crash safety of snapshots', () => {
  it(`recovers a consistent state after ${ROUNDS} SIGKILLs during snapshot writes and installs (seed=${SEED})`, async () => {
    const summary = await runCampaign({
      seed: SEED,
      mode: 'snapshot',
      rounds: ROUNDS,
      lanes: 2,
      signal: campaign.signal,
      roundsPerDir: 6,
    });
    console.log(`crash snapshot seed=${SEED}`, JSON.stringify(summary));
    expect(summary.rounds).toBe(ROUNDS);
    expect(summary.ackedSnapshots).toBeGreaterThan(0);
    expect(summary.ackedInstalls).toBeGreaterThan(0);
    // The kill plans aim at snapshot writes; some must have landed inside one.
    expect(summary.killedInLocalSnapshot + summary.killedInInstall).toBeGreaterThan(0);
  });
});
