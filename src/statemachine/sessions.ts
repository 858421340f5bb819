/**
 * Client sessions for exactly-once mutations (Raft thesis, section 6.3). Every mutating
 * request carries (client, seq, ack): `seq` numbers the client's requests, and `ack` says the
 * client has received every answer below it. The table keeps each client's answers from
 * `ack` on, so a retry after a failover or an ambiguous timeout gets the original answer and
 * the mutation is never applied twice. Answers below `ack` are forgotten, as are clients idle
 * for longer than `sessionTtlMs` of replicated time. The table is part of the snapshot.
 *
 * Everything here is deterministic: time is the replicated clock, and expiry order is by
 * (last activity, client id), never by Map order.
 */
import { DkvError, ErrorCode } from '../errors.js';

/** ApplyResult is the deterministic answer to one command. */
export type ApplyResult =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly code: ErrorCode; readonly message: string };

/** SessionConfig bounds the table. */
export interface SessionConfig {
  /** A client idle this long (replicated time) is forgotten. */
  readonly sessionTtlMs: number;
  /** Answers kept per client (its requests in flight); more is OVERLOADED. */
  readonly resultsMax: number;
}

export const SESSION_DEFAULTS: SessionConfig = Object.freeze({ sessionTtlMs: 3_600_000, resultsMax: 1024 });

interface Session {
  /** Every seq below this has been acknowledged by the client and forgotten. */
  ack: number;
  lastActive: number;
  readonly results: Map<number, ApplyResult>;
}

/** Lookup is what the table knows about a request before it is applied. */
export type Lookup =
  | { readonly kind: 'new' }
  | { readonly kind: 'duplicate'; readonly result: ApplyResult }
  | { readonly kind: 'forgotten' };

export class Sessions {
  private readonly config: SessionConfig;
  private readonly byClient = new Map<string, Session>();

  constructor(config: Partial<SessionConfig> = {}) {
    this.config = { ...SESSION_DEFAULTS, ...config };
  }

  get size(): number {
    return this.byClient.size;
  }

  /** lookup says whether (client, seq) was already applied, and if so with what answer. */
  lookup(client: string, seq: number): Lookup {
    const s = this.byClient.get(client);
    if (!s) return { kind: 'new' };
    const result = s.results.get(seq);
    if (result) return { kind: 'duplicate', result };
    if (seq < s.ack) return { kind: 'forgotten' };
    return { kind: 'new' };
  }

  /**
   * begin records the client's activity and its `ack` before a new request is applied, and
   * refuses a request that would overflow its bounded table (OVERLOADED, deterministic).
   */
  begin(client: string, seq: number, ack: number, now: number): void {
    let s = this.byClient.get(client);
    if (!s) {
      s = { ack: 1, lastActive: now, results: new Map() };
      this.byClient.set(client, s);
    }
    s.lastActive = Math.max(s.lastActive, now);
    if (ack > s.ack) {
      for (const k of [...s.results.keys()]) if (k < ack) s.results.delete(k);
      s.ack = ack;
    }
    // A window of seqs rather than a count of answers: the oldest request in flight (seq ===
    // ack) is always admitted, so a retry that reaches a new leader late is not locked out by
    // the newer answers kept meanwhile. Kept answers lie in [ack, ack + resultsMax).
    if (seq >= s.ack + this.config.resultsMax) {
      throw new DkvError(
        ErrorCode.Overloaded,
        `request ${seq} of client ${client} is ${seq - s.ack} past its oldest unacknowledged one (the most is ${this.config.resultsMax - 1})`,
      );
    }
  }

  /** record keeps the answer to (client, seq). */
  record(client: string, seq: number, result: ApplyResult): void {
    const s = this.byClient.get(client);
    if (s && seq >= s.ack) s.results.set(seq, result);
  }

  /** update replaces a kept answer (a queued lock acquire that was later granted or timed out). */
  update(client: string, seq: number, result: ApplyResult): void {
    const s = this.byClient.get(client);
    if (s?.results.has(seq)) s.results.set(seq, result);
  }

  /** expire forgets clients idle for longer than sessionTtlMs; returns them, sorted. */
  expire(now: number): string[] {
    const gone: string[] = [];
    for (const [client, s] of this.byClient) {
      if (s.lastActive + this.config.sessionTtlMs <= now) gone.push(client);
    }
    gone.sort();
    for (const c of gone) this.byClient.delete(c);
    return gone;
  }

  /** rows is the table as plain, sorted data (for snapshots and state hashes). */
  rows(): unknown[] {
    const clients = [...this.byClient.keys()].sort();
    return clients.map((c) => {
      const s = this.byClient.get(c)!;
      const results = [...s.results.entries()].sort((a, b) => a[0] - b[0]);
      return [
        c,
        s.ack,
        s.lastActive,
        results.map(([seq, r]) => [seq, r.ok ? [1, r.value] : [0, r.code, r.message]]),
      ];
    });
  }

  /** fromRows rebuilds a table from `rows()`, validating it (CORRUPTED on malformed input). */
  static fromRows(rows: unknown, config: Partial<SessionConfig> = {}): Sessions {
    const t = new Sessions(config);
    const bad = (): DkvError => new DkvError(ErrorCode.Corrupted, 'snapshot: malformed session table');
    if (!Array.isArray(rows)) throw bad();
    for (const row of rows) {
      if (!Array.isArray(row) || row.length !== 4) throw bad();
      const [client, ack, lastActive, results] = row as [unknown, unknown, unknown, unknown];
      if (typeof client !== 'string' || !Number.isSafeInteger(ack) || !Number.isSafeInteger(lastActive))
        throw bad();
      if (!Array.isArray(results)) throw bad();
      const map = new Map<number, ApplyResult>();
      for (const r of results) {
        if (!Array.isArray(r) || r.length !== 2 || !Number.isSafeInteger(r[0]) || !Array.isArray(r[1]))
          throw bad();
        const body = r[1] as unknown[];
        if (body[0] === 1 && body.length === 2) map.set(r[0] as number, { ok: true, value: body[1] });
        else if (body[0] === 0 && typeof body[1] === 'string' && typeof body[2] === 'string')
          map.set(r[0] as number, { ok: false, code: body[1] as ErrorCode, message: body[2] });
        else throw bad();
      }
      t.byClient.set(client, { ack: ack as number, lastActive: lastActive as number, results: map });
    }
    return t;
  }
}
