/**
 * The whole machine's CPU over a window, from the first line of /proc/stat: how busy all cores
 * were and how much of the time went waiting on the disk (iowait). The overload benchmark
 * reports it per phase so that a phase where the box itself ran out of CPU (nodes and load
 * generators share it) can be told apart from one where the nodes shed with CPU to spare.
 */
import { readFileSync } from 'node:fs';

/** CpuTimes are the machine's cumulative CPU times, in clock ticks, all cores together. */
export interface CpuTimes {
  readonly total: number;
  readonly idle: number;
  readonly iowait: number;
}

/** parseProcStatCpu reads the aggregate `cpu` line of a /proc/stat text; undefined when there is none. */
export function parseProcStatCpu(text: string): CpuTimes | undefined {
  const m = /^cpu\s+(.+)$/m.exec(text);
  if (m === null) return undefined;
  const f = m[1]!.trim().split(/\s+/).map(Number);
  if (f.length < 5 || f.some((x) => !Number.isFinite(x))) return undefined;
  // user nice system idle iowait irq softirq steal (guest and guest_nice are inside user and nice).
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { total, idle: f[3]!, iowait: f[4]! };
}

/** machineCpuTimes reads /proc/stat now (zeros where there is no /proc). */
export function machineCpuTimes(): CpuTimes {
  try {
    return parseProcStatCpu(readFileSync('/proc/stat', 'utf8')) ?? { total: 0, idle: 0, iowait: 0 };
  } catch {
    return { total: 0, idle: 0, iowait: 0 };
  }
}

/** MachineCpu is the share of all cores' time over a window that was busy, and that waited on I/O (0..1). */
export interface MachineCpu {
  readonly busy: number;
  readonly iowait: number;
}

/** machineCpuBetween is the machine's CPU between two readings (zeros for an empty window). */
export function machineCpuBetween(a: CpuTimes, b: CpuTimes): MachineCpu {
  const total = b.total - a.total;
  if (!(total > 0)) return { busy: 0, iowait: 0 };
  const idle = b.idle - a.idle;
  const iowait = b.iowait - a.iowait;
  return {
    busy: Math.round(((total - idle - iowait) / total) * 1000) / 1000,
    iowait: Math.round((iowait / total) * 1000) / 1000,
  };
}
