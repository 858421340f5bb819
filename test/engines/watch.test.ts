import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ChangeEvent, EventCause, Item } from '../../src/engines/types.js';
import {
  type SnapshotSource,
  type SubscribeRequest,
  type Subscription,
  WatchHub,
  type WatchMessage,
  type WatchOptions,
} from '../../src/engines/watch.js';
import { DkvError, ErrorCode, isDkvError } from '../../src/errors.js';

/**
 * The watch hub against a deliberately dumb reference: the full list of events and a copy of
 * the whole state at every revision. Each subscription is checked twice:
 * - exactly, against a mirror of its queue (what it must hold after every command), and
 * - semantically, as a consumer would use it: the snapshot plus events it is handed rebuild
 *   the reference state (restricted to its key or prefix) at every revision it reaches, the
 *   events are exactly the matching ones (no gap, no repeat), and a resume from the
 *   `lastRevision` of a cut-off rebuilds the current state.
 */

const KEYS = ['a', 'ab', 'abc', 'b', 'ba', 'c'] as const;
const PREFIXES = ['', 'a', 'ab', 'abc', 'b', 'c', 'x'] as const;
const CAUSES: readonly EventCause[] = ['write', 'expired', 'lease'];

type Target = { key: string } | { prefix: string };

function matches(t: Target, key: string): boolean {
  return 'key' in t ? key === t.key : key.startsWith(t.prefix);
}

/** Reference is the dumb model of the group: every event, and the state after each revision. */
class Reference {
  readonly events: ChangeEvent[] = [];
  readonly states: Map<string, Item>[] = [new Map()];

  get revision(): number {
    return this.events.length;
  }

  get state(): Map<string, Item> {
    return this.states[this.states.length - 1]!;
  }

  /** apply turns one op into an event (a delete of a missing key is no event). */
  apply(op: Op): ChangeEvent | undefined {
    const cur = new Map(this.state);
    const prev = cur.get(op.key);
    const revision = this.revision + 1;
    let ev: ChangeEvent;
    if (op.del) {
      if (prev === undefined) return undefined;
      cur.delete(op.key);
      ev = { type: 'delete', cause: op.cause, key: op.key, revision, prev };
    } else {
      const item: Item = {
        key: op.key,
        value: op.value,
        version: prev === undefined ? 1 : prev.version + 1,
        createRevision: prev === undefined ? revision : prev.createRevision,
        modRevision: revision,
      };
      cur.set(op.key, item);
      ev =
        prev === undefined
          ? { type: 'put', cause: 'write', key: op.key, value: op.value, revision, item }
          : { type: 'put', cause: 'write', key: op.key, value: op.value, revision, item, prev };
    }
    this.events.push(ev);
    this.states.push(cur);
    return ev;
  }

  /** itemsAt lists the items matching `t` at `revision`, sorted by key. */
  itemsAt(t: Target, revision: number): Item[] {
    const s = this.states[revision]!;
    return [...s.values()].filter((i) => matches(t, i.key)).sort((x, y) => (x.key < y.key ? -1 : 1));
  }

  /** matchingIn lists the revisions in (lo, hi] whose event matches `t`. */
  matchingIn(t: Target, lo: number, hi: number): number[] {
    const out: number[] = [];
    for (let r = lo + 1; r <= Math.min(hi, this.revision); r++) {
      if (matches(t, this.events[r - 1]!.key)) out.push(r);
    }
    return out;
  }

  source(reversed: boolean): SnapshotSource {
    const state = this.state;
    return {
      currentRevision: this.revision,
      get: (key) => state.get(key),
      itemsWithPrefix: (prefix) => {
        const items = [...state.values()]
          .filter((i) => i.key.startsWith(prefix))
          .sort((x, y) => (x.key < y.key ? -1 : 1));
        return reversed ? items.reverse() : items;
      },
    };
  }
}

interface Op {
  readonly key: string;
  readonly del: boolean;
  readonly value: number;
  readonly cause: EventCause;
}

type Cmd =
  | { t: 'publish'; ops: Op[] }
  | {
      t: 'sub';
      target: Target;
      mode: 'live' | 'snapshot' | 'resume';
      back: number;
      ready: boolean;
      reversed: boolean;
    }
  | { t: 'take'; sub: number; max: number | undefined }
  | { t: 'close'; sub: number }
  | { t: 'restore' };

const opArb: fc.Arbitrary<Op> = fc.record({
  key: fc.constantFrom(...KEYS),
  del: fc.boolean(),
  value: fc.nat(1000),
  cause: fc.constantFrom(...CAUSES),
});

const targetArb: fc.Arbitrary<Target> = fc.oneof(
  fc.constantFrom(...KEYS).map((key) => ({ key })),
  fc.constantFrom(...PREFIXES).map((prefix) => ({ prefix })),
);

/** cmdsArb makes command lists; `restoreWeight` 0 leaves out restores (long uninterrupted streams). */
const cmdsArb = (restoreWeight: number, takeMax: number): fc.Arbitrary<Cmd> =>
  fc.oneof(
    {
      weight: 12,
      arbitrary: fc.record({
        t: fc.constant('publish' as const),
        ops: fc.array(opArb, { minLength: 1, maxLength: 3 }),
      }),
    },
    {
      weight: 5,
      arbitrary: fc.record({
        t: fc.constant('sub' as const),
        target: targetArb,
        mode: fc.constantFrom('live' as const, 'snapshot' as const, 'resume' as const),
        back: fc.integer({ min: -3, max: 25 }),
        ready: fc.boolean(),
        reversed: fc.boolean(),
      }),
    },
    {
      weight: 10,
      arbitrary: fc.record({
        t: fc.constant('take' as const),
        sub: fc.nat(),
        max: fc.option(fc.nat(takeMax), { nil: undefined }),
      }),
    },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('close' as const), sub: fc.nat() }) },
    { weight: restoreWeight, arbitrary: fc.record({ t: fc.constant('restore' as const) }) },
  );
const cmdArb = cmdsArb(1, 4);

/** Consumer is what a client rebuilds from the messages it is handed. */
interface Consumer {
  /** Every matching event up to `at` is reflected in `state`, none after. */
  at: number;
  /** undefined means "the reference state at `at`" (materialised on first use). */
  state: Map<string, Item> | undefined;
  cancelled: WatchMessage | undefined;
}

/** Tracked is one subscription in the model: its hub, its queue mirror, its consumer. */
interface Tracked {
  readonly sub: Subscription;
  readonly hub: WatchHub;
  readonly target: Target;
  readonly skipThrough: number;
  readonly hasReady: boolean;
  queue: WatchMessage[];
  /** How many of the initial messages are still queued (exempt from bufferMax). */
  initialLeft: number;
  handed: number;
  closed: boolean;
  readyExpected: number;
  readyCalls: number;
  /** The lastRevision seen at the previous check: it may never decrease. */
  seenLastRevision: number;
  consumer: Consumer;
}

/** same and atLeast are cheap assertions for the model's hot checks (expect() is slow in bulk). */
function same(actual: unknown, expected: unknown): void {
  if (actual !== expected) throw new Error(`expected ${String(expected)}, got ${String(actual)}`);
}

function atLeast(actual: number, min: number): void {
  if (!(actual >= min)) throw new Error(`expected at least ${min}, got ${actual}`);
}

class Model {
  readonly ref = new Reference();
  hub: WatchHub;
  /** The hub's history starts after this revision (its creation or last restore). */
  floor = 0;
  readonly subs: Tracked[] = [];

  constructor(readonly opts: WatchOptions) {
    this.hub = new WatchHub(opts, 0);
  }

  oldestRetained(): number {
    return Math.max(this.floor, this.ref.revision - this.opts.historyMax) + 1;
  }

  consumerState(c: Consumer, t: Target): Map<string, Item> {
    if (c.state === undefined) {
      c.state = new Map(this.ref.itemsAt(t, c.at).map((i) => [i.key, i]));
    }
    return c.state;
  }

  expectedLastRevision(s: Tracked): number {
    return !s.closed && s.queue.length === 0 ? Math.max(s.handed, this.ref.revision) : s.handed;
  }

  run(cmd: Cmd): void {
    switch (cmd.t) {
      case 'publish':
        this.publish(cmd.ops);
        return;
      case 'sub':
        this.subscribe(cmd);
        return;
      case 'take':
        if (this.subs.length > 0) this.take(this.subs[cmd.sub % this.subs.length]!, cmd.max);
        return;
      case 'close':
        if (this.subs.length > 0) this.close(this.subs[cmd.sub % this.subs.length]!);
        return;
      case 'restore':
        this.restore();
        return;
    }
  }

  publish(ops: Op[]): void {
    const events: ChangeEvent[] = [];
    for (const op of ops) {
      const ev = this.ref.apply(op);
      if (ev !== undefined) events.push(ev);
    }
    const wasEmpty = new Map(this.subs.map((s) => [s, s.queue.length === 0]));
    for (const ev of events) {
      for (const s of this.subs) {
        if (s.hub !== this.hub || s.closed || !matches(s.target, ev.key) || ev.revision <= s.skipThrough)
          continue;
        if (s.queue.length >= this.opts.bufferMax + s.initialLeft) {
          s.queue = [
            { kind: 'cancelled', code: ErrorCode.SlowConsumer, message: '', lastRevision: s.handed },
          ];
          s.closed = true;
          s.initialLeft = 0;
        } else {
          if (s.queue.length === 0) s.handed = Math.max(s.handed, ev.revision - 1);
          s.queue.push({ kind: 'event', event: ev });
        }
      }
    }
    for (const s of this.subs) {
      if (s.hasReady && wasEmpty.get(s) && s.queue.length > 0) s.readyExpected++;
    }
    this.hub.publish(events);
  }

  subscribe(cmd: Extract<Cmd, { t: 'sub' }>): void {
    const rev = this.ref.revision;
    const req: SubscribeRequest = {
      ...cmd.target,
      ...(cmd.mode === 'snapshot' ? { snapshot: true } : {}),
      ...(cmd.mode === 'resume' ? { fromRevision: Math.max(0, rev - cmd.back) } : {}),
    };
    let queue: WatchMessage[] = [];
    let handed = rev;
    let skipThrough = rev;
    const snap = (compacted: boolean): WatchMessage => ({
      kind: 'snapshot',
      revision: rev,
      items: this.ref.itemsAt(cmd.target, rev),
      compacted,
    });
    if (req.snapshot) {
      handed = 0;
      queue = [snap(false)];
    } else if (req.fromRevision !== undefined) {
      const from = req.fromRevision;
      handed = from;
      skipThrough = Math.max(from, rev);
      if (from < rev) {
        const replay = this.ref.matchingIn(cmd.target, from, rev);
        if (from < this.oldestRetained() - 1) queue = [snap(true)];
        else queue = replay.map((r) => ({ kind: 'event', event: this.ref.events[r - 1]! }));
      }
    }
    const tracked: Tracked = {
      sub: undefined as unknown as Subscription,
      hub: this.hub,
      target: cmd.target,
      skipThrough,
      hasReady: cmd.ready,
      queue,
      initialLeft: queue.length,
      handed,
      closed: false,
      readyExpected: 0,
      readyCalls: 0,
      seenLastRevision: handed,
      consumer: { at: handed, state: undefined, cancelled: undefined },
    };
    const sub = this.hub.subscribe(
      req,
      this.ref.source(cmd.reversed),
      cmd.ready ? () => tracked.readyCalls++ : undefined,
    );
    (tracked as { sub: Subscription }).sub = sub;
    this.subs.push(tracked);
  }

  take(s: Tracked, max: number | undefined): void {
    const got = s.sub.take(max);
    const n = max === undefined ? s.queue.length : Math.min(max, s.queue.length);
    const want = s.queue.splice(0, n);
    s.initialLeft = Math.max(0, s.initialLeft - n);
    same(got.length, want.length);
    for (let i = 0; i < want.length; i++) {
      const g = got[i]!;
      const w = want[i]!;
      if (w.kind === 'cancelled') {
        expect(g).toMatchObject({ kind: 'cancelled', code: w.code, lastRevision: w.lastRevision });
      } else {
        expect(g).toEqual(w);
      }
      if (g.kind === 'event') {
        same(g.event, this.ref.events[g.event.revision - 1]); // the very event published
        s.handed = g.event.revision;
      } else if (g.kind === 'snapshot') {
        s.handed = g.revision;
      }
      this.consume(s, g);
    }
    this.checkProgress(s);
    if (!s.closed && s.queue.length === 0) this.settle(s.target, s.consumer, s.sub.lastRevision);
  }

  /**
   * settle moves a consumer whose queue is empty up to the subscription's lastRevision:
   * nothing matching may lie in between, so its state must then equal the reference there.
   */
  settle(t: Target, c: Consumer, last: number): void {
    atLeast(last, c.at);
    same(this.ref.matchingIn(t, c.at, last).length, 0);
    if (last > this.ref.revision) return; // waiting for a revision ahead of this replica
    const state = this.consumerState(c, t);
    c.at = last;
    expect(sortItems(state)).toEqual(this.ref.itemsAt(t, last));
  }

  /** consume applies a message the way a client would, checking it against the reference. */
  consume(s: Tracked, m: WatchMessage): void {
    const c = s.consumer;
    same(c.cancelled, undefined); // nothing follows a cancelled message
    if (m.kind === 'snapshot') {
      atLeast(m.revision, c.at);
      expect(m.items).toEqual(this.ref.itemsAt(s.target, m.revision));
      c.state = new Map(m.items.map((i) => [i.key, i]));
      c.at = m.revision;
    } else if (m.kind === 'event') {
      const ev = m.event;
      same(matches(s.target, ev.key), true);
      atLeast(ev.revision, c.at + 1);
      // Gap-free: no matching event between the last one handed out and this one.
      same(this.ref.matchingIn(s.target, c.at, ev.revision - 1).length, 0);
      const state = this.consumerState(c, s.target);
      if (ev.type === 'put') state.set(ev.key, ev.item!);
      else state.delete(ev.key);
      c.at = ev.revision;
    } else {
      atLeast(m.lastRevision, c.at);
      same(this.ref.matchingIn(s.target, c.at, m.lastRevision).length, 0);
      c.at = m.lastRevision;
      c.cancelled = m;
    }
    if (c.state !== undefined && c.at <= this.ref.revision) {
      expect(sortItems(c.state)).toEqual(this.ref.itemsAt(s.target, c.at));
    }
  }

  /** checkProgress: lastRevision is exact, and nothing matching lies between the consumer and it. */
  checkProgress(s: Tracked): void {
    const last = s.sub.lastRevision;
    same(last, this.expectedLastRevision(s));
    atLeast(last, s.consumer.at);
    same(this.ref.matchingIn(s.target, s.consumer.at, last).length, 0);
  }

  close(s: Tracked): void {
    if (!s.closed) s.handed = this.expectedLastRevision(s);
    s.closed = true;
    s.queue = [];
    s.initialLeft = 0;
    s.sub.close();
  }

  restore(): void {
    const old = this.hub;
    for (const s of this.subs) {
      if (s.hub !== old || s.closed) continue;
      const last = this.expectedLastRevision(s);
      if (s.hasReady && s.queue.length === 0) s.readyExpected++;
      s.handed = last;
      s.queue = [{ kind: 'cancelled', code: ErrorCode.Cancelled, message: '', lastRevision: last }];
      s.initialLeft = 0;
      s.closed = true;
    }
    const parts = structuredClone([...old.snapshot().parts()]);
    old.cancelAll(ErrorCode.Cancelled, 'snapshot installed');
    same(old.subscriberCount, 0);
    this.hub = WatchHub.restore(parts, this.opts);
    this.floor = this.ref.revision;
  }

  check(): void {
    same(this.hub.revision, this.ref.revision);
    same(this.hub.oldestRetained, this.oldestRetained());
    same(this.hub.subscriberCount, this.subs.filter((s) => s.hub === this.hub && !s.closed).length);
    for (const s of this.subs) {
      same(s.sub.pending, s.queue.length);
      atLeast(this.opts.bufferMax + s.initialLeft, s.sub.pending);
      atLeast(Math.max(1, this.opts.historyMax), s.initialLeft);
      same(s.sub.closed, s.closed);
      same(s.sub.lastRevision, this.expectedLastRevision(s));
      atLeast(s.sub.lastRevision, s.seenLastRevision);
      s.seenLastRevision = s.sub.lastRevision;
      same(s.readyCalls, s.readyExpected);
    }
  }

  /**
   * finish drains every subscription; open ones must now hold the current state, and every
   * cancelled one, resumed from its lastRevision on the current hub, must rebuild it too.
   */
  finish(): void {
    for (const s of this.subs) {
      this.take(s, undefined);
      const c = s.consumer;
      if (!s.closed) {
        same(c.at, Math.max(this.ref.revision, s.skipThrough));
        continue;
      }
      if (c.cancelled === undefined) continue; // closed by the consumer itself
      const { lastRevision } = c.cancelled as Extract<WatchMessage, { kind: 'cancelled' }>;
      const sub = this.hub.subscribe({ ...s.target, fromRevision: lastRevision }, this.ref.source(false));
      const consumer: Consumer = { ...c, cancelled: undefined };
      const resumed: Tracked = { ...s, sub, hub: this.hub, closed: false, consumer };
      for (const m of sub.take()) this.consume(resumed, m);
      this.settle(s.target, consumer, sub.lastRevision);
      same(consumer.at, Math.max(this.ref.revision, lastRevision));
      sub.close();
    }
  }
}

function sortItems(state: Map<string, Item>): Item[] {
  return [...state.values()].sort((x, y) => (x.key < y.key ? -1 : 1));
}

const optsArb: fc.Arbitrary<WatchOptions> = fc.record({
  historyMax: fc.integer({ min: 0, max: 12 }),
  bufferMax: fc.integer({ min: 1, max: 6 }),
});

describe('WatchHub model', () => {
  it('matches the reference: snapshots, resumes, compaction, slow consumers, close, restore', () => {
    fc.assert(
      fc.property(optsArb, fc.array(cmdArb, { minLength: 5, maxLength: 80, size: 'max' }), (opts, cmds) => {
        const m = new Model(opts);
        for (const cmd of cmds) {
          m.run(cmd);
          m.check();
        }
        m.finish();
      }),
      { numRuns: 1000 },
    );
  });

  it('matches the reference on long streams with larger buffers', () => {
    const opts = fc.record({
      historyMax: fc.integer({ min: 0, max: 60 }),
      bufferMax: fc.integer({ min: 1, max: 25 }),
    });
    const cmds = fc.array(cmdsArb(0, 12), { minLength: 100, maxLength: 250, size: 'max' });
    fc.assert(
      fc.property(opts, cmds, (o, list) => {
        const m = new Model(o);
        for (const cmd of list) {
          m.run(cmd);
          m.check();
        }
        m.finish();
      }),
      { numRuns: 200 },
    );
  });

  it('a restored hub behaves exactly like the original from then on', () => {
    fc.assert(
      fc.property(
        optsArb,
        fc.array(cmdArb, { minLength: 1, maxLength: 30, size: 'max' }),
        fc.array(cmdArb, { minLength: 5, maxLength: 60, size: 'max' }),
        (opts, before, after) => {
          const ref = new Reference();
          const a = new WatchHub(opts, 0);
          for (const cmd of before) {
            if (cmd.t === 'publish')
              a.publish(cmd.ops.map((op) => ref.apply(op)).filter((e) => e !== undefined));
          }
          const frozen = a.snapshot();
          const cut = ref.revision;
          // The snapshot is a frozen view: later publishes do not change what it yields.
          a.publish([ref.apply({ key: 'zz', del: false, value: 1, cause: 'write' })!]);
          const b = WatchHub.restore(structuredClone([...frozen.parts()]), opts);
          expect(b.revision).toBe(cut);
          b.publish([ref.events[ref.events.length - 1]!]);
          const subsA: Subscription[] = [];
          const subsB: Subscription[] = [];
          const readyA: number[] = [];
          const readyB: number[] = [];
          for (const cmd of after) {
            if (cmd.t === 'publish') {
              const events = cmd.ops.map((op) => ref.apply(op)).filter((e) => e !== undefined);
              a.publish(events);
              b.publish(events);
            } else if (cmd.t === 'sub') {
              // Resumes from before the restore point legitimately differ (B's window is empty).
              const req: SubscribeRequest = {
                ...cmd.target,
                ...(cmd.mode === 'snapshot' ? { snapshot: true } : {}),
                ...(cmd.mode === 'resume' ? { fromRevision: Math.max(cut, ref.revision - cmd.back) } : {}),
              };
              const i = subsA.length;
              readyA.push(0);
              readyB.push(0);
              subsA.push(a.subscribe(req, ref.source(cmd.reversed), () => readyA[i]!++));
              subsB.push(b.subscribe(req, ref.source(cmd.reversed), () => readyB[i]!++));
            } else if (cmd.t === 'take' && subsA.length > 0) {
              const i = cmd.sub % subsA.length;
              expect(subsB[i]!.take(cmd.max)).toEqual(subsA[i]!.take(cmd.max));
            } else if (cmd.t === 'close' && subsA.length > 0) {
              const i = cmd.sub % subsA.length;
              subsA[i]!.close();
              subsB[i]!.close();
            }
            expect(b.revision).toBe(a.revision);
            expect(b.subscriberCount).toBe(a.subscriberCount);
            expect(readyB).toEqual(readyA);
            for (let i = 0; i < subsA.length; i++) {
              expect(subsB[i]!.pending).toBe(subsA[i]!.pending);
              expect(subsB[i]!.lastRevision).toBe(subsA[i]!.lastRevision);
              expect(subsB[i]!.closed).toBe(subsA[i]!.closed);
              expect(subsB[i]!.id).toBe(subsA[i]!.id);
            }
          }
          for (let i = 0; i < subsA.length; i++) expect(subsB[i]!.take()).toEqual(subsA[i]!.take());
          expect([...b.snapshot().parts()]).toEqual([...a.snapshot().parts()]);
        },
      ),
      { numRuns: 200 },
    );
  });
});

function putEvent(key: string, revision: number, value: unknown = revision): ChangeEvent {
  const item: Item = { key, value, version: 1, createRevision: revision, modRevision: revision };
  return { type: 'put', cause: 'write', key, value, revision, item };
}

/** staticSource serves a fixed set of items at a fixed revision. */
function staticSource(revision: number, items: Item[] = []): SnapshotSource {
  return {
    currentRevision: revision,
    get: (key) => items.find((i) => i.key === key),
    itemsWithPrefix: (prefix) => items.filter((i) => i.key.startsWith(prefix)),
  };
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isDkvError(err) ? err.code : 'Error';
  }
  return undefined;
}

describe('WatchHub', () => {
  const opts: WatchOptions = { historyMax: 100, bufferMax: 10 };

  it('starts a snapshot watch atomically, then streams later events', () => {
    const hub = new WatchHub(opts, 0);
    hub.publish([putEvent('k/1', 1), putEvent('other', 2)]);
    const item = putEvent('k/1', 1).item!;
    const sub = hub.subscribe({ prefix: 'k/', snapshot: true }, staticSource(2, [item]));
    hub.publish([putEvent('k/2', 3), putEvent('x', 4)]);
    expect(sub.take()).toEqual([
      { kind: 'snapshot', revision: 2, items: [item], compacted: false },
      { kind: 'event', event: putEvent('k/2', 3) },
    ]);
    expect(sub.lastRevision).toBe(4); // caught up: nothing matched at 4
  });

  it('resumes from history, or with a compacted snapshot once the revision left the window', () => {
    const hub = new WatchHub({ historyMax: 3, bufferMax: 10 }, 0);
    for (let r = 1; r <= 5; r++) hub.publish([putEvent('k', r)]);
    expect(hub.oldestRetained).toBe(3);
    const ok = hub.subscribe({ key: 'k', fromRevision: 2 }, staticSource(5));
    expect(ok.take().map((m) => (m.kind === 'event' ? m.event.revision : m.kind))).toEqual([3, 4, 5]);
    const old = hub.subscribe({ key: 'k', fromRevision: 1 }, staticSource(5, [putEvent('k', 5).item!]));
    expect(old.take()).toEqual([
      { kind: 'snapshot', revision: 5, items: [putEvent('k', 5).item!], compacted: true },
    ]);
  });

  it('does not count the initial replay against the buffer', () => {
    const hub = new WatchHub({ historyMax: 100, bufferMax: 2 }, 0);
    for (let r = 1; r <= 5; r++) hub.publish([putEvent('k', r)]);
    const sub = hub.subscribe({ key: 'k', fromRevision: 1 }, staticSource(5));
    expect(sub.pending).toBe(4);
    hub.publish([putEvent('k', 6), putEvent('k', 7)]);
    expect(sub.pending).toBe(6);
    sub.take(3);
    hub.publish([putEvent('k', 8)]); // 3 queued: 1 of the replay, and 2 live, the most allowed
    expect(sub.closed).toBe(true);
    expect(sub.take()).toMatchObject([{ kind: 'cancelled', code: ErrorCode.SlowConsumer, lastRevision: 4 }]);
  });

  it('waits for a revision ahead of this replica', () => {
    const hub = new WatchHub(opts, 2);
    const sub = hub.subscribe({ key: 'k', fromRevision: 4 }, staticSource(2));
    expect(sub.lastRevision).toBe(4);
    hub.publish([putEvent('k', 3), putEvent('k', 4), putEvent('k', 5)]);
    expect(sub.take()).toEqual([{ kind: 'event', event: putEvent('k', 5) }]);
  });

  it('cuts off a slow consumer alone, with the revision to resume from', () => {
    const hub = new WatchHub({ historyMax: 100, bufferMax: 2 }, 0);
    let woken = 0;
    const slow = hub.subscribe({ prefix: '' }, staticSource(0), () => woken++);
    const fast = hub.subscribe({ prefix: '' }, staticSource(0));
    hub.publish([putEvent('a', 1)]);
    expect(woken).toBe(1);
    expect(slow.take(1)).toHaveLength(1);
    for (const [key, r] of [
      ['b', 2],
      ['c', 3],
      ['d', 4],
    ] as const) {
      hub.publish([putEvent(key, r)]);
      expect(fast.take()).toHaveLength(r === 2 ? 2 : 1);
    }
    expect(woken).toBe(2);
    expect(fast.closed).toBe(false);
    expect(slow.closed).toBe(true);
    expect(slow.pending).toBe(1);
    expect(slow.take()).toEqual([
      { kind: 'cancelled', code: ErrorCode.SlowConsumer, message: expect.any(String), lastRevision: 1 },
    ]);
    expect(slow.take()).toEqual([]);
    expect(hub.subscriberCount).toBe(1);
    const again = hub.subscribe({ prefix: '', fromRevision: 1 }, staticSource(4));
    expect(again.take().map((m) => (m.kind === 'event' ? m.event.key : m.kind))).toEqual(['b', 'c', 'd']);
  });

  it('calls onReady once per empty-to-non-empty transition, after the batch, and survives a throwing callback', () => {
    const hub = new WatchHub(opts, 0);
    const calls: number[] = [];
    const subs: Subscription[] = [];
    for (let i = 0; i < 3; i++) {
      subs.push(
        hub.subscribe({ key: 'k' }, staticSource(0), () => {
          calls.push(i);
          expect(hub.revision).toBe(2); // the whole batch is dispatched first
          if (i === 0) throw new Error('boom');
        }),
      );
    }
    expect(() => hub.publish([putEvent('k', 1), putEvent('k', 2)])).toThrow('boom');
    expect(calls).toEqual([0, 1, 2]);
    expect(subs.map((s) => s.pending)).toEqual([2, 2, 2]);
  });

  it('close stops delivery and frees the index', () => {
    const hub = new WatchHub(opts, 0);
    const subs: Subscription[] = [];
    for (let i = 0; i < 200; i++) subs.push(hub.subscribe({ prefix: `p/${i}/` }, staticSource(0)));
    for (let i = 0; i < 200; i++) subs.push(hub.subscribe({ key: `k${i}` }, staticSource(0)));
    hub.publish([putEvent('p/7/x', 1), putEvent('k7', 2)]);
    expect(subs[7]!.pending).toBe(1);
    expect(subs[207]!.pending).toBe(1);
    expect(subs.reduce((n, s) => n + s.pending, 0)).toBe(2);
    for (const s of subs) s.close();
    subs[0]!.close();
    expect(subs[7]!.take()).toEqual([]);
    expect(hub.subscriberCount).toBe(0);
    const registry = (
      hub as unknown as { registry: { byKey: Map<string, unknown>; root: { isEmpty(): boolean } } }
    ).registry;
    expect(registry.byKey.size).toBe(0);
    expect(registry.root.isEmpty()).toBe(true);
  });

  it('refuses bad requests and bad batches', () => {
    const hub = new WatchHub(opts, 5);
    const src = staticSource(5);
    expect(code(() => hub.subscribe({}, src))).toBe(ErrorCode.InvalidArgument);
    expect(code(() => hub.subscribe({ key: 'a', prefix: 'a' }, src))).toBe(ErrorCode.InvalidArgument);
    expect(code(() => hub.subscribe({ key: 'a', fromRevision: -1 }, src))).toBe(ErrorCode.InvalidArgument);
    expect(code(() => hub.subscribe({ key: 'a', fromRevision: 1.5 }, src))).toBe(ErrorCode.InvalidArgument);
    expect(code(() => hub.subscribe({ key: 'a', fromRevision: 1, snapshot: true }, src))).toBe(
      ErrorCode.InvalidArgument,
    );
    expect(code(() => hub.subscribe({ key: 'a' }, staticSource(4)))).toBe('Error');
    expect(code(() => hub.subscribe({ key: 'a' }, src).take(-1))).toBe(ErrorCode.InvalidArgument);
    expect(code(() => hub.publish([putEvent('a', 7)]))).toBe('Error');
    expect(code(() => hub.publish([putEvent('a', 6), putEvent('a', 6)]))).toBe('Error');
    expect(hub.revision).toBe(5); // a refused batch changes nothing
    expect(code(() => new WatchHub({ historyMax: 1, bufferMax: 0 }, 0))).toBe(ErrorCode.InvalidArgument);
    expect(code(() => new WatchHub({ historyMax: -1, bufferMax: 1 }, 0))).toBe(ErrorCode.InvalidArgument);
  });

  it('a prefix watcher gets exactly the keys that start with its prefix (any UTF-16 string)', () => {
    const str = fc.string({ unit: 'binary', maxLength: 4 });
    fc.assert(
      fc.property(
        fc.uniqueArray(str, { maxLength: 12 }),
        fc.array(str, { maxLength: 12 }),
        (prefixes, keys) => {
          const hub = new WatchHub({ historyMax: 0, bufferMax: 100 }, 0);
          const subs = prefixes.map((prefix) => hub.subscribe({ prefix }, staticSource(0)));
          const exact = keys.map((key) => hub.subscribe({ key }, staticSource(0)));
          hub.publish(keys.map((key, i) => putEvent(key, i + 1)));
          prefixes.forEach((prefix, i) => {
            const got = subs[i]!.take().map((m) => (m.kind === 'event' ? m.event.revision : -1));
            const want = keys.flatMap((k, r) => (k.startsWith(prefix) ? [r + 1] : []));
            expect(got).toEqual(want);
          });
          keys.forEach((key, i) => {
            const got = exact[i]!.take().map((m) => (m.kind === 'event' ? m.event.revision : -1));
            expect(got).toEqual(keys.flatMap((k, r) => (k === key ? [r + 1] : [])));
          });
          for (const sub of [...subs, ...exact]) sub.close();
          const registry = (hub as unknown as { registry: { root: { isEmpty(): boolean } } }).registry;
          expect(registry.root.isEmpty()).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('lets an onReady callback subscribe, atomically at the new revision', () => {
    const hub = new WatchHub(opts, 0);
    let nested = 0;
    hub.subscribe({ key: 'k' }, staticSource(0), () => {
      // After dispatch, a callback may subscribe (atomically, at the new revision).
      const s = hub.subscribe({ key: 'k', snapshot: true }, staticSource(hub.revision));
      nested = s.pending;
    });
    hub.publish([putEvent('k', 1)]);
    expect(nested).toBe(1);
  });

  it('restore validates its input', () => {
    const good = [...new WatchHub(opts, 7).snapshot().parts()];
    expect(WatchHub.restore(good, opts).revision).toBe(7);
    expect(WatchHub.restore(good, opts).oldestRetained).toBe(8);
    for (const bad of [
      [],
      [null],
      [[1]],
      [{ format: 1 }],
      [{ format: 2, revision: 1 }],
      [{ format: 1, revision: -1 }],
      [{ format: 1, revision: 1.5 }],
      [{ format: 1, revision: '1' }],
      [{ format: 1, revision: 1, extra: true }],
      [...good, ...good],
    ]) {
      expect(() => WatchHub.restore(bad, opts)).toThrow(DkvError);
      expect(code(() => WatchHub.restore(bad, opts))).toBe(ErrorCode.Corrupted);
    }
  });
});
