/**
 * `dkv certs` (src/admin/certs.ts), checked with tools other than the one that made the
 * certificates: node's X509Certificate (issuer, signature, SANs, extended key usage,
 * validity), real TLS handshakes with node:tls on 127.0.0.1 (mutual TLS accepted with the
 * CA's certificates, refused with another CA's or none), and the files on disk (modes, CA
 * reuse, keep vs force). RSA keys take ~0.1 s each, so the shared certificates are made once.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { Command } from 'commander';
import forge from 'node-forge';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  addCertsCommands,
  type CertPair,
  DEFAULT_CA_NAME,
  issueCert,
  makeCa,
  nodeIdOfCommonName,
  parseNodesOption,
  writeDevCerts,
} from '../../src/admin/certs.js';
import { ErrorCode, isDkvError } from '../../src/errors.js';

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const DAY_MS = 86_400_000;

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'dkv-certs-'));
  dirs.push(d);
  return d;
}

/** expectInvalid runs fn and expects an INVALID_ARGUMENT whose message contains `names`. */
async function expectInvalid(fn: () => unknown, names: string): Promise<void> {
  try {
    await fn();
  } catch (err) {
    expect(isDkvError(err, ErrorCode.InvalidArgument), String(err)).toBe(true);
    expect((err as Error).message).toContain(names);
    return;
  }
  expect.fail(`no error; wanted INVALID_ARGUMENT naming ${names}`);
}

let ca: CertPair;
let otherCa: CertPair;
let node1: CertPair;
let node2: CertPair;
let client: CertPair;
let strangerNode: CertPair;
beforeAll(() => {
  ca = makeCa({ days: 30 });
  otherCa = makeCa({ commonName: 'someone else' });
  node1 = issueCert(ca, { commonName: 'node-1', usage: 'node', days: 10 });
  node2 = issueCert(ca, { commonName: 'node-2', usage: 'node' });
  client = issueCert(ca, { commonName: 'root', usage: 'client' });
  strangerNode = issueCert(otherCa, { commonName: 'node-2', usage: 'node' });
});

describe('makeCa and issueCert', () => {
  it('makes a self-signed CA with cA and keyCertSign + cRLSign', () => {
    const x = new X509Certificate(ca.certPem);
    expect(x.ca).toBe(true);
    expect(x.subject).toBe(`CN=${DEFAULT_CA_NAME}`);
    expect(x.issuer).toBe(x.subject);
    expect(x.checkIssued(x)).toBe(true);
    expect(x.verify(x.publicKey)).toBe(true);
    const ku = forge.pki.certificateFromPem(ca.certPem).getExtension('keyUsage') as Record<string, unknown>;
    expect(ku).toMatchObject({ keyCertSign: true, cRLSign: true, critical: true });
    expect(new X509Certificate(otherCa.certPem).subject).toBe('CN=someone else');
    const validTo = new Date(x.validTo).getTime();
    expect(Math.abs(validTo - (Date.now() + 30 * DAY_MS))).toBeLessThan(60_000);
    expect(new Date(x.validFrom).getTime()).toBeLessThanOrEqual(Date.now());
  });

  it('issues node certificates the CA verifies, for serverAuth and clientAuth, with SANs', () => {
    const caX = new X509Certificate(ca.certPem);
    const x = new X509Certificate(node1.certPem);
    expect(x.subject).toBe('CN=node-1');
    expect(x.issuer).toBe(`CN=${DEFAULT_CA_NAME}`);
    expect(x.ca).toBe(false);
    expect(x.checkIssued(caX)).toBe(true);
    expect(x.verify(caX.publicKey)).toBe(true);
    expect(x.verify(new X509Certificate(otherCa.certPem).publicKey)).toBe(false);
    expect(x.subjectAltName).toBe('IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:localhost');
    expect(x.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(x.checkHost('localhost')).toBe('localhost');
    expect(x.checkHost('example.com')).toBeUndefined();
    expect([...(x.keyUsage ?? [])].sort()).toEqual([SERVER_AUTH, CLIENT_AUTH]);
    const validTo = new Date(x.validTo).getTime();
    expect(Math.abs(validTo - (Date.now() + 10 * DAY_MS))).toBeLessThan(60_000);
    // The key is the certificate's.
    expect(x.checkPrivateKey(createPrivateKey(node1.keyPem))).toBe(true);
  });

  it('maps hosts to IP and DNS entries, IPv6 and bracketed forms too', () => {
    const hosts = ['10.1.2.3', '[fe80::1:2]', '::ffff:10.0.0.1', 'db-1.internal', '*.example.com'];
    const x = new X509Certificate(issueCert(ca, { commonName: 'node-7', usage: 'node', hosts }).certPem);
    expect(x.subjectAltName).toBe(
      'IP Address:10.1.2.3, IP Address:FE80:0:0:0:0:0:1:2, IP Address:0:0:0:0:0:FFFF:A00:1, DNS:db-1.internal, DNS:*.example.com',
    );
    expect(x.checkHost('a.example.com')).toBe('*.example.com');
    expect(x.checkIP('10.1.2.3')).toBe('10.1.2.3');
  });

  it('issues client certificates for clientAuth only, without SANs', () => {
    const x = new X509Certificate(client.certPem);
    expect(x.subject).toBe('CN=root');
    expect(x.checkIssued(new X509Certificate(ca.certPem))).toBe(true);
    expect(x.keyUsage).toEqual([CLIENT_AUTH]);
    expect(x.subjectAltName).toBeUndefined();
  });

  it('gives each certificate a random positive 16-byte serial', () => {
    const serials = [ca, otherCa, node1, node2, client].map(
      (p) => new X509Certificate(p.certPem).serialNumber,
    );
    expect(new Set(serials).size).toBe(serials.length);
    for (const s of serials) {
      expect(s).toMatch(/^[0-9A-F]{32}$/);
      expect(Number.parseInt(s.slice(0, 2), 16)).toBeGreaterThan(0);
      expect(Number.parseInt(s.slice(0, 2), 16)).toBeLessThan(0x80);
    }
  });

  it('refuses bad input', async () => {
    await expectInvalid(() => makeCa({ days: 0 }), 'days');
    await expectInvalid(() => makeCa({ days: 3651 }), 'days');
    await expectInvalid(
      () => issueCert(ca, { commonName: 'node-1', usage: 'node', hosts: ['bad host'] }),
      'bad host',
    );
    await expectInvalid(() => issueCert(ca, { commonName: 'node-1', usage: 'node', hosts: [] }), 'host');
    await expectInvalid(() => issueCert(ca, { commonName: '', usage: 'client' }), 'common name');
  });
});

// ---------------------------------------------------------------- real TLS handshakes

interface Attempt {
  /** What the server sent back (it greets a verified client by its CN); '' if refused. */
  readonly data: string;
  readonly clientError?: string;
  /** Handshakes the server completed and refused. */
  readonly serverAccepted: number;
  readonly serverRefused: number;
}

/**
 * handshake runs a mutual-TLS server with `server` (requestCert, rejectUnauthorized, the CA)
 * and one client connection with `opts`; it resolves when the client socket closes.
 */
async function handshake(
  server: CertPair,
  opts: { cert?: CertPair; trust: CertPair; servername?: string },
): Promise<Attempt> {
  let serverAccepted = 0;
  let serverRefused = 0;
  const srv = createServer(
    { cert: server.certPem, key: server.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true },
    (s: TLSSocket) => {
      serverAccepted++;
      s.on('error', () => {});
      const cn = s.getPeerCertificate().subject?.CN;
      s.end(`hello ${String(cn)}`);
    },
  );
  srv.on('tlsClientError', () => {
    serverRefused++;
  });
  try {
    await new Promise<void>((res, rej) => {
      srv.once('error', rej);
      srv.listen(0, '127.0.0.1', () => res());
    });
    const port = (srv.address() as AddressInfo).port;
    const result = await new Promise<{ data: string; clientError?: string }>((res) => {
      let data = '';
      let clientError: string | undefined;
      const timer = setTimeout(() => sock.destroy(new Error('test timeout')), 10_000);
      const sock = connect({
        host: '127.0.0.1',
        port,
        ca: opts.trust.certPem,
        ...(opts.servername !== undefined && { servername: opts.servername }),
        ...(opts.cert !== undefined && { cert: opts.cert.certPem, key: opts.cert.keyPem }),
      });
      sock.setEncoding('utf8');
      sock.on('data', (d: string) => {
        data += d;
      });
      sock.on('error', (err) => {
        clientError ??= err.message;
      });
      sock.on('close', () => {
        clearTimeout(timer);
        res({ data, ...(clientError !== undefined && { clientError }) });
      });
    });
    // The server's view of a refused handshake may land just after the client's close.
    for (let i = 0; i < 50 && serverAccepted + serverRefused === 0; i++)
      await new Promise((r) => setTimeout(r, 20));
    return { ...result, serverAccepted, serverRefused };
  } finally {
    await new Promise<void>((res) => srv.close(() => res()));
  }
}

describe('mutual TLS with the certificates', () => {
  it("accepts node-2 at node-1's server, and node-2 verifies node-1 as 127.0.0.1", async () => {
    const a = await handshake(node1, { cert: node2, trust: ca });
    expect(a.clientError).toBeUndefined();
    expect(a.data).toBe('hello node-2');
    expect([a.serverAccepted, a.serverRefused]).toEqual([1, 0]);
  });

  it('accepts a client certificate, and verifies the server by its DNS name too', async () => {
    const a = await handshake(node1, { cert: client, trust: ca, servername: 'localhost' });
    expect(a.clientError).toBeUndefined();
    expect(a.data).toBe('hello root');
  });

  it("refuses a client whose certificate another CA signed, even with a node's CN", async () => {
    const a = await handshake(node1, { cert: strangerNode, trust: ca });
    expect(a.data).toBe('');
    expect([a.serverAccepted, a.serverRefused]).toEqual([0, 1]);
  });

  it('refuses a client without a certificate', async () => {
    const a = await handshake(node1, { trust: ca });
    expect(a.data).toBe('');
    expect([a.serverAccepted, a.serverRefused]).toEqual([0, 1]);
  });

  it('a client refuses a server with a client-only certificate, another CA, or another name', async () => {
    for (const [server, servername] of [
      [client, undefined],
      [strangerNode, undefined],
      [node1, 'example.com'],
    ] as const) {
      const a = await handshake(server, { cert: node2, trust: ca, ...(servername && { servername }) });
      expect(a.data).toBe('');
      expect(a.clientError).toBeDefined();
    }
  });
});

// ---------------------------------------------------------------- files

function mode(path: string): number {
  return statSync(path).mode & 0o777;
}

describe('writeDevCerts', () => {
  it('writes the CA, node and client files with private modes, and reuses them', async () => {
    const dir = join(tempDir(), 'certs');
    const lines: string[] = [];
    const r1 = await writeDevCerts(dir, {
      nodes: [1, 2],
      clients: ['root', 'alice'],
      log: (l) => lines.push(l),
    });
    expect(r1.dir).toBe(dir);
    expect(r1.ca).toBe(join(dir, 'ca.pem'));
    expect(r1.caKey).toBe(join(dir, 'ca-key.pem'));
    expect(r1.nodes).toEqual({
      '1': { cert: join(dir, 'node-1.pem'), key: join(dir, 'node-1-key.pem') },
      '2': { cert: join(dir, 'node-2.pem'), key: join(dir, 'node-2-key.pem') },
    });
    expect(r1.clients.alice).toEqual({
      cert: join(dir, 'client-alice.pem'),
      key: join(dir, 'client-alice-key.pem'),
    });
    expect(r1.written).toHaveLength(10);
    expect(r1.kept).toEqual([]);
    expect(lines).toHaveLength(10);
    expect(mode(dir)).toBe(0o700);
    for (const k of [r1.caKey, r1.nodes['1']?.key, r1.clients.root?.key]) expect(mode(k ?? '')).toBe(0o600);
    expect(mode(r1.ca)).toBe(0o644);

    const caX = new X509Certificate(readFileSync(r1.ca));
    const n2 = new X509Certificate(readFileSync(join(dir, 'node-2.pem')));
    expect(n2.subject).toBe('CN=node-2');
    expect(n2.verify(caX.publicKey)).toBe(true);
    expect(new X509Certificate(readFileSync(join(dir, 'client-alice.pem'))).subject).toBe('CN=alice');

    // A second run with more nodes keeps the CA and the first nodes' files; node 3 chains to it.
    const before = new Map(
      [r1.ca, r1.caKey, join(dir, 'node-1.pem'), join(dir, 'node-1-key.pem')].map((p) => [
        p,
        readFileSync(p, 'utf8'),
      ]),
    );
    const r2 = await writeDevCerts(dir, { nodes: [1, 2, 3], clients: ['root'] });
    for (const [p, text] of before) expect(readFileSync(p, 'utf8')).toBe(text);
    expect(r2.written).toEqual([join(dir, 'node-3.pem'), join(dir, 'node-3-key.pem')]);
    expect(r2.kept).toContain(r1.ca);
    expect(r2.kept).toContain(join(dir, 'node-1.pem'));
    const n3 = new X509Certificate(readFileSync(join(dir, 'node-3.pem')));
    expect(n3.checkIssued(caX) && n3.verify(caX.publicKey)).toBe(true);

    // force reissues the node and client certificates, never the CA.
    const r3 = await writeDevCerts(dir, { nodes: [1], clients: [], force: true, hosts: ['10.0.0.9'] });
    expect(r3.written).toEqual([join(dir, 'node-1.pem'), join(dir, 'node-1-key.pem')]);
    expect(readFileSync(r1.ca, 'utf8')).toBe(before.get(r1.ca));
    const n1 = new X509Certificate(readFileSync(join(dir, 'node-1.pem')));
    expect(n1.subjectAltName).toBe('IP Address:10.0.0.9');
    expect(n1.verify(caX.publicKey)).toBe(true);
    expect(mode(join(dir, 'node-1-key.pem'))).toBe(0o600);
  });

  it('refuses a kept certificate another CA signed, and half a CA', async () => {
    const dir = tempDir();
    await writeDevCerts(dir, { nodes: [1], clients: [] });
    writeFileSync(join(dir, 'node-1.pem'), strangerNode.certPem);
    await expectInvalid(
      () => writeDevCerts(dir, { nodes: [1], clients: [] }),
      'node-1.pem was not issued by',
    );
    const r = await writeDevCerts(dir, { nodes: [1], clients: [], force: true });
    expect(r.written).toContain(join(dir, 'node-1.pem'));
    rmSync(join(dir, 'ca-key.pem'));
    await expectInvalid(() => writeDevCerts(dir, { nodes: [1], clients: [] }), 'ca-key.pem is missing');
    writeFileSync(join(dir, 'ca-key.pem'), otherCa.keyPem);
    await expectInvalid(() => writeDevCerts(dir, { nodes: [1], clients: [] }), 'is not the key of');
  });

  it('refuses bad input, naming it', async () => {
    const dir = tempDir();
    await expectInvalid(() => writeDevCerts(dir, { nodes: [0] }), 'node ids');
    await expectInvalid(() => writeDevCerts(dir, { nodes: [1.5] }), 'node ids');
    await expectInvalid(() => writeDevCerts(dir, { nodes: [1], days: 0 }), 'days');
    await expectInvalid(() => writeDevCerts(dir, { nodes: [1], clients: ['a/b'] }), 'a/b');
    await expectInvalid(() => writeDevCerts(dir, { nodes: [1], clients: ['node-9'] }), 'node-9');
    const file = join(dir, 'file');
    writeFileSync(file, 'x');
    await expectInvalid(() => writeDevCerts(file, { nodes: [1] }), `${file} exists and is not a directory`);
  });
});

// ---------------------------------------------------------------- CLI

describe('dkv certs', () => {
  let out: string[] = [];
  beforeAll(() => {
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      out.push(String(chunk));
      return true;
    });
  });
  afterAll(() => vi.restoreAllMocks());

  async function run(...args: string[]): Promise<string> {
    out = [];
    const program = new Command('dkv').option('--json').exitOverride();
    addCertsCommands(program);
    await program.parseAsync(['node', 'dkv', ...args]);
    return out.join('');
  }

  it('writes --nodes N and the clients, and prints a JSON document with --json', async () => {
    const dir = join(tempDir(), 'c');
    const doc = JSON.parse(
      await run(
        '--json',
        'certs',
        '--dir',
        dir,
        '--nodes',
        '2',
        '--client',
        'root',
        '--client',
        'bob',
        '--days',
        '7',
      ),
    ) as Record<string, unknown>;
    expect(Object.keys(doc).sort()).toEqual(['ca', 'clients', 'dir', 'kept', 'nodes', 'written']);
    expect(doc.ca).toBe(join(dir, 'ca.pem'));
    expect(Object.keys(doc.nodes as object)).toEqual(['1', '2']);
    expect(Object.keys(doc.clients as object)).toEqual(['root', 'bob']);
    expect(doc.written).toHaveLength(10);
    const x = new X509Certificate(readFileSync(join(dir, 'client-bob.pem')));
    expect(Math.abs(new Date(x.validTo).getTime() - (Date.now() + 7 * DAY_MS))).toBeLessThan(60_000);

    const text = await run('certs', '--dir', dir, '--nodes', '2,5', '--hosts', 'db.local,10.0.0.2');
    expect(text).toContain(`kept    ${join(dir, 'node-2.pem')}`);
    expect(text).toContain(`wrote   ${join(dir, 'node-5.pem')}`);
    expect(text).toContain(`"tls": {"ca":"${join(dir, 'ca.pem')}","cert":"${join(dir, 'node-2.pem')}"`);
    expect(new X509Certificate(readFileSync(join(dir, 'node-5.pem'))).subjectAltName).toBe(
      'DNS:db.local, IP Address:10.0.0.2',
    );
  });

  it('names the flag on bad input', async () => {
    const dir = tempDir();
    await expectInvalid(() => run('certs', '--dir', dir, '--nodes', '0'), '--nodes');
    await expectInvalid(() => run('certs', '--dir', dir, '--nodes', '1,x'), '--nodes');
    await expectInvalid(() => run('certs', '--dir', dir, '--days', '3651'), '--days');
    await expectInvalid(() => run('certs', '--dir', dir, '--client', 'a b'), '--client');
    await expectInvalid(() => run('certs', '--dir', dir, '--hosts', 'a b'), '--hosts');
    const file = join(dir, 'f');
    writeFileSync(file, '');
    await expectInvalid(() => run('certs', '--dir', file), '--dir');
  });
});

describe('nodeIdOfCommonName and parseNodesOption', () => {
  it('reads node-<id> and nothing else', () => {
    expect(nodeIdOfCommonName('node-1')).toBe(1);
    expect(nodeIdOfCommonName('node-42')).toBe(42);
    expect(nodeIdOfCommonName('node-65535')).toBe(65535);
    for (const cn of [
      'node-0',
      'node-01',
      'node-65536',
      'node-',
      'node-1a',
      'Node-1',
      ' node-1',
      'node-1 ',
      'root',
      'xnode-1',
      'node--1',
      'node-1.5',
    ])
      expect(nodeIdOfCommonName(cn), cn).toBeUndefined();
  });

  it('reads a count or a list', () => {
    expect(parseNodesOption('3')).toEqual([1, 2, 3]);
    expect(parseNodesOption('1,2,3')).toEqual([1, 2, 3]);
    expect(parseNodesOption('4, 7,4')).toEqual([4, 7]);
    expect(parseNodesOption('9,')).toEqual([9]);
  });
});
