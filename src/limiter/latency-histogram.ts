/**
 * A fixed-bucket latency histogram in plain typed arrays: recording is an array store, so it can
 * sit on the hot path; samples are sorted into buckets in batches, and telemetry reads the
 * buckets at collection time.
 */

/** Upper bounds of the buckets, in seconds: sub-microsecond to milliseconds. */
export const DECISION_LATENCY_BOUNDS_S: readonly number[] = [
  50e-9, 100e-9, 150e-9, 200e-9, 300e-9, 500e-9, 750e-9, 1e-6, 2e-6, 5e-6, 10e-6, 25e-6, 50e-6,
  100e-6, 250e-6, 500e-6, 1e-3, 5e-3, 10e-3,
];

/** Upper bounds for propagation latency (hit counted -> grant applied), in seconds. */
export const PROPAGATION_LATENCY_BOUNDS_S: readonly number[] = [
  1e-3, 2e-3, 5e-3, 10e-3, 20e-3, 30e-3, 50e-3, 75e-3, 100e-3, 150e-3, 200e-3, 300e-3, 500e-3, 1, 2,
  5,
];

/**
 * Scale of the base-2 exponential buckets kept beside the fixed ones (for OTLP, whose native
 * histogram is exponential): bucket i holds values in (2^(i/8), 2^((i+1)/8)], about 9% wide.
 */
export const EXPONENTIAL_SCALE = 3;
const EXP_PER_OCTAVE = 2 ** EXPONENTIAL_SCALE;
/** Indices kept: 2^-56 s (about 14 fs) to 2^8 s; values outside are clamped into the ends. */
const EXP_MIN_INDEX = -56 * EXP_PER_OCTAVE;
const EXP_MAX_INDEX = 8 * EXP_PER_OCTAVE - 1;
const EXP_BUCKETS = EXP_MAX_INDEX - EXP_MIN_INDEX + 1;

/**
 * Samples a histogram holds before it sorts them into buckets. `record()` only stores a sample;
 * the buckets are brought up to date when this many are held and at every `snapshot()`.
 */
export const PENDING_SAMPLES = 256;

// A double's bits, for the exponential bucket index without a logarithm.
const F64 = new Float64Array(1);
const U32 = new Uint32Array(F64.buffer);
/** Index in U32 of the word with the sign, the exponent and the top 20 bits of the mantissa. */
const HI = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1 ? 1 : 0;
const LO = 1 - HI;

/**
 * MANTISSA_BOUNDS[j], 1 <= j < EXP_PER_OCTAVE: the largest double <= 2^(j/EXP_PER_OCTAVE), found
 * with exact integer arithmetic. 2^(j/8) is irrational, so for every double m, m > 2^(j/8)
 * exactly when m > MANTISSA_BOUNDS[j]. Index 0 is unused.
 */
const MANTISSA_BOUNDS = new Float64Array(EXP_PER_OCTAVE);
for (let j = 1; j < EXP_PER_OCTAVE; j++) {
  // The bound as u * 2^-52 with u an integer in [2^52, 2^53): the largest u with u^8 < 2^(j + 52*8).
  const n = BigInt(EXP_PER_OCTAVE);
  const limit = 1n << BigInt(j + 52 * EXP_PER_OCTAVE);
  let u = BigInt(Math.round(2 ** (j / EXP_PER_OCTAVE) * 2 ** 52));
  while (u ** n >= limit) u--;
  while ((u + 1n) ** n < limit) u++;
  MANTISSA_BOUNDS[j] = Number(u) / 2 ** 52;
}
/**
 * FIRST_SUB_BUCKET[t]: for a mantissa whose top EXPONENTIAL_SCALE bits are t (so it is at least
 * 1 + t/8), one more than the number of bounds 2^(j/8) below 1 + t/8: where the search of the
 * bounds above may start.
 */
const FIRST_SUB_BUCKET = new Uint8Array(EXP_PER_OCTAVE);
for (let t = 0; t < EXP_PER_OCTAVE; t++) {
  let k = 1;
  for (let j = 1; j < EXP_PER_OCTAVE; j++) if (MANTISSA_BOUNDS[j]! < 1 + t / EXP_PER_OCTAVE) k++;
  FIRST_SUB_BUCKET[t] = k;
}

/**
 * The exponential bucket of `seconds` (> 0): the i with 2^(i/8) < seconds <= 2^((i+1)/8), clamped
 * into [EXP_MIN_INDEX, EXP_MAX_INDEX]. Exact: read from the double's exponent and mantissa bits.
 */
export function exponentialIndex(seconds: number): number {
  F64[0] = seconds;
  const hi = U32[HI]!;
  const biased = hi >>> 20;
  if (biased === 0) return EXP_MIN_INDEX; // subnormal: far below the smallest bucket
  const mantissaHi = hi & 0xfffff;
  // seconds = m * 2^e with m in [1, 2); this is ceil(8 * log2(m)), 0 when m = 1.
  let k = 0;
  if (mantissaHi !== 0 || U32[LO] !== 0) {
    U32[HI] = mantissaHi | 0x3ff00000;
    const m = F64[0]!;
    k = FIRST_SUB_BUCKET[mantissaHi >>> (20 - EXPONENTIAL_SCALE)]!;
    while (k < EXP_PER_OCTAVE && m > MANTISSA_BOUNDS[k]!) k++;
  }
  const i = (biased - 1023) * EXP_PER_OCTAVE + k - 1;
  return i < EXP_MIN_INDEX ? EXP_MIN_INDEX : i > EXP_MAX_INDEX ? EXP_MAX_INDEX : i;
}

/** The exponential form of the same samples, trimmed to the buckets in use. */
export interface ExponentialSnapshot {
  readonly scale: number;
  readonly zeroCount: number;
  /** Index of the first count in `bucketCounts`. */
  readonly offset: number;
  readonly bucketCounts: readonly number[];
}

/** A point-in-time copy, cumulative since start. */
export interface HistogramSnapshot {
  readonly exponential: ExponentialSnapshot;
  /** Bucket upper bounds, seconds; the last count is the overflow bucket (+Inf). */
  readonly boundsS: readonly number[];
  /** counts.length === boundsS.length + 1 */
  readonly counts: readonly number[];
  readonly sumS: number;
  readonly count: number;
  readonly minS: number;
  readonly maxS: number;
}

/**
 * Every recorded sample is in the snapshot exactly once: `record()` appends it to a fixed buffer
 * of PENDING_SAMPLES, and the buffer is emptied into the buckets, in recording order, when it
 * fills and before every snapshot. The buckets, sum, min and max are therefore the same as if
 * each sample had been bucketed when recorded.
 */
export class LatencyHistogram {
  readonly boundsS: readonly number[];
  readonly #bounds: Float64Array;
  readonly #counts: Float64Array;
  /**
   * For exponential bucket i (offset by EXP_MIN_INDEX), how many fixed bounds lie at or below
   * its lower edge, so are below every sample in it: the fixed search starts there.
   */
  readonly #fixedFrom: Uint16Array;
  #sumS = 0;
  #count = 0;
  #minS = Infinity;
  #maxS = 0;
  readonly #exp = new Float64Array(EXP_BUCKETS);
  #zeroCount = 0;
  readonly #pending = new Float64Array(PENDING_SAMPLES);
  #pendingCount = 0;

  constructor(boundsS: readonly number[]) {
    this.boundsS = boundsS;
    this.#bounds = Float64Array.from(boundsS);
    this.#counts = new Float64Array(boundsS.length + 1);
    this.#fixedFrom = new Uint16Array(EXP_BUCKETS);
    // Index EXP_MIN_INDEX also holds the clamped smaller values: its search starts at 0.
    for (let i = EXP_MIN_INDEX + 1; i <= EXP_MAX_INDEX; i++) {
      const octave = Math.floor(i / EXP_PER_OCTAVE);
      const j = i - octave * EXP_PER_OCTAVE;
      const lowerEdge = (j === 0 ? 1 : MANTISSA_BOUNDS[j]!) * 2 ** octave; // <= 2^(i/8), exact
      let q = 0;
      while (q < boundsS.length && boundsS[q]! <= lowerEdge) q++;
      this.#fixedFrom[i - EXP_MIN_INDEX] = q;
    }
  }

  /** Records one sample, in seconds. A store into the pending buffer; see the class comment. */
  record(seconds: number): void {
    this.#pending[this.#pendingCount] = seconds;
    if (++this.#pendingCount === PENDING_SAMPLES) this.#fold();
  }

  snapshot(): HistogramSnapshot {
    this.#fold();
    return {
      boundsS: this.boundsS,
      counts: [...this.#counts],
      sumS: this.#sumS,
      count: this.#count,
      minS: this.#count > 0 ? this.#minS : 0,
      maxS: this.#maxS,
      exponential: this.#exponential(),
    };
  }

  /** Empties the pending buffer into the buckets, in recording order. */
  #fold(): void {
    const n = this.#pendingCount;
    if (n === 0) return;
    const pending = this.#pending;
    const bounds = this.#bounds;
    const counts = this.#counts;
    const exp = this.#exp;
    const fixedFrom = this.#fixedFrom;
    let sum = this.#sumS;
    let min = this.#minS;
    let max = this.#maxS;
    let zeros = 0;
    for (let j = 0; j < n; j++) {
      const v = pending[j]!;
      sum += v;
      if (v < min) min = v;
      if (v > max) max = v;
      let q = 0;
      if (v > 0) {
        const e = exponentialIndex(v) - EXP_MIN_INDEX;
        exp[e]!++;
        q = fixedFrom[e]!;
      } else zeros++;
      while (q < bounds.length && v > bounds[q]!) q++;
      counts[q]!++;
    }
    this.#sumS = sum;
    this.#minS = min;
    this.#maxS = max;
    this.#zeroCount += zeros;
    this.#count += n;
    this.#pendingCount = 0;
  }
  #exponential(): ExponentialSnapshot {
    let first = -1;
    let last = -1;
    for (let j = 0; j < this.#exp.length; j++) {
      if (this.#exp[j]! > 0) {
        if (first < 0) first = j;
        last = j;
      }
    }
    return {
      scale: EXPONENTIAL_SCALE,
      zeroCount: this.#zeroCount,
      offset: first < 0 ? 0 : first + EXP_MIN_INDEX,
      bucketCounts: first < 0 ? [] : [...this.#exp.subarray(first, last + 1)],
    };
  }
}
