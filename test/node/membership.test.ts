/**
 * The control plane on real node processes (issue 8's proof):
 * - a store created through the metadata group (8 partitions and an index), used, isolated
 *   from the default store, described, listed and deleted;
 * - a member added and another removed under a steady write load, with every step visible
 *   in the cluster status, and no acknowledged write lost;
 * - rebalancing that leaves the leaders spread within one of even.
 *
 * Nodes 1-3 form the cluster; node 4 starts with `join: true` (it bootstraps nothing) and is
 * added with the `member.add` admin action, the same call `dkv cluster add-member` makes.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { moving } from '../../src/admin/cmd-cluster.js';
import { fetchStatus } from '../../src/admin/data-commands.js';
import { freeBasePort, LocalCluster, type NodeSpec, nodeConfigOf, planNodes } from '../../src/admin/dev.js';
import { DkvClient } from '../../src/client/client.js';
import { ErrorCode, isDkvError } from '../../src/errors.js';
import type { ClusterStatus } from '../../src/transport/protocol.js';
import { RpcClient } from '../../src/transport/rpc-client.js';

const REPO = resolve(import.meta.dirname, '../..');
const CLI = join(REPO, 'src/admin/cli.ts');
const EXTRA = { tickMs: 100, electionTicks: 10, snapshotEntries: 400, snapshotTailEntries: 100 };

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', CLI, ...args],
      { cwd: REPO, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 2) : 0;
        res({ code, stdout, stderr });
      },
    );
  });
}

/** until polls `f` until it returns a value, or fails naming `what` and the last state. */
async function until<T>(what: string, ms: number, f: () => Promise<T | undefined>): Promise<T> {
  const deadline = performance.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline)
      throw new Error(`timed out waiting for ${what} (last error: ${String(last)})`);
    await sleep(300);
  }
}

let dir: string;
let specs: NodeSpec[];
let cluster: LocalCluster;
const clients: DkvClient[] = [];

function addr(id: number): string {
  const s = specs[id - 1]!;
  return `${s.host}:${s.clientPort}`;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dkv-membership-'));
  const base = await freeBasePort(4, dir);
  specs = planNodes(dir, 4, base);
  const three = specs.slice(0, 3);
  for (const s of specs) mkdirSync(s.dataDir, { recursive: true });
  for (const s of three) {
    writeFileSync(s.configFile, JSON.stringify(nodeConfigOf(s, three, EXTRA)));
  }
  // Node 4 joins: it knows the three members, bootstraps nothing, and waits to be added.
  writeFileSync(
    specs[3]!.configFile,
    JSON.stringify({ ...nodeConfigOf(specs[3]!, specs, EXTRA), join: true }),
  );
  cluster = new LocalCluster(specs, {
    onExit: (id, exit) => {
      if (!exit.expected) console.error(`[membership] node ${id} ended unexpectedly`, exit);
    },
  });
  for (const id of [1, 2, 3]) cluster.node(id).start();
  await cluster.waitReady(60_000, [1, 2, 3]);
}, 90_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  await cluster?.killAll('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function client(store: string, servers: string[]): Promise<DkvClient> {
  const c = await DkvClient.connect({ servers, store, requestTimeoutMs: 15_000 });
  clients.push(c);
  return c;
}

describe('stores through the metadata group', () => {
  it('creates a store with 8 partitions and an index from the CLI, uses it, isolates it, and deletes it', async () => {
    const servers = [addr(1), addr(2), addr(3)].join(',');
    const created = await cli([
      '--servers',
      servers,
      '--json',
      'store',
      'create',
      'orders',
      '--partitions',
      '8',
      '--index',
      'status:status:eq',
      '--index',
      'total:total:range',
    ]);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const desc = JSON.parse(created.stdout) as {
      groups: { id: number; replicas: number[] }[];
      ready: boolean;
    };
    expect(desc.groups).toHaveLength(8);
    for (const g of desc.groups) expect(g.replicas).toHaveLength(3);
    // A second create of the same name is refused.
    const again = await cli(['--servers', servers, 'store', 'create', 'orders']);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/^error ALREADY_EXISTS: store "orders" already exists/);
    const bad = await cli(['--servers', servers, 'store', 'create', 'x', '--index', 'nope']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^error INVALID_ARGUMENT: --index "nope"/);

    const orders = await client('orders', [addr(1), addr(2), addr(3)]);
    const dflt = await client('default', [addr(1), addr(2), addr(3)]);
    await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        orders.put(`order-${i}`, { status: i % 2 === 0 ? 'open' : 'closed', total: i }),
      ),
    );
    await dflt.put('order-1', 'a default-store value');
    const open = await orders.query({ index: 'status', eq: 'open' }, { limit: 1000 });
    expect(open).toHaveLength(100);
    const big = (await orders.query({ index: 'total', gte: 190, lt: 1000 })).map(
      (it) => (it.value as { total: number }).total,
    );
    expect(big.sort((a, b) => a - b)).toEqual([190, 191, 192, 193, 194, 195, 196, 197, 198, 199]);
    // Isolation: the same key in two stores, and the default store has no such index.
    expect((await orders.get('order-1'))?.value).toEqual({ status: 'closed', total: 1 });
    expect((await dflt.get('order-1'))?.value).toBe('a default-store value');
    let defaultKeys = 0;
    for await (const _ of dflt.scan({ prefix: 'order-' })) defaultKeys++;
    expect(defaultKeys).toBe(1);

    const list = await cli(['--servers', servers, '--json', 'store', 'list']);
    const stores = list.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { name: string; partitions: number; indexes: string[] });
    expect(stores.map((s) => s.name).sort()).toEqual(['default', 'orders']);
    expect(stores.find((s) => s.name === 'orders')).toMatchObject({
      partitions: 8,
      indexes: ['status', 'total'],
    });
    const described = await cli(['--servers', servers, 'store', 'describe', 'orders']);
    expect(described.code).toBe(0);
    expect(described.stdout).toContain(
      'store orders: 8 partitions, 3 replicas, indexes status:status:eq, total:total:range',
    );
    const status = await fetchStatus([addr(1)], 10_000);
    expect(status.groups.filter((g) => g.store === 'orders')).toHaveLength(8);

    const deleted = await cli(['--servers', servers, 'store', 'delete', 'orders']);
    expect(deleted).toMatchObject({ code: 0, stdout: 'store orders deleted\n' });
    await until('the store to be gone everywhere', 20_000, async () => {
      const s = await fetchStatus([addr(2)], 10_000);
      return s.groups.some((g) => g.store === 'orders') ? undefined : true;
    });
    const err = await orders.get('order-2').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isDkvError(err) && err.code).toBe(ErrorCode.StoreNotFound);
    const missing = await cli(['--servers', servers, 'store', 'describe', 'orders']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^error STORE_NOT_FOUND/);
  }, 120_000);
});

describe('the client library admin API', () => {
  it('creates, lists, describes and deletes a store, redirected to the metadata leader from any member', async () => {
    const c = await client('default', [addr(3), addr(2), addr(1)]);
    const created = await c.admin.createStore('pets', {
      partitions: 2,
      replicas: 3,
      indexes: [{ name: 'kind', kind: 'eq', field: 'kind' }],
    });
    expect(created).toMatchObject({ name: 'pets', partitions: 2, replicas: 3, ready: true });
    expect(created.groups).toHaveLength(2);
    await expect(c.admin.createStore('pets')).rejects.toMatchObject({ code: ErrorCode.AlreadyExists });
    expect((await c.admin.listStores()).map((s) => s.name)).toContain('pets');
    expect((await c.admin.describeStore('pets')).indexes).toEqual([
      { name: 'kind', kind: 'eq', field: 'kind' },
    ]);
    const pets = await client('pets', [addr(1), addr(2), addr(3)]);
    await pets.put('rex', { kind: 'dog' });
    expect((await pets.query({ index: 'kind', eq: 'dog' })).map((i) => i.key)).toEqual(['rex']);
    expect(await c.admin.pendingMoves()).toBe(0);
    await c.admin.deleteStore('pets');
    await expect(c.admin.describeStore('pets')).rejects.toMatchObject({ code: ErrorCode.StoreNotFound });
    await expect(c.admin.removeMember(99)).rejects.toMatchObject({ code: ErrorCode.NotFound });
  }, 60_000);
});

/** leaderSpread is max - min of leaderships per active member, over every group. */
function leaderSpread(s: ClusterStatus): number {
  const count = new Map<number, number>();
  for (const m of s.members) if (m.state === 'active') count.set(m.id, 0);
  for (const g of s.groups) if (count.has(g.leader)) count.set(g.leader, (count.get(g.leader) ?? 0) + 1);
  const v = [...count.values()];
  return Math.max(...v) - Math.min(...v);
}

describe('membership under load', () => {
  it('adds a member and removes another under a steady write load; nothing acknowledged is lost; leaders end spread', async () => {
    const writer = await client('default', [addr(1), addr(2), addr(3)]);
    const acked: { key: string; value: string }[] = [];
    const latencies: { at: number; ms: number }[] = [];
    const marks: Record<string, number> = { start: performance.now() };
    const failures = new Map<string, number>();
    let running = true;
    const loops = Array.from({ length: 4 }, async (_, w) => {
      for (let n = 0; running; n++) {
        const key = `m-${w}-${n}`;
        const value = `v-${w}-${n}`;
        try {
          const t0 = performance.now();
          await writer.put(key, value);
          latencies.push({ at: t0, ms: performance.now() - t0 });
          acked.push({ key, value });
        } catch (e) {
          const code = isDkvError(e) ? e.code : String(e);
          failures.set(code, (failures.get(code) ?? 0) + 1);
          await sleep(20);
        }
      }
    });
    try {
      await sleep(3000);
      marks.add = performance.now();
      // Add node 4: it joins as a learner of the metadata group, becomes active, and replicas
      // move onto it (at most two groups at a time).
      cluster.node(4).start();
      await until('node 4 serving', 30_000, async () => {
        const c = await RpcClient.connect({
          host: specs[3]!.host,
          port: specs[3]!.clientPort,
          frameBytesMax: 1 << 20,
        });
        try {
          return await c.call('hello', {}, { timeoutMs: 2000 });
        } finally {
          await c.close();
        }
      });
      // Through the CLI, which waits (printing each step) until the member is active and
      // placement wants no more moves.
      const added = await cli(['--servers', addr(2), 'cluster', 'add-member', addr(4)]);
      expect(added.code).toBe(0);
      expect(added.stdout).toBe('member 4 active\n');
      expect(added.stderr).toContain(`member 4 (${addr(4)}) registered: joining`);
      expect(added.stderr).toMatch(/member 4: active, replica of \d+ groups/);
      const after = await fetchStatus([addr(1)], 10_000);
      const held = after.groups.filter((g) => g.replicas.includes(4) && g.id !== 0).length;
      expect(held).toBeGreaterThanOrEqual(4); // 6 groups x 3 replicas over 4 members: 4 or 5 each
      expect(moving(after)).toBe(0);
      marks.added = performance.now();
      expect(after.members.find((m) => m.id === 4)).toMatchObject({ healthy: true, state: 'active' });
      // Every data group still has 3 voters; the metadata group now has 4.
      for (const g of after.groups) expect(g.replicas).toHaveLength(g.id === 0 ? 4 : 3);

      // Rebalance: leaders end within one of even over the 4 members.
      expect((await cli(['--servers', addr(3), '--json', 'cluster', 'rebalance'])).code).toBe(0);
      await until('leaders spread within one of even', 60_000, async () => {
        const s = await fetchStatus([addr(1)], 10_000);
        return s.groups.every((g) => g.leader > 0) && leaderSpread(s) <= 1 ? s : undefined;
      });

      // Remove node 1 under the same load: its replicas move away first.
      marks.remove = performance.now();
      const removing = await cli(['--servers', addr(3), 'cluster', 'remove-member', '1']);
      expect(removing.code).toBe(0);
      expect(removing.stderr).toContain('member 1 is leaving: moving its replicas away');
      expect(removing.stdout).toBe('member 1 removed; its process can be stopped now\n');
      const gone = await fetchStatus([addr(2), addr(3)], 10_000);
      for (const g of gone.groups) {
        expect(g.replicas).not.toContain(1);
        expect(g.learners).not.toContain(1);
      }
      expect(gone.members.map((m) => m.id)).toEqual([2, 3, 4]);
      marks.removed = performance.now();
    } finally {
      running = false;
      await Promise.all(loops);
    }
    await cluster.node(1).stop();
    // Every acknowledged write is there, read through the remaining members only.
    const reader = await client('default', [addr(2), addr(3), addr(4)]);
    const wrong: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < acked.length) {
          const a = acked[next++]!;
          const item = await reader.get(a.key);
          if (item?.value !== a.value)
            wrong.push(`${a.key}: want ${a.value}, got ${JSON.stringify(item?.value)}`);
        }
      }),
    );
    const pct = (from: number, to: number): string => {
      const xs = latencies
        .filter((l) => l.at >= from && l.at < to)
        .map((l) => l.ms)
        .sort((x, y) => x - y);
      const q = (p: number): string =>
        (xs[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? 0).toFixed(1);
      return `${xs.length} puts, p50 ${q(0.5)} ms, p99 ${q(0.99)} ms`;
    };
    console.log(
      `[membership] ${acked.length} writes acknowledged during add, rebalance and remove; failures ${JSON.stringify(Object.fromEntries(failures))}\n` +
        `  before: ${pct(marks.start!, marks.add!)}\n` +
        `  adding node 4 (${((marks.added! - marks.add!) / 1000).toFixed(1)} s): ${pct(marks.add!, marks.added!)}\n` +
        `  removing node 1 (${((marks.removed! - marks.remove!) / 1000).toFixed(1)} s): ${pct(marks.remove!, marks.removed!)}`,
    );
    expect(acked.length).toBeGreaterThan(100);
    expect(wrong.slice(0, 10)).toEqual([]);

    // Health and alarms: with one of three members down, the others are still ready and the
    // status names the member; with two down, the last one has no quorum.
    const health = async (
      id: number,
    ): Promise<{ status: number; body: { ready: boolean; noQuorum: number[] } }> => {
      const r = await fetch(`http://${specs[id - 1]!.host}:${specs[id - 1]!.adminPort}/health`);
      return { status: r.status, body: (await r.json()) as { ready: boolean; noQuorum: number[] } };
    };
    expect((await health(2)).status).toBe(200);
    await cluster.node(4).kill('SIGKILL');
    const down = await until('member 4 reported down', 30_000, async () => {
      const s = await fetchStatus([addr(2)], 10_000);
      return s.alarms.some((a) => a.kind === 'member-down' && a.member === 4) ? s : undefined;
    });
    expect(down.members.find((m) => m.id === 4)?.healthy).toBe(false);
    await until('node 2 ready without node 4', 30_000, async () =>
      (await health(2)).status === 200 ? true : undefined,
    );
    await cluster.node(3).kill('SIGKILL');
    const noQuorum = await until('node 2 not ready', 30_000, async () => {
      const h = await health(2);
      return h.status === 503 ? h : undefined;
    });
    expect(noQuorum.body.ready).toBe(false);
    expect(noQuorum.body.noQuorum.length).toBeGreaterThan(0);
    const lonely = await fetchStatus([addr(2)], 10_000);
    expect(lonely.alarms.some((a) => a.kind === 'no-quorum')).toBe(true);
  }, 400_000);
});
