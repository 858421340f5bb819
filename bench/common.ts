/** Shared pieces of the benchmarks: seeded generators and the run-as-a-script entry. */
import { pathToFileURL } from 'node:url';

/** xorshift32 is a seeded generator of unsigned 32-bit integers, so every run does the same work. */
export function xorshift32(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/** uniform is a seeded generator of numbers in [0, 1). */
export function uniform(seed: number): () => number {
  const next = xorshift32(seed);
  return () => next() / 4_294_967_296;
}

/** Figures are a benchmark's named results. */
export type Figures = Record<string, number | string | boolean>;

/**
 * runIfMain runs `bench` when its module is the script node was started with (`--quick` from
 * the command line), printing one figure per line; a failure sets the exit code.
 */
export function runIfMain(moduleUrl: string, bench: (opts: { quick: boolean }) => Promise<Figures>): void {
  if (process.argv[1] === undefined || moduleUrl !== pathToFileURL(process.argv[1]).href) return;
  bench({ quick: process.argv.includes('--quick') }).then(
    (figures) => {
      const width = Math.max(...Object.keys(figures).map((k) => k.length)) + 2;
      for (const [k, v] of Object.entries(figures)) console.log(`${k.padEnd(width)} ${v}`);
    },
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
