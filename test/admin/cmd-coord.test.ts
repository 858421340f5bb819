/**
 * The CLI's lease and lock commands (`dkv lease grant|revoke|keepalive`, `dkv lock
 * acquire|release`) run in process through main() against an in-process cluster: their
 * output (plain and --json), exit codes, and the commands that hold something until SIGINT
 * (emitted on this process; nothing else listens for it in a test worker).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { EXIT, main } from '../../src/admin/program.js';
import type { DkvClient } from '../../src/client/client.js';
import { ErrorCode, isDkvError } from '../../src/errors.js';
import { InProcCluster } from '../client/fixture.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('dkv lease and lock', () => {
  let cluster: InProcCluster;
  let client: DkvClient;
  let out = '';
  let err = '';

  beforeAll(async () => {
    cluster = await InProcCluster.start({ partitions: 2 });
    client = await cluster.client();
  });
  afterAll(async () => {
    await cluster.close();
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  function capture(): void {
    out = '';
    err = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      out += String(chunk);
      return true;
    });
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      err += String(chunk);
      return true;
    });
  }

  const dkv = (...args: string[]): Promise<number> =>
    main(['node', 'dkv', '--servers', cluster.servers.join(','), ...args]);

  const lines = (): string[] => out.split('\n').filter((l) => l.length > 0);

  async function until(
    what: string,
    cond: () => boolean | Promise<boolean>,
    timeoutMs = 10_000,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await cond())) {
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what}; stdout=${out} stderr=${err}`);
      await sleep(20);
    }
  }

  async function alive(id: number): Promise<boolean> {
    try {
      await client.lease.timeToLive(id);
      return true;
    } catch (e) {
      if (isDkvError(e, ErrorCode.LeaseNotFound)) return false;
      throw e;
    }
  }

  it('lease grant prints the id (--json: id, ttlMs, group); --key picks the group', async () => {
    capture();
    expect(await dkv('lease', 'grant', '5000')).toBe(EXIT.ok);
    const id = Number(out.trim());
    expect(Number.isSafeInteger(id) && id > 0).toBe(true);
    expect(await alive(id)).toBe(true);

    capture();
    expect(await dkv('--json', 'lease', 'grant', '5000', '--key', 'some-key')).toBe(EXIT.ok);
    const j = JSON.parse(out) as { id: number; ttlMs: number; group: number };
    expect(j.ttlMs).toBe(5000);
    expect(j.group).toBe(await client.groupOfKey('some-key'));
    expect(j.id % 4096).toBe(j.group);
    capture();
    expect(await dkv('put', 'some-key', 'v', '--lease', String(j.id))).toBe(EXIT.ok);
    expect((await client.lease.timeToLive(j.id)).keys).toEqual(['some-key']);
  });

  it('lease revoke ends a lease; a missing lease is NOT_FOUND (exit 1)', async () => {
    const lease = await client.lease.grant(5000, { keepAlive: false });
    capture();
    expect(await dkv('lease', 'revoke', String(lease.id))).toBe(EXIT.ok);
    expect(out.trim()).toBe('OK');
    expect(await alive(lease.id)).toBe(false);
    capture();
    expect(await dkv('lease', 'revoke', String(lease.id))).toBe(EXIT.notFound);
    expect(err).toMatch(/^error NOT_FOUND: .*LEASE_NOT_FOUND/);
    capture();
    expect(await dkv('lease', 'revoke', 'abc')).toBe(EXIT.error);
    expect(err).toMatch(/^error INVALID_ARGUMENT: /);
  });

  it('lease keepalive keeps the lease alive until SIGINT, printing renewals', async () => {
    capture();
    expect(await dkv('lease', 'grant', '1000')).toBe(EXIT.ok);
    const id = Number(out.trim());
    capture();
    const run = dkv('--json', 'lease', 'keepalive', String(id));
    await until('renewals', () => lines().length >= 4);
    await sleep(1200); // longer than the TTL
    expect(await alive(id)).toBe(true);
    process.emit('SIGINT');
    expect(await run).toBe(EXIT.ok);
    const first = JSON.parse(lines()[0]!) as { id: number; ttlMs: number; validUntil: number };
    expect(first).toMatchObject({ id, ttlMs: 1000 });
    expect(first.validUntil).toBeGreaterThan(Date.now() - 3000);
    await until('the lease expires', async () => !(await alive(id)), 5000);

    capture();
    expect(await dkv('lease', 'keepalive', String(id))).toBe(EXIT.notFound);
    expect(err).toMatch(/^error NOT_FOUND: /);
  });

  it('lease keepalive fails with NOT_FOUND when the lease is revoked under it', async () => {
    const lease = await client.lease.grant(1000, { keepAlive: false });
    capture();
    const run = dkv('lease', 'keepalive', String(lease.id));
    await until('a renewal', () => /renewed/.test(out));
    await client.lease.revoke(lease.id);
    expect(await run).toBe(EXIT.notFound);
    expect(err).toMatch(/^error NOT_FOUND: .*LEASE_NOT_FOUND/);
  });

  it('lock acquire prints the token and holds the lock until SIGINT; others time out meanwhile', async () => {
    capture();
    const holder = dkv('--json', 'lock', 'acquire', 'cli-lock', '--ttl', '2000');
    await until('the token', () => lines().length >= 1);
    const held = JSON.parse(lines()[0]!) as { name: string; token: number; lease: number };
    expect(held.name).toBe('cli-lock');
    expect(held.token).toBeGreaterThan(0);
    expect((await client.lock.describe('cli-lock')).holder).toMatchObject({
      token: held.token,
      lease: held.lease,
    });

    expect(await dkv('lock', 'acquire', 'cli-lock', '--wait', '0')).toBe(EXIT.error);
    expect(err).toMatch(/error TIMEOUT: lock "cli-lock" is held/);
    await sleep(2500); // longer than the TTL: kept alive
    expect((await client.lock.describe('cli-lock')).holder?.token).toBe(held.token);

    process.emit('SIGINT');
    expect(await holder).toBe(EXIT.ok);
    expect((await client.lock.describe('cli-lock')).holder).toBeUndefined();
    expect(await alive(held.lease)).toBe(false);
  });

  it('lock acquire --wait gets a lock once released; lock release checks the token', async () => {
    const lock = await client.lock.acquire('cli-wait', { ttlMs: 5000 });
    capture();
    const waiter = dkv('lock', 'acquire', 'cli-wait', '--wait', '10000');
    await until('queued', async () => (await client.lock.describe('cli-wait')).waiters.length === 1);

    capture();
    expect(await dkv('lock', 'release', 'cli-wait', '--token', String(lock.token + 1000))).toBe(EXIT.error);
    expect(err).toMatch(/^error NOT_OWNER: /);
    capture();
    expect(await dkv('lock', 'release', 'cli-wait', '--token', String(lock.token))).toBe(EXIT.ok);
    expect(lines()).toContain('OK'); // the waiter may print its token first
    await until('the token', () => lines().some((l) => /^\d+$/.test(l)));
    const token = Number(lines().find((l) => /^\d+$/.test(l)));
    expect(token).toBeGreaterThan(lock.token);
    process.emit('SIGINT');
    expect(await waiter).toBe(EXIT.ok);
    await lock.release().catch(() => undefined); // its lease; the lock moved on
  });

  it('an interrupted wait gives up with CANCELLED and leaves no waiter', async () => {
    const lock = await client.lock.acquire('cli-int', { ttlMs: 5000 });
    capture();
    const waiter = dkv('lock', 'acquire', 'cli-int');
    await until('queued', async () => (await client.lock.describe('cli-int')).waiters.length === 1);
    process.emit('SIGINT');
    expect(await waiter).toBe(EXIT.error);
    expect(err).toMatch(/^error CANCELLED: /);
    await until('no waiter', async () => (await client.lock.describe('cli-int')).waiters.length === 0);
    await lock.release();
  });

  it('refuses bad options', async () => {
    capture();
    expect(await dkv('lock', 'acquire', 'x', '--ttl', '10')).toBe(EXIT.error);
    expect(err).toMatch(/^error INVALID_ARGUMENT: --ttl/);
    capture();
    expect(await dkv('lock', 'release', 'x')).toBe(EXIT.error);
    capture();
    expect(await dkv('lease', 'grant', '10')).toBe(EXIT.error);
    expect(err).toMatch(/^error INVALID_ARGUMENT: /);
  });
});
