/**
 * The API suite (api-suite.ts) against embedded mode (src/embedded.ts): the same DkvClient on
 * a single-node store in this process, with no socket. Then what only embedded mode has: no
 * socket is ever opened, a persisted `dir` reopens with its data and its layout, a `dir` in
 * use is IN_USE, and an in-memory store leaves nothing behind.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DkvClient } from '../../src/client/client.js';
import type { InProcOptions } from '../../src/client/embedded-hook.js';
import { openEmbedded } from '../../src/embedded.js';
import { ErrorCode, isDkvError } from '../../src/errors.js';
import { apiSuite } from './api-suite.js';

/** inProc is DkvClient.inProc once client.ts has it, else the embedded entry directly. */
function inProc(opts: InProcOptions = {}): Promise<DkvClient> {
  const f = (DkvClient as unknown as { inProc?: (o: InProcOptions) => Promise<DkvClient> }).inProc;
  return f !== undefined ? f.call(DkvClient, opts) : openEmbedded(opts);
}

apiSuite('embedded, 3 partitions', async () => {
  const client = await inProc({ partitions: 3 });
  return { client, close: () => client.close() };
});

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await Promise.resolve(f()).catch(() => undefined);
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'dkv-embedded-test-'));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** tcpHandles counts this process's TCP sockets and servers. */
function tcpHandles(): number {
  return process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP')).length;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    if (isDkvError(err)) return err.code;
    throw err;
  }
}

describe('embedded mode', () => {
  it('opens no socket', async () => {
    const before = tcpHandles();
    const client = await inProc();
    cleanups.push(() => client.close());
    await client.put('k', 'v');
    expect((await client.get('k'))?.value).toBe('v');
    await client.status();
    expect(tcpHandles()).toBe(before);
    await client.close();
    expect(tcpHandles()).toBe(before);
  });

  it('persists to dir: reopens with its data, keeps its layout, and refuses a second opener', async () => {
    const dir = tempDir();
    const a = await inProc({ dir, partitions: 2 });
    for (let i = 0; i < 50; i++) await a.put(`p/${i}`, { i });
    const counterValue = await a
      .counter('pc')
      .add(7)
      .catch(() => undefined);
    // The same dir while it is open: IN_USE.
    expect(await codeOf(inProc({ dir }))).toBe(ErrorCode.InUse);
    await a.close();

    const b = await inProc({ dir });
    cleanups.push(() => b.close());
    for (let i = 0; i < 50; i++) expect((await b.get(`p/${i}`))?.value).toEqual({ i });
    if (counterValue !== undefined) expect(Number(await b.counter('pc').get())).toBe(7);
    expect((await b.groups()).length).toBe(2);
    expect((await b.put('p/0', 'new')).version).toBe(2);
    await b.close();

    expect(await codeOf(inProc({ dir, partitions: 3 }))).toBe(ErrorCode.InvalidArgument);
    expect(await codeOf(inProc({ dir, store: 'other' }))).toBe(ErrorCode.InvalidArgument);
  });

  it('in memory: two stores side by side, each removed on close', async () => {
    const shm = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
    const mine = (): string[] => readdirSync(shm).filter((n) => n.startsWith('dkv-inproc-'));
    const before = new Set(mine());
    const a = await inProc();
    const b = await inProc();
    cleanups.push(() => a.close());
    cleanups.push(() => b.close());
    await a.put('k', 'in a');
    await b.put('k', 'in b');
    expect((await a.get('k'))?.value).toBe('in a');
    expect((await b.get('k'))?.value).toBe('in b');
    expect(mine().filter((n) => !before.has(n)).length).toBe(2);
    await a.close();
    await b.close();
    expect(mine().filter((n) => !before.has(n))).toEqual([]);
    expect(await codeOf(a.get('k'))).toBe(ErrorCode.Cancelled);
  });

  it('keeps the transport stream semantics in process: backpressure paces a slow consumer, one that stops reading is cut off', async () => {
    const client = await inProc();
    cleanups.push(() => client.close());
    const group = await client.groupOfKey('s/0');
    // A consumer slower than the writes, with a small buffer: paced, nothing lost, no cut.
    const slow = await client.openStream(group, 'watch', { prefix: 's/' }, 'leader', { bufferMax: 4 });
    const reading = (async () => {
      const keys: string[] = [];
      for await (const m of slow) {
        const e = (m as { event?: { key: string } }).event;
        if (e !== undefined) keys.push(e.key);
        if (keys.length === 30) break;
        await sleep(2);
      }
      return keys;
    })();
    for (let i = 0; i < 30; i++) await client.put(`s/${String(i).padStart(2, '0')}`, i);
    expect(await reading).toEqual(Array.from({ length: 30 }, (_, i) => `s/${String(i).padStart(2, '0')}`));
    // A consumer that stops reading: at most bufferMax items, then SLOW_CONSUMER.
    const stuck = await client.openStream(group, 'watch', { prefix: 't/' }, 'leader', { bufferMax: 4 });
    for (let i = 0; i < 20; i++) await client.put(`t/${i}`, i);
    await sleep(100); // the node's paced retries reach the full buffer
    const seen: unknown[] = [];
    let failure: unknown;
    try {
      for await (const m of stuck) seen.push(m);
    } catch (err) {
      failure = err;
    }
    expect(seen.length).toBeLessThanOrEqual(4);
    expect(isDkvError(failure) && failure.code).toBe(ErrorCode.SlowConsumer);
    // A stream open when the client closes ends with CANCELLED.
    const open = await client.openStream(group, 'watch', { prefix: 'z/' }, 'leader');
    const next = codeOf(open[Symbol.asyncIterator]().next());
    await client.close();
    expect(await next).toBe(ErrorCode.Cancelled);
  });

  it('validates its options', async () => {
    expect(await codeOf(inProc({ partitions: 0 }))).toBe(ErrorCode.InvalidArgument);
    expect(await codeOf(inProc({ dir: '' }))).toBe(ErrorCode.InvalidArgument);
  });
});
