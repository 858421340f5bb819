/**
 * The auth file, authentication and the permission rules (src/node/auth.ts), and the CLI's
 * file editing (src/admin/cmd-auth.ts), without a cluster. The permission matrix on a live
 * cluster is test/node/permissions.test.ts.
 */
import { mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import {
  addRole,
  addToken,
  addUser,
  initAuthFile,
  parseGrant,
  readAuthFile,
  writeAuthFile,
} from '../../src/admin/cmd-auth.js';
import {
  Authenticator,
  type AuthFile,
  authorize,
  hashPassword,
  needsOf,
  type Principal,
  parseAuthFile,
  verifyPassword,
} from '../../src/node/auth.js';
import { checkCredentials } from '../../src/transport/protocol.js';

const dir = mkdtempSync(join(tmpdir(), 'dkv-auth-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function baseFile(): AuthFile {
  let f: AuthFile = { version: 1, users: [], roles: [], tokens: [], nodeToken: 'n'.repeat(64) };
  f = addRole(f, 'app-rw', [parseGrant('default/app/=read,write')]);
  f = addRole(f, 'reader', [parseGrant('*=read')]);
  f = addUser(f, 'root', 'rootpw', ['root']);
  f = addUser(f, 'alice', 'alicepw', ['app-rw']);
  f = addUser(f, 'rita', 'ritapw', ['reader']);
  return f;
}

describe('passwords', () => {
  test('scrypt hashes verify the right password only, with a fresh salt each time', async () => {
    const a = hashPassword('secret');
    const b = hashPassword('secret');
    expect(a.salt).not.toBe(b.salt);
    expect(a.hash).not.toBe(b.hash);
    expect(a.N).toBe(16384);
    expect(await verifyPassword('secret', a)).toBe(true);
    expect(await verifyPassword('secreT', a)).toBe(false);
    expect(await verifyPassword('', a)).toBe(false);
    expect(() => hashPassword('')).toThrow(/empty/);
  });
});

describe('authentication', () => {
  const auth = Authenticator.of(baseFile());
  test('a right password gives the user its grants; a wrong one or an unknown user is UNAUTHENTICATED', async () => {
    const p = await auth.authenticate({ user: 'alice', password: 'alicepw' }, Date.now());
    expect(p).toMatchObject({ user: 'alice', all: false });
    expect(p.grants).toEqual([{ store: 'default', prefix: 'app/', perms: ['read', 'write'] }]);
    expect((await auth.authenticate({ user: 'root', password: 'rootpw' }, 0)).all).toBe(true);
    await expect(auth.authenticate({ user: 'alice', password: 'nope' }, 0)).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
    });
    await expect(auth.authenticate({ user: 'mallory', password: 'x' }, 0)).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
    });
    // The cache of verified passwords must not let a wrong password through afterwards.
    await auth.authenticate({ user: 'alice', password: 'alicepw' }, 0);
    await expect(auth.authenticate({ user: 'alice', password: 'alicepw2' }, 0)).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
    });
  });

  test('tokens: valid until they expire; unknown ones refused; the node token is a node', async () => {
    const now = Date.now();
    let f = baseFile();
    const live = addToken(f, 'ci', 'alice', now + 60_000);
    f = live.file;
    const dead = addToken(f, 'old', 'alice', now - 1);
    f = dead.file;
    const forever = addToken(f, 'svc', 'rita');
    f = forever.file;
    const a = Authenticator.of(f);
    expect((await a.authenticate({ token: live.token }, now)).user).toBe('alice');
    await expect(a.authenticate({ token: live.token }, now + 60_000)).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
      message: expect.stringMatching(/expired/),
    });
    await expect(a.authenticate({ token: dead.token }, now)).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
    });
    expect((await a.authenticate({ token: forever.token }, now + 1e12)).user).toBe('rita');
    await expect(a.authenticate({ token: `${live.token}x` }, now)).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
    });
    expect(await a.authenticate({ token: 'n'.repeat(64) }, now)).toMatchObject({ user: 'node', all: true });
    // The file keeps only hashes.
    expect(JSON.stringify(f)).not.toContain(live.token);
  });

  test('client certificates: node-<id> is a node, a CN naming a user is that user, others nobody', () => {
    expect(auth.principalOfCert('node-3')).toMatchObject({ user: 'node', all: true });
    expect(auth.principalOfCert('alice')?.user).toBe('alice');
    expect(auth.principalOfCert('node-x')).toBeUndefined();
    expect(auth.principalOfCert('mallory')).toBeUndefined();
    expect(auth.principalOfCert(undefined)).toBeUndefined();
  });

  test('credentials are { user, password } or { token } and nothing else', () => {
    expect(checkCredentials({ token: 't' })).toEqual({ token: 't' });
    expect(checkCredentials({ user: 'u', password: 'p' })).toEqual({ user: 'u', password: 'p' });
    for (const bad of [
      null,
      {},
      { token: '' },
      { user: 'u' },
      { user: 'u', password: 'p', x: 1 },
      { token: 1 },
      'x',
    ])
      expect(() => checkCredentials(bad)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('the auth file', () => {
  test('bad files are refused with the field named', () => {
    const ok = JSON.stringify(baseFile());
    expect(parseAuthFile(ok).users.map((u) => u.name)).toEqual(['root', 'alice', 'rita']);
    const cases: [unknown, RegExp][] = [
      ['{', /not JSON/],
      [{ version: 2 }, /version/],
      [{ ...baseFile(), users: [{ name: 'x', roles: ['ghost'] }] }, /no role "ghost"/],
      [
        { ...baseFile(), roles: [{ name: 'r', grants: [{ store: 'default', perms: ['fly'] }] }] },
        /not read, write or admin/,
      ],
      [{ ...baseFile(), tokens: [{ name: 't', sha256: 'zz', user: 'alice' }] }, /64 hex/],
      [{ ...baseFile(), nodeToken: 'short' }, /nodeToken/],
      [{ ...baseFile(), users: [{ name: 'bad name', roles: [] }] }, /users\[0\]\.name/],
    ];
    for (const [v, re] of cases)
      expect(() => parseAuthFile(typeof v === 'string' ? v : JSON.stringify(v))).toThrow(re);
  });

  test('init makes root explicitly, refuses to overwrite, and the file is 0600', async () => {
    const file = join(dir, 'init.json');
    const r = initAuthFile(file, 'pw1');
    expect(r).toEqual({ password: 'pw1', generated: false });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(() => initAuthFile(file, 'pw2')).toThrow(/exists already/);
    const a = Authenticator.fromFile(file);
    expect((await a.authenticate({ user: 'root', password: 'pw1' }, 0)).all).toBe(true);
    const gen = initAuthFile(join(dir, 'gen.json'));
    expect(gen.generated).toBe(true);
    expect(gen.password.length).toBeGreaterThanOrEqual(16);
  });

  test('a node re-reads a changed file, and keeps the last good one when the new one is broken', async () => {
    const file = join(dir, 'reload.json');
    writeAuthFile(file, baseFile());
    const logs: string[] = [];
    const a = Authenticator.fromFile(file, (_l, msg) => logs.push(msg));
    await expect(a.authenticate({ user: 'bob', password: 'bobpw' }, 0)).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
    });
    writeAuthFile(file, addUser(readAuthFile(file), 'bob', 'bobpw', []));
    utimesSync(file, new Date(), new Date(Date.now() + 5000)); // a distinct mtime, whatever the fs resolution
    a.reloadIfChanged();
    expect((await a.authenticate({ user: 'bob', password: 'bobpw' }, 0)).user).toBe('bob');
    writeFileSync(file, '{ broken');
    utimesSync(file, new Date(), new Date(Date.now() + 10_000));
    a.reloadIfChanged();
    expect(logs.some((l) => /not reloaded/.test(l))).toBe(true);
    expect((await a.authenticate({ user: 'bob', password: 'bobpw' }, 0)).user).toBe('bob');
  });

  test('grants parse as STORE[/PREFIX]=PERMS', () => {
    expect(parseGrant('default=read')).toEqual({ store: 'default', perms: ['read'] });
    expect(parseGrant('app/users/=read,write')).toEqual({
      store: 'app',
      prefix: 'users/',
      perms: ['read', 'write'],
    });
    expect(parseGrant('*=admin')).toEqual({ store: '*', perms: ['admin'] });
    expect(() => parseGrant('default')).toThrow(/STORE\[\/PREFIX\]=PERMS/);
    expect(() => parseGrant('default=fly')).toThrow(/not read, write or admin/);
    expect(() => parseGrant('default=')).toThrow(/at least one/);
  });
});

describe('authorization', () => {
  const alice: Principal = { user: 'alice', all: false, grants: [parseGrant('default/app/=read,write')] };
  const rita: Principal = { user: 'rita', all: false, grants: [parseGrant('*=read')] };
  const may = (p: Principal, op: string, a: Record<string, unknown>): boolean => {
    const { needs, what } = needsOf(op, a);
    try {
      authorize(p, needs, what);
      return true;
    } catch (err) {
      expect(err).toMatchObject({ code: 'PERMISSION_DENIED' });
      return false;
    }
  };
  const cmd = (c: Record<string, unknown>, store = 'default') => ({ store, cmd: c });
  const read = (r: Record<string, unknown>, store = 'default') => ({ store, read: r });

  test.each([
    ['put under the prefix', 'cmd', cmd({ op: 'put', key: 'app/1', value: 1 }), true, false],
    ['put outside it', 'cmd', cmd({ op: 'put', key: 'apple', value: 1 }), false, false],
    ['put in another store', 'cmd', cmd({ op: 'put', key: 'app/1', value: 1 }, 'other'), false, false],
    [
      'put fenced by a lock outside',
      'cmd',
      cmd({ op: 'put', key: 'app/1', value: 1, fence: { lock: 'x', token: 1 } }),
      false,
      false,
    ],
    ['delete', 'cmd', cmd({ op: 'delete', key: 'app/1' }), true, false],
    [
      'txn inside',
      'cmd',
      cmd({
        op: 'txn',
        compare: [{ key: 'app/a' }],
        success: [{ op: 'put', key: 'app/b', value: 1 }],
        failure: [],
      }),
      true,
      false,
    ],
    [
      'txn half outside',
      'cmd',
      cmd({
        op: 'txn',
        compare: [],
        success: [
          { op: 'put', key: 'app/b', value: 1 },
          { op: 'delete', key: 'z' },
        ],
        failure: [],
      }),
      false,
      false,
    ],
    [
      'txn comparing outside',
      'cmd',
      cmd({
        op: 'txn',
        compare: [{ key: 'z' }],
        success: [{ op: 'put', key: 'app/b', value: 1 }],
        failure: [],
      }),
      false,
      false,
    ],
    ['counter add', 'cmd', cmd({ op: 'counter.add', name: 'app/c', delta: 1 }), true, false],
    [
      'lock acquire outside',
      'cmd',
      cmd({ op: 'lock.acquire', name: 'locks/x', ttlMs: 1000, waitMs: 0 }),
      false,
      false,
    ],
    ['lease grant (any write grant)', 'cmd', cmd({ op: 'lease.grant', ttlMs: 1000 }), true, false],
    [
      'lease revoke releasing a lock outside',
      'cmd',
      cmd({ op: 'lease.revoke', id: 1, lock: { name: 'x', token: 1 } }),
      false,
      false,
    ],
    ['internal tick', 'cmd', cmd({ op: 'tick' }), false, false],
    ['get', 'read', read({ op: 'get', key: 'app/1' }), true, true],
    ['get outside', 'read', read({ op: 'get', key: 'b' }), false, true],
    ['scan the prefix', 'read', read({ op: 'scan', prefix: 'app/' }), true, true],
    ['scan under it, paged', 'read', read({ op: 'scan', prefix: 'app/x', after: 'app/x1' }), true, true],
    ['scan a wider prefix', 'read', read({ op: 'scan', prefix: 'ap' }), false, true],
    ['scan everything', 'read', read({ op: 'scan' }), false, true],
    ['scan a range inside', 'read', read({ op: 'scan', start: 'app/a', end: 'app0' }), true, true],
    ['scan a range reaching out', 'read', read({ op: 'scan', start: 'app/a', end: 'b' }), false, true],
    ['query (every key)', 'read', read({ op: 'query', query: {} }), false, true],
    ['lease list', 'read', read({ op: 'lease.list' }), true, true],
    ['watch the prefix', 'watch', { store: 'default', group: 1, prefix: 'app/' }, true, true],
    ['watch everything', 'watch', { store: 'default', group: 1 }, false, true],
    ['keepalive', 'keepalive', { store: 'default', group: 1, lease: 1 }, true, false],
    ['map', 'map', { store: 'default' }, true, true],
    ['store.create', 'admin', { action: 'store.create', name: 'x' }, false, false],
    ['member.add', 'admin', { action: 'member.add', address: 'h:1' }, false, false],
    ['status', 'status', {}, true, true],
  ])('%s', (_name, op, args, aliceMay, ritaMay) => {
    expect(may(alice, op, args as Record<string, unknown>)).toBe(aliceMay);
    expect(may(rita, op, args as Record<string, unknown>)).toBe(ritaMay);
  });

  test('root may do everything; a denial names the user, the right and the key', () => {
    expect(may({ user: 'root', all: true, grants: [] }, 'admin', { action: 'member.remove', id: 1 })).toBe(
      true,
    );
    const { needs, what } = needsOf('cmd', cmd({ op: 'put', key: 'secret', value: 1 }));
    expect(() => authorize(alice, needs, what)).toThrow(
      /user alice may not put: it needs write on store "default" key "secret"/,
    );
  });

  test('only an admin of the store may write a revision-probe key (any reader may watch one)', () => {
    const whole: Principal = { user: 'w', all: false, grants: [parseGrant('default=read,write')] };
    const probeKey = '\u0000dkv-probe-3';
    expect(may(whole, 'cmd', cmd({ op: 'put', key: probeKey, value: 1 }))).toBe(false);
    expect(
      may(
        whole,
        'cmd',
        cmd({ op: 'txn', compare: [], success: [{ op: 'put', key: probeKey, value: 1 }], failure: [] }),
      ),
    ).toBe(false);
    expect(
      may(
        { ...whole, grants: [parseGrant('default=read,write,admin')] },
        'cmd',
        cmd({ op: 'put', key: probeKey, value: 1 }),
      ),
    ).toBe(true);
    expect(may(alice, 'watch', { store: 'default', group: 1, key: probeKey, snapshot: true })).toBe(true);
    expect(may(whole, 'cmd', cmd({ op: 'put', key: 'ordinary', value: 1 }))).toBe(true);
  });

  test('admin on one store covers that store only', () => {
    const ops: Principal = { user: 'ops', all: false, grants: [parseGrant('app=admin')] };
    expect(may(ops, 'admin', { action: 'store.create', name: 'app' })).toBe(true);
    expect(may(ops, 'admin', { action: 'store.delete', name: 'app' })).toBe(true);
    expect(may(ops, 'admin', { action: 'store.delete', name: 'default' })).toBe(false);
    expect(may(ops, 'admin', { action: 'rebalance' })).toBe(false);
    expect(may({ ...ops, grants: [parseGrant('*=admin')] }, 'admin', { action: 'rebalance' })).toBe(true);
  });
});

describe('password checks under a flood', () => {
  test('two scrypt checks run at once and 64 wait; beyond that OVERLOADED, never queued without bound', async () => {
    const a = Authenticator.of(baseFile());
    const results = await Promise.allSettled(
      Array.from({ length: 70 }, (_, i) => a.authenticate({ user: 'alice', password: `guess-${i}` }, 0)),
    );
    const codes = results.map((r) => (r.status === 'rejected' ? (r.reason as { code: string }).code : 'ok'));
    expect(codes.filter((c) => c === 'UNAUTHENTICATED')).toHaveLength(66);
    expect(codes.filter((c) => c === 'OVERLOADED')).toHaveLength(4);
    // Once they finished, the right password still gets in.
    expect((await a.authenticate({ user: 'alice', password: 'alicepw' }, 0)).user).toBe('alice');
  });
});
