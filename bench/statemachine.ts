/**
 * State machine benchmark (issue 4): committed entries applied per second on one core, through
 * the whole apply path (msgpack decode, validation, session table, engines, watch publish),
 * for the main command kinds; and heap bytes per key with 1M keys (16-byte keys, 128-byte
 * values) held by a whole state machine (store, TTL-free, no indexes) and with one index.
 *
 *     node --expose-gc --import tsx bench/statemachine.ts [--quick]
 */
import { encodeEnvelope } from '../src/statemachine/codec.js';
import type { Command } from '../src/statemachine/commands.js';
import { GroupStateMachine } from '../src/statemachine/state-machine.js';
import { type Figures, runIfMain } from './common.js';

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

function key16(i: number): string {
  return `key-${i.toString(16).padStart(12, '0')}`;
}

const VALUE = new Uint8Array(128).fill(7);

/** applyRate encodes `n` entries from `make`, then times applying them. */
function applyRate(
  n: number,
  make: (i: number) => Command,
  session: boolean,
  sm = new GroupStateMachine(),
): number {
  const entries: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    entries.push(
      encodeEnvelope({
        time: 1_000_000 + i,
        cmd: make(i),
        ...(session && { client: `c${i % 64}`, seq: Math.floor(i / 64) + 1, ack: Math.floor(i / 64) + 1 }),
      }),
    );
  }
  const start = sm.appliedIndex + 1;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) sm.apply(start + i, entries[i]!);
  return Math.round(n / ((performance.now() - t0) / 1000));
}

function heapPerKey(keys: number, withIndex: boolean): number {
  gc();
  const before = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
  const sm = new GroupStateMachine(
    withIndex ? { indexes: [{ name: 'shard', kind: 'eq', label: 'shard' }] } : {},
  );
  for (let i = 0; i < keys; i++) {
    const data = encodeEnvelope({
      time: 1_000_000,
      cmd: { op: 'put', key: key16(i), value: VALUE, ...(withIndex && { labels: { shard: i % 64 } }) },
    });
    sm.apply(i + 1, data);
  }
  gc();
  const after = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
  if (sm.revision !== keys) throw new Error('bench: not every put applied');
  return Math.round((after - before) / keys);
}

export async function bench(opts: { quick: boolean }): Promise<Figures> {
  const n = opts.quick ? 50_000 : 300_000;
  const out: Figures = {};
  out.applyPutNewKeysPerSec = applyRate(n, (i) => ({ op: 'put', key: key16(i), value: VALUE }), false);
  out.applyPutWithSessionPerSec = applyRate(
    n,
    (i) => ({ op: 'put', key: key16(i % 10_000), value: VALUE }),
    true,
  );
  out.applyPutTtlPerSec = applyRate(
    n,
    (i) => ({ op: 'put', key: key16(i), value: VALUE, ttlMs: 60_000 }),
    false,
  );
  out.applyCounterAdd100PerSec = applyRate(
    n,
    (i) => ({ op: 'counter.add', name: `n${i % 100}`, delta: 1 }),
    true,
  );
  out.applyTxnCasPerSec = applyRate(
    n,
    (i) => ({
      op: 'txn',
      compare: [{ key: key16(i % 100), target: 'version', op: '=', value: 0 }],
      success: [{ op: 'put', key: key16(i % 100), value: i }],
      failure: [{ op: 'get', key: key16(i % 100) }],
    }),
    true,
  );
  // Locks: one lease, then acquire/release pairs on 100 locks (the release's token is the acquire's index).
  const sm = new GroupStateMachine();
  sm.apply(1, encodeEnvelope({ time: 1_000_000, cmd: { op: 'lease.grant', ttlMs: 3_600_000 } }));
  const pairs = Math.floor(n / 2);
  const lockEntries: Uint8Array[] = [];
  for (let i = 0; i < pairs; i++) {
    const acquireIndex = 2 + 2 * i;
    lockEntries.push(
      encodeEnvelope({
        time: 1_000_000,
        cmd: { op: 'lock.acquire', name: `L${i % 100}`, lease: 1, waitMs: 0 },
      }),
      encodeEnvelope({
        time: 1_000_000,
        cmd: { op: 'lock.release', name: `L${i % 100}`, token: acquireIndex },
      }),
    );
  }
  const t0 = performance.now();
  for (let i = 0; i < lockEntries.length; i++) {
    const r = sm.apply(2 + i, lockEntries[i]!);
    if (!r.result.ok) throw new Error(`bench: lock step failed: ${r.result.message}`);
  }
  out.applyLockAcquireReleasePerSec = Math.round(lockEntries.length / ((performance.now() - t0) / 1000));
  const keys = opts.quick ? 100_000 : 1_000_000;
  out.keysForMemory = keys;
  out.heapBytesPerKey = heapPerKey(keys, false);
  out.heapBytesPerKeyWithLabelIndex = heapPerKey(keys, true);
  out.gcExposed =
    typeof (globalThis as { gc?: unknown }).gc === 'function' ? 'yes' : 'no (run with --expose-gc)';
  return out;
}

runIfMain(import.meta.url, bench);
