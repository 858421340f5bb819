import { afterEach, describe, expect, it, vi } from 'vitest';
import { EXIT, main } from '../../src/admin/program.js';

describe('dkv CLI', () => {
  afterEach(() => vi.restoreAllMocks());

  function capture(): { err: () => string; out: () => string } {
    let err = '';
    let out = '';
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      err += String(chunk);
      return true;
    });
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      out += String(chunk);
      return true;
    });
    return { err: () => err, out: () => out };
  }

  it('prints its version', async () => {
    const io = capture();
    expect(await main(['node', 'dkv', '--version'])).toBe(EXIT.ok);
    expect(io.out()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('reports an unknown command as an error (exit 2)', async () => {
    const io = capture();
    expect(await main(['node', 'dkv', 'no-such-command'])).toBe(EXIT.error);
    expect(io.err()).toContain('unknown command');
  });

  it('says plainly that dev is not built yet, as `error CODE: message`', async () => {
    const io = capture();
    expect(await main(['node', 'dkv', 'dev'])).toBe(EXIT.error);
    expect(io.err()).toMatch(/^error UNSUPPORTED: /);
  });
});
