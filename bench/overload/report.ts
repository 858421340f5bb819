/**
 * The overload benchmark's report: the JSON file's shape, and its markdown (the capacity
 * measured, one row per phase for throughput, shedding and latency, one row per phase and
 * node for memory, and the check that followed). Numbers go through bench/compare/report.ts
 * `fmt`, as in the other benchmarks' tables.
 */
import type { CompareReport } from '../compare/report.js';
import { fmt } from '../compare/report.js';
import type { LostKey } from './ledger.js';
import type { OverloadPlan } from './options.js';
import type { PhaseRow } from './phase.js';
import { SHED_LIMITS } from './shed.js';

/** CapacityResult is the closed-loop put phase that sets the offered rates. */
export interface CapacityResult {
  readonly concurrency: number;
  readonly opsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly errors: number;
  readonly firstError?: string;
  /** The nodes' CPU (summed) and this process's, in CPU seconds per second. */
  readonly serverCpu: number;
  readonly clientCpu: number;
}

/** HealthCheck is one node's GET /health after the load. */
export interface HealthCheck {
  readonly node: number;
  readonly ok: boolean;
  /** The last HTTP status (0: no answer). */
  readonly status: number;
  /** How long until it answered ok (or until the check gave up). */
  readonly waitedMs: number;
  readonly error?: string;
}

/** AfterCheck is what the benchmark checked once the load was over. */
export interface AfterCheck {
  /** Acknowledged puts lost (ledger.ts); 0 is the only right answer. */
  readonly lostAcked: number;
  /** The keys with a lost put (the first few of each writer), with the writer that owns them. */
  readonly lostKeys: (LostKey & { readonly writer: number })[];
  readonly puts: number;
  readonly acked: number;
  readonly keysChecked: number;
  readonly keysWithAcks: number;
  readonly reordered: number;
  readonly finalFromShed: number;
  readonly finalFromUnknown: number;
  readonly foreign: number;
  /** Final reads that failed (their keys not checked), and the first error. */
  readonly readErrors: number;
  readonly readErrorExample?: string;
  /** Every node process still running, in node order. */
  readonly nodesAlive: boolean[];
  readonly health: HealthCheck[];
  /** One put (default retrying client) after everything. */
  readonly putAfter: { readonly ok: boolean; readonly ms: number; readonly error?: string };
}

/** OverloadReport is the JSON file's content. */
export interface OverloadReport {
  readonly kind: 'dkv-overload';
  readonly date: string;
  readonly machine: CompareReport['machine'];
  readonly source: { readonly commit: string; readonly changedSrcFiles: readonly string[] };
  readonly plan: OverloadPlan;
  capacity?: CapacityResult;
  readonly phases: PhaseRow[];
  after?: AfterCheck;
  /** What went wrong, if anything did (the run stops at the first failure, then still checks). */
  readonly errors: string[];
  elapsedS: number;
}

function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

function pct(fraction: number): string {
  return fraction === 0 ? '0%' : `${fmt(fraction * 100)}%`;
}

/** count prints a rate or a count: '0' for none, else as fmt. */
function count(x: number): string {
  return x === 0 ? '0' : fmt(x);
}

function seconds(ms: number): string {
  return String(Math.round(ms / 100) / 10);
}

/** shedByText names the limits that shed, with their share of the shed requests. */
export function shedByText(row: Pick<PhaseRow, 'shed' | 'shedBy'>): string {
  if (row.shed === 0) return 'none';
  return SHED_LIMITS.filter((l) => row.shedBy[l] > 0)
    .map((l) => `${l} ${pct(row.shedBy[l] / row.shed)}`)
    .join(', ');
}

function errorsText(errors: Readonly<Record<string, number>>): string {
  const e = Object.entries(errors);
  return e.length === 0 ? '0' : e.map(([code, n]) => `${code} ${n}`).join(', ');
}

/** boundText prints a histogram bound: `≤ X` ms, `> 10,000` past the last bucket, '-' for none. */
function boundText(ms: number): string {
  if (Number.isNaN(ms)) return '-';
  return Number.isFinite(ms) ? `≤ ${fmt(ms)}` : '> 10,000';
}

/** phasesMarkdown is the throughput and shedding table, then the latency and CPU table. */
export function phasesMarkdown(report: Pick<OverloadReport, 'plan' | 'capacity' | 'phases'>): string {
  const { plan, capacity } = report;
  const config = Object.entries(plan.nodeConfig)
    .map(([k, v]) => `${k} ${JSON.stringify(v)}`)
    .join(', ');
  const caption = `**Overload** (3 node processes on one box, ${config.length > 0 ? `node config ${config}` : 'default node config'}). Capacity: closed loop of puts at C=${plan.capacity.concurrency} (16-byte keys over ${fmt(plan.keySpace)}, 128-byte values), ${seconds(plan.capacity.measureMs)} s after ${seconds(plan.capacity.warmupMs)} s warm-up: **${fmt(capacity?.opsPerSec)} ops/s** (p50 ${fmt(capacity?.p50Ms)} ms, p99 ${fmt(capacity?.p99Ms)} ms). Then open loop: puts on a uniform schedule at each multiple of that, ${seconds(plan.phaseMs)} s per phase, from ${plan.generators} generator process(es) with ${plan.clientsPerGenerator} clients each, retryOverloaded off (a shed put fails at once). "Issued" is what the generators managed to send (they share the box with the nodes); accepted/s counts acknowledgements inside the window; "accepted" and "shed" are shares of the puts issued.`;
  const rates = markdownTable(
    ['load', 'offered/s', 'issued/s', 'accepted/s', 'accepted', 'shed/s', 'shed', 'shed by', 'other errors'],
    report.phases.map((r) => [
      `${r.factor}x`,
      fmt(r.offeredPerSec),
      fmt(r.issuedPerSec),
      fmt(r.acceptedPerSec),
      pct(r.acceptedFraction),
      count(r.shedPerSec),
      pct(r.shedFraction),
      shedByText(r),
      errorsText(r.errors),
    ]),
  );
  const latencyCaption =
    "Latency of the acknowledged puts as the generators saw it (issue to answer, ms), next to the generators' own event-loop delay (p99, ms: a busy generator adds it to what it measures) and the nodes' own figure (their request histogram, arrival to answer, every put answered, shed ones too: the upper bound of the bucket holding the p99). CPU: % of one core over the window (node CPU is the 3 nodes together); box busy: all cores.";
  const latency = markdownTable(
    [
      'load',
      'p50 ms',
      'p99 ms',
      'p99.9 ms',
      'max ms',
      'generator loop p99 ms',
      'node p99 ms',
      'node CPU',
      'generator CPU',
      'box busy',
    ],
    report.phases.map((r) => [
      `${r.factor}x`,
      fmt(r.p50Ms),
      fmt(r.p99Ms),
      fmt(r.p999Ms),
      fmt(r.maxMs),
      r.generatorLoopDelayP99Ms.map((x) => fmt(x)).join(' '),
      boundText(r.nodePutP99BoundMs),
      `${fmt(r.nodeCpu * 100)}%`,
      r.generatorCpu.map((x) => `${fmt(x * 100)}%`).join(' '),
      pct(r.machineCpu.busy),
    ]),
  );
  return `${caption}\n\n${rates}\n\n${latencyCaption}\n\n${latency}`;
}

/** memoryMarkdown is the memory table: each node's RSS over each phase. */
export function memoryMarkdown(report: Pick<OverloadReport, 'phases'>): string {
  const caption =
    "**Node memory under overload** (MiB). RSS sampled every 250 ms from the phase's start to its last answer; VmHWM is the kernel's peak RSS over the process's life, read at the end of the phase.";
  const rows: string[][] = [];
  for (const r of report.phases)
    r.nodeMemory.forEach((m, i) => {
      rows.push([
        `${r.factor}x`,
        String(i + 1),
        fmt(m.startMiB),
        fmt(m.endMiB),
        fmt(m.peakMiB),
        fmt(m.hwmMiB),
      ]);
    });
  return `${caption}\n\n${markdownTable(['load', 'node', 'RSS start', 'RSS end', 'RSS peak', 'VmHWM'], rows)}`;
}

/** afterMarkdown says what the check after the load found. */
export function afterMarkdown(after: AfterCheck): string {
  const alive = after.nodesAlive.every((a) => a);
  const healthy = after.health.every((h) => h.ok);
  const lines = [
    `**After the load**: lostAcked **${after.lostAcked}** (every key read back linearizably: ${fmt(after.keysChecked)} keys, ${fmt(after.keysWithAcks)} with acknowledged puts; ${fmt(after.acked)} puts acknowledged of ${fmt(after.puts)} issued${after.readErrors > 0 ? `; ${after.readErrors} reads FAILED, those keys unchecked: ${after.readErrorExample ?? ''}` : ''}).`,
    `Final values from overlapping puts applied in the other order (allowed): ${after.reordered}; from a put answered with an error other than OVERLOADED (outcome unknown): ${after.finalFromUnknown}; from a shed put: ${after.finalFromShed}; foreign values: ${after.foreign}.`,
    `Nodes: ${alive ? 'all running' : `NOT all running (${after.nodesAlive.map((a, i) => `node ${i + 1} ${a ? 'up' : 'DOWN'}`).join(', ')})`}; /health ${
      healthy
        ? 'ok on every node'
        : `NOT ok: ${after.health
            .filter((h) => !h.ok)
            .map((h) => `node ${h.node} (${h.status}${h.error !== undefined ? `: ${h.error}` : ''})`)
            .join(', ')}`
    }; a put afterwards ${after.putAfter.ok ? `succeeded in ${fmt(after.putAfter.ms)} ms` : `FAILED: ${after.putAfter.error ?? ''}`}.`,
  ];
  for (const k of after.lostKeys) lines.push(`- lost: key ${k.key} (writer ${k.writer}): ${k.reason}`);
  return lines.join('\n');
}

/** reportMarkdown is the whole report as markdown. */
export function reportMarkdown(report: OverloadReport): string {
  const parts = [phasesMarkdown(report)];
  if (report.phases.length > 0) parts.push(memoryMarkdown(report));
  if (report.after !== undefined) parts.push(afterMarkdown(report.after));
  if (report.errors.length > 0) parts.push(`**Errors**:\n${report.errors.map((e) => `- ${e}`).join('\n')}`);
  return parts.join('\n\n');
}
