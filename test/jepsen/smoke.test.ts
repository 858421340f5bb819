/**
 * The harness's smoke test (issue 7, "Proof"): a few workloads on a real 3-node cluster, about
 * 20 seconds each, under partitions and kills, must come out valid, with every fault
 * verified to have taken effect and every output written. Two planted bugs (positive
 * controls) must be caught: a harness that cannot fail proves nothing. The longer matrix and
 * every planted bug over 10 seeds are `npm run jepsen:soak`.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runTest, type WorkloadName } from '../../jepsen-like/runner/run.js';

const dir = mkdtempSync(join(tmpdir(), 'dkv-jepsen-smoke-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SMOKE: { workload: WorkloadName; seed: number }[] = [
  { workload: 'register', seed: 101 },
  { workload: 'set', seed: 102 },
  { workload: 'lock', seed: 103 },
  { workload: 'watch', seed: 104 },
];

describe('jepsen smoke: real cluster, partition and kill', () => {
  for (const s of SMOKE) {
    it(`${s.workload} is valid under partition,kill (seed ${s.seed})`, async () => {
      const out = join(dir, s.workload);
      const lines: string[] = [];
      const outcome = await runTest({
        workload: s.workload,
        nemeses: ['partition', 'kill'],
        timeSec: 20,
        nodes: 3,
        seed: s.seed,
        out,
        log: (l) => lines.push(l),
      });
      const r = outcome.results as {
        ops: { ok: number };
        faults: { nemesis: string; verified: string }[];
        harnessProblems: string[];
      };
      if (outcome.valid !== true)
        console.error(lines.join('\n'), readFileSync(join(out, 'results.json'), 'utf8'));
      expect(outcome.valid).toBe(true);
      expect(r.harnessProblems).toEqual([]);
      expect(r.ops.ok).toBeGreaterThan(100);
      expect(r.faults.length).toBeGreaterThan(0);
      for (const f of r.faults) expect(f.verified, `${f.nemesis}: ${f.verified}`).toMatch(/^ok/);
      for (const f of ['history.jsonl', 'results.json', 'timeline.html', 'plot.html', 'nodes/node1.log'])
        expect(existsSync(join(out, f)), f).toBe(true);
    });
  }
});

describe('jepsen smoke: positive controls (planted bugs must be caught)', () => {
  for (const [workload, bug] of [
    ['lock', 'lock-no-lease-check'],
    ['watch', 'watch-skip'],
  ] as const) {
    it(`${workload} with --bug ${bug} is invalid`, async () => {
      const out = join(dir, `bug-${bug}`);
      const outcome = await runTest({ workload, nemeses: [], timeSec: 12, nodes: 3, seed: 7, out, bug });
      expect(outcome.valid).toBe(false);
    });
  }
});
