/**
 * A lock holder process SIGKILLed (issue 6, "Proof"), on a real three-node cluster
 * (test/node/harness.ts): a child process (lock-holder.ts) acquires a lock through DkvClient
 * and keeps writing fenced puts; this test's client queues for the same lock; the child is
 * killed. Its lease is no longer renewed and expires; the lock passes to the waiter with a
 * larger token; and the dead holder's fenced writes, replayed with its old token, are refused
 * with STALE_FENCE while the new holder's go through. The nodes' replicated clock is this
 * host's Date.now(), so the lease's server deadline and the grant time compare directly.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { leaseWireId } from '../../src/client/leases.js';
import { ErrorCode, isDkvError } from '../../src/errors.js';
import { destroyAllClusters, sleep, TestCluster } from '../node/harness.js';

const HOLDER = join(import.meta.dirname, 'lock-holder.ts');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

let child: ChildProcess | undefined;

afterEach(async () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  child = undefined;
  await destroyAllClusters();
});

/** Lines reads a child's stdout as JSON lines, and waits for one that matches. */
class Lines {
  readonly all: Record<string, unknown>[] = [];
  private waiters: (() => void)[] = [];
  constructor(proc: ChildProcess) {
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      try {
        this.all.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        this.all.push({ text: line });
      }
      for (const w of this.waiters.splice(0)) w();
    });
  }
  async waitFor(
    pred: (o: Record<string, unknown>) => boolean,
    timeoutMs: number,
  ): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.all.find(pred);
      if (hit) return hit;
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`no matching line within ${timeoutMs} ms; got ${JSON.stringify(this.all.slice(-5))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

describe('a lock holder process killed with SIGKILL', () => {
  it('loses the lock when its lease expires; the waiter gets a larger token; its fenced writes go stale', async () => {
    const cluster = await TestCluster.start({ nodes: 3 });
    const lockName = '{job}lock';
    const key = '{job}out';
    const ttlMs = 2000;
    child = spawn(
      process.execPath,
      ['--import', TSX, HOLDER, cluster.servers.join(','), lockName, key, String(ttlMs)],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    const out = new Lines(child);
    const got = await out.waitFor((o) => typeof o.token === 'number', 30_000);
    const oldToken = got.token as number;
    const holderLease = got.lease as number;
    await out.waitFor((o) => o.wrote === 5, 10_000); // its fenced writes go through while it holds

    const c = await cluster.client({ requestTimeoutMs: 5000 });
    const waiting = c.lock.acquire(lockName, { ttlMs: 5000, waitMs: 30_000 });
    for (let i = 0; (await c.lock.describe(lockName)).waiters.length === 0; i++) {
      if (i > 200) throw new Error('the waiter never queued');
      await sleep(25);
    }
    const info = await c.lock.describe(lockName);
    expect(info.holder).toMatchObject({ token: oldToken, lease: holderLease });

    const exited = new Promise((resolve) => child!.once('exit', resolve));
    const killedAt = Date.now();
    child.kill('SIGKILL');
    await exited;
    const lastWrite = Math.max(...out.all.map((o) => (typeof o.wrote === 'number' ? o.wrote : -1)));

    // The lease's last deadline, once the node has dropped the dead holder's keep-alive stream.
    await sleep(300);
    const wire = leaseWireId(holderLease);
    const leases = (await c.read({ group: wire.group }, { op: 'lease.list' }, 'linearizable')) as {
      id: number;
      deadline: number;
    }[];
    const deadline = leases.find((l) => l.id === wire.lease)?.deadline;
    expect(deadline).toBeDefined();

    const lock = await waiting;
    const grantedAt = Date.now();
    expect(lock.token).toBeGreaterThan(oldToken);
    expect(grantedAt).toBeGreaterThanOrEqual(deadline!);
    const expiryToGrant = grantedAt - deadline!;
    console.log(
      `lock-kill: SIGKILL -> grant ${grantedAt - killedAt} ms (ttl ${ttlMs} ms); lease expiry -> grant seen by the waiter ${expiryToGrant} ms; tokens ${oldToken} -> ${lock.token}`,
    );
    expect(expiryToGrant).toBeLessThan(1000);

    // The dead holder's writes, replayed with its token, are refused; the new holder's are not.
    for (let n = lastWrite + 1; n < lastWrite + 4; n++) {
      try {
        await c.put(
          key,
          { holder: 'dead', token: oldToken, n },
          { fence: { lock: lockName, token: oldToken } },
        );
        expect.unreachable('a stale fenced write was accepted');
      } catch (err) {
        expect(isDkvError(err) && err.code).toBe(ErrorCode.StaleFence);
      }
    }
    const before = await c.get(key);
    expect((before?.value as { token?: number } | undefined)?.token).toBe(oldToken); // the last write was the holder's
    await c.put(key, { holder: 'new', token: lock.token }, { fence: lock.fence });
    expect(((await c.get(key))?.value as { token?: number } | undefined)?.token).toBe(lock.token);
    await lock.release();
  });
});
