/**
 * The cluster status merged from members' reports, and its alarms (src/node/status.ts).
 */
import { describe, expect, it } from 'vitest';
import type { MetaMember } from '../../src/node/metadata.js';
import { actualMembership, DISK_ALARM_FREE, LAG_ALARM_ENTRIES, mergeStatus } from '../../src/node/status.js';
import type { GroupReport, NodeStatus } from '../../src/transport/protocol.js';

const members: MetaMember[] = [1, 2, 3].map((id) => ({
  id,
  address: `h:${7400 + id}`,
  peerAddress: `h:${7500 + id}`,
  state: 'active',
}));

function group(id: number, over: Partial<GroupReport> = {}): GroupReport {
  return {
    id,
    store: 'default',
    isLeader: false,
    leader: 0,
    term: 1,
    commitIndex: 10,
    appliedIndex: 10,
    voters: [1, 2, 3],
    learners: [],
    ...over,
  };
}

function report(id: number, groups: GroupReport[], diskFree = 0.5): NodeStatus {
  return { id, address: `h:${7400 + id}`, peerAddress: `h:${7500 + id}`, groups, diskFree, epoch: 3 };
}

function merge(reports: NodeStatus[], targets = new Map<number, number[]>()) {
  return mergeStatus({
    members,
    reports: new Map(reports.map((r) => [r.id, r])),
    targets,
    storeOf: (g) => (g === 7 ? 'orders' : undefined),
    epoch: 3,
    from: 1,
  });
}

describe('mergeStatus', () => {
  it('shows each group as its leader reports it, with the target and the store from the metadata', () => {
    const s = merge(
      [
        report(1, [
          group(0, { isLeader: true, leader: 1, term: 2, commitIndex: 9 }),
          group(7, { leader: 2, term: 3, commitIndex: 40 }),
        ]),
        report(2, [
          group(0, { leader: 1, term: 2, commitIndex: 9 }),
          group(7, { isLeader: true, leader: 2, term: 3, commitIndex: 41, lag: 2, learners: [4] }),
        ]),
        report(3, [group(7, { leader: 2, term: 3, commitIndex: 45 })]),
      ],
      new Map([[7, [1, 2, 4]]]),
    );
    expect(s.alarms).toEqual([]);
    expect(s.groups).toEqual([
      {
        id: 0,
        store: '_meta',
        leader: 1,
        term: 2,
        commitIndex: 9,
        replicas: [1, 2, 3],
        learners: [],
        target: [1, 2, 3],
        lag: 0,
      },
      {
        id: 7,
        store: 'orders',
        leader: 2,
        term: 3,
        commitIndex: 41,
        replicas: [1, 2, 3],
        learners: [4],
        target: [1, 2, 4],
        lag: 2,
      },
    ]);
    expect(s.members.map((m) => [m.id, m.healthy, m.state])).toEqual([
      [1, true, 'active'],
      [2, true, 'active'],
      [3, true, 'active'],
    ]);
    expect(
      actualMembership(new Map([[2, report(2, [group(7, { isLeader: true, term: 3, learners: [4] })])]])).get(
        7,
      ),
    ).toEqual({
      voters: [1, 2, 3],
      learners: [4],
      leader: 2,
      term: 3,
    });
  });

  it('prefers the newer term when two replicas claim leadership (a deposed leader not yet told)', () => {
    const s = merge([
      report(1, [group(5, { isLeader: true, leader: 1, term: 4 })]),
      report(2, [group(5, { isLeader: true, leader: 2, term: 5 })]),
      report(3, [group(5, { leader: 2, term: 5 })]),
    ]);
    expect(s.groups[0]).toMatchObject({ leader: 2, term: 5 });
  });

  it('raises member-down, no-leader and no-quorum', () => {
    const oneDown = merge([report(1, [group(5, { term: 6 })]), report(2, [group(5, { term: 6 })])]);
    expect(oneDown.alarms.map((a) => [a.kind, a.member ?? a.group])).toEqual([
      ['member-down', 3],
      ['no-leader', 5],
    ]);
    expect(oneDown.members.find((m) => m.id === 3)?.healthy).toBe(false);
    const twoDown = merge([report(1, [group(5, { isLeader: true, leader: 1 })])]);
    expect(twoDown.alarms.map((a) => a.kind)).toEqual(['member-down', 'member-down', 'no-quorum']);
    expect(twoDown.alarms[2]!.message).toBe('group 5: only 1 of its 3 voters answer');
  });

  it('raises disk-nearly-full and replica-lagging', () => {
    const s = merge([
      report(1, [group(5, { isLeader: true, leader: 1, lag: LAG_ALARM_ENTRIES + 1 })], DISK_ALARM_FREE / 2),
      report(2, [], DISK_ALARM_FREE),
      report(3, []),
    ]);
    expect(s.alarms).toEqual([
      { kind: 'disk-nearly-full', member: 1, message: 'member 1: only 5.0% of its data disk is free' },
      {
        kind: 'replica-lagging',
        group: 5,
        message: `group 5: a replica is ${LAG_ALARM_ENTRIES + 1} entries behind`,
      },
    ]);
  });
});
