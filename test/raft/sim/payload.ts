/**
 * Client payloads: a unique 32-bit proposal id followed by deterministic filler bytes, so
 * entries vary in size (which exercises the byte limits) while the id alone names them.
 */

/** PAYLOAD_HEADER_BYTES is the size of the id prefix. */
export const PAYLOAD_HEADER_BYTES = 4;

/** PAYLOAD_FILLER_BYTES_MAX bounds the filler after the id. */
export const PAYLOAD_FILLER_BYTES_MAX = 96;

/** encodePayload builds the bytes of proposal `id` with `fillerBytes` of filler. */
export function encodePayload(id: number, fillerBytes: number): Uint8Array {
  if (!(Number.isInteger(id) && id > 0 && id <= 0xffff_ffff))
    throw new RangeError(`encodePayload: bad id ${id}`);
  if (!(fillerBytes >= 0 && fillerBytes <= PAYLOAD_FILLER_BYTES_MAX)) {
    throw new RangeError(`encodePayload: bad filler ${fillerBytes}`);
  }
  const out = new Uint8Array(PAYLOAD_HEADER_BYTES + fillerBytes);
  new DataView(out.buffer).setUint32(0, id, true);
  for (let i = 0; i < fillerBytes; i++) out[PAYLOAD_HEADER_BYTES + i] = (id + i) & 0xff;
  return out;
}

/** decodePayloadId returns the proposal id in a payload, or 0 if it is too short to hold one. */
export function decodePayloadId(data: Uint8Array): number {
  if (data.length < PAYLOAD_HEADER_BYTES) return 0;
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(0, true);
}

/** bytesEqual compares two byte arrays. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
