/**
 * The simulator's command line (`npm run sim -- ...`):
 *
 *   --seeds N [--start S]   run seeds S..S+N-1 (S defaults to 1) and report seeds/minute
 *   --seed N [--verbose]    replay one seed; --verbose prints the whole trace
 *   --bench                 measure committed proposals per CPU-second (3 voters, no faults)
 *   --profile P             stress one area (see profiles.ts); failures name it in the replay line
 *   --storage leveldb       keep every node's log in a real LevelDB (reopened after each crash)
 *
 * Any failure prints its seed and replay command, and the exit code is non-zero.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { runBench } from './bench.js';
import { SimProfile } from './profiles.js';
import { formatFailure, type RunConfig, runSeedAsync, runSeedReportedAsync } from './run.js';
import { DriverFault, type SimOptions, StorageBackend } from './sim-options.js';

/** PROGRESS_INTERVAL_MS is how often a long run prints a progress line. */
const PROGRESS_INTERVAL_MS = 2000;

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
}

interface CliOptions {
  seed?: number;
  seeds?: number;
  start: number;
  verbose: boolean;
  bench: boolean;
  benchSteps: number;
  steps?: number;
  nodes?: number;
  driverFault: DriverFault;
  profile: SimProfile;
  traceLines: number;
  failFast: boolean;
  storage: StorageBackend;
}

function pinnedFrom(o: CliOptions): Partial<SimOptions> {
  const pinned: { -readonly [K in keyof SimOptions]?: SimOptions[K] } = {
    driverFault: o.driverFault,
    storage: o.storage,
  };
  if (o.steps !== undefined) pinned.faultSteps = o.steps;
  if (o.nodes !== undefined) pinned.nodeCount = o.nodes;
  return pinned;
}

/** replayFlagsOf repeats the pinning flags (other than profile, driver fault and storage, which runs name). */
function replayFlagsOf(o: CliOptions): string {
  const flags: string[] = [];
  if (o.steps !== undefined) flags.push(`--steps ${o.steps}`);
  if (o.nodes !== undefined) flags.push(`--nodes ${o.nodes}`);
  return flags.join(' ');
}

async function replayOne(seed: number, o: CliOptions): Promise<number> {
  const config: RunConfig = {
    profile: o.profile,
    pinned: pinnedFrom(o),
    replayFlags: replayFlagsOf(o),
    traceTailLines: o.traceLines,
    ...(o.verbose ? { traceSink: (line: string) => console.log(line) } : { trace: true }),
  };
  const t0 = performance.now();
  const r = await runSeedAsync(seed, config);
  const ms = performance.now() - t0;
  if (r.failure !== null) {
    console.log(formatFailure(o.verbose ? { ...r, failure: { ...r.failure, traceTail: [] } } : r));
    return 1;
  }
  const disk = r.disk === null ? '' : ` disk: ${JSON.stringify(r.disk)}`;
  console.log(`seed=${seed} ok in ${ms.toFixed(0)} ms: ${JSON.stringify(r.stats)}${disk}`);
  return 0;
}

async function runMany(o: CliOptions, count: number): Promise<number> {
  const pinned = pinnedFrom(o);
  const failed: number[] = [];
  const t0 = performance.now();
  let lastProgress = t0;
  let done = 0;
  for (let seed = o.start; seed < o.start + count; seed++) {
    const r = await runSeedReportedAsync(seed, {
      profile: o.profile,
      pinned,
      traceTailLines: o.traceLines,
      replayFlags: replayFlagsOf(o),
    });
    done++;
    if (r.failure !== null) {
      failed.push(seed);
      console.log(formatFailure(r));
      if (o.failFast) break;
    }
    const now = performance.now();
    if (now - lastProgress >= PROGRESS_INTERVAL_MS) {
      lastProgress = now;
      const perMinute = (done / (now - t0)) * 60_000;
      console.log(
        `progress: ${done}/${count} seeds, ${failed.length} failed, ${perMinute.toFixed(0)} seeds/minute`,
      );
    }
  }
  const minutes = (performance.now() - t0) / 60_000;
  console.log(
    `done: ${done} seeds (${o.start}..${o.start + done - 1}), ${failed.length} failed, ` +
      `${(done / minutes).toFixed(0)} seeds/minute`,
  );
  if (failed.length > 0) console.log(`failed seeds: ${failed.join(' ')}`);
  return failed.length > 0 ? 1 : 0;
}

function bench(o: CliOptions): number {
  if (o.storage !== StorageBackend.Memory) {
    console.log('--bench measures the core on the memory backend; drop --storage');
    return 1;
  }
  const r = runBench(o.seed ?? 1, o.benchSteps);
  console.log(
    `bench: 3 voters, no faults, ${r.steps} steps: ${r.proposalsCommitted} proposals committed in ` +
      `${r.cpuSeconds.toFixed(2)} CPU-s (${r.wallSeconds.toFixed(2)} s wall): ` +
      `${r.proposalsPerCpuSecond.toFixed(0)} committed proposals per CPU-second`,
  );
  if (r.failure !== null) {
    console.log(`bench run failed: ${r.failure}`);
    return 1;
  }
  return 0;
}

async function main(argv: readonly string[]): Promise<number> {
  const program = new Command()
    .name('sim')
    .description('Deterministic whole-cluster simulation of the Raft core (VOPR style).')
    .option('--seed <n>', 'replay one seed', positiveInt)
    .option('--seeds <n>', 'run this many seeds', positiveInt)
    .option('--start <n>', 'first seed of --seeds', positiveInt, 1)
    .option('--verbose', 'with --seed: print the whole trace', false)
    .option('--bench', 'measure committed proposals per CPU-second', false)
    .option('--bench-steps <n>', 'steps of the benchmark run', positiveInt, 20_000)
    .option('--steps <n>', 'steps of the fault phase (default: drawn per seed)', positiveInt)
    .option('--nodes <n>', 'voters at start (3 or 5; default: drawn per seed)', positiveInt)
    .addOption(
      new Option('--profile <profile>', 'pin options that stress one area')
        .choices(Object.values(SimProfile))
        .default(SimProfile.Default),
    )
    .addOption(
      new Option('--driver-fault <fault>', 'plant a broken driver (to see the checker fire)')
        .choices(Object.values(DriverFault))
        .default(DriverFault.None),
    )
    .addOption(
      new Option('--storage <backend>', "where the replicas' logs live")
        .choices(Object.values(StorageBackend))
        .default(StorageBackend.Memory),
    )
    .option('--trace-lines <n>', 'trace lines shown with a failure', positiveInt, 60)
    .option('--fail-fast', 'stop at the first failing seed', false)
    .parse(argv);
  const o = program.opts<CliOptions>();
  if (o.bench) return bench(o);
  if (o.seed !== undefined) return replayOne(o.seed, o);
  return runMany(o, o.seeds ?? 100);
}

process.exitCode = await main(process.argv);
