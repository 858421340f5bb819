import { describe, expect, it } from 'vitest';
import {
  type ConfState,
  decodeConfChange,
  EntryType,
  MemoryStorage,
  type Message,
  RawNode,
} from '../../src/raft/index.js';
import { SeededRandom } from '../../src/random.js';

function conf(voters: number[], learners: number[] = []): ConfState {
  return { voters, learners, votersOutgoing: [], learnersNext: [], autoLeave: false };
}

class Net {
  nodes = new Map<number, { node: RawNode; storage: MemoryStorage; applied: string[] }>();
  queue: Message[] = [];
  constructor(ids: number[], seed = 1) {
    const rnd = new SeededRandom(seed);
    for (const id of ids) {
      const storage = new MemoryStorage(conf(ids));
      this.nodes.set(id, { node: new RawNode({ id, storage, random: rnd.fork() }), storage, applied: [] });
    }
  }
  process(): void {
    for (const [, n] of this.nodes) {
      while (n.node.hasReady()) {
        const rd = n.node.ready();
        if (rd.snapshot) n.storage.applySnapshot(rd.snapshot);
        n.storage.append(rd.entries);
        if (rd.hardState) n.storage.setHardState(rd.hardState);
        this.queue.push(...rd.messages);
        for (const e of rd.committedEntries) {
          if (e.type === EntryType.ConfChange) n.node.applyConfChange(decodeConfChange(e.data));
          else if (e.data.length > 0) n.applied.push(new TextDecoder().decode(e.data));
        }
        n.node.advance();
      }
    }
  }
  stabilize(): void {
    for (let i = 0; i < 1000; i++) {
      this.process();
      if (this.queue.length === 0) return;
      const q = this.queue;
      this.queue = [];
      for (const m of q) this.nodes.get(m.to)?.node.step(m);
    }
    throw new Error('did not stabilize');
  }
}

describe('raft smoke', () => {
  it('elects a leader and replicates', () => {
    const net = new Net([1, 2, 3]);
    net.nodes.get(1)!.node.campaign();
    net.stabilize();
    expect(net.nodes.get(1)!.node.isLeader()).toBe(true);
    const r = net.nodes.get(1)!.node.propose(new TextEncoder().encode('hello'));
    expect(r.ok).toBe(true);
    net.stabilize();
    for (const [, n] of net.nodes) expect(n.applied).toEqual(['hello']);
    const f = net.nodes.get(2)!.node.propose(new TextEncoder().encode('x'));
    expect(f).toEqual({ ok: false, code: 'NOT_LEADER', leader: 1 });
  });

  it('single node commits at once', () => {
    const net = new Net([1]);
    net.nodes.get(1)!.node.campaign();
    net.stabilize();
    expect(net.nodes.get(1)!.node.isLeader()).toBe(true);
    net.nodes.get(1)!.node.propose(new TextEncoder().encode('a'));
    net.stabilize();
    expect(net.nodes.get(1)!.applied).toEqual(['a']);
  });

  it('elects by ticking', () => {
    const net = new Net([1, 2, 3], 7);
    for (let t = 0; t < 100; t++) {
      for (const [, n] of net.nodes) n.node.tick();
      net.stabilize();
    }
    const leaders = [...net.nodes.values()].filter((n) => n.node.isLeader());
    expect(leaders.length).toBe(1);
  });
});
