/**
 * ListStateMachine is the simulated application: an append-only list of the proposal ids it
 * has applied, each with its log index. It snapshots to bytes, so snapshots grow with the
 * history and really are sent in several chunks, and every restored image can be checked
 * entry by entry against the committed history.
 */
import { decodePayloadId } from './payload.js';

/** SNAPSHOT_MAGIC marks the start of a snapshot image. */
const SNAPSHOT_MAGIC = 0x5349_4d31; // "SIM1"

/** ListStateMachine is deterministic: the same entries in the same order give the same bytes. */
export class ListStateMachine {
  /** indexes[k] is the log index of the k-th applied payload. Invariant: strictly increasing. */
  private indexes: number[] = [];
  /** ids[k] is the proposal id of the k-th applied payload. */
  private ids: number[] = [];
  /** appliedIndex is the last log index applied (payloads, no-ops and membership changes alike). */
  appliedIndex = 0;

  /** applyPayload applies a non-empty Normal entry at `index`. */
  applyPayload(index: number, data: Uint8Array): void {
    this.advanceTo(index);
    this.indexes.push(index);
    this.ids.push(decodePayloadId(data));
  }

  /** advanceTo records that `index` (a no-op, a membership change, or a payload) is applied. */
  advanceTo(index: number): void {
    if (index !== this.appliedIndex + 1) {
      throw new RangeError(`state machine: applying ${index} after ${this.appliedIndex}`);
    }
    this.appliedIndex = index;
  }

  /** count is the number of payloads applied. */
  get count(): number {
    return this.ids.length;
  }

  /** at returns the k-th applied proposal id and its log index. */
  at(k: number): { readonly index: number; readonly id: number } {
    const index = this.indexes[k];
    if (index === undefined) throw new RangeError(`state machine: no payload ${k}`);
    return { index, id: this.ids[k]! };
  }

  /** snapshot encodes the whole state. */
  snapshot(): Uint8Array {
    const n = this.ids.length;
    const out = new Uint8Array(12 + 8 * n);
    const v = new DataView(out.buffer);
    v.setUint32(0, SNAPSHOT_MAGIC, true);
    v.setUint32(4, this.appliedIndex, true);
    v.setUint32(8, n, true);
    for (let k = 0; k < n; k++) {
      v.setUint32(12 + 8 * k, this.indexes[k]!, true);
      v.setUint32(16 + 8 * k, this.ids[k]!, true);
    }
    return out;
  }

  /** restore replaces the state with a snapshot image; an empty image is the initial state. */
  static restore(data: Uint8Array): ListStateMachine {
    const sm = new ListStateMachine();
    if (data.length === 0) return sm;
    const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
    if (data.length < 12 || v.getUint32(0, true) !== SNAPSHOT_MAGIC) {
      throw new RangeError('state machine: snapshot image is corrupt');
    }
    const n = v.getUint32(8, true);
    if (data.length !== 12 + 8 * n)
      throw new RangeError('state machine: snapshot image has the wrong length');
    sm.appliedIndex = v.getUint32(4, true);
    for (let k = 0; k < n; k++) {
      sm.indexes.push(v.getUint32(12 + 8 * k, true));
      sm.ids.push(v.getUint32(16 + 8 * k, true));
    }
    return sm;
  }
}
