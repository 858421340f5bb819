/**
 * ClientSession numbers a client's mutations for exactly-once application (the server side is
 * src/statemachine/sessions.ts). Each mutation takes the next `seq` and keeps it for every
 * retry; each request also carries `ack`, the smallest seq whose mutation is not finished yet
 * (or the next seq when none is in flight), which lets every group forget the answers below it.
 *
 * A mutation is finished when the client stops asking about it: when an answer arrived, or
 * when the client gave up (its deadline passed; the caller got TIMEOUT). Giving up moves `ack`
 * past it, so one lost request cannot pin every group's answer table forever; a late copy of
 * it that reaches a group after that group has seen the higher ack is refused there as
 * "acknowledged already" rather than applied.
 *
 * Costs: begin and ack are O(1); finish is O(1) amortised (the low-water mark advances over a
 * set of seqs that finished out of order, each visited once).
 */
import type { SessionArgs } from '../transport/protocol.js';

/** ClientSession hands out seqs and tracks the ack low-water mark. */
export class ClientSession {
  readonly clientId: string;
  /** The seq the next mutation gets. */
  private nextSeq = 1;
  /** Invariant: every seq below `low` is finished, `low` itself is not (or low === nextSeq). */
  private low = 1;
  /** Seqs above `low` that finished out of order. */
  private readonly finishedAbove = new Set<number>();

  constructor(clientId: string) {
    this.clientId = clientId;
  }

  /** begin takes the next seq for a new mutation. */
  begin(): number {
    return this.nextSeq++;
  }

  /** tag is the session to send with an attempt of mutation `seq`. */
  tag(seq: number): SessionArgs {
    return { client: this.clientId, seq, ack: this.low };
  }

  /** ack is the smallest seq still in flight, or the next seq when none is. */
  get ack(): number {
    return this.low;
  }

  /** inFlight counts the mutations begun and not finished. */
  get inFlight(): number {
    return this.nextSeq - this.low - this.finishedAbove.size;
  }

  /** finish records that mutation `seq` got its answer or was given up on. */
  finish(seq: number): void {
    if (seq < this.low || seq >= this.nextSeq) return;
    if (seq !== this.low) {
      this.finishedAbove.add(seq);
      return;
    }
    this.low++;
    while (this.finishedAbove.delete(this.low)) this.low++;
  }
}

/** randomClientId draws a 128-bit random id (hex) from the platform's cryptographic source. */
export function randomClientId(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}
