/**
 * `dkv dev --tls --auth` end to end: a real three-process cluster with a development CA and an
 * auth file, driven through the CLI exactly as a user would (`dkv put --tls-ca ... --user
 * root --password ...`, `dkv auth role add`, `dkv auth token add`), checking the refusals a
 * user sees: plaintext to a TLS port, no credentials, a wrong password, a denied key.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { freeBasePort, runDev } from '../../src/admin/dev.js';
import { EXIT, main } from '../../src/admin/program.js';

const dir = mkdtempSync(join(tmpdir(), 'dkv-secure-dev-'));
const lines: string[] = [];
let stop: (why: string) => void = () => {};
let running: Promise<void> | undefined;
let servers = '';
let ca = '';
let rootPassword = '';
let authFile = '';
let clientCert = '';
let clientKey = '';

beforeAll(async () => {
  const basePort = await freeBasePort(3, dir);
  const stopSignal = new Promise<string>((r) => {
    stop = r;
  });
  running = runDev({
    nodes: 3,
    dir,
    basePort,
    tls: true,
    auth: true,
    stopSignal,
    readyTimeoutMs: 60_000,
    out: (l) => lines.push(l),
    err: (l) => lines.push(l),
  });
  const deadline = Date.now() + 90_000;
  while (!lines.some((l) => l.startsWith('DKV ready'))) {
    if (Date.now() > deadline) throw new Error(`not ready:\n${lines.join('\n')}`);
    await Promise.race([running, new Promise((r) => setTimeout(r, 200))]);
  }
  const json = JSON.parse(readFileSync(join(dir, 'cluster.json'), 'utf8')) as {
    servers: string[];
    tls: { ca: string; cert: string; key: string };
    auth: { file: string; user: string; passwordFile: string };
  };
  servers = json.servers.join(',');
  ca = json.tls.ca;
  clientCert = json.tls.cert;
  clientKey = json.tls.key;
  authFile = json.auth.file;
  rootPassword = readFileSync(json.auth.passwordFile, 'utf8').trim();
}, 120_000);

afterAll(async () => {
  stop('test over');
  await running?.catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

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
    const code = await main(['node', 'dkv', '--servers', servers, '--timeout', '4000', ...args]);
    return { code, out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

describe('dkv dev --tls --auth', () => {
  test('dev prints how to connect, and root works with the CA and its password', async () => {
    expect(lines.some((l) => l.includes('TLS on: connect with --tls-ca'))).toBe(true);
    expect(lines.some((l) => l.includes('auth on: user root'))).toBe(true);
    const put = await dkv(
      '--tls-ca',
      ca,
      '--user',
      'root',
      '--password',
      rootPassword,
      'put',
      'greeting',
      'hi',
    );
    expect(put.code).toBe(EXIT.ok);
    const get = await dkv(
      '--tls-ca',
      ca,
      '--tls-cert',
      clientCert,
      '--tls-key',
      clientKey,
      'get',
      'greeting',
    );
    expect(get).toMatchObject({ code: EXIT.ok, out: 'hi\n' });
  });

  test('plaintext, no credentials and a wrong password are refused with clear errors', async () => {
    const plain = await dkv('get', 'greeting');
    expect(plain.code).toBe(EXIT.error);
    expect(plain.err).toMatch(/error UNAVAILABLE: .*the server speaks TLS/);
    const anon = await dkv('--tls-ca', ca, 'get', 'greeting');
    expect(anon.err).toMatch(/^error UNAUTHENTICATED/);
    const wrong = await dkv('--tls-ca', ca, '--user', 'root', '--password', 'not-it', 'get', 'greeting');
    expect(wrong.err).toMatch(/^error UNAUTHENTICATED: authentication failed/);
  });

  test('dkv auth: a role, a user and a token take effect on the running cluster', async () => {
    expect(
      (await dkv('auth', 'role', 'add', 'app', '--file', authFile, '--grant', 'default/app/=read,write'))
        .code,
    ).toBe(EXIT.ok);
    expect(
      (
        await dkv(
          'auth',
          'user',
          'add',
          'alice',
          '--file',
          authFile,
          '--new-password',
          'alice-pw',
          '--role',
          'app',
        )
      ).code,
    ).toBe(EXIT.ok);
    const tok = await dkv('--json', 'auth', 'token', 'add', 'ci', '--file', authFile, '--as', 'alice');
    const token = (JSON.parse(tok.out) as { token: string }).token;
    expect(token).toMatch(/^dkv_[0-9a-f]{64}$/);
    // The nodes re-read the file within a second or so.
    const as = ['--tls-ca', ca, '--user', 'alice', '--password', 'alice-pw'];
    let ok = await dkv(...as, 'put', 'app/1', 'x');
    for (let i = 0; i < 20 && ok.code !== EXIT.ok; i++) {
      await new Promise((r) => setTimeout(r, 250));
      ok = await dkv(...as, 'put', 'app/1', 'x');
    }
    expect(ok.code).toBe(EXIT.ok);
    const denied = await dkv(...as, 'put', 'greeting', 'overwritten');
    expect(denied.err).toMatch(/^error PERMISSION_DENIED: user alice may not put/);
    expect((await dkv('--tls-ca', ca, '--auth-token', token, 'get', 'app/1')).out).toBe('x\n');
    expect((await dkv('--tls-ca', ca, '--auth-token', token, 'get', 'greeting')).err).toMatch(
      /PERMISSION_DENIED/,
    );
    // The denied write changed nothing.
    expect(
      (await dkv('--tls-ca', ca, '--tls-cert', clientCert, '--tls-key', clientKey, 'get', 'greeting')).out,
    ).toBe('hi\n');
  });
});
