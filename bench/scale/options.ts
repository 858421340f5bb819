/**
 * The scaling benchmark's command line and its two plans: the full one (the sizes of issue 9,
 * about 10 minutes on a 2-core machine) and `--quick` (small sizes and ~1 s windows, for the
 * smoke test).
 */
import { parseArgs } from 'node:util';
import { DkvError, ErrorCode } from '../../src/errors.js';
import { type ScalePlan, SECTIONS, type Section } from './report.js';

/** ScaleOptions are the parsed command line. */
export interface ScaleOptions {
  readonly quick: boolean;
  readonly sections: readonly Section[];
  /** Where the JSON goes (default bench/results). */
  readonly outDir: string | undefined;
}

/** FULL_PLAN is what a full run measures. */
export const FULL_PLAN: ScalePlan = Object.freeze({
  quick: false,
  sections: SECTIONS,
  groups: {
    partitions: [1, 8, 64, 512],
    timing: { settleMs: 5000, idleMs: 5000, warmupMs: 1000, measureMs: 5000 },
  },
  keys: { sizes: [10_000, 100_000, 1_000_000] },
  watchers: { sizes: [1, 1000, 10_000], measureMs: 8000 },
  ttl: { keys: 1_000_000, windowMs: 10_000 },
  nodes: { sizes: [3, 5], timing: { warmupMs: 1000, measureMs: 5000 } },
});

/** QUICK_PLAN is what `--quick` measures. */
export const QUICK_PLAN: ScalePlan = Object.freeze({
  quick: true,
  sections: SECTIONS,
  groups: {
    partitions: [1, 8],
    timing: { settleMs: 500, idleMs: 1000, warmupMs: 300, measureMs: 1000 },
  },
  keys: { sizes: [10_000] },
  watchers: { sizes: [1, 100], measureMs: 1000 },
  ttl: { keys: 10_000, windowMs: 1000 },
  nodes: { sizes: [3], timing: { warmupMs: 300, measureMs: 1000 } },
});

function invalid(message: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, message);
}

/** parseScaleArgs parses `[--quick] [--only groups,keys,...] [--out DIR]`; INVALID_ARGUMENT names what is wrong. */
export function parseScaleArgs(argv: readonly string[]): ScaleOptions {
  let values: { quick?: boolean; only?: string; out?: string };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        quick: { type: 'boolean' },
        only: { type: 'string' },
        out: { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw invalid(
      `${err instanceof Error ? err.message : String(err)} (usage: bench/scale.ts [--quick] [--only ${SECTIONS.join(',')}] [--out DIR])`,
    );
  }
  let sections: Section[] = [...SECTIONS];
  if (values.only !== undefined) {
    const names = values.only.split(',').map((s) => s.trim());
    for (const n of names)
      if (!(SECTIONS as readonly string[]).includes(n))
        throw invalid(`--only: unknown section "${n}" (sections: ${SECTIONS.join(', ')})`);
    sections = SECTIONS.filter((s) => names.includes(s));
  }
  if (values.out !== undefined && values.out.length === 0) throw invalid('--out must name a directory');
  return { quick: values.quick === true, sections, outDir: values.out };
}

/** planOf is the plan the options ask for. */
export function planOf(opts: Pick<ScaleOptions, 'quick' | 'sections'>): ScalePlan {
  return { ...(opts.quick ? QUICK_PLAN : FULL_PLAN), sections: opts.sections };
}
