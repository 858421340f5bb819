/**
 * Connectivity says which directed links between simulated nodes carry packets. It is a
 * plain matrix over node ids; partitions are built on top of it (see partitions.ts).
 */

/** NODE_ID_MAX bounds the node ids a simulation may use, which bounds the matrix. */
export const NODE_ID_MAX = 31;

/**
 * Connectivity is a directed reachability matrix. A node can always reach itself; every
 * other link is open unless blocked.
 */
export class Connectivity {
  /** blocked[from * SIZE + to] === 1 when packets from `from` to `to` are dropped. */
  private readonly blocked = new Uint8Array((NODE_ID_MAX + 1) * (NODE_ID_MAX + 1));
  /** Invariant: blockedCount equals the number of 1s in `blocked`. */
  private blockedCount = 0;

  /** allows tells whether a packet sent from `from` reaches `to`. */
  allows(from: number, to: number): boolean {
    return from === to || this.blocked[slot(from, to)] === 0;
  }

  /** block cuts the directed link from `from` to `to`. */
  block(from: number, to: number): void {
    if (from === to) return;
    const s = slot(from, to);
    if (this.blocked[s] === 0) {
      this.blocked[s] = 1;
      this.blockedCount++;
    }
  }

  /** blockBoth cuts the link in both directions. */
  blockBoth(a: number, b: number): void {
    this.block(a, b);
    this.block(b, a);
  }

  /** isFull tells whether every link is open. */
  isFull(): boolean {
    return this.blockedCount === 0;
  }

  /** heardBy lists the nodes among `nodes` that can send to `to` (itself included). */
  heardBy(to: number, nodes: readonly number[]): number[] {
    return nodes.filter((from) => this.allows(from, to));
  }

  /** connected tells whether `a` and `b` can exchange packets both ways. */
  connected(a: number, b: number): boolean {
    return this.allows(a, b) && this.allows(b, a);
  }
}

function slot(from: number, to: number): number {
  if (!(from >= 0 && from <= NODE_ID_MAX && to >= 0 && to <= NODE_ID_MAX)) {
    throw new RangeError(`connectivity: node id out of range (${from} -> ${to}, max ${NODE_ID_MAX})`);
  }
  return from * (NODE_ID_MAX + 1) + to;
}
