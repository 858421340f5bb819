/**
 * Human-readable renderings of the core's data types for interaction transcripts, in the
 * style of etcd-io/raft's `Describe*` functions. Every line here ends up in a golden file,
 * so changing a format means regenerating the transcripts (UPDATE_GOLDEN=1).
 */
import {
  type ConfChange,
  ConfChangeType,
  type ConfState,
  decodeConfChange,
  type Entry,
  EntryType,
  type HardState,
  MESSAGE_TYPE_NAMES,
  type Message,
  MessageType,
  type RaftStatus,
  type ReadState,
  type Ready,
  type Snapshot,
  type SnapshotChunk,
  type SoftState,
} from '../../../src/raft/index.js';

const decoder = new TextDecoder();

/** CONF_CHANGE_LETTERS maps a change type to its one-letter transcript prefix (`v4 l5 r2`). */
export const CONF_CHANGE_LETTERS = {
  [ConfChangeType.AddVoter]: 'v',
  [ConfChangeType.AddLearner]: 'l',
  [ConfChangeType.RemoveNode]: 'r',
} as const;

/** describeData quotes a payload as text; the transcripts only ever propose printable data. */
export function describeData(data: Uint8Array): string {
  return JSON.stringify(decoder.decode(data));
}

/** describeConfChange renders a change as `v4 l5 r2`, with its transition unless it is `auto`. */
export function describeConfChange(cc: ConfChange): string {
  if (cc.changes.length === 0) return 'leave-joint';
  const parts = cc.changes.map((ch) => `${CONF_CHANGE_LETTERS[ch.type]}${ch.nodeId}`);
  if (cc.transition !== 'auto') parts.push(`transition=${cc.transition}`);
  return parts.join(' ');
}

/** describeEntry renders an entry as `term/index EntryNormal "data"` or `term/index EntryConfChange v4`. */
export function describeEntry(e: Entry): string {
  if (e.type === EntryType.ConfChange) {
    return `${e.term}/${e.index} EntryConfChange ${describeConfChange(decodeConfChange(e.data))}`;
  }
  return `${e.term}/${e.index} EntryNormal ${describeData(e.data)}`;
}

/** describeEntries renders entries one per line. */
export function describeEntries(ents: readonly Entry[]): string[] {
  return ents.map(describeEntry);
}

const ids = (xs: readonly number[]): string => `(${xs.join(' ')})`;

/** describeConfState renders a membership like etcd: `voters=(1 2 3)&&(1 2) learners=(4) autoleave`. */
export function describeConfState(cs: ConfState): string {
  let s = `voters=${ids(cs.voters)}`;
  if (cs.votersOutgoing.length > 0) s += `&&${ids(cs.votersOutgoing)}`;
  if (cs.learners.length > 0) s += ` learners=${ids(cs.learners)}`;
  if (cs.learnersNext.length > 0) s += ` learners_next=${ids(cs.learnersNext)}`;
  if (cs.autoLeave) s += ' autoleave';
  return s;
}

/** describeHardState renders `HardState Term:1 Vote:1 Commit:12`. */
export function describeHardState(hs: HardState): string {
  return `HardState Term:${hs.term} Vote:${hs.vote} Commit:${hs.commit}`;
}

/** describeSoftState renders `Lead:1 Role:leader`. */
export function describeSoftState(ss: SoftState): string {
  return `Lead:${ss.leader} Role:${ss.role}`;
}

/** describeSnapshot renders a snapshot's metadata and payload. */
export function describeSnapshot(s: Snapshot): string {
  const m = s.metadata;
  return `Snapshot Index:${m.index} Term:${m.term} ConfState:${describeConfState(m.confState)} Data:${describeData(s.data)}`;
}

function describeChunk(c: SnapshotChunk): string {
  const m = c.metadata;
  const end = c.offset + c.data.length;
  return ` Snapshot:${m.term}/${m.index} Chunk:[${c.offset},${end})/${c.totalBytes}`;
}

/**
 * describeMessage renders a message on one line, for example
 * `1->2 MsgApp Term:1 Log:1/3 Commit:2 Entries:[1/4 EntryNormal "x"]`. Only the fields that
 * mean something for the message's type are shown.
 */
export function describeMessage(m: Message): string {
  let s = `${m.from}->${m.to} ${MESSAGE_TYPE_NAMES[m.type]} Term:${m.term}`;
  switch (m.type) {
    case MessageType.App:
    case MessageType.Vote:
    case MessageType.PreVote:
      s += ` Log:${m.logTerm}/${m.index}`;
      break;
    case MessageType.AppResp:
    case MessageType.ReadIndexResp:
      s += ` Index:${m.index}`;
      break;
    case MessageType.SnapResp:
      s += ` Snapshot:${m.logTerm}/${m.index} Received:${m.rejectHint}`;
      break;
    default:
  }
  if (m.reject) {
    s += ' Rejected';
    if (m.type === MessageType.AppResp) s += ` (Hint: ${m.logTerm}/${m.rejectHint})`;
  }
  if (m.commit !== 0 || m.type === MessageType.Heartbeat) s += ` Commit:${m.commit}`;
  if (m.entries.length > 0) s += ` Entries:[${describeEntries(m.entries).join(', ')}]`;
  if (m.snapshot) s += describeChunk(m.snapshot);
  if (m.context !== '') s += ` Context:${JSON.stringify(m.context)}`;
  return s;
}

/** describeReadState renders `Index:13 Context:"r1"`. */
export function describeReadState(rs: ReadState): string {
  return `Index:${rs.index} Context:${JSON.stringify(rs.context)}`;
}

/** describeReady renders a Ready in the order its fields are to be handled. */
export function describeReady(rd: Ready): string[] {
  const out = [`Ready MustSync=${rd.mustSync}:`];
  if (rd.softState) out.push(describeSoftState(rd.softState));
  if (rd.hardState) out.push(describeHardState(rd.hardState));
  if (rd.snapshot) out.push(describeSnapshot(rd.snapshot));
  if (rd.entries.length > 0) out.push('Entries:', ...describeEntries(rd.entries));
  if (rd.committedEntries.length > 0) out.push('CommittedEntries:', ...describeEntries(rd.committedEntries));
  if (rd.messages.length > 0) out.push('Messages:', ...rd.messages.map(describeMessage));
  if (rd.readStates.length > 0) out.push('ReadStates:', ...rd.readStates.map(describeReadState));
  return out;
}

/** describeStatus renders a replica's status and, on a leader, each member's progress. */
export function describeStatus(st: RaftStatus): string[] {
  const out = [
    `${st.id}: role=${st.role} term=${st.term} vote=${st.vote} leader=${st.leader} commit=${st.commit} applied=${st.applied} log=[${st.firstIndex},${st.lastIndex}]`,
    `   conf: ${describeConfState(st.confState)}`,
  ];
  if (st.leadTransferee !== 0) out.push(`   transferring leadership to ${st.leadTransferee}`);
  if (st.uncommittedBytes !== 0) out.push(`   uncommitted bytes: ${st.uncommittedBytes}`);
  if (st.progress) {
    for (const id of [...st.progress.keys()].sort((a, b) => a - b)) {
      const p = st.progress.get(id)!;
      let s = `   ${id}: ${p.state} match=${p.match} next=${p.next}`;
      if (p.isLearner) s += ' learner';
      if (p.paused) s += ' paused';
      if (p.inflight > 0) s += ` inflight=${p.inflight}`;
      if (!p.recentActive) s += ' inactive';
      out.push(s);
    }
  }
  return out;
}
