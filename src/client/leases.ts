/** Leases (issue 6): grant with an automatic keep-alive loop, a conservative validUntil. */
import { DkvError, ErrorCode } from '../errors.js';
import type { ClientCore } from './core.js';

export class LeaseApi {
  constructor(readonly core: ClientCore) {}

  async grant(_ttlMs: number): Promise<unknown> {
    throw new DkvError(ErrorCode.Unsupported, 'leases are not built yet');
  }
}
