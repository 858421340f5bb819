/**
 * The scaling benchmark (bench/scale.ts): its pure parts (options, store splitting, the writer's
 * rate), then one real `--quick` run through `main`, checking the shape and sanity of what it
 * printed and wrote (every section present, every figure finite and positive where it must
 * be), never its timings, and that no node process or temp dir outlived it.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { liveClusters } from '../../bench/scale/cluster.js';
import { STORE_PARTITIONS_MAX, storesFor } from '../../bench/scale/groups.js';
import { FULL_PLAN, parseScaleArgs, planOf, QUICK_PLAN } from '../../bench/scale/options.js';
import type { ScaleReport } from '../../bench/scale/report.js';
import { EVENTS_PER_SEC_MAX, PUTS_PER_SEC_MAX, putsPerSecFor } from '../../bench/scale/watchers.js';
import { main, writeScaleReport } from '../../bench/scale.js';
import { isDkvError } from '../../src/errors.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function invalidArgument(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    expect(isDkvError(err, 'INVALID_ARGUMENT')).toBe(true);
    return (err as Error).message;
  }
  throw new Error('expected INVALID_ARGUMENT');
}

describe('options', () => {
  it('runs every section of the full plan by default', () => {
    const o = parseScaleArgs([]);
    expect(o).toEqual({
      quick: false,
      sections: ['groups', 'keys', 'watchers', 'ttl', 'nodes'],
      outDir: undefined,
    });
    expect(planOf(o)).toEqual(FULL_PLAN);
    expect(FULL_PLAN.groups.partitions).toEqual([1, 8, 64, 512]);
    expect(FULL_PLAN.keys.sizes).toEqual([10_000, 100_000, 1_000_000]);
    expect(FULL_PLAN.watchers.sizes).toEqual([1, 1000, 10_000]);
    expect(FULL_PLAN.ttl.keys).toBe(1_000_000);
    expect(FULL_PLAN.nodes.sizes).toEqual([3, 5]);
  });

  it('reads --quick, --only (in the standard order) and --out', () => {
    const o = parseScaleArgs(['--quick', '--only', 'ttl,groups', '--out', '/tmp/x']);
    expect(o).toEqual({ quick: true, sections: ['groups', 'ttl'], outDir: '/tmp/x' });
    expect(planOf(o)).toEqual({ ...QUICK_PLAN, sections: ['groups', 'ttl'] });
  });

  it('refuses unknown sections and options, naming them', () => {
    expect(invalidArgument(() => parseScaleArgs(['--only', 'groups,disks']))).toContain('"disks"');
    expect(invalidArgument(() => parseScaleArgs(['--fast']))).toContain('--fast');
    expect(invalidArgument(() => parseScaleArgs(['extra']))).toContain('usage');
  });

  it('exits 2 on a bad option, before starting anything', async () => {
    const err: string[] = [];
    expect(await main(['--only', 'nope'], { out: () => {}, err: (l) => err.push(l) })).toBe(2);
    expect(err.join('\n')).toMatch(/^error INVALID_ARGUMENT: --only: unknown section "nope"/);
  });
});

describe('the results file', () => {
  it('is named after the date, with -quick and the sections of a partial run', () => {
    const outDir = mkdtempSync(join(tmpdir(), 'dkv-scale-test-out-'));
    dirs.push(outDir);
    const report = (plan: ReturnType<typeof planOf>): ScaleReport => ({
      kind: 'dkv-scale',
      date: '2026-01-02T03:04:05.000Z',
      machine: { cpus: 2, cpuModel: 'x', memoryGiB: 1, kernel: 'k', node: 'v20' },
      source: { commit: 'abc1234', changedSrcFiles: [] },
      plan,
      errors: {},
      elapsedS: 1,
    });
    const name = (plan: ReturnType<typeof planOf>): string =>
      basename(writeScaleReport(report(plan), outDir));
    expect(name(FULL_PLAN)).toBe('2026-01-02-scale.json');
    expect(name(QUICK_PLAN)).toBe('2026-01-02-scale-quick.json');
    expect(name(planOf({ quick: false, sections: ['keys', 'nodes'] }))).toBe(
      '2026-01-02-scale-keys-nodes.json',
    );
    expect(name(planOf({ quick: true, sections: ['ttl'] }))).toBe('2026-01-02-scale-quick-ttl.json');
    const back = JSON.parse(readFileSync(join(outDir, '2026-01-02-scale.json'), 'utf8')) as ScaleReport;
    expect(back.plan).toEqual(FULL_PLAN);
  });
});

describe('store split and writer rate', () => {
  it('splits P partitions into stores of at most the config limit, as equal as can be', () => {
    for (const p of [1, 8, 64, 256, 257, 300, 512, 513, 1000]) {
      const stores = storesFor(p);
      expect(stores.reduce((a, s) => a + s.partitions, 0)).toBe(p);
      expect(stores.length).toBe(Math.ceil(p / STORE_PARTITIONS_MAX));
      expect(stores[0]!.name).toBe('default');
      expect(new Set(stores.map((s) => s.name)).size).toBe(stores.length);
      const sizes = stores.map((s) => s.partitions);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
      expect(Math.max(...sizes)).toBeLessThanOrEqual(STORE_PARTITIONS_MAX);
    }
    expect(storesFor(512)).toEqual([
      { name: 'default', partitions: 256 },
      { name: 's2', partitions: 256 },
    ]);
  });

  it('keeps the events a second under the cap, and writes at least once a second', () => {
    for (const w of [1, 10, 100, 1000, 5000, 10_000, 100_000]) {
      const r = putsPerSecFor(w);
      expect(r).toBeGreaterThanOrEqual(1);
      expect(r).toBeLessThanOrEqual(PUTS_PER_SEC_MAX);
      if (w <= EVENTS_PER_SEC_MAX) expect(r * w).toBeLessThanOrEqual(EVENTS_PER_SEC_MAX);
    }
  });
});

/** scaleProcesses lists the pids of processes whose command line names a dkv-scale temp dir. */
function scaleProcesses(): Set<number> {
  const out = new Set<number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes('dkv-scale-')) out.add(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}

function scaleDirs(): Set<string> {
  return new Set(readdirSync(tmpdir()).filter((n) => n.startsWith('dkv-scale-')));
}

function expectPositive(x: unknown, what: string): void {
  expect(typeof x, what).toBe('number');
  expect(Number.isFinite(x as number) && (x as number) > 0, `${what} = ${String(x)}`).toBe(true);
}

function expectNonNegative(x: unknown, what: string): void {
  expect(typeof x, what).toBe('number');
  expect(Number.isFinite(x as number) && (x as number) >= 0, `${what} = ${String(x)}`).toBe(true);
}

describe('a real --quick run', () => {
  it('measures every section, prints the tables and writes the JSON, leaving nothing behind', async () => {
    const outDir = mkdtempSync(join(tmpdir(), 'dkv-scale-test-out-'));
    dirs.push(outDir);
    const procsBefore = scaleProcesses();
    const dirsBefore = scaleDirs();
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(['--quick', '--out', outDir], {
      out: (l) => out.push(l),
      err: (l) => err.push(l),
    });
    const stderr = err.join('\n');
    expect(code, stderr).toBe(0);

    // Nothing outlived the run.
    expect(liveClusters()).toBe(0);
    const leftProcs = [...scaleProcesses()].filter((p) => !procsBefore.has(p) && p !== process.pid);
    expect(leftProcs).toEqual([]);
    const leftDirs = [...scaleDirs()].filter((d) => !dirsBefore.has(d) && !outDir.endsWith(d));
    expect(leftDirs).toEqual([]);

    // Progress went to stderr, tables to stdout.
    for (const s of ['groups', 'keys', 'watchers', 'ttl', 'nodes']) expect(stderr).toContain(`== ${s} done`);
    const text = out.join('\n');
    for (const caption of [
      '**Partition groups per node**',
      '**Keys**',
      '**Watchers of one key**',
      '**TTL expiry**',
      '**Cluster size**',
    ])
      expect(text).toContain(caption);
    // Header, separator and one line per row, per table.
    const tableLines = text.split('\n').filter((l) => l.startsWith('| '));
    expect(tableLines.length).toBe(5 * 2 + 2 + 1 + 2 + 1 + 2);

    const files = readdirSync(outDir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^\d{4}-\d{2}-\d{2}-scale-quick\.json$/);
    const report = JSON.parse(readFileSync(join(outDir, files[0]!), 'utf8')) as ScaleReport;
    expect(report.kind).toBe('dkv-scale');
    expect(report.errors).toEqual({});
    expect(report.plan.quick).toBe(true);
    expect(report.source.commit).toMatch(/^[0-9a-f]{4,}$|^unknown$/);
    expect(Array.isArray(report.source.changedSrcFiles)).toBe(true);
    expectPositive(report.elapsedS, 'elapsedS');

    expect(report.groups?.map((r) => r.partitions)).toEqual([1, 8]);
    for (const r of report.groups!) {
      for (const k of ['startS', 'putOpsPerSec', 'putP50Ms', 'putP99Ms', 'putServerCpu'] as const)
        expectPositive(r[k], `groups ${r.partitions} ${k}`);
      expect(r.idleCpuPerNode).toHaveLength(3);
      for (const x of r.idleCpuPerNode) expectNonNegative(x, 'idle CPU');
      expect(r.rssMiBPerNode).toHaveLength(3);
      for (const x of r.rssMiBPerNode) expectPositive(x, 'RSS');
      expect(r.putErrors).toBe(0);
      expect(r.putP99Ms).toBeGreaterThanOrEqual(r.putP50Ms);
    }

    expect(report.keys?.map((r) => r.keys)).toEqual([10_000]);
    for (const r of report.keys!) {
      for (const k of [
        'heapBytesPerKey',
        'applyMs',
        'snapshotBytes',
        'snapshotMs',
        'loadMs',
        'fillMs',
        'nodeSnapshotIndex',
        'nodeLastIndex',
        'nodeDiskBytes',
        'restartServingMs',
        'restartReadMs',
      ] as const)
        expectPositive(r[k], `keys ${k}`);
      // A 128-byte value and a 16-byte key cannot take less.
      expect(r.heapBytesPerKey).toBeGreaterThan(144);
      expect(r.snapshotBytes).toBeGreaterThan(144 * r.keys);
      expect(r.nodeLastIndex).toBeGreaterThanOrEqual(r.nodeSnapshotIndex);
      expect(Number.isFinite(r.nodeRssBytesPerKey)).toBe(true);
    }

    expect(report.watchers?.map((r) => r.watchers)).toEqual([1, 100]);
    for (const r of report.watchers!) {
      expect(r.eventsDelivered).toBe(r.eventsExpected);
      expect(r.eventsExpected).toBe(r.puts * r.watchers);
      for (const k of ['eventP50Ms', 'eventP99Ms', 'allDeliveredP99Ms', 'serverCpu', 'clientCpu'] as const)
        expectPositive(r[k], `watchers ${r.watchers} ${k}`);
      expect(r.allDeliveredP99Ms).toBeGreaterThanOrEqual(r.eventP50Ms);
    }

    const ttl = report.ttl!;
    expect(ttl.keys).toBe(10_000);
    expect(ttl.expired).toBe(ttl.keys);
    for (const k of ['expiredPerSec', 'expiryCpu', 'tickApplyMaxMs', 'ticks'] as const)
      expectPositive(ttl[k], `ttl ${k}`);
    expectNonNegative(ttl.idleCpu, 'ttl idleCpu');

    expect(report.nodes?.map((r) => `${r.nodes} ${r.workload}`)).toEqual(['3 put', '3 get']);
    for (const r of report.nodes!) {
      for (const k of ['opsPerSec', 'p50Ms', 'p99Ms', 'serverCpu', 'startS'] as const)
        expectPositive(r[k], `nodes ${r.nodes} ${r.workload} ${k}`);
      expect(r.errors).toBe(0);
    }
    expect(existsSync(join(outDir, files[0]!))).toBe(true);
  });
});
