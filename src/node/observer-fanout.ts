/**
 * combineObservers lets several listeners (the Prometheus metrics, the dashboard's history)
 * share the one NodeObserver slot of a DkvNode without knowing of each other. Each callback
 * of the result calls that callback on every listener that has it, in order; one listener's
 * exception is caught there so it never keeps the others from hearing the event (the node
 * also guards its calls, but that guard would stop at the first throwing listener).
 */
import type { CommitOutcome, NodeObserver, RequestOutcome } from './observer.js';

/** combineObservers is one NodeObserver that tells every one of `observers` each event. */
export function combineObservers(...observers: NodeObserver[]): NodeObserver {
  const each = (f: (o: NodeObserver) => void): void => {
    for (const o of observers) {
      try {
        f(o);
      } catch {
        // a broken listener must not silence the others
      }
    }
  };
  return {
    request: (r: RequestOutcome) => each((o) => o.request?.(r)),
    commit: (c: CommitOutcome) => each((o) => o.commit?.(c)),
    leaderChange: (group: number, leader: number, isLeader: boolean) =>
      each((o) => o.leaderChange?.(group, leader, isLeader)),
    proposal: (group: number) => each((o) => o.proposal?.(group)),
    snapshot: (group: number, kind: 'created' | 'installed', bytes: number, ms: number) =>
      each((o) => o.snapshot?.(group, kind, bytes, ms)),
  };
}
