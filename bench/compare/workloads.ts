/**
 * The workloads of the side-by-side benchmark, defined once over TargetOps so every system
 * runs exactly the same loop: 16-byte keys over a key space of 10 000 (by default), 128-byte
 * values, keys drawn uniformly by each worker's seeded generator.
 *
 * Families (what `--workloads` names) expand into workloads:
 * - put: a put of a random key.
 * - get: a linearizable get of a random key (redis: GET); the keys are filled first, and a
 *   missing key counts as an error.
 * - get-serializable: a serializable get (DKV `{ consistency: 'serializable' }`, etcd's
 *   serializable range); not on redis.
 * - incr: counter +1, on 1 counter (incr-1: every worker on the same one) and on 100 counters
 *   (incr-100).
 * - lock: acquire then release, on 1 lock (lock-1) and on 100 locks (lock-100); not on redis.
 * - mixed: 90% linearizable gets and 10% puts of random keys.
 * - watch: fan-out. C watchers of one key (C is the number of watchers, not of operations in
 *   flight) and one writer in a closed loop: an operation is a put and ends when every watcher
 *   has delivered it, so its latency is the slowest watcher's delivery latency; ops/s times C
 *   is the events delivered per second. Not on redis (pub/sub is not a watch of stored keys).
 */
import { DkvError, ErrorCode } from '../../src/errors.js';
import type { Op } from './loadgen.js';
import type { TargetOps } from './targets.js';

/** KEY_SPACE is the default number of distinct keys. */
export const KEY_SPACE = 10_000;
/** VALUE_BYTES is the size of every value written. */
export const VALUE_BYTES = 128;
const VALUE = 'v'.repeat(VALUE_BYTES);

/** keyOf is the i-th key: 16 bytes (`key:` and 12 digits). */
export function keyOf(i: number): string {
  return `key:${i.toString().padStart(12, '0')}`;
}

/** counterOf and lockOf name the i-th counter and lock (16 bytes too). */
export function counterOf(i: number): string {
  return `ctr:${i.toString().padStart(12, '0')}`;
}
export function lockOf(i: number): string {
  return `lck:${i.toString().padStart(12, '0')}`;
}

/** Prepared is a workload readied on a system for one point. */
export interface Prepared {
  /** The operation the workers run back to back. */
  readonly op: Op;
  /** How many workers run it (the point's concurrency, except for fan-out: one writer). */
  readonly workers: number;
  /** close undoes the preparation (watchers). */
  close(): Promise<void>;
}

/** Workload is one measured loop. */
export interface Workload {
  readonly name: string;
  /** The `--workloads` family it belongs to. */
  readonly family: string;
  /** A line for the report. */
  readonly title: string;
  /** Whether the key space must hold every key first (reads). */
  readonly needsFill: boolean;
  /** supports tells whether a system does this workload. */
  supports(ops: TargetOps): boolean;
  /** prepare readies the workload for one point at `concurrency` (the system must support it). */
  prepare(ops: TargetOps, keys: number, concurrency: number): Promise<Prepared>;
}

/** closedLoop is a Workload whose point is `concurrency` workers running makeOp's operation. */
function closedLoop(
  w: Omit<Workload, 'supports' | 'prepare'>,
  makeOp: (ops: TargetOps, keys: number) => Op | undefined,
): Workload {
  return {
    ...w,
    supports: (ops) => makeOp(ops, 1) !== undefined,
    prepare: async (ops, keys, concurrency) => {
      const op = makeOp(ops, keys);
      if (op === undefined) throw new Error(`${w.name} is not supported here`);
      return { op, workers: concurrency, close: async () => {} };
    },
  };
}

function missing(key: string): DkvError {
  return new DkvError(ErrorCode.NotFound, `key ${key} was not found (the fill did not take?)`);
}

/** WORKLOADS are every workload, in the order they run. */
export const WORKLOADS: readonly Workload[] = [
  closedLoop(
    { name: 'put', family: 'put', title: 'put of a random key (128-byte value)', needsFill: false },
    (ops, keys) => async (w) => ops.put(keyOf(w.next(keys)), VALUE),
  ),
  closedLoop(
    {
      name: 'get',
      family: 'get',
      title: 'linearizable get of a random key (redis: GET)',
      needsFill: true,
    },
    (ops, keys) => async (w) => {
      const k = keyOf(w.next(keys));
      if (!(await ops.get(k))) throw missing(k);
    },
  ),
  closedLoop(
    {
      name: 'get-serializable',
      family: 'get-serializable',
      title: 'serializable get of a random key',
      needsFill: true,
    },
    (ops, keys) => {
      const get = ops.getSerializable;
      if (get === undefined) return undefined;
      return async (w) => {
        const k = keyOf(w.next(keys));
        if (!(await get(k))) throw missing(k);
      };
    },
  ),
  ...[1, 100].map((n) =>
    closedLoop(
      {
        name: `incr-${n}`,
        family: 'incr',
        title: `counter +1 on ${n} key${n > 1 ? 's' : ''}`,
        needsFill: false,
      },
      (ops) => {
        const incr = ops.incr;
        return incr === undefined ? undefined : async (w) => incr(counterOf(w.next(n)));
      },
    ),
  ),
  ...[1, 100].map((n) =>
    closedLoop(
      {
        name: `lock-${n}`,
        family: 'lock',
        title: `lock acquire then release on ${n} lock${n > 1 ? 's' : ''}`,
        needsFill: false,
      },
      (ops) => {
        const lock = ops.lock;
        return lock === undefined ? undefined : async (w) => lock(lockOf(w.next(n)));
      },
    ),
  ),
  closedLoop(
    {
      name: 'mixed',
      family: 'mixed',
      title: '90% linearizable gets, 10% puts, random keys',
      needsFill: true,
    },
    (ops, keys) => async (w) => {
      const k = keyOf(w.next(keys));
      if (w.next(10) === 0) return ops.put(k, VALUE);
      if (!(await ops.get(k))) throw missing(k);
    },
  ),
  {
    name: 'watch',
    family: 'watch',
    title:
      'watch fan-out: C watchers of one key, one writer; an operation is a put until every watcher has seen it',
    needsFill: false,
    supports: (ops) => ops.watch !== undefined,
    prepare: (ops, _keys, concurrency) => prepareFanout(ops, concurrency),
  },
];

/** FANOUT_KEY is the key the fan-out watchers watch. */
export const FANOUT_KEY = 'wch:000000000000';
/** FANOUT_TIMEOUT_MS bounds the wait for every watcher to see one put. */
const FANOUT_TIMEOUT_MS = 10_000;

/**
 * prepareFanout opens `watchers` watches of FANOUT_KEY, each ready before the point starts.
 * Each put carries a sequence number in its value; the operation ends when every watcher has
 * delivered that put (a watcher that skips it fails the operation after FANOUT_TIMEOUT_MS).
 */
async function prepareFanout(ops: TargetOps, watchers: number): Promise<Prepared> {
  const watch = ops.watch;
  if (watch === undefined) throw new Error('watch is not supported here');
  let seq = 0;
  let waiting = 0;
  let done: () => void = () => {};
  const seen = (value: string): void => {
    if (Number.parseInt(value, 10) === seq && --waiting === 0) done();
  };
  const closers: (() => Promise<void>)[] = [];
  try {
    for (let i = 0; i < watchers; i++) closers.push(await watch(FANOUT_KEY, seen));
  } catch (err) {
    await Promise.all(closers.map((c) => c().catch(() => undefined)));
    throw err;
  }
  const op: Op = async () => {
    seq++;
    waiting = watchers;
    let timer: NodeJS.Timeout | undefined;
    const all = new Promise<void>((resolve, reject) => {
      done = resolve;
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `put ${seq}: ${waiting} of ${watchers} watchers did not see it in ${FANOUT_TIMEOUT_MS} ms`,
            ),
          ),
        FANOUT_TIMEOUT_MS,
      );
    });
    try {
      await ops.put(FANOUT_KEY, String(seq).padEnd(VALUE_BYTES, ' '));
      await all;
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    op,
    workers: 1,
    close: async () => {
      await Promise.all(closers.map((c) => c().catch(() => undefined)));
    },
  };
}

/** FAMILIES are the names `--workloads` accepts for groups of workloads. */
export const FAMILIES: readonly string[] = [...new Set(WORKLOADS.map((w) => w.family))];

/**
 * pickWorkloads expands `--workloads` names (families or single workloads) into workloads, in
 * the standard order; INVALID_ARGUMENT naming an unknown one.
 */
export function pickWorkloads(names: readonly string[]): Workload[] {
  const wanted = new Set<string>();
  for (const n of names) {
    const matches = WORKLOADS.filter((w) => w.family === n || w.name === n);
    if (matches.length === 0)
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `--workloads: unknown workload "${n}" (known: ${[...new Set([...FAMILIES, ...WORKLOADS.map((w) => w.name)])].join(', ')})`,
      );
    for (const m of matches) wanted.add(m.name);
  }
  return WORKLOADS.filter((w) => wanted.has(w.name));
}

/** fillKeys writes every key of the key space once, `inFlight` puts at a time. */
export async function fillKeys(ops: TargetOps, keys: number, inFlight = 64): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: Math.min(inFlight, keys) }, async () => {
      while (i < keys) await ops.put(keyOf(i++), VALUE);
    }),
  );
}
