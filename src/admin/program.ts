import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { ErrorCode, isDkvError } from '../errors.js';
import { addCertsCommands } from './certs.js';
import { type SecurityOptions, setCliSecurity } from './cli-security.js';
import { addAuthCommands } from './cmd-auth.js';
import { addClusterCommands } from './cmd-cluster.js';
import { addCoordinationCommands } from './cmd-coord.js';
import { addInstanceCommands } from './cmd-instance.js';
import { addQueryCommands } from './cmd-query.js';
import { addSnapshotCommands } from './cmd-snapshot.js';
import { addDataCommands, intOption } from './data-commands.js';

/** EXIT holds the dkv CLI's exit codes, as CONTRACT.md fixes them. */
export const EXIT = { ok: 0, notFound: 1, error: 2 } as const;

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/** buildProgram assembles the commander program with its global options and commands. */
export function buildProgram(): Command {
  const program = new Command('dkv')
    .description('DKV: a distributed key-value and coordination store on Raft')
    .version(packageVersion())
    .option('--servers <list>', 'comma-separated host:port list', process.env.DKV_SERVERS ?? '127.0.0.1:7401')
    .option('--store <name>', 'store name', process.env.DKV_STORE ?? 'default')
    .option('--json', 'machine-readable output')
    .option('--timeout <ms>', 'request timeout in milliseconds', '5000')
    .option('--tls-ca <file>', 'TLS: the CA to check the servers against (env DKV_TLS_CA)')
    .option('--tls-cert <file>', 'TLS: a client certificate to present (env DKV_TLS_CERT)')
    .option('--tls-key <file>', "TLS: the client certificate's key (env DKV_TLS_KEY)")
    .option('--user <name>', 'authenticate as this user (env DKV_USER)')
    .option('--password <pw>', "the user's password (env DKV_PASSWORD, which keeps it out of ps)")
    .option('--auth-token <token>', 'authenticate with a token (env DKV_TOKEN)')
    .hook('preAction', (_cmd, action) => setCliSecurity(action.optsWithGlobals() as SecurityOptions))
    .exitOverride();

  program
    .command('dev')
    .description('run a local cluster of real node processes on 127.0.0.1, in the foreground')
    .option('--nodes <n>', 'number of nodes', '3')
    .option('--dir <dir>', 'data directory (a restart with the same dir keeps the data)', '.dkv/dev')
    .option('--base-port <port>', 'first client port (peer ports +100, admin ports +200)', '7401')
    .option('--tls', 'TLS on every port, mutual TLS between nodes (makes a development CA in <dir>/certs)')
    .option('--auth', 'require authentication (makes <dir>/auth.json with user root; see dkv auth)')
    .action(
      async (
        o: { nodes: string; dir: string; basePort: string; tls?: boolean; auth?: boolean },
        cmd: Command,
      ) => {
        // Loaded on use: the node runtime (LevelDB and all) is not needed by the data commands.
        const { NODES_MAX, runDev } = await import('./dev.js');
        await runDev({
          nodes: intOption('--nodes', o.nodes, 1, NODES_MAX),
          dir: o.dir,
          basePort: intOption('--base-port', o.basePort, 1, 65535),
          basePortGiven: cmd.getOptionValueSource('basePort') === 'cli',
          tls: o.tls === true,
          auth: o.auth === true,
        });
      },
    );

  program
    .command('node', { hidden: true })
    .description('run one node (what dkv dev and instances spawn)')
    .requiredOption('--config <file>', 'the node config file (JSON)')
    .action(async (o: { config: string }) => {
      const { runNode } = await import('../node/main.js');
      await runNode(o.config);
    });

  addDataCommands(program);
  addQueryCommands(program);
  addCoordinationCommands(program);
  addClusterCommands(program);
  addInstanceCommands(program);
  addSnapshotCommands(program);
  addAuthCommands(program);
  addCertsCommands(program);
  return program;
}

/** main runs the CLI and maps failures to the contract's exit codes and `error CODE: message` lines. */
export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv]);
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? EXIT.ok : EXIT.error;
    }
    if (isDkvError(err)) {
      process.stderr.write(`error ${err.code}: ${err.message}\n`);
      return err.code === ErrorCode.NotFound ||
        err.code === ErrorCode.VersionMismatch ||
        err.code === ErrorCode.StoreNotFound
        ? EXIT.notFound
        : EXIT.error;
    }
    process.stderr.write(`error INTERNAL: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT.error;
  }
}
