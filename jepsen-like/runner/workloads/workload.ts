/**
 * What a workload is: client processes that issue operations against the cluster and record
 * them (recorder.ts), a final phase after the faults are healed, and the checkers that judge
 * its history.
 *
 * Each worker is one async loop with its own DkvClient (its own connections and session), so
 * the workers are independent clients, as Jepsen's processes are. A worker issues one
 * operation at a time; after an `info` it goes on under a new process id (the recorder does
 * that). Errors are classified per operation: only errors that prove the operation had no
 * effect make a `fail`; a read may always fail.
 */
import { DkvClient } from '../../../src/client/client.js';
import { ErrorCode } from '../../../src/errors.js';
import type { SeededRandom } from '../../../src/random.js';
import type { History } from '../../history.js';
import type { CheckResult } from '../../linearizability.js';
import type { CheckerResult } from '../../verdict.js';
import type { Recorder } from '../recorder.js';

/** WorkloadContext is what a workload's workers use. */
export interface WorkloadContext {
  readonly servers: readonly string[];
  readonly recorder: Recorder;
  /** The run's seeded randomness (for the workload's choices). */
  readonly rng: SeededRandom;
  /** Aborted when the workload's time is up. */
  readonly signal: AbortSignal;
  /** Aborted when the run is torn down (after the final phase): every loop must end. */
  readonly stopped: AbortSignal;
  /** The client request timeout: longer, and the op is recorded as info. */
  readonly timeoutMs: number;
  /** Opens a client (closed by the runner at the end). */
  client(): Promise<DkvClient>;
  log(line: string): void;
}

/** WorkloadChecks is what a workload's checkers found. */
export interface WorkloadChecks {
  readonly linearizability?: CheckResult & { readonly model: string };
  readonly checkers: readonly CheckerResult[];
}

/** CheckOptions tune the checkers for a run. */
export interface CheckOptions {
  /** The linearizability search's budget per key. */
  readonly timeBudgetMs: number;
  /** The largest clock-rate skew the run applied (1 without the clock nemesis). */
  readonly clockRateMax: number;
  /** Windows (history ns) in which no majority of nodes ran: replicated time may stand still. */
  readonly outages: readonly { readonly startNs: number; readonly endNs: number }[];
}

/** Workload is one of CONTRACT.md's workloads. */
export interface Workload {
  readonly name: string;
  /** How many workers run at once. */
  readonly concurrency: number;
  /** worker runs worker `n` until ctx.signal aborts. */
  worker(ctx: WorkloadContext, n: number): Promise<void>;
  /** final runs after the faults are healed and the cluster recovered: the final reads. */
  final(ctx: WorkloadContext): Promise<void>;
  /** check judges the history. */
  check(history: History, opts: CheckOptions): WorkloadChecks;
}

/** NO_EFFECT lists the error codes that prove a mutation was not applied. */
export const NO_EFFECT: ReadonlySet<string> = new Set([
  ErrorCode.VersionMismatch,
  ErrorCode.StaleFence,
  ErrorCode.LeaseNotFound,
  ErrorCode.NotOwner,
  ErrorCode.InvalidArgument,
  ErrorCode.TooLarge,
  ErrorCode.WrongGroup,
  ErrorCode.CrossGroup,
]);

/** sleep waits `ms`, or less if the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** connectClient opens a client with the harness's settings. */
export function connectClient(servers: readonly string[], timeoutMs: number): Promise<DkvClient> {
  return DkvClient.connect({ servers: [...servers], requestTimeoutMs: timeoutMs });
}
