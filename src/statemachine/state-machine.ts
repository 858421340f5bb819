/**
 * GroupStateMachine is one partition group's replicated state: the engines (segment store,
 * index manager, TTL time wheel, watch hub, leases and locks, counters) plus replicated time
 * and the exactly-once session table. Nothing changes it except `apply` of a committed
 * entry, in log order, and `apply` is deterministic: the same log gives the same state on
 * every replica, bit for bit (`stateHash`), whether a replica applied the whole log or was
 * restored from a snapshot part-way.
 *
 * One entry is applied in this order:
 *  1. Time. The entry carries the proposer's clock; applied time is max(previous, that), so it
 *     never goes back, even across leader changes.
 *  2. What time ended: locks left pending by the previous entry are granted; keys whose TTL
 *     passed are deleted (cause `expired`); leases whose deadline passed end, deleting their
 *     keys (cause `lease`) and handing their locks to the next live waiter; lock waits that
 *     ran out are answered; counters whose window passed vanish; idle sessions are forgotten.
 *  3. The command, once per (client, seq): a retry is answered from the session table.
 * Every key mutation takes the next group revision and becomes one watch event.
 *
 * Commands are checked in full before anything changes, so a failed command (a compare, a
 * stale fence, a foreign lease, a size limit) changes nothing. Errors are results, not
 * exceptions: every replica computes the same one.
 */

import { Fnv1a64 } from '../engines/canonical-value.js';
import { Counters, type CountersConfig } from '../engines/counters.js';
import { type IndexDef, IndexManager, type Query, type QueryOptions } from '../engines/index-manager.js';
import { type LeaseLockConfig, LeaseLockEngine, type LeasesEnded } from '../engines/lease-lock.js';
import {
  type Compare,
  evaluateCompare,
  type ScanOptions,
  SegmentStore,
  type SegmentStoreLimits,
} from '../engines/segment-store.js';
import { TimeWheel } from '../engines/time-wheel.js';
import type { ChangeEvent, EventCause, Item } from '../engines/types.js';
import { type SubscribeRequest, type Subscription, WatchHub, type WatchOptions } from '../engines/watch.js';
import { DkvError, ErrorCode, isDkvError } from '../errors.js';
import { decodeEnvelope, packr, valueBytes } from './codec.js';
import type { Command, DeleteOp, Fence, PutOp, TxnOp } from './commands.js';
import { type ApplyResult, type SessionConfig, Sessions } from './sessions.js';
import type { SnapshotableStateMachine, StateSnapshot } from './snapshot.js';

export type { ApplyResult } from './sessions.js';

/** StateMachineConfig tunes one group's state machine; every field has a default. */
export interface StateMachineConfig {
  /** Resolution of the TTL wheel (ms); the node proposes a tick entry about this often while anything is pending. */
  readonly tickMs: number;
  readonly watch: WatchOptions;
  readonly sessions: Partial<SessionConfig>;
  readonly store: Partial<SegmentStoreLimits>;
  readonly leaseLock: LeaseLockConfig;
  readonly counters: CountersConfig;
  /** Indexes the group starts with (a `configure` command replaces them). */
  readonly indexes: readonly IndexDef[];
  /** Idle sessions are looked for at most this often (replicated ms). */
  readonly sessionSweepMs: number;
  /**
   * unsafeIgnoreSessions: TEST ONLY (the planted bug `double-apply`, src/node/test-hooks.ts).
   * A command whose (client, seq) the session table has already answered is applied again.
   */
  readonly unsafeIgnoreSessions: boolean;
}

export const STATE_MACHINE_DEFAULTS: StateMachineConfig = Object.freeze({
  tickMs: 100,
  watch: { historyMax: 10_000, bufferMax: 1000 },
  sessions: {},
  store: {},
  leaseLock: {},
  counters: {},
  indexes: [],
  sessionSweepMs: 60_000,
  unsafeIgnoreSessions: false,
});

/** Notification answers a request that waited (a queued lock acquire) once its outcome is known. */
export interface Notification {
  /** The waiting request: its session (client, seq), or the log index of a session-less one. */
  readonly client?: string;
  readonly seq?: number;
  readonly index?: number;
  readonly result: ApplyResult;
}

/** ApplyOutput is what one applied entry produced. */
export interface ApplyOutput {
  readonly result: ApplyResult;
  readonly notifications: Notification[];
  readonly events: ChangeEvent[];
}

/** LockAcquired is the answer to a granted acquire. */
export interface LockAcquired {
  readonly acquired: true;
  /** The lock (a waiter learns which of its acquires this answers). */
  readonly name: string;
  readonly token: number;
  readonly lease: number;
}

/** SNAPSHOT_FORMAT is the version of the snapshot stream this build writes and reads. */
export const SNAPSHOT_FORMAT = 1;
/** SNAPSHOT_CHUNK_BYTES is roughly how large each yielded snapshot chunk is. */
export const SNAPSHOT_CHUNK_BYTES = 256 * 1024;

/** Part tags in the snapshot stream, in the order they are written. */
const TAG = {
  header: 'h',
  store: 's',
  indexes: 'i',
  wheel: 'w',
  leaseLock: 'l',
  counters: 'c',
  sessions: 'S',
  watch: 'W',
} as const;

function ok(value: unknown): ApplyResult {
  return { ok: true, value };
}

function failed(err: DkvError): ApplyResult {
  return { ok: false, code: err.code, message: err.message };
}

function bad(message: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, message);
}

/** counterValue hands a counter out as a number when it is safe, else as a bigint. */
function counterValue(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** waiterIdOf names a lock acquire so its later outcome can find the request. */
function waiterIdOf(client: string | undefined, seq: number | undefined, index: number): string {
  return client === undefined ? `@${index}` : `${seq}@${client}`;
}

function parseWaiterId(id: string): { client?: string; seq?: number; index?: number } {
  const at = id.indexOf('@');
  if (at === 0) return { index: Number(id.slice(1)) };
  return { seq: Number(id.slice(0, at)), client: id.slice(at + 1) };
}

/** Effects collects what one entry did. */
class Effects {
  readonly events: ChangeEvent[] = [];
  readonly notifications: Notification[] = [];
}

export class GroupStateMachine implements SnapshotableStateMachine {
  private readonly config: StateMachineConfig;
  private applied = 0;
  /** Applied (replicated) time, ms. */
  private clock = 0;
  private nextSessionSweep = 0;
  private store: SegmentStore;
  private indexes: IndexManager;
  /** TTL deadlines of keys (ids are the keys themselves). */
  private wheel: TimeWheel;
  private leaseLock: LeaseLockEngine;
  private counters: Counters;
  private sessions: Sessions;
  private hub: WatchHub;

  constructor(config: Partial<StateMachineConfig> = {}) {
    this.config = { ...STATE_MACHINE_DEFAULTS, ...config };
    this.store = new SegmentStore(this.config.store);
    this.indexes = new IndexManager(IndexManager.validateDefs(this.config.indexes));
    this.wheel = new TimeWheel({ tickMs: this.config.tickMs }, 0);
    this.leaseLock = new LeaseLockEngine(this.config.leaseLock);
    this.counters = new Counters(this.config.counters);
    this.sessions = new Sessions(this.config.sessions);
    this.hub = new WatchHub(this.config.watch, 0);
  }

  /** appliedIndex is the last log index applied. */
  get appliedIndex(): number {
    return this.applied;
  }

  /** time is the applied (replicated) clock, ms. */
  get time(): number {
    return this.clock;
  }

  /** revision is the group revision: the number of key mutations so far. */
  get revision(): number {
    return this.store.revision;
  }

  /** stats counts what the state machine holds (for metrics and status). */
  stats(): { keys: number; bytes: number; watches: number; leases: number; locks: number } {
    return {
      keys: this.store.size,
      bytes: this.store.bytes,
      watches: this.hub.watcherCount,
      leases: this.leaseLock.leases.size,
      locks: this.leaseLock.locks.size,
    };
  }

  // ---------------------------------------------------------------- apply

  /**
   * skip records an entry that carries no command (Raft's empty entries and membership
   * changes) so that appliedIndex follows the log.
   */
  skip(index: number): void {
    this.checkIndex(index);
    this.applied = index;
  }

  /** apply applies one committed entry's data at `index`. */
  apply(index: number, data: Uint8Array): ApplyOutput {
    this.checkIndex(index);
    this.applied = index;
    const fx = new Effects();
    let result: ApplyResult;
    try {
      const env = decodeEnvelope(data);
      this.advance(env.time, index, fx);
      result = this.applyOnce(env.cmd, index, env.client, env.seq, env.ack, fx);
    } catch (err) {
      // Only a malformed entry gets here (the command itself answers with a result).
      if (!isDkvError(err)) throw err;
      result = failed(err);
    }
    if (fx.events.length > 0) this.hub.publish(fx.events);
    return { result, notifications: fx.notifications, events: fx.events };
  }

  private checkIndex(index: number): void {
    if (!Number.isSafeInteger(index) || index <= this.applied) {
      throw new Error(`GroupStateMachine: entry ${index} applied after ${this.applied}`);
    }
  }

  private applyOnce(
    cmd: Command,
    index: number,
    client: string | undefined,
    seq: number | undefined,
    ack: number | undefined,
    fx: Effects,
  ): ApplyResult {
    if (client === undefined || seq === undefined || ack === undefined)
      return this.run(cmd, index, undefined, undefined, fx);
    const seen = this.sessions.lookup(client, seq);
    // The planted bug `double-apply` skips these two answers: a retry is applied again, while
    // the table's bookkeeping (begin, record) goes on as usual.
    if (!this.config.unsafeIgnoreSessions) {
      if (seen.kind === 'duplicate') return seen.result;
      if (seen.kind === 'forgotten') {
        return failed(bad(`request ${seq} of client ${client} was answered and acknowledged already`));
      }
    }
    try {
      this.sessions.begin(client, seq, ack, this.clock);
    } catch (err) {
      if (!isDkvError(err)) throw err;
      return failed(err);
    }
    const result = this.run(cmd, index, client, seq, fx);
    this.sessions.record(client, seq, result);
    return result;
  }

  private run(
    cmd: Command,
    index: number,
    client: string | undefined,
    seq: number | undefined,
    fx: Effects,
  ): ApplyResult {
    try {
      return ok(this.execute(cmd, index, client, seq, fx));
    } catch (err) {
      if (!isDkvError(err)) throw err;
      return failed(err);
    }
  }

  /** advance moves applied time forward and applies everything that time ended. */
  private advance(entryTime: number, index: number, fx: Effects): void {
    const now = Math.max(this.clock, entryTime);
    this.clock = now;
    const ll = this.leaseLock;
    if (ll.locks.hasPending) this.notifyGrants(ll.locks.grantPending(index, now), fx);
    for (const key of this.wheel.advance(now)) {
      const item = this.store.get(key);
      if (item?.expiresAt !== undefined && item.expiresAt <= now) this.deleteKey(key, 'expired', fx);
    }
    this.leasesEnded(ll.expire(now, index), fx);
    for (const w of ll.locks.expireWaits(now)) {
      this.notify(w.waiterId, ok({ acquired: false, timedOut: true }), fx);
    }
    this.counters.expire(now);
    if (now >= this.nextSessionSweep) {
      this.sessions.expire(now);
      this.nextSessionSweep = now + this.config.sessionSweepMs;
    }
  }

  private leasesEnded(ended: LeasesEnded, fx: Effects): void {
    for (const lease of ended.leases) {
      for (const key of lease.keys) {
        if (this.store.get(key)?.lease === lease.id) this.deleteKey(key, 'lease', fx);
      }
    }
    this.notifyGrants(ended.grants, fx);
    for (const c of ended.cancelled) {
      this.notify(
        c.waiterId,
        failed(
          new DkvError(ErrorCode.LeaseNotFound, `lease ${c.lease} ended while waiting for lock ${c.name}`),
        ),
        fx,
      );
    }
  }

  private notifyGrants(
    grants: readonly { name: string; waiterId: string; token: number; lease: number }[],
    fx: Effects,
  ): void {
    for (const g of grants) {
      const acquired: LockAcquired = { acquired: true, name: g.name, token: g.token, lease: g.lease };
      this.notify(g.waiterId, ok(acquired), fx);
    }
  }

  private notify(waiterId: string, result: ApplyResult, fx: Effects): void {
    const who = parseWaiterId(waiterId);
    if (who.client !== undefined && who.seq !== undefined) this.sessions.update(who.client, who.seq, result);
    fx.notifications.push({ ...who, result });
  }

  private execute(
    cmd: Command,
    index: number,
    client: string | undefined,
    seq: number | undefined,
    fx: Effects,
  ): unknown {
    const now = this.clock;
    switch (cmd.op) {
      case 'put': {
        this.checkFence(cmd.fence);
        this.checkPutOp(cmd);
        return this.putKey(cmd, fx);
      }
      case 'delete': {
        this.checkFence(cmd.fence);
        this.checkDeleteOp(cmd);
        return this.deleteKey(cmd.key, 'write', fx);
      }
      case 'txn':
        return this.txn(cmd.compare, cmd.success, cmd.failure, cmd.fence, fx);
      case 'tick':
        return null;
      case 'lease.grant': {
        const l = this.leaseLock.leases.grant(index, cmd.ttlMs, now);
        return { id: l.id, ttlMs: l.ttlMs, deadline: l.deadline };
      }
      case 'lease.keepAlive':
        return this.leaseLock.leases.keepAliveMany(cmd.ids, now);
      case 'lease.revoke': {
        const lock = cmd.lock;
        const held = lock !== undefined && this.leaseLock.locks.holderToken(lock.name) === lock.token;
        this.leasesEnded(this.leaseLock.revoke(cmd.id, index, now), fx);
        return lock === undefined ? true : { released: held };
      }
      case 'lock.acquire': {
        if ('ttlMs' in cmd) {
          // A try with its own lease: granted here, and revoked at once if the lock is taken.
          const l = this.leaseLock.leases.grant(index, cmd.ttlMs, now);
          const r = this.leaseLock.locks.acquire(cmd.name, l.id, index, now, {
            waiterId: waiterIdOf(client, seq, index),
            waitMs: 0,
          });
          if (r.acquired) {
            return { acquired: true, name: cmd.name, token: r.token, lease: l.id, ttlMs: l.ttlMs };
          }
          this.leasesEnded(this.leaseLock.revoke(l.id, index, now), fx);
          return { acquired: false };
        }
        const waiterId = waiterIdOf(client, seq, index);
        const r = this.leaseLock.locks.acquire(cmd.name, cmd.lease, index, now, {
          waiterId,
          ...(cmd.waitMs !== undefined && { waitMs: cmd.waitMs }),
        });
        if (r.acquired) return { acquired: true, name: cmd.name, token: r.token, lease: cmd.lease };
        return r.queued ? { acquired: false, queued: true } : { acquired: false };
      }
      case 'lock.release': {
        const r = this.leaseLock.locks.release(cmd.name, cmd.token, index, now);
        if (r.grant) this.notifyGrants([r.grant], fx);
        return true;
      }
      case 'counter.add':
      case 'counter.set': {
        this.checkFence(cmd.fence);
        const opts = cmd.ttlMs === undefined ? undefined : { ttlMs: cmd.ttlMs };
        const v =
          cmd.op === 'counter.add'
            ? this.counters.add(cmd.name, cmd.delta, now, opts)
            : this.counters.set(cmd.name, cmd.value, now, opts);
        return counterValue(v);
      }
      case 'counter.delete':
        this.checkFence(cmd.fence);
        return this.counters.delete(cmd.name, now);
      case 'configure': {
        const defs = IndexManager.validateDefs(cmd.indexes);
        const next = new IndexManager(defs);
        for (let after: string | undefined; ; ) {
          const page = this.store.scan({ limit: 10_000, ...(after !== undefined && { after }) });
          for (const item of page.items) next.update(item.key, undefined, item);
          if (!page.more) break;
          after = page.items[page.items.length - 1]!.key;
        }
        this.indexes = next;
        return true;
      }
    }
  }

  private checkFence(fence: Fence | undefined): void {
    if (fence) this.leaseLock.locks.checkFence(fence, this.clock);
  }

  /** checkPutOp checks everything a put needs, changing nothing. */
  private checkPutOp(op: PutOp): void {
    const now = this.clock;
    const prev = this.store.get(op.key);
    if (op.lease !== undefined) this.leaseLock.leases.requireLive(op.lease, now);
    this.leaseLock.leases.checkWrite(prev?.lease, op.lease, now);
    this.store.checkPut(op.key, this.specOf(op));
  }

  private checkDeleteOp(op: DeleteOp): void {
    const prev = this.store.get(op.key);
    if (op.ifVersion !== undefined && (prev?.version ?? 0) !== op.ifVersion) {
      throw new DkvError(
        ErrorCode.VersionMismatch,
        `delete ${op.key}: version is ${prev?.version ?? 0}, not ${op.ifVersion}`,
      );
    }
    this.leaseLock.leases.checkWrite(prev?.lease, op.lease, this.clock);
  }

  private specOf(op: PutOp) {
    return {
      value: op.value,
      valueBytes: valueBytes(op.value),
      ...(op.ttlMs !== undefined && { expiresAt: this.clock + op.ttlMs }),
      ...(op.lease !== undefined && { lease: op.lease }),
      ...(op.labels !== undefined && { labels: op.labels }),
      ...(op.ifVersion !== undefined && { ifVersion: op.ifVersion }),
      ...(op.ifAbsent !== undefined && { ifAbsent: op.ifAbsent }),
    };
  }

  /** putKey writes a checked put and keeps every engine in step. */
  private putKey(op: PutOp, fx: Effects): Item {
    const { item, prev } = this.store.put(op.key, this.specOf(op));
    this.indexes.update(op.key, prev, item);
    const leases = this.leaseLock.leases;
    if (prev?.lease !== undefined && prev.lease !== item.lease) leases.detachKey(prev.lease, op.key);
    if (item.lease !== undefined && item.lease !== prev?.lease) leases.attachKey(item.lease, op.key);
    if (item.expiresAt !== undefined) this.wheel.schedule(op.key, item.expiresAt);
    else if (prev?.expiresAt !== undefined) this.wheel.cancel(op.key);
    fx.events.push({
      type: 'put',
      cause: 'write',
      key: op.key,
      value: item.value,
      revision: this.store.revision,
      item,
      ...(prev && { prev }),
    });
    return item;
  }

  /** deleteKey deletes a key (if present) and keeps every engine in step. */
  private deleteKey(key: string, cause: EventCause, fx: Effects): boolean {
    const prev = this.store.delete(key);
    if (!prev) return false;
    this.indexes.update(key, prev, undefined);
    if (prev.lease !== undefined) this.leaseLock.leases.detachKey(prev.lease, key);
    if (prev.expiresAt !== undefined) this.wheel.cancel(key);
    fx.events.push({ type: 'delete', cause, key, revision: this.store.revision, prev });
    return true;
  }

  private txn(
    compare: readonly Compare[],
    successOps: readonly TxnOp[],
    failureOps: readonly TxnOp[],
    fence: Fence | undefined,
    fx: Effects,
  ): { succeeded: boolean; results: unknown[] } {
    this.checkFence(fence);
    const now = this.clock;
    const succeeded = compare.every((c) => evaluateCompare(this.store, c, now));
    const ops = succeeded ? successOps : failureOps;
    const written = new Set<string>();
    for (const op of ops) {
      if (op.op === 'get') continue;
      if (written.has(op.key)) throw bad(`txn writes ${op.key} twice`);
      written.add(op.key);
    }
    // Check every write first, so a failing one leaves the whole transaction unapplied.
    for (const op of ops) {
      if (op.op === 'put') this.checkPutOp(op);
      else if (op.op === 'delete') this.checkDeleteOp(op);
    }
    const results: unknown[] = [];
    for (const op of ops) {
      if (op.op === 'put') results.push(this.putKey(op, fx));
      else if (op.op === 'delete') results.push(this.deleteKey(op.key, 'write', fx));
      else results.push(this.store.getLive(op.key, now) ?? null);
    }
    return { succeeded, results };
  }

  // ---------------------------------------------------------------- reads

  /**
   * Reads see the applied state. `now` (default: applied time) hides keys whose deadline has
   * passed even before the tick entry that deletes them is applied, so a TTL'd key is never
   * returned after its deadline; the node passes its own clock when it is ahead.
   */
  private readTime(now: number | undefined): number {
    return Math.max(this.clock, now ?? 0);
  }

  /**
   * deadLeaseKeys: the keys bound to leases already past their deadline at `t` whose expiry
   * entry has not been applied yet. Like a TTL'd key past its deadline, such a key is hidden
   * from reads (a lease's key is never returned after the lease's deadline). Usually empty.
   */
  private deadLeaseKeys(t: number): Set<string> | undefined {
    const next = this.leaseLock.leases.nextDeadline();
    if (next === undefined || next > t) return undefined;
    const dead = this.leaseLock.leases.deadKeys(t);
    return dead.size === 0 ? undefined : dead;
  }

  get(key: string, now?: number): Item | undefined {
    const t = this.readTime(now);
    if (this.deadLeaseKeys(t)?.has(key)) return undefined;
    return this.store.getLive(key, t);
  }

  scan(opts: Omit<ScanOptions, 'now'>, now?: number): { items: Item[]; more: boolean } {
    const t = this.readTime(now);
    const r = this.store.scan({ ...opts, now: t });
    const dead = this.deadLeaseKeys(t);
    return dead === undefined ? r : { items: r.items.filter((i) => !dead.has(i.key)), more: r.more };
  }

  count(opts: { prefix?: string; start?: string; end?: string }, now?: number): number {
    const t = this.readTime(now);
    const n = this.store.count({ ...opts, now: t });
    const dead = this.deadLeaseKeys(t);
    if (dead === undefined) return n;
    let hidden = 0;
    for (const k of dead) {
      if (opts.prefix !== undefined && !k.startsWith(opts.prefix)) continue;
      if (opts.start !== undefined && k < opts.start) continue;
      if (opts.end !== undefined && k >= opts.end) continue;
      if (this.store.getLive(k, t) !== undefined) hidden++;
    }
    return n - hidden;
  }

  query(q: Query, opts: QueryOptions, now?: number) {
    const t = this.readTime(now);
    const dead = this.deadLeaseKeys(t);
    const live = this.store.liveKeys(t);
    const keys =
      dead === undefined
        ? live
        : {
            *keysWithPrefix(prefix: string, after?: string): Iterable<string> {
              for (const k of live.keysWithPrefix(prefix, after)) if (!dead.has(k)) yield k;
            },
            has: (k: string) => !dead.has(k) && live.has(k),
          };
    const r = this.indexes.query(q, opts, keys);
    const items: Item[] = [];
    for (const k of r.keys) {
      if (dead?.has(k)) continue;
      const item = this.store.getLive(k, t);
      if (item) items.push(item);
    }
    return {
      items,
      ...(r.count !== undefined && { count: r.count }),
      ...(r.next && { next: r.next }),
      plan: r.plan,
    };
  }

  indexDefs(): readonly IndexDef[] {
    return this.indexes.defs();
  }

  counterGet(name: string, now?: number): number | bigint {
    return counterValue(this.counters.get(name, this.readTime(now)));
  }

  leaseTimeToLive(id: number, now?: number) {
    return this.leaseLock.leases.timeToLive(id, this.readTime(now));
  }

  leaseList() {
    return this.leaseLock.leases.list();
  }

  lockDescribe(name: string, now?: number) {
    return this.leaseLock.locks.describe(name, this.readTime(now));
  }

  /** watch subscribes to the group's changes (see WatchHub.subscribe). Local, never replicated. */
  watch(req: SubscribeRequest, onReady?: () => void): Subscription {
    const store = this.store;
    const now = this.clock;
    const source = {
      currentRevision: store.revision,
      get: (key: string) => store.getLive(key, now),
      itemsWithPrefix: (prefix: string) => {
        const out: Item[] = [];
        for (let after: string | undefined; ; ) {
          const page = store.scan({ prefix, now, limit: 10_000, ...(after !== undefined && { after }) });
          out.push(...page.items);
          if (!page.more || page.items.length === 0) break;
          after = page.items[page.items.length - 1]!.key;
        }
        return out;
      },
    };
    return this.hub.subscribe(req, source, onReady);
  }

  /** cancelWatchers cuts off every watcher (this state machine is being replaced). */
  cancelWatchers(message: string): void {
    this.hub.cancelAll(ErrorCode.Compacted, message);
  }

  /**
   * nextDeadline is the earliest replicated time at which something pending (a TTL, a lease,
   * a lock wait, a counter window, a pending lock hand-off) needs an entry to be applied; the
   * leader proposes a tick entry once its clock reaches it. Undefined when nothing is pending.
   */
  nextDeadline(): number | undefined {
    if (this.leaseLock.locks.hasPending) return this.clock;
    let best: number | undefined;
    for (const d of [
      this.wheel.nextDeadline(),
      this.leaseLock.nextDeadline(),
      this.counters.nextDeadline(),
    ]) {
      if (d !== undefined && (best === undefined || d < best)) best = d;
    }
    return best;
  }

  // ---------------------------------------------------------------- snapshot

  private header(): Record<string, unknown> {
    return {
      format: SNAPSHOT_FORMAT,
      index: this.applied,
      time: this.clock,
      nextSessionSweep: this.nextSessionSweep,
    };
  }

  /** snapshot captures the state as of appliedIndex, as a stream of chunks (a frozen view). */
  snapshot(): StateSnapshot {
    const sources: [string, Iterable<unknown>][] = [
      [TAG.header, [this.header()]],
      [TAG.store, this.store.snapshot().parts()],
      [TAG.indexes, this.indexes.snapshot().parts()],
      [TAG.wheel, this.wheel.snapshot().parts()],
      [TAG.leaseLock, this.leaseLock.snapshot().parts()],
      [TAG.counters, this.counters.snapshot().parts()],
      [TAG.sessions, [this.sessions.rows()]],
      [TAG.watch, this.hub.snapshot().parts()],
    ];
    // Engines' snapshot() calls above froze their views; the generators below only read them.
    const frozen = sources.map(([tag, parts]) => [tag, [...parts]] as const);
    return {
      index: this.applied,
      *chunks() {
        let buf: Uint8Array[] = [];
        let size = 0;
        for (const [tag, parts] of frozen) {
          for (const part of parts) {
            const body = packr.pack([tag, part]);
            const frame = new Uint8Array(4 + body.length);
            new DataView(frame.buffer).setUint32(0, body.length);
            frame.set(body, 4);
            buf.push(frame);
            size += frame.length;
            if (size >= SNAPSHOT_CHUNK_BYTES) {
              yield concat(buf, size);
              buf = [];
              size = 0;
            }
          }
        }
        if (size > 0) yield concat(buf, size);
      },
    };
  }

  /**
   * restore replaces the whole state with a snapshot image as of `index`. The image is checked
   * in full and the new engines built aside; malformed input throws CORRUPTED and leaves the
   * old state untouched. Watchers of the old state are cut off (they resume with a fresh
   * snapshot).
   */
  restore(index: number, chunks: Iterable<Uint8Array>): void {
    const parts = new Map<string, unknown[]>();
    for (const [tag, part] of readFrames(chunks)) {
      let list = parts.get(tag);
      if (!list) {
        list = [];
        parts.set(tag, list);
      }
      list.push(part);
    }
    const only = (tag: string): unknown[] => parts.get(tag) ?? [];
    const corrupted = (what: string): DkvError =>
      new DkvError(ErrorCode.Corrupted, `state snapshot at ${index}: ${what}`, { index });
    const [header] = only(TAG.header) as [Record<string, unknown> | undefined];
    if (!header || header.format !== SNAPSHOT_FORMAT) throw corrupted('missing or unknown header');
    if (header.index !== index) throw corrupted(`it was taken at ${String(header.index)}`);
    const time = header.time;
    const sweep = header.nextSessionSweep;
    if (!Number.isSafeInteger(time) || !Number.isSafeInteger(sweep)) throw corrupted('bad header');
    for (const tag of parts.keys()) {
      if (!Object.values(TAG).includes(tag as never)) throw corrupted(`unknown part ${tag}`);
    }
    const store = SegmentStore.restore(only(TAG.store), this.config.store);
    const indexes = IndexManager.restore(only(TAG.indexes));
    const wheel = TimeWheel.restore(only(TAG.wheel), { tickMs: this.config.tickMs }, time as number);
    const leaseLock = LeaseLockEngine.restore(only(TAG.leaseLock), this.config.leaseLock);
    const counters = Counters.restore(only(TAG.counters), this.config.counters);
    const sessionParts = only(TAG.sessions);
    if (sessionParts.length !== 1) throw corrupted('bad session table');
    const sessions = Sessions.fromRows(sessionParts[0], this.config.sessions);
    const hub = WatchHub.restore(only(TAG.watch), this.config.watch);
    if (hub.revision !== store.revision) throw corrupted('watch and store revisions differ');
    this.hub.cancelAll(
      ErrorCode.Compacted,
      'the replica was restored from a snapshot; resume from your last revision',
    );
    this.store = store;
    this.indexes = indexes;
    this.wheel = wheel;
    this.leaseLock = leaseLock;
    this.counters = counters;
    this.sessions = sessions;
    this.hub = hub;
    this.clock = time as number;
    this.nextSessionSweep = sweep as number;
    this.applied = index;
  }

  /**
   * stateHash is a digest of the whole replicated state (every engine, time, sessions), for
   * determinism tests: two replicas that applied the same log must agree on it.
   */
  stateHash(): string {
    const h = new Fnv1a64();
    h.str(this.store.stateHash());
    const feed = (parts: Iterable<unknown>): void => {
      for (const p of parts) h.bytes(packr.pack(p));
    };
    feed([this.header(), this.sessions.rows()]);
    feed(this.indexes.snapshot().parts());
    feed(this.wheel.snapshot().parts());
    feed(this.leaseLock.snapshot().parts());
    feed(this.counters.snapshot().parts());
    feed(this.hub.snapshot().parts());
    return h.digest();
  }
}

function concat(parts: readonly Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** readFrames splits a snapshot stream into its (tag, part) frames, whatever the chunk boundaries. */
function* readFrames(chunks: Iterable<Uint8Array>): Generator<[string, unknown]> {
  let pending = new Uint8Array(0);
  const corrupted = (what: string): DkvError => new DkvError(ErrorCode.Corrupted, `state snapshot: ${what}`);
  for (const chunk of chunks) {
    const buf = pending.length === 0 ? chunk : concat([pending, chunk], pending.length + chunk.length);
    let at = 0;
    while (at + 4 <= buf.length) {
      const len = new DataView(buf.buffer, buf.byteOffset + at, 4).getUint32(0);
      if (at + 4 + len > buf.length) break;
      let frame: unknown;
      try {
        frame = packr.unpack(buf.subarray(at + 4, at + 4 + len));
      } catch (err) {
        throw new DkvError(
          ErrorCode.Corrupted,
          'state snapshot: a part is not valid msgpack',
          {},
          { cause: err },
        );
      }
      if (!Array.isArray(frame) || frame.length !== 2 || typeof frame[0] !== 'string')
        throw corrupted('bad frame');
      yield [frame[0], frame[1]];
      at += 4 + len;
    }
    pending = buf.slice(at);
  }
  if (pending.length > 0) throw corrupted('truncated');
}
