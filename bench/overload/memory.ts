/**
 * The node processes' memory during an overload phase, from /proc/<pid>/status: VmRSS (resident
 * now) sampled every `everyMs`, so a report can show whether memory stayed flat (RSS at the
 * phase's start, at its end, and the highest sample), and VmHWM (the kernel's peak RSS over
 * the process's life), read at the end. A sampler reads a few small files per tick and costs
 * nothing worth measuring.
 */
import { readFileSync } from 'node:fs';

const MiB = 1024 * 1024;

/** ProcMemory is a process's resident memory now and at its peak (bytes; 0 when it is gone). */
export interface ProcMemory {
  readonly rssBytes: number;
  readonly hwmBytes: number;
}

/** parseProcStatusMemory reads VmRSS and VmHWM out of a /proc/<pid>/status text (0 for a missing line). */
export function parseProcStatusMemory(status: string): ProcMemory {
  const kb = (field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB$`, 'm').exec(status);
    return m === null ? 0 : Number(m[1]) * 1024;
  };
  return { rssBytes: kb('VmRSS'), hwmBytes: kb('VmHWM') };
}

/** procMemoryOf reads a process's memory (zeros when it is gone or there is no /proc). */
export function procMemoryOf(pid: number): ProcMemory {
  try {
    return parseProcStatusMemory(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return { rssBytes: 0, hwmBytes: 0 };
  }
}

/** NodeMemory is one process's memory over a phase, in MiB (one decimal). */
export interface NodeMemory {
  readonly startMiB: number;
  readonly endMiB: number;
  /** The highest RSS sampled during the phase. */
  readonly peakMiB: number;
  /** VmHWM at the end: the peak over the process's whole life (the kernel's figure, not sampled). */
  readonly hwmMiB: number;
}

/** MemorySample is every process's RSS (MiB) `tMs` after the sampler started. */
export interface MemorySample {
  readonly tMs: number;
  readonly rssMiB: number[];
}

function mib(bytes: number): number {
  return Math.round((bytes / MiB) * 10) / 10;
}

/** MemorySampler samples the RSS of some processes on a timer, from start() until stop(). */
export class MemorySampler {
  private readonly pids: readonly number[];
  private readonly t0 = performance.now();
  private readonly samples: MemorySample[] = [];
  private readonly start: number[];
  private readonly peak: number[];
  private timer: NodeJS.Timeout | undefined;
  private result: { perProcess: NodeMemory[]; samples: MemorySample[] } | undefined;

  /** constructor takes the first sample at once, then one every `everyMs`. */
  constructor(pids: readonly number[], everyMs = 250) {
    this.pids = [...pids];
    const first = this.pids.map((p) => procMemoryOf(p).rssBytes);
    this.start = first;
    this.peak = [...first];
    this.samples.push({ tMs: 0, rssMiB: first.map(mib) });
    this.timer = setInterval(() => this.sample(), everyMs);
  }

  private sample(): number[] {
    const rss = this.pids.map((p) => procMemoryOf(p).rssBytes);
    rss.forEach((b, i) => {
      if (b > this.peak[i]!) this.peak[i] = b;
    });
    this.samples.push({ tMs: Math.round(performance.now() - this.t0), rssMiB: rss.map(mib) });
    return rss;
  }

  /** stop takes a last sample and returns each process's figures and every sample. Idempotent. */
  stop(): { perProcess: NodeMemory[]; samples: MemorySample[] } {
    if (this.result !== undefined) return this.result;
    clearInterval(this.timer);
    this.timer = undefined;
    const end = this.sample();
    const perProcess = this.pids.map((p, i) => ({
      startMiB: mib(this.start[i]!),
      endMiB: mib(end[i]!),
      peakMiB: mib(this.peak[i]!),
      hwmMiB: mib(procMemoryOf(p).hwmBytes),
    }));
    this.result = { perProcess, samples: this.samples };
    return this.result;
  }
}
