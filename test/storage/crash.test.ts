/**
 * Crash test for the log (issue 3): a child appends and acknowledges entries through group
 * commit as fast as it can and is SIGKILLed at random moments; after every kill the data
 * directory must hold every acknowledged entry intact (content and term), contiguous, with
 * the acknowledged hard state, and nothing torn: either exactly the acknowledged state or
 * that plus the one round in flight, for all groups at once. DKV_CRASH_SEED replays a
 * campaign's plan (kill timing is real time, so a replay is close, not exact);
 * DKV_CRASH_ROUNDS sets the number of kills.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { randomSeed } from '../../src/random.js';
import { killAllChildren, removeTempDirs, runCampaign } from './crash-harness.js';

const ROUNDS = Number(process.env.DKV_CRASH_ROUNDS ?? 50);
const SEED = process.env.DKV_CRASH_SEED ? Number(process.env.DKV_CRASH_SEED) : randomSeed();

let campaign = new AbortController();
afterEach(async () => {
  campaign.abort();
  campaign = new AbortController();
  await killAllChildren();
  removeTempDirs();
});

describe('crash safety of the log', () => {
  it(`keeps every acknowledged entry and hard state across ${ROUNDS} SIGKILLs (seed=${SEED})`, async () => {
    const summary = await runCampaign({
      seed: SEED,
      mode: 'log',
      rounds: ROUNDS,
      lanes: 2,
      signal: campaign.signal,
      roundsPerDir: 5,
    });
    console.log(`crash log seed=${SEED}`, JSON.stringify(summary));
    expect(summary.rounds).toBe(ROUNDS);
    expect(summary.ackedEntries).toBeGreaterThan(0);
    expect(summary.ackedConflicts).toBeGreaterThan(0);
  });
});
