/**
 * A load generator for demos, harnesses and tests: hits at a scheduled rate on keys drawn from a
 * Zipf distribution, decided by a limiter, with counts reported per interval.
 *
 * Bounded by design: it runs for a given duration (or until stopped) and then ends by itself.
 */
import { wallClockMs } from "../clock/clock.js";
import type { Limiter } from "../limiter/limiter.js";

/** `[startMs, hitsPerSec]` steps: from `startMs` after start on, the rate is `hitsPerSec`. */
export type RateSchedule = readonly (readonly [number, number])[];

/** Parses "0:500,3000:0" (ms offset : hits per second). */
export function parseSchedule(text: string): RateSchedule {
  const steps = text.split(",").map((part) => {
    const [at, rate] = part.split(":").map((x) => Number(x.trim()));
    if (!(Number.isFinite(at) && at! >= 0 && Number.isFinite(rate) && rate! >= 0)) {
      throw new Error(
        `Expected \`--schedule\` as "ms:hitsPerSec,..." (e.g. "0:500,3000:0"), got "${text}"`,
      );
    }
    return [at!, rate!] as const;
  });
  return steps.sort((a, b) => a[0] - b[0]);
}

export function rateAt(schedule: RateSchedule, elapsedMs: number): number {
  let rate = 0;
  for (const [at, r] of schedule) if (elapsedMs >= at) rate = r;
  return rate;
}

/**
 * A small seeded generator (mulberry32) for harnesses and tests: the same seed gives the same
 * sequence, so a run can be replayed. Not for anything that must be unpredictable.
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Samples ranks 0..n-1 with P(rank r) proportional to 1 / (r + 1)^s. */
export function zipfSampler(
  n: number,
  s: number,
  random: () => number = Math.random,
): () => number {
  const cdf = new Float64Array(n);
  let total = 0;
  for (let r = 0; r < n; r++) {
    total += 1 / (r + 1) ** s;
    cdf[r] = total;
  }
  for (let r = 0; r < n; r++) cdf[r]! /= total;
  return () => {
    const u = random();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

export interface LoadReport {
  /** Wall-clock ms at the end of the interval (bucket boundary). */
  readonly atWallMs: number;
  readonly intervalMs: number;
  readonly admitted: number;
  readonly rejected: number;
  /** Per tracked key (the top ranks): [admitted, rejected] in the interval. */
  readonly tracked: Record<string, [number, number]>;
}

export interface LoadOptions {
  readonly limiter: Limiter;
  readonly rule: string;
  readonly schedule: RateSchedule;
  /** Distinct keys `k0..k<n-1>`, k0 the most frequent. @default 100 */
  readonly keys?: number;
  /** Zipf exponent; 0 is uniform. @default 1.1 */
  readonly zipf?: number;
  /** Report period, ms; reports are aligned on wall-clock multiples of it. @default 100 */
  readonly reportMs?: number;
  /** How many top keys get their own counts in reports. @default 3 */
  readonly trackKeys?: number;
  readonly durationMs: number;
  readonly onReport: (r: LoadReport) => void;
}

/** Runs the load until `durationMs` has passed or `stop()` is called. */
export function runLoad(o: LoadOptions): { done: Promise<void>; stop: () => void } {
  const keys = Array.from({ length: o.keys ?? 100 }, (_, i) => `k${i}`);
  const sample = zipfSampler(keys.length, o.zipf ?? 1.1);
  const reportMs = o.reportMs ?? 100;
  const trackKeys = Math.min(o.trackKeys ?? 3, keys.length);
  const start = performance.now();
  let last = start;
  let owed = 0;
  let admitted = 0;
  let rejected = 0;
  let tracked = new Map<number, [number, number]>();
  let bucketEnd = Math.ceil(wallClockMs() / reportMs) * reportMs;
  let stopTimer: () => void = () => {};
  const report = () => {
    const t: Record<string, [number, number]> = {};
    for (let r = 0; r < trackKeys; r++) t[keys[r]!] = tracked.get(r) ?? [0, 0];
    o.onReport({ atWallMs: bucketEnd, intervalMs: reportMs, admitted, rejected, tracked: t });
    admitted = 0;
    rejected = 0;
    tracked = new Map();
  };
  const step = () => {
    const now = performance.now();
    const elapsed = now - start;
    owed += (rateAt(o.schedule, elapsed) * (now - last)) / 1000;
    last = now;
    while (owed >= 1) {
      owed--;
      const rank = sample();
      const ok = o.limiter.check(o.rule, keys[rank]!).allowed;
      if (ok) admitted++;
      else rejected++;
      if (rank < trackKeys) {
        let c = tracked.get(rank);
        if (c === undefined) {
          c = [0, 0];
          tracked.set(rank, c);
        }
        c[ok ? 0 : 1]++;
      }
    }
    while (wallClockMs() >= bucketEnd) {
      report();
      bucketEnd += reportMs;
    }
    if (elapsed >= o.durationMs) stopTimer();
  };
  const done = new Promise<void>((resolve) => {
    const timer = setInterval(step, 1);
    stopTimer = () => {
      clearInterval(timer);
      report();
      resolve();
      stopTimer = () => {};
    };
  });
  return { done, stop: () => stopTimer() };
}
