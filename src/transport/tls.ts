/**
 * TLS for the transport: SocketFactory implementations (sockets.ts) over `node:tls`, so the
 * client protocol and the peer links run unchanged on TLS.
 *
 * - Servers present the node's certificate. `requireClientCert` (the peer port) asks the
 *   other side for a certificate and refuses the handshake unless the configured CA signed it
 *   (mutual TLS). Without it (the client port), a client certificate is asked for but
 *   optional; one that is presented must still verify, and its subject CN is then available
 *   to the server (`certCommonName`) as an identity.
 * - Outbound connections verify the server's certificate against the configured CA, and the
 *   server's name or IP against the certificate's subjectAltName (node's default check), and
 *   present a certificate of their own when one is configured.
 * - A handshake that fails (plaintext on a TLS port, an unknown CA, no client certificate
 *   where one is required) never reaches the protocol: the socket is destroyed and the
 *   failure reported through `onHandshakeError`, which the node logs and counts.
 *
 * TLS 1.2 is the minimum. Certificates and keys are PEM; `readTlsFiles` loads them from the
 * paths in the node's configuration with an error that names the file.
 */
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { DkvError, ErrorCode } from '../errors.js';
import type { SocketFactory } from './sockets.js';

/** A TLS alert record: fatal (2), protocol_version (70), what a plaintext client gets. */
const PLAINTEXT_ALERT = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]);

/** TlsMaterial is a CA bundle, a certificate and its private key (PEM). */
export interface TlsMaterial {
  /** The CA that signs every node (and client) certificate the other side may present. */
  readonly ca: string | Buffer;
  /** This side's certificate chain. Optional for clients: without it, no client certificate. */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
}

/** TlsPaths names the PEM files of a TlsMaterial (the node config's `tls` field). */
export interface TlsPaths {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** readTlsFiles loads PEM files, with an INVALID_ARGUMENT error that names a missing one. */
export function readTlsFiles(paths: {
  ca: string;
  cert?: string | undefined;
  key?: string | undefined;
}): TlsMaterial {
  const read = (what: string, p: string): Buffer => {
    try {
      return readFileSync(p);
    } catch (err) {
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `tls.${what}: cannot read ${p}: ${(err as Error).message}`,
      );
    }
  };
  return {
    ca: read('ca', paths.ca),
    ...(paths.cert !== undefined && { cert: read('cert', paths.cert) }),
    ...(paths.key !== undefined && { key: read('key', paths.key) }),
  };
}

/** TlsServerOptions configure the listening side. */
export interface TlsServerOptions {
  /** Refuse handshakes without a client certificate the CA signed (mutual TLS). */
  readonly requireClientCert: boolean;
  /** A failed handshake (plaintext, unknown CA, missing certificate), for logs and counters. */
  readonly onHandshakeError?: (err: Error, remote: string) => void;
}

/** TlsClientOptions configure the dialing side. */
export interface TlsClientOptions {
  /** The name the server's certificate must carry, when it is not the host dialed. */
  readonly servername?: string;
}

/**
 * checkMaterial builds a secure context once, so a bad certificate, key or CA is an error at
 * start-up (naming the problem) rather than at the first connection.
 */
function checkMaterial(m: TlsMaterial, needCert: boolean): void {
  if (needCert && (m.cert === undefined || m.key === undefined))
    throw new DkvError(ErrorCode.InvalidArgument, 'tls: a certificate and its key are required here');
  try {
    tls.createSecureContext({ ca: m.ca, ...(m.cert !== undefined && { cert: m.cert, key: m.key }) });
  } catch (err) {
    throw new DkvError(
      ErrorCode.InvalidArgument,
      `tls: bad certificate, key or CA: ${(err as Error).message}`,
    );
  }
}

/** tlsSockets is a SocketFactory whose listeners and connections speak TLS. */
export function tlsSockets(
  m: TlsMaterial,
  server: TlsServerOptions,
  client: TlsClientOptions = {},
): SocketFactory {
  checkMaterial(m, false);
  return {
    createServer: (onSocket) => {
      checkMaterial(m, true);
      const srv = tls.createServer(
        {
          ca: m.ca,
          cert: m.cert,
          key: m.key,
          requestCert: true,
          rejectUnauthorized: server.requireClientCert,
          minVersion: 'TLSv1.2',
        },
        (socket) => {
          // Without requireClientCert, a client certificate that does not verify is refused
          // here (node lets the handshake finish; `authorized` says whether it verified).
          if (!socket.authorized && socket.getPeerCertificate()?.subject !== undefined) {
            server.onHandshakeError?.(
              new Error(`client certificate refused: ${String(socket.authorizationError)}`),
              `${socket.remoteAddress}:${socket.remotePort}`,
            );
            socket.destroy();
            return;
          }
          onSocket(socket);
        },
      );
      srv.on('tlsClientError', (err, socket) => {
        server.onHandshakeError?.(err, `${socket.remoteAddress}:${socket.remotePort}`);
        socket.destroy();
      });
      // The listener is plain TCP, and looks at the first bytes: a TLS handshake (a record of
      // type 0x16) goes to the TLS server; anything else is a plaintext client, answered with
      // a TLS alert record (fatal, protocol_version) so that our own client can tell its user
      // to use TLS, then closed.
      return net.createServer({ noDelay: true }, (raw) => {
        raw.on('error', () => raw.destroy());
        raw.once('data', (chunk: Buffer) => {
          raw.pause();
          if (chunk[0] !== 0x16) {
            server.onHandshakeError?.(
              new Error('plaintext on a TLS port'),
              `${raw.remoteAddress}:${raw.remotePort}`,
            );
            raw.end(PLAINTEXT_ALERT);
            setTimeout(() => raw.destroy(), 1000).unref();
            return;
          }
          raw.unshift(chunk);
          srv.emit('connection', raw);
        });
      });
    },
    connect: (address, onConnect) => {
      const socket = tls.connect(
        {
          host: address.host,
          port: address.port,
          ca: m.ca,
          ...(m.cert !== undefined && { cert: m.cert, key: m.key }),
          ...(client.servername !== undefined && { servername: client.servername }),
          minVersion: 'TLSv1.2',
        },
        onConnect,
      );
      socket.setNoDelay(true);
      return socket;
    },
  };
}

/**
 * certCommonName is the subject CN of the verified certificate the other end of a TLS socket
 * presented (undefined for plain TCP, no certificate, or one that did not verify).
 */
export function certCommonName(socket: net.Socket): string | undefined {
  if (!(socket instanceof tls.TLSSocket) || !socket.authorized) return undefined;
  const cn = socket.getPeerCertificate()?.subject?.CN;
  return typeof cn === 'string' ? cn : undefined;
}
