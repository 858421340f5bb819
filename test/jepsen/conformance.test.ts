/**
 * Conformance with a published checker: the verdict on every labeled history of Porcupine's
 * test data (102 etcd Jepsen logs, 6 kv histories) must match `expected.json`. The data is
 * third-party and lives outside the repo, in `../shared/checker-data/porcupine/`; when it is
 * absent, these tests are skipped and say so.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkOperations } from '../../jepsen-like/linearizability.js';
import { bindKv } from '../../jepsen-like/models/kv.js';
import type { BoundModel } from '../../jepsen-like/models/model.js';
import { bindRegister } from '../../jepsen-like/models/register.js';
import { parsePorcupineEtcd, parsePorcupineKv } from '../../jepsen-like/porcupine-format.js';
import { HAVE_PORCUPINE_DATA, PORCUPINE_DATA } from './helpers.js';

if (!HAVE_PORCUPINE_DATA)
  console.warn(
    `conformance: SKIPPED — the Porcupine test data is not at ${PORCUPINE_DATA} (../shared/checker-data)`,
  );

const expected: Record<string, boolean> = HAVE_PORCUPINE_DATA
  ? JSON.parse(readFileSync(resolve(PORCUPINE_DATA, 'expected.json'), 'utf8'))
  : {};
const etcdFiles = Object.keys(expected).filter((f) => f.startsWith('jepsen/'));
const kvFiles = Object.keys(expected).filter((f) => f.startsWith('kv/'));

function checkFile(file: string): { valid: unknown; ms: number } {
  const text = readFileSync(resolve(PORCUPINE_DATA, file), 'utf8');
  const t0 = performance.now();
  const isKv = file.startsWith('kv/');
  const history = isKv ? parsePorcupineKv(text) : parsePorcupineEtcd(text);
  // biome-ignore lint/suspicious/noExplicitAny: either model
  const bound: BoundModel<any, any, any> = isKv ? bindKv({}) : bindRegister({});
  // Like Porcupine, stop at the first key found not linearizable.
  const result = checkOperations(bound.model, bound.operations(history.ops), {
    stopOnInvalid: true,
    timeBudgetMs: 60_000,
  });
  return { valid: result.valid, ms: performance.now() - t0 };
}

describe('conformance with Porcupine (../shared/checker-data/porcupine)', () => {
  it.skipIf(!HAVE_PORCUPINE_DATA)('has the 108 labeled histories (102 etcd, 6 kv)', () => {
    expect(etcdFiles.length).toBe(102);
    expect(kvFiles.length).toBe(6);
  });

  it.skipIf(!HAVE_PORCUPINE_DATA)('matches expected.json on all 102 etcd logs, in under 5 s in all', () => {
    // Timed cold: this is the first checking in the process (parse and check, not the file read).
    const wrong: string[] = [];
    let total = 0;
    let slowest = { file: '', ms: 0 };
    for (const f of etcdFiles) {
      const { valid, ms } = checkFile(f);
      total += ms;
      if (ms > slowest.ms) slowest = { file: f, ms };
      if (valid !== expected[f]) wrong.push(`${f}: got ${valid}, expected ${expected[f]}`);
    }
    console.log(
      `conformance: 102 etcd logs checked in ${total.toFixed(0)} ms (slowest ${slowest.file} ${slowest.ms.toFixed(0)} ms)`,
    );
    expect(wrong).toEqual([]);
    expect(total).toBeLessThan(5000);
  });

  it.skipIf(!HAVE_PORCUPINE_DATA)('matches expected.json on the 6 kv histories; c50-ok in under 2 s', () => {
    const wrong: string[] = [];
    for (const f of kvFiles) {
      const { valid, ms } = checkFile(f);
      console.log(`conformance: ${f} -> ${valid} in ${ms.toFixed(0)} ms`);
      if (valid !== expected[f]) wrong.push(`${f}: got ${valid}, expected ${expected[f]}`);
      if (f === 'kv/c50-ok.txt') expect(ms).toBeLessThan(2000);
    }
    expect(wrong).toEqual([]);
  });
});
