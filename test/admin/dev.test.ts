/**
 * The pieces of `dkv dev` that need no running node: the port and file layout, config
 * writing and reloading (restart with the same dir), the refusals (another --nodes or
 * --base-port, a port in use), how a node is spawned, and the data commands' value parsing
 * and output formats.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { formatStatus, moving } from '../../src/admin/cmd-cluster.js';
import { intOption, parseValue, toJson } from '../../src/admin/data-commands.js';
import {
  checkPortsFree,
  loadNodeSpecs,
  nodeCommand,
  planNodes,
  prepareDevDir,
  tailOfFile,
  writeNodeConfigs,
} from '../../src/admin/dev.js';
import { ErrorCode } from '../../src/errors.js';
import { readNodeConfig } from '../../src/node/main.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'dkv-devunit-'));
  dirs.push(d);
  return d;
}

describe('dev cluster layout', () => {
  it('lays out ports and files per node', () => {
    const dir = tempDir();
    const specs = planNodes(dir, 3, 7401);
    expect(specs.map((s) => [s.id, s.clientPort, s.peerPort, s.adminPort])).toEqual([
      [1, 7401, 7501, 7601],
      [2, 7402, 7502, 7602],
      [3, 7403, 7503, 7603],
    ]);
    expect(specs[1]!.dataDir).toBe(join(dir, 'node2', 'data'));
    expect(specs[1]!.logFile).toBe(join(dir, 'node2', 'data', 'node.log'));
    expect(specs[1]!.configFile).toBe(join(dir, 'node2', 'config.json'));
  });

  it('refuses impossible node counts and base ports', () => {
    expect(() => planNodes('/x', 0, 7401)).toThrow(/--nodes must be an integer from 1 to 99/);
    expect(() => planNodes('/x', 3, 65400)).toThrow(/--base-port must be an integer from 1 to 65333/);
  });

  it('writes configs every node accepts, and reloads them on a restart', () => {
    const dir = tempDir();
    const specs = planNodes(dir, 3, 7401);
    writeNodeConfigs(specs, { tickMs: 50, snapshotEntries: 200 });
    for (const s of specs) {
      const cfg = readNodeConfig(s.configFile);
      expect(cfg.id).toBe(s.id);
      expect(cfg.tickMs).toBe(50);
      expect(cfg.snapshotEntries).toBe(200);
      expect(cfg.peers.map((p) => p.id)).toEqual([1, 2, 3].filter((i) => i !== s.id));
      expect(cfg.peers.every((p) => p.clientPort === 7400 + p.id && p.peerPort === 7500 + p.id)).toBe(true);
    }
    expect(loadNodeSpecs(dir)).toEqual(specs);
    expect(loadNodeSpecs(join(dir, 'nothing-here'))).toBeUndefined();
  });

  it('reuses a dir on restart and refuses another node count or base port', () => {
    const dir = tempDir();
    const first = prepareDevDir({ dir, nodes: 3, basePort: 7401 });
    expect(first.restarted).toBe(false);
    const again = prepareDevDir({ dir, nodes: 3, basePort: 9999 }); // a defaulted base port: the dir wins
    expect(again.restarted).toBe(true);
    expect(again.specs).toEqual(first.specs);
    expect(() => prepareDevDir({ dir, nodes: 5, basePort: 7401 })).toThrow(
      /holds a cluster of 3 nodes, not 5/,
    );
    expect(() => prepareDevDir({ dir, nodes: 3, basePort: 9999, basePortGiven: true })).toThrow(
      /on base port 7401, not 9999/,
    );
  });

  it('names the config file when it is missing, not JSON, or invalid', () => {
    const dir = tempDir();
    const f = join(dir, 'config.json');
    expect(() => readNodeConfig(f)).toThrow(`cannot read the config file ${f}: no such file`);
    writeFileSync(f, '{ nope');
    expect(() => readNodeConfig(f)).toThrow(`the config file ${f} is not valid JSON`);
    writeFileSync(f, '{"id": 1}');
    expect(() => readNodeConfig(f)).toThrow(`${f}: config: peers must be`);
  });

  it('refuses a port in use with an error naming it', async () => {
    const dir = tempDir();
    let specs = planNodes(dir, 3, 20_000);
    for (let i = 0; i < 50; i++) {
      specs = planNodes(dir, 3, 20_000 + Math.floor(Math.random() * 30_000));
      if (
        await checkPortsFree(specs).then(
          () => true,
          () => false,
        )
      )
        break;
    }
    const port = specs[1]!.adminPort;
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', () => r()));
    try {
      await expect(checkPortsFree(specs)).rejects.toMatchObject({
        code: ErrorCode.InUse,
        message: `port ${port} (node 2 admin port) on 127.0.0.1 is already in use`,
      });
    } finally {
      blocker.close();
    }
  });

  it('spawns nodes from source through tsx (tests run from source)', () => {
    const { command, args } = nodeCommand('/c.json');
    expect(command).toBe(process.execPath);
    expect(args[0]).toBe('--import');
    expect(args[1]).toMatch(/^file:.*tsx/);
    expect(args.slice(2)).toEqual([
      expect.stringMatching(/src\/admin\/cli\.ts$/),
      'node',
      '--config',
      '/c.json',
    ]);
  });

  it('reads the tail of a log file', () => {
    const dir = tempDir();
    const f = join(dir, 'log');
    writeFileSync(f, `${Array.from({ length: 100 }, (_, i) => `line ${i}`).join('\n')}\n`);
    expect(tailOfFile(f, 3)).toEqual(['line 97', 'line 98', 'line 99']);
    expect(tailOfFile(join(dir, 'missing'), 3)).toEqual([]);
  });
});

describe('data command helpers', () => {
  it('stores JSON objects and arrays structured, anything else as a string', () => {
    expect(parseValue('{"a":1}', false)).toEqual({ a: 1 });
    expect(parseValue(' [1,2] ', false)).toEqual([1, 2]);
    expect(parseValue('{"a":1}', true)).toBe('{"a":1}');
    expect(parseValue('42', false)).toBe('42');
    expect(parseValue('"q"', false)).toBe('"q"');
    expect(parseValue('{broken', false)).toBe('{broken');
    expect(parseValue('', false)).toBe('');
  });

  it('parses integer options strictly', () => {
    expect(intOption('--ttl', '100', 1)).toBe(100);
    expect(() => intOption('--ttl', '1.5', 1)).toThrow(/--ttl must be an integer >= 1, got "1.5"/);
    expect(() => intOption('--ttl', '0', 1)).toThrow(/--ttl/);
    expect(() => intOption('--nodes', 'x', 1, 99)).toThrow(/from 1 to 99/);
  });

  it('renders binary and bigint values in JSON', () => {
    expect(toJson({ b: new Uint8Array([1, 2, 3]), n: 10n })).toBe('{"b":{"$binary":"AQID"},"n":"10"}');
  });

  it('formats a status for people, and counts the groups still moving', () => {
    const s = {
      members: [
        {
          id: 1,
          address: '127.0.0.1:7401',
          peerAddress: '127.0.0.1:7501',
          healthy: true,
          state: 'active' as const,
        },
      ],
      groups: [
        {
          id: 1,
          store: 'default',
          leader: 1,
          term: 2,
          commitIndex: 3,
          replicas: [1],
          learners: [],
          target: [1],
          lag: 0,
        },
        {
          id: 2,
          store: 'default',
          leader: 1,
          term: 2,
          commitIndex: 3,
          replicas: [1],
          learners: [2],
          target: [1, 2],
          lag: 5,
        },
      ],
      alarms: [{ kind: 'member-down' as const, member: 2, message: 'member 2 does not answer' }],
      epoch: 3,
      from: 1,
    };
    const text = formatStatus(s);
    expect(text).toMatch(/127\.0\.0\.1:7401\s+127\.0\.0\.1:7501\s+active\s+yes/);
    expect(text).toMatch(/GROUP\s+STORE\s+LEADER\s+TERM\s+COMMIT\s+LAG\s+REPLICAS\s+LEARNERS\s+TARGET/);
    expect(text).toContain('member-down: member 2 does not answer');
    expect(moving(s)).toBe(1);
  });
});
