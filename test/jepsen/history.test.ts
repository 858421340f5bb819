/**
 * The history JSONL model: parsing, pairing per process, info and open ops, the errors a
 * malformed history gets (with its line), and the two Porcupine formats.
 */
import { describe, expect, it } from 'vitest';
import { HistoryParseError, parseHistory } from '../../jepsen-like/history.js';
import { parsePorcupineEtcd, parsePorcupineKv } from '../../jepsen-like/porcupine-format.js';
import { isDkvError } from '../../src/errors.js';
import { jsonl } from './helpers.js';

const ev = (index: number, process: number | string, type: string, f: string, value: unknown, more = {}) => ({
  index,
  time: index * 1000,
  process,
  type,
  f,
  value,
  ...more,
});

function parseError(text: string): HistoryParseError {
  try {
    parseHistory(text);
  } catch (err) {
    expect(err).toBeInstanceOf(HistoryParseError);
    expect(isDkvError(err, 'INVALID_ARGUMENT')).toBe(true);
    return err as HistoryParseError;
  }
  throw new Error('expected a parse error');
}

describe('parseHistory', () => {
  it('pairs each invoke with its process next completion, in invoke order', () => {
    const h = parseHistory(
      jsonl([
        ev(0, 1, 'invoke', 'write', 3, { key: 'a' }),
        ev(1, 2, 'invoke', 'read', null, { key: 'a' }),
        ev(2, 2, 'ok', 'read', 3, { key: 'a' }),
        ev(3, 1, 'ok', 'write', 3, { key: 'a', revision: 9 }),
      ]),
    );
    expect(h.ops.map((o) => [o.id, o.process, o.f, o.status, o.call, o.ret])).toEqual([
      [0, 1, 'write', 'ok', 0, 3],
      [1, 2, 'read', 'ok', 1, 2],
    ]);
    expect(h.ops[0]!.completion!.fields.revision).toBe(9);
    expect(h.ops[1]!.completion!.value).toBe(3);
    expect(h.events.length).toBe(4);
  });

  it('gives info and never-completed ops an infinite return; fail keeps its index', () => {
    const h = parseHistory(
      jsonl([
        ev(0, 1, 'invoke', 'write', 1),
        ev(1, 1, 'info', 'write', 1),
        ev(2, 1, 'invoke', 'write', 2),
        ev(3, 2, 'invoke', 'write', 3),
        ev(4, 2, 'fail', 'write', 3),
      ]),
    );
    expect(h.ops.map((o) => [o.status, o.ret])).toEqual([
      ['info', Number.POSITIVE_INFINITY],
      ['info', Number.POSITIVE_INFINITY],
      ['fail', 4],
    ]);
    expect(h.ops[1]!.completion).toBeUndefined();
    expect(h.ops[0]!.completion!.type).toBe('info');
  });

  it('keeps nemesis events apart, skips blank lines, counts lines from 1', () => {
    const text = `\n${jsonl([
      ev(0, 'nemesis', 'info', 'partition', 'start'),
      ev(1, 0, 'invoke', 'read', null),
    ])}\n\n${JSON.stringify(ev(2, 0, 'ok', 'read', null))}`;
    const h = parseHistory(text);
    expect(h.nemesis.map((e) => [e.f, e.line])).toEqual([['partition', 2]]);
    expect(h.ops.map((o) => [o.invoke.line, o.completion?.line])).toEqual([[3, 6]]);
    expect(h.ops[0]!.key).toBeUndefined();
  });

  it('names the line and the reason of every malformed history', () => {
    const cases: [string, number, RegExp][] = [
      ['{"index":0,', 1, /not valid JSON/],
      ['[1,2]', 1, /must be a JSON object/],
      [
        jsonl([{ ...ev(0, 0, 'invoke', 'read', null), index: -1 }]),
        1,
        /"index" must be a non-negative integer/,
      ],
      [jsonl([{ ...ev(0, 0, 'invoke', 'read', null), time: 'x' }]), 1, /"time" must be a finite number/],
      [jsonl([ev(0, -2, 'invoke', 'read', null)]), 1, /"process" must be/],
      [jsonl([ev(0, 0, 'start', 'read', null)]), 1, /"type" must be one of invoke, ok, fail, info/],
      [jsonl([ev(0, 0, 'invoke', '', null)]), 1, /"f" must be a non-empty string/],
      [jsonl([ev(0, 0, 'invoke', 'read', null, { key: 7 })]), 1, /"key" must be a string/],
      [
        jsonl([ev(0, 0, 'invoke', 'read', null), ev(0, 1, 'invoke', 'read', null)]),
        2,
        /"index" must strictly increase/,
      ],
      [
        jsonl([ev(1, 0, 'invoke', 'read', null), { ...ev(2, 1, 'invoke', 'read', null), time: 5 }]),
        2,
        /"time" goes backwards/,
      ],
      [jsonl([ev(0, 3, 'ok', 'read', null)]), 1, /ok for process 3, which has no open invoke/],
      [
        jsonl([ev(0, 3, 'invoke', 'read', null), ev(1, 3, 'invoke', 'write', 1)]),
        2,
        /process 3 invokes write while its read \(index 0, line 1\) is still open/,
      ],
      [jsonl([ev(0, 3, 'invoke', 'read', null), ev(1, 3, 'ok', 'write', 1)]), 2, /ok of write completes/],
      [
        jsonl([ev(0, 3, 'invoke', 'read', null, { key: 'a' }), ev(1, 3, 'ok', 'read', 1, { key: 'b' })]),
        2,
        /on key "b" completes an invoke on key "a"/,
      ],
    ];
    for (const [text, line, reason] of cases) {
      const err = parseError(text);
      expect(err.line, text).toBe(line);
      expect(err.message, text).toMatch(reason);
      expect(err.message).toMatch(new RegExp(`^line ${line}: `));
    }
  });
});

describe('Porcupine formats', () => {
  it('reads an etcd Jepsen log: tabs or spaces, skipped lines, fail cas as a compare that failed', () => {
    const text = [
      'INFO  jepsen.util - 0\t:invoke\t:read\tnil',
      'some other log line',
      'INFO  jepsen.util - 1 :invoke :cas [3 0]',
      'INFO  jepsen.util - 0\t:ok\t:read\tnil',
      'INFO  jepsen.util - 1\t:fail\t:cas\t[3 0]',
      'INFO  jepsen.util - 2\t:invoke\t:write\t4',
      'INFO  jepsen.util - 2\t:info\t:write\t:timed-out',
      'INFO  jepsen.util - 3\t:invoke\t:read\tnil',
      'INFO  jepsen.util - 3\t:fail\t:read\t:timed-out',
      'INFO  jepsen.util - 4\t:invoke\t:write\t1',
    ].join('\n');
    const h = parsePorcupineEtcd(text);
    expect(h.ops.map((o) => [o.process, o.f, o.status, o.call, o.ret])).toEqual([
      [0, 'read', 'ok', 0, 2],
      [1, 'cas', 'fail', 1, 3],
      [2, 'write', 'info', 4, Number.POSITIVE_INFINITY],
      [3, 'read', 'fail', 6, 7],
      [4, 'write', 'info', 8, Number.POSITIVE_INFINITY],
    ]);
    expect(h.ops[1]!.invoke.value).toEqual([3, 0]);
    expect(h.ops[1]!.completion!.fields.error).toBe('VERSION_MISMATCH');
    expect(h.ops[0]!.invoke.line).toBe(1);
    expect(h.ops[1]!.invoke.line).toBe(3);
  });

  it('reads a kv EDN history and refuses a line it cannot read', () => {
    const h = parsePorcupineKv(
      [
        '{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}',
        '{:process 1, :type :invoke, :f :get, :key "0", :value nil}',
        '{:process 1, :type :ok, :f :get, :key "0", :value "x \\"q\\" y"}',
        '',
        '{:process 0, :type :ok, :f :append, :key "0", :value "x 0 0 y"}',
      ].join('\n'),
    );
    expect(h.ops.map((o) => [o.f, o.key, o.invoke.value, o.completion?.value])).toEqual([
      ['append', '0', 'x 0 0 y', 'x 0 0 y'],
      ['get', '0', null, 'x "q" y'],
    ]);
    expect(() => parsePorcupineKv('{:process 0, :type :invoke, :f :cas}')).toThrow(/^line 1: porcupine-kv/);
  });
});
