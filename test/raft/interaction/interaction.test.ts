/**
 * Runs every transcript in test/raft/testdata/*.txt and compares each block's output with
 * the expected text. With UPDATE_GOLDEN=1 it rewrites the expected sections instead; read
 * the diff before keeping it, since a golden file is only worth what its content is.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseFile, renderFile, type TestCase } from './datadriven.js';
import { InteractionEnv } from './env.js';
import { runCommand } from './handlers.js';

/** TRANSCRIPT_SEED seeds every file's election timeouts; a file may reseed with `set-config seed=N`. */
const TRANSCRIPT_SEED = 1;

const TESTDATA_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'testdata');
const UPDATE = process.env.UPDATE_GOLDEN === '1';
const files = readdirSync(TESTDATA_DIR)
  .filter((f) => f.endsWith('.txt'))
  .sort();

function run(file: string, content: string): { cases: TestCase[]; outputs: string[]; text: string } {
  const chunks = parseFile(content, file);
  const env = new InteractionEnv(TRANSCRIPT_SEED);
  const cases: TestCase[] = [];
  const outputs: string[] = [];
  for (const c of chunks) {
    if (c.kind !== 'case') continue;
    try {
      outputs.push(runCommand(env, c.tc));
    } catch (err) {
      throw new Error(`${file}:${c.tc.line}: ${c.tc.cmdLine}: ${err instanceof Error ? err.message : err}`, {
        cause: err,
      });
    }
    cases.push(c.tc);
  }
  return { cases, outputs, text: renderFile(chunks, outputs) };
}

describe('raft interaction transcripts', () => {
  it('finds transcripts', () => {
    expect(files.length).toBeGreaterThan(0);
  });

  it.each(files)('%s', (file) => {
    const path = join(TESTDATA_DIR, file);
    const content = readFileSync(path, 'utf8');
    const { cases, outputs, text } = run(file, content);
    if (UPDATE) {
      if (text !== content) writeFileSync(path, text);
      return;
    }
    cases.forEach((tc, i) => {
      expect.soft(outputs[i], `${file}:${tc.line}: ${tc.cmdLine}`).toBe(tc.expected);
    });
    // Replaying a file twice gives the same text: nothing depends on wall time or order of runs.
    expect(run(file, content).text).toBe(text);
  });
});
