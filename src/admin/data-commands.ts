/**
 * The CLI's data and cluster commands (CONTRACT.md, "CLI"): `put`, `get`, `del` and
 * `cluster status`. Each one connects a DkvClient with the global options (`--servers`,
 * `--store`, `--timeout`), does one thing, prints the result (`--json`: one JSON document),
 * and closes. A missing key or a failed condition is a DkvError with NOT_FOUND or
 * VERSION_MISMATCH, which the program maps to exit code 1.
 */

import type { Command } from 'commander';
import { DkvClient } from '../client/client.js';
import { parseAddress } from '../client/endpoints.js';
import { DkvError, ErrorCode, isDkvError } from '../errors.js';
import type { ClusterStatus } from '../transport/protocol.js';
import { cliConnector, cliSecurity } from './cli-security.js';

/** GlobalOptions are the program-wide options. */
export interface GlobalOptions {
  readonly servers: string;
  readonly store: string;
  readonly json?: boolean;
  readonly timeout: string;
}

/** intOption parses an integer option, or throws INVALID_ARGUMENT naming it. */
export function intOption(name: string, text: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = /^-?\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new DkvError(
      ErrorCode.InvalidArgument,
      `${name} must be an integer${max === Number.MAX_SAFE_INTEGER ? ` >= ${min}` : ` from ${min} to ${max}`}, got ${JSON.stringify(text)}`,
    );
  return n;
}

/** serversOf splits and checks `--servers`. */
export function serversOf(g: GlobalOptions): string[] {
  const servers = g.servers
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (servers.length === 0) throw new DkvError(ErrorCode.InvalidArgument, '--servers lists no host:port');
  for (const s of servers) parseAddress(s);
  return servers;
}

/** parseValue turns a put's VALUE into what is stored: JSON objects and arrays are structured. */
export function parseValue(text: string, raw: boolean): unknown {
  if (raw) return text;
  const t = text.trim();
  if (!t.startsWith('{') && !t.startsWith('[')) return text;
  try {
    const v: unknown = JSON.parse(t);
    return typeof v === 'object' && v !== null ? v : text;
  } catch {
    return text;
  }
}

/** toJson renders a value as JSON, with binary values as `{ "$binary": base64 }` and bigints as strings. */
export function toJson(value: unknown, indent?: number): string {
  return JSON.stringify(
    value,
    (_k, v: unknown) => {
      if (v instanceof Uint8Array)
        return { $binary: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
      if (typeof v === 'bigint') return v.toString();
      return v;
    },
    indent,
  );
}

/** globals reads the global options (--servers, --store, --json, --timeout) of a command. */
export function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals() as GlobalOptions;
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

function write(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** printValue prints a value as `dkv get` does: strings raw, binary as bytes, the rest as JSON. */
function printValue(value: unknown): void {
  if (typeof value === 'string') write(value);
  else if (value instanceof Uint8Array) process.stdout.write(value);
  else write(toJson(value));
}

/**
 * callServer makes one request to one server on a connection of its own, within `deadline`
 * (performance.now() ms); the connection is closed afterwards.
 */
export async function callServer(
  address: string,
  op: string,
  args: unknown,
  deadline: number,
): Promise<unknown> {
  const remaining = deadline - performance.now();
  if (remaining <= 0) throw new DkvError(ErrorCode.Timeout, `no time left to ask ${address}`);
  const { conn: c } = await cliConnector(16 << 20)(address, Math.max(1, Math.min(remaining, 2000)));
  try {
    return await c.call(op, args, { timeoutMs: Math.max(1, deadline - performance.now()) });
  } finally {
    await c.close();
  }
}

/**
 * fetchStatus asks the servers, in order, for the cluster status (the first that answers).
 * It does not need any store to exist, unlike DkvClient.connect.
 */
export async function fetchStatus(servers: readonly string[], timeoutMs: number): Promise<ClusterStatus> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (const s of servers) {
    if (performance.now() >= deadline) break;
    try {
      return (await callServer(s, 'status', {}, deadline)) as ClusterStatus;
    } catch (err) {
      last = err;
    }
  }
  if (isDkvError(last)) throw last;
  throw new DkvError(ErrorCode.Unavailable, `no server answered within ${timeoutMs} ms`);
}

/** table lays rows out in aligned columns. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** addDataCommands adds put, get, del and cluster status to the program. */
export function addDataCommands(program: Command): void {
  program
    .command('put')
    .description('write a value (a JSON object or array is stored structured, anything else as a string)')
    .argument('<key>')
    .argument('<value>')
    .option('--ttl <ms>', 'expire the key after this many milliseconds')
    .option('--lease <id>', 'bind the key to a lease')
    .option('--if-version <n>', 'only if the key is at this version (0: only if absent)')
    .option('--raw', 'store VALUE as a string even if it parses as JSON')
    .action(
      async (
        key: string,
        value: string,
        o: { ttl?: string; lease?: string; ifVersion?: string; raw?: boolean },
        cmd: Command,
      ) => {
        const g = globals(cmd);
        const opts = {
          ...(o.ttl !== undefined && { ttlMs: intOption('--ttl', o.ttl, 1) }),
          ...(o.lease !== undefined && { lease: intOption('--lease', o.lease, 1) }),
          ...(o.ifVersion !== undefined && { ifVersion: intOption('--if-version', o.ifVersion, 0) }),
        };
        const item = await withClient(g, (c) => c.put(key, parseValue(value, o.raw === true), opts));
        write(g.json ? toJson(item) : `OK version=${item.version} revision=${item.modRevision}`);
      },
    );

  program
    .command('get')
    .description('print a value (strings raw, structured values as JSON; --json prints the item)')
    .argument('<key>')
    .option('--serializable', 'read from a local replica (may be stale) instead of through the leader')
    .action(async (key: string, o: { serializable?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      const item = await withClient(g, (c) =>
        c.get(key, { consistency: o.serializable ? 'serializable' : 'linearizable' }),
      );
      if (item === undefined) throw new DkvError(ErrorCode.NotFound, `key ${JSON.stringify(key)} not found`);
      if (g.json) write(toJson(item));
      else printValue(item.value);
    });

  program
    .command('del')
    .description('delete a key (exit code 1 if it did not exist)')
    .argument('<key>')
    .action(async (key: string, _o: unknown, cmd: Command) => {
      const g = globals(cmd);
      const existed = await withClient(g, (c) => c.delete(key));
      if (g.json) write(toJson({ deleted: existed }));
      if (!existed) throw new DkvError(ErrorCode.NotFound, `key ${JSON.stringify(key)} not found`);
      if (!g.json) write('OK');
    });
}
