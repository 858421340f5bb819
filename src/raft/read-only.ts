import type { NodeId } from './types.js';

/** ReadIndexRequest is a read waiting for the leader to confirm it is still the leader. */
export interface ReadIndexRequest {
  /** Who asked: this replica (NONE or self) or a follower that forwarded the read. */
  readonly from: NodeId;
  readonly context: string;
  /** The commit index when the read arrived: the read may be served once this is applied. */
  readonly index: number;
  /** Voters that acknowledged a heartbeat carrying this request's context (or a later one). */
  readonly acks: Set<NodeId>;
}

/**
 * ReadOnly queues ReadIndex requests on the leader until a quorum acknowledges a heartbeat
 * sent after them. A heartbeat round carries the newest pending context; an
 * acknowledgement of it confirms every request queued before it, so one round serves a
 * whole batch of reads.
 */
export class ReadOnly {
  private readonly pending = new Map<string, ReadIndexRequest>();
  /** Keys in arrival order. Invariant: exactly the keys of `pending`. */
  private queue: string[] = [];
  /** The most reads that may wait at once. */
  readonly pendingMax: number;
  /** Prefix of every key: the leader's term, so keys of different terms never collide. */
  private readonly keyPrefix: string;
  private seq = 0;

  constructor(pendingMax: number, term: number) {
    this.pendingMax = pendingMax;
    this.keyPrefix = `${term}.`;
  }

  /**
   * addRequest queues a read at commit index `index` and returns the key that heartbeats
   * carry for it, or null if the queue is full. Keys are never reused by this leader (they
   * hold its term and a sequence number), so an acknowledgement of an old heartbeat, however
   * late or duplicated, can never confirm a read queued after that heartbeat left.
   */
  addRequest(index: number, from: NodeId, context: string): string | null {
    if (this.queue.length >= this.pendingMax) return null;
    this.seq++;
    const key = `${this.keyPrefix}${this.seq}`;
    this.pending.set(key, { from, context, index, acks: new Set() });
    this.queue.push(key);
    return key;
  }

  /** recvAck records that `id` acknowledged a heartbeat carrying `key`; it returns the acks so far. */
  recvAck(id: NodeId, key: string): ReadonlySet<NodeId> | undefined {
    const rs = this.pending.get(key);
    if (!rs) return undefined;
    rs.acks.add(id);
    return rs.acks;
  }

  /** advance dequeues and returns every request up to and including the one with `key`. */
  advance(key: string): ReadIndexRequest[] {
    const at = this.queue.indexOf(key);
    if (at < 0) return [];
    const done = this.queue.slice(0, at + 1);
    this.queue = this.queue.slice(at + 1);
    const out: ReadIndexRequest[] = [];
    for (const k of done) {
      const rs = this.pending.get(k);
      if (!rs) throw new Error(`ReadOnly.advance: ${k} queued but not pending`);
      this.pending.delete(k);
      out.push(rs);
    }
    return out;
  }

  /** lastPendingKey is the key of the newest queued read, or '' if none. */
  lastPendingKey(): string {
    return this.queue.length > 0 ? this.queue[this.queue.length - 1]! : '';
  }

  /** size is the number of reads waiting. */
  size(): number {
    return this.queue.length;
  }
}
