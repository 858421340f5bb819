/**
 * One load generator process of the overload benchmark (forked by generator-process.ts). On a
 * 2-core box the nodes take most of the CPU, and one process cannot issue several times their
 * capacity; the benchmark splits the offered rate over a few of these and reports what they
 * issued together.
 *
 * Each generator is one writer: it owns the keys i of the key space with i % writers ===
 * writer, so every key has a single writer and the ledger (ledger.ts) can check it exactly.
 * It opens `clients` DkvClients with retryOverloaded false (a shed put fails at once with
 * OVERLOADED instead of retrying), and sends each put through the next client in turn, so
 * the load spreads over several connections and client sessions per node.
 *
 * It speaks to its parent over the IPC channel, one request at a time (GeneratorRequest ->
 * GeneratorReply): `init` connects, `phase` runs an open-loop phase (open-loop.ts), `verify`
 * reads every key it owns (linearizable) and checks the ledger, `close` closes and exits.
 * It exits by itself when the channel closes (the parent died).
 */
import { pathToFileURL } from 'node:url';
import { DkvClient } from '../../src/client/client.js';
import { isDkvError } from '../../src/errors.js';
import { xorshift32 } from '../common.js';
import { keyOf } from '../compare/workloads.js';
import { type LedgerCheck, Outcome, valueOfPut, WriteLedger } from './ledger.js';
import { type OpenLoopResult, runOpenLoop } from './open-loop.js';

/** GeneratorInit configures a generator. */
export interface GeneratorInit {
  readonly type: 'init';
  readonly servers: readonly string[];
  /** This generator's number, 0..writers-1. */
  readonly writer: number;
  readonly writers: number;
  /** Keys 0..keySpace-1 (keyOf), this writer's share of them. */
  readonly keySpace: number;
  /** DkvClients (connections to every node) to spread the puts over. */
  readonly clients: number;
  readonly requestTimeoutMs: number;
  readonly seed: number;
}

/** GeneratorPhase runs one open-loop phase at this generator's share of the rate. */
export interface GeneratorPhase {
  readonly type: 'phase';
  readonly ratePerSec: number;
  readonly durationMs: number;
  readonly drainMs: number;
  /** When to start (Date.now() time), so that every generator's window is the same. */
  readonly startAtEpochMs: number;
}

/** GeneratorVerify reads back every key of this writer and checks the ledger. */
export interface GeneratorVerify {
  readonly type: 'verify';
  readonly concurrency: number;
}

/** GeneratorRequest is what the parent sends. */
export type GeneratorRequest = GeneratorInit | GeneratorPhase | GeneratorVerify | { readonly type: 'close' };

/** VerifyResult is what a verify found. */
export interface VerifyResult {
  readonly check: LedgerCheck;
  /** Puts issued in all. */
  readonly puts: number;
  /** Keys whose final read failed (not checked), and the first error. */
  readonly readErrors: number;
  readonly readErrorExample?: string;
}

/** GeneratorReply is what a generator answers. */
export type GeneratorReply =
  | { readonly type: 'ready' }
  | { readonly type: 'phase-done'; readonly result: OpenLoopResult }
  | { readonly type: 'verified'; readonly result: VerifyResult }
  | { readonly type: 'closed' }
  | { readonly type: 'error'; readonly message: string };

function messageOf(err: unknown): string {
  return `${isDkvError(err) ? `${err.code}: ` : ''}${err instanceof Error ? err.message : String(err)}`;
}

/** LoadGenerator is a generator's state between requests. */
class LoadGenerator {
  private readonly clients: DkvClient[];
  private readonly ledger: WriteLedger;
  private readonly owned: number;
  private readonly rnd: () => number;

  private constructor(
    private readonly init: GeneratorInit,
    clients: DkvClient[],
  ) {
    this.clients = clients;
    this.ledger = new WriteLedger(init.writer, init.keySpace);
    this.owned = Math.ceil((init.keySpace - init.writer) / init.writers);
    this.rnd = xorshift32(init.seed * 7919 + init.writer + 1);
  }

  static async open(init: GeneratorInit): Promise<LoadGenerator> {
    const clients: DkvClient[] = [];
    try {
      for (let i = 0; i < init.clients; i++)
        clients.push(
          await DkvClient.connect({
            servers: init.servers,
            retryOverloaded: false,
            requestTimeoutMs: init.requestTimeoutMs,
          }),
        );
    } catch (err) {
      await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
      throw err;
    }
    return new LoadGenerator(init, clients);
  }

  /** ownedKeys lists this writer's keys. */
  private *ownedKeys(): Generator<number> {
    for (let k = this.init.writer; k < this.init.keySpace; k += this.init.writers) yield k;
  }

  async phase(p: GeneratorPhase): Promise<OpenLoopResult> {
    const wait = p.startAtEpochMs - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const { writer, writers } = this.init;
    const ledger = this.ledger;
    const clients = this.clients;
    return runOpenLoop(
      (slot) => {
        const k = writer + writers * (this.rnd() % this.owned);
        const seq = ledger.begin(k, performance.now());
        return clients[slot % clients.length]!.put(keyOf(k), valueOfPut(writer, seq)).then(
          () => ledger.end(seq, Outcome.Ok, performance.now()),
          (err: unknown) => {
            ledger.end(seq, isDkvError(err, 'OVERLOADED') ? Outcome.Shed : Outcome.Failed, performance.now());
            throw err;
          },
        );
      },
      { ratePerSec: p.ratePerSec, durationMs: p.durationMs, drainMs: p.drainMs },
    );
  }

  async verify(v: GeneratorVerify): Promise<VerifyResult> {
    // Reads retry OVERLOADED: they must answer, whatever the load left behind.
    const reader = await DkvClient.connect({ servers: this.init.servers, requestTimeoutMs: 30_000 });
    const finals = new Map<number, unknown>();
    let readErrors = 0;
    let readErrorExample: string | undefined;
    try {
      const keys = [...this.ownedKeys()];
      let next = 0;
      await Promise.all(
        Array.from({ length: Math.max(1, v.concurrency) }, async () => {
          while (next < keys.length) {
            const k = keys[next++]!;
            try {
              finals.set(k, (await reader.get(keyOf(k)))?.value);
            } catch (err) {
              readErrors++;
              readErrorExample ??= messageOf(err);
            }
          }
        }),
      );
    } finally {
      await reader.close().catch(() => undefined);
    }
    const check = this.ledger.check(finals.keys(), (k) => finals.get(k));
    return {
      check,
      puts: this.ledger.puts,
      readErrors,
      ...(readErrorExample !== undefined && { readErrorExample }),
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close().catch(() => undefined)));
  }
}

/** serve answers the parent's requests until `close` or until the channel goes. */
function serve(): void {
  let gen: LoadGenerator | undefined;
  const reply = (r: GeneratorReply): void => {
    if (process.connected) process.send?.(r);
  };
  // One request at a time: the parent waits for each reply before it sends the next.
  let busy = Promise.resolve();
  process.on('message', (raw: unknown) => {
    const req = raw as GeneratorRequest;
    busy = busy.then(async () => {
      try {
        switch (req.type) {
          case 'init':
            gen = await LoadGenerator.open(req);
            reply({ type: 'ready' });
            return;
          case 'phase':
            if (gen === undefined) throw new Error('phase before init');
            reply({ type: 'phase-done', result: await gen.phase(req) });
            return;
          case 'verify':
            if (gen === undefined) throw new Error('verify before init');
            reply({ type: 'verified', result: await gen.verify(req) });
            return;
          case 'close':
            await gen?.close();
            reply({ type: 'closed' });
            process.disconnect();
            return;
          default:
            throw new Error(`unknown request ${JSON.stringify((req as { type?: unknown }).type)}`);
        }
      } catch (err) {
        reply({ type: 'error', message: messageOf(err) });
      }
    });
  });
  process.on('disconnect', () => {
    // The parent is gone or done: nothing more to do here.
    const closing = gen?.close() ?? Promise.resolve();
    closing.finally(() => process.exit(0)).catch(() => undefined);
    setTimeout(() => process.exit(0), 2000).unref();
  });
}

if (
  process.send !== undefined &&
  process.argv[1] !== undefined &&
  import.meta.url === pathToFileURL(process.argv[1]).href
)
  serve();
