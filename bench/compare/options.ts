/**
 * The side-by-side benchmark's options (CONTRACT.md "Benchmarks"), parsed and checked in one
 * pure function so `npm run bench` can refuse a bad option before running anything:
 *
 *     [--vs etcd,redis] [--time S] [--warmup S] [--concurrency 1,16,64,256]
 *     [--workloads put,get,get-serializable,incr,lock,mixed] [--keys N] [--quick] [--install]
 *     [--out DIR]
 *
 * DKV always runs; `--vs` adds the others. `--quick` (the CI smoke run) shortens every point to
 * 1 s after 0.3 s of warm-up at 1 and 16 in flight, unless --time, --warmup or --concurrency
 * say otherwise.
 */
import { parseArgs } from 'node:util';
import { DkvError, ErrorCode } from '../../src/errors.js';
import { SYSTEMS, type SystemName } from './targets.js';
import { FAMILIES, KEY_SPACE, pickWorkloads } from './workloads.js';

/** CompareOptions are a side-by-side run's settings. */
export interface CompareOptions {
  /** The systems, in running order; dkv always first. */
  readonly systems: readonly SystemName[];
  /** The measured window per point (s). */
  readonly timeS: number;
  /** The warm-up before each window (s). */
  readonly warmupS: number;
  readonly concurrency: readonly number[];
  /** Workload or family names (workloads.ts pickWorkloads expands them). */
  readonly workloads: readonly string[];
  readonly keys: number;
  readonly quick: boolean;
  /** Install missing servers with apt-get. */
  readonly install: boolean;
  /** Where the results go (default bench/results). */
  readonly outDir?: string;
}

/** DEFAULT_CONCURRENCY are the in-flight levels of a full run. */
export const DEFAULT_CONCURRENCY: readonly number[] = [1, 16, 64, 256];
/** CONCURRENCY_MAX bounds one point's workers. */
export const CONCURRENCY_MAX = 4096;
/** TIME_MAX_S bounds one point's window (and warm-up). */
export const TIME_MAX_S = 3600;

/** COMPARE_OPTION_NAMES are the options that belong to the compare suite (not `--quick`, shared). */
export const COMPARE_OPTION_NAMES = [
  'vs',
  'time',
  'warmup',
  'concurrency',
  'workloads',
  'keys',
  'install',
  'out',
] as const;

function invalid(message: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, message);
}

function seconds(name: string, text: string, min: number): number {
  const x = Number(text);
  if (text.trim() === '' || !Number.isFinite(x) || x < min || x > TIME_MAX_S)
    throw invalid(`--${name} must be a number of seconds from ${min} to ${TIME_MAX_S}, got "${text}"`);
  return x;
}

function list(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** parseCompareArgs parses the options (see the file comment); INVALID_ARGUMENT naming the bad one. */
export function parseCompareArgs(argv: readonly string[]): CompareOptions {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: [...argv],
      options: {
        vs: { type: 'string' },
        time: { type: 'string' },
        warmup: { type: 'string' },
        concurrency: { type: 'string' },
        workloads: { type: 'string' },
        keys: { type: 'string' },
        install: { type: 'boolean', default: false },
        quick: { type: 'boolean', default: false },
        out: { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    throw invalid(err instanceof Error ? err.message : String(err));
  }
  const quick = values.quick === true;
  const str = (k: string): string | undefined =>
    typeof values[k] === 'string' ? (values[k] as string) : undefined;

  const systems: SystemName[] = ['dkv'];
  for (const s of list(str('vs') ?? '')) {
    if (!(SYSTEMS as readonly string[]).includes(s))
      throw invalid(`--vs: unknown system "${s}" (known: ${SYSTEMS.filter((x) => x !== 'dkv').join(', ')})`);
    if (!systems.includes(s as SystemName)) systems.push(s as SystemName);
  }
  // Always in the standard order, so a report reads the same whatever --vs said.
  systems.sort((a, b) => SYSTEMS.indexOf(a) - SYSTEMS.indexOf(b));

  const timeS = str('time') === undefined ? (quick ? 1 : 5) : seconds('time', str('time')!, 0.1);
  const warmupS = str('warmup') === undefined ? (quick ? 0.3 : 1) : seconds('warmup', str('warmup')!, 0);

  let concurrency: number[] = quick ? [1, 16] : [...DEFAULT_CONCURRENCY];
  if (str('concurrency') !== undefined) {
    concurrency = list(str('concurrency')!).map((c) => {
      const n = Number(c);
      if (!Number.isSafeInteger(n) || n < 1 || n > CONCURRENCY_MAX)
        throw invalid(
          `--concurrency: each level must be an integer from 1 to ${CONCURRENCY_MAX}, got "${c}"`,
        );
      return n;
    });
    if (concurrency.length === 0) throw invalid('--concurrency: give at least one level, e.g. 1,16,64,256');
    concurrency = [...new Set(concurrency)].sort((a, b) => a - b);
  }

  const workloads = str('workloads') === undefined ? [...FAMILIES] : list(str('workloads')!);
  if (workloads.length === 0) throw invalid(`--workloads: give at least one (known: ${FAMILIES.join(', ')})`);
  pickWorkloads(workloads);

  let keys = KEY_SPACE;
  if (str('keys') !== undefined) {
    keys = Number(str('keys'));
    if (!Number.isSafeInteger(keys) || keys < 1 || keys > 10_000_000)
      throw invalid(`--keys must be an integer from 1 to 10000000, got "${str('keys')}"`);
  }

  return {
    systems,
    timeS,
    warmupS,
    concurrency,
    workloads,
    keys,
    quick,
    install: values.install === true,
    ...(str('out') !== undefined && { outDir: str('out')! }),
  };
}
