/**
 * TLS on a live in-process cluster of three nodes with certificates from `dkv certs`
 * (src/admin/certs.ts) and authentication on:
 * - clients verify the nodes against the CA; a client trusting another CA cannot connect;
 * - plaintext to the client port or the peer port is refused, and the node keeps serving;
 * - the peer port is mutual TLS: no certificate, a certificate from another CA, or a
 *   certificate the CA signed for someone else (not `node-<id>` of the id claimed) is
 *   refused, and the right node certificate is accepted (the positive control);
 * - a client certificate authenticates as the user its CN names;
 * - the admin port serves HTTPS.
 */

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type DevCertFiles, issueCert, makeCa, writeDevCerts } from '../../src/admin/certs.js';
import { addUser, initAuthFile, readAuthFile, writeAuthFile } from '../../src/admin/cmd-auth.js';
import { serveAdmin } from '../../src/node/main.js';
import { SeededRandom } from '../../src/random.js';
import { PeerTransport } from '../../src/transport/peer-links.js';
import { RpcClient } from '../../src/transport/rpc-client.js';
import { tlsSockets } from '../../src/transport/tls.js';
import { InProcCluster } from '../client/fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'dkv-tls-'));
let certs: DevCertFiles;
let c: InProcCluster;
const ROOT_PW = 'root-secret';
const other = makeCa({ commonName: 'Some other CA' });

const pem = (p: string): Buffer => readFileSync(p);

beforeAll(async () => {
  certs = await writeDevCerts(join(dir, 'certs'), {
    nodes: [1, 2, 3],
    clients: ['root', 'alice', 'mallory'],
  });
  const authFile = join(dir, 'auth.json');
  initAuthFile(authFile, ROOT_PW);
  writeAuthFile(authFile, addUser(readAuthFile(authFile), 'alice', 'alice-pw', []));
  c = await InProcCluster.start({
    config: (id) => ({
      tls: { ca: certs.ca, cert: certs.nodes[String(id)]!.cert, key: certs.nodes[String(id)]!.key },
      auth: { file: authFile },
    }),
  });
  c.clientDefaults = { tls: { ca: pem(certs.ca) }, auth: { user: 'root', password: ROOT_PW } };
}, 60_000);

afterAll(async () => {
  await c?.close();
  rmSync(dir, { recursive: true, force: true });
});

function plainCall(port: number, op: string): Promise<unknown> {
  return RpcClient.connect({ host: '127.0.0.1', port, frameBytesMax: 1 << 20, connectTimeoutMs: 2000 }).then(
    async (rc) => {
      try {
        return await rc.call(op, {}, { timeoutMs: 2000 });
      } finally {
        await rc.close();
      }
    },
  );
}

/** tlsHandshake dials with the given material and reports whether the handshake and first read survive. */
function tlsHandshake(port: number, opts: tls.ConnectionOptions): Promise<'ok' | string> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, ...opts }, () => {
      // TLS 1.3: a server that refuses our certificate says so after the client's handshake
      // completes; wait for the alert (or for nothing, which means accepted).
      const t = setTimeout(() => {
        s.destroy();
        resolve('ok');
      }, 300);
      s.once('close', () => {
        clearTimeout(t);
        resolve('closed by the server');
      });
    });
    s.on('error', (err) => resolve(`error: ${err.message}`));
  });
}

describe('TLS', () => {
  test('a client that trusts the CA and authenticates works', async () => {
    const cl = await c.client();
    await cl.put('tls/a', 'secret value');
    expect((await cl.get('tls/a'))?.value).toBe('secret value');
  });

  test('a client certificate authenticates as the user its CN names, without a password', async () => {
    const cl = await c.client({
      tls: { ca: pem(certs.ca), cert: pem(certs.clients.root!.cert), key: pem(certs.clients.root!.key) },
      auth: undefined,
    } as never);
    await cl.put('tls/by-cert', 1);
    expect((await cl.get('tls/by-cert'))?.value).toBe(1);
    // A CA-signed certificate whose CN names no user authenticates nobody.
    await expect(
      c.client({
        tls: {
          ca: pem(certs.ca),
          cert: pem(certs.clients.mallory!.cert),
          key: pem(certs.clients.mallory!.key),
        },
        auth: undefined,
        requestTimeoutMs: 3000,
      } as never),
    ).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
  });

  test('a client that trusts another CA cannot connect', async () => {
    await expect(c.client({ tls: { ca: other.certPem }, requestTimeoutMs: 2000 })).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      message: expect.stringMatching(/certificate/i),
    });
  });

  test('a client certificate from another CA is refused on the client port', async () => {
    const cert = issueCert(other, { commonName: 'root', usage: 'client' });
    const r = await tlsHandshake(c.cfgs[0]!.clientPort, {
      ca: pem(certs.ca),
      cert: cert.certPem,
      key: cert.keyPem,
    });
    expect(r).not.toBe('ok');
  });

  test('plaintext to the client port and to the peer port is refused, and the node keeps serving', async () => {
    const node = c.nodes[0]!;
    const before = node.securityStats.tlsHandshakeFailures;
    await expect(plainCall(c.cfgs[0]!.clientPort, 'hello')).rejects.toBeDefined();
    await expect(plainCall(c.cfgs[0]!.peerPort, 'hello')).rejects.toBeDefined();
    await new Promise((r) => setTimeout(r, 100));
    expect(node.securityStats.tlsHandshakeFailures).toBeGreaterThanOrEqual(before + 2);
    const cl = await c.client();
    await cl.put('tls/after-plaintext', 1);
  });

  test('the peer port wants a certificate: none, or one from another CA, is refused', async () => {
    const port = c.cfgs[1]!.peerPort;
    expect(await tlsHandshake(port, { ca: pem(certs.ca) })).not.toBe('ok');
    const foreign = issueCert(other, { commonName: 'node-1', usage: 'node' });
    expect(
      await tlsHandshake(port, { ca: pem(certs.ca), cert: foreign.certPem, key: foreign.keyPem }),
    ).not.toBe('ok');
    // The positive control: the CA's own node certificate gets through the handshake.
    const n1 = certs.nodes['1']!;
    expect(await tlsHandshake(port, { ca: pem(certs.ca), cert: pem(n1.cert), key: pem(n1.key) })).toBe('ok');
  });

  test('a process with a CA-signed certificate that is not the node it claims cannot join the peer network', async () => {
    // Node 1 goes away, so that node 2 would accept a connection from "node 1".
    await c.stopNode(1);
    const tryAs = async (cert: { cert: string; key: string }): Promise<boolean> => {
      let up = false;
      const t = new PeerTransport<unknown>({
        nodeId: 1,
        clusterId: 'dkv',
        listen: { host: '127.0.0.1', port: 0 },
        peers: new Map([[2, { host: '127.0.0.1', port: c.cfgs[1]!.peerPort }]]),
        frameBytesMax: 1 << 20,
        queueBytesMax: 1 << 20,
        reconnect: { initialDelayMs: 50, maxDelayMs: 200, multiplier: 2, jitter: 0 },
        random: new SeededRandom(1),
        validate: (m) => m,
        onMessages: () => {},
        onPeerState: (_p, isUp) => {
          if (isUp) up = true;
        },
        // Even holding the cluster's node secret (auth is on), the certificate must match.
        secret: () => readAuthFile(join(dir, 'auth.json')).nodeToken,
        sockets: tlsSockets(
          { ca: pem(certs.ca), cert: pem(cert.cert), key: pem(cert.key) },
          { requireClientCert: true },
        ),
      });
      await t.start();
      await new Promise((r) => setTimeout(r, 1500));
      await t.close();
      return up;
    };
    try {
      expect(await tryAs(certs.clients.root!)).toBe(false); // the CA signed it, but for "root"
      expect(await tryAs(certs.nodes['3']!)).toBe(false); // node 3's own certificate, claiming node 1
      expect(await tryAs(certs.nodes['1']!)).toBe(true); // the positive control
    } finally {
      await c.startNode(1);
      await c.waitLeaders();
    }
    const cl = await c.client();
    await cl.put('tls/after-impostors', 1);
    expect((await cl.get('tls/after-impostors'))?.value).toBe(1);
  }, 30_000);

  test('the admin port serves HTTPS', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const n2 = certs.nodes['2']!;
    const server = await serveAdmin(c.nodes[1]!, '127.0.0.1', port, {
      tls: { cert: pem(n2.cert), key: pem(n2.key) },
    });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        httpsGet({ host: '127.0.0.1', port, path: '/health', ca: pem(certs.ca) }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        }).on('error', reject);
      });
      expect(status).toBe(200);
      const plain = await new Promise<string>((resolve) => {
        httpGet({ host: '127.0.0.1', port, path: '/health' }, (res) => {
          res.resume();
          resolve(`status ${res.statusCode}`);
        }).on('error', (err) => resolve(`error ${err.message}`));
      });
      expect(plain).not.toBe('status 200');
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
