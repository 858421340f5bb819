/**
 * Watch hub: one partition group's watchers and its recent change history.
 *
 * The state machine numbers every key mutation with the group revision (one event per
 * revision, gap-free) and calls `publish(events)` after each applied entry. A watcher is on
 * a key or on a prefix. It starts live, with an atomic snapshot, or by resuming after a
 * revision, and then receives every matching event, in revision order, exactly once.
 *
 * Design:
 * - Dispatch costs O(len(key) + matching watchers), never O(all watchers): exact-key watchers
 *   sit in a `Map<key, Set>`, prefix watchers in a character trie (UTF-16 code units, so a
 *   trie match is exactly `key.startsWith(prefix)`). The walk stops at the first missing
 *   child, so a key that matches no prefix costs a few lookups. One `{kind:'event'}` message
 *   is allocated per event, kept in the history and shared by every watcher it reaches.
 * - History is a ring of the last `historyMax` event messages (all keys). A resume after
 *   revision R replays the retained matching events with revision > R, found by index
 *   arithmetic (revisions are gap-free): O(revision - R) to scan, one pointer per replayed
 *   event. When R is older than the window, the watcher gets a fresh snapshot marked
 *   `compacted: true` instead.
 * - Every watcher has a bounded queue that the node layer pulls with `take()`: at most
 *   `bufferMax` live messages, plus whatever of its initial snapshot or replay (at most
 *   `historyMax` messages) is still untaken. The initial batch does not count against
 *   `bufferMax`, or else a consumer cut off at revision R, whose replay from R is longer
 *   than its buffer by construction, could never resume. A watcher whose live allowance is
 *   full when an event arrives is cut off on its own: its queue is dropped and replaced by
 *   one `cancelled` (SLOW_CONSUMER) message carrying the revision to resume from. Nobody
 *   else waits for it.
 * - Everything is synchronous, so "snapshot then live" is atomic: the snapshot is read and
 *   the watcher registered in one call, with no event applied in between.
 * - Only the revision is replicated state (and so snapshotted). The history window and the
 *   watchers are local to this replica: a restored hub starts with an empty window, and a
 *   resume from before it gets a fresh compacted snapshot, which is a correct answer.
 *
 * Order: within one event, watchers are reached exact-key first, then prefixes from the
 * shortest to the longest, each set in subscription (id) order; `onReady` callbacks run in
 * that order after the whole batch is dispatched. `cancelAll` goes by id.
 */
import { DkvError, ErrorCode } from '../errors.js';
import type { ChangeEvent, EngineSnapshot, Item } from './types.js';

/**
 * WatchOptions bounds the hub's memory (counts, not bytes): the history holds at most
 * `historyMax` events, and a watcher's queue at most `bufferMax + max(1, historyMax)`
 * messages (its live allowance plus its initial snapshot or replay).
 */
export interface WatchOptions {
  /** historyMax is how many events (of all keys) are retained for resume, e.g. 10000. 0 keeps none. */
  readonly historyMax: number;
  /** bufferMax is how many live messages a watcher may have queued before it is cut off, e.g. 1000. At least 1. */
  readonly bufferMax: number;
  /**
   * unsafeSkipFirstResumedEvent: TEST ONLY (the planted bug `watch-skip`,
   * src/node/test-hooks.ts). A watcher that resumes (`fromRevision` given) silently drops the
   * first event it would deliver after that revision, replayed or live.
   */
  readonly unsafeSkipFirstResumedEvent?: boolean;
}

/**
 * WatchMessage is what a watcher receives.
 * - `snapshot`: the matching items (sorted by key) as of `revision`; every later message is an
 *   event after it. `compacted` is true when it replaces a resume whose revision has left
 *   the history window: the consumer drops its state and takes this one.
 * - `event`: one matching change.
 * - `cancelled`: the last message; nothing follows. Resume with `fromRevision: lastRevision`.
 */
export type WatchMessage =
  | {
      readonly kind: 'snapshot';
      readonly revision: number;
      readonly items: readonly Item[];
      readonly compacted: boolean;
    }
  | { readonly kind: 'event'; readonly event: ChangeEvent }
  | {
      readonly kind: 'cancelled';
      readonly code: string;
      readonly message: string;
      readonly lastRevision: number;
    };

/**
 * SubscribeRequest names exactly one of `key` and `prefix` (`prefix: ''` watches every key).
 * - `snapshot: true`: first a snapshot at the current revision, then every later event.
 * - `fromRevision: R`: every matching event with revision > R. R may be ahead of this
 *   replica (a client that moved from a node further ahead): the watcher then waits and
 *   delivers events from R + 1 on. If R is older than the history window, a compacted
 *   snapshot comes first instead.
 * - neither: live events after the current revision.
 * `snapshot` and `fromRevision` together are refused (INVALID_ARGUMENT).
 */
export interface SubscribeRequest {
  readonly key?: string;
  readonly prefix?: string;
  readonly fromRevision?: number;
  readonly snapshot?: boolean;
}

/** SnapshotSource is the state machine's read view, used for snapshots (at the hub's revision). */
export interface SnapshotSource {
  /** Must equal the hub's revision: the hub asserts it (a mismatch is a wiring bug). */
  readonly currentRevision: number;
  /** The live items whose key starts with `prefix`, preferably sorted by key. */
  itemsWithPrefix(prefix: string): readonly Item[];
  get(key: string): Item | undefined;
}

/**
 * Subscription is one watcher, as the node layer sees it: a pull queue.
 * After `subscribe` returns, its initial snapshot or replay is already queued (check
 * `pending`); `onReady` fires later, once each time the queue goes from empty to non-empty.
 */
export interface Subscription {
  /** id is local, increasing per hub; not replicated. */
  readonly id: number;
  /** take hands out up to `max` (default: all) queued messages, oldest first. */
  take(max?: number): WatchMessage[];
  /** pending counts the queued messages: at most bufferMax, plus the untaken part of the initial batch. */
  readonly pending: number;
  /**
   * lastRevision is the revision the consumer is caught up to: every matching event up to
   * it has been handed out (or is reflected in a handed-out snapshot), and none after it.
   * It is the revision of the last event or snapshot handed out, or later (the hub's
   * revision) while the queue is empty, and it never decreases. Resuming with
   * `fromRevision: lastRevision` loses and repeats nothing. Before a snapshot subscription's
   * snapshot is taken it is 0: the empty state at revision 0, from which a resume rebuilds
   * everything. For a resume from R it starts at R.
   */
  readonly lastRevision: number;
  /**
   * closed is true once nothing more will be queued: closed, cut off or cancelled. After a
   * cut-off or cancellation, take() still returns the final `cancelled` message.
   */
  readonly closed: boolean;
  /** close stops delivery and drops whatever is queued, a final `cancelled` message too. Idempotent. */
  close(): void;
}

/** SNAPSHOT_FORMAT tags the hub's one snapshot part. */
const SNAPSHOT_FORMAT = 1;
/** QUEUE_COMPACT_MIN is how many taken slots a queue may hold at its head before it is compacted. */
const QUEUE_COMPACT_MIN = 1024;
/** NO_CODE marks an empty first-child slot in a trie node (char codes are >= 0). */
const NO_CODE = -1;

/**
 * TrieNode is one character of the prefix trie. Most nodes have a single child, kept inline;
 * only branching nodes allocate a Map.
 */
class TrieNode {
  firstCode = NO_CODE;
  firstChild: TrieNode | undefined = undefined;
  more: Map<number, TrieNode> | undefined = undefined;
  /** Watchers whose prefix ends here; undefined when none. */
  watchers: Set<Watcher> | undefined = undefined;

  constructor(
    readonly parent: TrieNode | undefined,
    readonly code: number,
  ) {}

  child(code: number): TrieNode | undefined {
    return code === this.firstCode ? this.firstChild : this.more?.get(code);
  }

  addChild(code: number): TrieNode {
    const node = new TrieNode(this, code);
    if (this.firstChild === undefined) {
      this.firstCode = code;
      this.firstChild = node;
    } else {
      this.more ??= new Map();
      this.more.set(code, node);
    }
    return node;
  }

  removeChild(code: number): void {
    if (code === this.firstCode) {
      this.firstCode = NO_CODE;
      this.firstChild = undefined;
    } else if (this.more !== undefined) {
      this.more.delete(code);
      if (this.more.size === 0) this.more = undefined;
    }
  }

  isEmpty(): boolean {
    return this.watchers === undefined && this.firstChild === undefined && this.more === undefined;
  }
}

/** Registry holds the watchers that still receive events, indexed for dispatch. */
class Registry {
  /** The hub's revision: the last published event's. */
  revision: number;
  /** Every live watcher by id (Map order is id order: ids only grow). */
  readonly all = new Map<number, Watcher>();
  readonly byKey = new Map<string, Set<Watcher>>();
  readonly root = new TrieNode(undefined, NO_CODE);

  constructor(revision: number) {
    this.revision = revision;
  }

  add(w: Watcher): void {
    this.all.set(w.id, w);
    if (w.key !== undefined) {
      let set = this.byKey.get(w.key);
      if (set === undefined) this.byKey.set(w.key, (set = new Set()));
      set.add(w);
      return;
    }
    const prefix = w.prefix!;
    let node = this.root;
    for (let i = 0; i < prefix.length; i++) {
      const code = prefix.charCodeAt(i);
      node = node.child(code) ?? node.addChild(code);
    }
    node.watchers ??= new Set();
    node.watchers.add(w);
    w.node = node;
  }

  remove(w: Watcher): void {
    if (!this.all.delete(w.id)) return;
    if (w.key !== undefined) {
      const set = this.byKey.get(w.key)!;
      set.delete(w);
      if (set.size === 0) this.byKey.delete(w.key);
      return;
    }
    let node = w.node!;
    w.node = undefined;
    node.watchers!.delete(w);
    if (node.watchers!.size === 0) node.watchers = undefined;
    while (node.parent !== undefined && node.isEmpty()) {
      node.parent.removeChild(node.code);
      node = node.parent;
    }
  }
}

/** Watcher is the hub's Subscription: a bounded queue plus the bookkeeping for resume. */
class Watcher implements Subscription {
  readonly id: number;
  readonly key: string | undefined;
  readonly prefix: string | undefined;
  /** Live events with revision <= skipThrough are not delivered (a resume from ahead). */
  readonly skipThrough: number;
  /** Set while the planted bug `watch-skip` has yet to drop this resumed watcher's first event. */
  dropNext = false;
  readonly onReady: (() => void) | undefined;
  /** The trie node holding this watcher, while it is registered on a prefix. */
  node: TrieNode | undefined = undefined;
  /** Queued messages are queue[head..]. Invariant: queue.length - head <= bufferMax + initialLeft. */
  queue: WatchMessage[] = [];
  head = 0;
  /** Messages of the initial snapshot or replay still queued; they do not count against bufferMax. */
  initialLeft = 0;
  /**
   * Invariant: every matching event with revision <= handed has been handed out (or is in a
   * handed-out snapshot), none after it; see Subscription.lastRevision.
   */
  handed: number;
  isClosed = false;
  private readonly registry: Registry;

  constructor(
    registry: Registry,
    id: number,
    req: SubscribeRequest,
    handed: number,
    skipThrough: number,
    onReady: (() => void) | undefined,
  ) {
    this.registry = registry;
    this.id = id;
    this.key = req.key;
    this.prefix = req.key === undefined ? req.prefix : undefined;
    this.handed = handed;
    this.skipThrough = skipThrough;
    this.onReady = onReady;
  }

  get pending(): number {
    return this.queue.length - this.head;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  get lastRevision(): number {
    if (!this.isClosed && this.head === this.queue.length) {
      return Math.max(this.handed, this.registry.revision);
    }
    return this.handed;
  }

  matches(key: string): boolean {
    return this.key !== undefined ? key === this.key : key.startsWith(this.prefix!);
  }

  take(max?: number): WatchMessage[] {
    if (max !== undefined && !(Number.isSafeInteger(max) && max >= 0)) {
      throw new DkvError(ErrorCode.InvalidArgument, `take: max must be a non-negative integer, got ${max}`);
    }
    const n = max === undefined ? this.pending : Math.min(max, this.pending);
    if (n === 0) return [];
    // Handing out the whole queue gives away the array itself rather than a copy.
    const out = n === this.queue.length ? this.queue : this.queue.slice(this.head, this.head + n);
    for (const m of out) {
      if (m.kind === 'event') this.handed = m.event.revision;
      else if (m.kind === 'snapshot') this.handed = m.revision;
    }
    this.head += n;
    this.initialLeft = Math.max(0, this.initialLeft - n);
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head >= QUEUE_COMPACT_MIN && this.head * 2 >= this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return out;
  }

  close(): void {
    this.handed = this.lastRevision;
    this.isClosed = true;
    this.queue = [];
    this.head = 0;
    this.initialLeft = 0;
    this.registry.remove(this);
  }

  /** cancel ends delivery, leaving only a `cancelled` message; true if the queue was empty. */
  cancel(code: string, message: string): boolean {
    const lastRevision = this.lastRevision;
    const wasEmpty = this.head === this.queue.length;
    this.handed = lastRevision;
    this.isClosed = true;
    this.queue = [{ kind: 'cancelled', code, message, lastRevision }];
    this.head = 0;
    this.initialLeft = 0;
    this.registry.remove(this);
    return wasEmpty;
  }
}

/** EventMessage is the one message object made per event, shared by history and queues. */
type EventMessage = Extract<WatchMessage, { kind: 'event' }>;

/** HistoryRing keeps the last `cap` event messages; index 0 is the oldest. */
class HistoryRing {
  private readonly buf: EventMessage[] = [];
  private start = 0;

  constructor(private readonly cap: number) {}

  get size(): number {
    return this.buf.length;
  }

  push(ev: EventMessage): void {
    if (this.cap === 0) return;
    if (this.buf.length < this.cap) {
      this.buf.push(ev);
      return;
    }
    this.buf[this.start] = ev;
    this.start = this.start + 1 === this.cap ? 0 : this.start + 1;
  }

  at(i: number): EventMessage {
    const j = this.start + i;
    return this.buf[j < this.buf.length ? j : j - this.buf.length]!;
  }
}

function isNonNegativeInteger(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

function invalid(message: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, message);
}

function byKey(a: Item, b: Item): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/** sortedItems copies the source's items, sorting them by key unless they already are. */
function sortedItems(items: readonly Item[]): Item[] {
  const out = items.slice();
  for (let i = 1; i < out.length; i++) {
    if (out[i - 1]!.key >= out[i]!.key) return out.sort(byKey);
  }
  return out;
}

/**
 * WatchHub dispatches one group's change events to its watchers and keeps a bounded history
 * for resume. See the file comment for the design and the guarantees.
 */
export class WatchHub {
  private readonly bufferMax: number;
  private readonly skipFirstResumed: boolean;
  private readonly registry: Registry;
  private readonly history: HistoryRing;
  private nextId = 1;
  /** Watchers whose queue became non-empty during the current publish, with an onReady. */
  private ready: Watcher[] = [];
  private publishing = false;

  /** constructor starts a hub at the group's current `revision`, with an empty history window. */
  constructor(opts: WatchOptions, revision: number) {
    if (!isNonNegativeInteger(opts.historyMax)) throw invalid(`watch: bad historyMax ${opts.historyMax}`);
    if (!isNonNegativeInteger(opts.bufferMax) || opts.bufferMax < 1) {
      throw invalid(`watch: bad bufferMax ${opts.bufferMax}`);
    }
    if (!isNonNegativeInteger(revision)) throw invalid(`watch: bad revision ${revision}`);
    this.bufferMax = opts.bufferMax;
    this.skipFirstResumed = opts.unsafeSkipFirstResumedEvent === true;
    this.registry = new Registry(revision);
    this.history = new HistoryRing(opts.historyMax);
  }

  /** revision is the last published event's revision (or the starting one). */
  get revision(): number {
    return this.registry.revision;
  }

  /** watcherCount is the number of live subscriptions. */
  get watcherCount(): number {
    return this.registry.all.size;
  }

  /**
   * oldestRetained is the revision of the oldest event in the history window, or
   * `revision + 1` when the window is empty. A resume with `fromRevision: R` is replayed
   * from history iff `R >= oldestRetained - 1`; below that it gets a compacted snapshot.
   */
  get oldestRetained(): number {
    return this.registry.revision - this.history.size + 1;
  }

  /** subscriberCount is how many watchers still receive events (closed and cut-off ones excluded). */
  get subscriberCount(): number {
    return this.registry.all.size;
  }

  /**
   * publish dispatches the events of one applied entry. Their revisions must continue the
   * hub's: revision + 1, + 2, ... A gap or a repeat is a bug in the caller and throws before
   * anything changes. `onReady` callbacks run after the whole batch is dispatched.
   */
  publish(events: readonly ChangeEvent[]): void {
    if (this.publishing) throw new Error('WatchHub.publish: called from inside publish');
    const base = this.registry.revision;
    for (let i = 0; i < events.length; i++) {
      const ev = events[i]!;
      if (ev.revision !== base + 1 + i || typeof ev.key !== 'string') {
        throw new Error(
          `WatchHub.publish: event ${i} has revision ${ev.revision}, expected ${base + 1 + i} (gap-free)`,
        );
      }
    }
    this.publishing = true;
    try {
      for (const ev of events) this.dispatch(ev);
    } finally {
      this.publishing = false;
    }
    if (this.ready.length > 0) this.wake();
  }

  private dispatch(ev: ChangeEvent): void {
    const msg: EventMessage = { kind: 'event', event: ev };
    this.history.push(msg);
    this.registry.revision = ev.revision;
    const exact = this.registry.byKey.get(ev.key);
    if (exact !== undefined) for (const w of exact) this.offer(w, msg);
    const key = ev.key;
    let node: TrieNode | undefined = this.registry.root;
    if (node.watchers !== undefined) for (const w of node.watchers) this.offer(w, msg);
    for (let i = 0; i < key.length; i++) {
      node = node.child(key.charCodeAt(i));
      if (node === undefined) break;
      if (node.watchers !== undefined) for (const w of node.watchers) this.offer(w, msg);
    }
  }

  /** offer queues an event for `w`, or cuts `w` off if its live allowance is full. */
  private offer(w: Watcher, msg: EventMessage): void {
    const ev = msg.event;
    if (ev.revision <= w.skipThrough) return;
    if (w.dropNext) {
      w.dropNext = false;
      return;
    }
    const pending = w.queue.length - w.head;
    if (pending >= this.bufferMax + w.initialLeft) {
      w.cancel(
        ErrorCode.SlowConsumer,
        `watch ${w.id} fell behind: ${pending} messages queued (bufferMax ${this.bufferMax})`,
      );
      return;
    }
    if (pending === 0) {
      // Everything matching before this event was handed out: keep lastRevision monotonic.
      if (w.handed < ev.revision - 1) w.handed = ev.revision - 1;
      if (w.onReady !== undefined) this.ready.push(w);
    }
    w.queue.push(msg);
  }

  /** wake runs the queued onReady callbacks; a throwing callback does not stop the others. */
  private wake(): void {
    const ready = this.ready;
    this.ready = [];
    let failed = false;
    let failure: unknown;
    for (const w of ready) {
      try {
        w.onReady!();
      } catch (err) {
        if (!failed) failure = err;
        failed = true;
      }
    }
    if (failed) throw failure;
  }

  /**
   * subscribe starts a watcher (see SubscribeRequest). Its initial snapshot or replay is
   * queued before it returns, and it is registered in the same call, so no event falls
   * between the two. `onReady` is not called for that initial batch, only for later
   * transitions of the queue from empty to non-empty.
   */
  subscribe(req: SubscribeRequest, source: SnapshotSource, onReady?: () => void): Subscription {
    const hasKey = req.key !== undefined;
    const hasPrefix = req.prefix !== undefined;
    if (hasKey === hasPrefix) throw invalid('watch: name exactly one of key and prefix');
    if (hasKey ? typeof req.key !== 'string' : typeof req.prefix !== 'string') {
      throw invalid('watch: key and prefix must be strings');
    }
    const from = req.fromRevision;
    if (from !== undefined && !isNonNegativeInteger(from)) {
      throw invalid(`watch: fromRevision must be a non-negative integer, got ${from}`);
    }
    if (req.snapshot !== undefined && typeof req.snapshot !== 'boolean') {
      throw invalid('watch: snapshot must be a boolean');
    }
    if (req.snapshot === true && from !== undefined) {
      throw invalid(
        'watch: snapshot and fromRevision are exclusive (a resume that is too old gets a snapshot)',
      );
    }
    const revision = this.registry.revision;
    if (source.currentRevision !== revision) {
      throw new Error(
        `WatchHub.subscribe: source is at revision ${source.currentRevision}, the hub at ${revision}`,
      );
    }

    let handed: number;
    let skipThrough = revision;
    if (req.snapshot === true) handed = 0;
    else if (from === undefined) handed = revision;
    else {
      handed = from;
      if (from > revision) skipThrough = from;
    }
    const w = new Watcher(this.registry, this.nextId++, req, handed, skipThrough, onReady);
    w.dropNext = this.skipFirstResumed && from !== undefined;

    if (req.snapshot === true) {
      w.queue.push(this.snapshotMessage(w, source, false));
    } else if (from !== undefined && from < revision) {
      if (from >= this.oldestRetained - 1) {
        w.queue = this.replay(w, from);
        if (w.dropNext && w.queue.length > 0) {
          w.queue.shift();
          w.dropNext = false;
        }
      } else w.queue.push(this.snapshotMessage(w, source, true));
    }
    w.initialLeft = w.queue.length;
    this.registry.add(w);
    return w;
  }

  /** replay collects the retained event messages after `from` that `w` matches. */
  private replay(w: Watcher, from: number): WatchMessage[] {
    const out: WatchMessage[] = [];
    for (let i = from + 1 - this.oldestRetained; i < this.history.size; i++) {
      const msg = this.history.at(i);
      if (w.matches(msg.event.key)) out.push(msg);
    }
    return out;
  }

  private snapshotMessage(w: Watcher, source: SnapshotSource, compacted: boolean): WatchMessage {
    let items: Item[];
    if (w.key !== undefined) {
      const item = source.get(w.key);
      items = item === undefined ? [] : [item];
    } else {
      items = sortedItems(source.itemsWithPrefix(w.prefix!));
    }
    return { kind: 'snapshot', revision: this.registry.revision, items, compacted };
  }

  /**
   * cancelAll ends every watcher with a `cancelled` message carrying `code`, in id order:
   * for shutdown, or when this replica installs a snapshot (its history no longer follows
   * on). Each watcher's onReady runs if its queue was empty.
   */
  cancelAll(code: ErrorCode, message: string): void {
    if (this.publishing) throw new Error('WatchHub.cancelAll: called from inside publish');
    for (const w of [...this.registry.all.values()]) {
      if (w.cancel(code, message) && w.onReady !== undefined) this.ready.push(w);
    }
    if (this.ready.length > 0) this.wake();
  }

  /**
   * snapshot yields one part, `{format, revision}`: the revision is the only replicated state.
   * History and watchers are local and are not included.
   */
  snapshot(): EngineSnapshot {
    const part = { format: SNAPSHOT_FORMAT, revision: this.registry.revision };
    return {
      *parts(): Iterable<unknown> {
        yield { ...part };
      },
    };
  }

  /**
   * restore rebuilds a hub from `snapshot().parts()`: same revision, empty history window,
   * no watchers. Malformed input throws DkvError CORRUPTED.
   */
  static restore(parts: Iterable<unknown>, opts: WatchOptions): WatchHub {
    let revision: number | undefined;
    for (const part of parts) {
      if (revision !== undefined)
        throw new DkvError(ErrorCode.Corrupted, 'watch snapshot: more than one part');
      if (typeof part !== 'object' || part === null || Array.isArray(part)) {
        throw new DkvError(ErrorCode.Corrupted, 'watch snapshot: part is not an object');
      }
      const p = part as Record<string, unknown>;
      const keys = Object.keys(p);
      if (keys.length !== 2 || p.format !== SNAPSHOT_FORMAT || !isNonNegativeInteger(p.revision)) {
        throw new DkvError(ErrorCode.Corrupted, 'watch snapshot: malformed part');
      }
      revision = p.revision;
    }
    if (revision === undefined) throw new DkvError(ErrorCode.Corrupted, 'watch snapshot: no part');
    return new WatchHub(opts, revision);
  }
}
