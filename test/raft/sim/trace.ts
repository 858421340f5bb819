/**
 * Trace keeps the last lines of a simulation's event log in a bounded ring, and optionally
 * echoes every line to a sink (the CLI's --verbose). Callers test `enabled` before building a
 * line, so a run without tracing formats no strings at all.
 */

/** TRACE_TAIL_LINES_DEFAULT is how many lines a failure report shows. */
export const TRACE_TAIL_LINES_DEFAULT = 60;

/** Trace is a bounded ring of formatted event lines. */
export class Trace {
  /** enabled is false for the fast path; then `line` must not be called. */
  readonly enabled: boolean;
  private readonly ring: string[];
  private readonly capacity: number;
  /** Invariant: next is the ring slot the next line goes to. */
  private next = 0;
  private count = 0;
  private readonly sink: ((line: string) => void) | undefined;

  constructor(enabled: boolean, capacity = TRACE_TAIL_LINES_DEFAULT * 4, sink?: (line: string) => void) {
    if (!(capacity > 0)) throw new RangeError(`Trace: capacity must be positive, got ${capacity}`);
    this.enabled = enabled;
    this.capacity = capacity;
    this.ring = new Array<string>(enabled ? capacity : 0);
    this.sink = sink;
  }

  /** line records one event at `step`; `who` is a node id, or 0 for the simulator itself. */
  line(step: number, who: number, text: string): void {
    if (!this.enabled) return;
    const s = `${String(step).padStart(6)} ${who === 0 ? 'sim' : `n${who}`.padEnd(3)} ${text}`;
    this.ring[this.next] = s;
    this.next = (this.next + 1) % this.capacity;
    this.count++;
    if (this.sink !== undefined) this.sink(s);
  }

  /** tail returns up to `lines` of the most recent lines, oldest first. */
  tail(lines: number = TRACE_TAIL_LINES_DEFAULT): string[] {
    const n = Math.min(lines, this.count, this.capacity);
    const out: string[] = [];
    for (let i = n; i > 0; i--) out.push(this.ring[(this.next - i + this.capacity) % this.capacity]!);
    return out;
  }
}

/** TRACE_OFF is the shared disabled trace. */
export const TRACE_OFF: Trace = new Trace(false, 1);
