/**
 * The CLI's TLS and credentials: the global options `--tls-ca`, `--tls-cert`, `--tls-key`
 * (PEM files), and `--user`/`--password` or `--auth-token` (also from DKV_TLS_CA, DKV_TLS_CERT,
 * DKV_TLS_KEY, DKV_USER, DKV_PASSWORD, DKV_TOKEN; the environment keeps a password out of
 * `ps`). The program reads them once before a command runs (`setCliSecurity`); every client
 * the CLI makes then spreads `cliSecurity()` into its options, and one-off calls connect
 * through `cliConnector()`.
 */
import { readFileSync } from 'node:fs';
import type { ClientTlsOptions } from '../client/client.js';
import { type Connector, tcpConnector } from '../client/endpoints.js';
import { DkvError, ErrorCode } from '../errors.js';
import type { Credentials } from '../transport/protocol.js';
import { tlsSockets } from '../transport/tls.js';

/** SecurityOptions are the global options this module reads. */
export interface SecurityOptions {
  readonly tlsCa?: string;
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  readonly user?: string;
  readonly password?: string;
  readonly authToken?: string;
}

type Auth = Credentials;

let current: { tls?: ClientTlsOptions; auth?: Auth } = {};

function readPem(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new DkvError(ErrorCode.InvalidArgument, `${flag}: cannot read ${path}: ${(err as Error).message}`);
  }
}

/** setCliSecurity reads the TLS files and credentials of the global options (or their env). */
export function setCliSecurity(o: SecurityOptions): void {
  const env = process.env;
  const ca = o.tlsCa ?? env.DKV_TLS_CA;
  const cert = o.tlsCert ?? env.DKV_TLS_CERT;
  const key = o.tlsKey ?? env.DKV_TLS_KEY;
  const user = o.user ?? env.DKV_USER;
  const password = o.password ?? env.DKV_PASSWORD;
  const token = o.authToken ?? env.DKV_TOKEN;
  if ((cert === undefined) !== (key === undefined))
    throw new DkvError(ErrorCode.InvalidArgument, '--tls-cert and --tls-key go together');
  if ((cert !== undefined || key !== undefined) && ca === undefined)
    throw new DkvError(
      ErrorCode.InvalidArgument,
      '--tls-cert needs --tls-ca (the CA the servers are checked against)',
    );
  if (token !== undefined && user !== undefined)
    throw new DkvError(ErrorCode.InvalidArgument, 'give --auth-token or --user, not both');
  if (user !== undefined && password === undefined)
    throw new DkvError(ErrorCode.InvalidArgument, '--user needs --password (or DKV_PASSWORD)');
  const next: { tls?: ClientTlsOptions; auth?: Auth } = {};
  if (ca !== undefined)
    next.tls = {
      ca: readPem('--tls-ca', ca),
      ...(cert !== undefined && { cert: readPem('--tls-cert', cert) }),
      ...(key !== undefined && { key: readPem('--tls-key', key) }),
    };
  if (token !== undefined) next.auth = { token };
  else if (user !== undefined && password !== undefined) next.auth = { user, password };
  current = next;
}

/** cliSecurity is what every DkvClient the CLI makes gets in its options. */
export function cliSecurity(): { tls?: ClientTlsOptions; auth?: Auth } {
  return current;
}

/** cliConnector opens one authenticated (and with TLS, encrypted) connection. */
export function cliConnector(frameBytesMax: number): Connector {
  const { tls, auth } = current;
  return tcpConnector(frameBytesMax, {
    ...(tls !== undefined && {
      sockets: tlsSockets(
        {
          ca: tls.ca as Buffer,
          ...(tls.cert !== undefined && { cert: tls.cert as Buffer, key: tls.key as Buffer }),
        },
        { requireClientCert: false },
      ),
    }),
    ...(auth !== undefined && { auth }),
  });
}
