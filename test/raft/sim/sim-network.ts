/**
 * SimNetwork is the simulated packet network, after TigerBeetle's packet simulator. Every
 * packet gets a random delay in simulation steps (so packets reorder), may be lost,
 * duplicated or replayed much later, and is dropped if its link is cut by the current partition when it is sent
 * or when it arrives. A clogged link holds its packets until the clog clears. Everything is
 * driven by one SeededRandom and is bounded.
 */
import type { SeededRandom } from '../../../src/random.js';
import { Connectivity, NODE_ID_MAX } from './connectivity.js';
import { exponentialSteps } from './distributions.js';
import { type Packet, PacketQueue } from './packet-queue.js';

/** NetworkOptions are the network's fixed parameters. Delays are in simulation steps. */
export interface NetworkOptions {
  /** Every packet takes at least this long (>= 1, so a delivery never triggers itself). */
  readonly delayMinSteps: number;
  /** The mean delay; the excess over the minimum is exponentially distributed. */
  readonly delayMeanSteps: number;
  /** No packet takes longer than this, clogs aside. */
  readonly delayMaxSteps: number;
  /** A replayed packet (a late duplicate, as after a transport reconnect) arrives up to this much later. */
  readonly replayDelayMaxSteps: number;
  /** Bound on packets in flight in the whole network. */
  readonly inFlightMax: number;
  /** Bound on packets in flight on one directed link; past it new packets are dropped. */
  readonly pathInFlightMax: number;
}

/** SendOutcome says what became of one send. */
export const SendOutcome = {
  Queued: 'queued',
  /** Dropped by random packet loss. */
  Lost: 'lost',
  /** Dropped because the partition cuts the link now; a real transport would notice. */
  Unreachable: 'unreachable',
  /** Dropped because the link or the network is at its in-flight bound. */
  Overflow: 'overflow',
} as const;
export type SendOutcome = (typeof SendOutcome)[keyof typeof SendOutcome];

/** NetworkStats counts what the network did, for progress lines and tests. */
export interface NetworkStats {
  sent: number;
  delivered: number;
  lost: number;
  duplicated: number;
  replayed: number;
  unreachable: number;
  overflow: number;
  /** Dropped at arrival because the link was cut while the packet was in flight. */
  cutInFlight: number;
}

/** SimNetwork carries messages of type M between node ids 1..NODE_ID_MAX. */
export class SimNetwork<M> {
  private readonly random: SeededRandom;
  private readonly options: NetworkOptions;
  private readonly queue: PacketQueue<M>;
  /** pathInFlight[from * SIZE + to] counts packets queued on that link. */
  private readonly pathInFlight = new Uint16Array((NODE_ID_MAX + 1) * (NODE_ID_MAX + 1));
  /** clogUntil[from * SIZE + to] is the first step at which the link flows again. */
  private readonly clogUntil = new Float64Array((NODE_ID_MAX + 1) * (NODE_ID_MAX + 1));
  private seq = 0;
  /** The current partition; replaced wholesale by the nemesis. */
  connectivity: Connectivity = new Connectivity();
  /** Probability that a sent packet is lost. */
  lossProbability = 0;
  /** Probability that a sent packet is delivered twice (both copies with normal delays). */
  duplicateProbability = 0;
  /** Probability that a sent packet is also replayed much later (up to replayDelayMaxSteps). */
  replayProbability = 0;
  /** Counters since construction. */
  readonly stats: NetworkStats = {
    sent: 0,
    delivered: 0,
    lost: 0,
    duplicated: 0,
    replayed: 0,
    unreachable: 0,
    overflow: 0,
    cutInFlight: 0,
  };

  constructor(random: SeededRandom, options: NetworkOptions) {
    if (!(options.delayMinSteps >= 1)) throw new RangeError('SimNetwork: delayMinSteps must be >= 1');
    if (
      !(options.delayMeanSteps >= options.delayMinSteps && options.delayMaxSteps >= options.delayMeanSteps)
    ) {
      throw new RangeError('SimNetwork: need delayMinSteps <= delayMeanSteps <= delayMaxSteps');
    }
    if (!(options.pathInFlightMax > 0 && options.pathInFlightMax <= 0xffff)) {
      throw new RangeError('SimNetwork: pathInFlightMax out of range');
    }
    this.random = random;
    this.options = options;
    this.queue = new PacketQueue(options.inFlightMax);
  }

  /** inFlight is the number of packets queued. */
  get inFlight(): number {
    return this.queue.size;
  }

  /** send puts a message on the wire at step `nowStep`. */
  send(from: number, to: number, message: M, nowStep: number): SendOutcome {
    this.stats.sent++;
    if (!this.connectivity.allows(from, to)) {
      this.stats.unreachable++;
      return SendOutcome.Unreachable;
    }
    if (this.lossProbability > 0 && this.random.float() < this.lossProbability) {
      this.stats.lost++;
      return SendOutcome.Lost;
    }
    if (!this.enqueue(from, to, message, nowStep)) return SendOutcome.Overflow;
    if (this.duplicateProbability > 0 && this.random.float() < this.duplicateProbability) {
      if (this.enqueue(from, to, message, nowStep)) this.stats.duplicated++;
    }
    if (this.replayProbability > 0 && this.random.float() < this.replayProbability) {
      const late = 1 + this.random.int(this.options.replayDelayMaxSteps);
      if (this.enqueue(from, to, message, nowStep + late)) this.stats.replayed++;
    }
    return SendOutcome.Queued;
  }

  private enqueue(from: number, to: number, message: M, nowStep: number): boolean {
    const path = from * (NODE_ID_MAX + 1) + to;
    if (this.queue.isFull() || this.pathInFlight[path]! >= this.options.pathInFlightMax) {
      this.stats.overflow++;
      return false;
    }
    const { delayMinSteps, delayMeanSteps, delayMaxSteps } = this.options;
    const delay =
      delayMinSteps +
      exponentialSteps(this.random, delayMeanSteps - delayMinSteps, delayMaxSteps - delayMinSteps);
    this.queue.push({ deliverStep: nowStep + delay, seq: this.seq++, from, to, message });
    this.pathInFlight[path]!++;
    return true;
  }

  /**
   * deliverDue hands every packet due at or before `nowStep` to `deliver`, in delivery order.
   * Packets on a clogged link wait; packets on a cut link are dropped.
   */
  deliverDue(nowStep: number, deliver: (packet: Packet<M>) => void): void {
    for (;;) {
      const p = this.queue.peek();
      if (p === undefined || p.deliverStep > nowStep) return;
      this.queue.pop();
      const path = p.from * (NODE_ID_MAX + 1) + p.to;
      const clog = this.clogUntil[path]!;
      if (clog > nowStep) {
        p.deliverStep = clog;
        this.queue.push(p);
        continue;
      }
      this.pathInFlight[path]!--;
      if (!this.connectivity.allows(p.from, p.to)) {
        this.stats.cutInFlight++;
        continue;
      }
      this.stats.delivered++;
      deliver(p);
    }
  }

  /** clog holds every packet on the directed link until `untilStep`. */
  clog(from: number, to: number, untilStep: number): void {
    const path = from * (NODE_ID_MAX + 1) + to;
    this.clogUntil[path] = Math.max(this.clogUntil[path]!, untilStep);
  }

  /** isClogged tells whether the directed link is clogged at `nowStep`. */
  isClogged(from: number, to: number, nowStep: number): boolean {
    return this.clogUntil[from * (NODE_ID_MAX + 1) + to]! > nowStep;
  }

  /** heal removes the partition, every clog, packet loss, duplication and replay. */
  heal(): void {
    this.connectivity = new Connectivity();
    this.clogUntil.fill(0);
    this.lossProbability = 0;
    this.duplicateProbability = 0;
    this.replayProbability = 0;
  }
}
