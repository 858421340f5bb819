/**
 * SimFailure is how a simulation run fails: a broken safety invariant, a liveness timeout, or
 * an exception thrown by the core. It carries a stable `code` so tests branch on the kind of
 * failure, never on the message.
 */

/** FailureCode names every way a run can fail. */
export const FailureCode = {
  /** Two leaders in one term. */
  ElectionSafety: 'ELECTION_SAFETY',
  /** An index was committed or applied with two different entries. */
  CommittedChanged: 'COMMITTED_CHANGED',
  /** One proposal was committed at two indexes. */
  DuplicateEntry: 'DUPLICATE_ENTRY',
  /** Two durable logs hold different entries at the same (index, term). */
  LogMatching: 'LOG_MATCHING',
  /** A leader truncated or rewrote its own log. */
  LeaderAppendOnly: 'LEADER_APPEND_ONLY',
  /** A replica applied entries out of order or with a gap. */
  AppliedOrder: 'APPLIED_ORDER',
  /** A ReadIndex read missed a write acknowledged before the read began. */
  StaleRead: 'STALE_READ',
  /** The core broke its side of the Ready contract (for example, commit beyond the log). */
  ReadyContract: 'READY_CONTRACT',
  /** A replica's LevelDB storage disagrees with what the simulation made durable in it. */
  StorageDiverged: 'STORAGE_DIVERGED',
  /** After healing, the cluster did not converge in time. */
  Liveness: 'LIVENESS',
  /** The core (or the simulator) threw. */
  Exception: 'EXCEPTION',
} as const;
export type FailureCode = (typeof FailureCode)[keyof typeof FailureCode];

/** SimFailure is thrown by the checker and caught by the runner, which adds seed and step. */
export class SimFailure extends Error {
  override readonly name = 'SimFailure';
  readonly code: FailureCode;

  constructor(code: FailureCode, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.code = code;
  }
}
