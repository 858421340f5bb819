/**
 * Checks of the Raft paper's safety properties (Figure 3) over a test Network. A
 * SafetyChecker is called after every step of a run; it remembers what it saw before
 * (leaders per term, leaders' logs, committed entries, commit indexes) and throws an Error
 * naming the broken property and the replicas involved.
 */
import type { Entry, NodeId } from '../../../src/raft/index.js';
import type { Network, Replica } from './network.js';

/** SafetyViolation is thrown when a run breaks one of the properties. */
export class SafetyViolation extends Error {
  override readonly name = 'SafetyViolation';
  /** The property broken, as the paper names it. */
  readonly property: string;

  constructor(property: string, message: string) {
    super(`${property}: ${message}`);
    this.property = property;
  }
}

/** DurableLog is a replica's persisted log as index -> entry, plus its snapshot point. */
interface DurableLog {
  readonly snapshotIndex: number;
  readonly snapshotTerm: number;
  readonly byIndex: ReadonlyMap<number, Entry>;
  readonly lastIndex: number;
}

function durableLog(r: Replica): DurableLog {
  const l = r.log();
  const byIndex = new Map<number, Entry>();
  for (const e of l.entries) byIndex.set(e.index, e);
  const last = l.entries[l.entries.length - 1];
  return {
    snapshotIndex: l.snapshotIndex,
    snapshotTerm: l.snapshotTerm,
    byIndex,
    lastIndex: last ? last.index : l.snapshotIndex,
  };
}

function termIn(log: DurableLog, index: number): number | undefined {
  if (index === log.snapshotIndex) return log.snapshotTerm;
  return log.byIndex.get(index)?.term;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameEntry(a: Entry, b: Entry): boolean {
  return a.index === b.index && a.term === b.term && a.type === b.type && sameBytes(a.data, b.data);
}

/**
 * checkLogMatching asserts the Log Matching property over every pair of durable logs: if
 * two logs hold an entry with the same index and term, they are identical up to it (on the
 * range both still retain).
 */
export function checkLogMatching(net: Network): void {
  const logs = net.ids().map((id) => ({ id, log: durableLog(net.replica(id)) }));
  for (let i = 0; i < logs.length; i++) {
    for (let j = i + 1; j < logs.length; j++) {
      const a = logs[i]!;
      const b = logs[j]!;
      const hi = Math.min(a.log.lastIndex, b.log.lastIndex);
      const lo = Math.max(a.log.snapshotIndex, b.log.snapshotIndex);
      // The highest index where both logs hold the same term: everything below must agree.
      let k = -1;
      for (let x = hi; x >= lo; x--) {
        const ta = termIn(a.log, x);
        if (ta !== undefined && ta === termIn(b.log, x)) {
          k = x;
          break;
        }
      }
      for (let x = lo; x <= k; x++) {
        const ea = a.log.byIndex.get(x);
        const eb = b.log.byIndex.get(x);
        const termsDiffer = termIn(a.log, x) !== termIn(b.log, x);
        const dataDiffers = ea !== undefined && eb !== undefined && !sameEntry(ea, eb);
        if (termsDiffer || dataDiffers) {
          throw new SafetyViolation(
            'Log Matching',
            `replicas ${a.id} and ${b.id} agree at ${k} (term ${termIn(a.log, k)}) but differ at ${x}`,
          );
        }
      }
    }
  }
}

/** CommittedEntry is an entry seen committed, with a term at or after the one that committed it. */
interface CommittedEntry {
  readonly entry: Entry;
  /** A term >= the term in which the entry was committed (the observer's term then). */
  readonly knownByTerm: number;
}

/**
 * SafetyChecker checks, after every step: Election Safety, Leader Append-Only, Log
 * Matching, Leader Completeness, State Machine Safety, and that commit indexes never
 * decrease. It keeps what it needs from earlier steps.
 */
export class SafetyChecker {
  /** The leader seen for each term. */
  readonly leaderOf = new Map<number, NodeId>();
  /** Each leader's log when last seen, keyed by `${id}@${term}`. */
  private readonly leaderLogs = new Map<string, DurableLog>();
  /** The first entry seen applied at each index, and by whom. */
  private readonly appliedAt = new Map<number, { entry: Entry; by: NodeId }>();
  /** Entries seen committed, by index. */
  private readonly committed = new Map<number, CommittedEntry>();
  /** Each replica's highest commit index seen. */
  private readonly commitOf = new Map<NodeId, number>();
  /** How many checks ran. */
  checks = 0;
  /** How many (leader, earlier log) comparisons Leader Append-Only made. */
  appendOnlyComparisons = 0;
  /** How many (leader, committed entry) pairs Leader Completeness examined. */
  completenessComparisons = 0;

  /** appliedSeen is how many log indexes State Machine Safety has seen applied. */
  get appliedSeen(): number {
    return this.appliedAt.size;
  }

  /** check runs every property once on the network's current state. */
  check(net: Network): void {
    this.checks++;
    this.checkCommitMonotonic(net);
    this.checkElectionSafety(net);
    this.checkLeaderAppendOnly(net);
    checkLogMatching(net);
    this.checkStateMachineSafety(net);
    this.recordCommitted(net);
    this.checkLeaderCompleteness(net);
  }

  /** checkCommitMonotonic is one part of `check`; see the class comment. */
  checkCommitMonotonic(net: Network): void {
    for (const id of net.ids()) {
      const commit = net.node(id).status().commit;
      const before = this.commitOf.get(id) ?? 0;
      if (commit < before) {
        throw new SafetyViolation(
          'Commit monotonicity',
          `replica ${id} commit went from ${before} to ${commit}`,
        );
      }
      this.commitOf.set(id, commit);
    }
  }

  /** checkElectionSafety is one part of `check`; see the class comment. */
  checkElectionSafety(net: Network): void {
    for (const { id, term } of net.leaders()) {
      const seen = this.leaderOf.get(term);
      if (seen !== undefined && seen !== id) {
        throw new SafetyViolation('Election Safety', `term ${term} has two leaders: ${seen} and ${id}`);
      }
      this.leaderOf.set(term, id);
    }
  }

  /** checkLeaderAppendOnly is one part of `check`; see the class comment. */
  checkLeaderAppendOnly(net: Network): void {
    for (const { id, term } of net.leaders()) {
      const key = `${id}@${term}`;
      const now = durableLog(net.replica(id));
      const before = this.leaderLogs.get(key);
      if (before) {
        this.appendOnlyComparisons++;
        if (now.lastIndex < before.lastIndex) {
          throw new SafetyViolation(
            'Leader Append-Only',
            `leader ${id} of term ${term} shrank its log from ${before.lastIndex} to ${now.lastIndex}`,
          );
        }
        for (const [index, e] of before.byIndex) {
          if (index <= now.snapshotIndex) continue;
          const cur = now.byIndex.get(index);
          if (!cur || !sameEntry(cur, e)) {
            throw new SafetyViolation(
              'Leader Append-Only',
              `leader ${id} of term ${term} changed its entry ${index} (term ${e.term} -> ${cur?.term})`,
            );
          }
        }
      }
      this.leaderLogs.set(key, now);
    }
  }

  /** checkStateMachineSafety is one part of `check`; see the class comment. */
  checkStateMachineSafety(net: Network): void {
    for (const id of net.ids()) {
      for (const [index, e] of net.replica(id).applied) {
        const first = this.appliedAt.get(index);
        if (!first) {
          this.appliedAt.set(index, { entry: e, by: id });
        } else if (!sameEntry(first.entry, e)) {
          throw new SafetyViolation(
            'State Machine Safety',
            `replica ${first.by} applied term ${first.entry.term} at ${index}, replica ${id} applied term ${e.term}`,
          );
        }
      }
    }
  }

  /** recordCommitted is one part of `check`; see the class comment. */
  recordCommitted(net: Network): void {
    for (const id of net.ids()) {
      const r = net.replica(id);
      const st = r.node.status();
      const log = durableLog(r);
      const upTo = Math.min(st.commit, log.lastIndex);
      for (let i = log.snapshotIndex + 1; i <= upTo; i++) {
        if (this.committed.has(i)) continue;
        const e = log.byIndex.get(i);
        if (e) this.committed.set(i, { entry: e, knownByTerm: st.term });
      }
    }
  }

  /** checkLeaderCompleteness is one part of `check`; see the class comment. */
  checkLeaderCompleteness(net: Network): void {
    for (const { id, term } of net.leaders()) {
      const log = durableLog(net.replica(id));
      for (const [index, c] of this.committed) {
        if (c.knownByTerm > term || index <= log.snapshotIndex) continue;
        this.completenessComparisons++;
        const e = log.byIndex.get(index);
        if (!e || !sameEntry(e, c.entry)) {
          throw new SafetyViolation(
            'Leader Completeness',
            `leader ${id} of term ${term} lacks entry ${index} (term ${c.entry.term}) committed by term ${c.knownByTerm}`,
          );
        }
      }
    }
  }
}
