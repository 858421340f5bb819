/**
 * The crash-test child: opens a NodeStorage and, as fast as it can, persists commit rounds
 * (group commit of 1-3 groups: appends of random size, now and then a higher-term suffix
 * replacing uncommitted entries, hard state updates). In `snapshot` mode it also takes
 * multi-chunk local snapshots concurrently and installs leader snapshots. It writes an intent
 * line before each write and an ack line once the write has resolved (crash-protocol.ts),
 * and runs until it is killed.
 *
 *     node --import tsx test/storage/crash-child.ts --dir D --seed N --mode log|snapshot --groups 1,7
 *
 * It exits on its own only on a failed self-check (exit 2), when its stdin closes (the
 * parent died), or after --life-ms.
 */
import { parseArgs } from 'node:util';
import type { Entry, HardState, Ready } from '../../src/raft/index.js';
import { SeededRandom } from '../../src/random.js';
import type { GroupStorage } from '../../src/storage/group-storage.js';
import { NodeStorage, type PersistItem } from '../../src/storage/node-storage.js';
import { CRASH_CONF, entryFor, snapshotImage } from './crash-content.js';
import {
  ChangeKind,
  type ChildLine,
  formatLine,
  type GroupChange,
  type LocalSnapshotIntent,
} from './crash-protocol.js';
import { ready } from './make-ready.js';

/** CHILD_SNAPSHOT_CHUNK_BYTES is small, so every snapshot spans many chunks and several batches. */
const CHILD_SNAPSHOT_CHUNK_BYTES = 1024;

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    seed: { type: 'string' },
    mode: { type: 'string', default: 'log' },
    groups: { type: 'string' },
    'life-ms': { type: 'string', default: '30000' },
  },
});
const dir = values.dir;
const seed = Number(values.seed);
const mode = values.mode;
const groupIds = (values.groups ?? '').split(',').map(Number);
const lifeMs = Number(values['life-ms']);
if (
  !dir ||
  !Number.isSafeInteger(seed) ||
  (mode !== 'log' && mode !== 'snapshot') ||
  groupIds.some((g) => !Number.isSafeInteger(g))
) {
  process.stderr.write('usage: crash-child.ts --dir D --seed N --mode log|snapshot --groups 1,2,3\n');
  process.exit(64);
}

// Never outlive the parent, nor run unbounded.
process.stdin.on('end', () => process.exit(3));
process.stdin.on('error', () => process.exit(3));
process.stdin.resume();
setTimeout(() => process.exit(4), lifeMs).unref();

function emit(line: ChildLine): void {
  process.stdout.write(formatLine(line));
}

/**
 * emitted writes a line and resolves once it is in the pipe. An intent must be there before
 * its write starts: a pipe the parent is slow to drain makes stdout writes asynchronous, and
 * a line still queued in this process dies with it on SIGKILL.
 */
function emitted(line: ChildLine): Promise<void> {
  return new Promise((resolve, reject) =>
    process.stdout.write(formatLine(line), (err) => (err ? reject(err) : resolve())),
  );
}

function fail(message: string): never {
  process.stderr.write(`crash-child seed=${seed}: ${message}\n`);
  process.exit(2);
}

/** batchSize draws how many entries one append carries: mostly small, sometimes large. */
function batchSize(rng: SeededRandom): number {
  const r = rng.float();
  if (r < 0.7) return 1 + rng.int(16);
  if (r < 0.95) return 1 + rng.int(128);
  return 1 + rng.int(1024);
}

const rng = new SeededRandom(seed);
const snapRng = rng.fork();
const ns = await NodeStorage.open(dir, { snapshotChunkBytes: CHILD_SNAPSHOT_CHUNK_BYTES });
const groups: GroupStorage[] = groupIds.map((g) => ns.group(g) ?? fail(`group ${g} is not in ${dir}`));
/** Groups with a local snapshot being written. */
const snapshotting = new Set<number>();
emit({ k: 'ready' });

function planChange(gs: GroupStorage): { change: GroupChange; ready: Ready } {
  const g = gs.group;
  const last = gs.lastIndex();
  const hard = gs.hardState();
  const term = Math.max(1, hard.term);
  let kind: ChangeKind = ChangeKind.Append;
  // Raft never replaces committed entries, nor the bootstrap snapshot's (commit may start below it).
  const fixed = Math.max(hard.commit, gs.firstIndex() - 1);
  if (mode === 'snapshot' && !snapshotting.has(g) && rng.chance(0.04)) kind = ChangeKind.Install;
  else if (last > fixed && rng.chance(0.08)) kind = ChangeKind.Conflict;

  let first = last + 1;
  let count = batchSize(rng);
  let entryTerm = term;
  let snapshot: GroupChange['snapshot'] = null;
  if (kind === ChangeKind.Conflict) {
    entryTerm = term + 1;
    first = fixed + 1 + rng.int(last - fixed);
  } else if (kind === ChangeKind.Install) {
    entryTerm = term + 1;
    const at = fixed + 1 + rng.int(last - fixed + 64);
    snapshot = { index: at, term: entryTerm, bytes: 4096 + rng.int(60_000) };
    first = at + 1;
    count = rng.int(8);
  }
  const newLast = first + count - 1;
  const floor = snapshot ? snapshot.index : hard.commit;
  const commit = floor + rng.int(Math.max(newLast, floor) - floor + 1);
  const newHard: HardState = {
    term: entryTerm,
    vote: entryTerm !== hard.term || hard.vote === 0 ? 1 + rng.int(3) : hard.vote,
    commit,
  };
  const entries: Entry[] = [];
  for (let i = first; i <= newLast; i++) entries.push(entryFor(g, i, entryTerm));
  const change: GroupChange = {
    group: g,
    kind,
    first,
    last: newLast,
    term: entryTerm,
    hard: newHard,
    snapshot,
  };
  const rd = ready({
    entries,
    hardState: newHard,
    snapshot: snapshot && {
      metadata: { index: snapshot.index, term: snapshot.term, confState: CRASH_CONF },
      data: snapshotImage(g, snapshot.index, snapshot.term, snapshot.bytes),
    },
  });
  return { change, ready: rd };
}

/** checkInMemory compares the storage's in-memory view with what the round wrote. */
function checkInMemory(gs: GroupStorage, c: GroupChange): void {
  const lastWant = c.snapshot && c.last < c.first ? c.snapshot.index : c.last;
  if (gs.lastIndex() !== lastWant)
    fail(`group ${c.group}: lastIndex ${gs.lastIndex()} after writing up to ${lastWant}`);
  for (let i = Math.max(c.first, gs.firstIndex()); i <= c.last; i++) {
    const t = gs.term(i);
    if (t !== c.term)
      fail(`group ${c.group}: term(${i}) = ${t} in memory just after writing it at term ${c.term}`);
  }
  if (c.last >= c.first) {
    const [e] = gs.entries(c.last, c.last + 1, 1 << 20);
    if (!e || e.term !== c.term || e.index !== c.last)
      fail(`group ${c.group}: entries(${c.last}) = ${JSON.stringify(e && { index: e.index, term: e.term })}`);
  }
  const h = gs.hardState();
  if (h.term !== c.hard.term || h.vote !== c.hard.vote || h.commit !== c.hard.commit)
    fail(`group ${c.group}: hard state ${JSON.stringify(h)}, wrote ${JSON.stringify(c.hard)}`);
  if (c.snapshot && gs.snapshotRecord().index !== c.snapshot.index)
    fail(`group ${c.group}: snapshot ${gs.snapshotRecord().index} after installing ${c.snapshot.index}`);
}

/** imagePieces yields an image in uneven pieces, pausing now and then as a busy state machine would. */
async function* imagePieces(image: Uint8Array): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < image.length; ) {
    const n = 200 + snapRng.int(5000);
    yield image.subarray(off, off + n);
    off += n;
    if (snapRng.chance(0.3)) await new Promise((r) => setImmediate(r));
  }
}

function maybeStartSnapshot(gs: GroupStorage): void {
  const g = gs.group;
  const rec = gs.snapshotRecord();
  const commit = gs.hardState().commit;
  if (snapshotting.has(g) || commit <= rec.index || !snapRng.chance(0.15)) return;
  const index = rec.index + 1 + snapRng.int(commit - rec.index);
  const snap: LocalSnapshotIntent = {
    group: g,
    index,
    term: gs.term(index),
    bytes: 1024 + snapRng.int(64 * 1024),
    tailEntries: snapRng.int(48),
  };
  snapshotting.add(g);
  const image = snapshotImage(g, snap.index, snap.term, snap.bytes);
  emitted({ k: 'snap-intent', snap })
    .then(() => gs.createSnapshot(index, CRASH_CONF, imagePieces(image), { tailEntries: snap.tailEntries }))
    .then(
      (rec) => {
        if (rec.index !== index || rec.totalBytes !== snap.bytes)
          fail(`group ${g}: snapshot record ${JSON.stringify(rec)}`);
        snapshotting.delete(g);
        emit({ k: 'snap-ack', group: g, index });
      },
      (err: unknown) =>
        fail(`createSnapshot(${g}, ${index}) failed: ${err instanceof Error ? err.stack : String(err)}`),
    );
}

for (let round = 0; ; round++) {
  const picked = groups.filter(() => rng.chance(0.7));
  if (picked.length === 0) picked.push(groups[rng.int(groups.length)]!);
  const planned = picked.map((gs) => ({ gs, ...planChange(gs) }));
  await emitted({ k: 'intent', round, changes: planned.map((p) => p.change) });
  const items: PersistItem[] = planned.map((p) => ({ storage: p.gs, ready: p.ready }));
  try {
    await ns.commit(items);
  } catch (err) {
    fail(`commit of round ${round} failed: ${err instanceof Error ? err.stack : String(err)}`);
  }
  emit({ k: 'ack', round });
  for (const p of planned) checkInMemory(p.gs, p.change);
  if (mode === 'snapshot') for (const gs of groups) maybeStartSnapshot(gs);
}
