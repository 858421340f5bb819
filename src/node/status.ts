/**
 * The cluster status, merged from every member's own report (`nodeStatus`), and the alarms
 * an operator should look at. Pure: the node gathers the reports (node.ts, clusterStatus) and
 * this file decides what they say.
 *
 * - A member is healthy when it answered.
 * - A group is shown as its leader reports it (the highest term wins when two claim it);
 *   without a leader report, as the replica with the highest term (then commit index).
 * - Alarms: `member-down`, `disk-nearly-full` (under DISK_ALARM_FREE of a member's data disk
 *   free), `no-quorum` (a group's answering voters are not a majority), `no-leader` (a quorum
 *   answers, but no replica leads), `replica-lagging` (a replica more than LAG_ALARM_ENTRIES
 *   behind its leader's commit index).
 */
import type {
  Alarm,
  ClusterStatus,
  GroupReport,
  GroupStatus,
  MemberStatus,
  NodeStatus,
} from '../transport/protocol.js';
import { METADATA_GROUP, type MetaMember } from './metadata.js';

/** A replica this many entries behind its leader raises a `replica-lagging` alarm. */
export const LAG_ALARM_ENTRIES = 10_000;
/** Free disk below this fraction raises a `disk-nearly-full` alarm. */
export const DISK_ALARM_FREE = 0.1;

/** LeaderView is a group's membership and leader as its leader reports it. */
export interface LeaderView {
  readonly voters: number[];
  readonly learners: number[];
  readonly leader: number;
  readonly term: number;
}

/** actualMembership is each group's membership and leader, from the reports of its leaders. */
export function actualMembership(reports: ReadonlyMap<number, NodeStatus>): Map<number, LeaderView> {
  const out = new Map<number, LeaderView>();
  for (const r of reports.values()) {
    for (const g of r.groups) {
      if (!g.isLeader) continue;
      const b = out.get(g.id);
      if (!b || g.term > b.term)
        out.set(g.id, { voters: g.voters, learners: g.learners, leader: r.id, term: g.term });
    }
  }
  return out;
}

/** MergeInput is what mergeStatus needs besides the reports. */
export interface MergeInput {
  readonly members: readonly MetaMember[];
  readonly reports: ReadonlyMap<number, NodeStatus>;
  /** Each group's target voters (from the metadata). */
  readonly targets: ReadonlyMap<number, number[]>;
  /** A group's store, from the metadata, when known. */
  readonly storeOf: (group: number) => string | undefined;
  readonly epoch: number;
  readonly from: number;
}

function better(g: GroupReport, b: GroupReport | undefined): boolean {
  if (!b) return true;
  if (g.isLeader !== b.isLeader) return g.isLeader && g.term >= b.term;
  return g.term > b.term || (g.term === b.term && g.commitIndex > b.commitIndex);
}

/** mergeStatus builds the cluster status from the members' reports. */
export function mergeStatus(input: MergeInput): ClusterStatus {
  const { reports } = input;
  const members: MemberStatus[] = input.members.map((m) => ({
    id: m.id,
    address: m.address,
    peerAddress: m.peerAddress,
    healthy: reports.has(m.id),
    state: m.state,
  }));
  const best = new Map<number, GroupReport>();
  for (const r of reports.values())
    for (const g of r.groups) if (better(g, best.get(g.id))) best.set(g.id, g);
  const healthy = new Set(members.filter((m) => m.healthy).map((m) => m.id));
  const alarms: Alarm[] = [];
  for (const m of members) {
    if (!m.healthy)
      alarms.push({
        kind: 'member-down',
        member: m.id,
        message: `member ${m.id} (${m.address}) does not answer`,
      });
  }
  for (const [id, r] of reports) {
    if (r.diskFree !== undefined && r.diskFree < DISK_ALARM_FREE) {
      alarms.push({
        kind: 'disk-nearly-full',
        member: id,
        message: `member ${id}: only ${(r.diskFree * 100).toFixed(1)}% of its data disk is free`,
      });
    }
  }
  const groups: GroupStatus[] = [...best.values()]
    .sort((a, b) => a.id - b.id)
    .map((g) => {
      const up = g.voters.filter((v) => healthy.has(v)).length;
      if (up * 2 <= g.voters.length) {
        alarms.push({
          kind: 'no-quorum',
          group: g.id,
          message: `group ${g.id}: only ${up} of its ${g.voters.length} voters answer`,
        });
      } else if (!g.isLeader) {
        alarms.push({ kind: 'no-leader', group: g.id, message: `group ${g.id} has no leader right now` });
      }
      if ((g.lag ?? 0) > LAG_ALARM_ENTRIES) {
        alarms.push({
          kind: 'replica-lagging',
          group: g.id,
          message: `group ${g.id}: a replica is ${g.lag} entries behind`,
        });
      }
      return {
        id: g.id,
        store: g.id === METADATA_GROUP ? '_meta' : (input.storeOf(g.id) ?? g.store),
        leader: g.isLeader ? g.leader : 0,
        term: g.term,
        commitIndex: g.commitIndex,
        replicas: g.voters,
        learners: g.learners,
        target: input.targets.get(g.id) ?? g.voters,
        lag: g.lag ?? 0,
      };
    });
  return { members, groups, alarms, epoch: input.epoch, from: input.from };
}
