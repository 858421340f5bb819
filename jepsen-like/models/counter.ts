/**
 * The counter model: named counters (one per key) with `add` and `read`.
 *
 * History form: `add` carries its delta as `value`; its `ok` completion may carry
 * `"result": N`, the counter's value after the add (DKV's `counter.add` returns it), which
 * the model then checks too. `read` returns the value (null = absent = 0). `--init N` gives
 * every counter's initial value (default 0). A state is a number.
 */
import { type HistoryOp, HistoryParseError, show } from '../history.js';
import {
  type BoundModel,
  hashString,
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

/** CounterInput is an add of `delta`, or a read (`read` true). */
export interface CounterInput {
  readonly read: boolean;
  readonly delta: number;
}

/** counterModel is the counter's sequential specification. */
export function counterModel(init: number): Model<number, CounterInput, number> {
  return {
    name: 'counter',
    init: () => init,
    step(state: number, input: CounterInput, output: number | undefined): StepResult<number> {
      if (input.read) return output === undefined || output === state ? [true, state] : REJECTED;
      const next = state + input.delta;
      return output === undefined || output === next ? [true, next] : REJECTED;
    },
    equal: (a, b) => a === b,
    hash: (s) => (Number.isInteger(s) && Math.abs(s) < 0x40000000 ? mix32(s) : hashString(String(s))),
    partition: partitionByKey,
    describeOperation(input, output) {
      const out = output === undefined ? '?' : String(output);
      return input.read ? `read() -> ${out}` : `add(${input.delta}) -> ${out}`;
    },
    describeState: (s) => String(s),
  };
}

function numberValue(v: unknown, line: number, what: string): number {
  if (v === null) return 0;
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new HistoryParseError(line, `counter model: ${what} must be a number, got ${show(v)}`);
  return v;
}

/** bindCounter binds the counter model to a history. */
export function bindCounter(options: ModelOptions): BoundModel<number, CounterInput, number> {
  const init = numberValue(options.init ?? 0, 0, '--init');
  return {
    model: counterModel(init),
    operations(ops: readonly HistoryOp[]) {
      const out: Operation<CounterInput, number>[] = [];
      for (const h of ops) {
        if (h.status === 'fail') continue;
        const line = h.invoke.line;
        let input: CounterInput;
        let output: number | undefined;
        if (h.f === 'read') {
          if (h.status !== 'ok') continue;
          input = { read: true, delta: 0 };
          output = numberValue(h.completion!.value, h.completion!.line, 'a read result');
        } else if (h.f === 'add') {
          input = { read: false, delta: numberValue(h.invoke.value, line, 'an add delta') };
          const result = h.completion?.fields.result;
          if (h.status === 'ok' && result !== undefined && result !== null)
            output = numberValue(result, h.completion!.line, 'an add result');
        } else {
          throw new HistoryParseError(line, `counter model: unknown f ${show(h.f)} (add or read)`);
        }
        out.push(operationOf(h, input, output));
      }
      return out;
    },
  };
}

/** counter is the counter model's registry entry. */
export const counter: ModelFactory = {
  name: 'counter',
  summary: 'add(delta)/read counters on independent keys (--init N, default 0)',
  bind: bindCounter,
};
