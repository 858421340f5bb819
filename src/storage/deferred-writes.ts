/**
 * DeferredWrites is the planted bug `no-fsync` (TEST ONLY, src/node/test-hooks.ts): a queue in
 * front of the node's LevelDB that lets a group commit be acknowledged before its batch is
 * written at all. Passing sync:false to LevelDB would not do: the OS page cache survives a
 * process kill, so nothing would be lost. Here the batches wait in this process's memory and
 * are written out (unsynced, in order, merged) every `flushEveryMs`; a SIGKILL loses up to
 * that much acknowledged log and hard state, which is what the harness must detect.
 *
 * Everything else still sees the queued writes: every other operation (a read, a snapshot's
 * synced batch, a clear) first writes out everything queued before it, in call order, so
 * reads never miss a queued write and writes keep their order. The in-memory views of
 * GroupStorage are updated at acknowledgement, as in the normal path. `close` (a graceful
 * stop) writes the queue out; `discard` drops it, as a kill would.
 *
 * A failed write-out is sticky: every later operation, and the next `enqueue`, throws it, so
 * the node stops as it does on any storage failure.
 */
import type { LevelStore } from './group-storage.js';
import type { LevelDb, RangeOptions, WriteOp } from './level-db.js';

/** QueuedWrite is one write waiting in the queue, in call order. */
type QueuedWrite =
  | { readonly kind: 'batch'; readonly ops: readonly WriteOp[]; readonly sync: boolean }
  | { readonly kind: 'clear'; readonly range: { readonly gte: Uint8Array; readonly lt: Uint8Array } };

/** DEFERRED_BYTES_MAX starts a write-out early once this many value bytes are queued. */
const DEFERRED_BYTES_MAX = 64 << 20;

function opBytes(ops: readonly WriteOp[]): number {
  let n = 0;
  for (const op of ops) n += op.key.length + (op.type === 'put' ? op.value.length : 0);
  return n;
}

export class DeferredWrites implements LevelStore {
  private readonly db: LevelDb;
  /** Writes not yet handed to LevelDB, oldest first. */
  private queue: QueuedWrite[] = [];
  private queuedBytes = 0;
  /** Write-outs run one after another on this chain; it never rejects. */
  private chain: Promise<void> = Promise.resolve();
  /** The first write-out failure; sticky. */
  private failure: unknown = undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(db: LevelDb, flushEveryMs: number) {
    this.db = db;
    this.timer = setInterval(() => {
      this.flush().catch(() => undefined); // sticky: the next enqueue reports it
    }, flushEveryMs);
    this.timer.unref();
  }

  /** queuedCount is how many writes wait in the queue. */
  get queuedCount(): number {
    return this.queue.length;
  }

  /** enqueue queues a group-commit batch and returns at once: the acknowledgement comes before the write. */
  enqueue(ops: readonly WriteOp[]): void {
    if (this.failure !== undefined) throw this.failure;
    if (ops.length === 0) return;
    this.queue.push({ kind: 'batch', ops, sync: false });
    this.queuedBytes += opBytes(ops);
    if (this.queuedBytes >= DEFERRED_BYTES_MAX) this.flush().catch(() => undefined);
  }

  /** flush writes out everything queued so far (unsynced unless a queued write asked for a sync). */
  flush(): Promise<void> {
    const done = this.chain.then(() => this.writeQueued());
    this.chain = done.catch(() => undefined);
    return done;
  }

  /** discard drops the queue without writing it (what a kill does); returns how many writes it dropped. */
  discard(): number {
    const n = this.queue.length;
    this.queue = [];
    this.queuedBytes = 0;
    return n;
  }

  /** close stops the timer and writes the queue out (a graceful stop). */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  private async writeQueued(): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    const items = this.queue;
    this.queue = [];
    this.queuedBytes = 0;
    let ops: WriteOp[] = [];
    let sync = false;
    const writeOps = async (): Promise<void> => {
      if (ops.length > 0 || sync) await this.db.batch(ops, sync);
      ops = [];
      sync = false;
    };
    try {
      for (const it of items) {
        if (it.kind === 'batch') {
          for (const op of it.ops) ops.push(op);
          if (it.sync) sync = true;
        } else {
          await writeOps();
          await this.db.clear(it.range);
        }
      }
      await writeOps();
    } catch (err) {
      this.failure = err;
      throw err;
    }
  }

  // ---------------------------------------------------------------- LevelStore: in call order

  async get(key: Uint8Array): Promise<Uint8Array | undefined> {
    await this.flush();
    return this.db.get(key);
  }

  async keys(range: RangeOptions): Promise<Uint8Array[]> {
    await this.flush();
    return this.db.keys(range);
  }

  async entries(range: RangeOptions): Promise<[Uint8Array, Uint8Array][]> {
    await this.flush();
    return this.db.entries(range);
  }

  async batch(ops: readonly WriteOp[], sync: boolean): Promise<void> {
    this.queue.push({ kind: 'batch', ops, sync });
    await this.flush();
  }

  async del(key: Uint8Array): Promise<void> {
    this.queue.push({ kind: 'batch', ops: [{ type: 'del', key }], sync: false });
    await this.flush();
  }

  async clear(range: { gte: Uint8Array; lt: Uint8Array }): Promise<void> {
    this.queue.push({ kind: 'clear', range });
    await this.flush();
  }
}
