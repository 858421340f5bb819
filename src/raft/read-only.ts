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
  /** Contexts in arrival order. Invariant: exactly the keys of `pending`. */
  private queue: string[] = [];
  /** The most reads that may wait at once. */
  readonly pendingMax: number;

  constructor(pendingMax: number) {
    this.pendingMax = pendingMax;
  }

  /** addRequest queues a read at commit index `index`; false if it is a duplicate or the queue is full. */
  addRequest(index: number, from: NodeId, context: string): boolean {
    if (this.pending.has(context) || this.queue.length >= this.pendingMax) return false;
    this.pending.set(context, { from, context, index, acks: new Set() });
    this.queue.push(context);
    return true;
  }

  /** recvAck records that `id` acknowledged a heartbeat with `context`; it returns the acks so far. */
  recvAck(id: NodeId, context: string): ReadonlySet<NodeId> | undefined {
    const rs = this.pending.get(context);
    if (!rs) return undefined;
    rs.acks.add(id);
    return rs.acks;
  }

  /** advance dequeues and returns every request up to and including `context`. */
  advance(context: string): ReadIndexRequest[] {
    const at = this.queue.indexOf(context);
    if (at < 0) return [];
    const done = this.queue.slice(0, at + 1);
    this.queue = this.queue.slice(at + 1);
    const out: ReadIndexRequest[] = [];
    for (const ctx of done) {
      const rs = this.pending.get(ctx);
      if (!rs) throw new Error(`ReadOnly.advance: ${ctx} queued but not pending`);
      this.pending.delete(ctx);
      out.push(rs);
    }
    return out;
  }

  /** lastPendingContext is the newest queued context, or '' if none. */
  lastPendingContext(): string {
    return this.queue.length > 0 ? this.queue[this.queue.length - 1]! : '';
  }

  /** size is the number of reads waiting. */
  size(): number {
    return this.queue.length;
  }
}
