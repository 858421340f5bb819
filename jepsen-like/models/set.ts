/**
 * The set model: grow-only sets, one per key, with `add` of an element and `read` of the
 * whole set.
 *
 * History form: `add` carries the element as `value`; `read` returns an array of elements
 * (null = empty), compared as a set. Elements are compared by canonical JSON and interned to
 * integers. A state is the sorted array of element ids with an order-free hash (the XOR of
 * a mixed hash per element), so equal sets hash alike whatever the add order; an add copies
 * the array (O(size)). `--init` may give an initial array of elements (default empty).
 *
 * Linearizability of a large set history is expensive whatever the checker; for the set
 * workload, `checkers/set.ts` checks the property that matters (no acknowledged add lost)
 * in near-linear time.
 */
import { canonicalJson } from '../canonical-json.js';
import { type HistoryOp, HistoryParseError, show } from '../history.js';
import {
  type BoundModel,
  Interner,
  type Model,
  type ModelFactory,
  type ModelOptions,
  mix32,
  type Operation,
  operationOf,
  partitionByKey,
  REJECTED,
  type StepResult,
} from './model.js';

/** SetState is a set of element ids, sorted, with its order-free hash. */
export interface SetState {
  readonly ids: readonly number[];
  readonly h: number;
}

/** SetInput is an add of element id `element`, or a read. */
export interface SetInput {
  readonly read: boolean;
  readonly element: number;
}

function elementHash(id: number): number {
  return mix32(Math.imul(id + 1, 0x9e3779b1));
}

/** setOf builds a SetState from element ids (duplicates are ignored). */
export function setOf(ids: readonly number[]): SetState {
  const sorted = [...new Set(ids)].sort((a, b) => a - b);
  let h = 0;
  for (const id of sorted) h ^= elementHash(id);
  return { ids: sorted, h };
}

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function insertionPoint(ids: readonly number[], id: number): number {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ids[mid]! < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** setModel is the grow-only set's sequential specification. */
export function setModel(elements: Interner, init: SetState): Model<SetState, SetInput, SetState> {
  return {
    name: 'set',
    init: () => init,
    step(state: SetState, input: SetInput, output: SetState | undefined): StepResult<SetState> {
      if (input.read)
        return output === undefined || (output.h === state.h && sameIds(output.ids, state.ids))
          ? [true, state]
          : REJECTED;
      const at = insertionPoint(state.ids, input.element);
      if (state.ids[at] === input.element) return [true, state];
      const ids = state.ids.slice();
      ids.splice(at, 0, input.element);
      return [true, { ids, h: state.h ^ elementHash(input.element) }];
    },
    equal: (a, b) => a.h === b.h && sameIds(a.ids, b.ids),
    hash: (s) => s.h,
    partition: partitionByKey,
    describeOperation(input, output) {
      if (!input.read) return `add(${elements.name(input.element)})`;
      return `read() -> ${output === undefined ? '?' : describe(elements, output)}`;
    },
    describeState: (s) => describe(elements, s),
  };
}

function describe(elements: Interner, s: SetState): string {
  const shown = s.ids.slice(0, 20).map((id) => elements.name(id));
  return `{${shown.join(', ')}${s.ids.length > 20 ? `, ... (${s.ids.length})` : ''}}`;
}

function elementsOf(v: unknown, line: number, what: string, elements: Interner): number[] {
  if (v === null) return [];
  if (!Array.isArray(v))
    throw new HistoryParseError(line, `set model: ${what} must be an array, got ${show(v)}`);
  return v.map((e) => elements.id(canonicalJson(e)));
}

/** bindSet binds the set model to a history. */
export function bindSet(options: ModelOptions): BoundModel<SetState, SetInput, SetState> {
  const elements = new Interner();
  const init = setOf(elementsOf(options.init ?? null, 0, '--init', elements));
  return {
    model: setModel(elements, init),
    operations(ops: readonly HistoryOp[]) {
      const out: Operation<SetInput, SetState>[] = [];
      for (const h of ops) {
        if (h.status === 'fail') continue;
        const line = h.invoke.line;
        let input: SetInput;
        let output: SetState | undefined;
        if (h.f === 'read') {
          if (h.status !== 'ok') continue;
          input = { read: true, element: 0 };
          output = setOf(elementsOf(h.completion!.value, h.completion!.line, 'a read result', elements));
        } else if (h.f === 'add') {
          input = { read: false, element: elements.id(canonicalJson(h.invoke.value)) };
        } else {
          throw new HistoryParseError(line, `set model: unknown f ${show(h.f)} (add or read)`);
        }
        out.push(operationOf(h, input, output));
      }
      return out;
    },
  };
}

/** set is the set model's registry entry. */
export const set: ModelFactory = {
  name: 'set',
  summary: 'grow-only sets: add(element), read() -> [elements], on independent keys',
  bind: bindSet,
};
