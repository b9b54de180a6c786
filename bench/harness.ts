/**
 * A small, dependency-free benchmark harness: runs each case in rounds, interleaved so drift in
 * machine load spreads over every case. `runInterleaved` reports each case's median rate;
 * `runPaired` reports each case's cost relative to a baseline, round by round.
 */

export interface BenchCase {
  readonly name: string;
  /** Runs `n` operations; returns something derived from them so the work cannot be elided. */
  readonly run: (n: number) => number | Promise<number>;
  /** Operations per round. */
  readonly opsPerRound: number;
}

export interface BenchResult {
  readonly name: string;
  readonly opsPerSec: number;
  readonly rounds: readonly number[];
}

let sink = 0;

/** Median ops/s of each case over `rounds` interleaved rounds, after one warm-up round each. */
export async function runInterleaved(
  cases: readonly BenchCase[],
  rounds: number,
): Promise<BenchResult[]> {
  for (const c of cases) sink += await c.run(Math.min(c.opsPerRound, 200_000));
  const samples = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  for (let r = 0; r < rounds; r++) {
    for (const c of cases) samples.get(c.name)!.push((await timeRound(c)).opsPerSec);
    process.stderr.write(`  round ${r + 1}/${rounds}\r`);
  }
  process.stderr.write("\n");
  if (sink === 0.5) console.log(""); // keeps `sink` observable
  return cases.map((c) => {
    const s = samples.get(c.name)!;
    return { name: c.name, opsPerSec: median(s), rounds: s };
  });
}

interface RoundTime {
  /** Ops per second of wall time. */
  readonly opsPerSec: number;
  /** Ops per second of this process's CPU time (user + system, every thread). */
  readonly opsPerCpuSec: number;
}

/** Runs one round of `c`, timed by the wall clock and by the process's CPU time. */
async function timeRound(c: BenchCase): Promise<RoundTime> {
  const cpu0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  sink += await c.run(c.opsPerRound);
  const ns = Number(process.hrtime.bigint() - start);
  const cpu = process.cpuUsage(cpu0);
  return {
    opsPerSec: (c.opsPerRound * 1e9) / ns,
    opsPerCpuSec: (c.opsPerRound * 1e6) / Math.max(1, cpu.user + cpu.system),
  };
}

/**
 * The order of the cases in round `r`: rotated by `r`, and reversed every other cycle, so over
 * 2 × (number of cases) rounds every case runs in every position, and as often right before as
 * right after every other case (two cases: AB, BA, BA, AB, ...).
 */
export function roundOrder(caseCount: number, r: number): number[] {
  const order = Array.from({ length: caseCount }, (_, i) => (i + r) % caseCount);
  return Math.floor(r / caseCount) % 2 === 1 ? order.reverse() : order;
}

export interface PairedResult {
  readonly name: string;
  /** Median ops/s (wall clock) over the rounds. */
  readonly opsPerSec: number;
  /** Median ops per second of process CPU time over the rounds. */
  readonly opsPerCpuSec: number;
  /** Per round, in round order: CPU time per op of this case / the baseline's in that round. */
  readonly ratios: readonly number[];
  /** The same ratios by the wall clock, which also counts time the process was not running. */
  readonly wallRatios: readonly number[];
}

/**
 * Paired rounds against a baseline (`cases[0]`). Each round runs every case once, back to back,
 * in the order {@link roundOrder} gives, so drift in machine speed hits the cases of a round
 * alike, and each case's cost is taken relative to the baseline's in the same round. Read the
 * distribution of those per-round ratios ({@link spread}), not a ratio of medians. The primary
 * ratio is by process CPU time: on a shared machine the wall clock also counts the time other
 * processes held the core, which lands on whichever case was running. `warmup` rounds (same
 * order rule) run first and are not recorded.
 */
export async function runPaired(
  cases: readonly BenchCase[],
  rounds: number,
  warmup = 2,
): Promise<PairedResult[]> {
  const times = cases.map((): RoundTime[] => []);
  for (let r = 0; r < warmup + rounds; r++) {
    const round = new Array<RoundTime>(cases.length);
    for (const i of roundOrder(cases.length, r)) round[i] = await timeRound(cases[i]!);
    if (r < warmup) continue;
    for (let i = 0; i < cases.length; i++) times[i]!.push(round[i]!);
    process.stderr.write(`  round ${r - warmup + 1}/${rounds}\r`);
  }
  process.stderr.write("\n");
  if (sink === 0.5) console.log(""); // keeps `sink` observable
  const base = times[0]!;
  return cases.map((c, i) => {
    const t = times[i]!;
    return {
      name: c.name,
      opsPerSec: median(t.map((x) => x.opsPerSec)),
      opsPerCpuSec: median(t.map((x) => x.opsPerCpuSec)),
      ratios: t.map((x, r) => base[r]!.opsPerCpuSec / x.opsPerCpuSec),
      wallRatios: t.map((x, r) => base[r]!.opsPerSec / x.opsPerSec),
    };
  });
}

export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}

/** The q-quantile (0 to 1), interpolating linearly between order statistics. */
export function quantile(values: readonly number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(s.length - 1, lo + 1);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

export interface Spread {
  readonly median: number;
  /** First and third quartiles. */
  readonly q1: number;
  readonly q3: number;
  readonly min: number;
  readonly max: number;
}

export function spread(values: readonly number[]): Spread {
  return {
    median: quantile(values, 0.5),
    q1: quantile(values, 0.25),
    q3: quantile(values, 0.75),
    min: Math.min(...values),
    max: Math.max(...values),
  };
}

/** Formats a table with right-aligned numeric columns. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

export function fmtRate(opsPerSec: number): string {
  if (opsPerSec >= 1e6) return `${(opsPerSec / 1e6).toFixed(2)} M/s`;
  if (opsPerSec >= 1e3) return `${(opsPerSec / 1e3).toFixed(1)} k/s`;
  return `${opsPerSec.toFixed(0)} /s`;
}

export function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
