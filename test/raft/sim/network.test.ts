import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../../../src/random.js';
import { Connectivity } from './connectivity.js';
import { exponentialSteps } from './distributions.js';
import { PacketQueue } from './packet-queue.js';
import { buildPartition, majoritySize, PartitionShape } from './partitions.js';
import { SendOutcome, SimNetwork } from './sim-network.js';

const NODE_SETS: readonly (readonly number[])[] = [
  [1, 2, 3],
  [1, 2, 3, 4],
  [1, 2, 3, 4, 5],
  [2, 3, 5, 7, 8, 9],
  [1, 2, 3, 4, 5, 6, 7],
];

function heardBy(c: Connectivity, to: number, nodes: readonly number[]): string {
  return c
    .heardBy(to, nodes)
    .sort((a, b) => a - b)
    .join(',');
}

describe('partitions', () => {
  it('halves: two non-empty sides, connected inside, cut between', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const nodes = NODE_SETS[seed % NODE_SETS.length]!;
      const { connectivity: c } = buildPartition(PartitionShape.Halves, nodes, new SeededRandom(seed), 0);
      const side = new Map<number, string>();
      for (const a of nodes) side.set(a, heardBy(c, a, nodes));
      const sides = new Set(side.values());
      expect(sides.size).toBe(2);
      for (const a of nodes) {
        for (const b of nodes) {
          expect(c.allows(a, b)).toBe(c.allows(b, a));
          expect(c.allows(a, b)).toBe(side.get(a) === side.get(b));
        }
      }
    }
  });

  it('isolate-leader cuts exactly the leader off, and isolate-one exactly one node', () => {
    for (let seed = 1; seed <= 100; seed++) {
      const nodes = NODE_SETS[seed % NODE_SETS.length]!;
      const leader = nodes[seed % nodes.length]!;
      const p = buildPartition(PartitionShape.IsolateLeader, nodes, new SeededRandom(seed), leader);
      for (const a of nodes) {
        for (const b of nodes) {
          const cut = a !== b && (a === leader || b === leader);
          expect(p.connectivity.allows(a, b)).toBe(!cut);
        }
      }
      const one = buildPartition(PartitionShape.IsolateOne, nodes, new SeededRandom(seed), 0).connectivity;
      const alone = nodes.filter((a) => one.heardBy(a, nodes).length === 1);
      expect(alone).toHaveLength(1);
      for (const a of nodes) if (a !== alone[0]) expect(one.heardBy(a, nodes)).toHaveLength(nodes.length - 1);
    }
  });

  it('isolate-leader without a leader falls back to isolating one node', () => {
    const p = buildPartition(PartitionShape.IsolateLeader, [1, 2, 3], new SeededRandom(7), 0);
    expect(p.shape).toBe(PartitionShape.IsolateOne);
  });

  it('majorities ring: every node hears a majority, and no two hear the same one', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const nodes = NODE_SETS[seed % NODE_SETS.length]!;
      const { connectivity: c } = buildPartition(
        PartitionShape.MajoritiesRing,
        nodes,
        new SeededRandom(seed),
        0,
      );
      const seen = new Set<string>();
      for (const a of nodes) {
        const heard = c.heardBy(a, nodes);
        expect(heard.length).toBeGreaterThanOrEqual(majoritySize(nodes.length));
        expect(heard.length).toBeLessThan(nodes.length);
        seen.add(heardBy(c, a, nodes));
      }
      expect(seen.size).toBe(nodes.length);
      // No node is fully cut off: the cluster as a whole stays one connected graph.
      expect(c.isFull()).toBe(false);
    }
  });

  it('majorities ring on five nodes is symmetric with two neighbours each', () => {
    const nodes = [1, 2, 3, 4, 5];
    const { connectivity: c } = buildPartition(PartitionShape.MajoritiesRing, nodes, new SeededRandom(3), 0);
    for (const a of nodes) {
      expect(c.heardBy(a, nodes)).toHaveLength(3);
      for (const b of nodes) expect(c.allows(a, b)).toBe(c.allows(b, a));
    }
  });

  it('bridge: the two sides talk only through the bridge node', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const nodes = NODE_SETS[seed % NODE_SETS.length]!;
      const { connectivity: c } = buildPartition(PartitionShape.Bridge, nodes, new SeededRandom(seed), 0);
      const bridges = nodes.filter((a) => c.heardBy(a, nodes).length === nodes.length);
      expect(bridges).toHaveLength(1);
      const via = bridges[0]!;
      const rest = nodes.filter((a) => a !== via);
      // Each non-bridge node is cut from at least one other non-bridge node.
      for (const a of rest) expect(c.heardBy(a, rest).length).toBeLessThan(rest.length);
      // Reachability without the bridge splits `rest` into exactly two cliques.
      const sides = new Set(rest.map((a) => heardBy(c, a, rest)));
      expect(sides.size).toBe(2);
      for (const a of rest) {
        for (const b of rest) {
          expect(c.allows(a, b)).toBe(heardBy(c, a, rest) === heardBy(c, b, rest));
          expect(c.allows(a, b)).toBe(c.allows(b, a));
        }
        // But every pair is two hops apart at most, through the bridge.
        expect(c.connected(a, via)).toBe(true);
      }
    }
  });

  it('is deterministic for a seed', () => {
    for (const shape of Object.values(PartitionShape)) {
      const a = buildPartition(shape, [1, 2, 3, 4, 5], new SeededRandom(42), 2).description;
      const b = buildPartition(shape, [1, 2, 3, 4, 5], new SeededRandom(42), 2).description;
      expect(a).toBe(b);
    }
  });
});

describe('PacketQueue', () => {
  it('pops in (deliverStep, seq) order', () => {
    const q = new PacketQueue<number>(1000);
    const r = new SeededRandom(9);
    for (let seq = 0; seq < 500; seq++) q.push({ deliverStep: r.int(50), seq, from: 1, to: 2, message: seq });
    let last = { d: -1, s: -1 };
    while (q.size > 0) {
      const p = q.pop()!;
      expect(p.deliverStep > last.d || (p.deliverStep === last.d && p.seq > last.s)).toBe(true);
      last = { d: p.deliverStep, s: p.seq };
    }
  });

  it('is bounded', () => {
    const q = new PacketQueue<number>(2);
    q.push({ deliverStep: 0, seq: 0, from: 1, to: 2, message: 0 });
    q.push({ deliverStep: 0, seq: 1, from: 1, to: 2, message: 0 });
    expect(q.isFull()).toBe(true);
    expect(() => q.push({ deliverStep: 0, seq: 2, from: 1, to: 2, message: 0 })).toThrow(RangeError);
  });
});

const OPTIONS = {
  delayMinSteps: 1,
  delayMeanSteps: 3,
  delayMaxSteps: 20,
  replayDelayMaxSteps: 200,
  inFlightMax: 10_000,
  pathInFlightMax: 5000,
};

function drain(
  net: SimNetwork<number>,
  untilStep: number,
): { step: number; from: number; to: number; m: number }[] {
  const out: { step: number; from: number; to: number; m: number }[] = [];
  for (let step = 0; step <= untilStep; step++) {
    net.deliverDue(step, (p) => out.push({ step, from: p.from, to: p.to, m: p.message }));
  }
  return out;
}

describe('SimNetwork', () => {
  it('delivers within the delay bounds and reorders', () => {
    const net = new SimNetwork<number>(new SeededRandom(1), OPTIONS);
    for (let m = 0; m < 200; m++) expect(net.send(1, 2, m, 0)).toBe(SendOutcome.Queued);
    const got = drain(net, 100);
    expect(got).toHaveLength(200);
    for (const g of got) {
      expect(g.step).toBeGreaterThanOrEqual(1);
      expect(g.step).toBeLessThanOrEqual(20);
    }
    const order = got.map((g) => g.m);
    expect(order).not.toEqual([...order].sort((a, b) => a - b));
  });

  it('drops at send and in flight across a partition', () => {
    const net = new SimNetwork<number>(new SeededRandom(2), OPTIONS);
    net.send(1, 2, 1, 0);
    const c = new Connectivity();
    c.blockBoth(1, 2);
    net.connectivity = c;
    expect(net.send(1, 2, 2, 0)).toBe(SendOutcome.Unreachable);
    expect(net.send(1, 3, 3, 0)).toBe(SendOutcome.Queued);
    const got = drain(net, 30);
    expect(got.map((g) => g.m)).toEqual([3]);
    expect(net.stats.cutInFlight).toBe(1);
  });

  it('loses and duplicates at the configured rates', () => {
    const net = new SimNetwork<number>(new SeededRandom(3), OPTIONS);
    net.lossProbability = 0.25;
    net.duplicateProbability = 0.5;
    for (let m = 0; m < 2000; m++) net.send(1, 2, m, 0);
    const got = drain(net, 100);
    expect(net.stats.lost).toBeGreaterThan(400);
    expect(net.stats.lost).toBeLessThan(600);
    expect(net.stats.duplicated).toBeGreaterThan(600);
    expect(got.length).toBe(2000 - net.stats.lost + net.stats.duplicated);
  });

  it('replays packets much later than any normal delay', () => {
    const net = new SimNetwork<number>(new SeededRandom(10), OPTIONS);
    net.replayProbability = 1;
    for (let m = 0; m < 100; m++) net.send(1, 2, m, 0);
    const got = drain(net, 300);
    expect(got).toHaveLength(200);
    expect(net.stats.replayed).toBe(100);
    const late = got.filter((g) => g.step > OPTIONS.delayMaxSteps);
    expect(late.length).toBeGreaterThan(50);
    for (const g of late)
      expect(g.step).toBeLessThanOrEqual(OPTIONS.delayMaxSteps + OPTIONS.replayDelayMaxSteps);
  });

  it('holds packets on a clogged link until the clog clears', () => {
    const net = new SimNetwork<number>(new SeededRandom(4), OPTIONS);
    net.clog(1, 2, 50);
    net.send(1, 2, 7, 0);
    net.send(2, 1, 8, 0);
    const got = drain(net, 60);
    expect(got.find((g) => g.m === 7)!.step).toBe(50);
    expect(got.find((g) => g.m === 8)!.step).toBeLessThan(50);
  });

  it('bounds a link and reports overflow', () => {
    const net = new SimNetwork<number>(new SeededRandom(5), { ...OPTIONS, pathInFlightMax: 3 });
    const outcomes = [0, 1, 2, 3, 4].map((m) => net.send(1, 2, m, 0));
    expect(outcomes.filter((o) => o === SendOutcome.Overflow)).toHaveLength(2);
    drain(net, 30);
    expect(net.send(1, 2, 9, 31)).toBe(SendOutcome.Queued);
  });

  it('heal removes partitions, clogs, loss, duplication and replay', () => {
    const net = new SimNetwork<number>(new SeededRandom(6), OPTIONS);
    net.replayProbability = 1;
    const c = new Connectivity();
    c.blockBoth(1, 2);
    net.connectivity = c;
    net.lossProbability = 1;
    net.clog(1, 3, 1000);
    net.heal();
    expect(net.send(1, 2, 1, 0)).toBe(SendOutcome.Queued);
    expect(net.isClogged(1, 3, 0)).toBe(false);
    expect(drain(net, 30)).toHaveLength(1);
  });

  it('is deterministic for a seed', () => {
    const run = (): string => {
      const net = new SimNetwork<number>(new SeededRandom(77), OPTIONS);
      net.lossProbability = 0.1;
      net.duplicateProbability = 0.1;
      for (let m = 0; m < 100; m++) net.send(1 + (m % 3), 1 + ((m + 1) % 3), m, m % 7);
      return JSON.stringify(drain(net, 100));
    };
    expect(run()).toBe(run());
  });

  it('exponential delays are capped', () => {
    const r = new SeededRandom(8);
    for (let i = 0; i < 1000; i++) expect(exponentialSteps(r, 50, 10)).toBeLessThanOrEqual(10);
  });
});
