/**
 * The metadata group's schema and the control plane's pure decisions.
 *
 * The metadata group (group 0) is an ordinary group whose keys hold the cluster's own state;
 * it is the control plane's source of truth (DESIGN.md, "Ownership and routing"):
 *
 *   members        MetaMember[]: every member, its addresses and its state
 *   stores/<name>  MetaStore: partitions, replica count, indexes, and each group's slots,
 *                  initial replicas (who bootstrapped it) and target replicas
 *   meta/replicas  number[]: the target voters of the metadata group itself (up to 5)
 *   meta/nextGroup number: the next unused group id (ids are never reused)
 *   epoch          number: bumps on every change of any of the above
 *
 * Every member hosts a replica of the metadata group (a voter, or a learner beyond the first
 * five), so every node reads the cluster's layout from its own replica (`readMeta`).
 *
 * Changes are written by the metadata group's leader only, as one transaction that compares
 * `epoch` (optimistic concurrency: a change planned on a stale view is refused, not applied).
 *
 * Desired state, not commands: the metadata holds where each group's replicas should be
 * (`replicas`), and each group's leader moves its Raft membership toward that target one
 * step at a time (`nextConfStep`): add a learner, promote it once caught up, then remove a
 * voter that is no longer wanted (handing leadership away first when that voter is itself).
 * The placement planner (`planPlacement`, run by the metadata leader) changes targets, a few
 * groups at a time (rate limit), only for groups whose membership has reached their target.
 *
 * Everything here is pure: no clock, no I/O; the node feeds it the state it sees.
 */

import type { IndexDef } from '../engines/index-manager.js';
import { DkvError, ErrorCode } from '../errors.js';
import type { ConfState } from '../raft/index.js';
import type { MemberState } from '../transport/protocol.js';
import type { StoreQuotas } from './config.js';

/** METADATA_GROUP is the id of the group that holds the cluster's own state. */
export const METADATA_GROUP = 0;
/** META_VOTERS_MAX is how many voters the metadata group has at most (the rest are learners). */
export const META_VOTERS_MAX = 5;

/** MetaMember is one member of the cluster, as the metadata records it. */
export interface MetaMember {
  readonly id: number;
  /** host:port of its client port. */
  readonly address: string;
  /** host:port of its peer port. */
  readonly peerAddress: string;
  readonly state: MemberState;
}

/** MetaGroup is one partition group of a store. */
export interface MetaGroup {
  readonly id: number;
  /** The slots [from, to) it owns. */
  readonly slots: [number, number][];
  /** Target voters: where the control plane wants the replicas. */
  readonly replicas: number[];
  /** The voters it was bootstrapped with (fixed forever: they bootstrap identically). */
  readonly initial: number[];
}

/** MetaStore is one store. */
export interface MetaStore {
  readonly name: string;
  /** The metadata epoch of its last change. */
  readonly epoch: number;
  readonly partitions: number;
  /** Replicas per group (fewer while the cluster has fewer active members). */
  readonly replicas: number;
  readonly indexes: IndexDef[];
  readonly groups: MetaGroup[];
  /** The store's own quotas (absent: the nodes' configured defaults). */
  readonly quotas?: StoreQuotas;
}

/** Meta is the whole metadata, parsed. */
export interface Meta {
  readonly epoch: number;
  readonly members: MetaMember[];
  readonly stores: MetaStore[];
  /** Target voters of the metadata group. */
  readonly metaReplicas: number[];
  readonly nextGroup: number;
}

/** MetaKeys are the metadata group's keys. */
export const MetaKeys = {
  members: 'members',
  epoch: 'epoch',
  metaReplicas: 'meta/replicas',
  nextGroup: 'meta/nextGroup',
  storePrefix: 'stores/',
} as const;

/** STORE_NAME is what a store name may be. */
export const STORE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
/** Partitions per store, at most. */
export const PARTITIONS_MAX = 256;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function ids(v: unknown): number[] {
  return Array.isArray(v) ? v.filter((x): x is number => Number.isSafeInteger(x) && x > 0) : [];
}

/** parseMember reads one member record (older records lack peerAddress and state). */
function parseMember(v: unknown): MetaMember | undefined {
  if (!isRecord(v) || !Number.isSafeInteger(v.id) || typeof v.address !== 'string') return undefined;
  const state = v.state === 'joining' || v.state === 'leaving' ? v.state : 'active';
  return {
    id: v.id as number,
    address: v.address,
    peerAddress: typeof v.peerAddress === 'string' ? v.peerAddress : '',
    state,
  };
}

/** parseStore reads one store record (older records lack initial, partitions and indexes). */
export function parseStore(v: unknown): MetaStore | undefined {
  if (!isRecord(v) || typeof v.name !== 'string' || !Array.isArray(v.groups)) return undefined;
  const groups: MetaGroup[] = [];
  for (const g of v.groups) {
    if (!isRecord(g) || !Number.isSafeInteger(g.id) || !Array.isArray(g.slots)) return undefined;
    const slots = (g.slots as unknown[]).filter(
      (r): r is [number, number] =>
        Array.isArray(r) && r.length === 2 && Number.isSafeInteger(r[0]) && Number.isSafeInteger(r[1]),
    );
    const replicas = ids(g.replicas);
    groups.push({
      id: g.id as number,
      slots,
      replicas,
      initial: Array.isArray(g.initial) ? ids(g.initial) : replicas,
    });
  }
  return {
    name: v.name,
    epoch: Number.isSafeInteger(v.epoch) ? (v.epoch as number) : 1,
    partitions: Number.isSafeInteger(v.partitions) ? (v.partitions as number) : groups.length,
    replicas: Number.isSafeInteger(v.replicas) ? (v.replicas as number) : 3,
    indexes: Array.isArray(v.indexes) ? (v.indexes as IndexDef[]) : [],
    groups,
    ...(isRecord(v.quotas) && { quotas: v.quotas as unknown as StoreQuotas }),
  };
}

/**
 * readMeta parses the metadata from the metadata group's keys (`get` reads one key's value),
 * or undefined while it has not been published yet.
 */
export function readMeta(get: (key: string) => unknown, storeValues: readonly unknown[]): Meta | undefined {
  const membersRaw = get(MetaKeys.members);
  if (!Array.isArray(membersRaw)) return undefined;
  const members = membersRaw
    .map(parseMember)
    .filter((m): m is MetaMember => m !== undefined)
    .sort((a, b) => a.id - b.id);
  const stores = storeValues
    .map(parseStore)
    .filter((s): s is MetaStore => s !== undefined)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const epochRaw = get(MetaKeys.epoch);
  const metaRaw = get(MetaKeys.metaReplicas);
  const nextRaw = get(MetaKeys.nextGroup);
  const maxGroup = Math.max(0, ...stores.flatMap((s) => s.groups.map((g) => g.id)));
  return {
    epoch: Number.isSafeInteger(epochRaw) ? (epochRaw as number) : 1,
    members,
    stores,
    metaReplicas: Array.isArray(metaRaw) ? ids(metaRaw) : members.slice(0, META_VOTERS_MAX).map((m) => m.id),
    nextGroup: Math.max(Number.isSafeInteger(nextRaw) ? (nextRaw as number) : 0, maxGroup + 1),
  };
}

/** groupTargets maps every group (the metadata group included) to its target voters. */
export function groupTargets(meta: Meta): Map<number, number[]> {
  const out = new Map<number, number[]>([[METADATA_GROUP, meta.metaReplicas]]);
  for (const s of meta.stores) for (const g of s.groups) out.set(g.id, g.replicas);
  return out;
}

/**
 * preferredLeaders spreads leaderships evenly: each group in id order goes to the target
 * voter with the fewest leaderships so far (ties: the lower id), never to a member that is
 * leaving. Every node computes the same map from the same metadata, so no extra state needs
 * replicating; a group whose preferred leader is down simply keeps the leader it has.
 */
export function preferredLeaders(meta: Meta): Map<number, number> {
  const count = new Map<number, number>();
  const out = new Map<number, number>();
  const leaving = new Set(meta.members.filter((m) => m.state === 'leaving').map((m) => m.id));
  const targets = [...groupTargets(meta)].sort((a, b) => a[0] - b[0]);
  for (const [gid, all] of targets) {
    const staying = all.filter((v) => !leaving.has(v));
    const voters = staying.length > 0 ? staying : all;
    if (voters.length === 0) continue;
    let best = voters[0]!;
    for (const v of voters) {
      const c = count.get(v) ?? 0;
      const b = count.get(best) ?? 0;
      if (c < b || (c === b && v < best)) best = v;
    }
    count.set(best, (count.get(best) ?? 0) + 1);
    out.set(gid, best);
  }
  return out;
}

/** ConfStep is one membership change a group's leader should make next. */
export type ConfStep =
  | { readonly kind: 'add-learner'; readonly node: number }
  | { readonly kind: 'promote'; readonly node: number }
  | { readonly kind: 'remove'; readonly node: number }
  | { readonly kind: 'demote'; readonly node: number }
  | { readonly kind: 'transfer-leader'; readonly to: number };

/**
 * nextConfStep is what group leader `self` should do next to move the group's membership
 * (`conf`) toward `target` voters (plus `targetLearners`, for the metadata group), or
 * undefined when there is nothing to do. One step at a time, in an order that never lowers
 * the number of replicas that hold the data: a new replica joins as a learner, is promoted
 * only once it has caught up (`caughtUp`, so it does not stall commits), and a voter no longer
 * wanted is removed only once every target voter is in place. A leader that must go hands
 * its leadership to a caught-up target voter first.
 */
export function nextConfStep(
  self: number,
  conf: ConfState,
  target: readonly number[],
  targetLearners: readonly number[],
  caughtUp: (node: number) => boolean,
  known: (node: number) => boolean,
): ConfStep | undefined {
  if (target.length === 0) return undefined;
  if (conf.votersOutgoing.length > 0) return undefined; // a joint configuration: let Raft leave it
  const voters = new Set(conf.voters);
  const learners = new Set(conf.learners);
  // Promote target voters that are learners and caught up.
  for (const n of target) if (learners.has(n) && caughtUp(n)) return { kind: 'promote', node: n };
  // Add missing target voters (and wanted learners) as learners.
  for (const n of [...target, ...targetLearners]) {
    if (!voters.has(n) && !learners.has(n) && known(n)) return { kind: 'add-learner', node: n };
  }
  const allIn = target.every((n) => voters.has(n));
  if (!allIn) return undefined;
  // Remove voters no longer wanted, once every target voter is a voter.
  // (a voter that should stay a learner, as a leaving member of the metadata group does, is
  // demoted instead).
  for (const v of [...voters].sort((a, b) => a - b)) {
    if (target.includes(v)) continue;
    if (v === self) {
      const to = target.find((n) => n !== self && voters.has(n) && caughtUp(n));
      return to === undefined ? undefined : { kind: 'transfer-leader', to };
    }
    return targetLearners.includes(v) ? { kind: 'demote', node: v } : { kind: 'remove', node: v };
  }
  // Remove learners no longer wanted.
  for (const l of [...learners].sort((a, b) => a - b)) {
    if (!target.includes(l) && !targetLearners.includes(l)) return { kind: 'remove', node: l };
  }
  return undefined;
}

/** GroupActual is a group's membership as its leader reports it. */
export interface GroupActual {
  readonly voters: readonly number[];
  readonly learners: readonly number[];
}

/** settled: the group's membership is its target (no move running). */
export function settled(target: readonly number[], actual: GroupActual | undefined): boolean {
  if (!actual) return false;
  if (actual.learners.length > 0) return false;
  return actual.voters.length === target.length && target.every((n) => actual.voters.includes(n));
}

/** PlacementChange sets one group's target voters. */
export interface PlacementChange {
  readonly store: string;
  readonly group: number;
  readonly replicas: number[];
  readonly why: string;
}

/** PlacementInput is what the planner sees. */
export interface PlacementInput {
  readonly meta: Meta;
  /** Each group's actual membership, from its leader (missing: unknown). */
  readonly actual: ReadonlyMap<number, GroupActual>;
  /** Members that answered recently. */
  readonly healthy: ReadonlySet<number>;
  /** Moves at most running at once (groups not settled because of a target change). */
  readonly movesMax: number;
}

/**
 * planPlacement decides which groups' targets to change now, at most `movesMax` groups
 * unsettled at once (rate limit: a move streams a snapshot and catches a replica up; a few at
 * a time keep the data plane's latency). In order of need:
 *   1. a target naming a member that is leaving or gone: replace it;
 *   2. a group with fewer target voters than its store wants (and members enough): add one;
 *   3. balance: while the most loaded active member holds two or more replicas more than
 *      the least loaded, move one replica from the former to the latter.
 * Only active, healthy members receive replicas; a group is changed only once settled.
 */
export function planPlacement(input: PlacementInput): PlacementChange[] {
  const { meta, actual, healthy } = input;
  const active = meta.members.filter((m) => m.state === 'active').map((m) => m.id);
  const eligible = active.filter((id) => healthy.has(id));
  const activeSet = new Set(active);
  const load = new Map<number, number>(active.map((id) => [id, 0]));
  const all: { store: MetaStore; group: MetaGroup; replicas: number[] }[] = [];
  for (const s of meta.stores) {
    for (const g of s.groups) {
      all.push({ store: s, group: g, replicas: [...g.replicas] });
      for (const r of g.replicas) if (load.has(r)) load.set(r, (load.get(r) ?? 0) + 1);
    }
  }
  let running = all.filter((x) => !settled(x.group.replicas, actual.get(x.group.id))).length;
  const out: PlacementChange[] = [];
  const change = (x: (typeof all)[number], replicas: number[], why: string): void => {
    for (const r of x.replicas) if (load.has(r)) load.set(r, (load.get(r) ?? 0) - 1);
    for (const r of replicas) if (load.has(r)) load.set(r, (load.get(r) ?? 0) + 1);
    x.replicas = replicas;
    out.push({ store: x.store.name, group: x.group.id, replicas: [...replicas].sort((a, b) => a - b), why });
    running++;
  };
  const leastLoaded = (exclude: readonly number[]): number | undefined =>
    eligible
      .filter((id) => !exclude.includes(id))
      .sort((a, b) => (load.get(a) ?? 0) - (load.get(b) ?? 0) || a - b)[0];
  const movable = all.filter((x) => settled(x.group.replicas, actual.get(x.group.id)));
  // 1. Replace members that are leaving or gone: in settled groups, and also in a group still
  // moving toward a member that left before it became a voter there (else that move, and the
  // member's removal, would wait forever). Such a retarget adds no move: it is running already.
  for (const x of all) {
    const a = actual.get(x.group.id);
    const isSettled = settled(x.group.replicas, a);
    const bad = x.replicas.find((r) => !activeSet.has(r) && (isSettled || !(a?.voters ?? []).includes(r)));
    if (bad === undefined) continue;
    if (isSettled && running >= input.movesMax) continue;
    const to = leastLoaded(x.replicas);
    const keep = x.replicas.filter((r) => r !== bad);
    if (to === undefined && keep.length === 0) continue;
    if (!isSettled) running--;
    if (to !== undefined) change(x, [...keep, to], `member ${bad} is leaving`);
    else change(x, keep, `member ${bad} is leaving (no member to take its place)`);
  }
  // 2. Fill groups below their replica count.
  for (const x of movable) {
    if (running >= input.movesMax) return out;
    if (out.some((c) => c.group === x.group.id)) continue;
    const want = Math.min(x.store.replicas, active.length);
    if (x.replicas.length >= want) continue;
    const to = leastLoaded(x.replicas);
    if (to !== undefined) change(x, [...x.replicas, to], `below ${want} replicas`);
  }
  // 3. Balance.
  for (;;) {
    if (running >= input.movesMax) return out;
    const byLoad = eligible.slice().sort((a, b) => (load.get(a) ?? 0) - (load.get(b) ?? 0) || a - b);
    const low = byLoad[0];
    const high = byLoad[byLoad.length - 1];
    if (low === undefined || high === undefined || (load.get(high) ?? 0) - (load.get(low) ?? 0) < 2)
      return out;
    const x = movable.find(
      (c) =>
        !out.some((o) => o.group === c.group.id) && c.replicas.includes(high) && !c.replicas.includes(low),
    );
    if (!x) return out;
    change(x, [...x.replicas.filter((r) => r !== high), low], `balance: ${high} -> ${low}`);
  }
}

/**
 * metaVoterTarget is the metadata group's target voters: the current ones that are still
 * active members, topped up from the other active members (lowest ids first) to
 * min(5, active members). Joining members are learners of it until they are active.
 */
export function metaVoterTarget(meta: Meta): number[] {
  const active = meta.members.filter((m) => m.state === 'active').map((m) => m.id);
  const want = Math.min(META_VOTERS_MAX, active.length);
  const out = meta.metaReplicas.filter((id) => active.includes(id)).slice(0, want);
  for (const id of active) {
    if (out.length >= want) break;
    if (!out.includes(id)) out.push(id);
  }
  return out.sort((a, b) => a - b);
}

/**
 * metaLearnerTarget: every member that is not a metadata voter learns the metadata, a
 * leaving one too (it must see the targets that move its replicas away) until it is removed.
 */
export function metaLearnerTarget(meta: Meta): number[] {
  return meta.members.filter((m) => !meta.metaReplicas.includes(m.id)).map((m) => m.id);
}

/**
 * planStore lays out a new store: `partitions` groups with ids from `nextGroup`, even slot
 * ranges, each on `replicas` active members chosen least-loaded first (loads counted over the
 * existing stores), so new stores spread over the cluster.
 */
export function planStore(
  meta: Meta,
  name: string,
  partitions: number,
  replicas: number,
  indexes: IndexDef[],
  slotsOf: (partitions: number) => [number, number][],
  quotas?: StoreQuotas,
): MetaStore {
  if (!STORE_NAME.test(name)) {
    throw new DkvError(
      ErrorCode.InvalidArgument,
      `store name ${JSON.stringify(name)}: letters, digits, _ . - (1 to 64)`,
    );
  }
  if (!Number.isSafeInteger(partitions) || partitions < 1 || partitions > PARTITIONS_MAX) {
    throw new DkvError(ErrorCode.InvalidArgument, `partitions must be an integer in [1, ${PARTITIONS_MAX}]`);
  }
  if (!Number.isSafeInteger(replicas) || replicas < 1 || replicas > 7) {
    throw new DkvError(ErrorCode.InvalidArgument, 'replicas must be an integer in [1, 7]');
  }
  if (meta.stores.some((s) => s.name === name)) {
    throw new DkvError(ErrorCode.AlreadyExists, `store ${JSON.stringify(name)} already exists`);
  }
  const active = meta.members.filter((m) => m.state === 'active').map((m) => m.id);
  if (active.length === 0) throw new DkvError(ErrorCode.Unavailable, 'the cluster has no active member');
  const load = new Map<number, number>(active.map((id) => [id, 0]));
  for (const s of meta.stores)
    for (const g of s.groups)
      for (const r of g.replicas) if (load.has(r)) load.set(r, (load.get(r) ?? 0) + 1);
  const n = Math.min(replicas, active.length);
  const groups = slotsOf(partitions).map((range, i): MetaGroup => {
    const chosen = active
      .slice()
      .sort((a, b) => (load.get(a) ?? 0) - (load.get(b) ?? 0) || a - b)
      .slice(0, n)
      .sort((a, b) => a - b);
    for (const r of chosen) load.set(r, (load.get(r) ?? 0) + 1);
    return { id: meta.nextGroup + i, slots: [range], replicas: chosen, initial: chosen };
  });
  return { name, epoch: meta.epoch + 1, partitions, replicas, indexes, groups, ...(quotas && { quotas }) };
}
