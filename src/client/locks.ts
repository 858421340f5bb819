/** Locks with fencing (issue 6). */
import { DkvError, ErrorCode } from '../errors.js';
import type { ClientCore } from './core.js';

export class LockApi {
  constructor(readonly core: ClientCore) {}

  async acquire(_name: string, _opts: unknown = {}): Promise<unknown> {
    throw new DkvError(ErrorCode.Unsupported, 'locks are not built yet');
  }
}
