/**
 * SafetyChecker holds the global history of a run and checks every observation against it:
 * election safety, committed entries never changing, log matching on durable logs, a
 * leader's log growing only by appends, every replica applying one common sequence, and
 * ReadIndex reads being linearizable. A violation throws a SimFailure at once.
 */
import { type Entry, EntryType } from '../../../src/raft/index.js';
import { bytesEqual, decodePayloadId } from './payload.js';
import { FailureCode, SimFailure } from './sim-failure.js';

/** TERM_MAX bounds terms so that (index, term) packs into one safe integer key. */
const TERM_MAX = 1 << 20;

/** CommittedEntry is what the checker remembers of each committed index. */
interface CommittedEntry {
  readonly term: number;
  readonly type: EntryType;
  readonly data: Uint8Array;
  /** Who first reported it, for messages. */
  readonly node: number;
  readonly step: number;
}

/** ReadCheck is one ReadIndex read as the checker sees it. */
export interface ReadCheck {
  readonly context: string;
  /** The highest index known committed anywhere when the read was invoked. */
  readonly requiredIndex: number;
  readonly invokeStep: number;
}

/** SafetyChecker is the global observer of one run. */
export class SafetyChecker {
  /** leaderOfTerm maps each term to the one node that ever led in it. */
  private readonly leaderOfTerm = new Map<number, number>();
  /** committed[i] is the first entry ever reported committed at index i. */
  private readonly committed: (CommittedEntry | undefined)[] = [];
  /** payloadIndex maps each committed proposal id to its index: a proposal commits once. */
  private readonly payloadIndex = new Map<number, number>();
  /** durable maps (index, term) to the data first persisted with that pair, anywhere. */
  private readonly durable = new Map<number, Uint8Array>();
  /**
   * commitKnownMax is the highest index any replica knew to be committed (from its hard
   * state). Invariant: every index up to it is committed.
   */
  commitKnownMax = 0;
  /** The current step, for messages. */
  now = 0;
  /** Counters for progress lines and tests. */
  readonly stats = { leaders: 0, committedChecks: 0, readsChecked: 0 };

  /** observeLeader records that `node` is leader in `term`. */
  observeLeader(node: number, term: number): void {
    const prev = this.leaderOfTerm.get(term);
    if (prev === undefined) {
      this.leaderOfTerm.set(term, node);
      this.stats.leaders++;
      return;
    }
    if (prev !== node) {
      throw new SimFailure(FailureCode.ElectionSafety, `term ${term} has two leaders: n${prev} and n${node}`);
    }
  }

  /** committedAt returns what is known committed at `index`, if anything. */
  committedAt(index: number): { readonly term: number; readonly data: Uint8Array } | undefined {
    return this.committed[index];
  }

  /** committedLength is one past the highest index known committed. */
  get committedLength(): number {
    return this.committed.length;
  }

  /**
   * observeCommitted records that `node` holds `entry` as committed (it applied it, or its
   * persisted commit index covers it). A different entry at the same index is a violation.
   */
  observeCommitted(node: number, entry: Entry): void {
    this.stats.committedChecks++;
    const prev = this.committed[entry.index];
    if (prev === undefined) {
      if (entry.type === EntryType.Normal && entry.data.length > 0) {
        const id = decodePayloadId(entry.data);
        const at = this.payloadIndex.get(id);
        if (at !== undefined && at !== entry.index) {
          throw new SimFailure(
            FailureCode.DuplicateEntry,
            `proposal ${id} committed twice: at ${at} and at ${entry.index}`,
          );
        }
        this.payloadIndex.set(id, entry.index);
      }
      this.committed[entry.index] = {
        term: entry.term,
        type: entry.type,
        data: entry.data,
        node,
        step: this.now,
      };
      return;
    }
    if (prev.term !== entry.term || prev.type !== entry.type || !bytesEqual(prev.data, entry.data)) {
      throw new SimFailure(
        FailureCode.CommittedChanged,
        `index ${entry.index}: n${node} has term ${entry.term} (${entry.data.length}B), ` +
          `but n${prev.node} had term ${prev.term} (${prev.data.length}B) committed at step ${prev.step}`,
      );
    }
  }

  /** checkSnapshotPayload checks one (index, payload) pair restored from a snapshot image. */
  checkSnapshotPayload(node: number, index: number, id: number): void {
    const prev = this.committed[index];
    if (prev === undefined) return;
    if (prev.type !== EntryType.Normal || decodePayloadId(prev.data) !== id) {
      throw new SimFailure(
        FailureCode.CommittedChanged,
        `n${node} restored a snapshot holding proposal ${id} at index ${index}, which was committed otherwise`,
      );
    }
  }

  /** observeCommitIndex notes a commit index some replica persisted. */
  observeCommitIndex(commit: number): void {
    if (commit > this.commitKnownMax) this.commitKnownMax = commit;
  }

  /**
   * observeDurable records entries that `node` made durable. Two entries with the same
   * (index, term) must be identical (the log matching property's base case).
   */
  observeDurable(node: number, entries: readonly Entry[]): void {
    for (const e of entries) {
      if (e.term >= TERM_MAX)
        throw new SimFailure(FailureCode.ReadyContract, `term ${e.term} exceeds ${TERM_MAX}`);
      const key = e.index * TERM_MAX + e.term;
      const prev = this.durable.get(key);
      if (prev === undefined) this.durable.set(key, e.data);
      else if (!bytesEqual(prev, e.data)) {
        throw new SimFailure(
          FailureCode.LogMatching,
          `n${node} persisted a different entry at (${e.index}, ${e.term})`,
        );
      }
    }
  }

  /** checkRead checks that a read served as of `readIndex` saw everything committed before it began. */
  checkRead(node: number, read: ReadCheck, readIndex: number): void {
    this.stats.readsChecked++;
    if (readIndex < read.requiredIndex) {
      throw new SimFailure(
        FailureCode.StaleRead,
        `read ${read.context} on n${node} invoked at step ${read.invokeStep} was served as of index ${readIndex}, ` +
          `but index ${read.requiredIndex} was already committed`,
      );
    }
  }
}
