/**
 * The fencing checker: what a resource protected by a fenced lock accepts must be
 * consistent with the lock's tokens, whatever happened to the lock holders (paused, cut off,
 * lease expired). It needs only real-time order, no search.
 *
 * History form, every event keyed by the lock's name (`key`; absent = one lock):
 * - `acquire`: the `ok` completion's `value` is the fencing token granted.
 * - `release`: `value` is the token released.
 * - `access`: a holder's use of the protected resource with the token in `value`; `ok` =
 *   the resource accepted it, `fail` = it rejected it (STALE_FENCE), `info` = unknown.
 * - `read-accepted` (optional): a read of the resource's own log of accepted tokens, in the
 *   order it accepted them; the `ok` completion's `value` is that array.
 *
 * Rules (A -> B means A completed before B was invoked):
 * - `grant-order`: two granted tokens are distinct, and A -> B implies token(A) < token(B).
 * - `stale-accept`: accepted accesses A -> B imply token(A) <= token(B): once a newer
 *   holder's access is accepted, no older token is.
 * - `accept-after-grant`: an access accepted with token t was not invoked after a grant of
 *   a token above t completed (the store's current token was already newer).
 * - `accept-after-release`: an access accepted with token t was not invoked after the
 *   release of t completed.
 * - `unknown-token`: an accepted token was granted by some acquire (checked only when no
 *   acquire of that lock has an unknown outcome).
 * - `log-order`: a resource log never shows a token after a greater one (tokens accepted
 *   strictly increase across holders; one holder may repeat its own).
 * - `log-lost`: an access accepted before a log read was invoked appears in that log.
 *
 * O(n log n) per lock.
 */
import { groupByKey, type History, type HistoryOp } from '../history.js';
import { type CheckerResult, ViolationList } from '../verdict.js';

interface Tokened {
  readonly op: HistoryOp;
  readonly token: number;
}

function tokenOf(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/**
 * maxBefore answers, for each query time, the item with the greatest token among those whose
 * `ret` is below it. Items and queries are processed in sorted order: O((n + q) log n).
 */
function sweepMaxBefore(
  items: readonly Tokened[],
  queries: readonly Tokened[],
  visit: (query: Tokened, best: Tokened) => void,
): void {
  const byRet = [...items].sort((a, b) => a.op.ret - b.op.ret);
  const byCall = [...queries].sort((a, b) => a.op.call - b.op.call);
  let i = 0;
  let best: Tokened | undefined;
  for (const q of byCall) {
    while (i < byRet.length && byRet[i]!.op.ret < q.op.call) {
      const it = byRet[i++]!;
      if (best === undefined || it.token > best.token) best = it;
    }
    if (best !== undefined) visit(q, best);
  }
}

/** checkFencing checks a lock workload's history (see the file comment for the rules). */
export function checkFencing(history: History): CheckerResult {
  const v = new ViolationList();
  const locks = groupByKey(history.ops);
  let grants = 0;
  let accepted = 0;
  let rejected = 0;
  let logs = 0;
  for (const [lock, ops] of locks) {
    const granted: Tokened[] = [];
    const releases: Tokened[] = [];
    const accepts: Tokened[] = [];
    const reads: HistoryOp[] = [];
    let unknownGrants = 0;
    for (const op of ops) {
      if (op.f === 'acquire') {
        if (op.status === 'ok') {
          const token = tokenOf(op.completion!.value);
          if (token === undefined) v.add('malformed', lock, 'an acquire returned no numeric token', [op.id]);
          else granted.push({ op, token });
        } else if (op.status === 'info') unknownGrants++;
      } else if (op.f === 'release') {
        const token = tokenOf(op.invoke.value);
        if (op.status === 'ok' && token !== undefined) releases.push({ op, token });
      } else if (op.f === 'access') {
        const token = tokenOf(op.invoke.value);
        if (token === undefined) v.add('malformed', lock, 'an access carries no numeric token', [op.id]);
        else if (op.status === 'ok') accepts.push({ op, token });
        else if (op.status === 'fail') rejected++;
      } else if (op.f === 'read-accepted') {
        if (op.status === 'ok') reads.push(op);
      }
    }
    grants += granted.length;
    accepted += accepts.length;
    logs += reads.length;

    const seen = new Map<number, HistoryOp>();
    for (const g of granted) {
      const other = seen.get(g.token);
      if (other !== undefined)
        v.add('grant-order', lock, `token ${g.token} was granted twice`, [other.id, g.op.id]);
      else seen.set(g.token, g.op);
    }
    sweepMaxBefore(granted, granted, (b, a) => {
      if (a.token >= b.token)
        v.add(
          'grant-order',
          lock,
          `token ${b.token} was granted after token ${a.token} had been granted (tokens must increase)`,
          [a.op.id, b.op.id],
        );
    });
    sweepMaxBefore(accepts, accepts, (b, a) => {
      if (a.token > b.token)
        v.add(
          'stale-accept',
          lock,
          `the resource accepted token ${b.token} after it had accepted the newer token ${a.token}`,
          [a.op.id, b.op.id],
        );
    });
    sweepMaxBefore(granted, accepts, (x, g) => {
      if (g.token > x.token)
        v.add(
          'accept-after-grant',
          lock,
          `the resource accepted token ${x.token}, invoked after token ${g.token} had been granted`,
          [g.op.id, x.op.id],
        );
    });
    const releasedAt = new Map<number, HistoryOp>();
    for (const r of releases) {
      const prev = releasedAt.get(r.token);
      if (prev === undefined || r.op.ret < prev.ret) releasedAt.set(r.token, r.op);
    }
    for (const x of accepts) {
      const r = releasedAt.get(x.token);
      if (r !== undefined && r.ret < x.op.call)
        v.add(
          'accept-after-release',
          lock,
          `the resource accepted token ${x.token}, invoked after that token's release had completed`,
          [r.id, x.op.id],
        );
      if (unknownGrants === 0 && !seen.has(x.token))
        v.add('unknown-token', lock, `the resource accepted token ${x.token}, which no acquire returned`, [
          x.op.id,
        ]);
    }
    for (const read of reads) {
      const log = read.completion!.value;
      if (!Array.isArray(log)) {
        v.add('malformed', lock, 'a read-accepted result is not an array', [read.id]);
        continue;
      }
      let max = Number.NEGATIVE_INFINITY;
      for (const t of log) {
        const token = tokenOf(t);
        if (token === undefined) continue;
        if (token < max) {
          v.add('log-order', lock, `the resource's log shows token ${token} after token ${max}`, [read.id]);
          break;
        }
        max = token;
      }
      const inLog = new Set(log);
      for (const x of accepts)
        if (x.op.ret < read.call && !inLog.has(x.token))
          v.add(
            'log-lost',
            lock,
            `an access accepted with token ${x.token} is missing from the resource's log`,
            [x.op.id, read.id],
          );
    }
  }
  return v.result('fencing', { locks: locks.length, grants, accepted, rejected, logs });
}
