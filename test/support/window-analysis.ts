/**
 * The arithmetic of `bench/accuracy.ts`, with no I/O: per-key series on a bucket grid, sliding
 * windows over them, convergence after an event, and the comparison with an exact limiter.
 *
 * In:  what the nodes reported, per key and per bucket of `reportMs` (admitted and offered,
 *      summed over every node), bucket b covering wall time (t0 + (b-1)·reportMs, t0 + b·reportMs].
 * Out: plain numbers; nothing here knows about processes or NATS.
 *
 * The window of a rule (`windowMs`) is a whole number n of buckets; "the window ending at b" is
 * buckets b-n+1..b, so windows are measured at every bucket end, on the same grid as the counts.
 */

/** One key's counts, summed over nodes: index b is the bucket ending at t0 + b·reportMs. */
export interface KeySeries {
  readonly admitted: Float64Array;
  readonly offered: Float64Array;
}

/** Admitted in the window of n buckets ending at each bucket b (0 for b < 1). */
export function windowSums(values: Float64Array, n: number): Float64Array {
  const out = new Float64Array(values.length);
  let sum = 0;
  for (let b = 0; b < values.length; b++) {
    sum += values[b]!;
    if (b - n >= 0) sum -= values[b - n]!;
    out[b] = sum;
  }
  return out;
}

export interface RatioStats {
  readonly mean: number;
  readonly min: number;
  readonly max: number;
  readonly windows: number;
}

/** Mean, lowest and highest of `sums[b] / limit` for b in [from, to]. */
export function ratioStats(
  sums: Float64Array,
  limit: number,
  from: number,
  to: number,
): RatioStats {
  let total = 0;
  let min = Infinity;
  let max = -Infinity;
  let count = 0;
  for (let b = from; b <= to && b < sums.length; b++) {
    const r = sums[b]! / limit;
    total += r;
    if (r < min) min = r;
    if (r > max) max = r;
    count++;
  }
  return { mean: count > 0 ? total / count : Number.NaN, min, max, windows: count };
}

export interface Convergence {
  /**
   * ms from the event to the end of the first bucket from which every hot key's window stays
   * within the band for `holdMs`; 0 when no window left the band in that time; null when it
   * never settled before the end of the run.
   */
  readonly convergeMs: number | null;
  /** Whether any hot key's window left the band after the event. */
  readonly leftBand: boolean;
  /** ms from the event to the first bucket end at which every window is back in the band. */
  readonly firstBackInBandMs: number | null;
  /** Lowest and highest window ratio over hot keys in the `lookMs` after the event. */
  readonly minRatio: number;
  readonly maxRatio: number;
}

/** Whether every hot key's window ratio at bucket `b` is within `tolerance` of the limit. */
function inBandAt(ratios: readonly Float64Array[], b: number, tolerance: number): boolean {
  return ratios.every((r) => Math.abs(r[b]! - 1) <= tolerance + 1e-12);
}

/**
 * Of the bucket ends `from..to`, the fraction from which every hot key's window stays within
 * `tolerance` for the following `holdBuckets` buckets: how often the settling test of
 * {@link convergence} would pass at a random instant (the baseline for an event's settling).
 */
export function inBandHoldFraction(
  ratios: readonly Float64Array[],
  from: number,
  to: number,
  holdBuckets: number,
  tolerance: number,
): number {
  let outSince = Number.POSITIVE_INFINITY; // the latest out-of-band bucket seen, walking back
  let starts = 0;
  let held = 0;
  for (let b = to; b >= from; b--) {
    if (!inBandAt(ratios, b, tolerance)) outSince = b;
    if (b + holdBuckets > to) continue; // not a whole hold left
    starts++;
    if (outSince > b + holdBuckets) held++;
  }
  return starts > 0 ? held / starts : Number.NaN;
}

/**
 * Settling time after an event at wall time `eventMs`: the band is [1 - tol, 1 + tol] of the
 * limit; `ratios[k][b]` is hot key k's window ratio at bucket b; `endOf(b)` is bucket b's end.
 */
export function convergence(
  ratios: readonly Float64Array[],
  endOf: (b: number) => number,
  eventMs: number,
  lastBucket: number,
  opts: { tolerance: number; holdMs: number; lookMs: number },
): Convergence {
  const inBand = (b: number) => inBandAt(ratios, b, opts.tolerance);
  let first = 0;
  while (first <= lastBucket && endOf(first) < eventMs) first++;
  let minRatio = Infinity;
  let maxRatio = -Infinity;
  for (let b = first; b <= lastBucket && endOf(b) <= eventMs + opts.lookMs; b++) {
    for (const r of ratios) {
      if (r[b]! < minRatio) minRatio = r[b]!;
      if (r[b]! > maxRatio) maxRatio = r[b]!;
    }
  }
  let leftBand = false;
  let firstBack: number | null = null;
  let settled: number | null = null;
  for (let b = first; b <= lastBucket; b++) {
    if (!inBand(b)) {
      leftBand = true;
      continue;
    }
    if (leftBand && firstBack === null) firstBack = endOf(b) - eventMs;
    let holds = endOf(b) + opts.holdMs <= endOf(lastBucket);
    for (let c = b; holds && c <= lastBucket && endOf(c) <= endOf(b) + opts.holdMs; c++) {
      if (!inBand(c)) holds = false;
    }
    if (holds) {
      settled = b;
      break;
    }
  }
  const convergeMs = settled === null ? null : leftBand ? endOf(settled) - eventMs : 0;
  return {
    convergeMs,
    leftBand,
    firstBackInBandMs: leftBand ? firstBack : 0,
    minRatio,
    maxRatio,
  };
}

/**
 * What an exact central sliding-window limiter would admit, per bucket, for these offered
 * counts: greedily, all of a bucket's hits as long as the window of n buckets ending there
 * stays within `limit` (hits of one bucket are taken as arriving together, in arrival order
 * within the bucket). Run from bucket 0, so its window state is its own, not the system's.
 */
export function exactReplay(offered: Float64Array, limit: number, n: number): Float64Array {
  const out = new Float64Array(offered.length);
  let inWindow = 0; // admitted in buckets b-n+1..b-1
  for (let b = 0; b < offered.length; b++) {
    if (b - n >= 0) inWindow -= out[b - n]!;
    const room = Math.max(0, Math.floor(limit - inWindow + 1e-9));
    const admit = Math.min(offered[b]!, room);
    out[b] = admit;
    inWindow += admit;
  }
  return out;
}

export interface DecisionErrors {
  readonly offered: number;
  /** Admitted beyond what an exact window allowed given what was actually admitted before. */
  readonly wronglyAdmitted: number;
  /** Refused although an exact window (same history) had room for them. */
  readonly wronglyRejected: number;
}

/**
 * Decisions that differ from an exact limiter that saw the same history (as Cloudflare counts
 * its errors): in bucket b the exact window had room = limit - (actually admitted in buckets
 * b-n+1..b-1); admitting more than that is an overshoot decision, admitting less than
 * min(offered, room) an under-admission. A lower bound per bucket (hits cannot be matched one by
 * one inside a bucket); windows are on the bucket grid.
 */
export function decisionErrors(
  s: KeySeries,
  limit: number,
  n: number,
  from: number,
  to: number,
): DecisionErrors {
  let offered = 0;
  let over = 0;
  let under = 0;
  let inWindow = 0;
  for (let b = 0; b <= to && b < s.admitted.length; b++) {
    if (b - n >= 0) inWindow -= s.admitted[b - n]!;
    if (b >= from) {
      const room = Math.max(0, limit - inWindow);
      const a = s.admitted[b]!;
      const o = s.offered[b]!;
      offered += o;
      if (a > room) over += a - room;
      const exact = Math.min(o, Math.floor(room + 1e-9));
      if (a < exact) under += exact - a;
    }
    inWindow += s.admitted[b]!;
  }
  return { offered, wronglyAdmitted: over, wronglyRejected: under };
}

/** Sum of values[b] for b in [from, to]. */
export function sumRange(values: Float64Array, from: number, to: number): number {
  let s = 0;
  for (let b = from; b <= to && b < values.length; b++) s += values[b]!;
  return s;
}
