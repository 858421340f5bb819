/**
 * Section "keys": what a store of N keys (16-byte keys, 128-byte values) costs in memory,
 * snapshots and restarts, measured two ways.
 *
 * In this process (the state machine and the storage layer, no Raft, no sockets):
 * - memory: one GroupStateMachine filled by applying entries of TXN_PUTS puts each; the JS heap
 *   plus array buffers after a full GC, minus the same before, divided by N;
 * - snapshot: `sm.snapshot()` streamed into a NodeStorage (LevelDB) in a temp dir through
 *   GroupStorage.createSnapshot, as a node takes one: serialising, chunked writes, one synced
 *   switch. Its size is the snapshot's bytes;
 * - load: reopening that NodeStorage, reading the snapshot back and restoring a fresh state
 *   machine from it (what a node does for each group at start-up, GroupReplica.open).
 *
 * On a real cluster (3 node processes, a store of one partition so that a transaction can
 * carry TXN_PUTS keys; snapshotEntries set so that about eight snapshots are taken during the
 * fill and the last one holds at least 7/8 of the keys):
 * - fill: N keys through `txn`, 16 transactions in flight;
 * - restart: a follower of the group is stopped (SIGTERM), then started again; the time from
 *   spawn until a serializable get of the last key written, sent to that node alone, returns
 *   it (spawning node under tsx, opening LevelDB, restoring the snapshot, replaying the log
 *   after it, serving); also until it prints its `serving` line;
 * - the node's RSS after the restart, minus its RSS when the cluster was fresh, per key; and
 *   its data directory's size on disk (log, snapshot, LevelDB files).
 */
import { readdirSync, rmSync, statSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DkvClient } from '../../src/client/client.js';
import { type ConfState, EMPTY_CONF_STATE, type Entry, EntryType, type Ready } from '../../src/raft/index.js';
import { encodeEnvelope } from '../../src/statemachine/codec.js';
import { GroupStateMachine } from '../../src/statemachine/state-machine.js';
import { NodeStorage } from '../../src/storage/node-storage.js';
import { rssBytesOf, ScaleCluster, sleep, waitFor } from './cluster.js';
import { fillByTxn, keyOf, putsOf, TXN_PUTS, valueOfKey } from './data.js';
import { gcNow, heapBytes } from './memory.js';

/** KeysRow is what one N measured. */
export interface KeysRow {
  readonly keys: number;
  /** In-process: heap + array buffers per key after a full GC. */
  readonly heapBytesPerKey: number;
  /** In-process: applying the fill's entries (ms). */
  readonly applyMs: number;
  readonly snapshotBytes: number;
  /** In-process: snapshot serialised and written to LevelDB, synced (ms). */
  readonly snapshotMs: number;
  /** In-process: storage reopened, snapshot read back and restored (ms). */
  readonly loadMs: number;
  /** Real cluster: the fill through txn (ms). */
  readonly fillMs: number;
  /** Real cluster: the restarted follower's snapshot index and last log index before it restarted. */
  readonly nodeSnapshotIndex: number;
  readonly nodeLastIndex: number;
  readonly nodeDiskBytes: number;
  /** Real cluster: spawn of the restarted node until its `serving` line (ms; NaN when not seen). */
  readonly restartServingMs: number;
  /** Real cluster: spawn until it answered a serializable get of the last key (ms). */
  readonly restartReadMs: number;
  /** Real cluster: (RSS after the restart - RSS of the fresh node) / keys. */
  readonly nodeRssBytesPerKey: number;
}

/** T0 is the replicated time of the in-process entries (any fixed time will do). */
const T0 = 1_700_000_000_000;
const CONF: ConfState = { ...EMPTY_CONF_STATE, voters: [1] };
/** LOG_BATCH is how many log entries one storage commit carries when building the in-process log. */
const LOG_BATCH = 4096;

function readyOf(entries: Entry[], commit: number): Ready {
  return {
    softState: null,
    hardState: { term: 1, vote: 1, commit },
    entries,
    snapshot: null,
    committedEntries: [],
    messages: [],
    readStates: [],
    mustSync: true,
  };
}

/** filledStateMachine applies keys [0, keys) to a new state machine, TXN_PUTS per entry. */
export function filledStateMachine(keys: number, ttlMs?: (i: number) => number): GroupStateMachine {
  const sm = new GroupStateMachine();
  let index = 0;
  for (let from = 0; from < keys; from += TXN_PUTS) {
    const success = putsOf(from, Math.min(keys, from + TXN_PUTS), ttlMs);
    const r = sm.apply(
      ++index,
      encodeEnvelope({ time: T0, cmd: { op: 'txn', compare: [], success, failure: [] } }),
    );
    if (!r.result.ok) throw new Error(`scale bench: fill entry ${index} failed: ${r.result.message}`);
  }
  if (sm.stats().keys !== keys) throw new Error(`scale bench: ${sm.stats().keys} keys applied, not ${keys}`);
  return sm;
}

/** inProcess measures memory, snapshot and load in this process. */
async function inProcess(
  keys: number,
): Promise<Pick<KeysRow, 'heapBytesPerKey' | 'applyMs' | 'snapshotBytes' | 'snapshotMs' | 'loadMs'>> {
  gcNow();
  const before = heapBytes();
  const t0 = performance.now();
  let sm: GroupStateMachine | undefined = filledStateMachine(keys);
  const applyMs = performance.now() - t0;
  gcNow();
  const heapBytesPerKey = (heapBytes() - before) / keys;
  const index = sm.appliedIndex;
  const dir = await mkdtemp(join(tmpdir(), 'dkv-scale-snap-'));
  try {
    const ns = await NodeStorage.open(dir);
    let snapshotBytes: number;
    let snapshotMs: number;
    try {
      const gs = await ns.createGroup(1, CONF);
      const empty = new Uint8Array(0);
      for (let i = 1; i <= index; i += LOG_BATCH) {
        const entries: Entry[] = [];
        for (let j = i; j < Math.min(index + 1, i + LOG_BATCH); j++)
          entries.push({ index: j, term: 1, type: EntryType.Normal, data: empty });
        await ns.commit([{ storage: gs, ready: readyOf(entries, entries.at(-1)!.index) }]);
      }
      const t1 = performance.now();
      const rec = await gs.createSnapshot(index, CONF, sm.snapshot().chunks(), { tailEntries: 0 });
      snapshotMs = performance.now() - t1;
      snapshotBytes = rec.totalBytes;
    } finally {
      await ns.close();
    }
    sm = undefined;
    gcNow();
    const t2 = performance.now();
    const reopened = await NodeStorage.open(dir);
    try {
      const snap = await reopened.group(1)!.readSnapshot();
      const restored = new GroupStateMachine();
      restored.restore(snap.metadata.index, [snap.data]);
      const loadMs = performance.now() - t2;
      if (restored.stats().keys !== keys)
        throw new Error(`scale bench: the restored state holds ${restored.stats().keys} keys, not ${keys}`);
      return { heapBytesPerKey, applyMs, snapshotBytes, snapshotMs, loadMs };
    } finally {
      await reopened.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** dirBytes is the size of every file under `dir`. */
function dirBytes(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += dirBytes(p);
    else if (e.isFile()) total += statSync(p).size;
  }
  return total;
}

/** inspectGroup reads a stopped node's stored snapshot index and last log index of `group`. */
async function inspectGroup(
  dataDir: string,
  group: number,
): Promise<{ snapshotIndex: number; lastIndex: number }> {
  const ns = await NodeStorage.open(dataDir);
  try {
    const gs = ns.group(group);
    if (gs === undefined) throw new Error(`scale bench: ${dataDir} holds no group ${group}`);
    return { snapshotIndex: gs.snapshotRecord().index, lastIndex: gs.lastIndex() };
  } finally {
    await ns.close();
  }
}

const SERVING = /^DKV node \d+ serving /;

/** onCluster fills a real cluster and restarts a follower. */
async function onCluster(
  keys: number,
  say: (line: string) => void,
): Promise<
  Pick<
    KeysRow,
    | 'fillMs'
    | 'nodeSnapshotIndex'
    | 'nodeLastIndex'
    | 'nodeDiskBytes'
    | 'restartServingMs'
    | 'restartReadMs'
    | 'nodeRssBytesPerKey'
  >
> {
  const entries = Math.ceil(keys / TXN_PUTS);
  const c = await ScaleCluster.start({
    nodes: 3,
    config: {
      stores: [{ name: 'default', partitions: 1 }],
      snapshotEntries: Math.max(10, Math.floor(entries / 8)),
    },
    warn: say,
  });
  try {
    const rssFresh = c.pids().map(rssBytesOf);
    const client = await c.connect();
    const t0 = performance.now();
    await fillByTxn(client, keys, 16, (done) => say(`keys: N=${keys}: ${done} keys written`));
    const fillMs = performance.now() - t0;
    say(
      `keys: N=${keys}: filled in ${(fillMs / 1000).toFixed(1)} s (${Math.round(keys / (fillMs / 1000))} keys/s)`,
    );
    const status = await client.status();
    const group = status.groups.find((g) => g.store === 'default');
    if (group === undefined) throw new Error('scale bench: the cluster lists no group of store default');
    const followers = c.specs.filter((s) => s.id !== group.leader);
    const spec = followers[followers.length - 1]!;
    const lastKey = keyOf(keys - 1);
    const lastValue = valueOfKey(keys - 1);
    const address = `${spec.host}:${spec.clientPort}`;
    const readFromNode = async (timeoutMs: number): Promise<void> => {
      let probe: DkvClient | undefined;
      try {
        await waitFor(
          async () => {
            probe ??= await DkvClient.connect({
              servers: [address],
              requestTimeoutMs: 2000,
              reconnect: { initialDelayMs: 5, maxDelayMs: 20, multiplier: 1, jitter: 0 },
            });
            const item = await probe.get(lastKey, { consistency: 'serializable' });
            return item?.value === lastValue;
          },
          timeoutMs,
          `node ${spec.id} did not serve ${lastKey}`,
          5,
        );
      } finally {
        await (probe as DkvClient | undefined)?.close();
      }
    };
    // The follower holds every key before it stops.
    await readFromNode(60_000);
    const node = c.cluster.node(spec.id);
    await node.stop(30_000);
    const stored = await inspectGroup(spec.dataDir, group.id);
    const nodeDiskBytes = dirBytes(spec.dataDir);
    say(
      `keys: N=${keys}: node ${spec.id} stopped (snapshot at ${stored.snapshotIndex}, log to ${stored.lastIndex}, ${(nodeDiskBytes / 1024 / 1024).toFixed(1)} MiB on disk); restarting it`,
    );
    const servingBefore = node.outputTail.filter((l) => SERVING.test(l)).length;
    const t1 = performance.now();
    node.start();
    let restartServingMs = Number.NaN;
    const serving = waitFor(
      async () => node.outputTail.filter((l) => SERVING.test(l)).length > servingBefore,
      120_000,
      `node ${spec.id} did not print its serving line`,
      5,
    ).then(
      () => {
        restartServingMs = performance.now() - t1;
      },
      () => undefined,
    );
    await readFromNode(120_000);
    const restartReadMs = performance.now() - t1;
    await serving;
    // Let the start-up garbage go before reading the RSS.
    await sleep(1000);
    const idx = c.specs.indexOf(spec);
    const rssAfter = node.pid === undefined ? 0 : rssBytesOf(node.pid);
    say(
      `keys: N=${keys}: node ${spec.id} served reads ${(restartReadMs / 1000).toFixed(2)} s after spawn; RSS ${(rssAfter / 1024 / 1024).toFixed(0)} MiB`,
    );
    return {
      fillMs,
      nodeSnapshotIndex: stored.snapshotIndex,
      nodeLastIndex: stored.lastIndex,
      nodeDiskBytes,
      restartServingMs,
      restartReadMs,
      nodeRssBytesPerKey: (rssAfter - (rssFresh[idx] ?? 0)) / keys,
    };
  } finally {
    await c.stop();
  }
}

/** measureKeysAt measures one N: in this process, then on a real cluster. */
export async function measureKeysAt(keys: number, say: (line: string) => void): Promise<KeysRow> {
  say(`keys: N=${keys}: in-process state machine and storage`);
  const local = await inProcess(keys);
  say(
    `keys: N=${keys}: ${Math.round(local.heapBytesPerKey)} heap bytes/key; snapshot ${(local.snapshotBytes / 1024 / 1024).toFixed(1)} MiB in ${Math.round(local.snapshotMs)} ms, loaded in ${Math.round(local.loadMs)} ms`,
  );
  gcNow();
  const real = await onCluster(keys, say);
  const round = (x: number): number => Math.round(x * 10) / 10;
  return {
    keys,
    heapBytesPerKey: Math.round(local.heapBytesPerKey),
    applyMs: round(local.applyMs),
    snapshotBytes: local.snapshotBytes,
    snapshotMs: round(local.snapshotMs),
    loadMs: round(local.loadMs),
    fillMs: round(real.fillMs),
    nodeSnapshotIndex: real.nodeSnapshotIndex,
    nodeLastIndex: real.nodeLastIndex,
    nodeDiskBytes: real.nodeDiskBytes,
    restartServingMs: round(real.restartServingMs),
    restartReadMs: round(real.restartReadMs),
    nodeRssBytesPerKey: Math.round(real.nodeRssBytesPerKey),
  };
}

/** measureKeys measures every N in turn. */
export async function measureKeys(sizes: readonly number[], say: (line: string) => void): Promise<KeysRow[]> {
  const rows: KeysRow[] = [];
  for (const n of sizes) rows.push(await measureKeysAt(n, say));
  return rows;
}
