/**
 * Watch (issue 6): an async iterable of WatchEvents over every group a watch covers, that
 * resumes across failover and leader changes with no gap and no duplicate.
 *
 * Shape:
 * - A key watch covers the key's group; a prefix watch covers every group (or the one group of
 *   a prefix holding a complete {hash tag}). Each group gets its own server stream (`watch`
 *   op) on a replica of the group: the leader for an initial snapshot (so it holds every write
 *   acknowledged before the watch), else the first reachable one in the `servers` order
 *   (events are committed entries, the same on every replica; a replica that is behind waits
 *   before it delivers). Their events are merged as they come: ordered and unique per group,
 *   interleaved across groups.
 * - Per group the client keeps `last`, the revision of the last event (or snapshot) it
 *   accepted. When a group's stream fails (a dropped connection, NOT_LEADER, COMPACTED after
 *   the replica installed a snapshot, SLOW_CONSUMER, a node stopping) it reopens it after a
 *   short backoff (50 ms doubling to 1 s, jittered; none after a SLOW_CONSUMER cut of a
 *   stream that delivered), on any replica, with `fromRevision: last`, and drops any event
 *   with revision <= last. The replica replays what followed from its history, or waits if
 *   it is behind, so nothing is lost and nothing repeats. (The server's `lastRevision` in a
 *   failure's details is not used: the client's own `last` is exact.)
 * - The starting point is fixed per group before the first stream opens: `snapshot: true`
 *   starts from the snapshot's revision; `fromRevision` from that revision; a live watch
 *   (neither) first learns the group's current revision with a probe (a snapshot watch of an
 *   unused key of the group: an empty snapshot that carries the revision), so even a live
 *   watch whose first stream fails before any event resumes with no gap. `ready` resolves
 *   once every group's starting point is fixed: a write that completes after it is seen.
 * - Snapshot items are delivered as `put` events with `cause: 'snapshot'` and the snapshot's
 *   revision (the item, with its own modRevision, is in `item`).
 * - A compacted resume (the revision to resume from has left the replica's history window)
 *   gets a fresh snapshot from the server. The consumer is told in two ways: `onCompacted`
 *   (if given) is called, in order, just before that group's snapshot events are handed out
 *   (also when the snapshot is empty), and those events carry `compacted: true`. A consumer
 *   keeping a view of the watched keys drops the group's keys on onCompacted and takes the
 *   snapshot events that follow.
 * - Bounded memory: events wait for the consumer in a queue of `bufferMax` (default 1000);
 *   when it is full the group streams stop reading, their transport buffers fill, and the
 *   client or the server cuts them (SLOW_CONSUMER). Once the consumer has made room the
 *   streams resume from their last revision (replayed from history, or a compacted snapshot
 *   if the consumer fell behind the whole window).
 * - `close()` ends the iteration quietly; an aborted `signal` makes it throw CANCELLED (queued
 *   events are dropped). Both close the server streams. A failure the watch cannot recover
 *   from (INVALID_ARGUMENT, STORE_NOT_FOUND, a closed client) is thrown by the iterator after
 *   the queued events.
 * - `revisions()` tells, per group, the revision of the last event handed out (a snapshot
 *   counts once all its events are): pass it back as `fromRevision` to resume a later watch.
 */
import { DkvError, ErrorCode, isDkvError } from '../errors.js';
import { slotOf } from '../transport/slots.js';
import type { ClientCore, ClientStream } from './core.js';
import { userLeaseItem } from './leases.js';
import { groupsFor } from './scan.js';
import type { Item } from './types.js';

/** WatchEvent is one change, as CONTRACT.md describes it, with a few extra fields. */
export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly cause: 'write' | 'expired' | 'lease' | 'snapshot';
  readonly key: string;
  readonly value?: unknown;
  /** The group revision of the change; for snapshot events, the snapshot's revision. */
  readonly revision: number;
  readonly group: number;
  /** True on the snapshot events of a compacted resume (see onCompacted). */
  readonly compacted?: true;
  /** The item after a put (version, modRevision, lease, ...); for snapshot events the item. */
  readonly item?: Item;
  /** The item before the change, when the key existed. */
  readonly prev?: Item;
}

/** CompactedInfo tells a consumer that a group's resume got a fresh snapshot instead of events. */
export interface CompactedInfo {
  readonly group: number;
  /** The snapshot's revision: its events follow, then live events after it. */
  readonly revision: number;
  /** How many snapshot events follow. */
  readonly items: number;
}

export interface WatchOptions {
  /** Watch one key (exactly one of key and prefix). */
  readonly key?: string;
  /** Watch every key starting with this ('' watches every key). */
  readonly prefix?: string;
  /**
   * Resume after this revision: events with a larger revision follow. Revisions are per group:
   * a number applies to every group the watch covers; a record gives one per group (a group
   * left out starts live). Exclusive with `snapshot`.
   */
  readonly fromRevision?: number | Readonly<Record<number, number>>;
  /** Start with the current items as `cause: 'snapshot'` put events, then every change after. */
  readonly snapshot?: boolean;
  readonly signal?: AbortSignal;
  /** Called, in order with the events, when a group's resume was compacted (see the file comment). */
  readonly onCompacted?: (info: CompactedInfo) => void;
  /** Events queued for the consumer before the streams stop reading (default 1000). */
  readonly bufferMax?: number;
}

/** WatchStream is an async iterable of events that close() or the signal stops. One consumer at a time. */
export interface WatchStream extends AsyncIterable<WatchEvent> {
  /** Resolves once every group's starting point is fixed (rejects if the watch fails first). */
  readonly ready: Promise<void>;
  /** closed is true once close() was called, the signal aborted, or the watch failed. */
  readonly closed: boolean;
  /** reconnects counts the group streams reopened after a failure. */
  readonly reconnects: number;
  /** revisions is, per group, the revision of the last event handed out: a resume point. */
  revisions(): Record<number, number>;
  /** close stops the watch and its server streams; iteration ends quietly. Idempotent. */
  close(): void;
}

const BUFFER_MAX_DEFAULT = 1000;
/** STREAM_BUFFER_MAX is how far one group stream's transport buffer may run ahead of the merge. */
const STREAM_BUFFER_MAX = 1024;
const RETRY_BASE_MS = 50;
const RETRY_MAX_MS = 1000;
/** FATAL codes end the watch: retrying cannot help. */
const FATAL: ReadonlySet<string> = new Set([
  ErrorCode.InvalidArgument,
  ErrorCode.StoreNotFound,
  ErrorCode.Unauthenticated,
  ErrorCode.PermissionDenied,
  ErrorCode.QuotaExceeded,
  ErrorCode.Unsupported,
  ErrorCode.TooLarge,
]);

function toDkvError(err: unknown): DkvError {
  if (isDkvError(err)) return err;
  return new DkvError(
    ErrorCode.Unavailable,
    err instanceof Error ? err.message : String(err),
    {},
    { cause: err },
  );
}

function invalid(message: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, message);
}

function isRevision(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Feed is one group's stream and its place. */
interface Feed {
  readonly group: number;
  /** Invariant: every matching event of the group with revision <= last has been queued (or is in a queued snapshot), none after it. */
  last: number | undefined;
  /** The initial snapshot is still to come (asked again if the stream fails before it). */
  wantSnapshot: boolean;
  /** The group's starting point is fixed. */
  started: boolean;
  stream: ClientStream | undefined;
}

/** Entry is one step of the consumer's queue: an event, and/or a position or compaction notice. */
interface Entry {
  readonly group: number;
  readonly event?: WatchEvent;
  /** The group's resume point once this entry is handed out. */
  readonly pos?: number;
  readonly compacted?: CompactedInfo;
}

/** Watch implements WatchStream (see the file comment). */
class Watch implements WatchStream, AsyncIterator<WatchEvent> {
  readonly ready: Promise<void>;
  private readyResolve!: () => void;
  private readyReject!: (err: unknown) => void;
  private readonly core: ClientCore;
  private readonly opts: WatchOptions;
  private readonly bufferMax: number;
  private readonly ctrl = new AbortController();
  private readonly feeds = new Map<number, Feed>();
  private readonly delivered = new Map<number, number>();
  /** Queued entries are queue[head..]. Invariant: events queued <= bufferMax + one server message. */
  private queue: (Entry | undefined)[] = [];
  private head = 0;
  private waiter: { resolve(r: IteratorResult<WatchEvent>): void; reject(err: unknown): void } | undefined;
  private roomWaiters: (() => void)[] = [];
  private state: 'open' | 'closed' | 'failed' = 'open';
  /** The error to throw once the queue is drained; cleared once thrown. */
  private failure: DkvError | undefined;
  private reopened = 0;
  private readonly onAbort = (): void => this.fail(aborted(this.opts.signal), true);

  constructor(core: ClientCore, opts: WatchOptions) {
    this.core = core;
    this.opts = opts;
    this.bufferMax = opts.bufferMax ?? BUFFER_MAX_DEFAULT;
    this.ready = new Promise<void>((resolve, reject) => {
      this.readyResolve = resolve;
      this.readyReject = reject;
    });
    this.ready.catch(() => undefined); // a caller who never awaits it must not see an unhandled rejection
    if (opts.signal?.aborted) {
      this.fail(aborted(opts.signal), true);
      return;
    }
    opts.signal?.addEventListener('abort', this.onAbort, { once: true });
    void this.start();
  }

  get closed(): boolean {
    return this.state !== 'open';
  }

  get reconnects(): number {
    return this.reopened;
  }

  revisions(): Record<number, number> {
    return Object.fromEntries(this.delivered);
  }

  close(): void {
    if (this.state !== 'open') return;
    this.state = 'closed';
    this.shutdown();
    this.queue = [];
    this.head = 0;
    this.readyResolve();
    this.settleWaiter();
  }

  [Symbol.asyncIterator](): AsyncIterator<WatchEvent> {
    return this;
  }

  next(): Promise<IteratorResult<WatchEvent>> {
    for (;;) {
      if (this.head < this.queue.length) {
        const e = this.queue[this.head]!;
        this.queue[this.head++] = undefined;
        if (this.head === this.queue.length) {
          this.queue = [];
          this.head = 0;
        } else if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
          this.queue = this.queue.slice(this.head);
          this.head = 0;
        }
        this.wakeRoom();
        if (e.pos !== undefined) this.delivered.set(e.group, e.pos);
        if (e.compacted !== undefined && this.opts.onCompacted !== undefined) {
          try {
            this.opts.onCompacted(e.compacted);
          } catch (err) {
            this.close();
            return Promise.reject(err);
          }
        }
        if (e.event !== undefined) return Promise.resolve({ value: e.event, done: false });
        continue;
      }
      const failure = this.failure;
      if (failure !== undefined) {
        this.failure = undefined;
        return Promise.reject(failure);
      }
      if (this.state !== 'open') return Promise.resolve({ value: undefined, done: true });
      if (this.waiter !== undefined) return Promise.reject(new Error('WatchStream: one consumer at a time'));
      return new Promise((resolve, reject) => {
        this.waiter = { resolve, reject };
      });
    }
  }

  return(): Promise<IteratorResult<WatchEvent>> {
    this.close();
    this.failure = undefined;
    return Promise.resolve({ value: undefined, done: true });
  }

  // ---- the group streams ----

  private async start(): Promise<void> {
    let groups: number[] | undefined;
    let delay = RETRY_BASE_MS;
    while (groups === undefined && this.state === 'open') {
      try {
        groups =
          this.opts.key !== undefined
            ? [await this.core.groupOfKey(this.opts.key, { signal: this.ctrl.signal })]
            : await groupsFor(this.core, this.opts.prefix, { signal: this.ctrl.signal });
      } catch (err) {
        const e = toDkvError(err);
        if (this.state !== 'open') return;
        if (FATAL.has(e.code) || e.code === ErrorCode.Cancelled) return this.fail(e, false);
        await this.sleep(delay);
        delay = Math.min(RETRY_MAX_MS, delay * 2);
      }
    }
    if (groups === undefined) return;
    const from = this.opts.fromRevision;
    for (const group of groups) {
      const last = typeof from === 'number' ? from : from?.[group];
      this.feeds.set(group, {
        group,
        last,
        wantSnapshot: this.opts.snapshot === true,
        started: false,
        stream: undefined,
      });
      if (last !== undefined) this.delivered.set(group, last);
    }
    for (const f of this.feeds.values()) void this.pump(f);
  }

  /** pump keeps one group's stream open until the watch ends, reopening it after failures. */
  private async pump(f: Feed): Promise<void> {
    let delay = RETRY_BASE_MS;
    while (this.state === 'open') {
      await this.room();
      if (this.state !== 'open') return;
      let stream: ClientStream | undefined;
      let progressed = false;
      let slow = false;
      try {
        if (f.last === undefined && !f.wantSnapshot) {
          f.last = await this.probe(f.group);
          // Nothing after it is queued yet: a later watch resumes from here.
          if (!this.delivered.has(f.group)) this.delivered.set(f.group, f.last);
        }
        if (this.state !== 'open') return;
        const args: Record<string, unknown> =
          this.opts.key !== undefined ? { key: this.opts.key } : { prefix: this.opts.prefix ?? '' };
        if (f.wantSnapshot) args.snapshot = true;
        else args.fromRevision = f.last;
        // A snapshot comes from the leader, so it holds every write acknowledged before the
        // watch; resumes go by revision, which any replica serves (waiting if it is behind).
        stream = await this.open(f.group, args, f.wantSnapshot ? 'leader' : 'local', STREAM_BUFFER_MAX);
        if (this.state !== 'open') return;
        f.stream = stream;
        if (!f.wantSnapshot) this.started(f);
        for await (const m of stream) {
          progressed = true;
          delay = RETRY_BASE_MS;
          await this.room();
          if (this.state !== 'open') break;
          this.accept(f, m);
        }
      } catch (err) {
        if (this.state !== 'open') return;
        const e = toDkvError(err);
        if (FATAL.has(e.code)) return this.fail(e, false);
        if (e.code === ErrorCode.NotLeader) this.core.noteRedirect(f.group, e);
        slow = e.code === ErrorCode.SlowConsumer;
      } finally {
        f.stream = undefined;
        stream?.close();
      }
      if (this.state !== 'open') return;
      this.reopened++;
      // A stream cut for falling behind after delivering something is reopened at once (the
      // consumer has made room): the server is fine. Anything else backs off.
      if (slow && progressed) continue;
      await this.sleep(delay * (0.75 + 0.5 * Math.random()));
      delay = Math.min(RETRY_MAX_MS, delay * 2);
    }
  }

  /**
   * open opens a watch stream on a replica of `group`. openStream fails with CANCELLED only
   * when the client is closed (or this watch is over): that ends the watch. (A stream that
   * ends with CANCELLED later, e.g. its connection was dropped by the client, is reopened.)
   */
  private async open(
    group: number,
    args: Record<string, unknown>,
    target: 'leader' | 'local',
    bufferMax: number,
  ): Promise<ClientStream> {
    try {
      return await this.core.openStream(group, 'watch', args, target, {
        signal: this.ctrl.signal,
        bufferMax,
      });
    } catch (err) {
      const e = toDkvError(err);
      if (e.code === ErrorCode.Cancelled) this.fail(e, false);
      throw e;
    }
  }

  /**
   * probe learns a group's current revision: a snapshot watch of one key of the group (a
   * watch names its group by its key, so the key must hash into the group) that nobody
   * uses; its snapshot is (almost surely) empty, and only its revision is read.
   */
  private async probe(group: number): Promise<number> {
    const key = await probeKeyOf(this.core, group, this.ctrl.signal);
    const s = await this.open(group, { key, snapshot: true }, 'leader', 4);
    try {
      for await (const m of s) {
        const msg = m as { kind?: unknown; revision?: unknown };
        if (msg?.kind === 'snapshot' && isRevision(msg.revision)) return msg.revision;
        break;
      }
    } finally {
      s.close();
    }
    throw new DkvError(ErrorCode.Unavailable, `group ${group}: the revision probe got no snapshot`);
  }

  /** accept queues what one server message says, dropping what was already queued. */
  private accept(f: Feed, raw: unknown): void {
    const m = raw as Record<string, unknown> | null;
    if (typeof m !== 'object' || m === null)
      throw new DkvError(ErrorCode.Unavailable, `group ${f.group}: malformed watch message`);
    if (m.kind === 'event') {
      const ev = m.event as Record<string, unknown> | null;
      if (typeof ev !== 'object' || ev === null || !isRevision(ev.revision) || typeof ev.key !== 'string')
        throw new DkvError(ErrorCode.Unavailable, `group ${f.group}: malformed watch event`);
      if (f.last !== undefined && ev.revision <= f.last) return; // a replay of what was queued
      if (f.wantSnapshot) return; // cannot happen: a snapshot watch starts with its snapshot
      const event: WatchEvent = {
        type: ev.type === 'delete' ? 'delete' : 'put',
        cause: ev.cause as WatchEvent['cause'],
        key: ev.key,
        ...(ev.value !== undefined && { value: ev.value }),
        revision: ev.revision,
        group: f.group,
        ...(ev.item !== undefined && { item: userLeaseItem(ev.item as Item, f.group) }),
        ...(ev.prev !== undefined && { prev: userLeaseItem(ev.prev as Item, f.group) }),
      };
      f.last = ev.revision;
      this.push({ group: f.group, event, pos: ev.revision });
      return;
    }
    if (m.kind === 'snapshot') {
      const revision = m.revision;
      const items = m.items;
      if (!isRevision(revision) || !Array.isArray(items))
        throw new DkvError(ErrorCode.Unavailable, `group ${f.group}: malformed watch snapshot`);
      const initial = f.wantSnapshot;
      if (!initial && m.compacted !== true) return; // not asked for: cannot happen
      if (!initial && f.last !== undefined && revision <= f.last) return;
      const compacted = !initial;
      if (compacted)
        this.push({ group: f.group, compacted: { group: f.group, revision, items: items.length } });
      for (let i = 0; i < items.length; i++) {
        const item = userLeaseItem(items[i] as Item, f.group);
        const event: WatchEvent = {
          type: 'put',
          cause: 'snapshot',
          key: item.key,
          value: item.value,
          revision,
          group: f.group,
          ...(compacted && { compacted: true as const }),
          item,
        };
        this.push({ group: f.group, event, ...(i === items.length - 1 && { pos: revision }) });
      }
      if (items.length === 0) this.push({ group: f.group, pos: revision });
      f.last = revision;
      f.wantSnapshot = false;
      this.started(f);
      return;
    }
    if (m.kind === 'cancelled') {
      throw new DkvError(
        (typeof m.code === 'string' ? m.code : ErrorCode.Unavailable) as ErrorCode,
        typeof m.message === 'string' ? m.message : 'watch cancelled',
      );
    }
    throw new DkvError(ErrorCode.Unavailable, `group ${f.group}: unknown watch message kind`);
  }

  private started(f: Feed): void {
    if (f.started) return;
    f.started = true;
    for (const x of this.feeds.values()) if (!x.started) return;
    this.readyResolve();
  }

  // ---- the consumer's queue ----

  private push(e: Entry): void {
    this.queue.push(e);
    const w = this.waiter;
    if (w !== undefined) {
      this.waiter = undefined;
      this.next().then(w.resolve, w.reject);
    }
  }

  /** room resolves when the queue has room for more events (or the watch is over). */
  private room(): Promise<void> | undefined {
    if (this.state !== 'open' || this.queue.length - this.head < this.bufferMax) return undefined;
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  private wakeRoom(): void {
    if (this.roomWaiters.length === 0) return;
    if (this.state === 'open' && this.queue.length - this.head >= this.bufferMax) return;
    const ws = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of ws) w();
  }

  private settleWaiter(): void {
    const w = this.waiter;
    if (w === undefined) return;
    this.waiter = undefined;
    this.next().then(w.resolve, w.reject);
  }

  /** fail ends the watch with `err`, thrown after the queued events (or at once, dropping them). */
  private fail(err: DkvError, now: boolean): void {
    if (this.state !== 'open') return;
    this.state = 'failed';
    this.failure = err;
    if (now) {
      this.queue = [];
      this.head = 0;
    }
    this.shutdown();
    this.readyReject(err);
    this.settleWaiter();
  }

  private shutdown(): void {
    this.opts.signal?.removeEventListener('abort', this.onAbort);
    this.ctrl.abort();
    for (const f of this.feeds.values()) {
      f.stream?.close();
      f.stream = undefined;
    }
    this.wakeRoom();
  }

  private sleep(ms: number): Promise<void> {
    if (this.state !== 'open') return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        this.ctrl.signal.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.ctrl.signal.addEventListener('abort', done, { once: true });
    });
  }
}

/**
 * probeKeyOf finds a key that hashes into one of `group`'s slots: the first of
 * "\u0000dkv-probe-0", "-1", ... that does (a few tries per group on average).
 */
async function probeKeyOf(core: ClientCore, group: number, signal: AbortSignal): Promise<string> {
  const info = (await core.groups({ signal })).find((g) => g.id === group);
  if (info === undefined)
    throw new DkvError(ErrorCode.Unavailable, `the partition map has no group ${group}`);
  const owns = (slot: number): boolean => info.slots.some(([from, to]) => slot >= from && slot < to);
  for (let i = 0; i < 1_000_000; i++) {
    const key = `\u0000dkv-probe-${i}`;
    if (owns(slotOf(key))) return key;
  }
  throw new DkvError(ErrorCode.Unavailable, `group ${group} owns no slot`);
}

function aborted(signal: AbortSignal | undefined): DkvError {
  const reason: unknown = signal?.reason;
  return new DkvError(
    ErrorCode.Cancelled,
    `the watch was aborted${reason instanceof Error ? `: ${reason.message}` : ''}`,
  );
}

/** checkWatchOptions validates a watch's options (INVALID_ARGUMENT), before anything is opened. */
function checkWatchOptions(opts: WatchOptions): void {
  if (typeof opts !== 'object' || opts === null) throw invalid('watch: options must be an object');
  const hasKey = opts.key !== undefined;
  const hasPrefix = opts.prefix !== undefined;
  if (hasKey === hasPrefix) throw invalid('watch: name exactly one of key and prefix');
  if (hasKey && (typeof opts.key !== 'string' || opts.key.length === 0))
    throw invalid('watch: key must be a non-empty string');
  if (hasPrefix && typeof opts.prefix !== 'string') throw invalid('watch: prefix must be a string');
  const from = opts.fromRevision;
  if (from !== undefined) {
    if (typeof from === 'number') {
      if (!isRevision(from)) throw invalid(`watch: fromRevision must be a non-negative integer, got ${from}`);
    } else if (typeof from === 'object' && from !== null) {
      for (const [g, r] of Object.entries(from))
        if (!isRevision(r) || !/^\d+$/.test(g))
          throw invalid('watch: fromRevision must map group ids to non-negative integers');
    } else throw invalid('watch: fromRevision must be a revision or a record of revisions per group');
    if (opts.snapshot === true) throw invalid('watch: snapshot and fromRevision are exclusive');
  }
  if (opts.snapshot !== undefined && typeof opts.snapshot !== 'boolean')
    throw invalid('watch: snapshot must be a boolean');
  if (opts.bufferMax !== undefined && !(Number.isSafeInteger(opts.bufferMax) && opts.bufferMax >= 1))
    throw invalid('watch: bufferMax must be a positive integer');
  if (opts.onCompacted !== undefined && typeof opts.onCompacted !== 'function')
    throw invalid('watch: onCompacted must be a function');
}

/**
 * openWatch starts a watch (see the file comment). Bad options throw INVALID_ARGUMENT at once;
 * everything else (unreachable servers, redirects) is retried in the background.
 */
export function openWatch(core: ClientCore, opts: WatchOptions): WatchStream {
  checkWatchOptions(opts);
  return new Watch(core, opts);
}
