import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  DECISION_LATENCY_BOUNDS_S,
  EXPONENTIAL_SCALE,
  exponentialIndex,
  type HistogramSnapshot,
  LatencyHistogram,
  PENDING_SAMPLES,
  PROPAGATION_LATENCY_BOUNDS_S,
} from "../../../src/limiter/latency-histogram.js";

const EXP_MIN_INDEX = -56 * 2 ** EXPONENTIAL_SCALE;
const EXP_MAX_INDEX = 8 * 2 ** EXPONENTIAL_SCALE - 1;

/**
 * The exponential index by exact integer arithmetic: for v = u * 2^p (u an integer), bucket i
 * holds 2^i < v^8 <= 2^(i+1), and v^8 = u^8 * 2^(8p).
 */
function exactIndex(v: number): number {
  const f = new Float64Array([v]);
  const bits = new BigUint64Array(f.buffer)[0]!;
  const biased = Number(bits >> 52n);
  if (biased === 0) return EXP_MIN_INDEX;
  const u = (bits & ((1n << 52n) - 1n)) | (1n << 52n);
  const p = biased - 1023 - 52;
  const x = u ** 8n;
  const bitLength = x.toString(2).length;
  const ceilLog2 = x === 1n << BigInt(bitLength - 1) ? bitLength - 1 : bitLength;
  const i = ceilLog2 + 8 * p - 1;
  return Math.min(EXP_MAX_INDEX, Math.max(EXP_MIN_INDEX, i));
}

function nextUp(v: number): number {
  const f = new Float64Array([v]);
  const b = new BigUint64Array(f.buffer);
  b[0] = b[0]! + 1n;
  return f[0]!;
}

function nextDown(v: number): number {
  const f = new Float64Array([v]);
  const b = new BigUint64Array(f.buffer);
  b[0] = b[0]! - 1n;
  return f[0]!;
}

/** What a histogram that buckets each sample when it is recorded holds after `values`. */
function reference(boundsS: readonly number[], values: readonly number[]) {
  const counts = new Array<number>(boundsS.length + 1).fill(0);
  const exp = new Map<number, number>();
  let sumS = 0;
  let minS = Infinity;
  let maxS = 0;
  let zeroCount = 0;
  for (const v of values) {
    let i = 0;
    while (i < boundsS.length && v > boundsS[i]!) i++;
    counts[i]!++;
    sumS += v;
    if (v < minS) minS = v;
    if (v > maxS) maxS = v;
    if (v > 0) {
      const e = exactIndex(v);
      exp.set(e, (exp.get(e) ?? 0) + 1);
    } else zeroCount++;
  }
  return {
    counts,
    sumS,
    count: values.length,
    minS: values.length > 0 ? minS : 0,
    maxS,
    zeroCount,
    exp: [...exp].sort((a, b) => a[0] - b[0]),
  };
}

function shape(s: HistogramSnapshot) {
  const exp: [number, number][] = [];
  s.exponential.bucketCounts.forEach((c, j) => {
    if (c > 0) exp.push([s.exponential.offset + j, c]);
  });
  return {
    counts: [...s.counts],
    sumS: s.sumS,
    count: s.count,
    minS: s.minS,
    maxS: s.maxS,
    zeroCount: s.exponential.zeroCount,
    exp,
  };
}

/** A deterministic spread of samples: latencies over many octaves, bounds, zeros, negatives. */
function samples(n: number, boundsS: readonly number[]): number[] {
  let seed = 12345;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  return Array.from({ length: n }, (_, i) => {
    const r = rand();
    if (r < 0.02) return 0;
    if (r < 0.03) return -1e-6;
    if (r < 0.08) return boundsS[i % boundsS.length]!;
    return 2 ** (-30 + rand() * 32);
  });
}

describe("latency histogram - pending samples", () => {
  test("latency histogram - a snapshot holds every sample exactly once, across buffer refills", () => {
    for (const boundsS of [DECISION_LATENCY_BOUNDS_S, PROPAGATION_LATENCY_BOUNDS_S]) {
      const values = samples(3 * PENDING_SAMPLES + 17, boundsS);
      const h = new LatencyHistogram(boundsS);
      assert.deepEqual(shape(h.snapshot()), shape(new LatencyHistogram(boundsS).snapshot()));
      // Snapshots before the buffer fills, exactly when it fills, after it refilled and emptied
      // several times, and twice in a row.
      const at = new Set([
        1,
        PENDING_SAMPLES - 1,
        PENDING_SAMPLES,
        PENDING_SAMPLES + 1,
        3 * PENDING_SAMPLES,
        3 * PENDING_SAMPLES + 17,
      ]);
      for (let i = 0; i < values.length; i++) {
        h.record(values[i]!);
        if (at.has(i + 1)) {
          const expected = reference(boundsS, values.slice(0, i + 1));
          assert.deepEqual(shape(h.snapshot()), expected, `after ${i + 1} samples`);
          assert.deepEqual(shape(h.snapshot()), expected, "a second snapshot changes nothing");
        }
      }
    }
  });

  test("latency histogram - many refills between two snapshots lose and repeat nothing", () => {
    const values = samples(10 * PENDING_SAMPLES + 3, DECISION_LATENCY_BOUNDS_S);
    const h = new LatencyHistogram(DECISION_LATENCY_BOUNDS_S);
    for (const v of values.slice(0, 5)) h.record(v);
    h.snapshot();
    for (const v of values.slice(5)) h.record(v);
    const s = h.snapshot();
    assert.equal(s.count, values.length);
    assert.equal(
      s.counts.reduce((a, b) => a + b, 0),
      values.length,
    );
    assert.deepEqual(shape(s), reference(DECISION_LATENCY_BOUNDS_S, values));
  });
});

describe("latency histogram - exponential index", () => {
  test("latency histogram - exact at the bucket bounds 2^(i/8), on both sides", () => {
    for (let i = EXP_MIN_INDEX - 3; i <= EXP_MAX_INDEX + 3; i++) {
      const near = 2 ** (i / 8);
      for (const v of [nextDown(nextDown(near)), nextDown(near), near, nextUp(near)]) {
        assert.equal(exponentialIndex(v), exactIndex(v), `index of ${v} (near 2^(${i}/8))`);
      }
    }
  });

  test("latency histogram - powers of two close their bucket; extremes are clamped", () => {
    assert.equal(exponentialIndex(1), -1, "1 s is the top of (2^(-1/8), 1]");
    assert.equal(exponentialIndex(2), 7);
    assert.equal(exponentialIndex(nextUp(1)), 0);
    assert.equal(exponentialIndex(Number.MIN_VALUE), EXP_MIN_INDEX);
    assert.equal(exponentialIndex(2 ** -70), EXP_MIN_INDEX);
    assert.equal(exponentialIndex(1e6), EXP_MAX_INDEX);
    assert.equal(exponentialIndex(Infinity), EXP_MAX_INDEX);
  });

  test("latency histogram - agrees with the exact index over many octaves", () => {
    for (let e = -60; e <= 10; e++) {
      for (let k = 0; k < 64; k++) {
        const v = 2 ** e * (1 + k / 64 + 1 / 1024);
        assert.equal(exponentialIndex(v), exactIndex(v), `index of ${v}`);
      }
    }
  });
});
