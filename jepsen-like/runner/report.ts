/**
 * Report: the runner's two HTML pages, `timeline.html` and `plot.html` (issue 7, "Output").
 *
 * Both are pure functions from a history (the events of `history.ts`) and its fault windows
 * to one self-contained HTML document: no external resource, no script, a little inline CSS,
 * and nothing that depends on the clock, so the same input gives the same bytes.
 *
 * - The timeline has one column per client process (sorted numerically; the nemesis is not a
 *   column) and time flowing downwards. Each op is an absolutely positioned box from its
 *   invoke to its completion, coloured by outcome, with the details in its `title`. Fault
 *   windows are shaded bands across every column. The scale (pixels per ms) is chosen from
 *   the median latency, capped so the page stays under `TIMELINE_HEIGHT_PX_MAX`.
 * - The plot is two SVG charts on one time axis (seconds since the first event): the latency
 *   of each completed op (log scale), and ok ops per second per f plus fail and info per
 *   second (1-second buckets). Points are drawn as one path per outcome (a zero-length
 *   segment with round caps per point) so 50k points stay small; past that they are thinned
 *   first by dropping points that land on the same pixel, then by a fixed stride.
 *
 * Pairing is done here, leniently: an op's completion is the next event of its process, and
 * a history that `pairEvents` would reject still renders (a report must never be the thing
 * that fails). Every string that comes from the history or the caller goes through `esc`.
 */
import { type HistoryEvent, NEMESIS_PROCESS } from '../history.js';

/** FaultWindow is one fault: shaded from its start to its end (an instant fault has endNs = startNs). */
export interface FaultWindow {
  readonly name: string;
  readonly detail?: string;
  readonly startNs: number;
  /** = startNs for an instant fault, or the end of the history if never healed. */
  readonly endNs: number;
}

/** ReportInput is what both reports are rendered from. */
export interface ReportInput {
  readonly title: string;
  readonly events: readonly HistoryEvent[];
  readonly faults: readonly FaultWindow[];
  /** For example "valid", "INVALID", "unknown". */
  readonly verdict?: string;
  readonly notes?: readonly string[];
}

/** TIMELINE_MAX_OPS_DEFAULT is how many ops the timeline draws unless told otherwise. */
export const TIMELINE_MAX_OPS_DEFAULT = 20_000;
/** TIMELINE_HEIGHT_PX_MAX caps the timeline's height; the scale shrinks to fit under it. */
export const TIMELINE_HEIGHT_PX_MAX = 20_000;
/** PLOT_POINTS_MAX is how many latency points the plot draws at most. */
export const PLOT_POINTS_MAX = 50_000;

const OP_HEIGHT_PX_MIN = 2;
/** The median op is drawn this tall when the height cap allows it. */
const MEDIAN_OP_HEIGHT_PX = 24;
const PX_PER_MS_MAX = 50;
const GUTTER_PX = 84;
const TICK_SPACING_PX_MIN = 60;
const VALUE_CHARS_MAX = 300;
const LABEL_CHARS_MAX = 80;

/** Outcome is how an op ended, with `open` for never completed. */
type Outcome = 'ok' | 'fail' | 'info' | 'open';

/** Op is an invoke paired with its completion, with times in ns. */
interface Op {
  readonly process: number | string;
  readonly invoke: HistoryEvent;
  readonly completion: HistoryEvent | undefined;
  readonly outcome: Outcome;
}

/** Prepared is what both reports share: the ops in invoke order and the time range. */
interface Prepared {
  readonly ops: readonly Op[];
  /** The first event's time (ns): time zero of both reports. */
  readonly t0Ns: number;
  /** The end of the history: its last event or the last fault end, whichever is later. */
  readonly tEndNs: number;
  readonly counts: Readonly<Record<Outcome, number>>;
}

function prepare(input: ReportInput): Prepared {
  const ops: Op[] = [];
  const open = new Map<string, number>();
  const pending: { invoke: HistoryEvent; completion: HistoryEvent | undefined }[] = [];
  let t0Ns = Number.POSITIVE_INFINITY;
  let tEndNs = Number.NEGATIVE_INFINITY;
  for (const ev of input.events) {
    if (ev.time < t0Ns) t0Ns = ev.time;
    if (ev.time > tEndNs) tEndNs = ev.time;
    if (ev.process === NEMESIS_PROCESS) continue;
    const pid = String(ev.process);
    const slot = open.get(pid);
    if (ev.type === 'invoke') {
      // An invoke over an open one leaves the earlier op never completed.
      open.set(pid, pending.length);
      pending.push({ invoke: ev, completion: undefined });
    } else if (slot !== undefined) {
      pending[slot]!.completion = ev;
      open.delete(pid);
    }
  }
  if (!Number.isFinite(t0Ns)) {
    // No events: time zero is the first fault, or 0.
    t0Ns = input.faults.length > 0 ? Math.min(...input.faults.map((w) => w.startNs)) : 0;
    tEndNs = t0Ns;
  }
  for (const w of input.faults) tEndNs = Math.max(tEndNs, w.startNs, w.endNs);
  const counts: Record<Outcome, number> = { ok: 0, fail: 0, info: 0, open: 0 };
  for (const p of pending) {
    const outcome: Outcome = p.completion === undefined ? 'open' : (p.completion.type as Outcome);
    counts[outcome]++;
    ops.push({ process: p.invoke.process, invoke: p.invoke, completion: p.completion, outcome });
  }
  return { ops, t0Ns, tEndNs, counts };
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

const ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** esc escapes a string for HTML/SVG text and double- or single-quoted attributes. */
function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** showValue renders a history value as JSON, cut to `max` characters. */
function showValue(v: unknown, max = VALUE_CHARS_MAX): string {
  let s: string;
  try {
    s = v === undefined ? 'null' : (JSON.stringify(v) ?? String(v));
  } catch {
    s = String(v);
  }
  return cut(s, max);
}

function cut(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** r1 rounds to one decimal, for compact and deterministic coordinates. */
function r1(x: number): number {
  return Math.round(x * 10) / 10;
}

function ms(ns: number): string {
  return (ns / 1e6).toFixed(3);
}

/** niceStep is the smallest 1, 2 or 5 × 10^k that is at least `x`. */
function niceStep(x: number): number {
  if (!(x > 0) || !Number.isFinite(x)) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

function decimalsFor(step: number): number {
  return step >= 1 ? 0 : Math.min(9, Math.ceil(-Math.log10(step) - 1e-9));
}

/** compareProcess sorts processes numerically; names that are not numbers come after, by name. */
function compareProcess(a: string, b: string): number {
  const na = Number(a);
  const nb = Number(b);
  const aNum = a.trim() !== '' && Number.isFinite(na);
  const bNum = b.trim() !== '' && Number.isFinite(nb);
  if (aNum && bNum) return na - nb || (a < b ? -1 : a > b ? 1 : 0);
  if (aNum) return -1;
  if (bNum) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function verdictClass(v: string): string {
  const s = v.toLowerCase();
  if (s === 'valid' || s === 'true') return 'v-valid';
  if (s === 'invalid' || s === 'false') return 'v-invalid';
  return 'v-unknown';
}

/** header renders the title, verdict, notes and counts that both pages open with. */
function header(input: ReportInput, p: Prepared, kind: string): string {
  const out: string[] = [];
  out.push(`<h1>${esc(input.title)} <small>${kind}</small></h1>`);
  if (input.verdict !== undefined)
    out.push(
      `<p class="verdict">verdict: <b class="${verdictClass(input.verdict)}">${esc(input.verdict)}</b></p>`,
    );
  if (input.notes !== undefined && input.notes.length > 0)
    out.push(`<ul class="notes">${input.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>`);
  const c = p.counts;
  out.push(
    `<p class="stats">${p.ops.length} ops: ${c.ok} ok, ${c.fail} fail, ${c.info} info, ${c.open} never completed; ` +
      `${input.events.length} events over ${((p.tEndNs - p.t0Ns) / 1e9).toFixed(3)} s; ` +
      `${input.faults.length} fault window${input.faults.length === 1 ? '' : 's'}</p>`,
  );
  return out.join('\n');
}

function faultTable(input: ReportInput, p: Prepared): string {
  if (input.faults.length === 0) return '';
  const rows = input.faults.map((w) => {
    const s = ((w.startNs - p.t0Ns) / 1e9).toFixed(3);
    const e = ((Math.max(w.endNs, w.startNs) - p.t0Ns) / 1e9).toFixed(3);
    return `<tr><td>${esc(w.name)}</td><td>${esc(w.detail ?? '')}</td><td>${s}</td><td>${w.endNs > w.startNs ? e : '(instant)'}</td></tr>`;
  });
  return `<details class="faults"><summary>fault windows</summary><table><tr><th>fault</th><th>detail</th><th>start (s)</th><th>end (s)</th></tr>${rows.join('')}</table></details>`;
}

function page(title: string, css: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${esc(title)}</title>
<style>
body{font:13px/1.4 system-ui,sans-serif;margin:12px;color:#222}
h1{font-size:18px;margin:0 0 6px}h1 small{color:#777;font-weight:normal}
.verdict{margin:2px 0}.v-valid{color:#187a18}.v-invalid{color:#c01818}.v-unknown{color:#b86e00}
.notes{margin:4px 0;padding-left:20px}.stats{color:#555;margin:4px 0}
.legend span{display:inline-block;margin-right:14px}
.sw{display:inline-block;width:12px;height:12px;border:1px solid #888;vertical-align:-2px;margin-right:4px}
.faults table{border-collapse:collapse;margin:4px 0}.faults td,.faults th{border:1px solid #ccc;padding:1px 6px;text-align:left}
${css}
</style>
</head>
<body>
${body}
</body>
</html>
`;
}

// ---------------------------------------------------------------------------------------------
// timeline.html

const TIMELINE_CSS = `
.sw.ok,.op.ok{background:#9fdf9f;border-color:#3a9a3a}
.sw.fail,.op.fail{background:#f6b0b8;border-color:#c8485a}
.sw.info,.op.info{background:#ffd27a;border-color:#d08a00}
.sw.open,.op.open{background:#d6d6d6;border-color:#8a8a8a}
.sw.fw,.fault{background:rgba(120,100,220,.16)}
.notice{background:#fff3c4;border:1px solid #e0c060;padding:4px 8px;display:inline-block}
.heads{position:sticky;top:0;z-index:5;height:20px;background:#fff;border-bottom:1px solid #bbb}
.head{position:absolute;top:2px;text-align:center;font-weight:bold;overflow:hidden;white-space:nowrap}
.tl{position:relative}
.col{position:absolute;top:0;bottom:0;border-left:1px solid #eee;z-index:2;pointer-events:none}
.op{position:absolute;left:1px;right:1px;box-sizing:border-box;border:1px solid;border-radius:2px;overflow:hidden;white-space:nowrap;text-overflow:ellipsis;font-size:10px;line-height:12px;padding:0 2px;pointer-events:auto}
.op:hover{outline:2px solid #000;z-index:3}
.fault{position:absolute;z-index:1;border-top:1px solid rgba(90,60,200,.7)}
.fault.instant{border-top:2px solid rgba(90,60,200,.9);background:none}
.flabel{position:absolute;z-index:4;font-size:11px;color:#4a2fb0;background:rgba(255,255,255,.85);white-space:nowrap;pointer-events:none;padding:0 3px}
.tick{position:absolute;left:0;height:0;border-top:1px solid #ddd;z-index:0}
.tick span{position:absolute;left:2px;top:-1px;font-size:10px;color:#666}
`;

/**
 * renderTimeline renders `timeline.html`: one column per client process, each op a box from
 * its invoke to its completion coloured by outcome, fault windows shaded across the columns.
 * Past `maxOps` ops (default TIMELINE_MAX_OPS_DEFAULT, in invoke order) the rest are left
 * out and the page says how many.
 */
export function renderTimeline(input: ReportInput, opts?: { maxOps?: number }): string {
  const maxOps = opts?.maxOps ?? TIMELINE_MAX_OPS_DEFAULT;
  if (!Number.isSafeInteger(maxOps) || maxOps < 0)
    throw new RangeError(`maxOps must be a non-negative integer, got ${maxOps}`);
  const p = prepare(input);
  const shown = p.ops.length > maxOps ? p.ops.slice(0, maxOps) : p.ops;
  const truncated = shown.length < p.ops.length;

  // The view: from the first event to the end of the history, or, when ops were left out,
  // to the last completion among those shown (later faults are clipped, still in the table).
  let viewEndNs = p.tEndNs;
  if (truncated) {
    viewEndNs = p.t0Ns;
    for (const op of shown) viewEndNs = Math.max(viewEndNs, (op.completion ?? op.invoke).time);
  }
  const spanMs = Math.max((viewEndNs - p.t0Ns) / 1e6, 1e-3);
  const latencies: number[] = [];
  for (const op of shown)
    if (op.completion !== undefined) latencies.push((op.completion.time - op.invoke.time) / 1e6);
  latencies.sort((a, b) => a - b);
  const medianMs = latencies.length > 0 ? latencies[latencies.length >> 1]! : 1;
  const pxPerMs = Math.min(
    TIMELINE_HEIGHT_PX_MAX / spanMs,
    MEDIAN_OP_HEIGHT_PX / Math.max(medianMs, 1e-3),
    PX_PER_MS_MAX,
  );
  const y = (ns: number): number => r1(((ns - p.t0Ns) / 1e6) * pxPerMs);
  const heightPx = Math.ceil(spanMs * pxPerMs) + OP_HEIGHT_PX_MIN + 8;

  // Columns, one per process (numeric processes in number order).
  const byProcess = new Map<string, Op[]>();
  for (const op of shown) {
    const pid = String(op.process);
    let list = byProcess.get(pid);
    if (list === undefined) byProcess.set(pid, (list = []));
    list.push(op);
  }
  const pids = [...byProcess.keys()].sort(compareProcess);
  const colPx = Math.max(18, Math.min(150, Math.floor(1400 / Math.max(1, pids.length))));
  const widthPx = GUTTER_PX + pids.length * colPx + 2;
  const showText = colPx >= 40;

  const out: string[] = [];
  out.push(header(input, p, 'timeline'));
  out.push(
    '<p class="legend"><span><i class="sw ok"></i>ok</span><span><i class="sw fail"></i>fail</span>' +
      '<span><i class="sw info"></i>info (unknown)</span><span><i class="sw open"></i>never completed</span>' +
      '<span><i class="sw fw"></i>fault window</span>' +
      `<span>scale: 1 px = ${(1 / pxPerMs).toPrecision(3)} ms; hover an op for details</span></p>`,
  );
  if (truncated)
    out.push(
      `<p class="notice">Showing the first ${shown.length} of ${p.ops.length} operations (in invoke order); ` +
        `${p.ops.length - shown.length} operations were left out of this timeline.</p>`,
    );
  out.push(faultTable(input, p));
  if (p.ops.length === 0) out.push('<p>No client operations in this history.</p>');

  out.push(`<div class="heads" style="width:${widthPx}px">`);
  pids.forEach((pid, i) => {
    out.push(
      `<div class="head" style="left:${GUTTER_PX + i * colPx}px;width:${colPx}px" title="process ${esc(pid)}">${esc(pid)}</div>`,
    );
  });
  out.push('</div>');
  out.push(`<div class="tl" style="width:${widthPx}px;height:${heightPx}px">`);

  // Time ticks in the gutter, at a round step at least TICK_SPACING_PX_MIN apart.
  const tickMs = niceStep(TICK_SPACING_PX_MIN / pxPerMs);
  const tickDecimals = decimalsFor(tickMs / 1000);
  for (let t = 0, i = 0; t <= spanMs && i < 10_000; i++, t = i * tickMs)
    out.push(
      `<div class="tick" style="top:${r1(t * pxPerMs)}px;width:${widthPx}px"><span>${(t / 1000).toFixed(tickDecimals)} s</span></div>`,
    );

  // Fault bands across every column, each label in the first lane free at its height.
  const bandLeft = GUTTER_PX;
  const bandWidth = pids.length * colPx;
  const laneBottoms: number[] = [];
  const faults = [...input.faults]
    .map((w, i) => ({ w, i }))
    .sort((a, b) => a.w.startNs - b.w.startNs || a.i - b.i);
  for (const { w } of faults) {
    const s = Math.max(w.startNs, p.t0Ns);
    const e = Math.min(Math.max(w.endNs, w.startNs), viewEndNs);
    if (s > viewEndNs || e < p.t0Ns) continue;
    const instant = w.endNs <= w.startNs;
    const top = y(s);
    const h = instant ? 0 : Math.max(OP_HEIGHT_PX_MIN, r1(y(e) - top));
    const label = cut(w.detail ? `${w.name}: ${w.detail}` : w.name, LABEL_CHARS_MAX);
    const when = instant
      ? `at ${((w.startNs - p.t0Ns) / 1e9).toFixed(3)} s`
      : `${((w.startNs - p.t0Ns) / 1e9).toFixed(3)} s to ${((w.endNs - p.t0Ns) / 1e9).toFixed(3)} s`;
    out.push(
      `<div class="fault${instant ? ' instant' : ''}" style="left:${bandLeft}px;width:${bandWidth}px;top:${top}px;height:${h}px" title="${esc(`${label} (${when})`)}"></div>`,
    );
    let lane = laneBottoms.findIndex((b) => b <= top);
    if (lane < 0) lane = laneBottoms.length < 8 ? laneBottoms.length : 0;
    laneBottoms[lane] = top + 15;
    out.push(
      `<div class="flabel" style="left:${bandLeft + 4 + lane * 170}px;top:${top}px">${esc(label)}</div>`,
    );
  }

  // The ops, column by column.
  pids.forEach((pid, i) => {
    out.push(`<div class="col" style="left:${GUTTER_PX + i * colPx}px;width:${colPx}px">`);
    for (const op of byProcess.get(pid)!) {
      const endNs = op.completion?.time ?? viewEndNs;
      const top = y(op.invoke.time);
      const h = Math.max(OP_HEIGHT_PX_MIN, r1(y(Math.max(endNs, op.invoke.time)) - top));
      const text = showText && h >= 12 ? esc(opText(op)) : '';
      out.push(
        `<div class="op ${op.outcome}" style="top:${top}px;height:${h}px" title="${esc(opTitle(op, viewEndNs))}">${text}</div>`,
      );
    }
    out.push('</div>');
  });
  out.push('</div>');
  return page(`${input.title} — timeline`, TIMELINE_CSS, out.join('\n'));
}

function opText(op: Op): string {
  const key = op.invoke.key === undefined ? '' : ` ${cut(op.invoke.key, 24)}`;
  const inv = op.invoke.value === null ? '' : ` ${showValue(op.invoke.value, 24)}`;
  const res =
    op.completion === undefined || op.completion.value === null
      ? ''
      : ` → ${showValue(op.completion.value, 24)}`;
  return `${op.invoke.f}${key}${inv}${res}`;
}

/** opTitle is the hover text of an op's box (newlines are kept by the title attribute). */
function opTitle(op: Op, viewEndNs: number): string {
  const lines = [`${op.invoke.f}${op.invoke.key === undefined ? '' : ` ${op.invoke.key}`}`];
  lines.push(`process: ${String(op.process)}`);
  lines.push(`invoke: ${showValue(op.invoke.value)}`);
  const c = op.completion;
  if (c === undefined) {
    lines.push('never completed');
    lines.push(`open for at least ${ms(Math.max(0, viewEndNs - op.invoke.time))} ms`);
    lines.push(`index: ${op.invoke.index}`);
  } else {
    lines.push(`${c.type}: ${showValue(c.value)}`);
    const error = c.fields.error;
    if (error !== undefined) lines.push(`error: ${showValue(error, 120)}`);
    lines.push(`latency: ${ms(c.time - op.invoke.time)} ms`);
    lines.push(`index: ${op.invoke.index} → ${c.index}`);
  }
  return cut(lines.join('\n'), 4 * VALUE_CHARS_MAX);
}

// ---------------------------------------------------------------------------------------------
// plot.html

const PLOT_W = 1100;
const PLOT_H = 320;
const M_LEFT = 70;
const M_RIGHT = 16;
const M_TOP = 22;
const M_BOTTOM = 42;
const INNER_W = PLOT_W - M_LEFT - M_RIGHT;
const INNER_H = PLOT_H - M_TOP - M_BOTTOM;

const OUTCOME_COLOUR: Readonly<Record<'ok' | 'fail' | 'info', string>> = {
  ok: '#2ca02c',
  fail: '#d62728',
  info: '#ff7f0e',
};
/** F_PALETTE colours the throughput lines per f (cycled when there are more). */
const F_PALETTE = [
  '#1f77b4',
  '#2ca02c',
  '#9467bd',
  '#8c564b',
  '#17becf',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#393b79',
  '#637939',
];

const PLOT_CSS = `
svg{display:block;margin:4px 0 16px;background:#fff}
h2{font-size:15px;margin:12px 0 2px}
`;

/** SVG_CSS goes inside each chart, so a chart saved on its own still looks the same. */
const SVG_CSS =
  'text{font:11px system-ui,sans-serif;fill:#333}.axis line{stroke:#555}line.grid{stroke:#eee}' +
  '.fault{fill:rgba(120,100,220,.16);stroke:rgba(90,60,200,.6)}text.flabel{fill:#4a2fb0}';

/** TimeAxis is the linear time axis both charts share. */
interface TimeAxis {
  readonly spanS: number;
  readonly x: (ns: number) => number;
}

/**
 * renderPlot renders `plot.html`: the latency of each completed op (log scale) and the
 * throughput per second, on one time axis in seconds since the first event, with the fault
 * windows shaded on both charts.
 */
export function renderPlot(input: ReportInput): string {
  const p = prepare(input);
  const spanS = Math.max((p.tEndNs - p.t0Ns) / 1e9, 1e-3);
  const axis: TimeAxis = {
    spanS,
    x: (ns: number) => M_LEFT + (Math.min(Math.max((ns - p.t0Ns) / 1e9, 0), spanS) / spanS) * INNER_W,
  };
  const out: string[] = [];
  out.push(header(input, p, 'latency and throughput'));
  out.push(faultTable(input, p));
  out.push(latencyChart(input, p, axis));
  out.push(throughputChart(input, p, axis));
  return page(`${input.title} — plot`, PLOT_CSS, out.join('\n'));
}

function svgOpen(label: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${PLOT_W}" height="${PLOT_H}" viewBox="0 0 ${PLOT_W} ${PLOT_H}" role="img" aria-label="${esc(label)}"><style>${SVG_CSS}</style><rect width="100%" height="100%" fill="#fff"/>`;
}

/** timeAxisSvg draws the x axis with its ticks, gridlines and label. */
function timeAxisSvg(axis: TimeAxis): string {
  const out: string[] = [];
  const step = niceStep(axis.spanS / 10);
  const decimals = decimalsFor(step);
  const yAxis = M_TOP + INNER_H;
  out.push('<g class="axis x">');
  for (let i = 0; i * step <= axis.spanS + 1e-9 && i <= 1000; i++) {
    const x = r1(M_LEFT + ((i * step) / axis.spanS) * INNER_W);
    out.push(`<line class="grid" x1="${x}" y1="${M_TOP}" x2="${x}" y2="${yAxis}"/>`);
    out.push(`<line x1="${x}" y1="${yAxis}" x2="${x}" y2="${yAxis + 5}"/>`);
    out.push(`<text x="${x}" y="${yAxis + 17}" text-anchor="middle">${(i * step).toFixed(decimals)}</text>`);
  }
  out.push(`<line x1="${M_LEFT}" y1="${yAxis}" x2="${M_LEFT + INNER_W}" y2="${yAxis}"/>`);
  out.push(
    `<text class="axis-label" x="${M_LEFT + INNER_W / 2}" y="${PLOT_H - 6}" text-anchor="middle">time (s since the first event)</text>`,
  );
  out.push('</g>');
  return out.join('');
}

/** faultsSvg shades the fault windows over the plot area, labels stacked in lanes. */
function faultsSvg(input: ReportInput, p: Prepared, axis: TimeAxis): string {
  const out: string[] = [];
  const laneEnds: number[] = [];
  const faults = [...input.faults]
    .map((w, i) => ({ w, i }))
    .sort((a, b) => a.w.startNs - b.w.startNs || a.i - b.i);
  for (const { w } of faults) {
    const x1 = r1(axis.x(w.startNs));
    const x2 = r1(axis.x(Math.max(w.endNs, w.startNs)));
    const width = Math.max(1, r1(x2 - x1));
    const label = cut(w.detail ? `${w.name}: ${w.detail}` : w.name, LABEL_CHARS_MAX);
    const s = ((w.startNs - p.t0Ns) / 1e9).toFixed(3);
    const e = ((w.endNs - p.t0Ns) / 1e9).toFixed(3);
    out.push(
      `<rect class="fault" x="${x1}" y="${M_TOP}" width="${width}" height="${INNER_H}"><title>${esc(`${label} (${w.endNs > w.startNs ? `${s} s to ${e} s` : `at ${s} s`})`)}</title></rect>`,
    );
    let lane = laneEnds.findIndex((end) => end <= x1);
    if (lane < 0) lane = laneEnds.length < 6 ? laneEnds.length : 0;
    laneEnds[lane] = x1 + label.length * 6.2 + 6;
    out.push(`<text class="flabel" x="${r1(x1 + 2)}" y="${M_TOP + 11 + lane * 12}">${esc(label)}</text>`);
  }
  return out.join('');
}

function latencyChart(input: ReportInput, p: Prepared, axis: TimeAxis): string {
  type Point = { x: number; y: number };
  const LAT_MS_MIN = 1e-3;
  const raw: { outcome: 'ok' | 'fail' | 'info'; t: number; lat: number }[] = [];
  let latMin = Number.POSITIVE_INFINITY;
  let latMax = 0;
  for (const op of p.ops) {
    if (op.completion === undefined || op.outcome === 'open') continue;
    const lat = Math.max(LAT_MS_MIN, (op.completion.time - op.invoke.time) / 1e6);
    latMin = Math.min(latMin, lat);
    latMax = Math.max(latMax, lat);
    raw.push({ outcome: op.outcome, t: op.invoke.time, lat });
  }
  let dMin = raw.length > 0 ? Math.floor(Math.log10(latMin)) : 0;
  let dMax = raw.length > 0 ? Math.ceil(Math.log10(latMax)) : 3;
  if (dMax <= dMin) dMax = dMin + 1;
  dMin = Math.max(dMin, -3);
  const yOf = (lat: number): number => M_TOP + INNER_H - ((Math.log10(lat) - dMin) / (dMax - dMin)) * INNER_H;

  // Thin: first one point per pixel per outcome, then a fixed stride if still too many.
  const seen = new Set<number>();
  const pts: { outcome: 'ok' | 'fail' | 'info'; pt: Point }[] = [];
  const ORDER = { ok: 0, fail: 1, info: 2 } as const;
  for (const r of raw) {
    const x = r1(axis.x(r.t));
    const y = r1(yOf(r.lat));
    const cell = (Math.round(x) * 4096 + Math.round(y)) * 3 + ORDER[r.outcome];
    if (seen.has(cell)) continue;
    seen.add(cell);
    pts.push({ outcome: r.outcome, pt: { x, y } });
  }
  const stride = Math.max(1, Math.ceil(pts.length / PLOT_POINTS_MAX));
  const paths: Record<'ok' | 'fail' | 'info', string[]> = { ok: [], fail: [], info: [] };
  let drawn = 0;
  for (let i = 0; i < pts.length; i += stride) {
    const { outcome, pt } = pts[i]!;
    paths[outcome].push(`M${pt.x} ${pt.y}h0`);
    drawn++;
  }

  const out: string[] = [];
  const c = p.counts;
  out.push('<h2>Latency of each completed op (ms, log scale), by invoke time</h2>');
  out.push(
    `<p class="legend"><span><i class="sw" style="background:${OUTCOME_COLOUR.ok}"></i>ok (${c.ok})</span>` +
      `<span><i class="sw" style="background:${OUTCOME_COLOUR.fail}"></i>fail (${c.fail})</span>` +
      `<span><i class="sw" style="background:${OUTCOME_COLOUR.info}"></i>info (${c.info})</span>` +
      `<span><i class="sw" style="background:rgba(120,100,220,.16)"></i>fault window</span>` +
      (c.open > 0 ? `<span>${c.open} never completed (no latency)</span>` : '') +
      (drawn < raw.length
        ? `<span>showing ${drawn} of ${raw.length} points (same-pixel points merged${stride > 1 ? `, then every ${stride}th kept` : ''})</span>`
        : '') +
      '</p>',
  );
  out.push(svgOpen('latency of each completed op'));
  // y axis: decades, with light lines at 2 and 5.
  out.push('<g class="axis y">');
  for (let d = dMin; d <= dMax; d++) {
    const yy = r1(yOf(10 ** d));
    out.push(`<line class="grid" x1="${M_LEFT}" y1="${yy}" x2="${M_LEFT + INNER_W}" y2="${yy}"/>`);
    out.push(`<line x1="${M_LEFT - 5}" y1="${yy}" x2="${M_LEFT}" y2="${yy}"/>`);
    out.push(`<text x="${M_LEFT - 8}" y="${yy + 4}" text-anchor="end">${decade(d)}</text>`);
    if (d < dMax)
      for (const m of [2, 5]) {
        const ym = r1(yOf(m * 10 ** d));
        out.push(`<line class="grid" x1="${M_LEFT}" y1="${ym}" x2="${M_LEFT + INNER_W}" y2="${ym}"/>`);
      }
  }
  out.push(`<line x1="${M_LEFT}" y1="${M_TOP}" x2="${M_LEFT}" y2="${M_TOP + INNER_H}"/>`);
  out.push(
    `<text class="axis-label" transform="translate(16 ${M_TOP + INNER_H / 2}) rotate(-90)" text-anchor="middle">latency (ms, log scale)</text>`,
  );
  out.push('</g>');
  out.push(timeAxisSvg(axis));
  out.push(faultsSvg(input, p, axis));
  for (const o of ['ok', 'info', 'fail'] as const)
    if (paths[o].length > 0)
      out.push(
        `<path class="pts ${o}" fill="none" stroke="${OUTCOME_COLOUR[o]}" stroke-width="3" stroke-linecap="round" stroke-opacity="0.7" d="${paths[o].join('')}"/>`,
      );
  out.push('</svg>');
  return out.join('\n');
}

function decade(d: number): string {
  return d >= 0 ? String(10 ** d) : `0.${'0'.repeat(-d - 1)}1`;
}

function throughputChart(input: ReportInput, p: Prepared, axis: TimeAxis): string {
  const buckets = Math.max(1, Math.ceil(axis.spanS));
  const okByF = new Map<string, number[]>();
  const fail = new Array<number>(buckets).fill(0);
  const info = new Array<number>(buckets).fill(0);
  for (const op of p.ops) {
    const c = op.completion;
    if (c === undefined) continue;
    const b = Math.min(buckets - 1, Math.max(0, Math.floor((c.time - p.t0Ns) / 1e9)));
    if (op.outcome === 'ok') {
      let series = okByF.get(op.invoke.f);
      if (series === undefined) okByF.set(op.invoke.f, (series = new Array<number>(buckets).fill(0)));
      series[b]!++;
    } else if (op.outcome === 'fail') fail[b]!++;
    else info[b]!++;
  }
  const fs = [...okByF.keys()].sort();
  // Counts become rates: the last bucket may be partial (and is left out when under 0.2 s).
  const widthS = (i: number): number => Math.min(1, axis.spanS - i);
  const shown = buckets > 1 && widthS(buckets - 1) < 0.2 ? buckets - 1 : buckets;
  const rate = (s: readonly number[]): number[] =>
    s.slice(0, shown).map((v, i) => v / Math.max(widthS(i), 1e-3));
  let max = 0;
  for (const s of [...okByF.values(), fail, info]) for (const v of rate(s)) if (v > max) max = v;
  const step = niceStep(Math.max(1, max) / 5);
  const top = Math.max(step, Math.ceil(max / step) * step);
  const yOf = (v: number): number => M_TOP + INNER_H - (v / top) * INNER_H;
  // Each bucket is drawn at its middle.
  const xOf = (i: number): number => M_LEFT + ((i + widthS(i) / 2) / axis.spanS) * INNER_W;
  const line = (s: readonly number[]): string =>
    rate(s)
      .map((v, i) => `${i === 0 ? 'M' : 'L'}${r1(xOf(i))} ${r1(yOf(v))}`)
      .join('');

  const series: { label: string; colour: string; dash: boolean; data: readonly number[] }[] = fs.map(
    (f, i) => ({
      label: `${cut(f, 40)} ok/s`,
      colour: F_PALETTE[i % F_PALETTE.length]!,
      dash: false,
      data: okByF.get(f)!,
    }),
  );
  series.push({ label: 'fail/s', colour: OUTCOME_COLOUR.fail, dash: true, data: fail });
  series.push({ label: 'info/s', colour: OUTCOME_COLOUR.info, dash: true, data: info });

  const out: string[] = [];
  out.push(
    '<h2>Throughput: ok ops per second per f, and fail and info per second (1 s buckets, by completion time)</h2>',
  );
  out.push(
    `<p class="legend">${series
      .map(
        (s) =>
          `<span><i class="sw" style="background:${s.colour}${s.dash ? ';border-style:dashed' : ''}"></i>${esc(s.label)}</span>`,
      )
      .join('')}<span><i class="sw" style="background:rgba(120,100,220,.16)"></i>fault window</span></p>`,
  );
  out.push(svgOpen('throughput per second'));
  out.push('<g class="axis y">');
  for (let v = 0; v <= top + 1e-9; v += step) {
    const yy = r1(yOf(v));
    out.push(`<line class="grid" x1="${M_LEFT}" y1="${yy}" x2="${M_LEFT + INNER_W}" y2="${yy}"/>`);
    out.push(`<line x1="${M_LEFT - 5}" y1="${yy}" x2="${M_LEFT}" y2="${yy}"/>`);
    out.push(`<text x="${M_LEFT - 8}" y="${yy + 4}" text-anchor="end">${v}</text>`);
  }
  out.push(`<line x1="${M_LEFT}" y1="${M_TOP}" x2="${M_LEFT}" y2="${M_TOP + INNER_H}"/>`);
  out.push(
    `<text class="axis-label" transform="translate(16 ${M_TOP + INNER_H / 2}) rotate(-90)" text-anchor="middle">operations per second</text>`,
  );
  out.push('</g>');
  out.push(timeAxisSvg(axis));
  out.push(faultsSvg(input, p, axis));
  for (const s of series)
    out.push(
      `<path class="series" fill="none" stroke="${s.colour}" stroke-width="1.5"${s.dash ? ' stroke-dasharray="4 3"' : ''} d="${line(s.data)}"><title>${esc(s.label)}</title></path>`,
    );
  out.push('</svg>');
  return out.join('\n');
}
