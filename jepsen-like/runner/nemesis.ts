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
 * - `membership` needs adding and removing members (issue 8, not built): it is refused when
 *   the options are read.
 *
 * Every fault is verified to take effect, and the verdict of that check is recorded with the
 * fault: the cut links' blackholed frame counts grow and an isolated side's commit indexes
 * stop moving while the other side's move; a killed process is gone; a paused one is in state
 * T; a skewed clock reads back its offset; a lossy link drops frames.
 */
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
          for (const id of victims) c.restart(id);
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
      throw new Error('the membership nemesis needs member add/remove (issue 8), which is not built');
  }
}
