/**
 * `register`: independent registers (keys `r/<n>`) read, written and compare-and-set by every
 * worker, checked for linearizability per key (the register model).
 *
 * Keys are used a bounded number of times (OPS_PER_KEY) and then retired for a fresh one, a
 * few at a time (ACTIVE_KEYS), so that each key's history stays small enough for the search
 * while all workers contend on the same keys. Values are small integers, so that writes of
 * equal values and CASes that fail are frequent. A read records the version it saw (extra
 * field `version`); a CAS runs as a transaction comparing the value, and a failed compare is
 * a `fail` with `error: VERSION_MISMATCH` (an observation the model uses).
 */
import { ErrorCode } from '../../../src/errors.js';
import type { History } from '../../history.js';
import { checkOperations } from '../../linearizability.js';
import { MODELS } from '../../models/index.js';
import type { Completion } from '../recorder.js';
import {
  type CheckOptions,
  NO_EFFECT,
  sleep,
  type Workload,
  type WorkloadChecks,
  type WorkloadContext,
} from './workload.js';

const OPS_PER_KEY = 150;
const ACTIVE_KEYS = 4;
const VALUES = 5;

/** registerWorkload builds the workload. */
export function registerWorkload(concurrency = 8): Workload {
  let nextKey = ACTIVE_KEYS;
  const active: { key: string; used: number }[] = Array.from({ length: ACTIVE_KEYS }, (_, i) => ({
    key: `r/${i}`,
    used: 0,
  }));
  const takeKey = (pick: number): string => {
    const i = Math.floor(pick * active.length);
    const slot = active[i]!;
    const key = slot.key;
    slot.used++;
    if (slot.used >= OPS_PER_KEY) active[i] = { key: `r/${nextKey++}`, used: 0 };
    return key;
  };
  return {
    name: 'register',
    concurrency,
    async worker(ctx: WorkloadContext) {
      const client = await ctx.client();
      const proc = ctx.recorder.newProcess();
      while (!ctx.signal.aborted) {
        const key = takeKey(ctx.rng.float());
        const r = ctx.rng.float();
        if (r < 0.5) {
          await ctx.recorder.op(proc, {
            f: 'read',
            key,
            failOn: 'always',
            run: async (): Promise<Completion> => {
              const item = await client.get(key);
              return {
                type: 'ok',
                value: item === undefined ? null : item.value,
                extra: { version: item?.version ?? 0 },
              };
            },
          });
        } else if (r < 0.8) {
          const v = ctx.rng.int(VALUES);
          await ctx.recorder.op(proc, {
            f: 'write',
            key,
            value: v,
            failOn: NO_EFFECT,
            run: async (): Promise<Completion> => {
              const item = await client.put(key, v);
              return { type: 'ok', value: v, extra: { version: item.version } };
            },
          });
        } else {
          const from = ctx.rng.int(VALUES);
          const to = ctx.rng.int(VALUES);
          await ctx.recorder.op(proc, {
            f: 'cas',
            key,
            value: [from, to],
            failOn: NO_EFFECT,
            run: async (): Promise<Completion> => {
              const t = await client.txn({
                compare: [{ key, target: 'value', op: '=', value: from }],
                success: [{ op: 'put', key, value: to }],
              });
              return t.succeeded
                ? { type: 'ok', value: [from, to] }
                : { type: 'fail', value: [from, to], extra: { error: ErrorCode.VersionMismatch } };
            },
          });
        }
        await sleep(ctx.rng.int(10), ctx.signal);
      }
    },
    async final() {
      // Every op is checked as it happened; no final read is needed for linearizability.
    },
    check(history: History, opts: CheckOptions): WorkloadChecks {
      const bound = MODELS.get('register')!.bind({});
      const ops = bound.operations(history.ops);
      return {
        linearizability: {
          model: 'register',
          ...checkOperations(bound.model, ops, { timeBudgetMs: opts.timeBudgetMs }),
        },
        checkers: [],
      };
    },
  };
}
