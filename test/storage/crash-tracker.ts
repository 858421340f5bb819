/**
 * CrashTracker follows a crash-test child's stdout and knows, at any moment, which durable
 * states its data directory may hold if the child dies now: everything acknowledged, plus
 * at most the one commit round in flight (all groups of it or none: it is one atomic batch)
 * and, per group, at most one local snapshot in flight.
 */

import { applyChange, applyLocalSnapshot, diffModels, type GroupModel } from './crash-model.js';
import type { ChildLine, GroupChange, LocalSnapshotIntent } from './crash-protocol.js';

/** DurableMatch is the state found on disk, as the model it matched. */
export interface DurableMatch {
  readonly models: Map<number, GroupModel>;
  /** Whether the commit round in flight at the kill had reached the disk. */
  readonly roundLanded: boolean;
  /** Groups whose snapshot in flight at the kill had reached the disk. */
  readonly snapshotsLanded: number[];
}

/** CrashTracker turns a child's intents and acknowledgements into the states allowed on disk. */
export class CrashTracker {
  /** The acknowledged state of every group. */
  private readonly acked: Map<number, GroupModel>;
  private pendingRound: { readonly round: number; readonly changes: readonly GroupChange[] } | null = null;
  private readonly pendingSnaps = new Map<number, LocalSnapshotIntent>();
  /** Counters for the test's report. */
  readonly counts = { rounds: 0, entries: 0, conflicts: 0, installs: 0, snapshots: 0 };

  constructor(models: ReadonlyMap<number, GroupModel>) {
    this.acked = new Map(models);
  }

  /** onLine takes the child's next line; a line out of protocol order throws. */
  onLine(line: ChildLine): void {
    switch (line.k) {
      case 'ready':
        return;
      case 'intent':
        if (this.pendingRound)
          throw new Error(`round ${line.round} started before ${this.pendingRound.round} was acknowledged`);
        for (const c of line.changes) {
          if (!this.acked.has(c.group)) throw new Error(`intent for unknown group ${c.group}`);
          if (c.kind === 'install' && this.pendingSnaps.has(c.group)) {
            throw new Error(`install in group ${c.group} while a local snapshot is in flight`);
          }
        }
        this.pendingRound = { round: line.round, changes: line.changes };
        return;
      case 'ack': {
        const p = this.pendingRound;
        if (!p || p.round !== line.round)
          throw new Error(`ack of round ${line.round}, which is not in flight`);
        for (const c of p.changes) {
          this.acked.set(c.group, applyChange(this.acked.get(c.group)!, c));
          this.counts.entries += Math.max(0, c.last - c.first + 1);
          if (c.kind === 'conflict') this.counts.conflicts++;
          if (c.kind === 'install') this.counts.installs++;
        }
        this.counts.rounds++;
        this.pendingRound = null;
        return;
      }
      case 'snap-intent':
        if (this.pendingSnaps.has(line.snap.group))
          throw new Error(`two snapshots in flight in group ${line.snap.group}`);
        this.pendingSnaps.set(line.snap.group, line.snap);
        return;
      case 'snap-ack': {
        const s = this.pendingSnaps.get(line.group);
        if (!s || s.index !== line.index)
          throw new Error(`snap-ack of ${line.group}@${line.index}, which is not in flight`);
        this.acked.set(line.group, applyLocalSnapshot(this.acked.get(line.group)!, s));
        this.pendingSnaps.delete(line.group);
        this.counts.snapshots++;
        return;
      }
    }
  }

  /** inFlight says what was being written when the child died. */
  inFlight(): { round: boolean; install: boolean; localSnapshot: boolean } {
    return {
      round: this.pendingRound !== null,
      install: this.pendingRound?.changes.some((c) => c.kind === 'install') ?? false,
      localSnapshot: this.pendingSnaps.size > 0,
    };
  }

  /**
   * match finds the allowed state that `disk` holds, or throws an Error describing how the
   * disk differs from the acknowledged state (and from the state with the round in flight).
   */
  match(disk: ReadonlyMap<number, GroupModel>): DurableMatch {
    const failures: string[] = [];
    for (const roundLanded of this.pendingRound ? [false, true] : [false]) {
      const models = new Map<number, GroupModel>();
      const snapshotsLanded: number[] = [];
      const problems: string[] = [];
      for (const [g, acked] of this.acked) {
        const found = disk.get(g);
        if (!found) {
          problems.push(`group ${g} is missing`);
          continue;
        }
        const change = roundLanded ? this.pendingRound?.changes.find((c) => c.group === g) : undefined;
        const base = change ? applyChange(acked, change) : acked;
        const snap = this.pendingSnaps.get(g);
        const diff = diffModels(base, found);
        if (diff === null) {
          models.set(g, base);
        } else if (snap && diffModels(applyLocalSnapshot(base, snap), found) === null) {
          models.set(g, found);
          snapshotsLanded.push(g);
        } else {
          problems.push(
            `group ${g}: ${diff}${snap ? ` (nor does the snapshot at ${snap.index} in flight explain it)` : ''}`,
          );
        }
      }
      if (problems.length === 0) return { models, roundLanded, snapshotsLanded };
      failures.push(
        `${roundLanded ? 'with' : 'without'} round ${this.pendingRound?.round ?? '-'} in flight: ${problems.join('; ')}`,
      );
    }
    throw new Error(`the disk holds no allowed state. ${failures.join(' | ')}`);
  }
}
