/**
 * NodeMetrics: a node's Prometheus metrics (`GET /metrics` on the admin port), with prom-client.
 *
 * Two kinds of data, two ways in:
 * - Events (requests, group commits, leader changes, proposals, snapshots) arrive through the
 *   NodeObserver callbacks, which the node calls on its request path and in its Ready loop.
 *   They only bump counters and histograms: no I/O, no allocation beyond a label lookup.
 *   Proposals and leader changes are counted per group in plain maps and turned into counters
 *   at scrape time, since the hot path knows the group id but not its store label.
 * - State (terms, indexes, counts, health, peer links) is read from the attached source
 *   (`DkvNode.groupStats()`, `health()`, `peerStates()`) when scraped, in each gauge's
 *   `collect()`. A scrape starts every metric's collect in the same event-loop turn, so the
 *   source is read once per scrape (memoised until the next turn). Each collect resets its
 *   label sets first: a group the node no longer hosts, or a peer that left, vanishes.
 *
 * Each NodeMetrics has its own Registry (never prom-client's global one), so several nodes in
 * one process (tests) do not mix. With `processMetrics` (the default) the registry also holds
 * prom-client's default metrics: process CPU and memory, heap, GC, and event-loop lag
 * (`nodejs_eventloop_lag_p99_seconds` and friends), under their standard names.
 *
 * Bounds: request label sets (op, store) come from what clients send, so at most
 * REQUEST_LABEL_SETS_MAX distinct pairs are kept; later ones are counted under
 * `op="other", store="other"`. Error codes are the catalogue's (and INTERNAL).
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { CommitOutcome, GroupStats, NodeObserver, RequestOutcome } from './observer.js';

/** NodeHealth is the part of `DkvNode.health()` that metrics read. */
export interface NodeHealth {
  readonly live: boolean;
  readonly ready: boolean;
  readonly leaderOf: number;
  readonly noLeader: readonly number[];
  readonly noQuorum: readonly number[];
  readonly peersUp: number;
  readonly peersTotal: number;
  readonly epoch: number;
}

/** MetricsSource is what NodeMetrics reads at scrape time; a DkvNode is one. */
export interface MetricsSource {
  readonly id: number;
  groupStats(): GroupStats[];
  health(): NodeHealth;
  /** Each peer link's state; optional (without it only the up/total counts are exported). */
  peerStates?(): { peer: number; up: boolean }[];
  /** Security and shedding counts since start; optional. */
  readonly securityStats?: {
    readonly tlsHandshakeFailures: number;
    readonly authFailures: number;
    readonly permissionDenied: number;
    readonly quotaExceeded: number;
  };
  readonly shedCount?: number;
}

/** NodeMetricsOptions configure a NodeMetrics. */
export interface NodeMetricsOptions {
  /** Include prom-client's default process metrics (CPU, memory, GC, event-loop lag); default true. */
  readonly processMetrics?: boolean;
}

/** REQUEST_LABEL_SETS_MAX bounds the distinct (op, store) label pairs of request metrics. */
export const REQUEST_LABEL_SETS_MAX = 512;
/** OTHER_LABEL is the op and store of requests beyond REQUEST_LABEL_SETS_MAX. */
export const OTHER_LABEL = 'other';

/** Latency buckets (seconds) for requests: 0.25 ms to 10 s. */
const REQUEST_BUCKETS_S = [
  0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
/** Latency buckets (seconds) for group commits and fsyncs: 50 µs to 2.5 s. */
const DISK_BUCKETS_S = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
];
/** Snapshot size buckets (bytes): 1 KiB to 4 GiB, by powers of 4. */
const SNAPSHOT_BYTES_BUCKETS = Array.from({ length: 12 }, (_, i) => 1024 * 4 ** i);
/** Snapshot duration buckets (seconds). */
const SNAPSHOT_SECONDS_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60];

const GROUP_LABELS = ['group', 'store'] as const;
type GroupLabel = (typeof GROUP_LABELS)[number];

/** NodeMetrics is a NodeObserver that keeps a node's metrics and renders them as Prometheus text. */
export class NodeMetrics implements NodeObserver {
  /** registry holds every metric of this node (and the process metrics, when on). */
  readonly registry: Registry;
  private source: MetricsSource | undefined;
  /** The source's state for the current scrape; cleared on the next event-loop turn. */
  private memo: { stats: GroupStats[]; health: NodeHealth | undefined } | undefined;
  /** Proposals appended per group (as its leader), since start. */
  private readonly proposals = new Map<number, number>();
  /** Leader changes seen per group, since start. */
  private readonly leaderChanges = new Map<number, number>();
  /** The last leader each group reported (0: none). */
  private readonly lastLeader = new Map<number, number>();
  /** The request label pairs in use (`op\0store`); at most REQUEST_LABEL_SETS_MAX. */
  /**
   * The labelled children of the request metrics, by `op\0store`: looked up once per label
   * set, not hashed from a labels object on every request. Bounded by REQUEST_LABEL_SETS_MAX.
   */
  private readonly requestLabels = new Map<
    string,
    { readonly count: Counter.Internal; readonly seconds: Histogram.Internal<'op' | 'store'> }
  >();

  private readonly requests: Counter<'op' | 'store'>;
  private readonly requestSeconds: Histogram<'op' | 'store'>;
  private readonly requestErrors: Counter<'op' | 'store' | 'code'>;
  private readonly commitSeconds: Histogram;
  private readonly commits: Counter;
  private readonly commitsSynced: Counter;
  private readonly commitEntries: Counter;
  private readonly fsyncSeconds: Histogram;
  private readonly snapshots: Counter<'kind'>;
  private readonly snapshotBytes: Histogram<'kind'>;
  private readonly snapshotSeconds: Histogram<'kind'>;

  constructor(opts: NodeMetricsOptions = {}) {
    const registry = new Registry();
    this.registry = registry;
    const registers = [registry];

    // ---- per group, read at scrape time
    const groupGauge = (name: string, help: string, value: (g: GroupStats) => number): void => {
      const gauge: Gauge<GroupLabel> = new Gauge({
        name,
        help,
        labelNames: GROUP_LABELS,
        registers,
        collect: () => {
          gauge.reset();
          for (const g of this.stats()) gauge.set({ group: String(g.id), store: g.store }, value(g));
        },
      });
    };
    groupGauge('dkv_group_term', 'Raft term of the group on this node.', (g) => g.term);
    groupGauge(
      'dkv_group_commit_index',
      'Raft commit index of the group on this node.',
      (g) => g.commitIndex,
    );
    groupGauge('dkv_group_applied_index', 'Last index applied to the state machine.', (g) => g.appliedIndex);
    groupGauge(
      'dkv_group_apply_lag_entries',
      'Entries committed but not applied yet (commit index - applied index).',
      (g) => Math.max(0, g.commitIndex - g.appliedIndex),
    );
    groupGauge('dkv_group_is_leader', '1 when this node leads the group, else 0.', (g) =>
      g.isLeader ? 1 : 0,
    );
    groupGauge(
      'dkv_group_leader',
      'Member id of the group leader as this node knows it (0: none).',
      (g) => g.leader,
    );
    groupGauge('dkv_group_revision', 'Key revision of the group state machine.', (g) => g.revision);
    groupGauge('dkv_group_pending_requests', 'Requests waiting on the group in this node.', (g) => g.pending);
    groupGauge('dkv_group_voters', 'Voters in the group configuration.', (g) => g.voters.length);
    groupGauge('dkv_group_learners', 'Learners in the group configuration.', (g) => g.learners.length);
    groupGauge('dkv_group_watches', 'Open watch subscriptions on this replica.', (g) => g.watches);
    groupGauge('dkv_group_leases', 'Live leases in the group.', (g) => g.leases);
    groupGauge('dkv_group_locks', 'Locks held in the group.', (g) => g.locks);
    groupGauge(
      'dkv_group_snapshot_bytes',
      'Size of the last stored snapshot (0: none).',
      (g) => g.snapshotBytes,
    );

    const groupCounter = (name: string, help: string, counts: Map<number, number>): void => {
      const counter: Counter<GroupLabel> = new Counter({
        name,
        help,
        labelNames: GROUP_LABELS,
        registers,
        collect: () => {
          counter.reset();
          const stats = this.stats();
          const hosted = new Set(stats.map((g) => g.id));
          for (const id of counts.keys()) if (!hosted.has(id)) counts.delete(id);
          for (const g of stats) counter.inc({ group: String(g.id), store: g.store }, counts.get(g.id) ?? 0);
        },
      });
    };
    groupCounter(
      'dkv_group_leader_changes_total',
      'Leader changes this node saw in the group (a new, known leader).',
      this.leaderChanges,
    );
    groupCounter(
      'dkv_group_proposals_total',
      'Proposals this node appended to the group log as its leader.',
      this.proposals,
    );

    // ---- the node, read at scrape time
    const nodeGauge = (
      name: string,
      help: string,
      value: (h: NodeHealth, src: MetricsSource) => number,
    ): void => {
      const gauge: Gauge = new Gauge({
        name,
        help,
        registers,
        collect: () => {
          gauge.reset();
          const h = this.health();
          if (h !== undefined && this.source !== undefined) gauge.set(value(h, this.source));
        },
      });
    };
    nodeGauge('dkv_node_live', '1 while the node serves.', (h) => (h.live ? 1 : 0));
    nodeGauge(
      'dkv_node_ready',
      '1 when every hosted group has a leader and a reachable quorum (GET /health is 200).',
      (h) => (h.ready ? 1 : 0),
    );
    nodeGauge('dkv_node_groups_led', 'Groups this node leads.', (h) => h.leaderOf);
    nodeGauge('dkv_node_groups_no_leader', 'Hosted groups with no known leader.', (h) => h.noLeader.length);
    nodeGauge(
      'dkv_node_groups_no_quorum',
      'Hosted groups without a reachable quorum.',
      (h) => h.noQuorum.length,
    );
    nodeGauge('dkv_node_metadata_epoch', 'Epoch of the cluster metadata this node applied.', (h) => h.epoch);
    nodeGauge('dkv_peers_up', 'Peer links up.', (h) => h.peersUp);
    nodeGauge('dkv_peers_total', 'Peers this node links to.', (h) => h.peersTotal);
    // Monotonic counts the node keeps itself, exported as counters read at scrape time.
    const nodeCount = (
      name: string,
      help: string,
      value: (src: MetricsSource) => number | undefined,
    ): void => {
      const counter: Counter = new Counter({
        name,
        help,
        registers,
        collect: () => {
          counter.reset();
          const v = this.source === undefined ? undefined : value(this.source);
          if (v !== undefined) counter.inc(v);
        },
      });
    };
    nodeCount(
      'dkv_tls_handshake_failures_total',
      'TLS handshakes refused (plaintext on a TLS port, unknown CA, no or foreign certificate).',
      (s) => s.securityStats?.tlsHandshakeFailures,
    );
    nodeCount('dkv_auth_failures_total', 'Failed authentications.', (s) => s.securityStats?.authFailures);
    nodeCount(
      'dkv_permission_denied_total',
      'Requests refused with PERMISSION_DENIED.',
      (s) => s.securityStats?.permissionDenied,
    );
    nodeCount(
      'dkv_quota_exceeded_total',
      'Requests refused with QUOTA_EXCEEDED.',
      (s) => s.securityStats?.quotaExceeded,
    );
    nodeCount(
      'dkv_shed_total',
      'Client commands shed at the door with OVERLOADED (waiting time, exactly-once window).',
      (s) => s.shedCount,
    );
    const info: Gauge<'node'> = new Gauge({
      name: 'dkv_node_info',
      help: 'Always 1; the node label is this node member id.',
      labelNames: ['node'],
      registers,
      collect: () => {
        info.reset();
        if (this.source !== undefined) info.set({ node: String(this.source.id) }, 1);
      },
    });
    const peerUp: Gauge<'peer'> = new Gauge({
      name: 'dkv_peer_up',
      help: '1 when the link to the peer is up, else 0.',
      labelNames: ['peer'],
      registers,
      collect: () => {
        peerUp.reset();
        for (const p of this.source?.peerStates?.() ?? []) peerUp.set({ peer: String(p.peer) }, p.up ? 1 : 0);
      },
    });

    // ---- events
    this.requests = new Counter({
      name: 'dkv_requests_total',
      help: 'Client requests answered, by op (the inner operation of cmd and read: put, get, lock.acquire, ...) and store.',
      labelNames: ['op', 'store'],
      registers,
    });
    this.requestSeconds = new Histogram({
      name: 'dkv_request_duration_seconds',
      help: 'Client request latency in the node, from arrival to answer, by op and store.',
      labelNames: ['op', 'store'],
      buckets: REQUEST_BUCKETS_S,
      registers,
    });
    this.requestErrors = new Counter({
      name: 'dkv_request_errors_total',
      help: 'Client requests answered with an error, by op, store and error code.',
      labelNames: ['op', 'store', 'code'],
      registers,
    });
    this.commitSeconds = new Histogram({
      name: 'dkv_commit_duration_seconds',
      help: 'Group commit latency: one round of every active group Ready in one batch, write and sync.',
      buckets: DISK_BUCKETS_S,
      registers,
    });
    this.commits = new Counter({ name: 'dkv_commits_total', help: 'Group commit rounds.', registers });
    this.commitsSynced = new Counter({
      name: 'dkv_commits_synced_total',
      help: 'Group commit rounds that synced to disk.',
      registers,
    });
    this.commitEntries = new Counter({
      name: 'dkv_commit_entries_total',
      help: 'Log entries persisted by group commits.',
      registers,
    });
    this.fsyncSeconds = new Histogram({
      name: 'dkv_fsync_duration_seconds',
      help: 'Time of the synced LevelDB batch write of a group commit (write and fsync).',
      buckets: DISK_BUCKETS_S,
      registers,
    });
    this.snapshots = new Counter({
      name: 'dkv_snapshots_total',
      help: 'Snapshots written locally (kind=created) or received from a leader (kind=installed).',
      labelNames: ['kind'],
      registers,
    });
    this.snapshotBytes = new Histogram({
      name: 'dkv_snapshot_size_bytes',
      help: 'Snapshot sizes, by kind (created, installed).',
      labelNames: ['kind'],
      buckets: SNAPSHOT_BYTES_BUCKETS,
      registers,
    });
    this.snapshotSeconds = new Histogram({
      name: 'dkv_snapshot_duration_seconds',
      help: 'Time to write a snapshot (created), or to install one when known (installed).',
      labelNames: ['kind'],
      buckets: SNAPSHOT_SECONDS_BUCKETS,
      registers,
    });

    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  }

  /** contentType is the HTTP content type of `text()` (Prometheus text format 0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** attach names the node whose state the gauges read at scrape time; returns this. */
  attach(source: MetricsSource): this {
    this.source = source;
    this.memo = undefined;
    return this;
  }

  /** text renders every metric in the Prometheus text format (a scrape). */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  // ---- NodeObserver

  /** request counts a finished client request. */
  request(r: RequestOutcome): void {
    let op = r.kind !== '' ? r.kind : r.op;
    let store = r.store;
    let key = `${op}\u0000${store}`;
    let child = this.requestLabels.get(key);
    if (child === undefined) {
      if (this.requestLabels.size >= REQUEST_LABEL_SETS_MAX) {
        op = OTHER_LABEL;
        store = OTHER_LABEL;
        key = `${op}\u0000${store}`;
        child = this.requestLabels.get(key);
      }
      if (child === undefined) {
        const labels = { op, store };
        child = { count: this.requests.labels(labels), seconds: this.requestSeconds.labels(labels) };
        this.requestLabels.set(key, child);
      }
    }
    child.count.inc();
    if (Number.isFinite(r.ms) && r.ms >= 0) child.seconds.observe(r.ms / 1000);
    if (r.code !== undefined) this.requestErrors.inc({ op, store, code: r.code.slice(0, 64) });
  }

  /** commit records one group-commit round. */
  commit(c: CommitOutcome): void {
    this.commits.inc();
    if (c.entries > 0) this.commitEntries.inc(c.entries);
    if (Number.isFinite(c.ms) && c.ms >= 0) this.commitSeconds.observe(c.ms / 1000);
    if (!c.synced) return;
    this.commitsSynced.inc();
    const syncMs = c.syncMs;
    if (syncMs !== undefined && Number.isFinite(syncMs) && syncMs >= 0)
      this.fsyncSeconds.observe(syncMs / 1000);
  }

  /** leaderChange counts a change to a new, known leader (as etcd's leader_changes_seen). */
  leaderChange(group: number, leader: number, _isLeader?: boolean): void {
    const last = this.lastLeader.get(group) ?? 0;
    this.lastLeader.set(group, leader);
    if (leader !== 0 && leader !== last)
      this.leaderChanges.set(group, (this.leaderChanges.get(group) ?? 0) + 1);
  }

  /** proposal counts a proposal appended to `group`'s log. */
  proposal(group: number): void {
    this.proposals.set(group, (this.proposals.get(group) ?? 0) + 1);
  }

  /** snapshot records a snapshot created or installed; an install's duration 0 means unknown. */
  snapshot(_group: number, kind: 'created' | 'installed', bytes: number, ms: number): void {
    this.snapshots.inc({ kind });
    if (Number.isFinite(bytes) && bytes >= 0) this.snapshotBytes.observe({ kind }, bytes);
    if (Number.isFinite(ms) && (ms > 0 || (kind === 'created' && ms === 0)))
      this.snapshotSeconds.observe({ kind }, ms / 1000);
  }

  // ---- scrape-time state

  /** stats is the source's groupStats for this scrape (read once per event-loop turn). */
  private stats(): GroupStats[] {
    return this.read().stats;
  }

  private health(): NodeHealth | undefined {
    return this.read().health;
  }

  private read(): { stats: GroupStats[]; health: NodeHealth | undefined } {
    if (this.memo !== undefined) return this.memo;
    const src = this.source;
    const memo =
      src === undefined
        ? { stats: [], health: undefined }
        : { stats: src.groupStats(), health: src.health() };
    this.memo = memo;
    setImmediate(() => {
      if (this.memo === memo) this.memo = undefined;
    });
    return memo;
  }
}
