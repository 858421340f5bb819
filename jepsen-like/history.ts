/**
 * The history model of the harness and its JSONL form (CONTRACT.md, "History JSONL").
 *
 * A history is a sequence of events, one JSON object per line:
 *
 *     {"index":17,"time":1234567,"process":3,"type":"invoke","f":"cas","key":"k7","value":[1,4]}
 *
 * Each client process records `invoke`, then exactly one completion: `ok`, `fail` (certainly
 * did not take effect) or `info` (unknown: it may take effect at any time after the invoke, or
 * never). `parseHistory` validates every line and pairs each invoke with its process's next
 * completion into a `HistoryOp`. An invoke still open at the end of the history is an `info`.
 * Events of the process `"nemesis"` are faults, not client operations: they are kept apart.
 *
 * Real-time order is the order of `index` (the recorder writes events in the order they
 * happen, one process at a time, so index is exact where nanosecond times may tie): an op
 * precedes another when its completion's index is below the other's invoke's index. `time`
 * is kept for reports. Extra fields on a line are allowed and kept (`fields`); checkers read
 * the ones they document (for example `revision` on a write's completion, see README.md).
 *
 * Parsing is linear in the size of the text; the module does no I/O (the CLI reads files).
 */
import { DkvError, ErrorCode } from '../src/errors.js';

/** EventType lists the four event types of the contract. */
export const EventType = {
  Invoke: 'invoke',
  Ok: 'ok',
  Fail: 'fail',
  Info: 'info',
} as const;
/** EventType's values. */
export type EventType = (typeof EventType)[keyof typeof EventType];

/** NEMESIS_PROCESS is the process name of fault events; they are not client operations. */
export const NEMESIS_PROCESS = 'nemesis';

/** HistoryEvent is one validated line of a history. */
export interface HistoryEvent {
  /** Position in the history; strictly increases from line to line. */
  readonly index: number;
  /** Monotonic nanoseconds; never decreases from line to line. */
  readonly time: number;
  /** A client process id (a non-negative integer) or a named process such as "nemesis". */
  readonly process: number | string;
  readonly type: EventType;
  readonly f: string;
  /** The key the operation is on; undefined for a single register. */
  readonly key: string | undefined;
  /** The event's value (null when the line has none). */
  readonly value: unknown;
  /** The 1-based line of the event in its file (0 when built in memory). */
  readonly line: number;
  /** Every field of the line, including extra ones the contract does not name. */
  readonly fields: Readonly<Record<string, unknown>>;
}

/** OpStatus is how an operation ended; an op never completed counts as `info`. */
export type OpStatus = 'ok' | 'fail' | 'info';

/** HistoryOp is an invoke paired with its completion. */
export interface HistoryOp {
  /** The op's position among the history's ops, in invoke order (stable, used in reports). */
  readonly id: number;
  readonly process: number | string;
  readonly f: string;
  readonly key: string | undefined;
  readonly status: OpStatus;
  readonly invoke: HistoryEvent;
  /** The completion event; undefined when the history ended with the op still open. */
  readonly completion: HistoryEvent | undefined;
  /** The invoke's index: the op cannot have taken effect before it. */
  readonly call: number;
  /** The completion's index for ok and fail; +Infinity for info (it may take effect any time, or never). */
  readonly ret: number;
}

/** History is a parsed, paired history. */
export interface History {
  readonly events: readonly HistoryEvent[];
  /** Client operations in invoke order. */
  readonly ops: readonly HistoryOp[];
  /** Events of the nemesis process (fault starts and ends), for reports. */
  readonly nemesis: readonly HistoryEvent[];
}

/** HistoryParseError is a malformed history: it names the line and the reason. */
export class HistoryParseError extends DkvError {
  /** The 1-based line the problem is on (0 when the history was not read from text). */
  readonly line: number;
  /** The reason, without the line number. */
  readonly reason: string;

  constructor(line: number, reason: string) {
    super(ErrorCode.InvalidArgument, line > 0 ? `line ${line}: ${reason}` : reason);
    this.line = line;
    this.reason = reason;
  }
}

const TYPES: ReadonlySet<string> = new Set(Object.values(EventType));

/** parseEventLine validates one JSON object as a history event. */
export function parseEventLine(text: string, line: number): HistoryEvent {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new HistoryParseError(line, `not valid JSON (${(err as Error).message})`);
  }
  return toEvent(raw, line);
}

/** toEvent validates a decoded object as a history event (see HistoryEvent for the rules). */
export function toEvent(raw: unknown, line: number): HistoryEvent {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new HistoryParseError(line, 'an event must be a JSON object');
  const o = raw as Record<string, unknown>;
  const { index, time, process, type, f, key } = o;
  if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0)
    throw new HistoryParseError(line, `"index" must be a non-negative integer, got ${show(index)}`);
  if (typeof time !== 'number' || !Number.isFinite(time))
    throw new HistoryParseError(line, `"time" must be a finite number, got ${show(time)}`);
  if (
    !(typeof process === 'number' && Number.isSafeInteger(process) && process >= 0) &&
    !(typeof process === 'string' && process.length > 0)
  )
    throw new HistoryParseError(
      line,
      `"process" must be a non-negative integer or a name, got ${show(process)}`,
    );
  if (typeof type !== 'string' || !TYPES.has(type))
    throw new HistoryParseError(line, `"type" must be one of invoke, ok, fail, info; got ${show(type)}`);
  if (typeof f !== 'string' || f.length === 0)
    throw new HistoryParseError(line, `"f" must be a non-empty string, got ${show(f)}`);
  if (key !== undefined && typeof key !== 'string')
    throw new HistoryParseError(line, `"key" must be a string when present, got ${show(key)}`);
  return {
    index,
    time,
    process,
    type: type as EventType,
    f,
    key,
    value: o.value === undefined ? null : o.value,
    line,
    fields: o,
  };
}

/** parseHistory parses JSONL text (blank lines are skipped) and pairs its events. */
export function parseHistory(text: string): History {
  const events: HistoryEvent[] = [];
  let start = 0;
  let line = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    line++;
    const s = text.slice(start, end).trim();
    if (s.length > 0) events.push(parseEventLine(s, line));
    start = end + 1;
  }
  return pairEvents(events);
}

/**
 * pairEvents checks the order of the events and pairs each process's invoke with its next
 * completion. It throws a HistoryParseError on the first problem: index not strictly
 * increasing, time going backwards, a completion with no open invoke, an invoke while the
 * process's previous op is open, or a completion whose f or key differs from its invoke.
 */
export function pairEvents(events: readonly HistoryEvent[]): History {
  const ops: HistoryOp[] = [];
  const nemesis: HistoryEvent[] = [];
  // Ops are numbered in invoke order; completions fill their slot later.
  const open = new Map<number | string, number>();
  const pending: { invoke: HistoryEvent; completion: HistoryEvent | undefined }[] = [];
  let prev: HistoryEvent | undefined;
  for (const ev of events) {
    if (prev !== undefined) {
      if (ev.index <= prev.index)
        throw new HistoryParseError(
          ev.line,
          `"index" must strictly increase: ${ev.index} follows ${prev.index}${at(prev)}`,
        );
      if (ev.time < prev.time)
        throw new HistoryParseError(
          ev.line,
          `"time" goes backwards: ${ev.time} follows ${prev.time}${at(prev)}`,
        );
    }
    prev = ev;
    if (ev.process === NEMESIS_PROCESS) {
      nemesis.push(ev);
      continue;
    }
    const slot = open.get(ev.process);
    if (ev.type === EventType.Invoke) {
      if (slot !== undefined) {
        const inv = pending[slot]!.invoke;
        throw new HistoryParseError(
          ev.line,
          `process ${ev.process} invokes ${ev.f} while its ${inv.f} (index ${inv.index}${at(inv)}) is still open`,
        );
      }
      open.set(ev.process, pending.length);
      pending.push({ invoke: ev, completion: undefined });
      continue;
    }
    if (slot === undefined)
      throw new HistoryParseError(ev.line, `${ev.type} for process ${ev.process}, which has no open invoke`);
    const p = pending[slot]!;
    if (ev.f !== p.invoke.f)
      throw new HistoryParseError(
        ev.line,
        `${ev.type} of ${ev.f} completes process ${ev.process}'s ${p.invoke.f} (index ${p.invoke.index}${at(p.invoke)})`,
      );
    if (ev.key !== undefined && ev.key !== p.invoke.key)
      throw new HistoryParseError(
        ev.line,
        `${ev.type} on key ${show(ev.key)} completes an invoke on key ${show(p.invoke.key)}${at(p.invoke)}`,
      );
    p.completion = ev;
    open.delete(ev.process);
  }
  for (let id = 0; id < pending.length; id++) {
    const { invoke, completion } = pending[id]!;
    const status: OpStatus = completion === undefined ? 'info' : (completion.type as OpStatus);
    ops.push({
      id,
      process: invoke.process,
      f: invoke.f,
      key: invoke.key,
      status,
      invoke,
      completion,
      call: invoke.index,
      ret: status === 'info' ? Number.POSITIVE_INFINITY : completion!.index,
    });
  }
  return { events, ops, nemesis };
}

/** groupByKey groups ops by key ('' when absent), keys sorted. */
export function groupByKey(ops: readonly HistoryOp[]): [string, HistoryOp[]][] {
  const groups = new Map<string, HistoryOp[]>();
  for (const op of ops) {
    const k = op.key ?? '';
    let list = groups.get(k);
    if (list === undefined) {
      list = [];
      groups.set(k, list);
    }
    list.push(op);
  }
  return [...groups].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

function at(ev: HistoryEvent): string {
  return ev.line > 0 ? `, line ${ev.line}` : '';
}

/** show renders a value for an error message, shortened. */
export function show(v: unknown): string {
  let s: string;
  try {
    s = v === undefined ? 'nothing' : JSON.stringify(v);
  } catch {
    s = String(v);
  }
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
