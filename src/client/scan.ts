/**
 * Scans, queries, index definitions and transactions (issue 6).
 *
 * A store's keys are spread over its partition groups by slot, so a scan or a query asks every
 * group and merges the answers:
 * - Each group is read page by page (`read {op:'scan', after}` or `read {op:'query', after}`),
 *   and the pages are merged k-way in key order (or index order for a sorted query). At most
 *   one page per group is held at a time, so memory is O(groups x pageSize) whatever the size
 *   of the result, and a consumer that stops early (`break`, `limit`) costs no more pages.
 *   Choosing the next item is a linear pass over the groups' heads: O(groups) per item, which
 *   beats a heap for the few groups a store has.
 * - A prefix that contains a complete hash tag (`{user42}:`) can only match keys of one slot,
 *   so only that group is read.
 * - Each page is one read of its group (linearizable by default, or serializable). The scan as
 *   a whole is not one atomic snapshot: a key written while a scan runs may or may not appear,
 *   but no key appears twice and every key that exists throughout the scan appears once.
 * - Every item carries its `group` (GroupItem).
 *
 * Queries run the same index query on every group. Results are in key order by default; with
 * `sort: {index}` they are merged by the index value, which the client extracts from each
 * item as the index would (a field path of a structured value, or a label). That needs the
 * index's definition: sort.field / sort.label, or defineIndexes called on this client.
 *
 * Transactions stay within one group: the keys they name must share a group (use a hash tag),
 * which the client checks before sending (CROSS_GROUP).
 */
import { DkvError, ErrorCode } from '../errors.js';
import type { Consistency, ReadRequest } from '../transport/protocol.js';
import { hashTagOf } from '../transport/slots.js';
import type { CallOptions, ClientCore, Route } from './core.js';
import { userLeaseItem } from './leases.js';
import type { Item } from './types.js';

/** GroupItem is an Item with the partition group it was read from. */
export interface GroupItem extends Item {
  readonly group: number;
}

/** SCAN_PAGE_DEFAULT is the page size of a scan that names none; PAGE_MAX the largest a group serves. */
export const SCAN_PAGE_DEFAULT = 500;
const PAGE_MAX = 10_000;
/** QUERY_PAGE_DEFAULT is the page size of a query (per group, per request). */
export const QUERY_PAGE_DEFAULT = 1000;

/** ScanOptions select keys by prefix and/or a [start, end) range, in key order. */
export interface ScanOptions extends CallOptions {
  readonly prefix?: string;
  /** Inclusive lower bound. */
  readonly start?: string;
  /** Exclusive upper bound. */
  readonly end?: string;
  /** The most items in all (default: all). */
  readonly limit?: number;
  /** Items fetched per group per request (default 500, at most 10,000). */
  readonly pageSize?: number;
  /** Of each page's read (default linearizable). */
  readonly consistency?: Consistency;
}

function invalid(message: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, message);
}

function checkCount(v: unknown, what: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max)
    throw invalid(`${what} must be an integer from ${min} to ${max}, got ${String(v)}`);
  return v;
}

function checkConsistency(c: unknown): Consistency {
  if (c === undefined) return 'linearizable';
  if (c !== 'linearizable' && c !== 'serializable')
    throw invalid('consistency must be linearizable or serializable');
  return c;
}

function checkOptionalString(v: unknown, what: string): string | undefined {
  if (v !== undefined && typeof v !== 'string') throw invalid(`${what} must be a string`);
  return v;
}

function aborted(signal: AbortSignal): DkvError {
  const reason: unknown = signal.reason;
  return new DkvError(
    ErrorCode.Cancelled,
    `the call was aborted${reason instanceof Error ? `: ${reason.message}` : ''}`,
  );
}

/** callOpts keeps only the per-call options of a method's options. */
function callOpts(o: CallOptions): CallOptions {
  return {
    ...(o.timeoutMs !== undefined && { timeoutMs: o.timeoutMs }),
    ...(o.signal !== undefined && { signal: o.signal }),
  };
}

/**
 * groupsFor lists the groups a prefix can live in: the one group of the prefix's slot when it
 * holds a complete hash tag (every key with that prefix has the same tag), else every group.
 */
export async function groupsFor(
  core: ClientCore,
  prefix: string | undefined,
  opts: CallOptions = {},
): Promise<number[]> {
  if (prefix !== undefined && prefix.length > 0 && hashTagOf(prefix) !== prefix)
    return [await core.groupOfKey(prefix, opts)];
  return (await core.groups(opts)).map((g) => g.id).sort((a, b) => a - b);
}

/** GroupCursor is one group's place in a merge: its current page and how to get the next. */
interface GroupCursor<T> {
  readonly group: number;
  /** Items of the current page not yet handed out: page[pos..]. */
  page: T[];
  pos: number;
  /** More pages follow the current one. */
  more: boolean;
}

/**
 * mergePages is the k-way merge under scans and queries: it reads the first page of every
 * group at once, then hands out the smallest head by `before`, fetching a group's next page
 * only once its current one is used up. `fetch(group, remaining)` returns the group's next
 * page, of at most `remaining` items (what is left of the limit).
 */
async function* mergePages<T>(
  groups: readonly number[],
  fetch: (group: number, remaining: number) => Promise<{ items: T[]; more: boolean }>,
  before: (a: T, b: T) => boolean,
  limit: number,
): AsyncGenerator<T, void, undefined> {
  if (limit === 0) return;
  const cursors: GroupCursor<T>[] = await Promise.all(
    groups.map(async (group) => {
      const p = await fetch(group, limit);
      return { group, page: p.items, pos: 0, more: p.more && p.items.length > 0 };
    }),
  );
  let handed = 0;
  for (;;) {
    let best: GroupCursor<T> | undefined;
    for (let i = 0; i < cursors.length; i++) {
      const c = cursors[i]!;
      if (c.pos === c.page.length) {
        if (!c.more) continue;
        const p = await fetch(c.group, limit - handed);
        c.page = p.items;
        c.pos = 0;
        c.more = p.more && p.items.length > 0;
        if (c.page.length === 0) continue;
      }
      if (best === undefined || before(c.page[c.pos]!, best.page[best.pos]!)) best = c;
    }
    if (best === undefined) return;
    const item = best.page[best.pos]!;
    best.page[best.pos++] = undefined as unknown as T; // let the consumer's items go
    yield item;
    if (++handed >= limit) return;
  }
}

function checkScanPage(raw: unknown, group: number): { items: GroupItem[]; more: boolean } {
  const p = raw as { items?: unknown; more?: unknown } | null;
  if (typeof p !== 'object' || p === null || !Array.isArray(p.items))
    throw new DkvError(ErrorCode.Unavailable, `group ${group} answered a scan with a malformed page`);
  return {
    items: p.items.map((it) => userLeaseItem({ ...(it as Item), group }, group)),
    more: p.more === true,
  };
}

/**
 * scanItems streams the matching items of every group of the store, merged in key order,
 * holding at most one page per group. It stops after `limit` items, when the consumer breaks
 * out, or when `signal` aborts (the next step throws CANCELLED).
 */
export function scanItems(core: ClientCore, opts: ScanOptions = {}): AsyncIterable<GroupItem> {
  const prefix = checkOptionalString(opts.prefix, 'prefix');
  const start = checkOptionalString(opts.start, 'start');
  const end = checkOptionalString(opts.end, 'end');
  const limit = checkCount(opts.limit, 'limit', 0, Number.MAX_SAFE_INTEGER) ?? Number.POSITIVE_INFINITY;
  const pageSize = checkCount(opts.pageSize, 'pageSize', 1, PAGE_MAX) ?? SCAN_PAGE_DEFAULT;
  const consistency = checkConsistency(opts.consistency);
  const call = callOpts(opts);
  const signal = opts.signal;
  return {
    async *[Symbol.asyncIterator]() {
      if (signal?.aborted) throw aborted(signal);
      const after = new Map<number, string>();
      const fetch = async (
        group: number,
        remaining: number,
      ): Promise<{ items: GroupItem[]; more: boolean }> => {
        if (signal?.aborted) throw aborted(signal);
        const a = after.get(group);
        const read: ReadRequest = {
          op: 'scan',
          ...(prefix !== undefined && { prefix }),
          ...(start !== undefined && { start }),
          ...(end !== undefined && { end }),
          ...(a !== undefined && { after: a }),
          limit: Math.max(1, Math.min(pageSize, remaining)),
        };
        const page = checkScanPage(await core.read({ group }, read, consistency, call), group);
        const last = page.items[page.items.length - 1];
        if (last !== undefined) after.set(group, last.key);
        return page;
      };
      const groups = await groupsFor(core, prefix, call);
      for await (const item of mergePages(groups, fetch, (a, b) => a.key < b.key, limit)) {
        if (signal?.aborted) throw aborted(signal);
        yield item;
      }
    },
  };
}

/** countKeys counts the live keys matching a prefix and/or range, summed over the groups. */
export async function countKeys(
  core: ClientCore,
  opts: { prefix?: string; start?: string; end?: string; consistency?: Consistency } & CallOptions = {},
): Promise<number> {
  const prefix = checkOptionalString(opts.prefix, 'prefix');
  const start = checkOptionalString(opts.start, 'start');
  const end = checkOptionalString(opts.end, 'end');
  const consistency = checkConsistency(opts.consistency);
  const call = callOpts(opts);
  const read: ReadRequest = {
    op: 'count',
    ...(prefix !== undefined && { prefix }),
    ...(start !== undefined && { start }),
    ...(end !== undefined && { end }),
  };
  const groups = await groupsFor(core, prefix, call);
  const counts = await Promise.all(groups.map((group) => core.read({ group }, read, consistency, call)));
  return counts.reduce<number>((s, n) => s + (typeof n === 'number' ? n : 0), 0);
}

// ---------------------------------------------------------------- indexes

/** IndexDef declares one index (as src/engines/index-manager.ts): exactly one of field and label. */
export interface IndexDef {
  readonly name: string;
  readonly kind: 'eq' | 'range';
  /** A dot path into a structured value, e.g. "user.age". */
  readonly field?: string;
  /** A label name sent with put. */
  readonly label?: string;
}

/** Index definitions this client sent with defineIndexes, per core: for sorting merged queries. */
const knownIndexes = new WeakMap<ClientCore, ReadonlyMap<string, IndexDef>>();

/**
 * defineIndexes declares the store's indexes: it sends one `configure` command to every group
 * (each group indexes its own keys; existing keys are indexed in the same step). The set
 * replaces the previous one. The definitions are also remembered by this client, so queries
 * sorted by one of these indexes can be merged across groups. Not atomic across groups: if one
 * group fails, the call fails and the others may already have the new set (calling it again
 * is harmless).
 */
export async function defineIndexes(
  core: ClientCore,
  defs: readonly IndexDef[],
  opts: CallOptions = {},
): Promise<void> {
  if (!Array.isArray(defs)) throw invalid('indexes must be an array of { name, kind, field | label }');
  const call = callOpts(opts);
  const groups = (await core.groups(call)).map((g) => g.id);
  const indexes = defs.map((d) => ({
    name: d.name,
    kind: d.kind,
    ...(d.field !== undefined && { field: d.field }),
    ...(d.label !== undefined && { label: d.label }),
  }));
  await Promise.all(groups.map((group) => core.mutate({ group }, { op: 'configure', indexes }, call)));
  knownIndexes.set(core, new Map(indexes.map((d) => [d.name, d])));
}

// ---------------------------------------------------------------- queries

/** IndexValue is what an index holds: null, a boolean, a finite number or a string. */
export type IndexValue = null | boolean | number | string;

/**
 * QuerySort orders a query's results by key (default ascending), or by a range index's value
 * then key. To merge groups by index value the client needs the index's source: `field` or
 * `label` here, or the index defined with defineIndexes on this client.
 */
export type QuerySort =
  | { readonly key: 'asc' | 'desc' }
  | {
      readonly index: string;
      readonly order?: 'asc' | 'desc';
      readonly field?: string;
      readonly label?: string;
    };

/** QueryOptions shape a query's result. */
export interface QueryOptions extends CallOptions {
  /** The most items in all (runQuery: default all). */
  readonly limit?: number;
  readonly sort?: QuerySort;
  /** Keys fetched per group per request (default 1000, at most 10,000). */
  readonly pageSize?: number;
  readonly consistency?: Consistency;
}

/** typeRank and compareIndexValues follow src/engines/collate.ts: null < false < true < numbers < strings. */
function typeRank(v: IndexValue | undefined): number {
  if (v === undefined) return -1;
  if (v === null) return 0;
  return typeof v === 'boolean' ? 1 : typeof v === 'number' ? 2 : 3;
}

/** compareIndexValues orders index values as the store does (undefined first: not indexed). */
export function compareIndexValues(a: IndexValue | undefined, b: IndexValue | undefined): number {
  if (a === b) return 0;
  const ta = typeRank(a);
  const tb = typeRank(b);
  if (ta !== tb) return ta - tb;
  return (a as number | string | boolean) < (b as number | string | boolean) ? -1 : 1;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || ArrayBuffer.isView(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function toIndexValue(x: unknown): IndexValue | undefined {
  switch (typeof x) {
    case 'string':
    case 'boolean':
      return x;
    case 'number':
      return Number.isFinite(x) ? (x === 0 ? 0 : x) : undefined;
    case 'object':
      return x === null ? null : undefined;
    default:
      return undefined;
  }
}

/** indexValueOf extracts an item's value in an index the way the store's index manager does. */
export function indexValueOf(item: Item, source: { field?: string; label?: string }): IndexValue | undefined {
  if (source.label !== undefined) {
    const labels = item.labels;
    if (!isPlainObject(labels) || !Object.hasOwn(labels, source.label)) return undefined;
    return toIndexValue(labels[source.label]);
  }
  let cur: unknown = item.value;
  for (const seg of (source.field ?? '').split('.')) {
    if (!isPlainObject(cur) || !Object.hasOwn(cur, seg)) return undefined;
    cur = cur[seg];
  }
  return toIndexValue(cur);
}

/** QueryPlanEntry is what one group answered a query page with. */
interface QueryPage {
  items: GroupItem[];
  next?: unknown;
  count?: number;
}

function checkQueryPage(raw: unknown, group: number): QueryPage {
  const p = raw as { items?: unknown; next?: unknown; count?: unknown } | null;
  if (typeof p !== 'object' || p === null || !Array.isArray(p.items))
    throw new DkvError(ErrorCode.Unavailable, `group ${group} answered a query with a malformed page`);
  return {
    items: p.items.map((it) => userLeaseItem({ ...(it as Item), group }, group)),
    ...(p.next !== undefined && p.next !== null && { next: p.next }),
    ...(typeof p.count === 'number' && { count: p.count }),
  };
}

/** comparatorOf turns a sort into the merge's "a comes before b". */
function comparatorOf(
  core: ClientCore,
  sort: QuerySort | undefined,
): (a: GroupItem, b: GroupItem) => boolean {
  if (sort === undefined) return (a, b) => a.key < b.key;
  if (!isPlainObject(sort)) throw invalid('sort must be { key: asc|desc } or { index, order? }');
  if ('key' in sort) {
    if (sort.key !== 'asc' && sort.key !== 'desc') throw invalid('sort.key must be asc or desc');
    return sort.key === 'asc' ? (a, b) => a.key < b.key : (a, b) => a.key > b.key;
  }
  if (typeof sort.index !== 'string') throw invalid('sort.index must be an index name');
  const desc = sort.order === 'desc';
  if (sort.order !== undefined && sort.order !== 'asc' && !desc)
    throw invalid('sort.order must be asc or desc');
  const def = knownIndexes.get(core)?.get(sort.index);
  const source =
    sort.field !== undefined
      ? { field: sort.field }
      : sort.label !== undefined
        ? { label: sort.label }
        : def !== undefined
          ? def.field !== undefined
            ? { field: def.field }
            : { label: def.label! }
          : undefined;
  if (source === undefined)
    throw invalid(
      `to merge groups sorted by index ${sort.index}, the client needs its source: pass sort.field or sort.label, or define the indexes with defineIndexes on this client`,
    );
  // Items carry their index value; extracting it once per comparison is cheap next to a read.
  return (a, b) => {
    let c = compareIndexValues(indexValueOf(a, source), indexValueOf(b, source));
    if (c === 0) c = a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
    return desc ? c > 0 : c < 0;
  };
}

/** wireSort is the sort sent to the groups (without the client-side source fields). */
function wireSort(sort: QuerySort | undefined): unknown {
  if (sort === undefined) return undefined;
  if ('key' in sort) return { key: sort.key };
  return { index: sort.index, ...(sort.order !== undefined && { order: sort.order }) };
}

/**
 * streamQuery runs an index query on every group, page by page, and streams the matches
 * merged in the requested order (key order by default), holding at most one page per group.
 */
export function streamQuery(
  core: ClientCore,
  query: unknown,
  opts: QueryOptions = {},
): AsyncIterable<GroupItem> {
  if (!isPlainObject(query)) throw invalid('a query must be an object');
  const limit = checkCount(opts.limit, 'limit', 0, Number.MAX_SAFE_INTEGER) ?? Number.POSITIVE_INFINITY;
  const pageSize = checkCount(opts.pageSize, 'pageSize', 1, PAGE_MAX) ?? QUERY_PAGE_DEFAULT;
  const consistency = checkConsistency(opts.consistency);
  const before = comparatorOf(core, opts.sort);
  const sort = wireSort(opts.sort);
  const call = callOpts(opts);
  const signal = opts.signal;
  const prefix = typeof query.prefix === 'string' ? query.prefix : undefined;
  return {
    async *[Symbol.asyncIterator]() {
      if (signal?.aborted) throw aborted(signal);
      const next = new Map<number, unknown>();
      const fetch = async (
        group: number,
        remaining: number,
      ): Promise<{ items: GroupItem[]; more: boolean }> => {
        if (signal?.aborted) throw aborted(signal);
        const after = next.get(group);
        const options = {
          limit: Math.max(1, Math.min(pageSize, remaining)),
          ...(sort !== undefined && { sort }),
          ...(after !== undefined && { after }),
        };
        const raw = await core.read({ group }, { op: 'query', query, options }, consistency, call);
        const page = checkQueryPage(raw, group);
        if (page.next !== undefined) next.set(group, page.next);
        return { items: page.items, more: page.next !== undefined };
      };
      const groups = await groupsFor(core, prefix, call);
      for await (const item of mergePages(groups, fetch, before, limit)) {
        if (signal?.aborted) throw aborted(signal);
        yield item;
      }
    },
  };
}

/**
 * runQuery runs an index query on every group and returns the merged matches (key order by
 * default, or `sort`), at most `limit` of them (default: all; use streamQuery for big results).
 */
export async function runQuery(
  core: ClientCore,
  query: unknown,
  opts: QueryOptions = {},
): Promise<GroupItem[]> {
  const out: GroupItem[] = [];
  for await (const item of streamQuery(core, query, opts)) out.push(item);
  return out;
}

/** countQuery counts a query's matches over every group (each group counts with its indexes). */
export async function countQuery(
  core: ClientCore,
  query: unknown,
  opts: CallOptions & { consistency?: Consistency } = {},
): Promise<number> {
  if (!isPlainObject(query)) throw invalid('a query must be an object');
  const consistency = checkConsistency(opts.consistency);
  const call = callOpts(opts);
  const prefix = typeof query.prefix === 'string' ? query.prefix : undefined;
  const groups = await groupsFor(core, prefix, call);
  const pages = await Promise.all(
    groups.map(async (group) =>
      checkQueryPage(
        await core.read({ group }, { op: 'query', query, options: { countOnly: true } }, consistency, call),
        group,
      ),
    ),
  );
  return pages.reduce((s, p) => s + (p.count ?? 0), 0);
}

// ---------------------------------------------------------------- transactions

/** TxnCompare is one condition of a transaction (see src/engines/segment-store.ts, Compare). */
export interface TxnCompare {
  readonly key: string;
  readonly target: 'version' | 'createRevision' | 'modRevision' | 'value' | 'exists';
  readonly op: '=' | '!=' | '<' | '>';
  readonly value: unknown;
}

/** TxnOp is one operation of a branch: a put (with its options), a delete, or a get. */
export type TxnOp =
  | {
      readonly op: 'put';
      readonly key: string;
      readonly value: unknown;
      readonly ttlMs?: number;
      readonly lease?: number;
      readonly ifVersion?: number;
      readonly ifAbsent?: boolean;
      readonly labels?: Readonly<Record<string, string | number>>;
    }
  | { readonly op: 'delete'; readonly key: string; readonly ifVersion?: number; readonly lease?: number }
  | { readonly op: 'get'; readonly key: string };

/** TxnSpec is a transaction within one group: compares, then the success or failure branch. */
export interface TxnSpec {
  readonly compare: readonly TxnCompare[];
  readonly success: readonly TxnOp[];
  readonly failure?: readonly TxnOp[];
  /** Only while this lock token is current. */
  readonly fence?: { readonly lock: string; readonly token: number };
}

/**
 * TxnResult says which branch ran and what each of its operations answered (a put: the new
 * Item; a delete: whether the key existed; a get: the Item or null).
 */
export interface TxnResult {
  readonly succeeded: boolean;
  readonly results: readonly unknown[];
}

/** keysOfTxn lists the keys a transaction names, in order. */
function keysOfTxn(spec: TxnSpec): string[] {
  const keys: string[] = [];
  for (const part of [spec.compare, spec.success, spec.failure ?? []]) {
    if (!Array.isArray(part)) throw invalid('txn: compare, success and failure must be arrays');
    for (const x of part as readonly { key?: unknown }[]) {
      if (typeof x !== 'object' || x === null || typeof x.key !== 'string' || x.key.length === 0)
        throw invalid('txn: every compare and operation names a key (a non-empty string)');
      keys.push(x.key);
    }
  }
  return keys;
}

/**
 * runTxn runs a transaction in the group of its keys, exactly once. Keys in different groups
 * fail with CROSS_GROUP before anything is sent (a {hash tag} keeps keys in one group).
 */
export async function runTxn(core: ClientCore, spec: TxnSpec, opts: CallOptions = {}): Promise<TxnResult> {
  if (typeof spec !== 'object' || spec === null) throw invalid('txn: the spec must be an object');
  const keys = keysOfTxn(spec);
  const first = keys[0];
  if (first === undefined) throw invalid('txn: a transaction names at least one key');
  const call = callOpts(opts);
  const home = await core.groupOfKey(first, call);
  for (const k of keys) {
    const g = await core.groupOfKey(k, call);
    if (g !== home)
      throw new DkvError(
        ErrorCode.CrossGroup,
        `txn: key ${JSON.stringify(k)} is in group ${g}, key ${JSON.stringify(first)} in group ${home}; use a {hash tag} to keep keys together`,
      );
  }
  const cmd: Record<string, unknown> = {
    op: 'txn',
    compare: spec.compare,
    success: spec.success,
    failure: spec.failure ?? [],
  };
  if (spec.fence !== undefined) cmd.fence = { lock: spec.fence.lock, token: spec.fence.token };
  const route: Route = { key: first };
  const r = (await core.mutate(route, cmd, call)) as { succeeded?: unknown; results?: unknown } | null;
  if (typeof r !== 'object' || r === null || typeof r.succeeded !== 'boolean' || !Array.isArray(r.results))
    throw new DkvError(ErrorCode.Unavailable, 'txn: the server answered with a malformed result');
  return { succeeded: r.succeeded, results: r.results };
}
