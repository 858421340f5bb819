/**
 * Inflights bounds the append messages in flight to one follower, by count and by bytes.
 * Each slot records the last index an append carried and its payload size; an
 * acknowledgement frees every slot up to the acknowledged index. It is a ring buffer.
 */
export class Inflights {
  /** The most messages allowed in flight. */
  readonly countMax: number;
  /** The most entry bytes allowed in flight (a single larger message is still allowed). */
  readonly bytesMax: number;
  private start = 0;
  /** Invariant: 0 <= count <= countMax. */
  private count = 0;
  /** Invariant: bytes is the sum of the sizes of the `count` live slots. */
  private bytes = 0;
  private readonly indexes: number[];
  private readonly sizes: number[];

  constructor(countMax: number, bytesMax: number) {
    if (!(countMax > 0) || !(bytesMax > 0)) throw new RangeError('Inflights: limits must be positive');
    this.countMax = countMax;
    this.bytesMax = bytesMax;
    this.indexes = [];
    this.sizes = [];
  }

  /** add records an append that carried entries up to `index`, of `sizeBytes` in all. */
  add(index: number, sizeBytes: number): void {
    if (this.count >= this.countMax) throw new Error('Inflights.add: no free slot (check full() first)');
    if (this.count > 0 && index <= this.indexes[(this.start + this.count - 1) % this.countMax]!) {
      throw new Error(`Inflights.add: index ${index} is not increasing`);
    }
    const slot = (this.start + this.count) % this.countMax;
    this.indexes[slot] = index;
    this.sizes[slot] = sizeBytes;
    this.count++;
    this.bytes += sizeBytes;
  }

  /** freeLE frees every slot whose index is <= `index`. */
  freeLE(index: number): void {
    while (this.count > 0 && this.indexes[this.start]! <= index) {
      this.bytes -= this.sizes[this.start]!;
      this.start = (this.start + 1) % this.countMax;
      this.count--;
    }
    if (this.count === 0) this.start = 0;
  }

  /** full tells whether no more appends may be sent. */
  full(): boolean {
    return this.count >= this.countMax || this.bytes >= this.bytesMax;
  }

  /** size is the number of appends in flight. */
  size(): number {
    return this.count;
  }

  /** sizeBytes is the number of entry bytes in flight. */
  sizeBytes(): number {
    return this.bytes;
  }

  /** reset frees every slot. */
  reset(): void {
    this.start = 0;
    this.count = 0;
    this.bytes = 0;
  }
}
