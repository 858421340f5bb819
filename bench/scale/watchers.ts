/**
 * Section "watchers": event delivery latency as the number of watchers of one key grows, on a
 * real 3-node cluster (default store, 6 partitions).
 *
 * W watchers (`client.watch({ key })`, one server stream each) are spread over several client
 * connections, at most WATCHERS_PER_CLIENT per client: a node admits at most inFlightMax
 * (1024) requests and streams per connection. Client i lists the servers rotated by i, so the
 * watch streams (which go to the first reachable replica of the key's group, or its leader for
 * a snapshot) spread over the nodes. Every watch is ready (its starting revision fixed) before
 * the writer starts.
 *
 * One writer, on its own client, puts the key at a fixed modest rate (sequentially, never more
 * than one put in flight): at most PUTS_PER_SEC_MAX puts a second, fewer for many watchers so
 * that events delivered stay under EVENTS_PER_SEC_MAX a second. Each value carries a sequence
 * number; the time the put was *sent* is noted, and every watcher's event is one latency
 * sample (put sent -> that watcher's iterator handed out the event), so the figures include
 * commit, apply, the server's fan-out and the client's decoding and merging. Per put, the time
 * until the last watcher had it is a second figure. The first WARMUP_PUTS puts are not
 * counted. Watchers and writer share this one process, as the servers share the machine.
 */
import type { DkvClient } from '../../src/client/client.js';
import type { WatchStream } from '../../src/client/watch.js';
import { cpuSecondsOf, LatencySample, percentile, round } from '../compare/loadgen.js';
import { type ScaleCluster, sleep } from './cluster.js';
import { VALUE_BYTES } from './data.js';

/** WATCHERS_PER_CLIENT bounds the watch streams on one client's connections. */
export const WATCHERS_PER_CLIENT = 500;
/** PUTS_PER_SEC_MAX is the writer's rate with few watchers. */
export const PUTS_PER_SEC_MAX = 20;
/** EVENTS_PER_SEC_MAX caps puts/s x watchers. */
export const EVENTS_PER_SEC_MAX = 20_000;
/** WARMUP_PUTS are put first and not counted. */
const WARMUP_PUTS = 3;
/** OPEN_IN_FLIGHT is how many watches are being opened at once. */
const OPEN_IN_FLIGHT = 64;
/** DRAIN_MS bounds the wait for the last events after the last put. */
const DRAIN_MS = 15_000;
/** WATCH_KEY is the key every watcher watches (16 bytes). */
const WATCH_KEY = 'wch:scale0000000';

/** WatchersRow is what one W measured. */
export interface WatchersRow {
  readonly watchers: number;
  readonly clients: number;
  /** Opening every watch until all were ready (s). */
  readonly setupS: number;
  readonly putsPerSec: number;
  /** Puts counted (after the warm-up). */
  readonly puts: number;
  /** Events expected (puts x watchers) and delivered. */
  readonly eventsExpected: number;
  readonly eventsDelivered: number;
  /** Per event per watcher: put sent -> event handed out (ms). */
  readonly eventP50Ms: number;
  readonly eventP99Ms: number;
  readonly eventMaxMs: number;
  /** Per put: put sent -> the last watcher had it (ms). */
  readonly allDeliveredP50Ms: number;
  readonly allDeliveredP99Ms: number;
  /** The servers' and this process's CPU over the writing window (CPU s/s). */
  readonly serverCpu: number;
  readonly clientCpu: number;
}

/** putsPerSecFor is the writer's rate for `watchers` watchers. */
export function putsPerSecFor(watchers: number): number {
  return Math.max(1, Math.min(PUTS_PER_SEC_MAX, Math.floor(EVENTS_PER_SEC_MAX / watchers)));
}

/** rotate is `xs` starting at its i-th element. */
function rotate<T>(xs: readonly T[], i: number): T[] {
  const k = i % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

/** measureWatchersAt opens `watchers` watches on `c`, writes for measureMs, and closes them. */
export async function measureWatchersAt(
  c: ScaleCluster,
  watchers: number,
  measureMs: number,
  say: (line: string) => void,
): Promise<WatchersRow> {
  const rate = putsPerSecFor(watchers);
  const puts = Math.max(1, Math.round((rate * measureMs) / 1000));
  const total = WARMUP_PUTS + puts;
  const sentAt = new Float64Array(total + 1);
  const got = new Uint32Array(total + 1);
  const lastAt = new Float64Array(total + 1);
  const sample = new LatencySample();
  let delivered = 0;
  const onValue = (value: unknown): void => {
    if (typeof value !== 'string') return;
    const seq = Number.parseInt(value, 10);
    if (!(seq >= 1 && seq <= total) || sentAt[seq] === 0) return;
    const now = performance.now();
    got[seq]!++;
    if (seq > WARMUP_PUTS) {
      sample.add(now - sentAt[seq]!);
      delivered++;
    }
    if (got[seq] === watchers) lastAt[seq] = now;
  };

  const nClients = Math.ceil(watchers / WATCHERS_PER_CLIENT);
  const writer = await c.connect();
  const clients: DkvClient[] = [];
  for (let i = 0; i < nClients; i++) clients.push(await c.connect({ servers: rotate(c.servers, i) }));
  const streams: WatchStream[] = [];
  const pumps: Promise<void>[] = [];
  try {
    const t0 = performance.now();
    let opened = 0;
    await Promise.all(
      Array.from({ length: Math.min(OPEN_IN_FLIGHT, watchers) }, async () => {
        while (opened < watchers) {
          const i = opened++;
          const stream = clients[i % nClients]!.watch({ key: WATCH_KEY });
          streams.push(stream);
          pumps.push(
            (async () => {
              for await (const ev of stream) if (ev.type === 'put') onValue(ev.value);
            })().catch(() => undefined),
          );
          await stream.ready;
        }
      }),
    );
    const setupMs = performance.now() - t0;
    say(
      `watchers: W=${watchers}: ${watchers} watches on ${nClients} client${nClients > 1 ? 's' : ''} ready in ${(setupMs / 1000).toFixed(1)} s; ${total} puts at ${rate}/s`,
    );

    const pids = c.pids();
    let cpu0 = { server: 0, client: process.cpuUsage(), at: 0 };
    const start = performance.now();
    for (let seq = 1; seq <= total; seq++) {
      const due = start + ((seq - 1) * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      if (seq === WARMUP_PUTS + 1)
        cpu0 = { server: cpuSecondsOf(pids), client: process.cpuUsage(), at: performance.now() };
      sentAt[seq] = performance.now();
      await writer.put(WATCH_KEY, String(seq).padEnd(VALUE_BYTES, ' '));
    }
    const drainUntil = performance.now() + DRAIN_MS;
    while (delivered < puts * watchers && performance.now() < drainUntil) await sleep(5);
    const windowS = Math.max(0.001, (performance.now() - cpu0.at) / 1000);
    const cpuS = cpuSecondsOf(pids) - cpu0.server;
    const used = process.cpuUsage(cpu0.client);
    const sorted = sample.sorted();
    const all: number[] = [];
    for (let seq = WARMUP_PUTS + 1; seq <= total; seq++)
      all.push(lastAt[seq]! > 0 ? lastAt[seq]! - sentAt[seq]! : Number.POSITIVE_INFINITY);
    const allSorted = Float64Array.from(all).sort();
    const row: WatchersRow = {
      watchers,
      clients: nClients,
      setupS: round(setupMs / 1000, 2),
      putsPerSec: rate,
      puts,
      eventsExpected: puts * watchers,
      eventsDelivered: delivered,
      eventP50Ms: round(percentile(sorted, 0.5), 2),
      eventP99Ms: round(percentile(sorted, 0.99), 2),
      eventMaxMs: round(sorted.length > 0 ? sorted[sorted.length - 1]! : Number.NaN, 2),
      allDeliveredP50Ms: round(percentile(allSorted, 0.5), 2),
      allDeliveredP99Ms: round(percentile(allSorted, 0.99), 2),
      serverCpu: round(cpuS / windowS, 3),
      clientCpu: round((used.user + used.system) / 1e6 / windowS, 3),
    };
    say(
      `watchers: W=${watchers}: ${delivered}/${puts * watchers} events, p50 ${row.eventP50Ms} ms, p99 ${row.eventP99Ms} ms; all watchers p99 ${row.allDeliveredP99Ms} ms; server CPU ${row.serverCpu}, this process ${row.clientCpu}`,
    );
    return row;
  } finally {
    for (const s of streams) s.close();
    await Promise.all(pumps);
    await Promise.all([writer, ...clients].map((cl) => c.release(cl)));
  }
}

/** measureWatchers measures every W in turn on one cluster. */
export async function measureWatchers(
  c: ScaleCluster,
  sizes: readonly number[],
  measureMs: number,
  say: (line: string) => void,
): Promise<WatchersRow[]> {
  const rows: WatchersRow[] = [];
  for (const w of sizes) {
    rows.push(await measureWatchersAt(c, w, measureMs, say));
    // The closed streams' teardown settles before the next size.
    await sleep(500);
  }
  return rows;
}
