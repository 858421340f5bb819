/**
 * Liveness is the phase after the faults (TigerBeetle's VOPR does the same): everything is
 * healed, and within a bounded number of steps the cluster must elect a leader, commit a
 * fresh probe proposal, serve a probe read, leave any joint configuration, bring every
 * member up to the probe, and settle the fate of every proposal a leader ever accepted.
 */
import { outcomeOf, ProposalOutcome, type ProposalRecord } from './clients.js';
import type { Cluster } from './cluster.js';
import { bytesEqual } from './payload.js';
import { FailureCode, SimFailure } from './sim-failure.js';

/** runLiveness heals the cluster and steps it until it converges; it throws LIVENESS on timeout. */
export function runLiveness(cluster: Cluster): number {
  const probe = new LivenessProbe(cluster);
  for (let i = 0; i < probe.stepsMax; i++) {
    cluster.step();
    if (probe.converged()) return cluster.now - probe.start;
  }
  throw probe.timeout();
}

/** runLivenessAsync is runLiveness for a cluster on LevelDB (advanced with `stepAsync`). */
export async function runLivenessAsync(cluster: Cluster): Promise<number> {
  const probe = new LivenessProbe(cluster);
  await cluster.settle(cluster.now);
  for (let i = 0; i < probe.stepsMax; i++) {
    await cluster.stepAsync();
    if (probe.converged()) return cluster.now - probe.start;
  }
  throw probe.timeout();
}

/**
 * LivenessProbe heals the cluster when made, then, called after every step, drives the probe
 * proposal and read and tells whether the cluster has converged.
 */
class LivenessProbe {
  readonly start: number;
  readonly stepsMax: number;
  private readonly cluster: Cluster;
  private probe: ProposalRecord | null = null;
  private probeCommitted = false;
  private readContext = '';
  private readDone = false;
  /** What the cluster is waiting for, for the timeout message. */
  private waiting = 'a leader';

  constructor(cluster: Cluster) {
    const o = cluster.options;
    this.cluster = cluster;
    this.stepsMax = Math.ceil(o.livenessTicksMax / o.tickProbabilityMin);
    this.start = cluster.now;
    cluster.nemesis.heal(this.start);
    cluster.clients.active = false;
    cluster.membership.active = false;
  }

  /** converged does this step's probing and returns whether the cluster has converged. */
  converged(): boolean {
    const cluster = this.cluster;
    const o = cluster.options;
    const now = cluster.now;
    const leader = cluster.leaderReplica();
    if (!this.probeCommitted) {
      if (this.probe !== null) {
        const outcome = outcomeOf(cluster.checker, this.probe);
        if (outcome === ProposalOutcome.Committed) this.probeCommitted = true;
        else if (outcome === ProposalOutcome.Superseded) this.probe = null;
      }
      if (!this.probeCommitted && this.probe === null && leader !== undefined) {
        this.probe = cluster.clients.proposeProbe(leader, now);
        this.waiting = 'the probe proposal to commit';
      }
      if (!this.probeCommitted) return false;
    }
    if (!this.readDone) {
      if (this.readContext !== '' && !cluster.clients.isReadPending(this.readContext)) this.readDone = true;
      else if (
        (this.readContext === '' || (now - this.start) % (o.raft.electionTicks * 4) === 0) &&
        leader !== undefined
      ) {
        // (Re)issue the probe read; a read may be dropped with a leader change.
        this.readContext = cluster.clients.invokeRead(leader, now);
      }
      this.waiting = 'the probe read to be served';
      if (!this.readDone) return false;
    }
    const lagging = converged(cluster, this.probe!);
    if (lagging === '') {
      cluster.clients.sweep();
      const open = [...cluster.clients.unresolved.values()].filter(
        (rec) => outcomeOf(cluster.checker, rec) === ProposalOutcome.Unknown,
      );
      if (open.length === 0) {
        cluster.checkLogs();
        return true;
      }
      this.waiting = `${open.length} accepted proposals to be committed or superseded (first: p${open[0]!.id} at ${open[0]!.index}@${open[0]!.term})`;
    } else {
      this.waiting = lagging;
    }
    return false;
  }

  /** timeout is the failure after `stepsMax` steps without convergence. */
  timeout(): SimFailure {
    return new SimFailure(
      FailureCode.Liveness,
      `no convergence ${this.stepsMax} steps after healing: waiting for ${this.waiting}`,
    );
  }
}

/** converged returns '' if every member is up and has applied the probe, else what is missing. */
function converged(cluster: Cluster, probe: ProposalRecord): string {
  const leader = cluster.leaderReplica();
  if (leader?.node == null) return 'a leader';
  if (!cluster.membership.isIdle) return 'the membership change in flight';
  const cs = leader.node.status().confState;
  if (cs.votersOutgoing.length > 0) return 'the joint configuration to be left';
  for (const id of [...cs.voters, ...cs.learners]) {
    const r = cluster.replica(id);
    if (r?.sm == null) return `n${id} to be up`;
    if (r.sm.appliedIndex < probe.index)
      return `n${id} to apply through ${probe.index} (at ${r.sm.appliedIndex})`;
  }
  const at = cluster.checker.committedAt(probe.index);
  if (at === undefined || !bytesEqual(at.data, probe.data)) return 'the probe to stay committed';
  return '';
}
