import { describe, expect, it } from 'vitest';
import {
  type ConfState,
  type Entry,
  EntryType,
  MemoryStorage,
  type Message,
  RawNode,
  StorageError,
  StorageErrorKind,
} from '../../src/raft/index.js';
import { SeededRandom } from '../../src/random.js';

/**
 * FetchingStorage models an asynchronous store that keeps only recent entries in memory:
 * reads of entries below `coldBelow` throw LogTemporarilyUnavailable until `fetch()` runs.
 */
class FetchingStorage extends MemoryStorage {
  coldBelow = 0;
  misses = 0;

  override entries(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo < this.coldBelow) {
      this.misses++;
      throw new StorageError(StorageErrorKind.LogTemporarilyUnavailable, `entries: ${lo} is being fetched`);
    }
    return super.entries(lo, hi, maxBytes);
  }

  fetch(): void {
    this.coldBelow = 0;
  }
}

const conf = (voters: number[]): ConfState => ({
  voters,
  learners: [],
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
});
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

interface Member {
  node: RawNode;
  storage: FetchingStorage;
  applied: string[];
}

function cluster(ids: number[]): { members: Map<number, Member>; run: (down?: Set<number>) => void } {
  const rnd = new SeededRandom(3);
  const members = new Map<number, Member>();
  for (const id of ids) {
    const storage = new FetchingStorage(conf(ids));
    members.set(id, { node: new RawNode({ id, storage, random: rnd.fork() }), storage, applied: [] });
  }
  const run = (down = new Set<number>()): void => {
    for (let round = 0; round < 200; round++) {
      const msgs: Message[] = [];
      for (const [, m] of members) {
        while (m.node.hasReady()) {
          const rd = m.node.ready();
          m.storage.append(rd.entries);
          if (rd.hardState) m.storage.setHardState(rd.hardState);
          msgs.push(...rd.messages);
          for (const e of rd.committedEntries) {
            if (e.type === EntryType.Normal && e.data.length > 0)
              m.applied.push(new TextDecoder().decode(e.data));
          }
          m.node.advance();
        }
      }
      if (msgs.length === 0) return;
      for (const msg of msgs)
        if (!down.has(msg.to) && !down.has(msg.from)) members.get(msg.to)!.node.step(msg);
    }
  };
  return { members, run };
}

describe('a storage that must fetch entries (LogTemporarilyUnavailable)', () => {
  it('the leader skips a lagging follower until the entries are fetched, then catches it up', () => {
    const { members, run } = cluster([1, 2, 3]);
    const leader = members.get(1)!;
    leader.node.campaign();
    run();
    expect(leader.node.isLeader()).toBe(true);
    // 3 is down while 20 entries commit.
    for (let i = 0; i < 20; i++) leader.node.propose(text(`v${i}`));
    run(new Set([3]));
    expect(members.get(2)!.applied).toHaveLength(20);
    // The leader's older entries are now "on disk only".
    leader.storage.coldBelow = leader.storage.lastIndex() + 1;
    leader.node.tick();
    run();
    expect(leader.storage.misses).toBeGreaterThan(0);
    expect(members.get(3)!.applied).toEqual([]);
    leader.storage.fetch();
    leader.node.entriesFetched();
    run();
    expect(members.get(3)!.applied).toEqual(members.get(2)!.applied);
  });

  it('applying waits for the fetch instead of spinning, then resumes in order', () => {
    const { members, run } = cluster([1]);
    const m = members.get(1)!;
    m.node.campaign();
    run();
    // Commit entries, but make them unreadable before they are handed out to apply.
    m.storage.coldBelow = Number.MAX_SAFE_INTEGER;
    m.node.propose(text('a'));
    m.node.propose(text('b'));
    // The first Ready persists the entries; they are committed at once (one voter) and,
    // being unstable, are read from memory: apply goes ahead.
    run();
    expect(m.applied).toEqual(['a', 'b']);
    // Now restart with applied behind commit: the replay must come from (cold) storage.
    const hs = m.storage.hardState();
    const restarted = new RawNode({ id: 1, storage: m.storage, random: new SeededRandom(9), applied: 1 });
    expect(hs.commit).toBeGreaterThan(1);
    expect(restarted.hasReady()).toBe(true);
    const rd = restarted.ready();
    expect(rd.committedEntries).toEqual([]);
    restarted.advance();
    expect(restarted.hasReady()).toBe(false);
    m.storage.fetch();
    restarted.entriesFetched();
    expect(restarted.hasReady()).toBe(true);
    const rd2 = restarted.ready();
    expect(rd2.committedEntries.map((e) => e.index)).toEqual(
      Array.from({ length: hs.commit - 1 }, (_, i) => i + 2),
    );
    restarted.advance();
  });
});
