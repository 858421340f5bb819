/**
 * The client protocol's frames, and their validation. Each frame body is one msgpack map:
 *
 *     client -> server   { id, op, args, trace? }  a request (unary or stream, by op)
 *                        { id, cancel: true }      abandon a request or stop a stream
 *     server -> client   { id, ok: true, value }   a unary answer
 *                        { id, ok: false, error }  a failure (ends a stream too)
 *                        { id, stream: 'item', value }
 *                        { id, stream: 'end' }
 *
 * `id` is a positive safe integer chosen by the client, unique among its in-flight requests
 * on that connection. `trace`, optional, is the client's request id for tracing (1 to
 * TRACE_LENGTH_MAX printable ASCII characters): the server logs it and never interprets it;
 * a frame without it is as valid as before it existed. `error` is `{ code, message, details? }` with a code of the catalogue
 * in errors.ts. Whether an op is unary or a stream is defined by the server's op table.
 *
 * Validation is exact: a missing or mistyped field, or any unknown field, makes the frame
 * malformed, and the receiver closes the connection (logged) rather than guess.
 */
import { DkvError, type DkvErrorDetails, ErrorCode, isErrorCode } from '../errors.js';

/** OP_LENGTH_MAX bounds an operation name. */
export const OP_LENGTH_MAX = 64;

/** TRACE_LENGTH_MAX bounds a request frame's `trace` (the client's request id). */
export const TRACE_LENGTH_MAX = 64;

/** ERROR_MESSAGE_LENGTH_MAX bounds an error message carried on the wire. */
export const ERROR_MESSAGE_LENGTH_MAX = 1024;

/** RequestFrame is a validated client-to-server frame. */
export type RequestFrame =
  | {
      readonly kind: 'request';
      readonly id: number;
      readonly op: string;
      readonly args: unknown;
      /** The client's request id for tracing, when it sent one. */
      readonly trace: string | undefined;
    }
  | { readonly kind: 'cancel'; readonly id: number };

/** WireError is an error as it travels. */
export interface WireError {
  readonly code: string;
  readonly message: string;
  readonly details?: DkvErrorDetails;
}

/** ResponseFrame is a validated server-to-client frame. */
export type ResponseFrame =
  | { readonly kind: 'ok'; readonly id: number; readonly value: unknown }
  | { readonly kind: 'error'; readonly id: number; readonly error: DkvError }
  | { readonly kind: 'item'; readonly id: number; readonly value: unknown }
  | { readonly kind: 'end'; readonly id: number };

function malformed(why: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, `malformed frame: ${why}`);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** isTraceId tells whether a value can be a frame's `trace`: 1 to TRACE_LENGTH_MAX printable ASCII characters. */
export function isTraceId(v: unknown): v is string {
  return typeof v === 'string' && v.length >= 1 && v.length <= TRACE_LENGTH_MAX && /^[\x20-\x7e]+$/.test(v);
}

/** isRequestId tells whether a value can be a request id. */
export function isRequestId(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;
}

function onlyKeys(o: Record<string, unknown>, allowed: readonly string[]): void {
  for (const k in o) {
    if (!allowed.includes(k)) throw malformed(`unknown field "${k.slice(0, 40)}"`);
  }
}

/** checkRequest validates a decoded client frame; it throws INVALID_ARGUMENT when malformed. */
export function checkRequest(frame: unknown): RequestFrame {
  if (!isPlainObject(frame)) throw malformed('not a map');
  const id = frame.id;
  if (!isRequestId(id)) throw malformed('id must be a positive safe integer');
  if ('cancel' in frame) {
    onlyKeys(frame, ['id', 'cancel']);
    if (frame.cancel !== true) throw malformed('cancel must be true');
    return { kind: 'cancel', id };
  }
  onlyKeys(frame, ['id', 'op', 'args', 'trace']);
  const op = frame.op;
  if (typeof op !== 'string' || op.length === 0 || op.length > OP_LENGTH_MAX)
    throw malformed(`op must be a string of 1 to ${OP_LENGTH_MAX} characters`);
  const trace = frame.trace;
  if (trace !== undefined && !isTraceId(trace))
    throw malformed(`trace must be 1 to ${TRACE_LENGTH_MAX} printable ASCII characters`);
  return { kind: 'request', id, op, args: frame.args, trace };
}

/** checkResponse validates a decoded server frame; it throws INVALID_ARGUMENT when malformed. */
export function checkResponse(frame: unknown): ResponseFrame {
  if (!isPlainObject(frame)) throw malformed('not a map');
  const id = frame.id;
  if (!isRequestId(id)) throw malformed('id must be a positive safe integer');
  if ('ok' in frame) {
    if (frame.ok === true) {
      onlyKeys(frame, ['id', 'ok', 'value']);
      return { kind: 'ok', id, value: frame.value };
    }
    if (frame.ok !== false) throw malformed('ok must be a boolean');
    onlyKeys(frame, ['id', 'ok', 'error']);
    return { kind: 'error', id, error: errorFromWire(frame.error) };
  }
  if (frame.stream === 'item') {
    onlyKeys(frame, ['id', 'stream', 'value']);
    return { kind: 'item', id, value: frame.value };
  }
  if (frame.stream === 'end') {
    onlyKeys(frame, ['id', 'stream']);
    return { kind: 'end', id };
  }
  throw malformed('neither a response nor a stream message');
}

const DETAIL_KEYS = ['leaderHint', 'epoch', 'compactRevision', 'group', 'index', 'lastRevision'] as const;
/** ADDRESS_LENGTH_MAX bounds the one string detail, a leader's host:port. */
const ADDRESS_LENGTH_MAX = 300;

/** errorToWire turns a DkvError into its wire form (only the known details). */
export function errorToWire(err: DkvError): WireError {
  const details: Record<string, number | string> = {};
  let any = false;
  for (const k of DETAIL_KEYS) {
    const v = err.details[k];
    if (typeof v === 'number') {
      details[k] = v;
      any = true;
    }
  }
  const address = err.details.address;
  if (typeof address === 'string' && address.length <= ADDRESS_LENGTH_MAX) {
    details.address = address;
    any = true;
  }
  const message = err.message.slice(0, ERROR_MESSAGE_LENGTH_MAX);
  return any ? { code: err.code, message, details } : { code: err.code, message };
}

/**
 * errorFromWire validates a wire error and rebuilds the DkvError. A code this build does not
 * know (a newer server) becomes UNAVAILABLE with the code in the message; unknown detail
 * fields are ignored, for the same reason.
 */
export function errorFromWire(e: unknown): DkvError {
  if (!isPlainObject(e)) throw malformed('error must be a map');
  onlyKeys(e, ['code', 'message', 'details']);
  if (typeof e.code !== 'string' || e.code.length === 0 || e.code.length > 64)
    throw malformed('bad error code');
  if (typeof e.message !== 'string') throw malformed('bad error message');
  const message = e.message.slice(0, ERROR_MESSAGE_LENGTH_MAX);
  const details: Record<string, number | string> = {};
  if (e.details !== undefined) {
    if (!isPlainObject(e.details)) throw malformed('error details must be a map');
    for (const k of DETAIL_KEYS) {
      const v = e.details[k];
      if (v === undefined) continue;
      if (typeof v !== 'number' || !Number.isSafeInteger(v))
        throw malformed(`error detail ${k} must be an integer`);
      details[k] = v;
    }
    const address = e.details.address;
    if (address !== undefined) {
      if (typeof address !== 'string' || address.length > ADDRESS_LENGTH_MAX)
        throw malformed('error detail address must be a short string');
      details.address = address;
    }
  }
  if (!isErrorCode(e.code)) return new DkvError(ErrorCode.Unavailable, `${e.code}: ${message}`, details);
  return new DkvError(e.code, message, details);
}
