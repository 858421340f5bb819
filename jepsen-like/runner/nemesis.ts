/**
 * Nemeses: the faults of the harness, each started from a schedule step and healed after it.
 *
 * - Partitions cut directed peer links in the fault proxies (blackhole: frames vanish and the
 *   connections stay open, as in a real partition). `partition`: two random halves;
 *   `partition-leader`: the node leading the most groups, alone; `partition-ring`: every node
 *   hears a majority but no two the same one (with 3 nodes: a directed ring, each node hears
 *   only its predecessor); `bridge`: two halves that only one bridge node joins.
 * - `kill`: SIGKILL one node (20%), the leader (20%), a majority (25%) or every node (35%);
 *   the heal restarts them.
 * - `pause`: SIGSTOP one node or the leader; the heal sends SIGCONT.
 * - `clock`: a node's clock (or every node's) jumps by an offset and runs at a skewed rate,
 *   through the test-only admin call (`POST /test/clock`, the `clock` test hook).
 * - `delay`: every link delayed (with jitter), or some links lossy, or both.
 * - `membership`: one member removed (`member.remove`, picked by the schedule's random number,
 *   the metadata leader's node included), then brought back as a fresh member. The fault is
 *   verified once the member is `leaving` and then gone from the members and from every
 *   group's voters and learners (waited for up to MEMBERSHIP_WAIT_MS from the start, past the
 *   step's hold if need be; the time it took is `removeMs`). The heal kills the node (no
 *   longer a member), wipes its data directory but its log, rewrites its config with
 *   `join: true` (same id, ports and proxied peer addresses), starts it, `member.add`s it,
 *   and waits until it is `active` (`rejoinMs`) and every group has its former number of
 *   voters with nothing moving (`restoreMs`), each wait bounded. The detail's `steps` say
 *   what happened when. A membership fault starts only when every node is an active member
 *   and nothing moves, so there is one at a time. With 3 nodes the cluster runs on 2 members
 *   while one is out: no fault tolerance in that window.
 *   A rejoined node's lower-id peers dial it at the peer address the metadata holds (its
 *   real port), not through the proxy their config names: the heal finds such links (a
 *   proxy that carries nothing while both nodes run, `bypassed`) and restarts each such peer
 *   in turn (`rewired`), which dials through its proxy again, so the partition and delay
 *   nemeses still cut every link afterwards. Should a link still bypass its proxy, a
 *   partition that cuts it says so in its verification.
 *
 * Every fault is verified to take effect, and the verdict of that check is recorded with the
 * fault: the cut links' blackholed frame counts grow and an isolated side's commit indexes
 * stop moving while the other side's move; a killed process is gone; a paused one is in state
 * T; a skewed clock reads back its offset; a lossy link drops frames; a removed member is
 * gone from the cluster status.
 */
import { adminCall, moving } from '../../src/admin/cmd-cluster.js';
import { fetchStatus } from '../../src/admin/data-commands.js';
import type { ClusterStatus } from '../../src/transport/protocol.js';
import type { HarnessCluster, Link } from './cluster.js';
import { type NemesisName, pickOne, type Step, shuffled } from './schedule.js';

/** Fault is a started fault. */
export interface Fault {
  readonly nemesis: NemesisName;
  /** What was done, for the history and the report. */
  readonly detail: Record<string, unknown>;
  /** Resolves to the verification's outcome: "ok", or what did not take effect. */
  readonly verified: Promise<string>;
  /** heal undoes the fault. */
  heal(): Promise<void>;
}

/** NemesisContext is what a nemesis acts on. */
export interface NemesisContext {
  readonly cluster: HarnessCluster;
  readonly log: (line: string) => void;
  /** The largest clock-rate skew the clock nemesis may apply (>= 1). */
  readonly clockRateMax: number;
  /** The largest clock offset the clock nemesis may apply (ms). */
  readonly clockOffsetMaxMs: number;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** leaderNode is the node leading the most groups (ties: lowest id), or a pick among the up ones. */
async function leaderNode(c: HarnessCluster, pick: number): Promise<number> {
  const leads = await c.leaders();
  let best = 0;
  let most = 0;
  for (const [id, groups] of [...leads].sort((a, b) => a[0] - b[0]))
    if (groups.length > most) {
      best = id;
      most = groups.length;
    }
  if (best !== 0) return best;
  return pickOne(upNodes(c), pick);
}

function upNodes(c: HarnessCluster): number[] {
  const up = c.ids.filter((id) => c.running(id) && !c.isPaused(id));
  return up.length > 0 ? up : c.ids;
}

// ------------------------------------------------------------------------------- partitions

/** components → the directed links between different components (except via bridges). */
function cutBetween(c: HarnessCluster, sides: readonly (readonly number[])[]): Link[] {
  const sideOf = new Map<number, number>();
  sides.forEach((s, i) => {
    for (const id of s) sideOf.set(id, i);
  });
  return c.links().filter((l) => {
    const a = sideOf.get(l.from);
    const b = sideOf.get(l.to);
    return a !== undefined && b !== undefined && a !== b;
  });
}

function ringCut(c: HarnessCluster, order: readonly number[]): Link[] {
  const n = order.length;
  const pos = new Map(order.map((id, i) => [id, i]));
  if (n <= 3) {
    // A directed ring: each node hears only from its predecessor.
    return c.links().filter((l) => (pos.get(l.from)! + 1) % n !== pos.get(l.to)!);
  }
  const reach = Math.floor(n / 2) - 1 >= 1 ? Math.floor(n / 2) - 1 : 1;
  return c.links().filter((l) => {
    const d = Math.abs(pos.get(l.from)! - pos.get(l.to)!);
    return Math.min(d, n - d) > reach;
  });
}

async function commitIndexes(c: HarnessCluster, ids: readonly number[]): Promise<Map<number, number[]>> {
  const out = new Map<number, number[]>();
  const st = await c.statuses(1000);
  for (const id of ids) {
    const s: ClusterStatus | undefined = st.get(id);
    if (s !== undefined)
      out.set(
        id,
        s.groups.map((g) => g.commitIndex),
      );
  }
  return out;
}

/** verifyCut: the cut links drop frames, and an isolated minority's commit indexes stop. */
async function verifyCut(c: HarnessCluster, cut: Link[], minority: readonly number[]): Promise<string> {
  const before = c.linkCounters(cut);
  // Frames already in flight may still land for a moment: measure the minority after it settles.
  await sleep(600);
  const m0 = await commitIndexes(c, minority);
  const rest = c.ids.filter((id) => !minority.includes(id));
  const r0 = await commitIndexes(c, rest);
  await sleep(1500);
  const m1 = await commitIndexes(c, minority);
  const r1 = await commitIndexes(c, rest);
  const problems: string[] = [];
  const after = c.linkCounters(cut);
  // Frames that arrived on a cut link and were not blackholed went through: the cut failed.
  if (after.frames - before.frames > after.blackholed - before.blackholed)
    problems.push('frames crossed the cut links');
  const quiet = after.frames === before.frames;
  const moved = (a: Map<number, number[]>, b: Map<number, number[]>): boolean =>
    [...b].some(([id, xs]) => xs.some((x, i) => x > (a.get(id)?.[i] ?? x)));
  if (minority.length > 0 && moved(m0, m1))
    problems.push(`the isolated side (${minority.join(',')}) still commits`);
  const restMoved = moved(r0, r1);
  const direct = cut.filter((l) => linkBypassed(c, l)).map((l) => `${l.from}->${l.to}`);
  if (direct.length > 0)
    problems.push(
      `links ${direct.join(', ')} bypass their proxies since a member rejoined (membership nemesis), so the cut missed them`,
    );
  if (problems.length > 0) return problems.join('; ');
  const notes: string[] = [];
  if (quiet) notes.push('the cut links carried nothing meanwhile: their connections were down, reconnecting');
  if (minority.length > 0 && !restMoved)
    notes.push('the majority committed nothing meanwhile, so the stall is not conclusive');
  return notes.length === 0 ? 'ok' : `ok (${notes.join('; ')})`;
}

function partition(
  c: HarnessCluster,
  cut: Link[],
  minority: number[],
  detail: Record<string, unknown>,
  nemesis: NemesisName,
): Fault {
  for (const l of cut) l.proxy.set(l.dir, { blackhole: true });
  return {
    nemesis,
    detail: { ...detail, cut: cut.map((l) => `${l.from}->${l.to}`) },
    verified: verifyCut(c, cut, minority),
    async heal() {
      for (const l of cut) l.proxy.set(l.dir, { blackhole: false });
    },
  };
}

// ------------------------------------------------------------------------------- the nemeses

/** startFault starts the fault of one schedule step. */
export async function startFault(ctx: NemesisContext, step: Step): Promise<Fault> {
  const c = ctx.cluster;
  const p = step.picks;
  const ids = c.ids;
  switch (step.nemesis) {
    case 'partition': {
      const order = shuffled(ids, p[0]!);
      const small = order.slice(0, Math.floor(ids.length / 2));
      const big = order.slice(Math.floor(ids.length / 2));
      return partition(c, cutBetween(c, [small, big]), small, { sides: [small, big] }, 'partition');
    }
    case 'partition-leader': {
      const leader = await leaderNode(c, p[0]!);
      const rest = ids.filter((id) => id !== leader);
      return partition(
        c,
        cutBetween(c, [[leader], rest]),
        [leader],
        { isolated: leader },
        'partition-leader',
      );
    }
    case 'partition-ring': {
      const order = shuffled(ids, p[0]!);
      return partition(c, ringCut(c, order), [], { ring: order }, 'partition-ring');
    }
    case 'bridge': {
      const order = shuffled(ids, p[0]!);
      const bridge = order[0]!;
      const others = order.slice(1);
      const a = others.slice(0, Math.floor(others.length / 2));
      const b = others.slice(Math.floor(others.length / 2));
      return partition(c, cutBetween(c, [a, b]), [], { bridge, sides: [a, b] }, 'bridge');
    }
    case 'kill': {
      // Whole-cluster and majority kills are what test durability: weighted up.
      const q = p[1]!;
      const mode = q < 0.2 ? 'one' : q < 0.4 ? 'leader' : q < 0.65 ? 'majority' : 'all';
      const up = ids.filter((id) => c.running(id));
      let victims: number[];
      if (mode === 'one') victims = [pickOne(up, p[0]!)];
      else if (mode === 'leader') victims = [await leaderNode(c, p[0]!)];
      else if (mode === 'majority') victims = shuffled(up, p[0]!).slice(0, Math.floor(ids.length / 2) + 1);
      else victims = up;
      await Promise.all(victims.map((id) => c.kill(id)));
      const gone = victims.filter((id) => !c.running(id));
      return {
        nemesis: 'kill',
        detail: { mode, killed: victims },
        verified: Promise.resolve(
          gone.length === victims.length
            ? 'ok'
            : `still running: ${victims.filter((id) => c.running(id)).join(',')}`,
        ),
        async heal() {
          for (const id of victims) {
            c.restart(id);
            restarted(c, id);
          }
        },
      };
    }
    case 'pause': {
      const mode = pickOne(['one', 'leader'] as const, p[1]!);
      const target = mode === 'leader' ? await leaderNode(c, p[0]!) : pickOne(upNodes(c), p[0]!);
      c.pause(target);
      const verified = (async () => {
        await sleep(200);
        const st = c.processState(target);
        return st === 'T' ? 'ok' : `node ${target} is in state ${st ?? 'gone'}, not stopped`;
      })();
      return {
        nemesis: 'pause',
        detail: { mode, paused: target },
        verified,
        async heal() {
          c.resume(target);
        },
      };
    }
    case 'clock': {
      const all = p[1]! < 0.3;
      const targets = all ? ids.filter((id) => c.running(id)) : [pickOne(upNodes(c), p[0]!)];
      const settings = targets.map((id, i) => {
        const q = p[(2 + i) % p.length]!;
        const offsetMs = Math.round((q * 2 - 1) * ctx.clockOffsetMaxMs);
        const rate = 1 + (p[(3 + i) % p.length]! * 2 - 1) * (ctx.clockRateMax - 1);
        return { id, offsetMs, rate: Math.round(rate * 1000) / 1000 };
      });
      const readBack: string[] = [];
      for (const s of settings) {
        try {
          const r = (await c.clock(s.id, { offsetMs: s.offsetMs, rate: s.rate })) as { offsetMs?: number };
          const seen = (await c.clock(s.id, undefined)) as { nowMs?: number };
          const skew = (seen.nowMs ?? 0) - Date.now();
          if (r.offsetMs !== s.offsetMs || Math.abs(skew - s.offsetMs) > 1000)
            readBack.push(`node ${s.id} reads ${skew} ms off, wanted ${s.offsetMs}`);
        } catch (err) {
          readBack.push(`node ${s.id}: ${(err as Error).message}`);
        }
      }
      return {
        nemesis: 'clock',
        detail: { clocks: settings },
        verified: Promise.resolve(readBack.length === 0 ? 'ok' : readBack.join('; ')),
        async heal() {
          for (const s of settings)
            await c
              .clock(s.id, { offsetMs: 0, rate: 1 })
              .catch((err: unknown) => ctx.log(`clock heal on node ${s.id} failed: ${String(err)}`));
        },
      };
    }
    case 'delay': {
      const mode = pickOne(['delay', 'loss', 'both'] as const, p[1]!);
      const links = c.links();
      const lossy = shuffled(links, p[0]!).slice(0, Math.ceil(links.length / 2));
      const delayMs = 20 + Math.round(p[2]! * 130);
      const lossRate = Math.round((0.2 + p[3]! * 0.3) * 100) / 100;
      if (mode !== 'loss')
        for (const l of links) l.proxy.set(l.dir, { delayMs, jitterMs: Math.round(delayMs / 2) });
      if (mode !== 'delay') for (const l of lossy) l.proxy.set(l.dir, { lossRate });
      const verified = (async () => {
        const d0 = c.linkCounters(lossy).dropped;
        const f0 = c.linkCounters(links).frames;
        await sleep(1500);
        if (mode !== 'delay' && c.linkCounters(lossy).dropped <= d0)
          return 'no frame was dropped on the lossy links';
        if (c.linkCounters(links).frames <= f0) return 'no frame crossed the delayed links';
        return 'ok';
      })();
      return {
        nemesis: 'delay',
        detail: {
          mode,
          ...(mode !== 'loss' && { delayMs, jitterMs: Math.round(delayMs / 2) }),
          ...(mode !== 'delay' && { lossRate, lossy: lossy.map((l) => `${l.from}->${l.to}`) }),
        },
        verified,
        async heal() {
          for (const l of links) l.proxy.set(l.dir, { delayMs: 0, jitterMs: 0, lossRate: 0 });
        },
      };
    }
    case 'membership':
      return startMembership(ctx, p);
  }
}

// ------------------------------------------------------------------------------- membership

/** MEMBERSHIP_WAIT_MS bounds each wait of the membership nemesis (removal, re-add, restore). */
export const MEMBERSHIP_WAIT_MS = 60_000;
/** How often the membership nemesis reads the cluster status while it waits. */
const MEMBERSHIP_POLL_MS = 250;

/** MembershipStep is one step of a membership fault, in its detail (`steps`), for results.json. */
export interface MembershipStep {
  readonly step: string;
  /** Since the fault started. */
  readonly atMs: number;
  readonly note?: string;
}

function memberState(s: ClusterStatus, id: number): string | undefined {
  const m = s.members.find((x) => x.id === id);
  return m === undefined ? undefined : (m.state ?? 'active');
}

/** holdersOf lists the groups in which `id` is a voter or a learner. */
export function holdersOf(s: ClusterStatus, id: number): number[] {
  return s.groups.filter((g) => g.replicas.includes(id) || (g.learners ?? []).includes(id)).map((g) => g.id);
}

/** removalDone: `id` is neither a member nor a voter or learner of any group. */
export function removalDone(s: ClusterStatus, id: number): boolean {
  return memberState(s, id) === undefined && holdersOf(s, id).length === 0;
}

/**
 * membershipBlocker says why a membership fault may not start now (undefined: it may): every
 * node of the harness must be an active member and no group may be moving, so there is only
 * ever one membership change under way, and it starts from a whole cluster.
 */
export function membershipBlocker(s: ClusterStatus, ids: readonly number[]): string | undefined {
  const notActive = ids.filter((id) => memberState(s, id) !== 'active');
  if (notActive.length > 0)
    return `node(s) ${notActive.map((id) => `${id} (${memberState(s, id) ?? 'not a member'})`).join(', ')} not active members`;
  const busy = moving(s);
  if (busy > 0) return `${busy} group(s) still moving replicas`;
  return undefined;
}

/**
 * restored: after a rejoin, `id` is active, no group is moving, and every group has at least as
 * many voters as in `before` (the status before the fault), so fault tolerance is back.
 */
export function restored(s: ClusterStatus, id: number, before: ClusterStatus): boolean {
  if (memberState(s, id) !== 'active' || moving(s) > 0) return false;
  return before.groups.every((b) => {
    const g = s.groups.find((x) => x.id === b.id);
    return g === undefined || g.replicas.length >= b.replicas.length;
  });
}

function clientAddress(c: HarnessCluster, id: number): string {
  const s = c.spec(id);
  return `${s.host}:${s.clientPort}`;
}

/** statusWithout reads the cluster status from the running nodes but `except` (undefined: none answered). */
async function statusWithout(c: HarnessCluster, except: number): Promise<ClusterStatus | undefined> {
  const servers = c.ids
    .filter((id) => id !== except && c.running(id) && !c.isPaused(id))
    .map((id) => clientAddress(c, id));
  if (servers.length === 0) return undefined;
  try {
    return await fetchStatus(servers, 3000);
  } catch {
    return undefined;
  }
}

/**
 * waitStatus polls the status (not from `except`) until `done` holds, for at most `ms`;
 * it returns the status that satisfied it, or the last problem `why` named.
 */
async function waitStatus(
  c: HarnessCluster,
  except: number,
  ms: number,
  done: (s: ClusterStatus) => boolean,
  why: (s: ClusterStatus) => string,
): Promise<{ status: ClusterStatus } | { problem: string }> {
  const deadline = performance.now() + ms;
  let last = 'no node answered status';
  for (;;) {
    const s = await statusWithout(c, except);
    if (s !== undefined) {
      if (done(s)) return { status: s };
      last = why(s);
    }
    if (performance.now() >= deadline) return { problem: last };
    await sleep(MEMBERSHIP_POLL_MS);
  }
}

function removalProblem(s: ClusterStatus, id: number): string {
  const state = memberState(s, id);
  const held = holdersOf(s, id);
  return `member ${id} is ${state ?? 'no longer a member'}${held.length > 0 ? `, still in groups ${held.join(',')}` : ''}`;
}

/**
 * startMembership removes one member (`member.remove`) and returns the fault: verified once the
 * member is leaving and then gone from the members and from every group; healed by bringing
 * the node back as a fresh member (killed, data wiped, config `join: true`, restarted,
 * `member.add`), waiting until it is active and every group is back to its former size.
 */
async function startMembership(ctx: NemesisContext, p: readonly number[]): Promise<Fault> {
  const c = ctx.cluster;
  const first = await statusWithout(c, 0);
  if (first === undefined) throw new Error('membership: no node answered status');
  const before: ClusterStatus = first;
  const blocker = membershipBlocker(before, c.ids);
  if (blocker !== undefined) throw new Error(`membership: cannot start: ${blocker}`);
  const target = pickOne(c.ids, p[0]!);
  const others = (): string[] => c.ids.filter((id) => id !== target).map((id) => clientAddress(c, id));
  const t0 = performance.now();
  const since = (): number => Math.round(performance.now() - t0);
  const steps: MembershipStep[] = [];
  const mark = (step: string, note?: string): void => {
    steps.push({ step, atMs: since(), ...(note !== undefined && { note }) });
  };
  // The detail is recorded when the fault starts and its steps fill in as it goes on: the
  // history and results.json are written at the end of the run, with every step.
  const detail: Record<string, unknown> = {
    member: target,
    metadataLeader: before.groups.find((g) => g.id === 0)?.leader === target,
    steps,
  };
  let leavingSeen = false;
  try {
    const r = (await adminCall(others(), 'member.remove', { id: target }, 10_000)) as { state?: string };
    leavingSeen = r.state === 'leaving';
    mark('remove', `member.remove answered ${JSON.stringify(r)}`);
  } catch (err) {
    // The call may have failed after the change committed: go by what the cluster says.
    const now = await statusWithout(c, target);
    if (now !== undefined && memberState(now, target) === 'active')
      throw new Error(`membership: member.remove ${target} failed: ${String(err)}`);
    mark(
      'remove',
      `member.remove failed (${String(err)}); the member is ${now === undefined ? 'unknown' : (memberState(now, target) ?? 'gone')}`,
    );
  }

  const waitRemoved = (ms: number) =>
    waitStatus(
      c,
      target,
      ms,
      (s) => {
        if (!leavingSeen && memberState(s, target) === 'leaving') {
          leavingSeen = true;
          mark('leaving');
        }
        return removalDone(s, target);
      },
      (s) => removalProblem(s, target),
    );
  const removal = waitRemoved(MEMBERSHIP_WAIT_MS - since()).then((r) => {
    if ('problem' in r) {
      mark('not-removed', r.problem);
      return false;
    }
    detail.removeMs = since();
    mark('removed');
    return true;
  });
  const verified = removal.then((done) =>
    done
      ? `ok (member ${target} ${leavingSeen ? 'was leaving, then' : 'was'} removed from the members and every group in ${String(detail.removeMs)} ms${leavingSeen ? '' : '; its leaving state was not observed'})`
      : `member ${target} was not removed within ${MEMBERSHIP_WAIT_MS / 1000} s: ${String(steps.at(-1)?.note)}`,
  );

  async function heal(): Promise<void> {
    if (!(await removal)) {
      const now = await statusWithout(c, target);
      if (now !== undefined && memberState(now, target) === 'active' && holdersOf(now, target).length > 0) {
        mark('heal', 'the member was never removed: nothing to heal');
        return;
      }
      // One more bounded wait: the node cannot come back before it is gone.
      const again = await waitRemoved(MEMBERSHIP_WAIT_MS);
      if ('problem' in again) {
        mark('heal-abandoned', again.problem);
        throw new Error(`membership: member ${target} still not removed, left as it is: ${again.problem}`);
      }
      mark('removed', 'late');
    }
    const h0 = performance.now();
    await c.kill(target);
    c.resetNode(target, { join: true });
    c.restart(target);
    mark('restarted', 'killed, data wiped (log kept), config join: true, started');
    // member.add reaches the new process once it serves: retry until then.
    const deadline = performance.now() + MEMBERSHIP_WAIT_MS;
    for (;;) {
      try {
        const r = await adminCall(others(), 'member.add', { address: clientAddress(c, target) }, 5000);
        mark('add', `member.add answered ${JSON.stringify(r)}`);
        break;
      } catch (err) {
        if (performance.now() >= deadline) {
          mark('add-failed', String(err));
          throw new Error(
            `membership: member.add ${target} did not succeed within ${MEMBERSHIP_WAIT_MS / 1000} s: ${String(err)}`,
          );
        }
        await sleep(500);
      }
    }
    const active = await waitStatus(
      c,
      target,
      MEMBERSHIP_WAIT_MS,
      (s) => memberState(s, target) === 'active',
      (s) => `member ${target} is ${memberState(s, target) ?? 'not a member'}`,
    );
    if ('problem' in active) {
      mark('not-active', active.problem);
      throw new Error(
        `membership: member ${target} not active within ${MEMBERSHIP_WAIT_MS / 1000} s: ${active.problem}`,
      );
    }
    detail.rejoinMs = Math.round(performance.now() - h0);
    mark('active');
    const back = await waitStatus(
      c,
      target,
      MEMBERSHIP_WAIT_MS,
      (s) => restored(s, target, before),
      (s) =>
        `${moving(s)} group(s) moving; member ${target} in groups ${holdersOf(s, target).join(',') || 'none'}`,
    );
    if ('problem' in back) mark('not-restored', back.problem);
    else {
      detail.restoreMs = Math.round(performance.now() - h0);
      mark('restored', 'every group back to its former number of voters, nothing moving');
    }
    // Put the fault proxies back in the path: a lower-id peer that reaches the rejoined node
    // directly is restarted (its config names the proxy), one at a time.
    const direct = await bypassingDialers(c, target);
    if (direct.length > 0) {
      detail.bypassed = direct.map((y) => pairKey(y, target));
      mark(
        'bypassed',
        `links ${direct.map((y) => pairKey(y, target)).join(', ')} reached the rejoined node directly (a lower-id peer dials the peer address in the metadata, not its configured proxy)`,
      );
    }
    for (const y of direct) {
      await c.kill(y);
      c.restart(y);
      restarted(c, y);
      const ready = await waitStatus(
        c,
        0,
        MEMBERSHIP_WAIT_MS,
        (s) => restored(s, target, before) && s.groups.every((g) => g.leader > 0),
        (s) =>
          `${moving(s)} group(s) moving, ${s.groups.filter((g) => !(g.leader > 0)).length} without a leader`,
      );
      const still = (await bypassingDialers(c, target)).includes(y);
      if (still) bypassed(c).add(pairKey(y, target));
      mark(
        'rewired',
        `node ${y} restarted${'problem' in ready ? ` (not settled: ${ready.problem})` : ''}: link ${pairKey(y, target)} ${still ? 'STILL bypasses its proxy' : 'goes through its proxy again'}`,
      );
    }
    detail.healMs = Math.round(performance.now() - h0);
  }

  return { nemesis: 'membership', detail, verified, heal };
}

/** The links that do not go through their fault proxy, per cluster (see bypassingDialers). */
const bypassedLinks = new WeakMap<HarnessCluster, Set<string>>();

function bypassed(c: HarnessCluster): Set<string> {
  let s = bypassedLinks.get(c);
  if (s === undefined) {
    s = new Set();
    bypassedLinks.set(c, s);
  }
  return s;
}

/** pairKey names a pair's link as the lower id dials it ("1->3"). */
function pairKey(a: number, b: number): string {
  return `${Math.min(a, b)}->${Math.max(a, b)}`;
}

/** linkBypassed: the pair's connection does not run through its proxy (a member rejoined). */
function linkBypassed(c: HarnessCluster, l: Link): boolean {
  return bypassedLinks.get(c)?.has(pairKey(l.from, l.to)) === true;
}

/** restarted: a node that restarts dials its higher-id peers through their proxies again. */
function restarted(c: HarnessCluster, id: number): void {
  const s = bypassedLinks.get(c);
  if (s === undefined) return;
  for (const k of [...s]) if (k.split('->')[0] === String(id)) s.delete(k);
}

/**
 * bypassingDialers finds which of a rejoined node's lower-id peers reach it without its proxy:
 * a removed member's peers drop it and, when it comes back, dial the peer address in the
 * metadata (the node's own port), not the proxy of their config. A pair whose proxy carries
 * no frame in 1.5 s while both nodes run is taken to bypass it (heartbeats flow every tick).
 */
async function bypassingDialers(c: HarnessCluster, id: number): Promise<number[]> {
  const lower = c.ids.filter((y) => y < id && c.running(y) && !c.isPaused(y));
  if (lower.length === 0) return [];
  const frames = (y: number): number => {
    const l = c.link(y, id);
    return l.proxy.stats('forward').frames + l.proxy.stats('backward').frames;
  };
  const before = lower.map(frames);
  await sleep(1500);
  return lower.filter((y, i) => frames(y) === before[i]);
}
