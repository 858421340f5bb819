/**
 * Framing: every message on a DKV connection (peer link or client protocol) is
 *
 *     [u32 big-endian body length][msgpack body]
 *
 * encoded with the one shared msgpackr configuration (`packr` of the state machine codec), so
 * every layer agrees on how values look on the wire.
 *
 * FrameDecoder is a pure push parser: bytes in, decoded bodies out, no I/O. It accepts any
 * chunking (one byte at a time, or many frames per chunk). Each byte is copied at most once:
 * a body that lies inside one chunk is decoded in place, and a body that spans chunks is
 * gathered into one buffer of exactly its size, allocated once its length is known. The
 * length is checked against `frameBytesMax` as soon as the 4 header bytes are in, so a
 * hostile length never allocates anything. Cost: O(bytes) per push.
 *
 * Binary values decode as plain Uint8Arrays (never Buffers, whatever the chunks were), and
 * they are views into the received bytes (msgpackr does not copy binary data): a consumer
 * that keeps one for long while the rest of the frame is garbage should copy it.
 */
import { RESERVE_START_SPACE } from 'msgpackr';
import { DkvError, ErrorCode } from '../errors.js';
import { packr } from '../statemachine/codec.js';

/** FRAME_HEADER_BYTES is the size of the length prefix. */
export const FRAME_HEADER_BYTES = 4;

/** FRAME_BYTES_LIMIT is the largest body a u32 length can describe. */
export const FRAME_BYTES_LIMIT = 0xffff_ffff;

/**
 * FrameError is what the decoder throws for a frame that must not be processed: TOO_LARGE
 * for a body over the limit, INVALID_ARGUMENT for an empty body or one that is not valid
 * msgpack. The connection it came from cannot be resynchronised and must be closed.
 */
export class FrameError extends DkvError {}

/** checkFrameBytesMax throws a RangeError (a programmer error) for an impossible limit. */
export function checkFrameBytesMax(frameBytesMax: number): void {
  if (!Number.isSafeInteger(frameBytesMax) || frameBytesMax < 1 || frameBytesMax > FRAME_BYTES_LIMIT)
    throw new RangeError(
      `frameBytesMax must be an integer in [1, ${FRAME_BYTES_LIMIT}], got ${frameBytesMax}`,
    );
}

/**
 * encodeFrame encodes one value as a whole frame. With `frameBytesMax`, a body over the
 * limit throws a FrameError (TOO_LARGE) instead of producing a frame the peer would refuse.
 */
export function encodeFrame(value: unknown, frameBytesMax = FRAME_BYTES_LIMIT): Uint8Array {
  // msgpackr leaves the header's 4 bytes free in front of the body: no copy. The result is a
  // slice of msgpackr's output buffer that later packs never overwrite.
  const frame = packr.pack(value, RESERVE_START_SPACE | FRAME_HEADER_BYTES);
  const bodyBytes = frame.length - FRAME_HEADER_BYTES;
  if (bodyBytes > frameBytesMax)
    throw new FrameError(ErrorCode.TooLarge, `frame body of ${bodyBytes} bytes exceeds ${frameBytesMax}`);
  writeU32(frame, 0, bodyBytes);
  return frame;
}

/** encodeBody encodes one value with the shared msgpack settings, without a frame header. */
export function encodeBody(value: unknown): Uint8Array {
  return packr.pack(value);
}

/** arrayHeaderBytes is the size of a msgpack array header for `count` elements. */
export function arrayHeaderBytes(count: number): number {
  return count < 16 ? 1 : count < 0x1_0000 ? 3 : 5;
}

/**
 * encodeArrayFrame builds one frame whose body is a msgpack array of already encoded
 * elements `items[from..to)`; `itemBytes` is the sum of their lengths. This is how a batch
 * of separately encoded messages becomes one frame without re-encoding them.
 */
export function encodeArrayFrame(
  items: readonly Uint8Array[],
  from: number,
  to: number,
  itemBytes: number,
): Uint8Array {
  const count = to - from;
  const headerBytes = arrayHeaderBytes(count);
  const bodyBytes = headerBytes + itemBytes;
  const frame = new Uint8Array(FRAME_HEADER_BYTES + bodyBytes);
  writeU32(frame, 0, bodyBytes);
  let at = FRAME_HEADER_BYTES;
  if (count < 16) frame[at++] = 0x90 | count;
  else if (count < 0x1_0000) {
    frame[at++] = 0xdc;
    frame[at++] = count >>> 8;
    frame[at++] = count & 0xff;
  } else {
    frame[at++] = 0xdd;
    writeU32(frame, at, count);
    at += 4;
  }
  for (let i = from; i < to; i++) {
    const item = items[i]!;
    frame.set(item, at);
    at += item.length;
  }
  if (at !== frame.length)
    throw new Error(`encodeArrayFrame: itemBytes ${itemBytes} does not match the items`);
  return frame;
}

function writeU32(buf: Uint8Array, at: number, v: number): void {
  buf[at] = v >>> 24;
  buf[at + 1] = (v >>> 16) & 0xff;
  buf[at + 2] = (v >>> 8) & 0xff;
  buf[at + 3] = v & 0xff;
}

/** FrameDecoderOptions bound what the decoder accepts. */
export interface FrameDecoderOptions {
  /** The largest body accepted, in bytes; a larger length prefix is refused at once. */
  readonly frameBytesMax: number;
}

/**
 * FrameDecoder turns a byte stream into decoded frame bodies. After it throws once it stays
 * failed: every later push throws the same error, since the stream cannot be resynchronised.
 */
export class FrameDecoder {
  private readonly frameBytesMax: number;
  /** The length prefix being gathered; `headerFill` of its 4 bytes are in. */
  private readonly header = new Uint8Array(FRAME_HEADER_BYTES);
  private headerFill = 0;
  /** The body being gathered across chunks (exactly its length), or undefined between frames. */
  private body: Uint8Array | undefined;
  /** Invariant: 0 <= bodyFill < body.length while body is defined. */
  private bodyFill = 0;
  private failure: FrameError | undefined;

  constructor(opts: FrameDecoderOptions) {
    checkFrameBytesMax(opts.frameBytesMax);
    this.frameBytesMax = opts.frameBytesMax;
  }

  /** bufferedBytes is how many bytes of an incomplete frame are held. */
  get bufferedBytes(): number {
    return this.body !== undefined ? FRAME_HEADER_BYTES + this.bodyFill : this.headerFill;
  }

  /** push feeds bytes and returns every body completed by them, in order. */
  push(chunk: Uint8Array): unknown[] {
    if (this.failure !== undefined) throw this.failure;
    const out: unknown[] = [];
    try {
      this.pushInto(chunk, out);
    } catch (err) {
      this.failure =
        err instanceof FrameError
          ? err
          : new FrameError(
              ErrorCode.InvalidArgument,
              `frame decoding failed: ${String(err)}`,
              {},
              { cause: err },
            );
      throw this.failure;
    }
    return out;
  }

  private pushInto(chunk: Uint8Array, out: unknown[]): void {
    const end = chunk.length;
    let at = 0;
    while (at < end) {
      const body = this.body;
      if (body !== undefined) {
        const n = Math.min(body.length - this.bodyFill, end - at);
        body.set(chunk.subarray(at, at + n), this.bodyFill);
        this.bodyFill += n;
        at += n;
        if (this.bodyFill === body.length) {
          this.body = undefined;
          this.bodyFill = 0;
          out.push(decodeBody(body));
        }
        continue;
      }
      let length: number;
      if (this.headerFill === 0 && end - at >= FRAME_HEADER_BYTES) {
        length = readU32(chunk, at);
        at += FRAME_HEADER_BYTES;
      } else {
        while (this.headerFill < FRAME_HEADER_BYTES && at < end)
          this.header[this.headerFill++] = chunk[at++]!;
        if (this.headerFill < FRAME_HEADER_BYTES) return;
        this.headerFill = 0;
        length = readU32(this.header, 0);
      }
      if (length === 0) throw new FrameError(ErrorCode.InvalidArgument, 'empty frame body');
      if (length > this.frameBytesMax)
        throw new FrameError(
          ErrorCode.TooLarge,
          `frame body of ${length} bytes exceeds ${this.frameBytesMax}`,
        );
      if (end - at >= length) {
        // A plain Uint8Array view (not a Buffer), so that binary values decode as Uint8Array.
        out.push(decodeBody(new Uint8Array(chunk.buffer, chunk.byteOffset + at, length)));
        at += length;
      } else {
        this.body = new Uint8Array(length);
      }
    }
  }
}

function readU32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}

function decodeBody(body: Uint8Array): unknown {
  try {
    return packr.unpack(body);
  } catch (err) {
    throw new FrameError(
      ErrorCode.InvalidArgument,
      `frame body is not valid msgpack: ${err instanceof Error ? err.message.slice(0, 120) : String(err)}`,
      {},
      { cause: err },
    );
  }
}
