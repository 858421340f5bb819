/**
 * Reconnect backoff: exponential delays with symmetric jitter, capped, drawn from an
 * injected Random so that a seeded run replays the same schedule.
 *
 *     delay(n) = min(maxDelayMs, initialDelayMs * multiplier^n) * (1 + jitter * u),  u in [-1, 1)
 *
 * The jittered delay is clamped to [0, maxDelayMs], so the cap holds even with jitter.
 */
import type { Random } from '../random.js';

/** ReconnectPolicy shapes the delays between attempts; the same shape as the client's option. */
export interface ReconnectPolicy {
  /** The delay before the first retry, in ms (> 0). */
  readonly initialDelayMs: number;
  /** The cap on any delay, in ms (>= initialDelayMs). */
  readonly maxDelayMs: number;
  /** The growth factor between attempts (>= 1). */
  readonly multiplier: number;
  /** The jitter fraction in [0, 1]: 0.2 spreads each delay over +-20%. */
  readonly jitter: number;
}

/** checkReconnectPolicy throws a RangeError (a programmer error) for an impossible policy. */
export function checkReconnectPolicy(p: ReconnectPolicy): void {
  if (!(p.initialDelayMs > 0) || !Number.isFinite(p.initialDelayMs))
    throw new RangeError(`reconnect.initialDelayMs must be a positive number, got ${p.initialDelayMs}`);
  if (!(p.maxDelayMs >= p.initialDelayMs) || !Number.isFinite(p.maxDelayMs))
    throw new RangeError(`reconnect.maxDelayMs must be >= initialDelayMs, got ${p.maxDelayMs}`);
  if (!(p.multiplier >= 1) || !Number.isFinite(p.multiplier))
    throw new RangeError(`reconnect.multiplier must be >= 1, got ${p.multiplier}`);
  if (!(p.jitter >= 0 && p.jitter <= 1))
    throw new RangeError(`reconnect.jitter must be in [0, 1], got ${p.jitter}`);
}

/** Backoff yields the delays for successive attempts; reset() starts over after a success. */
export class Backoff {
  private readonly policy: ReconnectPolicy;
  private readonly random: Random;
  /** Invariant: the un-jittered delay of the next attempt, in [initialDelayMs, maxDelayMs]. */
  private baseMs: number;

  constructor(policy: ReconnectPolicy, random: Random) {
    checkReconnectPolicy(policy);
    this.policy = policy;
    this.random = random;
    this.baseMs = policy.initialDelayMs;
  }

  /** nextDelayMs returns the delay before the next attempt and grows the following one. */
  nextDelayMs(): number {
    const { jitter, maxDelayMs, multiplier } = this.policy;
    const u = this.random.float() * 2 - 1;
    const delay = Math.min(maxDelayMs, Math.max(0, this.baseMs * (1 + jitter * u)));
    this.baseMs = Math.min(maxDelayMs, this.baseMs * multiplier);
    return Math.round(delay);
  }

  /** reset makes the next delay initialDelayMs again (with jitter). */
  reset(): void {
    this.baseMs = this.policy.initialDelayMs;
  }
}
