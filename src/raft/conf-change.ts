import type { Progress } from './progress.js';
import {
  cloneTrackerConfig,
  type InflightLimits,
  isJoint,
  newProgress,
  type ProgressMap,
  type TrackerConfig,
} from './tracker.js';
import {
  type ConfChange,
  ConfChangeTransition,
  ConfChangeType,
  type ConfState,
  type NodeId,
} from './types.js';

/** ConfChangeError says why a membership change cannot be applied to the current configuration. */
export class ConfChangeError extends Error {
  override readonly name = 'ConfChangeError';
}

/** ChangeResult is a new configuration and the progress map that goes with it. */
export interface ChangeResult {
  readonly config: TrackerConfig;
  readonly progress: ProgressMap;
}

/** usesJoint tells whether a change must go through a joint configuration. */
export function usesJoint(cc: ConfChange): boolean {
  return cc.transition !== ConfChangeTransition.Auto || cc.changes.length > 1;
}

/** isLeaveJoint tells whether a change is the empty one that leaves a joint configuration. */
export function isLeaveJoint(cc: ConfChange): boolean {
  return cc.changes.length === 0;
}

/**
 * Changer computes the configuration that results from a membership change, without
 * touching the live one: it works on copies, checks every invariant, and returns them.
 * Its rules are those of etcd's confchange package.
 */
export class Changer {
  private readonly config: TrackerConfig;
  private readonly progress: ProgressMap;
  private readonly lastIndex: number;
  private readonly limits: InflightLimits;

  constructor(config: TrackerConfig, progress: ProgressMap, lastIndex: number, limits: InflightLimits) {
    this.config = config;
    this.progress = progress;
    this.lastIndex = lastIndex;
    this.limits = limits;
  }

  /** apply dispatches a ConfChange to enterJoint, leaveJoint or simple. */
  apply(cc: ConfChange): ChangeResult {
    if (isLeaveJoint(cc)) return this.leaveJoint();
    if (usesJoint(cc)) return this.enterJoint(cc.transition !== ConfChangeTransition.JointExplicit, cc);
    return this.simple(cc);
  }

  /** enterJoint makes the current voters the outgoing half and applies the changes to the incoming half. */
  enterJoint(autoLeave: boolean, cc: ConfChange): ChangeResult {
    const { config, progress } = this.copy();
    if (isJoint(config)) throw new ConfChangeError('configuration is already joint');
    if (config.voters[0].size === 0) throw new ConfChangeError("can't make a zero-voter configuration joint");
    for (const id of config.voters[0]) config.voters[1].add(id);
    this.applyChanges(config, progress, cc);
    config.autoLeave = autoLeave;
    checkInvariants(config, progress);
    return { config, progress };
  }

  /** leaveJoint drops the outgoing half, turning demoted voters into learners. */
  leaveJoint(): ChangeResult {
    const { config, progress } = this.copy();
    if (!isJoint(config)) throw new ConfChangeError("can't leave a non-joint configuration");
    for (const id of config.learnersNext) {
      config.learners.add(id);
      const pr = progress.get(id);
      if (pr) progress.set(id, this.withLearnerFlag(pr, true));
    }
    config.learnersNext.clear();
    for (const id of config.voters[1]) {
      if (!config.voters[0].has(id) && !config.learners.has(id)) progress.delete(id);
    }
    config.voters[1].clear();
    config.autoLeave = false;
    checkInvariants(config, progress);
    return { config, progress };
  }

  /** simple applies changes that alter at most one voter, without a joint configuration. */
  simple(cc: ConfChange): ChangeResult {
    const { config, progress } = this.copy();
    if (isJoint(config)) throw new ConfChangeError("can't apply a simple change in a joint configuration");
    this.applyChanges(config, progress, cc);
    let changed = 0;
    for (const id of config.voters[0]) if (!this.config.voters[0].has(id)) changed++;
    for (const id of this.config.voters[0]) if (!config.voters[0].has(id)) changed++;
    if (changed > 1)
      throw new ConfChangeError('more than one voter changed without entering a joint configuration');
    checkInvariants(config, progress);
    return { config, progress };
  }

  private copy(): { config: TrackerConfig; progress: ProgressMap } {
    // Progress objects are shared (not cloned): only membership flags change here, and the
    // result replaces the live map atomically.
    return { config: cloneTrackerConfig(this.config), progress: new Map(this.progress) };
  }

  private applyChanges(config: TrackerConfig, progress: ProgressMap, cc: ConfChange): void {
    for (const ch of cc.changes) {
      if (!Number.isSafeInteger(ch.nodeId) || ch.nodeId <= 0) {
        throw new ConfChangeError(`invalid node id ${ch.nodeId}`);
      }
      switch (ch.type) {
        case ConfChangeType.AddVoter:
          this.makeVoter(config, progress, ch.nodeId);
          break;
        case ConfChangeType.AddLearner:
          this.makeLearner(config, progress, ch.nodeId);
          break;
        case ConfChangeType.RemoveNode:
          remove(config, progress, ch.nodeId);
          break;
        default:
          throw new ConfChangeError(`unknown change type ${String((ch as { type: unknown }).type)}`);
      }
    }
    if (config.voters[0].size === 0) throw new ConfChangeError('removed all voters');
  }

  private makeVoter(config: TrackerConfig, progress: ProgressMap, id: NodeId): void {
    const pr = progress.get(id);
    if (!pr) {
      this.initProgress(config, progress, id, false);
      return;
    }
    // A learner becoming a voter gets a fresh Progress flag; the object itself is shared
    // with the live map, so replace it rather than mutate.
    if (pr.isLearner) progress.set(id, this.withLearnerFlag(pr, false));
    config.learners.delete(id);
    config.learnersNext.delete(id);
    config.voters[0].add(id);
  }

  private makeLearner(config: TrackerConfig, progress: ProgressMap, id: NodeId): void {
    const pr = progress.get(id);
    if (!pr) {
      this.initProgress(config, progress, id, true);
      return;
    }
    if (pr.isLearner) return;
    // Remove any existing voter role in the incoming half, keeping Progress if outgoing.
    remove(config, progress, id);
    if (config.voters[1].has(id)) {
      // Still a voter of the outgoing half: becomes a learner when the joint config is left.
      progress.set(id, pr);
      config.learnersNext.add(id);
    } else {
      progress.set(id, this.withLearnerFlag(pr, true));
      config.learners.add(id);
    }
  }

  /**
   * withLearnerFlag returns a copy of `pr` with its learner flag set, so that the live
   * Progress is never mutated by a change that may still be refused. The copy starts probing.
   */
  private withLearnerFlag(pr: Progress, isLearner: boolean): Progress {
    const copy = newProgress(this.limits, pr.match + 1, isLearner);
    copy.match = pr.match;
    copy.recentActive = pr.recentActive;
    return copy;
  }

  private initProgress(config: TrackerConfig, progress: ProgressMap, id: NodeId, isLearner: boolean): void {
    if (isLearner) config.learners.add(id);
    else config.voters[0].add(id);
    const pr = newProgress(this.limits, this.lastIndex, isLearner);
    // A new member counts as active, so that adding it does not make check-quorum step
    // the leader down before the member has had a chance to answer.
    pr.recentActive = true;
    progress.set(id, pr);
  }
}

function remove(config: TrackerConfig, progress: ProgressMap, id: NodeId): void {
  if (!progress.has(id)) return;
  config.voters[0].delete(id);
  config.learners.delete(id);
  config.learnersNext.delete(id);
  if (!config.voters[1].has(id)) progress.delete(id);
}

/** checkInvariants asserts that a configuration and its progress map agree. */
export function checkInvariants(config: TrackerConfig, progress: ProgressMap): void {
  for (const ids of [config.voters[0], config.voters[1], config.learners, config.learnersNext]) {
    for (const id of ids) {
      if (!progress.has(id)) throw new ConfChangeError(`no progress for ${id}`);
    }
  }
  for (const id of config.learnersNext) {
    if (!config.voters[1].has(id))
      throw new ConfChangeError(`${id} is in learnersNext but not an outgoing voter`);
    if (progress.get(id)!.isLearner)
      throw new ConfChangeError(`${id} is in learnersNext but already a learner`);
  }
  for (const id of config.learners) {
    if (config.voters[0].has(id) || config.voters[1].has(id)) {
      throw new ConfChangeError(`${id} is both a learner and a voter`);
    }
    if (!progress.get(id)!.isLearner)
      throw new ConfChangeError(`${id} is a learner without the learner flag`);
  }
  if (!isJoint(config)) {
    if (config.learnersNext.size > 0) throw new ConfChangeError('learnersNext outside a joint configuration');
    if (config.autoLeave) throw new ConfChangeError('autoLeave outside a joint configuration');
  }
}

/**
 * restoreConfig builds the configuration described by a persisted ConfState, with fresh
 * progress for every member.
 */
export function restoreConfig(cs: ConfState, lastIndex: number, limits: InflightLimits): ChangeResult {
  const config: TrackerConfig = {
    voters: [new Set(cs.voters), new Set(cs.votersOutgoing)],
    learners: new Set(cs.learners),
    learnersNext: new Set(cs.learnersNext),
    autoLeave: cs.autoLeave,
  };
  const progress: ProgressMap = new Map();
  for (const id of [...cs.voters, ...cs.votersOutgoing, ...cs.learners]) {
    if (!progress.has(id)) progress.set(id, newProgress(limits, lastIndex + 1, config.learners.has(id)));
  }
  checkInvariants(config, progress);
  return { config, progress };
}
