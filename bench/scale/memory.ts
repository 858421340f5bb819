/**
 * In-process memory figures for the scaling benchmark: a full garbage collection on demand,
 * even when node was started without --expose-gc (`npx tsx bench/scale.ts`): the flag is set
 * at run time and the `gc` function is taken from a fresh context, where V8 installs it.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gcFn: (() => void) | undefined;

/** gcNow runs a full garbage collection (twice, so that finalised objects go too). */
export function gcNow(): void {
  if (gcFn === undefined) {
    const own = (globalThis as { gc?: () => void }).gc;
    if (typeof own === 'function') gcFn = own;
    else {
      setFlagsFromString('--expose-gc');
      gcFn = runInNewContext('gc') as () => void;
    }
  }
  gcFn();
  gcFn();
}

/** heapBytes is what the JavaScript heap and the array buffers outside it hold now. */
export function heapBytes(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}
