/**
 * The seeded fault schedule: a quiet phase, then faults every few seconds (each held for a
 * while, then healed), then the end of the workload, after which the runner heals
 * everything, waits for the cluster to recover, and runs the final reads.
 *
 * `planSchedule` is a pure function of its options: the same seed, nemeses, length and node
 * count give the same steps, including the random numbers each step later uses to pick its
 * targets (the current leader, say, is read from the cluster when the step runs, but which of
 * several candidates is taken comes from the schedule).
 */
import { SeededRandom } from '../../src/random.js';

/** NEMESES lists what `--nemesis` accepts (CONTRACT.md). */
export const NEMESES = [
  'partition',
  'partition-leader',
  'partition-ring',
  'bridge',
  'kill',
  'pause',
  'clock',
  'delay',
  'membership',
] as const;
/** NemesisName is one of NEMESES. */
export type NemesisName = (typeof NEMESES)[number];

/** Step is one fault: started at `atMs` (since the workload began), healed `holdMs` later. */
export interface Step {
  readonly atMs: number;
  readonly holdMs: number;
  readonly nemesis: NemesisName;
  /** Random numbers in [0, 1) the step uses to pick its targets and parameters. */
  readonly picks: readonly number[];
}

/** ScheduleOptions shape a schedule. */
export interface ScheduleOptions {
  readonly seed: number;
  readonly nemeses: readonly NemesisName[];
  /** Workload length. */
  readonly timeMs: number;
  /** Quiet phase before the first fault (default min(5 s, 15% of the time)). */
  readonly quietMs?: number;
  /** A fault is held for holdMin..holdMax ms, then healed for gapMin..gapMax ms. */
  readonly holdMinMs?: number;
  readonly holdMaxMs?: number;
  readonly gapMinMs?: number;
  readonly gapMaxMs?: number;
}

/** PICKS is how many random numbers each step carries. */
const PICKS = 6;

/** planSchedule lays out the faults of one run. */
export function planSchedule(o: ScheduleOptions): Step[] {
  const rng = new SeededRandom(o.seed);
  const quiet = o.quietMs ?? Math.min(5000, Math.round(o.timeMs * 0.15));
  const holdMin = o.holdMinMs ?? 3000;
  const holdMax = o.holdMaxMs ?? 6000;
  const gapMin = o.gapMinMs ?? 2000;
  const gapMax = o.gapMaxMs ?? 4000;
  const steps: Step[] = [];
  if (o.nemeses.length === 0) return steps;
  let at = quiet;
  for (;;) {
    const hold = holdMin + rng.int(holdMax - holdMin + 1);
    // The last fault is healed by the end of the workload, leaving a little time after it.
    if (at + hold > o.timeMs - 1000) break;
    const nemesis = o.nemeses[rng.int(o.nemeses.length)]!;
    steps.push({ atMs: at, holdMs: hold, nemesis, picks: Array.from({ length: PICKS }, () => rng.float()) });
    at += hold + gapMin + rng.int(gapMax - gapMin + 1);
  }
  return steps;
}

/** pickOne chooses an element of `xs` with a pick in [0, 1). */
export function pickOne<T>(xs: readonly T[], pick: number): T {
  if (xs.length === 0) throw new Error('pickOne: nothing to pick from');
  return xs[Math.min(xs.length - 1, Math.floor(pick * xs.length))]!;
}

/** shuffled returns a copy of `xs` in an order drawn from `pick` (a small deterministic shuffle). */
export function shuffled<T>(xs: readonly T[], pick: number): T[] {
  const rng = new SeededRandom(Math.floor(pick * 2 ** 31));
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
