/**
 * `dkv instance ...` end to end: the CLI runs in-process through main() (stdout and stderr
 * captured), and the instances it starts are real, detached node processes in a temporary
 * DKV home. Every process a test started is killed afterwards (by the pids in the home's pid
 * files), even when the test fails.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { freeBasePort, NodeProcess } from '../../src/admin/dev.js';
import { parsePeers, parseStores } from '../../src/admin/instances.js';
import { EXIT, main } from '../../src/admin/program.js';
import { TEMPLATES } from '../../src/admin/templates.js';
import { NODE_DEFAULTS } from '../../src/node/config.js';
import type { ClusterStatus } from '../../src/transport/protocol.js';

const homes: string[] = [];
const cleanups: (() => Promise<void> | void)[] = [];

/** alive tells whether a pid runs (a zombie does not count). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

afterEach(async () => {
  vi.restoreAllMocks();
  for (const f of cleanups.splice(0)) await f();
  for (const home of homes.splice(0)) {
    const dir = join(home, 'instances');
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      // no instances
    }
    for (const name of names) {
      try {
        const pid = Number(readFileSync(join(dir, name, 'node.pid'), 'utf8').trim());
        if (pid > 0 && alive(pid)) process.kill(pid, 'SIGKILL');
      } catch {
        // not running
      }
    }
    rmSync(home, { recursive: true, force: true });
  }
});

function tempHome(): string {
  const d = mkdtempSync(join(tmpdir(), 'dkv-instances-'));
  homes.push(d);
  return d;
}

interface Run {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/** dkv runs the CLI in-process and captures its output. */
async function dkv(...args: string[]): Promise<Run> {
  let out = '';
  let err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    err += String(chunk);
    return true;
  });
  try {
    const code = await main(['node', 'dkv', ...args]);
    return { code, out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

/** ok runs the CLI and expects exit 0. */
async function ok(...args: string[]): Promise<string> {
  const r = await dkv(...args);
  expect(r.err, `dkv ${args.join(' ')}`).toBe('');
  expect(r.code, `dkv ${args.join(' ')}`).toBe(EXIT.ok);
  return r.out;
}

/** fails runs the CLI and expects a clean `error CODE: message` (no stack trace). */
async function fails(code: number, args: string[]): Promise<string> {
  const r = await dkv(...args);
  expect(r.code, `dkv ${args.join(' ')}: ${r.err}`).toBe(code);
  expect(r.err).toMatch(/^error [A-Z_]+: /);
  expect(r.err).not.toMatch(/\n\s+at /);
  return r.err;
}

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => resolve(s));
  });
}

/** portArgs gives an instance ports from a random free range (free now; allocation from 7401 could race other tests). */
async function portArgs(home: string): Promise<string[]> {
  const base = await freeBasePort(1, home);
  return ['--port', `${base}`, '--peer-port', `${base + 100}`, '--admin-port', `${base + 200}`];
}

const STATUS_KEYS = [
  'name',
  'running',
  'pid',
  'clientPort',
  'peerPort',
  'adminPort',
  'dataDir',
  'logFile',
  'configFile',
];

describe('dkv instance', () => {
  it('forms a 3-node cluster from the CLI alone, serves data, and stops gracefully', async () => {
    const home = tempHome();
    const base = await freeBasePort(3, home);
    const names = ['n1', 'n2', 'n3'];
    // Peer ports only: the client ports follow from each instance's (peer - client) offset, 100.
    const peers = names.map((n, i) => `${n}=127.0.0.1:${base + 100 + i}`).join(',');
    for (const [i, n] of names.entries())
      await ok(
        'instance',
        'create',
        n,
        '--home',
        home,
        '--template',
        'small',
        '--port',
        String(base + i),
        '--admin-port',
        String(base + 200 + i),
        '--peers',
        peers,
        '--stores',
        'default:3',
      );
    const cfg = JSON.parse(readFileSync(join(home, 'instances', 'n2', 'config.json'), 'utf8'));
    expect(cfg).toMatchObject({
      id: 2,
      clientPort: base + 1,
      peerPort: base + 101,
      adminPort: base + 201,
      stores: [{ name: 'default', partitions: 3 }],
      snapshotEntries: TEMPLATES.small.config.snapshotEntries,
      logFile: join(home, 'instances', 'n2', 'node.log'),
    });
    expect(cfg.peers).toEqual([
      { id: 1, host: '127.0.0.1', peerPort: base + 100, clientPort: base },
      { id: 3, host: '127.0.0.1', peerPort: base + 102, clientPort: base + 2 },
    ]);

    const pids: number[] = [];
    for (const [i, n] of names.entries()) {
      const out = await ok('instance', 'start', n, '--home', home);
      const m = /^started (\S+) pid=(\d+) client=127\.0\.0\.1:(\d+)\n$/.exec(out);
      expect(m?.[1]).toBe(n);
      expect(Number(m?.[3])).toBe(base + i);
      pids.push(Number(m?.[2]));
    }
    await fails(EXIT.error, ['instance', 'start', 'n1', '--home', home]);

    const servers = names.map((_, i) => `127.0.0.1:${base + i}`).join(',');
    let status: ClusterStatus | undefined;
    const deadline = performance.now() + 20_000;
    for (;;) {
      const r = await dkv('--servers', servers, '--timeout', '2000', 'cluster', 'status', '--json');
      if (r.code === EXIT.ok) {
        status = JSON.parse(r.out) as ClusterStatus;
        if (
          status.members.length === 3 &&
          status.members.every((m) => m.healthy) &&
          status.groups.length > 0 &&
          status.groups.every((g) => g.leader > 0)
        )
          break;
      }
      if (performance.now() > deadline) throw new Error(`no ready cluster in 20 s: ${r.err}${r.out}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(status.members.map((m) => m.id).sort()).toEqual([1, 2, 3]);
    expect(await ok('--servers', servers, 'put', 'greeting', 'hello')).toMatch(/^OK version=1/);
    expect(await ok('--servers', servers, 'get', 'greeting')).toBe('hello\n');

    const s = JSON.parse(await ok('instance', 'status', 'n1', '--home', home, '--json'));
    expect(Object.keys(s).slice(0, STATUS_KEYS.length)).toEqual(STATUS_KEYS);
    expect(s).toMatchObject({
      name: 'n1',
      running: true,
      pid: pids[0],
      clientPort: base,
      peerPort: base + 100,
      adminPort: base + 200,
      dataDir: join(home, 'instances', 'n1', 'data'),
      logFile: join(home, 'instances', 'n1', 'node.log'),
      configFile: join(home, 'instances', 'n1', 'config.json'),
      id: 1,
      template: 'small',
      host: '127.0.0.1',
    });
    expect(s.health).toMatchObject({ live: true, nodeId: 1 });

    const lines = (await ok('instance', 'list', '--home', home, '--json')).trim().split('\n');
    const listed = lines.map((l) => JSON.parse(l));
    expect(listed.map((x) => [x.name, x.running, x.pid])).toEqual(names.map((n, i) => [n, true, pids[i]]));
    expect(listed.every((x) => x.health === undefined)).toBe(true);
    const table = await ok('instance', 'list', '--home', home);
    expect(table.split('\n')[0]).toMatch(/^NAME\s+ID\s+RUNNING\s+PID\s+CLIENT\s+PEER\s+ADMIN\s+TEMPLATE$/);

    for (const [i, n] of names.entries()) {
      expect(await ok('instance', 'stop', n, '--home', home)).toBe(`stopped ${n} (pid ${pids[i]})\n`);
      expect(alive(pids[i]!)).toBe(false);
    }
    expect(await ok('instance', 'stop', 'n1', '--home', home)).toBe('n1 is not running\n');
    const after = JSON.parse(await ok('instance', 'status', 'n3', '--home', home, '--json'));
    expect(after).toMatchObject({ running: false, pid: null });
    expect(after.health).toBeUndefined();
    // A clean stop: the node logged it.
    expect(readFileSync(join(home, 'instances', 'n3', 'node.log'), 'utf8')).toContain('"msg":"stopped"');
  }, 60_000);

  it('refuses ports in use (naming the port and who holds it) and allocates around them', async () => {
    const home = tempHome();
    const a = JSON.parse(await ok('instance', 'create', 'a', '--home', home, '--json'));
    expect(a.clientPort).toBeGreaterThanOrEqual(7401);
    expect(a.peerPort).toBeGreaterThanOrEqual(7501);
    expect(a.adminPort).toBeGreaterThanOrEqual(7601);

    const base = await freeBasePort(1, home);
    const blocker = await listen(base);
    cleanups.push(() => new Promise<void>((r) => blocker.close(() => r())));
    expect(await fails(EXIT.error, ['instance', 'create', 'c', '--home', home, '--port', String(base)])).toBe(
      `error IN_USE: client port ${base} is already in use (by another process)\n`,
    );
    expect(
      await fails(EXIT.error, [
        'instance',
        'create',
        'd',
        '--home',
        home,
        '--admin-port',
        String(a.peerPort),
      ]),
    ).toBe(`error IN_USE: admin port ${a.peerPort} is already in use (by instance a)\n`);
    expect(
      await fails(EXIT.error, [
        'instance',
        'create',
        'd',
        '--home',
        home,
        '--port',
        '9000',
        '--peer-port',
        '9000',
      ]),
    ).toMatch(/^error INVALID_ARGUMENT: the peer port and the client port are both 9000/);

    // Block the port after a's client port (if free): the next allocation skips a's and it.
    const next = a.clientPort + 1;
    const blocked = await listen(next).catch(() => undefined);
    if (blocked !== undefined) cleanups.push(() => new Promise<void>((r) => blocked.close(() => r())));
    const b = JSON.parse(await ok('instance', 'create', 'b', '--home', home, '--json'));
    expect(b.clientPort).toBeGreaterThan(next);
    expect([b.clientPort, b.peerPort, b.adminPort]).not.toContain(a.clientPort);
    expect(new Set([a.clientPort, a.peerPort, a.adminPort, b.clientPort, b.peerPort, b.adminPort]).size).toBe(
      6,
    );
    // Nothing was written for the refused ones.
    expect(readdirSync(join(home, 'instances')).sort()).toEqual(['a', 'b']);
  });

  it('gives clean errors for bad names, templates, peers, configs and data directories', async () => {
    const home = tempHome();
    const h = ['--home', home];
    expect(await fails(EXIT.error, ['instance', 'create', 'x', ...h, '--template', 'huge'])).toBe(
      'error INVALID_ARGUMENT: unknown template "huge": choose one of small, default, large\n',
    );
    expect(await fails(EXIT.error, ['instance', 'create', 'x/y', ...h])).toMatch(
      /^error INVALID_ARGUMENT: instance name "x\/y" must be 1 to 64 letters/,
    );
    expect(await fails(EXIT.error, ['instance', 'create', 'x', ...h, '--peers', 'a=b'])).toMatch(
      /^error INVALID_ARGUMENT: --peers item "a=b" must be NAME=HOST:PEER_PORT\[:CLIENT_PORT\]/,
    );
    expect(
      await fails(EXIT.error, ['instance', 'create', 'x', ...h, '--peers', 'a=h:1', '--join', 'h:2']),
    ).toMatch(/^error INVALID_ARGUMENT: --peers and --join exclude each other/);
    expect(await fails(EXIT.error, ['instance', 'create', 'x', ...h, '--stores', 'default:0'])).toMatch(
      /^error INVALID_ARGUMENT: --stores item "default:0" must be name:partitions/,
    );
    expect(await fails(EXIT.notFound, ['instance', 'status', 'nope', ...h])).toBe(
      `error NOT_FOUND: no instance nope in ${home}\n`,
    );
    expect(await fails(EXIT.notFound, ['instance', 'start', 'nope', ...h])).toMatch(/^error NOT_FOUND: /);

    expect(await fails(EXIT.error, ['instance', 'create', 'a', ...h, '--port', '0'])).toMatch(
      /^error INVALID_ARGUMENT: --port must be an integer from 1 to 65535, got "0"/,
    );
    const base = await freeBasePort(1, home); // ports from a random free range: a start must not race others
    const created = JSON.parse(
      await ok(
        'instance',
        'create',
        'a',
        ...h,
        '--json',
        '--port',
        `${base}`,
        '--peer-port',
        `${base + 100}`,
        '--admin-port',
        '0',
      ),
    );
    expect(created.adminPort).toBe(0);
    expect(await fails(EXIT.error, ['instance', 'create', 'a', ...h])).toBe(
      `error ALREADY_EXISTS: instance a already exists in ${home}\n`,
    );
    expect(await fails(EXIT.error, ['instance', 'create', 'b', ...h, '--data-dir', created.dataDir])).toBe(
      `error IN_USE: data directory ${created.dataDir} is in use by instance a\n`,
    );

    // A hand-edited config is checked before anything is spawned.
    const configFile = join(home, 'instances', 'a', 'config.json');
    const good = readFileSync(configFile, 'utf8');
    writeFileSync(configFile, good.replace('"tickMs": 100', '"tickMs": "fast"'));
    expect(await fails(EXIT.error, ['instance', 'start', 'a', ...h])).toBe(
      `error INVALID_ARGUMENT: ${configFile}: config: tickMs must be an integer in [1, 10000]\n`,
    );
    writeFileSync(configFile, '{ nope');
    expect(await fails(EXIT.error, ['instance', 'start', 'a', ...h])).toMatch(
      new RegExp(`^error INVALID_ARGUMENT: the config file ${configFile} is not valid JSON`),
    );
    writeFileSync(configFile, good);
    expect(readdirSync(join(home, 'instances', 'a'))).not.toContain('node.pid');

    // A data directory locked by another process: the node's own error, with the logs.
    const cfg = JSON.parse(good);
    const rawConfig = join(home, 'raw.json');
    writeFileSync(
      rawConfig,
      JSON.stringify({ ...cfg, clientPort: 0, peerPort: 0, logFile: join(home, 'raw.log') }),
    );
    const raw = new NodeProcess({
      id: 1,
      host: '127.0.0.1',
      clientPort: 0,
      peerPort: 0,
      adminPort: 0,
      nodeDir: home,
      dataDir: cfg.dataDir,
      logFile: join(home, 'raw.log'),
      configFile: rawConfig,
    });
    raw.start();
    cleanups.push(async () => void (await raw.kill()));
    const deadline = performance.now() + 15_000;
    while (!raw.outputTail.some((l) => l.includes('serving'))) {
      if (!raw.running || performance.now() > deadline) throw new Error(raw.outputTail.join('\n'));
      await new Promise((r) => setTimeout(r, 50));
    }
    const err = await fails(EXIT.error, ['instance', 'start', 'a', ...h]);
    expect(err).toMatch(
      new RegExp(
        `^error IN_USE: instance a exited while starting \\(exit code 2\\): data directory ${cfg.dataDir} is already in use by another DKV process`,
      ),
    );
    expect(err).toContain(`last lines of ${join(home, 'instances', 'a', 'console.log')}:`);
    expect(readdirSync(join(home, 'instances', 'a'))).not.toContain('node.pid');
  }, 30_000);

  it('kills an instance that does not stop within the timeout, and says so', async () => {
    const home = tempHome();
    await ok('instance', 'create', 's', '--home', home, '--template', 'small', ...(await portArgs(home)));
    const pid = Number(/pid=(\d+)/.exec(await ok('instance', 'start', 's', '--home', home))?.[1]);
    process.kill(pid, 'SIGSTOP'); // it can no longer act on SIGTERM
    const out = await ok('instance', 'stop', 's', '--home', home, '--timeout-ms', '500');
    expect(out).toBe(`s (pid ${pid}) did not stop within 500 ms after SIGTERM: killed it (SIGKILL)\n`);
    expect(alive(pid)).toBe(false);
    expect(readdirSync(join(home, 'instances', 's'))).not.toContain('node.pid');
  }, 20_000);

  it('joins a running instance, and removes a running instance only with --force', async () => {
    const home = tempHome();
    const h = ['--home', home];
    await ok('instance', 'create', 'r', ...h, '--template', 'small', ...(await portArgs(home)));
    const started = await ok('instance', 'start', 'r', ...h);
    const pid = Number(/pid=(\d+)/.exec(started)?.[1]);
    const client = /client=(\S+)/.exec(started)?.[1] ?? '';
    const r = JSON.parse(await ok('instance', 'status', 'r', ...h, '--json'));

    // --join reads the members from the running one: id max+1, join: true, its peer port.
    const out = await ok('instance', 'create', 'j', ...h, '--join', client, ...(await portArgs(home)));
    expect(out).toContain(`then: dkv --servers ${client} cluster add-member 127.0.0.1:`);
    const cfg = JSON.parse(readFileSync(join(home, 'instances', 'j', 'config.json'), 'utf8'));
    expect(cfg).toMatchObject({ id: 2, join: true, clusterId: NODE_DEFAULTS.clusterId });
    expect(cfg.peers).toEqual([{ id: 1, host: '127.0.0.1', peerPort: r.peerPort, clientPort: r.clientPort }]);
    expect(cfg.stores).toBeUndefined();

    expect(await fails(EXIT.error, ['instance', 'remove', 'r', ...h])).toBe(
      `error IN_USE: instance r is running (pid ${pid}): stop it first (dkv instance stop r), or use --force\n`,
    );
    expect(alive(pid)).toBe(true);
    expect(await ok('instance', 'remove', 'r', ...h, '--force')).toBe(`stopped r (pid ${pid})\nremoved r\n`);
    expect(alive(pid)).toBe(false);
    expect(readdirSync(join(home, 'instances'))).toEqual(['j']);
    expect(await ok('instance', 'remove', 'j', ...h)).toBe('removed j\n');
  }, 20_000);

  it('documents the templates in --help and parses --peers and --stores', async () => {
    const r = await dkv('instance', 'create', '--help');
    expect(r.code).toBe(EXIT.ok);
    for (const t of [
      'small',
      'default (default)',
      'large',
      'memoryMb=256',
      'snapshotEntries=',
      'pendingMax=',
    ])
      expect(r.out).toContain(t);
    expect(TEMPLATES.default.config).toMatchObject({
      snapshotEntries: NODE_DEFAULTS.snapshotEntries,
      pendingMax: NODE_DEFAULTS.pendingMax,
      frameBytesMax: NODE_DEFAULTS.frameBytesMax,
    });
    expect(parsePeers('a=h1:7501, b=h2:7502:7402')).toEqual([
      { name: 'a', host: 'h1', peerPort: 7501 },
      { name: 'b', host: 'h2', peerPort: 7502, clientPort: 7402 },
    ]);
    expect(() => parsePeers('a=h:1,a=h:2')).toThrow('--peers names a twice');
    expect(() => parsePeers('a=h:70000')).toThrow(/the peer port must be a port from 1 to 65535/);
    expect(parseStores('default:6,users:8')).toEqual([
      { name: 'default', partitions: 6 },
      { name: 'users', partitions: 8 },
    ]);
  });
});
