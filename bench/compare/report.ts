/**
 * What a side-by-side run reports, all pure functions of one CompareReport (so they are tested
 * without running anything):
 * - progress lines, one per point as it is measured (`pointLine`);
 * - the summary table (markdown: every figure of every point, one row per workload and
 *   concurrency, with the DKV/etcd throughput ratio);
 * - the issue's goals as DKV/etcd ratios (`goalsOf`): throughput ratios where higher is
 *   better, latency ratios (DKV p99 / etcd p99) where at most 1 is the goal;
 * - the HTML page: the tables and inline SVG charts, no script and no external file: per
 *   workload, throughput against concurrency (log-scaled axes), and latency CDFs per
 *   concurrency level (log-scaled latency).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PointResult } from './loadgen.js';
import type { SystemName } from './targets.js';

/** PointRecord is one measured point. */
export interface PointRecord extends PointResult {
  readonly system: SystemName;
  readonly workload: string;
}

/** SystemInfo describes one system as it ran. */
export interface SystemInfo {
  readonly name: SystemName;
  readonly version: string;
  readonly describe: string;
  /** How long it took to start and be ready (ms). */
  readonly startMs: number;
  /** How long filling the key space took (ms), when done. */
  readonly fillMs?: number;
}

/** CompareReport is a whole run: the JSON file's content. */
export interface CompareReport {
  readonly kind: 'dkv-compare';
  readonly date: string;
  readonly machine: {
    readonly cpus: number;
    readonly cpuModel: string;
    readonly memoryGiB: number;
    readonly kernel: string;
    readonly node: string;
  };
  readonly settings: {
    readonly timeS: number;
    readonly warmupS: number;
    readonly concurrency: readonly number[];
    readonly keys: number;
    readonly keyBytes: number;
    readonly valueBytes: number;
    readonly workloads: readonly { readonly name: string; readonly title: string }[];
    readonly quick: boolean;
  };
  readonly systems: readonly SystemInfo[];
  readonly points: readonly PointRecord[];
  /** Workloads a system does not do, with why. */
  readonly skipped: readonly {
    readonly system: SystemName;
    readonly workload: string;
    readonly why: string;
  }[];
  readonly notes: readonly string[];
  /** Run time of the whole comparison (s). */
  readonly elapsedS: number;
}

/** fmt prints a figure compactly: thousands separated, fewer decimals as it grows; '-' for none. */
export function fmt(x: number | undefined | null): string {
  if (x === undefined || x === null || Number.isNaN(x)) return '-';
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toLocaleString('en-US');
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toFixed(3);
}

/** ratio is a / b, or undefined when either is missing or b is 0. */
export function ratio(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined || b === undefined || Number.isNaN(a) || Number.isNaN(b) || b === 0) return undefined;
  return a / b;
}

/** fmtRatio prints a ratio as `2.31×`. */
export function fmtRatio(r: number | undefined): string {
  return r === undefined ? '-' : `${r >= 10 ? r.toFixed(1) : r >= 0.1 ? r.toFixed(2) : r.toPrecision(2)}×`;
}

/** PROGRESS_HEADER heads the progress lines. */
export const PROGRESS_HEADER = `${'system'.padEnd(6)} ${'workload'.padEnd(17)} ${'C'.padStart(4)} ${'ops/s'.padStart(9)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'p99.9 ms'.padStart(9)} ${'errors'.padStart(6)} ${'srv cpu'.padStart(7)} ${'gen cpu'.padStart(7)}`;

/** pointLine is one progress line (columns as PROGRESS_HEADER). */
export function pointLine(p: PointRecord): string {
  const errs = p.errors + p.stuck > 0 ? `${p.errors}${p.stuck > 0 ? `+${p.stuck} stuck` : ''}` : '0';
  const first = p.firstError !== undefined ? `  first error: ${p.firstError.slice(0, 160)}` : '';
  return `${p.system.padEnd(6)} ${p.workload.padEnd(17)} ${String(p.concurrency).padStart(4)} ${fmt(p.opsPerSec).padStart(9)} ${fmt(p.p50Ms).padStart(8)} ${fmt(p.p99Ms).padStart(8)} ${fmt(p.p999Ms).padStart(9)} ${errs.padStart(6)} ${fmt(p.serverCpu).padStart(7)} ${fmt(p.clientCpu).padStart(7)}${first}`;
}

/** pointOf finds a point. */
export function pointOf(
  report: Pick<CompareReport, 'points'>,
  system: SystemName,
  workload: string,
  concurrency: number,
): PointRecord | undefined {
  return report.points.find(
    (p) => p.system === system && p.workload === workload && p.concurrency === concurrency,
  );
}

/** workloadsOf lists the workloads measured, in run order. */
function workloadsOf(report: Pick<CompareReport, 'points'>): string[] {
  return [...new Set(report.points.map((p) => p.workload))];
}

function systemsOf(report: Pick<CompareReport, 'points'>): SystemName[] {
  return [...new Set(report.points.map((p) => p.system))];
}

function concurrencyOf(report: Pick<CompareReport, 'points'>, workload: string): number[] {
  return [...new Set(report.points.filter((p) => p.workload === workload).map((p) => p.concurrency))].sort(
    (a, b) => a - b,
  );
}

/** latencies prints p50 / p99 / p99.9. */
function latencies(p: PointRecord | undefined): string {
  return p === undefined ? '-' : `${fmt(p.p50Ms)} / ${fmt(p.p99Ms)} / ${fmt(p.p999Ms)}`;
}

/** TableRow is one row of the summary: a workload at one concurrency. */
export interface TableRow {
  readonly workload: string;
  readonly concurrency: number;
  readonly cells: readonly string[];
}

/** summaryRows builds the summary table's header and rows (markdown and HTML share them). */
export function summaryRows(report: Pick<CompareReport, 'points'>): { header: string[]; rows: TableRow[] } {
  const systems = systemsOf(report);
  const both = systems.includes('dkv') && systems.includes('etcd');
  const header = [
    'workload',
    'C',
    ...systems.map((s) => `${s} ops/s`),
    ...(both ? ['dkv/etcd'] : []),
    ...systems.map((s) => `${s} p50 / p99 / p99.9 ms`),
    ...systems.map((s) => `${s} cpu srv + gen`),
    'errors',
  ];
  const rows: TableRow[] = [];
  for (const w of workloadsOf(report)) {
    for (const c of concurrencyOf(report, w)) {
      const ps = systems.map((s) => pointOf(report, s, w, c));
      const dkv = pointOf(report, 'dkv', w, c);
      const etcd = pointOf(report, 'etcd', w, c);
      const errors = ps
        .map((p, i) =>
          p !== undefined && p.errors + p.stuck > 0 ? `${systems[i]} ${p.errors + p.stuck}` : '',
        )
        .filter((e) => e.length > 0)
        .join(', ');
      rows.push({
        workload: w,
        concurrency: c,
        cells: [
          w,
          String(c),
          ...ps.map((p) => fmt(p?.opsPerSec)),
          ...(both ? [fmtRatio(ratio(dkv?.opsPerSec, etcd?.opsPerSec))] : []),
          ...ps.map(latencies),
          ...ps.map((p) => (p === undefined ? '-' : `${fmt(p.serverCpu)} + ${fmt(p.clientCpu)}`)),
          errors.length > 0 ? errors : '0',
        ],
      });
    }
  }
  return { header, rows };
}

function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/**
 * summaryMarkdown is the summary table as markdown. CPU is in CPU seconds per second: the
 * servers' (summed) + the load generator's, which shares the machine.
 */
export function summaryMarkdown(report: Pick<CompareReport, 'points'>): string {
  const { header, rows } = summaryRows(report);
  return markdownTable(
    header,
    rows.map((r) => r.cells),
  );
}

/** Goal is one of the issue's goals, as measured. */
export interface Goal {
  readonly goal: string;
  /** DKV's and etcd's figures (ops/s or ms). */
  readonly dkv?: number;
  readonly etcd?: number;
  /** DKV / etcd. */
  readonly ratio?: number;
  /** The target ratio: at least (throughput) or at most (latency). */
  readonly want: { readonly atLeast?: number; readonly atMost?: number };
  /** undefined when a figure is missing. */
  readonly met?: boolean;
}

function goal(
  text: string,
  dkv: number | undefined,
  etcd: number | undefined,
  want: { atLeast?: number; atMost?: number },
): Goal {
  const r = ratio(dkv, etcd);
  const met =
    r === undefined
      ? undefined
      : want.atLeast !== undefined
        ? r >= want.atLeast
        : want.atMost !== undefined
          ? r <= want.atMost
          : undefined;
  return {
    goal: text,
    ...(dkv !== undefined && { dkv }),
    ...(etcd !== undefined && { etcd }),
    ...(r !== undefined && { ratio: r }),
    want,
    ...(met !== undefined && { met }),
  };
}

/** goalsOf measures the issue's goals (DKV / etcd in the same run); empty without both systems. */
export function goalsOf(report: Pick<CompareReport, 'points'>): Goal[] {
  const at = (s: SystemName, w: string, c: number): PointRecord | undefined => pointOf(report, s, w, c);
  if (!report.points.some((p) => p.system === 'etcd')) return [];
  const ops = (w: string, c: number, want: number, text: string): Goal =>
    goal(text, at('dkv', w, c)?.opsPerSec, at('etcd', w, c)?.opsPerSec, { atLeast: want });
  const goals = [
    ops('put', 64, 2, 'put ops/s at C=64'),
    ops('put', 256, 2, 'put ops/s at C=256'),
    ops('get', 64, 3, 'linearizable get ops/s at C=64'),
    ops('incr-100', 64, 10, 'counter +1 on 100 keys ops/s at C=64'),
    ops('lock-100', 64, 10, 'lock+unlock on 100 keys ops/s at C=64'),
    // p99 at C=64 no worse than etcd's, for every workload both ran there.
    ...workloadsOf(report)
      .filter((w) => at('dkv', w, 64) !== undefined && at('etcd', w, 64) !== undefined)
      .map((w) =>
        goal(`${w} p99 at C=64 (ms)`, at('dkv', w, 64)?.p99Ms, at('etcd', w, 64)?.p99Ms, { atMost: 1 }),
      ),
    goal('put p50 at C=1 (ms)', at('dkv', 'put', 1)?.p50Ms, at('etcd', 'put', 1)?.p50Ms, { atMost: 1 }),
  ];
  return goals;
}

function wantText(g: Goal): string {
  return g.want.atLeast !== undefined ? `≥ ${g.want.atLeast}×` : `≤ ${g.want.atMost}×`;
}

function metText(g: Goal): string {
  return g.met === undefined ? 'not measured' : g.met ? 'met' : 'NOT met';
}

/** goalsMarkdown is the goals as a markdown table. */
export function goalsMarkdown(goals: readonly Goal[]): string {
  return markdownTable(
    ['goal', 'dkv', 'etcd', 'dkv/etcd', 'target', ''],
    goals.map((g) => [g.goal, fmt(g.dkv), fmt(g.etcd), fmtRatio(g.ratio), wantText(g), metText(g)]),
  );
}

// ---------------------------------------------------------------------------------------------
// HTML and SVG

/** COLORS of the systems in every chart. */
export const COLORS: Readonly<Record<SystemName, string>> = {
  dkv: '#1f6feb',
  etcd: '#2da44e',
  redis: '#cf222e',
};

/** escapeHtml makes text safe inside HTML and SVG (text and attribute values). */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Series is one line of a chart. */
export interface Series {
  readonly name: string;
  readonly color: string;
  readonly points: readonly (readonly [number, number])[];
  readonly dash?: string;
}

/** Axis is one axis of a chart. */
export interface Axis {
  readonly label: string;
  readonly log: boolean;
  /** The ticks, also the domain's ends (the first and last). */
  readonly ticks: readonly number[];
  readonly tickLabel?: (x: number) => string;
}

/**
 * logTicks are ticks covering [lo, hi] (lo, hi > 0) on a log axis: 1-2-5 per decade over up to
 * 3 decades, powers of ten beyond.
 */
export function logTicks(lo: number, hi: number): number[] {
  const start = Math.floor(Math.log10(Math.max(lo, 1e-9)));
  const end = Math.ceil(Math.log10(Math.max(hi, lo, 1e-9)));
  const mantissas = end - start > 3 ? [1] : [1, 2, 5];
  const ticks: number[] = [];
  for (let e = start; e <= end; e++)
    for (const m of mantissas) ticks.push(Number((m * 10 ** e).toPrecision(3)));
  const first = ticks.filter((t) => t <= lo).at(-1) ?? ticks[0]!;
  const last = ticks.find((t) => t >= hi) ?? ticks.at(-1)!;
  return ticks.filter((t) => t >= first && t <= last);
}

/** tickText prints a tick compactly: 0.05, 1, 16, 2k, 100k. */
export function tickText(x: number): string {
  if (x >= 1000 && x % 1000 === 0) return `${x / 1000}k`;
  return String(Number(x.toPrecision(3)));
}

/** svgChart draws line charts with markers as standalone inline SVG. */
export function svgChart(opts: {
  readonly title: string;
  readonly x: Axis;
  readonly y: Axis;
  readonly series: readonly Series[];
  readonly width?: number;
  readonly height?: number;
  readonly markers?: boolean;
}): string {
  const width = opts.width ?? 420;
  const height = opts.height ?? 260;
  const m = { left: 64, right: 12, top: 28, bottom: 42 };
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;
  const scale = (a: Axis, size: number, flip: boolean) => {
    const lo = a.ticks[0]!;
    const hi = a.ticks.at(-1)!;
    const f = (v: number): number => {
      const t = a.log
        ? (Math.log10(Math.max(v, 1e-12)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo) || 1)
        : (v - lo) / (hi - lo || 1);
      const c = Math.min(1, Math.max(0, t));
      return flip ? size * (1 - c) : size * c;
    };
    return f;
  };
  const sx = scale(opts.x, pw, false);
  const sy = scale(opts.y, ph, true);
  const label = (a: Axis, v: number): string => (a.tickLabel ? a.tickLabel(v) : tickText(v));
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeHtml(opts.title)}">`,
    `<text x="${width / 2}" y="16" text-anchor="middle" font-size="13" font-weight="600">${escapeHtml(opts.title)}</text>`,
    `<g transform="translate(${m.left},${m.top})" font-size="10">`,
  );
  for (const t of opts.y.ticks) {
    const y = sy(t).toFixed(1);
    parts.push(
      `<line x1="0" x2="${pw}" y1="${y}" y2="${y}" stroke="#ddd"/>`,
      `<text x="-6" y="${y}" dy="3" text-anchor="end">${escapeHtml(label(opts.y, t))}</text>`,
    );
  }
  for (const t of opts.x.ticks) {
    const x = sx(t).toFixed(1);
    parts.push(
      `<line x1="${x}" x2="${x}" y1="0" y2="${ph}" stroke="#eee"/>`,
      `<text x="${x}" y="${ph + 14}" text-anchor="middle">${escapeHtml(label(opts.x, t))}</text>`,
    );
  }
  parts.push(
    `<rect x="0" y="0" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`,
    `<text x="${pw / 2}" y="${ph + 32}" text-anchor="middle">${escapeHtml(opts.x.label)}</text>`,
    `<text transform="translate(-50,${ph / 2}) rotate(-90)" text-anchor="middle">${escapeHtml(opts.y.label)}</text>`,
  );
  opts.series.forEach((s, i) => {
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (pts.length > 0) {
      const d = pts.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
      parts.push(
        `<polyline points="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`,
      );
      if (opts.markers !== false)
        for (const [x, y] of pts)
          parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${s.color}"/>`);
    }
    // The legend, top left inside the plot.
    parts.push(
      `<rect x="${8}" y="${6 + i * 14}" width="10" height="3" fill="${s.color}"/>`,
      `<text x="${22}" y="${10 + i * 14}">${escapeHtml(s.name)}</text>`,
    );
  });
  parts.push('</g></svg>');
  return parts.join('');
}

/** throughputChart is one workload's ops/s against concurrency, a line per system. */
export function throughputChart(report: Pick<CompareReport, 'points'>, workload: string): string {
  const cs = concurrencyOf(report, workload);
  const series: Series[] = systemsOf(report)
    .map((s) => ({
      name: s,
      color: COLORS[s],
      points: cs
        .map((c) => pointOf(report, s, workload, c))
        .filter((p): p is PointRecord => p !== undefined && p.opsPerSec > 0)
        .map((p) => [p.concurrency, p.opsPerSec] as const),
    }))
    .filter((s) => s.points.length > 0);
  const ys = series.flatMap((s) => s.points.map(([, y]) => y));
  return svgChart({
    title: `${workload}: throughput`,
    x: { label: 'in flight (C)', log: true, ticks: cs.length > 1 ? cs : [cs[0] ?? 1, (cs[0] ?? 1) * 2] },
    y: {
      label: 'ops/s (log)',
      log: true,
      ticks: ys.length === 0 ? [1, 10] : logTicks(Math.min(...ys), Math.max(...ys)),
    },
    series,
  });
}

/** cdfChart is one workload's latency CDF at one concurrency, a line per system. */
export function cdfChart(
  report: Pick<CompareReport, 'points'>,
  workload: string,
  concurrency: number,
): string {
  const series: Series[] = systemsOf(report)
    .map((s) => ({ s, p: pointOf(report, s, workload, concurrency) }))
    .filter((x): x is { s: SystemName; p: PointRecord } => x.p !== undefined && x.p.cdf.length > 0)
    .map(({ s, p }) => ({
      name: `${s} (p99 ${fmt(p.p99Ms)} ms)`,
      color: COLORS[s],
      points: p.cdf.map(([q, ms]) => [Math.max(ms, 0.001), q] as const),
    }));
  const xs = series.flatMap((s) => s.points.map(([x]) => x));
  return svgChart({
    title: `${workload} at C=${concurrency}: latency CDF`,
    x: {
      label: 'latency (ms, log)',
      log: true,
      ticks: xs.length === 0 ? [0.1, 1] : logTicks(Math.min(...xs), Math.max(...xs)),
    },
    y: { label: 'fraction of operations', log: false, ticks: [0, 0.25, 0.5, 0.75, 1] },
    series,
    markers: false,
    width: 340,
    height: 240,
  });
}

function htmlTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const th = header.map((h) => `<th>${escapeHtml(h)}</th>`).join('');
  const trs = rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`).join('\n');
  return `<table><thead><tr>${th}</tr></thead><tbody>\n${trs}\n</tbody></table>`;
}

/** renderHtml is the whole report as one self-contained HTML page. */
export function renderHtml(report: CompareReport): string {
  const { header, rows } = summaryRows(report);
  const goals = goalsOf(report);
  const sections: string[] = [];
  for (const w of workloadsOf(report)) {
    const title = report.settings.workloads.find((x) => x.name === w)?.title ?? w;
    sections.push(
      `<section><h3>${escapeHtml(w)}: ${escapeHtml(title)}</h3><div class="charts">${throughputChart(report, w)}${concurrencyOf(
        report,
        w,
      )
        .map((c) => cdfChart(report, w, c))
        .join('')}</div></section>`,
    );
  }
  const s = report.settings;
  const m = report.machine;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DKV side by side: ${escapeHtml(report.date)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;font-size:12px;margin:8px 0 20px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th:first-child,td:first-child{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:8px}
.met{color:#2da44e}.notmet{color:#cf222e}
code{background:#f4f4f4;padding:1px 3px}
</style></head><body>
<h1>DKV side by side</h1>
<p>${escapeHtml(report.date)}: ${m.cpus} CPUs (${escapeHtml(m.cpuModel)}), ${m.memoryGiB} GiB, ${escapeHtml(m.kernel)}, Node.js ${escapeHtml(m.node)}.
Closed loops from one Node.js load generator, ${s.warmupS} s warm-up then ${s.timeS} s measured per point;
${s.keyBytes}-byte keys over ${s.keys.toLocaleString('en-US')} keys, ${s.valueBytes}-byte values. Every process shares the machine.
CPU columns: the server processes' user+system CPU seconds per second, summed over each system's processes, + the load generator's own. Run time ${Math.round(report.elapsedS)} s.</p>
<ul>${report.systems.map((x) => `<li><b style="color:${COLORS[x.name]}">${x.name}</b> (${escapeHtml(x.version)}): ${escapeHtml(x.describe)}</li>`).join('')}</ul>
${
  goals.length > 0
    ? `<h2>Goals (DKV / etcd, same run)</h2>${htmlTable(
        ['goal', 'dkv', 'etcd', 'dkv/etcd', 'target', ''],
        goals.map((g) => [g.goal, fmt(g.dkv), fmt(g.etcd), fmtRatio(g.ratio), wantText(g), metText(g)]),
      )}`
    : ''
}
<h2>All points</h2>
${htmlTable(
  header,
  rows.map((r) => r.cells),
)}
${report.skipped.length > 0 ? `<p>Not measured: ${report.skipped.map((k) => `${escapeHtml(k.system)} ${escapeHtml(k.workload)} (${escapeHtml(k.why)})`).join('; ')}.</p>` : ''}
${report.notes.length > 0 ? `<h2>Notes</h2><ul>${report.notes.map((n) => `<li>${escapeHtml(n)}</li>`).join('')}</ul>` : ''}
<h2>Charts</h2>
${sections.join('\n')}
</body></html>
`;
}

/** toJsonText is the report as indented JSON, with arrays of numbers (the CDF pairs) kept on one line. */
export function toJsonText(report: CompareReport): string {
  return JSON.stringify(report, null, 2).replace(
    /\[\s*(-?[\d.e+-]+(?:,\s*-?[\d.e+-]+)*)\s*\]/g,
    (_, inner: string) => `[${inner.split(/,\s*/).join(', ')}]`,
  );
}

/** writeReport writes `<base>.json` and `<base>.html` into `dir`; returns their paths. */
export function writeReport(
  report: CompareReport,
  dir: string,
  base: string,
): { json: string; html: string } {
  const json = join(dir, `${base}.json`);
  const html = join(dir, `${base}.html`);
  writeFileSync(json, `${toJsonText(report)}\n`);
  writeFileSync(html, renderHtml(report));
  return { json, html };
}
