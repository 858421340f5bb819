/**
 * The entry codec: what a partition group's log entry holds, in msgpack (msgpackr).
 *
 *     { v: 1, time, cmd, client?, seq?, ack? }
 *
 * `time` is the proposing leader's clock in milliseconds (replicas clamp it so that applied
 * time never decreases), `cmd` a validated command (commands.ts), and `client`/`seq`/`ack` the
 * exactly-once session fields: `seq` numbers the client's mutations, and `ack` says that the
 * client has received every answer below it, so the group may forget them.
 *
 * Encoding validates first, so a bad command never reaches the log; decoding validates
 * again, so a replica never trusts bytes it did not check.
 */
import { Packr } from 'msgpackr';
import { DkvError, ErrorCode } from '../errors.js';
import { type Command, validateCommand } from './commands.js';

/** ENVELOPE_VERSION is the entry format this build writes and reads. */
export const ENVELOPE_VERSION = 1;

/** CLIENT_ID_LENGTH_MAX bounds a client id. */
export const CLIENT_ID_LENGTH_MAX = 128;

/** Envelope is one decoded log entry. */
export interface Envelope {
  readonly time: number;
  readonly cmd: Command;
  readonly client?: string;
  readonly seq?: number;
  readonly ack?: number;
}

/**
 * The one msgpack configuration used for entries, snapshots and value sizes: plain maps as
 * objects, no record extension (a stable, self-describing format), 64-bit integers as
 * numbers when they are safe and as bigints otherwise.
 */
export const packr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  // 'auto' (safe integers as numbers, larger ones as bigints) works but is missing from the typings.
  int64AsType: 'auto' as 'bigint',
});

function bad(message: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, message);
}

function checkSession(client: unknown, seq: unknown, ack: unknown): void {
  if (client === undefined && seq === undefined && ack === undefined) return;
  if (typeof client !== 'string' || client.length === 0 || client.length > CLIENT_ID_LENGTH_MAX)
    throw bad(`client id must be a string of 1 to ${CLIENT_ID_LENGTH_MAX} characters`);
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1)
    throw bad('seq must be a positive integer');
  if (typeof ack !== 'number' || !Number.isSafeInteger(ack) || ack < 1 || ack > seq)
    throw bad('ack must be a positive integer no greater than seq');
}

/** checkEnvelope validates an envelope's fields (and its command), returning a clean copy. */
export function checkEnvelope(e: unknown): Envelope {
  if (typeof e !== 'object' || e === null || Array.isArray(e)) throw bad('an entry must be an object');
  const o = e as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!['v', 'time', 'cmd', 'client', 'seq', 'ack'].includes(k)) throw bad(`entry: unknown field "${k}"`);
  }
  if (o.v !== ENVELOPE_VERSION) throw bad(`entry format ${String(o.v)} is not ${ENVELOPE_VERSION}`);
  if (typeof o.time !== 'number' || !Number.isSafeInteger(o.time) || o.time < 0)
    throw bad('entry time must be a non-negative integer');
  checkSession(o.client, o.seq, o.ack);
  const cmd = validateCommand(o.cmd);
  return {
    time: o.time,
    cmd,
    ...(o.client !== undefined && { client: o.client as string, seq: o.seq as number, ack: o.ack as number }),
  };
}

/** encodeEnvelope validates and encodes an entry; a bad one throws INVALID_ARGUMENT. */
export function encodeEnvelope(e: Envelope): Uint8Array {
  const clean = checkEnvelope({ v: ENVELOPE_VERSION, ...e });
  return packr.pack({ v: ENVELOPE_VERSION, ...clean });
}

/** decodeEnvelope decodes and validates a committed entry's data. */
export function decodeEnvelope(data: Uint8Array): Envelope {
  let raw: unknown;
  try {
    raw = packr.unpack(data);
  } catch (err) {
    throw new DkvError(ErrorCode.InvalidArgument, 'entry is not valid msgpack', {}, { cause: err });
  }
  return checkEnvelope(plainBytes(raw, 0));
}

/**
 * plainBytes turns the Buffers msgpackr decodes binary values into (views of the entry) into
 * plain Uint8Array copies, so a value reads back the same whether it came from the log or
 * from a snapshot, and does not hold the whole entry in memory.
 */
export function plainBytes(v: unknown, depth: number): unknown {
  if (v instanceof Uint8Array) return v.constructor === Uint8Array ? v : new Uint8Array(v);
  if (typeof v !== 'object' || v === null || depth > 64) return v;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = plainBytes(v[i], depth + 1);
    return v;
  }
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) o[k] = plainBytes(o[k], depth + 1);
  return o;
}

/** valueBytes is a value's encoded size, which the value size limit applies to. */
export function valueBytes(v: unknown): number {
  if (typeof v === 'string') return v.length <= 1 << 16 ? utf8Length(v) : packr.pack(v).length;
  if (v instanceof Uint8Array) return v.length;
  return packr.pack(v).length;
}

function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}
