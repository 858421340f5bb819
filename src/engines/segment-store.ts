/**
 * The segment store: the primary ordered key-value store of one partition group, and the owner
 * of the group revision.
 *
 * Design. Keys are JS strings ordered by JS string comparison (UTF-16 code units; this differs
 * from UTF-8 byte order only between supplementary characters and U+E000..U+FFFF). They live in
 * a copy-on-write B+ tree (`sorted-btree`) mapping each key to a slot holding an immutable,
 * frozen `Entry` record, which is also the `Item` handed out: a put replaces the record, never
 * edits it, so an item a caller holds never changes, and `snapshot()` is a tree `clone()` (O(1),
 * copy-on-write) that later writes cannot reach. A hash map from key to the same slot serves
 * point reads, and a put to a key whose slot no snapshot shares swaps the record in the slot
 * without descending the tree (slots carry the snapshot generation they were made in). Values and labels are kept by reference: the store takes
 * ownership, and callers must not mutate them after the put. A second, sparse tree holds the
 * deadline of every key that has one, so `count` with `now` pays only for keys with a TTL.
 *
 * Revisions. Every put and every delete of an existing key bumps `revision` by exactly 1 and
 * stamps it on the change. An item's `version` is 1 on create and +1 per put; `createRevision`
 * is the revision of the put that created it (kept across overwrites, reset by delete and
 * re-create); `modRevision` is the revision of its last put.
 *
 * Expiry. The store reads no clock. `expiresAt` is stored as given; readers that pass `now`
 * (`getLive`, `scan`, `count`, `evaluateCompare`) treat an item with `expiresAt <= now` as absent,
 * so a key is never returned after its deadline even before its expiry delete is applied. Writes
 * (`checkPut`, `put`, `delete`) see the raw state: the state machine must delete an expired key
 * (as an `expired` event) before it applies a write to that key.
 *
 * Keys must be non-empty, well-formed UTF-16 (no lone surrogate, which msgpack could not carry
 * and a restored replica would see differently), and at most `keyBytesMax` UTF-8 bytes.
 *
 * Complexity (n keys, B = node size 32): get/has O(1); put of a key O(1) once it has been put
 * since the last snapshot, else O(log n); delete O(log n); scan O(log n + k) for k
 * keys visited; count O(B log n) by subtree sizes (plus the TTL'd keys in range when `now` is
 * given); snapshot O(1), its parts O(n) in total; restore O(n) (bulk load); stateHash O(bytes).
 *
 * Snapshot format (`format: 1`). Part 0 is a header `{kind: 'segment-store', format: 1,
 * revision, count}`. Every later part is a non-empty array of at most SNAPSHOT_PART_RECORDS_MAX
 * records, in strictly ascending key order; a part also closes once its records' key and value
 * bytes reach SNAPSHOT_PART_BYTES_MAX. A record is the tuple `[key, value, valueBytes, version,
 * createRevision, modRevision, expiresAt?, lease?, labels?]`: the last three hold null where
 * absent, and trailing absent ones are dropped.
 */
import BTreeModule from 'sorted-btree';
import { bulkLoad } from 'sorted-btree/extended/bulkLoad.js';
import { DkvError, ErrorCode } from '../errors.js';
import { checkValueDepth, deepEqualValues, Fnv1a64, hashValue } from './canonical-value.js';
import type { EngineSnapshot, Item, Labels, Value } from './types.js';

export { deepEqualValues } from './canonical-value.js';

type BTree<K, V> = BTreeModule.default<K, V>;
/** BTree is sorted-btree's class; a CommonJS default export arrives wrapped under Node's ESM. */
const BTree: typeof BTreeModule.default =
  (BTreeModule as unknown as { default?: typeof BTreeModule.default }).default ??
  (BTreeModule as unknown as typeof BTreeModule.default);

/** SegmentStoreLimits bounds what one put may store. */
export interface SegmentStoreLimits {
  /** The longest key, in UTF-8 bytes. */
  keyBytesMax: number;
  /** The largest value, in encoded (msgpack) bytes as measured by the caller's codec. */
  valueBytesMax: number;
  /** The most labels one item may carry. */
  labelsMax: number;
}

/** SEGMENT_STORE_LIMITS_DEFAULT: 4 KiB keys, 1 MiB values, 64 labels. */
export const SEGMENT_STORE_LIMITS_DEFAULT: Readonly<SegmentStoreLimits> = Object.freeze({
  keyBytesMax: 4096,
  valueBytesMax: 1024 * 1024,
  labelsMax: 64,
});

/** SCAN_LIMIT_DEFAULT is the page size of a scan that names none; SCAN_LIMIT_MAX the largest. */
export const SCAN_LIMIT_DEFAULT = 1000;
export const SCAN_LIMIT_MAX = 10_000;

/** SNAPSHOT_PART_RECORDS_MAX and SNAPSHOT_PART_BYTES_MAX bound one snapshot part. */
export const SNAPSHOT_PART_RECORDS_MAX = 1000;
export const SNAPSHOT_PART_BYTES_MAX = 4 * 1024 * 1024;

/** SNAPSHOT_FORMAT is the version of the snapshot layout in the file comment. */
const SNAPSHOT_FORMAT = 1;
const SNAPSHOT_KIND = 'segment-store';
/** NODE_SIZE is the B+ tree's branching factor. */
const NODE_SIZE = 32;

/** PutSpec is one put's payload and conditions. */
export interface PutSpec {
  value: Value;
  /** The value's encoded size, computed by the caller's codec. */
  valueBytes: number;
  /** Replicated-clock deadline (ms). */
  expiresAt?: number;
  lease?: number;
  labels?: Labels;
  /** Succeed only if the key exists at exactly this version (>= 1). */
  ifVersion?: number;
  /** Succeed only if the key does not exist. */
  ifAbsent?: boolean;
}

/** ScanOptions select keys: a prefix and/or a [start, end) range, after a continuation key. */
export interface ScanOptions {
  prefix?: string;
  /** Inclusive lower bound. */
  start?: string;
  /** Exclusive upper bound. */
  end?: string;
  /** Continuation: only keys strictly after this one (strictly before it when `reverse`). */
  after?: string;
  /** Page size, 1..SCAN_LIMIT_MAX; SCAN_LIMIT_DEFAULT if absent. */
  limit?: number;
  /** Descending key order. */
  reverse?: boolean;
  /** Replicated clock: items with `expiresAt <= now` are skipped. */
  now?: number;
}

/** CountOptions select keys as ScanOptions do, without paging. */
export interface CountOptions {
  prefix?: string;
  start?: string;
  end?: string;
  now?: number;
}

/** ScanResult is one page; `more` tells whether matching keys exist beyond it. */
export interface ScanResult {
  items: Item[];
  more: boolean;
}

/** LiveKeys is the key-source view `liveKeys(now)` returns (the index manager's KeySource). */
export interface LiveKeys {
  keysWithPrefix(prefix: string, after?: string): Iterable<string>;
  has(key: string): boolean;
}

/** PutResult is the item a put wrote and the item it replaced, if any. */
export interface PutResult {
  item: Item;
  prev?: Item;
}

/**
 * Entry is one key's immutable, frozen record; it is the Item handed out. Optional fields are
 * absent rather than undefined (so they do not appear when the item is encoded), and the size
 * used for `bytes` is private (so it does not either).
 */
class Entry implements Item {
  readonly key: string;
  readonly value: Value;
  readonly version: number;
  readonly createRevision: number;
  readonly modRevision: number;
  declare readonly expiresAt?: number;
  declare readonly lease?: number;
  declare readonly labels?: Labels;
  /** Key UTF-8 bytes plus the value's encoded bytes. */
  readonly #sizeBytes: number;

  constructor(
    key: string,
    value: Value,
    sizeBytes: number,
    version: number,
    createRevision: number,
    modRevision: number,
    expiresAt: number | undefined,
    lease: number | undefined,
    labels: Labels | undefined,
  ) {
    this.key = key;
    this.value = value;
    this.version = version;
    this.createRevision = createRevision;
    this.modRevision = modRevision;
    if (expiresAt !== undefined) this.expiresAt = expiresAt;
    if (lease !== undefined) this.lease = lease;
    if (labels !== undefined) this.labels = labels;
    this.#sizeBytes = sizeBytes;
    Object.freeze(this);
  }

  /** sizeBytes is the key's UTF-8 bytes plus the value's encoded bytes. */
  get sizeBytes(): number {
    return this.#sizeBytes;
  }
}

/**
 * Slot holds a key's current entry in the tree and in `byKey`. Entries stay immutable; a slot
 * is overwritten in place only while no snapshot shares it (see SegmentStore.gen).
 */
class Slot {
  constructor(
    public entry: Entry,
    readonly gen: number,
  ) {}
}

/** compareKeys orders keys by UTF-16 code units, as JS `<` does. */
function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function invalid(message: string): DkvError {
  return new DkvError(ErrorCode.InvalidArgument, message);
}

function corrupted(message: string): DkvError {
  return new DkvError(ErrorCode.Corrupted, `segment store snapshot: ${message}`);
}

/**
 * utf8Length is the UTF-8 length of a string, or -1 if it holds a lone surrogate. It stops
 * early (returning a value above `stopAbove`) once the length exceeds `stopAbove`.
 */
function utf8Length(s: string, stopAbove: number): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c < 0xd800 || c > 0xdfff) n += 3;
    else if (c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return -1;
      n += 4;
      i++;
    } else return -1;
    if (n > stopAbove) return n;
  }
  return n;
}

/** checkKeyShape throws INVALID_ARGUMENT unless `key` is a non-empty, well-formed string. */
function checkKeyShape(key: unknown, what = 'key'): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) throw invalid(`${what} must be a non-empty string`);
  if (utf8Length(key, Number.MAX_SAFE_INTEGER) < 0) throw invalid(`${what} holds a lone surrogate`);
}

function isSafeNonNegative(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** labelsProblem describes what is wrong with `labels`, or returns undefined if they are valid. */
function labelsProblem(labels: unknown, labelsMax: number): string | undefined {
  if (!isPlainObject(labels)) return 'labels must be a plain object';
  let n = 0;
  for (const k in labels) {
    if (!Object.hasOwn(labels, k)) continue;
    if (++n > labelsMax) return `more than ${labelsMax} labels`;
    const v = labels[k];
    if (typeof v === 'string') continue;
    if (typeof v === 'number' && Number.isFinite(v)) continue;
    return `label ${JSON.stringify(k)} must be a string or a finite number`;
  }
  return undefined;
}

function isDeadline(n: unknown): n is number {
  return typeof n === 'number' && Number.isFinite(n) && n >= 0;
}

/** prefixEnd is the least string above every string that starts with `prefix` (none: undefined). */
function prefixEnd(prefix: string): string | undefined {
  let i = prefix.length;
  while (i > 0 && prefix.charCodeAt(i - 1) === 0xffff) i--;
  if (i === 0) return undefined;
  return prefix.slice(0, i - 1) + String.fromCharCode(prefix.charCodeAt(i - 1) + 1);
}

/** Bounds is a key range [lo, hi); undefined means unbounded on that side. */
interface Bounds {
  lo: string | undefined;
  hi: string | undefined;
  /** empty: the range holds no key at all. */
  empty: boolean;
}

function optionalString(v: unknown, what: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw invalid(`${what} must be a string`);
  return v;
}

function optionalNow(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw invalid('now must be a finite number');
  return v;
}

/** boundsOf intersects the prefix range and [start, end). */
function boundsOf(opts: { prefix?: unknown; start?: unknown; end?: unknown }): Bounds {
  const prefix = optionalString(opts.prefix, 'prefix');
  let lo = optionalString(opts.start, 'start');
  let hi = optionalString(opts.end, 'end');
  if (prefix !== undefined && prefix.length > 0) {
    if (lo === undefined || prefix > lo) lo = prefix;
    const pe = prefixEnd(prefix);
    if (pe !== undefined && (hi === undefined || pe < hi)) hi = pe;
  }
  const empty = lo !== undefined && hi !== undefined && lo >= hi;
  return { lo, hi, empty };
}

/** Internals of sorted-btree 2.x read by rankOf: leaves and internal nodes share `keys`. */
interface TreeNode {
  keys: string[];
  children?: TreeNode[];
  size(): number;
}

/** lowerBound is the index of the first element of `keys` that is >= `key`. */
function lowerBound(keys: readonly string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * rankOf counts the keys below `key` in O(B log n), from the subtree sizes that sorted-btree
 * caches in its internal nodes (each internal key is its child's largest key). If the tree's
 * internals ever differ from that shape, it falls back to counting by iteration.
 */
function rankOf(tree: BTree<string, unknown>, key: string): number {
  let node = (tree as unknown as { _root?: TreeNode })._root;
  if (node === undefined || !Array.isArray(node.keys) || typeof node.size !== 'function') {
    return rankByIteration(tree, key);
  }
  let rank = 0;
  while (node.children !== undefined) {
    const children: TreeNode[] = node.children;
    const i = lowerBound(node.keys, key);
    if (i >= children.length) return rank + node.size();
    for (let j = 0; j < i; j++) rank += children[j]!.size();
    node = children[i]!;
  }
  return rank + lowerBound(node.keys, key);
}

function rankByIteration(tree: BTree<string, unknown>, key: string): number {
  let n = 0;
  for (const k of tree.keys()) {
    if (k >= key) break;
    n++;
  }
  return n;
}

/**
 * SegmentStore is the ordered key-value store of one partition group (see the file comment).
 * It also serves as the index manager's key source (`keysWithPrefix`, `has`).
 */
export class SegmentStore {
  /** limits in force for puts. */
  readonly limits: Readonly<SegmentStoreLimits>;
  /** tree maps every key to its current record, in key order (ranges, snapshots). */
  private tree: BTree<string, Slot>;
  /**
   * byKey holds the same records as `tree` in a hash map, for point reads: a put reads its key
   * two or three times (checks, then the write), and a hash lookup costs a fraction of a B-tree
   * descent through a dozen string compares. Invariant: same keys and records as `tree`.
   */
  private readonly byKey = new Map<string, Slot>();
  /**
   * The slot generation: bumped by every snapshot. A slot of the current generation is in no
   * snapshot's frozen tree, so a put overwrites its entry in place (no tree descent); an older
   * one may be shared with a snapshot, so a put gives the key a new slot through the tree's
   * copy-on-write `set`.
   */
  private gen = 0;
  /** expiring maps every key whose record has `expiresAt` to that deadline. Invariant: same keys. */
  private expiring: BTree<string, number>;
  /** Invariant: the revision of the latest mutation (or the initial revision); never decreases. */
  private rev: number;
  /** Invariant: the sum of every record's sizeBytes. */
  private byteCount = 0;

  /** constructor makes an empty store whose next mutation gets revision `revision + 1`. */
  constructor(limits?: Partial<SegmentStoreLimits>, revision = 0) {
    this.limits = resolveLimits(limits);
    if (!isSafeNonNegative(revision)) throw invalid('revision must be a non-negative safe integer');
    this.rev = revision;
    this.tree = new BTree<string, Slot>(undefined, compareKeys, NODE_SIZE);
    this.expiring = new BTree<string, number>(undefined, compareKeys, NODE_SIZE);
  }

  /** revision is the group revision: bumped by exactly 1 per put, and per delete of a present key. */
  get revision(): number {
    return this.rev;
  }

  /** size is the number of keys held (expired ones included until deleted). */
  get size(): number {
    return this.tree.size;
  }

  /** bytes approximates the data held: keys' UTF-8 bytes plus values' encoded bytes. */
  get bytes(): number {
    return this.byteCount;
  }

  /** get returns the key's item, expired or not, or undefined. */
  get(key: string): Item | undefined {
    if (typeof key !== 'string') throw invalid('key must be a string');
    return this.byKey.get(key)?.entry;
  }

  /** getLive returns the key's item unless it is absent or expired at `now` (expiresAt <= now). */
  getLive(key: string, now: number): Item | undefined {
    if (typeof key !== 'string') throw invalid('key must be a string');
    const n = optionalNow(now);
    const e = this.byKey.get(key)?.entry;
    if (e === undefined || n === undefined) return e;
    return e.expiresAt !== undefined && e.expiresAt <= n ? undefined : e;
  }

  /** has tells whether the key is held (expired or not). */
  has(key: string): boolean {
    if (typeof key !== 'string') throw invalid('key must be a string');
    return this.byKey.has(key);
  }

  /**
   * checkPut validates a put and its conditions without changing anything, so a transaction can
   * check all its operations before applying any. Throws INVALID_ARGUMENT (malformed key or
   * spec), TOO_LARGE (key or value over its limit), VERSION_MISMATCH (ifVersion/ifAbsent fails).
   * It returns the key's UTF-8 length.
   */
  checkPut(key: string, spec: PutSpec): number {
    if (typeof key !== 'string' || key.length === 0) throw invalid('key must be a non-empty string');
    const { keyBytesMax, valueBytesMax, labelsMax } = this.limits;
    if (key.length > keyBytesMax) throw tooLargeKey(key.length, keyBytesMax);
    const keyBytes = utf8Length(key, keyBytesMax);
    if (keyBytes < 0) throw invalid('key holds a lone surrogate');
    if (keyBytes > keyBytesMax) throw tooLargeKey(keyBytes, keyBytesMax);
    if (typeof spec !== 'object' || spec === null) throw invalid('put spec must be an object');
    if (spec.value === undefined) throw invalid('value must not be undefined');
    if (!isSafeNonNegative(spec.valueBytes)) throw invalid('valueBytes must be a non-negative integer');
    if (spec.valueBytes > valueBytesMax) {
      throw new DkvError(
        ErrorCode.TooLarge,
        `value is ${spec.valueBytes} bytes encoded, over the limit of ${valueBytesMax}`,
      );
    }
    if (spec.expiresAt !== undefined && !isDeadline(spec.expiresAt)) {
      throw invalid('expiresAt must be a finite number >= 0');
    }
    if (spec.lease !== undefined && !isSafeNonNegative(spec.lease)) {
      throw invalid('lease must be a non-negative integer');
    }
    if (spec.labels !== undefined) {
      const problem = labelsProblem(spec.labels, labelsMax);
      if (problem !== undefined) throw invalid(problem);
    }
    const { ifVersion, ifAbsent } = spec;
    if (ifAbsent !== undefined && typeof ifAbsent !== 'boolean') throw invalid('ifAbsent must be a boolean');
    if (ifVersion !== undefined) {
      if (typeof ifVersion !== 'number' || !Number.isSafeInteger(ifVersion) || ifVersion < 1) {
        throw invalid('ifVersion must be an integer >= 1 (use ifAbsent to require absence)');
      }
      if (ifAbsent === true) throw invalid('ifVersion and ifAbsent are exclusive');
      const cur = this.byKey.get(key)?.entry;
      if (cur === undefined || cur.version !== ifVersion) {
        throw new DkvError(
          ErrorCode.VersionMismatch,
          `key is at version ${cur === undefined ? 'absent' : cur.version}, not ${ifVersion}`,
        );
      }
    } else if (ifAbsent === true && this.byKey.has(key)) {
      throw new DkvError(ErrorCode.VersionMismatch, 'key exists (ifAbsent)');
    }
    return keyBytes;
  }

  /**
   * put validates (as checkPut) and writes the key: the revision bumps by 1, the new item gets
   * version prev.version + 1 (or 1), keeps prev's createRevision (or takes the new revision),
   * and modRevision = the new revision. Returns the new item and the one it replaced.
   */
  put(key: string, spec: PutSpec): PutResult {
    const keyBytes = this.checkPut(key, spec);
    const slot = this.byKey.get(key);
    const prev = slot?.entry;
    const revision = this.rev + 1;
    const item = new Entry(
      key,
      spec.value,
      keyBytes + spec.valueBytes,
      prev === undefined ? 1 : prev.version + 1,
      prev === undefined ? revision : prev.createRevision,
      revision,
      spec.expiresAt,
      spec.lease,
      spec.labels,
    );
    if (slot !== undefined && slot.gen === this.gen) slot.entry = item;
    else {
      const fresh = new Slot(item, this.gen);
      this.tree.set(key, fresh);
      this.byKey.set(key, fresh);
    }
    if (spec.expiresAt !== undefined) this.expiring.set(key, spec.expiresAt);
    else if (prev?.expiresAt !== undefined) this.expiring.delete(key);
    this.rev = revision;
    this.byteCount += item.sizeBytes - (prev === undefined ? 0 : prev.sizeBytes);
    return prev === undefined ? { item } : { item, prev };
  }

  /** delete removes the key; the revision bumps only if it existed. Returns the removed item. */
  delete(key: string): Item | undefined {
    if (typeof key !== 'string') throw invalid('key must be a string');
    const prev = this.byKey.get(key)?.entry;
    if (prev === undefined) return undefined;
    this.tree.delete(key);
    this.byKey.delete(key);
    if (prev.expiresAt !== undefined) this.expiring.delete(key);
    this.rev += 1;
    this.byteCount -= prev.sizeBytes;
    return prev;
  }

  /**
   * scan returns up to `limit` items whose keys match the prefix and lie in [start, end), in
   * ascending key order (descending if `reverse`), strictly after `after` in that order; with
   * `now`, expired items are skipped. `more` tells whether further matching items exist, so
   * paging with `after` = the last key returned, until `more` is false, yields the full result.
   */
  scan(opts: ScanOptions = {}): ScanResult {
    if (typeof opts !== 'object' || opts === null) throw invalid('scan options must be an object');
    const { lo, hi, empty } = boundsOf(opts);
    const after = optionalString(opts.after, 'after');
    const now = optionalNow(opts.now);
    const limit = opts.limit === undefined ? SCAN_LIMIT_DEFAULT : opts.limit;
    if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1 || limit > SCAN_LIMIT_MAX) {
      throw invalid(`limit must be an integer in 1..${SCAN_LIMIT_MAX}`);
    }
    if (opts.reverse !== undefined && typeof opts.reverse !== 'boolean') {
      throw invalid('reverse must be a boolean');
    }
    const items: Item[] = [];
    if (empty) return { items, more: false };
    const reused: (string | Slot)[] = [];
    if (opts.reverse !== true) {
      let from = lo;
      let skip: string | undefined;
      if (after !== undefined && (from === undefined || after >= from)) {
        from = after;
        skip = after;
      }
      const it = this.tree.entries(from, reused as [string, Slot]);
      for (let r = it.next(); !r.done; r = it.next()) {
        const key = r.value[0];
        if (hi !== undefined && key >= hi) break;
        if (key === skip) continue;
        const e = r.value[1].entry;
        if (now !== undefined && e.expiresAt !== undefined && e.expiresAt <= now) continue;
        if (items.length === limit) return { items, more: true };
        items.push(e);
      }
      return { items, more: false };
    }
    let top = hi;
    if (after !== undefined && (top === undefined || after < top)) top = after;
    const it =
      top === undefined
        ? this.tree.entriesReversed(undefined, reused as [string, Slot])
        : this.tree.entriesReversed(top, reused as [string, Slot], true);
    for (let r = it.next(); !r.done; r = it.next()) {
      const key = r.value[0];
      if (lo !== undefined && key < lo) break;
      if (key === top) continue;
      const e = r.value[1].entry;
      if (now !== undefined && e.expiresAt !== undefined && e.expiresAt <= now) continue;
      if (items.length === limit) return { items, more: true };
      items.push(e);
    }
    return { items, more: false };
  }

  /**
   * count is the number of keys matching the prefix and [start, end) (live at `now`, if given),
   * without materializing items: O(B log n) from subtree sizes, plus the TTL'd keys in range
   * when `now` is given.
   */
  count(opts: CountOptions = {}): number {
    if (typeof opts !== 'object' || opts === null) throw invalid('count options must be an object');
    const { lo, hi, empty } = boundsOf(opts);
    const now = optionalNow(opts.now);
    if (empty) return 0;
    const tree = this.tree as BTree<string, unknown>;
    let n = (hi === undefined ? tree.size : rankOf(tree, hi)) - (lo === undefined ? 0 : rankOf(tree, lo));
    if (now !== undefined && this.expiring.size > 0) {
      const reused: (string | number)[] = [];
      const it = this.expiring.entries(lo, reused as [string, number]);
      for (let r = it.next(); !r.done; r = it.next()) {
        if (hi !== undefined && r.value[0] >= hi) break;
        if (r.value[1] <= now) n--;
      }
    }
    return n;
  }

  /**
   * keysWithPrefix yields the held keys that start with `prefix`, in ascending order, strictly
   * after `after` if given, skipping keys expired at `now` if given. It iterates the live tree
   * lazily: do not mutate the store while iterating (take a `snapshot()` for a stable view).
   */
  *keysWithPrefix(prefix: string, after?: string, now?: number): Iterable<string> {
    if (typeof prefix !== 'string') throw invalid('prefix must be a string');
    if (after !== undefined && typeof after !== 'string') throw invalid('after must be a string');
    const n = optionalNow(now);
    let from = prefix;
    let skip: string | undefined;
    if (after !== undefined && after >= prefix) {
      from = after;
      skip = after;
    }
    const reused: (string | Slot)[] = [];
    const it = this.tree.entries(from, reused as [string, Slot]);
    for (let r = it.next(); !r.done; r = it.next()) {
      const key = r.value[0];
      if (!key.startsWith(prefix)) return;
      if (key === skip) continue;
      const e = r.value[1].entry;
      if (n !== undefined && e.expiresAt !== undefined && e.expiresAt <= n) continue;
      yield key;
    }
  }

  /**
   * liveKeys is a view for the index manager (its KeySource) that hides keys expired at `now`,
   * so a query never returns a key after its deadline, even before its expiry delete is applied.
   */
  liveKeys(now: number): LiveKeys {
    const n = optionalNow(now);
    if (n === undefined) throw invalid('now must be a finite number');
    return {
      keysWithPrefix: (prefix: string, after?: string) => this.keysWithPrefix(prefix, after, n),
      has: (key: string) => this.getLive(key, n) !== undefined,
    };
  }

  /**
   * snapshot is an O(1) frozen view of the store (a copy-on-write clone of the tree). Its parts
   * (format in the file comment) reflect the state at this call whatever happens afterwards,
   * and `parts()` may be iterated more than once.
   */
  snapshot(): EngineSnapshot {
    const tree = this.tree.clone();
    tree.freeze();
    this.gen++; // every slot now may be shared with this frozen tree
    const revision = this.rev;
    return { parts: () => snapshotParts(tree, revision) };
  }

  /**
   * restore rebuilds a store from a snapshot's parts, validating each: a malformed header, part
   * or record, keys out of order, or a record count that disagrees with the header throws
   * CORRUPTED. Limits apply to later puts only: records written under larger limits load.
   */
  static restore(parts: Iterable<unknown>, limits?: Partial<SegmentStoreLimits>): SegmentStore {
    const iterator = parts[Symbol.iterator]();
    const first = iterator.next();
    if (first.done === true) throw corrupted('no header part');
    const header = first.value;
    if (!isPlainObject(header) || header.kind !== SNAPSHOT_KIND) throw corrupted('bad header');
    if (header.format !== SNAPSHOT_FORMAT) throw corrupted(`unknown format ${String(header.format)}`);
    const revision = header.revision;
    const count = header.count;
    if (!isSafeNonNegative(revision) || !isSafeNonNegative(count)) throw corrupted('bad header numbers');
    const store = new SegmentStore(limits, revision);
    const keys: string[] = [];
    const entries: Entry[] = [];
    const ttlKeys: string[] = [];
    const ttlDeadlines: number[] = [];
    let bytes = 0;
    let prevKey: string | undefined;
    for (let r = iterator.next(); r.done !== true; r = iterator.next()) {
      const part = r.value;
      if (!Array.isArray(part) || part.length === 0 || part.length > SNAPSHOT_PART_RECORDS_MAX) {
        throw corrupted(`the part after record ${keys.length} is not a non-empty array of records`);
      }
      if (keys.length + part.length > count) throw corrupted(`more records than the header's ${count}`);
      for (const raw of part) {
        const e = decodeRecord(raw, revision, keys.length);
        if (prevKey !== undefined && !(prevKey < e.key))
          throw corrupted(`keys out of order at record ${keys.length}`);
        prevKey = e.key;
        keys.push(e.key);
        entries.push(e);
        if (e.expiresAt !== undefined) {
          ttlKeys.push(e.key);
          ttlDeadlines.push(e.expiresAt);
        }
        bytes += e.sizeBytes;
      }
    }
    if (keys.length !== count) throw corrupted(`${keys.length} records, header says ${count}`);
    const slots = entries.map((e) => new Slot(e, 0));
    store.tree = bulkLoad(keys, slots, NODE_SIZE, compareKeys) as BTree<string, Slot>;
    for (let i = 0; i < keys.length; i++) store.byKey.set(keys[i]!, slots[i]!);
    store.expiring = bulkLoad(ttlKeys, ttlDeadlines, NODE_SIZE, compareKeys) as BTree<string, number>;
    store.byteCount = bytes;
    return store;
  }

  /**
   * stateHash is FNV-1a 64 (16 hex digits) over the store's canonical encoding: revision and
   * size as float64 LE, then for each item in key order: key (string), version, createRevision,
   * modRevision, sizeBytes (float64 each), expiresAt and lease (0x00 absent, or 0x01 and float64),
   * labels (0x00 absent, or 0x01 and the canonical value), then the canonical value (see
   * canonical-value.ts for the value and string encodings). O(total bytes).
   */
  stateHash(): string {
    const h = new Fnv1a64();
    h.f64(this.rev);
    h.f64(this.tree.size);
    const reused: (string | Slot)[] = [];
    const it = this.tree.entries(undefined, reused as [string, Slot]);
    for (let r = it.next(); !r.done; r = it.next()) {
      const e = r.value[1].entry;
      h.str(e.key);
      h.f64(e.version);
      h.f64(e.createRevision);
      h.f64(e.modRevision);
      h.f64(e.sizeBytes);
      optionalNumber(h, e.expiresAt);
      optionalNumber(h, e.lease);
      if (e.labels === undefined) h.byte(0);
      else {
        h.byte(1);
        hashValue(h, e.labels);
      }
      hashValue(h, e.value);
    }
    return h.digest();
  }
}

function optionalNumber(h: Fnv1a64, n: number | undefined): void {
  if (n === undefined) h.byte(0);
  else {
    h.byte(1);
    h.f64(n);
  }
}

function tooLargeKey(bytes: number, max: number): DkvError {
  return new DkvError(ErrorCode.TooLarge, `key is ${bytes}+ bytes, over the limit of ${max}`);
}

function resolveLimits(limits: Partial<SegmentStoreLimits> | undefined): Readonly<SegmentStoreLimits> {
  const out = { ...SEGMENT_STORE_LIMITS_DEFAULT };
  if (limits !== undefined) {
    for (const name of ['keyBytesMax', 'valueBytesMax', 'labelsMax'] as const) {
      const v = limits[name];
      if (v === undefined) continue;
      if (!isSafeNonNegative(v) || v < 1) throw invalid(`${name} must be a positive integer`);
      out[name] = v;
    }
  }
  return Object.freeze(out);
}

function* snapshotParts(tree: BTree<string, Slot>, revision: number): Iterable<unknown> {
  yield { kind: SNAPSHOT_KIND, format: SNAPSHOT_FORMAT, revision, count: tree.size };
  let part: unknown[] = [];
  let partBytes = 0;
  const reused: (string | Slot)[] = [];
  const it = tree.entries(undefined, reused as [string, Slot]);
  for (let r = it.next(); !r.done; r = it.next()) {
    const e = r.value[1].entry;
    part.push(encodeRecord(e));
    partBytes += e.sizeBytes;
    if (part.length >= SNAPSHOT_PART_RECORDS_MAX || partBytes >= SNAPSHOT_PART_BYTES_MAX) {
      yield part;
      part = [];
      partBytes = 0;
    }
  }
  if (part.length > 0) yield part;
}

function encodeRecord(e: Entry): unknown[] {
  const rec: unknown[] = [e.key, e.value, e.sizeBytes - utf8Length(e.key, Number.MAX_SAFE_INTEGER)];
  rec.push(e.version, e.createRevision, e.modRevision);
  if (e.labels !== undefined) rec.push(e.expiresAt ?? null, e.lease ?? null, e.labels);
  else if (e.lease !== undefined) rec.push(e.expiresAt ?? null, e.lease);
  else if (e.expiresAt !== undefined) rec.push(e.expiresAt);
  return rec;
}

/** decodeRecord validates one snapshot record (see the file comment) and builds its entry. */
function decodeRecord(raw: unknown, revision: number, index: number): Entry {
  const bad = (what: string) => corrupted(`record ${index}: ${what}`);
  if (!Array.isArray(raw) || raw.length < 6 || raw.length > 9) throw bad('not a 6 to 9 element array');
  const [key, value, valueBytes, version, createRevision, modRevision] = raw;
  if (typeof key !== 'string' || key.length === 0) throw bad('bad key');
  const keyBytes = utf8Length(key, Number.MAX_SAFE_INTEGER);
  if (keyBytes < 0) throw bad('key holds a lone surrogate');
  if (value === undefined) throw bad('no value');
  if (!isSafeNonNegative(valueBytes)) throw bad('bad valueBytes');
  if (!isSafeNonNegative(version) || version < 1) throw bad('bad version');
  if (!isSafeNonNegative(createRevision) || createRevision < 1) throw bad('bad createRevision');
  if (!isSafeNonNegative(modRevision) || modRevision < createRevision || modRevision > revision) {
    throw bad('bad modRevision');
  }
  if (version > modRevision - createRevision + 1) throw bad('version exceeds the puts its revisions allow');
  const expiresAt = raw[6] ?? undefined;
  const lease = raw[7] ?? undefined;
  const labels = raw[8] ?? undefined;
  if (expiresAt !== undefined && !isDeadline(expiresAt)) throw bad('bad expiresAt');
  if (lease !== undefined && !isSafeNonNegative(lease)) throw bad('bad lease');
  if (labels !== undefined && labelsProblem(labels, Number.MAX_SAFE_INTEGER) !== undefined) {
    throw bad('bad labels');
  }
  return new Entry(
    key,
    value,
    keyBytes + valueBytes,
    version,
    createRevision,
    modRevision,
    expiresAt as number | undefined,
    lease as number | undefined,
    labels as Labels | undefined,
  );
}

/** Compare is one condition of a transaction on one key. */
export type Compare = {
  key: string;
  target: 'version' | 'createRevision' | 'modRevision' | 'value' | 'exists';
  op: '=' | '!=' | '<' | '>';
  value: unknown;
};

const COMPARE_TARGETS: ReadonlySet<string> = new Set([
  'version',
  'createRevision',
  'modRevision',
  'value',
  'exists',
]);
const COMPARE_OPS: ReadonlySet<string> = new Set(['=', '!=', '<', '>']);

/**
 * validateCompare checks a compare's shape and returns a fresh, typed copy; INVALID_ARGUMENT
 * otherwise. Numeric targets take a non-negative integer and any op; `value` takes '=' or '!='
 * and any storable value; `exists` takes '=' or '!=' and a boolean.
 */
export function validateCompare(c: unknown): Compare {
  if (!isPlainObject(c)) throw invalid('compare must be an object');
  const { key, target, op, value } = c;
  checkKeyShape(key, 'compare key');
  if (typeof target !== 'string' || !COMPARE_TARGETS.has(target))
    throw invalid(`bad compare target ${String(target)}`);
  if (typeof op !== 'string' || !COMPARE_OPS.has(op)) throw invalid(`bad compare op ${String(op)}`);
  const t = target as Compare['target'];
  const o = op as Compare['op'];
  if (t === 'value') {
    if (o !== '=' && o !== '!=') throw invalid('a value compare takes = or !=');
    if (value === undefined) throw invalid('a value compare needs a value');
    checkValueDepth(value);
  } else if (t === 'exists') {
    if (o !== '=' && o !== '!=') throw invalid('an exists compare takes = or !=');
    if (typeof value !== 'boolean') throw invalid('an exists compare takes true or false');
  } else if (!isSafeNonNegative(value)) {
    throw invalid(`a ${t} compare takes a non-negative integer`);
  }
  return { key, target: t, op: o, value };
}

/**
 * evaluateCompare validates and evaluates a compare against the store (live at `now`, if
 * given). An absent key has version, createRevision and modRevision 0 (so `version = 0` tests
 * absence, as in etcd) and no value: `value = x` is false and `value != x` is true for it.
 * Values compare by deepEqualValues.
 */
export function evaluateCompare(store: SegmentStore, c: Compare, now?: number): boolean {
  const { key, target, op, value } = validateCompare(c);
  const item = now === undefined ? store.get(key) : store.getLive(key, now);
  if (target === 'exists') return (item !== undefined) === (op === '=' ? value : !value);
  if (target === 'value') {
    if (item === undefined) return op === '!=';
    return deepEqualValues(item.value, value) === (op === '=');
  }
  const actual = item === undefined ? 0 : item[target];
  const expected = value as number;
  switch (op) {
    case '=':
      return actual === expected;
    case '!=':
      return actual !== expected;
    case '<':
      return actual < expected;
    case '>':
      return actual > expected;
  }
}
