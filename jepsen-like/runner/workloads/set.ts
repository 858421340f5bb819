/**
 * `set`: a grow-only set whose elements are keys (`s/<element>`, spread over every group).
 * Workers add unique elements (a put per element) and now and then read the whole set (a
 * linearizable scan of the prefix, group by group). After the faults heal, the set is read
 * once more. The set checker finds acknowledged adds that are lost (missing from the final
 * read) or were missing from a read that began after they were acknowledged, elements never
 * added, failed adds that appear, and duplicates.
 */

import type { DkvClient } from '../../../src/client/client.js';
import { checkSet } from '../../checkers/set.js';
import type { History } from '../../history.js';
import type { Completion, Proc } from '../recorder.js';
import { NO_EFFECT, sleep, type Workload, type WorkloadChecks, type WorkloadContext } from './workload.js';

const PREFIX = 's/';
const SET = 's';

async function readSet(client: DkvClient): Promise<number[]> {
  const out: number[] = [];
  for await (const item of client.scan({ prefix: PREFIX, consistency: 'linearizable' }))
    out.push(Number(item.key.slice(PREFIX.length)));
  return out.sort((a, b) => a - b);
}

/** setWorkload builds the workload. */
export function setWorkload(concurrency = 8): Workload {
  let next = 0;
  const read = (ctx: WorkloadContext, proc: Proc, client: DkvClient) =>
    ctx.recorder.op(proc, {
      f: 'read',
      key: SET,
      failOn: 'always',
      timeoutMs: ctx.timeoutMs * 2,
      run: async (): Promise<Completion> => ({ type: 'ok', value: await readSet(client) }),
    });
  return {
    name: 'set',
    concurrency,
    async worker(ctx: WorkloadContext) {
      const client = await ctx.client();
      const proc = ctx.recorder.newProcess();
      while (!ctx.signal.aborted) {
        if (ctx.rng.float() < 0.97) {
          const e = next++;
          await ctx.recorder.op(proc, {
            f: 'add',
            key: SET,
            value: e,
            failOn: NO_EFFECT,
            run: async (): Promise<Completion> => {
              await client.put(`${PREFIX}${e}`, e);
              return { type: 'ok', value: e };
            },
          });
        } else await read(ctx, proc, client);
        await sleep(ctx.rng.int(10), ctx.signal);
      }
    },
    async final(ctx: WorkloadContext) {
      const client = await ctx.client();
      const proc = ctx.recorder.newProcess();
      for (let attempt = 0; attempt < 5; attempt++) {
        const r = await read(ctx, proc, client);
        if (r.type === 'ok') return;
        await sleep(1000);
      }
    },
    check(history: History): WorkloadChecks {
      return { checkers: [checkSet(history)] };
    },
  };
}
