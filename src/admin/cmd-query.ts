/**
 * CLI commands `scan`, `watch`, `query` and `counter` (CONTRACT.md, "CLI"; issue 6).
 *
 * Output: lists (`scan`, `query`, `watch`) print one line per item or event; with `--json`,
 * one JSON object per line. `counter` prints one value (`--json`: one document). Values print
 * as `dkv get` prints them: strings raw (JSON-quoted when they hold a newline or a tab),
 * anything else as JSON. Exit codes: 0 ok, 1 not found (`counter del` of no counter), 2 error.
 *
 * - `scan --prefix P [--start S] [--end E] [--limit N] [--serializable]`: items merged in key
 *   order across the store's groups, streamed (bounded memory): `KEY<TAB>VALUE`.
 * - `watch (--prefix P | --key K) [--from-rev N] [--snapshot] [--count N]`: streams until
 *   SIGINT or SIGTERM (exit 0), or until N events: `TYPE KEY [VALUE]  rev=R group=G [cause=C]`.
 *   Revisions are per group: `--from-rev N` resumes every group the watch covers after its
 *   own revision N. A compacted resume is noted on stderr; its snapshot events carry
 *   `cause=snapshot` (`"compacted": true` in JSON).
 * - `query --index NAME (--eq V | [--gt|--gte A] [--lt|--lte B]) [--prefix P] [--limit N]
 *   [--count]`: V, A and B are JSON scalars when they parse as one (`30`, `true`, `null`,
 *   `"30"`), else strings, so `--eq 30` matches the number 30 and `--eq '"30"'` the string.
 * - `counter add NAME DELTA [--ttl MS]` prints the new value; `counter get NAME`,
 *   `counter set NAME VALUE [--ttl MS]` (prints the previous value), `counter del NAME`.
 *   Values are exact 64-bit integers; DELTA may be negative (`dkv counter add hits -5`).
 */

import type { Command } from 'commander';
import { DkvClient } from '../client/client.js';
import { CounterHandle, type CounterValue } from '../client/counters.js';
import { countQuery, scanItems, streamQuery } from '../client/scan.js';
import type { Item } from '../client/types.js';
import { openWatch, type WatchEvent } from '../client/watch.js';
import { DkvError, ErrorCode } from '../errors.js';
import { cliSecurity } from './cli-security.js';
import { type GlobalOptions, globals, intOption, serversOf, toJson } from './data-commands.js';

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

function write(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** valueText renders a value on one line: strings raw unless they hold a line break or tab. */
export function valueText(v: unknown): string {
  if (typeof v === 'string') return /[\n\r\t]/.test(v) ? JSON.stringify(v) : v;
  return toJson(v);
}

function itemLine(item: Item, json: boolean): string {
  return json ? toJson(item) : `${item.key}\t${valueText(item.value)}`;
}

/** eventLine renders one watch event (see the file comment). */
export function eventLine(e: WatchEvent, json: boolean): string {
  if (json) {
    return toJson({
      type: e.type,
      cause: e.cause,
      key: e.key,
      ...(e.value !== undefined && { value: e.value }),
      revision: e.revision,
      group: e.group,
      ...(e.compacted && { compacted: true }),
    });
  }
  const value = e.type === 'put' ? ` ${valueText(e.value)}` : '';
  const cause = e.cause === 'write' ? '' : ` cause=${e.cause}`;
  return `${e.type.toUpperCase()} ${e.key}${value}  rev=${e.revision} group=${e.group}${cause}`;
}

/** scalarOption reads a query bound: a JSON scalar when it parses as one, else the text. */
export function scalarOption(text: string): null | boolean | number | string {
  try {
    const v: unknown = JSON.parse(text);
    if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
    if (typeof v === 'number' && Number.isFinite(v)) return v;
  } catch {
    // not JSON: a plain string
  }
  return text;
}

/** int64Argument parses an exact 64-bit integer: a number while safe, else a bigint. */
export function int64Argument(name: string, text: string): CounterValue {
  const t = text.trim();
  if (!/^-?\d+$/.test(t))
    throw new DkvError(ErrorCode.InvalidArgument, `${name} must be an integer, got ${JSON.stringify(text)}`);
  const b = BigInt(t);
  if (b < -(2n ** 63n) || b > 2n ** 63n - 1n)
    throw new DkvError(ErrorCode.InvalidArgument, `${name} is outside the signed 64-bit range`);
  return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
}

interface QueryFlags {
  index?: string;
  eq?: string;
  gt?: string;
  gte?: string;
  lt?: string;
  lte?: string;
  prefix?: string;
}

/** buildQuery turns `dkv query` flags into an index query. */
export function buildQuery(o: QueryFlags): Record<string, unknown> {
  const bad = (m: string): DkvError => new DkvError(ErrorCode.InvalidArgument, m);
  const range = o.gt !== undefined || o.gte !== undefined || o.lt !== undefined || o.lte !== undefined;
  let leaf: Record<string, unknown> | undefined;
  if (o.index !== undefined) {
    if (o.eq !== undefined && range) throw bad('give either --eq or range bounds (--gt/--gte, --lt/--lte)');
    if (o.gt !== undefined && o.gte !== undefined) throw bad('give at most one of --gt and --gte');
    if (o.lt !== undefined && o.lte !== undefined) throw bad('give at most one of --lt and --lte');
    if (o.eq === undefined && !range) throw bad('--index needs --eq V or range bounds (--gte A --lt B)');
    leaf =
      o.eq !== undefined
        ? { index: o.index, eq: scalarOption(o.eq) }
        : {
            index: o.index,
            ...(o.gt !== undefined && { gt: scalarOption(o.gt) }),
            ...(o.gte !== undefined && { gte: scalarOption(o.gte) }),
            ...(o.lt !== undefined && { lt: scalarOption(o.lt) }),
            ...(o.lte !== undefined && { lte: scalarOption(o.lte) }),
          };
  } else if (o.eq !== undefined || range) {
    throw bad('--eq and range bounds need --index NAME');
  }
  if (o.prefix !== undefined) return leaf ? { and: [leaf, { prefix: o.prefix }] } : { prefix: o.prefix };
  if (!leaf) throw bad('a query needs --index NAME (with --eq or bounds) or --prefix P');
  return leaf;
}

/** addQueryCommands registers `scan`, `watch`, `query` and `counter add|get|set|del`. */
export function addQueryCommands(program: Command): void {
  program
    .command('scan')
    .description('list the items whose key matches, in key order (one line each: KEY<TAB>VALUE)')
    .option('--prefix <p>', 'keys starting with this (default: every key)')
    .option('--start <key>', 'keys from this one on (inclusive)')
    .option('--end <key>', 'keys before this one (exclusive)')
    .option('--limit <n>', 'at most this many items')
    .option('--serializable', 'read from local replicas (may be stale) instead of through the leaders')
    .action(
      async (
        o: { prefix?: string; start?: string; end?: string; limit?: string; serializable?: boolean },
        cmd: Command,
      ) => {
        const g = globals(cmd);
        await withClient(g, async (c) => {
          const items = scanItems(c, {
            ...(o.prefix !== undefined && { prefix: o.prefix }),
            ...(o.start !== undefined && { start: o.start }),
            ...(o.end !== undefined && { end: o.end }),
            ...(o.limit !== undefined && { limit: intOption('--limit', o.limit, 0) }),
            consistency: o.serializable ? 'serializable' : 'linearizable',
          });
          for await (const item of items) write(itemLine(item, g.json === true));
        });
      },
    );

  program
    .command('watch')
    .description('stream changes until interrupted (one line per event)')
    .option('--prefix <p>', "keys starting with this ('' for every key)")
    .option('--key <key>', 'one key')
    .option('--from-rev <n>', 'resume after this revision (of each group the watch covers)')
    .option('--snapshot', 'start with the current items (cause=snapshot)')
    .option('--count <n>', 'exit after this many events')
    .action(
      async (
        o: { prefix?: string; key?: string; fromRev?: string; snapshot?: boolean; count?: string },
        cmd: Command,
      ) => {
        const g = globals(cmd);
        if ((o.prefix === undefined) === (o.key === undefined))
          throw new DkvError(ErrorCode.InvalidArgument, 'watch needs exactly one of --prefix P and --key K');
        const count = o.count === undefined ? Number.POSITIVE_INFINITY : intOption('--count', o.count, 1);
        const fromRevision = o.fromRev === undefined ? undefined : intOption('--from-rev', o.fromRev, 0);
        await withClient(g, async (c) => {
          const w = openWatch(c, {
            ...(o.key !== undefined ? { key: o.key } : { prefix: o.prefix ?? '' }),
            ...(fromRevision !== undefined && { fromRevision }),
            ...(o.snapshot === true && { snapshot: true }),
            onCompacted: (i) =>
              process.stderr.write(
                `note: group ${i.group} resumed from a fresh snapshot at revision ${i.revision} (${i.items} items): its history was compacted\n`,
              ),
          });
          const stop = (): void => w.close();
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
          try {
            let n = 0;
            for await (const e of w) {
              write(eventLine(e, g.json === true));
              if (++n >= count) break;
            }
          } finally {
            process.removeListener('SIGINT', stop);
            process.removeListener('SIGTERM', stop);
            w.close();
          }
        });
      },
    );

  program
    .command('query')
    .description('list the items an index query matches, in key order (one line each: KEY<TAB>VALUE)')
    .option('--index <name>', 'the index to query')
    .option('--eq <v>', 'index value equal to V (a JSON scalar, else a string)')
    .option('--gt <a>', 'index value above A')
    .option('--gte <a>', 'index value at or above A')
    .option('--lt <b>', 'index value below B')
    .option('--lte <b>', 'index value at or below B')
    .option('--prefix <p>', 'only keys starting with P')
    .option('--limit <n>', 'at most this many items')
    .option('--count', 'print only the number of matches')
    .option('--serializable', 'read from local replicas (may be stale) instead of through the leaders')
    .action(
      async (o: QueryFlags & { limit?: string; count?: boolean; serializable?: boolean }, cmd: Command) => {
        const g = globals(cmd);
        const query = buildQuery(o);
        const consistency = o.serializable ? 'serializable' : 'linearizable';
        const limit = o.limit === undefined ? undefined : intOption('--limit', o.limit, 0);
        await withClient(g, async (c) => {
          if (o.count) {
            const n = await countQuery(c, query, { consistency });
            write(g.json ? toJson({ count: n }) : String(n));
            return;
          }
          const items = streamQuery(c, query, { consistency, ...(limit !== undefined && { limit }) });
          for await (const item of items) write(itemLine(item, g.json === true));
        });
      },
    );

  const counter = program.command('counter').description('exact 64-bit counters, with optional TTL windows');
  const printValue = (g: GlobalOptions, name: string, value: CounterValue, field = 'value'): void =>
    write(g.json ? toJson({ name, [field]: value }) : String(value));
  counter
    .command('add')
    .description('add DELTA (may be negative) and print the new value')
    .argument('<name>')
    .argument('<delta>')
    .option('--ttl <ms>', 'a counter this add creates expires after this many milliseconds')
    .action(async (name: string, delta: string, o: { ttl?: string }, cmd: Command) => {
      const g = globals(cmd);
      const d = int64Argument('DELTA', delta);
      const ttl = o.ttl === undefined ? {} : { ttlMs: intOption('--ttl', o.ttl, 1) };
      const v = await withClient(g, (c) => new CounterHandle(c, name).add(d, ttl));
      printValue(g, name, v);
    });
  counter
    .command('get')
    .description('print the value (0 when absent or expired)')
    .argument('<name>')
    .option('--serializable', 'read from a local replica (may be stale)')
    .action(async (name: string, o: { serializable?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      const v = await withClient(g, (c) =>
        new CounterHandle(c, name).get({ consistency: o.serializable ? 'serializable' : 'linearizable' }),
      );
      printValue(g, name, v);
    });
  counter
    .command('set')
    .description('set the value (and its TTL window, or none) and print the previous value')
    .argument('<name>')
    .argument('<value>')
    .option('--ttl <ms>', 'expire after this many milliseconds')
    .action(async (name: string, value: string, o: { ttl?: string }, cmd: Command) => {
      const g = globals(cmd);
      const v = int64Argument('VALUE', value);
      const ttl = o.ttl === undefined ? {} : { ttlMs: intOption('--ttl', o.ttl, 1) };
      const prev = await withClient(g, (c) => new CounterHandle(c, name).set(v, ttl));
      printValue(g, name, prev, 'previous');
    });
  counter
    .command('del')
    .description('delete the counter (exit code 1 if there was none)')
    .argument('<name>')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const g = globals(cmd);
      const existed = await withClient(g, (c) => new CounterHandle(c, name).delete());
      if (g.json) write(toJson({ name, deleted: existed }));
      if (!existed) throw new DkvError(ErrorCode.NotFound, `counter ${JSON.stringify(name)} not found`);
      if (!g.json) write('OK');
    });
}
