/**
 * Logical backup and restore of one store: `dkv snapshot save FILE` and
 * `dkv snapshot restore FILE [--create]` (issue 8).
 *
 * The file is gzip'd JSON lines, written and read as streams (memory stays bounded whatever
 * the store's size):
 *
 *     {"format":"dkv-snapshot","version":1,"store":"default","partitions":6,"replicas":3,
 *      "indexes":[...],"createdAt":"2024-...Z"}                       the header
 *     {"k":"user:1","v":"<base64 msgpack>","ttlMs":59000,"labels":{"team":"a"}}   one per key
 *     {"end":true,"keys":5000,"bytes":812345}                           the trailer
 *
 * - A value is stored as base64 of its msgpack encoding with the codebase's one msgpack
 *   configuration (statemachine/codec.ts `packr`), the same bytes the wire carries, so every
 *   value comes back exactly: strings, Uint8Arrays, structured values, bigints beyond 2^53.
 * - `ttlMs` is the time a key had left when it was saved, estimated against this machine's
 *   wall clock (the replicated clock runs near wall time). Keys already past their deadline
 *   are skipped. On restore the TTL starts again from the restore.
 * - Keys bound to a lease are saved without it: a lease is a client's session, not data.
 *   Counters, leases and locks are not saved (the client has no way to list counters).
 *   Versions and revisions are not kept either: a restored key starts again at version 1.
 * - The trailer counts the keys and the uncompressed bytes before it, so a truncated or
 *   tampered file is detected. Restore reads the file twice: first to check all of it
 *   (header, every line, trailer, gzip checksum), and only then to write, so a bad file
 *   writes nothing.
 *
 * Consistency: each group is read with linearizable scans, page by page. Every key saved
 * holds a value it really had, but the file is not a point-in-time image across keys: keys
 * written while the save runs may or may not be in it, each with its old or new value.
 *
 * save writes FILE.<pid>.partial and renames it into place at the end, so a failed save
 * never leaves a file (nor clobbers an older one). Restore writes keys with bounded
 * concurrency (64 puts in flight), overwriting keys of the same name in the target store.
 */

import { createReadStream, createWriteStream } from 'node:fs';
import { rename, stat, unlink } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import type { Command } from 'commander';
import { DkvClient } from '../client/client.js';
import type { IndexDef } from '../client/scan.js';
import type { Item } from '../client/types.js';
import { DkvError, ErrorCode, isDkvError } from '../errors.js';
import { packr } from '../statemachine/codec.js';
import { cliSecurity } from './cli-security.js';
import { adminCall } from './cmd-cluster.js';
import { globals, intOption, serversOf, toJson } from './data-commands.js';

/** SNAPSHOT_FORMAT names the file format in its header. */
export const SNAPSHOT_FORMAT = 'dkv-snapshot';
/** SNAPSHOT_VERSION is the format version this build writes and the only one it reads. */
export const SNAPSHOT_VERSION = 1;
/** RESTORE_CONCURRENCY_DEFAULT is how many puts a restore keeps in flight. */
export const RESTORE_CONCURRENCY_DEFAULT = 64;

/** Longest line accepted on restore: a value is at most one 16 MiB frame (base64: 4/3 of it). */
const LINE_CHARS_MAX = 64 << 20;
/** Scan page per group per request while saving. */
const SAVE_PAGE_SIZE = 1000;
/** Lines are handed to gzip in batches of about this many characters. */
const WRITE_BATCH_CHARS = 64 << 10;
/** The store's TTL limit (statemachine/commands.ts ttlMsMax). */
const TTL_MS_MAX = 86_400_000;
const PROGRESS_INTERVAL_MS_DEFAULT = 1000;
const RESTORE_CONCURRENCY_MAX = 1024;

/** StoreLayout is what a store is made of, as `store.describe` tells and `store.create` takes. */
export interface StoreLayout {
  readonly partitions: number;
  readonly replicas: number;
  readonly indexes: readonly IndexDef[];
}

/** SnapshotHeader is a snapshot file's first line. */
export interface SnapshotHeader extends StoreLayout {
  readonly format: typeof SNAPSHOT_FORMAT;
  readonly version: typeof SNAPSHOT_VERSION;
  /** The store the snapshot was saved from. */
  readonly store: string;
  /** When the save started (ISO 8601). */
  readonly createdAt: string;
}

/** SnapshotProgress is what the progress callback is told, about once a second. */
export interface SnapshotProgress {
  /** save: reading the store; verify: checking the file; restore: writing the keys. */
  readonly phase: 'save' | 'verify' | 'restore';
  readonly keys: number;
  /** Uncompressed bytes of the lines so far. */
  readonly bytes: number;
  readonly elapsedMs: number;
}

/** SaveOptions tune saveSnapshot. */
export interface SaveOptions {
  /**
   * The store's layout, for the header (`--create` restores it). Without it: the client's
   * partition count, the largest replica count of its groups, and no indexes.
   */
  readonly layout?: StoreLayout;
  readonly progress?: (p: SnapshotProgress) => void;
  readonly progressIntervalMs?: number;
  /** The wall clock TTLs are measured against (default Date.now). */
  readonly nowMs?: () => number;
}

/** SaveSummary says what a save wrote. */
export interface SaveSummary {
  readonly file: string;
  readonly store: string;
  readonly keys: number;
  /** Uncompressed bytes before the trailer. */
  readonly bytes: number;
  /** The file's size on disk (gzip'd). */
  readonly fileBytes: number;
  /** Keys whose TTL ran out before they were read (not saved). */
  readonly expiredSkipped: number;
  /** Keys bound to a lease (saved without it). */
  readonly leaseDropped: number;
  readonly elapsedMs: number;
}

/** VerifySummary says what a checked file holds. */
export interface VerifySummary {
  readonly header: SnapshotHeader;
  readonly keys: number;
  readonly bytes: number;
}

/** RestoreOptions tune restoreSnapshot. */
export interface RestoreOptions {
  /** Puts in flight at once (default 64). */
  readonly concurrency?: number;
  readonly progress?: (p: SnapshotProgress) => void;
  readonly progressIntervalMs?: number;
  /** The file was already checked with verifySnapshot: do not read it twice more. */
  readonly verified?: boolean;
}

/** RestoreSummary says what a restore wrote. */
export interface RestoreSummary {
  readonly file: string;
  /** The store written to. */
  readonly store: string;
  /** The store named in the file. */
  readonly from: string;
  readonly keys: number;
  readonly bytes: number;
  readonly elapsedMs: number;
}

/** KeyLine is one key's line, decoded. */
interface KeyLine {
  readonly key: string;
  readonly value: unknown;
  readonly ttlMs?: number;
  readonly labels?: Readonly<Record<string, string | number>>;
  /** The line's uncompressed size, its '\n' included. */
  readonly lineBytes: number;
}

function invalid(message: string, cause?: unknown): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, message, {}, cause === undefined ? undefined : { cause });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

// ---------------------------------------------------------------- encoding

/** encodeValue is a value's lossless text form: base64 of its msgpack encoding. */
export function encodeValue(value: unknown): string {
  const bytes = packr.pack(value);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** decodeValue reverses encodeValue; bad input is INVALID_ARGUMENT. */
export function decodeValue(text: string): unknown {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw invalid('the value is not base64');
  const buf = Buffer.from(text, 'base64');
  if (buf.length === 0) throw invalid('the value is empty');
  try {
    // A plain Uint8Array, so binary values come back as Uint8Arrays as they do off the wire.
    return packr.unpack(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
  } catch (err) {
    throw invalid(`the value is not valid msgpack: ${err instanceof Error ? err.message : String(err)}`, err);
  }
}

function checkIndexes(v: unknown): IndexDef[] {
  if (!Array.isArray(v)) throw invalid('indexes must be an array');
  return v.map((d: unknown) => {
    if (!isPlainObject(d) || typeof d.name !== 'string' || (d.kind !== 'eq' && d.kind !== 'range'))
      throw invalid('an index must be { name, kind: eq|range, field | label }');
    if (typeof d.field === typeof d.label || (d.field ?? d.label) === undefined)
      throw invalid(`index ${d.name} must have exactly one of field and label`);
    return {
      name: d.name,
      kind: d.kind,
      ...(typeof d.field === 'string' && { field: d.field }),
      ...(typeof d.label === 'string' && { label: d.label }),
    };
  });
}

/** checkHeader validates a parsed first line (the file is named in every error). */
function checkHeader(file: string, v: unknown): SnapshotHeader {
  if (!isPlainObject(v) || v.format !== SNAPSHOT_FORMAT)
    throw invalid(`${file} is not a dkv snapshot: its first line has no "format": "${SNAPSHOT_FORMAT}"`);
  if (v.version !== SNAPSHOT_VERSION)
    throw invalid(
      `${file} is snapshot version ${JSON.stringify(v.version)}; this dkv reads version ${SNAPSHOT_VERSION}`,
    );
  const int = (x: unknown, what: string, max: number): number => {
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 1 || x > max)
      throw invalid(`${file}: the header's ${what} must be an integer from 1 to ${max}`);
    return x;
  };
  if (typeof v.store !== 'string' || v.store.length === 0)
    throw invalid(`${file}: the header names no store`);
  if (typeof v.createdAt !== 'string') throw invalid(`${file}: the header has no createdAt`);
  let indexes: IndexDef[];
  try {
    indexes = checkIndexes(v.indexes);
  } catch (err) {
    throw invalid(`${file}: the header's ${err instanceof Error ? err.message : String(err)}`, err);
  }
  return {
    format: SNAPSHOT_FORMAT,
    version: SNAPSHOT_VERSION,
    store: v.store,
    partitions: int(v.partitions, 'partitions', 256),
    replicas: int(v.replicas, 'replicas', 7),
    indexes,
    createdAt: v.createdAt,
  };
}

function checkLabels(v: unknown): Record<string, string | number> {
  if (!isPlainObject(v)) throw invalid('labels must be an object');
  for (const [k, x] of Object.entries(v))
    if (typeof x !== 'string' && !(typeof x === 'number' && Number.isFinite(x)))
      throw invalid(`label ${JSON.stringify(k)} must be a string or a finite number`);
  return v as Record<string, string | number>;
}

/** checkKeyLine validates and decodes one key line. */
function checkKeyLine(o: Record<string, unknown>, lineBytes: number): KeyLine {
  if (typeof o.k !== 'string' || o.k.length === 0) throw invalid('"k" must be a non-empty string');
  if (typeof o.v !== 'string') throw invalid('"v" must be a string');
  const ttl = o.ttlMs;
  if (
    ttl !== undefined &&
    (typeof ttl !== 'number' || !Number.isSafeInteger(ttl) || ttl < 1 || ttl > TTL_MS_MAX)
  )
    throw invalid(`"ttlMs" must be an integer from 1 to ${TTL_MS_MAX}`);
  return {
    key: o.k,
    value: decodeValue(o.v),
    lineBytes,
    ...(ttl !== undefined && { ttlMs: ttl as number }),
    ...(o.labels !== undefined && { labels: checkLabels(o.labels) }),
  };
}

// ---------------------------------------------------------------- reading

/** Truncated marks a gzip stream that ended early (the reader adds how far it got). */
class Truncated extends Error {}

/**
 * readLines streams a gzip'd file's lines (without their '\n'), with backpressure: the file
 * is read only as fast as lines are consumed. A gzip stream that ends early throws Truncated;
 * other failures are INVALID_ARGUMENT naming the file.
 */
async function* readLines(file: string): AsyncGenerator<string, void, undefined> {
  const gunzip = createGunzip();
  // pipeline destroys gunzip with the read error (ENOENT, ...), which the loop below sees.
  pipeline(createReadStream(file), gunzip).catch(() => undefined);
  gunzip.setEncoding('utf8');
  let carry = '';
  try {
    for await (const chunk of gunzip as AsyncIterable<string>) {
      let from = 0;
      for (let nl = chunk.indexOf('\n'); nl >= 0; nl = chunk.indexOf('\n', from)) {
        const line = carry + chunk.slice(from, nl);
        carry = '';
        from = nl + 1;
        yield line;
      }
      carry += chunk.slice(from);
      if (carry.length > LINE_CHARS_MAX)
        throw invalid(`${file} has a line longer than ${LINE_CHARS_MAX} characters`);
    }
  } catch (err) {
    if (isDkvError(err)) throw err;
    const code = (err as { code?: unknown }).code;
    if (code === 'Z_BUF_ERROR') throw new Truncated();
    if (typeof code === 'string' && code.startsWith('Z_'))
      throw invalid(`${file} is corrupt or not gzip'd: ${(err as Error).message}`, err);
    throw invalid(`cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`, err);
  } finally {
    gunzip.destroy();
  }
  if (carry.length > 0) yield carry;
}

/** SnapshotRead collects what readSnapshot found: the header at once, the counts at the end. */
interface SnapshotRead {
  header?: SnapshotHeader;
  /** Set once the whole file was read and its trailer matched. */
  summary?: VerifySummary;
}

/**
 * readSnapshot parses a snapshot file: it fills `out.header`, yields every key line, and
 * checks the trailer (present, last, with the right counts), then fills `out.summary`. Every
 * problem is INVALID_ARGUMENT naming the file and the line.
 */
async function* readSnapshot(file: string, out: SnapshotRead): AsyncGenerator<KeyLine, void, undefined> {
  let header: SnapshotHeader | undefined;
  let keys = 0;
  let bytes = 0;
  let ended = false;
  let lineNo = 0;
  try {
    for await (const text of readLines(file)) {
      lineNo++;
      if (ended) {
        if (text.length === 0) continue;
        throw invalid(`${file} has data after its trailer (line ${lineNo})`);
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (err) {
        throw lineNo === 1
          ? invalid(`${file} is not a dkv snapshot: its first line is not JSON`, err)
          : invalid(`${file} line ${lineNo} is not valid JSON`, err);
      }
      if (header === undefined) {
        header = checkHeader(file, parsed);
        out.header = header;
        bytes += Buffer.byteLength(text) + 1;
        continue;
      }
      if (!isPlainObject(parsed)) throw invalid(`${file} line ${lineNo} is not an object`);
      if (parsed.end === true) {
        if (parsed.keys !== keys || parsed.bytes !== bytes)
          throw invalid(
            `${file}: the trailer counts ${String(parsed.keys)} keys and ${String(parsed.bytes)} bytes, the file holds ${keys} keys and ${bytes} bytes`,
          );
        ended = true;
        continue;
      }
      const lineBytes = Buffer.byteLength(text) + 1;
      let line: KeyLine;
      try {
        line = checkKeyLine(parsed, lineBytes);
      } catch (err) {
        throw invalid(`${file} line ${lineNo}: ${err instanceof Error ? err.message : String(err)}`, err);
      }
      keys++;
      bytes += lineBytes;
      yield line;
    }
  } catch (err) {
    if (err instanceof Truncated)
      throw invalid(
        header === undefined
          ? `${file} is truncated: it ends before its header (empty, or not a complete gzip stream)`
          : `${file} is truncated: no trailer after ${keys} keys (the gzip stream ends early)`,
      );
    throw err;
  }
  if (header === undefined) throw invalid(`${file} is empty: no snapshot header`);
  if (!ended) throw invalid(`${file} is truncated: no trailer after ${keys} keys`);
  out.summary = { header, keys, bytes };
}

/** ticker calls `report` at most every intervalMs (checked on each step), and once at the end. */
function ticker(
  phase: SnapshotProgress['phase'],
  report: ((p: SnapshotProgress) => void) | undefined,
  intervalMs: number,
): { step(keys: number, bytes: number): void; readonly t0: number } {
  const t0 = performance.now();
  let last = t0;
  return {
    t0,
    step(keys, bytes) {
      if (report === undefined) return;
      const now = performance.now();
      if (now - last < intervalMs) return;
      last = now;
      report({ phase, keys, bytes, elapsedMs: Math.round(now - t0) });
    },
  };
}

/** readSnapshotHeader reads and checks only a snapshot file's header. */
export async function readSnapshotHeader(file: string): Promise<SnapshotHeader> {
  const lines = readLines(file);
  try {
    const first = await lines.next();
    if (first.done === true) throw invalid(`${file} is empty: no snapshot header`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(first.value);
    } catch (err) {
      throw invalid(`${file} is not a dkv snapshot: its first line is not JSON`, err);
    }
    return checkHeader(file, parsed);
  } catch (err) {
    if (err instanceof Truncated) throw invalid(`${file} is truncated: it ends inside its header`);
    throw err;
  } finally {
    await lines.return(undefined);
  }
}

/**
 * verifySnapshot reads a whole snapshot file and checks it (header, every line and value,
 * the trailer's counts, gzip's checksum) without writing anything.
 */
export async function verifySnapshot(
  file: string,
  opts: Pick<RestoreOptions, 'progress' | 'progressIntervalMs'> = {},
): Promise<VerifySummary> {
  const tick = ticker('verify', opts.progress, opts.progressIntervalMs ?? PROGRESS_INTERVAL_MS_DEFAULT);
  const out: SnapshotRead = {};
  let keys = 0;
  let bytes = 0;
  for await (const line of readSnapshot(file, out)) {
    bytes += line.lineBytes;
    tick.step(++keys, bytes);
  }
  // readSnapshot returns normally only with a summary (it throws otherwise).
  if (out.summary === undefined) throw new Error('readSnapshot ended without a summary');
  return out.summary;
}

// ---------------------------------------------------------------- save

/** layoutOfClient guesses a layout from the client's partition map (no indexes known). */
async function layoutOfClient(client: DkvClient): Promise<StoreLayout> {
  const groups = await client.groups();
  return {
    partitions: groups.length,
    replicas: Math.max(1, ...groups.map((g) => g.replicas.length)),
    indexes: [],
  };
}

/**
 * saveSnapshot writes every live key of the client's store to `file` (gzip'd JSON lines, see
 * the top of this file), reading each group with linearizable scans page by page. Consistent
 * per key, not a point-in-time image across keys.
 */
export async function saveSnapshot(
  client: DkvClient,
  file: string,
  opts: SaveOptions = {},
): Promise<SaveSummary> {
  const nowMs = opts.nowMs ?? Date.now;
  const layout = opts.layout ?? (await layoutOfClient(client));
  const header: SnapshotHeader = {
    format: SNAPSHOT_FORMAT,
    version: SNAPSHOT_VERSION,
    store: client.store,
    partitions: layout.partitions,
    replicas: layout.replicas,
    indexes: checkIndexes(layout.indexes),
    createdAt: new Date(nowMs()).toISOString(),
  };
  const tick = ticker('save', opts.progress, opts.progressIntervalMs ?? PROGRESS_INTERVAL_MS_DEFAULT);
  let keys = 0;
  let bytes = 0;
  let expiredSkipped = 0;
  let leaseDropped = 0;

  /** keyLine is an item's line, or undefined for a key past its deadline. */
  const keyLine = (item: Item): string | undefined => {
    const o: Record<string, unknown> = { k: item.key, v: encodeValue(item.value) };
    if (item.expiresAt !== undefined) {
      const left = Math.ceil(item.expiresAt - nowMs());
      if (left <= 0) {
        expiredSkipped++;
        return undefined;
      }
      o.ttlMs = Math.min(left, TTL_MS_MAX);
    }
    if (item.lease !== undefined) leaseDropped++;
    if (item.labels !== undefined && Object.keys(item.labels).length > 0) o.labels = item.labels;
    return JSON.stringify(o);
  };

  async function* lines(): AsyncGenerator<string, void, undefined> {
    const first = `${JSON.stringify(header)}\n`;
    bytes += Buffer.byteLength(first);
    let batch = first;
    for await (const item of client.scan({ pageSize: SAVE_PAGE_SIZE, consistency: 'linearizable' })) {
      const text = keyLine(item);
      if (text === undefined) continue;
      const line = `${text}\n`;
      keys++;
      bytes += Buffer.byteLength(line);
      batch += line;
      if (batch.length >= WRITE_BATCH_CHARS) {
        yield batch;
        batch = '';
      }
      tick.step(keys, bytes);
    }
    yield `${batch}${JSON.stringify({ end: true, keys, bytes })}\n`;
  }

  const partial = `${file}.${process.pid}.partial`;
  try {
    await pipeline(Readable.from(lines()), createGzip(), createWriteStream(partial));
    await rename(partial, file);
  } catch (err) {
    await unlink(partial).catch(() => undefined);
    if (isDkvError(err)) throw err;
    throw invalid(`cannot write ${file}: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  const fileBytes = (await stat(file)).size;
  return {
    file,
    store: client.store,
    keys,
    bytes,
    fileBytes,
    expiredSkipped,
    leaseDropped,
    elapsedMs: Math.round(performance.now() - tick.t0),
  };
}

// ---------------------------------------------------------------- restore

/**
 * restoreSnapshot writes every key of a snapshot file into the client's store, with its
 * remaining TTL and labels, `concurrency` puts at a time; keys of the same name are
 * overwritten, other keys are left alone. The file is checked whole first (unless
 * `verified`), so a bad file writes nothing. The store must exist (see `--create`).
 */
export async function restoreSnapshot(
  client: DkvClient,
  file: string,
  opts: RestoreOptions = {},
): Promise<RestoreSummary> {
  const concurrency = opts.concurrency ?? RESTORE_CONCURRENCY_DEFAULT;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1 || concurrency > RESTORE_CONCURRENCY_MAX)
    throw invalid(`concurrency must be an integer from 1 to ${RESTORE_CONCURRENCY_MAX}`);
  const intervalMs = opts.progressIntervalMs ?? PROGRESS_INTERVAL_MS_DEFAULT;
  if (opts.verified !== true) await verifySnapshot(file, { ...opts });
  const tick = ticker('restore', opts.progress, intervalMs);
  const out: SnapshotRead = {};
  let written = 0;
  let writtenBytes = 0;
  let failure: { error: unknown; key: string } | undefined;
  const inflight = new Set<Promise<void>>();
  try {
    for await (const line of readSnapshot(file, out)) {
      while (inflight.size >= concurrency && failure === undefined) await Promise.race(inflight);
      if (failure !== undefined) break;
      // Never rejects: a failure is recorded, and the loop stops issuing puts.
      const p: Promise<void> = client
        .put(line.key, line.value, {
          ...(line.ttlMs !== undefined && { ttlMs: line.ttlMs }),
          ...(line.labels !== undefined && { labels: line.labels }),
        })
        .then(
          () => {
            written++;
            writtenBytes += line.lineBytes;
            tick.step(written, writtenBytes);
          },
          (error: unknown) => {
            failure ??= { error, key: line.key };
          },
        )
        .finally(() => inflight.delete(p));
      inflight.add(p);
    }
  } finally {
    await Promise.all(inflight);
  }
  if (failure !== undefined) {
    const e = failure.error;
    throw new DkvError(
      isDkvError(e) ? e.code : ErrorCode.Unavailable,
      `restoring ${file} into store ${client.store} failed at key ${JSON.stringify(failure.key)} after ${written} keys: ${e instanceof Error ? e.message : String(e)}`,
      isDkvError(e) ? e.details : {},
      { cause: e },
    );
  }
  return {
    file,
    store: client.store,
    from: out.header?.store ?? '',
    keys: written,
    bytes: out.summary?.bytes ?? 0,
    elapsedMs: Math.round(performance.now() - tick.t0),
  };
}

// ---------------------------------------------------------------- the CLI

/** formatBytes renders a byte count for people (MB are 10^6 bytes). */
function formatBytes(n: number): string {
  if (n < 10_000) return `${n} B`;
  if (n < 10_000_000) return `${(n / 1000).toFixed(0)} kB`;
  return `${(n / 1_000_000).toFixed(0)} MB`;
}

/** printProgress prints a progress line on stderr (never mixed with --json output on stdout). */
function printProgress(p: SnapshotProgress): void {
  const verb = { save: 'saved', verify: 'checked', restore: 'restored' } as const;
  process.stderr.write(
    `${verb[p.phase]} ${p.keys} keys${p.bytes > 0 ? ` (${formatBytes(p.bytes)})` : ''}...\n`,
  );
}

/** describeStore asks the control plane for a store's layout (STORE_NOT_FOUND if none). */
async function describeStore(
  servers: readonly string[],
  name: string,
  timeoutMs: number,
): Promise<StoreLayout> {
  const r = (await adminCall(servers, 'store.describe', { name }, timeoutMs)) as {
    partitions: number;
    replicas: number;
    indexes: IndexDef[];
  };
  return { partitions: r.partitions, replicas: r.replicas, indexes: r.indexes ?? [] };
}

/**
 * connectToStore connects a client to `store`, waiting up to `graceMs` for a store just
 * created to be known to the node that answers.
 */
async function connectToStore(
  servers: string[],
  store: string,
  timeoutMs: number,
  graceMs: number,
): Promise<DkvClient> {
  const until = performance.now() + graceMs;
  for (;;) {
    try {
      return await DkvClient.connect({ ...cliSecurity(), servers, store, requestTimeoutMs: timeoutMs });
    } catch (err) {
      if (!isDkvError(err, ErrorCode.StoreNotFound) || performance.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

const SAVE_HELP = `
The file is gzip'd JSON lines: a header (store, partitions, replicas, indexes), one line per
key (value, remaining TTL, labels) and a trailer that counts them, so restore detects a
truncated file.

Consistency: each partition group is read with linearizable scans, page by page. Every saved
key holds a value it really had, but the file is NOT a point-in-time image of the store: keys
written while the save runs may or may not be in it, with their old or their new value.

Not saved: leases (keys bound to one are saved as plain keys, without it), locks, counters,
and versions/revisions (a restored key starts at version 1). Keys past their TTL are skipped.`;

const RESTORE_HELP = `
The whole file is checked first (header, every line, trailer, gzip checksum): a truncated or
corrupt file writes nothing. Keys are then written 64 at a time, each with its remaining TTL
(counted again from the restore) and its labels. Keys of the same name in the target store
are overwritten; its other keys are left alone.

The target store is --store, or the store named in the file when --store is not given. It
must exist, unless --create is given: then it is created from the file's header (partitions,
replicas, indexes) if it does not exist yet.`;

/** addSnapshotCommands adds `dkv snapshot save|restore`. */
export function addSnapshotCommands(program: Command): void {
  const snapshot = program
    .command('snapshot')
    .description('logical backup and restore of one store (gzip’d JSON lines)');

  snapshot
    .command('save')
    .description(
      'save every key of the store (--store) to FILE: consistent per key, not a point-in-time image',
    )
    .argument('<file>')
    .addHelpText('after', SAVE_HELP)
    .action(async (file: string, _o: unknown, cmd: Command) => {
      const g = globals(cmd);
      const servers = serversOf(g);
      const timeoutMs = intOption('--timeout', g.timeout, 1);
      const layout = await describeStore(servers, g.store, timeoutMs);
      const client = await DkvClient.connect({
        ...cliSecurity(),
        servers,
        store: g.store,
        requestTimeoutMs: timeoutMs,
      });
      let s: SaveSummary;
      try {
        s = await saveSnapshot(client, file, { layout, progress: printProgress });
      } finally {
        await client.close();
      }
      if (g.json) {
        process.stdout.write(`${toJson(s)}\n`);
        return;
      }
      const notes = [
        s.expiredSkipped > 0 ? `${s.expiredSkipped} expired keys skipped` : '',
        s.leaseDropped > 0 ? `${s.leaseDropped} keys saved without their lease` : '',
      ].filter((x) => x.length > 0);
      process.stdout.write(
        `saved ${s.keys} keys of store ${s.store} to ${s.file} (${formatBytes(s.bytes)}, ${formatBytes(s.fileBytes)} gzip'd) in ${(s.elapsedMs / 1000).toFixed(1)} s${notes.length > 0 ? `; ${notes.join('; ')}` : ''}\n`,
      );
    });

  snapshot
    .command('restore')
    .description("write FILE's keys into a store (overwriting same-named keys); --create makes the store")
    .argument('<file>')
    .option('--create', "create the store from the file's header if it does not exist")
    .addHelpText('after', RESTORE_HELP)
    .action(async (file: string, o: { create?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      const servers = serversOf(g);
      const timeoutMs = intOption('--timeout', g.timeout, 1);
      const progress = printProgress;
      const checked = await verifySnapshot(file, { progress });
      const h = checked.header;
      const given = cmd.getOptionValueSourceWithGlobals('store');
      const store = given === 'cli' || process.env.DKV_STORE !== undefined ? g.store : h.store;
      let created = false;
      try {
        await describeStore(servers, store, timeoutMs);
      } catch (err) {
        if (!isDkvError(err, ErrorCode.StoreNotFound)) throw err;
        if (!o.create)
          throw new DkvError(
            ErrorCode.StoreNotFound,
            `store ${JSON.stringify(store)} does not exist (--create creates it from the snapshot's header)`,
          );
        try {
          await adminCall(
            servers,
            'store.create',
            { name: store, partitions: h.partitions, replicas: h.replicas, indexes: h.indexes },
            Math.max(timeoutMs, 20_000),
          );
          created = true;
        } catch (e) {
          if (!isDkvError(e, ErrorCode.AlreadyExists)) throw e;
        }
        if (created && !g.json)
          process.stderr.write(
            `created store ${store}: ${h.partitions} partitions, ${h.replicas} replicas, ${h.indexes.length} indexes\n`,
          );
      }
      const client = await connectToStore(servers, store, timeoutMs, created ? 10_000 : 0);
      let s: RestoreSummary;
      try {
        s = await restoreSnapshot(client, file, { progress, verified: true });
      } finally {
        await client.close();
      }
      if (g.json) process.stdout.write(`${toJson({ ...s, created })}\n`);
      else
        process.stdout.write(
          `restored ${s.keys} keys from ${s.file} (store ${s.from}, saved ${h.createdAt}) into store ${s.store} in ${(s.elapsedMs / 1000).toFixed(1)} s\n`,
        );
    });
}
