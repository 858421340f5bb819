/**
 * Exactly-once against real node processes (test/node/harness.ts): 64 concurrent adders make
 * 10,000 adds of 1 to one counter while the leader of the counter's group is SIGKILLed
 * mid-run. Every add carries its session (client id, seq) through all its retries, so:
 * - no add is applied twice: acknowledged <= final value <= acknowledged + timed out;
 * - no answer is lost or doubled: the values the acknowledged adds returned are distinct
 *   (each applied add returns the counter's new value), and when none timed out they are
 *   exactly 1..10,000.
 * The failover time seen by the client (the longest add latency around the kill) is printed.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { DkvClient } from '../../src/client/client.js';
import { ErrorCode, isDkvError } from '../../src/errors.js';
import { destroyAllClusters, TestCluster } from '../node/harness.js';

afterEach(async () => {
  await destroyAllClusters();
});

const ADDS = 10_000;
const ADDERS = 64;
const KILL_AFTER = 3_000;
const COUNTER = 'exactly-once-counter';

/** adder adds 1 through the counter API, or through the raw command while it is not built. */
function adder(client: DkvClient): () => Promise<number> {
  let api = true;
  return async () => {
    if (api) {
      try {
        return Number(await client.counter(COUNTER).add(1));
      } catch (err) {
        if (!isDkvError(err) || err.code !== ErrorCode.Unsupported) throw err;
        api = false;
      }
    }
    return Number(await client.mutate({ key: COUNTER }, { op: 'counter.add', name: COUNTER, delta: 1 }));
  };
}

describe('exactly-once counter across a leader kill', () => {
  it(`stays exact through ${ADDS} concurrent adds while the counter group's leader is SIGKILLed`, async () => {
    const cluster = await TestCluster.start({ nodes: 3 });
    const client = await cluster.client({ requestTimeoutMs: 20_000 });
    const group = await client.groupOfKey(COUNTER);
    const add = adder(client);
    await add(); // warm up the connections and the counter (counted below)
    let started = 1;
    let acked = 1;
    let timedOut = 0;
    const otherErrors = new Map<string, number>();
    const values: number[] = [1];
    const latencies: { start: number; ms: number }[] = [];
    let victim = 0;
    let killedAt = 0;
    let killing: Promise<void> | undefined;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: ADDERS }, async () => {
        while (started < ADDS) {
          started++;
          const s = performance.now();
          try {
            values.push(await add());
            acked++;
          } catch (err) {
            const code = isDkvError(err) ? err.code : String(err);
            if (code === ErrorCode.Timeout) timedOut++;
            else otherErrors.set(code, (otherErrors.get(code) ?? 0) + 1);
          }
          latencies.push({ start: s, ms: performance.now() - s });
          if (acked >= KILL_AFTER && killing === undefined) {
            killing = (async () => {
              victim = await cluster.leaderOf(group);
              killedAt = performance.now();
              await cluster.kill(victim, 'SIGKILL');
            })();
          }
        }
      }),
    );
    const totalMs = performance.now() - t0;
    await killing;
    expect(victim).toBeGreaterThan(0);

    const final = Number(
      await client.read({ key: COUNTER }, { op: 'counter.get', name: COUNTER }, 'linearizable'),
    );
    const around = latencies.filter((l) => l.start <= killedAt + 5000 && l.start + l.ms >= killedAt);
    const failoverMs = Math.max(0, ...around.map((l) => l.ms));
    const sorted = latencies.map((l) => l.ms).sort((a, b) => a - b);
    console.log(
      `[exactly-once] adds=${ADDS} adders=${ADDERS} acked=${acked} timedOut=${timedOut} other=${JSON.stringify(Object.fromEntries(otherErrors))} final=${final} ` +
        `killed=node${victim} (leader of group ${group}) failoverMs(max add latency around the kill)=${failoverMs.toFixed(0)} ` +
        `p50=${sorted[Math.floor(sorted.length / 2)]!.toFixed(1)}ms total=${totalMs.toFixed(0)}ms (${((ADDS / totalMs) * 1000).toFixed(0)} adds/s)`,
    );

    expect(acked + timedOut + [...otherErrors.values()].reduce((a, b) => a + b, 0)).toBe(ADDS);
    expect(final).toBeGreaterThanOrEqual(acked);
    expect(final).toBeLessThanOrEqual(acked + timedOut);
    // No doubled answer: every acknowledged add returned its own new value.
    expect(new Set(values).size).toBe(values.length);
    expect(Math.max(...values)).toBeLessThanOrEqual(final);
    if (timedOut === 0 && otherErrors.size === 0) {
      expect(final).toBe(ADDS);
      expect([...values].sort((a, b) => a - b)).toEqual(Array.from({ length: ADDS }, (_, i) => i + 1));
    }

    // The killed node comes back and catches up to the same value.
    await cluster.restart(victim);
    const again = Number(
      await client.read({ key: COUNTER }, { op: 'counter.get', name: COUNTER }, 'linearizable'),
    );
    expect(again).toBe(final);
  }, 120_000);
});
