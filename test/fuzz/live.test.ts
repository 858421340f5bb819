/**
 * Hostile input against a live cluster (issue 10): three real node processes, some writes
 * acknowledged, then a stream of connections to every node's client, peer and admin (HTTP)
 * ports carrying random bytes, mutated valid frames, oversized length prefixes and broken
 * HTTP. Afterwards every node process must still run, every acknowledged write must read
 * back (linearizably), and the cluster must take new writes. `FUZZ_SCALE` multiplies the
 * number of hostile connections (`npm run fuzz:soak`).
 */
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { get as httpsGet } from 'node:https';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import { writeDevCerts } from '../../src/admin/certs.js';
import { initAuthFile } from '../../src/admin/cmd-auth.js';
import {
  devSecurityOf,
  freeBasePort,
  LocalCluster,
  type NodeSpec,
  planNodes,
  writeNodeConfigs,
} from '../../src/admin/dev.js';
import { DkvClient } from '../../src/client/client.js';
import { SeededRandom } from '../../src/random.js';
import { encodeFrame } from '../../src/transport/frame.js';

const SCALE = Math.max(1, Number(process.env.FUZZ_SCALE ?? 1) || 1);
const CONNECTIONS = Math.round(240 * SCALE);
const KEYS = 200;

let cluster: LocalCluster | undefined;
let dir: string | undefined;
let secureCluster: LocalCluster | undefined;
let secureDir: string | undefined;
const unexpectedExits: string[] = [];

afterAll(async () => {
  await cluster?.killAll();
  await secureCluster?.killAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
  if (secureDir) rmSync(secureDir, { recursive: true, force: true });
});

/**
 * send opens a connection (plain, or with `tls` a TLS session that presents no certificate and
 * checks none), writes the chunks, waits a little for any answer, and closes it.
 */
function send(port: number, chunks: readonly Uint8Array[], holdMs: number, tls = false): Promise<number> {
  return new Promise((resolve) => {
    let received = 0;
    const socket = tls
      ? tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false })
      : connect({ host: '127.0.0.1', port });
    const done = (): void => {
      socket.destroy();
      resolve(received);
    };
    socket.on('data', (d) => {
      received += d.length;
    });
    socket.on('error', done);
    socket.on('close', done);
    socket.on(tls ? 'secureConnect' : 'connect', () => {
      for (const c of chunks) socket.write(c);
      setTimeout(done, holdMs);
    });
  });
}

/** hostile builds one hostile payload for a port kind, from the seeded random source. */
function hostile(r: SeededRandom, kind: 'client' | 'peer' | 'admin'): Uint8Array[] {
  const bytes = (n: number): Uint8Array => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = r.int(256);
    return b;
  };
  const mutate = (b: Uint8Array): Uint8Array => {
    const out = Uint8Array.from(b);
    for (let i = 0, n = 1 + r.int(4); i < n && out.length > 0; i++) out[r.int(out.length)] = r.int(256);
    return r.chance(0.3) ? out.subarray(0, r.int(out.length + 1)) : out;
  };
  if (kind === 'admin') {
    const lines = [
      'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /metrics HTTP/1.1\r\n\r\n',
      `POST /health HTTP/1.1\r\nContent-Length: ${r.int(1 << 20)}\r\n\r\n`,
      `GET /${'a'.repeat(r.int(20_000))} HTTP/1.1\r\n\r\n`,
      'GET /api/history?window=-1 HTTP/1.1\r\n\r\n',
    ];
    const line = new TextEncoder().encode(lines[r.int(lines.length)]!);
    return [r.chance(0.5) ? mutate(line) : line, ...(r.chance(0.3) ? [bytes(r.int(512))] : [])];
  }
  switch (r.int(4)) {
    case 0:
      return [bytes(1 + r.int(256))];
    case 1: {
      // A length prefix far beyond frameBytesMax, or exactly at a body that never comes.
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, r.chance(0.5) ? 0xffff_fff0 : 1 + r.int(1 << 16));
      return [b, bytes(r.int(64))];
    }
    case 2: {
      const frame =
        kind === 'client'
          ? encodeFrame({
              id: 1 + r.int(100),
              op: 'cmd',
              args: { store: 'default', key: 'k', cmd: { op: 'put', key: 'k', value: 'x' } },
            })
          : encodeFrame({
              hello: { cluster: 'dkv', from: 1 + r.int(5) },
              g: r.int(8),
              m: { type: r.int(20), to: 1, from: 2, term: r.int(10) },
            });
      return [mutate(frame)];
    }
    default: {
      // Valid frames of nonsense values, several in one connection.
      const values: unknown[] = [
        { id: 0 },
        { id: 1, op: 'x'.repeat(200) },
        { id: 2, op: 'cmd', args: { store: 'default', key: 'k', cmd: { op: [1n] } } },
        { id: 3, op: 'read', args: null },
        { id: 4, op: 'admin', args: { action: { nested: [1, 2, 3] } } },
        [1, 2, 3],
        'hello',
        { g: -1, m: null },
      ];
      return Array.from({ length: 1 + r.int(4) }, () => encodeFrame(values[r.int(values.length)]));
    }
  }
}

describe('a live cluster under hostile input', () => {
  it(`keeps serving and keeps every acknowledged write through ${CONNECTIONS} hostile connections to client, peer and admin ports`, async () => {
    dir = await mkdtemp(join(tmpdir(), 'dkv-fuzz-live-'));
    const specs: NodeSpec[] = planNodes(dir, 3, await freeBasePort(3, dir));
    writeNodeConfigs(specs);
    const c = new LocalCluster(specs, {
      onExit: (id, exit) => {
        if (!exit.expected) unexpectedExits.push(`node ${id}: ${JSON.stringify(exit)}`);
      },
    });
    cluster = c;
    c.startAll();
    await c.waitReady(60_000);
    const client = await DkvClient.connect({ servers: c.servers, requestTimeoutMs: 10_000 });
    try {
      for (let i = 0; i < KEYS; i++) await client.put(`fz:${i}`, `v${i}`);
      const r = new SeededRandom(20261124);
      const kinds = ['client', 'peer', 'admin'] as const;
      let answered = 0;
      for (let done = 0; done < CONNECTIONS; done += 8) {
        // Eight at a time, with a few real writes interleaved.
        await Promise.all(
          Array.from({ length: 8 }, () => {
            const spec = specs[r.int(specs.length)]!;
            const kind = kinds[r.int(kinds.length)]!;
            const port =
              kind === 'client' ? spec.clientPort : kind === 'peer' ? spec.peerPort : spec.adminPort;
            return send(port, hostile(r, kind), 20 + r.int(80)).then((n) => {
              if (n > 0) answered++;
            });
          }),
        );
        await client.put(`fz:during:${done}`, done);
      }
      expect(unexpectedExits).toEqual([]);
      // Every acknowledged write is there, and the cluster still takes writes.
      for (let i = 0; i < KEYS; i++) expect((await client.get(`fz:${i}`))?.value).toBe(`v${i}`);
      await client.put('fz:after', 'ok');
      expect((await client.get('fz:after'))?.value).toBe('ok');
      const health = await Promise.all(
        specs.map(async (s) => (await fetch(`http://127.0.0.1:${s.adminPort}/health`)).status),
      );
      expect(health).toEqual([200, 200, 200]);
      // Some hostile connections got an answer (an error frame or an HTTP status), not only silence.
      expect(answered).toBeGreaterThan(0);
    } finally {
      await client.close();
    }
  });
});

describe('a live cluster with TLS and authentication under hostile input', () => {
  it(`keeps serving through ${CONNECTIONS} hostile connections, plaintext and inside TLS sessions that never authenticate`, async () => {
    secureDir = await mkdtemp(join(tmpdir(), 'dkv-fuzz-secure-'));
    const d = secureDir;
    const specs: NodeSpec[] = planNodes(d, 3, await freeBasePort(3, d));
    const certs = await writeDevCerts(join(d, 'certs'), { nodes: [1, 2, 3], clients: ['root'] });
    const authFile = join(d, 'auth.json');
    initAuthFile(authFile, 'root-pw');
    writeNodeConfigs(specs, (spec) => ({
      tls: { ca: certs.ca, cert: certs.nodes[String(spec.id)]!.cert, key: certs.nodes[String(spec.id)]!.key },
      auth: { file: authFile },
    }));
    const sec = devSecurityOf(d, specs);
    const exits: string[] = [];
    const c = new LocalCluster(
      specs,
      {
        onExit: (id, exit) => {
          if (!exit.expected) exits.push(`node ${id}: ${JSON.stringify(exit)}`);
        },
      },
      sec.connector,
    );
    secureCluster = c;
    c.startAll();
    await c.waitReady(60_000);
    const ca = readFileSync(certs.ca);
    const client = await DkvClient.connect({
      servers: c.servers,
      requestTimeoutMs: 10_000,
      tls: { ca },
      auth: { user: 'root', password: 'root-pw' },
    });
    try {
      for (let i = 0; i < KEYS; i++) await client.put(`fz:${i}`, `v${i}`);
      const r = new SeededRandom(20261125);
      const kinds = ['client', 'peer', 'admin'] as const;
      for (let done = 0; done < CONNECTIONS; done += 8) {
        await Promise.all(
          Array.from({ length: 8 }, () => {
            const spec = specs[r.int(specs.length)]!;
            const kind = kinds[r.int(kinds.length)]!;
            const port =
              kind === 'client' ? spec.clientPort : kind === 'peer' ? spec.peerPort : spec.adminPort;
            // Half in plaintext (refused at the TLS layer), half inside a TLS session: the
            // client and admin ports let anyone finish a handshake, the peer port does not.
            const payload = hostile(r, kind);
            return send(port, payload, 20 + r.int(80), r.chance(0.5));
          }),
        );
        await client.put(`fz:during:${done}`, done);
      }
      expect(exits).toEqual([]);
      for (let i = 0; i < KEYS; i++) expect((await client.get(`fz:${i}`))?.value).toBe(`v${i}`);
      await client.put('fz:after', 'ok');
      expect((await client.get('fz:after'))?.value).toBe('ok');
      const health = await Promise.all(
        specs.map(
          (s) =>
            new Promise<number>((resolve, reject) => {
              httpsGet({ host: '127.0.0.1', port: s.adminPort, path: '/health', ca }, (res) => {
                res.resume();
                resolve(res.statusCode ?? 0);
              }).on('error', reject);
            }),
        ),
      );
      expect(health).toEqual([200, 200, 200]);
    } finally {
      await client.close();
    }
  });
});
