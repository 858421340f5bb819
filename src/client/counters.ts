/** Counters (issue 6): exact 64-bit add, get and set, with optional TTL windows. */
import { DkvError, ErrorCode } from '../errors.js';
import type { CallOptions, ClientCore } from './core.js';

export interface CounterAddOptions extends CallOptions {
  readonly ttlMs?: number;
}

export class CounterHandle {
  constructor(
    readonly core: ClientCore,
    readonly name: string,
  ) {}

  async add(_delta: number | bigint, _opts: CounterAddOptions = {}): Promise<number | bigint> {
    throw new DkvError(ErrorCode.Unsupported, 'counters are not built yet');
  }
}
