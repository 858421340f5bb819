import { describe, expect, it } from 'vitest';
import { parseCmdLine, parseFile, renderFile } from './datadriven.js';

const FILE = `# comment

add-nodes 3 voters=(1,2,3) index=10
----
ok

propose-conf-change 1 transition=joint-explicit
v4 r3
----
----
line one

line three
----
----

status 1
----
a
b
`;

describe('datadriven', () => {
  it('parses blocks, input and doubled-separator output', () => {
    const chunks = parseFile(FILE, 'f.txt');
    const cases = chunks.flatMap((c) => (c.kind === 'case' ? [c.tc] : []));
    expect(cases.map((c) => [c.line, c.cmd, c.input, c.expected])).toEqual([
      [3, 'add-nodes', '', 'ok'],
      [7, 'propose-conf-change', 'v4 r3', 'line one\n\nline three'],
      [17, 'status', '', 'a\nb'],
    ]);
  });

  it('renders a file back byte for byte', () => {
    expect(renderFile(parseFile(FILE, 'f.txt'), [])).toBe(FILE);
  });

  it('replaces expected output', () => {
    const text = renderFile(parseFile(FILE, 'f.txt'), ['x', 'y', 'z\n\nw']);
    expect(text).toContain('v4 r3\n----\ny\n\nstatus 1\n----\n----\nz\n\nw\n----\n----\n');
  });

  it('splits arguments', () => {
    expect(parseCmdLine('partition (1) (2,3) drop=(4, 5) x=y z', 'f:1')).toEqual({
      cmd: 'partition',
      args: [
        { key: '', vals: ['1'] },
        { key: '', vals: ['2', '3'] },
        { key: 'drop', vals: ['4', '5'] },
        { key: 'x', vals: ['y'] },
        { key: 'z', vals: [] },
      ],
    });
  });

  it('rejects a block without a separator', () => {
    expect(() => parseFile('campaign 1\nok\n\n', 'f.txt')).toThrow(/no ----/);
  });
});
