/**
 * InteractionEnv holds a handful of RawNodes, each with a MemoryStorage and a toy state
 * machine, and a network queue between them. The transcript commands (handlers.ts) drive it
 * step by step, and everything it does is written to an Output that becomes the golden text.
 * It is modelled on etcd-io/raft's rafttest.InteractionEnv.
 */
import {
  type ConfState,
  decodeConfChange,
  EntryType,
  MESSAGE_TYPE_NAMES,
  MemoryStorage,
  type Message,
  type NodeId,
  type RaftConfig,
  RawNode,
  type Snapshot,
} from '../../../src/raft/index.js';
import { SeededRandom } from '../../../src/random.js';
import { describeMessage, describeReady } from './describe.js';

/** LogLevel orders the trace levels; `none` also silences Ready and message output. */
export const LogLevel = { none: 0, error: 1, warn: 2, info: 3, debug: 4 } as const;
/** LogLevel names a level: `none`, `error`, `warn`, `info` or `debug`. */
export type LogLevel = keyof typeof LogLevel;

/** isLogLevel narrows a string to a LogLevel name. */
export function isLogLevel(s: string): s is LogLevel {
  return Object.hasOwn(LogLevel, s);
}

/** Output collects a command's output lines, indented while inside `stabilize`. */
export class Output {
  private lines: string[] = [];
  /** Spaces prepended to every line. */
  indent = 0;
  /** Trace lines more verbose than this are dropped; at `none` nothing is written at all. */
  level: LogLevel = 'debug';

  /**
   * write appends one line (or several, split on newlines). Trace lines pass their `level`;
   * command output passes none and is shown at every level but `none`.
   */
  write(text: string, level?: LogLevel): void {
    if (this.level === 'none' || (level !== undefined && LogLevel[level] > LogLevel[this.level])) return;
    for (const l of text.split('\n')) this.lines.push(' '.repeat(this.indent) + l);
  }

  /** withIndent runs `f` with the output indented by two more spaces. */
  withIndent(f: () => void): void {
    this.indent += 2;
    try {
      f();
    } finally {
      this.indent -= 2;
    }
  }

  /** take returns everything written since the last take, as one string. */
  take(): string {
    const s = this.lines.join('\n');
    this.lines = [];
    return s;
  }
}

/** NodeOptions are the per-node RaftConfig settings a transcript may choose. */
export type NodeOptions = Omit<RaftConfig, 'id' | 'storage' | 'random' | 'trace' | 'applied'>;

/**
 * TRANSCRIPT_DEFAULTS keep transcripts short: an election timeout of 3 to 5 ticks and a
 * heartbeat every tick, as in etcd's interaction tests. Pre-vote and check-quorum are off
 * unless a scenario turns them on, so each file shows only the mechanisms it is about.
 */
export const TRANSCRIPT_DEFAULTS: NodeOptions = Object.freeze({
  electionTicks: 3,
  heartbeatTicks: 1,
  preVote: false,
  checkQuorum: false,
});

/** STATE_SEPARATOR joins the toy state machine's applied values in a snapshot's data. */
export const STATE_SEPARATOR = ',';

/** InteractionNode is one replica: the core, its storage and a toy state machine. */
export interface InteractionNode {
  readonly id: NodeId;
  readonly storage: MemoryStorage;
  rawNode: RawNode;
  readonly options: NodeOptions;
  /** The payloads of applied normal entries, in order (the toy state machine). */
  state: string[];
  /** The index of the last entry (or snapshot) applied to `state`. */
  applied: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** encodeState turns the toy state machine into snapshot data. */
export function encodeState(state: readonly string[]): Uint8Array {
  return encoder.encode(state.join(STATE_SEPARATOR));
}

function decodeState(data: Uint8Array): string[] {
  const s = decoder.decode(data);
  return s === '' ? [] : s.split(STATE_SEPARATOR);
}

/** ITERATIONS_MAX bounds `stabilize`, so that a livelock fails the test instead of hanging. */
export const ITERATIONS_MAX = 1000;

/** MESSAGES_MAX bounds the network queue; a transcript that floods it is broken. */
export const MESSAGES_MAX = 10_000;

/**
 * InteractionEnv is the world of one transcript: nodes, the network queue, an optional
 * partition, and the output being written.
 */
export class InteractionEnv {
  readonly out = new Output();
  readonly nodes = new Map<NodeId, InteractionNode>();
  /** Messages sent and not yet delivered or dropped, in send order. */
  messages: Message[] = [];
  /** Node -> partition group; messages between groups are dropped. Null when healed. */
  partition: Map<NodeId, number> | null = null;
  /** Options used by `add-nodes` unless it overrides them. */
  defaults: NodeOptions = { ...TRANSCRIPT_DEFAULTS };
  private random: SeededRandom;

  constructor(seed: number) {
    this.random = new SeededRandom(seed);
  }

  /** reseed restarts the random stream that node election timeouts are drawn from. */
  reseed(seed: number): void {
    this.random = new SeededRandom(seed);
  }

  /** node returns a node by id, or throws naming it. */
  node(id: NodeId): InteractionNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  /** sortedIds lists the node ids in ascending order. */
  sortedIds(): NodeId[] {
    return [...this.nodes.keys()].sort((a, b) => a - b);
  }

  /** The number of trace lines the cores have emitted (whatever the log level). */
  private traced = 0;

  private trace = (line: string): void => {
    this.traced++;
    const m = /^(ERROR|WARN|INFO|DEBUG) /.exec(line);
    const level = (m?.[1]?.toLowerCase() ?? 'info') as LogLevel;
    this.out.write(m ? line : `INFO ${line}`, level);
  };

  private newRawNode(id: NodeId, storage: MemoryStorage, options: NodeOptions, applied: number): RawNode {
    return new RawNode({ ...options, id, storage, random: this.random.fork(), trace: this.trace, applied });
  }

  /**
   * addNode starts a replica. With `bootstrap` its storage begins with that snapshot (as if
   * restored from it); otherwise with an empty log and membership `conf` (which may be empty
   * for a node that is to join an existing group).
   */
  addNode(
    id: NodeId,
    conf: ConfState | undefined,
    bootstrap: Snapshot | undefined,
    options: NodeOptions,
  ): void {
    if (this.nodes.has(id)) throw new Error(`node ${id} already exists`);
    const storage = new MemoryStorage(conf);
    let state: string[] = [];
    let applied = 0;
    if (bootstrap) {
      storage.applySnapshot(bootstrap);
      state = decodeState(bootstrap.data);
      applied = bootstrap.metadata.index;
    }
    const rawNode = this.newRawNode(id, storage, options, applied);
    this.nodes.set(id, { id, storage, rawNode, options, state, applied });
  }

  /**
   * restart simulates a crash and restart: the core's volatile state and the state machine
   * are lost; the node comes back from what it persisted (its storage) and replays the
   * committed log after its snapshot.
   */
  restart(id: NodeId): void {
    const n = this.node(id);
    const snap = n.storage.snapshot();
    n.state = decodeState(snap.data);
    n.applied = snap.metadata.index;
    n.rawNode = this.newRawNode(id, n.storage, n.options, n.applied);
  }

  /** processReady handles one Ready of `id` the way the driver contract in types.ts says. */
  processReady(id: NodeId): void {
    const n = this.node(id);
    const rd = n.rawNode.ready();
    this.out.write(describeReady(rd).join('\n'));
    if (rd.snapshot) n.storage.applySnapshot(rd.snapshot);
    n.storage.append(rd.entries);
    if (rd.hardState) n.storage.setHardState(rd.hardState);
    this.send(rd.messages);
    if (rd.snapshot) {
      n.state = decodeState(rd.snapshot.data);
      n.applied = rd.snapshot.metadata.index;
    }
    for (const e of rd.committedEntries) {
      if (e.type === EntryType.ConfChange) n.rawNode.applyConfChange(decodeConfChange(e.data));
      else if (e.data.length > 0) n.state.push(decoder.decode(e.data));
      n.applied = e.index;
    }
    n.rawNode.advance();
  }

  /** send puts messages on the network, dropping those that cross the partition. */
  send(msgs: readonly Message[]): void {
    const dropped: Message[] = [];
    for (const m of msgs) {
      if (this.cut(m.from, m.to)) dropped.push(m);
      else this.messages.push(m);
    }
    if (this.messages.length > MESSAGES_MAX) {
      throw new Error(`network queue holds ${this.messages.length} messages (max ${MESSAGES_MAX})`);
    }
    this.reportPartitionDrops(dropped);
  }

  private reportPartitionDrops(dropped: readonly Message[]): void {
    if (dropped.length === 0) return;
    const names = dropped.map((m) => `${m.from}->${m.to} ${MESSAGE_TYPE_NAMES[m.type]}`);
    this.out.write(`partition dropped: ${names.join(', ')}`);
  }

  /** cut tells whether the partition separates `a` from `b`; a node added since is alone. */
  cut(a: NodeId, b: NodeId): boolean {
    if (!this.partition || a === b) return false;
    const ga = this.partition.get(a);
    return ga === undefined || ga !== this.partition.get(b);
  }

  /**
   * setPartition splits the nodes into `groups`; every node not listed is alone. Messages in
   * flight across the new cut are lost.
   */
  setPartition(groups: readonly (readonly NodeId[])[]): void {
    const p = new Map<NodeId, number>();
    groups.forEach((g, i) => {
      for (const id of g) {
        if (p.has(id)) throw new Error(`node ${id} is in two partition groups`);
        p.set(id, i);
      }
    });
    let next = groups.length;
    for (const id of this.sortedIds()) if (!p.has(id)) p.set(id, next++);
    this.partition = p;
    const kept: Message[] = [];
    const dropped: Message[] = [];
    for (const m of this.messages) (this.cut(m.from, m.to) ? dropped : kept).push(m);
    this.messages = kept;
    this.reportPartitionDrops(dropped);
  }

  /** describePartition renders the current partition as `(1) (2 3)`, or `none`. */
  describePartition(): string {
    if (!this.partition) return 'none';
    const groups = new Map<number, NodeId[]>();
    for (const id of this.sortedIds()) {
      const g = this.partition.get(id) ?? -1;
      groups.set(g, [...(groups.get(g) ?? []), id]);
    }
    return [...groups.values()].map((g) => `(${g.join(' ')})`).join(' ');
  }

  /**
   * deliver hands every queued message addressed to `to` (optionally only of `type`) to
   * that node, in order, or drops them. It returns how many it handled.
   */
  deliver(to: NodeId, drop: boolean, type?: number): number {
    const mine: Message[] = [];
    const rest: Message[] = [];
    for (const m of this.messages)
      (m.to === to && (type === undefined || m.type === type) ? mine : rest).push(m);
    this.messages = rest;
    for (const m of mine) {
      if (drop) {
        this.out.write(`dropped: ${describeMessage(m)}`);
        continue;
      }
      this.out.write(describeMessage(m));
      this.node(to).rawNode.step(m);
    }
    return mine.length;
  }

  /**
   * stabilize alternates handling Ready on, and delivering messages to, the given nodes
   * until none has anything to do.
   */
  stabilize(ids: readonly NodeId[]): void {
    for (let i = 0; i < ITERATIONS_MAX; i++) {
      let done = true;
      for (const id of ids) {
        if (!this.node(id).rawNode.hasReady()) continue;
        done = false;
        this.out.write(`> ${id} handling Ready`);
        this.out.withIndent(() => this.processReady(id));
      }
      for (const id of ids) {
        if (!this.messages.some((m) => m.to === id)) continue;
        done = false;
        this.out.write(`> ${id} receiving messages`);
        this.out.withIndent(() => this.deliver(id, false));
      }
      if (done) return;
    }
    throw new Error(`stabilize: no fixed point after ${ITERATIONS_MAX} rounds`);
  }

  /**
   * tickElection ticks `ids` in lockstep (one tick each per round, as if their clocks ran
   * together) until an election timer fires. Leaders alone tick one election timeout (their
   * check-quorum round). Otherwise the rounds go on until a core reports an event (a
   * campaign, a step-down, or why it cannot campaign), at most twice the election timeout.
   * It returns the number of rounds.
   */
  tickElection(ids: readonly NodeId[]): number {
    const nodes = ids.map((id) => this.node(id));
    const timeouts = nodes.map((n) => n.options.electionTicks ?? TRANSCRIPT_DEFAULTS.electionTicks ?? 3);
    const electionTicks = Math.max(...timeouts);
    const leaders = nodes.filter((n) => n.rawNode.isLeader()).length;
    if (leaders > 0 && leaders < nodes.length) {
      // Followers ticked along with a leader whose heartbeats are not delivered between
      // ticks would time out: that shows a harness artefact, not Raft.
      throw new Error('tick-election: tick leaders and followers separately');
    }
    const leadersOnly = leaders > 0;
    const start = this.traced;
    let ticks = 0;
    while (leadersOnly ? ticks < electionTicks : ticks < 2 * electionTicks && this.traced === start) {
      for (const n of nodes) n.rawNode.tick();
      ticks++;
    }
    return ticks;
  }
}
