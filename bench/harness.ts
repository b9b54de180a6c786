/**
 * A small, dependency-free benchmark harness: runs each case in rounds, interleaved so drift in
 * machine load spreads over every case, and reports the median rate.
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
    for (const c of cases) {
      const start = process.hrtime.bigint();
      sink += await c.run(c.opsPerRound);
      const ns = Number(process.hrtime.bigint() - start);
      samples.get(c.name)!.push((c.opsPerRound * 1e9) / ns);
    }
    process.stderr.write(`  round ${r + 1}/${rounds}\r`);
  }
  process.stderr.write("\n");
  if (sink === 0.5) console.log(""); // keeps `sink` observable
  return cases.map((c) => {
    const s = samples.get(c.name)!;
    return { name: c.name, opsPerSec: median(s), rounds: s };
  });
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
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
