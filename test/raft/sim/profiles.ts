/**
 * SimProfile names a family of runs that stress one area harder than the seed's own draw
 * would: crash-heavy durability, tiny limits (flow control and chunking), no pre-vote or
 * check-quorum (more disruptive elections), constant membership churn, and long pauses. A profile pins
 * some options on top of what the seed draws, so `--profile P --seed N` replays exactly.
 */
import { ReadOnlyOption } from '../../../src/raft/index.js';
import { crashHeavyNemesis, type SimOptions } from './sim-options.js';

/** SimProfile is the catalogue of profiles. */
export const SimProfile = {
  /** The seed's own draw, nothing pinned. */
  Default: 'default',
  /** Frequent short crashes and pauses, on top of partitions (crashHeavyNemesis). */
  CrashHeavy: 'crash-heavy',
  /** One message in flight, one-byte message and apply budgets, 8-byte snapshot chunks. */
  TinyLimits: 'tiny-limits',
  /** Pre-vote and check-quorum off, with the crash-heavy nemesis. */
  NoPreVote: 'no-prevote',
  /** Up to 30 membership changes, a few election timeouts apart, and frequent leader transfers. */
  MembershipChurn: 'membership-churn',
  /** Long, frequent pauses (stale leaders waking up), many reads, pre-vote and check-quorum off. */
  PauseHeavy: 'pause-heavy',
  /**
   * Lease-based reads, with what leases assume: check-quorum on, clocks that never drift or
   * pause (every replica ticks every step). Reads are frequent.
   */
  LeaseReads: 'lease-reads',
} as const;
export type SimProfile = (typeof SimProfile)[keyof typeof SimProfile];

/** profilePins returns what `profile` pins, given the options the seed drew (`drawn`). */
export function profilePins(profile: SimProfile, drawn: SimOptions): Partial<SimOptions> {
  const et = drawn.raft.electionTicks;
  switch (profile) {
    case SimProfile.Default:
      return {};
    case SimProfile.CrashHeavy:
      return { faults: true, nemesis: crashHeavyNemesis(et) };
    case SimProfile.TinyLimits:
      return {
        raft: {
          ...drawn.raft,
          maxInflightMsgs: 1,
          maxMsgBytes: 1,
          snapshotChunkBytes: 8,
          maxUncommittedBytes: 64,
          maxCommittedBytesPerReady: 1,
        },
      };
    case SimProfile.NoPreVote:
      return {
        faults: true,
        nemesis: crashHeavyNemesis(et),
        raft: { ...drawn.raft, preVote: false, checkQuorum: false },
      };
    case SimProfile.MembershipChurn:
      return { membershipChangesMax: 30, membershipIntervalSteps: et * 3, transferProbability: 0.01 };
    case SimProfile.LeaseReads:
      return {
        readProbability: 0.2,
        tickProbabilityMin: 1,
        raft: { ...drawn.raft, checkQuorum: true, readOnlyOption: ReadOnlyOption.LeaseBased },
        nemesis: { ...drawn.nemesis, pauseProbability: 0 },
      };
    case SimProfile.PauseHeavy:
      return {
        faults: true,
        readProbability: 0.2,
        raft: { ...drawn.raft, preVote: false, checkQuorum: false },
        nemesis: {
          ...crashHeavyNemesis(et),
          crashProbability: 0.005,
          pauseProbability: 0.02,
          pauseMeanSteps: et * 6,
        },
      };
  }
}
