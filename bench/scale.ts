/**
 * The scaling benchmark (issue 9, "Scaling figures"): how DKV's costs grow with the work, each
 * as its own section (bench/scale/*.ts says how each is measured):
 * - groups: partition groups per node 1, 8, 64, 512: start time, idle CPU and RSS, put
 *   throughput and p99 (3 real node processes per size);
 * - keys: 10k, 100k, 1M keys: memory per key, snapshot size and time, load time (in-process),
 *   and on a real cluster the fill, the node's RSS per key and disk, and a follower's restart;
 * - watchers: 1, 1k, 10k watchers of one key: event delivery latency (real cluster);
 * - ttl: 1M TTL keys expiring, the CPU it costs per second (in-process state machine);
 * - nodes: put and linearizable get at C=64 on 3 and 5 nodes.
 *
 *     npx tsx bench/scale.ts [--quick] [--only groups,keys,watchers,ttl,nodes] [--out DIR]
 *
 * Sections run one after another (never two clusters at once: an idle cluster still costs CPU
 * on a small box), with progress lines on stderr. The markdown tables go to stdout at the end,
 * and the figures to `<out>/<date>-scale.json` (`-scale-quick.json` for --quick, and the
 * sections' names added for --only, so neither overwrites a full run's file). A section that
 * fails is reported and the others still run; the exit code is then 1. SIGINT or SIGTERM
 * kills every node and removes the temp dirs.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isDkvError } from '../src/errors.js';
import { killAllClusters, ScaleCluster } from './scale/cluster.js';
import { measureGroups } from './scale/groups.js';
import { measureKeys } from './scale/keys.js';
import { measureNodes } from './scale/nodes.js';
import { parseScaleArgs, planOf } from './scale/options.js';
import { reportMarkdown, type ScalePlan, type ScaleReport, SECTIONS, type Section } from './scale/report.js';
import { measureTtl } from './scale/ttl.js';
import { measureWatchers } from './scale/watchers.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
/** RESULTS_DIR is where results go by default. */
export const RESULTS_DIR = join(ROOT, 'bench', 'results');

/** ScaleIo is where a run's lines go: tables to out, progress to err. */
export interface ScaleIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

/** stdio writes a run's lines to the process's stdout and stderr (the other suites use it too). */
export const stdio: ScaleIo = {
  out: (line) => void process.stdout.write(`${line}\n`),
  err: (line) => void process.stderr.write(`${line}\n`),
};

/** messageOf renders a failure for an `error ...` line: its code, if a DkvError, and message. */
export function messageOf(err: unknown): string {
  return `${isDkvError(err) ? `${err.code}: ` : ''}${err instanceof Error ? err.message : String(err)}`;
}

/** sourceOf names the code a run measures: the commit, and the files under src/ changed since (a working tree in progress). */
export function sourceOf(): ScaleReport['source'] {
  const git = (args: string[]): string => {
    try {
      return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      return '';
    }
  };
  return {
    commit: git(['rev-parse', '--short', 'HEAD']).trim() || 'unknown',
    changedSrcFiles: git(['status', '--porcelain', '--', 'src'])
      .split('\n')
      .filter((l) => l.trim().length > 0)
      .map((l) => l.slice(3)),
  };
}

/** runSection runs one section, storing its figures in the report, or its failure in report.errors. */
async function runSection(
  report: ScaleReport,
  section: Section,
  plan: ScalePlan,
  say: (line: string) => void,
): Promise<void> {
  const t0 = performance.now();
  say(`\n== ${section}`);
  try {
    switch (section) {
      case 'groups':
        report.groups = await measureGroups(plan.groups.partitions, plan.groups.timing, say);
        break;
      case 'keys':
        report.keys = await measureKeys(plan.keys.sizes, say);
        break;
      case 'watchers': {
        say('watchers: starting 3 nodes');
        const c = await ScaleCluster.start({ nodes: 3, warn: say });
        try {
          report.watchers = await measureWatchers(c, plan.watchers.sizes, plan.watchers.measureMs, say);
        } finally {
          await c.stop();
        }
        break;
      }
      case 'ttl':
        report.ttl = await measureTtl(plan.ttl.keys, plan.ttl.windowMs, say);
        break;
      case 'nodes':
        report.nodes = await measureNodes(plan.nodes.sizes, plan.nodes.timing, say);
        break;
    }
    say(`== ${section} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } catch (err) {
    report.errors[section] = messageOf(err);
    say(`== ${section} FAILED: ${messageOf(err)}`);
  }
}

/** runScale runs the plan's sections in order and returns the report (the caller prints and writes it). */
export async function runScale(plan: ScalePlan, io: ScaleIo = stdio): Promise<ScaleReport> {
  const t0 = performance.now();
  const cpu = cpus();
  const report: ScaleReport = {
    kind: 'dkv-scale',
    date: new Date().toISOString(),
    machine: {
      cpus: cpu.length,
      cpuModel: cpu[0]?.model ?? 'unknown',
      memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
      kernel: release(),
      node: process.version,
    },
    source: sourceOf(),
    plan,
    errors: {},
    elapsedS: 0,
  };
  const changed = report.source.changedSrcFiles;
  io.err(
    `scale: sections ${plan.sections.join(', ')}${plan.quick ? ' (quick)' : ''}; code at ${report.source.commit}${changed.length > 0 ? ` with ${changed.length} changed file(s) under src/: ${changed.join(', ')}` : ''}`,
  );
  for (const s of plan.sections) await runSection(report, s, plan, io.err);
  report.elapsedS = Math.round((performance.now() - t0) / 100) / 10;
  return report;
}

/**
 * writeScaleReport writes `<dir>/<date>-scale[-quick][-<sections>].json` and returns its path:
 * a quick run or one of some sections (--only) never overwrites the day's full results.
 */
export function writeScaleReport(report: ScaleReport, dir: string): string {
  mkdirSync(dir, { recursive: true });
  const some = SECTIONS.some((s) => !report.plan.sections.includes(s));
  const name = `${report.date.slice(0, 10)}-scale${report.plan.quick ? '-quick' : ''}${some ? `-${report.plan.sections.join('-')}` : ''}`;
  const file = join(dir, `${name}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  return file;
}

/** main is the command line: parse, run, print, write; exit code 2 on a bad option, 1 when a section failed. */
export async function main(argv: readonly string[], io: ScaleIo = stdio): Promise<number> {
  let opts: ReturnType<typeof parseScaleArgs>;
  try {
    opts = parseScaleArgs(argv);
  } catch (err) {
    io.err(`error ${messageOf(err)}`);
    return 2;
  }
  const onSignal = (sig: NodeJS.Signals): void => {
    io.err(`\n${sig}: stopping the nodes`);
    killAllClusters();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const report = await runScale(planOf(opts), io);
    io.out(reportMarkdown(report));
    const file = writeScaleReport(report, resolve(opts.outDir ?? RESULTS_DIR));
    io.err(`\nwrote ${file} (${report.elapsedS} s in all)`);
    return Object.keys(report.errors).length > 0 ? 1 : 0;
  } catch (err) {
    io.err(`error ${messageOf(err)}`);
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
