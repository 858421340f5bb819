/**
 * TimeWheel benchmark: schedule and cancel rates with a million pending TTL keys spread over
 * hours, the cost of one tick (advance by tickMs) when nothing or few expire, at 10k and at
 * 1M pending (it must not grow with the pending count), expiry throughput when many expire,
 * and heap bytes per scheduled key (id strings excluded: the store already holds them).
 *
 *     node --expose-gc --import tsx bench/engines/time-wheel.ts [--quick]
 *
 * Without --expose-gc the heap figure is noisier. Deadlines come from a seeded generator, so
 * runs are comparable.
 */
import { TimeWheel } from '../../src/engines/time-wheel.js';
import { runIfMain, uniform } from '../common.js';

const TICK_MS = 10;
const START_MS = 1_700_000_000_000;
const HOUR_MS = 3_600_000;

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

function makeIds(n: number): string[] {
  const ids = new Array<string>(n);
  for (let i = 0; i < n; i++) ids[i] = `key:${i}`;
  return ids;
}

/** deadlines spreads n deadlines uniformly over [from, from + spanMs), in ms. */
function deadlines(n: number, from: number, spanMs: number, seed: number): Float64Array {
  const rnd = uniform(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = from + Math.floor(rnd() * spanMs);
  return out;
}

function filled(ids: string[], ds: Float64Array): TimeWheel {
  const w = new TimeWheel({ tickMs: TICK_MS }, START_MS);
  for (let i = 0; i < ids.length; i++) w.schedule(ids[i]!, ds[i]!);
  return w;
}

/** TickCost is what advancing one tick at a time costs. */
interface TickCost {
  /** The lowest of the rounds' mean tick costs: the figure least disturbed by other load. */
  readonly meanNs: number;
  readonly p99Us: number;
  /** The slowest tick: a cascade of a whole slot, or a garbage collection. */
  readonly maxUs: number;
  readonly expired: number;
}

const TICK_ROUNDS = 5;

/**
 * compareTicks advances each wheel by tickMs, `ticks` times in all, in interleaved rounds so
 * that both see the same background load, timing every step.
 */
function compareTicks(wheels: readonly TimeWheel[], ticks: number): TickCost[] {
  const perRound = Math.floor(ticks / TICK_ROUNDS);
  const times = wheels.map(() => new Float64Array(perRound * TICK_ROUNDS));
  const means = wheels.map(() => Number.POSITIVE_INFINITY);
  const expired = wheels.map(() => 0);
  for (let r = 0; r < TICK_ROUNDS; r++) {
    for (let k = 0; k < wheels.length; k++) {
      const w = wheels[k]!;
      const ts = times[k]!;
      gc();
      const start = performance.now();
      for (let i = r * perRound; i < (r + 1) * perRound; i++) {
        const t0 = performance.now();
        expired[k]! += w.advance(w.now + TICK_MS).length;
        ts[i] = performance.now() - t0;
      }
      means[k] = Math.min(means[k]!, ((performance.now() - start) * 1e6) / perRound);
    }
  }
  return wheels.map((_, k) => {
    const ts = times[k]!.sort();
    return {
      meanNs: means[k]!,
      p99Us: ts[Math.floor(ts.length * 0.99)]! * 1000,
      maxUs: ts[ts.length - 1]! * 1000,
      expired: expired[k]!,
    };
  });
}

/** warmUp runs every hot path on a throwaway wheel, so the first measurement is not the JIT's. */
function warmUp(): void {
  const ids = makeIds(20_000);
  const w = filled(ids, deadlines(ids.length, START_MS + 1, 600_000, 9));
  for (let i = 0; i < 20_000; i += 2) w.cancel(ids[i]!);
  compareTicks([w], 70_000);
  for (const _ of w.snapshot().parts());
}

function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** bench measures the figures named in the file comment; `quick` scales everything down. */
export async function bench(opts: { quick: boolean }): Promise<Record<string, number | string>> {
  const big = opts.quick ? 100_000 : 1_000_000;
  const small = 10_000;
  const ticks = opts.quick ? 20_000 : 100_000;
  const out: Record<string, number | string> = { pendingBig: big, pendingSmall: small, tickMs: TICK_MS };
  warmUp();

  // Schedule rate and heap per key: deadlines spread over 1 to 4 hours ahead.
  const ids = makeIds(big);
  const far = deadlines(big, START_MS + HOUR_MS, 3 * HOUR_MS, 1);
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  let t0 = performance.now();
  const wFar = filled(ids, far);
  let dt = performance.now() - t0;
  out.scheduleOpsPerSec = round(big / (dt / 1000));
  gc();
  out.heapBytesPerKey = round((process.memoryUsage().heapUsed - heapBefore) / big, 1);

  // Re-scheduling (a keep-alive) of every key, later by a minute.
  t0 = performance.now();
  for (let i = 0; i < big; i++) wFar.schedule(ids[i]!, far[i]! + 60_000);
  dt = performance.now() - t0;
  out.rescheduleOpsPerSec = round(big / (dt / 1000));

  // Tick cost when nothing expires: 10k versus 1M pending, same spread.
  const idsSmall = ids.slice(0, small);
  const wSmallFar = filled(idsSmall, far.subarray(0, small));
  const [idleSmall, idleBig] = compareTicks([wSmallFar, wFar], ticks) as [TickCost, TickCost];
  out.tickIdleNsAtSmall = round(idleSmall.meanNs);
  out.tickIdleNsAtBig = round(idleBig.meanNs);
  out.tickIdleP99UsAtSmall = round(idleSmall.p99Us, 2);
  out.tickIdleP99UsAtBig = round(idleBig.p99Us, 2);
  out.tickIdleMaxUsAtBig = round(idleBig.maxUs, 1);
  if (idleSmall.expired + idleBig.expired !== 0) throw new Error('bench: idle ticks expired keys');

  // Tick cost when few expire, at the same expiry rate for both sizes: the big wheel's
  // deadlines spread over 3 hours from now (under one expiry per tick at 1M), the small
  // wheel's over a span as much shorter as it has fewer keys. Both cascade as time passes.
  const bigSpanMs = 3 * HOUR_MS;
  const smallSpanMs = Math.floor((bigSpanMs * small) / big);
  const fewTicks = Math.min(ticks, Math.floor((smallSpanMs / TICK_MS) * 0.9));
  const near = deadlines(big, START_MS + 1, bigSpanMs, 2);
  const wNearSmall = filled(idsSmall, deadlines(small, START_MS + 1, smallSpanMs, 7));
  const wNearBig = filled(ids, near);
  const [fewSmall, fewBig] = compareTicks([wNearSmall, wNearBig], fewTicks) as [TickCost, TickCost];
  out.tickFewNsAtSmall = round(fewSmall.meanNs);
  out.tickFewNsAtBig = round(fewBig.meanNs);
  out.tickFewP99UsAtSmall = round(fewSmall.p99Us, 2);
  out.tickFewP99UsAtBig = round(fewBig.p99Us, 2);
  out.tickFewMaxUsAtBig = round(fewBig.maxUs, 1);
  out.tickFewExpiredPerTickAtSmall = round(fewSmall.expired / fewTicks, 3);
  out.tickFewExpiredPerTickAtBig = round(fewBig.expired / fewTicks, 3);

  // nextDeadline after each expiry (recomputed once the earliest key is gone).
  t0 = performance.now();
  let calls = 0;
  for (let i = 0; i < ticks / 10; i++) {
    wNearBig.advance(wNearBig.now + TICK_MS);
    wNearBig.nextDeadline();
    calls++;
  }
  dt = performance.now() - t0;
  out.tickPlusNextDeadlineNsAtBig = round((dt * 1e6) / calls);

  // Cancel rate, in a shuffled order.
  const order = new Uint32Array(big);
  for (let i = 0; i < big; i++) order[i] = i;
  const rnd = uniform(3);
  for (let i = big - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    const tmp = order[i]!;
    order[i] = order[j]!;
    order[j] = tmp;
  }
  const wCancel = filled(ids, far);
  t0 = performance.now();
  for (let i = 0; i < big; i++) wCancel.cancel(ids[order[i]!]!);
  dt = performance.now() - t0;
  out.cancelOpsPerSec = round(big / (dt / 1000));

  // Expiry throughput, many expiring: all keys within one hour, drained one second per call,
  // then again in a single jump (one sort of everything).
  const hour = deadlines(big, START_MS + 1, HOUR_MS, 4);
  const wSteps = filled(ids, hour);
  let expired = 0;
  t0 = performance.now();
  while (wSteps.size > 0) expired += wSteps.advance(wSteps.now + 1000).length;
  dt = performance.now() - t0;
  out.expireIdsPerSecSteps1s = round(expired / (dt / 1000));
  const wJump = filled(ids, hour);
  t0 = performance.now();
  expired = wJump.advance(START_MS + HOUR_MS).length;
  dt = performance.now() - t0;
  out.expireIdsPerSecOneJump = round(expired / (dt / 1000));

  // A day-long jump over an empty stretch: bounded by levels * slots, not by ticks.
  const wDay = filled(idsSmall, deadlines(small, START_MS + 48 * HOUR_MS, HOUR_MS, 5));
  t0 = performance.now();
  for (let i = 1; i <= 10; i++) wDay.advance(START_MS + i * 2 * HOUR_MS);
  dt = performance.now() - t0;
  out.jump2hEmptyUs = round((dt * 1000) / 10, 1);

  // The worst single tick: every key sits in one level-3 slot (the next 2^24-tick block of
  // ~46 h) and the clock crosses into it, so all of them cascade in one advance.
  const block3Ms = 256 ** 3 * TICK_MS;
  const boundary = Math.ceil(START_MS / block3Ms) * block3Ms;
  const wCascade = new TimeWheel({ tickMs: TICK_MS }, boundary - TICK_MS);
  const spread = deadlines(big, boundary + HOUR_MS, 3 * HOUR_MS, 6);
  for (let i = 0; i < big; i++) wCascade.schedule(ids[i]!, spread[i]!);
  gc();
  t0 = performance.now();
  if (wCascade.advance(boundary).length !== 0) throw new Error('bench: cascade expired keys');
  dt = performance.now() - t0;
  out.cascadeAllInOneTickMs = round(dt, 1);
  out.cascadeEntriesPerSec = round(big / (dt / 1000));

  // Snapshot (freeze and encode-ready parts) of the full wheel.
  t0 = performance.now();
  let records = 0;
  for (const part of wNearBig.snapshot().parts()) records += (part as unknown[]).length;
  dt = performance.now() - t0;
  out.snapshotRecordsPerSec = round(records / (dt / 1000));
  return out;
}

runIfMain(import.meta.url, bench);
