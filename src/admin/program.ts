import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { DkvError, ErrorCode, isDkvError } from '../errors.js';

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
    .exitOverride();

  program
    .command('dev')
    .description('run a local cluster of real node processes (arrives with the node runtime)')
    .option('--nodes <n>', 'number of nodes', '3')
    .option('--dir <dir>', 'data directory', '.dkv/dev')
    .option('--base-port <port>', 'first client port', '7401')
    .action(() => {
      throw new DkvError(
        ErrorCode.Unsupported,
        'this build has the Raft core only; the node runtime behind `dkv dev` is not built yet (see README, Status). ' +
          'Try `npm run sim -- --seeds 100` to run the seeded cluster simulation.',
      );
    });
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
      return err.code === ErrorCode.NotFound ? EXIT.notFound : EXIT.error;
    }
    process.stderr.write(`error INTERNAL: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT.error;
  }
}
