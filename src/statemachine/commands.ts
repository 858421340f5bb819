/**
 * The commands a partition group's log carries, and their validation. Every command is
 * checked twice: at proposal time (a bad one is refused with INVALID_ARGUMENT and never
 * reaches the log) and again when a replica decodes a committed entry (so a replica never
 * trusts its input; a malformed entry becomes the same error result on every replica).
 *
 * Validation is strict: unknown fields, wrong types, out-of-range numbers and oversized
 * collections are all refused with a message that names the field.
 */

import { type IndexDef, IndexManager } from '../engines/index-manager.js';
import { type Compare, validateCompare } from '../engines/segment-store.js';
import type { Labels, Value } from '../engines/types.js';
import { DkvError, ErrorCode, quote } from '../errors.js';

/** Fence names a lock and the token its holder was granted; a fenced mutation needs it current. */
export interface Fence {
  readonly lock: string;
  readonly token: number;
}

export interface PutOp {
  readonly op: 'put';
  readonly key: string;
  readonly value: Value;
  readonly ttlMs?: number;
  readonly lease?: number;
  readonly ifVersion?: number;
  readonly ifAbsent?: boolean;
  readonly labels?: Labels;
}

export interface DeleteOp {
  readonly op: 'delete';
  readonly key: string;
  readonly ifVersion?: number;
  /** The lease the caller holds, for keys bound to a live lease. */
  readonly lease?: number;
}

export interface GetOp {
  readonly op: 'get';
  readonly key: string;
}

/** TxnOp is one operation of a transaction branch. */
export type TxnOp = PutOp | DeleteOp | GetOp;

export type Command =
  | (PutOp & { readonly fence?: Fence })
  | (DeleteOp & { readonly fence?: Fence })
  | {
      readonly op: 'txn';
      readonly compare: readonly Compare[];
      readonly success: readonly TxnOp[];
      readonly failure: readonly TxnOp[];
      readonly fence?: Fence;
    }
  | { readonly op: 'tick' }
  | { readonly op: 'lease.grant'; readonly ttlMs: number }
  | { readonly op: 'lease.keepAlive'; readonly ids: readonly number[] }
  | {
      readonly op: 'lease.revoke';
      readonly id: number;
      /**
       * A lock held through the lease, released by the revoke: the answer says whether this
       * token still held it (`{ released }`), so a lock's release is one entry, not two.
       */
      readonly lock?: { readonly name: string; readonly token: number };
    }
  | { readonly op: 'lock.acquire'; readonly name: string; readonly lease: number; readonly waitMs?: number }
  /**
   * A try (waitMs 0) that grants its own lease of ttlMs in the same entry: acquired, the
   * answer carries the lease; not acquired, no lease is left behind. One entry, not two.
   */
  | { readonly op: 'lock.acquire'; readonly name: string; readonly ttlMs: number; readonly waitMs: 0 }
  | { readonly op: 'lock.release'; readonly name: string; readonly token: number }
  | {
      readonly op: 'counter.add';
      readonly name: string;
      readonly delta: number | bigint;
      readonly ttlMs?: number;
      readonly fence?: Fence;
    }
  | {
      readonly op: 'counter.set';
      readonly name: string;
      readonly value: number | bigint;
      readonly ttlMs?: number;
      readonly fence?: Fence;
    }
  | { readonly op: 'counter.delete'; readonly name: string; readonly fence?: Fence }
  | { readonly op: 'configure'; readonly indexes: readonly IndexDef[] };

/** CommandOp is the name of a command. */
export type CommandOp = Command['op'];

/** LIMITS bound what one command may carry. */
export const COMMAND_LIMITS = Object.freeze({
  /** Operations in one transaction branch, and compares. */
  txnOpsMax: 128,
  /** Lease ids in one batched keep-alive. */
  keepAliveIdsMax: 4096,
  /** Longest TTL (a day), lease, wait or window. */
  ttlMsMax: 86_400_000,
  /** Shortest lease TTL. */
  leaseTtlMsMin: 1000,
  /** Lock and counter names, in UTF-16 code units. */
  nameLengthMax: 1024,
  /** Labels on one put, and the length of each label name and string value. */
  labelsMax: 32,
  labelLengthMax: 256,
});

function bad(message: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, message);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || ArrayBuffer.isView(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function onlyFields(o: Record<string, unknown>, allowed: readonly string[], what: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw bad(`${what}: unknown field "${k}"`);
  }
}

function isNat(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function isPositive(v: unknown): v is number {
  return isNat(v) && v > 0;
}

function checkKey(v: unknown, what: string): string {
  if (typeof v !== 'string' || v.length === 0) throw bad(`${what}: key must be a non-empty string`);
  return v;
}

function checkName(v: unknown, what: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > COMMAND_LIMITS.nameLengthMax) {
    throw bad(`${what}: name must be a string of 1 to ${COMMAND_LIMITS.nameLengthMax} characters`);
  }
  return v;
}

function checkTtl(v: unknown, what: string, min = 1): number {
  if (!isNat(v) || v < min || v > COMMAND_LIMITS.ttlMsMax) {
    throw bad(`${what} must be an integer number of milliseconds in [${min}, ${COMMAND_LIMITS.ttlMsMax}]`);
  }
  return v;
}

function optional<T>(o: Record<string, unknown>, k: string, check: (v: unknown) => T): T | undefined {
  return o[k] === undefined ? undefined : check(o[k]);
}

function checkFence(v: unknown): Fence {
  if (!isPlainObject(v)) throw bad('fence must be { lock, token }');
  onlyFields(v, ['lock', 'token'], 'fence');
  const lock = checkName(v.lock, 'fence.lock');
  if (!isPositive(v.token)) throw bad('fence.token must be a positive integer');
  return { lock, token: v.token };
}

function checkLabels(v: unknown): Labels {
  if (!isPlainObject(v)) throw bad('labels must be an object of strings and numbers');
  const entries = Object.entries(v);
  if (entries.length > COMMAND_LIMITS.labelsMax) throw bad(`at most ${COMMAND_LIMITS.labelsMax} labels`);
  const out: Record<string, string | number> = {};
  for (const [k, x] of entries) {
    if (k.length === 0 || k.length > COMMAND_LIMITS.labelLengthMax)
      throw bad(`label name "${k}" is too long`);
    if (typeof x === 'string') {
      if (x.length > COMMAND_LIMITS.labelLengthMax) throw bad(`label "${k}" is too long`);
    } else if (typeof x !== 'number' || !Number.isFinite(x)) {
      throw bad(`label "${k}" must be a string or a finite number`);
    }
    out[k] = x;
  }
  return out;
}

function checkInt64(v: unknown, what: string): number | bigint {
  if (typeof v === 'bigint') {
    if (v > 0x7fff_ffff_ffff_ffffn || v < -0x8000_0000_0000_0000n)
      throw bad(`${what} is outside 64-bit range`);
    return v;
  }
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw bad(`${what} must be an integer`);
  return v;
}

function checkPut(o: Record<string, unknown>, extra: readonly string[]): PutOp {
  onlyFields(o, ['op', 'key', 'value', 'ttlMs', 'lease', 'ifVersion', 'ifAbsent', 'labels', ...extra], 'put');
  const key = checkKey(o.key, 'put');
  if (!('value' in o) || o.value === undefined) throw bad('put: value is required');
  const ttlMs = optional(o, 'ttlMs', (v) => checkTtl(v, 'put: ttlMs'));
  const lease = optional(o, 'lease', (v) => {
    if (!isPositive(v)) throw bad('put: lease must be a lease id');
    return v;
  });
  if (ttlMs !== undefined && lease !== undefined) throw bad('put: a key takes ttlMs or lease, not both');
  const ifVersion = optional(o, 'ifVersion', (v) => {
    if (!isNat(v)) throw bad('put: ifVersion must be a non-negative integer');
    return v;
  });
  const ifAbsent = optional(o, 'ifAbsent', (v) => {
    if (typeof v !== 'boolean') throw bad('put: ifAbsent must be a boolean');
    return v;
  });
  if (ifAbsent && ifVersion !== undefined) throw bad('put: ifAbsent and ifVersion exclude each other');
  const labels = optional(o, 'labels', checkLabels);
  return {
    op: 'put',
    key,
    value: o.value,
    ...(ttlMs !== undefined && { ttlMs }),
    ...(lease !== undefined && { lease }),
    ...(ifVersion !== undefined && { ifVersion }),
    ...(ifAbsent !== undefined && { ifAbsent }),
    ...(labels !== undefined && { labels }),
  };
}

function checkDelete(o: Record<string, unknown>, extra: readonly string[]): DeleteOp {
  onlyFields(o, ['op', 'key', 'ifVersion', 'lease', ...extra], 'delete');
  const key = checkKey(o.key, 'delete');
  const ifVersion = optional(o, 'ifVersion', (v) => {
    if (!isNat(v)) throw bad('delete: ifVersion must be a non-negative integer');
    return v;
  });
  const lease = optional(o, 'lease', (v) => {
    if (!isPositive(v)) throw bad('delete: lease must be a lease id');
    return v;
  });
  return {
    op: 'delete',
    key,
    ...(ifVersion !== undefined && { ifVersion }),
    ...(lease !== undefined && { lease }),
  };
}

function checkTxnOp(v: unknown): TxnOp {
  if (!isPlainObject(v)) throw bad('txn: each operation must be an object with an op');
  if (v.op === 'put') return checkPut(v, []);
  if (v.op === 'delete') return checkDelete(v, []);
  if (v.op === 'get') {
    onlyFields(v, ['op', 'key'], 'get');
    return { op: 'get', key: checkKey(v.key, 'get') };
  }
  throw bad('txn: operations are put, delete or get');
}

function checkList<T>(v: unknown, what: string, max: number, each: (x: unknown) => T): T[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw bad(`${what} must be an array`);
  if (v.length > max) throw bad(`${what}: at most ${max} items`);
  return v.map(each);
}

/**
 * validateCommand checks a decoded command and returns a clean copy (no unknown fields).
 * Throws DkvError INVALID_ARGUMENT naming the problem.
 */
export function validateCommand(v: unknown): Command {
  if (!isPlainObject(v)) throw bad('a command must be an object');
  const fence = optional(v, 'fence', checkFence);
  const withFence = <T extends object>(c: T): T => (fence === undefined ? c : { ...c, fence });
  switch (v.op) {
    case 'put':
      return withFence(checkPut(v, ['fence']));
    case 'delete':
      return withFence(checkDelete(v, ['fence']));
    case 'txn': {
      onlyFields(v, ['op', 'compare', 'success', 'failure', 'fence'], 'txn');
      const max = COMMAND_LIMITS.txnOpsMax;
      return withFence({
        op: 'txn',
        compare: checkList(v.compare, 'txn.compare', max, validateCompare),
        success: checkList(v.success, 'txn.success', max, checkTxnOp),
        failure: checkList(v.failure, 'txn.failure', max, checkTxnOp),
      });
    }
    case 'tick':
      onlyFields(v, ['op'], 'tick');
      return { op: 'tick' };
    case 'lease.grant':
      onlyFields(v, ['op', 'ttlMs'], 'lease.grant');
      return {
        op: 'lease.grant',
        ttlMs: checkTtl(v.ttlMs, 'lease.grant: ttlMs', COMMAND_LIMITS.leaseTtlMsMin),
      };
    case 'lease.keepAlive': {
      onlyFields(v, ['op', 'ids'], 'lease.keepAlive');
      const ids = checkList(v.ids, 'lease.keepAlive.ids', COMMAND_LIMITS.keepAliveIdsMax, (x) => {
        if (!isPositive(x)) throw bad('lease.keepAlive: ids must be lease ids');
        return x;
      });
      if (ids.length === 0) throw bad('lease.keepAlive: no lease ids');
      return { op: 'lease.keepAlive', ids };
    }
    case 'lease.revoke': {
      onlyFields(v, ['op', 'id', 'lock'], 'lease.revoke');
      if (!isPositive(v.id)) throw bad('lease.revoke: id must be a lease id');
      const lock = optional(v, 'lock', (x) => {
        if (typeof x !== 'object' || x === null || Array.isArray(x))
          throw bad('lease.revoke: lock must be { name, token }');
        const l = x as Record<string, unknown>;
        onlyFields(l, ['name', 'token'], 'lease.revoke: lock');
        if (!isPositive(l.token)) throw bad('lease.revoke: lock.token must be a positive integer');
        return { name: checkName(l.name, 'lease.revoke: lock'), token: l.token };
      });
      return { op: 'lease.revoke', id: v.id, ...(lock !== undefined && { lock }) };
    }
    case 'lock.acquire': {
      onlyFields(v, ['op', 'name', 'lease', 'ttlMs', 'waitMs'], 'lock.acquire');
      const name = checkName(v.name, 'lock.acquire');
      if (v.ttlMs !== undefined) {
        if (v.lease !== undefined) throw bad('lock.acquire: lease and ttlMs are exclusive');
        if (v.waitMs !== 0) throw bad('lock.acquire: ttlMs (its own lease) needs waitMs 0 (a try)');
        const ttlMs = checkTtl(v.ttlMs, 'lock.acquire: ttlMs', COMMAND_LIMITS.leaseTtlMsMin);
        return { op: 'lock.acquire', name, ttlMs, waitMs: 0 };
      }
      if (!isPositive(v.lease)) throw bad('lock.acquire: lease must be a lease id');
      const waitMs = optional(v, 'waitMs', (x) => checkTtl(x, 'lock.acquire: waitMs', 0));
      return { op: 'lock.acquire', name, lease: v.lease, ...(waitMs !== undefined && { waitMs }) };
    }
    case 'lock.release':
      onlyFields(v, ['op', 'name', 'token'], 'lock.release');
      if (!isPositive(v.token)) throw bad('lock.release: token must be a positive integer');
      return { op: 'lock.release', name: checkName(v.name, 'lock.release'), token: v.token };
    case 'counter.add':
    case 'counter.set': {
      const field = v.op === 'counter.add' ? 'delta' : 'value';
      onlyFields(v, ['op', 'name', field, 'ttlMs', 'fence'], v.op);
      const name = checkName(v.name, v.op);
      const n = checkInt64(v[field], `${v.op}: ${field}`);
      const ttlMs = optional(v, 'ttlMs', (x) => checkTtl(x, `${v.op}: ttlMs`));
      const base = { name, ...(ttlMs !== undefined && { ttlMs }) };
      return withFence(
        v.op === 'counter.add'
          ? { op: 'counter.add', delta: n, ...base }
          : { op: 'counter.set', value: n, ...base },
      );
    }
    case 'counter.delete':
      onlyFields(v, ['op', 'name', 'fence'], 'counter.delete');
      return withFence({ op: 'counter.delete', name: checkName(v.name, 'counter.delete') });
    case 'configure':
      onlyFields(v, ['op', 'indexes'], 'configure');
      return { op: 'configure', indexes: IndexManager.validateDefs(v.indexes) };
    default:
      throw bad(`unknown command op ${quote(v.op)}`);
  }
}

/** isMutation says whether a command changes user-visible state (and so takes a session seq). */
export function isMutation(c: Command): boolean {
  return c.op !== 'tick';
}
