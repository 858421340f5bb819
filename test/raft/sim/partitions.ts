/**
 * Partition shapes the nemesis can impose, after Jepsen's and TigerBeetle's packet
 * simulator. Each builder takes the participating node ids and returns a Connectivity;
 * nodes not listed (for example, one added later) stay connected to everyone.
 */
import type { SeededRandom } from '../../../src/random.js';
import { Connectivity } from './connectivity.js';
import { pick, shuffled, uniformInt } from './distributions.js';

/** PartitionShape names the kinds of network partition. */
export const PartitionShape = {
  /** A random split into two non-empty sides. */
  Halves: 'halves',
  /** One random node cut off from all others. */
  IsolateOne: 'isolate-one',
  /** The current leader cut off from all others (falls back to a random node). */
  IsolateLeader: 'isolate-leader',
  /** Every node hears a majority (itself included), and no two nodes hear the same majority. */
  MajoritiesRing: 'majorities-ring',
  /** Two sides that are connected only through one bridge node. */
  Bridge: 'bridge',
} as const;
export type PartitionShape = (typeof PartitionShape)[keyof typeof PartitionShape];

/** Partition is a built partition: its shape, its links and a one-line description. */
export interface Partition {
  readonly shape: PartitionShape;
  readonly connectivity: Connectivity;
  readonly description: string;
}

/** majoritySize is the smallest number of nodes that is a majority of `n`. */
export function majoritySize(n: number): number {
  return Math.floor(n / 2) + 1;
}

/**
 * buildPartition draws a partition of `shape` over `nodes`. `leader` is used by
 * IsolateLeader; pass 0 when there is none. Needs at least two nodes.
 */
export function buildPartition(
  shape: PartitionShape,
  nodes: readonly number[],
  random: SeededRandom,
  leader: number,
): Partition {
  if (nodes.length < 2) throw new RangeError(`buildPartition: need two nodes, got ${nodes.length}`);
  switch (shape) {
    case PartitionShape.Halves:
      return halves(nodes, random);
    case PartitionShape.IsolateOne:
      return isolate(PartitionShape.IsolateOne, nodes, pick(random, nodes));
    case PartitionShape.IsolateLeader:
      return nodes.includes(leader)
        ? isolate(PartitionShape.IsolateLeader, nodes, leader)
        : isolate(PartitionShape.IsolateOne, nodes, pick(random, nodes));
    case PartitionShape.MajoritiesRing:
      return nodes.length < 3 ? halves(nodes, random) : majoritiesRing(nodes, random);
    case PartitionShape.Bridge:
      return nodes.length < 3 ? halves(nodes, random) : bridge(nodes, random);
  }
}

/** halves splits `nodes` into two non-empty sides of random size (TigerBeetle's uniform_size). */
function halves(nodes: readonly number[], random: SeededRandom): Partition {
  const order = shuffled(random, nodes);
  const k = uniformInt(random, 1, order.length - 1);
  const a = order.slice(0, k);
  const b = order.slice(k);
  const c = new Connectivity();
  for (const x of a) for (const y of b) c.blockBoth(x, y);
  return { shape: PartitionShape.Halves, connectivity: c, description: `halves ${fmt(a)} | ${fmt(b)}` };
}

function isolate(shape: PartitionShape, nodes: readonly number[], alone: number): Partition {
  const c = new Connectivity();
  for (const x of nodes) c.blockBoth(alone, x);
  return { shape, connectivity: c, description: `${shape} ${alone}` };
}

/**
 * majoritiesRing places the nodes on a ring in random order. With four or more nodes each
 * node is linked (both ways) to its d nearest neighbours on either side, where 2d+1 is the
 * smallest odd majority; then every node hears a majority and, as 2d+1 < n, each sees a
 * different one. Three nodes cannot do that with symmetric links, so there the ring is
 * directed: each node hears only from its successor.
 */
function majoritiesRing(nodes: readonly number[], random: SeededRandom): Partition {
  const ring = shuffled(random, nodes);
  const n = ring.length;
  const c = new Connectivity();
  if (n === 3) {
    for (let i = 0; i < n; i++) {
      // ring[i] hears ring[i+1] only: block ring[i+2] -> ring[i].
      c.block(ring[(i + 2) % n]!, ring[i]!);
    }
    return {
      shape: PartitionShape.MajoritiesRing,
      connectivity: c,
      description: `majorities-ring directed ${fmt(ring)}`,
    };
  }
  const d = Math.ceil((majoritySize(n) - 1) / 2);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const gap = Math.min(j - i, n - (j - i));
      if (gap > d) c.blockBoth(ring[i]!, ring[j]!);
    }
  }
  return {
    shape: PartitionShape.MajoritiesRing,
    connectivity: c,
    description: `majorities-ring d=${d} ${fmt(ring)}`,
  };
}

/** bridge splits all but one node into two sides and lets only the bridge node talk to both. */
function bridge(nodes: readonly number[], random: SeededRandom): Partition {
  const order = shuffled(random, nodes);
  const via = order[0]!;
  const rest = order.slice(1);
  const k = uniformInt(random, 1, rest.length - 1);
  const a = rest.slice(0, k);
  const b = rest.slice(k);
  const c = new Connectivity();
  for (const x of a) for (const y of b) c.blockBoth(x, y);
  return {
    shape: PartitionShape.Bridge,
    connectivity: c,
    description: `bridge ${fmt(a)} <-${via}-> ${fmt(b)}`,
  };
}

function fmt(ids: readonly number[]): string {
  return `{${ids.join(',')}}`;
}
