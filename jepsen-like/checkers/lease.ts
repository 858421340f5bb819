/**
 * The leases and TTL checker: a key bound to a lease vanishes only after the lease's
 * deadline or a revoke, and is gone after an acknowledged revoke or once the deadline is
 * certainly past; a dead lease is never renewed, written through or granted a lock; a lock
 * is never held through a dead lease. It needs only real-time order and the events' times.
 *
 * History form (`time` is monotonic ns; "A -> B": A completed before B was invoked, by index):
 * - `grant`: `key` = the lease's name (unique in the history); invoke `value` `{"ttlMs": N}`;
 *   `ok` = granted (its value is the lease id); `fail` = not granted. A grant with the field
 *   `"keepalive": "stream"` is renewed by a stream the history does not record: untimed.
 * - `keepalive`: `key` = the lease's name; `ok` = renewed; `fail` = the lease was gone.
 * - `revoke`: `key` = the lease's name; `ok` = revoked.
 * - `lput`: `key` = a data key (unique per lput), invoke field `"lease": NAME`, invoke
 *   `value` = the value written; `ok` = the key exists, bound to the lease.
 * - `lread`: `key` = a key some lput wrote; the `ok` completion's `value` is the value
 *   read, null when absent. The workload never deletes or overwrites these keys itself.
 * - `acquire` with an invoke field `"lease": NAME` (others, or `null`, are ignored):
 *   `key` = the lock; the `ok` value is the fencing token.
 * - `holder`: `key` = the lock; the `ok` value is `{"lease": NAME | null, "token": N | null}`.
 * Other ops are ignored, so a history may mix workloads.
 *
 * Deadlines. A server clock runs at a rate within [1/rateMax, rateMax] of real time, so a
 * TTL (the grant's `ttlMs`) lasts between ttl/rateMax and ttl·rateMax of real time from the
 * op that set it (the grant or an ok keepalive), which took effect within its
 * [invoke, completion]. For an op X:
 * - earliest(X) = max(the grant's invoke time, the invoke time of every ok keepalive invoked
 *   before X completed) + ttl/rateMax - slackMs. A keepalive that took effect after X still
 *   counts: it proves the lease alive then, hence at X.
 * - latest(X) = max(the grant's completion time, the completion time of every ok keepalive
 *   invoked before X) + ttl·rateMax. Defined only when the lease's grant and keepalives all
 *   have known outcomes (an `info` one may have extended it at any time) and are all
 *   recorded; other leases are "untimed" and skip the expiry rules. Ending a lease (deleting its keys, handing its
 *   locks over) needs an entry to commit: the expiry rules allow `lateMs` past latest.
 *
 * Rules:
 * - `early-vanish`: an lread -> absent, invoked after its lput completed ok, completed before
 *   earliest, and no revoke (ok or info) of the lease was invoked before the read completed.
 * - `read-after-revoke`: an lread invoked after an ok revoke of its lease completed found
 *   the key.
 * - `read-after-expiry`: an lread invoked later than latest + lateMs found the key.
 * - `use-after-revoke`: an lput, keepalive or acquire through a lease succeeded although
 *   invoked after an ok revoke of the lease completed.
 * - `use-after-expiry`: the same, invoked later than latest + lateMs.
 * - `granted-after-revoke`: an acquire invoked before the revoke of its lease completed,
 *   answered ok after it, that was provably granted after the revoke: some holder read or
 *   acquire of the lock invoked after the revoke completed saw a smaller token (tokens
 *   increase per lock, so the grant came later). A late answer alone proves nothing: an
 *   answer lost in a failover is re-sent from the session table after a retry.
 * - `holder-revoked` / `holder-expired`: a holder read invoked after an ok revoke of the
 *   lease it reports completed, or later than that lease's latest + lateMs.
 * - `wrong-value`: an lread found a value its lput did not write (or a failed or later lput).
 * - `malformed`: a reference to a lease or key the history never granted or wrote, a
 *   duplicate name, a missing field. The rest of the history is still checked.
 *
 * O(n log n): per lease, its ok keepalives sorted by invoke with prefix maxima; per lock,
 * its observed tokens with suffix minima.
 */
import { DkvError, ErrorCode } from '../../src/errors.js';
import { canonicalJson } from '../canonical-json.js';
import { type History, type HistoryEvent, type HistoryOp, show } from '../history.js';
import { type CheckerResult, ViolationList } from '../verdict.js';

/** LeaseCheckOptions are the lease checker's options (the runner's fault bounds). */
export interface LeaseCheckOptions {
  /** The fastest (and 1/rateMax the slowest) a node's clock may run against real time (default 1). */
  readonly rateMax?: number;
  /** Allowance for early expiry on top of the rate, for clock steps and rounding (default 50 ms). */
  readonly slackMs?: number;
  /** How long past its latest deadline a lease may take to end: an entry must commit (default 2000 ms). */
  readonly lateMs?: number;
  /**
   * Outages: windows (monotonic ns, as the history's `time`) in which replicated time may
   * stand still, because no majority of nodes ran (a majority or the whole cluster killed,
   * until it recovered). A lease's latest deadline moves later by the part of each outage
   * that falls after the op that set it. Default none.
   */
  readonly outages?: readonly { readonly startNs: number; readonly endNs: number }[];
}

/** LEASE_CHECK_DEFAULTS are the options' defaults. */
export const LEASE_CHECK_DEFAULTS = { rateMax: 1, slackMs: 50, lateMs: 2000 } as const;

const NS_PER_MS = 1e6;

/** Renewals are a lease's ok keepalives, sorted by invoke index, with prefix maxima of completion time. */
interface Renewals {
  readonly ops: readonly HistoryOp[];
  readonly calls: Float64Array;
  /** retMax[i]: the index in `ops` of the latest completion among ops[0..i]. */
  readonly retMax: Int32Array;
}

interface Lease {
  readonly name: string;
  readonly grant: HistoryOp;
  readonly ttlNs: number;
  /** Whether its grant or a keepalive has an unknown outcome: no latest deadline. */
  untimed: boolean;
  readonly keepalives: HistoryOp[];
  renewals: Renewals | undefined;
  /** The ok revoke that completed first. */
  revoked: HistoryOp | undefined;
  /** The ok or info revoke that was invoked first. */
  revokeTried: HistoryOp | undefined;
}

interface Bound {
  readonly value: unknown;
  readonly lease: Lease;
  readonly op: HistoryOp;
}

interface Observed {
  readonly op: HistoryOp;
  readonly token: number;
}

/** A deadline bound and the op that set it. */
interface Deadline {
  readonly timeNs: number;
  readonly by: HistoryOp;
}

function ms(ns: number): string {
  return `${(ns / NS_PER_MS).toFixed(3)} ms`;
}

function evAt(ev: HistoryEvent): string {
  return `index ${ev.index} at ${ms(ev.time)}`;
}

/** describe names an op for a message: its id, f, key, and invoke and completion (index, time). */
function describe(op: HistoryOp): string {
  const done = op.completion === undefined ? 'never answered' : `${op.status} ${evAt(op.completion)}`;
  return `op ${op.id} ${op.f} ${show(op.key)} (invoked ${evAt(op.invoke)}, ${done})`;
}

function leaseField(op: HistoryOp): unknown {
  return op.invoke.fields.lease ?? op.completion?.fields.lease;
}

function tokenOf(v: unknown): number | undefined {
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

function renewalsOf(keepalives: readonly HistoryOp[]): Renewals {
  const ops = keepalives.filter((k) => k.status === 'ok').sort((a, b) => a.call - b.call);
  const calls = Float64Array.from(ops, (k) => k.call);
  const retMax = new Int32Array(ops.length);
  ops.forEach((k, i) => {
    const prev = i === 0 ? -1 : retMax[i - 1]!;
    retMax[i] = prev >= 0 && ops[prev]!.completion!.time >= k.completion!.time ? prev : i;
  });
  return { ops, calls, retMax };
}

function checkOptions(o: LeaseCheckOptions): Required<LeaseCheckOptions> {
  const rateMax = o.rateMax ?? LEASE_CHECK_DEFAULTS.rateMax;
  const slackMs = o.slackMs ?? LEASE_CHECK_DEFAULTS.slackMs;
  const lateMs = o.lateMs ?? LEASE_CHECK_DEFAULTS.lateMs;
  const outages = [...(o.outages ?? [])].sort((a, b) => a.startNs - b.startNs);
  for (const w of outages)
    if (!Number.isFinite(w.startNs) || !Number.isFinite(w.endNs) || w.endNs < w.startNs)
      throw new DkvError(ErrorCode.InvalidArgument, 'lease checker: an outage must have startNs <= endNs');
  if (!Number.isFinite(rateMax) || rateMax < 1)
    throw new DkvError(ErrorCode.InvalidArgument, `lease checker: rateMax must be >= 1, got ${rateMax}`);
  if (!Number.isFinite(slackMs) || slackMs < 0)
    throw new DkvError(ErrorCode.InvalidArgument, `lease checker: slackMs must be >= 0, got ${slackMs}`);
  if (!Number.isFinite(lateMs) || lateMs < 0)
    throw new DkvError(ErrorCode.InvalidArgument, `lease checker: lateMs must be >= 0, got ${lateMs}`);
  return { rateMax, slackMs, lateMs, outages };
}

/** checkLease checks a lease workload's history (see the file comment for the rules). */
export function checkLease(history: History, options: LeaseCheckOptions = {}): CheckerResult {
  const { rateMax, slackMs, lateMs, outages } = checkOptions(options);
  const slackNs = slackMs * NS_PER_MS;
  const lateNs = lateMs * NS_PER_MS;
  const v = new ViolationList();
  const leases = new Map<string, Lease>();
  /** Names whose grant failed or was malformed: references to them are malformed too. */
  const notGranted = new Map<string, string>();
  const grantOf = new Map<string, HistoryOp>();

  for (const op of history.ops) {
    if (op.f !== 'grant') continue;
    const name = op.key;
    if (name === undefined) {
      v.add('malformed', '', 'a grant has no key (the lease name)', [op.id]);
      continue;
    }
    const previous = grantOf.get(name);
    if (previous !== undefined) {
      v.add('malformed', name, `lease ${show(name)} is granted twice; lease names must be unique`, [
        previous.id,
        op.id,
      ]);
      continue;
    }
    grantOf.set(name, op);
    if (op.status === 'fail') {
      notGranted.set(name, 'whose grant failed');
      continue;
    }
    const ttl = (op.invoke.value as { ttlMs?: unknown } | null)?.ttlMs;
    if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl <= 0) {
      v.add('malformed', name, `a grant's value must be {"ttlMs": N > 0}, got ${show(op.invoke.value)}`, [
        op.id,
      ]);
      notGranted.set(name, 'whose grant is malformed');
      continue;
    }
    leases.set(name, {
      name,
      grant: op,
      ttlNs: ttl * NS_PER_MS,
      untimed: op.status === 'info' || op.invoke.fields.keepalive === 'stream',
      keepalives: [],
      renewals: undefined,
      revoked: undefined,
      revokeTried: undefined,
    });
  }

  /** leaseNamed resolves a reference, reporting it as malformed when it names no granted lease. */
  const leaseNamed = (name: unknown, op: HistoryOp, key: string): Lease | undefined => {
    if (typeof name !== 'string') {
      v.add('malformed', key, `${op.f} has no "lease" name (got ${show(name)})`, [op.id]);
      return undefined;
    }
    const lease = leases.get(name);
    if (lease === undefined)
      v.add(
        'malformed',
        key,
        `${op.f} refers to lease ${show(name)}, ${notGranted.get(name) ?? 'which no grant names'}`,
        [op.id],
      );
    return lease;
  };

  const puts = new Map<string, Bound>();
  const uses: { op: HistoryOp; lease: Lease }[] = [];
  const reads: HistoryOp[] = [];
  /** Ok holder reads, with the lease they report (undefined: the lock was free). */
  const holders: { op: HistoryOp; lease: Lease | undefined }[] = [];
  /** Per lock: tokens seen by ok lease acquires and holder reads. */
  const observed = new Map<string, Observed[]>();
  const observe = (lock: string, op: HistoryOp, token: number): void => {
    let list = observed.get(lock);
    if (list === undefined) observed.set(lock, (list = []));
    list.push({ op, token });
  };
  const acquires: { op: HistoryOp; lease: Lease; token: number }[] = [];
  let acquireCount = 0;

  for (const op of history.ops) {
    const key = op.key ?? '';
    switch (op.f) {
      case 'keepalive':
      case 'revoke': {
        const lease = leaseNamed(op.key, op, key);
        if (lease === undefined) break;
        if (op.f === 'keepalive') {
          lease.keepalives.push(op);
          if (op.status === 'info') lease.untimed = true;
          if (op.status === 'ok') uses.push({ op, lease });
        } else if (op.status !== 'fail') {
          if (lease.revokeTried === undefined || op.call < lease.revokeTried.call) lease.revokeTried = op;
          if (op.status === 'ok' && (lease.revoked === undefined || op.ret < lease.revoked.ret))
            lease.revoked = op;
        }
        break;
      }
      case 'lput': {
        if (op.key === undefined) {
          v.add('malformed', '', 'an lput has no key', [op.id]);
          break;
        }
        const lease = leaseNamed(leaseField(op), op, key);
        if (lease === undefined) break;
        const previous = puts.get(key);
        if (previous !== undefined) {
          v.add('malformed', key, `key ${show(key)} is written by two lputs; lput keys must be unique`, [
            previous.op.id,
            op.id,
          ]);
          break;
        }
        puts.set(key, { value: op.invoke.value, lease, op });
        if (op.status === 'ok') uses.push({ op, lease });
        break;
      }
      case 'lread':
        if (op.status === 'ok') reads.push(op);
        break;
      case 'acquire': {
        const name = leaseField(op);
        if (name === undefined || name === null) break;
        acquireCount++;
        const lease = leaseNamed(name, op, key);
        if (lease === undefined || op.status !== 'ok') break;
        const token = tokenOf(op.completion!.value);
        if (token === undefined) {
          v.add('malformed', key, `an acquire returned no numeric token (${show(op.completion!.value)})`, [
            op.id,
          ]);
          break;
        }
        uses.push({ op, lease });
        acquires.push({ op, lease, token });
        observe(key, op, token);
        break;
      }
      case 'holder': {
        if (op.status !== 'ok') break;
        const value = op.completion!.value;
        if (typeof value !== 'object' || value === null || Array.isArray(value)) {
          v.add('malformed', key, `a holder read must return {"lease", "token"}, got ${show(value)}`, [
            op.id,
          ]);
          break;
        }
        const { lease: name, token } = value as { lease?: unknown; token?: unknown };
        const t = tokenOf(token);
        if (t !== undefined) observe(key, op, t);
        if (name === null || name === undefined) holders.push({ op, lease: undefined });
        else {
          const lease = leaseNamed(name, op, key);
          if (lease !== undefined) holders.push({ op, lease });
        }
        break;
      }
    }
  }
  for (const lease of leases.values()) lease.renewals = renewalsOf(lease.keepalives);

  /** earliest bounds from below when the lease may end, as of an op completing at index `ret`. */
  const earliest = (lease: Lease, ret: number): Deadline => {
    const r = lease.renewals!;
    const n = countBelow(r.calls, ret);
    // Invoke times never decrease with the index: the last keepalive invoked is the latest.
    const last = n > 0 ? r.ops[n - 1]! : undefined;
    const by = last !== undefined && last.invoke.time > lease.grant.invoke.time ? last : lease.grant;
    return { timeNs: by.invoke.time + lease.ttlNs / rateMax - slackNs, by };
  };
  /** latest bounds from above when the lease ends, as of an op invoked at index `call`; undefined when untimed. */
  const latest = (lease: Lease, call: number): Deadline | undefined => {
    if (lease.untimed) return undefined;
    const r = lease.renewals!;
    const n = countBelow(r.calls, call);
    const last = n > 0 ? r.ops[r.retMax[n - 1]!]! : undefined;
    const grantDone = lease.grant.completion!.time;
    const by = last !== undefined && last.completion!.time > grantDone ? last : lease.grant;
    let timeNs = by.completion!.time + lease.ttlNs * rateMax;
    for (const o of outages) {
      if (o.startNs >= timeNs) break;
      const from = Math.max(o.startNs, by.completion!.time);
      if (o.endNs > from) timeNs += o.endNs - from;
    }
    return { timeNs, by };
  };
  /** expiredBefore tells whether the lease was certainly ended (latest + late) when `op` was invoked. */
  const expiredBefore = (lease: Lease, op: HistoryOp): Deadline | undefined => {
    const d = latest(lease, op.call);
    return d !== undefined && op.invoke.time > d.timeNs + lateNs ? d : undefined;
  };
  const deadlineText = (lease: Lease, d: Deadline, bound: string): string =>
    `lease ${show(lease.name)} (ttl ${lease.ttlNs / NS_PER_MS} ms, set by ${describe(d.by)}) had its ${bound} deadline at ${ms(d.timeNs)}`;

  // Reads: early vanish, after revoke, after expiry, wrong value.
  let absent = 0;
  for (const read of reads) {
    const key = read.key ?? '';
    const put = puts.get(key);
    if (put === undefined) {
      v.add('malformed', key, `lread of ${show(key)}, which no lput wrote`, [read.id]);
      continue;
    }
    const lease = put.lease;
    const value = read.completion!.value;
    if (value === null) {
      absent++;
      if (put.op.status !== 'ok' || put.op.ret >= read.call) continue;
      if (lease.revokeTried !== undefined && lease.revokeTried.call < read.ret) continue;
      const d = earliest(lease, read.ret);
      if (read.completion!.time < d.timeNs)
        v.add(
          'early-vanish',
          key,
          `${describe(read)} found the key absent, after ${describe(put.op)}, but ${deadlineText(lease, d, 'earliest')} (rateMax ${rateMax}, slack ${slackMs} ms) and no revoke was tried`,
          [lease.grant.id, put.op.id, ...(d.by === lease.grant ? [] : [d.by.id]), read.id],
        );
      continue;
    }
    if (
      put.op.status === 'fail' ||
      put.op.call > read.ret ||
      canonicalJson(value) !== canonicalJson(put.value)
    ) {
      v.add(
        'wrong-value',
        key,
        `${describe(read)} returned ${show(value)}, but the only write of the key is ${describe(put.op)} with ${show(put.value)}`,
        [put.op.id, read.id],
      );
      continue;
    }
    if (lease.revoked !== undefined && lease.revoked.ret < read.call) {
      v.add(
        'read-after-revoke',
        key,
        `${describe(read)} found the key, invoked after ${describe(lease.revoked)} of its lease completed`,
        [put.op.id, lease.revoked.id, read.id],
      );
      continue;
    }
    const d = expiredBefore(lease, read);
    if (d !== undefined)
      v.add(
        'read-after-expiry',
        key,
        `${describe(read)} found the key, but ${deadlineText(lease, d, 'latest')} (rateMax ${rateMax}, late ${lateMs} ms)`,
        [lease.grant.id, put.op.id, ...(d.by === lease.grant ? [] : [d.by.id]), read.id],
      );
  }

  // Uses of a dead lease: ok lputs, keepalives and acquires.
  for (const { op, lease } of uses) {
    const key = op.key ?? '';
    if (lease.revoked !== undefined && lease.revoked.ret < op.call) {
      v.add(
        'use-after-revoke',
        key,
        `${describe(op)} succeeded, invoked after ${describe(lease.revoked)} of lease ${show(lease.name)} completed`,
        [lease.revoked.id, op.id],
      );
      continue;
    }
    const d = expiredBefore(lease, op);
    if (d !== undefined)
      v.add(
        'use-after-expiry',
        key,
        `${describe(op)} succeeded, but ${deadlineText(lease, d, 'latest')} (rateMax ${rateMax}, late ${lateMs} ms)`,
        [lease.grant.id, ...(d.by === lease.grant ? [] : [d.by.id]), op.id],
      );
  }

  // Acquires granted after their lease's revoke, proven by a smaller token seen after it.
  const suffixMin = new Map<string, { calls: Float64Array; min: Observed[] }>();
  for (const [lock, list] of observed) {
    list.sort((a, b) => a.op.call - b.op.call);
    const min: Observed[] = new Array(list.length);
    for (let i = list.length - 1; i >= 0; i--) {
      const o = list[i]!;
      const next = min[i + 1];
      min[i] = next !== undefined && next.token <= o.token ? next : o;
    }
    suffixMin.set(lock, { calls: Float64Array.from(list, (o) => o.op.call), min });
  }
  for (const { op, lease, token } of acquires) {
    const r = lease.revoked;
    if (r === undefined || r.ret < op.call || r.ret > op.ret) continue;
    const s = suffixMin.get(op.key ?? '')!;
    const seen = s.min[countBelow(s.calls, r.ret + 1)];
    if (seen !== undefined && seen.token < token)
      v.add(
        'granted-after-revoke',
        op.key ?? '',
        `${describe(op)} was granted token ${token} through lease ${show(lease.name)}, but ${describe(r)} of that lease had completed before ${describe(seen.op)} saw the lock at the older token ${seen.token}`,
        [r.id, seen.op.id, op.id],
      );
  }

  // Holder reads: the lease reported must be live.
  for (const { op: h, lease } of holders) {
    if (lease === undefined) continue;
    const key = h.key ?? '';
    if (lease.revoked !== undefined && lease.revoked.ret < h.call) {
      v.add(
        'holder-revoked',
        key,
        `${describe(h)} reports the lock held through lease ${show(lease.name)}, invoked after ${describe(lease.revoked)} completed`,
        [lease.revoked.id, h.id],
      );
      continue;
    }
    const d = expiredBefore(lease, h);
    if (d !== undefined)
      v.add(
        'holder-expired',
        key,
        `${describe(h)} reports the lock held through lease ${show(lease.name)}, but ${deadlineText(lease, d, 'latest')} (rateMax ${rateMax}, late ${lateMs} ms)`,
        [lease.grant.id, ...(d.by === lease.grant ? [] : [d.by.id]), h.id],
      );
  }

  let keepalives = 0;
  let revokes = 0;
  let untimed = 0;
  for (const lease of leases.values()) {
    keepalives += lease.renewals!.ops.length;
    if (lease.revoked !== undefined) revokes++;
    if (lease.untimed) untimed++;
  }
  let lputs = 0;
  for (const p of puts.values()) if (p.op.status === 'ok') lputs++;
  return v.result('lease', {
    leases: leases.size,
    untimed,
    keepalives,
    revoked: revokes,
    lputs,
    reads: reads.length,
    absent,
    acquires: acquireCount,
    holderReads: holders.length,
  });
}
