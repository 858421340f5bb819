/**
 * The data the scaling benchmark writes: 16-byte keys (bench/compare/workloads.ts keyOf) and
 * 128-byte values that differ per key (so no two values can share memory anywhere), and the
 * bulk fill of a real cluster through transactions.
 *
 * Filling a million keys one put at a time through Raft takes minutes on this machine, so the
 * fill batches: one `txn` of TXN_PUTS unconditional puts per log entry, many transactions in
 * flight. Every key of a transaction must live in one group, so a bulk fill is for a store of
 * one partition (the keys section creates such a store).
 */
import type { DkvClient } from '../../src/client/client.js';
import { COMMAND_LIMITS } from '../../src/statemachine/commands.js';
import { keyOf, VALUE_BYTES } from '../compare/workloads.js';

export { keyOf, VALUE_BYTES };

/** TXN_PUTS is how many puts one fill transaction carries (the command limit: txnOpsMax). */
export const TXN_PUTS = COMMAND_LIMITS.txnOpsMax;

/** valueOfKey is the value of key i: VALUE_BYTES ASCII characters, unique to the key. */
export function valueOfKey(i: number): string {
  return `value:${i}:`.padEnd(VALUE_BYTES, 'x');
}

/** putsOf lists the puts of keys [from, to), for a transaction or an apply. */
export function putsOf(
  from: number,
  to: number,
  ttlMs?: (i: number) => number,
): { op: 'put'; key: string; value: string; ttlMs?: number }[] {
  const out: { op: 'put'; key: string; value: string; ttlMs?: number }[] = [];
  for (let i = from; i < to; i++)
    out.push({
      op: 'put',
      key: keyOf(i),
      value: valueOfKey(i),
      ...(ttlMs !== undefined && { ttlMs: ttlMs(i) }),
    });
  return out;
}

/**
 * fillByTxn writes keys [0, keys) through `client`, TXN_PUTS per transaction and `inFlight`
 * transactions at a time; `progress` hears the keys written so far now and then.
 */
export async function fillByTxn(
  client: DkvClient,
  keys: number,
  inFlight = 16,
  progress: (done: number) => void = () => {},
): Promise<void> {
  let next = 0;
  let done = 0;
  let reported = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < keys) {
        const from = next;
        const to = Math.min(keys, from + TXN_PUTS);
        next = to;
        await client.txn({ compare: [], success: putsOf(from, to) });
        done += to - from;
        if (done - reported >= keys / 10) {
          reported = done;
          progress(done);
        }
      }
    }),
  );
}
