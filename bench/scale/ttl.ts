/**
 * Section "ttl": the CPU cost of expiring keys, in this process, on one partition group's state
 * machine (GroupStateMachine: the segment store, its TTL time wheel, the watch history that
 * records every expiry as a delete event).
 *
 * N keys (16-byte keys, 128-byte values) are put at replicated time T0 with TTLs spread evenly
 * over (windowMs, 2 * windowMs]: nothing expires during the first window, and N / windowMs keys
 * a millisecond during the second. Then, as a node's leader does while anything is pending, a
 * `tick` entry is applied every TICK_MS of real time, carrying the real time elapsed since
 * the start as replicated time. This process's CPU (process.cpuUsage: the applies, the
 * garbage they leave, the timers) is read at the edges of both windows: CPU seconds per
 * second while keys expire, against the same length of time with the same ticks and no
 * expiries. The cost of replicating the tick entries themselves (Raft, storage, network) is
 * not in it: it is the same with or without expiries, and a node pays it whenever any TTL is
 * pending.
 */
import { encodeEnvelope } from '../../src/statemachine/codec.js';
import { round } from '../compare/loadgen.js';
import { sleep } from './cluster.js';
import { filledStateMachine } from './keys.js';
import { gcNow } from './memory.js';

/** TICK_MS is how often a tick entry is applied (the state machine's default tickMs). */
export const TICK_MS = 100;

/** TtlResult is what the section measured. CPU in CPU seconds per second (1.0 = one core). */
export interface TtlResult {
  readonly keys: number;
  readonly windowMs: number;
  readonly fillMs: number;
  /** The window with ticks and no expiries. */
  readonly idleCpu: number;
  /** The window in which the keys expired. */
  readonly expiryCpu: number;
  readonly expired: number;
  readonly expiredPerSec: number;
  /** (expiryCpu - idleCpu) per 1000 keys expired a second: ms of CPU per 1000 expiries. */
  readonly cpuMsPer1000Expiries: number;
  /** The longest single tick apply during the expiry window (ms). */
  readonly tickApplyMaxMs: number;
  readonly ticks: number;
}

/** measureTtl fills a state machine with `keys` TTL keys and expires them over windowMs. */
export async function measureTtl(
  keys: number,
  windowMs: number,
  say: (line: string) => void,
): Promise<TtlResult> {
  say(`ttl: ${keys} keys expiring over ${windowMs} ms after an idle ${windowMs} ms; filling`);
  const t0 = performance.now();
  const sm = filledStateMachine(keys, (i) => windowMs + 1 + Math.floor((i * (windowMs - 1)) / keys));
  const fillMs = performance.now() - t0;
  const at = sm.time;
  gcNow();
  let index = sm.appliedIndex;
  let ticks = 0;
  let expired = 0;
  let tickMaxMs = 0;
  const tick = (elapsedMs: number, measureMax: boolean): void => {
    const a = performance.now();
    const out = sm.apply(++index, encodeEnvelope({ time: at + Math.floor(elapsedMs), cmd: { op: 'tick' } }));
    const took = performance.now() - a;
    if (measureMax && took > tickMaxMs) tickMaxMs = took;
    for (const ev of out.events) if (ev.cause === 'expired') expired++;
    ticks++;
  };
  const start = performance.now();
  /** runWindow ticks every TICK_MS until `untilMs` after start; returns its CPU s/s. */
  const runWindow = async (untilMs: number, measureMax: boolean): Promise<number> => {
    const c0 = process.cpuUsage();
    const w0 = performance.now();
    for (;;) {
      const elapsed = performance.now() - start;
      if (elapsed >= untilMs) break;
      tick(elapsed, measureMax);
      const next = (Math.floor(elapsed / TICK_MS) + 1) * TICK_MS;
      await sleep(Math.max(0, Math.min(next, untilMs) - (performance.now() - start)));
    }
    // The window's last tick: the time it ends at.
    tick(untilMs, measureMax);
    const used = process.cpuUsage(c0);
    return (used.user + used.system) / 1000 / (performance.now() - w0);
  };
  const idleCpu = await runWindow(windowMs, false);
  const before = expired;
  const expiryCpu = await runWindow(2 * windowMs, true);
  const inWindow = expired - before;
  if (before !== 0) say(`ttl: warning: ${before} keys expired before the expiry window`);
  if (sm.stats().keys !== 0) say(`ttl: warning: ${sm.stats().keys} keys left after the expiry window`);
  const expiredPerSec = inWindow / (windowMs / 1000);
  const result: TtlResult = {
    keys,
    windowMs,
    fillMs: round(fillMs, 1),
    idleCpu: round(idleCpu, 4),
    expiryCpu: round(expiryCpu, 4),
    expired: inWindow,
    expiredPerSec: Math.round(expiredPerSec),
    cpuMsPer1000Expiries: round(
      expiredPerSec > 0 ? ((expiryCpu - idleCpu) * 1e6) / expiredPerSec : Number.NaN,
      3,
    ),
    tickApplyMaxMs: round(tickMaxMs, 2),
    ticks,
  };
  say(
    `ttl: ${inWindow} keys expired (${result.expiredPerSec}/s): CPU ${(expiryCpu * 100).toFixed(1)}% of a core against ${(idleCpu * 100).toFixed(2)}% with none expiring; ${result.cpuMsPer1000Expiries} ms per 1000 expiries; longest tick ${result.tickApplyMaxMs} ms`,
  );
  return result;
}
