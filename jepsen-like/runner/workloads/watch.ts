/**
 * `watch`: writers put to keys under `w/` (every group of the store) and record the revision
 * and group each put got; watchers watch the prefix in sessions of a few seconds, each
 * session after the first resuming from the revisions where the previous one stopped
 * (`fromRevision`), and record the events every session delivered. The client's own
 * reconnects (after a killed or cut-off node) resume the same way inside a session.
 *
 * After the faults heal, one more put lands in every group, and each watcher keeps watching
 * until it has seen all of them (or FINAL_WAIT_MS passes), so that every watcher's log can be
 * held to the whole canonical sequence. The watch checker finds events lost (a gap, or a
 * resume that skipped), repeated, out of order, or different from the acknowledged writes.
 */
import type { DkvClient } from '../../../src/client/client.js';
import type { WatchEvent } from '../../../src/client/watch.js';
import { checkWatch } from '../../checkers/watch.js';
import type { History } from '../../history.js';
import type { Completion, Proc } from '../recorder.js';
import { NO_EFFECT, sleep, type Workload, type WorkloadChecks, type WorkloadContext } from './workload.js';

const PREFIX = 'w/';
const KEYS = 24;
const FINAL_WAIT_MS = 20_000;

/** watchWorkload builds the workload: `writers` writers and `watchers` watchers. */
export function watchWorkload(writers = 4, watchers = 3): Workload & { readonly watchers: number } {
  let finalTargets: Map<number, number> | undefined;
  let finalDeadline = 0;
  let valueSeq = 0;

  const put = async (ctx: WorkloadContext, proc: Proc, client: DkvClient, key: string) => {
    const v = valueSeq++;
    let revision = 0;
    const r = await ctx.recorder.op(proc, {
      f: 'put',
      key,
      value: v,
      failOn: NO_EFFECT,
      run: async (): Promise<Completion> => {
        const item = await client.put(key, v);
        const group = await client.groupOfKey(key);
        revision = item.modRevision;
        return { type: 'ok', value: v, extra: { revision, group } };
      },
    });
    return { type: r.type, revision };
  };

  const reached = (seen: Map<number, number>): boolean => {
    if (finalTargets === undefined) return false;
    for (const [g, rev] of finalTargets) if ((seen.get(g) ?? 0) < rev) return false;
    return true;
  };

  const watcher = async (ctx: WorkloadContext, n: number): Promise<void> => {
    const client = await ctx.client();
    const proc = ctx.recorder.newProcess();
    const seen = new Map<number, number>();
    let from: Record<number, number> | undefined;
    while (!ctx.stopped.aborted) {
      const events: Record<string, unknown>[] = [];
      let error: string | undefined;
      const sessionMs = 2000 + ctx.rng.int(4000);
      const start = from;
      await ctx.recorder.op(proc, {
        f: 'watch',
        key: PREFIX,
        value: start === undefined ? null : { fromRevision: start },
        extra: { watcher: `w${n}` },
        timeoutMs: FINAL_WAIT_MS * 10,
        failOn: 'always',
        run: async (): Promise<Completion> => {
          const stream = client.watch({
            prefix: PREFIX,
            ...(start !== undefined && { fromRevision: start }),
            bufferMax: 100_000,
          });
          const t0 = Date.now();
          const timer = setInterval(() => {
            const finalDone = finalTargets !== undefined && (reached(seen) || Date.now() > finalDeadline);
            if (
              ctx.stopped.aborted ||
              finalDone ||
              (finalTargets === undefined && Date.now() - t0 > sessionMs)
            )
              stream.close();
          }, 100);
          try {
            for await (const ev of stream as AsyncIterable<WatchEvent>) {
              events.push({
                revision: ev.revision,
                group: ev.group,
                key: ev.key,
                type: ev.type,
                ...(ev.value !== undefined && { value: ev.value }),
                cause: ev.cause,
                ...(ev.compacted && { compacted: true }),
              });
              if (ev.cause !== 'snapshot') seen.set(ev.group, Math.max(seen.get(ev.group) ?? 0, ev.revision));
            }
          } catch (err) {
            error = err instanceof Error ? err.message : String(err);
          } finally {
            clearInterval(timer);
            from = { ...from, ...stream.revisions() };
            stream.close();
          }
          return { type: 'ok', value: events, extra: error === undefined ? {} : { error } };
        },
      });
      if (finalTargets !== undefined && (reached(seen) || Date.now() > finalDeadline)) return;
      if (error !== undefined) await sleep(200);
    }
  };

  return {
    name: 'watch',
    concurrency: writers + watchers,
    watchers,
    async worker(ctx: WorkloadContext, n: number) {
      if (n >= writers) return watcher(ctx, n - writers);
      const client = await ctx.client();
      const proc = ctx.recorder.newProcess();
      while (!ctx.signal.aborted) {
        await put(ctx, proc, client, `${PREFIX}${ctx.rng.int(KEYS)}`);
        await sleep(5 + ctx.rng.int(20), ctx.signal);
      }
    },
    async final(ctx: WorkloadContext) {
      const client = await ctx.client();
      const proc = ctx.recorder.newProcess();
      const groups = new Set((await client.groups()).map((g) => g.id));
      const targets = new Map<number, number>();
      for (let i = 0; targets.size < groups.size && i < 10_000; i++) {
        const key = `${PREFIX}final-${i}`;
        const g = await client.groupOfKey(key);
        if (targets.has(g)) continue;
        for (let attempt = 0; attempt < 5; attempt++) {
          const r = await put(ctx, proc, client, key);
          if (r.type === 'ok') {
            targets.set(g, r.revision);
            break;
          }
          await sleep(500);
        }
        if (!targets.has(g)) targets.set(g, 0);
      }
      finalDeadline = Date.now() + FINAL_WAIT_MS;
      finalTargets = targets;
    },
    check(history: History): WorkloadChecks {
      return { checkers: [checkWatch(history)] };
    },
  };
}
