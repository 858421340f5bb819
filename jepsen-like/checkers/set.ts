/**
 * The set checker (Jepsen's set and set-full checkers): no acknowledged add is lost, and
 * reads show nothing that was never added. Cheaper than a linearizability search, so it
 * scales to long set workloads.
 *
 * History form, per set (`key`; absent = one set): `add` carries the element as `value`
 * (ok, fail or info); `read`'s `ok` completion returns the array of elements. Elements are
 * compared by canonical JSON.
 *
 * An element is required in a read R once it is certainly in the set before R began: its
 * add was acknowledged (ok) before R was invoked, or an earlier read (completed before R
 * was invoked) already showed it. Rules:
 * - `lost`: a required element is missing from the last read of the set (the read that
 *   completed last).
 * - `stale-read`: a required element is missing from an earlier read (and the last read
 *   has it, or did not require it).
 * - `unexpected`: a read shows an element nobody tried to add before the read completed.
 * - `failed-add-present`: a read shows an element whose every add failed (certainly not added).
 * - `duplicate`: a read shows an element twice.
 *
 * O(reads x elements) time.
 */
import { canonicalJson } from '../canonical-json.js';
import { groupByKey, type History, type HistoryOp } from '../history.js';
import { type CheckerResult, ViolationList } from '../verdict.js';

interface Element {
  readonly name: string;
  /** The earliest completion index after which the element is certainly in the set. */
  requiredAfter: number;
  /** The op that made it required. */
  requiredBy: number;
  /** The earliest invoke of an add of it that did not fail (+Infinity if none). */
  firstAttempt: number;
  /** The ids of every add of it. */
  readonly attemptOps: number[];
  acked: boolean;
}

/** checkSet checks a set workload's history (see the file comment for the rules). */
export function checkSet(history: History): CheckerResult {
  const v = new ViolationList();
  const sets = groupByKey(history.ops);
  let attempted = 0;
  let acknowledged = 0;
  let lost = 0;
  let recovered = 0;
  let readsChecked = 0;
  for (const [key, ops] of sets) {
    const elements = new Map<string, Element>();
    const element = (name: string): Element => {
      let e = elements.get(name);
      if (e === undefined) {
        e = {
          name,
          requiredAfter: Number.POSITIVE_INFINITY,
          requiredBy: -1,
          firstAttempt: Number.POSITIVE_INFINITY,
          attemptOps: [],
          acked: false,
        };
        elements.set(name, e);
      }
      return e;
    };
    const reads: { op: HistoryOp; items: Set<string> }[] = [];
    for (const op of ops) {
      if (op.f === 'add') {
        const e = element(canonicalJson(op.invoke.value));
        e.attemptOps.push(op.id);
        if (op.status === 'fail') continue;
        e.firstAttempt = Math.min(e.firstAttempt, op.call);
        if (op.status === 'ok') {
          e.acked = true;
          if (op.ret < e.requiredAfter) {
            e.requiredAfter = op.ret;
            e.requiredBy = op.id;
          }
        }
      } else if (op.f === 'read' && op.status === 'ok') {
        const value = op.completion!.value;
        const list = value === null ? [] : Array.isArray(value) ? value : undefined;
        if (list === undefined) {
          v.add('malformed', key, 'a read result is not an array', [op.id]);
          continue;
        }
        const items = new Set<string>();
        for (const item of list) {
          const name = canonicalJson(item);
          if (items.has(name)) v.add('duplicate', key, `the read shows ${name} twice`, [op.id]);
          items.add(name);
        }
        reads.push({ op, items });
      }
    }
    for (const e of elements.values()) {
      attempted++;
      if (e.acked) acknowledged++;
    }
    // A read makes what it shows required in every read invoked after it completed.
    for (const r of reads)
      for (const name of r.items) {
        const e = element(name);
        if (r.op.ret < e.requiredAfter) {
          e.requiredAfter = r.op.ret;
          e.requiredBy = r.op.id;
        }
      }
    if (reads.length === 0) continue;
    const last = reads.reduce((a, b) => (b.op.ret > a.op.ret ? b : a));
    const required = [...elements.values()]
      .filter((e) => e.requiredAfter < Number.POSITIVE_INFINITY)
      .sort((a, b) => a.requiredAfter - b.requiredAfter);
    for (const r of reads) {
      readsChecked++;
      for (const e of required) {
        if (e.requiredAfter >= r.op.call) break;
        if (r.items.has(e.name)) continue;
        if (r === last) {
          lost++;
          v.add('lost', key, `${e.name} is missing from the last read`, [e.requiredBy, r.op.id]);
        } else if (last.items.has(e.name) || e.requiredAfter >= last.op.call)
          v.add('stale-read', key, `${e.name} is missing from a read, though certainly added`, [
            e.requiredBy,
            r.op.id,
          ]);
        // Otherwise the last read misses it too, and reports it as lost.
      }
      for (const name of r.items) {
        const e = elements.get(name)!;
        if (e.attemptOps.length > 0 && e.firstAttempt === Number.POSITIVE_INFINITY)
          v.add('failed-add-present', key, `the read shows ${name}, whose add failed`, [
            ...e.attemptOps,
            r.op.id,
          ]);
        else if (e.firstAttempt > r.op.ret)
          v.add('unexpected', key, `the read shows ${name}, which nobody had tried to add`, [r.op.id]);
      }
    }
    for (const e of elements.values())
      if (!e.acked && e.firstAttempt < Infinity && last.items.has(e.name)) recovered++;
  }
  return v.result('set', {
    sets: sets.length,
    attempted,
    acknowledged,
    lost,
    recovered,
    reads: readsChecked,
  });
}
