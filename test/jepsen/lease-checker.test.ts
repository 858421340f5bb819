/**
 * The leases and TTL checker: each rule on a hand-built history that breaks it and on a
 * near miss that does not, the options, malformed input, the CLI path, and a property:
 * histories recorded from a simulated correct lease server (clock rates within rateMax,
 * expiry side effects within lateMs, effects anywhere inside each op's interval) are valid.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkLease, type LeaseCheckOptions } from '../../jepsen-like/checkers/lease.js';
import { ExitCode, main } from '../../jepsen-like/cli.js';
import { type History, pairEvents, toEvent } from '../../jepsen-like/history.js';
import { type CheckerResult, formatCheckerResult } from '../../jepsen-like/verdict.js';
import { SeededRandom } from '../../src/random.js';
import { jsonl } from './helpers.js';

/** Spec is one op of a Script: its own process, invoked at t0, completed at t1 (none: open). */
interface Spec {
  readonly f: string;
  readonly key: string;
  readonly t0: number;
  readonly t1?: number;
  readonly status?: 'ok' | 'fail' | 'info';
  /** The invoke's value. */
  readonly value?: unknown;
  /** The completion's value (default: the invoke's). */
  readonly out?: unknown;
  /** The invoke's `lease` field. */
  readonly lease?: string;
}

/** Script builds a history from ops with times; events are ordered by time, then by insertion. */
class Script {
  private readonly raw: { time: number; seq: number; ev: Record<string, unknown> }[] = [];
  private process = 0;

  /** unitNs is how many ns one unit of a Spec's times is (1e6: times in ms). */
  constructor(private readonly unitNs = 1e6) {}

  add(...specs: Spec[]): this {
    for (const s of specs) {
      const process = this.process++;
      const base = { process, f: s.f, key: s.key };
      this.push(s.t0, {
        ...base,
        type: 'invoke',
        value: s.value ?? null,
        ...(s.lease === undefined ? {} : { lease: s.lease }),
      });
      if (s.t1 !== undefined)
        this.push(s.t1, {
          ...base,
          type: s.status ?? 'ok',
          value: s.out === undefined ? (s.value ?? null) : s.out,
        });
    }
    return this;
  }

  private push(t: number, ev: Record<string, unknown>): void {
    this.raw.push({ time: Math.round(t * this.unitNs), seq: this.raw.length, ev });
  }

  events(): Record<string, unknown>[] {
    return [...this.raw]
      .sort((a, b) => a.time - b.time || a.seq - b.seq)
      .map((r, index) => ({ index, time: r.time, ...r.ev }));
  }

  history(): History {
    return pairEvents(this.events().map((e, i) => toEvent(e, i + 1)));
  }

  check(options: LeaseCheckOptions = {}): CheckerResult {
    return checkLease(this.history(), options);
  }
}

function kinds(r: CheckerResult): string[] {
  return [...new Set(r.violations.map((v) => v.kind))].sort();
}

const TTL = 1000;
/** lease: a script with lease L granted at [0, 10] ms (ttl 1000 ms) and key k bound to it at [20, 30]. */
function lease(ttlMs = TTL): Script {
  return new Script().add(
    { f: 'grant', key: 'L', t0: 0, t1: 10, value: { ttlMs }, out: 7 },
    { f: 'lput', key: 'k', lease: 'L', t0: 20, t1: 30, value: 'v' },
  );
}
const read = (t0: number, t1: number, out: unknown): Spec => ({ f: 'lread', key: 'k', t0, t1, out });

describe('lease checker: no early vanish', () => {
  // Earliest deadline: grant invoked at 0 + 1000 / rateMax - 50 (slack) = 950 ms.
  it('finds a key gone before the earliest deadline, naming the ops with indexes and times', () => {
    const r = lease()
      .add(read(100, 110, null))
      .check();
    expect(kinds(r)).toEqual(['early-vanish']);
    const [v] = r.violations;
    expect(v!.key).toBe('k');
    expect(v!.ops).toEqual([0, 1, 2]);
    expect(v!.message).toContain('op 2 lread "k" (invoked index 4 at 100.000 ms, ok index 5 at 110.000 ms)');
    expect(v!.message).toContain('earliest deadline at 950.000 ms');
    expect(formatCheckerResult(r)[0]).toMatch(/^lease: INVALID/);
  });

  it('accepts a key gone just after the earliest deadline', () => {
    expect(
      lease()
        .add(read(940, 951, null))
        .check().valid,
    ).toBe(true);
    expect(
      kinds(
        lease()
          .add(read(940, 949, null))
          .check(),
      ),
    ).toEqual(['early-vanish']);
  });

  it('moves the earliest deadline with every ok keepalive invoked before the read completed', () => {
    const keep: Spec = { f: 'keepalive', key: 'L', t0: 500, t1: 510, out: TTL };
    expect(
      kinds(
        lease()
          .add(keep, read(1200, 1210, null))
          .check(),
      ),
    ).toEqual(['early-vanish']);
    expect(
      lease()
        .add(keep, read(1440, 1460, null))
        .check().valid,
    ).toBe(true);
    // Invoked before the read completed, answered after: it proves the lease alive, so it counts.
    const late: Spec = { f: 'keepalive', key: 'L', t0: 1190, t1: 1300 };
    expect(
      kinds(
        lease()
          .add(read(1100, 1200, null), late)
          .check(),
      ),
    ).toEqual(['early-vanish']);
    // Failed and unknown keepalives do not count (they would put it at 1450 ms).
    const failed: Spec = { ...keep, status: 'fail', out: null };
    const unknown: Spec = { ...keep, status: 'info', out: null };
    expect(
      lease()
        .add(failed, read(960, 970, null))
        .check().valid,
    ).toBe(true);
    expect(
      lease()
        .add(unknown, read(960, 970, null))
        .check().valid,
    ).toBe(true);
  });

  it('accepts a vanish with a revoke tried before the read completed (ok or unknown, not failed)', () => {
    const revoke = (status: 'ok' | 'info' | 'fail'): Spec => ({
      f: 'revoke',
      key: 'L',
      t0: 90,
      t1: 200,
      status,
    });
    expect(
      lease()
        .add(revoke('ok'), read(100, 110, null))
        .check().valid,
    ).toBe(true);
    expect(
      lease()
        .add(revoke('info'), read(100, 110, null))
        .check().valid,
    ).toBe(true);
    expect(
      kinds(
        lease()
          .add(revoke('fail'), read(100, 110, null))
          .check(),
      ),
    ).toEqual(['early-vanish']);
    // A revoke invoked after the read completed explains nothing.
    const after: Spec = { f: 'revoke', key: 'L', t0: 120, t1: 130 };
    expect(
      kinds(
        lease()
          .add(read(100, 110, null), after)
          .check(),
      ),
    ).toEqual(['early-vanish']);
  });

  it('accepts an absent key when the read was not invoked after the lput completed', () => {
    const s = new Script().add(
      { f: 'grant', key: 'L', t0: 0, t1: 10, value: { ttlMs: TTL } },
      { f: 'lput', key: 'k', lease: 'L', t0: 20, t1: 300, value: 'v' },
      read(100, 110, null),
    );
    expect(s.check().valid).toBe(true);
    const failed = new Script().add(
      { f: 'grant', key: 'L', t0: 0, t1: 10, value: { ttlMs: TTL } },
      { f: 'lput', key: 'k', lease: 'L', t0: 20, t1: 30, value: 'v', status: 'fail' },
      read(100, 110, null),
    );
    expect(failed.check().valid).toBe(true);
  });

  it('divides the TTL by rateMax and subtracts slackMs', () => {
    // rateMax 2: earliest = 0 + 500 - 50 = 450 ms.
    const s = lease().add(read(460, 470, null));
    expect(kinds(s.check())).toEqual(['early-vanish']);
    expect(s.check({ rateMax: 2 }).valid).toBe(true);
    expect(
      lease()
        .add(read(460, 500, null))
        .check({ rateMax: 2, slackMs: 0 }).valid,
    ).toBe(true);
    expect(
      kinds(
        lease()
          .add(read(460, 499, null))
          .check({ rateMax: 2, slackMs: 0 }),
      ),
    ).toEqual(['early-vanish']);
    // slackMs: a read completing at 940 ms is early with 50 ms of slack, not with 100 ms.
    const t = lease().add(read(930, 940, null));
    expect(kinds(t.check())).toEqual(['early-vanish']);
    expect(t.check({ slackMs: 100 }).valid).toBe(true);
  });
});

describe('lease checker: gone after revoke', () => {
  const revoke: Spec = { f: 'revoke', key: 'L', t0: 100, t1: 110 };

  it('finds the key still there after an acknowledged revoke', () => {
    const r = lease()
      .add(revoke, read(120, 130, 'v'))
      .check();
    expect(kinds(r)).toEqual(['read-after-revoke']);
    expect(r.violations[0]!.ops).toEqual([1, 2, 3]);
  });

  it('accepts the key read concurrently with the revoke, or with a revoke that failed or is unknown', () => {
    expect(
      lease()
        .add(revoke, read(105, 130, 'v'))
        .check().valid,
    ).toBe(true);
    expect(
      lease()
        .add({ ...revoke, status: 'fail' }, read(120, 130, 'v'))
        .check().valid,
    ).toBe(true);
    expect(
      lease()
        .add({ ...revoke, status: 'info' }, read(120, 130, 'v'))
        .check().valid,
    ).toBe(true);
    expect(
      lease()
        .add(revoke, read(120, 130, null))
        .check().valid,
    ).toBe(true);
  });
});

describe('lease checker: gone after the deadline', () => {
  // Latest deadline: grant completed at 10 + 1000 * rateMax = 1010 ms; with lateMs 2000: 3010 ms.
  it('finds the key still there well past the latest deadline', () => {
    const r = lease()
      .add(read(3020, 3030, 'v'))
      .check();
    expect(kinds(r)).toEqual(['read-after-expiry']);
    expect(r.violations[0]!.message).toContain('latest deadline at 1010.000 ms');
  });

  it('accepts the key read within lateMs of the latest deadline', () => {
    expect(
      lease()
        .add(read(3000, 3100, 'v'))
        .check().valid,
    ).toBe(true);
  });

  it('moves the latest deadline by the outages (no majority running) after the op that set it', () => {
    const ms = 1e6;
    // A 1500 ms outage from 500 ms: latest 1010 + 1500 = 2510, + late 2000 = 4510.
    const outages = [{ startNs: 500 * ms, endNs: 2000 * ms }];
    expect(
      lease()
        .add(read(4500, 4505, 'v'))
        .check({ outages }).valid,
    ).toBe(true);
    expect(
      kinds(
        lease()
          .add(read(4520, 4530, 'v'))
          .check({ outages }),
      ),
    ).toEqual(['read-after-expiry']);
    // An outage after the latest deadline, or one that ended before the grant, moves nothing.
    for (const late of [
      { startNs: 1020 * ms, endNs: 9000 * ms },
      { startNs: 0, endNs: 5 * ms },
    ])
      expect(
        kinds(
          lease()
            .add(read(3020, 3030, 'v'))
            .check({ outages: [late] }),
        ),
      ).toEqual(['read-after-expiry']);
    expect(() => lease().check({ outages: [{ startNs: 2, endNs: 1 }] })).toThrow(/outage/);
  });

  it('moves the latest deadline with ok keepalives invoked before the read', () => {
    const keep: Spec = { f: 'keepalive', key: 'L', t0: 500, t1: 520 };
    expect(
      lease()
        .add(keep, read(3500, 3510, 'v'))
        .check().valid,
    ).toBe(true);
    expect(
      kinds(
        lease()
          .add(keep, read(3530, 3540, 'v'))
          .check(),
      ),
    ).toEqual(['read-after-expiry']);
    // A keepalive concurrent with the read does not count (it is itself a use of a dead lease).
    const concurrent: Spec = { f: 'keepalive', key: 'L', t0: 3025, t1: 3050 };
    expect(
      kinds(
        lease()
          .add(read(3020, 3100, 'v'), concurrent)
          .check(),
      ),
    ).toEqual(['read-after-expiry', 'use-after-expiry']);
  });

  it('skips leases with a keepalive or grant of unknown outcome', () => {
    const info: Spec = { f: 'keepalive', key: 'L', t0: 200, t1: 210, status: 'info' };
    expect(
      lease()
        .add(info, read(9000, 9010, 'v'))
        .check().valid,
    ).toBe(true);
    const open: Spec = { f: 'keepalive', key: 'L', t0: 200 };
    const r = lease()
      .add(open, read(9000, 9010, 'v'))
      .check();
    expect(r.valid).toBe(true);
    expect(r.stats.untimed).toBe(1);
    const unknownGrant = new Script().add(
      { f: 'grant', key: 'L', t0: 0, t1: 10, value: { ttlMs: TTL }, status: 'info' },
      { f: 'lput', key: 'k', lease: 'L', t0: 20, t1: 30, value: 'v' },
      read(9000, 9010, 'v'),
    );
    expect(unknownGrant.check().valid).toBe(true);
    // Renewed by an unrecorded keep-alive stream (the lock workload's grants).
    const streamed = new Script().add(
      { f: 'grant', key: 'L', t0: 0, t1: 10, value: { ttlMs: TTL } },
      { f: 'lput', key: 'k', lease: 'L', t0: 20, t1: 30, value: 'v' },
      read(9000, 9010, 'v'),
    );
    expect(kinds(streamed.check())).toEqual(['read-after-expiry']);
    const events = streamed.events().map((e) => (e.f === 'grant' ? { ...e, keepalive: 'stream' } : e));
    const r2 = checkLease(pairEvents(events.map((e, i) => toEvent(e, i + 1))));
    expect(r2.valid).toBe(true);
    expect(r2.stats.untimed).toBe(1);
  });

  it('multiplies the TTL by rateMax and allows lateMs', () => {
    const s = lease().add(read(3100, 3110, 'v'));
    expect(kinds(s.check())).toEqual(['read-after-expiry']);
    expect(s.check({ rateMax: 2 }).valid).toBe(true); // 10 + 2000 + 2000 = 4010 ms
    expect(s.check({ lateMs: 2100 }).valid).toBe(true);
    expect(
      kinds(
        lease()
          .add(read(1020, 1030, 'v'))
          .check({ lateMs: 0 }),
      ),
    ).toEqual(['read-after-expiry']);
    expect(
      lease()
        .add(read(1000, 1030, 'v'))
        .check({ lateMs: 0 }).valid,
    ).toBe(true);
  });
});

describe('lease checker: no grant to a dead lease', () => {
  const revoke: Spec = { f: 'revoke', key: 'L', t0: 100, t1: 110 };
  const uses: Spec[] = [
    { f: 'lput', key: 'k2', lease: 'L', t0: 120, t1: 130, value: 'w' },
    { f: 'keepalive', key: 'L', t0: 120, t1: 130 },
    { f: 'acquire', key: 'lock', lease: 'L', t0: 120, t1: 130, out: 5 },
  ];

  for (const use of uses)
    it(`finds an ok ${use.f} invoked after the revoke completed, not one invoked before or failed`, () => {
      const r = lease().add(revoke, use).check();
      expect(kinds(r)).toEqual(['use-after-revoke']);
      expect(r.violations[0]!.ops).toEqual([2, 3]);
      expect(
        lease()
          .add(revoke, { ...use, t0: 105 })
          .check().valid,
      ).toBe(true);
      expect(
        lease()
          .add(revoke, { ...use, status: 'fail', out: null })
          .check().valid,
      ).toBe(true);
    });

  for (const use of uses)
    it(`finds an ok ${use.f} invoked past the latest deadline + lateMs, not one just before`, () => {
      const late = { ...use, t0: 3020, t1: 3030 };
      expect(kinds(lease().add(late).check())).toEqual(['use-after-expiry']);
      expect(
        lease()
          .add({ ...use, t0: 3000, t1: 3030 })
          .check().valid,
      ).toBe(true);
      expect(
        lease()
          .add({ ...late, status: 'fail', out: null })
          .check().valid,
      ).toBe(true);
      const info: Spec = { f: 'keepalive', key: 'L', t0: 200, t1: 210, status: 'info' };
      expect(lease().add(info, late).check().valid).toBe(true);
      expect(kinds(lease().add(late).check({ lateMs: 1000 }))).toEqual(['use-after-expiry']);
      expect(lease().add(late).check({ rateMax: 1.5 }).valid).toBe(true);
    });

  it('ignores acquires without a lease field', () => {
    expect(lease().add(revoke, { f: 'acquire', key: 'lock', t0: 120, t1: 130, out: 5 }).check().valid).toBe(
      true,
    );
  });

  describe('an acquire answered after its lease was revoked', () => {
    // Another lease M holds the lock with token 3; L's acquire waits, L is revoked at [200, 210].
    const base = () =>
      lease().add(
        { f: 'grant', key: 'M', t0: 40, t1: 50, value: { ttlMs: 60_000 } },
        { f: 'acquire', key: 'lock', lease: 'M', t0: 60, t1: 70, out: 3 },
        { f: 'acquire', key: 'lock', lease: 'L', t0: 100, t1: 500, out: 20 },
        { f: 'revoke', key: 'L', t0: 200, t1: 210 },
      );
    const holder = (t0: number, token: number, name = 'M'): Spec => ({
      f: 'holder',
      key: 'lock',
      t0,
      t1: t0 + 10,
      out: { lease: name, token },
    });

    it('is a violation when a later observation proves it was granted after the revoke', () => {
      const r = base().add(holder(220, 3)).check();
      expect(kinds(r)).toEqual(['granted-after-revoke']);
      expect(r.violations[0]!.ops).toEqual([5, 6, 4]);
      // Another acquire invoked after the revoke and granted a smaller token proves it too.
      const viaAcquire = base().add({ f: 'acquire', key: 'lock', lease: 'M', t0: 220, t1: 230, out: 9 });
      expect(kinds(viaAcquire.check())).toEqual(['granted-after-revoke']);
    });

    it('is not one on a late answer alone (it may be a retry answered from the session table)', () => {
      expect(base().check().valid).toBe(true);
      expect(base().add(holder(190, 3)).check().valid).toBe(true); // invoked before the revoke completed
      expect(base().add(holder(220, 25)).check().valid).toBe(true); // a newer token: no proof
      expect(
        base()
          .add({ ...holder(220, 3), out: { lease: null, token: null } })
          .check().valid,
      ).toBe(true);
    });
  });
});

describe('lease checker: the holder must be live', () => {
  const holder = (t0: number): Spec => ({
    f: 'holder',
    key: 'lock',
    t0,
    t1: t0 + 10,
    out: { lease: 'L', token: 4 },
  });
  const revoke: Spec = { f: 'revoke', key: 'L', t0: 100, t1: 110 };

  it('finds a holder read reporting a revoked lease, not one concurrent with the revoke', () => {
    const r = lease().add(revoke, holder(120)).check();
    expect(kinds(r)).toEqual(['holder-revoked']);
    expect(lease().add(revoke, holder(105)).check().valid).toBe(true);
  });

  it('finds a holder read reporting a lease past its latest deadline + lateMs, unless untimed', () => {
    expect(kinds(lease().add(holder(3020)).check())).toEqual(['holder-expired']);
    expect(lease().add(holder(3000)).check().valid).toBe(true);
    const info: Spec = { f: 'keepalive', key: 'L', t0: 200, t1: 210, status: 'info' };
    expect(lease().add(info, holder(3020)).check().valid).toBe(true);
  });

  it('accepts a free lock', () => {
    const free: Spec = { f: 'holder', key: 'lock', t0: 120, t1: 130, out: { lease: null, token: null } };
    expect(lease().add(revoke, free).check().valid).toBe(true);
  });
});

describe('lease checker: values, malformed input, options, coverage', () => {
  it('finds a value the lput did not write', () => {
    expect(
      kinds(
        lease()
          .add(read(100, 110, 'other'))
          .check(),
      ),
    ).toEqual(['wrong-value']);
    const failed = new Script().add(
      { f: 'grant', key: 'L', t0: 0, t1: 10, value: { ttlMs: TTL } },
      { f: 'lput', key: 'k', lease: 'L', t0: 20, t1: 30, value: 'v', status: 'fail' },
      read(100, 110, 'v'),
    );
    expect(kinds(failed.check())).toEqual(['wrong-value']);
    expect(
      lease()
        .add(read(25, 110, 'v'))
        .check().valid,
    ).toBe(true);
  });

  it('reports unknown references and bad fields as malformed, and still checks the rest', () => {
    const r = lease()
      .add(
        { f: 'lput', key: 'k2', lease: 'nope', t0: 40, t1: 50, value: 'v' },
        { f: 'lput', key: 'k3', t0: 40, t1: 50, value: 'v' },
        { f: 'lput', key: 'k', lease: 'L', t0: 40, t1: 50, value: 'again' },
        { f: 'lread', key: 'unwritten', t0: 60, t1: 70, out: null },
        { f: 'grant', key: 'L', t0: 60, t1: 70, value: { ttlMs: 5 } },
        { f: 'grant', key: 'F', t0: 60, t1: 70, value: { ttlMs: 5 }, status: 'fail' },
        { f: 'keepalive', key: 'F', t0: 80, t1: 90 },
        { f: 'grant', key: 'G', t0: 60, t1: 70, value: 5 },
        { f: 'holder', key: 'lock', t0: 80, t1: 90, out: 'L' },
        { f: 'holder', key: 'lock', t0: 80, t1: 90, out: { lease: 'ghost', token: 1 } },
        { f: 'acquire', key: 'lock', lease: 'L', t0: 80, t1: 90, out: 'token' },
        read(100, 110, null),
      )
      .check();
    expect(kinds(r)).toEqual(['early-vanish', 'malformed']);
    expect(r.stats['violations:malformed']).toBe(10);
    for (const v of r.violations.filter((x) => x.kind === 'malformed'))
      expect(v.ops.length).toBeGreaterThan(0);
  });

  it('rejects options out of range', () => {
    const h = lease().history();
    expect(() => checkLease(h, { rateMax: 0.5 })).toThrow(/rateMax must be >= 1/);
    expect(() => checkLease(h, { slackMs: -1 })).toThrow(/slackMs/);
    expect(() => checkLease(h, { lateMs: Number.NaN })).toThrow(/lateMs/);
  });

  it('counts what it checked, and ignores other ops', () => {
    const r = lease()
      .add(
        { f: 'keepalive', key: 'L', t0: 100, t1: 110 },
        { f: 'keepalive', key: 'L', t0: 200, t1: 210, status: 'fail' },
        read(300, 310, 'v'),
        read(1200, 1210, null),
        { f: 'acquire', key: 'lock', lease: 'L', t0: 400, t1: 410, out: 8 },
        { f: 'acquire', key: 'lock', t0: 400, t1: 410, out: 9 },
        { f: 'holder', key: 'lock', t0: 500, t1: 510, out: { lease: 'L', token: 8 } },
        { f: 'revoke', key: 'L', t0: 600, t1: 610 },
        { f: 'write', key: 'x', t0: 700, t1: 710, value: 1 },
      )
      .check();
    expect(r.valid).toBe(true);
    expect(r.stats).toEqual({
      leases: 1,
      untimed: 0,
      keepalives: 1,
      revoked: 1,
      lputs: 1,
      reads: 2,
      absent: 1,
      acquires: 1,
      holderReads: 1,
    });
  });
});

describe('jepsen check --checker lease', () => {
  async function cli(text: string): Promise<{ code: number; out: string }> {
    let out = '';
    const code = await main(['check', '--checker', 'lease', 'h.jsonl'], {
      readFile: async () => text,
      stdout: (t) => {
        out += `${t}\n`;
      },
      stderr: (t) => {
        out += `${t}\n`;
      },
    });
    return { code, out };
  }

  it('exits 1 on a violating history and 0 on a valid one', async () => {
    const bad = await cli(
      jsonl(
        lease()
          .add(read(100, 110, null))
          .events(),
      ),
    );
    expect(bad.code).toBe(ExitCode.Invalid);
    expect(bad.out).toContain('lease: INVALID');
    expect(bad.out).toContain('[early-vanish] key "k"');
    const good = await cli(
      jsonl(
        lease()
          .add(read(100, 110, 'v'), read(3000, 3010, null))
          .events(),
      ),
    );
    expect(good.code).toBe(ExitCode.Valid);
    expect(good.out).toContain('lease: valid — leases=1');
  });
});

// ---------------------------------------------------------------------------------------
// The property: a simulated correct lease server.

interface SimLease {
  readonly name: string;
  readonly ttlNs: number;
  /** When the grant took effect. */
  readonly grantedAt: number;
  deadline: number;
  /** When the revoke took effect (Infinity: never). */
  revokedAt: number;
  /** How long past its deadline the expiry side effects take (< lateMs). */
  readonly lagNs: number;
}

interface SimOp {
  readonly f: string;
  readonly key: string;
  readonly lease: string | undefined;
  readonly value: unknown;
  readonly t0: number;
  /** Effect time, strictly inside (t0, t1). */
  readonly te: number;
  readonly t1: number;
  /** lost: the answer never came (info); the effect happens only if `applies`. */
  readonly lost: boolean;
  readonly applies: boolean;
  status: 'ok' | 'fail' | 'info';
  out: unknown;
}

interface SimConfig {
  readonly rateMax: number;
  readonly lateMs: number;
  /** A planted bug: reads miss a key half a TTL before its lease's deadline. */
  readonly earlyVanish?: boolean;
}

/**
 * simulate records a history of a correct lease server: each op takes effect at a random
 * point strictly inside its interval, in effect order; a renewal lasts a random duration in
 * [ttl/rateMax, ttl·rateMax]; expiry side effects (key deletion, lock hand-off) lag the
 * deadline by less than lateMs; tokens increase.
 */
function simulate(rng: SeededRandom, config: SimConfig): Script {
  const NS = 1e6;
  const span = (lo: number, hi: number) => lo + rng.float() * (hi - lo);
  const duration = (ttlNs: number) => {
    const lo = Math.ceil(ttlNs / config.rateMax);
    const hi = Math.floor(ttlNs * config.rateMax);
    return lo + Math.floor(rng.float() * (hi - lo + 1));
  };
  const ops: SimOp[] = [];
  const interval = (t0: number) => {
    const d = rng.chance(0.1) ? span(1, 1500) * NS : span(0.01, 80) * NS;
    const t0n = Math.round(t0);
    const t1 = t0n + Math.max(3, Math.round(d));
    return { t0: t0n, te: t0n + 1 + Math.floor(rng.float() * (t1 - t0n - 1)), t1 };
  };
  const push = (f: string, key: string, t0: number, lease?: string, value: unknown = null) => {
    const lost = rng.chance(0.08);
    ops.push({
      f,
      key,
      lease,
      value,
      ...interval(t0),
      lost,
      applies: !lost || rng.chance(0.5),
      status: 'ok',
      out: null,
    });
  };

  const leases = new Map<string, SimLease>();
  const grants: SimOp[] = [];
  const leaseCount = 1 + rng.int(4);
  const locks = ['lk0', 'lk1'];
  for (let i = 0; i < leaseCount; i++) {
    const name = `L${i}`;
    const ttlMs = [200, 500, 1000][rng.int(3)]!;
    const ttlNs = ttlMs * NS;
    const g = interval(span(0, 2000) * NS);
    const grant: SimOp = {
      f: 'grant',
      key: name,
      lease: undefined,
      value: { ttlMs },
      ...g,
      lost: false,
      applies: true,
      status: 'ok',
      out: i + 1,
    };
    grants.push(grant);
    leases.set(name, {
      name,
      ttlNs,
      grantedAt: g.te,
      deadline: g.te + duration(ttlNs),
      revokedAt: Number.POSITIVE_INFINITY,
      lagNs: Math.floor(rng.float() * config.lateMs * NS),
    });
    // Uses start once the grant is answered (the client needs the lease id).
    const from = g.t1 + 1;
    let t = from;
    const keepalives = rng.int(7);
    for (let k = 0; k < keepalives; k++) {
      t += span(0.15, 0.7) * ttlNs;
      push('keepalive', name, t);
    }
    const puts = 1 + rng.int(3);
    for (let p = 0; p < puts; p++) {
      const key = `${name}/k${p}`;
      const t0 = from + span(0, 2) * ttlNs;
      push('lput', key, t0, name, `v${i}.${p}`);
      const reads = 1 + rng.int(5);
      for (let r = 0; r < reads; r++)
        push('lread', key, t0 + span(0, 4) * ttlNs + span(0, 1.5) * config.lateMs * NS);
    }
    if (rng.chance(0.4)) push('revoke', name, from + span(0, 3) * ttlNs);
    const acquires = rng.int(3);
    for (let a = 0; a < acquires; a++)
      push('acquire', locks[rng.int(locks.length)]!, from + span(0, 3) * ttlNs, name);
  }
  const horizon = Math.max(...ops.map((o) => o.t1), 1) + 2000 * NS;
  const holderReads = rng.int(12);
  for (let h = 0; h < holderReads; h++) push('holder', locks[rng.int(locks.length)]!, span(0, 1) * horizon);

  // The server, in effect order.
  const live = (l: SimLease, t: number) => t >= l.grantedAt && t < l.deadline && t < l.revokedAt;
  const ended = (l: SimLease, t: number) => t >= l.revokedAt || t >= l.deadline + l.lagNs;
  const written = new Map<string, { value: unknown; lease: SimLease }>();
  const held = new Map<string, { lease: SimLease; token: number }>();
  let token = 100;
  for (const op of [...ops].sort((a, b) => a.te - b.te)) {
    const t = op.te;
    const l = leases.get(op.lease ?? op.key);
    let ok = true;
    let out: unknown = null;
    switch (op.f) {
      case 'keepalive':
        ok = live(l!, t);
        if (ok && op.applies) l!.deadline = t + duration(l!.ttlNs);
        out = ok ? l!.ttlNs / NS : null;
        break;
      case 'revoke':
        ok = !ended(l!, t);
        if (ok && op.applies) l!.revokedAt = t;
        break;
      case 'lput':
        ok = live(l!, t);
        if (ok && op.applies) written.set(op.key, { value: op.value, lease: l! });
        break;
      case 'lread': {
        const w = written.get(op.key);
        const early =
          config.earlyVanish === true && w !== undefined && t >= w.lease.deadline - w.lease.ttlNs / 2;
        out = w !== undefined && !ended(w.lease, t) && !early ? w.value : null;
        break;
      }
      case 'acquire': {
        const h = held.get(op.key);
        ok = live(l!, t) && (h === undefined || ended(h.lease, t));
        if (ok && op.applies) held.set(op.key, { lease: l!, token: ++token });
        out = ok ? token : null;
        break;
      }
      case 'holder': {
        const h = held.get(op.key);
        out =
          h !== undefined && !ended(h.lease, t)
            ? { lease: h.lease.name, token: h.token }
            : { lease: null, token: null };
        break;
      }
    }
    op.status = op.lost ? 'info' : ok ? 'ok' : 'fail';
    op.out = out;
  }

  const s = new Script(1);
  for (const op of [...grants, ...ops]) {
    const open = op.lost && rng.chance(0.5);
    s.add({
      f: op.f,
      key: op.key,
      t0: op.t0,
      ...(open ? {} : { t1: op.t1 }),
      status: op.status,
      value: op.value,
      out: op.status === 'ok' ? op.out : null,
      ...(op.lease === undefined ? {} : { lease: op.lease }),
    });
  }
  return s;
}

describe('lease checker: generated histories', () => {
  it('finds nothing in histories of a simulated correct lease server', () => {
    const total: Record<string, number> = {};
    fc.assert(
      fc.property(
        fc.integer(),
        fc.constantFrom(1, 1.25, 2),
        fc.constantFrom(0, 100, 2000),
        fc.constantFrom(0, 50),
        (seed, rateMax, lateMs, slackMs) => {
          const s = simulate(new SeededRandom(seed), { rateMax, lateMs });
          const r = s.check({ rateMax, lateMs, slackMs });
          expect(r.violations, formatCheckerResult(r).join('\n')).toEqual([]);
          for (const [k, n] of Object.entries(r.stats)) total[k] = (total[k] ?? 0) + n;
        },
      ),
      { numRuns: 300 },
    );
    // The runs exercised every part of the checker.
    for (const k of [
      'leases',
      'untimed',
      'keepalives',
      'revoked',
      'lputs',
      'reads',
      'absent',
      'acquires',
      'holderReads',
    ])
      expect(total[k], k).toBeGreaterThan(0);
  });

  it('catches a server whose keys vanish half a TTL early (often: a read must land in the window)', () => {
    let caught = 0;
    const runs = 100;
    for (let seed = 0; seed < runs; seed++) {
      const r = simulate(new SeededRandom(seed), { rateMax: 1, lateMs: 100, earlyVanish: true }).check({
        lateMs: 100,
      });
      if (r.valid === false) caught++;
      expect(kinds(r).filter((k) => k !== 'early-vanish')).toEqual([]);
    }
    // 30 of these 100 seeds; each history has a few reads spread over several TTLs.
    expect(caught).toBeGreaterThanOrEqual(runs / 5);
  });
});
