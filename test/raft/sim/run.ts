/**
 * runSeed runs one whole simulation: a fault phase of `faultSteps` steps, then the liveness
 * phase. The run is a pure function of the seed and the pinned options: the same inputs give
 * the same trace. On failure it replays the seed with tracing on, to report the trace tail.
 */
import { SeededRandom } from '../../../src/random.js';
import { Cluster } from './cluster.js';
import { runLiveness } from './liveness.js';
import { profilePins, SimProfile } from './profiles.js';
import { FailureCode, SimFailure } from './sim-failure.js';
import { DriverFault, drawSimOptions, type SimOptions } from './sim-options.js';
import { TRACE_OFF, TRACE_TAIL_LINES_DEFAULT, Trace } from './trace.js';

/** RunStats summarises a run. */
export interface RunStats {
  readonly steps: number;
  readonly livenessSteps: number;
  readonly proposalsCommitted: number;
  readonly readsServed: number;
  readonly leaders: number;
  readonly crashes: number;
  readonly partitions: number;
  readonly pauses: number;
  readonly snapshotsInstalled: number;
  readonly membershipChanges: number;
  readonly packetsDelivered: number;
}

/** RunFailure describes a failed run. */
export interface RunFailure {
  readonly code: FailureCode;
  readonly message: string;
  readonly step: number;
  /** The last trace lines before the failure (empty unless traced). */
  readonly traceTail: readonly string[];
  readonly stack: string | undefined;
}

/** RunResult is the outcome of one seed. */
export interface RunResult {
  readonly seed: number;
  /** The CLI flags, beyond --seed, that replay this run exactly. */
  readonly replayFlags: string;
  readonly options: SimOptions;
  readonly stats: RunStats;
  readonly failure: RunFailure | null;
}

/** RunConfig chooses how to run a seed. */
export interface RunConfig {
  /** The profile whose pins apply first (default: none). */
  readonly profile?: SimProfile;
  /** Options to pin over those drawn from the seed (and over the profile's). */
  readonly pinned?: Partial<SimOptions>;
  /** Record a trace (and keep its tail for a failure report). */
  readonly trace?: boolean;
  /** Echo every trace line here (the CLI's --verbose). */
  readonly traceSink?: (line: string) => void;
  /** How many trace lines a failure keeps. */
  readonly traceTailLines?: number;
  /** CLI flags that pinned options (say `--steps 500`), repeated in the replay command. */
  readonly replayFlags?: string;
}

/** optionsForSeed draws the options a seed runs with, then applies the profile and the pins. */
export function optionsForSeed(
  seed: number,
  pinned: Partial<SimOptions> = {},
  profile: SimProfile = SimProfile.Default,
): SimOptions {
  // A separate stream from the cluster's, so pinning an option does not change the others.
  const drawn = drawSimOptions(new SeededRandom(seed ^ 0x5eed_0f57));
  return { ...drawn, ...profilePins(profile, drawn), ...pinned };
}

/** runSeed runs one seed once, as configured. */
export function runSeed(seed: number, config: RunConfig = {}): RunResult {
  const options = optionsForSeed(seed, config.pinned, config.profile);
  const tailLines = config.traceTailLines ?? TRACE_TAIL_LINES_DEFAULT;
  const trace =
    config.trace === true || config.traceSink !== undefined
      ? new Trace(true, Math.max(tailLines, 1), config.traceSink)
      : TRACE_OFF;
  const cluster = new Cluster(seed, options, trace);
  let failure: RunFailure | null = null;
  let livenessSteps = 0;
  try {
    while (cluster.now < options.faultSteps) cluster.step();
    livenessSteps = runLiveness(cluster);
  } catch (err) {
    const code = err instanceof SimFailure ? err.code : FailureCode.Exception;
    const message = err instanceof Error ? err.message : String(err);
    failure = {
      code,
      message,
      step: cluster.now,
      traceTail: trace.enabled ? trace.tail(tailLines) : [],
      stack:
        err instanceof Error && (!(err instanceof SimFailure) || err.code === FailureCode.Exception)
          ? err.stack
          : undefined,
    };
  }
  let snapshotsInstalled = 0;
  for (const r of cluster.replicas.values()) snapshotsInstalled += r.stats.snapshotsInstalled;
  return {
    seed,
    replayFlags: replayFlagsFor(config, options),
    options,
    failure,
    stats: {
      steps: cluster.now,
      livenessSteps,
      proposalsCommitted: cluster.clients.stats.committed,
      readsServed: cluster.clients.stats.readsServed,
      leaders: cluster.checker.stats.leaders,
      crashes: cluster.nemesis.stats.crashes,
      partitions: cluster.nemesis.stats.partitions,
      pauses: cluster.nemesis.stats.pauses,
      snapshotsInstalled,
      membershipChanges: cluster.membership.stats.committed,
      packetsDelivered: cluster.network.stats.delivered,
    },
  };
}

/**
 * runSeedReported runs a seed fast (no trace); if it fails, it replays the seed with tracing
 * on and returns that run, whose failure carries the trace tail. Determinism makes the
 * replay fail identically; if it does not, that is reported as a failure of its own.
 */
export function runSeedReported(seed: number, config: RunConfig = {}): RunResult {
  const fast = runSeed(seed, config);
  if (fast.failure === null || config.trace === true) return fast;
  const traced = runSeed(seed, { ...config, trace: true });
  if (
    traced.failure === null ||
    traced.failure.step !== fast.failure.step ||
    traced.failure.message !== fast.failure.message
  ) {
    return {
      ...fast,
      failure: {
        ...fast.failure,
        message: `${fast.failure.message} [NONDETERMINISTIC: the traced replay ended differently: ${traced.failure?.message ?? 'passed'}]`,
      },
    };
  }
  return traced;
}

/** formatFailure renders a failed run for humans, ending with the replay command. */
export function formatFailure(result: RunResult): string {
  const f = result.failure;
  if (f === null) return `seed=${result.seed} ok`;
  const o = result.options;
  const lines = [
    `seed=${result.seed} FAILED at step ${f.step}: ${f.message}`,
    `  cluster: ${o.nodeCount} voters, faults=${o.faults}, electionTicks=${o.raft.electionTicks}, ` +
      `checkQuorum=${o.raft.checkQuorum}, preVote=${o.raft.preVote}, driverFault=${o.driverFault}`,
  ];
  if (f.stack !== undefined) lines.push(f.stack);
  if (f.traceTail.length > 0) {
    lines.push(`  last ${f.traceTail.length} trace lines:`);
    for (const l of f.traceTail) lines.push(`    ${l}`);
  }
  lines.push(`replay: npm run sim -- --seed ${result.seed}${result.replayFlags} --verbose`);
  return lines.join('\n');
}

function replayFlagsFor(config: RunConfig, options: SimOptions): string {
  let flags = '';
  if (config.profile !== undefined && config.profile !== SimProfile.Default)
    flags += ` --profile ${config.profile}`;
  if (options.driverFault !== DriverFault.None) flags += ` --driver-fault ${options.driverFault}`;
  if (config.replayFlags !== undefined && config.replayFlags !== '') flags += ` ${config.replayFlags}`;
  return flags;
}
