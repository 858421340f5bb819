/**
 * The control-plane commands: `dkv cluster status|add-member|remove-member|rebalance` and
 * `dkv store create|list|describe|delete` (CONTRACT.md).
 *
 * Control-plane actions go to the metadata group's leader (the `admin` op); `adminCall`
 * tries the servers in order and follows NOT_LEADER redirects, so any member will do.
 * Membership changes are asynchronous in the cluster (a learner catches up, replicas move a
 * few at a time); `add-member` and `remove-member` wait for them by default, printing each
 * step as `cluster status` shows it, and `--no-wait` returns at once.
 */
import type { Command } from 'commander';
import { DkvError, ErrorCode, isDkvError } from '../errors.js';
import type { ClusterStatus } from '../transport/protocol.js';
import { callServer, fetchStatus, globals, intOption, serversOf, table, toJson } from './data-commands.js';

function write(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** REDIRECTS_MAX bounds how many NOT_LEADER hops one admin call follows. */
const REDIRECTS_MAX = 5;

/**
 * adminCall runs one control-plane action on the metadata leader: it tries `servers` in
 * order and follows NOT_LEADER redirects (the error names the leader's address).
 */
export async function adminCall(
  servers: readonly string[],
  action: string,
  args: Record<string, unknown>,
  timeoutMs: number,
): Promise<unknown> {
  const deadline = performance.now() + timeoutMs;
  const queue = [...servers];
  let last: unknown;
  for (let hops = 0; queue.length > 0 && hops <= REDIRECTS_MAX + servers.length; hops++) {
    const s = queue.shift()!;
    if (performance.now() >= deadline) break;
    try {
      return await callServer(s, 'admin', { action, ...args }, deadline);
    } catch (err) {
      last = err;
      if (isDkvError(err) && err.code === ErrorCode.NotLeader) {
        const address = (err.details as { address?: unknown } | undefined)?.address;
        if (typeof address === 'string') {
          queue.unshift(address);
        } else {
          // No leader known yet: wait a moment and ask again.
          await new Promise((r) => setTimeout(r, 200));
          queue.push(s);
        }
        continue;
      }
      if (isDkvError(err) && err.code !== ErrorCode.Unavailable && err.code !== ErrorCode.Timeout) throw err;
    }
  }
  if (isDkvError(last)) throw last;
  throw new DkvError(ErrorCode.Unavailable, `no server completed ${action} within ${timeoutMs} ms`);
}

/** formatStatus renders a cluster status for people. */
export function formatStatus(s: ClusterStatus): string {
  const members = table(
    ['ID', 'ADDRESS', 'PEER', 'STATE', 'HEALTHY'],
    s.members.map((m) => [
      String(m.id),
      m.address,
      m.peerAddress ?? '',
      m.state ?? 'active',
      m.healthy ? 'yes' : 'NO',
    ]),
  );
  const groups = table(
    ['GROUP', 'STORE', 'LEADER', 'TERM', 'COMMIT', 'LAG', 'REPLICAS', 'LEARNERS', 'TARGET'],
    s.groups.map((g) => [
      String(g.id),
      g.store,
      g.leader > 0 ? String(g.leader) : 'none',
      String(g.term),
      String(g.commitIndex),
      String(g.lag ?? 0),
      g.replicas.join(','),
      (g.learners ?? []).join(',') || '-',
      (g.target ?? g.replicas).join(','),
    ]),
  );
  const alarms =
    (s.alarms ?? []).length === 0
      ? 'none'
      : (s.alarms ?? []).map((a) => `${a.kind}: ${a.message}`).join('\n');
  return `Members\n${members}\n\nGroups\n${groups}\n\nAlarms\n${alarms}`;
}

/** moving counts the groups whose membership has not reached its target yet. */
export function moving(s: ClusterStatus): number {
  return s.groups.filter((g) => {
    const t = g.target ?? g.replicas;
    return (
      (g.learners ?? []).length > 0 ||
      t.length !== g.replicas.length ||
      !t.every((n) => g.replicas.includes(n))
    );
  }).length;
}

/**
 * waitFor polls the cluster status until `done` says so (and, with `balanced`, until
 * placement wants no more moves), printing `progress` whenever it changes; TIMEOUT (with the
 * last progress) when `timeoutMs` runs out.
 */
async function waitFor(
  servers: readonly string[],
  timeoutMs: number,
  done: (s: ClusterStatus) => boolean,
  progress: (s: ClusterStatus) => string,
  quiet: boolean,
  balanced = false,
): Promise<ClusterStatus> {
  const deadline = performance.now() + timeoutMs;
  let said = '';
  for (;;) {
    let s: ClusterStatus | undefined;
    try {
      s = await fetchStatus(servers, 5000);
    } catch {
      s = undefined;
    }
    if (s) {
      let pending = 0;
      if (balanced && done(s)) {
        try {
          pending = ((await adminCall(servers, 'placement', {}, 10_000)) as { pending: number }).pending;
        } catch {
          pending = 1;
        }
      }
      const p = `${progress(s)}${pending > 0 ? `, ${pending} more moves planned` : ''}`;
      if (p !== said && !quiet) process.stderr.write(`${p}\n`);
      said = p;
      if (done(s) && pending === 0) return s;
    }
    if (performance.now() > deadline) {
      throw new DkvError(
        ErrorCode.Timeout,
        `still not done after ${timeoutMs} ms (${said}); it goes on in the background`,
      );
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** parseIndexSpec reads `NAME:FIELD:eq|range` (FIELD `@label` indexes a label). */
export function parseIndexSpec(spec: string): { name: string; kind: string; field?: string; label?: string } {
  const parts = spec.split(':');
  if (parts.length !== 3 || parts.some((p) => p.length === 0)) {
    throw new DkvError(
      ErrorCode.InvalidArgument,
      `--index ${JSON.stringify(spec)}: want NAME:FIELD:eq|range`,
    );
  }
  const [name, source, kind] = parts as [string, string, string];
  if (kind !== 'eq' && kind !== 'range') {
    throw new DkvError(ErrorCode.InvalidArgument, `--index ${JSON.stringify(spec)}: the kind is eq or range`);
  }
  return source.startsWith('@') ? { name, kind, label: source.slice(1) } : { name, kind, field: source };
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

/** parseQuotas reads `--quota keys=1000,bytes=1048576`. */
export function parseQuotas(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of text.split(',')) {
    const m = /^\s*(keys|bytes|watches|leases|locks)\s*=\s*(\d+)\s*$/.exec(part);
    if (m === null)
      throw new DkvError(
        ErrorCode.InvalidArgument,
        `--quota ${JSON.stringify(part)}: want KIND=N with KIND keys, bytes, watches, leases or locks`,
      );
    out[m[1]!] = intOption(`--quota ${m[1]}`, m[2]!, 0);
  }
  return out;
}

/** addClusterCommands adds `dkv cluster ...` and `dkv store ...`. */
export function addClusterCommands(program: Command): void {
  const cluster = program.command('cluster').description('the cluster: members, groups, leaders, placement');
  cluster
    .command('status')
    .description(
      'members and their health and state; every group with its leader, term, lag, replicas; alarms',
    )
    .action(async (_o: unknown, cmd: Command) => {
      const g = globals(cmd);
      const s = await fetchStatus(serversOf(g), intOption('--timeout', g.timeout, 1));
      write(g.json ? toJson(s) : formatStatus(s));
    });

  cluster
    .command('add-member')
    .description(
      'add a running node (started with join: true, e.g. `dkv instance create --join`) to the cluster',
    )
    .argument('<address>', "host:port of the new node's client port")
    .option('--no-wait', 'return once the member is registered, without waiting for it to catch up')
    .option('--wait-ms <ms>', 'how long to wait for it to become active and for replicas to settle', '180000')
    .action(async (address: string, o: { wait: boolean; waitMs: string }, cmd: Command) => {
      const g = globals(cmd);
      const servers = serversOf(g);
      const m = (await adminCall(
        servers,
        'member.add',
        { address },
        intOption('--timeout', g.timeout, 1),
      )) as {
        id: number;
        state: string;
      };
      if (!g.json) process.stderr.write(`member ${m.id} (${address}) registered: ${m.state}\n`);
      let s: ClusterStatus | undefined;
      if (o.wait) {
        s = await waitFor(
          servers,
          intOption('--wait-ms', o.waitMs, 1),
          (x) => x.members.some((y) => y.id === m.id && y.state === 'active') && moving(x) === 0,
          (x) => {
            const me = x.members.find((y) => y.id === m.id);
            const held = x.groups.filter((y) => y.id !== 0 && y.replicas.includes(m.id)).length;
            return `member ${m.id}: ${me?.state ?? 'unknown'}, replica of ${held} groups, ${moving(x)} groups moving`;
          },
          g.json === true,
          true,
        );
      }
      const me = s?.members.find((y) => y.id === m.id);
      write(
        g.json
          ? toJson({ id: m.id, address, state: me?.state ?? m.state })
          : `member ${m.id} ${me?.state ?? m.state}`,
      );
    });

  cluster
    .command('remove-member')
    .description('move every replica off a member, then remove it from the cluster')
    .argument('<id>', 'the member id')
    .option('--no-wait', 'return once the member is marked leaving')
    .option('--wait-ms <ms>', 'how long to wait for its replicas to move away', '180000')
    .action(async (idText: string, o: { wait: boolean; waitMs: string }, cmd: Command) => {
      const g = globals(cmd);
      const id = intOption('<id>', idText, 1, 0xffff);
      const servers = serversOf(g);
      await adminCall(servers, 'member.remove', { id }, intOption('--timeout', g.timeout, 1));
      if (!g.json) process.stderr.write(`member ${id} is leaving: moving its replicas away\n`);
      if (o.wait) {
        await waitFor(
          servers,
          intOption('--wait-ms', o.waitMs, 1),
          (x) =>
            !x.members.some((y) => y.id === id) &&
            !x.groups.some((y) => y.replicas.includes(id) || (y.learners ?? []).includes(id)),
          (x) => {
            const held = x.groups.filter(
              (y) => y.replicas.includes(id) || (y.learners ?? []).includes(id),
            ).length;
            return x.members.some((y) => y.id === id)
              ? `member ${id}: still holds replicas of ${held} groups`
              : `member ${id}: removed`;
          },
          g.json === true,
        );
      }
      write(
        g.json
          ? toJson({ id, removed: o.wait })
          : o.wait
            ? `member ${id} removed; its process can be stopped now`
            : `member ${id} leaving`,
      );
    });

  cluster
    .command('rebalance')
    .description('move replicas and leaders now, toward an even spread (moves stay rate-limited)')
    .action(async (_o: unknown, cmd: Command) => {
      const g = globals(cmd);
      const r = (await adminCall(serversOf(g), 'rebalance', {}, intOption('--timeout', g.timeout, 1))) as {
        changes: { group: number; replicas: number[]; why: string }[];
      };
      if (g.json) write(toJson(r));
      else if (r.changes.length === 0) write('balanced: no replica needs to move (leaders are being spread)');
      else
        for (const c of r.changes) write(`group ${c.group} -> replicas ${c.replicas.join(',')} (${c.why})`);
    });

  const store = program.command('store').description('stores: create, list, describe, delete');
  store
    .command('create')
    .description('create a store: its partition groups, replicas and indexes')
    .argument('<name>')
    .option('--partitions <n>', 'partition groups', '6')
    .option('--replicas <r>', 'replicas per group', '3')
    .option(
      '--index <spec>',
      'an index NAME:FIELD:eq|range (FIELD @label for a label); repeatable',
      collect,
      [],
    )
    .option(
      '--quota <q>',
      "quotas KIND=N,... with KIND keys, bytes, watches, leases, locks (0: unlimited; default: the nodes' quotas)",
    )
    .action(
      async (
        name: string,
        o: { partitions: string; replicas: string; index: string[]; quota?: string },
        cmd: Command,
      ) => {
        const g = globals(cmd);
        const r = (await adminCall(
          serversOf(g),
          'store.create',
          {
            name,
            partitions: intOption('--partitions', o.partitions, 1, 256),
            replicas: intOption('--replicas', o.replicas, 1, 7),
            indexes: o.index.map(parseIndexSpec),
            ...(o.quota !== undefined && { quotas: parseQuotas(o.quota) }),
          },
          Math.max(intOption('--timeout', g.timeout, 1), 20_000),
        )) as { name: string; groups: unknown[]; ready: boolean };
        write(
          g.json
            ? toJson(r)
            : `store ${r.name} created: ${r.groups.length} groups${r.ready ? '' : ' (some still electing leaders)'}`,
        );
      },
    );
  store
    .command('list')
    .description('every store')
    .action(async (_o: unknown, cmd: Command) => {
      const g = globals(cmd);
      const r = (await adminCall(serversOf(g), 'store.list', {}, intOption('--timeout', g.timeout, 1))) as {
        name: string;
        partitions: number;
        replicas: number;
        indexes: string[];
      }[];
      if (g.json) for (const s of r) write(toJson(s));
      else
        write(
          table(
            ['NAME', 'PARTITIONS', 'REPLICAS', 'INDEXES'],
            r.map((s) => [s.name, String(s.partitions), String(s.replicas), s.indexes.join(',') || '-']),
          ),
        );
    });
  store
    .command('describe')
    .description("a store's groups (slots, replicas, leader) and indexes")
    .argument('<name>')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const g = globals(cmd);
      const r = (await adminCall(
        serversOf(g),
        'store.describe',
        { name },
        intOption('--timeout', g.timeout, 1),
      )) as {
        name: string;
        partitions: number;
        replicas: number;
        indexes: { name: string; kind: string; field?: string; label?: string }[];
        groups: { id: number; slots: [number, number][]; replicas: number[]; leader: number }[];
      };
      if (g.json) {
        write(toJson(r));
        return;
      }
      const idx =
        r.indexes.map((i) => `${i.name}:${i.field ?? `@${i.label}`}:${i.kind}`).join(', ') || 'none';
      write(`store ${r.name}: ${r.partitions} partitions, ${r.replicas} replicas, indexes ${idx}`);
      write(
        table(
          ['GROUP', 'SLOTS', 'REPLICAS', 'LEADER'],
          r.groups.map((x) => [
            String(x.id),
            x.slots.map(([a, b]) => `${a}-${b - 1}`).join(','),
            x.replicas.join(','),
            x.leader > 0 ? String(x.leader) : 'none',
          ]),
        ),
      );
    });
  store
    .command('delete')
    .description('delete a store and all its data')
    .argument('<name>')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const g = globals(cmd);
      await adminCall(serversOf(g), 'store.delete', { name }, intOption('--timeout', g.timeout, 1));
      write(g.json ? toJson({ name, deleted: true }) : `store ${name} deleted`);
    });
}
