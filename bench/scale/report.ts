/**
 * The scaling benchmark's report: its JSON shape, and one markdown table per section, each
 * under a caption that says what was measured and how (real node processes or in-process).
 * Numbers go through bench/compare/report.ts `fmt`, as in the side-by-side tables.
 */
import { type CompareReport, fmt } from '../compare/report.js';
import type { GroupsRow, GroupsTiming } from './groups.js';
import type { KeysRow } from './keys.js';
import type { NodesRow, NodesTiming } from './nodes.js';
import type { TtlResult } from './ttl.js';
import type { WatchersRow } from './watchers.js';

/** SECTIONS are the sections, in the order they run. */
export const SECTIONS = ['groups', 'keys', 'watchers', 'ttl', 'nodes'] as const;
/** Section names one of them. */
export type Section = (typeof SECTIONS)[number];

/** ScalePlan is what a run measures: sizes and windows per section. */
export interface ScalePlan {
  readonly quick: boolean;
  readonly sections: readonly Section[];
  readonly groups: { readonly partitions: readonly number[]; readonly timing: GroupsTiming };
  readonly keys: { readonly sizes: readonly number[] };
  readonly watchers: { readonly sizes: readonly number[]; readonly measureMs: number };
  readonly ttl: { readonly keys: number; readonly windowMs: number };
  readonly nodes: { readonly sizes: readonly number[]; readonly timing: NodesTiming };
}

/** ScaleReport is the JSON file's content. Absent sections were not run; failed ones are in `errors`. */
export interface ScaleReport {
  readonly kind: 'dkv-scale';
  readonly date: string;
  /** The machine, as the side-by-side report describes it. */
  readonly machine: CompareReport['machine'];
  /** The code measured: its git commit, and the files under src/ that differed from it. */
  readonly source: { readonly commit: string; readonly changedSrcFiles: readonly string[] };
  readonly plan: ScalePlan;
  groups?: GroupsRow[];
  keys?: KeysRow[];
  watchers?: WatchersRow[];
  ttl?: TtlResult;
  nodes?: NodesRow[];
  /** Per failed section, what went wrong. */
  readonly errors: Partial<Record<Section, string>>;
  elapsedS: number;
}

function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** pct prints CPU seconds per second as a percentage of one core. */
function pct(x: number): string {
  return `${fmt(x * 100)}%`;
}

function mib(bytes: number): string {
  return fmt(bytes / 1024 / 1024);
}

/** seconds prints a duration in seconds, with as many decimals as it needs (up to 2). */
function seconds(ms: number): string {
  return Number.isFinite(ms) ? String(Math.round(ms / 10) / 100) : '-';
}

/** count prints a whole number with thousands separators. */
function count(x: number): string {
  return Math.round(x).toLocaleString('en-US');
}

/** groupsMarkdown is the partition-groups table. */
export function groupsMarkdown(rows: readonly GroupsRow[], t: GroupsTiming): string {
  const caption = `**Partition groups per node** (3 node processes on one 2-core box, every group replicated on all 3; plus the metadata group). Start: spawn until every group has a leader. Idle: no client load, ${seconds(t.settleMs)} s after start, over ${seconds(t.idleMs)} s, % of one core. Put: C=64, 16-byte keys over 10 000, 128-byte values, ${seconds(t.measureMs)} s after ${seconds(t.warmupMs)} s warm-up.`;
  return `${caption}\n\n${markdownTable(
    [
      'groups',
      'start s',
      'idle CPU (3 nodes)',
      'idle CPU per node',
      'RSS per node MiB',
      'put ops/s',
      'put p50 ms',
      'put p99 ms',
      'server CPU under put',
    ],
    rows.map((r) => [
      `${r.partitions}${r.stores > 1 ? ` (${r.stores} stores)` : ''}`,
      seconds(r.startS * 1000),
      pct(r.idleCpuTotal),
      r.idleCpuPerNode.map(pct).join(' / '),
      r.rssMiBPerNode.map((x) => fmt(x)).join(' / '),
      `${count(r.putOpsPerSec)}${r.putErrors > 0 ? ` (${r.putErrors} errors)` : ''}`,
      fmt(r.putP50Ms),
      fmt(r.putP99Ms),
      pct(r.putServerCpu),
    ]),
  )}`;
}

/** keysMarkdown is the keys table. */
export function keysMarkdown(rows: readonly KeysRow[]): string {
  const caption =
    '**Keys** (16-byte keys, 128-byte values). Heap/key, snapshot and load: in-process (one GroupStateMachine; snapshot streamed into LevelDB through GroupStorage.createSnapshot, synced; load = reopen the storage, read the snapshot back, restore). Fill, RSS/key, disk and restart: a real 3-node cluster, one partition, filled through txn (128 puts each, 16 in flight); a follower is stopped and started again: spawn (under tsx) until it prints `serving`, and until it answers a serializable get of the last key.';
  return `${caption}\n\n${markdownTable(
    [
      'keys',
      'heap B/key',
      'node RSS B/key',
      'snapshot MiB',
      'snapshot ms',
      'load ms',
      'node disk MiB',
      'fill s',
      'restart: serving s',
      'restart: reads s',
    ],
    rows.map((r) => [
      count(r.keys),
      count(r.heapBytesPerKey),
      count(r.nodeRssBytesPerKey),
      mib(r.snapshotBytes),
      fmt(r.snapshotMs),
      fmt(r.loadMs),
      mib(r.nodeDiskBytes),
      seconds(r.fillMs),
      seconds(r.restartServingMs),
      seconds(r.restartReadMs),
    ]),
  )}`;
}

/** watchersMarkdown is the watchers table. */
export function watchersMarkdown(rows: readonly WatchersRow[]): string {
  const caption =
    '**Watchers of one key** (3 node processes; watchers spread over client connections of at most 500 streams, in this one process). One writer puts the key at the rate shown, one put at a time; latency is put sent -> event handed out, per event per watcher; "all" is per put, until the last watcher had it. CPU: the 3 nodes, and this process (watchers and writer).';
  return `${caption}\n\n${markdownTable(
    [
      'watchers',
      'puts/s',
      'events delivered',
      'setup s',
      'p50 ms',
      'p99 ms',
      'max ms',
      'all p99 ms',
      'server CPU',
      'client CPU',
    ],
    rows.map((r) => [
      count(r.watchers),
      count(r.putsPerSec),
      `${count(r.eventsDelivered)} / ${count(r.eventsExpected)}`,
      seconds(r.setupS * 1000),
      fmt(r.eventP50Ms),
      fmt(r.eventP99Ms),
      fmt(r.eventMaxMs),
      fmt(r.allDeliveredP99Ms),
      pct(r.serverCpu),
      pct(r.clientCpu),
    ]),
  )}`;
}

/** ttlMarkdown is the TTL table. */
export function ttlMarkdown(r: TtlResult): string {
  const caption = `**TTL expiry** (in-process: one GroupStateMachine, a tick entry applied every 100 ms of real time as a leader proposes them; CPU of this process, % of one core). ${count(r.keys)} keys expire evenly over ${seconds(r.windowMs)} s, against the ${seconds(r.windowMs)} s before with the same ticks and none expiring.`;
  return `${caption}\n\n${markdownTable(
    [
      'TTL keys',
      'expired/s',
      'CPU while expiring',
      'CPU with none expiring',
      'CPU ms per 1000 expiries',
      'longest tick apply ms',
    ],
    [
      [
        count(r.keys),
        count(r.expiredPerSec),
        pct(r.expiryCpu),
        pct(r.idleCpu),
        fmt(r.cpuMsPer1000Expiries),
        fmt(r.tickApplyMaxMs),
      ],
    ],
  )}`;
}

/** nodesMarkdown is the cluster-size table. */
export function nodesMarkdown(rows: readonly NodesRow[], t: NodesTiming): string {
  const caption = `**Cluster size** (node processes on one 2-core box; 6 partitions, 3 replicas each). C=64, 16-byte keys over 10 000, 128-byte values, ${seconds(t.measureMs)} s after ${seconds(t.warmupMs)} s warm-up; get is linearizable. CPU: the nodes summed, % of one core.`;
  return `${caption}\n\n${markdownTable(
    ['nodes', 'workload', 'ops/s', 'p50 ms', 'p99 ms', 'server CPU', 'start s'],
    rows.map((r) => [
      count(r.nodes),
      r.workload === 'get' ? 'linearizable get' : 'put',
      `${count(r.opsPerSec)}${r.errors > 0 ? ` (${r.errors} errors)` : ''}`,
      fmt(r.p50Ms),
      fmt(r.p99Ms),
      pct(r.serverCpu),
      seconds(r.startS * 1000),
    ]),
  )}`;
}

/** reportMarkdown is every table the report holds, in section order. */
export function reportMarkdown(r: ScaleReport): string {
  const parts: string[] = [];
  if (r.groups !== undefined) parts.push(groupsMarkdown(r.groups, r.plan.groups.timing));
  if (r.keys !== undefined) parts.push(keysMarkdown(r.keys));
  if (r.watchers !== undefined) parts.push(watchersMarkdown(r.watchers));
  if (r.ttl !== undefined) parts.push(ttlMarkdown(r.ttl));
  if (r.nodes !== undefined) parts.push(nodesMarkdown(r.nodes, r.plan.nodes.timing));
  for (const [s, e] of Object.entries(r.errors)) parts.push(`**${s}**: failed: ${e}`);
  return parts.join('\n\n');
}
