/**
 * Random distributions the simulator draws from. Every draw goes through one injected
 * SeededRandom, so a seed fixes the whole run.
 */
import type { SeededRandom } from '../../../src/random.js';

/**
 * exponentialSteps draws an integer from an exponential distribution with the given mean,
 * capped at `maxSteps` so that no delay is unbounded.
 */
export function exponentialSteps(random: SeededRandom, meanSteps: number, maxSteps: number): number {
  if (!(meanSteps >= 0) || !(maxSteps >= 0)) throw new RangeError(`exponentialSteps: bad mean ${meanSteps}`);
  if (meanSteps === 0) return 0;
  // 1 - float() is in (0, 1], so the logarithm is finite.
  const draw = Math.floor(-Math.log(1 - random.float()) * meanSteps);
  return Math.min(draw, maxSteps);
}

/** shuffled returns a new array with `items` in a uniformly random order (Fisher-Yates). */
export function shuffled<T>(random: SeededRandom, items: readonly T[]): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = random.int(i + 1);
    const t = out[i]!;
    out[i] = out[j]!;
    out[j] = t;
  }
  return out;
}

/** pick returns one element of a non-empty array, uniformly. */
export function pick<T>(random: SeededRandom, items: readonly T[]): T {
  if (items.length === 0) throw new RangeError('pick: empty array');
  return items[random.int(items.length)]!;
}

/** weightedPick returns a key of `weights` with probability proportional to its weight. */
export function weightedPick<K extends string>(
  random: SeededRandom,
  weights: Readonly<Record<K, number>>,
): K {
  const keys = Object.keys(weights) as K[];
  let total = 0;
  for (const k of keys) total += weights[k];
  if (!(total > 0)) throw new RangeError('weightedPick: weights sum to zero');
  let x = random.float() * total;
  for (const k of keys) {
    x -= weights[k];
    if (x < 0) return k;
  }
  return keys[keys.length - 1]!;
}

/** uniformInt returns an integer drawn uniformly from [lo, hi] (both inclusive). */
export function uniformInt(random: SeededRandom, lo: number, hi: number): number {
  if (hi < lo) throw new RangeError(`uniformInt: empty range [${lo}, ${hi}]`);
  return lo + random.int(hi - lo + 1);
}
