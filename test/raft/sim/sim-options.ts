/**
 * SimOptions are every knob of one simulation run. `drawSimOptions` draws them from the
 * seed (TigerBeetle's VOPR style: the seed picks the cluster, the fault rates and the
 * workload), and callers may pin any of them.
 */
import { ReadOnlyOption } from '../../../src/raft/index.js';
import type { SeededRandom } from '../../../src/random.js';
import { pick, uniformInt } from './distributions.js';
import type { NemesisOptions } from './nemesis.js';
import { PartitionShape } from './partitions.js';
import type { NetworkOptions } from './sim-network.js';

/**
 * DriverFault plants a deliberate bug in the replica driver, to prove the checker is not
 * vacuous. Each one breaks the Ready contract from the outside, without touching the core.
 */
export const DriverFault = {
  None: 'none',
  /** Send a Ready's messages before its writes are durable: acks and votes can be lost in a crash. */
  SendBeforeSync: 'send-before-sync',
  /** Node 1 grants every vote it is asked for, even a second one in the same term. */
  DoubleVote: 'double-vote',
  /** Serve a read as soon as its ReadState arrives, even if the replica has not applied that far. */
  ServeReadsEarly: 'serve-reads-early',
} as const;
export type DriverFault = (typeof DriverFault)[keyof typeof DriverFault];

/**
 * StorageBackend is where each replica's log lives: MemoryStorage (the default, fast, fully
 * synchronous) or a real LevelDB NodeStorage per node in a temporary directory, reopened from
 * disk after every crash.
 */
export const StorageBackend = {
  Memory: 'memory',
  LevelDb: 'leveldb',
} as const;
export type StorageBackend = (typeof StorageBackend)[keyof typeof StorageBackend];

/** LevelKnobs are the LevelDB storage options the simulation varies (used by the leveldb backend only). */
export interface LevelKnobs {
  /** GroupStorage's in-memory entry cache; small values force on-demand reads of older entries. */
  readonly cacheBytesMax: number;
  /** The most bytes one on-demand read fetches. */
  readonly fetchBytesMax: number;
  /** The size of the chunks a snapshot is stored in (small: many chunks per snapshot). */
  readonly snapshotChunkBytes: number;
  /** The size of the parts the state machine streams its image in (each part is cut into chunks). */
  readonly snapshotPartBytes: number;
  /** Chance, at each point where background reads may land, that they are held longer (a slow disk). */
  readonly holdReadProbability: number;
}

/** RaftKnobs are the RaftConfig fields the simulation varies. */
export interface RaftKnobs {
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly maxMsgBytes: number;
  readonly maxInflightMsgs: number;
  readonly maxUncommittedBytes: number;
  readonly maxCommittedBytesPerReady: number;
  readonly snapshotChunkBytes: number;
  readonly checkQuorum: boolean;
  readonly preVote: boolean;
  /** How ReadIndex is confirmed; lease-based needs check-quorum and bounded clock drift. */
  readonly readOnlyOption: ReadOnlyOption;
  /** Whether each Ready merges a follower's consecutive appends into one (the node's setting). */
  readonly coalesceAppends: boolean;
}

/** SimOptions fix one run completely (together with the seed). */
export interface SimOptions {
  /** Voters at start (3 or 5). */
  readonly nodeCount: number;
  /** Steps with faults; then the liveness phase begins. */
  readonly faultSteps: number;
  /** The liveness phase must converge within this many ticks. */
  readonly livenessTicksMax: number;
  readonly network: NetworkOptions;
  readonly nemesis: NemesisOptions;
  /** Whether the nemesis runs at all (false for the benchmark). */
  readonly faults: boolean;
  readonly raft: RaftKnobs;
  /** Chance per step that a replica's clock ticks (models clock drift per node, below 1). */
  readonly tickProbabilityMin: number;
  /** Chance that a Ready's fsync completes in the same step; otherwise it takes 1..fsyncStepsMax. */
  readonly fsyncImmediateProbability: number;
  readonly fsyncStepsMax: number;
  readonly clientCount: number;
  /** Chance per step that an idle client proposes. */
  readonly proposeProbability: number;
  /** Chance per step that a client without a read in flight issues one. */
  readonly readProbability: number;
  /** A client gives up waiting for an acknowledgement after this many steps. */
  readonly clientTimeoutSteps: number;
  /** Filler bytes per payload are drawn up to this bound. */
  readonly payloadFillerBytesMax: number;
  /** A replica snapshots once it has applied this many entries past its last snapshot. */
  readonly snapshotEveryEntries: number;
  /** How many entries a replica keeps in its log behind a snapshot. */
  readonly snapshotKeepEntries: number;
  /** How many membership changes the run attempts. */
  readonly membershipChangesMax: number;
  /** Steps between membership changes. */
  readonly membershipIntervalSteps: number;
  /** Chance per step that the operator asks the leader to transfer leadership. */
  readonly transferProbability: number;
  readonly driverFault: DriverFault;
  /** Where the replicas' logs live. */
  readonly storage: StorageBackend;
  readonly level: LevelKnobs;
}

/**
 * crashHeavyNemesis is a nemesis that crashes nodes often and briefly, on top of short
 * partitions: the harshest setting for durability bugs (and for the planted driver faults).
 */
export function crashHeavyNemesis(electionTicks: number): NemesisOptions {
  return {
    partitionProbability: 0.02,
    partitionMeanSteps: electionTicks * 2,
    wholeMeanSteps: electionTicks * 2,
    shapeWeights: {
      [PartitionShape.Halves]: 1,
      [PartitionShape.IsolateOne]: 1,
      [PartitionShape.IsolateLeader]: 3,
      [PartitionShape.MajoritiesRing]: 1,
      [PartitionShape.Bridge]: 1,
    },
    clogProbability: 0.005,
    clogMeanSteps: electionTicks,
    lossProbability: 0.05,
    duplicateProbability: 0.05,
    replayProbability: 0.01,
    lossPeriodMeanSteps: electionTicks * 10,
    crashProbability: 0.03,
    crashLeaderBias: 0.3,
    downMeanSteps: electionTicks,
    downMax: 2,
    pauseProbability: 0.005,
    pauseMeanSteps: electionTicks * 2,
    durationMaxSteps: electionTicks * 20,
  };
}

/** SIM_STEPS_MIN is the shortest fault phase drawn for a seed. */
export const SIM_STEPS_MIN = 1000;
/** SIM_STEPS_MAX is the longest fault phase drawn for a seed. */
export const SIM_STEPS_MAX = 3000;

/** drawSimOptions draws a run's options from `random` (see optionsForSeed for pinning). */
export function drawSimOptions(random: SeededRandom): SimOptions {
  const electionTicks = uniformInt(random, 8, 16);
  const heartbeatTicks = uniformInt(random, 1, 3);
  const delayMeanSteps = uniformInt(random, 1, 4);
  const faulty = random.chance(0.9);
  const shapeWeights: Record<PartitionShape, number> = {
    [PartitionShape.Halves]: 3,
    [PartitionShape.IsolateOne]: 2,
    [PartitionShape.IsolateLeader]: 3,
    [PartitionShape.MajoritiesRing]: 2,
    [PartitionShape.Bridge]: 2,
  };
  const nodeCount = pick(random, [3, 3, 5] as const);
  const drawn: SimOptions = {
    nodeCount,
    faultSteps: uniformInt(random, SIM_STEPS_MIN, SIM_STEPS_MAX),
    livenessTicksMax: 200 * electionTicks,
    network: {
      delayMinSteps: 1,
      delayMeanSteps,
      delayMaxSteps: delayMeanSteps * 8,
      replayDelayMaxSteps: electionTicks * 20,
      inFlightMax: 8192,
      pathInFlightMax: 512,
    },
    nemesis: {
      partitionProbability: faulty ? pick(random, [0.005, 0.01, 0.03]) : 0,
      partitionMeanSteps: electionTicks * uniformInt(random, 2, 8),
      wholeMeanSteps: electionTicks * uniformInt(random, 1, 6),
      shapeWeights,
      clogProbability: faulty ? pick(random, [0, 0.002, 0.01]) : 0,
      clogMeanSteps: electionTicks * 2,
      lossProbability: faulty ? pick(random, [0, 0.02, 0.1, 0.25]) : 0,
      duplicateProbability: faulty ? pick(random, [0, 0.02, 0.1]) : 0,
      replayProbability: faulty ? pick(random, [0, 0.005, 0.02]) : 0,
      lossPeriodMeanSteps: electionTicks * 10,
      crashProbability: faulty ? pick(random, [0, 0.002, 0.005, 0.01]) : 0,
      crashLeaderBias: 0.3,
      downMeanSteps: electionTicks * uniformInt(random, 1, 10),
      downMax: pick(random, [1, 1, 2, nodeCount]),
      pauseProbability: faulty ? pick(random, [0, 0, 0.002, 0.005]) : 0,
      pauseMeanSteps: electionTicks * uniformInt(random, 1, 4),
      durationMaxSteps: electionTicks * 50,
    },
    faults: faulty,
    raft: {
      electionTicks,
      heartbeatTicks,
      maxMsgBytes: pick(random, [256, 1024, 64 * 1024]),
      maxInflightMsgs: pick(random, [2, 8, 64]),
      maxUncommittedBytes: pick(random, [2048, 16 * 1024, 1 << 20]),
      maxCommittedBytesPerReady: pick(random, [512, 1 << 20]),
      snapshotChunkBytes: pick(random, [64, 200, 1024]),
      checkQuorum: random.chance(0.75),
      preVote: random.chance(0.75),
      readOnlyOption: ReadOnlyOption.Safe,
      coalesceAppends: false, // drawn below
    },
    tickProbabilityMin: pick(random, [1, 0.9, 0.7]),
    fsyncImmediateProbability: pick(random, [1, 0.7, 0.3]),
    fsyncStepsMax: uniformInt(random, 1, 4),
    clientCount: uniformInt(random, 1, 6),
    proposeProbability: pick(random, [0.05, 0.2, 0.5]),
    readProbability: pick(random, [0.02, 0.1]),
    clientTimeoutSteps: electionTicks * 6,
    payloadFillerBytesMax: pick(random, [0, 16, 96]),
    snapshotEveryEntries: uniformInt(random, 10, 60),
    snapshotKeepEntries: uniformInt(random, 0, 8),
    membershipChangesMax: pick(random, [0, 2, 4, 6]),
    membershipIntervalSteps: electionTicks * uniformInt(random, 5, 20),
    transferProbability: pick(random, [0, 0.001, 0.005]),
    driverFault: DriverFault.None,
    storage: StorageBackend.Memory,
    // Drawn last, from a fork, so that the draws above are what they were before LevelDB existed.
    level: drawLevelKnobs(random.fork()),
  };
  // Drawn after everything else, from another fork, for the same reason: half the seeds
  // run with appends coalesced per Ready, as the node runs the core.
  return { ...drawn, raft: { ...drawn.raft, coalesceAppends: random.fork().chance(0.5) } };
}

/** drawLevelKnobs draws the LevelDB storage options; about half the seeds get a cache small enough to miss. */
export function drawLevelKnobs(random: SeededRandom): LevelKnobs {
  return {
    cacheBytesMax: pick(random, [256, 2048, 64 * 1024, 16 << 20]),
    fetchBytesMax: pick(random, [128, 1024, 1 << 20]),
    snapshotChunkBytes: pick(random, [64, 256, 1024]),
    snapshotPartBytes: pick(random, [100, 1000, 1 << 20]),
    holdReadProbability: pick(random, [0, 0.5, 0.8]),
  };
}
