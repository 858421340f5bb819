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
  const o = cluster.options;
  const stepsMax = Math.ceil(o.livenessTicksMax / o.tickProbabilityMin);
  const start = cluster.now;
  cluster.nemesis.heal(start);
  cluster.clients.active = false;
  cluster.membership.active = false;
  let probe: ProposalRecord | null = null;
  let probeCommitted = false;
  let readContext = '';
  let readDone = false;
  let waiting = 'a leader';
  for (let i = 0; i < stepsMax; i++) {
    cluster.step();
    const now = cluster.now;
    const leader = cluster.leaderReplica();
    if (!probeCommitted) {
      if (probe !== null) {
        const outcome = outcomeOf(cluster.checker, probe);
        if (outcome === ProposalOutcome.Committed) probeCommitted = true;
        else if (outcome === ProposalOutcome.Superseded) probe = null;
      }
      if (!probeCommitted && probe === null && leader !== undefined) {
        probe = cluster.clients.proposeProbe(leader, now);
        waiting = 'the probe proposal to commit';
      }
      if (!probeCommitted) continue;
    }
    if (!readDone) {
      if (readContext !== '' && !cluster.clients.isReadPending(readContext)) readDone = true;
      else if (
        (readContext === '' || (now - start) % (o.raft.electionTicks * 4) === 0) &&
        leader !== undefined
      ) {
        // (Re)issue the probe read; a read may be dropped with a leader change.
        readContext = cluster.clients.invokeRead(leader, now);
      }
      waiting = 'the probe read to be served';
      if (!readDone) continue;
    }
    const lagging = converged(cluster, probe!);
    if (lagging === '') {
      cluster.clients.sweep();
      const open = [...cluster.clients.unresolved.values()].filter(
        (rec) => outcomeOf(cluster.checker, rec) === ProposalOutcome.Unknown,
      );
      if (open.length === 0) {
        cluster.checkLogs();
        return cluster.now - start;
      }
      waiting = `${open.length} accepted proposals to be committed or superseded (first: p${open[0]!.id} at ${open[0]!.index}@${open[0]!.term})`;
    } else {
      waiting = lagging;
    }
  }
  throw new SimFailure(
    FailureCode.Liveness,
    `no convergence ${stepsMax} steps after healing: waiting for ${waiting}`,
  );
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
