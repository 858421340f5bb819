import { encodeEnvelope } from '../../src/statemachine/codec.js';
import type { Command } from '../../src/statemachine/commands.js';
import {
  type ApplyOutput,
  GroupStateMachine,
  type StateMachineConfig,
} from '../../src/statemachine/state-machine.js';

/** Session fields for an entry. */
export interface Via {
  readonly client?: string;
  readonly seq?: number;
  readonly ack?: number;
}

/** Log is a list of encoded entries, applied in order by every replica. */
export class Log {
  readonly entries: Uint8Array[] = [];

  append(time: number, cmd: Command, via: Via = {}): Uint8Array {
    const data = encodeEnvelope({
      time,
      cmd,
      ...(via.client !== undefined && { client: via.client, seq: via.seq!, ack: via.ack ?? 1 }),
    });
    this.entries.push(data);
    return data;
  }
}

/** Replica applies a log to its own state machine. */
export class Replica {
  readonly sm: GroupStateMachine;
  next = 1;

  constructor(config: Partial<StateMachineConfig> = {}) {
    this.sm = new GroupStateMachine(config);
  }

  apply(data: Uint8Array): ApplyOutput {
    return this.sm.apply(this.next++, data);
  }

  /** catchUp applies every entry of `log` it has not applied yet. */
  catchUp(log: Log): ApplyOutput[] {
    const out: ApplyOutput[] = [];
    while (this.next <= log.entries.length) out.push(this.apply(log.entries[this.next - 1]!));
    return out;
  }
}

/** Cluster is one log and a replica that applies each entry as soon as it is appended. */
export class Single {
  readonly log = new Log();
  readonly r: Replica;
  time = 1_000_000;

  constructor(config: Partial<StateMachineConfig> = {}) {
    this.r = new Replica(config);
  }

  do(cmd: Command, via: Via = {}): ApplyOutput {
    return this.r.apply(this.log.append(this.time, cmd, via));
  }

  /** ok applies a command and returns its value, failing the test on an error result. */
  ok(cmd: Command, via: Via = {}): unknown {
    const out = this.do(cmd, via);
    if (!out.result.ok) throw new Error(`${cmd.op} failed: ${out.result.code} ${out.result.message}`);
    return out.result.value;
  }

  /** err applies a command that must fail and returns its error code. */
  err(cmd: Command, via: Via = {}): string {
    const out = this.do(cmd, via);
    if (out.result.ok) throw new Error(`${cmd.op} succeeded: ${JSON.stringify(out.result.value)}`);
    return out.result.code;
  }

  /** tick advances time and applies a tick entry. */
  tick(ms: number): ApplyOutput {
    this.time += ms;
    return this.do({ op: 'tick' });
  }
}

/** chunked re-splits a snapshot's chunks at arbitrary boundaries. */
export function rechunk(chunks: Iterable<Uint8Array>, sizes: readonly number[]): Uint8Array[] {
  const all: number[] = [];
  for (const c of chunks) for (const b of c) all.push(b);
  const out: Uint8Array[] = [];
  let at = 0;
  for (let i = 0; at < all.length; i++) {
    const n = Math.max(1, sizes[i % Math.max(1, sizes.length)] ?? all.length);
    out.push(Uint8Array.from(all.slice(at, at + n)));
    at += n;
  }
  return out;
}
