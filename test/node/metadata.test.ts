/**
 * The control plane's pure decisions (src/node/metadata.ts): membership steps, placement,
 * preferred leaders, new store layouts and metadata parsing.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import {
  type GroupActual,
  type Meta,
  type MetaMember,
  type MetaStore,
  metaLearnerTarget,
  metaVoterTarget,
  nextConfStep,
  planPlacement,
  planStore,
  preferredLeaders,
  readMeta,
} from '../../src/node/metadata.js';
import { EMPTY_CONF_STATE } from '../../src/raft/index.js';
import { evenSlots } from '../../src/transport/slots.js';

function member(id: number, state: MetaMember['state'] = 'active'): MetaMember {
  return { id, address: `h:${7400 + id}`, peerAddress: `h:${7500 + id}`, state };
}

function metaOf(members: MetaMember[], stores: MetaStore[]): Meta {
  return {
    epoch: 1,
    members,
    stores,
    metaReplicas: members.slice(0, 5).map((m) => m.id),
    nextGroup: 1 + Math.max(0, ...stores.flatMap((s) => s.groups.map((g) => g.id))),
  };
}

/** settleAll makes every group's actual membership its target (moves finish at once). */
function settleAll(meta: Meta): Map<number, GroupActual> {
  const out = new Map<number, GroupActual>();
  for (const s of meta.stores) for (const g of s.groups) out.set(g.id, { voters: g.replicas, learners: [] });
  return out;
}

/** apply writes placement changes into the metadata (as the metadata leader does). */
function applyChanges(meta: Meta, changes: ReturnType<typeof planPlacement>): Meta {
  return {
    ...meta,
    stores: meta.stores.map((s) => ({
      ...s,
      groups: s.groups.map((g) => {
        const c = changes.find((x) => x.group === g.id);
        return c ? { ...g, replicas: c.replicas } : g;
      }),
    })),
  };
}

function loads(meta: Meta): Map<number, number> {
  const l = new Map<number, number>(meta.members.filter((m) => m.state === 'active').map((m) => [m.id, 0]));
  for (const s of meta.stores)
    for (const g of s.groups) for (const r of g.replicas) if (l.has(r)) l.set(r, l.get(r)! + 1);
  return l;
}

describe('nextConfStep', () => {
  it('moves any membership to any target one voter change at a time, never below the smaller size, the leader handing over before it goes', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 5 }),
        fc.uniqueArray(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 5 }),
        (from, to) => {
          let conf = { ...EMPTY_CONF_STATE, voters: [...from], learners: [] as number[] };
          let leader = from[0]!;
          const floor = Math.min(from.length, to.length);
          for (let i = 0; i < 40; i++) {
            const step = nextConfStep(
              leader,
              conf,
              to,
              [],
              () => true,
              () => true,
            );
            if (!step) break;
            const before = new Set(conf.voters);
            if (step.kind === 'transfer-leader') {
              expect(conf.voters).toContain(step.to);
              expect(to).toContain(step.to);
              leader = step.to;
              continue;
            }
            if (step.kind === 'remove') expect(step.node).not.toBe(leader);
            if (step.kind === 'add-learner') conf = { ...conf, learners: [...conf.learners, step.node] };
            if (step.kind === 'promote')
              conf = {
                ...conf,
                voters: [...conf.voters, step.node],
                learners: conf.learners.filter((n) => n !== step.node),
              };
            if (step.kind === 'remove' || step.kind === 'demote')
              conf = {
                ...conf,
                voters: conf.voters.filter((n) => n !== step.node),
                learners: conf.learners.filter((n) => n !== step.node),
              };
            const after = new Set(conf.voters);
            const changed =
              [...before].filter((n) => !after.has(n)).length +
              [...after].filter((n) => !before.has(n)).length;
            expect(changed).toBeLessThanOrEqual(1);
            expect(conf.voters.length).toBeGreaterThanOrEqual(floor);
          }
          expect([...conf.voters].sort()).toEqual([...to].sort());
          expect(conf.learners).toEqual([]);
          expect(to).toContain(leader);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('waits for a learner to catch up before promoting it, and does not add unknown members', () => {
    const conf = { ...EMPTY_CONF_STATE, voters: [1, 2, 3], learners: [4] };
    expect(
      nextConfStep(
        1,
        conf,
        [1, 2, 4],
        [],
        () => false,
        () => true,
      ),
    ).toBeUndefined();
    expect(
      nextConfStep(
        1,
        conf,
        [1, 2, 4],
        [],
        (n) => n === 4,
        () => true,
      ),
    ).toEqual({ kind: 'promote', node: 4 });
    const c2 = { ...EMPTY_CONF_STATE, voters: [1, 2, 3] };
    expect(
      nextConfStep(
        1,
        c2,
        [1, 2, 5],
        [],
        () => true,
        (n) => n !== 5,
      ),
    ).toBeUndefined();
  });

  it('keeps a leaving metadata voter as a learner (demotes it), and adds wanted learners', () => {
    const conf = { ...EMPTY_CONF_STATE, voters: [1, 2, 3, 4] };
    expect(
      nextConfStep(
        2,
        conf,
        [2, 3, 4],
        [1],
        () => true,
        () => true,
      ),
    ).toEqual({ kind: 'demote', node: 1 });
    expect(
      nextConfStep(
        2,
        { ...EMPTY_CONF_STATE, voters: [2, 3, 4] },
        [2, 3, 4],
        [5],
        () => true,
        () => true,
      ),
    ).toEqual({
      kind: 'add-learner',
      node: 5,
    });
  });
});

describe('planPlacement', () => {
  it('converges, rate-limited, to every group at full strength on active members, loads within one', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 1, max: 3 }),
        fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 3 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 0, max: 2 }),
        (initialMembers, added, partitionsPerStore, movesMax, leavingCount) => {
          // A cluster of `initialMembers`, stores laid out on them; then members join and leave.
          let meta = metaOf(
            Array.from({ length: initialMembers }, (_, i) => member(i + 1)),
            [],
          );
          for (const [i, p] of partitionsPerStore.entries()) {
            const s = planStore(meta, `s${i}`, p, 3, [], evenSlots);
            meta = { ...meta, stores: [...meta.stores, s], nextGroup: meta.nextGroup + p };
          }
          const joined = Array.from({ length: added }, (_, i) => member(initialMembers + i + 1));
          const leaving = Math.min(leavingCount, initialMembers + added - 1);
          const members = [...meta.members, ...joined].map((m) =>
            m.id <= leaving ? { ...m, state: 'leaving' as const } : m,
          );
          meta = { ...meta, members };
          const healthy = new Set(members.map((m) => m.id));
          let rounds = 0;
          for (; rounds < 500; rounds++) {
            const changes = planPlacement({ meta, actual: settleAll(meta), healthy, movesMax });
            expect(changes.length).toBeLessThanOrEqual(movesMax);
            if (changes.length === 0) break;
            meta = applyChanges(meta, changes);
          }
          expect(rounds).toBeLessThan(500);
          const active = members.filter((m) => m.state === 'active').map((m) => m.id);
          for (const s of meta.stores) {
            for (const g of s.groups) {
              expect(g.replicas.length).toBe(Math.min(3, active.length));
              expect(new Set(g.replicas).size).toBe(g.replicas.length);
              for (const r of g.replicas) expect(active).toContain(r);
            }
          }
          const l = [...loads(meta).values()];
          expect(Math.max(...l) - Math.min(...l)).toBeLessThanOrEqual(1);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('changes no group that is still moving, and counts moving groups against the limit', () => {
    let meta = metaOf([member(1), member(2), member(3)], []);
    meta = { ...meta, stores: [planStore(meta, 'a', 4, 3, [], evenSlots)] };
    meta = { ...meta, members: [...meta.members, member(4)] };
    const actual = settleAll(meta);
    // Group 1 is mid-move (a learner): it is left alone, and it uses one of the two slots.
    actual.set(1, { voters: [1, 2, 3], learners: [4] });
    const changes = planPlacement({ meta, actual, healthy: new Set([1, 2, 3, 4]), movesMax: 2 });
    expect(changes).toHaveLength(1);
    expect(changes[0]!.group).not.toBe(1);
    expect(changes[0]!.replicas).toContain(4);
  });

  it('retargets a move whose new member left before it became a voter there', () => {
    let meta = metaOf([member(1), member(2), member(3), member(4)], []);
    meta = { ...meta, stores: [planStore(meta, 'a', 1, 3, [], evenSlots)] };
    const g = meta.stores[0]!.groups[0]!;
    // The group was moving onto member 4 (a learner), and 4 is now leaving.
    const target = [...g.replicas.filter((r) => r !== g.replicas[0]), 4];
    meta = {
      ...meta,
      members: meta.members.map((m) => (m.id === 4 ? { ...m, state: 'leaving' as const } : m)),
      stores: [{ ...meta.stores[0]!, groups: [{ ...g, replicas: target }] }],
    };
    const actual = new Map([[g.id, { voters: g.replicas, learners: [4] }]]);
    const changes = planPlacement({ meta, actual, healthy: new Set([1, 2, 3, 4]), movesMax: 1 });
    expect(changes).toHaveLength(1);
    expect(changes[0]!.replicas).not.toContain(4);
    expect(changes[0]!.replicas).toHaveLength(3);
  });

  it('gives no replica to an unhealthy member', () => {
    let meta = metaOf([member(1), member(2), member(3)], []);
    meta = { ...meta, stores: [planStore(meta, 'a', 6, 3, [], evenSlots)] };
    meta = { ...meta, members: [...meta.members, member(4)] };
    expect(
      planPlacement({ meta, actual: settleAll(meta), healthy: new Set([1, 2, 3]), movesMax: 5 }),
    ).toEqual([]);
  });
});

describe('preferredLeaders', () => {
  it('spreads leaders within one of even when every group is on every member, and avoids leaving members', () => {
    for (const n of [1, 2, 3]) {
      for (const groups of [1, 5, 6, 7, 20]) {
        let meta = metaOf(
          Array.from({ length: n }, (_, i) => member(i + 1)),
          [],
        );
        meta = { ...meta, stores: [planStore(meta, 's', groups, 3, [], evenSlots)] };
        const count = new Map<number, number>(meta.members.map((m) => [m.id, 0]));
        for (const l of preferredLeaders(meta).values()) count.set(l, (count.get(l) ?? 0) + 1);
        const v = [...count.values()];
        expect(count.size).toBe(n);
        expect(Math.max(...v) - Math.min(...v)).toBeLessThanOrEqual(1);
      }
    }
    let meta = metaOf([member(1, 'leaving'), member(2), member(3)], []);
    meta = {
      ...meta,
      stores: [planStore({ ...meta, members: [member(1), member(2), member(3)] }, 's', 6, 3, [], evenSlots)],
    };
    expect([...preferredLeaders(meta).values()]).not.toContain(1);
  });
});

describe('metadata voters and learners', () => {
  it('keeps up to five active voters; everyone else (leaving members too) learns', () => {
    const members = [1, 2, 3, 4, 5, 6, 7].map((id) =>
      member(id, id === 2 ? 'leaving' : id === 7 ? 'joining' : 'active'),
    );
    const meta: Meta = { ...metaOf(members, []), metaReplicas: [1, 2, 3, 4, 5] };
    expect(metaVoterTarget(meta)).toEqual([1, 3, 4, 5, 6]);
    expect(metaLearnerTarget(meta)).toEqual([6, 7]);
  });
});

describe('planStore and readMeta', () => {
  it('lays out a store least-loaded first and refuses bad input', () => {
    let meta = metaOf([member(1), member(2), member(3), member(4)], []);
    const a = planStore(meta, 'a', 2, 3, [], evenSlots);
    meta = { ...meta, stores: [a], nextGroup: 3 };
    const b = planStore(meta, 'b', 2, 3, [], evenSlots);
    expect(a.groups.map((g) => g.id)).toEqual([1, 2]);
    expect(b.groups.map((g) => g.id)).toEqual([3, 4]);
    const l = [...loads({ ...meta, stores: [a, b] }).values()];
    expect(Math.max(...l) - Math.min(...l)).toBeLessThanOrEqual(1);
    for (const g of [...a.groups, ...b.groups]) expect(g.initial).toEqual(g.replicas);
    expect(() => planStore(meta, 'a', 1, 3, [], evenSlots)).toThrow(
      expect.objectContaining({ code: ErrorCode.AlreadyExists }),
    );
    expect(() => planStore(meta, 'bad name', 1, 3, [], evenSlots)).toThrow(/letters, digits/);
    expect(() => planStore(meta, 'c', 0, 3, [], evenSlots)).toThrow(/partitions/);
    expect(() => planStore(meta, 'c', 1, 9, [], evenSlots)).toThrow(/replicas/);
  });

  it('reads older records (no peer address, state, initial replicas) and skips malformed ones', () => {
    const keys: Record<string, unknown> = {
      members: [
        { id: 2, address: 'b:1' },
        { id: 1, address: 'a:1', peerAddress: 'a:2', state: 'leaving' },
        { bad: true },
      ],
      epoch: 4,
    };
    const meta = readMeta(
      (k) => keys[k],
      [
        { name: 's', epoch: 1, groups: [{ id: 3, slots: [[0, 1024]], replicas: [1, 2] }] },
        { name: 'broken' },
      ],
    );
    expect(meta?.members).toEqual([
      { id: 1, address: 'a:1', peerAddress: 'a:2', state: 'leaving' },
      { id: 2, address: 'b:1', peerAddress: '', state: 'active' },
    ]);
    expect(meta?.stores).toHaveLength(1);
    expect(meta?.stores[0]?.groups[0]?.initial).toEqual([1, 2]);
    expect(meta?.nextGroup).toBe(4);
    expect(meta?.metaReplicas).toEqual([1, 2]);
    expect(readMeta(() => undefined, [])).toBeUndefined();
  });
});
