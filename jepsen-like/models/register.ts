/**
 * The register model: independent read/write/cas registers, one per key (a missing key is a
 * single register).
 *
 * History form (CONTRACT.md): `read` returns the value read (null = absent), `write` writes
 * its value, `cas` carries `[from, to]`. A `fail` op did not take effect and is dropped,
 * except a `cas` whose completion says `"error": "VERSION_MISMATCH"`: that is an observation
 * (the compare ran and failed, so the register did not hold `from` at that point), as in
 * Porcupine's etcd model. A read with an unknown result constrains nothing and is dropped.
 *
 * Values are compared by canonical JSON and interned to small integers, so a state is one
 * number and a step is O(1). `--init JSON` gives the initial value (default null).
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

/** RegisterOp is a register operation's kind. */
export const RegisterOp = { Read: 0, Write: 1, Cas: 2 } as const;
/** RegisterOp's values. */
export type RegisterOp = (typeof RegisterOp)[keyof typeof RegisterOp];

/** RegisterInput is an operation: `a` is the value written or CAS's `from`, `b` CAS's `to` (interned ids). */
export interface RegisterInput {
  readonly op: RegisterOp;
  readonly a: number;
  readonly b: number;
}

/** RegisterOutput is the value id a read returned, or for a CAS 1 (swapped) or 0 (compare failed). */
export type RegisterOutput = number;

/** CAS_OK and CAS_FAILED are a CAS's outputs. */
export const CAS_OK = 1;
export const CAS_FAILED = 0;

/** registerModel builds the register's sequential specification over interned values. */
export function registerModel(
  values: Interner,
  initId: number,
): Model<number, RegisterInput, RegisterOutput> {
  return {
    name: 'register',
    init: () => initId,
    step(state: number, input: RegisterInput, output: RegisterOutput | undefined): StepResult<number> {
      switch (input.op) {
        case RegisterOp.Read:
          return output === undefined || output === state ? [true, state] : REJECTED;
        case RegisterOp.Write:
          return [true, input.a];
        default: {
          const matches = input.a === state;
          if (output === undefined) return [true, matches ? input.b : state];
          if (output === CAS_OK) return matches ? [true, input.b] : REJECTED;
          return matches ? REJECTED : [true, state];
        }
      }
    },
    equal: (a, b) => a === b,
    hash: (s) => mix32(s),
    partition: partitionByKey,
    describeOperation(input, output) {
      switch (input.op) {
        case RegisterOp.Read:
          return `read() -> ${output === undefined ? '?' : values.name(output)}`;
        case RegisterOp.Write:
          return `write(${values.name(input.a)})`;
        default:
          return `cas(${values.name(input.a)}, ${values.name(input.b)}) -> ${
            output === undefined ? '?' : output === CAS_OK ? 'ok' : 'fail'
          }`;
      }
    },
    describeState: (s) => values.name(s),
  };
}

/** bindRegister binds the register model to a history; `options.init` is the initial value. */
export function bindRegister(options: ModelOptions): BoundModel<number, RegisterInput, RegisterOutput> {
  const values = new Interner();
  const initId = values.id(canonicalJson(options.init ?? null));
  const model = registerModel(values, initId);
  return {
    model,
    operations(ops: readonly HistoryOp[]) {
      const out: Operation<RegisterInput, RegisterOutput>[] = [];
      for (const h of ops) {
        const line = h.invoke.line;
        let input: RegisterInput;
        let output: RegisterOutput | undefined;
        if (h.f === 'read') {
          if (h.status !== 'ok') continue;
          input = { op: RegisterOp.Read, a: 0, b: 0 };
          output = values.id(canonicalJson(h.completion!.value));
        } else if (h.f === 'write') {
          if (h.status === 'fail') continue;
          input = { op: RegisterOp.Write, a: values.id(canonicalJson(h.invoke.value)), b: 0 };
        } else if (h.f === 'cas') {
          const v = h.invoke.value;
          if (!Array.isArray(v) || v.length !== 2)
            throw new HistoryParseError(
              line,
              `register model: a cas value must be [from, to], got ${show(v)}`,
            );
          input = {
            op: RegisterOp.Cas,
            a: values.id(canonicalJson(v[0])),
            b: values.id(canonicalJson(v[1])),
          };
          if (h.status === 'ok') output = CAS_OK;
          else if (h.status === 'fail') {
            if (h.completion!.fields.error !== 'VERSION_MISMATCH') continue;
            output = CAS_FAILED;
          }
        } else {
          throw new HistoryParseError(line, `register model: unknown f ${show(h.f)} (read, write or cas)`);
        }
        out.push(operationOf(h, input, output));
      }
      return out;
    },
  };
}

/** register is the register model's registry entry. */
export const register: ModelFactory = {
  name: 'register',
  summary: 'read/write/cas registers on independent keys (--init JSON, default null)',
  bind: bindRegister,
};
