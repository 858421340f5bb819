/**
 * The transcript commands. Each handler reads its arguments from a TestCase, drives the
 * InteractionEnv and writes to `env.out`; a command that writes nothing prints `ok`.
 * A malformed command throws: a transcript with a typo fails rather than blessing nonsense.
 */
import {
  type ConfChange,
  type ConfChangeSingle,
  ConfChangeTransition,
  type ConfState,
  MESSAGE_TYPE_NAMES,
  type NodeId,
  type ProposeResult,
  ReadOnlyOption,
  type Snapshot,
} from '../../../src/raft/index.js';
import type { CmdArg, TestCase } from './datadriven.js';
import {
  CONF_CHANGE_LETTERS,
  describeConfChange,
  describeEntries,
  describeSnapshot,
  describeStatus,
} from './describe.js';
import { encodeState, type InteractionEnv, isLogLevel, type NodeOptions, STATE_SEPARATOR } from './env.js';

/** Handler runs one command. */
export type Handler = (env: InteractionEnv, tc: TestCase) => void;

/** CommandError reports a malformed command, naming its line. */
export class CommandError extends Error {
  override readonly name = 'CommandError';
}

const encoder = new TextEncoder();

function fail(tc: TestCase, msg: string): never {
  throw new CommandError(`line ${tc.line}: ${tc.cmd}: ${msg}`);
}

function parseInt10(tc: TestCase, s: string, what: string): number {
  if (!/^\d+$/.test(s)) fail(tc, `${what} must be a non-negative integer, got "${s}"`);
  return Number(s);
}

/** positional returns the bare arguments (no `=`, no group), in order. */
function positional(tc: TestCase): string[] {
  return tc.args.filter((a) => a.key !== '' && a.vals.length === 0).map((a) => a.key);
}

/** nodeIds returns the bare numeric arguments as node ids. */
function nodeIds(tc: TestCase): NodeId[] {
  return positional(tc).map((s) => parseInt10(tc, s, 'node id'));
}

function oneNode(tc: TestCase): NodeId {
  const ids = nodeIds(tc);
  if (ids.length !== 1) fail(tc, `expects one node id, got ${ids.length}`);
  return ids[0]!;
}

function keyed(tc: TestCase, key: string): CmdArg | undefined {
  return tc.args.find((a) => a.key === key);
}

function keyedInt(tc: TestCase, key: string): number | undefined {
  const a = keyed(tc, key);
  if (!a) return undefined;
  if (a.vals.length !== 1) fail(tc, `${key} takes one value`);
  return parseInt10(tc, a.vals[0]!, key);
}

function keyedIds(tc: TestCase, key: string): NodeId[] {
  return keyed(tc, key)?.vals.map((v) => parseInt10(tc, v, key)) ?? [];
}

function parseBool(tc: TestCase, key: string, v: string): boolean {
  if (v === 'true') return true;
  if (v === 'false') return false;
  return fail(tc, `${key} must be true or false, got "${v}"`);
}

/** CONFIG_KEYS maps transcript option names to the RaftConfig fields they set. */
export const CONFIG_KEYS = {
  'election-ticks': 'electionTicks',
  'heartbeat-ticks': 'heartbeatTicks',
  prevote: 'preVote',
  checkquorum: 'checkQuorum',
  'max-msg-bytes': 'maxMsgBytes',
  'max-uncommitted-bytes': 'maxUncommittedBytes',
  'max-entry-bytes': 'maxEntryBytes',
  'max-inflight-msgs': 'maxInflightMsgs',
  'max-inflight-bytes': 'maxInflightBytes',
  'max-committed-bytes-per-ready': 'maxCommittedBytesPerReady',
  'snapshot-chunk-bytes': 'snapshotChunkBytes',
  'read-only': 'readOnlyOption',
} as const;

type ConfigKey = keyof typeof CONFIG_KEYS;

function isConfigKey(k: string): k is ConfigKey {
  return Object.hasOwn(CONFIG_KEYS, k);
}

/** applyConfigArgs returns `base` with every config key of the command applied. */
function applyConfigArgs(tc: TestCase, base: NodeOptions, ignore: readonly string[]): NodeOptions {
  const o: Record<string, unknown> = { ...base };
  for (const a of tc.args) {
    if (a.vals.length === 0 || ignore.includes(a.key)) continue;
    if (!isConfigKey(a.key)) fail(tc, `unknown option ${a.key}`);
    if (a.vals.length !== 1) fail(tc, `${a.key} takes one value`);
    const v = a.vals[0]!;
    const field = CONFIG_KEYS[a.key];
    if (field === 'preVote' || field === 'checkQuorum') o[field] = parseBool(tc, a.key, v);
    else if (field === 'readOnlyOption') {
      if (v !== ReadOnlyOption.Safe && v !== ReadOnlyOption.LeaseBased) fail(tc, `bad read-only ${v}`);
      o[field] = v;
    } else o[field] = parseInt10(tc, v, a.key);
  }
  return o as NodeOptions;
}

function printProposeResult(env: InteractionEnv, r: ProposeResult): void {
  if (r.ok) env.out.write(`proposed at ${r.term}/${r.index}`);
  else env.out.write(`refused: ${r.code} (leader ${r.leader})`);
}

/** parseConfChanges reads `v4 l5 r2` tokens into changes. */
function parseConfChanges(tc: TestCase, text: string): ConfChangeSingle[] {
  const byLetter = new Map<string, ConfChangeSingle['type']>(
    Object.entries(CONF_CHANGE_LETTERS).map(([type, letter]) => [letter, type as ConfChangeSingle['type']]),
  );
  const out: ConfChangeSingle[] = [];
  for (const tok of text.split(/\s+/).filter((t) => t !== '')) {
    const type = byLetter.get(tok[0] ?? '');
    if (!type) fail(tc, `bad change "${tok}" (want v<id>, l<id> or r<id>)`);
    out.push({ type, nodeId: parseInt10(tc, tok.slice(1), 'change node id') });
  }
  return out;
}

const MESSAGE_TYPES_BY_NAME = new Map<string, number>(
  Object.entries(MESSAGE_TYPE_NAMES).map(([v, name]) => [name, Number(v)]),
);

function addNodes(env: InteractionEnv, tc: TestCase): void {
  const [countArg] = positional(tc);
  if (countArg === undefined) fail(tc, 'needs a node count');
  const count = parseInt10(tc, countArg, 'count');
  const voters = keyedIds(tc, 'voters');
  const learners = keyedIds(tc, 'learners');
  const index = keyedInt(tc, 'index');
  const content = keyed(tc, 'content')?.vals[0] ?? '';
  const options = applyConfigArgs(tc, env.defaults, ['voters', 'learners', 'index', 'content']);
  const conf: ConfState | undefined =
    voters.length + learners.length > 0
      ? { voters, learners, votersOutgoing: [], learnersNext: [], autoLeave: false }
      : undefined;
  if (index !== undefined && !conf) fail(tc, 'index= needs voters=');
  const bootstrap: Snapshot | undefined =
    index !== undefined && conf
      ? { metadata: { index, term: 1, confState: conf }, data: encoder.encode(content) }
      : undefined;
  let id = env.nodes.size === 0 ? 1 : Math.max(...env.nodes.keys()) + 1;
  for (let i = 0; i < count; i++, id++) env.addNode(id, conf, bootstrap, options);
}

function setConfig(env: InteractionEnv, tc: TestCase): void {
  const seed = keyedInt(tc, 'seed');
  if (seed !== undefined) env.reseed(seed);
  env.defaults = applyConfigArgs(tc, env.defaults, ['seed']);
}

function logLevel(env: InteractionEnv, tc: TestCase): void {
  const [level] = positional(tc);
  if (level === undefined || !isLogLevel(level)) fail(tc, `bad level ${String(level)}`);
  env.out.level = level;
}

function campaign(env: InteractionEnv, tc: TestCase): void {
  env.node(oneNode(tc)).rawNode.campaign();
}

function tick(env: InteractionEnv, tc: TestCase): void {
  const [idArg, countArg] = positional(tc);
  if (idArg === undefined || countArg === undefined) fail(tc, 'usage: tick ID COUNT');
  const n = env.node(parseInt10(tc, idArg, 'node id'));
  const count = parseInt10(tc, countArg, 'count');
  for (let i = 0; i < count; i++) n.rawNode.tick();
}

function tickElection(env: InteractionEnv, tc: TestCase): void {
  const ids = nodeIds(tc);
  if (ids.length === 0) fail(tc, 'needs node ids');
  env.tickElection(ids);
}

function tickHeartbeat(env: InteractionEnv, tc: TestCase): void {
  const n = env.node(oneNode(tc));
  const count = n.options.heartbeatTicks ?? 1;
  for (let i = 0; i < count; i++) n.rawNode.tick();
}

function propose(env: InteractionEnv, tc: TestCase): void {
  const [idArg, data] = positional(tc);
  if (idArg === undefined || data === undefined) fail(tc, 'usage: propose ID DATA');
  if (data.includes(STATE_SEPARATOR)) fail(tc, `data must not contain "${STATE_SEPARATOR}"`);
  const n = env.node(parseInt10(tc, idArg, 'node id'));
  printProposeResult(env, n.rawNode.propose(encoder.encode(data)));
}

function proposeConfChange(env: InteractionEnv, tc: TestCase): void {
  const n = env.node(oneNode(tc));
  const t = keyed(tc, 'transition')?.vals[0] ?? ConfChangeTransition.Auto;
  const transitions: readonly string[] = Object.values(ConfChangeTransition);
  if (!transitions.includes(t)) fail(tc, `bad transition ${t}`);
  const cc: ConfChange = {
    transition: t as ConfChange['transition'],
    changes: parseConfChanges(tc, tc.input),
    context: '',
  };
  env.out.write(`proposing ${describeConfChange(cc)}`);
  printProposeResult(env, n.rawNode.proposeConfChange(cc));
}

function processReady(env: InteractionEnv, tc: TestCase): void {
  const ids = nodeIds(tc);
  for (const id of ids) {
    if (ids.length > 1) env.out.write(`> ${id} handling Ready`);
    if (!env.node(id).rawNode.hasReady()) {
      env.out.write(`${id} has no Ready`);
      continue;
    }
    if (ids.length > 1) env.out.withIndent(() => env.processReady(id));
    else env.processReady(id);
  }
}

function deliverMsgs(env: InteractionEnv, tc: TestCase): void {
  const typeName = keyed(tc, 'type')?.vals[0];
  const type = typeName === undefined ? undefined : MESSAGE_TYPES_BY_NAME.get(typeName);
  if (typeName !== undefined && type === undefined) fail(tc, `unknown message type ${typeName}`);
  const drop = keyedIds(tc, 'drop');
  const ids = nodeIds(tc);
  for (const id of ids) if (drop.includes(id)) fail(tc, `cannot both deliver to and drop for ${id}`);
  let handled = 0;
  for (const id of drop) handled += env.deliver(id, true, type);
  for (const id of ids.length + drop.length > 0 ? ids : env.sortedIds())
    handled += env.deliver(id, false, type);
  if (handled === 0) env.out.write('no messages');
}

function stabilize(env: InteractionEnv, tc: TestCase): void {
  const ids = nodeIds(tc);
  env.stabilize(ids.length > 0 ? ids : env.sortedIds());
}

function partition(env: InteractionEnv, tc: TestCase): void {
  const groups = tc.args.map((a) => {
    if (a.key !== '') fail(tc, 'usage: partition (1) (2,3)');
    return a.vals.map((v) => parseInt10(tc, v, 'node id'));
  });
  env.setPartition(groups);
  env.out.write(`partition: ${env.describePartition()}`);
}

function heal(env: InteractionEnv): void {
  env.partition = null;
  env.out.write('partition: none');
}

function readIndex(env: InteractionEnv, tc: TestCase): void {
  const [idArg, ctx] = positional(tc);
  if (idArg === undefined || ctx === undefined) fail(tc, 'usage: read-index ID CONTEXT');
  if (!env.node(parseInt10(tc, idArg, 'node id')).rawNode.readIndex(ctx)) {
    env.out.write('refused: no leader to ask');
  }
}

function transferLeadership(env: InteractionEnv, tc: TestCase): void {
  const from = keyedInt(tc, 'from');
  const to = keyedInt(tc, 'to');
  if (from === undefined || to === undefined) fail(tc, 'usage: transfer-leadership from=ID to=ID');
  env.node(from).rawNode.transferLeader(to);
}

function compact(env: InteractionEnv, tc: TestCase): void {
  const [idArg, indexArg] = positional(tc);
  if (idArg === undefined || indexArg === undefined) fail(tc, 'usage: compact ID INDEX');
  const n = env.node(parseInt10(tc, idArg, 'node id'));
  const index = parseInt10(tc, indexArg, 'index');
  const snapIndex = n.storage.snapshot().metadata.index;
  if (index > snapIndex) fail(tc, `compacting to ${index} needs a snapshot there (have ${snapIndex})`);
  n.storage.compact(index);
  raftLogOf(env, n.id);
}

function snapshot(env: InteractionEnv, tc: TestCase): void {
  const n = env.node(oneNode(tc));
  const snap = n.storage.createSnapshot(n.applied, n.rawNode.status().confState, encodeState(n.state));
  env.out.write(describeSnapshot(snap));
}

function raftLogOf(env: InteractionEnv, id: NodeId): void {
  const s = env.node(id).storage;
  const first = s.firstIndex();
  const last = s.lastIndex();
  if (last < first) {
    env.out.write(`log is empty: first index=${first}, last index=${last}`);
    return;
  }
  env.out.write(describeEntries(s.entries(first, last + 1, Number.MAX_SAFE_INTEGER)).join('\n'));
}

function raftLog(env: InteractionEnv, tc: TestCase): void {
  raftLogOf(env, oneNode(tc));
}

function raftState(env: InteractionEnv): void {
  for (const id of env.sortedIds()) {
    const st = env.node(id).rawNode.status();
    const cs = st.confState;
    const kind =
      cs.voters.includes(id) || cs.votersOutgoing.includes(id)
        ? 'voter'
        : cs.learners.includes(id)
          ? 'learner'
          : 'not a member';
    env.out.write(`${id}: ${st.role} (${kind}) term=${st.term} leader=${st.leader} commit=${st.commit}`);
  }
}

function status(env: InteractionEnv, tc: TestCase): void {
  env.out.write(describeStatus(env.node(oneNode(tc)).rawNode.status()).join('\n'));
}

function state(env: InteractionEnv, tc: TestCase): void {
  const n = env.node(oneNode(tc));
  env.out.write(`applied=${n.applied} state=[${n.state.join(' ')}]`);
}

function reportUnreachable(env: InteractionEnv, tc: TestCase): void {
  const [leader, peer] = nodeIds(tc);
  if (leader === undefined || peer === undefined) fail(tc, 'usage: report-unreachable LEADER PEER');
  env.node(leader).rawNode.reportUnreachable(peer);
}

function restart(env: InteractionEnv, tc: TestCase): void {
  env.restart(oneNode(tc));
}

/** HANDLERS is the command table. */
export const HANDLERS: Readonly<Record<string, Handler>> = Object.freeze({
  'add-nodes': addNodes,
  campaign,
  compact,
  'deliver-msgs': deliverMsgs,
  heal,
  'log-level': logLevel,
  partition,
  'process-ready': processReady,
  propose,
  'propose-conf-change': proposeConfChange,
  'raft-log': raftLog,
  'raft-state': raftState,
  'read-index': readIndex,
  'report-unreachable': reportUnreachable,
  restart,
  'set-config': setConfig,
  snapshot,
  stabilize,
  state,
  status,
  tick,
  'tick-election': tickElection,
  'tick-heartbeat': tickHeartbeat,
  'transfer-leadership': transferLeadership,
});

/** runCommand runs one block and returns its output (`ok` when it wrote nothing). */
export function runCommand(env: InteractionEnv, tc: TestCase): string {
  const h = HANDLERS[tc.cmd];
  if (!h) throw new CommandError(`line ${tc.line}: unknown command ${tc.cmd}`);
  h(env, tc);
  const out = env.out.take();
  return out === '' ? 'ok' : out;
}
