/**
 * Authentication and permissions.
 *
 * The auth file. Users, roles and tokens live in one JSON file (`AuthFile`) that every node of
 * a cluster is given (config `auth.file`); `dkv auth ...` edits it, and a node re-reads it when
 * it changes, so a new user or a revoked token takes effect within seconds without a restart.
 * It is not replicated through Raft: the operator distributes it, as with the certificates.
 * - A user has a password, kept as an scrypt hash (N=2^14, r=8, p=1, 16-byte salt, 32-byte
 *   key), and roles.
 * - A token is a random secret of 32 bytes (hex) kept as its SHA-256 (a token has full entropy,
 *   so a fast hash is enough), naming the user it acts as, with an optional expiry.
 * - A role is a list of grants: read, write or admin on a store (`*`: every store), optionally
 *   only under a key prefix. The built-in role `root` is admin, read and write on everything.
 * - `nodeToken` is how nodes authenticate to each other's client ports (status gathering,
 *   member checks): it makes the built-in `node` principal, which may do everything.
 *
 * Authentication. A connection authenticates once (the `auth` op, with a user and password or
 * a token); until then every op but `hello` and `auth` is refused with UNAUTHENTICATED. Over
 * TLS, a client certificate the cluster CA signed authenticates by itself: its CN names the
 * user (`node-<id>` is a node). Password checks run scrypt on the thread pool; a success is
 * remembered (keyed by a hash of user, password and salt) so that reconnecting clients do not
 * pay 50 ms each time. A failure is logged with the user name and the remote address.
 *
 * Authorization. `needsOf` says what an op needs: a permission on a store, and the keys it
 * touches or the key range it reads. A grant with a prefix covers a key that starts with the
 * prefix, and a range whose every bound starts with it. What a prefix cannot cover (index
 * queries, which span every key; store-wide counts) needs a grant without a prefix. Leases are
 * not keys: granting, renewing and revoking one needs write on the store under any prefix.
 * Admin actions on a store need admin on it; cluster actions (members, rebalancing, listing
 * stores) need admin on `*`. A refusal is PERMISSION_DENIED and is decided before anything is
 * proposed, so it changes nothing.
 */
import { createHash, randomBytes, scrypt, scryptSync, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { DkvError, ErrorCode, quote } from '../errors.js';
import type { Credentials } from '../transport/protocol.js';

/** Perm is one right on a store. */
export type Perm = 'read' | 'write' | 'admin';

const PERMS: readonly Perm[] = ['read', 'write', 'admin'];

/** Grant gives rights on a store (`*`: every store), optionally only under a key prefix. */
export interface Grant {
  readonly store: string;
  readonly prefix?: string;
  readonly perms: readonly Perm[];
}

/** PasswordHash is an scrypt hash and its parameters. */
export interface PasswordHash {
  readonly N: number;
  readonly r: number;
  readonly p: number;
  /** base64 */
  readonly salt: string;
  /** base64 */
  readonly hash: string;
}

/** AuthUser is one user of the auth file. */
export interface AuthUser {
  readonly name: string;
  readonly password?: PasswordHash;
  readonly roles: readonly string[];
}

/** AuthRole is a named list of grants. */
export interface AuthRole {
  readonly name: string;
  readonly grants: readonly Grant[];
}

/** AuthToken is a static token: its SHA-256, the user it acts as, and when it expires. */
export interface AuthToken {
  readonly name: string;
  /** hex SHA-256 of the token */
  readonly sha256: string;
  readonly user: string;
  /** ms since the epoch; absent: never */
  readonly expiresAt?: number;
}

/** AuthFile is the whole auth file. */
export interface AuthFile {
  readonly version: 1;
  readonly users: readonly AuthUser[];
  readonly roles: readonly AuthRole[];
  readonly tokens: readonly AuthToken[];
  /** The secret nodes authenticate to each other's client ports with (hex). */
  readonly nodeToken: string;
}

/** Principal is who a connection authenticated as. */
export interface Principal {
  readonly user: string;
  /** root and node principals may do everything. */
  readonly all: boolean;
  readonly grants: readonly Grant[];
  /** What it authenticated with, so a change of the auth file can be applied to it. */
  readonly basis?: Basis;
  /** The auth file generation it was resolved against. */
  readonly gen?: number;
  /** When its token expires (ms since the epoch). */
  readonly expiresAt?: number;
}

/** Basis is what a principal was authenticated with. */
type Basis =
  | { readonly kind: 'node-token'; readonly secret: string }
  | { readonly kind: 'token'; readonly sha256: string }
  | { readonly kind: 'password'; readonly user: string; readonly hash: string }
  | { readonly kind: 'cert'; readonly cn: string };

/** ROOT is the principal of in-process (embedded) calls and of the built-in root role. */
export const ALL_ACCESS: Principal = Object.freeze({ user: 'root', all: true, grants: [] });

const NAME_RE = /^[A-Za-z0-9_.@-]{1,64}$/;
const SCRYPT = { N: 1 << 14, r: 8, p: 1, keylen: 32 } as const;
/** Password checks running at once, node-wide (each holds a thread-pool thread ~50 ms). */
const SCRYPT_AT_ONCE_MAX = 2;
/** Password checks waiting for a turn; more are OVERLOADED. */
const SCRYPT_WAITING_MAX = 64;

function bad(what: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, `auth file: ${what}`);
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(`${what} must be an object`);
  return v as Record<string, unknown>;
}

function nameOf(v: unknown, what: string): string {
  if (typeof v !== 'string' || !NAME_RE.test(v)) throw bad(`${what} must be 1 to 64 of A-Z a-z 0-9 _ . @ -`);
  return v;
}

function arr(v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) throw bad(`${what} must be an array`);
  return v;
}

/** checkGrant validates one grant. */
export function checkGrant(v: unknown, what = 'grant'): Grant {
  const g = obj(v, what);
  for (const k of Object.keys(g))
    if (!['store', 'prefix', 'perms'].includes(k)) throw bad(`${what}.${k} is not a grant field`);
  const store = g.store === '*' ? '*' : nameOf(g.store, `${what}.store`);
  if (g.prefix !== undefined && (typeof g.prefix !== 'string' || g.prefix.length > 1024))
    throw bad(`${what}.prefix must be a string of at most 1024 characters`);
  const perms = arr(g.perms, `${what}.perms`).map((p) => {
    if (!PERMS.includes(p as Perm)) throw bad(`${what}.perms: ${quote(p)} is not read, write or admin`);
    return p as Perm;
  });
  if (perms.length === 0) throw bad(`${what}.perms must name at least one of read, write, admin`);
  return { store, ...(typeof g.prefix === 'string' && g.prefix !== '' && { prefix: g.prefix }), perms };
}

/** parseAuthFile validates an auth file's JSON, with an error naming the bad field. */
export function parseAuthFile(text: string): AuthFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw bad(`not JSON: ${(err as Error).message}`);
  }
  const o = obj(raw, 'the file');
  if (o.version !== 1) throw bad('version must be 1');
  const roles = arr(o.roles ?? [], 'roles').map((r, i): AuthRole => {
    const x = obj(r, `roles[${i}]`);
    return {
      name: nameOf(x.name, `roles[${i}].name`),
      grants: arr(x.grants, `roles[${i}].grants`).map((g, j) => checkGrant(g, `roles[${i}].grants[${j}]`)),
    };
  });
  const roleNames = new Set(['root', ...roles.map((r) => r.name)]);
  const users = arr(o.users ?? [], 'users').map((u, i): AuthUser => {
    const x = obj(u, `users[${i}]`);
    const userRoles = arr(x.roles ?? [], `users[${i}].roles`).map((r) => {
      if (typeof r !== 'string' || !roleNames.has(r)) throw bad(`users[${i}].roles: no role ${quote(r)}`);
      return r;
    });
    let password: PasswordHash | undefined;
    if (x.password !== undefined) {
      const p = obj(x.password, `users[${i}].password`);
      const ok =
        Number.isSafeInteger(p.N) &&
        Number.isSafeInteger(p.r) &&
        Number.isSafeInteger(p.p) &&
        typeof p.salt === 'string' &&
        typeof p.hash === 'string';
      if (!ok)
        throw bad(`users[${i}].password must be { N, r, p, salt, hash } (dkv auth user add makes one)`);
      password = p as unknown as PasswordHash;
    }
    return { name: nameOf(x.name, `users[${i}].name`), ...(password && { password }), roles: userRoles };
  });
  const userNames = new Set(users.map((u) => u.name));
  const tokens = arr(o.tokens ?? [], 'tokens').map((t, i): AuthToken => {
    const x = obj(t, `tokens[${i}]`);
    if (typeof x.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(x.sha256))
      throw bad(`tokens[${i}].sha256 must be 64 hex digits`);
    if (typeof x.user !== 'string' || !userNames.has(x.user))
      throw bad(`tokens[${i}].user: no user ${quote(x.user)}`);
    if (x.expiresAt !== undefined && !Number.isSafeInteger(x.expiresAt))
      throw bad(`tokens[${i}].expiresAt must be ms since the epoch`);
    return {
      name: nameOf(x.name, `tokens[${i}].name`),
      sha256: x.sha256,
      user: x.user,
      ...(typeof x.expiresAt === 'number' && { expiresAt: x.expiresAt }),
    };
  });
  if (typeof o.nodeToken !== 'string' || o.nodeToken.length < 32)
    throw bad('nodeToken must be a secret of 32+ characters');
  return { version: 1, users, roles, tokens, nodeToken: o.nodeToken };
}

/** hashPassword makes a PasswordHash (synchronous: for the CLI). */
export function hashPassword(password: string): PasswordHash {
  if (password.length === 0) throw new DkvError(ErrorCode.InvalidArgument, 'a password must not be empty');
  const salt = randomBytes(16);
  const hash = scryptSync(password, salt, SCRYPT.keylen, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p });
  return {
    N: SCRYPT.N,
    r: SCRYPT.r,
    p: SCRYPT.p,
    salt: salt.toString('base64'),
    hash: hash.toString('base64'),
  };
}

/** verifyPassword checks a password against its hash on the thread pool. */
export function verifyPassword(password: string, h: PasswordHash): Promise<boolean> {
  const want = Buffer.from(h.hash, 'base64');
  return new Promise((resolve) => {
    scrypt(
      password,
      Buffer.from(h.salt, 'base64'),
      want.length,
      { N: h.N, r: h.r, p: h.p, maxmem: 256 * h.N * h.r + (1 << 20) },
      (err, got) => resolve(err === null && got.length === want.length && timingSafeEqual(got, want)),
    );
  });
}

/** sha256Hex hashes a token. */
export function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** newSecret is a random 32-byte secret in hex (tokens, the node token). */
export function newSecret(): string {
  return randomBytes(32).toString('hex');
}

/** Authenticator knows the auth file and turns credentials into principals. */
export class Authenticator {
  private file: AuthFile;
  private readonly path: string | undefined;
  private mtimeMs = 0;
  private scryptInFlight = 0;
  /** Bumped on every reload: principals from an older one are revalidated on their next use. */
  private generation = 0;
  private readonly scryptWaiting: (() => void)[] = [];
  /** hash(user, password, salt) of passwords that verified: skips scrypt on reconnects. */
  private readonly verified = new Set<string>();
  private readonly log: (level: 'info' | 'warn' | 'error', msg: string, f?: Record<string, unknown>) => void;

  private constructor(file: AuthFile, path: string | undefined, log: Authenticator['log']) {
    this.file = file;
    this.path = path;
    this.log = log;
  }

  /** fromFile loads an auth file (INVALID_ARGUMENT naming the problem when it is bad). */
  static fromFile(path: string, log: Authenticator['log'] = () => {}): Authenticator {
    let text: string;
    let mtimeMs: number;
    try {
      text = readFileSync(path, 'utf8');
      mtimeMs = statSync(path).mtimeMs;
    } catch (err) {
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `auth.file: cannot read ${path}: ${(err as Error).message}`,
      );
    }
    const a = new Authenticator(parseAuthFile(text), path, log);
    a.mtimeMs = mtimeMs;
    return a;
  }

  /** of wraps an AuthFile already in memory (tests). */
  static of(file: AuthFile): Authenticator {
    return new Authenticator(file, undefined, () => {});
  }

  /** nodeToken is what this node authenticates to other nodes with. */
  get nodeToken(): string {
    return this.file.nodeToken;
  }

  /**
   * reloadIfChanged re-reads the file when its mtime moved. A file that no longer parses is
   * logged and ignored (the last good one stays in force).
   */
  reloadIfChanged(): void {
    if (this.path === undefined) return;
    try {
      const m = statSync(this.path).mtimeMs;
      if (m === this.mtimeMs) return;
      const next = parseAuthFile(readFileSync(this.path, 'utf8'));
      this.mtimeMs = m;
      this.file = next;
      this.generation++;
      this.verified.clear();
      this.log('info', 'auth file reloaded', {
        file: this.path,
        users: next.users.length,
        tokens: next.tokens.length,
      });
    } catch (err) {
      this.log('error', 'auth file not reloaded: keeping the last good one', {
        file: this.path,
        err: String(err),
      });
    }
  }

  /** authenticate checks credentials; UNAUTHENTICATED (never saying which part was wrong) otherwise. */
  async authenticate(c: Credentials, nowMs: number): Promise<Principal> {
    const refuse = (): never => {
      throw new DkvError(
        ErrorCode.Unauthenticated,
        'authentication failed: unknown user, wrong password or bad token',
      );
    };
    if ('token' in c) {
      if (
        c.token.length === this.file.nodeToken.length &&
        timingSafeEqual(Buffer.from(c.token), Buffer.from(this.file.nodeToken))
      )
        return this.stamp({ user: 'node', all: true, grants: [] }, { kind: 'node-token', secret: c.token });
      const h = sha256Hex(c.token);
      const t = this.file.tokens.find((x) => x.sha256 === h);
      if (t === undefined) return refuse();
      if (t.expiresAt !== undefined && t.expiresAt <= nowMs)
        throw new DkvError(
          ErrorCode.Unauthenticated,
          `token ${t.name} expired at ${new Date(t.expiresAt).toISOString()}`,
        );
      const p = this.principalOf(t.user);
      return p ? this.stamp(p, { kind: 'token', sha256: h }, t.expiresAt) : refuse();
    }
    const u = this.file.users.find((x) => x.name === c.user);
    if (u?.password === undefined) return refuse();
    const key = sha256Hex(`${u.name}\0${c.password}\0${u.password.salt}\0${u.password.hash}`);
    if (!this.verified.has(key)) {
      // scrypt costs ~50 ms of a thread-pool thread: a flood of guesses must not take the
      // pool (LevelDB uses it too). SCRYPT_AT_ONCE_MAX run at once, SCRYPT_WAITING_MAX wait
      // their turn, and beyond that a check is refused with OVERLOADED.
      if (this.scryptInFlight >= SCRYPT_AT_ONCE_MAX) {
        if (this.scryptWaiting.length >= SCRYPT_WAITING_MAX)
          throw new DkvError(ErrorCode.Overloaded, 'too many password checks at once; retry');
        await new Promise<void>((r) => this.scryptWaiting.push(r));
      } else this.scryptInFlight++;
      let ok: boolean;
      try {
        ok = await verifyPassword(c.password, u.password);
      } finally {
        const next = this.scryptWaiting.shift();
        if (next)
          next(); // hands its slot over
        else this.scryptInFlight--;
      }
      if (!ok) return refuse();
      if (this.verified.size > 10_000) this.verified.clear();
      this.verified.add(key);
    }
    const p = this.principalOf(u.name);
    return p ? this.stamp(p, { kind: 'password', user: u.name, hash: u.password.hash }) : refuse();
  }

  private stamp(p: Principal, basis: Basis, expiresAt?: number): Principal {
    return { ...p, basis, gen: this.generation, ...(expiresAt !== undefined && { expiresAt }) };
  }

  /**
   * revalidate applies the current auth file to a connection's principal: undefined when its
   * token expired, or its user, password, token or node secret is no longer in the file; the
   * principal with its current grants otherwise. Cheap when nothing changed (one compare).
   */
  revalidate(p: Principal, nowMs: number): Principal | undefined {
    if (p.basis === undefined) return p;
    if (p.expiresAt !== undefined && p.expiresAt <= nowMs) return undefined;
    if (p.gen === this.generation) return p;
    const b = p.basis;
    switch (b.kind) {
      case 'node-token':
        return b.secret === this.file.nodeToken ? this.stamp(p, b) : undefined;
      case 'token': {
        const t = this.file.tokens.find((x) => x.sha256 === b.sha256);
        const q = t && this.principalOf(t.user);
        return q ? this.stamp(q, b, t.expiresAt) : undefined;
      }
      case 'password': {
        const u = this.file.users.find((x) => x.name === b.user);
        const q = u?.password?.hash === b.hash ? this.principalOf(b.user) : undefined;
        return q ? this.stamp(q, b) : undefined;
      }
      case 'cert': {
        const q = this.principalOfCert(b.cn);
        return q ? this.stamp(q, b) : undefined;
      }
    }
  }

  /** principalOfCert maps a verified client certificate's CN to a principal (undefined: none). */
  principalOfCert(cn: string | undefined): Principal | undefined {
    if (cn === undefined) return undefined;
    if (/^node-[1-9][0-9]*$/.test(cn))
      return this.stamp({ user: 'node', all: true, grants: [] }, { kind: 'cert', cn });
    const p = this.principalOf(cn);
    return p && this.stamp(p, { kind: 'cert', cn });
  }

  private principalOf(user: string): Principal | undefined {
    const u = this.file.users.find((x) => x.name === user);
    if (u === undefined) return undefined;
    if (u.roles.includes('root')) return { user: u.name, all: true, grants: [] };
    const grants = u.roles.flatMap((r) => this.file.roles.find((x) => x.name === r)?.grants ?? []);
    return { user: u.name, all: false, grants };
  }
}

// ---------------------------------------------------------------- authorization

/**
 * Need is one thing an op needs: `perm` on `store`, and then either every key in `keys`, a
 * key range (`range`: each bound given must lie under the grant's prefix, and a prefix-bound
 * grant needs at least a prefix or both ends), or, with `whole`, a grant with no prefix. With
 * none of these, any grant of that perm on the store will do (leases).
 */
export interface Need {
  readonly store: string;
  readonly perm: Perm;
  readonly keys?: readonly string[];
  readonly range?: {
    readonly prefix?: string;
    readonly start?: string;
    readonly end?: string;
    readonly after?: string;
  };
  readonly whole?: boolean;
}

function grantCovers(g: Grant, n: Need): boolean {
  if (g.store !== '*' && g.store !== n.store) return false;
  if (!g.perms.includes(n.perm)) return false;
  const p = g.prefix;
  if (p === undefined) return true;
  if (n.whole) return false;
  if (n.keys !== undefined) return n.keys.every((k) => k.startsWith(p));
  if (n.range !== undefined) {
    const r = n.range;
    const bounds = [r.prefix, r.start, r.end, r.after].filter((b): b is string => b !== undefined);
    // A prefix bound narrows the scan to keys starting with it; start/end alone must both sit
    // under the grant's prefix (end is exclusive: the prefix's successor is allowed too).
    if (r.prefix?.startsWith(p)) return bounds.every((b) => b.startsWith(p) || b === successor(p));
    if (r.start === undefined || r.end === undefined) return false;
    return bounds.every((b) => b.startsWith(p) || b === successor(p));
  }
  return true;
}

function successor(p: string): string {
  return p.length === 0 ? p : p.slice(0, -1) + String.fromCharCode(p.charCodeAt(p.length - 1) + 1);
}

/** authorize throws PERMISSION_DENIED unless the principal covers every need. */
export function authorize(p: Principal, needs: readonly Need[], what: string): void {
  if (p.all) return;
  for (const n of needs) {
    if (p.grants.some((g) => grantCovers(g, n))) continue;
    const where = n.keys?.length
      ? ` key ${quote(n.keys.find((k) => !p.grants.some((g) => grantCovers(g, { ...n, keys: [k] }))) ?? n.keys[0])}`
      : n.range
        ? ' that key range'
        : n.whole
          ? ' the whole store'
          : '';
    throw new DkvError(
      ErrorCode.PermissionDenied,
      `user ${p.user} may not ${what}: it needs ${n.perm} on store ${quote(n.store)}${where}`,
    );
  }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** PROBE_KEY_PREFIX starts the keys the client's revision probes watch (never written). */
const PROBE_KEY_PREFIX = '\u0000dkv-probe-';

/** keysOfOps lists the keys of txn ops and compares. */
function keysOf(list: unknown): string[] {
  if (!Array.isArray(list)) return [];
  return list.map((o) => str((o as { key?: unknown } | null)?.key) ?? '');
}

/**
 * needsOf says what a client op needs. Unknown shapes need admin on the whole store (they are
 * refused later as INVALID_ARGUMENT anyway, for those allowed to try).
 */
export function needsOf(op: string, a: Record<string, unknown>): { needs: Need[]; what: string } {
  const r = needsOfOp(op, a);
  // The revision-probe keys may be watched with any read right (see 'watch' below), so only
  // an admin of the store may write them: nothing a prefix-bound reader should not see can
  // be put there.
  const probe = r.needs.some(
    (n) => n.perm === 'write' && n.keys?.some((k) => k.startsWith(PROBE_KEY_PREFIX)),
  );
  if (op === 'cmd' && probe)
    return { needs: [...r.needs, { store: str(a.store) ?? '', perm: 'admin', whole: true }], what: r.what };
  return r;
}

function needsOfOp(op: string, a: Record<string, unknown>): { needs: Need[]; what: string } {
  const store = str(a.store) ?? '';
  switch (op) {
    case 'map':
      // Routing: anyone with any right on the store (checked as read under any prefix).
      return { needs: [{ store, perm: 'read' }], what: 'read the partition map' };
    case 'status':
    case 'nodeStatus':
      return { needs: [], what: op };
    case 'admin': {
      const action = str(a.action) ?? '';
      const name = str(a.name) ?? '';
      if (action === 'store.create' || action === 'store.delete' || action === 'store.describe')
        return { needs: [{ store: name, perm: 'admin', whole: true }], what: action };
      return { needs: [{ store: '*', perm: 'admin', whole: true }], what: action || 'admin' };
    }
    case 'cmd': {
      const cmd = (typeof a.cmd === 'object' && a.cmd !== null ? a.cmd : {}) as Record<string, unknown>;
      const c = str(cmd.op) ?? '';
      const fence = (cmd.fence as { lock?: unknown } | undefined)?.lock;
      const withFence = (keys: string[]): string[] => (typeof fence === 'string' ? [...keys, fence] : keys);
      switch (c) {
        case 'put':
        case 'delete':
          return { needs: [{ store, perm: 'write', keys: withFence([str(cmd.key) ?? '']) }], what: c };
        case 'txn': {
          const reads = keysOf(cmd.compare);
          const ops = [
            ...(Array.isArray(cmd.success) ? cmd.success : []),
            ...(Array.isArray(cmd.failure) ? cmd.failure : []),
          ];
          const writes = ops.filter((o) => (o as { op?: unknown })?.op !== 'get');
          const gets = ops.filter((o) => (o as { op?: unknown })?.op === 'get');
          const needs: Need[] = [];
          if (writes.length > 0) needs.push({ store, perm: 'write', keys: withFence(keysOf(writes)) });
          if (reads.length + gets.length > 0)
            needs.push({ store, perm: 'read', keys: [...reads, ...keysOf(gets)] });
          return { needs, what: 'txn' };
        }
        case 'lock.acquire':
        case 'lock.release':
        case 'counter.add':
        case 'counter.set':
        case 'counter.delete':
          return { needs: [{ store, perm: 'write', keys: withFence([str(cmd.name) ?? '']) }], what: c };
        case 'lease.grant':
        case 'lease.keepAlive':
          return { needs: [{ store, perm: 'write' }], what: c };
        case 'lease.revoke': {
          const lock = str((cmd.lock as { name?: unknown } | undefined)?.name);
          return { needs: [{ store, perm: 'write', ...(lock !== undefined && { keys: [lock] }) }], what: c };
        }
        case 'get':
          return { needs: [{ store, perm: 'read', keys: [str(cmd.key) ?? ''] }], what: 'get' };
        default:
          return { needs: [{ store, perm: 'admin', whole: true }], what: c || 'cmd' };
      }
    }
    case 'read': {
      const r = (typeof a.read === 'object' && a.read !== null ? a.read : {}) as Record<string, unknown>;
      const c = str(r.op) ?? '';
      switch (c) {
        case 'get':
          return { needs: [{ store, perm: 'read', keys: [str(r.key) ?? ''] }], what: 'get' };
        case 'counter.get':
        case 'lock.describe':
          return { needs: [{ store, perm: 'read', keys: [str(r.name) ?? ''] }], what: c };
        case 'scan':
        case 'count': {
          const range = {
            ...(str(r.prefix) !== undefined && { prefix: str(r.prefix) }),
            ...(str(r.start) !== undefined && { start: str(r.start) }),
            ...(str(r.end) !== undefined && { end: str(r.end) }),
            ...(str(r.after) !== undefined && { after: str(r.after) }),
          };
          return { needs: [{ store, perm: 'read', range }], what: c };
        }
        case 'lease.ttl':
        case 'lease.list':
          return { needs: [{ store, perm: 'read' }], what: c };
        default:
          // query (an index spans every key) and anything else: the whole store.
          return { needs: [{ store, perm: 'read', whole: true }], what: c || 'read' };
      }
    }
    case 'watch': {
      const key = str(a.key);
      const prefix = str(a.prefix);
      // The client learns a group's revision with a snapshot watch of a key no one writes
      // (src/client/watch.ts, `\0dkv-probe-N`): any read right on the store may do that.
      if (key?.startsWith(PROBE_KEY_PREFIX) && a.prefix === undefined)
        return { needs: [{ store, perm: 'read' }], what: 'watch' };
      if (key !== undefined) return { needs: [{ store, perm: 'read', keys: [key] }], what: 'watch' };
      return { needs: [{ store, perm: 'read', range: { prefix: prefix ?? '' } }], what: 'watch' };
    }
    case 'keepalive':
      return { needs: [{ store, perm: 'write' }], what: 'keep a lease alive' };
    default:
      return { needs: [{ store: '*', perm: 'admin', whole: true }], what: op };
  }
}
