/**
 * What the nodes themselves saw of the puts, from their GET /metrics (Prometheus text): the
 * request latency histogram `dkv_request_duration_seconds{op="put"}` (arrival to answer, in
 * the node) and `dkv_request_errors_total{op="put"}` by code, summed over the nodes and read
 * at both edges of a phase.
 *
 * On a box where the load generators are short of CPU, the latency they measure includes their
 * own event-loop delay; the node's figure does not, so the report gives both. The histogram's
 * buckets are coarse (metrics.ts: 0.25 ms to 10 s), so a quantile is given as the upper bound
 * of the bucket it falls in ("at most"), and the node counts every answered put, shed ones too
 * (they answer fast), so it is a bound on what the accepted puts waited in the node, not their
 * exact percentile.
 */

/** PutMetrics are the nodes' put counters at one moment, summed over nodes and stores. */
export interface PutMetrics {
  /** Cumulative histogram: upper bound (seconds, Infinity for +Inf) -> puts answered within it. */
  readonly buckets: Map<number, number>;
  readonly count: number;
  /** Puts answered with an error, by code. */
  readonly errors: Record<string, number>;
}

/** parseLabels reads `a="x",b="y"` (Prometheus escapes \\, \" and \n) into a record. */
function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /(\w+)="((?:[^"\\]|\\.)*)"/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text))
    out[m[1]!] = m[2]!.replace(/\\n/g, '\n').replace(/\\(.)/g, '$1');
  return out;
}

/** parsePutMetrics reads the put figures out of a /metrics text, adding them to `into` when given. */
export function parsePutMetrics(text: string, into?: PutMetrics): PutMetrics {
  const buckets = new Map(into?.buckets ?? []);
  const errors: Record<string, number> = { ...(into?.errors ?? {}) };
  let count = into?.count ?? 0;
  for (const line of text.split('\n')) {
    const m =
      /^(dkv_request_duration_seconds_bucket|dkv_request_duration_seconds_count|dkv_request_errors_total)\{([^}]*)\}\s+(\S+)/.exec(
        line,
      );
    if (m === null) continue;
    const labels = parseLabels(m[2]!);
    if (labels.op !== 'put') continue;
    const v = Number(m[3]);
    if (!Number.isFinite(v)) continue;
    if (m[1] === 'dkv_request_duration_seconds_bucket') {
      const le = labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(labels.le);
      if (!Number.isNaN(le)) buckets.set(le, (buckets.get(le) ?? 0) + v);
    } else if (m[1] === 'dkv_request_duration_seconds_count') count += v;
    else if (labels.code !== undefined) errors[labels.code] = (errors[labels.code] ?? 0) + v;
  }
  return { buckets, count, errors };
}

/** diffPutMetrics is what happened between two readings (b - a). */
export function diffPutMetrics(a: PutMetrics, b: PutMetrics): PutMetrics {
  const buckets = new Map<number, number>();
  for (const [le, n] of b.buckets) buckets.set(le, n - (a.buckets.get(le) ?? 0));
  const errors: Record<string, number> = {};
  for (const [code, n] of Object.entries(b.errors)) {
    const d = n - (a.errors[code] ?? 0);
    if (d > 0) errors[code] = d;
  }
  return { buckets, count: b.count - a.count, errors };
}

/** quantileBoundMs is the upper bound (ms) of the bucket holding the q-quantile; NaN with no puts, Infinity past the last bound. */
export function quantileBoundMs(m: PutMetrics, q: number): number {
  if (!(m.count > 0)) return Number.NaN;
  const rank = Math.max(1, Math.ceil(q * m.count));
  const sorted = [...m.buckets.entries()].sort((x, y) => x[0] - y[0]);
  for (const [le, n] of sorted) if (n >= rank) return le * 1000;
  return Number.POSITIVE_INFINITY;
}

/** readPutMetrics fetches every node's /metrics (admin ports) and sums their put figures; a node that does not answer adds nothing. */
export async function readPutMetrics(adminPorts: readonly number[]): Promise<PutMetrics> {
  const texts = await Promise.all(
    adminPorts.map(async (port) => {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(3000) });
        return res.ok ? await res.text() : '';
      } catch {
        return '';
      }
    }),
  );
  let m: PutMetrics = { buckets: new Map(), count: 0, errors: {} };
  for (const t of texts) m = parsePutMetrics(t, m);
  return m;
}
