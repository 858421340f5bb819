/**
 * The socket seam of the transport: every listener and every outbound connection is made
 * through a SocketFactory, so TLS (a `tls.Server` and `tls.connect`, whose shapes match)
 * can be swapped in without touching the protocol code. Also the small shared types:
 * addresses and the structured log function.
 */
import * as net from 'node:net';

/** Address is a host and TCP port. */
export interface Address {
  readonly host: string;
  readonly port: number;
}

/** LogLevel is a pino-compatible subset of levels. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** LogFn is how the transport reports what it did and why it closed a connection. */
export type LogFn = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

/** noLog discards everything. */
export const noLog: LogFn = () => {};

/**
 * SocketFactory makes listeners and outbound connections. `onSocket` receives each accepted
 * connection once it is ready for application data (for TLS: after the TLS handshake), and
 * `onConnect` fires when an outbound socket is ready for application data.
 */
export interface SocketFactory {
  createServer(onSocket: (socket: net.Socket) => void): net.Server;
  connect(address: Address, onConnect: () => void): net.Socket;
}

/** tcpSockets is the plain TCP SocketFactory (Nagle off: the transport batches by itself). */
export const tcpSockets: SocketFactory = {
  createServer: (onSocket) => net.createServer({ noDelay: true }, onSocket),
  connect: (address, onConnect) =>
    net.connect({ host: address.host, port: address.port, noDelay: true }, onConnect),
};

/**
 * listenOn binds a server and resolves with the bound address (port 0 becomes the port the
 * OS chose). A bind failure rejects with the socket error (EADDRINUSE and the like).
 */
export function listenOn(server: net.Server, address: Address): Promise<Address> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(address.port, address.host, () => {
      server.off('error', onError);
      resolve(boundAddress(server, address.host));
    });
  });
}

/** boundAddress reads a listening server's address. */
export function boundAddress(server: net.Server, fallbackHost: string): Address {
  const a = server.address();
  if (a === null || typeof a === 'string') return { host: fallbackHost, port: 0 };
  return { host: a.address, port: a.port };
}

/** remoteOf describes a socket's remote end for logs. */
export function remoteOf(socket: net.Socket): string {
  return `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
}

/** describeError turns a thrown value into a short string for a log line. */
export function describeError(err: unknown): string {
  if (err instanceof Error)
    return 'code' in err && err.code !== undefined ? `${err.code}: ${err.message}` : err.message;
  return String(err);
}
