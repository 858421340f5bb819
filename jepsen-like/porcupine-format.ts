/**
 * Readers for the two history formats of Porcupine's test data (`../shared/checker-data/
 * porcupine/`, see its README), turned into the harness's own History so that the same models
 * check them.
 *
 * `porcupine-etcd`: Jepsen logs of a single etcd CAS register, lines like
 * `INFO  jepsen.util - 3\t:ok\t:cas\t[3 0]` (process, type, f, value; lines that do not match
 * are skipped). The register model with Porcupine's etcd semantics:
 * - `:ok` completes the process's open invoke;
 * - `:fail :cas` is an observation (the compare ran and failed), recorded as a `fail` with
 *   `error: "VERSION_MISMATCH"`, which the register model reads that way;
 * - `:fail :read :timed-out` completes the read with an unknown result (a `fail` read, which
 *   constrains nothing);
 * - `:info` leaves the op open (+Infinity: at any time after the invoke, or never); so does
 *   the end of the log.
 *
 * `porcupine-kv`: one EDN map per line, `{:process 0, :type :invoke, :f :append, :key "0",
 * :value "x 0 0 y"}`, for the kv model (get/put/append).
 *
 * Each event's index and time are its position among the events. Pure: text in, History out.
 */
import {
  EventType,
  type History,
  type HistoryEvent,
  HistoryParseError,
  pairEvents,
  toEvent,
} from './history.js';

/** PorcupineFormat names the two formats. */
export const PorcupineFormat = { Etcd: 'porcupine-etcd', Kv: 'porcupine-kv' } as const;
/** PorcupineFormat's values. */
export type PorcupineFormat = (typeof PorcupineFormat)[keyof typeof PorcupineFormat];

const ETCD_PREFIX = /^INFO\s+jepsen\.util\s+-\s+(.*)$/;
const ETCD_TYPES: ReadonlySet<string> = new Set([':invoke', ':ok', ':fail', ':info']);
const ETCD_FS: ReadonlySet<string> = new Set([':read', ':write', ':cas']);

function etcdValue(tokens: readonly string[]): unknown {
  const s = tokens.join(' ');
  if (s === 'nil') return null;
  if (/^-?\d+$/.test(s)) return Number(s);
  const pair = /^\[\s*(-?\d+)\s+(-?\d+)\s*\]$/.exec(s);
  if (pair) return [Number(pair[1]), Number(pair[2])];
  if (s === ':timed-out') return ':timed-out';
  return undefined;
}

/** parsePorcupineEtcd reads a Jepsen etcd register log. */
export function parsePorcupineEtcd(text: string): History {
  const events: HistoryEvent[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = ETCD_PREFIX.exec(lines[i]!.trim());
    if (!m) continue;
    const tokens = m[1]!.trim().split(/\s+/);
    const [proc, type, f, ...rest] = tokens;
    if (proc === undefined || !/^\d+$/.test(proc) || !ETCD_TYPES.has(type ?? '') || !ETCD_FS.has(f ?? ''))
      continue;
    const value = etcdValue(rest);
    if (value === undefined) continue;
    const t = type!.slice(1);
    const fields: Record<string, unknown> = {
      index: events.length,
      time: events.length,
      process: Number(proc),
      type: t,
      f: f!.slice(1),
      value: value === ':timed-out' ? null : value,
    };
    if (t === EventType.Fail && f === ':cas') fields.error = 'VERSION_MISMATCH';
    events.push(toEvent(fields, i + 1));
  }
  return pairEvents(events);
}

const KV_LINE =
  /^\{:process (\d+), :type :(invoke|ok|fail|info), :f :(get|put|append), :key "((?:[^"\\]|\\.)*)", :value (nil|"((?:[^"\\]|\\.)*)")\}$/;

function ednString(s: string, line: number): string {
  try {
    return JSON.parse(`"${s}"`) as string;
  } catch {
    throw new HistoryParseError(line, `porcupine-kv: bad string escape in ${JSON.stringify(s)}`);
  }
}

/** parsePorcupineKv reads a Porcupine kv history (one EDN map per line; blank lines skipped). */
export function parsePorcupineKv(text: string): History {
  const events: HistoryEvent[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const s = lines[i]!.trim();
    if (s.length === 0) continue;
    const m = KV_LINE.exec(s);
    if (!m)
      throw new HistoryParseError(
        i + 1,
        'porcupine-kv: expected {:process N, :type :T, :f :get|put|append, :key "K", :value nil|"V"}',
      );
    events.push(
      toEvent(
        {
          index: events.length,
          time: events.length,
          process: Number(m[1]),
          type: m[2],
          f: m[3],
          key: ednString(m[4]!, i + 1),
          value: m[5] === 'nil' ? null : ednString(m[6]!, i + 1),
        },
        i + 1,
      ),
    );
  }
  return pairEvents(events);
}

/** parsePorcupine reads either format. */
export function parsePorcupine(format: PorcupineFormat, text: string): History {
  return format === PorcupineFormat.Etcd ? parsePorcupineEtcd(text) : parsePorcupineKv(text);
}
