/**
 * Instance templates: the sizing presets `dkv instance create --template` writes into an
 * instance's node config (snapshot thresholds, timeouts, queue and frame limits) and its
 * process's heap limit (`memoryMb`, passed to node as `--max-old-space-size`).
 *
 * `default` is exactly NODE_DEFAULTS (src/node/config.ts), so an instance made from it runs
 * like `dkv dev`. `small` suits a laptop or a shared host: a smaller heap, snapshots taken
 * more often (less log kept in memory and on disk), fewer requests queued or in flight, and
 * smaller frames. `large` suits a dedicated host: more of everything. The Raft timing
 * (tickMs, electionTicks, heartbeatTicks) is the same in all three: every member of a cluster
 * should elect on the same clock, whatever its size, and mixing templates is allowed.
 */
import { DkvError, ErrorCode } from '../errors.js';
import { NODE_DEFAULTS } from '../node/config.js';

/** TemplateConfig is the part of a NodeConfig a template sets. */
export interface TemplateConfig {
  readonly snapshotEntries: number;
  readonly snapshotTailEntries: number;
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly requestWaitMs: number;
  readonly pendingMax: number;
  readonly inFlightMax: number;
  readonly frameBytesMax: number;
}

/** InstanceTemplate is one preset. */
export interface InstanceTemplate {
  readonly name: TemplateName;
  /** One line for `dkv instance create --help`. */
  readonly summary: string;
  /** The node process's V8 heap limit (`--max-old-space-size`), in MiB. */
  readonly memoryMb: number;
  readonly config: TemplateConfig;
}

/** TEMPLATE_NAMES are the templates, smallest first; DEFAULT_TEMPLATE is used when none is named. */
export const TEMPLATE_NAMES = ['small', 'default', 'large'] as const;
/** TemplateName is one of TEMPLATE_NAMES. */
export type TemplateName = (typeof TEMPLATE_NAMES)[number];
/** DEFAULT_TEMPLATE is the template `create` uses without --template. */
export const DEFAULT_TEMPLATE: TemplateName = 'default';

const TIMING = {
  tickMs: NODE_DEFAULTS.tickMs,
  electionTicks: NODE_DEFAULTS.electionTicks,
  heartbeatTicks: NODE_DEFAULTS.heartbeatTicks,
} as const;

/** TEMPLATES maps each template name to its preset. */
export const TEMPLATES: Readonly<Record<TemplateName, InstanceTemplate>> = Object.freeze({
  small: {
    name: 'small',
    summary: 'a shared host or a laptop: 256 MiB heap, frequent snapshots, few requests in flight',
    memoryMb: 256,
    config: {
      snapshotEntries: 2_000,
      snapshotTailEntries: 500,
      ...TIMING,
      requestWaitMs: 10_000,
      pendingMax: 2_000,
      inFlightMax: 128,
      frameBytesMax: 4 << 20,
    },
  },
  default: {
    name: 'default',
    summary: 'the node defaults: 1 GiB heap',
    memoryMb: 1024,
    config: {
      snapshotEntries: NODE_DEFAULTS.snapshotEntries,
      snapshotTailEntries: NODE_DEFAULTS.snapshotTailEntries,
      ...TIMING,
      requestWaitMs: NODE_DEFAULTS.requestWaitMs,
      pendingMax: NODE_DEFAULTS.pendingMax,
      inFlightMax: NODE_DEFAULTS.inFlightMax,
      frameBytesMax: NODE_DEFAULTS.frameBytesMax,
    },
  },
  large: {
    name: 'large',
    summary: 'a dedicated host: 4 GiB heap, larger snapshots, many requests in flight',
    memoryMb: 4096,
    config: {
      snapshotEntries: 50_000,
      snapshotTailEntries: 10_000,
      ...TIMING,
      requestWaitMs: 30_000,
      pendingMax: 100_000,
      inFlightMax: 4096,
      frameBytesMax: 64 << 20,
    },
  },
});

/** templateOf returns the named template, or throws INVALID_ARGUMENT listing the choices. */
export function templateOf(name: string): InstanceTemplate {
  if (!(TEMPLATE_NAMES as readonly string[]).includes(name))
    throw new DkvError(
      ErrorCode.InvalidArgument,
      `unknown template ${JSON.stringify(name)}: choose one of ${TEMPLATE_NAMES.join(', ')}`,
    );
  return TEMPLATES[name as TemplateName];
}

/** describeTemplates renders the templates and their values for `--help`. */
export function describeTemplates(): string {
  const fields = Object.keys(TEMPLATES.default.config) as (keyof TemplateConfig)[];
  const lines = ['Templates (--template):'];
  for (const name of TEMPLATE_NAMES) {
    const t = TEMPLATES[name];
    lines.push(`  ${name}${name === DEFAULT_TEMPLATE ? ' (default)' : ''}: ${t.summary}`);
    lines.push(`    memoryMb=${t.memoryMb} ${fields.map((f) => `${f}=${t.config[f]}`).join(' ')}`);
  }
  return lines.join('\n');
}
