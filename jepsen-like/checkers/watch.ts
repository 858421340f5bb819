/**
 * The watch checker: every watcher's log is ordered, unique and gap-free against the
 * canonical sequence of writes, and a resume neither loses nor repeats events (DESIGN.md,
 * "Watch": events are ordered, unique and gap-free per group).
 *
 * History form:
 * - Writes: `put` (the value in `value`) and `delete` on `key`. An `ok` completion carries
 *   `"revision": R` and `"group": G` (default 0): the revision the write got in its group.
 * - Watch sessions: `watch` on `key` = the prefix watched (absent = every key). The invoke's
 *   `value` is null (a live watch: it starts wherever the server begins) or
 *   `{"fromRevision": N}` (N for every group) or `{"fromRevision": {"G": N, ...}}`; the
 *   invoke may carry `"watcher": ID` to chain sessions (default: the process). The
 *   completion (of any type: a session cut off with SLOW_CONSUMER still delivered what it
 *   delivered) has as `value` the array of events delivered, in order:
 *   `{"revision": R, "group": G, "key": K, "type": "put"|"delete", "value"?: V, "cause"?: C}`.
 *   A session never completed delivered nothing the checker can see.
 *
 * The canonical sequence of a group is every revision known from an acknowledged write or
 * from any watcher's event (an expiry or an `info` write is seen only through watchers).
 * Each watcher covers, per group, segments of revisions: a segment starts at a session's
 * `fromRevision` (or at the first event of a live session, or after a snapshot) and runs
 * to the last event delivered; a resume (a session with `fromRevision`) continues the
 * segment. Rules:
 * - `lost`: a canonical revision of a key under the prefix, inside a watcher's segment, was
 *   not delivered to it (a gap, or a resume that skipped events).
 * - `repeated`: a revision delivered twice to one watcher (a resume that repeats).
 * - `out-of-order`: a revision delivered after a higher one of the same group.
 * - `divergent`: two sources disagree on a revision's key, type or value (two writes with
 *   one revision, or a watcher's event that differs from the acknowledged write).
 * - `foreign-key`: an event for a key outside the session's prefix.
 * Snapshot events (`cause: "snapshot"`) are state, not stream: they are not checked, and
 * the segment restarts after them. Writes after a watcher's last event are not required of
 * it: a runner ends with one more write per group and lets watchers catch up to it.
 *
 * O(events + covered revisions x watchers) time, after a sort per group.
 */
import { canonicalJson } from '../canonical-json.js';
import { type History, show } from '../history.js';
import { type CheckerResult, ViolationList } from '../verdict.js';

interface Canonical {
  readonly key: string;
  readonly type: string;
  /** Canonical JSON of a put's value, when known. */
  readonly value: string | undefined;
  readonly op: number;
}

interface Segment {
  readonly group: string;
  readonly prefix: string;
  readonly start: number;
  readonly end: number;
  readonly watcher: string;
  readonly op: number;
}

interface WatcherState {
  /** Per group: the last revision delivered. */
  readonly last: Map<string, number>;
  /** Per group: the start of the open segment, or undefined before its first event. */
  readonly start: Map<string, number | undefined>;
  /** Per group: every revision delivered. */
  readonly delivered: Map<string, Set<number>>;
  prefix: string;
  op: number;
}

function groupName(g: unknown): string | undefined {
  if (g === undefined || g === null) return '0';
  if (typeof g === 'number' && Number.isSafeInteger(g)) return String(g);
  if (typeof g === 'string' && g.length > 0) return g;
  return undefined;
}

function revisionOf(r: unknown): number | undefined {
  return typeof r === 'number' && Number.isSafeInteger(r) ? r : undefined;
}

/** checkWatch checks a watch workload's history (see the file comment for the rules). */
export function checkWatch(history: History): CheckerResult {
  const v = new ViolationList();
  const canonical = new Map<string, Map<number, Canonical>>();
  const remember = (group: string, revision: number, c: Canonical, what: string): void => {
    let g = canonical.get(group);
    if (g === undefined) {
      g = new Map();
      canonical.set(group, g);
    }
    const known = g.get(revision);
    if (known === undefined) {
      g.set(revision, c);
      return;
    }
    if (
      known.key !== c.key ||
      known.type !== c.type ||
      (known.value !== undefined && c.value !== undefined && known.value !== c.value)
    )
      v.add(
        'divergent',
        c.key,
        `group ${group} revision ${revision}: ${what} says ${c.type} ${show(c.key)}${
          c.value === undefined ? '' : ` = ${c.value}`
        }, but it was ${known.type} ${show(known.key)}${known.value === undefined ? '' : ` = ${known.value}`}`,
        [known.op, c.op],
      );
  };

  let writes = 0;
  for (const op of history.ops) {
    if ((op.f !== 'put' && op.f !== 'delete') || op.status !== 'ok') continue;
    const revision = revisionOf(op.completion!.fields.revision);
    const group = groupName(op.completion!.fields.group);
    if (revision === undefined || group === undefined) {
      v.add('malformed', op.key ?? '', 'an acknowledged write has no revision (or a bad group)', [op.id]);
      continue;
    }
    writes++;
    const value = op.f === 'put' ? canonicalJson(op.invoke.value) : undefined;
    remember(group, revision, { key: op.key ?? '', type: op.f, value, op: op.id }, 'the acknowledged write');
  }

  // Replay each watcher's sessions in order.
  const sessions = history.ops.filter((op) => op.f === 'watch');
  const watchers = new Map<string, WatcherState>();
  const segments: Segment[] = [];
  let events = 0;
  let snapshots = 0;
  const close = (name: string, w: WatcherState, group: string): void => {
    const start = w.start.get(group);
    const end = w.last.get(group);
    if (start !== undefined && end !== undefined && end >= start)
      segments.push({ group, prefix: w.prefix, start, end, watcher: name, op: w.op });
    w.start.set(group, undefined);
  };
  for (const s of sessions) {
    const name = String(s.invoke.fields.watcher ?? s.process);
    const prefix = s.key ?? '';
    let w = watchers.get(name);
    if (w === undefined) {
      w = { last: new Map(), start: new Map(), delivered: new Map(), prefix, op: s.id };
      watchers.set(name, w);
    }
    const spec = s.invoke.value as { fromRevision?: unknown } | null;
    const from = spec !== null && typeof spec === 'object' ? spec.fromRevision : undefined;
    const fromFor = (group: string): number | undefined => {
      if (typeof from === 'number') return from;
      if (from !== null && typeof from === 'object')
        return revisionOf((from as Record<string, unknown>)[group]);
      return undefined;
    };
    const groupsSeen = new Set([...w.start.keys(), ...w.last.keys()]);
    if (from !== null && typeof from === 'object')
      for (const g of Object.keys(from as object)) groupsSeen.add(g);
    // A live session, or a different prefix, ends every open segment; a resume continues it.
    for (const g of groupsSeen) {
      const f = fromFor(g);
      if (f === undefined || prefix !== w.prefix) {
        close(name, w, g);
        if (f !== undefined) w.start.set(g, f);
      } else if (w.start.get(g) === undefined) w.start.set(g, f);
    }
    const restarted = new Set<string>();
    w.prefix = prefix;
    w.op = s.id;
    const delivered = s.completion?.value;
    if (delivered === undefined || delivered === null) continue;
    if (!Array.isArray(delivered)) {
      v.add('malformed', prefix, 'a watch session result is not an array of events', [s.id]);
      continue;
    }
    for (const raw of delivered) {
      const e = raw as Record<string, unknown> | null;
      const revision = revisionOf(e?.revision);
      const group = groupName(e?.group);
      const key = e?.key;
      const type = e?.type;
      if (
        e === null ||
        typeof e !== 'object' ||
        revision === undefined ||
        group === undefined ||
        typeof key !== 'string' ||
        (type !== 'put' && type !== 'delete')
      ) {
        v.add('malformed', prefix, `a watch event is malformed: ${show(raw)}`, [s.id]);
        continue;
      }
      events++;
      if (e.cause === 'snapshot') {
        snapshots++;
        close(name, w, group);
        restarted.add(group);
        continue;
      }
      if (!key.startsWith(prefix))
        v.add('foreign-key', key, `watcher ${name} on prefix ${show(prefix)} got an event for ${show(key)}`, [
          s.id,
        ]);
      remember(
        group,
        revision,
        { key, type, value: type === 'put' && 'value' in e ? canonicalJson(e.value) : undefined, op: s.id },
        `watcher ${name}'s event`,
      );
      let seen = w.delivered.get(group);
      if (seen === undefined) {
        seen = new Set();
        w.delivered.set(group, seen);
      }
      const last = w.last.get(group);
      if (last !== undefined && revision <= last) {
        if (seen.has(revision))
          v.add('repeated', key, `watcher ${name} got group ${group} revision ${revision} again`, [s.id]);
        else {
          v.add(
            'out-of-order',
            key,
            `watcher ${name} got group ${group} revision ${revision} after revision ${last}`,
            [s.id],
          );
          seen.add(revision);
        }
        continue;
      }
      seen.add(revision);
      w.last.set(group, revision);
      if (w.start.get(group) === undefined) {
        // A group first seen in this session starts at the session's fromRevision, if any.
        const f = restarted.has(group) || groupsSeen.has(group) ? undefined : fromFor(group);
        w.start.set(group, f === undefined ? revision : Math.min(f, revision));
      }
    }
  }
  for (const [name, w] of watchers)
    for (const g of new Set([...w.start.keys(), ...w.last.keys()])) close(name, w, g);

  // Every canonical revision inside a segment, under its prefix, must have been delivered.
  const sortedRevisions = new Map<string, number[]>();
  for (const [g, revs] of canonical)
    sortedRevisions.set(
      g,
      [...revs.keys()].sort((a, b) => a - b),
    );
  let lost = 0;
  for (const seg of segments) {
    const revs = sortedRevisions.get(seg.group) ?? [];
    const known = canonical.get(seg.group);
    const seen = watchers.get(seg.watcher)!.delivered.get(seg.group) ?? new Set<number>();
    let lo = 0;
    let hi = revs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (revs[mid]! < seg.start) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < revs.length && revs[i]! <= seg.end; i++) {
      const r = revs[i]!;
      const c = known!.get(r)!;
      if (!c.key.startsWith(seg.prefix) || seen.has(r)) continue;
      lost++;
      v.add(
        'lost',
        c.key,
        `watcher ${seg.watcher} missed group ${seg.group} revision ${r} (${c.type} ${show(c.key)}), inside the revisions ${seg.start}..${seg.end} it covered`,
        [c.op, seg.op],
      );
    }
  }
  return v.result('watch', {
    writes,
    watchers: watchers.size,
    sessions: sessions.length,
    events,
    snapshots,
    segments: segments.length,
    lost,
  });
}
