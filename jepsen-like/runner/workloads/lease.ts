/**
 * `lease`: keys bound to leases, watched until they vanish.
 *
 * A worker's round: grant a lease of LEASE_TTL_MS (no keep-alive stream: every renewal is an
 * explicit, recorded `keepalive`), put a key bound to it (`lput`), then read the key
 * (`lread`, linearizable) every READ_EVERY_MS for a while. Some rounds renew the lease a few
 * times and then let it lapse; some revoke it; some just let it expire. The worker keeps
 * reading until the key has been gone for a moment past its latest possible deadline, then
 * starts over with a new lease.
 *
 * The lease checker holds the key to its lease: it may not vanish before the earliest
 * deadline the recorded grant and renewals allow (scaled by the clock-rate skew the run
 * applied), must be gone once a revoke is acknowledged, and must be gone (give or take the
 * expiry tick) after the latest possible deadline.
 */
import type { DkvClient } from '../../../src/client/client.js';
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

const LEASE_TTL_MS = 2000;
const READ_EVERY_MS = 150;

/** leaseWorkload builds the workload. */
export function leaseWorkload(concurrency = 6): Workload {
  let leaseSeq = 0;
  const readKey = (ctx: WorkloadContext, proc: Proc, client: DkvClient, key: string) =>
    ctx.recorder.op(proc, {
      f: 'lread',
      key,
      failOn: 'always',
      run: async (): Promise<Completion> => {
        const item = await client.get(key);
        return { type: 'ok', value: item === undefined ? null : item.value };
      },
    });
  return {
    name: 'lease',
    concurrency,
    async worker(ctx: WorkloadContext) {
      const client = await ctx.client();
      const proc = ctx.recorder.newProcess();
      while (!ctx.signal.aborted) {
        const name = `L${leaseSeq++}`;
        let id = 0;
        const g = await ctx.recorder.op(proc, {
          f: 'grant',
          key: name,
          value: { ttlMs: LEASE_TTL_MS },
          failOn: NO_EFFECT,
          run: async (): Promise<Completion> => {
            const lease = await client.lease.grant(LEASE_TTL_MS, { key: `{${name}}`, keepAlive: false });
            id = lease.id;
            lease.close();
            return { type: 'ok', value: lease.id };
          },
        });
        if (g.type !== 'ok') {
          await sleep(100, ctx.signal);
          continue;
        }
        const key = `{${name}}/k`;
        const p = await ctx.recorder.op(proc, {
          f: 'lput',
          key,
          value: name,
          extra: { lease: name },
          failOn: NO_EFFECT,
          run: async (): Promise<Completion> => {
            await client.put(key, name, { lease: id });
            return { type: 'ok', value: name };
          },
        });
        if (p.type !== 'ok') continue;
        const plan = ctx.rng.float();
        const renewals = plan < 0.4 ? 1 + ctx.rng.int(3) : 0;
        const revokeAfter = plan >= 0.4 && plan < 0.65 ? ctx.rng.int(LEASE_TTL_MS / 2) : -1;
        let lastRenewal = performance.now();
        const t0 = performance.now();
        let renewed = 0;
        let goneSince = -1;
        let revoked = false;
        // Read until the key has been gone for a while (or the worker has to stop).
        while (!ctx.stopped.aborted) {
          const now = performance.now();
          if (!revoked && revokeAfter >= 0 && now - t0 >= revokeAfter) {
            revoked = true;
            await ctx.recorder.op(proc, {
              f: 'revoke',
              key: name,
              failOn: NO_EFFECT,
              run: async (): Promise<Completion> => {
                await client.lease.revoke(id);
                return { type: 'ok' };
              },
            });
          } else if (renewed < renewals && now - lastRenewal >= LEASE_TTL_MS / 2) {
            renewed++;
            lastRenewal = now;
            await ctx.recorder.op(proc, {
              f: 'keepalive',
              key: name,
              failOn: NO_EFFECT,
              run: async (): Promise<Completion> => {
                const r = await client.lease.keepAlive(id);
                return { type: 'ok', value: r.ttlMs };
              },
            });
          } else {
            const r = await readKey(ctx, proc, client, key);
            if (r.type === 'ok' && r.value === null) {
              if (goneSince < 0) goneSince = performance.now();
              if (performance.now() - goneSince > 300) break;
            }
          }
          // Give up on a key that never goes (the checker will say why) after a generous time.
          if (performance.now() - t0 > LEASE_TTL_MS * (renewals + 1) + 15_000) break;
          await sleep(READ_EVERY_MS / 2 + ctx.rng.int(READ_EVERY_MS), ctx.stopped);
        }
      }
    },
    async final() {
      // Each round reads its key until it is gone: nothing is left to read.
    },
    check(history: History, opts: CheckOptions): WorkloadChecks {
      return { checkers: [checkLease(history, { rateMax: opts.clockRateMax, outages: opts.outages })] };
    },
  };
}
