/**
 * The overload benchmark (bench/overload.ts): its pure parts first (options, which limit a
 * shed message names, the ledger's check against hand-made histories, the open-loop driver
 * against a fake server, the nodes' metrics text), then one real `--quick` run through
 * `main` on a real 3-node cluster, checking what it wrote: every phase accepted puts, the 4x
 * phase either shed or could not be issued in full (the generators share 2 cores with the
 * nodes; the test says which happened), no acknowledged put was lost, every node is up and
 * healthy, and no node, generator or temp dir outlived the run. Never its timings.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { killAllGenerators, liveGenerators } from '../../bench/overload/generator-process.js';
import { Outcome, parsePutValue, valueOfPut, WriteLedger } from '../../bench/overload/ledger.js';
import { machineCpuBetween, parseProcStatCpu } from '../../bench/overload/machine-cpu.js';
import { parseProcStatusMemory } from '../../bench/overload/memory.js';
import { diffPutMetrics, parsePutMetrics, quantileBoundMs } from '../../bench/overload/node-metrics.js';
import { runOpenLoop } from '../../bench/overload/open-loop.js';
import { FULL_PLAN, parseOverloadArgs, QUICK_PLAN } from '../../bench/overload/options.js';
import { mergeSorted } from '../../bench/overload/phase.js';
import type { OverloadReport } from '../../bench/overload/report.js';
import { shedLimitOf } from '../../bench/overload/shed.js';
import { failuresOf, main } from '../../bench/overload.js';
import { killAllClusters, liveClusters } from '../../bench/scale/cluster.js';
import { VALUE_BYTES } from '../../bench/scale/data.js';
import { DkvError, ErrorCode, isDkvError } from '../../src/errors.js';

const dirs: string[] = [];
afterAll(() => {
  killAllGenerators();
  killAllClusters();
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
  it('has a full plan of 1x, 2x, 4x for 10 s and a quick one of 2x, 4x for 3 s', () => {
    expect(parseOverloadArgs([])).toEqual({ plan: FULL_PLAN, outDir: undefined });
    expect(FULL_PLAN.factors).toEqual([1, 2, 4]);
    expect(FULL_PLAN.phaseMs).toBe(10_000);
    expect(FULL_PLAN.capacity).toEqual({ concurrency: 64, warmupMs: 1000, measureMs: 5000 });
    expect(parseOverloadArgs(['--quick']).plan).toEqual(QUICK_PLAN);
    expect(QUICK_PLAN.factors).toEqual([2, 4]);
    expect(QUICK_PLAN.phaseMs).toBe(3000);
  });

  it('reads --time, --factors, --generators, --clients, --capacity-concurrency, --pending-max and --out', () => {
    const o = parseOverloadArgs([
      '--quick',
      '--time',
      '1.5',
      '--factors',
      '1, 3',
      '--generators',
      '3',
      '--clients',
      '2',
      '--capacity-concurrency',
      '128',
      '--pending-max',
      '2000',
      '--out',
      '/tmp/x',
    ]);
    expect(o.outDir).toBe('/tmp/x');
    expect(o.plan).toMatchObject({
      quick: true,
      phaseMs: 1500,
      factors: [1, 3],
      generators: 3,
      clientsPerGenerator: 2,
      capacity: { concurrency: 128, warmupMs: 500, measureMs: 2000 },
      nodeConfig: { pendingMax: 2000 },
    });
  });

  it('refuses bad values and unknown options, naming them', () => {
    expect(invalidArgument(() => parseOverloadArgs(['--factors', '2,x']))).toContain('"x"');
    expect(invalidArgument(() => parseOverloadArgs(['--factors', '0']))).toContain('--factors');
    expect(invalidArgument(() => parseOverloadArgs(['--time', '0']))).toContain('--time');
    expect(invalidArgument(() => parseOverloadArgs(['--generators', '1.5']))).toContain('--generators');
    expect(invalidArgument(() => parseOverloadArgs(['--pending-max', '-1']))).toContain('--pending-max');
    expect(invalidArgument(() => parseOverloadArgs(['--fast']))).toContain('usage');
  });

  it('exits 2 on a bad option, before starting anything', async () => {
    const err: string[] = [];
    expect(await main(['--factors', 'x'], { out: () => {}, err: (l) => err.push(l) })).toBe(2);
    expect(err.join('\n')).toMatch(/^error INVALID_ARGUMENT: --factors/);
  });
});

describe('which limit shed', () => {
  it("reads the nodes' and the client's OVERLOADED messages", () => {
    expect(shedLimitOf('node 3 has 20000 requests waiting; back off and retry')).toBe('nodePending');
    expect(shedLimitOf('group 4: too much is waiting to commit')).toBe('raftUncommitted');
    expect(shedLimitOf('more than 1024 requests in flight on this connection')).toBe('connectionInFlight');
    expect(
      shedLimitOf(
        'request 5758 of client 05934d is 1024 past its oldest unacknowledged one (the most is 1023)',
      ),
    ).toBe('sessionWindow');
    expect(shedLimitOf('more than 10000 requests in flight')).toBe('clientQueue');
    expect(shedLimitOf('the connection is backed up: local send queue full')).toBe('clientQueue');
    expect(shedLimitOf('cmd: not sent within 5000 ms (connection backed up)')).toBe('clientQueue');
    expect(shedLimitOf('too many leases (leasesMax 10)')).toBe('other');
  });
});

describe('the ledger', () => {
  it('makes unique 128-byte values and reads them back', () => {
    const v = valueOfPut(3, 123_456);
    expect(v).toHaveLength(VALUE_BYTES);
    expect(parsePutValue(v)).toEqual({ writer: 3, seq: 123_456 });
    expect(parsePutValue('3:1:')).toBeUndefined();
    expect(parsePutValue(42)).toBeUndefined();
    expect(parsePutValue('c'.repeat(VALUE_BYTES))).toBeUndefined();
  });

  it('passes a key whose last acknowledged put is its value, and an untouched key', () => {
    const l = new WriteLedger(0, 10);
    const a = l.begin(1, 0);
    l.end(a, Outcome.Ok, 5);
    const b = l.begin(1, 10);
    l.end(b, Outcome.Ok, 15);
    const finals = new Map<number, string>([[1, valueOfPut(0, b)]]);
    const c = l.check([1, 2], (k) => finals.get(k));
    expect(c).toMatchObject({ keysChecked: 2, keysWithAcks: 1, acked: 2, lostAcked: 0, reordered: 0 });
  });

  it('allows overlapping puts to land in either order', () => {
    const l = new WriteLedger(0, 10);
    const a = l.begin(1, 0);
    const b = l.begin(1, 1); // issued before a was acknowledged
    l.end(b, Outcome.Ok, 5);
    l.end(a, Outcome.Ok, 6);
    const c = l.check([1], () => valueOfPut(0, a));
    expect(c.lostAcked).toBe(0);
    expect(c.reordered).toBe(1);
  });

  it('finds a put lost behind an older value, an absent key and a foreign value', () => {
    const l = new WriteLedger(0, 10);
    const a = l.begin(1, 0);
    l.end(a, Outcome.Ok, 5);
    const b = l.begin(1, 6); // issued after a's acknowledgement: must win
    l.end(b, Outcome.Ok, 9);
    const d = l.begin(2, 0);
    l.end(d, Outcome.Ok, 1);
    const e = l.begin(3, 0);
    l.end(e, Outcome.Ok, 1);
    const finals = new Map<number, unknown>([
      [1, valueOfPut(0, a)],
      [3, valueOfPut(1, e)], // another writer's
    ]);
    const c = l.check([1, 2, 3], (k) => finals.get(k));
    expect(c.lostAcked).toBe(3);
    expect(c.foreign).toBe(1);
    expect(c.lostKeys.map((k) => [k.key, k.lostPuts])).toEqual([
      [1, 1],
      [2, 1],
      [3, 1],
    ]);
    expect(c.lostKeys[1]!.reason).toContain('absent');
  });

  it('counts a final value from a shed put or from one of unknown outcome apart', () => {
    const l = new WriteLedger(0, 10);
    const a = l.begin(1, 0);
    l.end(a, Outcome.Shed, 1);
    const b = l.begin(2, 0);
    l.end(b, Outcome.Failed, 1);
    const c = l.check([1, 2], (k) => valueOfPut(0, k === 1 ? a : b));
    expect(c).toMatchObject({ lostAcked: 0, finalFromShed: 1, finalFromUnknown: 1 });
  });

  it('grows past its first arrays and refuses a put ended twice', () => {
    const l = new WriteLedger(0, 1);
    let last = 0;
    for (let i = 0; i < 70_000; i++) {
      last = l.begin(0, i);
      l.end(last, Outcome.Ok, i + 0.5);
    }
    expect(l.puts).toBe(70_000);
    expect(l.check([0], () => valueOfPut(0, last)).lostAcked).toBe(0);
    expect(() => l.end(last, Outcome.Ok, 0)).toThrow(/not pending/);
  });
});

describe('the open-loop driver', () => {
  it('issues on schedule and sorts answers into accepted, shed by limit, and errors', async () => {
    const r = await runOpenLoop(
      (slot) =>
        new Promise((resolve, reject) =>
          setTimeout(() => {
            if (slot % 10 === 1)
              reject(new DkvError(ErrorCode.Overloaded, 'node 1 has 5 requests waiting; back off and retry'));
            else if (slot % 10 === 2) reject(new DkvError(ErrorCode.Timeout, 'no answer'));
            else resolve(undefined);
          }, 2),
        ),
      { ratePerSec: 2000, durationMs: 500, drainMs: 1000 },
    );
    expect(r.issued + r.missed).toBe(1000);
    expect(r.issued).toBeGreaterThan(500);
    expect(r.acked + r.shed + r.errors.TIMEOUT!).toBe(r.issued);
    expect(r.shed).toBe(r.shedBy.nodePending);
    expect(r.shed).toBeGreaterThan(0);
    expect(r.shedExamples.nodePending).toContain('requests waiting');
    expect(r.latencies.length).toBe(r.acked);
    expect(r.latencies[0]!).toBeGreaterThanOrEqual(1);
    expect(r.stuck).toBe(0);
  });

  it('misses what a late generator cannot issue, and never issues a request long after it was due', async () => {
    const spin = (ms: number): void => {
      const end = performance.now() + ms;
      while (performance.now() < end);
    };
    const r = await runOpenLoop(
      () => {
        spin(0.5); // at most ~2000 a second fit
        return Promise.resolve();
      },
      { ratePerSec: 20_000, durationMs: 300, drainMs: 1000, catchUpMs: 20 },
    );
    expect(r.missed).toBeGreaterThan(0);
    expect(r.issued + r.missed).toBe(6000);
    // A late request is at most catchUpMs behind its slot, however long a tick took.
    expect(r.lagMaxMs).toBeLessThanOrEqual(21);
  });

  it('counts answers that never come as stuck after the drain', async () => {
    const r = await runOpenLoop(() => new Promise(() => {}), {
      ratePerSec: 100,
      durationMs: 100,
      drainMs: 50,
    });
    expect(r.stuck).toBe(r.issued);
    expect(r.acked).toBe(0);
  });
});

describe('reading /proc and /metrics', () => {
  it('reads VmRSS and VmHWM', () => {
    expect(parseProcStatusMemory('Name:\tnode\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n')).toEqual({
      rssBytes: 1024 * 1024,
      hwmBytes: 2048 * 1024,
    });
    expect(parseProcStatusMemory('')).toEqual({ rssBytes: 0, hwmBytes: 0 });
  });

  it('reads the machine CPU line', () => {
    const a = parseProcStatCpu('cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4 5\n')!;
    const b = parseProcStatCpu('cpu  200 0 200 800 200 0 0 0 0 0\n')!;
    expect(machineCpuBetween(a, b)).toEqual({ busy: 0.5, iowait: 0.25 });
    expect(parseProcStatCpu('intr 1 2 3')).toBeUndefined();
  });

  it("sums the nodes' put histograms and errors, and bounds a quantile", () => {
    const text = (n: number, shed: number): string =>
      [
        '# HELP dkv_request_duration_seconds x',
        `dkv_request_duration_seconds_bucket{le="0.01",op="put",store="default"} ${n}`,
        `dkv_request_duration_seconds_bucket{le="0.1",op="put",store="default"} ${n * 2}`,
        `dkv_request_duration_seconds_bucket{le="+Inf",op="put",store="default"} ${n * 2}`,
        `dkv_request_duration_seconds_count{op="put",store="default"} ${n * 2}`,
        `dkv_request_duration_seconds_count{op="get",store="default"} 999`,
        `dkv_request_errors_total{op="put",store="default",code="OVERLOADED"} ${shed}`,
      ].join('\n');
    const a = parsePutMetrics(text(10, 1));
    const b = parsePutMetrics(text(60, 4), parsePutMetrics(text(40, 3)));
    const d = diffPutMetrics(a, b);
    expect(d.count).toBe(180);
    expect(d.errors).toEqual({ OVERLOADED: 6 });
    expect(quantileBoundMs(d, 0.5)).toBe(10);
    expect(quantileBoundMs(d, 0.99)).toBe(100);
    expect(quantileBoundMs({ buckets: new Map(), count: 0, errors: {} }, 0.5)).toBeNaN();
  });

  it('merges sorted latency samples', () => {
    expect([...mergeSorted([Float64Array.of(1, 5), Float64Array.of(2, 3, 9), new Float64Array(0)])]).toEqual([
      1, 2, 3, 5, 9,
    ]);
  });
});

/** leftovers lists processes whose command line names a scale temp dir (nodes) or a generator. */
function leftovers(): Set<number> {
  const out = new Set<number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
      if (cmd.includes('dkv-scale-') || cmd.includes('overload/generator')) out.add(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}

describe('a real --quick run', () => {
  it('overloads a 3-node cluster, loses no acknowledged put, and leaves nothing behind', async () => {
    const outDir = mkdtempSync(join(tmpdir(), 'dkv-overload-test-out-'));
    dirs.push(outDir);
    const before = leftovers();
    const tempBefore = new Set(readdirSync(tmpdir()).filter((n) => n.startsWith('dkv-scale-')));
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(['--quick', '--out', outDir], {
      out: (l) => out.push(l),
      err: (l) => err.push(l),
    });
    const stderr = err.join('\n');
    expect(code, stderr).toBe(0);

    expect(liveClusters()).toBe(0);
    expect(liveGenerators()).toBe(0);
    expect([...leftovers()].filter((p) => !before.has(p) && p !== process.pid)).toEqual([]);
    expect(readdirSync(tmpdir()).filter((n) => n.startsWith('dkv-scale-') && !tempBefore.has(n))).toEqual([]);

    const files = readdirSync(outDir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^\d{4}-\d{2}-\d{2}-overload-quick\.json$/);
    const report = JSON.parse(readFileSync(join(outDir, files[0]!), 'utf8')) as OverloadReport;
    expect(report.kind).toBe('dkv-overload');
    expect(report.errors).toEqual([]);
    expect(failuresOf(report)).toEqual([]);
    expect(report.capacity!.opsPerSec).toBeGreaterThan(0);
    expect(report.capacity!.errors).toBe(0);

    expect(report.phases.map((p) => p.factor)).toEqual([2, 4]);
    for (const p of report.phases) {
      expect(p.acked, `${p.factor}x`).toBeGreaterThan(0);
      expect(p.acceptedPerSec).toBeGreaterThan(0);
      expect(p.offeredPerSec).toBeCloseTo(p.factor * report.capacity!.opsPerSec, -1);
      expect(p.issued).toBe(p.acked + p.shed + Object.values(p.errors).reduce((a, b) => a + b, 0) + p.stuck);
      expect(p.p99Ms).toBeGreaterThanOrEqual(p.p50Ms);
      expect(p.nodeMemory).toHaveLength(3);
      for (const m of p.nodeMemory) {
        expect(m.peakMiB).toBeGreaterThan(0);
        expect(m.hwmMiB).toBeGreaterThanOrEqual(m.peakMiB - 1);
      }
      expect(p.rssSamples.length).toBeGreaterThanOrEqual(10);
      expect(p.stuck).toBe(0);
    }
    // At 4x the cluster sheds, or the generators (sharing the box) could not even issue it all.
    const x4 = report.phases[1]!;
    const shed = x4.shed > 0;
    const underIssued = x4.issuedPerSec < 0.95 * x4.offeredPerSec;
    expect(
      shed || underIssued,
      JSON.stringify({ shed: x4.shed, issued: x4.issuedPerSec, offered: x4.offeredPerSec }),
    ).toBe(true);
    console.info(
      `overload --quick at 4x: offered ${x4.offeredPerSec}/s, issued ${x4.issuedPerSec}/s, accepted ${x4.acceptedPerSec}/s, shed ${x4.shed} (${shed ? 'the cluster shed' : 'nothing shed'}${underIssued ? '; the generators could not issue the full rate' : ''})`,
    );

    const after = report.after!;
    expect(after.lostAcked).toBe(0);
    expect(after.lostKeys).toEqual([]);
    expect(after.foreign).toBe(0);
    expect(after.readErrors).toBe(0);
    expect(after.keysChecked).toBe(report.plan.keySpace);
    expect(after.acked).toBe(report.phases.reduce((a, p) => a + p.acked, 0));
    expect(after.nodesAlive).toEqual([true, true, true]);
    expect(after.health.map((h) => h.ok)).toEqual([true, true, true]);
    expect(after.putAfter.ok).toBe(true);

    const text = out.join('\n');
    expect(text).toContain('**Overload**');
    expect(text).toContain('**Node memory under overload**');
    expect(text).toContain('lostAcked **0**');
  });
});
