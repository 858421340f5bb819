/**
 * The load generator of the side-by-side benchmark: closed loops, latency statistics and the
 * CPU the server processes spend, the same code for every system measured.
 *
 * A point is `concurrency` workers, each running its operation back to back (a closed loop:
 * a worker starts its next operation when the last one ended). The workers run for a
 * warm-up, then for the measured window; an operation counts when it *ends* inside the
 * window (so throughput is completions per second, unbiased by long operations straddling
 * the edges), and its latency (start to end) goes into that point's sample. No operation
 * starts after the window; the ones in flight are then awaited (bounded by drainMs).
 *
 * CPU: the servers' user+system time from /proc/<pid>/stat (fields 14 and 15, in clock
 * ticks), summed over the system's processes, read at both edges of the window, divided by
 * the window: CPU seconds per second (2.0 is both cores of a 2-core box). The generator's own
 * CPU (process.cpuUsage) and event-loop delay are reported beside it, so a point where the
 * generator itself was the limit can be told apart.
 *
 * Percentiles are nearest-rank on the sorted sample (`percentile`), with no interpolation:
 * p99 of 1000 samples is the 990th smallest.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { xorshift32 } from '../common.js';

/** percentile is the nearest-rank p-quantile (p in [0, 1]) of an ascending sample; NaN when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  if (!(p > 0)) return sorted[0]!;
  const rank = Math.ceil(p * n);
  return sorted[Math.min(n, Math.max(1, rank)) - 1]!;
}

/** CDF_QUANTILES are the quantiles a point's latency CDF is kept at (denser in the tail). */
export const CDF_QUANTILES: readonly number[] = [
  0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85,
  0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995, 0.999, 0.9999, 1,
];

/** cdfOf is the latency CDF of an ascending sample as [quantile, ms] pairs (empty for no sample). */
export function cdfOf(
  sorted: ArrayLike<number>,
  quantiles: readonly number[] = CDF_QUANTILES,
): [number, number][] {
  if (sorted.length === 0) return [];
  return quantiles.map((q) => [q, round(percentile(sorted, q), 3)]);
}

/** round rounds to `digits` decimals (NaN stays NaN). */
export function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** LatencySample collects latencies (ms) in a growing typed array: no object per operation. */
export class LatencySample {
  private buf = new Float64Array(1 << 14);
  /** Invariant: length <= buf.length */
  length = 0;

  add(ms: number): void {
    if (this.length === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.length++] = ms;
  }

  /** sorted returns the latencies in ascending order (a copy). */
  sorted(): Float64Array {
    return this.buf.slice(0, this.length).sort();
  }
}

/** ProcTimes is a process's CPU time so far, in clock ticks. */
export interface ProcTimes {
  readonly utimeTicks: number;
  readonly stimeTicks: number;
}

/**
 * parseProcStat reads utime and stime out of a /proc/<pid>/stat line. The command name (field
 * 2) is in parentheses and may hold spaces or parentheses, so fields are counted after the
 * last ')'. Undefined when the line is not one.
 */
export function parseProcStat(line: string): ProcTimes | undefined {
  const close = line.lastIndexOf(')');
  if (close < 0) return undefined;
  // After ") ": field 3 (state) is index 0, so field 14 (utime) is index 11, 15 (stime) 12.
  const rest = line
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  const utimeTicks = Number(rest[11]);
  const stimeTicks = Number(rest[12]);
  if (!Number.isFinite(utimeTicks) || !Number.isFinite(stimeTicks)) return undefined;
  return { utimeTicks, stimeTicks };
}

let clockTicksPerSec: number | undefined;

/** clockTicksPerSecond is the kernel's clock ticks per second (getconf CLK_TCK; 100 when unknown). */
export function clockTicksPerSecond(): number {
  if (clockTicksPerSec === undefined) {
    try {
      const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
      clockTicksPerSec = Number.isSafeInteger(n) && n > 0 ? n : 100;
    } catch {
      clockTicksPerSec = 100;
    }
  }
  return clockTicksPerSec;
}

/** cpuSecondsOf is the CPU seconds (user + system) the processes used so far; gone ones count 0. */
export function cpuSecondsOf(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const t = parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      if (t !== undefined) ticks += t.utimeTicks + t.stimeTicks;
    } catch {
      // the process is gone (or no /proc): nothing to add
    }
  }
  return ticks / clockTicksPerSecond();
}

/** Worker is what an operation knows of the worker running it. */
export interface Worker {
  /** id is the worker's number, 0..concurrency-1. */
  readonly id: number;
  /** next is a seeded random integer in [0, n). */
  next(n: number): number;
}

/** Op is one operation of a workload; it throws on failure. */
export type Op = (w: Worker) => Promise<void>;

/** PointOptions shape one measured point. */
export interface PointOptions {
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly measureMs: number;
  /** How long to wait for the operations still in flight after the window (default 30 s). */
  readonly drainMs?: number;
  /** The server processes whose CPU is measured (read at the window's edges). */
  readonly pids?: () => readonly number[];
  /** Seed of the workers' generators (worker w uses seed*7919 + w + 1). */
  readonly seed?: number;
}

/** PointResult is what one point measured. Latencies in ms; CPU in CPU seconds per second. */
export interface PointResult {
  readonly concurrency: number;
  /** The measured window's actual length (ms). */
  readonly windowMs: number;
  readonly ops: number;
  readonly opsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly meanMs: number;
  readonly maxMs: number;
  /** Operations that failed in the window. */
  readonly errors: number;
  /** The first error's message, if any failed (warm-up included). */
  readonly firstError?: string;
  /** The servers' CPU (user + system), summed over their processes. */
  readonly serverCpu: number;
  /** The load generator's own CPU. */
  readonly clientCpu: number;
  /** The generator's event-loop delay p99 (ms): high means the generator was the bottleneck. */
  readonly clientLoopDelayP99Ms: number;
  /** Operations still in flight when drainMs ran out (0 normally). */
  readonly stuck: number;
  /** The latency CDF as [quantile, ms] pairs. */
  readonly cdf: [number, number][];
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function messageOf(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

/** runPoint runs `op` in a closed loop at opts.concurrency and measures it (see the file comment). */
export async function runPoint(op: Op, opts: PointOptions): Promise<PointResult> {
  const { concurrency, warmupMs, measureMs } = opts;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1)
    throw new Error(`concurrency must be a positive integer, got ${concurrency}`);
  const sample = new LatencySample();
  const start = performance.now();
  const measureFrom = start + warmupMs;
  const end = measureFrom + measureMs;
  let errors = 0;
  let firstError: string | undefined;
  let inFlight = 0;
  const pids = opts.pids ?? (() => []);
  const seed = opts.seed ?? 1;

  // The window's edges: CPU figures read by timers (their actual times are used).
  let cpu0 = { at: measureFrom, server: 0, client: process.cpuUsage() };
  let cpu1 = cpu0;
  const delay = monitorEventLoopDelay({ resolution: 10 });
  const t0 = setTimeout(() => {
    cpu0 = { at: performance.now(), server: cpuSecondsOf(pids()), client: process.cpuUsage() };
    delay.enable();
  }, warmupMs);
  let t1: NodeJS.Timeout | undefined;
  const edge1 = new Promise<void>((resolve) => {
    t1 = setTimeout(() => {
      cpu1 = { at: performance.now(), server: cpuSecondsOf(pids()), client: process.cpuUsage() };
      delay.disable();
      resolve();
    }, warmupMs + measureMs);
  });

  const loop = async (id: number): Promise<void> => {
    const rnd = xorshift32(seed * 7919 + id + 1);
    const w: Worker = { id, next: (n) => rnd() % n };
    while (performance.now() < end) {
      const began = performance.now();
      inFlight++;
      let failed = false;
      try {
        await op(w);
      } catch (err) {
        failed = true;
        firstError ??= messageOf(err);
      }
      inFlight--;
      const ended = performance.now();
      if (ended >= measureFrom && ended <= end) {
        if (failed) errors++;
        else sample.add(ended - began);
      }
      // A failing system must not turn the loop into a busy spin.
      if (failed) await sleep(1);
    }
  };
  const all = Promise.all(Array.from({ length: concurrency }, (_, id) => loop(id)));
  await edge1;
  let stuck = 0;
  let drainTimer: NodeJS.Timeout | undefined;
  const drained = await Promise.race([
    all.then(() => true),
    new Promise<boolean>((resolve) => {
      drainTimer = setTimeout(() => resolve(false), opts.drainMs ?? 30_000);
    }),
  ]);
  clearTimeout(drainTimer);
  clearTimeout(t0);
  clearTimeout(t1);
  if (!drained) {
    stuck = inFlight;
    // The loops end when their operations do; nothing waits for them any more.
    all.catch(() => undefined);
  }

  const windowMs = Math.max(1, cpu1.at - cpu0.at);
  const sorted = sample.sorted();
  let sum = 0;
  for (const x of sorted) sum += x;
  const clientUs = cpu1.client.user - cpu0.client.user + (cpu1.client.system - cpu0.client.system);
  const delayP99 = delay.count > 0 ? delay.percentile(99) / 1e6 : 0;
  return {
    concurrency,
    windowMs: round(windowMs, 1),
    ops: sorted.length,
    opsPerSec: round(sorted.length / (measureMs / 1000)),
    p50Ms: round(percentile(sorted, 0.5), 3),
    p99Ms: round(percentile(sorted, 0.99), 3),
    p999Ms: round(percentile(sorted, 0.999), 3),
    meanMs: round(sorted.length === 0 ? Number.NaN : sum / sorted.length, 3),
    maxMs: round(sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1]!, 3),
    errors,
    ...(firstError !== undefined && { firstError }),
    serverCpu: round((cpu1.server - cpu0.server) / (windowMs / 1000), 3),
    clientCpu: round(clientUs / 1000 / windowMs, 3),
    clientLoopDelayP99Ms: round(delayP99, 2),
    stuck,
    cdf: cdfOf(sorted),
  };
}
