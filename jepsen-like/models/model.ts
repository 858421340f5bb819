/**
 * The sequential specifications the linearizability checker tests histories against, and the
 * operation form it reads.
 *
 * A Model is a pure, deterministic state machine: `step(state, input, output)` says whether
 * the operation could have returned `output` when applied to `state`, and gives the state
 * after it. States are immutable values; `equal` and `hash` let the checker memoize the
 * (linearized set, state) pairs it has explored. `partition` splits a history into
 * independent sub-histories (P-compositionality: a history is linearizable exactly when each
 * key's sub-history is), which the checker searches one at a time.
 *
 * An Operation's `output` is undefined when it is unknown (an `info` op, or a timed-out
 * read): the model must accept any outcome then. Its `ret` is +Infinity when the op may
 * take effect at any time after its call, or never.
 */
import type { HistoryOp } from '../history.js';

/** Operation is one client operation in the form the checker searches. */
export interface Operation<I, O> {
  /** The op's id in its whole history (HistoryOp.id, or a line-order id); used in reports. */
  readonly id: number;
  /** The partition key ('' for a single object). */
  readonly key: string;
  readonly process: number | string;
  readonly input: I;
  /** The observed output; undefined when unknown. */
  readonly output: O | undefined;
  /** When the op was invoked (history index order). */
  readonly call: number;
  /** When it returned; +Infinity when it may take effect any time after the call, or never. */
  readonly ret: number;
  /** Where it came from, for reports (for example "lines 4-9"). */
  readonly origin?: string;
}

/**
 * StepResult is `[ok, newState]`: whether the step is legal, and the state after it
 * (meaningless when not ok).
 */
export type StepResult<S> = readonly [boolean, S];

/** Model is a sequential specification (see the file comment). */
export interface Model<S, I, O> {
  /** The model's name, as given to `--model`. */
  readonly name: string;
  /** init gives the state before any operation. */
  init(): S;
  /** step applies one operation to a state; it must not mutate `state`. */
  step(state: S, input: I, output: O | undefined): StepResult<S>;
  /** equal tells whether two states are the same. */
  equal(a: S, b: S): boolean;
  /** hash is a 32-bit hash of a state, consistent with equal. */
  hash(state: S): number;
  /** partition splits operations into independent sub-histories, in a deterministic order. */
  partition(ops: readonly Operation<I, O>[]): Operation<I, O>[][];
  /** describeOperation renders an operation for a report, e.g. `cas(1, 4) -> ok`. */
  describeOperation(input: I, output: O | undefined): string;
  /** describeState renders a state for a report. */
  describeState(state: S): string;
}

/** REJECTED is the StepResult of an illegal step (shared: rejecting allocates nothing). */
export const REJECTED: StepResult<never> = Object.freeze([false, undefined as never]) as StepResult<never>;

/** partitionByKey groups operations by key, keys in sorted order, each group in input order. */
export function partitionByKey<T extends { readonly key: string }>(ops: readonly T[]): T[][] {
  const groups = new Map<string, T[]>();
  for (const op of ops) {
    let g = groups.get(op.key);
    if (g === undefined) {
      g = [];
      groups.set(op.key, g);
    }
    g.push(op);
  }
  return [...groups.keys()].sort().map((k) => groups.get(k)!);
}

/** hashString is 32-bit FNV-1a over UTF-16 code units. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h | 0;
}

/** mix32 scrambles a 32-bit integer (the murmur3 finalizer), for hashes built from small ints. */
export function mix32(x: number): number {
  let h = x | 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) | 0;
}

/**
 * Interner maps values (by their canonical string) to small integers, so that models compare
 * and hash states as numbers. Ids are given in first-seen order.
 */
export class Interner {
  private readonly ids = new Map<string, number>();
  /** names[id] is the canonical string of id. */
  readonly names: string[] = [];

  /** id returns the id of a canonical string, assigning the next one if it is new. */
  id(canonical: string): number {
    let id = this.ids.get(canonical);
    if (id === undefined) {
      id = this.names.length;
      this.ids.set(canonical, id);
      this.names.push(canonical);
    }
    return id;
  }

  /** name returns the canonical string of an id. */
  name(id: number): string {
    return this.names[id] ?? `#${id}`;
  }
}

/** originOf renders where an op came from in a JSONL history. */
export function originOf(invokeLine: number, completionLine: number | undefined): string | undefined {
  if (invokeLine <= 0) return undefined;
  return completionLine === undefined || completionLine <= 0
    ? `line ${invokeLine}`
    : `lines ${invokeLine}-${completionLine}`;
}

/** operationOf makes a history op into a model operation, with the model's input and output. */
export function operationOf<I, O>(h: HistoryOp, input: I, output: O | undefined): Operation<I, O> {
  return {
    id: h.id,
    key: h.key ?? '',
    process: h.process,
    input,
    output,
    call: h.call,
    ret: h.ret,
    origin: originOf(h.invoke.line, h.completion?.line),
  };
}

/** ModelOptions are the options of `check` that shape a model. */
export interface ModelOptions {
  /** The initial value (`--init JSON`); each model documents its default. */
  readonly init?: unknown;
}

/**
 * BoundModel is a model together with the conversion of a history's ops into its
 * operations. Conversion interns values, so the two belong to one history.
 */
export interface BoundModel<S, I, O> {
  readonly model: Model<S, I, O>;
  /**
   * operations converts paired history ops into the model's operations. Ops that cannot
   * constrain the search (failed ops, reads with an unknown result) are dropped. It throws
   * HistoryParseError for an op the model does not know or a malformed value.
   */
  operations(ops: readonly HistoryOp[]): Operation<I, O>[];
}

/** ModelFactory names a model and binds it to a history. */
export interface ModelFactory {
  readonly name: string;
  /** One line for usage text. */
  readonly summary: string;
  // biome-ignore lint/suspicious/noExplicitAny: a registry of models with different state types
  bind(options: ModelOptions): BoundModel<any, any, any>;
}
