/**
 * `lock`: fenced locks (`{lk0}`, `{lk1}`) contended by every worker, with a fenced resource
 * that records the tokens it accepts.
 *
 * A worker's round: grant a lease (kept alive by its stream), acquire a lock through it
 * (waiting up to ACQUIRE_WAIT_MS), and if granted, access the resource twice with the token
 * (a fenced put of `{lkN}/res/<n>`: the store itself refuses a stale token with STALE_FENCE),
 * sometimes read who holds the lock, release, revoke the lease. Faults make leases expire
 * under their holders; fencing is what keeps the resource safe then.
 *
 * Two probes check that a lock is never granted through a dead lease: in some rounds the
 * worker revokes its lease while its acquire waits in the queue (from a second process,
 * since a process has one operation at a time), and in others it revokes the lease first and
 * then tries to acquire through it.
 *
 * Checked by: the fencing checker (accepted tokens only increase, in the resource's order,
 * read at the end by scanning `{lkN}/res/` in revision order) and the lease checker (no
 * acquire succeeds through a revoked lease, and no holder read names one). Grants carry
 * `keepalive: "stream"`: their renewals are not recorded, so the lease checker applies only
 * its revoke rules to them. The mutex model is not used: a lease that expires under a paused
 * or cut-off holder lets the next waiter in, which is the design (the fence catches it).
 */

import type { DkvClient } from '../../../src/client/client.js';
import { leaseWireId } from '../../../src/client/leases.js';
import { ErrorCode } from '../../../src/errors.js';
import { checkFencing } from '../../checkers/fencing.js';
import { checkLease } from '../../checkers/lease.js';
import type { History } from '../../history.js';
import type { Completion, Proc } from '../recorder.js';
import {
  type CheckOptions,
  NO_EFFECT,
  sleep,
  type Workload,
  type WorkloadChecks,
  type WorkloadContext,
} from './workload.js';

const LOCKS = ['{lk0}', '{lk1}'];
const LEASE_TTL_MS = 3000;
const ACQUIRE_WAIT_MS = 1500;
const ACQUIRE_FAIL: ReadonlySet<string> = new Set([...NO_EFFECT, ErrorCode.Cancelled, 'NOT_ACQUIRED']);

/** lockWorkload builds the workload. */
export function lockWorkload(concurrency = 6): Workload {
  const leaseNames = new Map<number, string>();
  let accessSeq = 0;
  let leaseSeq = 0;

  const grant = async (ctx: WorkloadContext, proc: Proc, client: DkvClient, lock: string) => {
    const name = `L${leaseSeq++}`;
    let handle: Awaited<ReturnType<DkvClient['lease']['grant']>> | undefined;
    const r = await ctx.recorder.op(proc, {
      f: 'grant',
      key: name,
      value: { ttlMs: LEASE_TTL_MS },
      extra: { keepalive: 'stream' },
      failOn: NO_EFFECT,
      run: async (): Promise<Completion> => {
        handle = await client.lease.grant(LEASE_TTL_MS, { key: lock });
        leaseNames.set(handle.id, name);
        return { type: 'ok', value: handle.id };
      },
    });
    return r.type === 'ok' && handle !== undefined ? { name, lease: handle } : undefined;
  };

  const revoke = (ctx: WorkloadContext, proc: Proc, client: DkvClient, name: string, id: number) =>
    ctx.recorder.op(proc, {
      f: 'revoke',
      key: name,
      failOn: NO_EFFECT,
      run: async (): Promise<Completion> => {
        await client.lease.revoke(id);
        return { type: 'ok' };
      },
    });

  const acquire = (
    ctx: WorkloadContext,
    proc: Proc,
    client: DkvClient,
    lock: string,
    leaseName: string,
    leaseId: number,
    waitMs: number,
  ) =>
    ctx.recorder.op(proc, {
      f: 'acquire',
      key: lock,
      extra: { lease: leaseName },
      failOn: ACQUIRE_FAIL,
      timeoutMs: waitMs + ctx.timeoutMs,
      run: async (): Promise<Completion> => {
        const r = (await client.mutate(
          { key: lock },
          { op: 'lock.acquire', name: lock, lease: leaseWireId(leaseId).lease, waitMs },
          { ownSession: true, timeoutMs: waitMs + ctx.timeoutMs },
        )) as { acquired?: boolean; token?: number };
        if (r?.acquired === true && typeof r.token === 'number') return { type: 'ok', value: r.token };
        return { type: 'fail', extra: { error: 'NOT_ACQUIRED' } };
      },
    });

  const holder = (ctx: WorkloadContext, proc: Proc, client: DkvClient, lock: string) =>
    ctx.recorder.op(proc, {
      f: 'holder',
      key: lock,
      failOn: 'always',
      run: async (): Promise<Completion> => {
        const info = await client.lock.describe(lock);
        const h = info.holder;
        return {
          type: 'ok',
          value:
            h === undefined
              ? { lease: null, token: null }
              : { lease: leaseNames.get(h.lease) ?? `unknown-${h.lease}`, token: h.token },
        };
      },
    });

  return {
    name: 'lock',
    concurrency,
    async worker(ctx: WorkloadContext) {
      const client = await ctx.client();
      const proc = ctx.recorder.newProcess();
      const side = ctx.recorder.newProcess();
      while (!ctx.signal.aborted) {
        const lock = LOCKS[ctx.rng.int(LOCKS.length)]!;
        const g = await grant(ctx, proc, client, lock);
        if (g === undefined) {
          await sleep(100, ctx.signal);
          continue;
        }
        const roll = ctx.rng.float();
        try {
          if (roll < 0.1) {
            // Probe: a revoked lease must not get the lock.
            const rv = await revoke(ctx, proc, client, g.name, g.lease.id);
            if (rv.type === 'ok') {
              const a = await acquire(ctx, proc, client, lock, g.name, g.lease.id, 0);
              if (a.type === 'ok') await client.lock.release(lock, a.value as number).catch(() => undefined);
            }
            continue;
          }
          if (roll < 0.25) {
            // Probe: revoke the lease while its acquire waits.
            const pending = acquire(ctx, proc, client, lock, g.name, g.lease.id, ACQUIRE_WAIT_MS * 2);
            await sleep(50 + ctx.rng.int(400));
            await revoke(ctx, side, client, g.name, g.lease.id);
            const a = await pending;
            if (a.type === 'ok') await client.lock.release(lock, a.value as number).catch(() => undefined);
            continue;
          }
          const a = await acquire(ctx, proc, client, lock, g.name, g.lease.id, ACQUIRE_WAIT_MS);
          if (a.type === 'ok') {
            const token = a.value as number;
            for (let i = 0; i < 2; i++) {
              const n = accessSeq++;
              await ctx.recorder.op(proc, {
                f: 'access',
                key: lock,
                value: token,
                failOn: NO_EFFECT,
                run: async (): Promise<Completion> => {
                  await client.put(`${lock}/res/${n}`, token, { fence: { lock, token } });
                  return { type: 'ok', value: token };
                },
              });
              await sleep(ctx.rng.int(50), ctx.signal);
            }
            if (ctx.rng.float() < 0.3) await holder(ctx, proc, client, lock);
            await ctx.recorder.op(proc, {
              f: 'release',
              key: lock,
              value: token,
              failOn: NO_EFFECT,
              run: async (): Promise<Completion> => {
                await client.lock.release(lock, token);
                return { type: 'ok', value: token };
              },
            });
          } else if (ctx.rng.float() < 0.3) await holder(ctx, proc, client, lock);
          await revoke(ctx, proc, client, g.name, g.lease.id);
        } finally {
          g.lease.close();
        }
      }
    },
    async final(ctx: WorkloadContext) {
      const client = await ctx.client();
      const proc = ctx.recorder.newProcess();
      for (const lock of LOCKS) {
        for (let attempt = 0; attempt < 5; attempt++) {
          const r = await ctx.recorder.op(proc, {
            f: 'read-accepted',
            key: lock,
            failOn: 'always',
            timeoutMs: ctx.timeoutMs * 2,
            run: async (): Promise<Completion> => {
              const items: { rev: number; token: number }[] = [];
              for await (const it of client.scan({ prefix: `${lock}/res/`, consistency: 'linearizable' }))
                items.push({ rev: it.modRevision, token: Number(it.value) });
              items.sort((a, b) => a.rev - b.rev);
              return { type: 'ok', value: items.map((x) => x.token) };
            },
          });
          if (r.type === 'ok') break;
          await sleep(1000);
        }
      }
    },
    check(history: History, opts: CheckOptions): WorkloadChecks {
      return {
        checkers: [
          checkFencing(history),
          checkLease(history, { rateMax: opts.clockRateMax, outages: opts.outages }),
        ],
      };
    },
  };
}
