/**
 * `npm run jepsen -- test`: parse the options, run the test (run.ts), print the verdict.
 *
 *     test --workload W --nemesis N1,N2 --time S --nodes 3|5 --seed X --out DIR
 *          [--bug NAME] [--concurrency N] [--op-timeout-ms N] [--time-budget-ms N]
 *
 * Exit codes as for `check`: 0 valid, 1 invalid, 3 unknown, 2 usage error or a harness
 * failure (the cluster did not start, say), printed as `error CODE: message`.
 */
import { parseArgs } from 'node:util';
import { DkvError, ErrorCode } from '../../src/errors.js';
import { BUGS, type BugName, runTest, WORKLOADS, type WorkloadName } from './run.js';
import { NEMESES, type NemesisName } from './schedule.js';

/** TEST_USAGE is the `test` part of the usage text. */
export const TEST_USAGE = `test options:
  --workload W           ${WORKLOADS.join(' | ')} (required)
  --nemesis N1,N2        ${NEMESES.join(', ')}, or none (default partition,kill)
  --time S               seconds of workload (default 30)
  --nodes 3|5            cluster size (default 3)
  --seed X               schedule seed (default: random, printed)
  --out DIR              where the outputs go (default jepsen-out/<workload>-<seed>)
  --bug NAME             planted bug, a positive control: ${BUGS.join(', ')}
  --concurrency N        client workers (default: the workload's)
  --op-timeout-ms N      a call's timeout, after which the op is info (default 3000)
  --time-budget-ms N     linearizability budget per key (default 10000)`;

function usage(message: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, `${message} (see --help)`);
}

function positiveInt(name: string, text: string | undefined, dflt: number, max = 1e9): number {
  if (text === undefined) return dflt;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1 || n > max)
    throw usage(`--${name} must be an integer from 1 to ${max}, got ${text}`);
  return n;
}

/** testCommand runs `test` with its arguments; it returns the exit code. */
export async function testCommand(
  args: string[],
  io: { stdout(text: string): void; stderr(text: string): void },
): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      workload: { type: 'string' },
      nemesis: { type: 'string', default: 'partition,kill' },
      time: { type: 'string' },
      nodes: { type: 'string' },
      seed: { type: 'string' },
      out: { type: 'string' },
      bug: { type: 'string' },
      concurrency: { type: 'string' },
      'op-timeout-ms': { type: 'string' },
      'time-budget-ms': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    io.stdout(`usage: jepsen test --workload W [options]\n\n${TEST_USAGE}`);
    return 0;
  }
  if (positionals.length > 0) throw usage(`unexpected argument ${positionals[0]}`);
  const workload = values.workload;
  if (workload === undefined) throw usage('--workload is required');
  if (!(WORKLOADS as readonly string[]).includes(workload))
    throw usage(`unknown --workload ${workload} (${WORKLOADS.join(', ')})`);
  const nemeses =
    values.nemesis === 'none' || values.nemesis === '' ? [] : values.nemesis!.split(',').map((n) => n.trim());
  for (const n of nemeses)
    if (!(NEMESES as readonly string[]).includes(n))
      throw usage(`unknown --nemesis ${n} (${NEMESES.join(', ')})`);
  const timeSec = Number(values.time ?? '30');
  if (!Number.isFinite(timeSec) || timeSec < 1 || timeSec > 86_400)
    throw usage(`--time must be a number of seconds from 1 to 86400, got ${values.time}`);
  const nodes = positiveInt('nodes', values.nodes, 3, 9);
  if (nodes !== 3 && nodes !== 5) throw usage(`--nodes must be 3 or 5, got ${nodes}`);
  const seed = values.seed === undefined ? Math.floor(Math.random() * 1_000_000) : Number(values.seed);
  if (!Number.isSafeInteger(seed)) throw usage(`--seed must be an integer, got ${values.seed}`);
  const bug = values.bug;
  if (bug !== undefined && !(BUGS as readonly string[]).includes(bug))
    throw usage(`unknown --bug ${bug} (${BUGS.join(', ')})`);
  const concurrency =
    values.concurrency === undefined ? undefined : positiveInt('concurrency', values.concurrency, 1, 256);
  const outcome = await runTest({
    workload: workload as WorkloadName,
    nemeses: nemeses as NemesisName[],
    timeSec,
    nodes,
    seed,
    out: values.out ?? `jepsen-out/${workload}-${seed}`,
    ...(bug !== undefined && { bug: bug as BugName }),
    ...(concurrency !== undefined && { concurrency }),
    opTimeoutMs: positiveInt('op-timeout-ms', values['op-timeout-ms'], 3000, 600_000),
    timeBudgetMs: positiveInt('time-budget-ms', values['time-budget-ms'], 10_000, 3_600_000),
    log: (line) => io.stdout(line),
  });
  const r = outcome.results as {
    checkers: { checker: string; valid: unknown; violationCount: number }[];
    linearizability: { valid: unknown; keys: number } | null;
  };
  if (r.linearizability !== null)
    io.stdout(`  linearizability: ${String(r.linearizability.valid)} over ${r.linearizability.keys} keys`);
  for (const c of r.checkers)
    io.stdout(`  ${c.checker}: ${String(c.valid)} (${c.violationCount} violation(s))`);
  io.stdout(`valid: ${String(outcome.valid)}`);
  return outcome.valid === true ? 0 : outcome.valid === false ? 1 : 3;
}
