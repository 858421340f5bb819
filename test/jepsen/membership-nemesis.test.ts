/**
 * The membership nemesis (jepsen-like/runner/nemesis.ts): its pure parts (when a fault may
 * start, when a removal is done, when the cluster is restored, the `test` option no longer
 * refused), and one real run: the register workload on 3 node processes for 25 s under
 * `--nemesis membership` must be valid, with every membership fault verified (the member
 * removed from the members and from every group) and healed (the node back as an active
 * member), so the final reads run on the whole cluster.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../jepsen-like/cli.js';
import {
  holdersOf,
  type MembershipStep,
  membershipBlocker,
  removalDone,
  restored,
} from '../../jepsen-like/runner/nemesis.js';
import { runTest } from '../../jepsen-like/runner/run.js';
import { planSchedule } from '../../jepsen-like/runner/schedule.js';
import type { ClusterStatus, GroupStatus, MemberState } from '../../src/transport/protocol.js';

function group(id: number, replicas: number[], more: Partial<GroupStatus> = {}): GroupStatus {
  return {
    id,
    store: id === 0 ? '_meta' : 'default',
    leader: replicas[0] ?? 0,
    term: 1,
    commitIndex: 10,
    replicas,
    learners: [],
    target: replicas,
    lag: 0,
    ...more,
  };
}

function status(members: [number, MemberState][], groups: readonly GroupStatus[]): ClusterStatus {
  return {
    members: members.map(([id, state]) => ({
      id,
      address: `127.0.0.1:${1000 + id}`,
      peerAddress: `127.0.0.1:${2000 + id}`,
      healthy: true,
      state,
    })),
    groups,
    alarms: [],
    epoch: 1,
    from: 1,
  };
}

const whole = status(
  [
    [1, 'active'],
    [2, 'active'],
    [3, 'active'],
  ],
  [group(0, [1, 2, 3]), group(1, [1, 2, 3]), group(2, [2, 3, 1])],
);

describe('membership nemesis: pure parts', () => {
  it('starts only from a whole cluster with nothing moving', () => {
    expect(membershipBlocker(whole, [1, 2, 3])).toBeUndefined();
    expect(
      membershipBlocker(
        status(
          [
            [1, 'active'],
            [2, 'active'],
          ],
          whole.groups,
        ),
        [1, 2, 3],
      ),
    ).toMatch(/3 \(not a member\)/);
    expect(
      membershipBlocker(
        status(
          [
            [1, 'active'],
            [2, 'leaving'],
            [3, 'active'],
          ],
          whole.groups,
        ),
        [1, 2, 3],
      ),
    ).toMatch(/2 \(leaving\)/);
    const busy = status(
      [
        [1, 'active'],
        [2, 'active'],
        [3, 'active'],
      ],
      [group(0, [1, 2, 3]), group(1, [1, 2], { learners: [3], target: [1, 2, 3] })],
    );
    expect(membershipBlocker(busy, [1, 2, 3])).toMatch(/1 group\(s\) still moving/);
  });

  it('counts a member removed only when it is gone from the members and from every group', () => {
    expect(removalDone(whole, 3)).toBe(false);
    const leaving = status(
      [
        [1, 'active'],
        [2, 'active'],
        [3, 'leaving'],
      ],
      [group(0, [1, 2], { learners: [3] }), group(1, [1, 2]), group(2, [2, 3], { target: [2, 1] })],
    );
    expect(removalDone(leaving, 3)).toBe(false);
    expect(holdersOf(leaving, 3)).toEqual([0, 2]);
    const dropped = status(
      [
        [1, 'active'],
        [2, 'active'],
      ],
      [group(0, [1, 2], { learners: [3] }), group(1, [1, 2]), group(2, [2, 1])],
    );
    expect(removalDone(dropped, 3)).toBe(false);
    const gone = status(
      [
        [1, 'active'],
        [2, 'active'],
      ],
      [group(0, [1, 2]), group(1, [1, 2]), group(2, [2, 1])],
    );
    expect(removalDone(gone, 3)).toBe(true);
  });

  it('calls the cluster restored when the member is active and every group is back to its size', () => {
    const joining = status(
      [
        [1, 'active'],
        [2, 'active'],
        [3, 'joining'],
      ],
      [group(0, [1, 2], { learners: [3] }), group(1, [1, 2]), group(2, [2, 1])],
    );
    expect(restored(joining, 3, whole)).toBe(false);
    const activeSmall = status(
      [
        [1, 'active'],
        [2, 'active'],
        [3, 'active'],
      ],
      [group(0, [1, 2, 3]), group(1, [1, 2]), group(2, [2, 1])],
    );
    expect(restored(activeSmall, 3, whole)).toBe(false);
    expect(restored(whole, 3, whole)).toBe(true);
  });

  it('is scheduled like the other nemeses, one fault at a time', () => {
    const steps = planSchedule({ seed: 5, nemeses: ['membership', 'kill'], timeMs: 60_000 });
    expect(steps.some((s) => s.nemesis === 'membership')).toBe(true);
    for (let i = 1; i < steps.length; i++)
      expect(steps[i]!.atMs).toBeGreaterThan(steps[i - 1]!.atMs + steps[i - 1]!.holdMs);
  });

  it('is accepted by `jepsen test` (no longer UNSUPPORTED)', async () => {
    const err: string[] = [];
    const code = await main(['test', '--workload', 'register', '--nemesis', 'membership', '--time', '0'], {
      readFile: async () => '',
      stdout: () => undefined,
      stderr: (t) => err.push(t),
    });
    // The options are read in order: --nemesis passed, --time is what is refused.
    expect(code).toBe(2);
    expect(err.join('\n')).toMatch(/--time must be/);
    expect(err.join('\n')).not.toMatch(/UNSUPPORTED|membership/);
  });
});

const dir = mkdtempSync(join(tmpdir(), 'dkv-jepsen-membership-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('membership nemesis: a real run', () => {
  it('register under --nemesis membership on 3 nodes is valid, each member removed and re-added', async () => {
    const out = join(dir, 'register');
    const lines: string[] = [];
    const outcome = await runTest({
      workload: 'register',
      nemeses: ['membership'],
      timeSec: 25,
      nodes: 3,
      seed: 11,
      out,
      log: (l) => lines.push(l),
    });
    const r = outcome.results as {
      ops: { total: number; ok: number; fail: number; info: number };
      faults: {
        nemesis: string;
        verified: string;
        detail: {
          member: number;
          removeMs?: number;
          rejoinMs?: number;
          restoreMs?: number;
          healMs?: number;
          steps: MembershipStep[];
        };
      }[];
      phases: Record<string, number>;
      harnessProblems: string[];
    };
    const figures = {
      ops: r.ops,
      phases: r.phases,
      faults: r.faults.map((f) => ({
        member: f.detail.member,
        verified: f.verified,
        removeMs: f.detail.removeMs,
        rejoinMs: f.detail.rejoinMs,
        restoreMs: f.detail.restoreMs,
        healMs: f.detail.healMs,
        steps: f.detail.steps,
      })),
    };
    console.log(`[membership nemesis] ${JSON.stringify(figures, null, 2)}`);
    if (outcome.valid !== true)
      console.error(lines.join('\n'), readFileSync(join(out, 'results.json'), 'utf8'));
    expect(outcome.valid).toBe(true);
    expect(r.harnessProblems).toEqual([]);
    expect(r.ops.ok).toBeGreaterThan(100);
    expect(r.faults.length).toBeGreaterThan(0);
    for (const f of r.faults) {
      expect(f.nemesis).toBe('membership');
      expect(f.verified, f.verified).toMatch(/^ok/);
      // Healed: the node came back as an active member.
      expect(f.detail.steps.map((s) => s.step)).toContain('active');
      expect(f.detail.rejoinMs).toBeGreaterThan(0);
      // Fault tolerance came back, and every peer link runs through its proxy again.
      expect(f.detail.steps.map((s) => s.step)).toContain('restored');
      for (const s of f.detail.steps) expect(s.note ?? '').not.toMatch(/STILL bypasses/);
    }
    expect(lines.join('\n')).not.toMatch(/healing membership failed|did not recover/);
  }, 150_000);
});
