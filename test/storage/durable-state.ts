/**
 * Reads what a data directory durably holds, the way a restarted node would (NodeStorage.open,
 * which also cleans up after a crash), and then checks every raw LevelDB record under it:
 * each entry and chunk verifies its checksum, entries are contiguous, and no chunk key, entry
 * key or group is left behind.
 */
import { Level } from 'level';
import { isDkvError } from '../../src/errors.js';
import { groupIdOf, indexOf, KeyKind, NODE_KEY } from '../../src/storage/keys.js';
import { NodeStorage } from '../../src/storage/node-storage.js';
import {
  decodeBlock,
  decodeChunk,
  decodeJsonRecord,
  type SnapshotRecord,
} from '../../src/storage/records.js';
import { CRASH_CONF, entryFor, sameBytes, snapshotImage } from './crash-content.js';
import type { GroupModel } from './crash-model.js';

/** DurableState is a data directory's content as models, plus every integrity problem found. */
export interface DurableState {
  readonly models: Map<number, GroupModel>;
  readonly problems: string[];
}

/** openRawLevel opens a data directory's LevelDB directly, with binary keys and values. */
export async function openRawLevel(dir: string): Promise<Level<Uint8Array, Uint8Array>> {
  const db = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  return db;
}

/** chunkNumberOf reads the chunk number of a snapshot chunk key. */
export function chunkNumberOf(key: Uint8Array): number {
  return new DataView(key.buffer, key.byteOffset, key.byteLength).getUint32(14);
}

function describe(err: unknown): string {
  if (isDkvError(err)) return `${err.code}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

/**
 * readDurableState opens `dir` as a node would, reads every group in `groups` into a model
 * (checking every entry's and the snapshot's bytes against crash-content.ts), closes it, then
 * scans the raw keys. It throws only if the node cannot open the directory at all.
 */
export async function readDurableState(dir: string, groups: readonly number[]): Promise<DurableState> {
  const models = new Map<number, GroupModel>();
  const problems: string[] = [];
  const records = new Map<number, { snap: SnapshotRecord; first: number; last: number }>();
  const ns = await NodeStorage.open(dir, { cacheBytesMax: 1 << 30 });
  try {
    const ids = ns.groupIds();
    if (ids.join() !== [...groups].sort((a, b) => a - b).join())
      problems.push(
        `groups: expected ${groups.join()}, found ${ids.join()} (set aside: ${ns.failedGroupIds().join() || 'none'})`,
      );
    for (const g of groups) {
      const gs = ns.group(g);
      if (!gs) {
        const failure = ns.failure(g);
        problems.push(`group ${g} did not load: ${failure ? describe(failure) : 'not in the node record'}`);
        continue;
      }
      try {
        const first = gs.firstIndex();
        const last = gs.lastIndex();
        const terms: number[] = [];
        for (let i = first; i <= last; i++) terms.push(gs.term(i));
        const ents = last >= first ? gs.entries(first, last + 1, Number.MAX_SAFE_INTEGER) : [];
        if (ents.length !== last - first + 1)
          problems.push(`group ${g}: read ${ents.length} entries of ${first}..${last}`);
        for (const e of ents) {
          const want = entryFor(g, e.index, terms[e.index - first]!);
          if (e.term !== want.term || e.type !== want.type || !sameBytes(e.data, want.data)) {
            problems.push(
              `group ${g}: entry ${e.index} (term ${e.term}) is not the one written at term ${want.term}`,
            );
            break;
          }
        }
        const { confState } = gs.initialState();
        if (JSON.stringify(confState) !== JSON.stringify(CRASH_CONF))
          problems.push(`group ${g}: membership ${JSON.stringify(confState)}`);
        const rec = gs.snapshotRecord();
        const snap = await gs.readSnapshot();
        if (snap.metadata.index !== rec.index || snap.metadata.term !== rec.term)
          problems.push(
            `group ${g}: snapshot metadata ${JSON.stringify(snap.metadata)} vs record ${rec.index}`,
          );
        if (!sameBytes(snap.data, snapshotImage(g, rec.index, rec.term, snap.data.length))) {
          problems.push(
            `group ${g}: the snapshot at ${rec.index} holds the wrong image (${snap.data.length} bytes)`,
          );
        }
        if (rec.index < first - 1 || rec.index > Math.max(last, first - 1)) {
          problems.push(
            `group ${g}: snapshot at ${rec.index} outside [firstIndex-1, lastIndex] = [${first - 1}, ${last}]`,
          );
        }
        records.set(g, { snap: rec, first, last });
        models.set(g, {
          start: { index: first - 1, term: gs.term(first - 1) },
          terms,
          hard: gs.hardState(),
          snapshot: { index: rec.index, term: rec.term, bytes: snap.data.length },
        });
      } catch (err) {
        problems.push(`group ${g}: ${describe(err)}`);
      }
    }
  } finally {
    await ns.close();
  }
  problems.push(...(await scanRawKeys(dir, records)));
  return { models, problems };
}

/** scanRawKeys checks every key in the directory against what the reopened node reported. */
async function scanRawKeys(
  dir: string,
  groups: ReadonlyMap<number, { snap: SnapshotRecord; first: number; last: number }>,
): Promise<string[]> {
  const problems: string[] = [];
  const blocks = new Map<number, { first: number; count: number }[]>();
  const chunkCount = new Map<number, number>();
  const db = await openRawLevel(dir);
  try {
    for await (const [key, value] of db.iterator()) {
      if (key.length === 1 && key[0] === NODE_KEY[0]) continue;
      if (key[0] !== 0x67 || key.length < 6) {
        problems.push(`unknown key ${Buffer.from(key).toString('hex')}`);
        continue;
      }
      const g = groupIdOf(key);
      const info = groups.get(g);
      if (!info) {
        problems.push(`key ${Buffer.from(key).toString('hex')} of group ${g}, which the node does not have`);
        continue;
      }
      try {
        switch (key[5]) {
          case KeyKind.Entry: {
            const first = indexOf(key);
            if (first > info.last)
              problems.push(`group ${g}: log block at ${first} past the last entry ${info.last}`);
            const count = decodeBlock(g, first, value).length;
            const list = blocks.get(g) ?? [];
            list.push({ first, count });
            blocks.set(g, list);
            break;
          }
          case KeyKind.SnapshotChunk: {
            const id = indexOf(key);
            const n = chunkNumberOf(key);
            if (id !== info.snap.id || n >= info.snap.chunkCount) {
              problems.push(
                `group ${g}: orphan snapshot chunk ${id}/${n} (the snapshot is ${info.snap.id} with ${info.snap.chunkCount} chunks)`,
              );
            } else {
              decodeChunk(g, info.snap.index, n, value);
            }
            chunkCount.set(g, (chunkCount.get(g) ?? 0) + 1);
            break;
          }
          case KeyKind.TermRun:
          case KeyKind.HardState:
          case KeyKind.LogStart:
          case KeyKind.SnapshotMeta:
            decodeJsonRecord(g, `record ${String.fromCharCode(key[5]!)}`, value);
            break;
          default:
            problems.push(`group ${g}: unknown key kind ${key[5]}`);
        }
      } catch (err) {
        problems.push(describe(err));
      }
    }
  } finally {
    await db.close();
  }
  for (const [g, info] of groups) {
    // The blocks' live parts (each up to the next block's start, the last one to its end)
    // must cover exactly first..last, with no block wholly below `first`.
    const list = blocks.get(g) ?? [];
    let covered = info.first - 1;
    for (let i = 0; i < list.length; i++) {
      const b = list[i]!;
      const end = i + 1 < list.length ? list[i + 1]!.first - 1 : b.first + b.count - 1;
      if (end < info.first)
        problems.push(`group ${g}: log block at ${b.first} lies wholly below ${info.first}`);
      if (b.first > covered + 1) problems.push(`group ${g}: entries ${covered + 1}..${b.first - 1} missing`);
      if (b.first + b.count - 1 < end) problems.push(`group ${g}: log block at ${b.first} is short`);
      covered = Math.max(covered, end);
    }
    if (covered !== Math.max(info.last, info.first - 1))
      problems.push(`group ${g}: the log blocks end at ${covered}, the log at ${info.last}`);
    const chunks = chunkCount.get(g) ?? 0;
    if (chunks !== info.snap.chunkCount)
      problems.push(`group ${g}: ${chunks} chunk keys, the snapshot has ${info.snap.chunkCount}`);
  }
  return problems;
}
