/**
 * `npm run jepsen:soak`: the long proof (issue 7). Two parts, each run after the other on a
 * fresh cluster per run:
 *
 * - The correct build: `--runs` seeded runs (default 20) that rotate through every workload
 *   and every nemesis (each run gets a workload and a set of nemeses), each `--time` seconds.
 *   Every one must come out valid.
 * - The positive controls: every planted bug (`--bug`), `--bug-seeds` seeds each (default
 *   10), `--bug-time` seconds each (default 40), with the workload and nemeses that expose
 *   it. Each must be caught (valid=false) in at least 9 of 10.
 *
 * Writes every run's outputs under `--out` (default jepsen-out/soak-<time>), plus
 * `summary.json` and `summary.md` (the tables for the README), and prints progress. Exits 0
 * when every correct run was valid and every bug was caught in at least 90% of its seeds.
 *
 *     npm run jepsen:soak -- [--runs N] [--time S] [--bug-seeds N] [--bug-time S]
 *                            [--only correct|bugs] [--bug NAME,...] [--out DIR] [--seed X]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BUGS, type BugName, runTest, WORKLOADS, type WorkloadName } from './runner/run.js';
import type { NemesisName } from './runner/schedule.js';

/** NEMESIS_SETS rotate through every nemesis the runner supports. */
const NEMESIS_SETS: NemesisName[][] = [
  ['partition', 'kill'],
  ['partition-leader', 'pause'],
  ['partition-ring', 'bridge'],
  ['clock', 'kill'],
  ['delay', 'partition'],
  ['pause', 'kill', 'partition-leader'],
  ['bridge', 'delay', 'clock'],
  ['kill'],
  ['membership', 'partition'],
  ['membership'],
];

/** BUG_PLANS: the workload and nemeses that expose each planted bug. */
const BUG_PLANS: Record<
  BugName,
  { workload: WorkloadName; nemeses: NemesisName[]; opTimeoutMs?: number; concurrency?: number }
> = {
  'stale-read': { workload: 'register', nemeses: ['partition-leader', 'partition'] },
  'no-fsync': { workload: 'set', nemeses: ['kill'] },
  'lock-no-lease-check': { workload: 'lock', nemeses: ['partition', 'pause'] },
  'watch-skip': { workload: 'watch', nemeses: ['partition', 'kill'] },
  // A paused or killed leader leaves entries its followers hold but it never answered: the
  // client's retry of such a request is what the exactly-once table must catch.
  // A long call timeout keeps those calls ok instead of info, so the counter's bounds are
  // exact enough to see an add applied twice.
  // More workers keep more requests in flight at the moment of the fault.
  'double-apply': { workload: 'counter', nemeses: ['pause', 'kill'], opTimeoutMs: 20_000, concurrency: 32 },
};

interface RunRow {
  kind: 'correct' | 'bug';
  workload: string;
  nemeses: string;
  bug: string | null;
  seed: number;
  valid: unknown;
  ops: number;
  checkMs: number;
  wallMs: number;
  out: string;
  violations: string[];
  faultsUnverified: string[];
  error?: string;
}

function violationsOf(results: Record<string, unknown>): string[] {
  const out: string[] = [];
  const lin = results.linearizability as { valid: unknown; invalid: { key: string }[] } | null;
  if (lin !== null && lin !== undefined && lin.valid === false)
    out.push(
      `linearizability: ${lin.invalid.length === 10 ? '10+' : lin.invalid.length} non-linearizable key(s)`,
    );
  for (const c of (results.checkers ?? []) as {
    checker: string;
    valid: unknown;
    stats: Record<string, number>;
  }[]) {
    if (c.valid === true) continue;
    const kinds = Object.entries(c.stats)
      .filter(([k]) => k.startsWith('violations:'))
      .map(([k, n]) => `${k.slice('violations:'.length)}×${n}`);
    out.push(`${c.checker}: ${kinds.join(' ') || String(c.valid)}`);
  }
  return out;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '20' },
      time: { type: 'string', default: '30' },
      'bug-seeds': { type: 'string', default: '10' },
      'bug-time': { type: 'string', default: '40' },
      only: { type: 'string' },
      out: { type: 'string' },
      seed: { type: 'string', default: '1000' },
      bug: { type: 'string' },
    },
  });
  const runs = Number(values.runs);
  const time = Number(values.time);
  const bugSeeds = Number(values['bug-seeds']);
  const bugTime = Number(values['bug-time']);
  const seed0 = Number(values.seed);
  for (const [k, v] of Object.entries({ runs, time, bugSeeds, bugTime, seed0 }))
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`--${k} must be a non-negative integer`);
  const only = values.only;
  if (only !== undefined && only !== 'correct' && only !== 'bugs')
    throw new Error('--only must be correct or bugs');
  const out = resolve(values.out ?? `jepsen-out/soak-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(out, { recursive: true });
  const rows: RunRow[] = [];
  const plan: {
    kind: 'correct' | 'bug';
    workload: WorkloadName;
    nemeses: NemesisName[];
    bug?: BugName;
    opTimeoutMs?: number;
    concurrency?: number;
    seed: number;
    time: number;
  }[] = [];
  if (only !== 'bugs')
    for (let i = 0; i < runs; i++)
      plan.push({
        kind: 'correct',
        workload: WORKLOADS[i % WORKLOADS.length]!,
        nemeses: NEMESIS_SETS[i % NEMESIS_SETS.length]!,
        seed: seed0 + i,
        time,
      });
  if (only !== 'correct')
    for (const bug of BUGS.filter((b) => values.bug === undefined || values.bug.split(',').includes(b)))
      for (let i = 0; i < bugSeeds; i++)
        plan.push({ kind: 'bug', ...BUG_PLANS[bug], bug, seed: seed0 + 500 + i, time: bugTime });

  const t0 = performance.now();
  for (const [i, p] of plan.entries()) {
    const name = `${String(i).padStart(3, '0')}-${p.kind === 'bug' ? `bug-${p.bug}` : p.workload}-${p.nemeses.join('+')}-${p.seed}`;
    const dir = join(out, name);
    const w0 = performance.now();
    process.stdout.write(`[${i + 1}/${plan.length}] ${name} ... `);
    try {
      const o = await runTest({
        workload: p.workload,
        nemeses: p.nemeses,
        timeSec: p.time,
        nodes: 3,
        seed: p.seed,
        out: dir,
        ...(p.bug !== undefined && { bug: p.bug }),
        ...(p.opTimeoutMs !== undefined && { opTimeoutMs: p.opTimeoutMs }),
        ...(p.concurrency !== undefined && { concurrency: p.concurrency }),
      });
      const r = o.results as {
        ops: { total: number };
        checkMs: number;
        faults: { nemesis: string; verified: string }[];
      };
      rows.push({
        kind: p.kind,
        workload: p.workload,
        nemeses: p.nemeses.join(','),
        bug: p.bug ?? null,
        seed: p.seed,
        valid: o.valid,
        ops: r.ops.total,
        checkMs: r.checkMs,
        wallMs: Math.round(performance.now() - w0),
        out: dir,
        violations: violationsOf(o.results),
        faultsUnverified: r.faults
          .filter((f) => !String(f.verified).startsWith('ok'))
          .map((f) => `${f.nemesis}: ${f.verified}`),
      });
    } catch (err) {
      rows.push({
        kind: p.kind,
        workload: p.workload,
        nemeses: p.nemeses.join(','),
        bug: p.bug ?? null,
        seed: p.seed,
        valid: 'error',
        ops: 0,
        checkMs: 0,
        wallMs: Math.round(performance.now() - w0),
        out: dir,
        violations: [],
        faultsUnverified: [],
        error: String(err),
      });
    }
    const last = rows.at(-1)!;
    process.stdout.write(
      `${String(last.valid)} (${last.ops} ops, checked in ${last.checkMs} ms${last.violations.length > 0 ? `; ${last.violations.join('; ')}` : ''}${last.error ? `; ${last.error}` : ''})\n`,
    );
    writeFileSync(join(out, 'summary.json'), `${JSON.stringify(rows, null, 2)}\n`);
  }

  // Tables.
  const md: string[] = [];
  const correct = rows.filter((r) => r.kind === 'correct');
  let ok = true;
  if (correct.length > 0) {
    md.push(
      '| workload | nemeses | runs | valid | invalid | unknown | ops checked | checker time |',
      '|---|---|---|---|---|---|---|---|',
    );
    const keyOf = (r: RunRow): string => `${r.workload}|${r.nemeses}`;
    for (const k of [...new Set(correct.map(keyOf))]) {
      const rs = correct.filter((r) => keyOf(r) === k);
      const [w, n] = k.split('|');
      md.push(
        `| ${w} | ${n} | ${rs.length} | ${rs.filter((r) => r.valid === true).length} | ${rs.filter((r) => r.valid === false).length} | ${rs.filter((r) => r.valid !== true && r.valid !== false).length} | ${rs.reduce((a, r) => a + r.ops, 0)} | ${rs.reduce((a, r) => a + r.checkMs, 0)} ms |`,
      );
    }
    const bad = correct.filter((r) => r.valid !== true);
    md.push(
      '',
      `Correct build: ${correct.length} runs, ${correct.length - bad.length} valid, ${bad.length} not.`,
    );
    for (const r of bad)
      md.push(
        `- ${r.workload} ${r.nemeses} seed ${r.seed}: ${String(r.valid)} ${r.violations.join('; ')} ${r.error ?? ''} (${r.out})`,
      );
    if (bad.length > 0) ok = false;
  }
  const bugs = rows.filter((r) => r.kind === 'bug');
  if (bugs.length > 0) {
    md.push(
      '',
      '| planted bug | workload | nemeses | seeds | caught (valid=false) | violations found | ops checked |',
      '|---|---|---|---|---|---|---|',
    );
    for (const bug of BUGS) {
      const rs = bugs.filter((r) => r.bug === bug);
      if (rs.length === 0) continue;
      const caught = rs.filter((r) => r.valid === false).length;
      if (caught * 10 < rs.length * 9) ok = false;
      const kinds = [...new Set(rs.flatMap((r) => r.violations.map((v) => v.replace(/×\d+/g, ''))))].join(
        '; ',
      );
      md.push(
        `| ${bug} | ${rs[0]!.workload} | ${rs[0]!.nemeses} | ${rs.length} | ${caught}/${rs.length} | ${kinds} | ${rs.reduce((a, r) => a + r.ops, 0)} |`,
      );
    }
  }
  md.push('', `Total wall time: ${Math.round((performance.now() - t0) / 1000)} s.`);
  writeFileSync(join(out, 'summary.md'), `${md.join('\n')}\n`);
  process.stdout.write(`\n${md.join('\n')}\n\nsummary: ${join(out, 'summary.md')}\n`);
  return ok ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  },
);
