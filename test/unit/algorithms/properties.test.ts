import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { gcra } from "../../../src/algorithms/gcra.js";
import { slidingWindow } from "../../../src/algorithms/sliding-window.js";
import { tokenBucket } from "../../../src/algorithms/token-bucket.js";
import type { Algorithm, AlgorithmParams } from "../../../src/algorithms/types.js";

const EPS = 1e-6;
const RUNS = 300;

/** Random hit sequences: each hit waits `dtMs` after the previous one and costs `cost`. */
const hits = fc.array(
  fc.record({
    dtMs: fc.oneof(
      fc.constant(0),
      fc.double({ min: 0, max: 50, noNaN: true }),
      fc.integer({ min: 0, max: 3000 }),
    ),
    cost: fc.oneof(
      fc.constant(1),
      fc.integer({ min: 1, max: 5 }),
      fc.double({ min: 0.1, max: 4, noNaN: true }),
    ),
  }),
  { minLength: 1, maxLength: 250 },
);

const bucketParams = fc
  .record({
    limit: fc.integer({ min: 1, max: 50 }),
    windowMs: fc.integer({ min: 10, max: 2000 }),
    burst: fc.integer({ min: 1, max: 50 }),
  })
  .map(
    ({ limit, windowMs, burst }): AlgorithmParams => ({
      capacity: burst,
      ratePerMs: limit / windowMs,
      windowMs,
      segments: 1,
    }),
  );

const windowParams = fc
  .record({
    limit: fc.integer({ min: 1, max: 50 }),
    windowMs: fc.integer({ min: 10, max: 2000 }),
    segments: fc.integer({ min: 1, max: 12 }),
  })
  .map(
    ({ limit, windowMs, segments }): AlgorithmParams => ({
      capacity: limit,
      ratePerMs: limit / windowMs,
      windowMs,
      segments,
    }),
  );

interface Admission {
  readonly atMs: number;
  readonly cost: number;
}

function run(algorithm: Algorithm, p: AlgorithmParams, seq: { dtMs: number; cost: number }[]) {
  const state = new Float64Array(algorithm.stride(p));
  let t = 1000;
  algorithm.init(state, 0, p, t);
  const admitted: Admission[] = [];
  const decisions: boolean[] = [];
  for (const h of seq) {
    t += h.dtMs;
    const d = algorithm.decide(state, 0, p, t, h.cost);
    decisions.push(d.allowed);
    if (d.allowed) admitted.push({ atMs: t, cost: h.cost });
  }
  return { admitted, decisions };
}

for (const algorithm of [tokenBucket, gcra]) {
  test(`${algorithm.name} - never admits more than burst + rate x elapsed in any interval`, () => {
    fc.assert(
      fc.property(bucketParams, hits, (p, seq) => {
        const { admitted } = run(algorithm, p, seq);
        for (let i = 0; i < admitted.length; i++) {
          let sum = 0;
          for (let j = i; j < admitted.length; j++) {
            sum += admitted[j]!.cost;
            const bound = p.capacity + p.ratePerMs * (admitted[j]!.atMs - admitted[i]!.atMs);
            if (sum > bound + EPS) return false;
          }
        }
        return true;
      }),
      { numRuns: RUNS },
    );
  });
}

test("token bucket and GCRA - admit exactly the same hits", () => {
  fc.assert(
    fc.property(bucketParams, hits, (p, seq) => {
      const a = run(tokenBucket, p, seq).decisions;
      const b = run(gcra, p, seq).decisions;
      assert.deepEqual(a, b);
    }),
    { numRuns: RUNS },
  );
});

test("sliding window - never admits more than the limit in any S aligned segments", () => {
  fc.assert(
    fc.property(windowParams, hits, (p, seq) => {
      const { admitted } = run(slidingWindow, p, seq);
      const segMs = p.windowMs / p.segments;
      const perSegment = new Map<number, number>();
      for (const a of admitted) {
        const k = Math.floor(a.atMs / segMs);
        perSegment.set(k, (perSegment.get(k) ?? 0) + a.cost);
      }
      for (const k of perSegment.keys()) {
        let sum = 0;
        for (let j = k - p.segments + 1; j <= k; j++) sum += perSegment.get(j) ?? 0;
        if (sum > p.capacity + EPS) return false;
      }
      return true;
    }),
    { numRuns: RUNS },
  );
});

test("sliding window - at each admission, the true window holds what the estimate allowed", () => {
  // At an admission at t (segment k, fraction f), the estimate counted the cut segment k - S at
  // weight 1 - f. So the exact content of (t - windowMs, t] can exceed the limit only by the part
  // of the cut segment's hits that lie inside the window beyond that weight.
  fc.assert(
    fc.property(windowParams, hits, (p, seq) => {
      const { admitted } = run(slidingWindow, p, seq);
      const segMs = p.windowMs / p.segments;
      for (let i = 0; i < admitted.length; i++) {
        const t = admitted[i]!.atMs;
        if (admitted[i + 1]?.atMs === t) continue; // check after the last admission at t
        const k = Math.floor(t / segMs);
        const f = (t - k * segMs) / segMs;
        const start = t - p.windowMs;
        let inWindow = 0;
        let inCut = 0;
        let inCutInside = 0;
        for (let j = 0; j <= i; j++) {
          const a = admitted[j]!;
          const inside = a.atMs > start;
          if (inside) inWindow += a.cost;
          if (Math.floor(a.atMs / segMs) === k - p.segments) {
            inCut += a.cost;
            if (inside) inCutInside += a.cost;
          }
        }
        if (inWindow > p.capacity + inCutInside - inCut * (1 - f) + EPS) return false;
      }
      return true;
    }),
    { numRuns: RUNS },
  );
});

test("sliding window - any window of windowMs holds at most limit + the segment it cuts", () => {
  fc.assert(
    fc.property(windowParams, hits, (p, seq) => {
      const { admitted } = run(slidingWindow, p, seq);
      const segMs = p.windowMs / p.segments;
      for (const end of admitted) {
        const start = end.atMs - p.windowMs;
        const cut = Math.floor(start / segMs);
        let inWindow = 0;
        let inCut = 0;
        for (const a of admitted) {
          if (a.atMs > start && a.atMs <= end.atMs) inWindow += a.cost;
          if (Math.floor(a.atMs / segMs) === cut) inCut += a.cost;
        }
        if (inWindow > p.capacity + inCut + EPS) return false;
      }
      return true;
    }),
    { numRuns: RUNS },
  );
});
