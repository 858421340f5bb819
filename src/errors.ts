/**
 * ErrorCode is the catalogue of stable error codes. Callers branch on `code`, never on the
 * message: messages may change between releases, codes do not.
 */
export const ErrorCode = {
  /** The request reached a replica that is not the group's leader; `leaderHint` may name it. */
  NotLeader: 'NOT_LEADER',
  /** The key does not belong to the group that received it; the routing map is stale. */
  WrongGroup: 'WRONG_GROUP',
  /** No quorum is reachable, or the group has no leader. */
  Unavailable: 'UNAVAILABLE',
  /** The outcome of the request is unknown. */
  Timeout: 'TIMEOUT',
  /** A release or write with a token or lease that the caller does not hold. */
  NotOwner: 'NOT_OWNER',
  /** The fencing token is no longer the lock's current one. */
  StaleFence: 'STALE_FENCE',
  /** An `ifVersion` or `ifAbsent` condition failed. */
  VersionMismatch: 'VERSION_MISMATCH',
  /** The lease does not exist (never granted, expired or revoked). */
  LeaseNotFound: 'LEASE_NOT_FOUND',
  /** The requested revision has been compacted away. */
  Compacted: 'COMPACTED',
  /** A watcher fell behind its bounded buffer and was cut off. */
  SlowConsumer: 'SLOW_CONSUMER',
  /** A multi-key operation touched keys of more than one partition group. */
  CrossGroup: 'CROSS_GROUP',
  /** The request is malformed or names an impossible value. */
  InvalidArgument: 'INVALID_ARGUMENT',
  /** A key, value, message or request exceeds its size limit. */
  TooLarge: 'TOO_LARGE',
  /** A bounded queue or log is full; the caller should back off and retry. */
  Overloaded: 'OVERLOADED',
  /** A store's quota (keys, bytes, watches, leases or locks) is used up; free some first. */
  QuotaExceeded: 'QUOTA_EXCEEDED',
  /** The caller did not authenticate. */
  Unauthenticated: 'UNAUTHENTICATED',
  /** The caller is authenticated but not allowed to do this. */
  PermissionDenied: 'PERMISSION_DENIED',
  /** The named store does not exist. */
  StoreNotFound: 'STORE_NOT_FOUND',
  /** Stored data failed its checksum; the affected group refuses to serve. */
  Corrupted: 'CORRUPTED',
  /** The operation was cancelled by its caller (AbortSignal) or by shutdown. */
  Cancelled: 'CANCELLED',
  /** A resource (data directory, port) is already in use. */
  InUse: 'IN_USE',
  /** The requested thing does not exist (a key, a file, an instance). */
  NotFound: 'NOT_FOUND',
  /** The operation is not supported in this build or configuration. */
  Unsupported: 'UNSUPPORTED',
  /** The thing to create exists already (a store, a member). */
  AlreadyExists: 'ALREADY_EXISTS',
} as const;

/** ErrorCode's values: the strings that appear on the wire and in `DkvError.code`. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const codes: ReadonlySet<string> = new Set(Object.values(ErrorCode));

/** isErrorCode tells whether a string (for example, decoded from the wire) is a known code. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && codes.has(value);
}

/** DkvErrorDetails carries the machine-readable extras that some codes come with. */
export interface DkvErrorDetails {
  /** With NOT_LEADER: the member id of the leader, when known. */
  readonly leaderHint?: number;
  /** With NOT_LEADER: the leader's client address (host:port), when known. */
  readonly address?: string;
  /** With SLOW_CONSUMER and a cut-off watch: the revision to resume from. */
  readonly lastRevision?: number;
  /** With WRONG_GROUP: the partition map epoch the server holds. */
  readonly epoch?: number;
  /** With COMPACTED: the oldest revision still available. */
  readonly compactRevision?: number;
  /** With CORRUPTED: the group and log index that failed the check. */
  readonly group?: number;
  readonly index?: number;
  /**
   * The id of the client request that failed (DkvClient sets it on every error it throws to
   * the caller; the same id is in the servers' logs as `rid`). Never sent on the wire.
   */
  readonly requestId?: string;
}

/**
 * DkvError is every operating error DKV reports: a bad request, an unavailable quorum, a
 * stale fence. Programmer errors (broken invariants) are not DkvErrors; they are assertions
 * that crash loudly.
 */
export class DkvError extends Error {
  override readonly name = 'DkvError';
  readonly code: ErrorCode;
  readonly details: DkvErrorDetails;

  constructor(
    code: ErrorCode,
    message: string,
    details: DkvErrorDetails = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.code = code;
    this.details = details;
  }
}

/** isDkvError narrows an unknown thrown value, optionally to one code. */
export function isDkvError(err: unknown, code?: ErrorCode): err is DkvError {
  return err instanceof DkvError && (code === undefined || err.code === code);
}

/**
 * quote renders a value that came from outside for an error message: JSON (bigints written
 * as `123n`), cut to 80 characters, and never throwing (JSON.stringify throws on a bigint,
 * which a hostile frame can carry anywhere).
 */
export function quote(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x)) ?? String(v);
  } catch {
    s = Object.prototype.toString.call(v);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
