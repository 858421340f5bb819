/**
 * The overload benchmark (issue 10, "Overload"): what a DKV cluster does when offered more
 * puts than it can take. It should shed the excess with OVERLOADED, keep the latency of what
 * it accepts bounded and its memory flat, stay up, and lose no acknowledged write.
 *
 *     npx tsx bench/overload.ts [--quick] [--time S] [--factors 2,4] [--generators N]
 *         [--clients N] [--pending-max N] [--shed-wait-ms N] [--out DIR]
 *
 * 1. A real 3-node cluster on loopback (bench/scale/cluster.ts, as `dkv dev` starts one),
 *    with --pending-max passed to the nodes' config when given.
 * 2. Capacity: a closed loop of puts at C=64 (bench/compare/loadgen.ts runPoint) measures X
 *    puts per second.
 * 3. Open-loop phases at each factor times X (overload/open-loop.ts), split over generator
 *    processes (overload/generator.ts), each with several clients that do not retry
 *    OVERLOADED. Per phase: offered, issued and accepted rates, shed rate and the limit that
 *    shed, other errors, latency of the accepted puts, the nodes' CPU, and each node's memory
 *    (RSS sampled every 250 ms, and VmHWM).
 * 4. Afterwards: every key is read back linearizably and checked against the ledger of
 *    acknowledged puts (overload/ledger.ts), every node must still run and answer /health,
 *    and one more put must succeed.
 * 5. The tables go to stdout (progress to stderr), the figures to
 *    `<out>/<date>-overload[-quick][-pendingMax<N>].json`.
 *
 * Exit code: 2 on a bad option, 1 when something failed (a phase, a lost acknowledged put, a
 * node down or unhealthy, the last put), 0 otherwise. SIGINT or SIGTERM kills the nodes and
 * the generators and removes the temp dir.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { DkvClient } from '../src/client/client.js';
import { round, runPoint } from './compare/loadgen.js';
import { keyOf, VALUE_BYTES } from './compare/workloads.js';
import type { VerifyResult } from './overload/generator.js';
import { GeneratorProcess, killAllGenerators } from './overload/generator-process.js';
import { type OverloadPlan, parseOverloadArgs } from './overload/options.js';
import { runPhase } from './overload/phase.js';
import {
  type AfterCheck,
  type CapacityResult,
  type HealthCheck,
  type OverloadReport,
  reportMarkdown,
  shedByText,
} from './overload/report.js';
import { killAllClusters, ScaleCluster, sleep } from './scale/cluster.js';
import { messageOf, RESULTS_DIR, type ScaleIo, sourceOf, stdio } from './scale.js';

/** OverloadIo is where a run's lines go: tables to out, progress to err. */
export type OverloadIo = ScaleIo;

const CAPACITY_VALUE = 'c'.repeat(VALUE_BYTES);

/** measureCapacity runs the closed-loop put phase on keys keySpace..2*keySpace-1 (not the open-loop phases' keys). */
async function measureCapacity(c: ScaleCluster, plan: OverloadPlan): Promise<CapacityResult> {
  const client = await c.connect();
  try {
    const p = await runPoint(
      async (w) => {
        await client.put(keyOf(plan.keySpace + w.next(plan.keySpace)), CAPACITY_VALUE);
      },
      { ...plan.capacity, pids: () => c.pids() },
    );
    return {
      concurrency: p.concurrency,
      opsPerSec: p.opsPerSec,
      p50Ms: p.p50Ms,
      p99Ms: p.p99Ms,
      maxMs: p.maxMs,
      errors: p.errors,
      ...(p.firstError !== undefined && { firstError: p.firstError }),
      serverCpu: p.serverCpu,
      clientCpu: p.clientCpu,
    };
  } finally {
    await c.release(client);
  }
}

/** healthOf polls a node's GET /health until it answers ok, for up to timeoutMs. */
async function healthOf(node: number, port: number, timeoutMs: number): Promise<HealthCheck> {
  const t0 = performance.now();
  let status = 0;
  let error: string | undefined;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(2000) });
      status = res.status;
      await res.text();
      if (res.ok) return { node, ok: true, status, waitedMs: round(performance.now() - t0) };
      error = `HTTP ${status}`;
    } catch (err) {
      error = messageOf(err);
    }
    if (performance.now() - t0 > timeoutMs)
      return {
        node,
        ok: false,
        status,
        waitedMs: round(performance.now() - t0),
        ...(error !== undefined && { error }),
      };
    await sleep(200);
  }
}

/** checkAfter reads every key back through the generators and checks the nodes. */
async function checkAfter(c: ScaleCluster, generators: readonly GeneratorProcess[]): Promise<AfterCheck> {
  const verified: VerifyResult[] = await Promise.all(generators.map((g) => g.verify({ concurrency: 32 })));
  const nodesAlive = [...c.cluster.nodes.values()].map((n) => n.running);
  const health = await Promise.all(c.specs.map((s) => healthOf(s.id, s.adminPort, 10_000)));
  let putAfter: AfterCheck['putAfter'];
  const t0 = performance.now();
  let client: DkvClient | undefined;
  try {
    client = await c.connect({ requestTimeoutMs: 10_000 });
    await client.put('overload:after', 'ok');
    putAfter = { ok: true, ms: round(performance.now() - t0, 1) };
  } catch (err) {
    putAfter = { ok: false, ms: round(performance.now() - t0, 1), error: messageOf(err) };
  } finally {
    if (client !== undefined) await c.release(client);
  }
  const sum = (f: (v: VerifyResult) => number): number => verified.reduce((a, v) => a + f(v), 0);
  const readErrorExample = verified.find((v) => v.readErrorExample !== undefined)?.readErrorExample;
  return {
    lostAcked: sum((v) => v.check.lostAcked),
    lostKeys: verified.flatMap((v, i) =>
      v.check.lostKeys.map((k) => ({ ...k, writer: generators[i]!.writer })),
    ),
    puts: sum((v) => v.puts),
    acked: sum((v) => v.check.acked),
    keysChecked: sum((v) => v.check.keysChecked),
    keysWithAcks: sum((v) => v.check.keysWithAcks),
    reordered: sum((v) => v.check.reordered),
    finalFromShed: sum((v) => v.check.finalFromShed),
    finalFromUnknown: sum((v) => v.check.finalFromUnknown),
    foreign: sum((v) => v.check.foreign),
    readErrors: sum((v) => v.readErrors),
    ...(readErrorExample !== undefined && { readErrorExample }),
    nodesAlive,
    health,
    putAfter,
  };
}

/** runOverload runs the plan on a fresh cluster and returns the report (the caller prints and writes it). */
export async function runOverload(plan: OverloadPlan, io: OverloadIo = stdio): Promise<OverloadReport> {
  const t0 = performance.now();
  const cpu = cpus();
  const report: OverloadReport = {
    kind: 'dkv-overload',
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
    phases: [],
    errors: [],
    elapsedS: 0,
  };
  const say = io.err;
  say(
    `overload: factors ${plan.factors.join(', ')} x capacity, ${plan.phaseMs / 1000} s each${plan.quick ? ' (quick)' : ''}; ${plan.generators} generators x ${plan.clientsPerGenerator} clients; code at ${report.source.commit}${report.source.changedSrcFiles.length > 0 ? ` with changes under src/: ${report.source.changedSrcFiles.join(', ')}` : ''}`,
  );
  let c: ScaleCluster | undefined;
  const generators: GeneratorProcess[] = [];
  try {
    say('overload: starting 3 nodes');
    c = await ScaleCluster.start({ nodes: 3, config: plan.nodeConfig, warn: say });
    const cluster = c;
    say(
      `overload: ready in ${(c.startMs / 1000).toFixed(1)} s; measuring capacity (closed loop, C=${plan.capacity.concurrency})`,
    );
    try {
      const cap = await measureCapacity(c, plan);
      report.capacity = cap;
      say(
        `overload: capacity ${cap.opsPerSec} puts/s, p50 ${cap.p50Ms} ms, p99 ${cap.p99Ms} ms, node CPU ${(cap.serverCpu * 100).toFixed(0)}%${cap.errors > 0 ? `, ${cap.errors} errors (${cap.firstError})` : ''}`,
      );
      if (!(cap.opsPerSec > 0)) throw new Error(`the capacity phase measured ${cap.opsPerSec} puts/s`);
      say(`overload: starting ${plan.generators} load generator process(es)`);
      generators.push(
        ...(await Promise.all(
          Array.from({ length: plan.generators }, (_, writer) =>
            GeneratorProcess.start(
              {
                type: 'init',
                servers: cluster.servers,
                writer,
                writers: plan.generators,
                keySpace: plan.keySpace,
                clients: plan.clientsPerGenerator,
                requestTimeoutMs: plan.requestTimeoutMs,
                seed: 1,
              },
              say,
            ),
          ),
        )),
      );
      for (const factor of plan.factors) {
        await sleep(plan.settleMs);
        const offered = factor * cap.opsPerSec;
        say(`overload: ${factor}x: offering ${Math.round(offered)} puts/s for ${plan.phaseMs / 1000} s`);
        const row = await runPhase(generators, {
          factor,
          offeredPerSec: offered,
          durationMs: plan.phaseMs,
          drainMs: plan.requestTimeoutMs + 2000,
          nodePids: cluster.pids(),
          adminPorts: cluster.specs.map((spec) => spec.adminPort),
        });
        report.phases.push(row);
        const rss = row.nodeMemory.map((m) => `${m.startMiB}->${m.endMiB} (peak ${m.peakMiB})`).join(', ');
        say(
          `overload: ${factor}x: issued ${row.issuedPerSec}/s${row.missed > 0 ? ` (${row.missed} missed: generators too slow)` : ''}, accepted ${row.acceptedPerSec}/s, shed ${row.shedPerSec}/s (${(row.shedFraction * 100).toFixed(1)}%: ${shedByText(row)}), other errors ${JSON.stringify(row.errors)}, p50 ${row.p50Ms} ms, p99 ${row.p99Ms} ms, max ${row.maxMs} ms (generator loop p99 ${row.generatorLoopDelayP99Ms.join(' ')} ms; node p99 <= ${row.nodePutP99BoundMs} ms), drain ${row.drainMs} ms, CPU nodes ${(row.nodeCpu * 100).toFixed(0)}% generators ${row.generatorCpu.map((x) => `${(x * 100).toFixed(0)}%`).join(' ')} box busy ${(row.machineCpu.busy * 100).toFixed(0)}% iowait ${(row.machineCpu.iowait * 100).toFixed(0)}%, node RSS MiB ${rss}`,
        );
      }
    } catch (err) {
      report.errors.push(messageOf(err));
      say(`overload: FAILED: ${messageOf(err)}`);
    }
    if (generators.length === plan.generators) {
      say('overload: reading every key back and checking the nodes');
      try {
        report.after = await checkAfter(c, generators);
        say(`overload: lostAcked ${report.after.lostAcked}`);
      } catch (err) {
        report.errors.push(`the check after the load: ${messageOf(err)}`);
        say(`overload: the check FAILED: ${messageOf(err)}`);
      }
    }
  } catch (err) {
    report.errors.push(messageOf(err));
    say(`overload: FAILED: ${messageOf(err)}`);
  } finally {
    await Promise.all(generators.map((g) => g.close()));
    await c?.stop();
  }
  report.elapsedS = Math.round((performance.now() - t0) / 100) / 10;
  return report;
}

/** failuresOf lists why a report is a failure (empty: it passed). */
export function failuresOf(report: OverloadReport): string[] {
  const out = [...report.errors];
  const a = report.after;
  if (a === undefined) out.push('no check after the load');
  else {
    if (a.lostAcked > 0) out.push(`${a.lostAcked} acknowledged put(s) lost`);
    if (a.foreign > 0) out.push(`${a.foreign} key(s) hold values never put there`);
    if (a.readErrors > 0) out.push(`${a.readErrors} final read(s) failed`);
    if (!a.nodesAlive.every((x) => x)) out.push('a node is down');
    if (!a.health.every((h) => h.ok)) out.push('a node is not healthy');
    if (!a.putAfter.ok) out.push('the put after the load failed');
  }
  return out;
}

/** writeOverloadReport writes `<dir>/<date>-overload[-quick][-pendingMax<N>].json` and returns its path. */
export function writeOverloadReport(report: OverloadReport, dir: string): string {
  mkdirSync(dir, { recursive: true });
  const pending = report.plan.nodeConfig.pendingMax;
  const shed = report.plan.nodeConfig.shedWaitMs;
  const name = `${report.date.slice(0, 10)}-overload${report.plan.quick ? '-quick' : ''}${pending !== undefined ? `-pendingMax${String(pending)}` : ''}${shed !== undefined ? `-shedWaitMs${String(shed)}` : ''}`;
  const file = join(dir, `${name}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  return file;
}

/** main is the command line: parse, run, print, write; exit code as the file comment says. */
export async function main(argv: readonly string[], io: OverloadIo = stdio): Promise<number> {
  let opts: ReturnType<typeof parseOverloadArgs>;
  try {
    opts = parseOverloadArgs(argv);
  } catch (err) {
    io.err(`error ${messageOf(err)}`);
    return 2;
  }
  const onSignal = (sig: NodeJS.Signals): void => {
    io.err(`\n${sig}: stopping the nodes and the generators`);
    killAllGenerators();
    killAllClusters();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const report = await runOverload(opts.plan, io);
    io.out(reportMarkdown(report));
    const file = writeOverloadReport(report, resolve(opts.outDir ?? RESULTS_DIR));
    const failures = failuresOf(report);
    io.err(
      `\nwrote ${file} (${report.elapsedS} s in all)${failures.length > 0 ? `; FAILED: ${failures.join('; ')}` : ''}`,
    );
    return failures.length > 0 ? 1 : 0;
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
