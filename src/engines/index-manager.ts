/**
 * The index manager: a store's secondary indexes and the query planner over them.
 *
 * A store declares indexes (IndexDef), each on a field of structured values ("user.age", a
 * dot path through plain objects) or on a label sent with a put. The state machine calls
 * `update(key, prev, next)` in the same apply step as every data change, so a query never
 * sees a half-applied write. Values are ordered by the collation in collate.ts (null < false
 * < true < numbers < strings). A key whose field is missing, or holds an array, an object,
 * bytes, NaN or an infinity, is simply not in that index.
 *
 * Storage, per index:
 * - `tree`: a B+ tree (sorted-btree) of Entry(value, key), ordered by (value, key). An eq
 *   lookup is the run of entries with one value, already in key order; a range is a run of
 *   entries; sorting by the index is the tree order. O(log n + results).
 * - `byKey`: key -> its value, the reverse map. It makes updates independent of `prev` and
 *   lets the planner check any candidate against any index in O(1).
 * - Counting: every inner node of the tree keeps its subtree size, so the number of entries
 *   in any range is two O(log n) rank probes (`rankOf`). The planner therefore knows the
 *   exact size of every eq and range branch before it touches a single entry.
 * - Both kinds use this structure; the kind is the contract: an eq index answers eq only,
 *   a range index also answers ranges and can order results.
 *
 * Query planning (never a scan of the whole store while an index applies):
 * - Every leaf is a source: eq and range read their index, prefix reads the primary store
 *   (KeySource.keysWithPrefix). `and` is driven by its smallest branch and checks each
 *   candidate against the others through the reverse maps (prefix by `startsWith`); `or` is
 *   the deduplicated union of its branches, each driven the same way.
 * - Sizes: index branches are counted exactly by rank; a prefix branch is counted by walking
 *   it with a cap, and caps grow 64, 512, 4096, ... until a driver is found, so estimation
 *   costs O(branches x driver size).
 * - Order: results are in key order unless `sort` names a range index, in which case they
 *   are ordered by (index value, key) and keys without a value in that index are excluded
 *   (as if the query had an implicit "has a value in that index" branch). When a branch can
 *   yield candidates already in the requested order (an eq leaf or prefix for key order, a
 *   leaf on the sort index for index order), the query may stream from it, filter, and stop
 *   after `limit` matches, with no sort: when it is within a budget (2x the driver's size +
 *   64, PlannerTuning), or when it is an index leaf whose first limit+1 matches should fall
 *   within that budget; such a stream gives up at the budget and the query collects
 *   instead, so it costs at most the budget more than collecting. Collecting visits the
 *   driver's candidates, keeps the matches and sorts them: O(d + m log m).
 * - Continuation: `next` names the last key returned (and its sort value); passed back as
 *   `after` the next page starts strictly after it in the same order, so paging an
 *   unchanged store yields every match exactly once.
 * - `plan` says what ran, and `examined=N` counts the index entries and store keys touched
 *   (rank probes are not counted; they cost O(log n) each). A query that would touch more
 *   than PlannerTuning.examinedMax (default 1M) fails with TOO_LARGE instead of stalling
 *   the event loop. `countOnly` of a lone eq or range leaf is two rank probes.
 *
 * Determinism: every output is a function of the data and the query alone. Maps are used
 * only for lookups, never iterated into an output, and snapshot parts follow (index, value,
 * key) order.
 */

import type * as BTreeTypes from 'sorted-btree';
import BTreeModule from 'sorted-btree';
import { DkvError, ErrorCode } from '../errors.js';
import { compareIndexValues, describeIndexValue, type IndexValue, toIndexValue } from './collate.js';
import type { EngineSnapshot, Item } from './types.js';

export type { IndexValue } from './collate.js';

type BTreeClass = typeof BTreeModule.default;
type BTree<K, V> = BTreeTypes.default<K, V>;
/** BTree is the sorted-btree class, whichever way the CommonJS module was loaded. */
const BTree: BTreeClass =
  (BTreeModule as unknown as { default?: BTreeClass }).default ?? (BTreeModule as unknown as BTreeClass);

/** INDEX_LIMITS bounds every definition, query and snapshot part the index manager accepts. */
export const INDEX_LIMITS = {
  /** Indexes per store. */
  indexesMax: 64,
  /** Characters in an index name. */
  nameCharsMax: 128,
  /** Characters in a field path or label name. */
  sourceCharsMax: 256,
  /** Segments in a field path. */
  fieldSegmentsMax: 16,
  /** Nesting of and/or (a bare leaf has depth 1). */
  queryDepthMax: 8,
  /** Leaves (eq, range, prefix) in one query; so also branches of one and/or. */
  queryLeavesMax: 64,
  /** Characters in a string value, prefix or continuation key inside a query. */
  queryStringCharsMax: 65_536,
  /** Keys returned per page when the query names no limit. */
  limitDefault: 1000,
  /** The largest limit a query may ask for. */
  limitMax: 10_000,
  /** Entries per snapshot part written. */
  snapshotPartEntries: 1000,
  /** Entries per snapshot part accepted on restore. */
  snapshotPartEntriesMax: 4096,
} as const;

/** IndexKind: `eq` answers equality; `range` also answers ranges and can order results. */
export type IndexKind = 'eq' | 'range';

/** IndexDef declares one index: its name, kind, and exactly one source (a field or a label). */
export interface IndexDef {
  readonly name: string;
  readonly kind: IndexKind;
  /** A dot path into a structured value, e.g. "user.age" (through plain objects only). */
  readonly field?: string;
  /** A label name sent with put. */
  readonly label?: string;
}

/** EqQuery matches keys whose value in `index` equals `eq` (by the collation). */
export interface EqQuery {
  readonly index: string;
  readonly eq: IndexValue;
}

/**
 * RangeQuery matches keys whose value in a range index lies within the given bounds (at most
 * one lower and one upper). With no bound it matches every key that has a value there.
 */
export interface RangeQuery {
  readonly index: string;
  readonly gte?: IndexValue;
  readonly gt?: IndexValue;
  readonly lt?: IndexValue;
  readonly lte?: IndexValue;
}

/** PrefixQuery matches keys that start with `prefix`. */
export interface PrefixQuery {
  readonly prefix: string;
}

/** AndQuery matches keys that every branch matches. */
export interface AndQuery {
  readonly and: readonly Query[];
}

/** OrQuery matches keys that some branch matches. */
export interface OrQuery {
  readonly or: readonly Query[];
}

/** Query is a tree of eq, range and prefix leaves joined by and/or. */
export type Query = EqQuery | RangeQuery | PrefixQuery | AndQuery | OrQuery;

/**
 * QuerySort orders results by a range index's value (then key), or by key. Sorting by an
 * index leaves out keys that have no value in it.
 */
export type QuerySort =
  | { readonly index: string; readonly order?: 'asc' | 'desc' }
  | { readonly key: 'asc' | 'desc' };

/**
 * Continuation is where a page stopped: the last key returned and, when sorting by an index,
 * its value there. It is a plain value; clients pass it back unchanged as `after`.
 */
export interface Continuation {
  readonly k: string;
  readonly v?: IndexValue;
}

/** QueryOptions shape the result: order, page size, where to resume, or only a count. */
export interface QueryOptions {
  /** Keys per page, 1..INDEX_LIMITS.limitMax; INDEX_LIMITS.limitDefault when absent. */
  readonly limit?: number;
  /** Key ascending when absent. */
  readonly sort?: QuerySort;
  /** Resume strictly after this point (a `next` from the previous page, same query and sort). */
  readonly after?: Continuation;
  /** Return only the number of matches (after `after`, ignoring `limit`). */
  readonly countOnly?: boolean;
}

/** QueryResult is one page of matching keys, or a count, plus the plan that produced it. */
export interface QueryResult {
  readonly keys: string[];
  /** Present with countOnly. */
  readonly count?: number;
  /** Present when more matches follow this page. */
  readonly next?: Continuation;
  /** What the planner did, e.g. "stream eq(color) order=key asc examined=12". */
  readonly plan: string;
}

/** KeySource is how the index manager reads the primary store for prefix queries. */
export interface KeySource {
  /** The live keys starting with `prefix`, ascending, strictly after `after` when given. */
  keysWithPrefix(prefix: string, after?: string): Iterable<string>;
  /** has tells whether a key is live. Unused today: indexes hold only live keys. */
  has(key: string): boolean;
}

/**
 * TREE_NODE_SIZE is the B+ tree's node capacity: wider than sorted-btree's default of 32,
 * which makes leaves denser and range walks hop between fewer leaves (measured: 1.5x faster
 * sorted range pages at 1M keys, equal update rate).
 */
const TREE_NODE_SIZE = 128;

/** Entry is one (value, key) pair of an index. A null key is a search bound above every key. */
class Entry {
  constructor(
    readonly v: IndexValue,
    readonly k: string | null,
  ) {}
}

/** compareEntries orders entries by (value, key); a null key sorts after every key. */
function compareEntries(a: Entry, b: Entry): number {
  const c = compareIndexValues(a.v, b.v);
  if (c !== 0) return c;
  const ak = a.k;
  const bk = b.k;
  if (ak === bk) return 0;
  if (ak === null) return 1;
  if (bk === null) return -1;
  return ak < bk ? -1 : 1;
}

/** RawNode is the shape of sorted-btree's nodes, read only by `rankOf`. */
interface RawNode {
  readonly keys: Entry[];
  readonly children?: RawNode[];
  size(): number;
}

/** lowerBound is the first position in `keys` that is >= `key`. */
function lowerBound(keys: readonly Entry[], key: Entry): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compareEntries(keys[mid]!, key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * rankOf is the number of entries below `key`, in O(B log_B n): each inner node of
 * sorted-btree keeps its children's maximum keys and its subtree size. This reads the
 * library's internal node layout, so RANK_WORKS checks it once at load, and counting falls
 * back to walking entries if a future version changes it.
 */
function rankOf(tree: BTree<Entry, undefined>, key: Entry): number {
  let node = (tree as unknown as { _root: RawNode })._root;
  let rank = 0;
  for (let children = node.children; children !== undefined; children = node.children) {
    const i = lowerBound(node.keys, key);
    if (i >= children.length) return rank + node.size();
    for (let j = 0; j < i; j++) rank += children[j]!.size();
    node = children[i]!;
  }
  return rank + lowerBound(node.keys, key);
}

/** RANK_WORKS tells whether `rankOf` agrees with a walk on a tree built and thinned here. */
const RANK_WORKS: boolean = (() => {
  try {
    const tree = new BTree<Entry, undefined>(undefined, compareEntries, TREE_NODE_SIZE);
    for (let i = 0; i < 600; i++) tree.set(new Entry(i % 7, `k${(i * 7919) % 1000}`), undefined);
    for (let i = 0; i < 600; i += 3) tree.delete(new Entry(i % 7, `k${(i * 7919) % 1000}`));
    const all = tree.keysArray();
    if (all.length < 100) return false;
    for (let i = 0; i < all.length; i += 13) if (rankOf(tree, all[i]!) !== i) return false;
    return rankOf(tree, new Entry('z', null)) === all.length && rankOf(tree, new Entry(null, '')) === 0;
  } catch {
    return false;
  }
})();

/** Bound is one side of a range: a value and whether it is included. */
interface Bound {
  readonly v: IndexValue;
  readonly incl: boolean;
}

/** lowEntry is the smallest entry inside a lower bound (undefined: the start of the tree). */
function lowEntry(lo: Bound | undefined): Entry | undefined {
  return lo === undefined ? undefined : new Entry(lo.v, lo.incl ? '' : null);
}

/** highEntry is the smallest entry above an upper bound (undefined: past the end). */
function highEntry(hi: Bound | undefined): Entry | undefined {
  return hi === undefined ? undefined : new Entry(hi.v, hi.incl ? null : '');
}

/** inBounds tells whether a value lies within optional lower and upper bounds. */
function inBounds(v: IndexValue, lo: Bound | undefined, hi: Bound | undefined): boolean {
  if (lo !== undefined) {
    const c = compareIndexValues(v, lo.v);
    if (c < 0 || (c === 0 && !lo.incl)) return false;
  }
  if (hi !== undefined) {
    const c = compareIndexValues(v, hi.v);
    if (c > 0 || (c === 0 && !hi.incl)) return false;
  }
  return true;
}

/** isPlainObject accepts objects made by literals, JSON or msgpack: not arrays, bytes, maps. */
function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null) return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

function invalid(message: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, message);
}

function corrupted(message: string): DkvError {
  return new DkvError(ErrorCode.Corrupted, `index snapshot: ${message}`);
}

/** IndexState is one index: its definition, its (value, key) tree and its reverse map. */
class IndexState {
  readonly def: IndexDef;
  /** The field path's segments, when the index is on a field. */
  private readonly path: readonly string[] | undefined;
  /** Invariant: `tree` holds exactly the entries of `byKey`, one per indexed key. */
  tree: BTree<Entry, undefined> = new BTree<Entry, undefined>(undefined, compareEntries, TREE_NODE_SIZE);
  readonly byKey = new Map<string, IndexValue>();

  constructor(def: IndexDef) {
    this.def = def;
    this.path = def.field?.split('.');
  }

  /** extract is the item's value in this index, or undefined if the item is not indexed. */
  extract(item: Item | undefined): IndexValue | undefined {
    if (item === undefined) return undefined;
    const path = this.path;
    if (path === undefined) {
      const labels = item.labels;
      const label = this.def.label!;
      if (labels === undefined || !isPlainObject(labels) || !Object.hasOwn(labels, label)) return undefined;
      return toIndexValue(labels[label]);
    }
    let cur: unknown = item.value;
    for (const seg of path) {
      if (!isPlainObject(cur) || !Object.hasOwn(cur, seg)) return undefined;
      cur = cur[seg];
    }
    return toIndexValue(cur);
  }

  /** set makes `key`'s entry hold `v` (undefined: not indexed). */
  set(key: string, v: IndexValue | undefined): void {
    const old = this.byKey.get(key);
    if (old !== undefined) {
      if (old === v) return; // collation-equal IndexValues are ===
      this.tree.delete(new Entry(old, key));
      this.byKey.delete(key);
    }
    if (v === undefined) return;
    this.tree.set(new Entry(v, key), undefined);
    this.byKey.set(key, v);
  }
}

/** Memo caches a node's size estimate within one query: exact below `est`, or at least `atLeast`. */
interface Memo {
  /** The exact estimate, or -1 while unknown. */
  est: number;
  /** A proven lower bound on the estimate. */
  atLeast: number;
}

/** IdxNode is an eq or range leaf (or the implicit "has a value" branch of an index sort). */
interface IdxNode extends Memo {
  readonly t: 'idx';
  readonly ix: IndexState;
  readonly what: 'eq' | 'range' | 'has';
  readonly lo: Bound | undefined;
  readonly hi: Bound | undefined;
  /** The one value the leaf admits (eq, or a range with equal inclusive bounds). */
  readonly single: boolean;
}

interface PrefixNode extends Memo {
  readonly t: 'prefix';
  readonly p: string;
}

interface AndNode extends Memo {
  readonly t: 'and';
  readonly c: readonly Node[];
  /** The branch that drives the and (smallest estimate), once estimated; -1 before. */
  driver: number;
}

interface OrNode extends Memo {
  readonly t: 'or';
  readonly c: readonly Node[];
}

type Node = IdxNode | PrefixNode | AndNode | OrNode;

/**
 * matches tells whether an existing key satisfies a compiled query node. A candidate read
 * from index `from` comes with its entry there, so conditions on that index need no lookup.
 */
function matches(node: Node, key: string, from: IndexState | undefined, entry: Entry | undefined): boolean {
  switch (node.t) {
    case 'idx': {
      const v = node.ix === from ? entry!.v : node.ix.byKey.get(key);
      return v !== undefined && inBounds(v, node.lo, node.hi);
    }
    case 'prefix':
      return key.startsWith(node.p);
    case 'and':
      for (const c of node.c) if (!matches(c, key, from, entry)) return false;
      return true;
    case 'or':
      for (const c of node.c) if (matches(c, key, from, entry)) return true;
      return false;
  }
}

/** Visit receives a candidate key and, when it was read from an index, that index and entry. */
type Visit<R = void> = (key: string, from: IndexState | undefined, entry: Entry | undefined) => R;

/** Order is how results are sorted: by key, or by a range index then key; ascending or not. */
interface Order {
  readonly ix: IndexState | undefined;
  readonly desc: boolean;
}

function describeOrder(order: Order): string {
  return `${order.ix === undefined ? 'key' : order.ix.def.name} ${order.desc ? 'desc' : 'asc'}`;
}

/** QueryRun is one query's execution: the store it reads and the work it has done. */
class QueryRun {
  /** Index entries and store keys touched. */
  examined = 0;

  constructor(
    private readonly store: KeySource,
    private readonly examinedMax: number,
  ) {}

  /** touch counts one entry or key read, and stops a query that reads too many. */
  touch(): void {
    if (++this.examined > this.examinedMax)
      throw new DkvError(
        ErrorCode.TooLarge,
        `the query would read more than ${this.examinedMax} index entries or keys; narrow it, or page it in the order of a branch (sort by its range index)`,
      );
  }

  /** countRange is the number of entries of `ix` within the bounds, walking at most `cap`. */
  private countRange(ix: IndexState, lo: Bound | undefined, hi: Bound | undefined, cap: number): number {
    const tree = ix.tree;
    if (RANK_WORKS) {
      const a = lo === undefined ? 0 : rankOf(tree, lowEntry(lo)!);
      const b = hi === undefined ? tree.size : rankOf(tree, highEntry(hi)!);
      return Math.min(Math.max(0, b - a), cap);
    }
    let n = 0;
    this.walkIndex(ix, lo, hi, false, undefined, () => ++n < cap);
    return n;
  }

  /**
   * est is a node's size estimate, capped: the exact value when below `cap`, else `cap`.
   * Index leaves: their entry count. Prefix: its key count. And: its smallest branch. Or:
   * the sum of its branches. Work is bounded by O(cap) per prefix leaf.
   */
  est(node: Node, cap: number): number {
    if (node.est >= 0) return Math.min(node.est, cap);
    if (node.atLeast >= cap) return cap;
    let n: number;
    switch (node.t) {
      case 'idx':
        n = this.countRange(node.ix, node.lo, node.hi, cap);
        break;
      case 'prefix': {
        n = 0;
        if (cap > 0) {
          for (const _ of this.store.keysWithPrefix(node.p)) {
            this.touch();
            if (++n >= cap) break;
          }
        }
        break;
      }
      case 'and': {
        // Index leaves first: they are counted exactly by rank, and a small one caps the rest.
        let best = cap;
        for (const indexLeaves of [true, false]) {
          for (let i = 0; i < node.c.length; i++) {
            const c = node.c[i]!;
            if ((c.t === 'idx') !== indexLeaves) continue;
            const e = this.est(c, best);
            if (e < best) {
              best = e;
              node.driver = i;
            }
          }
        }
        n = best;
        break;
      }
      case 'or': {
        n = 0;
        for (const c of node.c) {
          n += this.est(c, cap - n);
          if (n >= cap) break;
        }
        break;
      }
    }
    if (n < cap) node.est = n;
    else node.atLeast = Math.max(node.atLeast, cap);
    return Math.min(n, cap);
  }

  /** estimate is a node's exact estimate, found with caps growing 64, 512, 4096, ... */
  estimate(node: Node): number {
    for (let cap = 64; ; cap = cap >= 2 ** 40 ? Number.POSITIVE_INFINITY : cap * 8) {
      const e = this.est(node, cap);
      if (e < cap) return e;
    }
  }

  /**
   * walkIndex visits the entries of `ix` within the bounds in (value, key) order, strictly
   * after `cursor` when given, until `visit` returns false.
   */
  walkIndex(
    ix: IndexState,
    lo: Bound | undefined,
    hi: Bound | undefined,
    desc: boolean,
    cursor: Entry | undefined,
    visit: (e: Entry) => boolean,
  ): void {
    const reuse: (Entry | undefined)[] = [];
    if (!desc) {
      let start = lowEntry(lo);
      let skipStart = false;
      if (cursor !== undefined && (start === undefined || compareEntries(cursor, start) >= 0)) {
        start = cursor;
        skipStart = true;
      }
      for (const pair of ix.tree.entries(start, reuse)) {
        const e = pair[0] as Entry;
        this.touch();
        if (skipStart) {
          skipStart = false;
          if (compareEntries(e, start!) === 0) continue;
        }
        if (hi !== undefined) {
          const c = compareIndexValues(e.v, hi.v);
          if (c > 0 || (c === 0 && !hi.incl)) return;
        }
        if (!visit(e)) return;
      }
      return;
    }
    // Descending: entriesReversed(start, _, true) begins strictly below `start`.
    let start = hi === undefined ? undefined : new Entry(hi.v, hi.incl ? null : '');
    if (cursor !== undefined && (start === undefined || compareEntries(cursor, start) <= 0)) start = cursor;
    for (const pair of ix.tree.entriesReversed(start, reuse, true)) {
      const e = pair[0] as Entry;
      this.touch();
      if (lo !== undefined) {
        const c = compareIndexValues(e.v, lo.v);
        if (c < 0 || (c === 0 && !lo.incl)) return;
      }
      if (!visit(e)) return;
    }
  }

  /** collect visits every candidate key of a node (after estimate() chose the and-drivers). */
  collect(node: Node, visit: Visit): void {
    switch (node.t) {
      case 'idx':
        this.walkIndex(node.ix, node.lo, node.hi, false, undefined, (e) => {
          visit(e.k!, node.ix, e);
          return true;
        });
        return;
      case 'prefix':
        for (const key of this.store.keysWithPrefix(node.p)) {
          this.touch();
          visit(key, undefined, undefined);
        }
        return;
      case 'and': {
        const driver = node.c[node.driver];
        if (driver === undefined) throw new Error('index-manager: and-node collected before estimation');
        this.collect(driver, visit);
        return;
      }
      case 'or':
        for (const c of node.c) this.collect(c, visit);
        return;
    }
  }

  /**
   * stream visits the candidates of a streamable leaf in the requested order, strictly after
   * the continuation, until `visit` returns false.
   */
  stream(node: IdxNode | PrefixNode, order: Order, after: Continuation | undefined, visit: Visit<boolean>) {
    if (node.t === 'prefix') {
      const afterKey = after?.k;
      for (const key of this.store.keysWithPrefix(node.p, afterKey)) {
        this.touch();
        if (afterKey !== undefined && key <= afterKey) continue;
        if (!visit(key, undefined, undefined)) return;
      }
      return;
    }
    let cursor: Entry | undefined;
    if (after !== undefined) {
      // Key order from a single-valued leaf is its (value, key) order; index order carries v.
      cursor = new Entry(order.ix === undefined ? node.lo!.v : after.v!, after.k);
    }
    const ix = node.ix;
    this.walkIndex(ix, node.lo, node.hi, order.desc, cursor, (e) => visit(e.k!, ix, e));
  }
}

/** streamable tells whether a leaf yields its keys in `order` by itself. */
function streamable(node: Node, order: Order): node is IdxNode | PrefixNode {
  if (order.ix !== undefined) return node.t === 'idx' && node.ix === order.ix;
  if (node.t === 'idx') return node.single;
  return node.t === 'prefix' && !order.desc;
}

/** orderedLeaves gathers the streamable leaves reachable from the root through ands only. */
function orderedLeaves(node: Node, order: Order, out: (IdxNode | PrefixNode)[]): void {
  if (node.t === 'and') for (const c of node.c) orderedLeaves(c, order, out);
  else if (streamable(node, order)) out.push(node);
}

/** describeSource names the source a node is read from. */
function describeSource(node: Node): string {
  switch (node.t) {
    case 'idx':
      return `${node.what}(${node.ix.def.name})`;
    case 'prefix':
      return 'prefix';
    case 'and':
      return node.driver >= 0 ? describeSource(node.c[node.driver]!) : 'and';
    case 'or':
      return `union(${node.c.map(describeSource).join(',')})`;
  }
}

function hasOr(node: Node): boolean {
  if (node.t === 'or') return true;
  if (node.t === 'and') return node.c.some(hasOr);
  return false;
}

function newMemo(): Memo {
  return { est: -1, atLeast: 0 };
}

const DEF_KEYS = new Set(['name', 'kind', 'field', 'label']);
const RANGE_OPS = ['gte', 'gt', 'lt', 'lte'] as const;
const OPTION_KEYS = new Set(['limit', 'sort', 'after', 'countOnly']);

/**
 * PlannerTuning sets the budget of a stream from a branch that is already in the requested
 * order (stopping at the limit), instead of collecting the smallest branch and sorting:
 * `streamFactor` x the smallest branch's size + `streamSlack` entries. Results never depend
 * on those two, only the work done; tests turn them down to exercise every path. And it
 * bounds the work of one query (`examinedMax`).
 */
export interface PlannerTuning {
  readonly streamFactor: number;
  readonly streamSlack: number;
  /** Index entries and keys one query may read before it fails with TOO_LARGE. */
  readonly examinedMax: number;
}

/**
 * DEFAULT_TUNING lets a stream read up to twice the driver's size, plus 64 entries, and a
 * query read a million entries (about a second of one core at 1M keys, in the benchmark).
 */
export const DEFAULT_TUNING: PlannerTuning = Object.freeze({
  streamFactor: 2,
  streamSlack: 64,
  examinedMax: 1_000_000,
});

/** SNAPSHOT_VERSION tags the layout of snapshot parts. */
const SNAPSHOT_VERSION = 1;

/**
 * IndexManager holds a store's secondary indexes, keeps them in step with the data, and
 * answers queries over them.
 */
export class IndexManager {
  /** Invariant: one IndexState per def, in definition order; names are unique. */
  private readonly indexes: readonly IndexState[];
  private readonly byName: ReadonlyMap<string, IndexState>;
  private readonly defList: readonly IndexDef[];

  private readonly tuning: PlannerTuning;

  /** The constructor validates `defs` (DkvError INVALID_ARGUMENT) and starts with empty indexes. */
  constructor(defs: readonly IndexDef[], tuning: PlannerTuning = DEFAULT_TUNING) {
    this.tuning = tuning;
    this.defList = Object.freeze(IndexManager.validateDefs(defs));
    this.indexes = this.defList.map((d) => new IndexState(d));
    this.byName = new Map(this.indexes.map((ix) => [ix.def.name, ix]));
  }

  /**
   * validateDefs checks index definitions from anywhere (a request, a snapshot) and returns
   * frozen copies: unique names, a known kind, exactly one of field and label, within limits.
   */
  static validateDefs(defs: unknown): IndexDef[] {
    if (!Array.isArray(defs)) throw invalid('index definitions must be an array');
    if (defs.length > INDEX_LIMITS.indexesMax)
      throw invalid(`at most ${INDEX_LIMITS.indexesMax} indexes per store, got ${defs.length}`);
    const names = new Set<string>();
    return defs.map((d: unknown, i): IndexDef => {
      const where = `index definition ${i}`;
      if (!isPlainObject(d)) throw invalid(`${where} must be an object`);
      for (const k of Object.keys(d))
        if (!DEF_KEYS.has(k)) throw invalid(`${where} has unknown field "${k}"`);
      const { name, kind, field, label } = d;
      if (typeof name !== 'string' || name.length === 0 || name.length > INDEX_LIMITS.nameCharsMax)
        throw invalid(`${where}: name must be a string of 1..${INDEX_LIMITS.nameCharsMax} characters`);
      if (names.has(name)) throw invalid(`index name "${name}" is declared twice`);
      names.add(name);
      if (kind !== 'eq' && kind !== 'range')
        throw invalid(`index "${name}": kind must be "eq" or "range", got ${describeIndexValue(kind)}`);
      if ((field === undefined) === (label === undefined))
        throw invalid(`index "${name}" needs exactly one of field and label`);
      const source = field ?? label;
      if (typeof source !== 'string' || source.length === 0 || source.length > INDEX_LIMITS.sourceCharsMax)
        throw invalid(
          `index "${name}": ${field !== undefined ? 'field' : 'label'} must be a string of 1..${INDEX_LIMITS.sourceCharsMax} characters`,
        );
      if (field !== undefined) {
        const segs = source.split('.');
        if (segs.length > INDEX_LIMITS.fieldSegmentsMax || segs.some((s) => s.length === 0))
          throw invalid(
            `index "${name}": field "${source}" must be up to ${INDEX_LIMITS.fieldSegmentsMax} non-empty names joined by dots`,
          );
        return Object.freeze({ name, kind, field: source });
      }
      return Object.freeze({ name, kind, label: source });
    });
  }

  /** defs are the index definitions, in declaration order. */
  defs(): readonly IndexDef[] {
    return this.defList;
  }

  /**
   * update brings every index in step with one change of `key`: `next` is the item after it
   * (undefined: deleted). The indexes' own reverse maps say what was indexed before, so
   * `_prev` is not needed and an update is idempotent. O(indexes x log n).
   */
  update(key: string, _prev: Item | undefined, next: Item | undefined): void {
    for (const ix of this.indexes) ix.set(key, ix.extract(next));
  }

  /**
   * query answers a query with one page of keys (or a count). Malformed queries and options,
   * unknown indexes, range bounds on an eq index: DkvError INVALID_ARGUMENT. A query that
   * would read more than `examinedMax` entries or keys: TOO_LARGE.
   */
  query(q: Query, opts: QueryOptions, store: KeySource): QueryResult {
    const leaves = { n: 0 };
    const user = this.compile(q, 'query', 1, leaves);
    const { order, limit, after, countOnly } = this.compileOptions(opts);
    const run = new QueryRun(store, this.tuning.examinedMax);
    // Sorting by an index admits only keys that have a value there: an implicit branch.
    const root: Node =
      order.ix === undefined
        ? user
        : {
            t: 'and',
            c: [
              user,
              {
                t: 'idx',
                ix: order.ix,
                what: 'has',
                lo: undefined,
                hi: undefined,
                single: false,
                ...newMemo(),
              },
            ],
            driver: -1,
            ...newMemo(),
          };
    const leaf = root.t === 'idx' || root.t === 'prefix';

    if (countOnly && leaf && after === undefined) {
      // A lone leaf is counted directly: by two rank probes for an index, a walk for a prefix.
      const count = run.est(root, Number.POSITIVE_INFINITY);
      return { keys: [], count, plan: `count ${describeSource(root)} examined=${run.examined}` };
    }

    // A streamable leaf (already in the requested order) is used when it is small next to
    // the driver (within `budget`), or when it is an index leaf whose first limit+1 matches
    // should come within budget even if every driver candidate matched; that second kind
    // gives up after `budget` candidates and falls back to collecting, so a stream never
    // costs more than the budget plus the collect it replaces.
    let ordered: IdxNode | PrefixNode | undefined;
    let giveUpAfter = Number.POSITIVE_INFINITY;
    if (!countOnly) {
      if (leaf) {
        if (streamable(root, order)) ordered = root;
      } else {
        const driverSize = run.estimate(root);
        const budget = this.tuning.streamFactor * driverSize + this.tuning.streamSlack;
        const hopeful = Math.max(budget, Math.floor((budget * driverSize) / (limit + 1))) + 1;
        const candidates: (IdxNode | PrefixNode)[] = [];
        orderedLeaves(root, order, candidates);
        // Index leaves first (exact by rank), so a prefix is walked only up to the best so far.
        candidates.sort((a, b) => (a.t === b.t ? 0 : a.t === 'idx' ? -1 : 1));
        let bestSize = Number.POSITIVE_INFINITY;
        for (const c of candidates) {
          const cap = Math.min(c.t === 'idx' ? hopeful : budget + 1, bestSize);
          const e = run.est(c, cap);
          if (e < cap) {
            ordered = c;
            bestSize = e;
          }
        }
        if (bestSize > budget) giveUpAfter = budget;
      }
    } else if (!leaf) {
      run.estimate(root);
    }

    let gaveUp = '';
    if (ordered !== undefined) {
      const keys: string[] = [];
      let more = false;
      const start = run.examined;
      const source = ordered;
      run.stream(source, order, after, (key, from, entry) => {
        if (run.examined - start > giveUpAfter) {
          gaveUp = ` after stream ${describeSource(source)} gave up`;
          return false;
        }
        if (source !== root && !matches(root, key, from, entry)) return true;
        if (keys.length === limit) {
          more = true;
          return false;
        }
        keys.push(key);
        return true;
      });
      if (gaveUp === '') {
        const plan = `stream ${describeSource(source)} order=${describeOrder(order)} examined=${run.examined}`;
        return this.page(keys, more, order, plan);
      }
    }

    // Collect the driver's matches (deduplicated when an or may yield a key twice), then sort.
    const seen = hasOr(root) ? new Set<string>() : undefined;
    const cursorEntry =
      after === undefined ? undefined : new Entry(order.ix === undefined ? null : after.v!, after.k);
    const matched: string[] = [];
    let count = 0;
    run.collect(root, (key, from, entry) => {
      if (seen !== undefined) {
        if (seen.has(key)) return;
        seen.add(key);
      }
      if (!matches(root, key, from, entry)) return;
      if (cursorEntry !== undefined) {
        let c: number;
        if (order.ix !== undefined) c = compareIndexValues(order.ix.byKey.get(key)!, cursorEntry.v);
        else c = 0;
        if (c === 0) c = key < cursorEntry.k! ? -1 : key > cursorEntry.k! ? 1 : 0;
        if (order.desc ? c >= 0 : c <= 0) return;
      }
      if (countOnly) count++;
      else matched.push(key);
    });
    const source = describeSource(root);
    if (countOnly) return { keys: [], count, plan: `count ${source} examined=${run.examined}` };

    let keys: string[];
    if (order.ix === undefined) {
      keys = matched.sort();
      if (order.desc) keys.reverse();
    } else {
      const byKey = order.ix.byKey;
      const entries = matched.map((k) => new Entry(byKey.get(k)!, k));
      entries.sort(compareEntries);
      if (order.desc) entries.reverse();
      keys = entries.map((e) => e.k!);
    }
    const more = keys.length > limit;
    if (more) keys.length = limit;
    const plan = `collect ${source} order=${describeOrder(order)}${gaveUp} examined=${run.examined}`;
    return this.page(keys, more, order, plan);
  }

  /** page wraps a page of keys with its continuation. */
  private page(keys: string[], more: boolean, order: Order, plan: string): QueryResult {
    if (!more || keys.length === 0) return { keys, plan };
    const k = keys[keys.length - 1]!;
    const next: Continuation = order.ix === undefined ? { k } : { k, v: order.ix.byKey.get(k)! };
    return { keys, next, plan };
  }

  /** compile validates a query (from anywhere) and turns it into a plan tree. */
  private compile(q: unknown, where: string, depth: number, leaves: { n: number }): Node {
    if (depth > INDEX_LIMITS.queryDepthMax)
      throw invalid(`${where}: queries nest at most ${INDEX_LIMITS.queryDepthMax} levels deep`);
    if (!isPlainObject(q)) throw invalid(`${where} must be an object`);
    const fields = Object.keys(q);
    for (const op of ['and', 'or'] as const) {
      if (!Object.hasOwn(q, op)) continue;
      if (fields.length !== 1) throw invalid(`${where}: "${op}" must be the only field of its object`);
      const branches = q[op];
      if (!Array.isArray(branches) || branches.length === 0 || branches.length > INDEX_LIMITS.queryLeavesMax)
        throw invalid(`${where}.${op} must be an array of 1..${INDEX_LIMITS.queryLeavesMax} queries`);
      const c = branches.map((b: unknown, i) => this.compile(b, `${where}.${op}[${i}]`, depth + 1, leaves));
      return op === 'and' ? { t: 'and', c, driver: -1, ...newMemo() } : { t: 'or', c, ...newMemo() };
    }
    if (++leaves.n > INDEX_LIMITS.queryLeavesMax)
      throw invalid(
        `a query may have at most ${INDEX_LIMITS.queryLeavesMax} eq, range and prefix conditions`,
      );
    if (Object.hasOwn(q, 'prefix')) {
      if (fields.length !== 1) throw invalid(`${where}: "prefix" must be the only field of its object`);
      const p = q.prefix;
      if (typeof p !== 'string' || p.length > INDEX_LIMITS.queryStringCharsMax)
        throw invalid(
          `${where}.prefix must be a string of at most ${INDEX_LIMITS.queryStringCharsMax} characters`,
        );
      return { t: 'prefix', p, ...newMemo() };
    }
    if (!Object.hasOwn(q, 'index'))
      throw invalid(`${where} must have one of "index" (with eq or range bounds), "prefix", "and", "or"`);
    const name = q.index;
    if (typeof name !== 'string') throw invalid(`${where}.index must be a string`);
    const ix = this.byName.get(name);
    if (ix === undefined) throw invalid(`${where}: no index named ${describeIndexValue(name)}`);
    const value = (field: string): IndexValue => {
      const raw = q[field];
      const v = toIndexValue(raw);
      if (v === undefined || (typeof v === 'string' && v.length > INDEX_LIMITS.queryStringCharsMax))
        throw invalid(
          `${where}.${field} must be null, a boolean, a finite number or a string (of at most ${INDEX_LIMITS.queryStringCharsMax} characters), got ${describeIndexValue(raw)}`,
        );
      return v;
    };
    if (Object.hasOwn(q, 'eq')) {
      for (const f of fields)
        if (f !== 'index' && f !== 'eq')
          throw invalid(`${where}: an eq query takes only "index" and "eq", not "${f}"`);
      const b = { v: value('eq'), incl: true };
      return { t: 'idx', ix, what: 'eq', lo: b, hi: b, single: true, ...newMemo() };
    }
    for (const f of fields)
      if (f !== 'index' && !(RANGE_OPS as readonly string[]).includes(f))
        throw invalid(`${where}: unknown field "${f}" (expected eq, gte, gt, lt or lte)`);
    if (ix.def.kind !== 'range')
      throw invalid(`${where}: index "${name}" is an eq index; range queries need a range index`);
    if (Object.hasOwn(q, 'gt') && Object.hasOwn(q, 'gte'))
      throw invalid(`${where}: give at most one of gt and gte`);
    if (Object.hasOwn(q, 'lt') && Object.hasOwn(q, 'lte'))
      throw invalid(`${where}: give at most one of lt and lte`);
    const lo = Object.hasOwn(q, 'gte')
      ? { v: value('gte'), incl: true }
      : Object.hasOwn(q, 'gt')
        ? { v: value('gt'), incl: false }
        : undefined;
    const hi = Object.hasOwn(q, 'lte')
      ? { v: value('lte'), incl: true }
      : Object.hasOwn(q, 'lt')
        ? { v: value('lt'), incl: false }
        : undefined;
    const single =
      lo !== undefined && hi !== undefined && lo.incl && hi.incl && compareIndexValues(lo.v, hi.v) === 0;
    return { t: 'idx', ix, what: 'range', lo, hi, single, ...newMemo() };
  }

  /** compileOptions validates query options (from anywhere). */
  private compileOptions(opts: unknown): {
    order: Order;
    limit: number;
    after: Continuation | undefined;
    countOnly: boolean;
  } {
    if (opts === undefined) opts = {};
    if (!isPlainObject(opts)) throw invalid('query options must be an object');
    for (const k of Object.keys(opts)) if (!OPTION_KEYS.has(k)) throw invalid(`unknown query option "${k}"`);
    const { limit: rawLimit, sort, after: rawAfter, countOnly: rawCountOnly } = opts;
    let limit: number = INDEX_LIMITS.limitDefault;
    if (rawLimit !== undefined) {
      if (
        typeof rawLimit !== 'number' ||
        !Number.isInteger(rawLimit) ||
        rawLimit < 1 ||
        rawLimit > INDEX_LIMITS.limitMax
      )
        throw invalid(
          `limit must be an integer in 1..${INDEX_LIMITS.limitMax}, got ${describeIndexValue(rawLimit)}`,
        );
      limit = rawLimit;
    }
    if (rawCountOnly !== undefined && typeof rawCountOnly !== 'boolean')
      throw invalid('countOnly must be a boolean');
    let order: Order = { ix: undefined, desc: false };
    if (sort !== undefined) {
      if (!isPlainObject(sort)) throw invalid('sort must be an object');
      const keys = Object.keys(sort);
      if (Object.hasOwn(sort, 'key')) {
        if (keys.length !== 1 || (sort.key !== 'asc' && sort.key !== 'desc'))
          throw invalid('sort by key must be exactly {key: "asc" | "desc"}');
        order = { ix: undefined, desc: sort.key === 'desc' };
      } else if (Object.hasOwn(sort, 'index')) {
        for (const k of keys)
          if (k !== 'index' && k !== 'order') throw invalid(`sort has unknown field "${k}"`);
        const ix = typeof sort.index === 'string' ? this.byName.get(sort.index) : undefined;
        if (ix === undefined) throw invalid(`sort: no index named ${describeIndexValue(sort.index)}`);
        if (ix.def.kind !== 'range')
          throw invalid(`sort: index "${ix.def.name}" is an eq index; sorting needs a range index`);
        if (sort.order !== undefined && sort.order !== 'asc' && sort.order !== 'desc')
          throw invalid('sort.order must be "asc" or "desc"');
        order = { ix, desc: sort.order === 'desc' };
      } else {
        throw invalid('sort must be {index, order?} or {key}');
      }
    }
    let after: Continuation | undefined;
    if (rawAfter !== undefined) {
      const bad = () =>
        invalid(
          `after must be the "next" of a previous page of the same query and sort: {k${order.ix === undefined ? '' : ', v'}}`,
        );
      if (!isPlainObject(rawAfter)) throw bad();
      const { k, v } = rawAfter;
      if (typeof k !== 'string' || k.length > INDEX_LIMITS.queryStringCharsMax) throw bad();
      const keys = Object.keys(rawAfter);
      if (order.ix === undefined) {
        if (keys.length !== 1) throw bad();
        after = { k };
      } else {
        const value = toIndexValue(v);
        if (keys.length !== 2 || !Object.hasOwn(rawAfter, 'v') || value === undefined) throw bad();
        after = { k, v: value };
      }
    }
    return { order, limit, after, countOnly: rawCountOnly === true };
  }

  /**
   * snapshot is a frozen view of the indexes as of now (an O(1) copy-on-write clone of each
   * tree): a header with the definitions and entry counts, then each index's entries in
   * (value, key) order, INDEX_LIMITS.snapshotPartEntries per part.
   */
  snapshot(): EngineSnapshot {
    const defs = this.defList.map((d) => ({ ...d }));
    const trees = this.indexes.map((ix) => ix.tree.clone());
    const counts = trees.map((t) => t.size);
    return {
      *parts(): Iterable<unknown> {
        yield { t: 'index-manager', version: SNAPSHOT_VERSION, defs, counts };
        const reuse: (Entry | undefined)[] = [];
        for (let index = 0; index < trees.length; index++) {
          let values: IndexValue[] = [];
          let keys: string[] = [];
          for (const pair of trees[index]!.entries(undefined, reuse)) {
            const e = pair[0] as Entry;
            values.push(e.v);
            keys.push(e.k!);
            if (keys.length === INDEX_LIMITS.snapshotPartEntries) {
              yield { t: 'entries', index, values, keys };
              values = [];
              keys = [];
            }
          }
          if (keys.length > 0) yield { t: 'entries', index, values, keys };
        }
      },
    };
  }

  /**
   * restore rebuilds an index manager from snapshot parts, validating every one: a malformed,
   * out-of-order, duplicated or truncated stream throws DkvError CORRUPTED.
   */
  static restore(parts: Iterable<unknown>, tuning: PlannerTuning = DEFAULT_TUNING): IndexManager {
    let mgr: IndexManager | undefined;
    let counts: readonly number[] = [];
    let index = 0;
    let loaded = 0;
    let last: Entry | undefined;
    for (const part of parts) {
      if (!isPlainObject(part)) throw corrupted('a part is not an object');
      if (mgr === undefined) {
        if (part.t !== 'index-manager') throw corrupted('the first part is not the header');
        if (part.version !== SNAPSHOT_VERSION)
          throw corrupted(`unknown version ${describeIndexValue(part.version)}`);
        try {
          mgr = new IndexManager(part.defs as IndexDef[], tuning);
        } catch (err) {
          throw new DkvError(ErrorCode.Corrupted, `index snapshot: bad definitions`, {}, { cause: err });
        }
        const c = part.counts;
        if (
          !Array.isArray(c) ||
          c.length !== mgr.indexes.length ||
          !c.every((n) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0)
        )
          throw corrupted('bad entry counts in the header');
        counts = c as number[];
        continue;
      }
      if (part.t !== 'entries') throw corrupted(`unexpected part ${describeIndexValue(part.t)}`);
      const { values, keys } = part;
      const at = part.index;
      if (typeof at !== 'number' || !Number.isInteger(at) || at < index || at >= mgr.indexes.length)
        throw corrupted(`entries for index ${describeIndexValue(at)} out of order`);
      if (
        !Array.isArray(values) ||
        !Array.isArray(keys) ||
        values.length !== keys.length ||
        keys.length === 0 ||
        keys.length > INDEX_LIMITS.snapshotPartEntriesMax
      )
        throw corrupted('an entries part needs equal-length values and keys arrays of 1..4096');
      while (index < at) {
        if (loaded !== counts[index])
          throw corrupted(`index ${index} has ${loaded} entries, expected ${counts[index]}`);
        index++;
        loaded = 0;
        last = undefined;
      }
      const ix = mgr.indexes[at]!;
      for (let i = 0; i < keys.length; i++) {
        const k: unknown = keys[i];
        const v = toIndexValue(values[i]);
        if (typeof k !== 'string' || v === undefined) throw corrupted(`a bad entry in index ${at}`);
        const e = new Entry(v, k);
        if (last !== undefined && compareEntries(last, e) >= 0)
          throw corrupted(`entries out of order in index ${at}`);
        if (ix.byKey.has(k)) throw corrupted(`key indexed twice in index ${at}`);
        ix.tree.set(e, undefined);
        ix.byKey.set(k, v);
        last = e;
      }
      loaded += keys.length;
    }
    if (mgr === undefined) throw corrupted('no header');
    for (; index < mgr.indexes.length; index++, loaded = 0)
      if (loaded !== counts[index])
        throw corrupted(`index ${index} has ${loaded} entries, expected ${counts[index]}`);
    return mgr;
  }
}
