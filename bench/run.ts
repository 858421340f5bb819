/**
 * `npm run bench`: runs the benchmark suites one after another, each in its own process with
 * `--expose-gc` (so heap figures are measured after a collection), prints their figures and
 * writes them all to bench/results/<date>.json.
 *
 *     npm run bench -- [--suites storage,engines,...,compare] [--quick]
 *         [--vs etcd,redis] [--time S] [--warmup S] [--concurrency 1,16,64,256]
 *         [--workloads put,get,get-serializable,incr,lock,mixed,watch] [--keys N] [--install] [--out DIR]
 *
 * Suites: storage (bench/storage.ts: group commit against the raw fsync floor), engines (each
 * engine alone: segment store, index manager, time wheel, watch, leases/locks/counters),
 * statemachine (the whole apply path), transport (RPC and peer links on loopback), cluster
 * (put and linearizable get against a real 3-node cluster at 1, 16, 64 and 256 in flight),
 * scale (bench/scale.ts: how the costs grow with groups, keys, watchers, TTL keys and nodes;
 * it writes bench/results/<date>-scale.json),
 * overload (bench/overload.ts: puts offered at 1, 2 and 4 times capacity, open loop: accepted
 * throughput, shed rate, p99, peak memory, no acknowledged put lost; it writes
 * bench/results/<date>-overload.json),
 * compare (bench/compare/main.ts: the workloads of CONTRACT.md "Benchmarks" on DKV, and with
 * --vs on etcd and redis too, driven by the same load generator; it also writes
 * bench/results/<date>-compare.json and .html).
 *
 * The compare options (--vs, --time, --warmup, --concurrency, --workloads, --keys, --install,
 * --out) go to the compare suite, and are checked before anything runs. Given without
 * --suites, they run the compare suite alone: `npm run bench -- --vs etcd,redis` is the
 * side-by-side run. With none of them, every suite runs, compare on DKV alone. bench/results/
 * <date>.json is written unless compare ran alone (it writes its own files).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { COMPARE_OPTION_NAMES, parseCompareArgs } from './compare/options.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

const SUITES: Record<string, { file: string; args: (quick: boolean) => string[] }[]> = {
  storage: [{ file: 'bench/storage.ts', args: (q) => (q ? ['--time', '1'] : ['--time', '3']) }],
  engines: ['segment-store', 'index-manager', 'time-wheel', 'watch', 'lease-lock'].map((n) => ({
    file: `bench/engines/${n}.ts`,
    args: (q: boolean) => (q ? ['--quick'] : []),
  })),
  statemachine: [{ file: 'bench/statemachine.ts', args: (q) => (q ? ['--quick'] : []) }],
  transport: [{ file: 'bench/transport.ts', args: (q) => (q ? ['--quick'] : []) }],
  cluster: [{ file: 'bench/cluster.ts', args: (q) => (q ? ['--quick'] : []) }],
  scale: [{ file: 'bench/scale.ts', args: (q) => (q ? ['--quick'] : []) }],
  overload: [{ file: 'bench/overload.ts', args: (q) => (q ? ['--quick'] : []) }],
  compare: [{ file: 'bench/compare/main.ts', args: (q) => [...(q ? ['--quick'] : []), ...compareArgs] }],
};

/** splitArgs separates --suites (this runner's) from the rest (the compare suite's, and --quick). */
function splitArgs(argv: readonly string[]): { suites: string | undefined; rest: string[] } {
  let suites: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--suites') suites = argv[++i] ?? '';
    else if (a.startsWith('--suites=')) suites = a.slice('--suites='.length);
    else rest.push(a);
  }
  return { suites, rest };
}

const split = splitArgs(process.argv.slice(2));
let compareArgs: string[];
let quick: boolean;
let compareOnly: boolean;
try {
  // Checked before anything runs, so a typo does not surface after the other suites.
  const opts = parseCompareArgs(split.rest);
  quick = opts.quick;
  compareArgs = split.rest.filter((a) => a !== '--quick');
  const { tokens } = parseArgs({ args: split.rest, strict: false, tokens: true });
  compareOnly = tokens.some(
    (t) => t.kind === 'option' && (COMPARE_OPTION_NAMES as readonly string[]).includes(t.name),
  );
} catch (err) {
  process.stderr.write(`error INVALID_ARGUMENT: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
}
const values = {
  quick,
  suites: split.suites ?? (compareOnly ? 'compare' : Object.keys(SUITES).join(',')),
};

const picked = values.suites.split(',').filter((s) => s.length > 0);
for (const s of picked) {
  if (!SUITES[s]) {
    process.stderr.write(
      `error INVALID_ARGUMENT: unknown suite "${s}" (suites: ${Object.keys(SUITES).join(', ')})\n`,
    );
    process.exit(2);
  }
}

const results: Record<string, string> = {};
let failed = false;
for (const suite of picked) {
  for (const { file, args } of SUITES[suite]!) {
    process.stdout.write(`\n== ${file}${values.quick ? ' (quick)' : ''}\n`);
    const t0 = Date.now();
    // Streamed as it comes (progress), and kept for the results file.
    const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', file, ...args(values.quick)], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let text = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      text += d;
      process.stdout.write(d);
    });
    const status = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    results[file] = text;
    if (status !== 0) {
      failed = true;
      process.stderr.write(`error: ${file} exited with ${status}\n`);
    } else {
      process.stdout.write(`(${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
    }
  }
}

// The compare suite writes its own files (<date>-compare.json and .html); run alone, it must
// not replace the day's results of the other suites.
if (picked.some((s) => s !== 'compare')) {
  const out = join(ROOT, 'bench', 'results', `${new Date().toISOString().slice(0, 10)}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ quick: values.quick, suites: picked, results }, null, 2)}\n`);
  process.stdout.write(`\nwrote ${out}\n`);
}
process.exit(failed ? 1 : 0);
