/**
 * The linearizability checker: the Wing & Gong search with Lowe's memoization, as Porcupine
 * does it (anishathalye/porcupine, checker.go), split per key by the model's `partition`.
 *
 * The search. A partition's ops become call and return entries sorted by time (a call
 * before a return at the same time) in a doubly linked list. The search walks the list
 * from its head: at a call, it tries to linearize that op next (the model's step must
 * accept the op's output from the current state); if so, it lifts the op's call and return
 * out of the list, pushes (op, old state) on a stack and restarts from the head. Reaching a
 * return means that op could not be linearized before it returned: the search backtracks
 * (pops the last op, puts its entries back, and tries the entry after it). Lifting and
 * putting back are O(1) pointer swaps (dancing links), on Int32Array links.
 *
 * Memoization. A (set of linearized ops, state) pair that was reached before cannot lead
 * anywhere new, so each one is cached and never explored twice. The set is a bitset of
 * Uint32Array words; its hash is the XOR of a fixed random 32-bit key per op (Zobrist
 * hashing), updated in O(1) when an op is linearized or undone. The cache is an open hash
 * table with chains in flat typed arrays (hash, next, bit words) and the states in one
 * array; a hit compares the full hash, then the words, then the states (model.equal).
 *
 * Unknown outcomes. An op whose return time is +Infinity (an `info` op) may take effect at
 * any point after its call, or never: the search succeeds as soon as every op with a finite
 * return is linearized, whatever is left.
 *
 * Bounds. Each partition has a budget of time (checked every 1024 iterations), of model
 * steps, and of cache memory; running out yields `unknown` for that partition, so the
 * checker never hangs. The worst case is exponential in the number of concurrent ops (the
 * problem is NP-complete); memoization makes the usual case near-linear.
 *
 * An invalid partition comes with an explanation: the longest linearizable prefix found,
 * the op whose return the search could never get past, and the ops that could have come
 * next with the model's verdict on each, from the prefix's final state.
 *
 * The algorithm does no I/O; the clock is injected (default `performance.now`).
 */
import type { Model, Operation } from './models/model.js';
import { combineVerdicts, type Verdict } from './verdict.js';

export type { Verdict } from './verdict.js';

/** UnknownReason says which budget ran out, or that the partition was skipped. */
export type UnknownReason = 'time-budget' | 'step-budget' | 'memory' | 'skipped';

/** CheckOptions bound and shape a check; every budget is per partition. */
export interface CheckOptions {
  /** Wall-clock budget per partition in ms (default unlimited). */
  readonly timeBudgetMs?: number;
  /** Model-step budget per partition (default unlimited); deterministic, for tests. */
  readonly maxSteps?: number;
  /** Memory budget for the caches of the partitions being searched, in bytes (estimated; default 256 MiB). */
  readonly cacheBytesMax?: number;
  /** The clock, in ms (default `performance.now`). */
  readonly clock?: () => number;
  /** Stop after the first invalid partition; the rest are `unknown` ('skipped'). Default false. */
  readonly stopOnInvalid?: boolean;
  /** Include a valid partition's linearization (op ids in order). Default false. */
  readonly withLinearization?: boolean;
}

/** ExplainedOp is an op as a report shows it. */
export interface ExplainedOp {
  readonly id: number;
  readonly process: number | string;
  readonly description: string;
  readonly origin?: string;
}

/** ExplainedStep is one op of a linearization and the state after it. */
export interface ExplainedStep extends ExplainedOp {
  readonly stateAfter: string;
}

/** Candidate is an op that could have been linearized next, and whether the model accepts it there. */
export interface Candidate extends ExplainedOp {
  /** True when the model rejects the op from the prefix's final state. */
  readonly rejected: boolean;
}

/**
 * Explanation tells why a partition is not linearizable: after the longest linearizable
 * prefix found, the blocked op's return came, and no candidate could bring the search past it.
 */
export interface Explanation {
  /** How many ops the longest linearizable prefix has. */
  readonly prefixLength: number;
  /** The prefix's last steps (at most EXPLAIN_TAIL), with the states after them. */
  readonly prefixTail: readonly ExplainedStep[];
  /** The state after the prefix. */
  readonly state: string;
  /** The op that returned before it (or anything else needed) could be linearized. */
  readonly blocked: ExplainedOp;
  /** The ops that could have come next (at most EXPLAIN_CANDIDATES), with the model's verdict. */
  readonly candidates: readonly Candidate[];
  /** How many candidates there were in all. */
  readonly candidateCount: number;
}

/** PartitionResult is the verdict on one partition (one key). */
export interface PartitionResult {
  readonly key: string;
  readonly valid: Verdict;
  readonly ops: number;
  /** Model steps taken. */
  readonly steps: number;
  /** (linearized set, state) pairs cached. */
  readonly cacheEntries: number;
  readonly elapsedMs: number;
  readonly unknownReason?: UnknownReason;
  /** When valid and asked for: the op ids in linearization order (ops left out never took effect). */
  readonly linearization?: readonly number[];
  /** When invalid: why. */
  readonly explanation?: Explanation;
}

/** CheckResult is the verdict on a whole history. */
export interface CheckResult {
  /** False if any partition is invalid, else unknown if any is unknown, else true. */
  readonly valid: Verdict;
  readonly ops: number;
  readonly elapsedMs: number;
  readonly partitions: readonly PartitionResult[];
}

/** EXPLAIN_TAIL and EXPLAIN_CANDIDATES bound an explanation's size. */
export const EXPLAIN_TAIL = 12;
export const EXPLAIN_CANDIDATES = 16;

const DEFAULT_CACHE_BYTES_MAX = 256 * 1024 * 1024;
/** Estimated bytes per cached state besides its bit words (hash, link, state reference and object). */
const ENTRY_OVERHEAD_BYTES = 48;
const BUDGET_CHECK_MASK = 1023;

const defaultClock = (): number => performance.now();

/**
 * checkOperations checks a history of operations against a model, one partition per key.
 *
 * The partitions are searched in rounds, like Porcupine's parallel searches: each round
 * gives every unfinished partition a slice of iterations, and the slice doubles each round.
 * So an easy violation in one key is found quickly even when another key's search is long,
 * and with `stopOnInvalid` the long one is abandoned. Every partition keeps its own time
 * and step budgets; the cache memory budget covers all partitions still being searched
 * (past it, the largest search is given up as unknown).
 */
export function checkOperations<S, I, O>(
  model: Model<S, I, O>,
  ops: readonly Operation<I, O>[],
  options: CheckOptions = {},
): CheckResult {
  const clock = options.clock ?? defaultClock;
  const started = clock();
  const searches = model
    .partition(ops)
    .map((part) => new PartitionSearch(model, part, part[0]?.key ?? '', options));
  const bytesMax = options.cacheBytesMax ?? DEFAULT_CACHE_BYTES_MAX;
  let live = searches.filter((s) => !s.finished);
  let slice = FIRST_SLICE_ITERATIONS;
  while (live.length > 0) {
    for (const s of live) {
      s.run(slice);
      if (s.finished && s.verdict === false && options.stopOnInvalid) {
        for (const other of searches) if (!other.finished) other.abandon('skipped');
        live = [];
        break;
      }
    }
    live = live.filter((s) => !s.finished);
    let bytes = live.reduce((sum, s) => sum + s.cacheBytes(), 0);
    while (bytes > bytesMax && live.length > 0) {
      const largest = live.reduce((a, b) => (b.cacheBytes() > a.cacheBytes() ? b : a));
      bytes -= largest.cacheBytes();
      largest.abandon('memory');
      live = live.filter((s) => s !== largest);
    }
    slice *= 2;
  }
  const partitions = searches.map((s) => s.result());
  return {
    valid: combineVerdicts(partitions.map((p) => p.valid)),
    ops: ops.length,
    elapsedMs: clock() - started,
    partitions,
  };
}

/** checkPartition searches one partition's ops (all of one key) to the end or a budget. */
export function checkPartition<S, I, O>(
  model: Model<S, I, O>,
  ops: readonly Operation<I, O>[],
  key: string,
  options: CheckOptions = {},
): PartitionResult {
  const s = new PartitionSearch(model, ops, key, options);
  while (!s.finished) s.run(Number.POSITIVE_INFINITY);
  return s.result();
}

/** zobristKeys gives n fixed pseudo-random 32-bit keys (splitmix32 from a constant seed). */
function zobristKeys(n: number): Int32Array {
  const keys = new Int32Array(n);
  let s = 0x2545f491;
  for (let i = 0; i < n; i++) {
    s = (s + 0x9e3779b9) | 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    keys[i] = z ^ (z >>> 16);
  }
  return keys;
}

const FIRST_SLICE_ITERATIONS = 1 << 14;

/**
 * PartitionSearch is the resumable search over one partition: `run` advances it by a number
 * of iterations, and it keeps its list, stack and cache between runs. The hot loop works on
 * local copies of the fields and writes them back when it pauses.
 */
export class PartitionSearch<S, I, O> {
  /** True once the verdict is known (or the search was abandoned). */
  finished = false;
  /** The verdict so far ('unknown' until finished true or false). */
  verdict: Verdict = 'unknown';
  private unknownReason: UnknownReason | undefined;

  private readonly model: Model<S, I, O>;
  private readonly ops: readonly Operation<I, O>[];
  private readonly key: string;
  private readonly clock: () => number;
  private readonly timeBudgetMs: number;
  private readonly maxSteps: number;
  private readonly withLinearization: boolean;
  private readonly cacheEntriesMax: number;
  private elapsedMs = 0;

  // The entry list: node 0 is the head, 1..2n the entries in time order, 2n+1 the tail.
  private readonly next: Int32Array;
  private readonly prev: Int32Array;
  /** nodeOp[node] is the op of an entry node. */
  private readonly nodeOp: Int32Array;
  /** match[node] is a call node's return node, and -1 for a return node. */
  private readonly match: Int32Array;
  /** finite[op] is 1 when the op has a finite return (it must be linearized). */
  private readonly finite: Uint8Array;
  private readonly inputs: I[];
  private readonly outputs: (O | undefined)[];
  private readonly zobrist: Int32Array;
  private readonly words: number;

  // Search state. Invariant: bits and zHash describe exactly the ops on the stack.
  private finiteLeft = 0;
  private readonly bits: Uint32Array;
  private zHash = 0;
  private state: S;
  private entry: number;
  private depth = 0;
  private readonly stackNode: Int32Array;
  private readonly stackState: (S | undefined)[];
  private steps = 0;

  // The cache: a chained hash table over flat arrays; table holds entry index + 1 (0 = empty).
  private tableMask = 1023;
  private table = new Int32Array(1024);
  private capacity = 1024;
  private cacheHash = new Int32Array(1024);
  private cacheNext = new Int32Array(1024);
  private cacheBits: Uint32Array;
  private cacheState: S[] = [];
  private cacheCount = 0;

  // The deepest point where the search had to backtrack, for the explanation.
  private bestDepth = -1;
  private bestPrefix: number[] = [];
  private bestBlocked = -1;
  private bestCandidates: number[] = [];

  constructor(model: Model<S, I, O>, ops: readonly Operation<I, O>[], key: string, options: CheckOptions) {
    this.model = model;
    this.ops = ops;
    this.key = key;
    this.clock = options.clock ?? defaultClock;
    this.timeBudgetMs = options.timeBudgetMs ?? Number.POSITIVE_INFINITY;
    this.maxSteps = options.maxSteps ?? Number.POSITIVE_INFINITY;
    this.withLinearization = options.withLinearization ?? false;
    const n = ops.length;
    this.words = Math.max(1, (n + 31) >>> 5);
    this.cacheEntriesMax = Math.max(
      1024,
      Math.floor((options.cacheBytesMax ?? DEFAULT_CACHE_BYTES_MAX) / this.entryBytes()),
    );

    for (const op of ops)
      if (!(op.call <= op.ret))
        throw new Error(`linearizability: op ${op.id} returns (${op.ret}) before its call`);
    // Entries: 2i is op i's call, 2i+1 its return; sorted by time, calls first on ties.
    const timeOf = (e: number): number => {
      const op = ops[e >> 1]!;
      return e & 1 ? op.ret : op.call;
    };
    const order = Array.from({ length: 2 * n }, (_, i) => i).sort((a, b) => {
      const ta = timeOf(a);
      const tb = timeOf(b);
      if (ta !== tb) return ta < tb ? -1 : 1;
      if ((a & 1) !== (b & 1)) return (a & 1) - (b & 1);
      return a - b;
    });
    const tail = 2 * n + 1;
    this.next = new Int32Array(tail + 1);
    this.prev = new Int32Array(tail + 1);
    this.nodeOp = new Int32Array(tail + 1);
    this.match = new Int32Array(tail + 1).fill(-1);
    const returnNode = new Int32Array(n);
    for (let k = 0; k < 2 * n; k++) if (order[k]! & 1) returnNode[order[k]! >> 1] = k + 1;
    for (let k = 0; k < 2 * n; k++) {
      const e = order[k]!;
      this.nodeOp[k + 1] = e >> 1;
      if (!(e & 1)) this.match[k + 1] = returnNode[e >> 1]!;
    }
    for (let node = 0; node <= tail; node++) {
      this.next[node] = node === tail ? tail : node + 1;
      this.prev[node] = node === 0 ? 0 : node - 1;
    }

    this.finite = new Uint8Array(n);
    for (let i = 0; i < n; i++)
      if (ops[i]!.ret !== Number.POSITIVE_INFINITY) {
        this.finite[i] = 1;
        this.finiteLeft++;
      }
    this.inputs = ops.map((o) => o.input);
    this.outputs = ops.map((o) => o.output);
    this.zobrist = zobristKeys(n);
    this.bits = new Uint32Array(this.words);
    this.cacheBits = new Uint32Array(this.capacity * this.words);
    this.stackNode = new Int32Array(n + 1);
    this.stackState = new Array(n + 1);
    this.state = model.init();
    this.entry = this.next[0]!;
    if (this.finiteLeft === 0) this.finish(true);
  }

  private entryBytes(): number {
    return this.words * 4 + ENTRY_OVERHEAD_BYTES;
  }

  /** cacheBytes estimates the memory the cache holds. */
  cacheBytes(): number {
    return this.finished ? 0 : this.cacheCount * this.entryBytes();
  }

  /** abandon gives the search up as unknown, and frees its cache. */
  abandon(reason: UnknownReason): void {
    if (this.finished) return;
    this.unknownReason = reason;
    this.finish('unknown');
  }

  private finish(verdict: Verdict): void {
    this.finished = true;
    this.verdict = verdict;
    // The cache is not needed any more; let it go.
    this.table = new Int32Array(0);
    this.cacheHash = new Int32Array(0);
    this.cacheNext = new Int32Array(0);
    this.cacheBits = new Uint32Array(0);
    this.cacheState = [];
  }

  private grow(): void {
    const words = this.words;
    this.capacity *= 2;
    const h2 = new Int32Array(this.capacity);
    h2.set(this.cacheHash);
    this.cacheHash = h2;
    const n2 = new Int32Array(this.capacity);
    n2.set(this.cacheNext);
    this.cacheNext = n2;
    const b2 = new Uint32Array(this.capacity * words);
    b2.set(this.cacheBits);
    this.cacheBits = b2;
    if (this.capacity > this.tableMask + 1) {
      this.tableMask = this.capacity - 1;
      this.table = new Int32Array(this.capacity);
      for (let e = 0; e < this.cacheCount; e++) {
        const slot = slotOf(this.cacheHash[e]!, this.tableMask);
        this.cacheNext[e] = this.table[slot]! - 1;
        this.table[slot] = e + 1;
      }
    }
  }

  /** insertIfAbsent caches (bits, state) under hash h; false when it was already there. */
  private insertIfAbsent(h: number, state: S): boolean {
    const words = this.words;
    const bits = this.bits;
    let slot = slotOf(h, this.tableMask);
    const cacheHash = this.cacheHash;
    const cacheBits = this.cacheBits;
    const cacheNext = this.cacheNext;
    for (let e = this.table[slot]! - 1; e >= 0; e = cacheNext[e]!) {
      if (cacheHash[e] !== h) continue;
      const base = e * words;
      let w = 0;
      while (w < words && cacheBits[base + w] === bits[w]) w++;
      if (w === words && this.model.equal(this.cacheState[e]!, state)) return false;
    }
    if (this.cacheCount === this.capacity) {
      this.grow();
      slot = slotOf(h, this.tableMask);
    }
    const e = this.cacheCount++;
    this.cacheHash[e] = h;
    this.cacheBits.set(bits, e * words);
    this.cacheState[e] = state;
    this.cacheNext[e] = this.table[slot]! - 1;
    this.table[slot] = e + 1;
    return true;
  }

  /**
   * run advances the search by up to `iterations` iterations (or until a budget runs out),
   * and sets `finished` and `verdict` when it is done.
   */
  run(iterations: number): void {
    if (this.finished) return;
    const started = this.clock();
    const deadline = started + (this.timeBudgetMs - this.elapsedMs);
    const {
      model,
      next,
      prev,
      nodeOp,
      match,
      finite,
      inputs,
      outputs,
      zobrist,
      bits,
      stackNode,
      stackState,
    } = this;
    const maxSteps = this.maxSteps;
    let { state, entry, depth, steps, zHash, finiteLeft } = this;
    let done: Verdict | undefined;
    let i = 0;
    for (;;) {
      if (finiteLeft === 0) {
        done = true;
        break;
      }
      if ((++i & BUDGET_CHECK_MASK) === 0) {
        if (steps >= maxSteps) {
          this.unknownReason = 'step-budget';
          done = 'unknown';
          break;
        }
        if (this.clock() > deadline) {
          this.unknownReason = 'time-budget';
          done = 'unknown';
          break;
        }
        if (i >= iterations) break;
      }
      const ret = match[entry]!;
      if (ret >= 0) {
        // A call: try to linearize its op now.
        const op = nodeOp[entry]!;
        steps++;
        const r = model.step(state, inputs[op]!, outputs[op]);
        if (r[0]) {
          const newState = r[1];
          const word = op >>> 5;
          const bit = 1 << (op & 31);
          bits[word]! |= bit;
          const z = zHash ^ zobrist[op]!;
          if (this.insertIfAbsent((z ^ Math.imul(model.hash(newState), 0x9e3779b1)) | 0, newState)) {
            stackNode[depth] = entry;
            stackState[depth] = state;
            depth++;
            state = newState;
            zHash = z;
            finiteLeft -= finite[op]!;
            // Lift the call and its return out of the list.
            next[prev[entry]!] = next[entry]!;
            prev[next[entry]!] = prev[entry]!;
            next[prev[ret]!] = next[ret]!;
            prev[next[ret]!] = prev[ret]!;
            entry = next[0]!;
            if (this.cacheCount >= this.cacheEntriesMax) {
              this.unknownReason = 'memory';
              done = 'unknown';
              break;
            }
            continue;
          }
          bits[word]! &= ~bit;
        }
        entry = next[entry]!;
        continue;
      }
      // A return: its op could not be linearized before it. (The tail is never reached while
      // an op with a finite return is left, since that return comes first.)
      if (depth > this.bestDepth) this.recordBest(depth, entry);
      if (depth === 0) {
        done = false;
        break;
      }
      depth--;
      const call = stackNode[depth]!;
      state = stackState[depth]!;
      stackState[depth] = undefined;
      const op = nodeOp[call]!;
      bits[op >>> 5]! &= ~(1 << (op & 31));
      zHash ^= zobrist[op]!;
      finiteLeft += finite[op]!;
      // Put the return back, then the call (the reverse of lifting).
      const r = match[call]!;
      next[prev[r]!] = r;
      prev[next[r]!] = r;
      next[prev[call]!] = call;
      prev[next[call]!] = call;
      entry = next[call]!;
    }
    Object.assign(this, { state, entry, depth, steps, zHash, finiteLeft });
    this.elapsedMs += this.clock() - started;
    if (done !== undefined) this.finish(done);
  }

  private recordBest(depth: number, blockedNode: number): void {
    const { next, match, nodeOp, stackNode } = this;
    this.bestDepth = depth;
    this.bestPrefix = Array.from(stackNode.subarray(0, depth), (node) => nodeOp[node]!);
    this.bestBlocked = nodeOp[blockedNode]!;
    const candidates: number[] = [];
    for (let c = next[0]!; c !== blockedNode; c = next[c]!) if (match[c]! >= 0) candidates.push(nodeOp[c]!);
    this.bestCandidates = candidates;
  }

  /** result reports the search (final once `finished`). */
  result(): PartitionResult {
    const out: { -readonly [K in keyof PartitionResult]: PartitionResult[K] } = {
      key: this.key,
      valid: this.verdict,
      ops: this.ops.length,
      steps: this.steps,
      cacheEntries: this.cacheCount,
      elapsedMs: this.elapsedMs,
    };
    if (this.unknownReason !== undefined) out.unknownReason = this.unknownReason;
    if (this.verdict === true && this.withLinearization)
      out.linearization = Array.from(
        this.stackNode.subarray(0, this.depth),
        (node) => this.ops[this.nodeOp[node]!]!.id,
      );
    if (this.verdict === false)
      out.explanation = explain(this.model, this.ops, this.bestPrefix, this.bestBlocked, this.bestCandidates);
    return out;
  }
}

function slotOf(h: number, mask: number): number {
  return (h ^ (h >>> 15)) & mask;
}

function explainOp<I, O>(model: Model<unknown, I, O>, op: Operation<I, O>): ExplainedOp {
  const out: ExplainedOp = {
    id: op.id,
    process: op.process,
    description: model.describeOperation(op.input, op.output),
  };
  return op.origin === undefined ? out : { ...out, origin: op.origin };
}

function explain<S, I, O>(
  model: Model<S, I, O>,
  ops: readonly Operation<I, O>[],
  prefix: readonly number[],
  blocked: number,
  candidates: readonly number[],
): Explanation {
  const m = model as unknown as Model<unknown, I, O>;
  let state = model.init();
  const tail: ExplainedStep[] = [];
  for (let i = 0; i < prefix.length; i++) {
    const op = ops[prefix[i]!]!;
    const [ok, next] = model.step(state, op.input, op.output);
    if (!ok) throw new Error('linearizability: the recorded prefix does not replay');
    state = next;
    if (i >= prefix.length - EXPLAIN_TAIL)
      tail.push({ ...explainOp(m, op), stateAfter: model.describeState(state) });
  }
  return {
    prefixLength: prefix.length,
    prefixTail: tail,
    state: model.describeState(state),
    blocked: explainOp(m, ops[blocked]!),
    candidates: candidates.slice(0, EXPLAIN_CANDIDATES).map((c) => {
      const op = ops[c]!;
      return { ...explainOp(m, op), rejected: !model.step(state, op.input, op.output)[0] };
    }),
    candidateCount: candidates.length,
  };
}

function opLabel(op: ExplainedOp): string {
  return `op ${op.id} (process ${op.process}${op.origin === undefined ? '' : `, ${op.origin}`}) ${op.description}`;
}

/** formatExplanation renders an explanation as indented report lines. */
export function formatExplanation(e: Explanation, indent = '  '): string[] {
  const lines: string[] = [];
  lines.push(
    `${indent}longest linearizable prefix: ${e.prefixLength} op(s)${
      e.prefixLength > e.prefixTail.length ? `, the last ${e.prefixTail.length}:` : ':'
    }`,
  );
  for (const s of e.prefixTail) lines.push(`${indent}  ${opLabel(s)}  => ${s.stateAfter}`);
  lines.push(`${indent}state after it: ${e.state}`);
  lines.push(`${indent}then ${opLabel(e.blocked)} returned, and no op could be linearized next:`);
  for (const c of e.candidates)
    lines.push(
      `${indent}  ${opLabel(c)}: ${c.rejected ? 'impossible from this state' : 'leads to a dead end'}`,
    );
  if (e.candidateCount > e.candidates.length)
    lines.push(`${indent}  ... and ${e.candidateCount - e.candidates.length} more`);
  return lines;
}

/** formatResult renders a check result as report lines (one summary line, then details). */
export function formatResult(result: CheckResult, modelName: string): string[] {
  const verdict = result.valid === true ? 'valid' : result.valid === false ? 'INVALID' : 'unknown';
  const bad = result.partitions.filter((p) => p.valid === false);
  const unknown = result.partitions.filter((p) => p.valid === 'unknown' && p.unknownReason !== 'skipped');
  const skipped =
    result.partitions.length -
    bad.length -
    unknown.length -
    result.partitions.filter((p) => p.valid === true).length;
  const lines = [
    `linearizability (${modelName}): ${verdict} — ${result.ops} op(s) in ${result.partitions.length} key(s), ` +
      `${bad.length} invalid, ${unknown.length} unknown${skipped > 0 ? `, ${skipped} unfinished` : ''}, ` +
      `${result.elapsedMs.toFixed(1)} ms`,
  ];
  for (const p of bad) {
    lines.push(`key ${JSON.stringify(p.key)}: not linearizable (${p.ops} ops, ${p.steps} steps)`);
    if (p.explanation !== undefined) lines.push(...formatExplanation(p.explanation));
  }
  for (const p of unknown)
    lines.push(`key ${JSON.stringify(p.key)}: unknown (${p.unknownReason}; ${p.ops} ops, ${p.steps} steps)`);
  return lines;
}
