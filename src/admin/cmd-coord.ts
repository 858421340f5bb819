/** CLI commands lease and lock (issue 6). */
import type { Command } from 'commander';

/** addCoordinationCommands registers `lease grant|revoke|keepalive` and `lock acquire|release`. */
export function addCoordinationCommands(_program: Command): void {}
