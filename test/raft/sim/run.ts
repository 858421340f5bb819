/**
 * runSeed runs one whole simulation: a fault phase of `faultSteps` steps, then the liveness
 * phase. The run is a pure function of the seed and the pinned options: the same inputs give
 * the same trace. On failure it replays the seed with tracing on, to report the trace tail.
 *
 * The leveldb backend runs through `runSeedAsync`: each node's log lives in a real LevelDB
 * in a temporary directory, removed when the run ends, whether it passed or not.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SeededRandom } from '../../../src/random.js';
import { Cluster } from './cluster.js';
import { LevelDisk, type LevelDiskStats } from './level-disk.js';
import { runLiveness, runLivenessAsync } from './liveness.js';
import { profilePins, SimProfile } from './profiles.js';
import { FailureCode, SimFailure } from './sim-failure.js';
import { DriverFault, drawSimOptions, type SimOptions, StorageBackend } from './sim-options.js';
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
  /** What the LevelDB disks did, summed over the nodes (null with the memory backend). */
  readonly disk: LevelDiskStats | null;
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

/** runSeed runs one seed once, as configured, on the memory backend (see runSeedAsync). */
export function runSeed(seed: number, config: RunConfig = {}): RunResult {
  const options = optionsForSeed(seed, config.pinned, config.profile);
  if (options.storage !== StorageBackend.Memory) {
    throw new Error(`runSeed: the ${options.storage} backend is asynchronous; use runSeedAsync`);
  }
  const tailLines = config.traceTailLines ?? TRACE_TAIL_LINES_DEFAULT;
  const trace = traceFor(config, tailLines);
  const cluster = new Cluster(seed, options, trace);
  let failure: RunFailure | null = null;
  let livenessSteps = 0;
  try {
    while (cluster.now < options.faultSteps) cluster.step();
    livenessSteps = runLiveness(cluster);
  } catch (err) {
    failure = failureOf(err, cluster.now, trace, tailLines);
  }
  return resultOf(seed, config, cluster, livenessSteps, failure);
}

/**
 * runSeedAsync runs one seed once, on whichever backend its options name. On LevelDB every
 * node gets a directory under a fresh temporary one, removed when the run ends.
 */
export async function runSeedAsync(seed: number, config: RunConfig = {}): Promise<RunResult> {
  const options = optionsForSeed(seed, config.pinned, config.profile);
  if (options.storage === StorageBackend.Memory) return runSeed(seed, config);
  const tailLines = config.traceTailLines ?? TRACE_TAIL_LINES_DEFAULT;
  const trace = traceFor(config, tailLines);
  const root = await mkdtemp(join(tmpdir(), `dkv-sim-${seed}-`));
  // The disks' own stream, apart from the cluster's, so that memory and LevelDB runs draw alike.
  const diskRandom = new SeededRandom(seed ^ 0x0d15_c0de);
  try {
    const cluster = new Cluster(
      seed,
      options,
      trace,
      (id, confState) => new LevelDisk(join(root, `n${id}`), options.level, confState, diskRandom.fork()),
    );
    let failure: RunFailure | null = null;
    let livenessSteps = 0;
    try {
      await cluster.settle(cluster.now);
      while (cluster.now < options.faultSteps) await cluster.stepAsync();
      livenessSteps = await runLivenessAsync(cluster);
    } catch (err) {
      failure = failureOf(err, cluster.now, trace, tailLines);
    }
    try {
      await cluster.shutdown();
    } catch (err) {
      failure ??= failureOf(err, cluster.now, trace, tailLines);
    }
    return resultOf(seed, config, cluster, livenessSteps, failure);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

function traceFor(config: RunConfig, tailLines: number): Trace {
  return config.trace === true || config.traceSink !== undefined
    ? new Trace(true, Math.max(tailLines, 1), config.traceSink)
    : TRACE_OFF;
}

function failureOf(err: unknown, step: number, trace: Trace, tailLines: number): RunFailure {
  const code = err instanceof SimFailure ? err.code : FailureCode.Exception;
  const message = err instanceof Error ? err.message : String(err);
  return {
    code,
    message,
    step,
    traceTail: trace.enabled ? trace.tail(tailLines) : [],
    stack:
      err instanceof Error && (!(err instanceof SimFailure) || err.code === FailureCode.Exception)
        ? err.stack
        : undefined,
  };
}

function resultOf(
  seed: number,
  config: RunConfig,
  cluster: Cluster,
  livenessSteps: number,
  failure: RunFailure | null,
): RunResult {
  const options = cluster.options;
  let snapshotsInstalled = 0;
  for (const r of cluster.replicas.values()) snapshotsInstalled += r.stats.snapshotsInstalled;
  return {
    seed,
    replayFlags: replayFlagsFor(config, options),
    options,
    failure,
    disk: diskStatsOf(cluster),
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

function diskStatsOf(cluster: Cluster): LevelDiskStats | null {
  if (cluster.options.storage === StorageBackend.Memory) return null;
  const sum: LevelDiskStats = {
    creates: 0,
    reopens: 0,
    commits: 0,
    snapshots: 0,
    backgroundReads: 0,
    heldReads: 0,
  };
  for (const r of cluster.replicas.values()) {
    if (r.disk === null) continue;
    for (const k of Object.keys(sum) as (keyof LevelDiskStats)[]) sum[k] += r.disk.stats[k];
  }
  return sum;
}

/**
 * runSeedReported runs a seed fast (no trace); if it fails, it replays the seed with tracing
 * on and returns that run, whose failure carries the trace tail. Determinism makes the
 * replay fail identically; if it does not, that is reported as a failure of its own.
 */
export function runSeedReported(seed: number, config: RunConfig = {}): RunResult {
  const fast = runSeed(seed, config);
  if (fast.failure === null || config.trace === true) return fast;
  return withTracedReplay(fast, runSeed(seed, { ...config, trace: true }));
}

/** runSeedReportedAsync is runSeedReported on any backend. */
export async function runSeedReportedAsync(seed: number, config: RunConfig = {}): Promise<RunResult> {
  const fast = await runSeedAsync(seed, config);
  if (fast.failure === null || config.trace === true) return fast;
  return withTracedReplay(fast, await runSeedAsync(seed, { ...config, trace: true }));
}

function withTracedReplay(fast: RunResult, traced: RunResult): RunResult {
  if (fast.failure === null) return fast;
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
  if (o.storage !== StorageBackend.Memory) {
    const k = o.level;
    lines.push(
      `  storage: ${o.storage}, cacheBytesMax=${k.cacheBytesMax}, fetchBytesMax=${k.fetchBytesMax}, ` +
        `snapshotChunkBytes=${k.snapshotChunkBytes}, snapshotPartBytes=${k.snapshotPartBytes}, ` +
        `holdReadProbability=${k.holdReadProbability}`,
    );
  }
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
  if (options.storage !== StorageBackend.Memory) flags += ` --storage ${options.storage}`;
  if (config.replayFlags !== undefined && config.replayFlags !== '') flags += ` ${config.replayFlags}`;
  return flags;
}
