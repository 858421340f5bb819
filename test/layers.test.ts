import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The layer rules of DESIGN.md, enforced: what each folder under src/ may import, and which
 * folders must stay pure (no I/O, no clock, no randomness, no Promises).
 */
const SRC = resolve(import.meta.dirname, '../src');

/** ALLOWED maps a layer to the layers (folders under src/, or top-level src files) it may import. */
const ALLOWED: Record<string, readonly string[]> = {
  raft: ['raft'],
  storage: ['storage', 'raft', 'errors.ts', 'clock.ts', 'random.ts'],
  engines: ['engines', 'errors.ts'],
  statemachine: ['statemachine', 'engines', 'raft', 'errors.ts'],
  transport: ['transport', 'statemachine', 'errors.ts', 'clock.ts', 'random.ts'],
  node: [
    'node',
    'transport',
    'statemachine',
    'engines',
    'storage',
    'raft',
    'errors.ts',
    'clock.ts',
    'random.ts',
  ],
  client: ['client', 'transport', 'statemachine', 'errors.ts', 'clock.ts', 'random.ts'],
  admin: [
    'admin',
    'node',
    'client',
    'transport',
    'statemachine',
    'storage',
    'raft',
    'errors.ts',
    'clock.ts',
    'random.ts',
  ],
};

/** PURE layers may not touch the outside world at all. */
const PURE = new Set(['raft', 'engines']);
const IMPURE_PATTERNS: readonly [RegExp, string][] = [
  [/from\s+['"]node:/, 'a node: import'],
  [/\bDate\.now\s*\(/, 'Date.now()'],
  [/\bnew Date\s*\(/, 'new Date()'],
  [/\bMath\.random\s*\(/, 'Math.random()'],
  [/\bperformance\.now\s*\(/, 'performance.now()'],
  [/\bset(Timeout|Interval|Immediate)\s*\(/, 'a timer'],
  [/\bPromise\b/, 'a Promise'],
  [/\basync\s+(function|\(|[a-zA-Z_$][\w$]*\s*\()/, 'an async function'],
  [/\bawait\s/, 'await'],
  [/\bprocess\./, 'process'],
];

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

function layerOf(file: string): string {
  const rel = relative(SRC, file).split('/');
  return rel.length === 1 ? rel[0]! : rel[0]!;
}

function stripComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

describe('layers (DESIGN.md)', () => {
  const files = walk(SRC);

  it('finds the source tree', () => {
    expect(files.some((f) => f.includes('/raft/'))).toBe(true);
  });

  it('imports only point down the layer table', () => {
    const violations: string[] = [];
    for (const file of files) {
      const layer = layerOf(file);
      const allowed = ALLOWED[layer];
      if (!allowed) continue; // top-level files (errors.ts, index.ts, ...) are shared leaves
      const src = readFileSync(file, 'utf8');
      for (const m of src.matchAll(/(?:from|import)\s+['"](\.{1,2}\/[^'"]+)['"]/g)) {
        const target = resolve(file, '..', m[1]!);
        const targetLayer = layerOf(target.replace(/\.js$/, '.ts'));
        if (!allowed.includes(targetLayer))
          violations.push(`${relative(SRC, file)} imports ${m[1]} (${targetLayer})`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('the Raft core and the engines are pure', () => {
    const violations: string[] = [];
    for (const file of files) {
      if (!PURE.has(layerOf(file))) continue;
      const src = stripComments(readFileSync(file, 'utf8'));
      for (const [re, what] of IMPURE_PATTERNS) {
        if (re.test(src)) violations.push(`${relative(SRC, file)} uses ${what}`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('the purity check itself catches an impure line', () => {
    const sample = "import { readFile } from 'node:fs';\nconst t = Date.now();\nawait x;";
    const hits = IMPURE_PATTERNS.filter(([re]) => re.test(sample)).map(([, what]) => what);
    expect(hits).toEqual(['a node: import', 'Date.now()', 'await']);
  });
});
