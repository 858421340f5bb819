/**
 * runNode: a DKV node as a process (`dkv node --config FILE`, what `dkv dev` and the test
 * harness spawn). It reads and checks the config, logs JSON lines with pino to
 * `<dataDir>/node.log`, starts the DkvNode, serves `GET /health` and `GET /metrics` on the
 * admin port (when it is not 0), and prints one line once it serves:
 *
 *     DKV node <id> serving client=<host:port> peer=<host:port>
 *
 * Shutdown: the first SIGINT or SIGTERM stops the node gracefully (leaderships handed away
 * first), closes the admin server, flushes the log and exits 0; a second signal exits at once
 * (code 1). An uncaught exception or unhandled rejection is logged (to the log file and to
 * stderr) and exits 1. With DKV_EXIT_WITH_PARENT=1 the node also stops gracefully when its
 * stdin closes: `dkv dev` keeps a pipe open to each node, so nodes do not outlive a parent
 * that was killed.
 *
 * Test hooks (test-hooks.ts) come only from the environment variable DKV_TEST_HOOKS, read
 * here and nowhere else (the config file cannot name them): an unknown item refuses to
 * start. With any hook on, the node logs a warning and prints
 * `DKV node <id> TEST HOOKS ON: <list>` to stderr. With `clock`, the admin port also serves
 * `GET /test/clock` and `POST /test/clock` (`{ offsetMs?, rate? }`), which read and move the
 * node's SkewedClock; without it those paths are 404 like any unknown path.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { join } from 'node:path';
import pino from 'pino';
import { DkvError, ErrorCode, isDkvError } from '../errors.js';
import { readTlsFiles } from '../transport/tls.js';
import { checkNodeConfig, type NodeConfig } from './config.js';
import { StatsHistory, serveDashboard } from './dashboard.js';
import { NodeMetrics } from './metrics.js';
import { DkvNode } from './node.js';
import { combineObservers } from './observer-fanout.js';
import {
  type ClockSkew,
  checkClockSetting,
  describeTestHooks,
  parseTestHooks,
  SkewedClock,
  TEST_HOOKS_ENV,
  testHooksOn,
} from './test-hooks.js';

/** LOG_FILE_NAME is the node's log file inside its data directory. */
export const LOG_FILE_NAME = 'node.log';

/** readNodeConfig reads and checks a node config file; errors name the file. */
export function readNodeConfig(configPath: string): NodeConfig {
  let text: string;
  try {
    text = readFileSync(configPath, 'utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : String(err);
    throw new DkvError(ErrorCode.InvalidArgument, `cannot read the config file ${configPath}: ${why}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new DkvError(
      ErrorCode.InvalidArgument,
      `the config file ${configPath} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  try {
    return checkNodeConfig(raw);
  } catch (err) {
    if (isDkvError(err)) throw new DkvError(err.code, `${configPath}: ${err.message}`);
    throw err;
  }
}

/** AdminOptions add the test-only endpoints to the admin server. */
export interface AdminOptions {
  /** Serve HTTPS with this certificate and key (the node's, when TLS is configured). */
  readonly tls?: { readonly cert: Buffer | string; readonly key: Buffer | string };
  /** testClock: serve `GET` and `POST /test/clock` to read and move it (the `clock` test hook). */
  readonly testClock?: SkewedClock;
  /** onClockSet is told each time `POST /test/clock` moved the clock. */
  readonly onClockSet?: (skew: ClockSkew) => void;
  /** history: the dashboard's plots data (`GET /api/history`). */
  readonly history?: StatsHistory;
  /**
   * metrics: what `GET /metrics` serves; without it, a NodeMetrics attached to the node here
   * (gauges only: no request or commit counters, which need it as the node's observer).
   */
  readonly metrics?: NodeMetrics;
}

/** TEST_CLOCK_PATH is the admin path of the `clock` test hook. */
export const TEST_CLOCK_PATH = '/test/clock';
/** CLOCK_BODY_BYTES_MAX bounds a `POST /test/clock` body. */
const CLOCK_BODY_BYTES_MAX = 4096;

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
}

/** serveTestClock answers `GET` (read) and `POST` (move) on the test clock. */
function serveTestClock(
  req: IncomingMessage,
  res: ServerResponse,
  clock: SkewedClock,
  opts: AdminOptions,
): void {
  const answer = (): void => sendJson(res, 200, { nowMs: clock.nowMs(), ...clock.skew() });
  if (req.method === 'GET' || req.method === 'HEAD') {
    answer();
    return;
  }
  if (req.method !== 'POST') {
    res
      .writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD, POST' })
      .end('method not allowed\n');
    return;
  }
  const parts: Buffer[] = [];
  let bytes = 0;
  let over = false;
  req.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    if (bytes > CLOCK_BODY_BYTES_MAX) over = true;
    else parts.push(chunk);
  });
  req.on('error', () => undefined);
  req.on('end', () => {
    try {
      if (over) {
        sendJson(res, 413, { error: `the body is over ${CLOCK_BODY_BYTES_MAX} bytes` });
        return;
      }
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(parts).toString('utf8'));
      } catch {
        sendJson(res, 400, {
          error: 'the body is not valid JSON; send { "offsetMs"?: number, "rate"?: number }',
        });
        return;
      }
      let setting: Partial<ClockSkew>;
      try {
        setting = checkClockSetting(body);
      } catch (err) {
        sendJson(res, 400, { error: err instanceof Error ? err.message : String(err) });
        return;
      }
      opts.onClockSet?.(clock.set(setting));
      answer();
    } catch (err) {
      if (!res.headersSent) sendJson(res, 500, { error: `internal error: ${String(err)}` });
    }
  });
}

/**
 * serveAdmin starts the admin HTTP server (health and metrics, and with `opts.testClock` the
 * test clock) and resolves once it listens.
 */
export function serveAdmin(
  node: DkvNode,
  host: string,
  port: number,
  opts: AdminOptions = {},
): Promise<Server> {
  const metrics = opts.metrics ?? new NodeMetrics({ processMetrics: false }).attach(node);
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === TEST_CLOCK_PATH && opts.testClock !== undefined) {
      try {
        serveTestClock(req, res, opts.testClock, opts);
      } catch (err) {
        if (!res.headersSent)
          res.writeHead(500, { 'content-type': 'text/plain' }).end(`internal error: ${String(err)}\n`);
      }
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD' && path !== TEST_CLOCK_PATH) {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' }).end('method not allowed\n');
      return;
    }
    try {
      if (path === '/health') {
        const h = node.health();
        res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json' }).end(`${JSON.stringify(h)}\n`);
      } else if (path === '/metrics') {
        metrics
          .text()
          .then(
            (text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text),
            (err: unknown) => {
              if (!res.headersSent)
                res.writeHead(500, { 'content-type': 'text/plain' }).end(`internal error: ${String(err)}\n`);
            },
          )
          .catch(() => undefined); // the client went away mid-answer
      } else if (!serveDashboard(req.url ?? '/', res, node, opts.history)) {
        res
          .writeHead(404, { 'content-type': 'text/plain' })
          .end('not found: try /health, /metrics or / (the dashboard)\n');
      }
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`internal error: ${String(err)}\n`);
    }
  };
  const server: Server =
    opts.tls === undefined
      ? createServer(handler)
      : (createHttpsServer(
          { cert: opts.tls.cert, key: opts.tls.key, minVersion: 'TLSv1.2' },
          handler,
        ) as unknown as Server);
  server.keepAliveTimeout = 5000;
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE'
          ? new DkvError(ErrorCode.InUse, `admin port ${port} on ${host} is already in use`)
          : err,
      ),
    );
    server.listen(port, host, () => resolve(server));
  });
}

/** startError names the port of a failed listen (IN_USE), and passes anything else through. */
function startError(err: unknown, cfg: NodeConfig): unknown {
  const e = err as NodeJS.ErrnoException & { port?: number };
  if (e?.code !== 'EADDRINUSE' && e?.code !== 'EACCES') return err;
  const which = e.port === cfg.clientPort ? 'client port' : e.port === cfg.peerPort ? 'peer port' : 'port';
  return new DkvError(
    e.code === 'EADDRINUSE' ? ErrorCode.InUse : ErrorCode.InvalidArgument,
    `node ${cfg.id}: ${which} ${e.port ?? '?'} on ${cfg.host} ${e.code === 'EADDRINUSE' ? 'is already in use' : 'may not be bound (permission denied)'}`,
  );
}

function closeServer(server: Server | undefined): Promise<void> {
  if (server === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/**
 * runNode runs a node until a signal stops it; it never resolves (the process exits). It
 * rejects only when the node cannot start (a bad config, a port in use, corrupted data), with
 * the log flushed.
 */
export async function runNode(configPath: string): Promise<never> {
  const cfg = readNodeConfig(configPath);
  const hooks = parseTestHooks(process.env[TEST_HOOKS_ENV]);
  mkdirSync(cfg.dataDir, { recursive: true });
  const logFile = cfg.logFile ?? join(cfg.dataDir, LOG_FILE_NAME);
  const dest = pino.destination({ dest: logFile, sync: false, mkdir: true });
  const logger = pino({ base: { pid: process.pid }, level: process.env.DKV_LOG_LEVEL ?? 'info' }, dest);
  const flush = (): void => {
    try {
      dest.flushSync();
    } catch {
      // not open yet (sonic-boom opens asynchronously): nothing buffered to lose
    }
  };
  const die = (what: string, err: unknown): never => {
    const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
    logger.fatal({ err: text }, what);
    flush();
    process.stderr.write(`dkv node ${cfg.id}: ${what}: ${text}\n`);
    process.exit(1);
  };
  process.on('uncaughtException', (err) => die('uncaught exception', err));
  process.on('unhandledRejection', (err) => die('unhandled rejection', err));

  const testClock = hooks.clock ? new SkewedClock() : undefined;
  if (testHooksOn(hooks)) {
    const list = describeTestHooks(hooks);
    logger.warn(
      { testHooks: list },
      `TEST HOOKS ON (${TEST_HOOKS_ENV}=${list}): this node runs with test-only hooks and planted bugs; never keep data in it`,
    );
    process.stderr.write(`DKV node ${cfg.id} TEST HOOKS ON: ${list}\n`);
  }

  let node: DkvNode;
  let admin: Server | undefined;
  const history = new StatsHistory();
  const metrics = new NodeMetrics();
  try {
    node = await DkvNode.start(cfg, {
      observer: combineObservers(history, metrics),
      onFatal: (err) => die('the node stopped on a storage failure', err),
      log: (level, msg, fields) => logger[level](fields ?? {}, msg),
      testHooks: hooks,
      debugLog: logger.isLevelEnabled('debug'),
      ...(testClock !== undefined && { clock: testClock }),
    });
  } catch (err) {
    logger.error({ err: err instanceof Error ? err.message : String(err) }, 'node failed to start');
    flush();
    throw startError(err, cfg);
  }
  metrics.attach(node);
  try {
    if (cfg.adminPort !== 0) {
      history.start(() => node.groupStats());
      const tls = cfg.tls === undefined ? undefined : readTlsFiles(cfg.tls);
      admin = await serveAdmin(node, cfg.host, cfg.adminPort, {
        history,
        metrics,
        ...(tls?.cert !== undefined && tls.key !== undefined && { tls: { cert: tls.cert, key: tls.key } }),
        ...(testClock !== undefined && {
          testClock,
          onClockSet: (skew: ClockSkew) =>
            logger.warn({ ...skew, nowMs: testClock.nowMs() }, 'test clock moved'),
        }),
      });
    }
  } catch (err) {
    logger.error({ err: String(err) }, 'admin server failed to start');
    await node.stop({ transferLeadership: false });
    flush();
    throw err;
  }

  let stopping = false;
  const shutdown = (why: string): void => {
    if (stopping) {
      logger.warn({ why }, 'second stop request: exiting at once');
      flush();
      process.exit(1);
    }
    stopping = true;
    logger.info({ why }, 'stopping gracefully');
    const t0 = performance.now();
    node
      .stop({ transferLeadership: true })
      .then(() => closeServer(admin))
      .then(
        () => {
          logger.info({ ms: Math.round(performance.now() - t0) }, 'stopped');
          flush();
          process.exit(0);
        },
        (err: unknown) => die('graceful stop failed', err),
      );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  if (process.env.DKV_EXIT_WITH_PARENT === '1') {
    const parentGone = (): void => {
      if (!stopping) shutdown('parent gone (stdin closed)');
    };
    process.stdin.on('error', parentGone);
    process.stdin.on('end', parentGone);
    process.stdin.on('close', parentGone);
    process.stdin.resume();
  }

  const c = node.clientAddress();
  const p = node.peerAddress();
  process.stdout.write(`DKV node ${node.id} serving client=${c.host}:${c.port} peer=${p.host}:${p.port}\n`);
  logger.info({ admin: admin === undefined ? null : `${cfg.host}:${cfg.adminPort}` }, 'serving');
  return new Promise<never>(() => {});
}
