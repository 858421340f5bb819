/**
 * `dkv auth ...` through the CLI (no cluster: it edits a file), and `--quota` parsing: every
 * subcommand's effect on the file, `--json` output, and clean `error CODE: message` refusals
 * for bad input, with the file left as it was.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { parseQuotas } from '../../src/admin/cmd-cluster.js';
import { EXIT, main } from '../../src/admin/program.js';
import { Authenticator, parseAuthFile } from '../../src/node/auth.js';

const dir = mkdtempSync(join(tmpdir(), 'dkv-cmd-auth-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function dkv(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => {
    out += String(c);
    return true;
  });
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => {
    err += String(c);
    return true;
  });
  try {
    return { code: await main(['node', 'dkv', ...args]), out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

describe('dkv auth', () => {
  const file = join(dir, 'auth.json');
  const text = (): string => readFileSync(file, 'utf8');

  it('init makes root once, with a generated password printed once, mode 0600', async () => {
    const r = await dkv('--json', 'auth', 'init', '--file', file);
    expect(r.code).toBe(EXIT.ok);
    const { password } = JSON.parse(r.out) as { password: string };
    expect(password.length).toBeGreaterThanOrEqual(16);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(text()).not.toContain(password);
    expect(
      (await Authenticator.of(parseAuthFile(text())).authenticate({ user: 'root', password }, 0)).all,
    ).toBe(true);
    const again = await dkv('auth', 'init', '--file', file);
    expect(again.err).toMatch(/^error ALREADY_EXISTS: .*exists already/);
  });

  it('adds roles, users and tokens, lists them without secrets, and removes them', async () => {
    expect(
      (await dkv('auth', 'role', 'add', 'app', '--file', file, '--grant', 'default/app/=read,write')).code,
    ).toBe(EXIT.ok);
    expect(
      (await dkv('auth', 'user', 'add', 'bob', '--file', file, '--new-password', 'bob-pw', '--role', 'app'))
        .code,
    ).toBe(EXIT.ok);
    const tok = await dkv(
      '--json',
      'auth',
      'token',
      'add',
      'ci',
      '--file',
      file,
      '--as',
      'bob',
      '--ttl',
      '60000',
    );
    const { token, expiresAt } = JSON.parse(tok.out) as { token: string; expiresAt: number };
    expect(expiresAt).toBeGreaterThan(Date.now());
    expect(text()).not.toContain(token);
    const list = await dkv('--json', 'auth', 'list', '--file', file);
    const view = JSON.parse(list.out) as {
      users: { name: string; roles: string[] }[];
      tokens: { name: string }[];
    };
    expect(view.users).toEqual([
      { name: 'root', roles: ['root'] },
      { name: 'bob', roles: ['app'] },
    ]);
    expect(view.tokens.map((t) => t.name)).toEqual(['ci']);
    expect(list.out).not.toMatch(/hash|salt|sha256|nodeToken/);
    expect((await dkv('auth', 'token', 'remove', 'ci', '--file', file)).code).toBe(EXIT.ok);
    expect(parseAuthFile(text()).tokens).toEqual([]);
    await dkv('auth', 'token', 'add', 'ci2', '--file', file, '--as', 'bob');
    expect((await dkv('auth', 'user', 'remove', 'bob', '--file', file)).code).toBe(EXIT.ok);
    const after = parseAuthFile(text());
    expect(after.users.map((u) => u.name)).toEqual(['root']);
    expect(after.tokens).toEqual([]); // a removed user's tokens go with it
  });

  it('refuses bad input by name and leaves the file as it was', async () => {
    const before = text();
    const cases: [string[], RegExp][] = [
      [['auth', 'user', 'add', 'eve', '--file', file], /^error INVALID_ARGUMENT: --new-password/],
      [
        ['auth', 'user', 'add', 'eve', '--file', file, '--new-password', 'x', '--role', 'ghost'],
        /no role "ghost"/,
      ],
      [['auth', 'role', 'add', 'r', '--file', file, '--grant', 'default=fly'], /not read, write or admin/],
      [['auth', 'role', 'add', 'r', '--file', file, '--grant', 'nogrant'], /STORE\[\/PREFIX\]=PERMS/],
      [['auth', 'token', 'add', 't', '--file', file, '--as', 'nobody'], /^error NOT_FOUND: no user "nobody"/],
      [['auth', 'token', 'add', 't', '--file', file, '--as', 'root', '--ttl', '-5'], /--ttl/],
      [['auth', 'user', 'remove', 'nobody', '--file', file], /^error NOT_FOUND/],
      [['auth', 'list', '--file', join(dir, 'missing.json')], /^error NOT_FOUND: cannot read the auth file/],
    ];
    for (const [args, re] of cases) {
      const r = await dkv(...args);
      expect(r.code, args.join(' ')).not.toBe(EXIT.ok);
      expect(r.err, args.join(' ')).toMatch(re);
    }
    expect(text()).toBe(before);
  });
});

describe('--quota', () => {
  it('parses KIND=N lists and names what is wrong', () => {
    expect(parseQuotas('keys=1000,bytes=1048576')).toEqual({ keys: 1000, bytes: 1048576 });
    expect(parseQuotas(' watches = 0 ')).toEqual({ watches: 0 });
    expect(() => parseQuotas('rows=5')).toThrow(/--quota "rows=5": want KIND=N/);
    expect(() => parseQuotas('keys=-1')).toThrow(/--quota/);
    expect(() => parseQuotas('keys')).toThrow(/want KIND=N/);
  });
});
