/**
 * Fencing at a resource outside the store (DESIGN.md "Locks and fencing"; Kleppmann, "How to
 * do distributed locking"). A lock holder can be paused (GC, SIGSTOP, a slow network) past
 * the end of its lease while another client takes the lock; when it wakes up, its writes must
 * be refused. Every acquire returns a fencing token that strictly increases per lock, so the
 * resource keeps the highest token it has seen per lock and refuses any lower one.
 *
 * Two ways to fence:
 * - **Store-enforced** (writes to DKV itself): pass the lock's fence to the mutation,
 *   `client.put(key, value, { fence: lock.fence })`. The store checks it atomically with the
 *   write and refuses it with STALE_FENCE once the token is not the lock's current one (a
 *   later holder, a released lock, or a holder whose lease is past its deadline). The key
 *   must live in the lock's group: give both one hash tag (lock `{job42}`, key `{job42}/out`).
 *   This is stronger than FenceGuard: it also refuses a stale token before any newer one has
 *   been seen.
 * - **Resource-side** (a database, a file store, another service): the resource runs a
 *   FenceGuard (or the same rule in its own storage, ideally atomically with the write, e.g.
 *   a conditional update on a `fence_token` column) and checks every request's token with
 *   `accept` before acting on it.
 *
 * FenceGuard holds one number per lock name it has seen: memory grows with the number of
 * distinct locks. `forget` drops a lock that will not be used again; forgetting a lock still
 * in use would let a stale token through, so the guard never evicts by itself. It is not
 * persistent: a resource that restarts must restore `highest` from its own storage
 * (`restore`), or it accepts any token again.
 */
import { DkvError, ErrorCode } from '../errors.js';
import type { Fence } from './locks.js';

/** FenceGuard keeps the highest fencing token seen per lock and refuses lower ones. */
export class FenceGuard {
  /** Invariant: every value is a positive safe integer that only grows (until `forget`). */
  private readonly highestSeen = new Map<string, number>();

  /**
   * accept admits a request carrying `token` for `lock`: true (and the token becomes the
   * highest seen) when it is at least the highest token seen for that lock; false for a lower
   * one (a stale holder). An equal token is the current holder writing again.
   */
  accept(lock: string, token: number): boolean {
    checkFence(lock, token);
    const seen = this.highestSeen.get(lock);
    if (seen !== undefined && token < seen) return false;
    if (seen !== token) this.highestSeen.set(lock, token);
    return true;
  }

  /** check is accept for a Fence, throwing STALE_FENCE instead of returning false. */
  check(fence: Fence): void {
    if (!this.accept(fence.lock, fence.token))
      throw new DkvError(
        ErrorCode.StaleFence,
        `fencing token ${fence.token} for lock ${JSON.stringify(fence.lock)} is stale (seen: ${this.highestSeen.get(fence.lock)})`,
      );
  }

  /** highest is the highest token seen for `lock` (undefined: none). */
  highest(lock: string): number | undefined {
    return this.highestSeen.get(lock);
  }

  /** restore sets what a restarted resource had seen (the higher of it and what is known now). */
  restore(lock: string, token: number): void {
    checkFence(lock, token);
    const seen = this.highestSeen.get(lock);
    if (seen === undefined || token > seen) this.highestSeen.set(lock, token);
  }

  /** forget drops a lock that will never be used again. */
  forget(lock: string): boolean {
    return this.highestSeen.delete(lock);
  }

  /** size is how many locks the guard remembers. */
  get size(): number {
    return this.highestSeen.size;
  }
}

function checkFence(lock: unknown, token: unknown): void {
  if (typeof lock !== 'string' || lock.length === 0)
    throw new DkvError(ErrorCode.InvalidArgument, 'a fence needs a lock name');
  if (typeof token !== 'number' || !Number.isSafeInteger(token) || token < 1)
    throw new DkvError(
      ErrorCode.InvalidArgument,
      `a fencing token must be a positive integer, got ${String(token)}`,
    );
}
