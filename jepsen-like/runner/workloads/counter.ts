/**
 * `counter`: native counters (`c/0`, `c/1`) incremented by small deltas and read, by every
 * worker. Each add records its delta and the value after it (`result`); each read the value.
 * The counter checker holds every read (and every add's result) between the sum of the adds
 * acknowledged before it began and the sum of the adds attempted before it ended: a lost
 * acknowledged add, or an add applied twice (a retry that the exactly-once table should have
 * answered), breaks it. After the faults heal, every counter is read once more.
 */
import { checkCounter } from '../../checkers/counter.js';
import type { History } from '../../history.js';
import type { Completion } from '../recorder.js';
import { NO_EFFECT, sleep, type Workload, type WorkloadChecks, type WorkloadContext } from './workload.js';

const COUNTERS = ['c/0', 'c/1'];

/** counterWorkload builds the workload. */
export function counterWorkload(concurrency = 8): Workload {
  const read = async (ctx: WorkloadContext, proc: { id: number }, name: string): Promise<void> => {
    const client = await ctx.client();
    try {
      await ctx.recorder.op(proc, {
        f: 'read',
        key: name,
        failOn: 'always',
        run: async (): Promise<Completion> => ({
          type: 'ok',
          value: Number(await client.counter(name).get()),
        }),
      });
    } finally {
      await client.close();
    }
  };
  return {
    name: 'counter',
    concurrency,
    async worker(ctx: WorkloadContext) {
      const client = await ctx.client();
      const proc = ctx.recorder.newProcess();
      while (!ctx.signal.aborted) {
        const name = COUNTERS[ctx.rng.int(COUNTERS.length)]!;
        if (ctx.rng.float() < 0.75) {
          const delta = 1 + ctx.rng.int(5);
          await ctx.recorder.op(proc, {
            f: 'add',
            key: name,
            value: delta,
            failOn: NO_EFFECT,
            run: async (): Promise<Completion> => {
              const after = Number(await client.counter(name).add(delta));
              return { type: 'ok', value: delta, extra: { result: after } };
            },
          });
        } else {
          await ctx.recorder.op(proc, {
            f: 'read',
            key: name,
            failOn: 'always',
            run: async (): Promise<Completion> => ({
              type: 'ok',
              value: Number(await client.counter(name).get()),
            }),
          });
        }
        await sleep(ctx.rng.int(10), ctx.signal);
      }
    },
    async final(ctx: WorkloadContext) {
      const proc = ctx.recorder.newProcess();
      for (const name of COUNTERS) await read(ctx, proc, name);
    },
    check(history: History): WorkloadChecks {
      return { checkers: [checkCounter(history)] };
    },
  };
}
