/**
 * The open-loop driver of the overload benchmark: requests go out on a fixed schedule,
 * whether or not earlier ones have been answered, so a server that slows down meets the same
 * offered load instead of a politely waiting client (a closed loop hides overload: its rate
 * drops to whatever the server manages).
 *
 * The schedule is uniform: request i is due at start + i / rate. A timer wakes every
 * millisecond and issues every request that has come due. When this process falls behind
 * (its own CPU is the limit; on a 2-core box shared with the nodes it will be), it catches up
 * at most `catchUpMs` worth of requests at once and counts the rest as `missed`, so the rate
 * it actually issued is measured and reported next to the rate offered, never assumed.
 *
 * Per request: latency from the moment it was issued to its answer, for acknowledged ones
 * only; OVERLOADED answers are counted as shed, by the limit that shed them (shed.ts); other
 * errors by code. Throughput counts acknowledgements that arrive inside the window. After the
 * window the driver waits up to `drainMs` for the answers still out and counts those that
 * never came (`stuck`).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { isDkvError } from '../../src/errors.js';
import { LatencySample, percentile, round } from '../compare/loadgen.js';
import { emptyShedCounts, type ShedLimit, shedLimitOf } from './shed.js';

/** OpenLoopOptions shape one open-loop phase. */
export interface OpenLoopOptions {
  /** Requests per second offered. */
  readonly ratePerSec: number;
  readonly durationMs: number;
  /** How long to wait for the answers still out after the window. */
  readonly drainMs: number;
  /** Most a late driver issues at once, as time on the schedule (default 50 ms); the rest is missed. */
  readonly catchUpMs?: number;
}

/** OpenLoopResult is what one phase measured in one process. Times in ms. */
export interface OpenLoopResult {
  readonly ratePerSec: number;
  /** The window's actual length. */
  readonly windowMs: number;
  readonly issued: number;
  /** Requests the schedule asked for that this process was too late to issue. */
  readonly missed: number;
  /** Requests acknowledged (whenever their answer came). */
  readonly acked: number;
  /** Acknowledgements that arrived inside the window. */
  readonly ackedInWindow: number;
  /** OVERLOADED answers in all, and by the limit that shed them. */
  readonly shed: number;
  readonly shedBy: Record<ShedLimit, number>;
  /** One message of each shed limit, as the node worded it. */
  readonly shedExamples: Partial<Record<ShedLimit, string>>;
  /** Other errors by code, and the first message of each. */
  readonly errors: Record<string, number>;
  readonly errorExamples: Record<string, string>;
  /** Latencies of the acknowledged requests, issue to answer (ms), ascending. */
  readonly latencies: Float64Array;
  /** How late requests went out behind their schedule: p99 and max. */
  readonly lagP99Ms: number;
  readonly lagMaxMs: number;
  /** Most requests this process had out at once. */
  readonly inFlightMax: number;
  /** Time from the window's end to the last answer (or to drainMs). */
  readonly drainMs: number;
  /** Requests still unanswered when drainMs ran out. */
  readonly stuck: number;
  /** This process's CPU over the window (CPU seconds per second) and its event-loop delay p99. */
  readonly cpu: number;
  readonly loopDelayP99Ms: number;
  /** This process's resident memory at the end. */
  readonly rssBytes: number;
}

/** IssueFn sends request number `slot`; it resolves when acknowledged and rejects with the error otherwise. */
export type IssueFn = (slot: number) => Promise<unknown>;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** runOpenLoop runs one open-loop phase of `issue` (see the file comment). */
export async function runOpenLoop(issue: IssueFn, opts: OpenLoopOptions): Promise<OpenLoopResult> {
  const { ratePerSec, durationMs } = opts;
  if (!(ratePerSec > 0) || !(durationMs > 0)) throw new Error('rate and duration must be positive');
  const catchUp = Math.max(1, Math.ceil((ratePerSec * (opts.catchUpMs ?? 50)) / 1000));
  const total = Math.floor((ratePerSec * durationMs) / 1000);
  const latencies = new LatencySample();
  const lags = new LatencySample();
  const shedBy = emptyShedCounts();
  const shedExamples: Partial<Record<ShedLimit, string>> = {};
  const errors: Record<string, number> = {};
  const errorExamples: Record<string, string> = {};
  let issued = 0;
  let missed = 0;
  let acked = 0;
  let ackedInWindow = 0;
  let shed = 0;
  let inFlight = 0;
  let inFlightMax = 0;
  let lastAnswer = 0;
  let allAnswered: (() => void) | undefined;

  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + durationMs;

  const answered = (): void => {
    inFlight--;
    lastAnswer = performance.now();
    if (inFlight === 0 && allAnswered !== undefined) allAnswered();
  };
  const send = (slot: number, now: number): void => {
    issued++;
    inFlight++;
    if (inFlight > inFlightMax) inFlightMax = inFlight;
    let p: Promise<unknown>;
    try {
      p = issue(slot);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      () => {
        const at = performance.now();
        acked++;
        if (at <= end) ackedInWindow++;
        latencies.add(at - now);
        answered();
      },
      (err: unknown) => {
        const code = isDkvError(err) ? err.code : 'ERROR';
        const message = err instanceof Error ? err.message : String(err);
        if (code === 'OVERLOADED') {
          shed++;
          const limit = shedLimitOf(message);
          shedBy[limit]++;
          shedExamples[limit] ??= message;
        } else {
          errors[code] = (errors[code] ?? 0) + 1;
          errorExamples[code] ??= message;
        }
        answered();
      },
    );
  };

  // The schedule: slot i is due at t0 + i / rate. `next` is the first slot not yet issued or missed.
  let next = 0;
  while (next < total) {
    const now = performance.now();
    // Never capped by `total` before the catch-up rule: late in the window, the last slots are
    // as late as any others, and are missed, not issued long after they were due.
    const dueNow = Math.floor(((now - t0) * ratePerSec) / 1000) + 1;
    if (dueNow - next > catchUp) {
      const skip = Math.min(total, dueNow - catchUp) - next;
      missed += skip;
      next += skip;
    }
    const due = Math.min(total, dueNow);
    for (; next < due; next++) {
      lags.add(now - (t0 + (next * 1000) / ratePerSec));
      send(next, now);
    }
    if (now >= end) break;
    await sleep(1);
  }
  // Slots the window closed on before they were issued.
  missed += total - next;
  const windowEnd = Math.max(performance.now(), end);
  const cpu1 = process.cpuUsage(cpu0);
  delay.disable();

  let drainTimer: NodeJS.Timeout | undefined;
  if (inFlight > 0)
    await new Promise<void>((resolve) => {
      allAnswered = resolve;
      drainTimer = setTimeout(resolve, opts.drainMs);
    });
  clearTimeout(drainTimer);
  allAnswered = undefined;

  const windowMs = windowEnd - t0;
  const lagSorted = lags.sorted();
  return {
    ratePerSec,
    windowMs: round(windowMs, 1),
    issued,
    missed,
    acked,
    ackedInWindow,
    shed,
    shedBy,
    shedExamples,
    errors,
    errorExamples,
    latencies: latencies.sorted(),
    lagP99Ms: round(percentile(lagSorted, 0.99), 2),
    lagMaxMs: round(lagSorted.length > 0 ? lagSorted[lagSorted.length - 1]! : Number.NaN, 2),
    inFlightMax,
    drainMs: round(
      Math.max(0, (inFlight > 0 ? performance.now() : Math.max(lastAnswer, windowEnd)) - windowEnd),
      1,
    ),
    stuck: inFlight,
    cpu: round((cpu1.user + cpu1.system) / 1000 / windowMs, 3),
    loopDelayP99Ms: round(delay.count > 0 ? delay.percentile(99) / 1e6 : 0, 2),
    rssBytes: process.memoryUsage().rss,
  };
}
