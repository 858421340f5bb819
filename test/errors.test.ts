import { describe, expect, it } from 'vitest';
import { DkvError, ErrorCode, isDkvError, isErrorCode, quote } from '../src/errors.js';

describe('DkvError', () => {
  it('carries a stable code, details and cause', () => {
    const cause = new Error('socket closed');
    const err = new DkvError(ErrorCode.NotLeader, 'not the leader', { leaderHint: 2 }, { cause });
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('NOT_LEADER');
    expect(err.details.leaderHint).toBe(2);
    expect(err.cause).toBe(cause);
    expect(isDkvError(err)).toBe(true);
    expect(isDkvError(err, ErrorCode.NotLeader)).toBe(true);
    expect(isDkvError(err, ErrorCode.Timeout)).toBe(false);
    expect(isDkvError(new Error('x'))).toBe(false);
  });

  it('catalogues every code the contract names', () => {
    const contract = [
      'NOT_LEADER',
      'WRONG_GROUP',
      'UNAVAILABLE',
      'TIMEOUT',
      'NOT_OWNER',
      'STALE_FENCE',
      'VERSION_MISMATCH',
      'LEASE_NOT_FOUND',
      'COMPACTED',
      'SLOW_CONSUMER',
      'CROSS_GROUP',
      'INVALID_ARGUMENT',
      'TOO_LARGE',
      'OVERLOADED',
      'UNAUTHENTICATED',
      'PERMISSION_DENIED',
      'STORE_NOT_FOUND',
    ];
    for (const code of contract) expect(isErrorCode(code), code).toBe(true);
    expect(isErrorCode('NOPE')).toBe(false);
    expect(isErrorCode(42)).toBe(false);
    // Codes are unique.
    const values = Object.values(ErrorCode);
    expect(new Set(values).size).toBe(values.length);
  });
});

describe('quote', () => {
  it('renders any value for a message, bigints and cycles included, never throwing, at most 80 characters', () => {
    expect(quote('put')).toBe('"put"');
    expect(quote([0n])).toBe('["0n"]');
    expect(quote(undefined)).toBe('undefined');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(quote(cyclic)).toBe('[object Object]');
    expect(quote('x'.repeat(200))).toHaveLength(80);
  });
});
