/**
 * runBench measures the core's throughput in the simulator: a three-voter, fault-free
 * cluster with many clients, so the leader batches proposals. It reports committed
 * proposals per CPU-second (process.cpuUsage: user plus system), which includes the
 * simulator's own overhead (network heap, checker) and so is a lower bound for the core.
 */

import { ReadOnlyOption } from '../../../src/raft/index.js';
import { runSeed } from './run.js';
import type { SimOptions } from './sim-options.js';

/** BenchResult is one benchmark measurement. */
export interface BenchResult {
  readonly steps: number;
  readonly proposalsCommitted: number;
  readonly cpuSeconds: number;
  readonly wallSeconds: number;
  readonly proposalsPerCpuSecond: number;
  readonly failure: string | null;
}

/** BENCH_CLIENTS is how many clients keep a proposal in flight in the benchmark. */
export const BENCH_CLIENTS = 256;

/** benchOptions are the pinned options of the benchmark run. */
export function benchOptions(steps: number): Partial<SimOptions> {
  return {
    nodeCount: 3,
    faults: false,
    faultSteps: steps,
    network: {
      delayMinSteps: 1,
      delayMeanSteps: 1,
      delayMaxSteps: 1,
      replayDelayMaxSteps: 1,
      inFlightMax: 1 << 16,
      pathInFlightMax: 4096,
    },
    raft: {
      electionTicks: 10,
      heartbeatTicks: 2,
      maxMsgBytes: 256 * 1024,
      maxInflightMsgs: 64,
      maxUncommittedBytes: 8 << 20,
      maxCommittedBytesPerReady: 4 << 20,
      snapshotChunkBytes: 64 * 1024,
      checkQuorum: true,
      preVote: true,
      readOnlyOption: ReadOnlyOption.Safe,
      coalesceAppends: true,
    },
    tickProbabilityMin: 1,
    fsyncImmediateProbability: 1,
    clientCount: BENCH_CLIENTS,
    proposeProbability: 1,
    readProbability: 0,
    clientTimeoutSteps: 1000,
    payloadFillerBytesMax: 60,
    snapshotEveryEntries: 1_000_000_000,
    snapshotKeepEntries: 1000,
    membershipChangesMax: 0,
    transferProbability: 0,
  };
}

/** runBench runs the benchmark for `steps` steps on `seed`. */
export function runBench(seed: number, steps: number): BenchResult {
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  const r = runSeed(seed, { pinned: benchOptions(steps) });
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  return {
    steps: r.stats.steps,
    proposalsCommitted: r.stats.proposalsCommitted,
    cpuSeconds,
    wallSeconds: (performance.now() - wall0) / 1000,
    proposalsPerCpuSecond: r.stats.proposalsCommitted / cpuSeconds,
    failure: r.failure === null ? null : `${r.failure.code}: ${r.failure.message}`,
  };
}
