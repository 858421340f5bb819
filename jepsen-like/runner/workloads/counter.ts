/**
 * `counter`: native counters (one per partition group, `c/<n>`) incremented by small deltas
 * and read, by every worker. Each add records its delta and the value after it (`result`);
 * each read the value.
 * The counter checker holds every read (and every add's result) between the sum of the adds
 * acknowledged before it began and the sum of the adds attempted before it ended: a lost
 * acknowledged add, or an add applied twice (a retry that the exactly-once table should have
 * answered), breaks it. After the faults heal, every counter is read once more.
 */
import type { DkvClient } from '../../../src/client/client.js';
import { checkCounter } from '../../checkers/counter.js';
import type { History } from '../../history.js';
import type { Completion, Proc } from '../recorder.js';
import { NO_EFFECT, sleep, type Workload, type WorkloadChecks, type WorkloadContext } from './workload.js';

/**
 * countersFor names one counter per partition group of the store (`c/<n>`, the first n that
 * lands in each group), so a fault on any group's leader hits a counter in use.
 */
async function countersFor(client: DkvClient): Promise<string[]> {
  const groups = new Set((await client.groups()).map((g) => g.id));
  const names = new Map<number, string>();
  for (let i = 0; names.size < groups.size && i < 10_000; i++) {
    const g = await client.groupOfKey(`c/${i}`);
    if (!names.has(g)) names.set(g, `c/${i}`);
  }
  return [...names.values()];
}

/** counterWorkload builds the workload. */
export function counterWorkload(concurrency = 8): Workload {
  let counters: Promise<string[]> | undefined;
  const read = (ctx: WorkloadContext, proc: Proc, client: DkvClient, name: string) =>
    ctx.recorder.op(proc, {
      f: 'read',
      key: name,
      failOn: 'always',
      run: async (): Promise<Completion> => ({ type: 'ok', value: Number(await client.counter(name).get()) }),
    });
  return {
    name: 'counter',
    concurrency,
    async worker(ctx: WorkloadContext) {
      const client = await ctx.client();
      counters ??= countersFor(client);
      const names = await counters;
      const proc = ctx.recorder.newProcess();
      while (!ctx.signal.aborted) {
        const name = names[ctx.rng.int(names.length)]!;
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
        } else await read(ctx, proc, client, name);
        await sleep(ctx.rng.int(10), ctx.signal);
      }
    },
    async final(ctx: WorkloadContext) {
      const client = await ctx.client();
      const proc = ctx.recorder.newProcess();
      for (const name of (await counters) ?? []) await read(ctx, proc, client, name);
    },
    check(history: History): WorkloadChecks {
      return { checkers: [checkCounter(history)] };
    },
  };
}
