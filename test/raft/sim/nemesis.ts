/**
 * Nemesis switches faults on and off over time: partitions of every shape, clogged links,
 * lossy and duplicating periods, node pauses, and node crashes with later restarts. Its schedule is
 * drawn step by step from its own SeededRandom, so the seed fixes it. `heal` ends the fault
 * phase.
 */
import type { SeededRandom } from '../../../src/random.js';
import { Connectivity } from './connectivity.js';
import { exponentialSteps, pick, weightedPick } from './distributions.js';
import { buildPartition, type PartitionShape } from './partitions.js';
import type { SimNetwork } from './sim-network.js';
import type { Trace } from './trace.js';

/** NemesisOptions are the fault rates. Probabilities are per simulation step. */
export interface NemesisOptions {
  /** Chance per step that a partition starts while the network is whole. */
  readonly partitionProbability: number;
  readonly partitionMeanSteps: number;
  /** How long the network stays whole after a partition heals, at least. */
  readonly wholeMeanSteps: number;
  /** Relative weights of the partition shapes. */
  readonly shapeWeights: Readonly<Record<PartitionShape, number>>;
  /** Chance per step that one directed link is clogged. */
  readonly clogProbability: number;
  readonly clogMeanSteps: number;
  /** Packet loss while a lossy period is on. */
  readonly lossProbability: number;
  /** Packet duplication while a duplicating period is on. */
  readonly duplicateProbability: number;
  /** Late packet replays while a duplicating period is on. */
  readonly replayProbability: number;
  /** Mean length of lossy/duplicating periods and of the quiet periods between them. */
  readonly lossPeriodMeanSteps: number;
  /** Chance per step that a node crashes. */
  readonly crashProbability: number;
  /** Chance that a crash picks the leader rather than a random node. */
  readonly crashLeaderBias: number;
  readonly downMeanSteps: number;
  /** At most this many nodes are down at once. */
  readonly downMax: number;
  /**
   * Chance per step that a node pauses (a long GC or VM stall): its clock stops and packets
   * to it wait, then it resumes where it was, unaware of the gap.
   */
  readonly pauseProbability: number;
  readonly pauseMeanSteps: number;
  /** Upper bound on any drawn duration, in steps. */
  readonly durationMaxSteps: number;
}

/** NemesisTarget is the cluster as the nemesis sees it. */
export interface NemesisTarget {
  /** The ids of nodes that are members (not removed); partitions are drawn over these. */
  members(): readonly number[];
  /** The current leader's id, or 0. */
  leader(): number;
  isUp(id: number): boolean;
  crash(id: number, step: number): void;
  restart(id: number, step: number): void;
  /** pause freezes node `id` (no ticks, no Ready handling) until `untilStep`. */
  pause(id: number, untilStep: number): void;
  /** resume ends any pause of node `id` now. */
  resume(id: number): void;
}

/** Nemesis is the fault schedule of one run. */
export class Nemesis<M> {
  private readonly random: SeededRandom;
  private readonly options: NemesisOptions;
  private readonly network: SimNetwork<M>;
  private readonly target: NemesisTarget;
  private readonly trace: Trace;
  /** Whether faults may still start; false after `heal`. */
  private active = true;
  private partitionEndStep = -1;
  private nextPartitionStep = 0;
  private nextLossToggleStep = 0;
  private nextDuplicateToggleStep = 0;
  /** down maps each crashed node to the step it restarts at. */
  private readonly down = new Map<number, number>();
  /** Counters for progress lines. */
  readonly stats = { partitions: 0, clogs: 0, crashes: 0, restarts: 0, pauses: 0 };

  constructor(
    random: SeededRandom,
    options: NemesisOptions,
    network: SimNetwork<M>,
    target: NemesisTarget,
    trace: Trace,
  ) {
    this.random = random;
    this.options = options;
    this.network = network;
    this.target = target;
    this.trace = trace;
    this.nextLossToggleStep = this.duration(options.lossPeriodMeanSteps);
    this.nextDuplicateToggleStep = this.duration(options.lossPeriodMeanSteps);
  }

  private duration(meanSteps: number): number {
    return 1 + exponentialSteps(this.random, meanSteps, this.options.durationMaxSteps);
  }

  /** step applies this step's fault changes. */
  step(now: number): void {
    for (const [id, at] of this.down) {
      if (at <= now) {
        this.down.delete(id);
        this.stats.restarts++;
        this.target.restart(id, now);
      }
    }
    if (!this.active) return;
    const o = this.options;
    if (this.partitionEndStep >= 0 && now >= this.partitionEndStep) {
      this.partitionEndStep = -1;
      this.network.connectivity = new Connectivity();
      this.nextPartitionStep = now + this.duration(o.wholeMeanSteps);
      if (this.trace.enabled) this.trace.line(now, 0, 'nemesis: partition healed');
    } else if (
      this.partitionEndStep < 0 &&
      now >= this.nextPartitionStep &&
      this.random.chance(o.partitionProbability)
    ) {
      const members = this.target.members();
      if (members.length >= 2) {
        const shape = weightedPick(this.random, o.shapeWeights);
        const p = buildPartition(shape, members, this.random, this.target.leader());
        this.network.connectivity = p.connectivity;
        this.partitionEndStep = now + this.duration(o.partitionMeanSteps);
        this.stats.partitions++;
        if (this.trace.enabled)
          this.trace.line(now, 0, `nemesis: ${p.description} until ${this.partitionEndStep}`);
      }
    }
    if (now >= this.nextLossToggleStep) {
      this.network.lossProbability = this.network.lossProbability > 0 ? 0 : o.lossProbability;
      this.nextLossToggleStep = now + this.duration(o.lossPeriodMeanSteps);
      if (this.trace.enabled)
        this.trace.line(now, 0, `nemesis: loss=${this.network.lossProbability.toFixed(3)}`);
    }
    if (now >= this.nextDuplicateToggleStep) {
      const on = this.network.duplicateProbability === 0 && this.network.replayProbability === 0;
      this.network.duplicateProbability = on ? o.duplicateProbability : 0;
      this.network.replayProbability = on ? o.replayProbability : 0;
      this.nextDuplicateToggleStep = now + this.duration(o.lossPeriodMeanSteps);
      if (this.trace.enabled)
        this.trace.line(
          now,
          0,
          `nemesis: dup=${this.network.duplicateProbability.toFixed(3)} replay=${this.network.replayProbability.toFixed(3)}`,
        );
    }
    if (o.clogProbability > 0 && this.random.chance(o.clogProbability)) {
      const members = this.target.members();
      if (members.length >= 2) {
        const from = pick(this.random, members);
        const to = pick(this.random, members);
        if (from !== to) {
          const until = now + this.duration(o.clogMeanSteps);
          this.network.clog(from, to, until);
          this.stats.clogs++;
          if (this.trace.enabled) this.trace.line(now, 0, `nemesis: clog ${from}->${to} until ${until}`);
        }
      }
    }
    if (o.pauseProbability > 0 && this.random.chance(o.pauseProbability)) {
      const members = this.target.members();
      const up = members.filter((id) => this.target.isUp(id));
      if (up.length > 0) {
        const leader = this.target.leader();
        const victim =
          leader !== 0 && up.includes(leader) && this.random.chance(0.5) ? leader : pick(this.random, up);
        const until = now + this.duration(o.pauseMeanSteps);
        // Packets to a paused node queue up and arrive when it resumes.
        for (const from of members) if (from !== victim) this.network.clog(from, victim, until);
        this.stats.pauses++;
        if (this.trace.enabled) this.trace.line(now, 0, `nemesis: pause n${victim} until ${until}`);
        this.target.pause(victim, until);
      }
    }
    if (o.crashProbability > 0 && this.down.size < o.downMax && this.random.chance(o.crashProbability)) {
      const up = this.target.members().filter((id) => this.target.isUp(id));
      if (up.length > 0) {
        const leader = this.target.leader();
        const victim =
          leader !== 0 && up.includes(leader) && this.random.chance(o.crashLeaderBias)
            ? leader
            : pick(this.random, up);
        const at = now + this.duration(o.downMeanSteps);
        this.down.set(victim, at);
        this.stats.crashes++;
        if (this.trace.enabled) this.trace.line(now, 0, `nemesis: crash n${victim} until ${at}`);
        this.target.crash(victim, now);
      }
    }
  }

  /** heal ends the fault phase: the network is made whole and every crashed node restarts. */
  heal(now: number): void {
    this.active = false;
    this.partitionEndStep = -1;
    this.network.heal();
    for (const id of this.target.members()) this.target.resume(id);
    for (const id of [...this.down.keys()]) {
      this.down.delete(id);
      this.stats.restarts++;
      this.target.restart(id, now);
    }
    if (this.trace.enabled) this.trace.line(now, 0, 'nemesis: healed everything');
  }

  /** forget drops a node from the restart schedule (it was removed from the cluster). */
  forget(id: number): void {
    this.down.delete(id);
  }
}
