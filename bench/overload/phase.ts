/**
 * One open-loop phase of the overload benchmark across its generator processes: every
 * generator gets an equal share of the offered rate and the same start time, the node
 * processes' memory is sampled throughout (memory.ts) and their CPU read at the window's edges,
 * and the generators' results are merged into one row (`mergePhase`, pure).
 *
 * Rates are per second of the window. "Accepted" is acknowledgements that arrived inside the
 * window (what the cluster got done while overloaded); the fractions are of the requests
 * issued (every answer, including ones that came during the drain). Latency percentiles are
 * nearest-rank over the acknowledged requests of every generator together.
 */
import { cpuSecondsOf, percentile, round } from '../compare/loadgen.js';
import type { GeneratorProcess } from './generator-process.js';
import { type CpuTimes, type MachineCpu, machineCpuBetween, machineCpuTimes } from './machine-cpu.js';
import { type MemorySample, MemorySampler, type NodeMemory } from './memory.js';
import { diffPutMetrics, type PutMetrics, quantileBoundMs, readPutMetrics } from './node-metrics.js';
import type { OpenLoopResult } from './open-loop.js';
import { emptyShedCounts, SHED_LIMITS, type ShedLimit } from './shed.js';

/** PhaseRow is what one phase measured, every generator together. Rates per second; times in ms. */
export interface PhaseRow {
  /** Offered load as a multiple of the capacity measured. */
  readonly factor: number;
  readonly offeredPerSec: number;
  readonly issuedPerSec: number;
  /** Requests the generators were too late to issue (they could not keep the schedule). */
  readonly missed: number;
  readonly issued: number;
  readonly acked: number;
  readonly acceptedPerSec: number;
  /** acked / issued. */
  readonly acceptedFraction: number;
  readonly shed: number;
  readonly shedPerSec: number;
  /** shed / issued. */
  readonly shedFraction: number;
  /** OVERLOADED answers by the limit that shed them (shed.ts), and one message of each. */
  readonly shedBy: Record<ShedLimit, number>;
  readonly shedExamples: Partial<Record<ShedLimit, string>>;
  /** Other errors by code (TIMEOUT...), and one message of each. */
  readonly errors: Record<string, number>;
  readonly errorExamples: Record<string, string>;
  /** Latency of the acknowledged requests, issue to answer. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
  /** The generators' schedule lag (worst p99, worst max), the most each had out at once (summed). */
  readonly lagP99Ms: number;
  readonly lagMaxMs: number;
  readonly inFlightMax: number;
  /** The longest wait for the last answer after the window, and answers that never came. */
  readonly drainMs: number;
  readonly stuck: number;
  /** The nodes' CPU over the window, summed (CPU seconds per second; 2.0 is both cores of a 2-core box). */
  readonly nodeCpu: number;
  /** Each generator's CPU over the window, and its event-loop delay p99. */
  readonly generatorCpu: number[];
  /** The whole machine over the window: share of all cores busy, and waiting on the disk. */
  readonly machineCpu: MachineCpu;
  /**
   * The nodes' own count of the puts they answered over the phase (window and drain), the
   * upper bounds of the latency buckets holding their p50 and p99 (arrival to answer in the
   * node, shed puts included), and their error answers by code (node-metrics.ts).
   */
  readonly nodePuts: number;
  readonly nodePutP50BoundMs: number;
  readonly nodePutP99BoundMs: number;
  readonly nodePutErrors: Record<string, number>;
  readonly generatorLoopDelayP99Ms: number[];
  readonly generatorRssMiB: number[];
  /** Each node's memory over the phase (window and drain), in node order. */
  readonly nodeMemory: NodeMemory[];
  /** The nodes' RSS every 250 ms from the phase's start to the end of its drain. */
  readonly rssSamples: MemorySample[];
}

function addInto(into: Record<string, number>, from: Readonly<Record<string, number>>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/** mergeSorted merges ascending arrays into one ascending array. */
export function mergeSorted(parts: readonly Float64Array[]): Float64Array {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Float64Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out.sort();
}

/** mergePhase merges the generators' results of one phase into a row (see the file comment). */
export function mergePhase(
  factor: number,
  offeredPerSec: number,
  results: readonly OpenLoopResult[],
  nodes: {
    readonly cpu: number;
    /** Each generator's CPU as /proc counts it (undefined: use what the generators measured themselves). */
    readonly generatorCpu?: readonly number[];
    readonly machineCpu?: MachineCpu;
    /** What the nodes' /metrics counted of the puts over the phase (node-metrics.ts). */
    readonly nodePuts?: PutMetrics;
    readonly memory: NodeMemory[];
    readonly samples: MemorySample[];
  },
): PhaseRow {
  const sum = (f: (r: OpenLoopResult) => number): number => results.reduce((a, r) => a + f(r), 0);
  const max = (f: (r: OpenLoopResult) => number): number => results.reduce((a, r) => Math.max(a, f(r)), 0);
  const windowS = Math.max(
    1e-3,
    results.reduce((a, r) => a + r.windowMs, 0) / Math.max(1, results.length) / 1000,
  );
  const issued = sum((r) => r.issued);
  const acked = sum((r) => r.acked);
  const shed = sum((r) => r.shed);
  const shedBy = emptyShedCounts();
  const shedExamples: Partial<Record<ShedLimit, string>> = {};
  const errors: Record<string, number> = {};
  const errorExamples: Record<string, string> = {};
  for (const r of results) {
    addInto(shedBy, r.shedBy);
    for (const l of SHED_LIMITS) if (r.shedExamples[l] !== undefined) shedExamples[l] ??= r.shedExamples[l];
    addInto(errors, r.errors);
    for (const [code, m] of Object.entries(r.errorExamples)) errorExamples[code] ??= m;
  }
  const lat = mergeSorted(results.map((r) => r.latencies));
  const frac = (x: number): number => (issued === 0 ? 0 : round(x / issued, 4));
  return {
    factor,
    offeredPerSec: round(offeredPerSec),
    issuedPerSec: round(issued / windowS),
    missed: sum((r) => r.missed),
    issued,
    acked,
    acceptedPerSec: round(sum((r) => r.ackedInWindow) / windowS),
    acceptedFraction: frac(acked),
    shed,
    shedPerSec: round(shed / windowS),
    shedFraction: frac(shed),
    shedBy,
    shedExamples,
    errors,
    errorExamples,
    p50Ms: round(percentile(lat, 0.5), 2),
    p99Ms: round(percentile(lat, 0.99), 2),
    p999Ms: round(percentile(lat, 0.999), 2),
    maxMs: round(lat.length > 0 ? lat[lat.length - 1]! : Number.NaN, 2),
    lagP99Ms: max((r) => r.lagP99Ms),
    lagMaxMs: max((r) => r.lagMaxMs),
    inFlightMax: sum((r) => r.inFlightMax),
    drainMs: max((r) => r.drainMs),
    stuck: sum((r) => r.stuck),
    nodeCpu: round(nodes.cpu, 3),
    generatorCpu: nodes.generatorCpu !== undefined ? [...nodes.generatorCpu] : results.map((r) => r.cpu),
    machineCpu: nodes.machineCpu ?? { busy: 0, iowait: 0 },
    nodePuts: nodes.nodePuts?.count ?? 0,
    nodePutP50BoundMs: nodes.nodePuts === undefined ? Number.NaN : quantileBoundMs(nodes.nodePuts, 0.5),
    nodePutP99BoundMs: nodes.nodePuts === undefined ? Number.NaN : quantileBoundMs(nodes.nodePuts, 0.99),
    nodePutErrors: nodes.nodePuts?.errors ?? {},
    generatorLoopDelayP99Ms: results.map((r) => r.loopDelayP99Ms),
    generatorRssMiB: results.map((r) => round(r.rssBytes / 1024 / 1024, 1)),
    nodeMemory: nodes.memory,
    rssSamples: nodes.samples,
  };
}

/** PhaseSettings shape runPhase. */
export interface PhaseSettings {
  readonly factor: number;
  readonly offeredPerSec: number;
  readonly durationMs: number;
  /** How long the generators wait for answers after the window. */
  readonly drainMs: number;
  /** The node processes, in node order (memory and CPU), and their admin ports (metrics). */
  readonly nodePids: readonly number[];
  readonly adminPorts: readonly number[];
}

/** WindowCpu is the CPU over a phase's window: nodes summed, each generator, the whole machine. */
interface WindowCpu {
  nodes: number;
  generators: number[];
  machine: MachineCpu;
}

/** runPhase runs one phase on every generator at once and merges what they measured. */
export async function runPhase(generators: readonly GeneratorProcess[], s: PhaseSettings): Promise<PhaseRow> {
  const sampler = new MemorySampler(s.nodePids, 250);
  const metrics0 = await readPutMetrics(s.adminPorts);
  const genPids = generators.map((g) => g.pid ?? 0);
  const cpu: WindowCpu = { nodes: 0, generators: genPids.map(() => 0), machine: { busy: 0, iowait: 0 } };
  // Time to get the request to every generator before the common start.
  const startAtEpochMs = Date.now() + 200;
  const edge = (): { at: number; nodes: number; gens: number[]; machine: CpuTimes } => ({
    at: performance.now(),
    nodes: cpuSecondsOf(s.nodePids),
    gens: genPids.map((p) => cpuSecondsOf([p])),
    machine: machineCpuTimes(),
  });
  let first: ReturnType<typeof edge> | undefined;
  const timers = [
    setTimeout(
      () => {
        first = edge();
      },
      Math.max(0, startAtEpochMs - Date.now()),
    ),
    setTimeout(
      () => {
        if (first === undefined) return;
        const last = edge();
        const secs = Math.max(1e-3, (last.at - first.at) / 1000);
        cpu.nodes = (last.nodes - first.nodes) / secs;
        cpu.generators = last.gens.map((g, i) => round((g - first!.gens[i]!) / secs, 3));
        cpu.machine = machineCpuBetween(first.machine, last.machine);
      },
      Math.max(0, startAtEpochMs - Date.now()) + s.durationMs,
    ),
  ];
  try {
    const share = s.offeredPerSec / generators.length;
    const results = await Promise.all(
      generators.map((g) =>
        g.phase({ ratePerSec: share, durationMs: s.durationMs, drainMs: s.drainMs, startAtEpochMs }),
      ),
    );
    const mem = sampler.stop();
    const nodePuts = diffPutMetrics(metrics0, await readPutMetrics(s.adminPorts));
    return mergePhase(s.factor, s.offeredPerSec, results, {
      nodePuts,
      cpu: cpu.nodes,
      generatorCpu: cpu.generators,
      machineCpu: cpu.machine,
      memory: mem.perProcess,
      samples: mem.samples,
    });
  } finally {
    for (const t of timers) clearTimeout(t);
    sampler.stop();
  }
}
