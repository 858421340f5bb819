/**
 * The side-by-side benchmark (the `compare` suite of `npm run bench`): DKV, and with `--vs`
 * etcd and redis, driven by the same load generator in the same run on the same machine.
 *
 *     npx tsx bench/compare/main.ts [--vs etcd,redis] [--time S] [--concurrency 1,16,64,256]
 *         [--workloads put,get,get-serializable,incr,lock,mixed] [--quick] [--install]
 *
 * The systems run one after another, never side by side (an idle cluster still costs CPU on a
 * small box): start, fill the key space, every workload at every concurrency (a progress line
 * per point), stop and clean up. Missing servers are found before anything starts: the run
 * stops with what to install, or installs them with apt-get under --install. Then the summary
 * table and the goals (DKV/etcd ratios) are printed, and `<date>-compare.json` and
 * `<date>-compare.html` are written to bench/results (or --out); a `--quick` run adds
 * `-quick` to the name and a DKV-only run `-dkv`, so neither overwrites a full run's files.
 */
import { mkdirSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isDkvError } from '../../src/errors.js';
import { runPoint } from './loadgen.js';
import { type CompareOptions, parseCompareArgs } from './options.js';
import {
  type CompareReport,
  goalsMarkdown,
  goalsOf,
  type PointRecord,
  PROGRESS_HEADER,
  pointLine,
  type SystemInfo,
  summaryMarkdown,
  writeReport,
} from './report.js';
import {
  BINARIES,
  findExecutable,
  installPackages,
  killAllServers,
  makeTarget,
  notInstalledError,
  type SystemName,
  type Target,
} from './targets.js';
import { fillKeys, pickWorkloads, VALUE_BYTES } from './workloads.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** RESULTS_DIR is where results go by default. */
export const RESULTS_DIR = join(ROOT, 'bench', 'results');

/** NOTES go into every report: how each system was driven. */
const NOTES = [
  'One load generator process drives every system with one client each: DkvClient (requests to each group leader, serializable reads to the first server), etcd3 (calls spread over the 3 members at random; followers forward), ioredis (one pipelined connection).',
  'counter +1: DKV counter.add(1); etcd a compare-and-swap loop (get, then txn if mod_revision == r then put v+1 else get, retried); redis INCR.',
  'lock: DKV client.lock.acquire(name, {ttlMs: 10000}) then release(): a new lease per acquire (a free lock: one entry granting lease and lock; a taken one: lease grant, then lock.acquire queued FIFO by the server; release: one entry revoking the lease and releasing the lock). etcd: the lowest-revision mutex recipe (Go concurrency.Mutex) with a new 10 s lease per acquire (grant with keep-alive, txn put <name>/<lease>, wait for the deletion of the key created just before, release = revoke). Not on redis.',
  'watch: C is the number of watchers of one key (DKV client.watch, a server stream each; etcd3 watchers, multiplexed on one gRPC stream); one writer puts in a closed loop and an operation ends when every watcher has delivered the put: ops/s × C events/s.',
  'An operation counts when it ends inside the measured window; latencies are nearest-rank percentiles of those operations.',
  "CPU: the servers' user+system seconds per second (from /proc, summed over their processes) + the load generator's own (it shares the machine: every core it uses is one the servers do not get).",
];

/** CompareIo is where a run's lines go. */
export interface CompareIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

const stdio: CompareIo = {
  out: (line) => void process.stdout.write(`${line}\n`),
  err: (line) => void process.stderr.write(`${line}\n`),
};

/**
 * ensureInstalled checks every other system's server (NOT_FOUND saying what to install),
 * installing them with apt-get under --install. `find` and `installer` are for tests.
 */
export async function ensureInstalled(
  systems: readonly SystemName[],
  install: boolean,
  io: CompareIo,
  find: (binary: string) => string | undefined = (b) => findExecutable(b),
  installer: (say: (line: string) => void) => Promise<void> = installPackages,
): Promise<void> {
  const missing = systems.filter((s): s is Exclude<SystemName, 'dkv'> => s !== 'dkv' && !find(BINARIES[s]));
  if (missing.length === 0) return;
  if (!install) throw notInstalledError(missing);
  await installer(io.out);
  const still = missing.filter((s) => !find(BINARIES[s]));
  if (still.length > 0) throw notInstalledError(still);
}

/** runCompare runs the comparison and returns its report (the caller writes it). */
export async function runCompare(opts: CompareOptions, io: CompareIo = stdio): Promise<CompareReport> {
  const t0 = performance.now();
  const workloads = pickWorkloads(opts.workloads);
  await ensureInstalled(opts.systems, opts.install, io);
  const points: PointRecord[] = [];
  const systems: SystemInfo[] = [];
  const skipped: CompareReport['skipped'][number][] = [];
  const perPointS = opts.warmupS + opts.timeS;
  io.out(
    `compare: ${opts.systems.join(', ')}; workloads ${workloads.map((w) => w.name).join(', ')}; C ${opts.concurrency.join(', ')}; ${opts.warmupS} s warm-up + ${opts.timeS} s per point (about ${Math.ceil((perPointS * workloads.length * opts.concurrency.length * opts.systems.length) / 60)} min of points)`,
  );
  for (const system of opts.systems) {
    const target: Target = makeTarget(system);
    const started = performance.now();
    io.out(`\n== ${system} (${target.version || 'version unknown'}): ${target.describe}`);
    await target.start();
    const info: { -readonly [K in keyof SystemInfo]: SystemInfo[K] } = {
      name: system,
      version: target.version,
      describe: target.describe,
      startMs: Math.round(performance.now() - started),
    };
    systems.push(info);
    try {
      if (workloads.some((w) => w.needsFill && w.supports(target.ops))) {
        const f0 = performance.now();
        await fillKeys(target.ops, opts.keys);
        info.fillMs = Math.round(performance.now() - f0);
      }
      io.out(
        `started in ${(info.startMs / 1000).toFixed(1)} s${info.fillMs !== undefined ? `, ${opts.keys} keys filled in ${(info.fillMs / 1000).toFixed(1)} s` : ''}`,
      );
      io.out(PROGRESS_HEADER);
      for (const w of workloads) {
        if (!w.supports(target.ops)) {
          skipped.push({ system, workload: w.name, why: `${system} has no ${w.family} operation here` });
          io.out(
            `${system.padEnd(6)} ${w.name.padEnd(17)} skipped (${system} has no ${w.family} operation here)`,
          );
          continue;
        }
        for (const c of opts.concurrency) {
          const prepared = await w.prepare(target.ops, opts.keys, c);
          let r: Awaited<ReturnType<typeof runPoint>>;
          try {
            r = await runPoint(prepared.op, {
              concurrency: prepared.workers,
              warmupMs: opts.warmupS * 1000,
              measureMs: opts.timeS * 1000,
              pids: () => target.pids(),
            });
          } finally {
            await prepared.close();
          }
          // C is the workload's level (for fan-out: the watchers), not the loop's workers.
          const p: PointRecord = { system, workload: w.name, ...r, concurrency: c };
          points.push(p);
          io.out(pointLine(p));
        }
      }
    } finally {
      await target.stop();
    }
  }
  const cpu = cpus();
  return {
    kind: 'dkv-compare',
    date: new Date().toISOString(),
    machine: {
      cpus: cpu.length,
      cpuModel: cpu[0]?.model ?? 'unknown',
      memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
      kernel: release(),
      node: process.version,
    },
    settings: {
      timeS: opts.timeS,
      warmupS: opts.warmupS,
      concurrency: opts.concurrency,
      keys: opts.keys,
      keyBytes: 16,
      valueBytes: VALUE_BYTES,
      workloads: workloads.map((w) => ({ name: w.name, title: w.title })),
      quick: opts.quick,
    },
    systems,
    points,
    skipped,
    notes: NOTES,
    elapsedS: Math.round((performance.now() - t0) / 100) / 10,
  };
}

/** printSummary prints the summary table and, with etcd in the run, the goals. */
export function printSummary(report: CompareReport, io: CompareIo = stdio): void {
  io.out(
    '\nsummary (ops/s; latency ms; cpu = CPU seconds per second of the servers (summed) + of the load generator)\n',
  );
  io.out(summaryMarkdown(report));
  const goals = goalsOf(report);
  if (goals.length > 0) {
    io.out('\ngoals (DKV / etcd, this run)\n');
    io.out(goalsMarkdown(goals));
  }
}

/** main is the command line: parse, run, print, write; exit code 2 on a bad option, 1 on failure. */
export async function main(argv: readonly string[]): Promise<number> {
  let opts: CompareOptions;
  try {
    opts = parseCompareArgs(argv);
  } catch (err) {
    stdio.err(
      `error ${isDkvError(err) ? `${err.code}: ` : ''}${err instanceof Error ? err.message : String(err)}`,
    );
    return 2;
  }
  const onSignal = (sig: NodeJS.Signals): void => {
    stdio.err(`\n${sig}: stopping the servers`);
    killAllServers();
    // The DKV nodes stop by themselves when this process (their stdin pipe) goes.
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const report = await runCompare(opts);
    printSummary(report);
    const dir = resolve(opts.outDir ?? RESULTS_DIR);
    mkdirSync(dir, { recursive: true });
    // A quick or DKV-only run never overwrites the day's full side-by-side results.
    const suffix = `${opts.quick ? '-quick' : ''}${opts.systems.length === 1 ? '-dkv' : ''}`;
    const files = writeReport(report, dir, `${report.date.slice(0, 10)}-compare${suffix}`);
    stdio.out(`\nwrote ${files.json}\nwrote ${files.html}`);
    return 0;
  } catch (err) {
    stdio.err(
      `error ${isDkvError(err) ? `${err.code}: ` : ''}${err instanceof Error ? err.message : String(err)}`,
    );
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
