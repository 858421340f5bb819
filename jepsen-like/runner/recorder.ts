/**
 * Recorder: the runner's history, event by event (CONTRACT.md "History JSONL").
 *
 * Every client operation goes through `Recorder.op`: it records the invoke, runs the call
 * under a deadline, and records exactly one completion: `ok`, `fail` (the call certainly had
 * no effect: the workload says which errors mean that) or `info` (unknown: a timeout, a lost
 * connection, anything else). After an `info` the process is retired and the caller goes on
 * under a new process id, as in Jepsen: a process with an operation in doubt never issues
 * another. Nemesis events are recorded under the process "nemesis".
 *
 * Events are kept in memory in the order they happen (one event loop, so `index` is exact)
 * and written once, as JSONL, at the end. `time` is monotonic nanoseconds since the recorder
 * was created.
 */
import { writeFileSync } from 'node:fs';
import { isDkvError } from '../../src/errors.js';
import { NEMESIS_PROCESS } from '../history.js';

/** RawEvent is one history line as written. */
export interface RawEvent {
  readonly index: number;
  readonly time: number;
  readonly process: number | string;
  readonly type: 'invoke' | 'ok' | 'fail' | 'info';
  readonly f: string;
  readonly key?: string;
  readonly value: unknown;
  readonly [extra: string]: unknown;
}

/** Completion is what an operation's call returns: its type, value and extra fields. */
export interface Completion {
  readonly type: 'ok' | 'fail';
  readonly value?: unknown;
  readonly extra?: Readonly<Record<string, unknown>>;
}

/** OpSpec describes one operation for Recorder.op. */
export interface OpSpec {
  readonly f: string;
  readonly key?: string;
  readonly value?: unknown;
  /** Extra fields of the invoke (and of its completion). */
  readonly extra?: Readonly<Record<string, unknown>>;
  /** The call; it may throw. */
  readonly run: () => Promise<Completion>;
  /** Errors that certainly mean "no effect" (by DkvError code); reads pass `always`. */
  readonly failOn?: ReadonlySet<string> | 'always';
  /** The deadline after which the op is recorded as info (default: the recorder's). */
  readonly timeoutMs?: number;
}

/** Proc is one logical client process; after an info it gets a new id. */
export interface Proc {
  id: number;
}

/** Recorder records a history. */
export class Recorder {
  readonly events: RawEvent[] = [];
  private readonly t0 = process.hrtime.bigint();
  private nextProcess = 0;
  private readonly timeoutMs: number;
  /** Counts of completions, for progress lines. */
  readonly counts = { ok: 0, fail: 0, info: 0 };

  constructor(opts: { timeoutMs: number }) {
    this.timeoutMs = opts.timeoutMs;
  }

  /** nowNs is monotonic nanoseconds since the recorder started. */
  nowNs(): number {
    return Number(process.hrtime.bigint() - this.t0);
  }

  /** newProcess allocates a process id. */
  newProcess(): Proc {
    return { id: this.nextProcess++ };
  }

  /** record appends one event. */
  record(
    proc: number | string,
    type: RawEvent['type'],
    f: string,
    key: string | undefined,
    value: unknown,
    extra?: Readonly<Record<string, unknown>>,
  ): RawEvent {
    const e: RawEvent = {
      index: this.events.length,
      time: this.nowNs(),
      process: proc,
      type,
      f,
      ...(key !== undefined && { key }),
      value: value === undefined ? null : value,
      ...extra,
    };
    this.events.push(e);
    return e;
  }

  /** nemesis records a fault event. */
  nemesis(type: 'invoke' | 'info', f: string, value: unknown): void {
    this.record(NEMESIS_PROCESS, type, f, undefined, value);
  }

  /**
   * op runs one operation for `proc`: invoke, call, completion. It returns the completion
   * type and value; on `info` the process has been given a new id.
   */
  async op(proc: Proc, spec: OpSpec): Promise<{ type: 'ok' | 'fail' | 'info'; value: unknown }> {
    const id = proc.id;
    this.record(id, 'invoke', spec.f, spec.key, spec.value ?? null, spec.extra);
    const timeoutMs = spec.timeoutMs ?? this.timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    try {
      const r = await Promise.race([spec.run(), timeout]);
      if (r === 'timeout') return this.info(proc, spec, 'TIMEOUT', `no answer within ${timeoutMs} ms`);
      this.record(id, r.type, spec.f, spec.key, r.value ?? null, { ...spec.extra, ...r.extra });
      this.counts[r.type]++;
      return { type: r.type, value: r.value ?? null };
    } catch (err) {
      const code = isDkvError(err) ? err.code : 'ERROR';
      const msg = err instanceof Error ? err.message : String(err);
      if (spec.failOn === 'always' || (spec.failOn?.has(code) ?? false)) {
        this.record(id, 'fail', spec.f, spec.key, null, { ...spec.extra, error: code, message: msg });
        this.counts.fail++;
        return { type: 'fail', value: code };
      }
      return this.info(proc, spec, code, msg);
    } finally {
      clearTimeout(timer);
    }
  }

  private info(proc: Proc, spec: OpSpec, code: string, msg: string): { type: 'info'; value: unknown } {
    this.record(proc.id, 'info', spec.f, spec.key, null, { ...spec.extra, error: code, message: msg });
    this.counts.info++;
    proc.id = this.nextProcess++;
    return { type: 'info', value: code };
  }

  /** jsonl renders the history. */
  jsonl(): string {
    let out = '';
    for (const e of this.events) out += `${JSON.stringify(e)}\n`;
    return out;
  }

  /** write writes the history to `path`. */
  write(path: string): void {
    writeFileSync(path, this.jsonl());
  }
}
