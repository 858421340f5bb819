/**
 * Clock is the only way code outside the pure layers reads time. The Raft core and the
 * engines never read a clock at all: they are handed ticks and replicated timestamps.
 * Injecting it lets tests run a whole node on manual time.
 */
export interface Clock {
  /** nowMs is wall-clock time in milliseconds since the epoch; it may jump. */
  nowMs(): number;
  /** monotonicMs never decreases; use it for timeouts and durations. */
  monotonicMs(): number;
}

/** systemClock reads the machine's clocks. */
export const systemClock: Clock = {
  nowMs: () => Date.now(),
  monotonicMs: () => performance.now(),
};

/** ManualClock is a Clock that moves only when told to, for deterministic tests. */
export class ManualClock implements Clock {
  /** Invariant: monotonic never decreases. */
  private monotonic = 0;
  private wall: number;

  constructor(startMs = 1_700_000_000_000) {
    this.wall = startMs;
  }

  nowMs(): number {
    return this.wall;
  }

  monotonicMs(): number {
    return this.monotonic;
  }

  /** advance moves both clocks forward by `deltaMs` (which must be >= 0). */
  advance(deltaMs: number): void {
    if (!(deltaMs >= 0)) throw new RangeError(`ManualClock.advance: negative delta ${deltaMs}`);
    this.monotonic += deltaMs;
    this.wall += deltaMs;
  }

  /** setWall moves only the wall clock, possibly backwards, to model clock skew. */
  setWall(ms: number): void {
    this.wall = ms;
  }
}
