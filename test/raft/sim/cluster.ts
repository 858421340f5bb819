/**
 * Cluster wires one simulated run together: replicas, network, nemesis, clients, the
 * membership operator and the safety checker, all advanced one step at a time. A step is
 * the unit of simulated time: packets due are delivered, every clock ticks (or drifts), the
 * clients and the operator act, and every replica handles its Readies.
 *
 * With the leveldb backend a step is `stepAsync`: the same phases, with the disk work
 * awaited at fixed points in between (see `settle`), one replica at a time in id order.
 */
import {
  type ConfState,
  EMPTY_CONF_STATE,
  type Entry,
  type Message,
  MessageType,
  RaftRole,
  type ReadState,
} from '../../../src/raft/index.js';
import { SeededRandom } from '../../../src/random.js';
import { Clients } from './clients.js';
import { NODE_ID_MAX } from './connectivity.js';
import { pick } from './distributions.js';
import { SafetyChecker } from './invariants.js';
import type { LevelDisk } from './level-disk.js';
import { checkLogMatching } from './log-matching.js';
import { MembershipOperator, membersOf } from './membership.js';
import { Nemesis } from './nemesis.js';
import { Replica } from './replica.js';
import { SendOutcome, SimNetwork } from './sim-network.js';
import type { SimOptions } from './sim-options.js';
import type { Trace } from './trace.js';

/** LOG_MATCHING_CHECK_EVERY_STEPS is how often the durable logs are compared pairwise. */
export const LOG_MATCHING_CHECK_EVERY_STEPS = 500;

/** DiskFactory makes the LevelDB disk of a new replica (leveldb backend). */
export type DiskFactory = (id: number, confState: ConfState) => LevelDisk;

/** Cluster is one simulated Raft group and its environment. */
export class Cluster {
  readonly seed: number;
  readonly options: SimOptions;
  readonly trace: Trace;
  readonly checker = new SafetyChecker();
  readonly network: SimNetwork<Message>;
  readonly nemesis: Nemesis<Message>;
  readonly clients: Clients;
  readonly membership: MembershipOperator;
  /** Every replica ever provisioned, in id order. */
  readonly replicas = new Map<number, Replica>();
  /** The current step. */
  now = 0;
  private readonly random: SeededRandom;
  private readonly replicaRandom: SeededRandom;
  private nextNodeId: number;
  /** The highest membership-change index already processed (changes are handled once, in order). */
  private confIndexSeen = 0;
  /** Ids that were members of some committed configuration. */
  private readonly everMembers = new Set<number>();
  /** Makes each replica's LevelDB disk; null with the memory backend. */
  private readonly diskFactory: DiskFactory | null;

  /**
   * With a `diskFactory` (the leveldb backend) replicas start at the first `settle`, and the
   * cluster must be advanced with `stepAsync`; without one, with `step`.
   */
  constructor(seed: number, options: SimOptions, trace: Trace, diskFactory: DiskFactory | null = null) {
    this.seed = seed;
    this.options = options;
    this.trace = trace;
    this.diskFactory = diskFactory;
    const root = new SeededRandom(seed);
    // Independent streams, so that (say) more client traffic does not reshuffle the faults.
    this.random = root.fork();
    this.network = new SimNetwork(root.fork(), options.network);
    const nemesisRandom = root.fork();
    const clientRandom = root.fork();
    const operatorRandom = root.fork();
    this.replicaRandom = root.fork();
    this.nemesis = new Nemesis(nemesisRandom, options.nemesis, this.network, this, trace);
    if (!options.faults) this.nemesis.heal(0);
    this.clients = new Clients(clientRandom, options, this);
    this.membership = new MembershipOperator(operatorRandom, options, this);
    const voters = Array.from({ length: options.nodeCount }, (_, i) => i + 1);
    const cs: ConfState = { ...EMPTY_CONF_STATE, voters };
    for (const id of voters) {
      this.everMembers.add(id);
      this.addReplica(id, cs);
    }
    this.nextNodeId = options.nodeCount + 1;
  }

  private addReplica(id: number, cs: ConfState): Replica {
    const disk = this.diskFactory === null ? null : this.diskFactory(id, cs);
    const r = new Replica(id, cs, this.options, this, this.replicaRandom.fork(), disk);
    this.replicas.set(id, r);
    r.start(this.now);
    return r;
  }

  // ------------------------------------------------------------ the step

  /** step advances the simulation by one step (memory backend). */
  step(): void {
    const now = this.stepFaults();
    this.stepInputs(now);
    for (const r of this.replicas.values()) r.process(now);
    this.stepChecks(now);
  }

  /**
   * stepAsync advances the simulation by one step on LevelDB: `step`'s phases, with every
   * replica's disk work awaited in between, one at a time, in id order.
   */
  async stepAsync(): Promise<void> {
    const now = this.stepFaults();
    await this.settle(now);
    this.stepInputs(now);
    await this.settle(now);
    for (const r of this.replicas.values()) await r.processAsync(now);
    for (const r of this.replicas.values()) await r.announceFetched(now);
    this.stepChecks(now);
  }

  /**
   * settle finishes every replica's outstanding disk work (background reads, closes after
   * crashes, opens for starts), in id order. The nemesis and the operator crash and start
   * replicas synchronously; the closes and opens that implies happen here, at a fixed point.
   */
  async settle(now: number): Promise<void> {
    for (const r of this.replicas.values()) await r.settle(now);
  }

  /** shutdown closes every replica's database at the end of a run. */
  async shutdown(): Promise<void> {
    const errors: unknown[] = [];
    for (const r of this.replicas.values()) {
      try {
        await r.shutdown();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw errors[0];
  }

  private stepFaults(): number {
    const now = ++this.now;
    this.checker.now = now;
    this.nemesis.step(now);
    return now;
  }

  private stepInputs(now: number): void {
    this.network.deliverDue(now, (p) => {
      const r = this.replicas.get(p.to);
      if (r !== undefined && !r.removed) r.receive(p.message);
    });
    for (const r of this.replicas.values()) r.tick(now);
    this.clients.step(now);
    this.membership.step(now);
    if (this.options.transferProbability > 0 && this.random.chance(this.options.transferProbability)) {
      this.transferLeader(now);
    }
  }

  private stepChecks(now: number): void {
    if (now % LOG_MATCHING_CHECK_EVERY_STEPS === 0) {
      this.checkLogs();
      this.clients.sweep();
    }
  }

  private transferLeader(now: number): void {
    const leader = this.leaderReplica();
    if (leader?.node == null) return;
    const voters = leader.node.status().confState.voters.filter((id) => id !== leader.id);
    if (voters.length === 0) return;
    const to = pick(this.random, voters);
    if (this.trace.enabled) this.trace.line(now, leader.id, `operator: transfer leadership to n${to}`);
    leader.node.transferLeader(to);
  }

  /** checkLogs compares every pair of durable logs (the log matching property). */
  checkLogs(): void {
    checkLogMatching([...this.replicas.values()].map((r) => ({ id: r.id, storage: r.storage })));
  }

  // ------------------------------------------------------------ views

  /** leaderReplica is the responsive replica that leads the highest term, if any. */
  leaderReplica(): Replica | undefined {
    let best: Replica | undefined;
    for (const r of this.replicas.values()) {
      if (this.responsive(r) && r.role === RaftRole.Leader && (best === undefined || r.term > best.term))
        best = r;
    }
    return best;
  }

  /**
   * responsive tells whether a replica takes requests: up and not removed. A paused replica
   * does: a request sent to it waits in its socket and is handled when it resumes, before the
   * peer packets held during the pause (they arrive at the start of the resume step), which is
   * exactly what calling its core now amounts to, since nothing else reaches it meanwhile.
   */
  private responsive(r: Replica): boolean {
    return r.isUp && !r.removed;
  }

  /** leader is the id of `leaderReplica`, or 0. */
  leader(): number {
    return this.leaderReplica()?.id ?? 0;
  }

  /** members lists the ids of replicas not removed. */
  members(): readonly number[] {
    const out: number[] = [];
    for (const r of this.replicas.values()) if (!r.removed) out.push(r.id);
    return out;
  }

  /** upReplicas lists the replicas that take client requests (see `responsive`). */
  upReplicas(): readonly Replica[] {
    const out: Replica[] = [];
    for (const r of this.replicas.values()) if (this.responsive(r)) out.push(r);
    return out;
  }

  replica(id: number): Replica | undefined {
    return this.replicas.get(id);
  }

  isUp(id: number): boolean {
    return this.replicas.get(id)?.isUp ?? false;
  }

  // ------------------------------------------------------------ nemesis target

  crash(id: number, now: number): void {
    this.replicas.get(id)?.crash(now);
  }

  restart(id: number, now: number): void {
    this.replicas.get(id)?.restart(now);
  }

  pause(id: number, untilStep: number): void {
    const r = this.replicas.get(id);
    if (r !== undefined) r.pausedUntilStep = Math.max(r.pausedUntilStep, untilStep);
  }

  resume(id: number): void {
    const r = this.replicas.get(id);
    if (r !== undefined) r.pausedUntilStep = 0;
  }

  // ------------------------------------------------------------ membership host

  newNodeId(): number {
    return this.nextNodeId <= NODE_ID_MAX ? this.nextNodeId : 0;
  }

  provision(now: number): void {
    const id = this.newNodeId();
    if (id === 0) throw new RangeError('provision: out of node ids');
    this.nextNodeId++;
    if (this.trace.enabled) this.trace.line(now, id, 'provisioned (empty)');
    this.addReplica(id, EMPTY_CONF_STATE);
  }

  // ------------------------------------------------------------ replica host

  send(m: Message): void {
    const outcome = this.network.send(m.from, m.to, m, this.now);
    if (outcome !== SendOutcome.Unreachable) return;
    // A real transport notices a refused connection: tell the sender's core.
    const sender = this.replicas.get(m.from);
    if (sender?.node == null) return;
    if (m.type === MessageType.App) sender.node.reportUnreachable(m.to);
    else if (m.type === MessageType.Snap) sender.node.reportSnapshot(m.to, false);
  }

  onApplied(node: number, entry: Entry): void {
    this.clients.onApplied(node, entry, this.now);
  }

  onConfChange(node: number, index: number, confState: ConfState): void {
    if (index <= this.confIndexSeen) return;
    this.confIndexSeen = index;
    const now = membersOf(confState);
    for (const id of now) this.everMembers.add(id);
    for (const id of this.everMembers) {
      if (now.has(id)) continue;
      const r = this.replicas.get(id);
      if (r === undefined || r.removed) continue;
      // The removal is committed: the operator shuts the replica down for good.
      if (this.trace.enabled)
        this.trace.line(this.now, id, `removed from the cluster (applied at ${index} by n${node})`);
      r.crash(this.now);
      r.removed = true;
      this.nemesis.forget(id);
    }
  }

  onRead(node: number, readState: ReadState): void {
    this.clients.onRead(node, readState);
  }
}
