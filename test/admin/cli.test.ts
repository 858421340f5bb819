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

  it('refuses bad dev options as `error CODE: message` (exit 2)', async () => {
    const io = capture();
    expect(await main(['node', 'dkv', 'dev', '--nodes', '0'])).toBe(EXIT.error);
    expect(io.err()).toMatch(/^error INVALID_ARGUMENT: --nodes must be an integer from 1 to 99/);
  });

  it('reports unreachable servers as UNAVAILABLE (exit 2)', async () => {
    const io = capture();
    expect(await main(['node', 'dkv', '--servers', '127.0.0.1:1', '--timeout', '300', 'get', 'k'])).toBe(
      EXIT.error,
    );
    expect(io.err()).toMatch(/^error UNAVAILABLE: /);
  });

  it('refuses a malformed --servers list', async () => {
    const io = capture();
    expect(await main(['node', 'dkv', '--servers', 'nohost', 'get', 'k'])).toBe(EXIT.error);
    expect(io.err()).toMatch(/^error INVALID_ARGUMENT: bad server address "nohost"/);
  });
});
