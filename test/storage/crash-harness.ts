/**
 * Runs crash-test rounds: spawn the child on a data directory, follow its lines, SIGKILL it
 * at a seeded moment, then reopen the directory in-process and check it against what the
 * child acknowledged. Every child is tracked so that none outlives a test, even a failing one.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SeededRandom } from '../../src/random.js';
import { NodeStorage } from '../../src/storage/node-storage.js';
import { CRASH_CONF } from './crash-content.js';
import { bootstrapModel, type GroupModel } from './crash-model.js';
import { type ChildLine, parseLine } from './crash-protocol.js';
import { CrashTracker } from './crash-tracker.js';
import { readDurableState } from './durable-state.js';

const CHILD_FILE = fileURLToPath(new URL('./crash-child.ts', import.meta.url));

/** CRASH_GROUPS are the groups every crash-test directory holds (ids that exercise the u32 key layout). */
export const CRASH_GROUPS: readonly number[] = [1, 7, 0x1_0000];

/** READY_TIMEOUT_MS bounds how long a child may take to open its directory. */
const READY_TIMEOUT_MS = 20_000;

const live = new Set<ChildProcess>();

/** killAllChildren SIGKILLs every child still running and waits for each to exit. */
export async function killAllChildren(): Promise<void> {
  await Promise.all([...live].map((c) => killChild(c)));
}

function killChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      live.delete(child);
      resolve();
      return;
    }
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

const tempDirs = new Set<string>();

/** makeTempDir creates a temporary data directory that removeTempDirs deletes. */
export function makeTempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(d);
  return d;
}

/** removeTempDirs deletes every directory made by makeTempDir. */
export function removeTempDirs(): void {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
}

/** CrashMode picks the child's workload. */
export type CrashMode = 'log' | 'snapshot';

/** KillPlan says when a round's child dies. */
export type KillPlan =
  /** delayMs after the child reports it has opened its directory. */
  | { readonly kind: 'after-ready'; readonly delayMs: number }
  /** delayMs after spawning: often while the child is still recovering. */
  | { readonly kind: 'after-spawn'; readonly delayMs: number }
  /** delayMs after the nth line that starts a snapshot write (local or install). */
  | { readonly kind: 'in-snapshot'; readonly nth: number; readonly delayMs: number };

/** planKill draws a round's kill plan from its seed. */
export function planKill(rng: SeededRandom, mode: CrashMode): KillPlan {
  const r = rng.float();
  if (mode === 'snapshot') {
    if (r < 0.1) return { kind: 'after-spawn', delayMs: 150 + rng.int(500) };
    if (r < 0.6) return { kind: 'in-snapshot', nth: 1 + rng.int(3), delayMs: rng.int(8) };
    return { kind: 'after-ready', delayMs: rng.int(200) };
  }
  if (r < 0.1) return { kind: 'after-spawn', delayMs: 150 + rng.int(500) };
  return { kind: 'after-ready', delayMs: rng.int(250) };
}

/** RoundReport is what one kill round saw. */
export interface RoundReport {
  readonly reachedReady: boolean;
  readonly inFlight: { round: boolean; install: boolean; localSnapshot: boolean };
  readonly roundLanded: boolean;
  readonly snapshotsLanded: number;
  readonly counts: CrashTracker['counts'];
}

function startsSnapshot(line: ChildLine): boolean {
  return line.k === 'snap-intent' || (line.k === 'intent' && line.changes.some((c) => c.kind === 'install'));
}

/**
 * runKillRound runs the child on `dir` (which holds `models`), kills it by `plan`, checks
 * the directory, and returns the models it now holds. A child that dies on its own, a
 * protocol error or any difference from the allowed states throws.
 */
export async function runKillRound(opts: {
  readonly dir: string;
  readonly seed: number;
  readonly mode: CrashMode;
  readonly plan: KillPlan;
  readonly models: ReadonlyMap<number, GroupModel>;
}): Promise<{ models: Map<number, GroupModel>; report: RoundReport }> {
  const tracker = new CrashTracker(opts.models);
  const args = [
    '--import',
    'tsx',
    CHILD_FILE,
    '--dir',
    opts.dir,
    '--seed',
    String(opts.seed),
    '--mode',
    opts.mode,
    '--groups',
    [...opts.models.keys()].join(','),
  ];
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(child);
  let stderr = '';
  let pending = '';
  let reachedReady = false;
  let snapshotStarts = 0;
  let protocolError: Error | null = null;
  let killRequested = false;
  let timedOut = false;
  const timers: NodeJS.Timeout[] = [];
  const kill = (): void => {
    killRequested = true;
    child.kill('SIGKILL');
  };
  const killIn = (ms: number): void => {
    timers.push(setTimeout(kill, ms));
  };
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  child.on('exit', () => live.delete(child));
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    if (stderr.length < 64 * 1024) stderr += s;
  });
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (s: string) => {
    pending += s;
    for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
      const text = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (protocolError) continue;
      try {
        const line = parseLine(text);
        tracker.onLine(line);
        if (line.k === 'ready') {
          reachedReady = true;
          if (opts.plan.kind === 'after-ready') killIn(opts.plan.delayMs);
          if (opts.plan.kind === 'in-snapshot') killIn(400); // fallback if too few snapshots start
        }
        if (startsSnapshot(line) && opts.plan.kind === 'in-snapshot' && ++snapshotStarts === opts.plan.nth) {
          if (opts.plan.delayMs === 0) kill();
          else killIn(opts.plan.delayMs);
        }
      } catch (err) {
        protocolError = err instanceof Error ? err : new Error(String(err));
        kill();
      }
    }
  });
  if (opts.plan.kind === 'after-spawn') killIn(opts.plan.delayMs);
  timers.push(
    setTimeout(() => {
      timedOut = !reachedReady;
      kill();
    }, READY_TIMEOUT_MS),
  );
  let exit: { code: number | null; signal: NodeJS.Signals | null };
  try {
    exit = await closed;
  } finally {
    for (const t of timers) clearTimeout(t);
    await killChild(child);
  }
  if (protocolError) throw protocolError;
  if (timedOut)
    throw new Error(`the child did not open its directory in ${READY_TIMEOUT_MS} ms: ${stderr.trim()}`);
  if (!killRequested || exit.signal !== 'SIGKILL' || (!reachedReady && opts.plan.kind !== 'after-spawn')) {
    throw new Error(
      `the child exited by itself (code ${exit.code}, signal ${exit.signal}): ${stderr.trim()}`,
    );
  }
  const inFlight = tracker.inFlight();
  const disk = await readDurableState(opts.dir, [...opts.models.keys()]);
  if (disk.problems.length > 0) throw new Error(`integrity: ${disk.problems.join('; ')}`);
  const match = tracker.match(disk.models);
  return {
    models: match.models,
    report: {
      reachedReady,
      inFlight,
      roundLanded: match.roundLanded,
      snapshotsLanded: match.snapshotsLanded.length,
      counts: tracker.counts,
    },
  };
}

/** createCrashDir makes a data directory holding CRASH_GROUPS, freshly bootstrapped. */
export async function createCrashDir(): Promise<{ dir: string; models: Map<number, GroupModel> }> {
  const dir = makeTempDir('dkv-crash-');
  const ns = await NodeStorage.open(dir);
  try {
    for (const g of CRASH_GROUPS) await ns.createGroup(g, CRASH_CONF);
  } finally {
    await ns.close();
  }
  return { dir, models: new Map(CRASH_GROUPS.map((g) => [g, bootstrapModel()])) };
}

/** CampaignSummary totals a crash campaign for the test's log line. */
export interface CampaignSummary {
  rounds: number;
  killedBeforeReady: number;
  killedWithRoundInFlight: number;
  roundLanded: number;
  killedInLocalSnapshot: number;
  killedInInstall: number;
  snapshotsLanded: number;
  ackedRounds: number;
  ackedEntries: number;
  ackedConflicts: number;
  ackedInstalls: number;
  ackedSnapshots: number;
}

/**
 * runCampaign runs `rounds` kill rounds in `lanes` concurrent lanes, each lane on its own
 * directory (a fresh one every `roundsPerDir` rounds). A failure names the seed to replay.
 * It settles only when no lane runs any more: after the first failure, or once `signal`
 * aborts (the test's teardown), no lane starts another round.
 */
export async function runCampaign(opts: {
  readonly seed: number;
  readonly mode: CrashMode;
  readonly rounds: number;
  readonly lanes: number;
  readonly roundsPerDir: number;
  readonly signal?: AbortSignal;
}): Promise<CampaignSummary> {
  let failed = false;
  const sum: CampaignSummary = {
    rounds: 0,
    killedBeforeReady: 0,
    killedWithRoundInFlight: 0,
    roundLanded: 0,
    killedInLocalSnapshot: 0,
    killedInInstall: 0,
    snapshotsLanded: 0,
    ackedRounds: 0,
    ackedEntries: 0,
    ackedConflicts: 0,
    ackedInstalls: 0,
    ackedSnapshots: 0,
  };
  const master = new SeededRandom(opts.seed);
  const laneSeeds = Array.from({ length: opts.lanes }, () => master.nextUint32());
  let next = 0;
  const lane = async (laneSeed: number): Promise<void> => {
    const rng = new SeededRandom(laneSeed);
    let dir = '';
    let models = new Map<number, GroupModel>();
    for (let inDir = 0; ; inDir++) {
      if (failed || opts.signal?.aborted) return;
      const round = next++;
      if (round >= opts.rounds) return;
      if (inDir % opts.roundsPerDir === 0) ({ dir, models } = await createCrashDir());
      const childSeed = rng.nextUint32();
      const plan = planKill(rng, opts.mode);
      let result: Awaited<ReturnType<typeof runKillRound>>;
      try {
        result = await runKillRound({ dir, seed: childSeed, mode: opts.mode, plan, models });
      } catch (err) {
        failed = true;
        const msg = err instanceof Error ? err.message : String(err);
        throw new Error(
          `crash round failed: seed=${opts.seed} (DKV_CRASH_SEED=${opts.seed} to replay the plan) lane seed=${laneSeed} ` +
            `child seed=${childSeed} plan=${JSON.stringify(plan)} dir round ${inDir}: ${msg}`,
          { cause: err },
        );
      }
      models = result.models;
      const r = result.report;
      sum.rounds++;
      if (!r.reachedReady) sum.killedBeforeReady++;
      if (r.inFlight.round) sum.killedWithRoundInFlight++;
      if (r.roundLanded) sum.roundLanded++;
      if (r.inFlight.localSnapshot) sum.killedInLocalSnapshot++;
      if (r.inFlight.install) sum.killedInInstall++;
      sum.snapshotsLanded += r.snapshotsLanded;
      sum.ackedRounds += r.counts.rounds;
      sum.ackedEntries += r.counts.entries;
      sum.ackedConflicts += r.counts.conflicts;
      sum.ackedInstalls += r.counts.installs;
      sum.ackedSnapshots += r.counts.snapshots;
    }
  };
  const settled = await Promise.allSettled(laneSeeds.map(lane));
  for (const s of settled) if (s.status === 'rejected') throw s.reason;
  if (opts.signal?.aborted) throw new Error('crash campaign aborted');
  return sum;
}
