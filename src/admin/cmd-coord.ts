/**
 * The CLI's coordination commands (CONTRACT.md, "CLI"): leases and locks.
 *
 * - `dkv lease grant TTL_MS [--key K]` grants a lease (in the group of K, else a random
 *   group) and prints its id. The command then exits and nothing keeps the lease alive: it
 *   ends after TTL_MS unless `dkv lease keepalive ID` (or a client) renews it. Keys put with
 *   `--lease ID` must live in the lease's group (use `--key` with a key of theirs).
 * - `dkv lease revoke ID` ends a lease now (its keys go, its locks pass on).
 * - `dkv lease keepalive ID` keeps a lease alive until interrupted (SIGINT or SIGTERM),
 *   printing each renewal; it warns on stderr when renewals stop being confirmed (the lease
 *   is at risk) and keeps trying, and fails when the lease is gone.
 * - `dkv lock acquire NAME [--ttl MS] [--wait MS]` takes a lock, prints its fencing token
 *   (`--json`: `{name, token, lease}`), holds it until interrupted, then releases it. If the
 *   lock is lost or at risk while held, it exits with an error. With `--wait`, a lock not
 *   acquired in time is TIMEOUT (`--wait 0` only tries).
 * - `dkv lock release NAME --token T` releases a lock by its token (NOT_OWNER when T is not
 *   the current holder's). The holder's lease is not revoked: it ends by itself.
 *
 * Exit codes: 0 ok; 1 for a lease that does not exist (reported as NOT_FOUND with the server's
 * LEASE_NOT_FOUND message); 2 for any other error.
 */

import type { Command } from 'commander';
import { DkvClient } from '../client/client.js';
import type { Lease } from '../client/leases.js';
import { DkvError, ErrorCode, isDkvError } from '../errors.js';
import { cliSecurity } from './cli-security.js';
import { type GlobalOptions, globals, intOption, serversOf, toJson } from './data-commands.js';

function write(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

async function withClient<T>(g: GlobalOptions, fn: (client: DkvClient) => Promise<T>): Promise<T> {
  const client = await DkvClient.connect({
    ...cliSecurity(),
    servers: serversOf(g),
    store: g.store,
    requestTimeoutMs: intOption('--timeout', g.timeout, 1),
  });
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** leaseGone turns LEASE_NOT_FOUND into NOT_FOUND (exit code 1), keeping the message. */
async function leaseGone<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isDkvError(err, ErrorCode.LeaseNotFound))
      throw new DkvError(ErrorCode.NotFound, `${err.message} (LEASE_NOT_FOUND)`, {}, { cause: err });
    throw err;
  }
}

/**
 * interrupted resolves with the signal's name on SIGINT or SIGTERM, or with undefined when
 * `stop` aborts first; its listeners are removed either way.
 */
export function interrupted(stop?: AbortSignal): Promise<NodeJS.Signals | undefined> {
  return new Promise((resolve) => {
    const done = (sig: NodeJS.Signals | undefined): void => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      stop?.removeEventListener('abort', onStop);
      resolve(sig);
    };
    const onInt = (): void => done('SIGINT');
    const onTerm = (): void => done('SIGTERM');
    const onStop = (): void => done(undefined);
    process.once('SIGINT', onInt);
    process.once('SIGTERM', onTerm);
    if (stop?.aborted) done(undefined);
    else stop?.addEventListener('abort', onStop, { once: true });
  });
}

function reasonOf(signal: AbortSignal, what: string): DkvError {
  const r: unknown = signal.reason;
  if (isDkvError(r)) return r;
  return new DkvError(ErrorCode.Unavailable, `${what}: ${r instanceof Error ? r.message : String(r)}`);
}

function leaseId(text: string): number {
  return intOption('ID', text, 1);
}

/** addCoordinationCommands registers `lease grant|revoke|keepalive` and `lock acquire|release`. */
export function addCoordinationCommands(program: Command): void {
  const lease = program.command('lease').description('leases: grant, revoke, keep alive');

  lease
    .command('grant')
    .description('grant a lease and print its id (nothing keeps it alive after this command exits)')
    .argument('<ttlMs>', 'time to live in milliseconds (at least 1000)')
    .option('--key <key>', 'grant it in the group of this key (keys bound to it must share its group)')
    .action(async (ttlText: string, o: { key?: string }, cmd: Command) => {
      const g = globals(cmd);
      const ttlMs = intOption('TTL_MS', ttlText, 1);
      const l = await withClient(g, (c) =>
        c.lease.grant(ttlMs, { keepAlive: false, ...(o.key !== undefined && { key: o.key }) }),
      );
      write(g.json ? toJson({ id: l.id, ttlMs: l.ttlMs, group: l.group }) : String(l.id));
    });

  lease
    .command('revoke')
    .description('end a lease now: its keys are deleted and its locks released')
    .argument('<id>')
    .action(async (idText: string, _o: unknown, cmd: Command) => {
      const g = globals(cmd);
      const id = leaseId(idText);
      await withClient(g, (c) => leaseGone(() => c.lease.revoke(id)));
      write(g.json ? toJson({ id, revoked: true }) : 'OK');
    });

  lease
    .command('keepalive')
    .description('keep a lease alive until interrupted, printing each renewal')
    .argument('<id>')
    .action(async (idText: string, _o: unknown, cmd: Command) => {
      const g = globals(cmd);
      const id = leaseId(idText);
      await withClient(g, async (c) => {
        const print = (l: Lease): void => {
          write(
            g.json
              ? toJson({ id: l.id, ttlMs: l.ttlMs, validUntil: l.validUntil })
              : `lease ${l.id} renewed ttl=${l.ttlMs}ms validUntil=${new Date(l.validUntil).toISOString()}`,
          );
        };
        const l = await leaseGone(() => c.lease.attach(id, { onRenewal: print }));
        // At risk (renewals not confirmed for a while): warn and keep trying; gone: fail.
        l.signal.addEventListener(
          'abort',
          () => {
            if (l.state === 'active')
              process.stderr.write(`warning: ${reasonOf(l.signal, `lease ${id}`).message}\n`);
          },
          { once: true },
        );
        const ended = new AbortController();
        void l.stopped().then(() => ended.abort());
        try {
          const sig = await interrupted(ended.signal);
          if (sig === undefined) {
            const err = reasonOf(l.signal, `lease ${id}`);
            throw isDkvError(err, ErrorCode.LeaseNotFound)
              ? new DkvError(ErrorCode.NotFound, `${err.message} (LEASE_NOT_FOUND)`)
              : err;
          }
        } finally {
          l.close();
        }
      });
    });

  const lock = program.command('lock').description('locks with fencing tokens');

  lock
    .command('acquire')
    .description('take a lock, print its fencing token, hold it until interrupted, then release it')
    .argument('<name>')
    .option('--ttl <ms>', 'TTL of the lease that holds the lock', '10000')
    .option('--wait <ms>', 'give up (TIMEOUT) if not acquired within this long; 0 only tries')
    .action(async (name: string, o: { ttl: string; wait?: string }, cmd: Command) => {
      const g = globals(cmd);
      const ttlMs = intOption('--ttl', o.ttl, 1000);
      const waitMs = o.wait === undefined ? undefined : intOption('--wait', o.wait, 0);
      await withClient(g, async (c) => {
        // Listen for SIGINT while waiting too: an interrupted wait gives up (the lease is revoked).
        const abort = new AbortController();
        const interrupt = interrupted(abort.signal).then((sig) => {
          if (sig !== undefined) abort.abort(new DkvError(ErrorCode.Cancelled, `interrupted by ${sig}`));
          return sig;
        });
        let held: Awaited<ReturnType<typeof c.lock.acquire>>;
        try {
          held = await c.lock.acquire(name, {
            ttlMs,
            ...(waitMs !== undefined && { waitMs }),
            signal: abort.signal,
          });
        } catch (err) {
          if (!abort.signal.aborted) abort.abort();
          await interrupt;
          throw err;
        }
        write(
          g.json ? toJson({ name: held.name, token: held.token, lease: held.lease.id }) : String(held.token),
        );
        const lost = new Promise<void>((resolve) => {
          if (held.signal.aborted) resolve();
          else held.signal.addEventListener('abort', () => resolve(), { once: true });
        });
        await Promise.race([interrupt, lost]);
        const lostReason = held.signal.aborted ? reasonOf(held.signal, `lock ${name}`) : undefined;
        if (!abort.signal.aborted) abort.abort();
        await interrupt;
        await held.release().catch((err: unknown) => {
          if (lostReason === undefined) throw err;
        });
        if (lostReason !== undefined)
          throw new DkvError(
            lostReason.code,
            `lock ${JSON.stringify(name)} lost while held: ${lostReason.message}`,
          );
      });
    });

  lock
    .command('release')
    .description('release a lock by its fencing token')
    .argument('<name>')
    .requiredOption('--token <t>', 'the fencing token the holder was granted')
    .action(async (name: string, o: { token: string }, cmd: Command) => {
      const g = globals(cmd);
      const token = intOption('--token', o.token, 1);
      await withClient(g, (c) => c.lock.release(name, token));
      write(g.json ? toJson({ name, token, released: true }) : 'OK');
    });
}
