/**
 * `dkv instance create|start|stop|status|list|remove` (CONTRACT.md): commander wiring for
 * instances.ts, which holds the logic. The logic module is loaded on use, like `dkv dev`'s:
 * it pulls in the node runtime, which the data commands do not need. Every subcommand takes
 * `--home`; `--json` is the program's global option.
 */
import type { Command } from 'commander';
import { intOption, table, toJson } from './data-commands.js';
import { describeTemplates, TEMPLATE_NAMES } from './templates.js';

interface HomeOption {
  home?: string;
}

function write(text: string): void {
  process.stdout.write(`${text}\n`);
}

function json(cmd: Command): boolean {
  return (cmd.optsWithGlobals() as { json?: boolean }).json === true;
}

const HOME_HELP = 'the instances home (default: $DKV_HOME, else ~/.dkv)';

const PEERS_HELP = `
Forming a cluster (--peers NAME=HOST:PEER_PORT[:CLIENT_PORT],...):
  Give every instance the same list, naming all members (this one included). Member ids
  are the 1-based positions of the names in sorted order (unless --id), so the instances
  agree without talking. This instance's own entry sets its host and peer port (and client
  port). A peer's client port, when not given, is its peer port minus this instance's
  (peer port - client port) offset, e.g. 100 with --port 7401 and peer port 7501: give it
  explicitly when the members do not share one offset. Use one --cluster-id on all.
  With neither --peers nor --join, the instance is a 1-node cluster.

Joining a running cluster (--join HOST:CLIENT_PORT of any member):
  The members are read from that member's cluster status; the new id is the largest
  member id + 1 (unless --id). Start the instance, then run
  dkv --servers HOST:CLIENT_PORT cluster add-member NEW_HOST:NEW_CLIENT_PORT

Ports not given are allocated from 7401 (client), 7501 (peer) and 7601 (admin) upward,
skipping ports other instances of the home hold (even stopped ones) and ports in use now.
`;

/** addInstanceCommands adds `dkv instance ...` to the program. */
export function addInstanceCommands(program: Command): void {
  const instance = program
    .command('instance')
    .description('isolated node instances on this host: create, start, stop, status, list, remove');
  const load = () => import('./instances.js');

  instance
    .command('create')
    .description('create an instance: its config from a template, its data directory, logs and ports')
    .argument('<name>', "the instance's name (letters, digits, _ . -; 1 to 64)")
    .option('--home <dir>', HOME_HELP)
    .option('--template <name>', `sizing preset: ${TEMPLATE_NAMES.join(', ')}`, 'default')
    .option('--host <host>', 'the address to listen on and advertise (default: 127.0.0.1)')
    .option('--port <port>', 'the client port (default: allocated from 7401)')
    .option('--peer-port <port>', 'the peer (Raft) port (default: allocated from 7501)')
    .option(
      '--admin-port <port>',
      'the admin HTTP port, /health and /metrics; 0: none (default: allocated from 7601)',
    )
    .option('--peers <list>', 'form a cluster: NAME=HOST:PEER_PORT[:CLIENT_PORT],... (see below)')
    .option('--join <host:port>', 'join the running cluster of this member (its client port)')
    .option('--id <n>', 'the member id (default: from --peers or --join, else 1)')
    .option('--cluster-id <id>', "the cluster's id (default: dkv, or the joined cluster's)")
    .option('--stores <list>', 'stores to create when the cluster forms: name:partitions,...')
    .option('--data-dir <dir>', 'the data directory (default: <home>/instances/<name>/data)')
    .addHelpText('after', `\n${describeTemplates()}\n${PEERS_HELP}`)
    .action(
      async (
        name: string,
        o: HomeOption & {
          template: string;
          host?: string;
          port?: string;
          peerPort?: string;
          adminPort?: string;
          peers?: string;
          join?: string;
          id?: string;
          clusterId?: string;
          stores?: string;
          dataDir?: string;
        },
        cmd: Command,
      ) => {
        const { createInstance, homeOf } = await load();
        const g = cmd.optsWithGlobals() as { timeout: string; json?: boolean };
        const home = homeOf(o.home);
        const r = await createInstance({
          home,
          name,
          template: o.template,
          ...(o.host !== undefined && { host: o.host }),
          ...(o.port !== undefined && { clientPort: intOption('--port', o.port, 1, 65535) }),
          ...(o.peerPort !== undefined && { peerPort: intOption('--peer-port', o.peerPort, 1, 65535) }),
          ...(o.adminPort !== undefined && { adminPort: intOption('--admin-port', o.adminPort, 0, 65535) }),
          ...(o.peers !== undefined && { peers: o.peers }),
          ...(o.join !== undefined && { join: o.join }),
          ...(o.id !== undefined && { id: intOption('--id', o.id, 1, 0xffff) }),
          ...(o.clusterId !== undefined && { clusterId: o.clusterId }),
          ...(o.stores !== undefined && { stores: o.stores }),
          ...(o.dataDir !== undefined && { dataDir: o.dataDir }),
          joinTimeoutMs: intOption('--timeout', g.timeout, 1),
        });
        if (g.json) {
          write(toJson(r.joinSeed === undefined ? r.status : { ...r.status, joinSeed: r.joinSeed }));
          return;
        }
        const s = r.status;
        const homeArg = o.home !== undefined ? ` --home ${home}` : '';
        write(`created instance ${s.name} (id ${s.id}, template ${s.template}) in ${home}`);
        write(
          `  client ${s.host}:${s.clientPort}  peer ${s.host}:${s.peerPort}  admin ${s.adminPort === 0 ? 'none' : `${s.host}:${s.adminPort}`}`,
        );
        write(`  config ${s.configFile}`);
        write(`  data   ${s.dataDir}`);
        write(`next: dkv instance start ${s.name}${homeArg}`);
        if (r.joinSeed !== undefined)
          write(`then: dkv --servers ${r.joinSeed} cluster add-member ${s.host}:${s.clientPort}`);
      },
    );

  instance
    .command('start')
    .description('start an instance in the background and wait until it serves')
    .argument('<name>')
    .option('--home <dir>', HOME_HELP)
    .option('--wait-ms <ms>', 'how long to wait for the node to serve', '30000')
    .action(async (name: string, o: HomeOption & { waitMs: string }, cmd: Command) => {
      const { homeOf, startInstance } = await load();
      const r = await startInstance(homeOf(o.home), name, { waitMs: intOption('--wait-ms', o.waitMs, 1) });
      write(json(cmd) ? toJson(r) : `started ${r.name} pid=${r.pid} client=${r.client}`);
    });

  instance
    .command('stop')
    .description('stop an instance gracefully (leaderships handed away first); kill it after a timeout')
    .argument('<name>')
    .option('--home <dir>', HOME_HELP)
    .option('--timeout-ms <ms>', 'how long to wait after SIGTERM before SIGKILL', '15000')
    .action(async (name: string, o: HomeOption & { timeoutMs: string }, cmd: Command) => {
      const { homeOf, stopInstance } = await load();
      const timeoutMs = intOption('--timeout-ms', o.timeoutMs, 1);
      const r = await stopInstance(homeOf(o.home), name, timeoutMs);
      if (json(cmd)) write(toJson(r));
      else if (!r.wasRunning) write(`${name} is not running`);
      else if (r.killed)
        write(
          `${name} (pid ${r.pid}) did not stop within ${timeoutMs} ms after SIGTERM: killed it (SIGKILL)`,
        );
      else write(`stopped ${name} (pid ${r.pid})`);
    });

  instance
    .command('status')
    .description("an instance's ports, files, process and (when it runs) health")
    .argument('<name>')
    .option('--home <dir>', HOME_HELP)
    .action(async (name: string, o: HomeOption, cmd: Command) => {
      const { homeOf, instanceStatus } = await load();
      const s = await instanceStatus(homeOf(o.home), name);
      if (json(cmd)) {
        write(toJson(s));
        return;
      }
      for (const [k, v] of Object.entries(s))
        write(`${k}: ${typeof v === 'object' && v !== null ? toJson(v) : String(v)}`);
    });

  instance
    .command('list')
    .description('every instance of the home (--json: one JSON object per line)')
    .option('--home <dir>', HOME_HELP)
    .action(async (o: HomeOption, cmd: Command) => {
      const { homeOf, listInstances } = await load();
      const { instances, problems } = listInstances(homeOf(o.home));
      for (const p of problems) process.stderr.write(`warning: ${p}\n`);
      if (json(cmd)) {
        for (const s of instances) write(toJson(s));
        return;
      }
      write(
        table(
          ['NAME', 'ID', 'RUNNING', 'PID', 'CLIENT', 'PEER', 'ADMIN', 'TEMPLATE'],
          instances.map((s) => [
            s.name,
            String(s.id),
            s.running ? 'yes' : 'no',
            s.pid === null ? '-' : String(s.pid),
            `${s.host}:${s.clientPort}`,
            String(s.peerPort),
            s.adminPort === 0 ? '-' : String(s.adminPort),
            s.template,
          ]),
        ),
      );
    });

  instance
    .command('remove')
    .description('delete an instance and its files (a running one only with --force)')
    .argument('<name>')
    .option('--home <dir>', HOME_HELP)
    .option('--force', 'stop it first if it runs')
    .option('--timeout-ms <ms>', 'with --force: how long to wait after SIGTERM before SIGKILL', '15000')
    .action(async (name: string, o: HomeOption & { force?: boolean; timeoutMs: string }, cmd: Command) => {
      const { homeOf, removeInstance } = await load();
      const r = await removeInstance(homeOf(o.home), name, {
        force: o.force === true,
        timeoutMs: intOption('--timeout-ms', o.timeoutMs, 1),
      });
      if (json(cmd)) {
        write(toJson(r));
        return;
      }
      if (r.stopped?.killed === true) write(`${name} did not stop in time: killed it (SIGKILL)`);
      else if (r.stopped !== undefined) write(`stopped ${name} (pid ${r.stopped.pid})`);
      if (r.keptDataDir !== undefined)
        write(`kept the data directory ${r.keptDataDir} (outside the instance)`);
      write(`removed ${name}`);
    });
}
