/**
 * The dashboard (src/node/dashboard.ts):
 * - StatsHistory without a browser or a node, on a fake clock: the ring's bound, per-second
 *   rates, latency percentiles, the bound on request kinds, leader changes, commit rates;
 * - combineObservers' fan-out;
 * - the routes on a bare HTTP server with a fake node;
 * - the page in headless Chromium against a real 3-node cluster under load: members, the
 *   group grid against the status JSON, a throughput plot that moved, no console error, a
 *   killed member shown unhealthy, and a killed serving node shown "unreachable" with the
 *   last data kept. Skipped, saying so, when /usr/bin/chromium is missing.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Script } from 'node:vm';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  freeBasePort,
  LocalCluster,
  type NodeSpec,
  planNodes,
  writeNodeConfigs,
} from '../../src/admin/dev.js';
import { DkvClient } from '../../src/client/client.js';
import {
  DASHBOARD_HTML,
  type DashboardSource,
  type HistoryJson,
  KINDS_MAX,
  OTHER_KIND,
  StatsHistory,
  serveDashboard,
} from '../../src/node/dashboard.js';
import type { NodeObserver, RequestOutcome } from '../../src/node/observer.js';
import { combineObservers } from '../../src/node/observer-fanout.js';
import type { ClusterStatus } from '../../src/transport/protocol.js';

const CHROMIUM = '/usr/bin/chromium';

function req(kind: string, ms: number, code?: string): RequestOutcome {
  return { op: kind === '' ? 'status' : 'cmd', kind, store: 'default', ms, code, trace: undefined };
}

/** FakeClock is a wall clock the test moves. */
class FakeClock {
  t = 1_700_000_000_000;
  readonly now = (): number => this.t;
}

describe('StatsHistory', () => {
  it('keeps at most capacity samples, oldest first, whatever the load', () => {
    const clock = new FakeClock();
    const h = new StatsHistory({ capacity: 5, nowMs: clock.now });
    for (let i = 0; i < 1000; i++) {
      for (let k = 0; k < 100; k++) h.request(req(`kind${k % 7}`, k));
      clock.t += 1000;
      h.sample();
    }
    const s = h.samples();
    expect(s).toHaveLength(5);
    expect(s.map((x) => x.t)).toEqual(
      [995, 996, 997, 998, 999].map((i) => 1_700_000_000_000 + (i + 1) * 1000),
    );
    expect(h.samples(s[2]!.t).map((x) => x.t)).toEqual([s[3]!.t, s[4]!.t]);
    expect(h.toJson(7).samples).toHaveLength(5);
    expect(h.toJson(7).nodeId).toBe(7);
    // 10 minutes of a busy node stays small.
    const big = new StatsHistory({ nowMs: clock.now });
    for (let i = 0; i < 700; i++) {
      for (let k = 0; k < 200; k++)
        big.request(req(`kind${k % 30}`, k / 10, k % 50 === 0 ? 'TIMEOUT' : undefined));
      big.leaderChange(1, 2, false);
      clock.t += 1000;
      big.sample();
    }
    expect(big.samples()).toHaveLength(600);
    expect(JSON.stringify(big.toJson(1)).length).toBeLessThan(600 * 1000);
  });

  it('turns counts into per-second rates over the real interval', () => {
    const clock = new FakeClock();
    const h = new StatsHistory({ nowMs: clock.now });
    for (let i = 0; i < 20; i++) h.request(req('put', 2));
    for (let i = 0; i < 10; i++) h.request(req('get', 1, i < 4 ? 'NOT_FOUND' : undefined));
    h.request(req('', 1)); // a non-cmd op is counted by its op name
    clock.t += 2000; // a late tick: the rates are over 2 s, not 1
    const s = h.sample();
    expect(s.ms).toBe(2000);
    expect(s.ops).toEqual({ put: 10, get: 5, status: 0.5 });
    expect(s.opsTotal).toBe(15.5);
    expect(s.errors).toBe(2);
    clock.t += 1000;
    const idle = h.sample();
    expect(idle).toMatchObject({
      ops: {},
      opsTotal: 0,
      errors: 0,
      p50Ms: null,
      p99Ms: null,
      leaderChanges: 0,
    });
  });

  it('computes p50 and p99 within one histogram bucket', () => {
    const clock = new FakeClock();
    const h = new StatsHistory({ nowMs: clock.now });
    const lat = Array.from({ length: 1000 }, (_, i) => (i + 1) / 10); // 0.1 .. 100 ms
    for (const ms of lat.slice().reverse()) h.request(req('put', ms));
    clock.t += 1000;
    const s = h.sample();
    const exact = (q: number): number => lat[Math.ceil(q * lat.length) - 1]!;
    expect(s.p50Ms! / exact(0.5)).toBeGreaterThanOrEqual(1);
    expect(s.p50Ms! / exact(0.5)).toBeLessThan(1.2);
    expect(s.p99Ms! / exact(0.99)).toBeGreaterThanOrEqual(1);
    expect(s.p99Ms! / exact(0.99)).toBeLessThan(1.2);
    // One value: both percentiles are exactly it (clamped to the seen min and max).
    h.request(req('put', 7.3));
    clock.t += 1000;
    expect(h.sample()).toMatchObject({ p50Ms: 7.3, p99Ms: 7.3 });
    // Outliers: p99 sees the slow tail, p50 does not.
    for (let i = 0; i < 98; i++) h.request(req('put', 1));
    h.request(req('put', 500));
    h.request(req('put', 600_000)); // past the last bucket
    clock.t += 1000;
    const t = h.sample();
    expect(t.p50Ms!).toBeGreaterThanOrEqual(1);
    expect(t.p50Ms!).toBeLessThan(1.2);
    expect(t.p99Ms!).toBeGreaterThanOrEqual(500);
    expect(t.p99Ms!).toBeLessThan(600);
  });

  it('bounds the kinds of one interval, counting the rest as other', () => {
    const clock = new FakeClock();
    const h = new StatsHistory({ nowMs: clock.now });
    for (let k = 0; k < 100; k++) h.request(req(`k${k}-${'x'.repeat(100)}`, 1));
    clock.t += 1000;
    const s = h.sample();
    const keys = Object.keys(s.ops);
    expect(keys).toHaveLength(KINDS_MAX + 1);
    expect(s.ops[OTHER_KIND]).toBe(100 - KINDS_MAX);
    expect(keys.every((k) => k.length <= 40)).toBe(true);
    expect(Object.values(s.ops).reduce((a, b) => a + b, 0)).toBe(s.opsTotal);
  });

  it('counts leader changes and commit rates per group', () => {
    const clock = new FakeClock();
    const h = new StatsHistory({ nowMs: clock.now });
    let commits = [
      { id: 0, commitIndex: 10 },
      { id: 1, commitIndex: 100 },
    ];
    vi.useFakeTimers();
    try {
      h.start(() => commits);
      h.leaderChange(1, 0, false); // leader lost: not a new leader
      h.leaderChange(1, 3, false);
      h.leaderChange(0, 1, true);
      clock.t += 1000;
      vi.advanceTimersByTime(1000);
      commits = [
        { id: 0, commitIndex: 15 },
        { id: 1, commitIndex: 130 },
        { id: 9, commitIndex: 4 }, // a new group: no rate until its second sample
      ];
      clock.t += 1000;
      vi.advanceTimersByTime(1000);
      h.stop();
      clock.t += 1000;
      vi.advanceTimersByTime(5000);
    } finally {
      vi.useRealTimers();
    }
    const [a, b] = h.samples();
    expect(h.samples()).toHaveLength(2);
    expect(a).toMatchObject({ leaderChanges: 2, commitIndex: { '0': 10, '1': 100 }, entriesPerSec: 0 });
    expect(b).toMatchObject({
      leaderChanges: 0,
      commitIndex: { '0': 15, '1': 130, '9': 4 },
      entriesPerSec: 35,
    });
  });

  it('refuses a senseless size', () => {
    expect(() => new StatsHistory({ capacity: 0 })).toThrow(/capacity/);
    expect(() => new StatsHistory({ intervalMs: 0 })).toThrow(/intervalMs/);
  });
});

describe('combineObservers', () => {
  it('tells every listener, even after one throws', () => {
    const seen: string[] = [];
    const bad: NodeObserver = {
      request: () => {
        throw new Error('boom');
      },
    };
    const good: NodeObserver = {
      request: (r) => seen.push(`req ${r.kind}`),
      leaderChange: (g, l, me) => seen.push(`leader ${g} ${l} ${me}`),
      commit: (c) => seen.push(`commit ${c.entries}`),
      proposal: (g) => seen.push(`proposal ${g}`),
      snapshot: (g, kind, bytes) => seen.push(`snapshot ${g} ${kind} ${bytes}`),
    };
    const h = new StatsHistory();
    const all = combineObservers(bad, good, h, {});
    all.request?.(req('put', 1));
    all.leaderChange?.(2, 3, true);
    all.commit?.({ ms: 1, groups: 1, entries: 5, synced: true });
    all.proposal?.(4);
    all.snapshot?.(5, 'created', 10, 1);
    expect(seen).toEqual(['req put', 'leader 2 3 true', 'commit 5', 'proposal 4', 'snapshot 5 created 10']);
    expect(h.sample()).toMatchObject({ leaderChanges: 1 });
  });
});

describe('dashboard routes', () => {
  const status: ClusterStatus = {
    members: [{ id: 1, address: '127.0.0.1:1', peerAddress: '127.0.0.1:2', healthy: true, state: 'active' }],
    groups: [
      {
        id: 0,
        store: '_meta',
        leader: 1,
        term: 2,
        commitIndex: 9,
        replicas: [1],
        learners: [],
        target: [1],
        lag: 0,
      },
    ],
    alarms: [],
    epoch: 1,
    from: 1,
  };
  let fail = false;
  const source: DashboardSource = {
    id: 1,
    clusterStatus: async () => {
      if (fail) throw new Error('no quorum');
      return status;
    },
  };
  const history = new StatsHistory();
  history.request(req('put', 3));
  history.sample();
  let server: Server;
  let base = '';
  beforeAll(async () => {
    server = createServer((rq, rs) => {
      if (!serveDashboard(rq.url ?? '/', rs, source, rq.url?.startsWith('/nohist') ? undefined : history))
        rs.writeHead(404).end('nope');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('serves the page, the status and the history', async () => {
    for (const p of ['/', '/dashboard', '/?x=1']) {
      const r = await fetch(base + p);
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toMatch(/text\/html/);
      expect(await r.text()).toBe(DASHBOARD_HTML);
    }
    expect(await (await fetch(`${base}/api/status`)).json()).toEqual(status);
    const historyAt = async (q: string): Promise<HistoryJson> =>
      (await (await fetch(`${base}/api/history${q}`)).json()) as HistoryJson;
    const h = await historyAt('');
    expect(h).toMatchObject({ nodeId: 1, intervalMs: 1000, capacity: 600 });
    expect(h.samples).toHaveLength(1);
    const t = h.samples[0]!.t;
    expect((await historyAt(`?since=${t}`)).samples).toHaveLength(0);
    expect((await historyAt(`?since=${t - 1}`)).samples).toHaveLength(1);
    expect((await fetch(`${base}/other`)).status).toBe(404);
  });

  it('answers failures with a JSON error', async () => {
    fail = true;
    try {
      const r = await fetch(`${base}/api/status`);
      expect(r.status).toBe(503);
      expect(await r.json()).toEqual({ error: 'cluster status failed: no quorum' });
    } finally {
      fail = false;
    }
    const bad = await fetch(`${base}/api/history?since=yesterday`);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/since must be a time/);
  });

  it('ships a page with no external asset and a script that parses', () => {
    expect(DASHBOARD_HTML).not.toMatch(/(src|href)=["']?(https?:)?\/\//);
    const scripts = [...DASHBOARD_HTML.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]!);
    expect(scripts).toHaveLength(1);
    expect(() => new Script(scripts[0]!)).not.toThrow();
    for (const id of [
      'members-body',
      'groups-body',
      'alarms',
      'throughput-plot',
      'latency-plot',
      'leader-changes-plot',
    ])
      expect(DASHBOARD_HTML).toContain(`id="${id}"`);
  });
});

const haveChromium = existsSync(CHROMIUM);
if (!haveChromium)
  console.warn(`dashboard browser test skipped: ${CHROMIUM} is missing (apt-get install chromium)`);

describe('the dashboard in headless Chromium', () => {
  let dir = '';
  let cluster: LocalCluster | undefined;
  let browser: Browser | undefined;
  let specs: NodeSpec[] = [];

  afterAll(async () => {
    await browser?.close().catch(() => undefined);
    await cluster?.killAll().catch(() => undefined);
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(!haveChromium)(
    `renders the live cluster, follows a member's death, and degrades when its node dies (needs ${CHROMIUM})`,
    async () => {
      const t0 = performance.now();
      dir = mkdtempSync(join(tmpdir(), 'dkv-dashboard-'));
      specs = planNodes(dir, 3, await freeBasePort(3, dir));
      writeNodeConfigs(specs);
      cluster = new LocalCluster(specs);
      cluster.startAll();
      const { chromium } = await import('playwright-core');
      const launching = chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
      await cluster.waitReady(45_000);
      browser = await launching;
      const tReady = performance.now();

      // Load: closed loops of puts and gets for a few seconds.
      const client = await DkvClient.connect({ servers: cluster.servers });
      let running = true;
      let acked = 0;
      const loops = Array.from({ length: 6 }, async (_, w) => {
        for (let n = 0; running; n++) {
          try {
            await client.put(`dash-${w}-${n % 50}`, n);
            await client.get(`dash-${w}-${n % 50}`);
            acked++;
          } catch {
            // counted as not acked; the load only has to move the plots
          }
        }
      });
      await new Promise((r) => setTimeout(r, 4000));
      running = false;
      await Promise.all(loops);
      await client.close();
      expect(acked).toBeGreaterThan(20);

      const page: Page = await browser.newPage();
      const consoleErrors: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error') consoleErrors.push(m.text());
      });
      page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
      const admin = `http://127.0.0.1:${specs[0]!.adminPort}`;
      await page.goto(`${admin}/`);

      // Members: 3 rows, all healthy.
      await page.waitForFunction(
        `document.querySelectorAll('#members-body tr[data-member-id]').length === 3 &&
         document.querySelectorAll('#members-body tr[data-healthy="true"]').length === 3`,
        undefined,
        { timeout: 15_000 },
      );
      expect(await page.locator('#conn').getAttribute('data-state')).toBe('ok');

      // Groups: one row per group of the status JSON, each with exactly one leader cell on the
      // leader's column. Leaders may still move (leader balancing), so compare until they agree.
      const pageGroups = (): Promise<{ id: number; leaders: number[]; replicas: number[] }[]> =>
        page.$$eval('#groups-body tr[data-group-id]', (rows) =>
          rows.map((r) => ({
            id: Number(r.getAttribute('data-group-id')),
            leaders: [...r.querySelectorAll('td[data-role="leader"]')].map((c) =>
              Number(c.getAttribute('data-member-id')),
            ),
            replicas: [...r.querySelectorAll('td[data-role="leader"], td[data-role="voter"]')]
              .map((c) => Number(c.getAttribute('data-member-id')))
              .sort((a, b) => a - b),
          })),
        );
      let mismatch = '';
      const deadline = performance.now() + 20_000;
      for (;;) {
        const status = (await (await fetch(`${admin}/api/status`)).json()) as ClusterStatus;
        const want = status.groups.map((g) => ({
          id: g.id,
          leaders: [g.leader],
          replicas: [...g.replicas].sort((a, b) => a - b),
        }));
        await new Promise((r) => setTimeout(r, 2500)); // one page refresh later
        const got = await pageGroups();
        expect(status.groups.length).toBeGreaterThanOrEqual(7); // _meta + the default store's 6
        mismatch =
          JSON.stringify(got) === JSON.stringify(want)
            ? ''
            : `page ${JSON.stringify(got)} status ${JSON.stringify(want)}`;
        if (mismatch === '' || performance.now() > deadline) break;
      }
      expect(mismatch).toBe('');

      // The throughput plot drew the load.
      await page.waitForFunction(
        `Number(document.querySelector('#throughput-plot')?.getAttribute('data-max')) > 0`,
        undefined,
        { timeout: 10_000 },
      );
      const entries = await page.locator('#throughput-plot path[data-series="entries"]').getAttribute('d');
      expect(entries ?? '').toMatch(/^M[\d.]+,[\d.]+(L[\d.]+,[\d.]+)+/);
      const requestsMax = Number(
        await page.locator('#throughput-plot path[data-series="total"]').getAttribute('data-max'),
      );
      // Requests this node answered (the groups it leads) and their latency.
      expect(requestsMax).toBeGreaterThan(0);
      expect(
        Number(await page.locator('#latency-plot path[data-series="p99"]').getAttribute('data-points')),
      ).toBeGreaterThan(0);
      expect(await page.locator('#leader-changes-plot g[data-series="leader-changes"]').count()).toBe(1);
      expect(consoleErrors).toEqual([]);

      // A member dies: the page shows it unhealthy within a few seconds.
      const tKill = performance.now();
      await cluster.node(3).kill();
      await page.waitForSelector('#members-body tr[data-member-id="3"][data-healthy="false"]', {
        timeout: 10_000,
      });
      const shownMs = performance.now() - tKill;
      expect(await page.locator('#members-body tr[data-healthy="true"]').count()).toBe(2);
      expect(
        await page.locator('#alarms li[data-alarm-kind="member-down"][data-member-id="3"]').count(),
      ).toBe(1);
      expect(consoleErrors).toEqual([]);

      // The node serving the page dies: "unreachable", and the last data stays on screen.
      await cluster.node(1).kill();
      await page.waitForSelector('#conn[data-state="unreachable"]', { timeout: 15_000 });
      expect(await page.locator('#conn').textContent()).toMatch(/^unreachable/);
      expect(await page.locator('#members-body tr[data-member-id]').count()).toBe(3);
      expect(await page.locator('#groups-body tr[data-group-id]').count()).toBeGreaterThanOrEqual(7);
      console.log(
        `dashboard: cluster ready in ${Math.round(tReady - t0)} ms, ${acked} put+get pairs, ` +
          `requests/s max ${requestsMax}, member death shown in ${Math.round(shownMs)} ms`,
      );
    },
    90_000,
  );
});
