/**
 * The counter checker (Jepsen's counter checker, for deltas of either sign): every read of a
 * counter lies between what certainly happened and what possibly happened before it.
 *
 * History form, per counter (`key`; absent = one counter): `add` carries its delta as
 * `value` (ok, fail or info; an `ok` may carry `"result": N`, the value after the add);
 * `read`'s `ok` completion returns the value (null = 0). `initial` (default 0) is the value
 * before the history.
 *
 * For a read R: the certain adds are those acknowledged before R was invoked; the possible
 * ones are the others not failed that were invoked before R completed. R must lie in
 * [initial + sum(certain) + sum(negative possible), initial + sum(certain) + sum(positive
 * possible)]; with only positive deltas, between the acknowledged and the attempted adds.
 * An add's `result` is a read at the add's own interval, the add itself certain. Rules:
 * `read-below` and `read-above`.
 *
 * O((adds + reads) log adds): prefix sums over adds sorted by completion and by invoke.
 */
import { groupByKey, type History, type HistoryOp } from '../history.js';
import { type CheckerResult, ViolationList } from '../verdict.js';

/** CounterCheckOptions are the counter checker's options. */
export interface CounterCheckOptions {
  /** Every counter's value before the history (default 0). */
  readonly initial?: number;
}

function num(v: unknown): number | undefined {
  if (v === null) return 0;
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** countBelow is the number of entries of a sorted array below `x`. */
function countBelow(sorted: Float64Array, x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

interface Observation {
  readonly op: HistoryOp;
  readonly value: number;
  /** An add's own delta, counted as certain (0 for a read). */
  readonly own: number;
}

/** checkCounter checks a counter workload's history (see the file comment for the rules). */
export function checkCounter(history: History, options: CounterCheckOptions = {}): CheckerResult {
  const v = new ViolationList();
  const initial = options.initial ?? 0;
  const counters = groupByKey(history.ops);
  let reads = 0;
  let acked = 0;
  let attempted = 0;
  for (const [key, ops] of counters) {
    const adds: { op: HistoryOp; delta: number }[] = [];
    const observations: Observation[] = [];
    for (const op of ops) {
      if (op.f === 'add') {
        if (op.status === 'fail') continue;
        const delta = num(op.invoke.value);
        if (delta === undefined) {
          v.add('malformed', key, 'an add delta is not a number', [op.id]);
          continue;
        }
        adds.push({ op, delta });
        const result = op.completion?.fields.result;
        if (op.status === 'ok' && result !== undefined && result !== null) {
          const value = num(result);
          if (value === undefined) v.add('malformed', key, 'an add result is not a number', [op.id]);
          else observations.push({ op, value, own: delta });
        }
      } else if (op.f === 'read' && op.status === 'ok') {
        const value = num(op.completion!.value);
        if (value === undefined) v.add('malformed', key, 'a read result is not a number', [op.id]);
        else observations.push({ op, value, own: 0 });
      }
    }
    attempted += adds.length;
    // Certain adds by completion (ok only); possible adds by invoke (ok and info).
    const okAdds = adds.filter((a) => a.op.status === 'ok').sort((a, b) => a.op.ret - b.op.ret);
    acked += okAdds.length;
    const okRets = Float64Array.from(okAdds, (a) => a.op.ret);
    const certainSum = new Float64Array(okAdds.length + 1);
    const certainNeg = new Float64Array(okAdds.length + 1);
    const certainPos = new Float64Array(okAdds.length + 1);
    okAdds.forEach((a, i) => {
      certainSum[i + 1] = certainSum[i]! + a.delta;
      certainNeg[i + 1] = certainNeg[i]! + Math.min(0, a.delta);
      certainPos[i + 1] = certainPos[i]! + Math.max(0, a.delta);
    });
    const byCall = [...adds].sort((a, b) => a.op.call - b.op.call);
    const calls = Float64Array.from(byCall, (a) => a.op.call);
    const allNeg = new Float64Array(byCall.length + 1);
    const allPos = new Float64Array(byCall.length + 1);
    byCall.forEach((a, i) => {
      allNeg[i + 1] = allNeg[i]! + Math.min(0, a.delta);
      allPos[i + 1] = allPos[i]! + Math.max(0, a.delta);
    });
    for (const o of observations) {
      reads++;
      // Certain: acknowledged before the observation was invoked.
      const c = countBelow(okRets, o.op.call);
      // Possible: invoked before it completed (an info add's +Infinity return never counts as certain).
      const p = countBelow(calls, o.op.ret);
      const base = initial + certainSum[c]!;
      // Every certain add was invoked before the observation completed, so it is among the p.
      let low = base + (allNeg[p]! - certainNeg[c]!);
      let high = base + (allPos[p]! - certainPos[c]!);
      if (o.own !== 0) {
        // The add itself is certain: move it from the possible part to the certain part.
        low += o.own - Math.min(0, o.own);
        high += o.own - Math.max(0, o.own);
      }
      if (o.value < low)
        v.add(
          'read-below',
          key,
          `${o.op.f === 'add' ? 'an add returned' : 'a read returned'} ${o.value}, below the lowest possible ${low}`,
          [o.op.id],
        );
      else if (o.value > high)
        v.add(
          'read-above',
          key,
          `${o.op.f === 'add' ? 'an add returned' : 'a read returned'} ${o.value}, above the highest possible ${high}`,
          [o.op.id],
        );
    }
  }
  return v.result('counter', { counters: counters.length, attempted, acknowledged: acked, reads });
}
