/**
 * Property tests (fast-check) for the Raft core's building blocks, each checked against a
 * deliberately dumb reference, in the manner of etcd-io/raft's quorum/quick_test.go:
 * quorum maths, the in-flight window, MemoryStorage, the conf-change codec, and the Log
 * Matching invariants of a whole 3-node cluster under random network schedules.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  COMMIT_INDEX_INFINITE,
  type ConfChange,
  type ConfChangeSingle,
  ConfChangeTransition,
  ConfChangeType,
  type ConfState,
  decodeConfChange,
  ENTRY_OVERHEAD_BYTES,
  type Entry,
  EntryType,
  encodeConfChange,
  Inflights,
  isStorageError,
  jointCommittedIndex,
  jointVoteResult,
  MemoryStorage,
  majorityCommittedIndex,
  majorityVoteResult,
  NONE,
  type NodeId,
  type Snapshot,
  StorageErrorKind,
  VoteResult,
} from '../../src/raft/index.js';
import { checkLogMatching, SafetyChecker } from './helpers/invariants.js';
import { Network } from './helpers/network.js';

// ======================================================================== quorum

/** A voter set: ids 1..9, possibly empty. */
const voterSet = fc.uniqueArray(fc.integer({ min: 1, max: 9 }), { maxLength: 7 });

/** Acknowledged indexes for some ids (voters or not); missing ids count as 0. */
const ackMap = fc
  .array(fc.tuple(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 20 })), { maxLength: 12 })
  .map((pairs) => new Map(pairs));

/** Votes for some ids: true = granted, false = rejected; missing ids have not answered. */
const voteMap = fc
  .array(fc.tuple(fc.integer({ min: 1, max: 12 }), fc.boolean()), { maxLength: 12 })
  .map((pairs) => new Map(pairs));

function quorumOf(n: number): number {
  return Math.floor(n / 2) + 1;
}

/** refMajorityCommitted sorts the acked indexes ascending and picks the quorum-th largest. */
function refMajorityCommitted(voters: readonly NodeId[], acked: ReadonlyMap<NodeId, number>): number {
  if (voters.length === 0) return COMMIT_INDEX_INFINITE;
  const sorted = voters.map((id) => acked.get(id) ?? 0).sort((a, b) => a - b);
  return sorted[voters.length - quorumOf(voters.length)]!;
}

/**
 * refJointCommitted tries every candidate index and keeps the largest one that each
 * non-empty half has on a majority (an empty half accepts anything).
 */
function refJointCommitted(
  halves: readonly (readonly NodeId[])[],
  acked: ReadonlyMap<NodeId, number>,
): number {
  const candidates = [0, COMMIT_INDEX_INFINITE, ...acked.values()];
  let best = -1;
  for (const v of candidates) {
    const ok = halves.every(
      (h) => h.length === 0 || h.filter((id) => (acked.get(id) ?? 0) >= v).length >= quorumOf(h.length),
    );
    if (ok && v > best) best = v;
  }
  return best;
}

/**
 * refVoteResult decides from the definition: won if the granted votes already make a
 * majority of every half, lost if not even every missing vote could make one, else pending.
 */
function refVoteResult(
  halves: readonly (readonly NodeId[])[],
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  const wins = (missingVotes: boolean): boolean =>
    halves.every(
      (h) => h.length === 0 || h.filter((id) => votes.get(id) ?? missingVotes).length >= quorumOf(h.length),
    );
  if (wins(false)) return VoteResult.Won;
  if (!wins(true)) return VoteResult.Lost;
  return VoteResult.Pending;
}

describe('quorum maths against sort-based references', () => {
  it('majorityCommittedIndex is the largest index acked by a majority', () => {
    fc.assert(
      fc.property(voterSet, ackMap, (voters, acked) => {
        expect(majorityCommittedIndex(new Set(voters), (id) => acked.get(id))).toBe(
          refMajorityCommitted(voters, acked),
        );
      }),
      { numRuns: 2000 },
    );
  });

  it('majorityVoteResult follows the definition of won, lost and pending', () => {
    fc.assert(
      fc.property(voterSet, voteMap, (voters, votes) => {
        expect(majorityVoteResult(new Set(voters), votes)).toBe(refVoteResult([voters], votes));
      }),
      { numRuns: 2000 },
    );
  });

  it('jointCommittedIndex is the largest index both halves have on a majority', () => {
    fc.assert(
      fc.property(voterSet, voterSet, ackMap, (incoming, outgoing, acked) => {
        expect(jointCommittedIndex([new Set(incoming), new Set(outgoing)], (id) => acked.get(id))).toBe(
          refJointCommitted([incoming, outgoing], acked),
        );
      }),
      { numRuns: 2000 },
    );
  });

  it('jointVoteResult needs both halves to win and loses when either cannot', () => {
    fc.assert(
      fc.property(voterSet, voterSet, voteMap, (incoming, outgoing, votes) => {
        expect(jointVoteResult([new Set(incoming), new Set(outgoing)], votes)).toBe(
          refVoteResult([incoming, outgoing], votes),
        );
      }),
      { numRuns: 2000 },
    );
  });

  it('the references agree with a few hand-computed cases (so they are not both wrong)', () => {
    const acked = new Map([
      [1, 5],
      [2, 3],
      [3, 9],
      [4, 1],
    ]);
    expect(refMajorityCommitted([1, 2, 3], acked)).toBe(5);
    expect(refMajorityCommitted([1, 2, 3, 4], acked)).toBe(3);
    expect(
      refJointCommitted(
        [
          [1, 2, 3],
          [3, 4],
        ],
        acked,
      ),
    ).toBe(1);
    expect(refJointCommitted([[], []], acked)).toBe(COMMIT_INDEX_INFINITE);
    expect(refVoteResult([[1, 2, 3]], new Map([[1, true]]))).toBe(VoteResult.Pending);
    expect(
      refVoteResult(
        [[1, 2, 3]],
        new Map([
          [1, false],
          [2, false],
        ]),
      ),
    ).toBe(VoteResult.Lost);
    expect(
      refVoteResult(
        [[1, 2, 3], []],
        new Map([
          [1, true],
          [3, true],
        ]),
      ),
    ).toBe(VoteResult.Won);
  });
});

// ======================================================================== Inflights

type InflightOp =
  | { readonly op: 'add'; readonly gap: number; readonly size: number }
  | { readonly op: 'free'; readonly delta: number }
  | { readonly op: 'reset' };

const inflightOp: fc.Arbitrary<InflightOp> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('add' as const),
      gap: fc.integer({ min: -2, max: 5 }),
      size: fc.integer({ min: 0, max: 40 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant('free' as const), delta: fc.integer({ min: -6, max: 4 }) }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('reset' as const) }) },
);

/** InflightsModel is a plain array of (index, size), freed by filtering. */
class InflightsModel {
  items: { index: number; size: number }[] = [];
  constructor(
    readonly countMax: number,
    readonly bytesMax: number,
  ) {}
  add(index: number, size: number): void {
    if (this.items.length >= this.countMax) throw new Error('full');
    const last = this.items[this.items.length - 1];
    if (last && index <= last.index) throw new Error('not increasing');
    this.items.push({ index, size });
  }
  freeLE(index: number): void {
    this.items = this.items.filter((x) => x.index > index);
  }
  bytes(): number {
    return this.items.reduce((n, x) => n + x.size, 0);
  }
  full(): boolean {
    return this.items.length >= this.countMax || this.bytes() >= this.bytesMax;
  }
}

function outcome(f: () => void): string {
  try {
    f();
    return 'ok';
  } catch {
    return 'threw';
  }
}

describe('Inflights against a naive array model', () => {
  it('add / freeLE / reset sequences agree on size, bytes, fullness and refusals', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 120 }),
        fc.array(inflightOp, { maxLength: 120 }),
        (countMax, bytesMax, ops) => {
          const real = new Inflights(countMax, bytesMax);
          const model = new InflightsModel(countMax, bytesMax);
          let last = 0;
          for (const o of ops) {
            if (o.op === 'add') {
              const index = last + o.gap;
              const a = outcome(() => real.add(index, o.size));
              const b = outcome(() => model.add(index, o.size));
              expect(a).toBe(b);
              if (b === 'ok') last = index;
            } else if (o.op === 'free') {
              real.freeLE(last + o.delta);
              model.freeLE(last + o.delta);
            } else {
              real.reset();
              model.items = [];
            }
            expect(real.size()).toBe(model.items.length);
            expect(real.sizeBytes()).toBe(model.bytes());
            expect(real.full()).toBe(model.full());
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('refuses non-positive limits', () => {
    expect(() => new Inflights(0, 10)).toThrow(RangeError);
    expect(() => new Inflights(10, 0)).toThrow(RangeError);
  });
});

// ======================================================================== MemoryStorage

type StorageOp =
  | { readonly op: 'append'; readonly from: number; readonly terms: readonly number[] }
  | { readonly op: 'compact'; readonly at: number }
  | { readonly op: 'createSnapshot'; readonly at: number; readonly size: number }
  | { readonly op: 'applySnapshot'; readonly at: number; readonly term: number }
  | { readonly op: 'setHardState'; readonly term: number; readonly commit: number };

/** Positions are given relative to the model's last index, so that most land near the log. */
const storageOp: fc.Arbitrary<StorageOp> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant('append' as const),
      from: fc.integer({ min: -6, max: 2 }),
      terms: fc.array(fc.integer({ min: 1, max: 6 }), { maxLength: 6 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant('compact' as const), at: fc.integer({ min: -8, max: 2 }) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('createSnapshot' as const),
      at: fc.integer({ min: -8, max: 2 }),
      size: fc.integer({ min: 0, max: 5 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('applySnapshot' as const),
      at: fc.integer({ min: -4, max: 6 }),
      term: fc.integer({ min: 1, max: 6 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('setHardState' as const),
      term: fc.integer({ min: 0, max: 6 }),
      commit: fc.integer({ min: 0, max: 6 }),
    }),
  },
);

type Outcome = 'ok' | 'compacted' | 'unavailable' | 'range' | 'other';

function classify(err: unknown): Outcome {
  if (isStorageError(err, StorageErrorKind.Compacted)) return 'compacted';
  if (isStorageError(err, StorageErrorKind.Unavailable)) return 'unavailable';
  if (err instanceof RangeError) return 'range';
  return 'other';
}

function attempt<T>(f: () => T): { outcome: Outcome; value?: T } {
  try {
    return { outcome: 'ok', value: f() };
  } catch (err) {
    return { outcome: classify(err) };
  }
}

class ModelError extends Error {
  constructor(readonly outcome: Outcome) {
    super(outcome);
  }
}

/**
 * StorageModel is a naive MemoryStorage: the dummy point (index and term of the entry
 * before the first retained one), the retained entries in an array, and the snapshot.
 */
class StorageModel {
  dummyIndex = 0;
  dummyTerm = 0;
  ents: Entry[] = [];
  snap: Snapshot;

  /** The model starts where the real storage starts (a bootstrapped one has an initial snapshot). */
  constructor(start: { readonly index: number; readonly term: number; readonly snap: Snapshot }) {
    this.dummyIndex = start.index;
    this.dummyTerm = start.term;
    this.snap = start.snap;
  }
  first(): number {
    return this.dummyIndex + 1;
  }
  last(): number {
    return this.dummyIndex + this.ents.length;
  }
  term(i: number): number {
    if (i < this.dummyIndex) throw new ModelError('compacted');
    if (i > this.last()) throw new ModelError('unavailable');
    if (i === this.dummyIndex) return this.dummyTerm;
    return this.ents.find((e) => e.index === i)!.term;
  }
  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo <= this.dummyIndex) throw new ModelError('compacted');
    if (hi > this.last() + 1) throw new ModelError('unavailable');
    const out: Entry[] = [];
    let size = 0;
    for (const e of this.ents) {
      if (e.index < lo || e.index >= hi) continue;
      size += e.data.length + ENTRY_OVERHEAD_BYTES;
      if (out.length > 0 && size > maxBytes) break;
      out.push(e);
    }
    return out;
  }
  append(es: readonly Entry[]): void {
    const fresh = es.filter((e) => e.index >= this.first());
    if (fresh.length === 0) return;
    if (fresh[0]!.index > this.last() + 1) throw new ModelError('range');
    this.ents = [...this.ents.filter((e) => e.index < fresh[0]!.index), ...fresh];
  }
  compact(i: number): void {
    if (i <= this.dummyIndex) return;
    if (i > this.last()) throw new ModelError('range');
    this.dummyTerm = this.term(i);
    this.ents = this.ents.filter((e) => e.index > i);
    this.dummyIndex = i;
  }
  createSnapshot(i: number, confState: ConfState, data: Uint8Array): void {
    if (i <= this.snap.metadata.index) throw new ModelError('compacted');
    if (i > this.last()) throw new ModelError('range');
    this.snap = { metadata: { index: i, term: this.term(i), confState }, data };
  }
  applySnapshot(s: Snapshot): void {
    if (s.metadata.index <= this.snap.metadata.index) throw new ModelError('compacted');
    this.snap = s;
    this.dummyIndex = s.metadata.index;
    this.dummyTerm = s.metadata.term;
    this.ents = [];
  }
}

function modelAttempt<T>(f: () => T): { outcome: Outcome; value?: T } {
  try {
    return { outcome: 'ok', value: f() };
  } catch (err) {
    if (err instanceof ModelError) return { outcome: err.outcome };
    throw err;
  }
}

const CONF: ConfState = {
  voters: [1, 2, 3],
  learners: [],
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
};

function mkEntries(from: number, terms: readonly number[], tag: number): Entry[] {
  return terms.map((term, i) => ({
    index: from + i,
    term,
    type: EntryType.Normal,
    data: new Uint8Array((from + i + tag) % 7).fill(tag % 256),
  }));
}

describe('MemoryStorage against a naive model', () => {
  it('append (with overwrite), compact, createSnapshot and applySnapshot agree with the model', () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.array(storageOp, { maxLength: 60 }),
        fc.integer({ min: 0, max: 80 }),
        (bootstrapped, ops, maxBytes) => {
          const real = bootstrapped ? new MemoryStorage(CONF) : new MemoryStorage();
          const first = real.firstIndex() - 1;
          const model = new StorageModel({ index: first, term: real.term(first), snap: real.snapshot() });
          expect(real.initialState().confState).toEqual(
            bootstrapped ? CONF : real.snapshot().metadata.confState,
          );
          let tag = 0;
          for (const o of ops) {
            tag++;
            const base = model.last();
            let r: { outcome: Outcome };
            let m: { outcome: Outcome };
            switch (o.op) {
              case 'append': {
                const es = mkEntries(Math.max(1, base + o.from), o.terms, tag);
                r = attempt(() => real.append(es));
                m = modelAttempt(() => model.append(es));
                break;
              }
              case 'compact':
                r = attempt(() => real.compact(base + o.at));
                m = modelAttempt(() => model.compact(base + o.at));
                break;
              case 'createSnapshot': {
                const data = new Uint8Array(o.size).fill(tag % 256);
                r = attempt(() => real.createSnapshot(base + o.at, CONF, data));
                m = modelAttempt(() => model.createSnapshot(base + o.at, CONF, data));
                break;
              }
              case 'applySnapshot': {
                const s: Snapshot = {
                  metadata: { index: Math.max(0, base + o.at), term: o.term, confState: CONF },
                  data: new Uint8Array([tag % 256]),
                };
                r = attempt(() => real.applySnapshot(s));
                m = modelAttempt(() => model.applySnapshot(s));
                break;
              }
              case 'setHardState':
                real.setHardState({ term: o.term, vote: NONE, commit: o.commit });
                r = m = { outcome: 'ok' };
                expect(real.initialState().hardState).toEqual({ term: o.term, vote: NONE, commit: o.commit });
                break;
            }
            expect({ op: o, outcome: r.outcome }).toEqual({ op: o, outcome: m.outcome });
            // Every query agrees after every operation.
            expect(real.firstIndex()).toBe(model.first());
            expect(real.lastIndex()).toBe(model.last());
            expect(real.snapshot()).toEqual(model.snap);
            for (let i = model.dummyIndex - 2; i <= model.last() + 2; i++) {
              expect(attempt(() => real.term(i))).toEqual(modelAttempt(() => model.term(i)));
            }
            for (let lo = model.dummyIndex - 1; lo <= model.last() + 2; lo++) {
              for (let hi = lo; hi <= model.last() + 2; hi++) {
                expect(attempt(() => real.entries(lo, hi, maxBytes))).toEqual(
                  modelAttempt(() => model.entries(lo, hi, maxBytes)),
                );
              }
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('the model itself rejects what it should (so agreement is not vacuous)', () => {
    const m = new StorageModel({ index: 0, term: 0, snap: new MemoryStorage().snapshot() });
    m.append(mkEntries(1, [1, 1, 2], 0));
    expect(modelAttempt(() => m.append(mkEntries(5, [2], 0))).outcome).toBe('range');
    m.compact(2);
    expect(modelAttempt(() => m.term(1)).outcome).toBe('compacted');
    expect(modelAttempt(() => m.entries(2, 3, 100)).outcome).toBe('compacted');
    expect(modelAttempt(() => m.entries(3, 5, 100)).outcome).toBe('unavailable');
    expect(m.entries(3, 4, 0)).toHaveLength(1);
    m.append(mkEntries(3, [3, 3], 0));
    expect([m.first(), m.last(), m.term(2), m.term(4)]).toEqual([3, 4, 1, 3]);
  });
});

// ======================================================================== cluster log invariants

type ClusterOp =
  | { readonly op: 'propose' }
  | { readonly op: 'tick'; readonly node: NodeId }
  | { readonly op: 'tickAll' }
  | { readonly op: 'deliver'; readonly at: number }
  | { readonly op: 'deliverAll' }
  | { readonly op: 'drop'; readonly at: number }
  | { readonly op: 'duplicate'; readonly at: number }
  | { readonly op: 'isolate'; readonly node: NodeId }
  | { readonly op: 'heal' }
  | { readonly op: 'campaign'; readonly node: NodeId };

const node3 = fc.integer({ min: 1, max: 3 });
const queuePos = fc.nat({ max: 1000 });

const clusterOp: fc.Arbitrary<ClusterOp> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ op: 'propose' as const }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('tick' as const), node: node3 }) },
  { weight: 6, arbitrary: fc.constant({ op: 'tickAll' as const }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('deliver' as const), at: queuePos }) },
  { weight: 5, arbitrary: fc.constant({ op: 'deliverAll' as const }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('drop' as const), at: queuePos }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('duplicate' as const), at: queuePos }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('isolate' as const), node: node3 }) },
  { weight: 1, arbitrary: fc.constant({ op: 'heal' as const }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('campaign' as const), node: node3 }) },
);

function applyClusterOp(net: Network, o: ClusterOp, n: number): void {
  const q = net.queue.length;
  switch (o.op) {
    case 'propose': {
      const leader = net.leader();
      if (leader !== NONE) net.propose(leader, `v${n}`);
      return;
    }
    case 'tick':
      net.tick(1, [o.node]);
      return;
    case 'tickAll':
      net.tick(1);
      return;
    case 'deliver':
      if (q > 0) net.deliverAt(o.at % q);
      return;
    case 'deliverAll':
      net.deliverAll();
      return;
    case 'drop':
      if (q > 0) net.dropAt(o.at % q);
      return;
    case 'duplicate':
      if (q > 0) net.duplicateAt(o.at % q);
      return;
    case 'isolate':
      net.isolate(o.node);
      return;
    case 'heal':
      net.heal();
      return;
    case 'campaign':
      net.campaign(o.node);
      return;
  }
}

/** checkCommittedPrefixes asserts that every two replicas agree on the entries both know committed. */
function checkCommittedPrefixes(net: Network): void {
  const ids = net.ids();
  for (const a of ids) {
    for (const b of ids) {
      if (a >= b) continue;
      const upTo = Math.min(net.node(a).status().commit, net.node(b).status().commit);
      for (let i = 1; i <= upTo; i++) {
        const ta = net.replica(a).termAt(i);
        const tb = net.replica(b).termAt(i);
        if (ta === undefined || tb === undefined) continue;
        if (ta !== tb)
          throw new Error(`committed entry ${i}: replica ${a} has term ${ta}, replica ${b} has ${tb}`);
      }
    }
  }
}

describe('log invariants of a 3-node cluster under random schedules', () => {
  it('after every step: Log Matching holds, committed prefixes agree, commit indexes never decrease', () => {
    let leadersSeen = 0;
    let commitsSeen = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.boolean(),
        fc.array(clusterOp, { minLength: 30, maxLength: 250, size: 'max' }),
        (seed, preVote, ops) => {
          const net = new Network({
            voters: [1, 2, 3],
            seed,
            config: { preVote, checkQuorum: preVote, electionTicks: 5, heartbeatTicks: 1 },
          });
          const checker = new SafetyChecker();
          ops.forEach((o, n) => {
            applyClusterOp(net, o, n);
            checkLogMatching(net);
            checkCommittedPrefixes(net);
            checker.checkCommitMonotonic(net);
            checker.checkElectionSafety(net);
          });
          leadersSeen += checker.leaderOf.size;
          commitsSeen += Math.max(...net.ids().map((id) => net.node(id).status().commit));
        },
      ),
      { numRuns: 200 },
    );
    // The schedules did elect leaders and commit entries (the checks were not vacuous).
    expect(leadersSeen).toBeGreaterThan(150);
    expect(commitsSeen).toBeGreaterThan(400);
  });

  it('the Log Matching check catches a forged divergence (it can fail)', () => {
    const net = new Network({ voters: [1, 2], config: { preVote: false, checkQuorum: false } });
    net.campaign(1);
    net.stabilize();
    net.propose(1, 'a');
    net.stabilize();
    // Forge replica 2's durable log: same term at index 2, different data.
    const e = net.replica(2).log().entries[1]!;
    net.replica(2).storage.append([{ ...e, data: new Uint8Array([9]) }]);
    expect(() => checkLogMatching(net)).toThrow(/Log Matching/);
  });
});

// ======================================================================== conf-change codec

const confChangeSingle: fc.Arbitrary<ConfChangeSingle> = fc.record({
  type: fc.constantFrom(...Object.values(ConfChangeType)),
  nodeId: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
});

/** Any UTF-16 string, lone surrogates included. */
const anyUtf16 = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) });

const confChange: fc.Arbitrary<ConfChange> = fc.record({
  transition: fc.constantFrom(...Object.values(ConfChangeTransition)),
  changes: fc.array(confChangeSingle, { maxLength: 6 }),
  context: fc.oneof(fc.string(), fc.string({ unit: 'binary' }), anyUtf16),
});

/** isValidConfChange checks the shape decodeConfChange promises. */
function isValidConfChange(cc: ConfChange): boolean {
  return (
    (Object.values(ConfChangeTransition) as string[]).includes(cc.transition) &&
    typeof cc.context === 'string' &&
    cc.changes.every(
      (ch) =>
        (Object.values(ConfChangeType) as string[]).includes(ch.type) &&
        Number.isSafeInteger(ch.nodeId) &&
        ch.nodeId > 0,
    )
  );
}

function decodeOutcome(data: Uint8Array): string {
  try {
    const cc = decodeConfChange(data);
    return isValidConfChange(cc) ? 'valid' : 'invalid result';
  } catch (err) {
    return err instanceof TypeError ? 'TypeError' : `${(err as Error).name}`;
  }
}

describe('conf-change codec', () => {
  it('decodeConfChange(encodeConfChange(cc)) is cc', () => {
    fc.assert(
      fc.property(confChange, (cc) => {
        expect(decodeConfChange(encodeConfChange(cc))).toEqual(cc);
      }),
      { numRuns: 1000 },
    );
  });

  it('the empty payload is the change that leaves a joint configuration', () => {
    expect(decodeConfChange(new Uint8Array(0))).toEqual({ transition: 'auto', changes: [], context: '' });
  });

  it('decodeConfChange rejects malformed JSON objects with a TypeError, or returns a valid change', () => {
    const nearMiss = fc.record(
      {
        t: fc.oneof(fc.constantFrom(...Object.values(ConfChangeTransition)), fc.anything()),
        c: fc.oneof(
          fc.array(fc.tuple(fc.constantFrom(...Object.values(ConfChangeType)), fc.integer())),
          fc.array(fc.anything()),
          fc.anything(),
        ),
        x: fc.oneof(fc.string(), fc.anything()),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.oneof(nearMiss, fc.jsonValue()), (v) => {
        const json = JSON.stringify(v);
        if (json === undefined) return;
        expect(decodeOutcome(new TextEncoder().encode(json))).toMatch(/^(valid|TypeError)$/);
      }),
      { numRuns: 1000 },
    );
  });

  it('decodeConfChange rejects arbitrary bytes with a TypeError, never another error', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), (data) => {
        expect(decodeOutcome(data)).toMatch(/^(valid|TypeError)$/);
      }),
      { numRuns: 500 },
    );
  });

  it('decodeConfChange rejects truncated and non-JSON payloads with a TypeError', () => {
    const good = encodeConfChange({
      transition: 'auto',
      changes: [{ type: 'add-voter', nodeId: 4 }],
      context: '',
    });
    expect(() => decodeConfChange(good.subarray(0, good.length - 1))).toThrow(TypeError);
    expect(() => decodeConfChange(new TextEncoder().encode('not json'))).toThrow(TypeError);
  });
});
