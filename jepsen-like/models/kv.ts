/**
 * The kv model: Porcupine's multi-key get/put/append store, one string per key.
 *
 * `get` returns the key's string (a missing key is "", and null reads as ""), `put` replaces
 * it, `append` appends to it. Values are strings. Keys are independent, so the history is
 * split per key. `--init` gives every key's initial string (default "").
 *
 * A state carries its string and a polynomial hash of it that an append extends in O(1)
 * (h(s + v) = h(s) * B^|v| + h(v)), so hashing a state never reads its (long) string; a get
 * compares the hash before the string.
 */
import { type HistoryOp, HistoryParseError, show } from '../history.js';
import {
  type BoundModel,
  type Model,
  type ModelFactory,
  type ModelOptions,
  type Operation,
  operationOf,
  partitionByKey,
  REJECTED,
  type StepResult,
} from './model.js';

/** KvOp is a kv operation's kind. */
export const KvOp = { Get: 0, Put: 1, Append: 2 } as const;
/** KvOp's values. */
export type KvOp = (typeof KvOp)[keyof typeof KvOp];

/** KvString is a string with its polynomial hash and B^length (mod 2^32). */
export interface KvString {
  readonly s: string;
  readonly h: number;
  readonly p: number;
}

/** KvInput is an operation; `v` is the value put or appended (unused for get). */
export interface KvInput {
  readonly op: KvOp;
  readonly v: KvString;
}

const BASE = 0x01000193;

/** kvString hashes a string for the kv model. */
export function kvString(s: string): KvString {
  let h = 0;
  let p = 1;
  for (let i = 0; i < s.length; i++) {
    h = (Math.imul(h, BASE) + s.charCodeAt(i)) | 0;
    p = Math.imul(p, BASE);
  }
  return { s, h, p };
}

function concat(a: KvString, b: KvString): KvString {
  return { s: a.s + b.s, h: (Math.imul(a.h, b.p) + b.h) | 0, p: Math.imul(a.p, b.p) };
}

/** kvModel is the kv store's sequential specification for one key. */
export function kvModel(init: KvString): Model<KvString, KvInput, KvString> {
  return {
    name: 'kv',
    init: () => init,
    step(state: KvString, input: KvInput, output: KvString | undefined): StepResult<KvString> {
      switch (input.op) {
        case KvOp.Get:
          return output === undefined || (output.h === state.h && output.s === state.s)
            ? [true, state]
            : REJECTED;
        case KvOp.Put:
          return [true, input.v];
        default:
          return [true, concat(state, input.v)];
      }
    },
    equal: (a, b) => a.h === b.h && a.s === b.s,
    hash: (s) => s.h,
    partition: partitionByKey,
    describeOperation(input, output) {
      switch (input.op) {
        case KvOp.Get:
          return `get() -> ${output === undefined ? '?' : shorten(output.s)}`;
        case KvOp.Put:
          return `put(${shorten(input.v.s)})`;
        default:
          return `append(${shorten(input.v.s)})`;
      }
    },
    describeState: (s) => shorten(s.s),
  };
}

/** shorten renders a long string by its tail (appends grow at the end) and its length. */
function shorten(s: string): string {
  return s.length <= 64 ? JSON.stringify(s) : `...${JSON.stringify(s.slice(-48))} (${s.length} chars)`;
}

function stringValue(v: unknown, line: number, what: string): string {
  if (v === null) return '';
  if (typeof v !== 'string')
    throw new HistoryParseError(line, `kv model: ${what} must be a string, got ${show(v)}`);
  return v;
}

/** bindKv binds the kv model to a history. */
export function bindKv(options: ModelOptions): BoundModel<KvString, KvInput, KvString> {
  const init = kvString(stringValue(options.init ?? '', 0, '--init'));
  const empty = kvString('');
  return {
    model: kvModel(init),
    operations(ops: readonly HistoryOp[]) {
      const out: Operation<KvInput, KvString>[] = [];
      for (const h of ops) {
        if (h.status === 'fail') continue;
        const line = h.invoke.line;
        let input: KvInput;
        let output: KvString | undefined;
        if (h.f === 'get') {
          if (h.status !== 'ok') continue;
          input = { op: KvOp.Get, v: empty };
          output = kvString(stringValue(h.completion!.value, h.completion!.line, 'a get result'));
        } else if (h.f === 'put' || h.f === 'append') {
          const v = kvString(stringValue(h.invoke.value, line, `a ${h.f} value`));
          input = { op: h.f === 'put' ? KvOp.Put : KvOp.Append, v };
        } else {
          throw new HistoryParseError(line, `kv model: unknown f ${show(h.f)} (get, put or append)`);
        }
        out.push(operationOf(h, input, output));
      }
      return out;
    },
  };
}

/** kv is the kv model's registry entry. */
export const kv: ModelFactory = {
  name: 'kv',
  summary: 'get/put/append strings on independent keys (Porcupine kv semantics)',
  bind: bindKv,
};
