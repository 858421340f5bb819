/**
 * Test hooks: what the fault-injection harness (jepsen-like/) needs inside a node, and that no
 * production config can turn on. They come only from the environment variable
 * `DKV_TEST_HOOKS`, read by the process entry (main.ts), never from the config file. Its
 * value is a comma-separated list of items:
 *
 * - `clock`: the node reads time through a SkewedClock, which the admin HTTP port moves
 *   (`POST /test/clock`), for the `clock` nemesis.
 * - `bug:NAME`: a deliberately planted bug, a positive control the harness must catch
 *   (CONTRACT.md, `--bug NAME`): `stale-read`, `no-fsync`, `lock-no-lease-check`,
 *   `watch-skip`, `double-apply`.
 *
 * The planted bugs reach the pure layers (engines, state machine) only as plain config
 * booleans (`stateMachineBugConfig`), so those layers stay pure and every replica of a group
 * behaves the same way (the harness starts every node with the same hooks).
 */
import { type Clock, systemClock } from '../clock.js';
import { DkvError, ErrorCode } from '../errors.js';
import { STATE_MACHINE_DEFAULTS, type StateMachineConfig } from '../statemachine/state-machine.js';

/** TEST_HOOKS_ENV names the environment variable that turns test hooks on. */
export const TEST_HOOKS_ENV = 'DKV_TEST_HOOKS';

/** BUG_NAMES are the bugs a node can be started with (`bug:NAME` in DKV_TEST_HOOKS). */
export const BUG_NAMES = [
  'stale-read',
  'no-fsync',
  'lock-no-lease-check',
  'watch-skip',
  'double-apply',
] as const;

/** BugName is one of BUG_NAMES. */
export type BugName = (typeof BUG_NAMES)[number];

/** TestHooks are the hooks a node runs with; NO_TEST_HOOKS is none. */
export interface TestHooks {
  /** clock: time comes from a SkewedClock that `POST /test/clock` moves. */
  readonly clock: boolean;
  readonly bugs: ReadonlySet<BugName>;
}

/** NO_TEST_HOOKS is a node with no hook on (every production node). */
export const NO_TEST_HOOKS: TestHooks = Object.freeze({ clock: false, bugs: new Set<BugName>() });

/** NO_FSYNC_FLUSH_MS is how often the `no-fsync` bug writes its queued batches out (unsynced). */
export const NO_FSYNC_FLUSH_MS = 1000;

/**
 * parseTestHooks reads DKV_TEST_HOOKS. Undefined, empty or blank is no hook; an unknown item
 * is INVALID_ARGUMENT (the node refuses to start rather than run without the hook asked for).
 */
export function parseTestHooks(text: string | undefined): TestHooks {
  const items = (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  let clock = false;
  const bugs = new Set<BugName>();
  for (const item of items) {
    if (item === 'clock') {
      clock = true;
      continue;
    }
    const bug = item.startsWith('bug:') ? item.slice(4) : undefined;
    if (bug !== undefined && (BUG_NAMES as readonly string[]).includes(bug)) {
      bugs.add(bug as BugName);
      continue;
    }
    throw new DkvError(
      ErrorCode.InvalidArgument,
      `${TEST_HOOKS_ENV}: unknown item ${JSON.stringify(item)}; the items are clock, ${BUG_NAMES.map((b) => `bug:${b}`).join(', ')}`,
    );
  }
  return { clock, bugs };
}

/** testHooksOn tells whether any hook is on. */
export function testHooksOn(hooks: TestHooks): boolean {
  return hooks.clock || hooks.bugs.size > 0;
}

/** describeTestHooks lists the hooks on, in DKV_TEST_HOOKS syntax (for logs). */
export function describeTestHooks(hooks: TestHooks): string {
  const items = [
    ...(hooks.clock ? ['clock'] : []),
    ...BUG_NAMES.filter((b) => hooks.bugs.has(b)).map((b) => `bug:${b}`),
  ];
  return items.join(',');
}

/**
 * stateMachineBugConfig is the state machine config that plants the bugs living in the
 * replicated state (`lock-no-lease-check`, `watch-skip`, `double-apply`); empty for the others.
 */
export function stateMachineBugConfig(bugs: ReadonlySet<BugName>): Partial<StateMachineConfig> {
  return {
    ...(bugs.has('double-apply') && { unsafeIgnoreSessions: true }),
    ...(bugs.has('lock-no-lease-check') && { leaseLock: { locks: { unsafeSkipLeaseCheck: true } } }),
    ...(bugs.has('watch-skip') && {
      watch: { ...STATE_MACHINE_DEFAULTS.watch, unsafeSkipFirstResumedEvent: true },
    }),
  };
}

// ---------------------------------------------------------------- the clock hook

/** CLOCK_OFFSET_MS_MAX bounds a SkewedClock's offset either way (one hour). */
export const CLOCK_OFFSET_MS_MAX = 3_600_000;
/** CLOCK_RATE_MIN and CLOCK_RATE_MAX bound a SkewedClock's rate. */
export const CLOCK_RATE_MIN = 0.1;
export const CLOCK_RATE_MAX = 10;

/** ClockSkew is a SkewedClock's setting: an offset added to wall time, and a rate. */
export interface ClockSkew {
  readonly offsetMs: number;
  readonly rate: number;
}

/**
 * checkClockSetting validates a `POST /test/clock` body: an object with an optional finite
 * `offsetMs` within ±CLOCK_OFFSET_MS_MAX and an optional `rate` in [CLOCK_RATE_MIN,
 * CLOCK_RATE_MAX], nothing else. INVALID_ARGUMENT names what is wrong.
 */
export function checkClockSetting(body: unknown): Partial<ClockSkew> {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new DkvError(ErrorCode.InvalidArgument, 'the body must be a JSON object { offsetMs?, rate? }');
  const o = body as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k !== 'offsetMs' && k !== 'rate')
      throw new DkvError(ErrorCode.InvalidArgument, `unknown field ${JSON.stringify(k)}; use offsetMs, rate`);
  }
  const out: { offsetMs?: number; rate?: number } = {};
  if (o.offsetMs !== undefined) {
    const v = o.offsetMs;
    if (typeof v !== 'number' || !Number.isFinite(v) || Math.abs(v) > CLOCK_OFFSET_MS_MAX)
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `offsetMs must be a finite number within ±${CLOCK_OFFSET_MS_MAX}, got ${JSON.stringify(v)}`,
      );
    out.offsetMs = v;
  }
  if (o.rate !== undefined) {
    const v = o.rate;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < CLOCK_RATE_MIN || v > CLOCK_RATE_MAX)
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `rate must be a number in [${CLOCK_RATE_MIN}, ${CLOCK_RATE_MAX}], got ${JSON.stringify(v)}`,
      );
    out.rate = v;
  }
  return out;
}

/**
 * SkewedClock is a Clock whose wall time is offset and runs at a rate relative to a base
 * clock (the machine's by default), for the `clock` nemesis:
 *
 *     nowMs = wallAtAnchor + (baseNow - baseAtAnchor) * rate + offsetMs
 *
 * `set` re-anchors, so wall time stays continuous across a change of rate; only a change of
 * offset jumps (either way). monotonicMs runs at the same rate, ignores the offset, and
 * never decreases. nowMs is a whole number of ms (replicated time stamps must be integers).
 */
export class SkewedClock implements Clock {
  private readonly base: Clock;
  private offset = 0;
  private speed = 1;
  /** The skewed wall time without offset, and the base wall time, at the last anchor. */
  private wallAnchor: number;
  private baseWallAnchor: number;
  /** The skewed and the base monotonic time at the last anchor. */
  private monoAnchor: number;
  private baseMonoAnchor: number;
  /** Invariant: monotonicMs never returns less than this. */
  private monoLast: number;

  constructor(base: Clock = systemClock) {
    this.base = base;
    this.wallAnchor = base.nowMs();
    this.baseWallAnchor = this.wallAnchor;
    this.monoAnchor = base.monotonicMs();
    this.baseMonoAnchor = this.monoAnchor;
    this.monoLast = this.monoAnchor;
  }

  nowMs(): number {
    return Math.floor(this.unshiftedWall() + this.offset);
  }

  monotonicMs(): number {
    const t = this.monoAnchor + (this.base.monotonicMs() - this.baseMonoAnchor) * this.speed;
    if (t > this.monoLast) this.monoLast = t;
    return this.monoLast;
  }

  /** skew is the current setting. */
  skew(): ClockSkew {
    return { offsetMs: this.offset, rate: this.speed };
  }

  /**
   * set changes the offset and/or the rate (an omitted one is kept). The offset is absolute,
   * not added to the previous one. Values are checked as checkClockSetting does.
   */
  set(s: Partial<ClockSkew>): ClockSkew {
    const checked = checkClockSetting(s);
    const mono = this.monotonicMs();
    this.wallAnchor = this.unshiftedWall();
    this.baseWallAnchor = this.base.nowMs();
    this.monoAnchor = mono;
    this.baseMonoAnchor = this.base.monotonicMs();
    if (checked.offsetMs !== undefined) this.offset = checked.offsetMs;
    if (checked.rate !== undefined) this.speed = checked.rate;
    return this.skew();
  }

  private unshiftedWall(): number {
    return this.wallAnchor + (this.base.nowMs() - this.baseWallAnchor) * this.speed;
  }
}
