/**
 * Replica is one simulated server: a RawNode, a durable MemoryStorage and the list state
 * machine, driven by the Ready contract. Durability is modelled: a Ready's writes wait in a
 * pending area until their simulated fsync completes (possibly some steps later); only then
 * are they written to the MemoryStorage (the durable disk), the Ready's messages sent, and
 * its committed entries applied. A crash drops the RawNode, the state machine and whatever
 * is pending; a restart rebuilds everything from the MemoryStorage alone.
 *
 * With the leveldb backend the completed fsync is a real group commit to the replica's
 * LevelDisk, awaited before the messages go out, and the MemoryStorage becomes the model
 * the database is checked against. The core reads the database; a crash closes it and a
 * restart reopens it. Those calls are asynchronous: `processAsync` and `settle` await them
 * one at a time, at fixed points of the step, so the run stays a function of the seed.
 */
import {
  type ConfState,
  decodeConfChange,
  type Entry,
  EntryType,
  type HardState,
  MemoryStorage,
  type Message,
  MessageType,
  RaftRole,
  RawNode,
  type ReadState,
  type Ready,
  type Snapshot,
  type Storage,
} from '../../../src/raft/index.js';
import { SeededRandom } from '../../../src/random.js';
import type { SafetyChecker } from './invariants.js';
import type { LevelDisk } from './level-disk.js';
import { FailureCode, SimFailure } from './sim-failure.js';
import { DriverFault, type SimOptions } from './sim-options.js';
import { ListStateMachine } from './state-machine.js';
import type { Trace } from './trace.js';

/** READY_ROUNDS_PER_STEP_MAX bounds how many Readies a replica handles in one step. */
export const READY_ROUNDS_PER_STEP_MAX = 8;

/** PENDING_READS_MAX bounds the ReadStates a replica holds while it catches up. */
export const PENDING_READS_MAX = 256;

/** ReplicaHost is what a replica needs from the cluster around it. */
export interface ReplicaHost {
  /** The current simulation step. */
  readonly now: number;
  readonly checker: SafetyChecker;
  readonly trace: Trace;
  /** send puts a message on the network. */
  send(message: Message): void;
  /** onApplied is told of every applied non-empty Normal entry (clients acknowledge from it). */
  onApplied(node: number, entry: Entry): void;
  /** onConfChange is told of every applied membership change and the membership after it. */
  onConfChange(node: number, index: number, confState: ConfState): void;
  /** onRead serves one ReadState once the replica has applied through its index. */
  onRead(node: number, readState: ReadState): void;
}

/** InFlightReady is a Ready whose writes wait for their fsync. */
interface InFlightReady {
  readonly rd: Ready;
  /** The step at which the fsync completes. */
  readonly syncStep: number;
}

/** DueSnapshot is a local snapshot about to be taken. */
interface DueSnapshot {
  readonly index: number;
  readonly confState: ConfState;
  readonly image: Uint8Array;
}

/** Replica is one simulated server. */
export class Replica {
  readonly id: number;
  /**
   * The durable disk. Only completed fsyncs write to it. With the leveldb backend it is the
   * model of what the database holds (the core reads the database).
   */
  readonly storage: MemoryStorage;
  /** The real database (leveldb backend), or null (memory backend). */
  readonly disk: LevelDisk | null;
  private readonly options: SimOptions;
  private readonly host: ReplicaHost;
  /** The replica's own random stream: election jitter, fsync latency, clock drift. */
  private readonly random: SeededRandom;
  /** Chance per step that this replica's clock ticks. */
  readonly tickProbability: number;
  /** The running core, or null while the replica is down. */
  node: RawNode | null = null;
  /** The state machine, or null while down. Invariant: non-null iff node is. */
  sm: ListStateMachine | null = null;
  /** The Ready waiting for its fsync, if any. */
  private inflight: InFlightReady | null = null;
  /** ReadStates waiting for the applied index to reach them. */
  private pendingReads: ReadState[] = [];
  /** The role and term as last reported by a Ready (the in-memory view). */
  role: RaftRole = RaftRole.Follower;
  term = 0;
  /** The last index of the in-memory log as handed out by Readies (for the append-only check). */
  private lastIndexSeen = 0;
  /** The commit index of the last durable hard state. */
  private durableCommit = 0;
  /** The replica is frozen (no ticks, no Readies) before this step. */
  pausedUntilStep = 0;
  /** Whether the replica was removed from the cluster for good. */
  removed = false;
  /** A start waits for the next settle point to open the database (leveldb backend). */
  private booting = false;
  /** The database waits for the next settle point to be closed, after a crash (leveldb backend). */
  private closePending = false;
  /** Background reads finished that the core has not been told of yet (leveldb backend). */
  private fetchedUnannounced = false;
  /** Counters. */
  readonly stats = { readies: 0, restarts: 0, snapshotsTaken: 0, snapshotsInstalled: 0 };

  constructor(
    id: number,
    confState: ConfState,
    options: SimOptions,
    host: ReplicaHost,
    random: SeededRandom,
    disk: LevelDisk | null = null,
  ) {
    this.id = id;
    this.storage = new MemoryStorage(confState);
    this.disk = disk;
    this.options = options;
    this.host = host;
    this.random = random;
    this.tickProbability =
      options.tickProbabilityMin >= 1
        ? 1
        : options.tickProbabilityMin + random.float() * (1 - options.tickProbabilityMin);
  }

  /** isUp tells whether the replica is running (or, on LevelDB, starting at the next settle point). */
  get isUp(): boolean {
    return this.node !== null || this.booting;
  }

  /**
   * start boots the replica from its durable storage. On LevelDB the database is opened at
   * the host's next settle point; until then the replica counts as up, as a follower.
   */
  start(now: number): void {
    if (this.node !== null || this.booting) throw new Error(`replica ${this.id}: already up`);
    if (this.disk === null) {
      this.boot(now, this.storage, this.storage.snapshot());
      return;
    }
    this.booting = true;
    this.role = RaftRole.Follower;
    this.term = this.storage.hardState().term;
  }

  /** boot builds the core and the state machine over `storage`, restoring from `snap`. */
  private boot(now: number, storage: Storage, snap: Snapshot): void {
    const trace = this.host.trace;
    const k = this.options.raft;
    this.node = new RawNode({
      id: this.id,
      storage,
      random: new SeededRandom(this.random.nextUint32()),
      applied: snap.metadata.index,
      electionTicks: k.electionTicks,
      heartbeatTicks: k.heartbeatTicks,
      maxMsgBytes: k.maxMsgBytes,
      maxInflightMsgs: k.maxInflightMsgs,
      maxUncommittedBytes: k.maxUncommittedBytes,
      maxCommittedBytesPerReady: k.maxCommittedBytesPerReady,
      snapshotChunkBytes: k.snapshotChunkBytes,
      checkQuorum: k.checkQuorum,
      preVote: k.preVote,
      readOnlyOption: k.readOnlyOption,
      coalesceAppends: k.coalesceAppends,
      ...(trace.enabled ? { trace: (line: string) => trace.line(this.host.now, this.id, line) } : {}),
    });
    this.sm = ListStateMachine.restore(snap.data);
    if (snap.data.length > 0) this.checkSnapshotImage(this.sm);
    this.sm.appliedIndex = snap.metadata.index;
    const hs = this.storage.hardState();
    this.role = RaftRole.Follower;
    this.term = hs.term;
    this.lastIndexSeen = this.storage.lastIndex();
    this.durableCommit = hs.commit;
    this.pendingReads = [];
    this.inflight = null;
    this.fetchedUnannounced = false;
    if (trace.enabled) {
      trace.line(
        now,
        this.id,
        `start: snapshot ${snap.metadata.index}, log ${this.storage.firstIndex()}..${this.storage.lastIndex()}, ` +
          `hs term=${hs.term} vote=${hs.vote} commit=${hs.commit}`,
      );
    }
  }

  /** crash stops the replica, losing everything that is not durable. */
  crash(now: number): void {
    if (this.booting) {
      // Crashed again before its restart got to open the database.
      this.booting = false;
      if (this.host.trace.enabled)
        this.host.trace.line(now, this.id, 'crash (before the restart opened its disk)');
      return;
    }
    if (this.node === null) return;
    if (this.host.trace.enabled) {
      this.host.trace.line(now, this.id, `crash${this.inflight !== null ? ' (fsync in flight: lost)' : ''}`);
    }
    this.node = null;
    this.sm = null;
    this.inflight = null;
    this.pendingReads = [];
    if (this.disk !== null) {
      this.closePending = true;
      this.fetchedUnannounced = false;
    }
  }

  /** restart boots a crashed replica again. */
  restart(now: number): void {
    if (this.isUp || this.removed) return;
    this.stats.restarts++;
    this.start(now);
  }

  // ------------------------------------------------------------ LevelDB: settle points

  /**
   * settle finishes this replica's outstanding disk work, in a fixed order: background reads,
   * then the close after a crash, then the open of a pending start, which recovers from the
   * database and checks it against the durable model in full.
   *
   * Determinism rests on one rule, kept by every async method here: a background read of
   * this replica lands (changes the storage) only when drained, at a point the seed fixes,
   * and drained reads are awaited before anything else of this replica's runs. How long the
   * read really took then makes no difference: until it lands, the core sees it in flight.
   */
  async settle(now: number): Promise<void> {
    const disk = this.disk;
    if (disk === null) return;
    try {
      await this.landReads(now);
      if (this.closePending) {
        this.closePending = false;
        await disk.close();
      }
      if (this.booting) {
        this.booting = false;
        const snap = await disk.open();
        await disk.checkReopened(this.storage, snap);
        if (this.host.trace.enabled) {
          this.host.trace.line(
            now,
            this.id,
            `disk: LevelDB ${disk.stats.reopens > 0 ? `reopened (#${disk.stats.reopens})` : 'created'}, matching the durable model`,
          );
        }
        this.boot(now, disk.storage, snap);
        // Building the core may already have asked for entries.
        await this.landReads(now);
      }
    } catch (err) {
      throw withNode(this.id, err);
    }
  }

  /**
   * announceFetched tells the core, once per step, that background reads have landed (paused
   * replicas hear of it when they resume); then reads in flight, maybe just started, may land.
   */
  async announceFetched(now: number): Promise<void> {
    const node = this.node;
    try {
      if (node !== null && this.fetchedUnannounced && now >= this.pausedUntilStep) {
        this.fetchedUnannounced = false;
        node.entriesFetched();
      }
      await this.landReads(now);
    } catch (err) {
      throw withNode(this.id, err);
    }
  }

  /** shutdown closes the database for good at the end of a run. */
  async shutdown(): Promise<void> {
    this.node = null;
    this.sm = null;
    this.booting = false;
    this.closePending = false;
    await this.disk?.close();
  }

  /**
   * landReads is a point where this replica's background reads in flight may land: they do,
   * unless the seed holds them longer (a slow disk), so that some land after a write of the
   * same log (a truncation, a compaction). Only a close lands them unconditionally.
   */
  private async landReads(now: number): Promise<void> {
    const disk = this.disk;
    if (disk === null) return;
    if (disk.holdReads()) {
      if (this.host.trace.enabled) this.host.trace.line(now, this.id, 'disk: background read held');
      return;
    }
    await this.drainReads();
  }

  /** drainReads waits for this replica's background reads, and remembers to tell the core. */
  private async drainReads(): Promise<void> {
    if (this.disk !== null && (await this.disk.drainReads())) this.fetchedUnannounced = true;
  }

  /** tick advances the replica's clock, unless its drifting clock skips this step or it is paused. */
  tick(now: number): void {
    const node = this.node;
    if (node === null || now < this.pausedUntilStep) return;
    if (this.tickProbability >= 1 || this.random.float() < this.tickProbability) node.tick();
  }

  /** receive steps a message from the network into the core. */
  receive(m: Message): void {
    if (this.node === null) return;
    try {
      this.node.step(m);
    } catch (err) {
      throw withNode(this.id, err);
    }
  }

  /** process handles Readies: starts fsyncs, and completes those that are due. */
  process(now: number): void {
    if (now < this.pausedUntilStep) return;
    try {
      this.processReadies(now);
    } catch (err) {
      throw withNode(this.id, err);
    }
  }

  /**
   * processAsync is `process` on LevelDB: a completed fsync is a group commit to the
   * database, and a local snapshot is written to it, each awaited before going on. Around
   * each write is a point where background reads may land (see `landReads`).
   */
  async processAsync(now: number): Promise<void> {
    if (now < this.pausedUntilStep) return;
    try {
      await this.processReadiesAsync(now);
      await this.landReads(now);
    } catch (err) {
      throw withNode(this.id, err);
    }
  }

  private processReadies(now: number): void {
    for (let round = 0; round < READY_ROUNDS_PER_STEP_MAX; round++) {
      const node = this.node;
      if (node === null) return;
      if (this.inflight !== null) {
        if (this.inflight.syncStep > now) return;
        const rd = this.inflight.rd;
        this.inflight = null;
        this.completeReady(node, rd, now);
        continue;
      }
      if (!node.hasReady()) {
        this.maybeSnapshot(node);
        return;
      }
      this.takeReady(node, now);
    }
  }

  private async processReadiesAsync(now: number): Promise<void> {
    const disk = this.disk!;
    for (let round = 0; round < READY_ROUNDS_PER_STEP_MAX; round++) {
      const node = this.node;
      if (node === null) return;
      if (this.inflight !== null) {
        if (this.inflight.syncStep > now) return;
        const rd = this.inflight.rd;
        this.inflight = null;
        await this.landReads(now);
        await disk.persist(rd);
        this.persistModel(rd);
        await this.landReads(now);
        disk.checkSummary(this.storage);
        this.afterDurable(node, rd, now);
        continue;
      }
      if (!node.hasReady()) {
        const due = this.snapshotDue(node);
        if (due !== null) {
          await this.landReads(now);
          await disk.snapshot(due.index, due.confState, due.image, this.options.snapshotKeepEntries);
          this.snapshotModel(due);
          await this.landReads(now);
          disk.checkSummary(this.storage);
        }
        return;
      }
      this.takeReady(node, now);
    }
  }

  /** takeReady takes the core's next Ready and starts its simulated fsync. */
  private takeReady(node: RawNode, now: number): void {
    const rd = node.ready();
    this.stats.readies++;
    this.observeReady(rd, now);
    const immediate = !rd.mustSync || this.random.float() < this.options.fsyncImmediateProbability;
    const syncStep = immediate ? now : now + 1 + this.random.int(this.options.fsyncStepsMax);
    if (this.options.driverFault === DriverFault.SendBeforeSync) this.sendAll(rd.messages);
    this.inflight = { rd, syncStep };
  }

  /** observeReady checks what the core hands out, at the moment it hands it out. */
  private observeReady(rd: Ready, now: number): void {
    const checker = this.host.checker;
    const wasLeader = this.role === RaftRole.Leader;
    const prevTerm = this.term;
    if (rd.hardState !== null) {
      this.term = rd.hardState.term;
      checker.observeCommitIndex(rd.hardState.commit);
    }
    if (rd.softState !== null) this.role = rd.softState.role;
    if (this.role === RaftRole.Leader) checker.observeLeader(this.id, this.term);
    if (rd.entries.length > 0) {
      const first = rd.entries[0]!.index;
      if (
        wasLeader &&
        this.role === RaftRole.Leader &&
        prevTerm === this.term &&
        first <= this.lastIndexSeen
      ) {
        throw new SimFailure(
          FailureCode.LeaderAppendOnly,
          `n${this.id}, leader of term ${this.term}, rewrote its log from ${first} (last was ${this.lastIndexSeen})`,
        );
      }
      for (let i = 1; i < rd.entries.length; i++) {
        if (rd.entries[i]!.index !== first + i) {
          throw new SimFailure(
            FailureCode.ReadyContract,
            `n${this.id}: Ready entries are not contiguous at ${first + i}`,
          );
        }
      }
      this.lastIndexSeen = rd.entries[rd.entries.length - 1]!.index;
    } else if (rd.snapshot !== null) {
      this.lastIndexSeen = rd.snapshot.metadata.index;
    }
    // Only leaders send appends, heartbeats and snapshot chunks: a sender of one in term T
    // led term T, even if it stepped down before any Ready said so.
    for (const m of rd.messages) {
      if (m.type === MessageType.App || m.type === MessageType.Heartbeat || m.type === MessageType.Snap) {
        checker.observeLeader(m.from, m.term);
      }
    }
    if (this.host.trace.enabled) this.traceReady(rd, now);
  }

  private completeReady(node: RawNode, rd: Ready, now: number): void {
    this.persistModel(rd);
    this.afterDurable(node, rd, now);
  }

  /** persistModel writes a Ready to the durable model, in contract order, checking as it goes. */
  private persistModel(rd: Ready): void {
    // 1. Durable writes, in contract order.
    if (rd.snapshot !== null) this.storage.applySnapshot(rd.snapshot);
    this.storage.append(rd.entries);
    this.host.checker.observeDurable(this.id, rd.entries);
    if (rd.hardState !== null) this.persistHardState(rd.hardState);
  }

  /** afterDurable does what waits for a Ready's writes to be durable: send, apply, read, advance. */
  private afterDurable(node: RawNode, rd: Ready, now: number): void {
    // 2. Messages, now that their preconditions are on disk.
    if (this.options.driverFault !== DriverFault.SendBeforeSync) this.sendAll(rd.messages);
    // 3. The state machine.
    if (rd.snapshot !== null) {
      const restored = ListStateMachine.restore(rd.snapshot.data);
      this.checkSnapshotImage(restored);
      restored.appliedIndex = rd.snapshot.metadata.index;
      this.sm = restored;
      this.stats.snapshotsInstalled++;
      if (this.host.trace.enabled)
        this.host.trace.line(now, this.id, `installed snapshot ${rd.snapshot.metadata.index}`);
    }
    for (const e of rd.committedEntries) {
      this.apply(node, e);
      // Applying a membership change may have removed (and so stopped) this very replica.
      if (this.node !== node) return;
    }
    // 4. Reads.
    if (rd.readStates.length > 0) {
      for (const rs of rd.readStates) {
        if (this.pendingReads.length < PENDING_READS_MAX) this.pendingReads.push(rs);
      }
    }
    this.serveReads();
    // 5. Done.
    node.advance();
  }

  private persistHardState(hs: HardState): void {
    this.storage.setHardState(hs);
    const last = this.storage.lastIndex();
    if (hs.commit > last) {
      throw new SimFailure(
        FailureCode.ReadyContract,
        `n${this.id}: hard state commit ${hs.commit} is beyond the log (${last})`,
      );
    }
    // Every entry up to the persisted commit index is committed: check what we hold of it.
    const from = Math.max(this.durableCommit + 1, this.storage.firstIndex());
    if (hs.commit >= from) {
      const ents = this.storage.entries(from, hs.commit + 1, Number.MAX_SAFE_INTEGER);
      for (const e of ents) this.host.checker.observeCommitted(this.id, e);
    }
    if (hs.commit > this.durableCommit) this.durableCommit = hs.commit;
  }

  private apply(node: RawNode, e: Entry): void {
    const sm = this.sm!;
    if (e.index !== sm.appliedIndex + 1) {
      throw new SimFailure(
        FailureCode.AppliedOrder,
        `n${this.id} was handed entry ${e.index} to apply after ${sm.appliedIndex}`,
      );
    }
    this.host.checker.observeCommitted(this.id, e);
    if (e.type === EntryType.ConfChange) {
      const cs = node.applyConfChange(decodeConfChange(e.data));
      sm.advanceTo(e.index);
      this.host.onConfChange(this.id, e.index, cs);
    } else if (e.data.length > 0) {
      sm.applyPayload(e.index, e.data);
      this.host.onApplied(this.id, e);
    } else {
      sm.advanceTo(e.index);
    }
  }

  private serveReads(): void {
    if (this.pendingReads.length === 0) return;
    const sm = this.sm!;
    const early = this.options.driverFault === DriverFault.ServeReadsEarly;
    const keep: ReadState[] = [];
    for (const rs of this.pendingReads) {
      // Served as of the applied index: a correct driver waits until that reaches rs.index.
      if (early)
        this.host.onRead(this.id, { index: Math.min(rs.index, sm.appliedIndex), context: rs.context });
      else if (rs.index <= sm.appliedIndex) this.host.onRead(this.id, rs);
      else keep.push(rs);
    }
    this.pendingReads = keep;
  }

  private sendAll(messages: readonly Message[]): void {
    const liar = this.options.driverFault === DriverFault.DoubleVote && this.id === 1;
    for (const m of messages) {
      if (liar && m.type === MessageType.VoteResp && m.reject) this.host.send({ ...m, reject: false });
      else this.host.send(m);
    }
  }

  /** checkSnapshotImage checks every payload a snapshot image holds against the committed history. */
  private checkSnapshotImage(sm: ListStateMachine): void {
    for (let k = 0; k < sm.count; k++) {
      const { index, id } = sm.at(k);
      this.host.checker.checkSnapshotPayload(this.id, index, id);
    }
  }

  /** maybeSnapshot takes an application snapshot and compacts the log, keeping a short tail. */
  private maybeSnapshot(node: RawNode): void {
    const due = this.snapshotDue(node);
    if (due !== null) this.snapshotModel(due);
  }

  /** snapshotDue returns the snapshot to take now, if the replica has applied enough since the last one. */
  private snapshotDue(node: RawNode): DueSnapshot | null {
    const sm = this.sm!;
    const snapIndex = this.storage.snapshot().metadata.index;
    if (sm.appliedIndex - snapIndex < this.options.snapshotEveryEntries) return null;
    if (sm.appliedIndex > this.storage.lastIndex()) {
      throw new SimFailure(
        FailureCode.ReadyContract,
        `n${this.id} applied ${sm.appliedIndex} but its durable log ends at ${this.storage.lastIndex()}`,
      );
    }
    return { index: sm.appliedIndex, confState: node.status().confState, image: sm.snapshot() };
  }

  /** snapshotModel records a snapshot in the durable model and compacts it as the disk does. */
  private snapshotModel(due: DueSnapshot): void {
    this.storage.createSnapshot(due.index, due.confState, due.image);
    const compactTo = due.index - this.options.snapshotKeepEntries;
    if (compactTo >= this.storage.firstIndex()) this.storage.compact(compactTo);
    this.stats.snapshotsTaken++;
  }

  private traceReady(rd: Ready, now: number): void {
    const parts: string[] = [];
    if (rd.softState !== null) parts.push(`soft=${rd.softState.role}/lead=${rd.softState.leader}`);
    if (rd.hardState !== null)
      parts.push(`hs=${rd.hardState.term}/${rd.hardState.vote}/${rd.hardState.commit}`);
    if (rd.snapshot !== null) parts.push(`snap=${rd.snapshot.metadata.index}@${rd.snapshot.metadata.term}`);
    if (rd.entries.length > 0) {
      parts.push(
        `ents=${rd.entries[0]!.index}..${rd.entries[rd.entries.length - 1]!.index}@${rd.entries[0]!.term}`,
      );
    }
    if (rd.committedEntries.length > 0) {
      parts.push(
        `apply=${rd.committedEntries[0]!.index}..${rd.committedEntries[rd.committedEntries.length - 1]!.index}`,
      );
    }
    if (rd.readStates.length > 0)
      parts.push(`reads=${rd.readStates.map((r) => `${r.context}@${r.index}`).join(',')}`);
    for (const m of rd.messages) parts.push(describeMessage(m));
    this.host.trace.line(now, this.id, `ready ${parts.join(' ')}`);
  }
}

/** withNode names the replica in an exception thrown by its core, keeping the original as cause. */
function withNode(id: number, err: unknown): unknown {
  if (err instanceof SimFailure) return err;
  const message = err instanceof Error ? err.message : String(err);
  const wrapped = new SimFailure(FailureCode.Exception, `n${id}: ${message}`, { cause: err });
  if (err instanceof Error && err.stack !== undefined) wrapped.stack = err.stack;
  return wrapped;
}

/** describeMessage renders a message compactly for the trace. */
export function describeMessage(m: Message): string {
  let s = `${MESSAGE_NAMES[m.type] ?? m.type}->${m.to} t${m.term}`;
  if (m.type === MessageType.App) s += ` i${m.index}/${m.logTerm} n=${m.entries.length} c${m.commit}`;
  else if (m.type === MessageType.AppResp) s += ` i${m.index}${m.reject ? ` rej hint=${m.rejectHint}` : ''}`;
  else if (m.type === MessageType.Vote || m.type === MessageType.PreVote)
    s += ` last=${m.index}/${m.logTerm}`;
  else if (m.type === MessageType.VoteResp || m.type === MessageType.PreVoteResp)
    s += m.reject ? ' rej' : ' ok';
  else if (m.type === MessageType.Heartbeat) s += ` c${m.commit}`;
  else if (m.type === MessageType.Snap && m.snapshot !== null) {
    s += ` snap${m.snapshot.metadata.index} @${m.snapshot.offset}/${m.snapshot.totalBytes}`;
  } else if (m.type === MessageType.SnapResp) s += ` have=${m.rejectHint}`;
  return s;
}

const MESSAGE_NAMES: Readonly<Record<number, string>> = {
  [MessageType.App]: 'App',
  [MessageType.AppResp]: 'AppResp',
  [MessageType.Vote]: 'Vote',
  [MessageType.VoteResp]: 'VoteResp',
  [MessageType.PreVote]: 'PreVote',
  [MessageType.PreVoteResp]: 'PreVoteResp',
  [MessageType.Snap]: 'Snap',
  [MessageType.SnapResp]: 'SnapResp',
  [MessageType.Heartbeat]: 'HB',
  [MessageType.HeartbeatResp]: 'HBResp',
  [MessageType.TransferLeader]: 'Transfer',
  [MessageType.TimeoutNow]: 'TimeoutNow',
  [MessageType.ReadIndex]: 'ReadIndex',
  [MessageType.ReadIndexResp]: 'ReadIndexResp',
};
