/**
 * Routing: which group owns a key, which member leads it, and where that member listens.
 *
 * A Routes is built from one PartitionMap (validated here: it comes off the wire) and holds
 * a slot table (slot -> group, O(1) per key) plus the leaders the client has learned since,
 * from NOT_LEADER hints, which are fresher than the map's `leader` fields. A WRONG_GROUP
 * answer means the map is stale: the client fetches a new one and builds a new Routes.
 */
import { DkvError, ErrorCode } from '../errors.js';
import type { GroupInfo, Member, PartitionMap } from '../transport/protocol.js';
import { slotOf } from '../transport/slots.js';

/** GROUPS_MAX and MEMBERS_MAX bound what a map may list (a hostile server cannot blow us up). */
const GROUPS_MAX = 65_536;
const MEMBERS_MAX = 4096;

function malformed(why: string): DkvError {
  return new DkvError(ErrorCode.Unavailable, `malformed partition map from the server: ${why}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isNat(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** checkPartitionMap validates a map received from a server. */
export function checkPartitionMap(raw: unknown): PartitionMap {
  if (!isObject(raw)) throw malformed('not a map');
  const { store, epoch, slotCount, groups, members } = raw;
  if (typeof store !== 'string') throw malformed('store');
  if (!isNat(epoch)) throw malformed('epoch');
  if (!isNat(slotCount) || slotCount < 1 || slotCount > 1 << 20) throw malformed('slotCount');
  if (!Array.isArray(groups) || groups.length > GROUPS_MAX) throw malformed('groups');
  if (!Array.isArray(members) || members.length > MEMBERS_MAX) throw malformed('members');
  const gs: GroupInfo[] = groups.map((g, i) => {
    if (!isObject(g) || !isNat(g.id) || !isNat(g.leader)) throw malformed(`groups[${i}]`);
    if (!Array.isArray(g.slots) || !Array.isArray(g.replicas)) throw malformed(`groups[${i}]`);
    const slots = g.slots.map((r) => {
      if (
        !Array.isArray(r) ||
        r.length !== 2 ||
        !isNat(r[0]) ||
        !isNat(r[1]) ||
        r[0] > r[1] ||
        r[1] > slotCount
      )
        throw malformed(`groups[${i}].slots`);
      return [r[0], r[1]] as const;
    });
    if (!g.replicas.every(isNat)) throw malformed(`groups[${i}].replicas`);
    return { id: g.id, slots, replicas: g.replicas as number[], leader: g.leader };
  });
  const ms: Member[] = members.map((m, i) => {
    if (!isObject(m) || !isNat(m.id) || typeof m.address !== 'string') throw malformed(`members[${i}]`);
    return { id: m.id, address: m.address };
  });
  return { store, epoch, slotCount, groups: gs, members: ms };
}

/** Routes answers routing questions for one partition map. */
export class Routes {
  readonly map: PartitionMap;
  /** slot -> index into map.groups, -1 when no group owns it. */
  private readonly slotGroup: Int32Array;
  private readonly groupById = new Map<number, GroupInfo>();
  private readonly addressById = new Map<number, string>();
  private readonly idByAddress = new Map<string, number>();
  /** Leaders learned from redirects (member id; 0 = unknown), overriding the map's. */
  private readonly learned = new Map<number, number>();

  constructor(map: PartitionMap) {
    this.map = map;
    this.slotGroup = new Int32Array(map.slotCount).fill(-1);
    map.groups.forEach((g, i) => {
      this.groupById.set(g.id, g);
      for (const [from, to] of g.slots) this.slotGroup.fill(i, from, to);
    });
    for (const m of map.members) {
      this.addressById.set(m.id, m.address);
      this.idByAddress.set(m.address, m.id);
    }
  }

  /** groupOf returns the group that owns `key`, or undefined when the map has a hole there. */
  groupOf(key: string): GroupInfo | undefined {
    const slot = slotOf(key) % this.map.slotCount;
    const i = this.slotGroup[slot]!;
    return i < 0 ? undefined : this.map.groups[i];
  }

  /** group returns a group by id. */
  group(id: number): GroupInfo | undefined {
    return this.groupById.get(id);
  }

  /** addressOf returns a member's client address. */
  addressOf(memberId: number): string | undefined {
    return this.addressById.get(memberId);
  }

  /** memberAt returns the member that listens at `address`. */
  memberAt(address: string): number | undefined {
    return this.idByAddress.get(address);
  }

  /** leaderOf returns the leader's member id as best known (0: unknown). */
  leaderOf(groupId: number): number {
    return this.learned.get(groupId) ?? this.groupById.get(groupId)?.leader ?? 0;
  }

  /** noteLeader records a leader learned from a redirect (0 forgets it: unknown). */
  noteLeader(groupId: number, memberId: number): void {
    this.learned.set(groupId, memberId);
  }
}
