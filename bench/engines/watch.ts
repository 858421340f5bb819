/**
 * Watch hub benchmark (issue 4): what one published event costs to dispatch, and whether
 * that cost depends on how many watchers exist (it should depend only on how many match).
 *
 *     node --expose-gc --import tsx bench/engines/watch.ts [--quick]
 *
 * Scenarios, all on the same seeded event stream (1M events, 100k with --quick; one event
 * per publish, as the state machine does for single-key entries), with every woken watcher
 * drained by take() every 64 events, as a node's stream loop would:
 * - `many`: 10,000 watchers on distinct prefixes (`tenant/<i>/`) plus 1,000 exact-key
 *   watchers. About a quarter of the events match one watcher.
 * - `few`: the same events with 10 prefix and 10 key watchers (so almost nothing matches).
 *   The difference from `many` is the cost of the deliveries, not of the index.
 * - `noMatch`: events under `tenant/<20000..39999>/` on both hubs, which walk deep into the
 *   trie and match nothing: the index cost alone, with 11,000 watchers and with 20. It
 *   should be about the same: the walk stops at the first missing character.
 * - `fanout`: 1,000 watchers on one prefix, every event matching: deliveries per second.
 * It also reports the heap per watcher of the `many` index (with --expose-gc).
 */
import type { ChangeEvent } from '../../src/engines/types.js';
import { type SnapshotSource, type Subscription, WatchHub } from '../../src/engines/watch.js';
import { runIfMain, uniform } from '../common.js';

/** DRAIN_EVERY is how many events are published between two drains of the woken watchers. */
const DRAIN_EVERY = 64;
/** BLOCK is how many events are prepared (untimed) at a time. */
const BLOCK = 16_384;
const OPTS = { historyMax: 10_000, bufferMax: 1_000 };

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

function source(hub: WatchHub): SnapshotSource {
  return { currentRevision: hub.revision, get: () => undefined, itemsWithPrefix: () => [] };
}

/** SEGMENTS is how many equal parts each run is timed in; the median part is reported. */
const SEGMENTS = 5;

/** Run is one scenario's result. */
interface Run {
  readonly events: number;
  readonly deliveries: number;
  /** The median segment's time per event: robust to other processes on a shared machine. */
  readonly nsPerEvent: number;
  readonly cutOff: number;
}

/**
 * run publishes `events` events with keys from `nextKey` to `hub`, whose watchers were
 * subscribed with `wake` as onReady, draining the woken ones every DRAIN_EVERY events.
 */
function run(hub: WatchHub, woken: Subscription[], events: number, nextKey: () => string): Run {
  const segments: number[] = [];
  let deliveries = 0;
  let cutOff = 0;
  for (let s = 0; s < SEGMENTS; s++) {
    const part = segment(hub, woken, Math.floor(events / SEGMENTS), nextKey);
    deliveries += part.deliveries;
    cutOff += part.cutOff;
    segments.push(part.nsPerEvent);
  }
  segments.sort((a, b) => a - b);
  return { events, deliveries, cutOff, nsPerEvent: segments[SEGMENTS >> 1]! };
}

function segment(hub: WatchHub, woken: Subscription[], events: number, nextKey: () => string): Run {
  let deliveries = 0;
  let cutOff = 0;
  let elapsedMs = 0;
  let revision = hub.revision;
  const batches: ChangeEvent[][] = [];
  for (let done = 0; done < events; ) {
    const n = Math.min(BLOCK, events - done);
    batches.length = 0;
    for (let i = 0; i < n; i++) {
      revision++;
      const key = nextKey();
      key.charCodeAt(0); // flatten the concatenated string, as a decoded key would be
      batches.push([{ type: 'put', cause: 'write', key, value: revision, revision }]);
    }
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      hub.publish(batches[i]!);
      if ((i + 1) % DRAIN_EVERY === 0 || i === n - 1) {
        for (const sub of woken) {
          for (const m of sub.take()) {
            if (m.kind === 'event') deliveries++;
            else if (m.kind === 'cancelled') cutOff++;
          }
        }
        woken.length = 0;
      }
    }
    elapsedMs += performance.now() - start;
    done += n;
  }
  return { events, deliveries, cutOff, nsPerEvent: (elapsedMs * 1e6) / events };
}

/** mixedKeys: half the keys under `tenant/<0..19999>/` (so about half of those are watched), half elsewhere. */
function mixedKeys(seed: number): () => string {
  const r = uniform(seed);
  return () =>
    r() < 0.5
      ? `tenant/${Math.floor(r() * 20_000)}/obj${Math.floor(r() * 100)}`
      : r() < 0.02
        ? `k/${Math.floor(r() * 2_000)}`
        : `other/${Math.floor(r() * 1_000_000)}`;
}

function watched(
  prefixes: number,
  keys: number,
): { hub: WatchHub; woken: Subscription[]; heapBytes: number } {
  const hub = new WatchHub(OPTS, 0);
  const woken: Subscription[] = [];
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < prefixes; i++) {
    const sub: Subscription = hub.subscribe({ prefix: `tenant/${i}/` }, source(hub), () => woken.push(sub));
  }
  for (let i = 0; i < keys; i++) {
    const sub: Subscription = hub.subscribe({ key: `k/${i}` }, source(hub), () => woken.push(sub));
  }
  gc();
  const heapBytes = process.memoryUsage().heapUsed - before;
  return { hub, woken, heapBytes };
}

/** bench measures the scenarios above and returns their figures. */
export async function bench(opts: { quick: boolean }): Promise<Record<string, number | string>> {
  const events = opts.quick ? 100_000 : 1_000_000;
  const out: Record<string, number | string> = { events };

  // Warm up the JIT on a small run, so the first scenario is not penalised.
  {
    const w = watched(100, 10);
    run(w.hub, w.woken, 50_000, mixedKeys(7));
  }

  const many = watched(10_000, 1_000);
  out.manyHeapBytesPerWatcher = Math.round(many.heapBytes / 11_000);
  const m = run(many.hub, many.woken, events, mixedKeys(1));
  out.manyWatchers = many.hub.subscriberCount;
  out.manyEventsPerSec = Math.round(1e9 / m.nsPerEvent);
  out.manyNsPerEvent = Math.round(m.nsPerEvent);
  out.manyMatchingFraction = Number((m.deliveries / m.events).toFixed(3));
  out.manyCutOff = m.cutOff;

  const few = watched(10, 10);
  const f = run(few.hub, few.woken, events, mixedKeys(1));
  out.fewWatchers = few.hub.subscriberCount;
  out.fewEventsPerSec = Math.round(1e9 / f.nsPerEvent);
  out.fewNsPerEvent = Math.round(f.nsPerEvent);
  out.fewMatchingFraction = Number((f.deliveries / f.events).toFixed(4));

  // The index alone: keys that walk deep into the trie (`tenant/<20000..>/`) but match nothing.
  const r0 = uniform(2);
  const noMatch = () => `tenant/${20_000 + Math.floor(r0() * 20_000)}/obj${Math.floor(r0() * 100)}`;
  const mn = run(many.hub, many.woken, events, noMatch);
  out.manyNoMatchNsPerEvent = Math.round(mn.nsPerEvent);
  const r1 = uniform(2);
  const noMatchAgain = () => `tenant/${20_000 + Math.floor(r1() * 20_000)}/obj${Math.floor(r1() * 100)}`;
  const fn = run(few.hub, few.woken, events, noMatchAgain);
  out.fewNoMatchNsPerEvent = Math.round(fn.nsPerEvent);
  out.noMatchManyOverFew = Number((mn.nsPerEvent / fn.nsPerEvent).toFixed(2));

  const fan = new WatchHub(OPTS, 0);
  const fanWoken: Subscription[] = [];
  for (let i = 0; i < 1_000; i++) {
    const sub: Subscription = fan.subscribe({ prefix: 'hot/' }, source(fan), () => fanWoken.push(sub));
  }
  const r = uniform(3);
  const fanEvents = Math.floor(events / 10);
  const fo = run(fan, fanWoken, fanEvents, () => `hot/${Math.floor(r() * 1000)}`);
  out.fanoutWatchers = 1_000;
  out.fanoutEvents = fanEvents;
  out.fanoutDeliveriesPerSec = Math.round((1e9 / fo.nsPerEvent) * 1_000);
  out.fanoutNsPerDelivery = Number((fo.nsPerEvent / 1_000).toFixed(1));
  out.fanoutCutOff = fo.cutOff;
  return out;
}

runIfMain(import.meta.url, bench);
