/**
 * Random is an injected source of randomness. Production code seeds it from the OS; tests
 * and simulations seed it with a number so that every run replays exactly.
 */
export interface Random {
  /** int returns an integer uniformly drawn from [0, maxExclusive). */
  int(maxExclusive: number): number;
  /** float returns a number uniformly drawn from [0, 1). */
  float(): number;
}

/**
 * SeededRandom is a small, fast, deterministic PRNG (sfc32, seeded through splitmix32).
 * The same seed always yields the same sequence, on every platform.
 */
export class SeededRandom implements Random {
  readonly seed: number;
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed))
      throw new RangeError(`SeededRandom: seed must be a safe integer, got ${seed}`);
    this.seed = seed;
    let s = (seed ^ Math.floor(seed / 0x1_0000_0000)) >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  /** nextUint32 returns the next raw 32-bit output. */
  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  float(): number {
    return this.nextUint32() / 0x1_0000_0000;
  }

  int(maxExclusive: number): number {
    if (!(maxExclusive > 0) || !Number.isSafeInteger(maxExclusive)) {
      throw new RangeError(`Random.int: bound must be a positive integer, got ${maxExclusive}`);
    }
    return Math.floor(this.float() * maxExclusive);
  }

  /** chance returns true with probability p. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** fork derives an independent generator, so sub-systems do not perturb each other's streams. */
  fork(): SeededRandom {
    return new SeededRandom(this.nextUint32() * 0x1_0000 + (this.nextUint32() & 0xffff));
  }
}

/** randomSeed draws a fresh seed from the platform's cryptographic source. */
export function randomSeed(): number {
  const words = new Uint32Array(2);
  crypto.getRandomValues(words);
  return (words[0]! & 0x1f_ffff) * 0x1_0000_0000 + words[1]!;
}
