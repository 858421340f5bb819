/**
 * The side-by-side benchmark (bench/compare): its pure parts (percentiles against a dumb
 * reference, /proc parsing, the closed loop on fake operations, option parsing, the install
 * checks, the report's tables, goals and HTML), then short real runs: DKV alone at 1 and 16 in
 * flight, and etcd and redis alone when their servers are installed here, about a second per
 * point, checking every point measured something, nothing failed, and no server outlived it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  cdfOf,
  cpuSecondsOf,
  LatencySample,
  parseProcStat,
  percentile,
  runPoint,
} from '../../bench/compare/loadgen.js';
import { ensureInstalled, runCompare } from '../../bench/compare/main.js';
import { type CompareOptions, parseCompareArgs } from '../../bench/compare/options.js';
import {
  type CompareReport,
  escapeHtml,
  fmt,
  fmtRatio,
  goalsMarkdown,
  goalsOf,
  logTicks,
  type PointRecord,
  renderHtml,
  summaryMarkdown,
  toJsonText,
  writeReport,
} from '../../bench/compare/report.js';
import { findExecutable, installCommandLine, notInstalledError } from '../../bench/compare/targets.js';
import { keyOf, pickWorkloads } from '../../bench/compare/workloads.js';
import { isDkvError } from '../../src/errors.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'dkv-compare-test-'));
  dirs.push(d);
  return d;
}

/** refPercentile is the definition: the smallest sample x with at least p*n samples <= x. */
function refPercentile(xs: number[], p: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const need = Math.max(1, Math.ceil(p * xs.length));
  for (const x of sorted) if (sorted.filter((y) => y <= x).length >= need) return x;
  return sorted.at(-1)!;
}

describe('percentiles and samples', () => {
  it('is nearest-rank', () => {
    const xs = Float64Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(xs, 0.5)).toBe(50);
    expect(percentile(xs, 0.99)).toBe(99);
    expect(percentile(xs, 0.999)).toBe(100);
    expect(percentile(xs, 0)).toBe(1);
    expect(percentile(xs, 1)).toBe(100);
    expect(percentile([7], 0.99)).toBe(7);
    expect(percentile([], 0.5)).toBeNaN();
  });

  it('agrees with the definition on random samples', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: 1e4, noNaN: true }), { minLength: 1, maxLength: 200 }),
        fc.double({ min: 0.001, max: 1, noNaN: true }),
        (xs, p) => {
          const sorted = Float64Array.from(xs).sort();
          expect(percentile(sorted, p)).toBe(refPercentile(xs, p));
        },
      ),
    );
  });

  it('keeps every latency as it grows, and gives a monotone CDF', () => {
    const s = new LatencySample();
    for (let i = 50_000; i > 0; i--) s.add(i / 100);
    const sorted = s.sorted();
    expect(sorted.length).toBe(50_000);
    expect(sorted[0]).toBe(0.01);
    expect(sorted.at(-1)).toBe(500);
    const cdf = cdfOf(sorted);
    expect(cdf[0]).toEqual([0, 0.01]);
    expect(cdf.at(-1)).toEqual([1, 500]);
    for (let i = 1; i < cdf.length; i++) {
      expect(cdf[i]![0]).toBeGreaterThan(cdf[i - 1]![0]);
      expect(cdf[i]![1]).toBeGreaterThanOrEqual(cdf[i - 1]![1]);
    }
    expect(cdfOf([])).toEqual([]);
  });
});

describe('server CPU from /proc', () => {
  it('reads utime and stime after the command name, whatever it holds', () => {
    const line = '4242 (node (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 11 0 5 0';
    expect(parseProcStat(line)).toEqual({ utimeTicks: 250, stimeTicks: 31 });
    expect(parseProcStat('garbage')).toBeUndefined();
    expect(parseProcStat('1 (x) S 1 2')).toBeUndefined();
  });

  it("counts this process's CPU, and a gone process as none", () => {
    const before = cpuSecondsOf([process.pid]);
    const until = performance.now() + 150;
    let x = 0;
    while (performance.now() < until) x += Math.sqrt(x + 1);
    expect(x).toBeGreaterThan(0);
    expect(cpuSecondsOf([process.pid])).toBeGreaterThan(before);
    expect(cpuSecondsOf([2 ** 22 + 12_345])).toBe(0);
  });
});

describe('the closed loop', () => {
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

  it('runs C workers and counts what ends in the window', async () => {
    const seen = new Set<number>();
    const r = await runPoint(
      async (w) => {
        seen.add(w.id);
        await sleep(2);
      },
      { concurrency: 4, warmupMs: 50, measureMs: 300 },
    );
    expect([...seen].sort()).toEqual([0, 1, 2, 3]);
    // 4 workers at about 2 ms each: hundreds of operations, not thousands.
    expect(r.ops).toBeGreaterThan(100);
    expect(r.ops).toBeLessThan(4 * 300);
    expect(r.p50Ms).toBeGreaterThanOrEqual(1.5);
    expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms);
    expect(r.p999Ms).toBeGreaterThanOrEqual(r.p99Ms);
    expect(r.errors).toBe(0);
    expect(r.stuck).toBe(0);
    expect(r.cdf.length).toBeGreaterThan(10);
  });

  it('counts failures apart, with the first message', async () => {
    const r = await runPoint(
      async (w) => {
        await sleep(1);
        if (w.next(2) === 0) throw new Error('boom');
      },
      { concurrency: 2, warmupMs: 0, measureMs: 200 },
    );
    expect(r.errors).toBeGreaterThan(0);
    expect(r.ops).toBeGreaterThan(0);
    expect(r.firstError).toBe('boom');
  });

  it('stops waiting for operations that never end', async () => {
    const r = await runPoint(() => new Promise<void>(() => {}), {
      concurrency: 3,
      warmupMs: 0,
      measureMs: 100,
      drainMs: 100,
    });
    expect(r.ops).toBe(0);
    expect(r.stuck).toBe(3);
    expect(r.p50Ms).toBeNaN();
  });
});

describe('options', () => {
  it('has the contract defaults', () => {
    const o = parseCompareArgs([]);
    expect(o.systems).toEqual(['dkv']);
    expect(o.concurrency).toEqual([1, 16, 64, 256]);
    expect(o.timeS).toBe(5);
    expect(o.warmupS).toBe(1);
    expect(o.keys).toBe(10_000);
    expect(pickWorkloads(o.workloads).map((w) => w.name)).toEqual([
      'put',
      'get',
      'get-serializable',
      'incr-1',
      'incr-100',
      'lock-1',
      'lock-100',
      'mixed',
      'watch',
    ]);
  });

  it('reads --vs, --time, --concurrency, --workloads, --quick', () => {
    const o = parseCompareArgs([
      '--vs',
      'redis,etcd',
      '--time',
      '2.5',
      '--concurrency',
      '64,1,16,64',
      '--workloads',
      'lock,put,incr-100',
      '--install',
    ]);
    expect(o.systems).toEqual(['dkv', 'etcd', 'redis']);
    expect(o.timeS).toBe(2.5);
    expect(o.concurrency).toEqual([1, 16, 64]);
    expect(pickWorkloads(o.workloads).map((w) => w.name)).toEqual(['put', 'incr-100', 'lock-1', 'lock-100']);
    expect(o.install).toBe(true);
    const q = parseCompareArgs(['--quick']);
    expect([q.timeS, q.warmupS, q.concurrency]).toEqual([1, 0.3, [1, 16]]);
    expect(parseCompareArgs(['--quick', '--time', '3', '--concurrency', '8']).concurrency).toEqual([8]);
  });

  it('refuses bad options, naming them', () => {
    const bad: [string[], RegExp][] = [
      [['--vs', 'mysql'], /--vs: unknown system "mysql" \(known: etcd, redis\)/],
      [['--time', '0'], /--time must be a number of seconds/],
      [['--time', 'abc'], /--time .*got "abc"/],
      [['--concurrency', '1,0'], /--concurrency: .*got "0"/],
      [['--concurrency', ','], /--concurrency: give at least one/],
      [['--workloads', 'put,scan'], /--workloads: unknown workload "scan"/],
      [['--keys', '0'], /--keys must be an integer/],
      [['--frobnicate'], /Unknown option '--frobnicate'/],
    ];
    for (const [argv, re] of bad) {
      let err: unknown;
      try {
        parseCompareArgs(argv);
      } catch (e) {
        err = e;
      }
      expect(isDkvError(err) && err.code === 'INVALID_ARGUMENT', argv.join(' ')).toBe(true);
      expect((err as Error).message).toMatch(re);
    }
  });
});

describe('installed or not', () => {
  it('says what is missing and how to install it', async () => {
    expect(installCommandLine(true)).toBe('apt-get update && apt-get install -y etcd-server redis-server');
    expect(installCommandLine(false)).toBe(
      'sudo apt-get update && sudo apt-get install -y etcd-server redis-server',
    );
    const e = notInstalledError(['etcd', 'redis']);
    expect(e.code).toBe('NOT_FOUND');
    expect(e.message).toMatch(/^etcd \(etcd\) and redis \(redis-server\) are not installed/);
    expect(e.message).toMatch(/apt-get install -y etcd-server redis-server/);
    expect(e.message).toMatch(/--install/);

    const lines: string[] = [];
    const io = { out: (l: string) => void lines.push(l), err: (l: string) => void lines.push(l) };
    await expect(ensureInstalled(['dkv', 'etcd'], false, io, () => undefined)).rejects.toThrow(
      /etcd \(etcd\) is not installed/,
    );
    // dkv alone needs nothing.
    await ensureInstalled(['dkv'], false, io, () => undefined);
    // --install runs the installer once, then checks again.
    let installs = 0;
    let present = false;
    await ensureInstalled(
      ['dkv', 'etcd', 'redis'],
      true,
      io,
      () => (present ? '/usr/bin/x' : undefined),
      async (say) => {
        installs++;
        say('installing');
        present = true;
      },
    );
    expect(installs).toBe(1);
    expect(lines).toContain('installing');
    await expect(
      ensureInstalled(
        ['etcd'],
        true,
        io,
        () => undefined,
        async () => {},
      ),
    ).rejects.toThrow(/not installed/);
  });

  it('finds executables on PATH', () => {
    expect(findExecutable('sh')).toMatch(/\/sh$/);
    expect(findExecutable('no-such-binary-dkv-bench', '/nonexistent')).toBeUndefined();
  });
});

function point(
  system: PointRecord['system'],
  workload: string,
  c: number,
  opsPerSec: number,
  p99Ms: number,
): PointRecord {
  return {
    system,
    workload,
    concurrency: c,
    windowMs: 1000,
    ops: opsPerSec,
    opsPerSec,
    p50Ms: p99Ms / 4,
    p99Ms,
    p999Ms: p99Ms * 1.5,
    meanMs: p99Ms / 3,
    maxMs: p99Ms * 2,
    errors: 0,
    serverCpu: 1.2,
    clientCpu: 0.5,
    clientLoopDelayP99Ms: 11,
    stuck: 0,
    cdf: [
      [0, p99Ms / 10],
      [0.5, p99Ms / 4],
      [0.99, p99Ms],
      [1, p99Ms * 2],
    ],
  };
}

function fakeReport(): CompareReport {
  const points: PointRecord[] = [];
  for (const c of [1, 64, 256]) {
    points.push(point('dkv', 'put', c, 1000 * c ** 0.5, 10), point('etcd', 'put', c, 400 * c ** 0.5, 20));
    points.push(point('redis', 'put', c, 100_000, 0.2));
  }
  points.push(point('dkv', 'get', 64, 20_000, 5), point('etcd', 'get', 64, 4_000, 40));
  points.push(point('dkv', 'lock-100', 64, 900, 600), point('etcd', 'lock-100', 64, 380, 500));
  return {
    kind: 'dkv-compare',
    date: '2026-01-02T03:04:05.000Z',
    machine: { cpus: 2, cpuModel: 'Test <CPU>', memoryGiB: 4, kernel: '6.0', node: 'v20' },
    settings: {
      timeS: 5,
      warmupS: 1,
      concurrency: [1, 64, 256],
      keys: 10_000,
      keyBytes: 16,
      valueBytes: 128,
      workloads: [{ name: 'put', title: 'put <of> a key' }],
      quick: false,
    },
    systems: [
      { name: 'dkv', version: 'dkv 0.1.0', describe: '3 nodes', startMs: 2000 },
      { name: 'etcd', version: 'etcd 3.4', describe: '3 members', startMs: 300 },
    ],
    points,
    skipped: [{ system: 'redis', workload: 'lock-100', why: 'no lock' }],
    notes: ['a note with <b>markup</b>'],
    elapsedS: 100,
  };
}

describe('the report', () => {
  it('prints figures compactly', () => {
    expect(fmt(123_456.7)).toBe('123,457');
    expect(fmt(12.345)).toBe('12.3');
    expect(fmt(0.1234)).toBe('0.123');
    expect(fmt(Number.NaN)).toBe('-');
    expect([fmtRatio(209.44), fmtRatio(2.5), fmtRatio(0.0034), fmtRatio(undefined)]).toEqual([
      '209.4×',
      '2.50×',
      '0.0034×',
      '-',
    ]);
    expect(logTicks(3, 450)).toEqual([2, 5, 10, 20, 50, 100, 200, 500]);
    expect(logTicks(0.05, 800)).toEqual([0.01, 0.1, 1, 10, 100, 1000]);
  });

  it('tables every point with the DKV/etcd ratio', () => {
    const md = summaryMarkdown(fakeReport());
    const lines = md.split('\n');
    expect(lines[0]).toBe(
      '| workload | C | dkv ops/s | etcd ops/s | redis ops/s | dkv/etcd | dkv p50 / p99 / p99.9 ms | etcd p50 / p99 / p99.9 ms | redis p50 / p99 / p99.9 ms | dkv cpu srv + gen | etcd cpu srv + gen | redis cpu srv + gen | errors |',
    );
    expect(lines).toContain(
      '| put | 64 | 8,000 | 3,200 | 100,000 | 2.50× | 2.50 / 10.0 / 15.0 | 5.00 / 20.0 / 30.0 | 0.050 / 0.200 / 0.300 | 1.20 + 0.500 | 1.20 + 0.500 | 1.20 + 0.500 | 0 |',
    );
    expect(lines).toContain(
      '| get | 64 | 20,000 | 4,000 | - | 5.00× | 1.25 / 5.00 / 7.50 | 10.0 / 40.0 / 60.0 | - | 1.20 + 0.500 | 1.20 + 0.500 | - | 0 |',
    );
  });

  it("measures the issue's goals as ratios", () => {
    const goals = goalsOf(fakeReport());
    const by = (g: string) => goals.find((x) => x.goal === g)!;
    expect(by('put ops/s at C=64')).toMatchObject({ dkv: 8000, etcd: 3200, ratio: 2.5, met: true });
    expect(by('linearizable get ops/s at C=64')).toMatchObject({ ratio: 5, met: true });
    expect(by('lock+unlock on 100 keys ops/s at C=64').met).toBe(false);
    expect(by('lock-100 p99 at C=64 (ms)')).toMatchObject({ dkv: 600, etcd: 500, ratio: 1.2, met: false });
    expect(by('put p99 at C=64 (ms)')).toMatchObject({ ratio: 0.5, met: true });
    expect(by('counter +1 on 100 keys ops/s at C=64').met).toBeUndefined();
    // A p99 goal for every workload both systems ran at C=64.
    expect(goals.filter((g) => g.goal.includes('p99')).map((g) => g.goal)).toEqual([
      'put p99 at C=64 (ms)',
      'get p99 at C=64 (ms)',
      'lock-100 p99 at C=64 (ms)',
    ]);
    expect(goalsMarkdown(goals)).toMatch(
      /\| put ops\/s at C=64 \| 8,000 \| 3,200 \| 2\.50× \| ≥ 2× \| met \|/,
    );
    expect(goalsOf({ points: fakeReport().points.filter((p) => p.system !== 'etcd') })).toEqual([]);
  });

  it('renders one HTML page with SVG charts, escaping text', () => {
    const html = renderHtml(fakeReport());
    expect(html.startsWith('<!doctype html>')).toBe(true);
    // put: a throughput chart and 3 CDFs; get and lock-100: one each and one CDF each.
    expect(html.match(/<svg /g)?.length).toBe(4 + 2 + 2);
    expect(html).toContain('put: throughput');
    expect(html).toContain('put at C=64: latency CDF');
    expect(html).not.toContain('<b>markup</b>');
    expect(html).toContain(escapeHtml('a note with <b>markup</b>'));
    expect(html).toContain(escapeHtml('Test <CPU>'));
    expect(html).toContain('polyline');
    expect(html).not.toMatch(/NaN/);
  });

  it('writes JSON that reads back the same, and the HTML', () => {
    const report = fakeReport();
    expect(JSON.parse(toJsonText(report))).toEqual(JSON.parse(JSON.stringify(report)));
    expect(toJsonText(report)).toContain('[0.99, 10]');
    const dir = tempDir();
    const files = writeReport(report, dir, 'x-compare');
    expect(JSON.parse(readFileSync(files.json, 'utf8')).points.length).toBe(report.points.length);
    expect(readFileSync(files.html, 'utf8')).toContain('<svg');
  });

  it('names keys with 16 bytes', () => {
    expect(keyOf(0)).toHaveLength(16);
    expect(keyOf(9_999)).toBe('key:000000009999');
  });
});

/** serversRunning lists processes still running from a compare run's temp dirs. */
function serversRunning(): string[] {
  return execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => /dkv-compare-(etcd|redis)-|dkv-compare-[A-Za-z0-9]{6}\/node/.test(l));
}

/** realRun runs one system at C=1 and 16 for about a second per point. */
async function realRun(system: 'dkv' | 'etcd' | 'redis', workloads: string[]): Promise<CompareReport> {
  const opts: CompareOptions = {
    systems: [system],
    timeS: 0.8,
    warmupS: 0.2,
    concurrency: [1, 16],
    workloads,
    keys: 1000,
    quick: true,
    install: false,
  };
  const lines: string[] = [];
  const report = await runCompare(opts, { out: (l) => void lines.push(l), err: (l) => void lines.push(l) });
  // A progress line per point.
  for (const p of report.points)
    expect(
      lines.some((l) =>
        l.startsWith(`${system.padEnd(6)} ${p.workload.padEnd(17)} ${String(p.concurrency).padStart(4)}`),
      ),
    ).toBe(true);
  for (const p of report.points) {
    expect(p.ops, `${p.system} ${p.workload} C=${p.concurrency}`).toBeGreaterThan(0);
    expect(p.errors, `${p.system} ${p.workload} C=${p.concurrency}: ${p.firstError}`).toBe(0);
    expect(p.stuck).toBe(0);
    expect(p.serverCpu).toBeGreaterThan(0);
  }
  expect(serversRunning()).toEqual([]);
  return report;
}

describe('real runs, one system at a time', () => {
  it('DKV: 3 node processes, every workload at C=1 and 16', async () => {
    const report = await realRun('dkv', ['put', 'get', 'get-serializable', 'incr-100', 'lock-100', 'watch']);
    expect(report.points.map((p) => `${p.workload}@${p.concurrency}`)).toEqual([
      'put@1',
      'put@16',
      'get@1',
      'get@16',
      'get-serializable@1',
      'get-serializable@16',
      'incr-100@1',
      'incr-100@16',
      'lock-100@1',
      'lock-100@16',
      'watch@1',
      'watch@16',
    ]);
    expect(report.systems[0]).toMatchObject({ name: 'dkv' });
    expect(report.systems[0]!.fillMs).toBeGreaterThan(0);
    const dir = tempDir();
    const files = writeReport(report, dir, 'dkv-compare');
    expect(existsSync(files.html)).toBe(true);
  });

  it.skipIf(findExecutable('etcd') === undefined)('etcd: 3 members, the same workloads', async () => {
    const report = await realRun('etcd', ['put', 'get-serializable', 'incr-100', 'lock-100', 'watch']);
    expect(report.points).toHaveLength(10);
    expect(report.systems[0]!.version).toMatch(/etcd/i);
  });

  it.skipIf(findExecutable('redis-server') === undefined)('redis: put and incr; no lock', async () => {
    const report = await realRun('redis', ['put', 'incr-1', 'lock-1']);
    expect(report.points.map((p) => p.workload)).toEqual(['put', 'put', 'incr-1', 'incr-1']);
    expect(report.skipped).toEqual([
      { system: 'redis', workload: 'lock-1', why: 'redis has no lock operation here' },
    ]);
  });
});
