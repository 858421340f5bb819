/**
 * NodeMetrics (src/node/metrics.ts), every scrape run through a strict Prometheus text-format
 * parser written here (HELP/TYPE lines, sample syntax and escapes, families contiguous and
 * declared before their samples, no duplicate series, counters non-negative, histogram
 * buckets cumulative with +Inf = _count and a _sum):
 * - the parser itself refuses broken texts;
 * - a fake source and fake observer calls: every per-group gauge and counter, request, commit,
 *   fsync and snapshot metrics, peer links, removed groups vanishing, the label-set bound,
 *   one source read per scrape, separate registries;
 * - a real 1-node DkvNode in this process under DkvClient load: request counters, the commit
 *   histogram, proposals and the group's commit index move between two scrapes;
 * - the same through the admin HTTP server (serveAdmin), with its content type.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DkvClient } from '../../src/client/client.js';
import { isDkvError } from '../../src/errors.js';
import { checkNodeConfig } from '../../src/node/config.js';
import { serveAdmin } from '../../src/node/main.js';
import {
  type MetricsSource,
  type NodeHealth,
  NodeMetrics,
  OTHER_LABEL,
  REQUEST_LABEL_SETS_MAX,
} from '../../src/node/metrics.js';
import { DkvNode } from '../../src/node/node.js';
import type { CommitOutcome, GroupStats } from '../../src/node/observer.js';
import { combineObservers } from '../../src/node/observer-fanout.js';

// ---------------------------------------------------------------- a strict text-format parser

type Labels = Record<string, string>;

interface Sample {
  readonly name: string;
  readonly labels: Labels;
  readonly value: number;
}

interface Family {
  readonly name: string;
  type: string | undefined;
  help: string | undefined;
  readonly samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/** parseValue reads a sample value as Go's ParseFloat does (the format's rule): NaN and Inf in any case. */
function parseValue(s: string, where: string): number {
  const lower = s.toLowerCase();
  if (lower === '+inf' || lower === 'inf' || lower === '+infinity' || lower === 'infinity')
    return Number.POSITIVE_INFINITY;
  if (lower === '-inf' || lower === '-infinity') return Number.NEGATIVE_INFINITY;
  if (lower === 'nan') return Number.NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s))
    throw new Error(`${where}: bad value ${JSON.stringify(s)}`);
  return Number(s);
}

/** parseLabels reads `{a="x",b="y"}` from line[i] (at '{'); returns the labels and the index after '}'. */
function parseLabels(line: string, start: number, where: string): [Labels, number] {
  const labels: Labels = {};
  let i = start + 1;
  if (line[i] === '}') return [labels, i + 1];
  for (;;) {
    const m = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i));
    if (!m) throw new Error(`${where}: bad label name at ${i}`);
    const name = m[0];
    i += name.length;
    if (line[i] !== '=' || line[i + 1] !== '"') throw new Error(`${where}: expected =" after ${name}`);
    i += 2;
    let value = '';
    for (;;) {
      const c = line[i];
      if (c === undefined) throw new Error(`${where}: unterminated label value`);
      if (c === '"') break;
      if (c === '\\') {
        const e = line[i + 1];
        if (e === '\\') value += '\\';
        else if (e === '"') value += '"';
        else if (e === 'n') value += '\n';
        else throw new Error(`${where}: bad escape \\${e ?? ''}`);
        i += 2;
        continue;
      }
      value += c;
      i++;
    }
    i++;
    if (Object.hasOwn(labels, name)) throw new Error(`${where}: label ${name} twice`);
    labels[name] = value;
    if (line[i] === '}') return [labels, i + 1];
    if (line[i] !== ',') throw new Error(`${where}: expected , or } at ${i}`);
    i++;
  }
}

/** familyOf is the family a sample name belongs to, given the family being read. */
function belongs(sample: string, fam: Family): boolean {
  if (sample === fam.name) return fam.type !== 'histogram';
  if (fam.type === 'histogram')
    return [`${fam.name}_bucket`, `${fam.name}_sum`, `${fam.name}_count`].includes(sample);
  if (fam.type === 'summary') return [`${fam.name}_sum`, `${fam.name}_count`].includes(sample);
  return false;
}

function seriesKey(name: string, labels: Labels): string {
  return `${name}{${Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`)
    .join(',')}}`;
}

function checkHistogram(fam: Family): void {
  const groups = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of fam.samples) {
    const { le, ...rest } = s.labels;
    const key = seriesKey('', rest);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { buckets: [] }));
    if (s.name.endsWith('_bucket')) {
      if (le === undefined) throw new Error(`${fam.name}: a bucket without le`);
      g.buckets.push([parseValue(le, `${fam.name} le`), s.value]);
    } else {
      if (le !== undefined) throw new Error(`${fam.name}: le on ${s.name}`);
      if (s.name.endsWith('_sum')) g.sum = s.value;
      else g.count = s.value;
    }
  }
  for (const [key, g] of groups) {
    const where = `${fam.name}${key}`;
    if (g.sum === undefined || g.count === undefined) throw new Error(`${where}: _sum or _count missing`);
    if (!Number.isInteger(g.count) || g.count < 0) throw new Error(`${where}: bad _count ${g.count}`);
    const sorted = [...g.buckets].sort((a, b) => a[0] - b[0]);
    if (sorted.length === 0 || sorted.at(-1)![0] !== Number.POSITIVE_INFINITY)
      throw new Error(`${where}: no +Inf bucket`);
    let prev = 0;
    for (const [le, n] of sorted) {
      if (n < prev) throw new Error(`${where}: bucket le=${le} (${n}) below the previous (${prev})`);
      prev = n;
    }
    if (sorted.at(-1)![1] !== g.count)
      throw new Error(`${where}: +Inf bucket ${sorted.at(-1)![1]} != _count ${g.count}`);
    if (g.count === 0 && g.sum !== 0) throw new Error(`${where}: _sum ${g.sum} with no observation`);
  }
}

/** parseProm parses the Prometheus text format strictly, throwing on anything off. */
function parseProm(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('the text does not end with a newline');
  const families = new Map<string, Family>();
  const series = new Set<string>();
  let current: Family | undefined;
  const family = (name: string, where: string): Family => {
    if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name ${name}`);
    let f = families.get(name);
    if (f === undefined) {
      f = { name, type: undefined, help: undefined, samples: [] };
      families.set(name, f);
    } else if (f !== current || f.samples.length > 0)
      throw new Error(`${where}: family ${name} declared again`);
    current = f;
    return f;
  };
  const lines = text.slice(0, -1).split('\n');
  lines.forEach((line, n) => {
    const where = `line ${n + 1}`;
    if (line === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) return; // a plain comment
      const [, kw, name, rest] = m as unknown as [string, string, string, string];
      const f = family(name, where);
      if (kw === 'HELP') {
        if (f.help !== undefined) throw new Error(`${where}: second HELP for ${name}`);
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ''))) throw new Error(`${where}: bad escape in HELP`);
        f.help = rest;
      } else {
        if (f.type !== undefined) throw new Error(`${where}: second TYPE for ${name}`);
        if (!TYPES.has(rest)) throw new Error(`${where}: unknown type ${rest}`);
        f.type = rest;
      }
      return;
    }
    const m = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!m) throw new Error(`${where}: bad sample line ${JSON.stringify(line)}`);
    const name = m[0];
    let i = name.length;
    let labels: Labels = {};
    if (line[i] === '{') [labels, i] = parseLabels(line, i, where);
    for (const k of Object.keys(labels)) if (!LABEL_NAME.test(k)) throw new Error(`${where}: label ${k}`);
    if (line[i] !== ' ') throw new Error(`${where}: expected a space before the value`);
    const parts = line.slice(i + 1).split(' ');
    if (parts.length > 2 || (parts.length === 2 && !/^-?\d+$/.test(parts[1]!)))
      throw new Error(`${where}: trailing garbage`);
    const value = parseValue(parts[0]!, where);
    if (current === undefined || current.type === undefined || !belongs(name, current))
      throw new Error(
        `${where}: sample ${name} outside its family (declare TYPE first, keep families together)`,
      );
    if (current.type === 'counter' && !(value >= 0)) throw new Error(`${where}: counter ${name} = ${value}`);
    if ('le' in labels && !name.endsWith('_bucket')) throw new Error(`${where}: le outside a bucket`);
    const key = seriesKey(name, labels);
    if (series.has(key)) throw new Error(`${where}: duplicate series ${key}`);
    series.add(key);
    current.samples.push({ name, labels, value });
  });
  for (const f of families.values()) {
    if (f.type === undefined) throw new Error(`family ${f.name} has no TYPE`);
    if (f.type === 'histogram') checkHistogram(f);
  }
  return families;
}

/** get is the value of one series (undefined when absent); labels must match exactly. */
function get(fams: Map<string, Family>, name: string, labels: Labels = {}): number | undefined {
  const base = name.replace(/_(bucket|sum|count)$/, '');
  for (const fam of [fams.get(name), fams.get(base)]) {
    const s = fam?.samples.find((x) => x.name === name && seriesKey('', x.labels) === seriesKey('', labels));
    if (s) return s.value;
  }
  return undefined;
}

/** sum adds the values of every series of `name` whose labels include `match`. */
function sum(fams: Map<string, Family>, name: string, match: Labels = {}): number {
  const base = name.replace(/_(bucket|sum|count)$/, '');
  const fam = fams.get(name) ?? fams.get(base);
  let total = 0;
  for (const s of fam?.samples ?? [])
    if (s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)) total += s.value;
  return total;
}

async function scrape(m: NodeMetrics): Promise<Map<string, Family>> {
  return parseProm(await m.text());
}

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('the test parser', () => {
  const ok =
    '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 3\n\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3.5\nh_count 2\n';

  it('accepts a well-formed text', () => {
    const f = parseProm(ok);
    expect(get(f, 'a_total', { x: '1' })).toBe(3);
    expect(get(f, 'h_count')).toBe(2);
  });

  it.each([
    ['no trailing newline', ok.slice(0, -1)],
    ['a sample before its TYPE', 'x 1\n'],
    ['a duplicate series', '# TYPE a gauge\na{x="1"} 1\na{x="1"} 2\n'],
    ['a bad escape', '# TYPE a gauge\na{x="\\q"} 1\n'],
    ['an unterminated label value', '# TYPE a gauge\na{x="1} 1\n'],
    ['a bad value', '# TYPE a gauge\na 1x\n'],
    ['a negative counter', '# TYPE a counter\na -1\n'],
    ['interleaved families', '# TYPE a gauge\n# TYPE b gauge\na 1\n'],
    ['a family declared twice', '# TYPE a gauge\na 1\n# TYPE a gauge\na{x="2"} 1\n'],
    ['+Inf below _count', '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 2\n'],
    ['no +Inf bucket', '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n'],
    [
      'buckets not cumulative',
      '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="2"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 2\n',
    ],
    ['a histogram without _sum', '# TYPE h histogram\nh_bucket{le="+Inf"} 0\nh_count 0\n'],
    ['an unknown type', '# TYPE a meter\na 1\n'],
    ['a bad metric name', '# TYPE 1a gauge\n'],
  ])('refuses %s', (_why, text) => {
    expect(() => parseProm(text)).toThrow();
  });
});

// ---------------------------------------------------------------- a fake node

function group(id: number, store: string, extra: Partial<GroupStats> = {}): GroupStats {
  return {
    id,
    store,
    isLeader: false,
    leader: 0,
    term: 1,
    commitIndex: 0,
    appliedIndex: 0,
    revision: 0,
    pending: 0,
    voters: [1, 2, 3],
    learners: [],
    watches: 0,
    leases: 0,
    locks: 0,
    snapshotBytes: 0,
    ...extra,
  };
}

class FakeNode implements MetricsSource {
  readonly id = 7;
  groups: GroupStats[] = [];
  peers: { peer: number; up: boolean }[] = [];
  reads = 0;
  healthNow: NodeHealth = {
    live: true,
    ready: false,
    leaderOf: 1,
    noLeader: [],
    noQuorum: [2],
    peersUp: 1,
    peersTotal: 2,
    epoch: 9,
  };
  groupStats(): GroupStats[] {
    this.reads++;
    return this.groups;
  }
  health(): NodeHealth {
    return this.healthNow;
  }
  peerStates(): { peer: number; up: boolean }[] {
    return this.peers;
  }
}

describe('NodeMetrics with a fake node', () => {
  it('exports every per-group gauge, node gauge and peer link from the source', async () => {
    const node = new FakeNode();
    node.groups = [
      group(0, '_meta', { isLeader: true, leader: 7, term: 3, commitIndex: 40, appliedIndex: 40 }),
      group(5, 'orders', {
        leader: 2,
        term: 4,
        commitIndex: 100,
        appliedIndex: 93,
        revision: 88,
        pending: 6,
        voters: [2, 7],
        learners: [9],
        watches: 3,
        leases: 2,
        locks: 1,
        snapshotBytes: 4096,
      }),
    ];
    node.peers = [
      { peer: 2, up: true },
      { peer: 3, up: false },
    ];
    const m = new NodeMetrics({ processMetrics: false }).attach(node);
    const f = await scrape(m);
    const g5 = { group: '5', store: 'orders' };
    expect(get(f, 'dkv_group_term', g5)).toBe(4);
    expect(get(f, 'dkv_group_commit_index', g5)).toBe(100);
    expect(get(f, 'dkv_group_applied_index', g5)).toBe(93);
    expect(get(f, 'dkv_group_apply_lag_entries', g5)).toBe(7);
    expect(get(f, 'dkv_group_is_leader', g5)).toBe(0);
    expect(get(f, 'dkv_group_is_leader', { group: '0', store: '_meta' })).toBe(1);
    expect(get(f, 'dkv_group_leader', g5)).toBe(2);
    expect(get(f, 'dkv_group_revision', g5)).toBe(88);
    expect(get(f, 'dkv_group_pending_requests', g5)).toBe(6);
    expect(get(f, 'dkv_group_voters', g5)).toBe(2);
    expect(get(f, 'dkv_group_learners', g5)).toBe(1);
    expect(get(f, 'dkv_group_watches', g5)).toBe(3);
    expect(get(f, 'dkv_group_leases', g5)).toBe(2);
    expect(get(f, 'dkv_group_locks', g5)).toBe(1);
    expect(get(f, 'dkv_group_snapshot_bytes', g5)).toBe(4096);
    expect(get(f, 'dkv_peer_up', { peer: '2' })).toBe(1);
    expect(get(f, 'dkv_peer_up', { peer: '3' })).toBe(0);
    expect(get(f, 'dkv_peers_up')).toBe(1);
    expect(get(f, 'dkv_peers_total')).toBe(2);
    expect(get(f, 'dkv_node_ready')).toBe(0);
    expect(get(f, 'dkv_node_live')).toBe(1);
    expect(get(f, 'dkv_node_groups_led')).toBe(1);
    expect(get(f, 'dkv_node_groups_no_quorum')).toBe(1);
    expect(get(f, 'dkv_node_groups_no_leader')).toBe(0);
    expect(get(f, 'dkv_node_metadata_epoch')).toBe(9);
    expect(get(f, 'dkv_node_info', { node: '7' })).toBe(1);
    // A source without security stats exports the counters at 0.
    expect(get(f, 'dkv_auth_failures_total')).toBe(0);
  });

  it('exports the security and shedding counters a node keeps', async () => {
    const node = Object.assign(new FakeNode(), {
      securityStats: { tlsHandshakeFailures: 4, authFailures: 3, permissionDenied: 2, quotaExceeded: 1 },
      shedCount: 17,
    });
    const f = await scrape(new NodeMetrics({ processMetrics: false }).attach(node));
    expect(get(f, 'dkv_tls_handshake_failures_total')).toBe(4);
    expect(get(f, 'dkv_auth_failures_total')).toBe(3);
    expect(get(f, 'dkv_permission_denied_total')).toBe(2);
    expect(get(f, 'dkv_quota_exceeded_total')).toBe(1);
    expect(get(f, 'dkv_shed_total')).toBe(17);
    expect(f.get('dkv_group_term')?.type).toBe('gauge');
    expect(f.get('dkv_group_term')?.help).toBeTruthy();
    // No process metrics when turned off.
    expect(f.has('process_cpu_user_seconds_total')).toBe(false);
  });

  it('reads the source once per scrape, and drops groups and peers that went away', async () => {
    const node = new FakeNode();
    node.groups = [group(1, 'a'), group(2, 'b')];
    node.peers = [{ peer: 2, up: true }];
    const m = new NodeMetrics({ processMetrics: false }).attach(node);
    for (let i = 0; i < 5; i++) m.proposal(2);
    m.leaderChange(2, 3, false);
    let f = await scrape(m);
    expect(node.reads).toBe(1);
    expect(get(f, 'dkv_group_term', { group: '2', store: 'b' })).toBe(1);
    expect(get(f, 'dkv_group_proposals_total', { group: '2', store: 'b' })).toBe(5);
    expect(get(f, 'dkv_group_proposals_total', { group: '1', store: 'a' })).toBe(0);
    await nextTurn();
    node.groups = [group(1, 'a')];
    node.peers = [];
    f = await scrape(m);
    expect(node.reads).toBe(2);
    const groupsSeen = new Set(
      [...f.values()].flatMap((fam) => fam.samples.map((s) => s.labels.group)).filter((g) => g !== undefined),
    );
    expect([...groupsSeen]).toEqual(['1']);
    expect(get(f, 'dkv_peer_up', { peer: '2' })).toBeUndefined();
    expect(sum(f, 'dkv_group_proposals_total')).toBe(0);
  });

  it('counts requests by op and store, their latency, and errors by code', async () => {
    const m = new NodeMetrics({ processMetrics: false });
    const req = (op: string, kind: string, store: string, ms: number, code?: string): void =>
      m.request({ op, kind, store, ms, code, trace: undefined });
    req('cmd', 'put', 'default', 2);
    req('cmd', 'put', 'default', 30);
    req('read', 'get', 'default', 0.4, 'NOT_LEADER');
    req('cmd', 'lock.acquire', 'jobs', 1200);
    req('status', '', '', 1);
    const f = await scrape(m);
    expect(get(f, 'dkv_requests_total', { op: 'put', store: 'default' })).toBe(2);
    expect(get(f, 'dkv_requests_total', { op: 'get', store: 'default' })).toBe(1);
    expect(get(f, 'dkv_requests_total', { op: 'lock.acquire', store: 'jobs' })).toBe(1);
    expect(get(f, 'dkv_requests_total', { op: 'status', store: '' })).toBe(1);
    expect(get(f, 'dkv_request_errors_total', { op: 'get', store: 'default', code: 'NOT_LEADER' })).toBe(1);
    expect(sum(f, 'dkv_request_errors_total')).toBe(1);
    const put = { op: 'put', store: 'default' };
    expect(get(f, 'dkv_request_duration_seconds_count', put)).toBe(2);
    expect(get(f, 'dkv_request_duration_seconds_sum', put)).toBeCloseTo(0.032, 9);
    expect(get(f, 'dkv_request_duration_seconds_bucket', { ...put, le: '0.0025' })).toBe(1);
    expect(get(f, 'dkv_request_duration_seconds_bucket', { ...put, le: '0.05' })).toBe(2);
    expect(
      get(f, 'dkv_request_duration_seconds_bucket', { op: 'lock.acquire', store: 'jobs', le: '1' }),
    ).toBe(0);
    expect(f.get('dkv_request_duration_seconds')?.type).toBe('histogram');
  });

  it(`keeps at most ${REQUEST_LABEL_SETS_MAX} request label sets; the rest count as "${OTHER_LABEL}"`, async () => {
    const m = new NodeMetrics({ processMetrics: false });
    const n = REQUEST_LABEL_SETS_MAX + 100;
    for (let i = 0; i < n; i++)
      m.request({
        op: 'cmd',
        kind: `bogus${i}`,
        store: 'default',
        ms: 1,
        code: 'INVALID_ARGUMENT',
        trace: undefined,
      });
    // Label sets already in use keep counting under their own names.
    m.request({ op: 'cmd', kind: 'bogus0', store: 'default', ms: 1, code: undefined, trace: undefined });
    const f = await scrape(m);
    const ops = new Set(f.get('dkv_requests_total')!.samples.map((s) => s.labels.op));
    expect(ops.size).toBe(REQUEST_LABEL_SETS_MAX + 1);
    expect(get(f, 'dkv_requests_total', { op: OTHER_LABEL, store: OTHER_LABEL })).toBe(100);
    expect(get(f, 'dkv_requests_total', { op: 'bogus0', store: 'default' })).toBe(2);
    expect(sum(f, 'dkv_requests_total')).toBe(n + 1);
    expect(sum(f, 'dkv_request_errors_total')).toBe(n);
  });

  it('records group commits, synced commits, fsync times, leader changes and snapshots', async () => {
    const node = new FakeNode();
    node.groups = [group(1, 'default')];
    const m = new NodeMetrics({ processMetrics: false }).attach(node);
    const commit = (c: CommitOutcome): void => m.commit(c);
    commit({ ms: 2, groups: 2, entries: 10, synced: true, syncMs: 1.5 });
    commit({ ms: 0.2, groups: 1, entries: 0, synced: false, syncMs: 0.1 });
    commit({ ms: 4, groups: 1, entries: 3, synced: true }); // a node that does not pass syncMs
    // Leader changes as etcd counts them: each move to a new, known leader.
    m.leaderChange(1, 2, false);
    m.leaderChange(1, 0, false); // lost
    m.leaderChange(1, 2, false); // 2 again, after an election
    m.leaderChange(1, 2, false); // no change
    m.leaderChange(1, 7, true);
    m.snapshot(1, 'created', 5000, 12);
    m.snapshot(1, 'installed', 9000, 0); // an install's duration is not known
    const f = await scrape(m);
    expect(get(f, 'dkv_commits_total')).toBe(3);
    expect(get(f, 'dkv_commits_synced_total')).toBe(2);
    expect(get(f, 'dkv_commit_entries_total')).toBe(13);
    expect(get(f, 'dkv_commit_duration_seconds_count')).toBe(3);
    expect(get(f, 'dkv_commit_duration_seconds_sum')).toBeCloseTo(0.0062, 9);
    expect(get(f, 'dkv_fsync_duration_seconds_count')).toBe(1);
    expect(get(f, 'dkv_fsync_duration_seconds_sum')).toBeCloseTo(0.0015, 9);
    expect(get(f, 'dkv_group_leader_changes_total', { group: '1', store: 'default' })).toBe(3);
    expect(get(f, 'dkv_snapshots_total', { kind: 'created' })).toBe(1);
    expect(get(f, 'dkv_snapshots_total', { kind: 'installed' })).toBe(1);
    expect(get(f, 'dkv_snapshot_size_bytes_sum', { kind: 'installed' })).toBe(9000);
    expect(get(f, 'dkv_snapshot_duration_seconds_count', { kind: 'created' })).toBe(1);
    expect(get(f, 'dkv_snapshot_duration_seconds_count', { kind: 'installed' })).toBeUndefined();
  });

  it('scrapes before attach, and keeps two nodes in one process apart', async () => {
    const a = new NodeMetrics();
    const b = new NodeMetrics();
    a.request({ op: 'cmd', kind: 'put', store: 's', ms: 1, code: undefined, trace: undefined });
    const fa = await scrape(a);
    const fb = await scrape(b);
    expect(get(fa, 'dkv_requests_total', { op: 'put', store: 's' })).toBe(1);
    expect(get(fb, 'dkv_requests_total', { op: 'put', store: 's' })).toBeUndefined();
    expect(fa.get('dkv_group_term')?.samples).toEqual([]);
    expect(get(fa, 'dkv_node_live')).toBe(0); // unlabelled gauges always show; 0 until attached
    // The process metrics, event-loop lag included.
    expect(get(fa, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(fa.has('nodejs_eventloop_lag_p99_seconds')).toBe(true);
    expect(a.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  });
});

// ---------------------------------------------------------------- a real node

interface Running {
  node: DkvNode;
  metrics: NodeMetrics;
  client: DkvClient;
  dir: string;
  admin: Server | undefined;
  /** Whether the node passed CommitOutcome.syncMs (node.ts copies CommitStats.syncMs). */
  sawSyncMs: boolean;
}

const running: Running[] = [];

afterEach(async () => {
  for (const r of running.splice(0)) {
    await r.client.close().catch(() => undefined);
    await r.node.stop().catch(() => undefined);
    if (r.admin) {
      const admin = r.admin;
      await new Promise<void>((resolve) => {
        admin.close(() => resolve());
        admin.closeAllConnections();
      });
    }
    rmSync(r.dir, { recursive: true, force: true });
  }
});

async function startNode(): Promise<Running> {
  const dir = mkdtempSync(join(tmpdir(), 'dkv-metrics-'));
  const metrics = new NodeMetrics();
  const r = { metrics, dir, admin: undefined, sawSyncMs: false } as Running;
  const cfg = checkNodeConfig({
    id: 1,
    dataDir: join(dir, 'n1'),
    clientPort: 0,
    peerPort: 0,
    peers: [],
    stores: [{ name: 'default', partitions: 2 }],
    tickMs: 10,
    snapshotEntries: 20,
    snapshotTailEntries: 5,
  });
  try {
    r.node = await DkvNode.start(cfg, {
      observer: combineObservers(metrics, {
        commit: (c) => {
          if (c.syncMs !== undefined) r.sawSyncMs = true;
        },
      }),
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  running.push(r);
  metrics.attach(r.node);
  const deadline = Date.now() + 10_000;
  while (!r.node.groupStats().every((g) => g.isLeader)) {
    if (Date.now() > deadline) throw new Error('no leader within 10 s');
    await new Promise((res) => setTimeout(res, 20));
  }
  r.client = await DkvClient.connect({ servers: [`127.0.0.1:${r.node.clientAddress().port}`] });
  return r;
}

async function load(client: DkvClient, n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i++) {
    await client.put(`${tag}-${i}`, { i });
    expect((await client.get(`${tag}-${i}`))?.value).toEqual({ i });
  }
}

/** moved checks that the load between two scrapes `a` and `b` (n puts and n gets) shows. */
function checkMoved(a: Map<string, Family>, b: Map<string, Family>, n: number): void {
  const d = (name: string, match: Labels = {}): number => sum(b, name, match) - sum(a, name, match);
  const def = { store: 'default' };
  expect(d('dkv_requests_total', { op: 'put', ...def })).toBeGreaterThanOrEqual(n);
  expect(d('dkv_requests_total', { op: 'get', ...def })).toBeGreaterThanOrEqual(n);
  expect(d('dkv_request_duration_seconds_count', { op: 'put', ...def })).toBeGreaterThanOrEqual(n);
  expect(d('dkv_commit_duration_seconds_count')).toBeGreaterThan(0);
  expect(d('dkv_commits_synced_total')).toBeGreaterThan(0);
  expect(d('dkv_commit_entries_total')).toBeGreaterThanOrEqual(n);
  expect(d('dkv_group_proposals_total', def)).toBeGreaterThanOrEqual(n);
  expect(d('dkv_group_commit_index', def)).toBeGreaterThanOrEqual(n);
  expect(d('dkv_group_applied_index', def)).toBeGreaterThanOrEqual(n);
}

describe('NodeMetrics on a real node', () => {
  it('moves when load is applied: requests, commits, proposals, commit indexes, snapshots', async () => {
    const r = await startNode();
    const a = await scrape(r.metrics);
    const groups = r.node.groupStats();
    for (const g of groups) {
      const labels = { group: String(g.id), store: g.store };
      expect(get(a, 'dkv_group_is_leader', labels)).toBe(1);
      expect(get(a, 'dkv_group_leader_changes_total', labels)).toBeGreaterThanOrEqual(1);
      expect(get(a, 'dkv_group_voters', labels)).toBe(1);
    }
    expect(get(a, 'dkv_node_ready')).toBe(1);
    const n = 60;
    await load(r.client, n, 'k');
    await expect(r.client.put('k-0', 1, { ifVersion: 99 })).rejects.toSatisfy((e) =>
      isDkvError(e, 'VERSION_MISMATCH'),
    );
    // A snapshot every 20 entries: wait for the first (written in the background).
    const deadline = Date.now() + 10_000;
    let b = await scrape(r.metrics);
    while (sum(b, 'dkv_snapshots_total', { kind: 'created' }) === 0 && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 50));
      b = await scrape(r.metrics);
    }
    checkMoved(a, b, n);
    expect(
      get(b, 'dkv_request_errors_total', { op: 'put', store: 'default', code: 'VERSION_MISMATCH' }),
    ).toBe(1);
    expect(sum(b, 'dkv_snapshots_total', { kind: 'created' })).toBeGreaterThan(0);
    expect(sum(b, 'dkv_snapshot_size_bytes_count', { kind: 'created' })).toBeGreaterThan(0);
    expect(sum(b, 'dkv_group_snapshot_bytes', { store: 'default' })).toBeGreaterThan(0);
    // The fsync histogram fills once node.ts passes CommitStats.syncMs on to the observer.
    if (r.sawSyncMs) expect(sum(b, 'dkv_fsync_duration_seconds_count')).toBeGreaterThan(0);
    expect(sum(b, 'dkv_fsync_duration_seconds_count')).toBeLessThanOrEqual(
      sum(b, 'dkv_commits_synced_total'),
    );
    for (const g of r.node.groupStats()) {
      const labels = { group: String(g.id), store: g.store };
      expect(get(b, 'dkv_group_commit_index', labels)).toBeLessThanOrEqual(g.commitIndex);
      expect(get(b, 'dkv_group_term', labels)).toBe(g.term);
    }
    expect(get(b, 'nodejs_eventloop_lag_p99_seconds')).toBeGreaterThanOrEqual(0);
  });

  it('serves the same on the admin port over HTTP, with the Prometheus content type', async () => {
    const r = await startNode();
    r.admin = await serveAdmin(r.node, '127.0.0.1', 0, { metrics: r.metrics });
    const port = (r.admin.address() as AddressInfo).port;
    const fetchMetrics = async (): Promise<Map<string, Family>> => {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe(r.metrics.contentType);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      return parseProm(await res.text());
    };
    const a = await fetchMetrics();
    const n = 30;
    await load(r.client, n, 'h');
    await nextTurn();
    const b = await fetchMetrics();
    checkMoved(a, b, n);
    const head = await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
  });

  it('serves gauges from an admin server given no NodeMetrics', async () => {
    const r = await startNode();
    r.admin = await serveAdmin(r.node, '127.0.0.1', 0);
    const port = (r.admin.address() as AddressInfo).port;
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(res.status).toBe(200);
    const f = parseProm(await res.text());
    for (const g of r.node.groupStats())
      expect(get(f, 'dkv_group_is_leader', { group: String(g.id), store: g.store })).toBe(1);
  });
});
