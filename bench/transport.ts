/**
 * Transport benchmark, on loopback, server and client in this one process (so both sides'
 * CPU is counted against the same core):
 * - RPC unary round trips per second with 1 and with 64 requests in flight (an echo op with
 *   a small argument), plus the p50/p99 latency at each;
 * - stream items per second (one stream, small items);
 * - peer-link messages per second, 100-byte messages flushed 1000 at a time (one frame).
 *
 *     npx tsx bench/transport.ts [--quick]
 */
import { SeededRandom } from '../src/random.js';
import { PeerTransport } from '../src/transport/peer-links.js';
import { RpcClient } from '../src/transport/rpc-client.js';
import { RpcServer } from '../src/transport/rpc-server.js';
import { runIfMain } from './common.js';

const HOST = '127.0.0.1';
const FRAME_MAX = 4 << 20;

function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/** rpcRoundTrips runs `inFlight` closed loops of echo calls for `ms`. */
async function rpcRoundTrips(
  client: RpcClient,
  inFlight: number,
  ms: number,
): Promise<{ perSec: number; p50Us: number; p99Us: number }> {
  const lat: number[] = [];
  const arg = { key: 'user:12345', value: 'v'.repeat(32) };
  const end = performance.now() + ms;
  let done = 0;
  const loop = async (): Promise<void> => {
    while (performance.now() < end) {
      const t0 = performance.now();
      await client.call('echo', arg);
      lat.push(performance.now() - t0);
      done++;
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inFlight }, loop));
  const elapsed = performance.now() - t0;
  const sorted = Float64Array.from(lat).sort();
  return {
    perSec: round(done / (elapsed / 1000)),
    p50Us: round(percentile(sorted, 0.5) * 1000),
    p99Us: round(percentile(sorted, 0.99) * 1000),
  };
}

async function rpcBench(quick: boolean, out: Record<string, number | string>): Promise<void> {
  const server = new RpcServer({
    listen: { host: HOST, port: 0 },
    frameBytesMax: FRAME_MAX,
    inFlightMax: 1024,
    handlers: {
      ops: { echo: 'unary', items: 'stream' },
      unary: (_op, args) => args,
      stream: (_op, args, _ctx, sink) => {
        const n = args as number;
        let i = 0;
        // Push in slices, pausing when the socket asks to, as a watch would.
        const pump = (): void => {
          while (i < n) {
            if (!sink.push(i++)) {
              setImmediate(pump);
              return;
            }
            if (i % 1024 === 0) {
              setImmediate(pump);
              return;
            }
          }
          sink.end();
        };
        pump();
        return undefined;
      },
    },
  });
  const { port } = await server.start();
  const client = await RpcClient.connect({ host: HOST, port, frameBytesMax: FRAME_MAX });
  try {
    const ms = quick ? 700 : 3000;
    await rpcRoundTrips(client, 8, 200); // warm-up
    for (const inFlight of [1, 64]) {
      const r = await rpcRoundTrips(client, inFlight, ms);
      out[`rpcRoundTripsPerSec_inFlight${inFlight}`] = r.perSec;
      out[`rpcP50Us_inFlight${inFlight}`] = r.p50Us;
      out[`rpcP99Us_inFlight${inFlight}`] = r.p99Us;
    }
    const n = quick ? 100_000 : 500_000;
    const t0 = performance.now();
    let got = 0;
    for await (const _ of client.stream('items', n, { bufferMax: 1 << 20 })) got++;
    if (got !== n) throw new Error(`bench: stream delivered ${got} of ${n}`);
    out.streamItemsPerSec = round(n / ((performance.now() - t0) / 1000));
  } finally {
    await client.close();
    await server.close();
  }
}

async function peerBench(quick: boolean, out: Record<string, number | string>): Promise<void> {
  type Msg = { g: number; p: Uint8Array };
  let received = 0;
  let onReceived: (() => void) | undefined;
  const make = (id: number): PeerTransport<Msg> =>
    new PeerTransport<Msg>({
      nodeId: id,
      clusterId: 'bench',
      listen: { host: HOST, port: 0 },
      frameBytesMax: FRAME_MAX,
      queueBytesMax: 64 << 20,
      reconnect: { initialDelayMs: 10, maxDelayMs: 100, multiplier: 2, jitter: 0.2 },
      random: new SeededRandom(id),
      validate: (m) => m as Msg,
      onMessages: (_from, msgs) => {
        received += msgs.length;
        onReceived?.();
      },
    });
  const a = make(1);
  const b = make(2);
  try {
    const addrA = await a.start();
    const addrB = await b.start();
    a.addPeer(2, addrB);
    b.addPeer(1, addrA);
    while (!a.peerStates()[0]!.up || !b.peerStates()[0]!.up) await new Promise((r) => setTimeout(r, 5));
    const payload = new Uint8Array(80).fill(1);
    const batch = 1000;
    const rounds = quick ? 300 : 2000;
    const t0 = performance.now();
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < batch; i++) a.send(2, { g: i & 63, p: payload });
      a.flush();
      // One round in flight at a time: wait until it arrived (a node flushes once per loop round).
      const want = (r + 1) * batch;
      if (received < want)
        await new Promise<void>((resolve) => {
          onReceived = () => {
            if (received >= want) resolve();
          };
        });
    }
    const elapsed = performance.now() - t0;
    out.peerMessagesPerSec = round((rounds * batch) / (elapsed / 1000));
    out.peerMessageBytes = 100;
    out.peerFramesSent = a.peerStates()[0]!.stats.framesSent;
  } finally {
    await a.close();
    await b.close();
  }
}

/** bench measures the transport figures listed in the file comment. */
export async function bench(opts: { quick: boolean }): Promise<Record<string, number | string>> {
  const out: Record<string, number | string> = {};
  await rpcBench(opts.quick, out);
  await peerBench(opts.quick, out);
  return out;
}

runIfMain(import.meta.url, bench);
