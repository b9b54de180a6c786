/**
 * A fixed-bucket latency histogram in plain typed arrays: recording is an array increment, so it
 * can sit on the hot path; telemetry reads it at collection time.
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

export class LatencyHistogram {
  readonly boundsS: readonly number[];
  readonly #counts: Float64Array;
  #sumS = 0;
  #count = 0;
  #minS = Infinity;
  #maxS = 0;
  readonly #exp = new Float64Array(EXP_MAX_INDEX - EXP_MIN_INDEX + 1);
  #zeroCount = 0;

  constructor(boundsS: readonly number[]) {
    this.boundsS = boundsS;
    this.#counts = new Float64Array(boundsS.length + 1);
  }

  record(seconds: number): void {
    const b = this.boundsS;
    let i = 0;
    while (i < b.length && seconds > b[i]!) i++;
    this.#counts[i]!++;
    this.#sumS += seconds;
    this.#count++;
    if (seconds < this.#minS) this.#minS = seconds;
    if (seconds > this.#maxS) this.#maxS = seconds;
    if (seconds > 0) {
      let i = Math.ceil(Math.log2(seconds) * EXP_PER_OCTAVE) - 1;
      if (i < EXP_MIN_INDEX) i = EXP_MIN_INDEX;
      else if (i > EXP_MAX_INDEX) i = EXP_MAX_INDEX;
      this.#exp[i - EXP_MIN_INDEX]!++;
    } else this.#zeroCount++;
  }

  snapshot(): HistogramSnapshot {
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
