/**
 * The parent's handle on one load generator process (generator.ts): fork it (under tsx when
 * this runs from source, as src/admin/dev.ts nodeCommand runs the nodes), send it one request
 * at a time and await the reply, bounded by a timeout, failing at once if the process dies.
 *
 * Every process forked is registered until it is closed, so a signal handler can kill them
 * all synchronously (`killAllGenerators`); they also exit by themselves when this process
 * goes (their IPC channel closes). IPC uses the `advanced` serialization, so a phase's
 * latencies come back as a Float64Array, not as a JSON array of numbers.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DkvError, ErrorCode } from '../../src/errors.js';
import type {
  GeneratorInit,
  GeneratorPhase,
  GeneratorReply,
  GeneratorRequest,
  GeneratorVerify,
  VerifyResult,
} from './generator.js';
import type { OpenLoopResult } from './open-loop.js';

/** live are the generator processes forked and not yet closed. */
const live = new Set<GeneratorProcess>();

/** liveGenerators counts the generator processes still open (0 after a clean run). */
export function liveGenerators(): number {
  return live.size;
}

/** killAllGenerators kills (SIGKILL) every generator process still open; synchronous, for signal handlers. */
export function killAllGenerators(): void {
  for (const g of live) g.kill();
  live.clear();
}

/** generatorCommand is the script and node flags that run generator.ts with this very build. */
function generatorCommand(): { file: string; execArgv: string[] } {
  const here = fileURLToPath(import.meta.url);
  const fromSource = here.endsWith('.ts');
  return {
    file: join(dirname(here), fromSource ? 'generator.ts' : 'generator.js'),
    execArgv: fromSource
      ? ['--import', pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href]
      : [],
  };
}

/** GeneratorProcess is one forked generator. */
export class GeneratorProcess {
  readonly writer: number;
  private readonly child: ChildProcess;
  private exited = false;
  private exitReason = '';
  /** The reply awaited now, if any (one request at a time). */
  private waiting: ((reply: GeneratorReply | Error) => void) | undefined;

  private constructor(writer: number, warn: (line: string) => void) {
    this.writer = writer;
    const cmd = generatorCommand();
    this.child = fork(cmd.file, [], {
      execArgv: cmd.execArgv,
      serialization: 'advanced',
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    live.add(this);
    const forward = (chunk: Buffer | string): void => {
      for (const line of String(chunk).split('\n'))
        if (line.trim().length > 0) warn(`generator ${writer}: ${line}`);
    };
    this.child.stdout?.on('data', forward);
    this.child.stderr?.on('data', forward);
    this.child.on('message', (m: unknown) => {
      const w = this.waiting;
      this.waiting = undefined;
      w?.(m as GeneratorReply);
    });
    this.child.on('error', (err) => this.onGone(`failed: ${err.message}`));
    this.child.on('exit', (code, signal) => this.onGone(`exited (${signal ?? `code ${code}`})`));
  }

  private onGone(reason: string): void {
    if (this.exited) return;
    this.exited = true;
    this.exitReason = reason;
    live.delete(this);
    const w = this.waiting;
    this.waiting = undefined;
    w?.(new DkvError(ErrorCode.Unavailable, `load generator ${this.writer} ${reason}`));
  }

  /** pid is the process id (undefined if the fork failed). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** start forks a generator and connects its clients (`init`); on failure it kills it and throws. */
  static async start(
    init: GeneratorInit,
    warn: (line: string) => void,
    timeoutMs = 60_000,
  ): Promise<GeneratorProcess> {
    const g = new GeneratorProcess(init.writer, warn);
    try {
      await g.request(init, 'ready', timeoutMs);
      return g;
    } catch (err) {
      g.kill();
      throw err;
    }
  }

  /** request sends one request and awaits its reply of type `expect`; an `error` reply, a death or the timeout throw. */
  private request<T extends GeneratorReply['type']>(
    req: GeneratorRequest,
    expect: T,
    timeoutMs: number,
  ): Promise<Extract<GeneratorReply, { type: T }>> {
    if (this.exited)
      return Promise.reject(
        new DkvError(ErrorCode.Unavailable, `load generator ${this.writer} ${this.exitReason}`),
      );
    if (this.waiting !== undefined) return Promise.reject(new Error(`load generator ${this.writer} is busy`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        reject(
          new DkvError(
            ErrorCode.Timeout,
            `load generator ${this.writer}: no answer to ${req.type} in ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      this.waiting = (reply) => {
        clearTimeout(timer);
        if (reply instanceof Error) reject(reply);
        else if (reply.type === expect) resolve(reply as Extract<GeneratorReply, { type: T }>);
        else if (reply.type === 'error')
          reject(
            new DkvError(
              ErrorCode.Unavailable,
              `load generator ${this.writer}: ${req.type}: ${reply.message}`,
            ),
          );
        else reject(new Error(`load generator ${this.writer}: ${req.type} answered ${reply.type}`));
      };
      try {
        this.child.send(req, (err) => {
          if (err !== null && err !== undefined) this.onGone(`cannot be sent to: ${err.message}`);
        });
      } catch (err) {
        this.onGone(`cannot be sent to: ${err instanceof Error ? err.message : String(err)}`);
      }
    });
  }

  /** phase runs one open-loop phase; it may take durationMs + drainMs and the start delay. */
  async phase(p: Omit<GeneratorPhase, 'type'>): Promise<OpenLoopResult> {
    const budget = Math.max(0, p.startAtEpochMs - Date.now()) + p.durationMs + p.drainMs + 30_000;
    return (await this.request({ type: 'phase', ...p }, 'phase-done', budget)).result;
  }

  /** verify reads back every key of this writer and checks its ledger. */
  async verify(v: Omit<GeneratorVerify, 'type'>, timeoutMs = 120_000): Promise<VerifyResult> {
    return (await this.request({ type: 'verify', ...v }, 'verified', timeoutMs)).result;
  }

  /** close asks the generator to close its clients and exit, killing it if it does not within 5 s. Idempotent. */
  async close(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    await this.request({ type: 'close' }, 'closed', 5000).catch(() => undefined);
    const timer = setTimeout(() => this.kill(), 5000);
    await gone;
    clearTimeout(timer);
  }

  /** kill kills the process (SIGKILL) at once. */
  kill(): void {
    if (!this.exited) this.child.kill('SIGKILL');
    live.delete(this);
  }
}
