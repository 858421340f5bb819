/**
 * The dashboard: one web page on a node's admin port (`GET /` or `/dashboard`) that shows the
 * cluster's members and health, where each group's replicas and leader are, the alarms, and
 * plots of throughput, latency and leader changes over the last minutes.
 *
 * - The page (DASHBOARD_HTML) is one HTML string with inline CSS and JS: no library, no CDN,
 *   so it works on a host with no internet. The script builds plain DOM (textContent only:
 *   store names are user data) and inline SVG plots, and every 2 s fetches `api/status` (the
 *   node's `clusterStatus()`) and `api/history?since=T` (only the samples newer than the last
 *   one it has). A failed fetch marks the page "unreachable" and keeps the last data on screen.
 *   Elements carry stable ids and data attributes (`data-member-id`, `data-group-id`,
 *   `data-role`, `#throughput-plot`, `data-series`) for tests and scripts.
 * - StatsHistory is what the plots draw: a NodeObserver that counts requests (by kind, with a
 *   fixed-bucket latency histogram) and leader changes, and once a second closes the interval
 *   into one HistorySample (rates per second, p50/p99, leader changes, each group's commit
 *   index) in a ring of the last 10 minutes. Memory is bounded on every axis: the ring holds
 *   `capacity` samples, the histogram has LATENCY_BUCKET_COUNT buckets whatever the load, and
 *   an interval keeps at most KINDS_MAX request kinds (the rest count as `other`).
 * - serveDashboard answers the dashboard's four routes inside the admin server (main.ts), and
 *   tells the caller when a path is not one of them.
 */
import type { ServerResponse } from 'node:http';
import type { ClusterStatus } from '../transport/protocol.js';
import type { NodeObserver, RequestOutcome } from './observer.js';

/** HISTORY_CAPACITY is how many samples StatsHistory keeps by default: 10 minutes of seconds. */
export const HISTORY_CAPACITY = 600;
/** HISTORY_INTERVAL_MS is how often StatsHistory samples by default. */
export const HISTORY_INTERVAL_MS = 1000;
/** KINDS_MAX bounds the request kinds one sample keeps; the rest are summed as OTHER_KIND. */
export const KINDS_MAX = 24;
/** OTHER_KIND is where requests of kinds past KINDS_MAX are counted. */
export const OTHER_KIND = 'other';
/** KIND_CHARS_MAX bounds a kind's name (it comes from a request). */
const KIND_CHARS_MAX = 40;

/** The latency histogram: bucket i holds (upper(i-1), upper(i)] with upper(i) = MIN * 2^(i/PER_DOUBLING). */
const LATENCY_BUCKET_MIN_MS = 0.01;
const LATENCY_BUCKETS_PER_DOUBLING = 4;
/** LATENCY_BUCKET_COUNT buckets reach past 2 minutes; slower requests land in the last one. */
export const LATENCY_BUCKET_COUNT = 96;

/** latencyBucketOf is the histogram bucket of a latency (ms). */
function latencyBucketOf(ms: number): number {
  if (!(ms > LATENCY_BUCKET_MIN_MS)) return 0;
  const i = Math.ceil(Math.log2(ms / LATENCY_BUCKET_MIN_MS) * LATENCY_BUCKETS_PER_DOUBLING - 1e-9);
  return Math.min(Math.max(i, 0), LATENCY_BUCKET_COUNT - 1);
}

/** latencyBucketUpperMs is the upper bound of bucket i (ms). */
function latencyBucketUpperMs(i: number): number {
  return LATENCY_BUCKET_MIN_MS * 2 ** (i / LATENCY_BUCKETS_PER_DOUBLING);
}

/** round3 keeps three decimals (the JSON stays short). */
function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** HistorySample is one closed interval (normally one second) of a node's activity. */
export interface HistorySample {
  /** Wall-clock time the interval ended (ms since the epoch). */
  readonly t: number;
  /** The interval's length (ms); the rates below are per second over it. */
  readonly ms: number;
  /** Requests per second by kind (a command's or read's inner op, else the client op). */
  readonly ops: Readonly<Record<string, number>>;
  /** All requests per second. */
  readonly opsTotal: number;
  /** Failed requests per second. */
  readonly errors: number;
  /** Median and 99th percentile latency (ms) of the interval's requests; null when none. */
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  /** Leader changes this node saw in the interval (a new leader known, summed over groups). */
  readonly leaderChanges: number;
  /** Each hosted group's commit index at `t`, by group id. */
  readonly commitIndex: Readonly<Record<string, number>>;
  /** Log entries committed per second, summed over the hosted groups. */
  readonly entriesPerSec: number;
}

/** HistoryJson is what `GET /api/history` serves. */
export interface HistoryJson {
  readonly nodeId: number;
  readonly intervalMs: number;
  readonly capacity: number;
  /** Oldest first. */
  readonly samples: readonly HistorySample[];
}

/** GroupCommit is what StatsHistory reads of each hosted group (DkvNode.groupStats() fits). */
export interface GroupCommit {
  readonly id: number;
  readonly commitIndex: number;
}

/** StatsHistoryOptions size and feed a StatsHistory; everything has a default. */
export interface StatsHistoryOptions {
  /** Samples kept (default HISTORY_CAPACITY). */
  readonly capacity?: number;
  /** The sampling period of start() (default HISTORY_INTERVAL_MS). */
  readonly intervalMs?: number;
  /** The wall clock (default Date.now). */
  readonly nowMs?: () => number;
}

/**
 * StatsHistory keeps the last minutes of a node's activity for the dashboard's plots. It is a
 * NodeObserver (request and leaderChange); sample() closes the current interval, and start()
 * calls it every intervalMs. Never throws into the node.
 */
export class StatsHistory implements NodeObserver {
  readonly capacity: number;
  readonly intervalMs: number;
  private readonly nowMs: () => number;
  /** The ring. Invariant: ring.length <= capacity; once full, `head` is the oldest sample. */
  private readonly ring: HistorySample[] = [];
  private head = 0;
  /** The open interval. Invariant: kinds.size <= KINDS_MAX + 1 (OTHER_KIND). */
  private readonly kinds = new Map<string, number>();
  private readonly hist = new Uint32Array(LATENCY_BUCKET_COUNT);
  private count = 0;
  private errors = 0;
  private minMs = Number.POSITIVE_INFINITY;
  private maxMs = 0;
  private leaderChanges = 0;
  private openedAt: number;
  private lastCommit = new Map<number, number>();
  private groups: () => readonly GroupCommit[] = () => [];
  private timer: NodeJS.Timeout | undefined;

  constructor(opts: StatsHistoryOptions = {}) {
    this.capacity = opts.capacity ?? HISTORY_CAPACITY;
    this.intervalMs = opts.intervalMs ?? HISTORY_INTERVAL_MS;
    if (!Number.isSafeInteger(this.capacity) || this.capacity < 1)
      throw new RangeError(`StatsHistory capacity must be a positive integer, not ${this.capacity}`);
    if (!(this.intervalMs > 0)) throw new RangeError(`StatsHistory intervalMs must be positive`);
    this.nowMs = opts.nowMs ?? Date.now;
    this.openedAt = this.nowMs();
  }

  /** request counts one finished request in the open interval (NodeObserver). */
  request(r: RequestOutcome): void {
    const kind = (r.kind !== '' ? r.kind : r.op).slice(0, KIND_CHARS_MAX) || '?';
    const key = this.kinds.has(kind) || this.kinds.size < KINDS_MAX ? kind : OTHER_KIND;
    this.kinds.set(key, (this.kinds.get(key) ?? 0) + 1);
    this.count++;
    if (r.code !== undefined) this.errors++;
    const ms = Number.isFinite(r.ms) && r.ms >= 0 ? r.ms : 0;
    const b = latencyBucketOf(ms);
    this.hist[b] = (this.hist[b] ?? 0) + 1;
    if (ms < this.minMs) this.minMs = ms;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  /** leaderChange counts a new leader this node learned of (NodeObserver); 0 (none) is not one. */
  leaderChange(_group: number, leader: number, _isLeader: boolean): void {
    if (leader !== 0) this.leaderChanges++;
  }

  /** percentileMs is the q-quantile of the open interval's latencies (within one bucket, ~19%). */
  private percentileMs(q: number): number | null {
    if (this.count === 0) return null;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < LATENCY_BUCKET_COUNT; i++) {
      seen += this.hist[i] ?? 0;
      if (seen >= rank) return round3(Math.max(this.minMs, Math.min(latencyBucketUpperMs(i), this.maxMs)));
    }
    return round3(this.maxMs);
  }

  /**
   * sample closes the open interval into a HistorySample, appends it to the ring (dropping the
   * oldest when full), opens the next interval, and returns the sample.
   */
  sample(): HistorySample {
    const now = this.nowMs();
    const ms = now - this.openedAt > 0 ? now - this.openedAt : this.intervalMs;
    const perSec = 1000 / ms;
    const ops: Record<string, number> = {};
    for (const [k, n] of [...this.kinds].sort((a, b) => b[1] - a[1])) ops[k] = round3(n * perSec);
    let groups: readonly GroupCommit[] = [];
    try {
      groups = this.groups();
    } catch {
      // the node is stopping: no group figures this time
    }
    const commitIndex: Record<string, number> = {};
    const nextCommit = new Map<number, number>();
    let entries = 0;
    for (const g of groups) {
      commitIndex[String(g.id)] = g.commitIndex;
      nextCommit.set(g.id, g.commitIndex);
      const before = this.lastCommit.get(g.id);
      if (before !== undefined && g.commitIndex > before) entries += g.commitIndex - before;
    }
    const s: HistorySample = {
      t: now,
      ms,
      ops,
      opsTotal: round3(this.count * perSec),
      errors: round3(this.errors * perSec),
      p50Ms: this.percentileMs(0.5),
      p99Ms: this.percentileMs(0.99),
      leaderChanges: this.leaderChanges,
      commitIndex,
      entriesPerSec: round3(entries * perSec),
    };
    if (this.ring.length < this.capacity) this.ring.push(s);
    else {
      this.ring[this.head] = s;
      this.head = (this.head + 1) % this.capacity;
    }
    this.lastCommit = nextCommit;
    this.kinds.clear();
    this.hist.fill(0);
    this.count = 0;
    this.errors = 0;
    this.minMs = Number.POSITIVE_INFINITY;
    this.maxMs = 0;
    this.leaderChanges = 0;
    this.openedAt = now;
    return s;
  }

  /** samples lists the kept samples oldest first, only those after `sinceT` when given. */
  samples(sinceT?: number): HistorySample[] {
    const all = [...this.ring.slice(this.head), ...this.ring.slice(0, this.head)];
    return sinceT === undefined ? all : all.filter((s) => s.t > sinceT);
  }

  /** toJson is the `GET /api/history` answer. */
  toJson(nodeId: number, sinceT?: number): HistoryJson {
    return { nodeId, intervalMs: this.intervalMs, capacity: this.capacity, samples: this.samples(sinceT) };
  }

  /**
   * start samples every intervalMs (the timer does not keep the process alive), reading each
   * group's commit index from `groups` (e.g. `() => node.groupStats()`). Calling it again only
   * replaces `groups`.
   */
  start(groups?: () => readonly GroupCommit[]): void {
    if (groups !== undefined) this.groups = groups;
    if (this.timer !== undefined) return;
    this.openedAt = this.nowMs();
    this.timer = setInterval(() => {
      try {
        this.sample();
      } catch {
        // never let a sampling bug reach the timer
      }
    }, this.intervalMs);
    this.timer.unref();
  }

  /** stop ends the sampling started by start(). */
  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** DashboardSource is what the dashboard routes need of the node (DkvNode fits). */
export interface DashboardSource {
  readonly id: number;
  clusterStatus(): Promise<ClusterStatus>;
}

/** DASHBOARD_PATHS are the paths serveDashboard answers. */
export const DASHBOARD_PATHS = ['/', '/dashboard', '/api/status', '/api/history'] as const;

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  res
    .writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
    .end(`${JSON.stringify(body)}\n`);
}

/**
 * serveDashboard answers a GET of one of DASHBOARD_PATHS and returns true, or returns false
 * (having sent nothing) for any other path. `url` is the request's URL (path and query).
 * Errors become a JSON `{ error }` answer; nothing escapes.
 */
export function serveDashboard(
  url: string,
  res: ServerResponse,
  source: DashboardSource,
  history: StatsHistory | undefined,
): boolean {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  switch (path) {
    case '/':
    case '/dashboard':
      res
        .writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
        .end(DASHBOARD_HTML);
      return true;
    case '/api/status': {
      let pending: Promise<ClusterStatus>;
      try {
        pending = source.clusterStatus();
      } catch (err) {
        pending = Promise.reject(err);
      }
      pending.then(
        (status) => sendJson(res, 200, status),
        (err: unknown) =>
          sendJson(res, 503, {
            error: `cluster status failed: ${err instanceof Error ? err.message : String(err)}`,
          }),
      );
      return true;
    }
    case '/api/history': {
      if (history === undefined) {
        sendJson(res, 404, { error: 'this node keeps no history' });
        return true;
      }
      const since = new URLSearchParams(q < 0 ? '' : url.slice(q + 1)).get('since');
      const sinceT = since === null || since === '' ? undefined : Number(since);
      if (sinceT !== undefined && !Number.isFinite(sinceT)) {
        sendJson(res, 400, { error: `since must be a time in ms since the epoch, not ${since}` });
        return true;
      }
      sendJson(res, 200, history.toJson(source.id, sinceT));
      return true;
    }
    default:
      return false;
  }
}

/**
 * DASHBOARD_SCRIPT is the page's script: plain ES2017, no template literals (it lives inside
 * one), no library.
 */
const DASHBOARD_SCRIPT = String.raw`
(function () {
  'use strict';
  var REFRESH_MS = 2000;
  var FETCH_TIMEOUT_MS = 5000;
  var SVGNS = 'http://www.w3.org/2000/svg';
  var COLORS = ['#2563eb', '#16a34a', '#d97706', '#9333ea', '#0891b2', '#db2777'];
  var state = { status: null, samples: [], lastT: 0, capacity: 600, intervalMs: 1000, nodeId: null,
    windowMs: 5 * 60000, lastOk: 0 };

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    setAttrs(e, attrs);
    append(e, kids);
    return e;
  }
  function svg(tag, attrs, kids) {
    var e = document.createElementNS(SVGNS, tag);
    setAttrs(e, attrs);
    append(e, kids);
    return e;
  }
  function setAttrs(e, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === undefined || v === null || v === false) return;
      if (k === 'text') e.textContent = String(v);
      else e.setAttribute(k, String(v));
    });
  }
  function append(e, kids) {
    if (kids === undefined || kids === null) return;
    if (!Array.isArray(kids)) kids = [kids];
    kids.forEach(function (k) {
      if (k === undefined || k === null) return;
      e.appendChild(typeof k === 'string' || typeof k === 'number' ? document.createTextNode(String(k)) : k);
    });
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }
  function clock(t) { return new Date(t).toLocaleTimeString(); }
  function message(err) { return err && err.message ? err.message : String(err); }

  function getJson(url) {
    var ctl = new AbortController();
    var timer = setTimeout(function () { ctl.abort(); }, FETCH_TIMEOUT_MS);
    return fetch(url, { signal: ctl.signal, cache: 'no-store' }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (body) {
        if (!res.ok) {
          var e = new Error((body && body.error) || ('HTTP ' + res.status));
          e.http = true;
          throw e;
        }
        return body;
      });
    }).finally(function () { clearTimeout(timer); });
  }

  // ---------------------------------------------------------------- members, groups, alarms

  function renderStatus() {
    var st = state.status;
    if (!st) return;
    var members = (st.members || []).slice().sort(function (a, b) { return a.id - b.id; });
    var groups = (st.groups || []).slice().sort(function (a, b) { return a.id - b.id; });
    var down = {};
    members.forEach(function (m) { if (!m.healthy) down[m.id] = true; });
    var body = $('members-body');
    clear(body);
    members.forEach(function (m) {
      var self = m.id === st.from;
      body.appendChild(el('tr', { 'data-member-id': m.id, 'data-healthy': m.healthy ? 'true' : 'false',
        'data-state': m.state || '', class: m.healthy ? '' : 'down' }, [
        el('td', { text: m.id + (self ? ' (this node)' : '') }),
        el('td', { text: m.address || '' }),
        el('td', { text: m.state || '' }),
        el('td', { class: 'num', text: groups.filter(function (g) { return g.leader === m.id; }).length }),
        el('td', null, el('span', { class: 'badge ' + (m.healthy ? 'ok' : 'bad'),
          text: m.healthy ? 'healthy' : 'unhealthy' })),
      ]));
    });
    $('members-count').textContent = members.filter(function (m) { return m.healthy; }).length +
      ' of ' + members.length + ' healthy';

    var ids = members.map(function (m) { return m.id; });
    groups.forEach(function (g) {
      (g.replicas || []).concat(g.learners || [], g.target || []).forEach(function (id) {
        if (ids.indexOf(id) < 0) ids.push(id);
      });
    });
    ids.sort(function (a, b) { return a - b; });
    var head = $('groups-head');
    clear(head);
    head.appendChild(el('tr', null, [el('th', { text: 'group' }), el('th', { text: 'store' })].concat(
      ids.map(function (id) {
        return el('th', { 'data-member-id': id, class: down[id] ? 'down' : '', text: 'node ' + id + (down[id] ? ' (down)' : '') });
      }))));
    var gbody = $('groups-body');
    clear(gbody);
    groups.forEach(function (g) {
      var replicas = g.replicas || [];
      var learners = g.learners || [];
      var target = g.target || [];
      var row = el('tr', { 'data-group-id': g.id, 'data-store': g.store, 'data-leader': g.leader,
        class: g.leader > 0 ? '' : 'leaderless' }, [
        el('th', { text: String(g.id) }),
        el('td', { text: g.store }),
      ]);
      ids.forEach(function (id) {
        var role = id === g.leader && g.leader > 0 ? 'leader'
          : replicas.indexOf(id) >= 0 ? 'voter'
          : learners.indexOf(id) >= 0 ? 'learner'
          : target.indexOf(id) >= 0 ? 'target' : 'none';
        var letter = { leader: 'L', voter: 'V', learner: 'l', target: '\u2192', none: '' }[role];
        var cell = el('td', { 'data-member-id': id, 'data-role': role, class: 'cell ' + role + (down[id] ? ' down' : ''),
          title: role === 'none' ? '' : role + ' of group ' + g.id + ' (term ' + g.term + ', commit ' +
            g.commitIndex + ', lag ' + g.lag + ')' }, el('b', { text: letter }));
        if (role === 'leader')
          cell.appendChild(el('small', { text: 't' + g.term + ' c' + g.commitIndex + ' lag ' + g.lag }));
        row.appendChild(cell);
      });
      gbody.appendChild(row);
    });
    $('groups-empty').hidden = groups.length > 0;

    var alarms = $('alarms');
    clear(alarms);
    (st.alarms || []).forEach(function (a) {
      alarms.appendChild(el('li', { 'data-alarm-kind': a.kind, 'data-group-id': a.group,
        'data-member-id': a.member }, [el('b', { text: a.kind }), ' ', a.message]));
    });
    if (!st.alarms || st.alarms.length === 0) alarms.appendChild(el('li', { class: 'none', text: 'none' }));
  }

  // ---------------------------------------------------------------- history and plots

  function mergeHistory(h) {
    if (typeof h.capacity === 'number') state.capacity = h.capacity;
    if (typeof h.intervalMs === 'number') state.intervalMs = h.intervalMs;
    state.nodeId = h.nodeId;
    (h.samples || []).forEach(function (s) {
      if (s.t > state.lastT) { state.samples.push(s); state.lastT = s.t; }
    });
    var oldest = state.lastT - state.capacity * state.intervalMs;
    while (state.samples.length > 0 && state.samples[0].t <= oldest) state.samples.shift();
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }
  function fmt(v) {
    if (v >= 100) return String(Math.round(v));
    if (v >= 10) return v.toFixed(1).replace(/\.0$/, '');
    return String(Math.round(v * 100) / 100);
  }

  // plot draws series ({ name, label, color, dashed, points: [[t, v|null]] }) into an svg.
  function plot(id, series, opts) {
    var box = $(id);
    clear(box);
    var W = 600, H = 170, L = 44, R = 8, T = 8, B = 22;
    var end = state.samples.length > 0 ? state.lastT : Date.now();
    var start = end - state.windowMs;
    var max = 0;
    series.forEach(function (s) {
      s.points.forEach(function (p) { if (p[0] >= start && p[1] !== null && p[1] > max) max = p[1]; });
    });
    var top = niceMax(max);
    var x = function (t) { return L + (t - start) / (end - start) * (W - L - R); };
    var y = function (v) { return T + (1 - v / top) * (H - T - B); };
    [0, 0.5, 1].forEach(function (f) {
      box.appendChild(svg('line', { x1: L, x2: W - R, y1: y(top * f), y2: y(top * f), class: 'grid' }));
      box.appendChild(svg('text', { x: L - 4, y: y(top * f) + 4, 'text-anchor': 'end', class: 'tick',
        text: fmt(top * f) }));
    });
    var minutes = Math.round(state.windowMs / 60000);
    box.appendChild(svg('text', { x: L, y: H - 6, class: 'tick', text: '-' + minutes + ' min' }));
    box.appendChild(svg('text', { x: W - R, y: H - 6, 'text-anchor': 'end', class: 'tick',
      text: state.samples.length > 0 ? clock(end) : 'no data yet' }));
    if (opts.unit) box.appendChild(svg('text', { x: L + 4, y: T + 10, class: 'tick', text: opts.unit }));
    var gapMs = 2.5 * state.intervalMs;
    var legend = $(id + '-legend');
    clear(legend);
    series.forEach(function (s) {
      var pts = s.points.filter(function (p) { return p[0] >= start; });
      var smax = 0, n = 0;
      if (opts.bars) {
        var bw = Math.max(1, (W - L - R) * state.intervalMs / state.windowMs - 1);
        var g = svg('g', { 'data-series': s.name, fill: s.color });
        pts.forEach(function (p) {
          if (p[1] === null) return;
          n++;
          if (p[1] > smax) smax = p[1];
          if (p[1] > 0)
            g.appendChild(svg('rect', { x: x(p[0]) - bw, y: y(p[1]), width: bw, height: y(0) - y(p[1]) },
              svg('title', { text: clock(p[0]) + ': ' + p[1] })));
        });
        setAttrs(g, { 'data-max': smax, 'data-points': n });
        box.appendChild(g);
      } else {
        var d = '', prev = null;
        pts.forEach(function (p) {
          if (p[1] === null) { prev = null; return; }
          n++;
          if (p[1] > smax) smax = p[1];
          d += (prev === null || p[0] - prev > gapMs ? 'M' : 'L') + x(p[0]).toFixed(1) + ',' + y(p[1]).toFixed(1);
          prev = p[0];
        });
        box.appendChild(svg('path', { d: d, class: 'series', stroke: s.color,
          'stroke-dasharray': s.dashed ? '4 3' : null, 'data-series': s.name, 'data-max': smax,
          'data-points': n }));
      }
      legend.appendChild(el('span', { 'data-series': s.name }, [
        el('i', { style: 'background:' + s.color }), s.label + ' (max ' + fmt(smax) + ')']));
    });
    var drawn = series.some(function (s) {
      return s.points.some(function (p) { return p[0] >= start && p[1] !== null; });
    });
    if (!drawn) box.appendChild(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty',
      text: opts.empty || 'no data yet' }));
    box.setAttribute('data-max', String(max));
  }

  function renderPlots() {
    var ss = state.samples;
    var totals = {};
    ss.forEach(function (s) {
      Object.keys(s.ops || {}).forEach(function (k) { totals[k] = (totals[k] || 0) + s.ops[k]; });
    });
    var kinds = Object.keys(totals).sort(function (a, b) { return totals[b] - totals[a]; }).slice(0, 4);
    var tp = [{ name: 'total', label: 'requests/s', color: '#111827',
      points: ss.map(function (s) { return [s.t, s.opsTotal]; }) }];
    kinds.forEach(function (k, i) {
      tp.push({ name: 'kind:' + k, label: k, color: COLORS[i % COLORS.length],
        points: ss.map(function (s) { return [s.t, (s.ops && s.ops[k]) || 0]; }) });
    });
    tp.push({ name: 'entries', label: 'log entries committed/s', color: '#6b7280', dashed: true,
      points: ss.map(function (s) { return [s.t, s.entriesPerSec]; }) });
    tp.push({ name: 'errors', label: 'errors/s', color: '#dc2626',
      points: ss.map(function (s) { return [s.t, s.errors]; }) });
    plot('throughput-plot', tp, { unit: 'per second' });
    plot('latency-plot', [
      { name: 'p50', label: 'p50', color: '#2563eb', points: ss.map(function (s) { return [s.t, s.p50Ms]; }) },
      { name: 'p99', label: 'p99', color: '#dc2626', points: ss.map(function (s) { return [s.t, s.p99Ms]; }) },
    ], { unit: 'ms', empty: 'no requests answered by this node in this window' });
    plot('leader-changes-plot', [
      { name: 'leader-changes', label: 'leader changes', color: '#d97706',
        points: ss.map(function (s) { return [s.t, s.leaderChanges]; }) },
    ], { bars: true, unit: 'per interval' });
  }

  // ---------------------------------------------------------------- refresh loop

  function setConnection(problems, unreachable) {
    var c = $('conn');
    if (problems.length === 0) {
      state.lastOk = Date.now();
      c.setAttribute('data-state', 'ok');
      c.textContent = 'live';
      c.title = '';
    } else {
      c.setAttribute('data-state', unreachable ? 'unreachable' : 'error');
      c.textContent = (unreachable ? 'unreachable' : 'error') +
        (state.lastOk > 0 ? ' (showing data from ' + clock(state.lastOk) + ')' : '');
      c.title = problems.join('; ');
    }
    $('problem').textContent = problems.join('; ');
    if (state.nodeId !== null) $('node-label').textContent = 'node ' + state.nodeId;
    $('updated').textContent = 'checked ' + clock(Date.now());
  }

  function refresh() {
    Promise.allSettled([getJson('api/status'), getJson('api/history?since=' + state.lastT)])
      .then(function (rs) {
        var problems = [];
        var unreachable = false;
        if (rs[0].status === 'fulfilled') { state.status = rs[0].value; renderStatus(); }
        else { problems.push('status: ' + message(rs[0].reason)); unreachable = unreachable || !rs[0].reason.http; }
        if (rs[1].status === 'fulfilled') mergeHistory(rs[1].value);
        else { problems.push('history: ' + message(rs[1].reason)); unreachable = unreachable || !rs[1].reason.http; }
        renderPlots();
        setConnection(problems, unreachable);
      })
      .catch(function (err) { setConnection(['render: ' + message(err)], false); })
      .then(function () { setTimeout(refresh, REFRESH_MS); });
  }

  Array.prototype.forEach.call(document.querySelectorAll('#window button'), function (b) {
    b.addEventListener('click', function () {
      state.windowMs = Number(b.getAttribute('data-window-min')) * 60000;
      Array.prototype.forEach.call(document.querySelectorAll('#window button'), function (o) {
        o.setAttribute('aria-pressed', o === b ? 'true' : 'false');
      });
      renderPlots();
    });
  });
  refresh();
})();
`;

/** DASHBOARD_HTML is the whole page: markup, style and script, with no external asset. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>DKV dashboard</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #111827; background: #f9fafb; }
  header { display: flex; gap: 1em; align-items: baseline; padding: .6em 1.2em; background: #111827; color: #f9fafb; }
  header h1 { font-size: 1.2em; margin: 0; }
  #conn { padding: 0 .5em; border-radius: 3px; background: #6b7280; }
  #conn[data-state="ok"] { background: #16a34a; }
  #conn[data-state="unreachable"], #conn[data-state="error"] { background: #dc2626; }
  #updated { margin-left: auto; opacity: .7; }
  #problem { color: #dc2626; padding: 0 1.2em; }
  main { padding: .5em 1.2em 2em; display: grid; gap: 1em; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); }
  section { background: #fff; border: 1px solid #e5e7eb; border-radius: 6px; padding: .6em 1em; overflow-x: auto; }
  section.wide { grid-column: 1 / -1; }
  h2 { font-size: 1em; margin: .2em 0 .5em; }
  h2 small { font-weight: normal; color: #6b7280; margin-left: .5em; }
  table { border-collapse: collapse; }
  th, td { padding: .2em .6em; border-bottom: 1px solid #f3f4f6; text-align: left; }
  tr.down td { color: #991b1b; }
  .badge { padding: 0 .4em; border-radius: 3px; color: #fff; }
  .badge.ok { background: #16a34a; } .badge.bad { background: #dc2626; }
  td.cell { text-align: center; min-width: 4em; }
  td.cell small { display: block; color: #6b7280; font-size: .75em; white-space: nowrap; }
  td.leader { background: #dbeafe; } td.voter { background: #f3f4f6; }
  td.learner { background: #fef3c7; } td.target { background: #fce7f3; }
  tr.leaderless th { color: #dc2626; } td.cell.down { opacity: .4; } th.down { color: #dc2626; }
  td.num { text-align: right; }
  svg.plot .empty { font-size: 12px; fill: #9ca3af; }
  #alarms { margin: 0; padding-left: 1.2em; } #alarms li.none { color: #6b7280; list-style: none; margin-left: -1.2em; }
  #alarms li b { color: #dc2626; }
  svg.plot { width: 100%; height: auto; display: block; }
  svg.plot .grid { stroke: #e5e7eb; } svg.plot .tick { font-size: 10px; fill: #6b7280; }
  svg.plot .series { fill: none; stroke-width: 1.5; }
  .legend { font-size: .85em; color: #374151; display: flex; flex-wrap: wrap; gap: .2em 1em; }
  .legend i { display: inline-block; width: .8em; height: .8em; margin-right: .3em; vertical-align: -1px; }
  #window button { font: inherit; border: 1px solid #d1d5db; background: #fff; border-radius: 3px; cursor: pointer; }
  #window button[aria-pressed="true"] { background: #111827; color: #fff; }
</style>
</head>
<body>
<header>
  <h1>DKV</h1><span id="node-label"></span>
  <span id="conn" data-state="loading">loading</span>
  <span id="updated"></span>
</header>
<div id="problem"></div>
<main>
  <section id="members-section">
    <h2>Members<small id="members-count"></small></h2>
    <table id="members"><thead><tr><th>id</th><th>address</th><th>state</th><th>leader of</th><th>health</th></tr></thead>
    <tbody id="members-body"></tbody></table>
  </section>
  <section id="alarms-section"><h2>Alarms</h2><ul id="alarms"></ul></section>
  <section id="groups-section" class="wide">
    <h2>Groups<small>L leader, V voter, l learner, &rarr; moving in; the leader's cell shows term, commit index and lag</small></h2>
    <table id="groups"><thead id="groups-head"></thead><tbody id="groups-body"></tbody></table>
    <p id="groups-empty">no groups yet</p>
  </section>
  <section class="wide" id="window-section">
    <span id="window">Last <button data-window-min="1" aria-pressed="false">1 min</button>
    <button data-window-min="5" aria-pressed="true">5 min</button>
    <button data-window-min="10" aria-pressed="false">10 min</button></span>
    <small>(this node's view: its requests, the groups it hosts)</small>
  </section>
  <section id="throughput-section"><h2>Throughput</h2>
    <svg id="throughput-plot" class="plot" viewBox="0 0 600 170" role="img" aria-label="throughput"></svg>
    <div id="throughput-plot-legend" class="legend"></div></section>
  <section id="latency-section"><h2>Latency</h2>
    <svg id="latency-plot" class="plot" viewBox="0 0 600 170" role="img" aria-label="latency"></svg>
    <div id="latency-plot-legend" class="legend"></div></section>
  <section id="leader-changes-section"><h2>Leader changes</h2>
    <svg id="leader-changes-plot" class="plot" viewBox="0 0 600 170" role="img" aria-label="leader changes"></svg>
    <div id="leader-changes-plot-legend" class="legend"></div></section>
</main>
<script>${DASHBOARD_SCRIPT}</script>
</body>
</html>
`;
