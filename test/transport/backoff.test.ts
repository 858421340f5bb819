import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../../src/random.js';
import { Backoff } from '../../src/transport/backoff.js';

describe('Backoff', () => {
  const policy = { initialDelayMs: 50, maxDelayMs: 2000, multiplier: 2, jitter: 0.2 };

  it('grows by the multiplier within the jitter band, capped at maxDelayMs', () => {
    const b = new Backoff(policy, new SeededRandom(1));
    let base = 50;
    for (let i = 0; i < 20; i++) {
      const d = b.nextDelayMs();
      expect(d).toBeGreaterThanOrEqual(Math.floor(base * 0.8));
      expect(d).toBeLessThanOrEqual(Math.min(2000, Math.ceil(base * 1.2)));
      base = Math.min(2000, base * 2);
    }
  });

  it('replays from the seed, and reset starts over', () => {
    const a = new Backoff(policy, new SeededRandom(7));
    const b = new Backoff(policy, new SeededRandom(7));
    const xs = Array.from({ length: 10 }, () => a.nextDelayMs());
    expect(Array.from({ length: 10 }, () => b.nextDelayMs())).toEqual(xs);
    a.reset();
    expect(a.nextDelayMs()).toBeLessThanOrEqual(60);
  });

  it('without jitter is exact', () => {
    const b = new Backoff({ ...policy, jitter: 0 }, new SeededRandom(3));
    expect(Array.from({ length: 8 }, () => b.nextDelayMs())).toEqual([
      50, 100, 200, 400, 800, 1600, 2000, 2000,
    ]);
  });

  it('refuses impossible policies', () => {
    const r = new SeededRandom(1);
    expect(() => new Backoff({ ...policy, initialDelayMs: 0 }, r)).toThrow(RangeError);
    expect(() => new Backoff({ ...policy, maxDelayMs: 10 }, r)).toThrow(RangeError);
    expect(() => new Backoff({ ...policy, multiplier: 0.5 }, r)).toThrow(RangeError);
    expect(() => new Backoff({ ...policy, jitter: 1.5 }, r)).toThrow(RangeError);
  });
});
