import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { packr } from '../../src/statemachine/codec.js';
import {
  encodeArrayFrame,
  encodeBody,
  encodeFrame,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameError,
} from '../../src/transport/frame.js';

/** Values as the codec round-trips them: plain data, no undefined inside arrays or -0. */
const wireValue = fc.letrec((tie) => ({
  leaf: fc.oneof(
    fc.integer(),
    fc.double({ noNaN: true }).filter((d) => !Object.is(d, -0)),
    fc.string({ unit: 'grapheme' }),
    fc.boolean(),
    fc.constant(null),
    fc.uint8Array({ maxLength: 64 }),
    // Safe integers decode as numbers ('auto'), so only unsafe 64-bit ones stay bigints.
    fc.bigInt({ min: 2n ** 53n + 1n, max: 2n ** 63n - 1n }),
    fc.bigInt({ min: -(2n ** 63n), max: -(2n ** 53n) - 1n }),
  ),
  node: fc.oneof(
    { depthSize: 'small' },
    tie('leaf'),
    fc.array(tie('node'), { maxLength: 5 }),
    fc.dictionary(
      fc.string({ maxLength: 8 }).filter((k) => k !== '__proto__'),
      tie('node'),
      { maxKeys: 5 },
    ),
  ),
})).node;

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** split cuts bytes at the given sorted offsets. */
function split(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(bytes.subarray(prev, p));
    prev = p;
  }
  out.push(bytes.subarray(prev));
  return out;
}

function header(length: number): Uint8Array {
  const h = new Uint8Array(4);
  new DataView(h.buffer).setUint32(0, length);
  return h;
}

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (err) {
    if (err instanceof FrameError) return err.code;
    throw err;
  }
}

describe('encodeFrame', () => {
  it('prefixes the msgpack body with its u32 big-endian length', () => {
    const frame = encodeFrame({ a: 1 });
    const body = packr.pack({ a: 1 });
    expect(new DataView(frame.buffer, frame.byteOffset).getUint32(0)).toBe(body.length);
    expect([...frame.subarray(FRAME_HEADER_BYTES)]).toEqual([...body]);
  });

  it('refuses a body over the limit with TOO_LARGE', () => {
    expect(codeOf(() => encodeFrame('x'.repeat(100), 50))).toBe(ErrorCode.TooLarge);
    expect(encodeFrame('x'.repeat(40), 50).length).toBeGreaterThan(40);
  });

  it('encodeArrayFrame builds the same body as encoding the array, for every header size', () => {
    for (const n of [0, 1, 15, 16, 300, 65_535, 65_536, 70_000]) {
      const items = Array.from({ length: n }, (_, i) => ({ i }));
      const encoded = items.map((v) => encodeBody(v));
      const bytes = encoded.reduce((s, e) => s + e.length, 0);
      const frame = encodeArrayFrame(encoded, 0, n, bytes);
      const dec = new FrameDecoder({ frameBytesMax: 1 << 24 });
      expect(dec.push(frame)).toEqual([items]);
    }
  });

  it('encodeArrayFrame takes a sub-range', () => {
    const encoded = [1, 2, 3, 4].map((v) => encodeBody(v));
    const frame = encodeArrayFrame(encoded, 1, 3, encoded[1]!.length + encoded[2]!.length);
    expect(new FrameDecoder({ frameBytesMax: 100 }).push(frame)).toEqual([[2, 3]]);
  });
});

describe('FrameDecoder', () => {
  it('decodes any values split at any boundaries', () => {
    fc.assert(
      fc.property(
        fc.array(wireValue, { minLength: 1, maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (values, cuts) => {
          const bytes = concat(values.map((v) => encodeFrame(v)));
          const dec = new FrameDecoder({ frameBytesMax: 1 << 20 });
          const out: unknown[] = [];
          for (const chunk of split(bytes, cuts)) out.push(...dec.push(chunk));
          expect(out).toEqual(values);
          expect(dec.bufferedBytes).toBe(0);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('decodes one byte at a time, and many frames in one chunk', () => {
    const values = Array.from({ length: 50 }, (_, i) => ({ i, s: 'v'.repeat(i) }));
    const bytes = concat(values.map((v) => encodeFrame(v)));
    const dec = new FrameDecoder({ frameBytesMax: 1000 });
    const out: unknown[] = [];
    for (let i = 0; i < bytes.length; i++) {
      out.push(...dec.push(bytes.subarray(i, i + 1)));
    }
    expect(dec.bufferedBytes).toBe(0);
    expect(out).toEqual(values);
    expect(new FrameDecoder({ frameBytesMax: 1000 }).push(bytes)).toEqual(values);
  });

  it('handles a large body arriving in many chunks in linear time', () => {
    const big = new Uint8Array(8 << 20).fill(7);
    const frame = encodeFrame(big);
    const dec = new FrameDecoder({ frameBytesMax: 16 << 20 });
    const t0 = performance.now();
    let out: unknown[] = [];
    for (let at = 0; at < frame.length; at += 1000) out = out.concat(dec.push(frame.subarray(at, at + 1000)));
    const ms = performance.now() - t0;
    expect(out.length).toBe(1);
    expect((out[0] as Uint8Array).length).toBe(big.length);
    expect(ms).toBeLessThan(2000); // quadratic re-copying would take minutes
  });

  it('refuses a length over frameBytesMax from the header alone, with TOO_LARGE', () => {
    const dec = new FrameDecoder({ frameBytesMax: 100 });
    expect(codeOf(() => dec.push(header(101)))).toBe(ErrorCode.TooLarge);
    // 4 GiB claimed: refused at once, nothing allocated.
    expect(codeOf(() => new FrameDecoder({ frameBytesMax: 100 }).push(header(0xffff_ffff)))).toBe(
      ErrorCode.TooLarge,
    );
  });

  it('refuses an empty body and garbage with INVALID_ARGUMENT, and stays failed', () => {
    expect(codeOf(() => new FrameDecoder({ frameBytesMax: 100 }).push(header(0)))).toBe(
      ErrorCode.InvalidArgument,
    );
    const dec = new FrameDecoder({ frameBytesMax: 100 });
    // An extension type msgpackr does not know.
    expect(codeOf(() => dec.push(concat([header(3), new Uint8Array([0xd4, 0x05, 0x00])])))).toBe(
      ErrorCode.InvalidArgument,
    );
    expect(codeOf(() => dec.push(encodeFrame(1)))).toBe(ErrorCode.InvalidArgument);
    // A body with trailing bytes after the first value is malformed too.
    expect(
      codeOf(() =>
        new FrameDecoder({ frameBytesMax: 100 }).push(concat([header(2), new Uint8Array([1, 2])])),
      ),
    ).toBe(ErrorCode.InvalidArgument);
  });

  it('returns the frames completed before a bad one only through the throw (the connection closes)', () => {
    const dec = new FrameDecoder({ frameBytesMax: 100 });
    expect(dec.push(concat([encodeFrame(1), encodeFrame(2)]))).toEqual([1, 2]);
    expect(codeOf(() => dec.push(concat([encodeFrame(3), header(500)])))).toBe(ErrorCode.TooLarge);
  });

  it('survives random bytes: only FrameError, never a hang, and valid frames still decode after', () => {
    let frames = 0;
    let refused = 0;
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 96 }),
        fc.array(fc.nat(), { maxLength: 4 }),
        fc.boolean(),
        (garbage, cuts, plausibleLength) => {
          // Half the cases get a small plausible length prefix, so the msgpack decoder sees them.
          const bytes = plausibleLength ? concat([header(garbage.length), garbage]) : garbage;
          const dec = new FrameDecoder({ frameBytesMax: 4096 });
          try {
            for (const chunk of split(bytes, cuts)) frames += dec.push(chunk).length;
          } catch (err) {
            if (!(err instanceof FrameError)) throw err;
            expect([ErrorCode.TooLarge, ErrorCode.InvalidArgument]).toContain(err.code);
            refused++;
          }
        },
      ),
      { numRuns: 12_000 },
    );
    expect(frames + refused).toBeGreaterThan(0);
    const dec = new FrameDecoder({ frameBytesMax: 4096 });
    expect(dec.push(encodeFrame({ still: ['fine', 1, new Uint8Array([1])] }))).toEqual([
      { still: ['fine', 1, new Uint8Array([1])] },
    ]);
  });

  it('survives hostile msgpack: deep nesting, huge declared lengths', () => {
    const cases = [
      new Uint8Array(5000).fill(0x91), // [[[[...]]]] 5000 deep, unterminated
      new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff]), // array of 4G elements, no elements
      new Uint8Array([0xdf, 0xff, 0xff, 0xff, 0xff]), // map of 4G entries
      new Uint8Array([0xdb, 0xff, 0xff, 0xff, 0xff, 0x61]), // str of 4 GiB, 1 byte present
      new Uint8Array([0xc6, 0x7f, 0xff, 0xff, 0xff]), // bin of 2 GiB
      new Uint8Array([0xc9, 0x7f, 0xff, 0xff, 0xff, 0x01]), // ext of 2 GiB
    ];
    for (const body of cases) {
      const code = codeOf(() =>
        new FrameDecoder({ frameBytesMax: 1 << 16 }).push(concat([header(body.length), body])),
      );
      expect(code).toBe(ErrorCode.InvalidArgument);
    }
  });

  it('validates its limit', () => {
    expect(() => new FrameDecoder({ frameBytesMax: 0 })).toThrow(RangeError);
    expect(() => new FrameDecoder({ frameBytesMax: 2 ** 32 })).toThrow(RangeError);
  });
});
