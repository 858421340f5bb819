import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { randomSeed, SeededRandom } from '../src/random.js';

describe('SeededRandom', () => {
  it('replays the same sequence from the same seed', () => {
    const a = new SeededRandom(42);
    const b = new SeededRandom(42);
    const xs = Array.from({ length: 100 }, () => a.int(1000));
    const ys = Array.from({ length: 100 }, () => b.int(1000));
    expect(xs).toEqual(ys);
    const c = new SeededRandom(43);
    expect(Array.from({ length: 100 }, () => c.int(1000))).not.toEqual(xs);
  });

  it('stays in range and is roughly uniform', () => {
    const r = new SeededRandom(7);
    const buckets = new Array<number>(10).fill(0);
    let outOfRange = 0;
    for (let i = 0; i < 100_000; i++) {
      const v = r.int(10);
      if (v < 0 || v >= 10 || !Number.isInteger(v)) outOfRange++;
      else buckets[v]!++;
    }
    expect(outOfRange).toBe(0);
    for (const n of buckets) expect(Math.abs(n - 10_000)).toBeLessThan(600);
    for (let i = 0; i < 1000; i++) {
      const f = r.float();
      expect(f >= 0 && f < 1).toBe(true);
    }
  });

  it('rejects bad bounds and seeds', () => {
    const r = new SeededRandom(1);
    expect(() => r.int(0)).toThrow(RangeError);
    expect(() => r.int(1.5)).toThrow(RangeError);
    expect(() => new SeededRandom(Number.NaN)).toThrow(RangeError);
  });

  it('forks independent, deterministic streams', () => {
    const a = new SeededRandom(5).fork();
    const b = new SeededRandom(5).fork();
    expect(a.int(1 << 30)).toBe(b.int(1 << 30));
    expect(Number.isSafeInteger(randomSeed())).toBe(true);
  });
});

describe('ManualClock', () => {
  it('moves only when told, and never backwards on the monotonic clock', () => {
    const c = new ManualClock(1000);
    expect(c.nowMs()).toBe(1000);
    expect(c.monotonicMs()).toBe(0);
    c.advance(50);
    expect(c.nowMs()).toBe(1050);
    expect(c.monotonicMs()).toBe(50);
    expect(() => c.advance(-1)).toThrow(RangeError);
    c.setWall(10);
    expect(c.nowMs()).toBe(10);
    expect(c.monotonicMs()).toBe(50);
  });
});
