/**
 * `npm run bench`: runs the benchmark suites one after another, each in its own process with
 * `--expose-gc` (so heap figures are measured after a collection), prints their figures and
 * writes them all to bench/results/<date>.json.
 *
 *     npm run bench -- [--suites storage,engines,statemachine] [--quick]
 *
 * Suites: storage (bench/storage.ts: group commit against the raw fsync floor), engines (each
 * engine alone: segment store, index manager, time wheel, watch, leases/locks/counters),
 * statemachine (the whole apply path), transport (RPC and peer links on loopback), cluster
 * (put and linearizable get against a real 3-node cluster at 1, 16, 64 and 256 in flight).
 * The side-by-side run against etcd arrives with the client library.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

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
};

const { values } = parseArgs({
  options: {
    suites: { type: 'string', default: Object.keys(SUITES).join(',') },
    quick: { type: 'boolean', default: false },
  },
});

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

const out = join(ROOT, 'bench', 'results', `${new Date().toISOString().slice(0, 10)}.json`);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify({ quick: values.quick, suites: picked, results }, null, 2)}\n`);
process.stdout.write(`\nwrote ${out}\n`);
process.exit(failed ? 1 : 0);
