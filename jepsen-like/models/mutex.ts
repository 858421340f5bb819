/**
 * The mutex model: fenced locks, one per key (the lock's name), as DESIGN.md "Locks and
 * fencing" specifies them.
 *
 * History form: `acquire`'s `ok` completion carries the fencing token as `value`; `release`
 * carries the token it releases as `value`. Semantics: an acquire succeeds only on a free
 * lock and returns a token strictly greater than every token granted before; a release
 * succeeds only with the current holder's token and frees the lock. A failed op (for
 * example a release answered NOT_OWNER) did not take effect and is dropped.
 *
 * An `info` acquire may have granted the lock with a token nobody saw: the state is then
 * "held by an unknown token", which a later release of any token above the last known one
 * frees. Lease expiry frees a DKV lock with no client op, so this strict model fits
 * histories without expiry; for the lock workload under faults, `checkers/fencing.ts`
 * checks what matters (the protected resource's view).
 */
import { type HistoryOp, HistoryParseError, show } from '../history.js';
import {
  type BoundModel,
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

/** FREE and UNKNOWN_HOLDER are the non-token values of MutexState.held. */
export const FREE = -1;
export const UNKNOWN_HOLDER = -2;

/** MutexState is who holds the lock (a token, FREE or UNKNOWN_HOLDER) and the last token known granted. */
export interface MutexState {
  readonly held: number;
  readonly last: number;
}

/** MutexInput is an acquire, or a release of `token`. */
export interface MutexInput {
  readonly release: boolean;
  readonly token: number;
}

/** mutexModel is the fenced lock's sequential specification; outputs are acquire tokens. */
export function mutexModel(): Model<MutexState, MutexInput, number> {
  const init: MutexState = { held: FREE, last: 0 };
  return {
    name: 'mutex',
    init: () => init,
    step(state: MutexState, input: MutexInput, output: number | undefined): StepResult<MutexState> {
      if (!input.release) {
        if (state.held !== FREE) return REJECTED;
        if (output === undefined) return [true, { held: UNKNOWN_HOLDER, last: state.last }];
        return output > state.last ? [true, { held: output, last: output }] : REJECTED;
      }
      const t = input.token;
      if (state.held === t) return [true, { held: FREE, last: state.last }];
      if (state.held === UNKNOWN_HOLDER && t > state.last) return [true, { held: FREE, last: t }];
      // A release with an unknown outcome that could not have succeeded changed nothing.
      return output === undefined ? [true, state] : REJECTED;
    },
    equal: (a, b) => a.held === b.held && a.last === b.last,
    hash: (s) => mix32(Math.imul(s.held | 0, 0x9e3779b1) ^ (s.last | 0)),
    partition: partitionByKey,
    describeOperation(input, output) {
      if (input.release) return `release(${input.token}) -> ${output === undefined ? '?' : 'ok'}`;
      return `acquire() -> ${output === undefined ? '?' : output}`;
    },
    describeState(s) {
      const held =
        s.held === FREE ? 'free' : s.held === UNKNOWN_HOLDER ? 'held (token unknown)' : `held by ${s.held}`;
      return `${held}, last token ${s.last}`;
    },
  };
}

function tokenValue(v: unknown, line: number, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    throw new HistoryParseError(
      line,
      `mutex model: ${what} must be a non-negative integer token, got ${show(v)}`,
    );
  return v;
}

/** bindMutex binds the mutex model to a history (`--init` is not used). */
export function bindMutex(_options: ModelOptions): BoundModel<MutexState, MutexInput, number> {
  return {
    model: mutexModel(),
    operations(ops: readonly HistoryOp[]) {
      const out: Operation<MutexInput, number>[] = [];
      for (const h of ops) {
        if (h.status === 'fail') continue;
        const line = h.invoke.line;
        let input: MutexInput;
        let output: number | undefined;
        if (h.f === 'acquire') {
          input = { release: false, token: 0 };
          if (h.status === 'ok')
            output = tokenValue(h.completion!.value, h.completion!.line, 'an acquire result');
        } else if (h.f === 'release') {
          input = { release: true, token: tokenValue(h.invoke.value, line, 'a release value') };
          if (h.status === 'ok') output = 1;
        } else {
          throw new HistoryParseError(line, `mutex model: unknown f ${show(h.f)} (acquire or release)`);
        }
        out.push(operationOf(h, input, output));
      }
      return out;
    },
  };
}

/** mutex is the mutex model's registry entry. */
export const mutex: ModelFactory = {
  name: 'mutex',
  summary: 'fenced locks: acquire -> token, release(token), on independent keys',
  bind: bindMutex,
};
