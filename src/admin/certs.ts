/**
 * `dkv certs`: a development CA and the certificates a TLS cluster needs, so that a secure
 * local cluster (`dkv dev --tls`) is one command and a real one is a few.
 *
 * - The CA is self-signed (basicConstraints cA, keyUsage keyCertSign + cRLSign).
 * - A node certificate (CN `node-<id>`) is both a server's (client, peer and admin ports)
 *   and a client's (a node dials its peers with it): extendedKeyUsage serverAuth + clientAuth,
 *   and a subjectAltName per host (an IP entry for an IP literal, a DNS entry otherwise). Peers
 *   check that the CN names the node id a peer claims (nodeIdOfCommonName).
 * - A client certificate (CN `<name>`, a user of the auth file) has clientAuth only. Names
 *   starting with `node-` are refused: the nodes treat such a CN as a node (full access).
 *
 * Keys are RSA 2048 made by node's crypto (native and fast; node-forge's own keygen is slow)
 * and handed to node-forge through PEM, which builds and signs the X.509 v3 certificates
 * (SHA-256, random positive 16-byte serials). writeDevCerts reuses a CA it finds in the
 * directory, so a node added later chains to the same CA, and keeps existing certificates
 * unless told to reissue them. Key files are mode 0600, written atomically (temp file, rename).
 */
import { createPrivateKey, generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import forge from 'node-forge';
import { DkvError, ErrorCode, quote } from '../errors.js';
import { globals, intOption, toJson } from './data-commands.js';

/** CertPair is a certificate and its private key, both PEM. */
export interface CertPair {
  readonly certPem: string;
  readonly keyPem: string;
}

/** CertFiles are the paths of a certificate and its key. */
export interface CertFiles {
  readonly cert: string;
  readonly key: string;
}

/** DevCertFiles lists what writeDevCerts made or found: every path, and which were written or kept. */
export interface DevCertFiles {
  /** The directory, resolved to an absolute path. */
  readonly dir: string;
  /** The CA certificate (what every node and client trusts). */
  readonly ca: string;
  /** The CA's private key (needed only to issue more certificates). */
  readonly caKey: string;
  /** Per node id (as a string key, so it is JSON as is). */
  readonly nodes: Record<string, CertFiles>;
  /** Per client name. */
  readonly clients: Record<string, CertFiles>;
  /** The files this call wrote. */
  readonly written: string[];
  /** The files that existed and were kept. */
  readonly kept: string[];
}

/** CERT_USAGE are the kinds of certificate issueCert makes. */
export const CERT_USAGE = { node: 'node', client: 'client' } as const;
/** CertUsage is 'node' (serverAuth + clientAuth, with SANs) or 'client' (clientAuth only). */
export type CertUsage = (typeof CERT_USAGE)[keyof typeof CERT_USAGE];

/** DEFAULT_CA_NAME is the CA's CN unless one is given. */
export const DEFAULT_CA_NAME = 'DKV development CA';
/** DEFAULT_HOSTS are the names a node certificate covers unless told otherwise: this machine. */
export const DEFAULT_HOSTS: readonly string[] = ['127.0.0.1', '::1', 'localhost'];
/** DEFAULT_DAYS is how long certificates are valid by default (825: what browsers accept for servers). */
export const DEFAULT_DAYS = 825;
/** DAYS_MAX bounds a certificate's validity. */
export const DAYS_MAX = 3650;
/** NODE_ID_MAX is the largest node id (as in the node config). */
export const NODE_ID_MAX = 0xffff;
/** CERTS_PER_RUN_MAX bounds the nodes, and separately the clients, one writeDevCerts call makes. */
export const CERTS_PER_RUN_MAX = 256;
/** HOSTS_MAX bounds the subjectAltName entries of a node certificate. */
export const HOSTS_MAX = 64;

const RSA_BITS = 2048;
const SERIAL_BYTES = 16;
const CN_LENGTH_MAX = 64; // X.520 ub-common-name
const CLOCK_SKEW_MS = 5 * 60_000; // notBefore is back-dated by this much
const DAY_MS = 86_400_000;
const CLIENT_NAME = /^[A-Za-z0-9_.-]+$/;
const DNS_NAME =
  /^(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/;
const NODE_CN = /^node-([1-9][0-9]{0,4})$/;

function invalid(message: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, message);
}

/**
 * nodeIdOfCommonName reads the node id from a node certificate's CN `node-<id>` (id 1..65535,
 * no leading zeros, nothing around it); undefined for any other CN.
 */
export function nodeIdOfCommonName(cn: string): number | undefined {
  const m = NODE_CN.exec(cn);
  if (m === null) return undefined;
  const id = Number(m[1]);
  return id <= NODE_ID_MAX ? id : undefined;
}

/** checkDays validates a validity period in days (1..3650); `what` names it in the error. */
export function checkDays(days: number, what = 'days'): number {
  if (!Number.isSafeInteger(days) || days < 1 || days > DAYS_MAX)
    throw invalid(`${what} must be an integer from 1 to ${DAYS_MAX}, got ${quote(days)}`);
  return days;
}

/** checkClientName validates a client certificate's name (its CN, a user of the auth file). */
export function checkClientName(name: string, what = 'client name'): string {
  if (!CLIENT_NAME.test(name) || name.length > CN_LENGTH_MAX)
    throw invalid(`${what} ${quote(name)} must be 1 to ${CN_LENGTH_MAX} characters of A-Z a-z 0-9 _ . -`);
  if (/^node-/i.test(name))
    throw invalid(`${what} ${quote(name)} may not start with node-: that CN is a node's, with full access`);
  return name;
}

/** checkHost validates a subjectAltName host (an IPv4/IPv6 literal, `[v6]`, or a DNS name); returns it bare. */
export function checkHost(host: string, what = 'host'): string {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIP(h) !== 0 && !h.includes('%')) return h;
  if (h.length <= 253 && DNS_NAME.test(h)) return h;
  throw invalid(`${what} ${quote(host)} is neither an IP address nor a DNS name`);
}

/** ipBytes encodes a checked IP literal as the 4 or 16 bytes of an iPAddress SAN entry. */
function ipBytes(ip: string): string {
  const v4 = (s: string): number[] => s.split('.').map(Number);
  if (isIP(ip) === 4) return String.fromCharCode(...v4(ip));
  const halves = ip.split('::');
  const groups = (s: string | undefined): number[] => {
    if (s === undefined || s === '') return [];
    return s.split(':').flatMap((g) => {
      if (!g.includes('.')) return [Number.parseInt(g, 16)];
      const b = v4(g);
      return [((b[0] ?? 0) << 8) | (b[1] ?? 0), ((b[2] ?? 0) << 8) | (b[3] ?? 0)];
    });
  };
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  const words =
    halves.length === 2 ? [...head, ...Array<number>(8 - head.length - tail.length).fill(0), ...tail] : head;
  if (words.length !== 8) throw new Error(`ipBytes: ${ip} is not 8 groups`);
  return String.fromCharCode(...words.flatMap((w) => [w >> 8, w & 0xff]));
}

/** randomSerial is a random positive 16-byte serial number (hex; first byte 0x01..0x7f, so DER is minimal). */
function randomSerial(): string {
  const b = randomBytes(SERIAL_BYTES);
  b[0] = ((b[0] ?? 0) % 0x7f) + 1;
  return b.toString('hex');
}

function newKeyPair(): {
  forgeKeys: { publicKey: forge.pki.rsa.PublicKey; privateKey: forge.pki.rsa.PrivateKey };
  keyPem: string;
} {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', {
    modulusLength: RSA_BITS,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return {
    forgeKeys: {
      publicKey: forge.pki.publicKeyFromPem(publicKey) as forge.pki.rsa.PublicKey,
      privateKey: forge.pki.privateKeyFromPem(privateKey) as forge.pki.rsa.PrivateKey,
    },
    keyPem: privateKey,
  };
}

function validity(cert: forge.pki.Certificate, days: number): void {
  const now = Date.now();
  cert.validity.notBefore = new Date(now - CLOCK_SKEW_MS);
  cert.validity.notAfter = new Date(now + checkDays(days) * DAY_MS);
}

function checkCommonName(cn: string, what: string): string {
  if (cn.length === 0 || cn.length > CN_LENGTH_MAX)
    throw invalid(`${what} ${quote(cn)} must be 1 to ${CN_LENGTH_MAX} characters`);
  return cn;
}

/** makeCa makes a self-signed CA (CN default `DKV development CA`, valid `days`, default 825). */
export function makeCa(opts: { commonName?: string; days?: number } = {}): CertPair {
  const cn = checkCommonName(opts.commonName ?? DEFAULT_CA_NAME, 'the CA common name');
  const { forgeKeys, keyPem } = newKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forgeKeys.publicKey;
  cert.serialNumber = randomSerial();
  validity(cert, opts.days ?? DEFAULT_DAYS);
  const subject = [{ shortName: 'CN', value: cn }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(forgeKeys.privateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem };
}

/**
 * issueCert makes a certificate signed by `ca`. 'node': extendedKeyUsage serverAuth and
 * clientAuth, subjectAltName for each of `hosts` (default 127.0.0.1, ::1, localhost).
 * 'client': clientAuth only, no subjectAltName.
 */
export function issueCert(
  ca: CertPair,
  opts: { commonName: string; hosts?: readonly string[]; days?: number; usage: CertUsage },
): CertPair {
  const cn = checkCommonName(opts.commonName, 'the common name');
  let caCert: forge.pki.Certificate;
  let caKey: forge.pki.rsa.PrivateKey;
  try {
    caCert = forge.pki.certificateFromPem(ca.certPem);
    caKey = forge.pki.privateKeyFromPem(ca.keyPem) as forge.pki.rsa.PrivateKey;
  } catch (err) {
    throw invalid(`the CA certificate or key is not a PEM RSA certificate/key: ${(err as Error).message}`);
  }
  const { forgeKeys, keyPem } = newKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forgeKeys.publicKey;
  cert.serialNumber = randomSerial();
  validity(cert, opts.days ?? DEFAULT_DAYS);
  cert.setSubject([{ shortName: 'CN', value: cn }]);
  cert.setIssuer(caCert.subject.attributes);
  const node = opts.usage === CERT_USAGE.node;
  const hosts = (opts.hosts ?? DEFAULT_HOSTS).map((h) => checkHost(h));
  if (node && hosts.length === 0) throw invalid('a node certificate needs at least one host');
  if (hosts.length > HOSTS_MAX) throw invalid(`at most ${HOSTS_MAX} hosts, got ${hosts.length}`);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: node, clientAuth: true },
    ...(node
      ? [
          {
            name: 'subjectAltName',
            altNames: [...new Set(hosts)].map((h) =>
              isIP(h) === 0 ? { type: 2, value: h } : { type: 7, value: ipBytes(h) },
            ),
          },
        ]
      : []),
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem };
}

// ---------------------------------------------------------------- files

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new DkvError(ErrorCode.InvalidArgument, `cannot read ${path}: ${(err as Error).message}`);
  }
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new DkvError(ErrorCode.NotFound, `cannot read ${path}: ${(err as Error).message}`);
  }
}

/** writeAtomic writes a file through a temp file and a rename, with its mode set from the start. */
async function writeAtomic(path: string, text: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, text, { mode, flag: 'wx' });
  await chmod(tmp, mode); // the umask may have narrowed or (for 0644) kept the mode; make it exact
  await rename(tmp, path);
}

async function writePair(files: CertFiles, pair: CertPair, written: string[]): Promise<void> {
  await writeAtomic(files.key, pair.keyPem, 0o600);
  await writeAtomic(files.cert, pair.certPem, 0o644);
  written.push(files.cert, files.key);
}

/** parseCert reads a PEM certificate with node's X509Certificate, or throws naming the file. */
function parseCert(pem: string, path: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw invalid(`${path} is not a PEM certificate: ${(err as Error).message}`);
  }
}

/** loadCa reads the CA in `dir` and checks that its key matches its certificate. */
async function loadCa(certPath: string, keyPath: string): Promise<CertPair> {
  const ca = { certPem: await readText(certPath), keyPem: await readText(keyPath) };
  const x = parseCert(ca.certPem, certPath);
  let matches: boolean;
  try {
    matches = x.checkPrivateKey(createPrivateKey(ca.keyPem));
  } catch (err) {
    throw invalid(`${keyPath} is not a PEM private key: ${(err as Error).message}`);
  }
  if (!matches) throw invalid(`${keyPath} is not the key of ${certPath}`);
  if (!x.ca) throw invalid(`${certPath} is not a CA certificate (basicConstraints cA is not set)`);
  return ca;
}

/**
 * writeDevCerts writes a development CA and certificates into `dir` (created, mode 0700):
 * `ca.pem`, `ca-key.pem`, `node-<id>.pem`, `node-<id>-key.pem` (CN `node-<id>`),
 * `client-<name>.pem`, `client-<name>-key.pem` (CN `<name>`); keys are mode 0600. An
 * existing CA is reused (never replaced, not even with `force`); existing node and client
 * certificates are kept unless `force`, and must then have been signed by that CA.
 */
export async function writeDevCerts(
  dir: string,
  opts: {
    nodes: readonly number[];
    clients?: readonly string[];
    hosts?: readonly string[];
    days?: number;
    force?: boolean;
    log?: (line: string) => void;
  },
): Promise<DevCertFiles> {
  const log = opts.log ?? (() => {});
  const days = checkDays(opts.days ?? DEFAULT_DAYS);
  const nodes = [...new Set(opts.nodes)];
  for (const id of nodes)
    if (!Number.isSafeInteger(id) || id < 1 || id > NODE_ID_MAX)
      throw invalid(`node ids must be integers from 1 to ${NODE_ID_MAX}, got ${quote(id)}`);
  const clients = [...new Set(opts.clients ?? ['root'])].map((c) => checkClientName(c));
  if (nodes.length > CERTS_PER_RUN_MAX || clients.length > CERTS_PER_RUN_MAX)
    throw invalid(`at most ${CERTS_PER_RUN_MAX} nodes and ${CERTS_PER_RUN_MAX} clients at a time`);
  const hosts = [...new Set((opts.hosts ?? DEFAULT_HOSTS).map((h) => checkHost(h)))];
  if (hosts.length === 0 || hosts.length > HOSTS_MAX)
    throw invalid(`hosts must name 1 to ${HOSTS_MAX} hosts, got ${hosts.length}`);

  const root = resolve(dir);
  try {
    if (!(await stat(root)).isDirectory()) throw invalid(`${root} exists and is not a directory`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await mkdir(root, { recursive: true, mode: 0o700 });
    await chmod(root, 0o700);
  }

  const written: string[] = [];
  const kept: string[] = [];
  const ca = join(root, 'ca.pem');
  const caKey = join(root, 'ca-key.pem');
  const [haveCa, haveCaKey] = [await exists(ca), await exists(caKey)];
  let caPair: CertPair;
  if (haveCa && haveCaKey) {
    caPair = await loadCa(ca, caKey);
    kept.push(ca, caKey);
    log(`kept    ${ca}`);
    log(`kept    ${caKey}`);
  } else if (haveCa || haveCaKey) {
    throw invalid(
      `${haveCa ? caKey : ca} is missing but ${haveCa ? ca : caKey} exists: restore it, or remove both to make a new CA`,
    );
  } else {
    caPair = makeCa({ days });
    await writePair({ cert: ca, key: caKey }, caPair, written);
    log(`wrote   ${ca}`);
    log(`wrote   ${caKey}`);
  }
  const caX509 = parseCert(caPair.certPem, ca);

  /** ensure keeps a pair that exists (checking it chains to the CA) or issues it. */
  const ensure = async (files: CertFiles, cn: string, usage: CertUsage): Promise<void> => {
    if (opts.force !== true && (await exists(files.cert)) && (await exists(files.key))) {
      const x = parseCert(await readText(files.cert), files.cert);
      if (!x.checkIssued(caX509) || !x.verify(caX509.publicKey))
        throw invalid(`${files.cert} was not issued by ${ca}: reissue it with --force (force: true)`);
      const missing =
        usage === CERT_USAGE.node
          ? hosts.filter((h) => (isIP(h) === 0 ? x.checkHost(h) : x.checkIP(h)) === undefined)
          : [];
      kept.push(files.cert, files.key);
      log(
        `kept    ${files.cert}${missing.length > 0 ? ` (does not cover ${missing.join(', ')}; --force reissues it)` : ''}`,
      );
      log(`kept    ${files.key}`);
      return;
    }
    await writePair(files, issueCert(caPair, { commonName: cn, hosts, days, usage }), written);
    log(`wrote   ${files.cert}`);
    log(`wrote   ${files.key}`);
  };

  const nodeFiles: Record<string, CertFiles> = {};
  for (const id of nodes) {
    const files = { cert: join(root, `node-${id}.pem`), key: join(root, `node-${id}-key.pem`) };
    await ensure(files, `node-${id}`, CERT_USAGE.node);
    nodeFiles[String(id)] = files;
  }
  const clientFiles: Record<string, CertFiles> = {};
  for (const name of clients) {
    const files = { cert: join(root, `client-${name}.pem`), key: join(root, `client-${name}-key.pem`) };
    await ensure(files, name, CERT_USAGE.client);
    clientFiles[name] = files;
  }
  return { dir: root, ca, caKey, nodes: nodeFiles, clients: clientFiles, written, kept };
}

// ---------------------------------------------------------------- CLI

/** parseNodesOption reads `--nodes`: a count N (ids 1..N) or a comma-separated list of ids. */
export function parseNodesOption(text: string): number[] {
  const t = text.trim();
  if (!t.includes(',')) {
    const n = intOption('--nodes', t, 1, CERTS_PER_RUN_MAX);
    return Array.from({ length: n }, (_, i) => i + 1);
  }
  const ids = t
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => intOption('--nodes', s, 1, NODE_ID_MAX));
  if (ids.length === 0) throw invalid(`--nodes lists no node ids, got ${quote(text)}`);
  return [...new Set(ids)];
}

function collect(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), ...v.split(',').map((s) => s.trim())];
}

/** addCertsCommands adds `dkv certs` (a development CA and node/client certificates) to the program. */
export function addCertsCommands(program: Command): void {
  program
    .command('certs')
    .description('make a development CA and TLS certificates for nodes and clients (reuses a CA in --dir)')
    .option('--dir <dir>', 'where the files go', '.dkv/certs')
    .option('--nodes <n|ids>', 'node certificates: a count N (ids 1..N) or a list of ids like 1,2,5', '3')
    .option(
      '--client <name>',
      'a client certificate, CN <name> (a user); repeat for more (default: root)',
      collect,
    )
    .option('--hosts <list>', `hosts the node certificates cover (default: ${DEFAULT_HOSTS.join(',')})`)
    .option('--days <n>', `validity in days (1..${DAYS_MAX})`, String(DEFAULT_DAYS))
    .option('--force', 'reissue existing node and client certificates (the CA is always kept)')
    .action(
      async (
        o: { dir: string; nodes: string; client?: string[]; hosts?: string; days: string; force?: boolean },
        cmd: Command,
      ) => {
        const json = globals(cmd).json === true;
        const days = intOption('--days', o.days, 1, DAYS_MAX);
        const nodes = parseNodesOption(o.nodes);
        const clients = (o.client ?? ['root']).map((c) => checkClientName(c, '--client'));
        let hosts: string[] | undefined;
        if (o.hosts !== undefined) {
          hosts = o.hosts
            .split(',')
            .map((h) => h.trim())
            .filter((h) => h !== '')
            .map((h) => checkHost(h, '--hosts'));
          if (hosts.length === 0) throw invalid(`--hosts lists no hosts, got ${quote(o.hosts)}`);
        }
        const dir = resolve(o.dir);
        try {
          if (!(await stat(dir)).isDirectory()) throw invalid(`--dir ${dir} is a file, not a directory`);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
        const lines: string[] = [];
        const r = await writeDevCerts(dir, {
          nodes,
          clients,
          ...(hosts !== undefined && { hosts }),
          days,
          force: o.force === true,
          log: (line) => lines.push(line),
        });
        if (json) {
          const { dir: d, ca, nodes: n, clients: c, written, kept } = r;
          process.stdout.write(`${toJson({ dir: d, ca, nodes: n, clients: c, written, kept })}\n`);
          return;
        }
        const first = nodes[0];
        const example = first === undefined ? undefined : r.nodes[String(first)];
        const client = r.clients[clients[0] ?? ''];
        if (example !== undefined)
          lines.push(
            '',
            `node config (node ${first}; each node its own cert and key):`,
            `  "tls": ${JSON.stringify({ ca: r.ca, cert: example.cert, key: example.key })}`,
          );
        if (client !== undefined)
          lines.push(
            `client (${clients[0]}): dkv --tls-ca ${r.ca} --tls-cert ${client.cert} --tls-key ${client.key} ...`,
          );
        process.stdout.write(`${lines.join('\n')}\n`);
      },
    );
}
