/**
 * Clients propose unique payloads to whichever replica they think leads, retry elsewhere
 * when refused, and issue ReadIndex reads whose results the checker tests for
 * linearizability. Every accepted proposal is remembered until it is known to be committed
 * or superseded, which is what the liveness phase checks.
 */
import { type Entry, ProposeRefusal, type ReadState } from '../../../src/raft/index.js';
import type { SeededRandom } from '../../../src/random.js';
import { pick } from './distributions.js';
import type { ReadCheck, SafetyChecker } from './invariants.js';
import { bytesEqual, decodePayloadId, encodePayload } from './payload.js';
import type { Replica } from './replica.js';
import type { SimOptions } from './sim-options.js';
import type { Trace } from './trace.js';

/** READS_REMEMBERED_MAX bounds the reads whose answers are still awaited. */
export const READS_REMEMBERED_MAX = 1024;

/** ClientHost is the cluster as clients see it. */
export interface ClientHost {
  readonly checker: SafetyChecker;
  readonly trace: Trace;
  /** The replicas that take requests (up, not removed), in id order. */
  upReplicas(): readonly Replica[];
}

/** ProposalRecord is one proposal a replica accepted. */
export interface ProposalRecord {
  readonly id: number;
  readonly client: number;
  readonly node: number;
  readonly index: number;
  readonly term: number;
  readonly data: Uint8Array;
  readonly step: number;
}

/** ProposalOutcome is what became of an accepted proposal. */
export const ProposalOutcome = {
  /** Its exact entry was committed. */
  Committed: 'committed',
  /** Another entry was committed at its index, or a later term was committed before it. */
  Superseded: 'superseded',
  /** Not known yet. */
  Unknown: 'unknown',
} as const;
export type ProposalOutcome = (typeof ProposalOutcome)[keyof typeof ProposalOutcome];

/**
 * outcomeOf decides a proposal's fate from the committed history. The committed log's terms
 * never decrease, so once an entry of a later term is committed at or before the proposal's
 * index, the proposal can never be committed.
 */
export function outcomeOf(checker: SafetyChecker, rec: ProposalRecord): ProposalOutcome {
  const at = checker.committedAt(rec.index);
  if (at !== undefined) {
    return at.term === rec.term && bytesEqual(at.data, rec.data)
      ? ProposalOutcome.Committed
      : ProposalOutcome.Superseded;
  }
  for (let i = Math.min(rec.index, checker.committedLength - 1); i > 0; i--) {
    const e = checker.committedAt(i);
    if (e !== undefined) return e.term > rec.term ? ProposalOutcome.Superseded : ProposalOutcome.Unknown;
  }
  return ProposalOutcome.Unknown;
}

interface ClientState {
  readonly id: number;
  /** The replica this client believes leads, or 0. */
  leaderHint: number;
  /** The proposal awaiting acknowledgement, if any. */
  waiting: ProposalRecord | null;
  waitDeadlineStep: number;
  /** No proposal before this step (back-off after a refusal). */
  readyStep: number;
  /** The context of the read in flight, or ''. */
  reading: string;
  readDeadlineStep: number;
}

/** ReadRecord is a read in flight. */
interface ReadRecord extends ReadCheck {
  readonly client: number;
  readonly node: number;
}

/** Clients is the simulated client population. */
export class Clients {
  private readonly random: SeededRandom;
  private readonly options: SimOptions;
  private readonly host: ClientHost;
  private readonly clients: ClientState[] = [];
  /** Accepted proposals not yet known committed or superseded, by proposal id. */
  readonly unresolved = new Map<number, ProposalRecord>();
  private readonly reads = new Map<string, ReadRecord>();
  private nextProposalId = 1;
  private nextReadId = 1;
  /** Whether clients issue new requests; false in the liveness phase. */
  active = true;
  /** Counters. */
  readonly stats = {
    proposed: 0,
    accepted: 0,
    refused: 0,
    acked: 0,
    committed: 0,
    superseded: 0,
    timedOut: 0,
    readsInvoked: 0,
    readsServed: 0,
  };

  constructor(random: SeededRandom, options: SimOptions, host: ClientHost) {
    this.random = random;
    this.options = options;
    this.host = host;
    for (let i = 1; i <= options.clientCount; i++) {
      this.clients.push({
        id: i,
        leaderHint: 0,
        waiting: null,
        waitDeadlineStep: 0,
        readyStep: 0,
        reading: '',
        readDeadlineStep: 0,
      });
    }
  }

  /** step lets every client act once. */
  step(now: number): void {
    for (const c of this.clients) {
      if (c.waiting !== null && now >= c.waitDeadlineStep) {
        c.waiting = null;
        c.leaderHint = 0;
        this.stats.timedOut++;
      }
      if (c.reading !== '' && now >= c.readDeadlineStep) c.reading = '';
      if (!this.active) continue;
      if (c.waiting === null && now >= c.readyStep && this.random.chance(this.options.proposeProbability)) {
        this.propose(c, now);
      }
      if (c.reading === '' && this.random.chance(this.options.readProbability)) this.read(c, now);
    }
  }

  private target(c: ClientState): Replica | undefined {
    const up = this.host.upReplicas();
    if (c.leaderHint !== 0) {
      const r = up.find((x) => x.id === c.leaderHint);
      if (r !== undefined) return r;
    }
    return up.length === 0 ? undefined : pick(this.random, up);
  }

  private propose(c: ClientState, now: number): void {
    const r = this.target(c);
    if (r === undefined || r.node === null) return;
    const id = this.nextProposalId++;
    const data = encodePayload(id, this.random.int(this.options.payloadFillerBytesMax + 1));
    this.stats.proposed++;
    const res = r.node.propose(data);
    if (res.ok) {
      const rec: ProposalRecord = {
        id,
        client: c.id,
        node: r.id,
        index: res.index,
        term: res.term,
        data,
        step: now,
      };
      this.stats.accepted++;
      this.unresolved.set(id, rec);
      c.waiting = rec;
      c.leaderHint = r.id;
      c.waitDeadlineStep = now + this.options.clientTimeoutSteps;
      if (this.host.trace.enabled)
        this.host.trace.line(now, r.id, `client ${c.id}: p${id} accepted at ${res.index}@${res.term}`);
      return;
    }
    this.stats.refused++;
    c.leaderHint = res.leader !== r.id ? res.leader : 0;
    // Back off a little, longer when the leader is overloaded or busy.
    const busy = res.code === ProposeRefusal.Overloaded || res.code === ProposeRefusal.Transferring;
    c.readyStep = now + 1 + this.random.int(busy ? 8 : 3);
  }

  private read(c: ClientState, now: number): void {
    const r = this.target(c);
    if (r === undefined || r.node === null) return;
    const context = `r${this.nextReadId++}`;
    const requiredIndex = this.host.checker.commitKnownMax;
    if (!r.node.readIndex(context)) return;
    this.stats.readsInvoked++;
    c.reading = context;
    c.readDeadlineStep = now + this.options.clientTimeoutSteps;
    this.reads.set(context, { context, requiredIndex, invokeStep: now, client: c.id, node: r.id });
    if (this.host.trace.enabled) {
      this.host.trace.line(now, r.id, `client ${c.id}: read ${context} invoked (must see ${requiredIndex})`);
    }
    if (this.reads.size > READS_REMEMBERED_MAX) {
      const oldest = this.reads.keys().next().value;
      if (oldest !== undefined) this.reads.delete(oldest);
    }
  }

  /**
   * invokeRead issues one read on `replica` outside the client population (the liveness
   * probe); it returns the context, or '' if the replica has no leader to ask.
   */
  invokeRead(replica: Replica, now: number): string {
    if (replica.node === null) return '';
    const context = `r${this.nextReadId++}`;
    const requiredIndex = this.host.checker.commitKnownMax;
    if (!replica.node.readIndex(context)) return '';
    this.stats.readsInvoked++;
    this.reads.set(context, { context, requiredIndex, invokeStep: now, client: 0, node: replica.id });
    return context;
  }

  /** isReadPending tells whether the read with `context` is still unanswered. */
  isReadPending(context: string): boolean {
    return this.reads.has(context);
  }

  /** onRead checks and completes a read served by `node`. */
  onRead(node: number, rs: ReadState): void {
    const rec = this.reads.get(rs.context);
    if (rec === undefined || rec.node !== node) return;
    this.reads.delete(rs.context);
    this.host.checker.checkRead(node, rec, rs.index);
    this.stats.readsServed++;
    if (rec.client > 0) {
      const c = this.clients[rec.client - 1]!;
      if (c.reading === rs.context) c.reading = '';
    }
  }

  /** onApplied acknowledges a proposal once the replica that accepted it applies it. */
  onApplied(node: number, entry: Entry, now: number): void {
    const id = decodePayloadId(entry.data);
    const rec = this.unresolved.get(id);
    if (rec === undefined) return;
    // Applied anywhere means committed; the checker has already compared it with history.
    if (rec.index === entry.index && rec.term === entry.term) {
      this.unresolved.delete(id);
      this.stats.committed++;
    }
    if (rec.node !== node) return;
    const c = this.clients[rec.client - 1];
    if (c?.waiting?.id === id) {
      c.waiting = null;
      this.stats.acked++;
      if (this.host.trace.enabled) this.host.trace.line(now, node, `client ${c.id}: p${id} acknowledged`);
    }
  }

  /** propose submits one payload outside the client population (the liveness probe). */
  proposeProbe(replica: Replica, now: number): ProposalRecord | null {
    if (replica.node === null) return null;
    const id = this.nextProposalId++;
    const data = encodePayload(id, 0);
    const res = replica.node.propose(data);
    if (!res.ok) return null;
    const rec: ProposalRecord = {
      id,
      client: 0,
      node: replica.id,
      index: res.index,
      term: res.term,
      data,
      step: now,
    };
    this.unresolved.set(id, rec);
    return rec;
  }

  /** sweep resolves every proposal whose fate the committed history now decides. */
  sweep(): void {
    for (const [id, rec] of this.unresolved) {
      const o = outcomeOf(this.host.checker, rec);
      if (o === ProposalOutcome.Unknown) continue;
      this.unresolved.delete(id);
      if (o === ProposalOutcome.Committed) this.stats.committed++;
      else this.stats.superseded++;
    }
  }
}
