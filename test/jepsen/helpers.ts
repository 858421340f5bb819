/**
 * Test helpers for the checker: building histories by hand, a brute-force linearizability
 * reference, and the path to the shared third-party checker data (never copied into the repo).
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  type HistoryEvent,
  type HistoryOp,
  type OpStatus,
  pairEvents,
  toEvent,
} from '../../jepsen-like/history.js';
import type { Model, Operation } from '../../jepsen-like/models/model.js';

/** REPO_ROOT is the repository's root. */
export const REPO_ROOT = resolve(import.meta.dirname, '../..');
/**
 * CHECKER_DATA is `../shared/checker-data` relative to the repository's root
 * (`DKV_CHECKER_DATA` overrides it, for example to see the tests skip without it).
 */
export const CHECKER_DATA =
  process.env.DKV_CHECKER_DATA ?? resolve(REPO_ROOT, '..', 'shared', 'checker-data');
/** PORCUPINE_DATA is where Porcupine's labeled histories live, when present. */
export const PORCUPINE_DATA = resolve(CHECKER_DATA, 'porcupine');
/** HAVE_PORCUPINE_DATA tells whether the shared data is there. */
export const HAVE_PORCUPINE_DATA = existsSync(resolve(PORCUPINE_DATA, 'expected.json'));

/** OpSpec describes one op for `op()`. */
export interface OpSpec {
  readonly f: string;
  readonly key?: string;
  readonly process?: number | string;
  readonly status?: OpStatus;
  /** The invoke's value. */
  readonly value?: unknown;
  /** The completion's value (defaults to the invoke's). */
  readonly out?: unknown;
  /** Extra fields of the completion (for example `revision`, `error`, `result`). */
  readonly fields?: Record<string, unknown>;
  /** Extra fields of the invoke (for example `watcher`). */
  readonly invokeFields?: Record<string, unknown>;
  readonly call: number;
  /** The completion's index; ignored for info. */
  readonly ret?: number;
}

/** op builds a HistoryOp directly (no per-process rules), with id `id`. */
export function op(id: number, s: OpSpec): HistoryOp {
  const status = s.status ?? 'ok';
  const invoke = toEvent(
    {
      index: s.call,
      time: s.call,
      process: s.process ?? id,
      type: 'invoke',
      f: s.f,
      ...(s.key === undefined ? {} : { key: s.key }),
      value: s.value ?? null,
      ...s.invokeFields,
    },
    0,
  );
  const hasCompletion = status !== 'info' || s.ret !== undefined;
  const completion = hasCompletion
    ? toEvent(
        {
          index: s.ret ?? s.call + 1,
          time: s.ret ?? s.call + 1,
          process: s.process ?? id,
          type: status,
          f: s.f,
          ...(s.key === undefined ? {} : { key: s.key }),
          value: s.out === undefined ? (s.value ?? null) : s.out,
          ...s.fields,
        },
        0,
      )
    : undefined;
  return {
    id,
    process: s.process ?? id,
    f: s.f,
    key: s.key,
    status,
    invoke,
    completion,
    call: s.call,
    ret: status === 'info' ? Number.POSITIVE_INFINITY : (s.ret ?? s.call + 1),
  };
}

/** ops builds HistoryOps with ids in order. */
export function ops(...specs: OpSpec[]): HistoryOp[] {
  return specs.map((s, i) => op(i, s));
}

/** history wraps HistoryOps as a History (events are not needed by the checkers). */
export function history(list: HistoryOp[]): {
  events: HistoryEvent[];
  ops: HistoryOp[];
  nemesis: HistoryEvent[];
} {
  return { events: [], ops: list, nemesis: [] };
}

/** jsonl renders events as JSONL text. */
export function jsonl(events: readonly Record<string, unknown>[]): string {
  return `${events.map((e) => JSON.stringify(e)).join('\n')}\n`;
}

/** pairRaw pairs raw event objects (index and time given). */
export function pairRaw(events: readonly Record<string, unknown>[]) {
  return pairEvents(events.map((e, i) => toEvent(e, i + 1)));
}

/**
 * bruteForceLinearizable is the dumb reference: try every order of the ops that respects
 * real time, where ops with an infinite return may be left out, stepping the model.
 * Exponential: for a handful of ops only.
 */
export function bruteForceLinearizable<S, I, O>(
  model: Model<S, I, O>,
  list: readonly Operation<I, O>[],
): boolean {
  return model.partition(list).every((part) => bruteForcePartition(model, part));
}

function bruteForcePartition<S, I, O>(model: Model<S, I, O>, list: readonly Operation<I, O>[]): boolean {
  const n = list.length;
  const placed = new Array<boolean>(n).fill(false);
  const go = (state: S): boolean => {
    let finiteLeft = false;
    for (let i = 0; i < n; i++)
      if (!placed[i] && list[i]!.ret !== Number.POSITIVE_INFINITY) finiteLeft = true;
    if (!finiteLeft) return true;
    for (let i = 0; i < n; i++) {
      if (placed[i]) continue;
      const x = list[i]!;
      let blocked = false;
      for (let j = 0; j < n; j++) if (!placed[j] && j !== i && list[j]!.ret < x.call) blocked = true;
      if (blocked) continue;
      const [ok, next] = model.step(state, x.input, x.output);
      if (!ok) continue;
      placed[i] = true;
      const found = go(next);
      placed[i] = false;
      if (found) return true;
    }
    return false;
  };
  return go(model.init());
}
