/**
 * The CLI's scan, watch, query and counter commands against an in-process 3-node cluster:
 * run in-process through main() with stdout captured, and `watch` once as a real process
 * stopped by SIGINT. Exit codes per CONTRACT.md: 0 ok, 1 not found, 2 error.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildQuery, int64Argument, scalarOption } from '../../src/admin/cmd-query.js';
import { EXIT, main } from '../../src/admin/program.js';
import type { DkvClient } from '../../src/client/client.js';
import { defineIndexes } from '../../src/client/scan.js';
import { ErrorCode, isDkvError } from '../../src/errors.js';
import { InProcCluster } from '../client/fixture.js';

const ROOT = resolve(import.meta.dirname, '../..');

function capture(): { err: () => string; out: () => string } {
  let err = '';
  let out = '';
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    err += String(chunk);
    return true;
  });
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  return { err: () => err, out: () => out };
}

async function until(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const lines = (s: string): string[] => s.split('\n').filter((l) => l.length > 0);

describe('dkv scan, watch, query, counter', () => {
  let cluster: InProcCluster;
  let c: DkvClient;
  let dkv: (...args: string[]) => Promise<number>;

  beforeAll(async () => {
    cluster = await InProcCluster.start({ partitions: 3 });
    c = await cluster.client();
    const servers = cluster.servers.join(',');
    dkv = (...args) => main(['node', 'dkv', '--servers', servers, '--timeout', '8000', ...args]);
  });
  afterEach(() => vi.restoreAllMocks());
  afterAll(async () => {
    await cluster?.close();
  });

  it('scan prints one line per item in key order; --json one object per line', async () => {
    const keys = ['cli/b', 'cli/a', 'cli/c', 'cli/d/1', 'clj'];
    for (const k of keys) await c.put(k, k === 'cli/c' ? { n: 3 } : `v ${k}`);
    await c.put('cli/multi', 'line1\nline2');
    let io = capture();
    expect(await dkv('scan', '--prefix', 'cli/')).toBe(EXIT.ok);
    expect(lines(io.out())).toEqual([
      'cli/a\tv cli/a',
      'cli/b\tv cli/b',
      'cli/c\t{"n":3}',
      'cli/d/1\tv cli/d/1',
      'cli/multi\t"line1\\nline2"',
    ]);
    vi.restoreAllMocks();
    io = capture();
    expect(await dkv('--json', 'scan', '--prefix', 'cli/', '--limit', '2')).toBe(EXIT.ok);
    const objs = lines(io.out()).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(objs.map((o) => [o.key, o.value, typeof o.group, typeof o.modRevision])).toEqual([
      ['cli/a', 'v cli/a', 'number', 'number'],
      ['cli/b', 'v cli/b', 'number', 'number'],
    ]);
    vi.restoreAllMocks();
    io = capture();
    expect(await dkv('scan', '--prefix', 'nothing-here/')).toBe(EXIT.ok);
    expect(io.out()).toBe('');
    vi.restoreAllMocks();
    io = capture();
    expect(await dkv('scan', '--limit', 'x')).toBe(EXIT.error);
    expect(io.err()).toMatch(/^error INVALID_ARGUMENT: --limit/);
  });

  it('query by eq and range, --count, --json', async () => {
    await defineIndexes(c, [
      { name: 'color', kind: 'eq', field: 'color' },
      { name: 'age', kind: 'range', field: 'age' },
    ]);
    for (let i = 0; i < 12; i++) await c.put(`p/${i}`, { color: i % 2 ? 'red' : 'blue', age: i * 5 });
    await c.put('p/str', { color: 'red', age: '30' }); // a string age: not a number
    let io = capture();
    expect(await dkv('query', '--index', 'color', '--eq', 'red', '--limit', '3')).toBe(EXIT.ok);
    expect(lines(io.out()).map((l) => l.split('\t')[0])).toEqual(['p/1', 'p/11', 'p/3']);
    vi.restoreAllMocks();
    io = capture();
    expect(await dkv('--json', 'query', '--index', 'age', '--gte', '10', '--lt', '30')).toBe(EXIT.ok);
    expect(lines(io.out()).map((l) => (JSON.parse(l) as { key: string }).key)).toEqual([
      'p/2',
      'p/3',
      'p/4',
      'p/5',
    ]);
    vi.restoreAllMocks();
    io = capture();
    expect(await dkv('query', '--index', 'age', '--eq', '"30"')).toBe(EXIT.ok);
    expect(lines(io.out())).toEqual(['p/str\t{"color":"red","age":"30"}']);
    vi.restoreAllMocks();
    io = capture();
    expect(await dkv('query', '--index', 'color', '--eq', 'red', '--count')).toBe(EXIT.ok);
    expect(io.out()).toBe('7\n');
    vi.restoreAllMocks();
    io = capture();
    expect(await dkv('query', '--eq', 'red')).toBe(EXIT.error);
    expect(io.err()).toMatch(/^error INVALID_ARGUMENT: /);
    vi.restoreAllMocks();
    io = capture();
    expect(await dkv('query', '--index', 'nope', '--eq', '1')).toBe(EXIT.error);
    expect(io.err()).toMatch(/^error INVALID_ARGUMENT: /);
  });

  it('counter add/get/set/del, exact beyond 2^53, negative deltas', async () => {
    let io = capture();
    expect(await dkv('counter', 'add', 'cc', '5')).toBe(EXIT.ok);
    expect(await dkv('counter', 'add', 'cc', '-2', '--ttl', '60000')).toBe(EXIT.ok);
    expect(await dkv('counter', 'get', 'cc')).toBe(EXIT.ok);
    expect(lines(io.out())).toEqual(['5', '3', '3']);
    vi.restoreAllMocks();
    io = capture();
    expect(await dkv('--json', 'counter', 'set', 'cc', '9223372036854775807')).toBe(EXIT.ok);
    expect(await dkv('--json', 'counter', 'get', 'cc')).toBe(EXIT.ok);
    expect(lines(io.out()).map((l) => JSON.parse(l))).toEqual([
      { name: 'cc', previous: 3 },
      { name: 'cc', value: '9223372036854775807' },
    ]);
    expect(await c.counter('cc').get()).toBe(2n ** 63n - 1n);
    vi.restoreAllMocks();
    io = capture();
    expect(await dkv('counter', 'add', 'cc', '1')).toBe(EXIT.error);
    expect(io.err()).toMatch(/^error INVALID_ARGUMENT: /);
    vi.restoreAllMocks();
    io = capture();
    expect(await dkv('counter', 'del', 'cc')).toBe(EXIT.ok);
    expect(await dkv('counter', 'del', 'cc')).toBe(EXIT.notFound);
    expect(io.out()).toBe('OK\n');
    expect(io.err()).toMatch(/^error NOT_FOUND: /);
    vi.restoreAllMocks();
    io = capture();
    expect(await dkv('counter', 'add', 'cc', '1.5')).toBe(EXIT.error);
    expect(io.err()).toMatch(/^error INVALID_ARGUMENT: DELTA/);
  });

  it('watch streams events (snapshot, live) until --count; --from-rev resumes; --json', async () => {
    await c.put('w/a', 'one');
    const io = capture();
    const run = dkv('watch', '--prefix', 'w/', '--snapshot', '--count', '3');
    await until(() => io.out().includes('w/a'));
    await c.put('w/b', { x: 1 });
    const item = await c.put('w/a', 'two');
    await c.delete('w/b');
    expect(await run).toBe(EXIT.ok);
    const ls = lines(io.out());
    expect(ls).toHaveLength(3);
    expect(ls[0]).toMatch(/^PUT w\/a one {2}rev=\d+ group=\d+ cause=snapshot$/);
    expect(ls[1]).toMatch(/^PUT w\/b \{"x":1\} {2}rev=\d+ group=\d+$/);
    expect(ls[2]).toBe(`PUT w/a two  rev=${item.modRevision} group=${await c.groupOfKey('w/a')}`);
    vi.restoreAllMocks();
    const io2 = capture();
    const rev = String(item.modRevision - 1);
    expect(await dkv('--json', 'watch', '--key', 'w/a', '--from-rev', rev, '--count', '1')).toBe(EXIT.ok);
    expect(JSON.parse(io2.out())).toEqual({
      type: 'put',
      cause: 'write',
      key: 'w/a',
      value: 'two',
      revision: item.modRevision,
      group: await c.groupOfKey('w/a'),
    });
    vi.restoreAllMocks();
    const io3 = capture();
    expect(await dkv('watch', '--prefix', 'a', '--key', 'b')).toBe(EXIT.error);
    expect(io3.err()).toMatch(/^error INVALID_ARGUMENT: watch needs exactly one/);
  });

  it('watch runs until SIGINT as a real process, then exits 0', async () => {
    const child: ChildProcess = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/admin/cli.ts',
        '--servers',
        cluster.servers.join(','),
        'watch',
        '--prefix',
        'sig/',
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      // The watch starts live: keep writing until its first event shows.
      let i = 0;
      while (!out.includes('PUT sig/')) {
        await c.put(`sig/${i++}`, 'v');
        await new Promise((r) => setTimeout(r, 100));
        if (i > 150) throw new Error(`no event: ${err}`);
      }
      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(err).toBe('');
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('dkv query and counter argument parsing', () => {
  it('reads query bounds as JSON scalars, else strings', () => {
    expect(scalarOption('30')).toBe(30);
    expect(scalarOption('"30"')).toBe('30');
    expect(scalarOption('true')).toBe(true);
    expect(scalarOption('null')).toBe(null);
    expect(scalarOption('red')).toBe('red');
    expect(scalarOption('{"a":1}')).toBe('{"a":1}');
    expect(buildQuery({ index: 'a', gte: '1', lt: '5' })).toEqual({ index: 'a', gte: 1, lt: 5 });
    expect(buildQuery({ index: 'a', eq: 'x', prefix: 'p/' })).toEqual({
      and: [{ index: 'a', eq: 'x' }, { prefix: 'p/' }],
    });
    expect(buildQuery({ prefix: 'p/' })).toEqual({ prefix: 'p/' });
    for (const bad of [
      {},
      { index: 'a' },
      { index: 'a', eq: '1', lt: '2' },
      { index: 'a', gt: '1', gte: '1' },
    ]) {
      let code: unknown;
      try {
        buildQuery(bad);
      } catch (e) {
        code = isDkvError(e) ? e.code : e;
      }
      expect(code).toBe(ErrorCode.InvalidArgument);
    }
  });

  it('reads counter values as exact 64-bit integers', () => {
    expect(int64Argument('D', '-5')).toBe(-5);
    expect(int64Argument('D', '9007199254740993')).toBe(9_007_199_254_740_993n);
    expect(() => int64Argument('D', '9223372036854775808')).toThrow(/64-bit/);
    expect(() => int64Argument('D', '1e3')).toThrow(/integer/);
  });
});
