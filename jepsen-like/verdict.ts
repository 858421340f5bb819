/**
 * Verdicts and the result shape shared by the checkers that are not the linearizability
 * search (fencing, set, counter, watch, lease).
 */

/** Verdict is a checker's answer: valid, not, or unknown (a budget ran out). */
export type Verdict = true | false | 'unknown';

/** combineVerdicts: false wins, then unknown, then true. */
export function combineVerdicts(verdicts: Iterable<Verdict>): Verdict {
  let out: Verdict = true;
  for (const v of verdicts) {
    if (v === false) return false;
    if (v === 'unknown') out = 'unknown';
  }
  return out;
}

/** Violation is one broken rule, with the ops (HistoryOp ids) that show it. */
export interface Violation {
  /** A stable, kebab-case name of the rule, for example `lost` or `stale-accept`. */
  readonly kind: string;
  readonly key: string;
  readonly message: string;
  readonly ops: readonly number[];
}

/** CheckerResult is what a checker reports. */
export interface CheckerResult {
  readonly checker: string;
  readonly valid: Verdict;
  /** The first VIOLATIONS_LISTED violations; `violationCount` counts them all. */
  readonly violations: readonly Violation[];
  readonly violationCount: number;
  /** Counts that describe the history, for the report. */
  readonly stats: Readonly<Record<string, number>>;
}

/** VIOLATIONS_LISTED bounds the violations a result lists. */
export const VIOLATIONS_LISTED = 100;

/** ViolationList collects violations, keeping the first VIOLATIONS_LISTED and counting all. */
export class ViolationList {
  readonly listed: Violation[] = [];
  count = 0;
  /** counts[kind] is how many violations of each kind there were. */
  readonly counts = new Map<string, number>();

  add(kind: string, key: string, message: string, ops: readonly number[] = []): void {
    this.count++;
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
    if (this.listed.length < VIOLATIONS_LISTED) this.listed.push({ kind, key, message, ops });
  }

  /** result builds the checker's result; it is valid exactly when nothing was added. */
  result(checker: string, stats: Record<string, number>): CheckerResult {
    const all = { ...stats };
    for (const [kind, n] of [...this.counts].sort()) all[`violations:${kind}`] = n;
    return {
      checker,
      valid: this.count === 0,
      violations: this.listed,
      violationCount: this.count,
      stats: all,
    };
  }
}

/** formatCheckerResult renders a checker's result as report lines. */
export function formatCheckerResult(r: CheckerResult): string[] {
  const verdict = r.valid === true ? 'valid' : r.valid === false ? 'INVALID' : 'unknown';
  const stats = Object.entries(r.stats)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  const lines = [`${r.checker}: ${verdict} — ${stats}`];
  for (const v of r.violations)
    lines.push(
      `  [${v.kind}] ${v.key === '' ? '' : `key ${JSON.stringify(v.key)}: `}${v.message}${
        v.ops.length > 0 ? ` (ops ${v.ops.join(', ')})` : ''
      }`,
    );
  if (r.violationCount > r.violations.length)
    lines.push(`  ... and ${r.violationCount - r.violations.length} more violation(s)`);
  return lines;
}
