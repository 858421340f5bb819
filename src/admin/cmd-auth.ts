/**
 * `dkv auth ...`: makes and edits the auth file the nodes read (src/node/auth.ts has its
 * format). The file is local: these commands edit it in place (written to a temp file and
 * renamed, mode 0600), and nodes pick a change up within a second or so (they re-read it when
 * its mtime moves). Give every node the same file.
 *
 *     dkv auth init --file F [--root-password P]     the file, with user root (role root)
 *     dkv auth user add NAME --file F --new-password P [--role R ...]
 *     dkv auth user remove NAME --file F
 *     dkv auth role add NAME --file F --grant STORE[/PREFIX]=read,write,admin ...
 *     dkv auth token add NAME --file F --as USER [--ttl MS]   prints the token, once
 *     dkv auth token remove NAME --file F
 *     dkv auth list --file F
 *
 * A root user is only ever made explicitly, by `init` (or `dkv dev --auth`). Passwords come
 * from the flag or, better, the environment (DKV_ROOT_PASSWORD, DKV_NEW_PASSWORD), so they stay
 * out of `ps`; `init` without one generates a password and prints it once.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { DkvError, ErrorCode, quote } from '../errors.js';
import {
  type AuthFile,
  type AuthRole,
  type AuthToken,
  type AuthUser,
  checkGrant,
  type Grant,
  hashPassword,
  newSecret,
  parseAuthFile,
  sha256Hex,
} from '../node/auth.js';
import { globals, intOption, toJson } from './data-commands.js';

/** readAuthFile loads and checks an auth file. */
export function readAuthFile(path: string): AuthFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new DkvError(ErrorCode.NotFound, `cannot read the auth file ${path}: ${(err as Error).message}`);
  }
  return parseAuthFile(text);
}

/** writeAuthFile checks and writes an auth file atomically (mode 0600). */
export function writeAuthFile(path: string, f: AuthFile): void {
  const text = `${JSON.stringify(f, null, 2)}\n`;
  parseAuthFile(text);
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, path);
}

/**
 * initAuthFile makes a new auth file with the root user; it refuses to overwrite one. Returns
 * the root password (the one given, or a generated one).
 */
export function initAuthFile(path: string, rootPassword?: string): { password: string; generated: boolean } {
  if (existsSync(path))
    throw new DkvError(
      ErrorCode.AlreadyExists,
      `${path} exists already: edit it with dkv auth user/role/token`,
    );
  const generated = rootPassword === undefined || rootPassword === '';
  const password = generated ? newSecret().slice(0, 24) : rootPassword;
  writeAuthFile(path, {
    version: 1,
    users: [{ name: 'root', password: hashPassword(password), roles: ['root'] }],
    roles: [],
    tokens: [],
    nodeToken: newSecret(),
  });
  return { password, generated };
}

/** addUser adds (or replaces the password and roles of) a user. */
export function addUser(f: AuthFile, name: string, password: string, roles: readonly string[]): AuthFile {
  const user: AuthUser = { name, password: hashPassword(password), roles: [...roles] };
  return { ...f, users: [...f.users.filter((u) => u.name !== name), user] };
}

/** addRole adds (or replaces) a role. */
export function addRole(f: AuthFile, name: string, grants: readonly Grant[]): AuthFile {
  const role: AuthRole = { name, grants: [...grants] };
  return { ...f, roles: [...f.roles.filter((r) => r.name !== name), role] };
}

/** addToken adds a token for `user`; returns the file and the token (shown once). */
export function addToken(
  f: AuthFile,
  name: string,
  user: string,
  expiresAt?: number,
): { file: AuthFile; token: string } {
  if (!f.users.some((u) => u.name === user)) throw new DkvError(ErrorCode.NotFound, `no user ${quote(user)}`);
  const token = `dkv_${newSecret()}`;
  const t: AuthToken = {
    name,
    sha256: sha256Hex(token),
    user,
    ...(expiresAt !== undefined && { expiresAt }),
  };
  return { file: { ...f, tokens: [...f.tokens.filter((x) => x.name !== name), t] }, token };
}

/**
 * parseGrant reads `STORE[/PREFIX]=read,write,admin` (STORE `*`: every store). The prefix is
 * everything after the first slash, so `app/users/=read` grants read under `users/` in `app`.
 */
export function parseGrant(text: string): Grant {
  const eq = text.lastIndexOf('=');
  if (eq <= 0)
    throw new DkvError(ErrorCode.InvalidArgument, `--grant ${quote(text)}: want STORE[/PREFIX]=PERMS`);
  const where = text.slice(0, eq);
  const slash = where.indexOf('/');
  const store = slash < 0 ? where : where.slice(0, slash);
  const prefix = slash < 0 ? undefined : where.slice(slash + 1);
  const perms = text
    .slice(eq + 1)
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  return checkGrant({ store, ...(prefix !== undefined && { prefix }), perms }, `--grant ${quote(text)}`);
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

function fileOf(opts: { file?: string }): string {
  if (opts.file === undefined) throw new DkvError(ErrorCode.InvalidArgument, '--file names the auth file');
  return opts.file;
}

function say(cmd: Command, text: string, json: unknown): void {
  process.stdout.write(`${globals(cmd).json ? toJson(json) : text}\n`);
}

/** addAuthCommands adds `dkv auth ...` to the program. */
export function addAuthCommands(program: Command): void {
  const auth = program.command('auth').description('make and edit the auth file (users, roles, tokens)');
  auth
    .command('init')
    .description('make a new auth file with the root user')
    .requiredOption('--file <path>', 'the auth file to create')
    .option(
      '--root-password <pw>',
      "root's password (env DKV_ROOT_PASSWORD; default: generated, printed once)",
    )
    .action((opts: { file: string; rootPassword?: string }, cmd: Command) => {
      const r = initAuthFile(opts.file, opts.rootPassword ?? process.env.DKV_ROOT_PASSWORD);
      say(
        cmd,
        r.generated
          ? `${opts.file}: created with user root; root's password (shown once): ${r.password}`
          : `${opts.file}: created with user root`,
        { file: opts.file, user: 'root', ...(r.generated && { password: r.password }) },
      );
    });
  const user = auth.command('user').description('users');
  user
    .command('add')
    .description('add a user, or replace its password and roles')
    .argument('<name>')
    .requiredOption('--file <path>', 'the auth file')
    .option('--new-password <pw>', 'the password (env DKV_NEW_PASSWORD)')
    .option('--role <role>', 'a role (repeat for more)', collect)
    .action((name: string, opts: { file: string; newPassword?: string; role?: string[] }, cmd: Command) => {
      const pw = opts.newPassword ?? process.env.DKV_NEW_PASSWORD;
      if (pw === undefined || pw === '')
        throw new DkvError(ErrorCode.InvalidArgument, '--new-password (or DKV_NEW_PASSWORD) is required');
      const f = fileOf(opts);
      writeAuthFile(f, addUser(readAuthFile(f), name, pw, opts.role ?? []));
      say(cmd, `user ${name} saved`, { user: name, roles: opts.role ?? [] });
    });
  user
    .command('remove')
    .argument('<name>')
    .requiredOption('--file <path>', 'the auth file')
    .action((name: string, opts: { file: string }, cmd: Command) => {
      const f = readAuthFile(opts.file);
      if (!f.users.some((u) => u.name === name))
        throw new DkvError(ErrorCode.NotFound, `no user ${quote(name)}`);
      writeAuthFile(opts.file, {
        ...f,
        users: f.users.filter((u) => u.name !== name),
        tokens: f.tokens.filter((t) => t.user !== name),
      });
      say(cmd, `user ${name} removed (and its tokens)`, { user: name, removed: true });
    });
  auth
    .command('role')
    .description('roles')
    .command('add')
    .description('add or replace a role: --grant STORE[/PREFIX]=read,write,admin (STORE * is every store)')
    .argument('<name>')
    .requiredOption('--file <path>', 'the auth file')
    .requiredOption('--grant <grant>', 'a grant (repeat for more)', collect)
    .action((name: string, opts: { file: string; grant: string[] }, cmd: Command) => {
      const grants = opts.grant.map(parseGrant);
      writeAuthFile(opts.file, addRole(readAuthFile(opts.file), name, grants));
      say(cmd, `role ${name} saved`, { role: name, grants });
    });
  const token = auth.command('token').description('static tokens');
  token
    .command('add')
    .description('make a token that acts as a user; prints it once')
    .argument('<name>')
    .requiredOption('--file <path>', 'the auth file')
    .requiredOption('--as <user>', 'the user the token acts as')
    .option('--ttl <ms>', 'the token expires this long from now (default: never)')
    .action((name: string, opts: { file: string; as: string; ttl?: string }, cmd: Command) => {
      const expiresAt = opts.ttl === undefined ? undefined : Date.now() + intOption('--ttl', opts.ttl, 1);
      const r = addToken(readAuthFile(opts.file), name, opts.as, expiresAt);
      writeAuthFile(opts.file, r.file);
      say(cmd, r.token, {
        name,
        user: opts.as,
        token: r.token,
        ...(expiresAt !== undefined && { expiresAt }),
      });
    });
  token
    .command('remove')
    .argument('<name>')
    .requiredOption('--file <path>', 'the auth file')
    .action((name: string, opts: { file: string }, cmd: Command) => {
      const f = readAuthFile(opts.file);
      if (!f.tokens.some((t) => t.name === name))
        throw new DkvError(ErrorCode.NotFound, `no token ${quote(name)}`);
      writeAuthFile(opts.file, { ...f, tokens: f.tokens.filter((t) => t.name !== name) });
      say(cmd, `token ${name} removed`, { token: name, removed: true });
    });
  auth
    .command('list')
    .description('list users, roles and tokens (never secrets)')
    .requiredOption('--file <path>', 'the auth file')
    .action((opts: { file: string }, cmd: Command) => {
      const f = readAuthFile(opts.file);
      const view = {
        users: f.users.map((u) => ({ name: u.name, roles: u.roles })),
        roles: f.roles,
        tokens: f.tokens.map((t) => ({
          name: t.name,
          user: t.user,
          ...(t.expiresAt !== undefined && { expiresAt: new Date(t.expiresAt).toISOString() }),
        })),
      };
      say(cmd, JSON.stringify(view, null, 2), view);
    });
}
