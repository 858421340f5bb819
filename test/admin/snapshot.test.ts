/**
 * `dkv snapshot save|restore` (src/admin/cmd-snapshot.ts): a logical backup that must bring
 * every key back exactly.
 *
 * Most tests run on embedded stores (DkvClient.inProc): 5,000+ keys of every kind of value
 * (strings, binary, structured with bigints and floats, unicode keys), labels and TTLs are
 * saved, restored into a fresh store with another partition count, and compared key by key
 * against the source. Then the refusals (a truncated, corrupt or foreign file writes nothing),
 * TTLs (restored with about their remaining time; expired keys skipped), a key bound to a
 * lease (restored as a plain key), and overwriting. Last, the CLI end to end on a real
 * 3-node cluster: save `default`, restore with `--create` into a new store.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import {
  decodeValue,
  encodeValue,
  readSnapshotHeader,
  restoreSnapshot,
  type SnapshotProgress,
  saveSnapshot,
  verifySnapshot,
} from '../../src/admin/cmd-snapshot.js';
import { EXIT, main } from '../../src/admin/program.js';
import { DkvClient } from '../../src/client/client.js';
import type { Item } from '../../src/client/types.js';
import '../../src/embedded.js';
import { type DkvError, ErrorCode, isDkvError } from '../../src/errors.js';
import { destroyAllClusters, TestCluster } from '../node/harness.js';

const dir = mkdtempSync(join(tmpdir(), 'dkv-snapshot-test-'));
const clients: DkvClient[] = [];

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  await destroyAllClusters();
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function embedded(partitions: number, store = 'default'): Promise<DkvClient> {
  const c = await DkvClient.inProc({ partitions, store });
  clients.push(c);
  return c;
}

async function errorOf(p: Promise<unknown>): Promise<DkvError> {
  try {
    await p;
  } catch (err) {
    if (isDkvError(err)) return err;
    throw err;
  }
  throw new Error('expected a DkvError');
}

async function allItems(c: DkvClient): Promise<Map<string, Item>> {
  const out = new Map<string, Item>();
  for await (const it of c.scan({ pageSize: 2000 })) out.set(it.key, it);
  return out;
}

/** putAll writes [key, value, opts] triples, 100 at a time. */
async function putAll(
  c: DkvClient,
  entries: readonly (readonly [string, unknown, Parameters<DkvClient['put']>[2]?])[],
): Promise<void> {
  for (let i = 0; i < entries.length; i += 100)
    await Promise.all(entries.slice(i, i + 100).map(([k, v, o]) => c.put(k, v, o ?? {})));
}

/** mixedEntries is n keys of every kind: strings, binary, structured, unicode keys, labels, TTLs. */
function mixedEntries(n: number): [string, unknown, Parameters<DkvClient['put']>[2]?][] {
  const out: [string, unknown, Parameters<DkvClient['put']>[2]?][] = [];
  for (let i = 0; i < n; i++) {
    const id = String(i).padStart(5, '0');
    switch (i % 6) {
      case 0:
        out.push([`str:${id}`, `value ${i} with "quotes", a\nnewline and ☃`]);
        break;
      case 1:
        out.push([`bin:${id}`, new Uint8Array(randomBytes(1 + (i % 300)))]);
        break;
      case 2:
        out.push([
          `obj:${id}`,
          {
            n: i,
            f: i / 7,
            neg: -i,
            big: 2n ** 60n + BigInt(i),
            ok: i % 4 === 0,
            none: null,
            list: [1, 'two', { three: [3] }],
            nested: { deep: { name: `n${i}`, bytes: new Uint8Array([i % 256, 0, 255]) } },
          },
        ]);
        break;
      case 3:
        out.push([`ключ/日本語/🔑/${id}`, `ünïcödé ${i} 🎉`, { labels: { lang: 'ru', n: i } }]);
        break;
      case 4:
        out.push([`ttl:${id}`, `expires ${i}`, { ttlMs: 600_000, labels: { kind: 'ttl' } }]);
        break;
      default:
        out.push([`arr:${id}`, [i, `${i}`, [i, [i]], { a: i }]]);
    }
  }
  return out;
}

describe('snapshot on embedded stores', () => {
  it('saves 6,000 keys of every kind and restores each one exactly into a fresh store', async () => {
    const src = await embedded(3);
    const entries = mixedEntries(6000);
    await putAll(src, entries);
    const file = join(dir, 'mixed.dkvsnap.gz');
    const layout = {
      partitions: 3,
      replicas: 1,
      indexes: [{ name: 'byLang', kind: 'eq' as const, label: 'lang' }],
    };
    const saved = await saveSnapshot(src, file, { layout });
    expect(saved).toMatchObject({ store: 'default', keys: 6000, expiredSkipped: 0, leaseDropped: 0 });
    expect(saved.fileBytes).toBeGreaterThan(0);
    expect(saved.fileBytes).toBeLessThan(saved.bytes);

    const header = await readSnapshotHeader(file);
    expect(header).toMatchObject({
      format: 'dkv-snapshot',
      version: 1,
      store: 'default',
      partitions: 3,
      replicas: 1,
      indexes: layout.indexes,
    });
    expect(new Date(header.createdAt).getTime()).toBeGreaterThan(Date.now() - 60_000);
    // The trailer closes the file with the counts.
    const lines = gunzipSync(readFileSync(file)).toString('utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(6002);
    expect(JSON.parse(lines.at(-1)!)).toEqual({ end: true, keys: 6000, bytes: saved.bytes });

    const dst = await embedded(2);
    const restored = await restoreSnapshot(dst, file);
    expect(restored).toMatchObject({ store: 'default', from: 'default', keys: 6000, bytes: saved.bytes });

    const before = await allItems(src);
    const after = await allItems(dst);
    expect(after.size).toBe(6000);
    for (const [k, v, o] of entries) {
      const a = before.get(k)!;
      const b = after.get(k);
      expect(b, k).toBeDefined();
      expect(b!.value, k).toEqual(v);
      expect(b!.value, k).toEqual(a.value);
      expect(b!.labels, k).toEqual(a.labels);
      expect(b!.version).toBe(1);
      if (o?.ttlMs !== undefined) {
        // Restored with the time it had left at the save, counted again from the restore.
        expect(b!.expiresAt! - Date.now(), k).toBeGreaterThan(570_000);
        expect(b!.expiresAt! - Date.now(), k).toBeLessThanOrEqual(600_000);
      } else {
        expect(b!.expiresAt, k).toBeUndefined();
      }
    }
    expect(after.get('bin:00001')!.value).toBeInstanceOf(Uint8Array);
    expect(typeof (after.get('obj:00002')!.value as { big: unknown }).big).toBe('bigint');
  }, 60_000);

  it('encodes values losslessly: base64 of msgpack', () => {
    for (const v of ['', 'x', new Uint8Array([0, 1, 255]), { a: [1, 2n ** 63n - 1n, -1.5] }, null, true, 0]) {
      expect(decodeValue(encodeValue(v))).toEqual(v);
    }
    expect(() => decodeValue('not base64!')).toThrow(/base64/);
  });

  it('refuses a truncated, corrupt or foreign file, and writes nothing', async () => {
    const src = await embedded(2);
    await putAll(
      src,
      Array.from({ length: 300 }, (_, i) => [`k${i}`, `v${i}`.repeat(50)] as const),
    );
    const good = join(dir, 'good.gz');
    await saveSnapshot(src, good);
    const bytes = readFileSync(good);
    const text = gunzipSync(bytes).toString('utf8');
    const lines = text.trimEnd().split('\n');
    const dst = await embedded(1);

    const cases: [string, Buffer, RegExp][] = [
      // The gzip stream itself cut short.
      ['cut.gz', bytes.subarray(0, Math.floor(bytes.length / 2)), /is truncated: no trailer after \d+ keys/],
      // A clean gzip stream that lacks the trailer (the exact message of the brief).
      [
        'no-trailer.gz',
        gzipSync(`${lines.slice(0, -1).join('\n')}\n`),
        /no-trailer\.gz is truncated: no trailer after 300 keys$/,
      ],
      [
        'bad-count.gz',
        gzipSync(`${lines.slice(0, 1).concat(lines.slice(2)).join('\n')}\n`),
        /trailer counts 300 keys/,
      ],
      ['not-gzip.gz', Buffer.from(text), /corrupt or not gzip'd/],
      [
        'flipped.gz',
        Buffer.from(bytes.map((b, i) => (i === Math.floor(bytes.length / 2) ? b ^ 0xff : b))),
        /corrupt or not gzip'd|truncated|not valid JSON|line \d+/,
      ],
      ['foreign.gz', gzipSync('{"hello":"world"}\n'), /is not a dkv snapshot/],
      [
        'version2.gz',
        gzipSync(
          `${JSON.stringify({ ...JSON.parse(lines[0]!), version: 2 })}\n${lines.slice(1).join('\n')}\n`,
        ),
        /snapshot version 2; this dkv reads version 1/,
      ],
      [
        'bad-value.gz',
        gzipSync(`${lines[0]}\n{"k":"x","v":"@@@"}\n{"end":true,"keys":1,"bytes":1}\n`),
        /line 2: the value is not base64/,
      ],
      ['empty.gz', gzipSync(''), /empty|truncated/],
    ];
    for (const [name, content, message] of cases) {
      const f = join(dir, name);
      writeFileSync(f, content);
      const e = await errorOf(restoreSnapshot(dst, f));
      expect(e.code, name).toBe(ErrorCode.InvalidArgument);
      expect(e.message, name).toMatch(message);
      expect(e.message, name).toContain(name);
    }
    const missing = await errorOf(restoreSnapshot(dst, join(dir, 'no-such-file.gz')));
    expect(missing.code).toBe(ErrorCode.InvalidArgument);
    expect(missing.message).toMatch(/cannot read .*no-such-file\.gz/);
    expect(await dst.count()).toBe(0);
    // The good file still restores.
    expect((await restoreSnapshot(dst, good)).keys).toBe(300);
  }, 30_000);

  it('restores TTL keys with about their remaining time and skips expired ones', async () => {
    const src = await embedded(1);
    await src.put('short', 'gone soon', { ttlMs: 50 });
    await src.put('ttl', 'still here', { ttlMs: 3000 });
    await src.put('plain', 'forever');
    await new Promise((r) => setTimeout(r, 1000));
    const file = join(dir, 'ttl.gz');
    // The expired key may still be in the store until its tick sweeps it; the save skips it.
    const saved = await saveSnapshot(src, file);
    expect(saved.keys).toBe(2);
    const lines = gunzipSync(readFileSync(file)).toString('utf8').trimEnd().split('\n');
    const ttlLine = lines.map((l) => JSON.parse(l)).find((o) => o.k === 'ttl');
    expect(ttlLine.ttlMs).toBeGreaterThan(1000);
    expect(ttlLine.ttlMs).toBeLessThanOrEqual(2100);

    const dst = await embedded(1);
    await restoreSnapshot(dst, file);
    const item = await dst.get('ttl');
    expect(item!.expiresAt! - Date.now()).toBeGreaterThan(800);
    expect(item!.expiresAt! - Date.now()).toBeLessThanOrEqual(2100);
    expect(await dst.get('short')).toBeUndefined();
    expect((await dst.get('plain'))!.expiresAt).toBeUndefined();
    await new Promise((r) => setTimeout(r, 2300));
    expect(await dst.get('ttl')).toBeUndefined();
    expect((await dst.get('plain'))!.value).toBe('forever');
  }, 20_000);

  it('saves a key bound to a lease as a plain key (leases are sessions, not data)', async () => {
    const src = await embedded(1);
    const lease = await src.lease.grant(5000);
    await src.put('session:1', { user: 'ann' }, { lease: lease.id, labels: { role: 'web' } });
    await src.put('other', 'x');
    const file = join(dir, 'lease.gz');
    const saved = await saveSnapshot(src, file);
    expect(saved).toMatchObject({ keys: 2, leaseDropped: 1 });
    const text = gunzipSync(readFileSync(file)).toString('utf8');
    expect(text).not.toContain('lease');

    const dst = await embedded(1);
    await restoreSnapshot(dst, file);
    await lease.revoke();
    expect(await src.get('session:1')).toBeUndefined();
    const item = await dst.get('session:1');
    expect(item).toMatchObject({ value: { user: 'ann' }, labels: { role: 'web' } });
    expect(item!.lease).toBeUndefined();
    expect(item!.expiresAt).toBeUndefined();
  });

  it('overwrites same-named keys, leaves the others, and reports progress', async () => {
    const src = await embedded(2);
    await putAll(
      src,
      Array.from({ length: 2000 }, (_, i) => [`k${i}`, `new${i}`] as const),
    );
    const file = join(dir, 'overwrite.gz');
    const saveProgress: SnapshotProgress[] = [];
    await saveSnapshot(src, file, { progress: (p) => saveProgress.push(p), progressIntervalMs: 0 });
    expect(saveProgress.length).toBeGreaterThan(0);
    expect(saveProgress.at(-1)).toMatchObject({ phase: 'save', keys: 2000 });
    expect(saveProgress.at(-1)!.bytes).toBeGreaterThan(0);

    const dst = await embedded(2);
    await dst.put('k1', 'old');
    await dst.put('mine', 'kept');
    const progress: SnapshotProgress[] = [];
    const r = await restoreSnapshot(dst, file, {
      concurrency: 8,
      progress: (p) => progress.push(p),
      progressIntervalMs: 0,
    });
    expect(r.keys).toBe(2000);
    expect(progress.some((p) => p.phase === 'verify')).toBe(true);
    expect(progress.filter((p) => p.phase === 'restore').at(-1)!.keys).toBe(2000);
    expect(progress.filter((p) => p.phase === 'restore').at(-1)!.bytes).toBeGreaterThan(2000 * 10);
    expect((await dst.get('k1'))!.value).toBe('new1');
    expect((await dst.get('k1'))!.version).toBe(2);
    expect((await dst.get('mine'))!.value).toBe('kept');
    expect(await dst.count()).toBe(2001);
    const v = await verifySnapshot(file);
    expect(v).toMatchObject({ keys: 2000, header: { store: 'default' } });
  }, 30_000);
});

describe('dkv snapshot on a real cluster', () => {
  function capture(): { err: () => string; out: () => string } {
    let err = '';
    let out = '';
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      err += String(chunk);
      return true;
    });
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      out += String(chunk);
      return true;
    });
    return { err: () => err, out: () => out };
  }

  it('saves the default store and restores it into a new store made by --create', async () => {
    const cluster = await TestCluster.start({ nodes: 3 });
    const c = await cluster.client();
    const entries = mixedEntries(600);
    await putAll(c, entries);
    const servers = cluster.servers.join(',');
    const file = join(dir, 'cluster.gz');
    const cli = (...args: string[]) =>
      main(['node', 'dkv', '--servers', servers, '--timeout', '10000', ...args]);

    let io = capture();
    expect(await cli('snapshot', 'save', file, '--json')).toBe(EXIT.ok);
    const saved = JSON.parse(io.out()) as { keys: number; store: string };
    expect(saved).toMatchObject({ keys: 600, store: 'default' });
    vi.restoreAllMocks();

    // Without --create, a missing store is refused by name, and nothing is created.
    io = capture();
    expect(await cli('--store', 'copy', 'snapshot', 'restore', file)).toBe(EXIT.notFound);
    expect(io.err()).toMatch(/^error STORE_NOT_FOUND: store "copy" does not exist/);
    vi.restoreAllMocks();

    io = capture();
    const code = await cli('snapshot', 'restore', file, '--store', 'copy', '--create');
    const err = io.err();
    const out = io.out();
    vi.restoreAllMocks();
    expect(code, err).toBe(EXIT.ok);
    expect(err).toMatch(/created store copy: 6 partitions, 3 replicas/);
    expect(out).toMatch(/^restored 600 keys from .* into store copy/);

    const copy = await cluster.client({ store: 'copy' });
    const before = await allItems(c);
    const after = await allItems(copy);
    expect(after.size).toBe(600);
    for (const [k, v] of entries) {
      expect(after.get(k)?.value, k).toEqual(v);
      expect(after.get(k)?.labels, k).toEqual(before.get(k)?.labels);
    }
    const groups = await copy.groups();
    expect(groups.length).toBe((await c.groups()).length);
  }, 60_000);
});
