/**
 * MembershipOperator changes the cluster's membership while faults are active: it adds
 * learners and voters, promotes learners, removes voters, replaces a voter through joint consensus, and
 * swaps a voter with a learner, always keeping at least three voters. It talks to the
 * leader as an operator would, and retries (re-deciding from the current membership) when a
 * change is refused, superseded or slow.
 */
import {
  type ConfChange,
  type ConfChangeSingle,
  ConfChangeTransition,
  ConfChangeType,
  type ConfState,
  encodeConfChange,
} from '../../../src/raft/index.js';
import type { SeededRandom } from '../../../src/random.js';
import { pick } from './distributions.js';
import type { SafetyChecker } from './invariants.js';
import { bytesEqual } from './payload.js';
import type { Replica } from './replica.js';
import type { SimOptions } from './sim-options.js';
import type { Trace } from './trace.js';

/** VOTERS_MIN is the fewest voters the operator leaves in a configuration. */
export const VOTERS_MIN = 3;

/** MEMBERS_MAX bounds voters plus learners. */
export const MEMBERS_MAX = 7;

/** MembershipHost is the cluster as the operator sees it. */
export interface MembershipHost {
  readonly checker: SafetyChecker;
  readonly trace: Trace;
  /** The current leader's replica, if some replica is up and leads. */
  leaderReplica(): Replica | undefined;
  /** newNodeId is the id the next new replica will get, or 0 if none is left. */
  newNodeId(): number;
  /** provision starts a fresh, empty replica with id `newNodeId()`. */
  provision(now: number): void;
}

interface PendingChange {
  readonly cc: ConfChange;
  readonly data: Uint8Array;
  readonly index: number;
  readonly term: number;
  readonly deadlineStep: number;
}

/** MembershipOperator is the run's membership-change driver. */
export class MembershipOperator {
  private readonly random: SeededRandom;
  private readonly options: SimOptions;
  private readonly host: MembershipHost;
  private changesLeft: number;
  private pending: PendingChange | null = null;
  private nextStep: number;
  /** Whether new changes may start; false in the liveness phase (joint configs are still left). */
  active = true;
  /** Counters. */
  readonly stats = { proposed: 0, committed: 0, superseded: 0, refused: 0, timedOut: 0 };

  constructor(random: SeededRandom, options: SimOptions, host: MembershipHost) {
    this.random = random;
    this.options = options;
    this.host = host;
    this.changesLeft = options.membershipChangesMax;
    this.nextStep = options.membershipIntervalSteps;
  }

  /** isIdle tells whether no change is in flight. */
  get isIdle(): boolean {
    return this.pending === null;
  }

  /** step checks the change in flight and maybe starts the next one. */
  step(now: number): void {
    if (now < this.nextStep) return;
    const p = this.pending;
    if (p !== null) {
      const at = this.host.checker.committedAt(p.index);
      if (at !== undefined) {
        const ours = at.term === p.term && bytesEqual(at.data, p.data);
        if (ours) this.stats.committed++;
        else this.stats.superseded++;
        this.pending = null;
        this.nextStep = now + (ours ? this.options.membershipIntervalSteps : 1);
      } else if (now >= p.deadlineStep) {
        this.stats.timedOut++;
        this.pending = null;
      }
      return;
    }
    const leader = this.host.leaderReplica();
    if (leader?.node == null) return;
    const cs = leader.node.status().confState;
    let cc: ConfChange | null;
    if (cs.votersOutgoing.length > 0) {
      // Joint: auto-leave configurations are left by the leader itself.
      if (cs.autoLeave) return;
      cc = { transition: ConfChangeTransition.Auto, changes: [], context: 'leave' };
    } else {
      if (!this.active || this.changesLeft <= 0) return;
      cc = this.choose(cs);
      if (cc === null) return;
    }
    const res = leader.node.proposeConfChange(cc);
    this.stats.proposed++;
    if (!res.ok) {
      this.stats.refused++;
      this.nextStep = now + 1 + this.random.int(this.options.raft.electionTicks);
      return;
    }
    if (cc.changes.length > 0) this.changesLeft--;
    // A new member's replica starts only once the change is accepted, so refusals waste no ids.
    if (cc.changes.some((c) => c.nodeId === this.host.newNodeId())) this.host.provision(now);
    this.pending = {
      cc,
      data: encodeConfChange(cc),
      index: res.index,
      term: res.term,
      deadlineStep: now + 30 * this.options.raft.electionTicks,
    };
    if (this.host.trace.enabled) {
      const what = cc.changes.map((c) => `${c.type} ${c.nodeId}`).join(', ') || 'leave joint';
      this.host.trace.line(
        now,
        leader.id,
        `operator: ${cc.transition} [${what}] at ${res.index}@${res.term}`,
      );
    }
  }

  /** choose draws a change valid for `cs`; a new member gets id `newNodeId()`. */
  private choose(cs: ConfState): ConfChange | null {
    const voters = cs.voters;
    const learners = cs.learners;
    const members = voters.length + learners.length;
    const kinds: string[] = [];
    if (learners.length > 0) kinds.push('promote', 'promote', 'swap', 'remove-learner');
    if (members < MEMBERS_MAX) kinds.push('add-learner', 'add-voter', 'replace');
    if (voters.length > VOTERS_MIN) kinds.push('remove-voter');
    if (kinds.length === 0) return null;
    const kind = pick(this.random, kinds);
    const single = (changes: ConfChangeSingle[]): ConfChange => ({
      transition: ConfChangeTransition.Auto,
      changes,
      context: kind,
    });
    const joint = (changes: ConfChangeSingle[]): ConfChange => ({
      transition: pick(this.random, [
        ConfChangeTransition.Auto,
        ConfChangeTransition.JointImplicit,
        ConfChangeTransition.JointExplicit,
      ]),
      changes,
      context: kind,
    });
    switch (kind) {
      case 'promote':
        return single([{ type: ConfChangeType.AddVoter, nodeId: pick(this.random, learners) }]);
      case 'remove-learner':
        return single([{ type: ConfChangeType.RemoveNode, nodeId: pick(this.random, learners) }]);
      case 'remove-voter':
        return single([{ type: ConfChangeType.RemoveNode, nodeId: pick(this.random, voters) }]);
      case 'swap':
        // Demote a voter to learner and promote a learner, at once.
        return joint([
          { type: ConfChangeType.AddVoter, nodeId: pick(this.random, learners) },
          { type: ConfChangeType.AddLearner, nodeId: pick(this.random, voters) },
        ]);
      case 'add-learner': {
        const id = this.host.newNodeId();
        return id === 0 ? null : single([{ type: ConfChangeType.AddLearner, nodeId: id }]);
      }
      case 'add-voter': {
        const id = this.host.newNodeId();
        return id === 0 ? null : single([{ type: ConfChangeType.AddVoter, nodeId: id }]);
      }
      case 'replace': {
        const id = this.host.newNodeId();
        if (id === 0) return null;
        return joint([
          { type: ConfChangeType.AddVoter, nodeId: id },
          { type: ConfChangeType.RemoveNode, nodeId: pick(this.random, voters) },
        ]);
      }
      default:
        return null;
    }
  }
}

/** membersOf lists every id a ConfState mentions. */
export function membersOf(cs: ConfState): Set<number> {
  const s = new Set<number>();
  for (const ids of [cs.voters, cs.votersOutgoing, cs.learners, cs.learnersNext])
    for (const id of ids) s.add(id);
  return s;
}
