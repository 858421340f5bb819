/**
 * PacketQueue is the network's in-flight set: a binary min-heap ordered by delivery step,
 * then by send sequence, so equal delivery steps keep a deterministic order.
 */

/** Packet is one message in flight between two simulated nodes. */
export interface Packet<M> {
  /** The simulation step at which the packet arrives (if its link is still open). */
  deliverStep: number;
  /** A global send counter; breaks ties deterministically. */
  readonly seq: number;
  readonly from: number;
  readonly to: number;
  readonly message: M;
}

/** PacketQueue is a bounded min-heap of packets. */
export class PacketQueue<M> {
  private readonly heap: Packet<M>[] = [];
  /** capacity bounds how many packets may be in flight at once. */
  readonly capacity: number;

  constructor(capacity: number) {
    if (!(capacity > 0)) throw new RangeError(`PacketQueue: capacity must be positive, got ${capacity}`);
    this.capacity = capacity;
  }

  /** size is the number of packets in flight. */
  get size(): number {
    return this.heap.length;
  }

  /** isFull tells whether a push would exceed the capacity. */
  isFull(): boolean {
    return this.heap.length >= this.capacity;
  }

  /** push adds a packet; the caller checks `isFull` first. */
  push(p: Packet<M>): void {
    if (this.isFull()) throw new RangeError('PacketQueue: full');
    const h = this.heap;
    h.push(p);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(h[i]!, h[parent]!)) break;
      swap(h, i, parent);
      i = parent;
    }
  }

  /** peek returns the earliest packet without removing it. */
  peek(): Packet<M> | undefined {
    return this.heap[0];
  }

  /** pop removes and returns the earliest packet. */
  pop(): Packet<M> | undefined {
    const h = this.heap;
    const top = h[0];
    if (top === undefined) return undefined;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        swap(h, i, m);
        i = m;
      }
    }
    return top;
  }
}

function before<M>(a: Packet<M>, b: Packet<M>): boolean {
  return a.deliverStep < b.deliverStep || (a.deliverStep === b.deliverStep && a.seq < b.seq);
}

function swap<T>(h: T[], i: number, j: number): void {
  const t = h[i]!;
  h[i] = h[j]!;
  h[j] = t;
}
