/**
 * runTest: one harness run (`npm run jepsen -- test`, CONTRACT.md "Fault-injection harness").
 *
 *  1. Start a cluster of real node processes behind fault proxies (cluster.ts), with the test
 *     hooks the run needs: the clock admin call for the clock nemesis, a planted bug for
 *     `--bug` (positive controls).
 *  2. Run the workload's workers (workloads/) for `--time` seconds while the seeded schedule
 *     (schedule.ts) starts and heals faults (nemesis.ts), each verified to take effect.
 *  3. Heal everything, wait for the cluster to recover, let the workers finish, and run the
 *     workload's final reads.
 *  4. Write `history.jsonl`, check it, and write `results.json`, `timeline.html`, `plot.html`
 *     and every node's log (`nodes/node<i>.log`) into the output directory.
 *
 * The cluster is destroyed whatever happens (processes killed, proxies closed, temp dir
 * removed). The verdict is valid / invalid / unknown, as the checkers say; a run whose
 * harness failed (the cluster never started, say) throws instead.
 */
import { setMaxListeners } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { DkvClient } from '../../src/client/client.js';
import { SeededRandom } from '../../src/random.js';
import { parseHistory } from '../history.js';
import { combineVerdicts, type Verdict } from '../verdict.js';
import { HarnessCluster } from './cluster.js';
import { type Fault, startFault } from './nemesis.js';
import { Recorder } from './recorder.js';
import { type FaultWindow, renderPlot, renderTimeline } from './report.js';
import { type NemesisName, planSchedule, type Step } from './schedule.js';
import { counterWorkload } from './workloads/counter.js';
import { leaseWorkload } from './workloads/lease.js';
import { lockWorkload } from './workloads/lock.js';
import { registerWorkload } from './workloads/register.js';
import { setWorkload } from './workloads/set.js';
import { watchWorkload } from './workloads/watch.js';
import {
  connectClient,
  sleep,
  type Workload,
  type WorkloadChecks,
  type WorkloadContext,
} from './workloads/workload.js';

/** WORKLOADS lists what `--workload` accepts. */
export const WORKLOADS = ['register', 'counter', 'set', 'lock', 'watch', 'lease'] as const;
/** WorkloadName is one of WORKLOADS. */
export type WorkloadName = (typeof WORKLOADS)[number];

/** BUGS lists what `--bug` accepts (the planted bugs, src/node/test-hooks.ts). */
export const BUGS = ['stale-read', 'no-fsync', 'lock-no-lease-check', 'watch-skip', 'double-apply'] as const;
/** BugName is one of BUGS. */
export type BugName = (typeof BUGS)[number];

/** TestOptions shape a run. */
export interface TestOptions {
  readonly workload: WorkloadName;
  readonly nemeses: readonly NemesisName[];
  readonly timeSec: number;
  readonly nodes: number;
  readonly seed: number;
  readonly out: string;
  readonly bug?: BugName;
  /** Workers (default: the workload's). */
  readonly concurrency?: number;
  /** A client call's timeout: past it the op is `info` (default 3000 ms). */
  readonly opTimeoutMs?: number;
  /** The linearizability search's budget per key (default 10 s). */
  readonly timeBudgetMs?: number;
  /** Extra node config fields. */
  readonly nodeConfig?: Readonly<Record<string, unknown>>;
  /** Progress lines (default: none). */
  readonly log?: (line: string) => void;
}

/** TestOutcome is what a run found. */
export interface TestOutcome {
  readonly valid: Verdict;
  readonly out: string;
  readonly results: Record<string, unknown>;
}

/** RECOVERY_NS bounds how long killed nodes take to restart and elect after the heal. */
const RECOVERY_NS = 5e9;
/** CLOCK_RATE_MAX and CLOCK_OFFSET_MAX_MS bound the clock nemesis. */
export const CLOCK_RATE_MAX = 1.1;
export const CLOCK_OFFSET_MAX_MS = 10_000;

/** makeWorkload builds a workload by name. */
export function makeWorkload(name: WorkloadName, concurrency?: number): Workload {
  switch (name) {
    case 'register':
      return registerWorkload(concurrency);
    case 'counter':
      return counterWorkload(concurrency);
    case 'set':
      return setWorkload(concurrency);
    case 'lock':
      return lockWorkload(concurrency);
    case 'watch':
      return concurrency === undefined ? watchWorkload() : watchWorkload(Math.max(1, concurrency - 2), 2);
    case 'lease':
      return leaseWorkload(concurrency);
  }
}

function withCap<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<'timeout'>((resolve) => {
      t = setTimeout(() => resolve('timeout'), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

/** runTest runs one test and writes its outputs into opts.out. */
export async function runTest(opts: TestOptions): Promise<TestOutcome> {
  const log = opts.log ?? (() => undefined);
  const out = resolve(opts.out);
  mkdirSync(out, { recursive: true });
  const timeMs = Math.round(opts.timeSec * 1000);
  const opTimeoutMs = opts.opTimeoutMs ?? 3000;
  const hooks = [
    ...(opts.nemeses.includes('clock') ? ['clock'] : []),
    ...(opts.bug === undefined ? [] : [`bug:${opts.bug}`]),
  ].join(',');
  const schedule = planSchedule({ seed: opts.seed, nemeses: opts.nemeses, timeMs });
  const workload = makeWorkload(opts.workload, opts.concurrency);
  const recorder = new Recorder({ timeoutMs: opTimeoutMs + 1000 });
  const unexpected: string[] = [];
  const nodeOutput: string[] = [];

  log(
    `jepsen test: workload ${workload.name} (${workload.concurrency} workers), nemesis ${
      opts.nemeses.join(',') || 'none'
    }, ${opts.timeSec} s, ${opts.nodes} nodes, seed ${opts.seed}${opts.bug ? `, PLANTED BUG ${opts.bug}` : ''}`,
  );
  log(
    `schedule: ${schedule.length} fault(s): ${schedule.map((s) => `${s.nemesis}@${(s.atMs / 1000).toFixed(1)}s`).join(' ')}`,
  );
  const t0 = performance.now();
  const cluster = await HarnessCluster.start({
    nodes: opts.nodes,
    testHooks: hooks,
    config: { ...opts.nodeConfig },
    onOutput: (id, line) => {
      if (nodeOutput.length < 2000) nodeOutput.push(`[node${id}] ${line}`);
    },
    onUnexpectedExit: (id, description) => {
      unexpected.push(description);
      log(`!! node ${id} ended on its own:\n${description}`);
    },
  });
  log(`cluster up in ${Math.round(performance.now() - t0)} ms: ${cluster.servers.join(' ')}`);

  const clients = new Set<DkvClient>();
  const abort = new AbortController();
  const stop = new AbortController();
  // Every worker waits on these signals at once (sleep): many listeners is expected.
  setMaxListeners(0, abort.signal, stop.signal);
  const ctx: WorkloadContext = {
    servers: cluster.servers,
    recorder,
    rng: new SeededRandom(opts.seed ^ 0x5eed),
    signal: abort.signal,
    stopped: stop.signal,
    timeoutMs: opTimeoutMs,
    async client() {
      const c = await connectClient(cluster.servers, opTimeoutMs);
      clients.add(c);
      return c;
    },
    log,
  };
  const faults: FaultWindow[] = [];
  const outages: { startNs: number; endNs: number }[] = [];
  const faultLog: Record<string, unknown>[] = [];
  const workerErrors: string[] = [];
  let phaseTimes: Record<string, number> = {};
  try {
    const startNs = recorder.nowNs();
    const workers = Array.from({ length: workload.concurrency }, (_, n) =>
      workload.worker(ctx, n).catch((err: unknown) => {
        workerErrors.push(`worker ${n}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        log(`!! worker ${n} failed: ${String(err)}`);
      }),
    );
    const progress = setInterval(() => {
      const c = recorder.counts;
      log(`  t=${((recorder.nowNs() - startNs) / 1e9).toFixed(0)}s ok=${c.ok} fail=${c.fail} info=${c.info}`);
    }, 5000);
    try {
      await runSchedule(cluster, recorder, schedule, startNs, timeMs, faults, faultLog, outages, log);
      abort.abort();
      // Heal everything that might be left, then wait for the cluster to recover.
      const healStart = recorder.nowNs();
      recorder.nemesis('invoke', 'heal-all', null);
      cluster.healLinks();
      for (const id of cluster.ids) {
        if (cluster.isPaused(id)) cluster.resume(id);
        if (!cluster.running(id)) cluster.restart(id);
      }
      if (opts.nemeses.includes('clock'))
        for (const id of cluster.ids)
          await cluster.clock(id, { offsetMs: 0, rate: 1 }).catch(() => undefined);
      let recovered = 'ok';
      try {
        await cluster.waitReady(60_000);
      } catch (err) {
        recovered = `the cluster did not recover within 60 s: ${(err as Error).message}`;
        log(`!! ${recovered}`);
      }
      recorder.nemesis('info', 'heal-all', { recovered });
      faults.push({ name: 'recovery', detail: recovered, startNs: healStart, endNs: recorder.nowNs() });
      phaseTimes = { workloadMs: timeMs, recoveryMs: Math.round((recorder.nowNs() - healStart) / 1e6) };
      await sleep(1000);
      const waitWorkers = Promise.all(workers);
      if (!('watchers' in workload)) await withCap(waitWorkers, 30_000);
      const f0 = performance.now();
      await withCap(workload.final(ctx), 60_000);
      stop.abort();
      if ((await withCap(waitWorkers, 40_000)) === 'timeout') log('!! some workers did not end within 40 s');
      phaseTimes.finalMs = Math.round(performance.now() - f0);
    } finally {
      clearInterval(progress);
      abort.abort();
      stop.abort();
    }
  } finally {
    await Promise.all([...clients].map((c) => c.close().catch(() => undefined)));
    recorder.write(join(out, 'history.jsonl'));
    cluster.copyLogs(join(out, 'nodes'));
    writeFileSync(join(out, 'nodes', 'output.txt'), `${nodeOutput.join('\n')}\n`);
    await cluster.destroy();
  }

  log(
    `history: ${recorder.events.length} events (ok=${recorder.counts.ok} fail=${recorder.counts.fail} info=${recorder.counts.info}); checking...`,
  );
  const c0 = performance.now();
  const history = parseHistory(recorder.jsonl());
  const checks: WorkloadChecks = workload.check(history, {
    timeBudgetMs: opts.timeBudgetMs ?? 10_000,
    clockRateMax: opts.nemeses.includes('clock') ? CLOCK_RATE_MAX : 1,
    outages,
  });
  const checkMs = Math.round(performance.now() - c0);
  const verdicts: Verdict[] = [
    ...(checks.linearizability === undefined ? [] : [checks.linearizability.valid]),
    ...checks.checkers.map((c) => c.valid),
  ];
  const harnessProblems = [...workerErrors, ...unexpected.map((u) => `node ended on its own: ${u}`)];
  const valid = combineVerdicts(verdicts);
  const summary = {
    valid,
    workload: workload.name,
    nemeses: opts.nemeses,
    bug: opts.bug ?? null,
    seed: opts.seed,
    nodes: opts.nodes,
    timeSec: opts.timeSec,
    concurrency: workload.concurrency,
    ops: {
      total: history.ops.length,
      ok: recorder.counts.ok,
      fail: recorder.counts.fail,
      info: recorder.counts.info,
    },
    checkMs,
    phases: phaseTimes,
    faults: faultLog,
    outages,
    schedule,
    harnessProblems,
    linearizability:
      checks.linearizability === undefined
        ? null
        : {
            model: checks.linearizability.model,
            valid: checks.linearizability.valid,
            ops: checks.linearizability.ops,
            elapsedMs: checks.linearizability.elapsedMs,
            keys: checks.linearizability.partitions.length,
            invalid: checks.linearizability.partitions.filter((p) => p.valid === false).slice(0, 10),
            unknown: checks.linearizability.partitions.filter((p) => p.valid === 'unknown').map((p) => p.key),
          },
    checkers: checks.checkers,
  };
  writeFileSync(join(out, 'results.json'), `${JSON.stringify(summary, null, 2)}\n`);
  const verdictText = valid === true ? 'valid' : valid === false ? 'INVALID' : 'unknown';
  const title = `${workload.name} / ${opts.nemeses.join(',') || 'no faults'} / seed ${opts.seed}${opts.bug ? ` / bug ${opts.bug}` : ''}`;
  const notes = [
    `${summary.ops.total} ops (ok ${summary.ops.ok}, fail ${summary.ops.fail}, info ${summary.ops.info}); checked in ${checkMs} ms`,
    ...faultLog.map(
      (f) =>
        `${String(f.nemesis)} at ${String(f.atSec)} s: ${JSON.stringify(f.detail)} — verified: ${String(f.verified)}`,
    ),
  ];
  const report = { title, events: history.events, faults, verdict: verdictText, notes };
  writeFileSync(join(out, 'timeline.html'), renderTimeline(report));
  writeFileSync(join(out, 'plot.html'), renderPlot(report));
  log(`verdict: ${verdictText} (checked in ${checkMs} ms); outputs in ${out}`);
  return { valid, out, results: summary };
}

/** runSchedule runs the faults of the schedule until the workload's time is up. */
async function runSchedule(
  cluster: HarnessCluster,
  recorder: Recorder,
  schedule: readonly Step[],
  startNs: number,
  timeMs: number,
  faults: FaultWindow[],
  faultLog: Record<string, unknown>[],
  outages: { startNs: number; endNs: number }[],
  log: (line: string) => void,
): Promise<void> {
  const elapsedMs = (): number => (recorder.nowNs() - startNs) / 1e6;
  const ctx = {
    cluster,
    log,
    clockRateMax: CLOCK_RATE_MAX,
    clockOffsetMaxMs: CLOCK_OFFSET_MAX_MS,
  };
  for (const step of schedule) {
    await sleep(Math.max(0, step.atMs - elapsedMs()));
    if (elapsedMs() >= timeMs) break;
    const begin = recorder.nowNs();
    recorder.nemesis('invoke', 'start', { nemesis: step.nemesis });
    let fault: Fault;
    try {
      fault = await startFault(ctx, step);
    } catch (err) {
      recorder.nemesis('info', 'start', { nemesis: step.nemesis, error: String(err) });
      log(`!! ${step.nemesis} could not start: ${String(err)}`);
      continue;
    }
    recorder.nemesis('info', 'start', { nemesis: step.nemesis, detail: fault.detail });
    log(`  fault ${step.nemesis} ${JSON.stringify(fault.detail)}`);
    const entry: Record<string, unknown> = {
      nemesis: step.nemesis,
      atSec: Math.round(elapsedMs() / 100) / 10,
      holdMs: step.holdMs,
      detail: fault.detail,
      verified: 'pending',
    };
    faultLog.push(entry);
    void fault.verified.then((v) => {
      entry.verified = v;
      recorder.nemesis('info', 'verified', { nemesis: step.nemesis, verified: v });
      if (v !== 'ok' && !v.startsWith('ok ')) log(`!! ${step.nemesis} did not verify: ${v}`);
    });
    await sleep(Math.max(0, step.atMs + step.holdMs - elapsedMs()));
    await fault.verified.catch(() => undefined);
    recorder.nemesis('invoke', 'stop', { nemesis: step.nemesis });
    await fault.heal().catch((err: unknown) => log(`!! healing ${step.nemesis} failed: ${String(err)}`));
    recorder.nemesis('info', 'stop', { nemesis: step.nemesis });
    faults.push({
      name: step.nemesis,
      detail: JSON.stringify(fault.detail),
      startNs: begin,
      endNs: recorder.nowNs(),
    });
    // No majority runs from a majority or whole-cluster kill until the restarted nodes have
    // started and elected (RECOVERY_NS after the heal): replicated time may stand still.
    const mode = fault.detail.mode;
    if (step.nemesis === 'kill' && (mode === 'majority' || mode === 'all'))
      outages.push({ startNs: begin, endNs: recorder.nowNs() + RECOVERY_NS });
  }
  await sleep(Math.max(0, timeMs - elapsedMs()));
}
