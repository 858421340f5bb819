/**
 * A small datadriven file format, after cockroachdb/datadriven as used by etcd-io/raft.
 *
 * A file is a sequence of blocks separated by blank lines and `#` comment lines:
 *
 * ```
 * # a comment
 * command arg key=value key=(1,2,3) (4,5)
 * optional input line
 * ----
 * expected output
 * ```
 *
 * The expected output ends at the first blank line. Output that itself holds blank lines is
 * written between doubled separators (`----` `----` … `----` `----`).
 */

/** SEPARATOR is the line between a block's command (and input) and its expected output. */
export const SEPARATOR = '----';

/**
 * CmdArg is one argument of a command line. `key=value` gives one value, `key=(a,b)` several,
 * a bare word gives a key with no values, and a bare group `(a,b)` gives an empty key.
 */
export interface CmdArg {
  readonly key: string;
  readonly vals: readonly string[];
}

/** TestCase is one block of a file: its command, input and expected output. */
export interface TestCase {
  /** The 1-based line number of the command line, for error messages. */
  readonly line: number;
  /** The command line exactly as written. */
  readonly cmdLine: string;
  readonly cmd: string;
  readonly args: readonly CmdArg[];
  /** The input lines between the command and the separator, joined with newlines. */
  readonly input: string;
  /** The expected output, without a trailing newline. */
  readonly expected: string;
}

/** Chunk is a piece of a parsed file: free text (comments, blank lines) kept verbatim, or a block. */
export type Chunk =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'case'; readonly tc: TestCase };

/** DatadrivenSyntaxError reports a malformed file, naming the file and line. */
export class DatadrivenSyntaxError extends Error {
  override readonly name = 'DatadrivenSyntaxError';
}

/**
 * parseFile splits a file into chunks. Joining the chunks back with `renderFile` and the
 * parsed expected outputs reproduces the file exactly.
 */
export function parseFile(content: string, fileName: string): Chunk[] {
  const lines = content.split('\n');
  const chunks: Chunk[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    if (line.trim() === '' || line.startsWith('#')) {
      chunks.push({ kind: 'text', text: line });
      i++;
      continue;
    }
    const start = i + 1;
    const cmdLine = line;
    i++;
    const input: string[] = [];
    while (i < lines.length && lines[i] !== SEPARATOR) {
      const l = lines[i]!;
      if (l.trim() === '') {
        throw new DatadrivenSyntaxError(`${fileName}:${start}: "${cmdLine}" has no ${SEPARATOR} line`);
      }
      input.push(l);
      i++;
    }
    if (i >= lines.length) {
      throw new DatadrivenSyntaxError(`${fileName}:${start}: "${cmdLine}" has no ${SEPARATOR} line`);
    }
    i++; // the separator
    const expected: string[] = [];
    if (lines[i] === SEPARATOR) {
      i++;
      while (i < lines.length && !(lines[i] === SEPARATOR && lines[i + 1] === SEPARATOR)) {
        expected.push(lines[i]!);
        i++;
      }
      if (i >= lines.length) {
        throw new DatadrivenSyntaxError(`${fileName}:${start}: unterminated doubled ${SEPARATOR} output`);
      }
      i += 2;
    } else {
      while (i < lines.length && lines[i]!.trim() !== '') {
        expected.push(lines[i]!);
        i++;
      }
    }
    const { cmd, args } = parseCmdLine(cmdLine, `${fileName}:${start}`);
    chunks.push({
      kind: 'case',
      tc: { line: start, cmdLine, cmd, args, input: input.join('\n'), expected: expected.join('\n') },
    });
  }
  return chunks;
}

/**
 * renderFile writes chunks back out, replacing each block's expected output with
 * `outputs[k]` for the k-th block (or keeping the old one when it is undefined).
 */
export function renderFile(chunks: readonly Chunk[], outputs: readonly (string | undefined)[]): string {
  const out: string[] = [];
  let k = 0;
  for (const c of chunks) {
    if (c.kind === 'text') {
      out.push(c.text);
      continue;
    }
    const output = outputs[k] ?? c.tc.expected;
    k++;
    out.push(c.tc.cmdLine);
    if (c.tc.input !== '') out.push(c.tc.input);
    out.push(SEPARATOR);
    if (output.split('\n').some((l) => l.trim() === '')) {
      out.push(SEPARATOR, output, SEPARATOR, SEPARATOR);
    } else {
      out.push(output);
    }
  }
  return out.join('\n');
}

/** parseCmdLine splits a command line into the command and its arguments. */
export function parseCmdLine(line: string, where: string): { cmd: string; args: CmdArg[] } {
  const tokens: string[] = [];
  let cur = '';
  let depth = 0;
  let quoted = false;
  for (const ch of line.trim()) {
    if (ch === '"') quoted = !quoted;
    if (!quoted && ch === '(') depth++;
    if (!quoted && ch === ')') depth--;
    if (depth < 0) throw new DatadrivenSyntaxError(`${where}: unbalanced ")" in "${line}"`);
    if (!quoted && depth === 0 && /\s/.test(ch)) {
      if (cur !== '') tokens.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  if (depth !== 0 || quoted)
    throw new DatadrivenSyntaxError(`${where}: unbalanced "(" or quote in "${line}"`);
  if (cur !== '') tokens.push(cur);
  const [cmd, ...rest] = tokens;
  if (cmd === undefined) throw new DatadrivenSyntaxError(`${where}: empty command`);
  return { cmd, args: rest.map(parseArg) };
}

function parseArg(token: string): CmdArg {
  const eq = token.indexOf('=');
  if (token.startsWith('(')) return { key: '', vals: splitGroup(token) };
  if (eq < 0) return { key: token, vals: [] };
  const key = token.slice(0, eq);
  const value = token.slice(eq + 1);
  if (value.startsWith('(')) return { key, vals: splitGroup(value) };
  return { key, vals: [unquote(value)] };
}

function splitGroup(group: string): string[] {
  const inner = group.slice(1, -1).trim();
  if (inner === '') return [];
  return inner.split(/[\s,]+/).map(unquote);
}

function unquote(s: string): string {
  return s.length >= 2 && s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1) : s;
}
