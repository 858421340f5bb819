/**
 * The `jepsen` command line: `check` on saved histories with the contract's exit codes
 * (0 valid, 1 invalid, 3 unknown, 2 usage or parse error with `error CODE: message`), and
 * the help text, which covers `test` too (test/jepsen/runner.test.ts and smoke.test.ts run it). Runs `main` in process with the file
 * system injected, plus one real process to prove the script entry.
 */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ExitCode, main } from '../../jepsen-like/cli.js';
import { HAVE_PORCUPINE_DATA, jsonl, PORCUPINE_DATA, REPO_ROOT } from './helpers.js';

interface Run {
  code: number;
  out: string;
  err: string;
}

async function cli(argv: string[], files: Record<string, string> = {}): Promise<Run> {
  let out = '';
  let err = '';
  const code = await main(argv, {
    readFile: async (path) => {
      const text = files[path];
      if (text === undefined)
        throw Object.assign(new Error(`ENOENT: no such file, open '${path}'`), { code: 'ENOENT' });
      return text;
    },
    stdout: (t) => {
      out += `${t}\n`;
    },
    stderr: (t) => {
      err += `${t}\n`;
    },
  });
  return { code, out, err };
}

let index = 0;
const e = (process: number, type: string, f: string, value: unknown, more = {}) => ({
  index: index++,
  time: index * 1000,
  process,
  type,
  f,
  value,
  ...more,
});

const valid = jsonl([
  e(0, 'invoke', 'write', 1, { key: 'a' }),
  e(0, 'ok', 'write', 1, { key: 'a' }),
  e(1, 'invoke', 'read', null, { key: 'a' }),
  e(1, 'ok', 'read', 1, { key: 'a' }),
]);
const invalid = jsonl([
  e(0, 'invoke', 'write', 1, { key: 'a' }),
  e(0, 'ok', 'write', 1, { key: 'a' }),
  e(1, 'invoke', 'read', null, { key: 'a' }),
  e(1, 'ok', 'read', 2, { key: 'a' }),
]);
const hardEvents: Record<string, unknown>[] = [];
for (let p = 0; p < 40; p++) hardEvents.push(e(p, 'invoke', 'write', p));
hardEvents.push(e(99, 'invoke', 'read', null), e(99, 'ok', 'read', -1));
for (let p = 0; p < 40; p++) hardEvents.push(e(p, 'ok', 'write', p));
const hard = jsonl(hardEvents);

describe('jepsen check', () => {
  it('exits 0 on a valid history and 1 on an invalid one, with the explanation', async () => {
    const ok = await cli(['check', '--model', 'register', 'h.jsonl'], { 'h.jsonl': valid });
    expect(ok.code).toBe(ExitCode.Valid);
    expect(ok.out).toMatch(/^linearizability \(register\): valid/);
    expect(ok.out).toContain('valid: true');
    expect(ok.err).toBe('');
    const bad = await cli(['check', '--model', 'register', 'h.jsonl'], { 'h.jsonl': invalid });
    expect(bad.code).toBe(ExitCode.Invalid);
    expect(bad.out).toContain('key "a": not linearizable');
    expect(bad.out).toContain('op 1 (process 1, lines 3-4) read() -> 2');
    expect(bad.out).toContain('valid: false');
  });

  it('exits 3 when the time budget runs out', async () => {
    const r = await cli(['check', '--model', 'register', '--time-budget-ms', '50', 'h.jsonl'], {
      'h.jsonl': hard,
    });
    expect(r.code).toBe(ExitCode.Unknown);
    expect(r.out).toContain('unknown (time-budget');
  });

  it('prints one JSON document with --json', async () => {
    const r = await cli(['check', '--model', 'register', '--json', 'h.jsonl'], { 'h.jsonl': invalid });
    expect(r.code).toBe(ExitCode.Invalid);
    const doc = JSON.parse(r.out);
    expect(doc.valid).toBe(false);
    expect(doc.linearizability.model).toBe('register');
    expect(doc.linearizability.partitions[0].explanation.blocked.id).toBe(1);
  });

  it('uses --init and runs the other checkers with --checker', async () => {
    const read = jsonl([e(0, 'invoke', 'read', null), e(0, 'ok', 'read', 5)]);
    expect((await cli(['check', '--model', 'register', 'r', '--init', '5'], { r: read })).code).toBe(0);
    expect((await cli(['check', '--model', 'register', 'r'], { r: read })).code).toBe(1);
    const c = await cli(
      ['check', '--model', 'counter', 'r', '--init', '5', '--checker', 'linearizability,counter'],
      {
        r: read,
      },
    );
    expect(c.code).toBe(0);
    expect(c.out).toContain('counter: valid');
    const fence = jsonl([
      e(0, 'invoke', 'acquire', null, { key: 'L' }),
      e(0, 'ok', 'acquire', 1, { key: 'L' }),
      e(0, 'invoke', 'release', 1, { key: 'L' }),
      e(0, 'ok', 'release', 1, { key: 'L' }),
      e(0, 'invoke', 'access', 1, { key: 'L' }),
      e(0, 'ok', 'access', 1, { key: 'L' }),
    ]);
    const f = await cli(['check', '--checker', 'fencing', 'f'], { f: fence });
    expect(f.code).toBe(1);
    expect(f.out).toContain('[accept-after-release]');
  });

  it('exits 2 with `error CODE: message` on usage and parse errors', async () => {
    const cases: [string[], Record<string, string>, RegExp][] = [
      [[], {}, /^error INVALID_ARGUMENT: a command is required/],
      [['frobnicate'], {}, /^error INVALID_ARGUMENT: unknown command frobnicate/],
      [['check', 'h'], { h: valid }, /--model is required/],
      [['check', '--model', 'nope', 'h'], { h: valid }, /unknown --model nope/],
      [['check', '--model', 'register'], {}, /exactly one FILE/],
      [['check', '--model', 'register', '--format', 'edn', 'h'], { h: valid }, /unknown --format edn/],
      [['check', '--model', 'register', '--init', '{x', 'h'], { h: valid }, /--init must be JSON/],
      [['check', '--model', 'register', '--time-budget-ms', '-1', 'h'], { h: valid }, /--time-budget-ms/],
      [
        ['check', '--model', 'register', '--bogus', 'h'],
        { h: valid },
        /^error INVALID_ARGUMENT: Unknown option/,
      ],
      [
        ['check', '--model', 'kv', '--format', 'porcupine-etcd', 'h'],
        { h: '' },
        /goes with --model register/,
      ],
      [['check', '--model', 'register', 'missing'], {}, /^error NOT_FOUND: cannot read missing/],
      [
        ['check', '--model', 'register', 'h'],
        { h: '{"index":0}\n' },
        /^error INVALID_ARGUMENT: h: line 1: "time"/,
      ],
      [
        ['check', '--model', 'register', 'h'],
        { h: jsonl([{ index: 0, time: 0, process: 0, type: 'invoke', f: 'incr', value: 1 }]) },
        /^error INVALID_ARGUMENT: h: line 1: register model: unknown f "incr"/,
      ],
    ];
    for (const [argv, files, message] of cases) {
      const r = await cli(argv, files);
      expect(r.code, argv.join(' ')).toBe(ExitCode.Error);
      expect(r.err, argv.join(' ')).toMatch(message);
      expect(r.out).toBe('');
    }
  });

  it('prints help with exit 0, covering check and test', async () => {
    const help = await cli(['--help']);
    expect(help.code).toBe(0);
    expect(help.out).toContain('jepsen check');
    expect(help.out).toContain('jepsen test --workload W');
    const test = await cli(['test', '--workload', 'nope']);
    expect(test.code).toBe(ExitCode.Error);
    expect(test.err).toMatch(/^error INVALID_ARGUMENT: unknown --workload nope/);
  });

  it.skipIf(!HAVE_PORCUPINE_DATA)(
    'reads the Porcupine formats (skipped without ../shared/checker-data)',
    async () => {
      const etcd = resolve(PORCUPINE_DATA, 'jepsen/etcd_000.log');
      const r = await main(['check', '--format', 'porcupine-etcd', etcd], {
        readFile: async (p) => (await import('node:fs/promises')).readFile(p, 'utf8'),
        stdout: () => {},
        stderr: () => {},
      });
      expect(r).toBe(ExitCode.Invalid);
    },
  );

  it('runs as a script: npm run jepsen -- check (tsx jepsen-like/cli.ts)', async () => {
    const run = promisify(execFile);
    const file = resolve(REPO_ROOT, 'node_modules/.bin/tsx');
    const err = await run(
      file,
      ['jepsen-like/cli.ts', 'check', '--model', 'register', 'no-such-history.jsonl'],
      {
        cwd: REPO_ROOT,
      },
    ).catch((e: { code: number; stderr: string }) => e);
    expect((err as { code: number }).code).toBe(2);
    expect((err as { stderr: string }).stderr).toMatch(/^error NOT_FOUND: cannot read no-such-history.jsonl/);
  });
});
