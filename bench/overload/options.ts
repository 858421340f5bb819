/**
 * The overload benchmark's command line and its plan: the full run (capacity over 5 s, then
 * 1x, 2x and 4x capacity for 10 s each: about 45 s) and `--quick` (2 s of capacity,
 * 2x and 4x for 3 s each: 15 to 20 s with the cluster's start and the check).
 */
import { parseArgs } from 'node:util';
import { DkvError, ErrorCode } from '../../src/errors.js';

/** OverloadPlan is what one run does. Times in ms. */
export interface OverloadPlan {
  readonly quick: boolean;
  /** The closed-loop capacity phase: C puts in flight, warm-up, then the measured window. */
  readonly capacity: { readonly concurrency: number; readonly warmupMs: number; readonly measureMs: number };
  /** Offered load of each open-loop phase, as multiples of the capacity measured. */
  readonly factors: readonly number[];
  readonly phaseMs: number;
  /** A pause between phases, so each starts from a quiet cluster. */
  readonly settleMs: number;
  /** Load generator processes, and DkvClients in each (a client connects to every node). */
  readonly generators: number;
  readonly clientsPerGenerator: number;
  /** Keys 0..keySpace-1 for the open-loop puts (keySpace..2*keySpace-1 for the capacity phase). */
  readonly keySpace: number;
  /** The generators' client timeout (the nodes answer TIMEOUT after requestWaitMs, 15 s by default). */
  readonly requestTimeoutMs: number;
  /** Extra node config fields, the same for every node (for instance { pendingMax: 2000 }). */
  readonly nodeConfig: Readonly<Record<string, unknown>>;
}

/** FULL_PLAN is a full run's plan. */
export const FULL_PLAN: OverloadPlan = Object.freeze({
  quick: false,
  capacity: { concurrency: 64, warmupMs: 1000, measureMs: 5000 },
  factors: [1, 2, 4],
  phaseMs: 10_000,
  settleMs: 1000,
  generators: 2,
  clientsPerGenerator: 4,
  keySpace: 10_000,
  requestTimeoutMs: 20_000,
  nodeConfig: {},
});

/** QUICK_PLAN is `--quick`'s plan. */
export const QUICK_PLAN: OverloadPlan = Object.freeze({
  ...FULL_PLAN,
  quick: true,
  capacity: { concurrency: 64, warmupMs: 500, measureMs: 2000 },
  factors: [2, 4],
  phaseMs: 3000,
  settleMs: 500,
});

/** OverloadOptions are the parsed command line. */
export interface OverloadOptions {
  readonly plan: OverloadPlan;
  /** Where the JSON goes (default bench/results). */
  readonly outDir: string | undefined;
}

/** USAGE is the command line's synopsis. */
export const USAGE =
  'bench/overload.ts [--quick] [--time S] [--factors 2,4] [--generators N] [--clients N] [--capacity-concurrency C] [--pending-max N] [--shed-wait-ms N] [--out DIR]';

function invalid(message: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, message);
}

function positiveInt(name: string, text: string | undefined, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1 || n > max)
    throw invalid(`--${name} must be an integer from 1 to ${max}, got ${JSON.stringify(text)}`);
  return n;
}

/** parseOverloadArgs parses the command line (USAGE); INVALID_ARGUMENT names what is wrong. */
export function parseOverloadArgs(argv: readonly string[]): OverloadOptions {
  let values: {
    quick?: boolean;
    time?: string;
    factors?: string;
    generators?: string;
    clients?: string;
    'capacity-concurrency'?: string;
    'pending-max'?: string;
    'shed-wait-ms'?: string;
    out?: string;
  };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        quick: { type: 'boolean' },
        time: { type: 'string' },
        factors: { type: 'string' },
        generators: { type: 'string' },
        clients: { type: 'string' },
        'capacity-concurrency': { type: 'string' },
        'pending-max': { type: 'string' },
        'shed-wait-ms': { type: 'string' },
        out: { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw invalid(`${err instanceof Error ? err.message : String(err)} (usage: ${USAGE})`);
  }
  const base = values.quick === true ? QUICK_PLAN : FULL_PLAN;
  let phaseMs = base.phaseMs;
  if (values.time !== undefined) {
    const s = Number(values.time);
    if (!Number.isFinite(s) || s < 0.5 || s > 600)
      throw invalid(`--time must be seconds from 0.5 to 600, got ${JSON.stringify(values.time)}`);
    phaseMs = Math.round(s * 1000);
  }
  let factors = base.factors;
  if (values.factors !== undefined) {
    const parts = values.factors.split(',').map((s) => s.trim());
    factors = parts.map((p) => {
      const f = Number(p);
      if (p.length === 0 || !Number.isFinite(f) || f <= 0 || f > 100)
        throw invalid(
          `--factors: each factor must be a number above 0 and at most 100, got ${JSON.stringify(p)}`,
        );
      return f;
    });
  }
  const pendingMax = positiveInt('pending-max', values['pending-max'], 10_000_000);
  // 0 turns waiting-time shedding off, so it is read here rather than with positiveInt.
  const shedRaw = values['shed-wait-ms'];
  const shedWaitMs = shedRaw === undefined ? undefined : Number(shedRaw);
  if (
    shedWaitMs !== undefined &&
    !(Number.isSafeInteger(shedWaitMs) && shedWaitMs >= 0 && shedWaitMs <= 3_600_000)
  )
    throw invalid(
      `--shed-wait-ms must be an integer from 0 (off) to 3600000, got ${JSON.stringify(shedRaw)}`,
    );
  if (values.out !== undefined && values.out.length === 0) throw invalid('--out must name a directory');
  return {
    plan: {
      ...base,
      phaseMs,
      factors,
      capacity: {
        ...base.capacity,
        concurrency:
          positiveInt('capacity-concurrency', values['capacity-concurrency'], 4096) ??
          base.capacity.concurrency,
      },
      generators: positiveInt('generators', values.generators, 16) ?? base.generators,
      clientsPerGenerator: positiveInt('clients', values.clients, 64) ?? base.clientsPerGenerator,
      nodeConfig: {
        ...base.nodeConfig,
        ...(pendingMax !== undefined && { pendingMax }),
        ...(shedWaitMs !== undefined && { shedWaitMs }),
      },
    },
    outDir: values.out,
  };
}
