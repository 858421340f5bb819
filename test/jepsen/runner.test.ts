/**
 * The runner's pure parts: the seeded schedule, target picking, the recorder's completions
 * (ok / fail / info and the process that continues under a new id), and the `test`
 * command's option errors (exit 2, nothing started).
 */
import { describe, expect, it } from 'vitest';
import { main } from '../../jepsen-like/cli.js';
import { parseHistory } from '../../jepsen-like/history.js';
import { Recorder } from '../../jepsen-like/runner/recorder.js';
import { NEMESES, pickOne, planSchedule, shuffled } from '../../jepsen-like/runner/schedule.js';
import { DkvError, ErrorCode } from '../../src/errors.js';

describe('planSchedule', () => {
  it('is a pure function of its options: the same seed gives the same schedule', () => {
    const o = { seed: 42, nemeses: ['partition', 'kill', 'pause'] as const, timeMs: 60_000 };
    expect(planSchedule(o)).toEqual(planSchedule(o));
    expect(planSchedule({ ...o, seed: 43 })).not.toEqual(planSchedule(o));
  });

  it('has a quiet phase, faults that do not overlap, and every fault healed before the end', () => {
    for (let seed = 0; seed < 50; seed++) {
      const steps = planSchedule({ seed, nemeses: ['partition', 'kill'], timeMs: 30_000 });
      expect(steps.length).toBeGreaterThan(0);
      expect(steps[0]!.atMs).toBeGreaterThanOrEqual(4500);
      for (let i = 0; i < steps.length; i++) {
        const s = steps[i]!;
        expect(s.holdMs).toBeGreaterThanOrEqual(3000);
        expect(s.atMs + s.holdMs).toBeLessThanOrEqual(29_000);
        if (i > 0) expect(s.atMs).toBeGreaterThanOrEqual(steps[i - 1]!.atMs + steps[i - 1]!.holdMs + 2000);
        expect(['partition', 'kill']).toContain(s.nemesis);
        for (const p of s.picks) expect(p >= 0 && p < 1).toBe(true);
      }
    }
  });

  it('uses every nemesis it is given, and none without nemeses', () => {
    const seen = new Set<string>();
    for (let seed = 0; seed < 20; seed++)
      for (const s of planSchedule({ seed, nemeses: NEMESES, timeMs: 120_000 })) seen.add(s.nemesis);
    expect(seen.size).toBe(NEMESES.length);
    expect(planSchedule({ seed: 1, nemeses: [], timeMs: 60_000 })).toEqual([]);
  });

  it('picks deterministically', () => {
    expect(pickOne([1, 2, 3], 0)).toBe(1);
    expect(pickOne([1, 2, 3], 0.999)).toBe(3);
    expect(shuffled([1, 2, 3, 4, 5], 0.3)).toEqual(shuffled([1, 2, 3, 4, 5], 0.3));
    expect([...shuffled([1, 2, 3, 4, 5], 0.3)].sort()).toEqual([1, 2, 3, 4, 5]);
  });
});

describe('Recorder', () => {
  it('records invoke then exactly one completion, and retires a process after info', async () => {
    const r = new Recorder({ timeoutMs: 50 });
    const p = r.newProcess();
    expect(
      (await r.op(p, { f: 'write', key: 'a', value: 1, run: async () => ({ type: 'ok', value: 1 }) })).type,
    ).toBe('ok');
    const fail = await r.op(p, {
      f: 'cas',
      key: 'a',
      value: [0, 1],
      failOn: new Set([ErrorCode.VersionMismatch]),
      run: async () => {
        throw new DkvError(ErrorCode.VersionMismatch, 'no');
      },
    });
    expect(fail.type).toBe('fail');
    expect(p.id).toBe(0);
    const unknown = await r.op(p, {
      f: 'write',
      key: 'a',
      value: 2,
      failOn: new Set([ErrorCode.VersionMismatch]),
      run: async () => {
        throw new DkvError(ErrorCode.Unavailable, 'lost');
      },
    });
    expect(unknown.type).toBe('info');
    expect(p.id).toBe(1);
    const slow = await r.op(p, { f: 'read', key: 'a', run: () => new Promise(() => undefined) });
    expect(slow.type).toBe('info');
    expect(p.id).toBe(2);
    const read = await r.op(p, {
      f: 'read',
      key: 'a',
      failOn: 'always',
      run: async () => {
        throw new DkvError(ErrorCode.Unavailable, 'down');
      },
    });
    expect(read.type).toBe('fail');
    r.nemesis('invoke', 'start', { nemesis: 'kill' });
    const h = parseHistory(r.jsonl());
    expect(h.ops.map((o) => [o.process, o.f, o.status])).toEqual([
      [0, 'write', 'ok'],
      [0, 'cas', 'fail'],
      [0, 'write', 'info'],
      [1, 'read', 'info'],
      [2, 'read', 'fail'],
    ]);
    const casFail = r.events.find((e) => e.f === 'cas' && e.type === 'fail');
    expect(casFail?.error).toBe(ErrorCode.VersionMismatch);
    expect(h.nemesis.length).toBe(1);
  });
});

describe('jepsen test: options', () => {
  const run = async (args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(['test', ...args], {
      readFile: async () => '',
      stdout: (t) => out.push(t),
      stderr: (t) => err.push(t),
    });
    return { code, out: out.join('\n'), err: err.join('\n') };
  };

  it('refuses bad options with exit 2 and a message that names them', async () => {
    expect((await run([])).err).toMatch(/--workload is required/);
    expect((await run(['--workload', 'nope'])).err).toMatch(/unknown --workload nope/);
    expect((await run(['--workload', 'register', '--nemesis', 'flood'])).err).toMatch(
      /unknown --nemesis flood/,
    );
    expect((await run(['--workload', 'register', '--nodes', '4'])).err).toMatch(/--nodes must be 3 or 5/);
    expect((await run(['--workload', 'register', '--bug', 'nope'])).err).toMatch(/unknown --bug nope/);
    expect((await run(['--workload', 'register', '--time', '0'])).err).toMatch(/--time/);
  });

  it('prints its usage', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/--workload W/);
    expect(r.out).toMatch(/--bug NAME/);
  });
});
