/**
 * The harness's command line (`npm run jepsen -- ...`, CONTRACT.md "Fault-injection harness").
 *
 *     check --model M FILE [--format jsonl|porcupine-etcd|porcupine-kv] [--init JSON]
 *           [--time-budget-ms N] [--checker C,...] [--stop-on-invalid] [--json]
 *
 * `check` reads a saved history, runs the checkers on it, prints the result, and exits 0
 * when valid, 1 when invalid, 3 when unknown. Usage and parse errors print
 * `error CODE: message` on stderr and exit 2. It writes no file. Reading the file is the
 * only I/O; `main` takes it injected, for tests. `test` runs a real cluster under faults
 * (runner/cli-test.ts, runner/run.ts) and writes its outputs into `--out`.
 */
import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DkvError, ErrorCode, isDkvError } from '../src/errors.js';
import { checkCounter } from './checkers/counter.js';
import { checkFencing } from './checkers/fencing.js';
import { checkLease } from './checkers/lease.js';
import { checkSet } from './checkers/set.js';
import { checkWatch } from './checkers/watch.js';
import { type History, parseHistory } from './history.js';
import { type CheckResult, checkOperations, formatResult } from './linearizability.js';
import { MODELS } from './models/index.js';
import { PorcupineFormat, parsePorcupine } from './porcupine-format.js';
import { TEST_USAGE, testCommand } from './runner/cli-test.js';
import { type CheckerResult, combineVerdicts, formatCheckerResult, type Verdict } from './verdict.js';

/** CHECKERS lists what `--checker` accepts. */
export const CHECKERS = ['linearizability', 'fencing', 'set', 'counter', 'watch', 'lease'] as const;
type CheckerName = (typeof CHECKERS)[number];

/** FORMATS lists what `--format` accepts. */
export const FORMATS = ['jsonl', PorcupineFormat.Etcd, PorcupineFormat.Kv] as const;

/** DEFAULT_TIME_BUDGET_MS is `check`'s default search budget per key. */
export const DEFAULT_TIME_BUDGET_MS = 20_000;

/** ExitCode is the contract's exit codes. */
export const ExitCode = { Valid: 0, Invalid: 1, Error: 2, Unknown: 3 } as const;

/** CliIo is what the CLI touches outside itself. */
export interface CliIo {
  readFile(path: string): Promise<string>;
  stdout(text: string): void;
  stderr(text: string): void;
}

const USAGE = `usage: jepsen check [--model M] FILE [options]
       jepsen test --workload W [options]   (a real cluster under faults)

check options:
  --model M              ${[...MODELS.values()].map((m) => m.name).join(' | ')} (for linearizability)
  --format F             ${FORMATS.join(' | ')} (default jsonl)
  --init JSON            initial value of every register / counter / kv string / set
  --time-budget-ms N     search budget per key (default ${DEFAULT_TIME_BUDGET_MS}); past it: unknown
  --checker C,...        ${CHECKERS.join(', ')} (default linearizability)
  --stop-on-invalid      stop the search at the first invalid key
  --json                 print the result as one JSON document

models:
${[...MODELS.values()].map((m) => `  ${m.name.padEnd(9)} ${m.summary}`).join('\n')}

${TEST_USAGE}

exit: 0 valid, 1 invalid, 3 unknown, 2 usage or parse error`;

function usageError(message: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, `${message} (see --help)`);
}

/** CheckReport is `check`'s result: the overall verdict and each checker's. */
export interface CheckReport {
  readonly valid: Verdict;
  readonly file: string;
  readonly linearizability?: CheckResult & { readonly model: string };
  readonly checkers: readonly CheckerResult[];
}

async function check(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      model: { type: 'string' },
      format: { type: 'string', default: 'jsonl' },
      init: { type: 'string' },
      'time-budget-ms': { type: 'string' },
      checker: { type: 'string' },
      'stop-on-invalid': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    io.stdout(USAGE);
    return ExitCode.Valid;
  }
  if (positionals.length !== 1) throw usageError('check takes exactly one FILE');
  const file = positionals[0]!;
  const format = values.format!;
  if (!(FORMATS as readonly string[]).includes(format)) throw usageError(`unknown --format ${format}`);
  const checkers = (values.checker ?? 'linearizability').split(',').map((c) => c.trim());
  for (const c of checkers)
    if (!(CHECKERS as readonly string[]).includes(c))
      throw usageError(`unknown --checker ${c} (${CHECKERS.join(', ')})`);
  let modelName = values.model;
  if (format === PorcupineFormat.Etcd) modelName ??= 'register';
  if (format === PorcupineFormat.Kv) modelName ??= 'kv';
  if (format === PorcupineFormat.Etcd && modelName !== 'register')
    throw usageError('--format porcupine-etcd goes with --model register');
  if (format === PorcupineFormat.Kv && modelName !== 'kv')
    throw usageError('--format porcupine-kv goes with --model kv');
  if (checkers.includes('linearizability')) {
    if (modelName === undefined) throw usageError('--model is required for the linearizability checker');
    if (!MODELS.has(modelName))
      throw usageError(`unknown --model ${modelName} (${[...MODELS.keys()].join(', ')})`);
  }
  let init: unknown;
  if (values.init !== undefined) {
    try {
      init = JSON.parse(values.init);
    } catch {
      throw usageError(`--init must be JSON, got ${values.init}`);
    }
  }
  let timeBudgetMs = DEFAULT_TIME_BUDGET_MS;
  if (values['time-budget-ms'] !== undefined) {
    timeBudgetMs = Number(values['time-budget-ms']);
    if (!Number.isFinite(timeBudgetMs) || timeBudgetMs <= 0)
      throw usageError(`--time-budget-ms must be a positive number, got ${values['time-budget-ms']}`);
  }

  let text: string;
  try {
    text = await io.readFile(file);
  } catch (err) {
    const code =
      (err as { code?: string }).code === 'ENOENT' ? ErrorCode.NotFound : ErrorCode.InvalidArgument;
    throw new DkvError(code, `cannot read ${file}: ${(err as Error).message}`);
  }
  let history: History;
  try {
    history = format === 'jsonl' ? parseHistory(text) : parsePorcupine(format as PorcupineFormat, text);
  } catch (err) {
    if (isDkvError(err)) throw new DkvError(err.code, `${file}: ${err.message}`);
    throw err;
  }

  const results: CheckerResult[] = [];
  let lin: (CheckResult & { model: string }) | undefined;
  for (const c of checkers as CheckerName[]) {
    if (c === 'linearizability') {
      const bound = MODELS.get(modelName!)!.bind(init === undefined ? {} : { init });
      let ops: ReturnType<typeof bound.operations>;
      try {
        ops = bound.operations(history.ops);
      } catch (err) {
        if (isDkvError(err)) throw new DkvError(err.code, `${file}: ${err.message}`);
        throw err;
      }
      lin = {
        model: modelName!,
        ...checkOperations(bound.model, ops, { timeBudgetMs, stopOnInvalid: values['stop-on-invalid'] }),
      };
    } else if (c === 'fencing') results.push(checkFencing(history));
    else if (c === 'set') results.push(checkSet(history));
    else if (c === 'counter')
      results.push(checkCounter(history, typeof init === 'number' ? { initial: init } : {}));
    else if (c === 'lease') results.push(checkLease(history));
    else results.push(checkWatch(history));
  }
  const valid = combineVerdicts([...(lin === undefined ? [] : [lin.valid]), ...results.map((r) => r.valid)]);
  const report: CheckReport = {
    valid,
    file,
    ...(lin === undefined ? {} : { linearizability: lin }),
    checkers: results,
  };
  if (values.json)
    io.stdout(JSON.stringify(report, (_k, v) => (v === Number.POSITIVE_INFINITY ? 'Infinity' : v)));
  else {
    const lines: string[] = [];
    if (lin !== undefined) lines.push(...formatResult(lin, lin.model));
    for (const r of results) lines.push(...formatCheckerResult(r));
    lines.push(`valid: ${valid}`);
    io.stdout(lines.join('\n'));
  }
  return valid === true ? ExitCode.Valid : valid === false ? ExitCode.Invalid : ExitCode.Unknown;
}

/** main runs the CLI on its arguments (without node and the script) and returns the exit code. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  try {
    const [command, ...rest] = argv;
    if (command === '--help' || command === '-h' || command === 'help') {
      io.stdout(USAGE);
      return ExitCode.Valid;
    }
    if (command === undefined) throw usageError('a command is required: check or test');
    if (command === 'check') return await check(rest, io);
    if (command === 'test') return await testCommand(rest, io);
    throw usageError(`unknown command ${command}`);
  } catch (err) {
    if (isDkvError(err)) {
      io.stderr(`error ${err.code}: ${err.message}`);
      return ExitCode.Error;
    }
    if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.stderr(`error ${ErrorCode.InvalidArgument}: ${(err as Error).message} (see --help)`);
      return ExitCode.Error;
    }
    throw err;
  }
}

const invokedDirectly =
  process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (invokedDirectly) {
  process.exitCode = await main(process.argv.slice(2), {
    readFile: (path) => readFile(path, 'utf8'),
    stdout: (text) => process.stdout.write(`${text}\n`),
    stderr: (text) => process.stderr.write(`${text}\n`),
  });
}
