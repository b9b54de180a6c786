import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { gcra } from "../../../src/algorithms/gcra.js";
import { slidingWindow } from "../../../src/algorithms/sliding-window.js";
import { tokenBucket } from "../../../src/algorithms/token-bucket.js";
import type { Algorithm, AlgorithmParams } from "../../../src/algorithms/types.js";

/** One key's state for `algorithm`, initialised at `startMs`. */
function slot(algorithm: Algorithm, p: AlgorithmParams, startMs = 0) {
  const state = new Float64Array(algorithm.stride(p));
  algorithm.init(state, 0, p, startMs);
  return {
    decide: (nowMs: number, cost = 1) => algorithm.decide(state, 0, p, nowMs, cost),
    peek: (nowMs: number, cost = 1) => algorithm.peek(state, 0, p, nowMs, cost),
    isAtRest: (nowMs: number) => algorithm.isAtRest(state, 0, p, nowMs),
  };
}

/** `limit` per `windowMs`, with capacity `burst`. */
function bucket(limit: number, windowMs: number, burst = limit): AlgorithmParams {
  return { capacity: burst, ratePerMs: limit / windowMs, windowMs, segments: 1 };
}

function window(limit: number, windowMs: number, segments: number): AlgorithmParams {
  return { capacity: limit, ratePerMs: limit / windowMs, windowMs, segments };
}

function admittedIn(s: ReturnType<typeof slot>, nowMs: number, tries: number, cost = 1): number {
  let n = 0;
  for (let i = 0; i < tries; i++) if (s.decide(nowMs, cost).allowed) n++;
  return n;
}

for (const algorithm of [tokenBucket, gcra]) {
  describe(`${algorithm.name}`, () => {
    test(`${algorithm.name} - admits a full burst from rest, then refuses`, () => {
      const s = slot(algorithm, bucket(10, 1000, 5));
      assert.equal(admittedIn(s, 0, 20), 5);
      const refused = s.decide(0);
      assert.equal(refused.allowed, false);
      assert.equal(refused.remaining, 0);
      assert.equal(refused.limit, 5);
      assert.ok(
        Math.abs(refused.retryAfterMs - 100) < 1e-6,
        `retryAfterMs ${refused.retryAfterMs}`,
      );
      assert.ok(
        Math.abs(refused.resetAfterMs - 500) < 1e-6,
        `resetAfterMs ${refused.resetAfterMs}`,
      );
    });

    test(`${algorithm.name} - refills at the configured rate`, () => {
      const s = slot(algorithm, bucket(10, 1000, 5));
      admittedIn(s, 0, 5);
      assert.equal(s.decide(99.9).allowed, false);
      assert.equal(s.decide(100).allowed, true);
      assert.equal(s.decide(100).allowed, false);
      // After a long idle the bucket is full again, never more than the burst.
      assert.equal(admittedIn(s, 1e9, 50), 5);
    });

    test(`${algorithm.name} - decision fields while admitting`, () => {
      const s = slot(algorithm, bucket(10, 1000, 5));
      const d = s.decide(0, 2);
      assert.equal(d.allowed, true);
      assert.equal(d.remaining, 3);
      assert.equal(d.retryAfterMs, 0);
      assert.ok(Math.abs(d.resetAfterMs - 200) < 1e-6);
    });

    test(`${algorithm.name} - a cost above one takes that many units`, () => {
      const s = slot(algorithm, bucket(10, 1000, 10));
      assert.equal(s.decide(0, 4).allowed, true);
      assert.equal(s.decide(0, 4).allowed, true);
      const d = s.decide(0, 4);
      assert.equal(d.allowed, false);
      assert.equal(d.remaining, 2);
      assert.ok(Math.abs(d.retryAfterMs - 200) < 1e-6);
      assert.equal(s.decide(0, 2).allowed, true, "a refused big hit leaves room for a smaller one");
    });

    test(`${algorithm.name} - a cost larger than the capacity is refused forever`, () => {
      const s = slot(algorithm, bucket(10, 1000, 5));
      const d = s.decide(0, 6);
      assert.equal(d.allowed, false);
      assert.equal(d.retryAfterMs, Infinity);
      assert.equal(s.decide(1e12, 6).allowed, false);
      assert.equal(admittedIn(s, 0, 10), 5, "the refused hit consumed nothing");
    });

    test(`${algorithm.name} - a clock that does not advance refills nothing`, () => {
      const s = slot(algorithm, bucket(1000, 1000, 3), 50);
      assert.equal(admittedIn(s, 50, 10), 3);
      for (let i = 0; i < 1000; i++) assert.equal(s.decide(50).allowed, false);
    });

    test(`${algorithm.name} - a clock that goes backwards refills nothing`, () => {
      const s = slot(algorithm, bucket(10, 1000, 2), 1000);
      assert.equal(admittedIn(s, 1000, 2), 2);
      assert.equal(s.decide(0).allowed, false);
      assert.equal(s.decide(500).allowed, false);
      // Back at the original time plus one refill interval: exactly one unit.
      assert.equal(admittedIn(s, 1100, 5), 1);
    });

    test(`${algorithm.name} - fractional rates do not drift over a long run`, () => {
      // One unit every 3 s, polled every 7 ms for about 11.7 hours of clock time. The burst of 5
      // is spent at once, after which the bucket never fills, so no refill is lost to the cap.
      const s = slot(algorithm, bucket(1, 3000, 5));
      let admitted = 0;
      let t = 0;
      for (let i = 0; i < 6_000_000; i++) {
        t += 7;
        if (s.decide(t).allowed) admitted++;
      }
      // The burst, then exactly one per 3 s of elapsed time: a fraction carried, never rounded.
      const expected = 5 + Math.floor(t / 3000);
      assert.ok(Math.abs(admitted - expected) <= 1, `admitted ${admitted}, expected ~${expected}`);
    });

    test(`${algorithm.name} - peek changes nothing`, () => {
      const s = slot(algorithm, bucket(10, 1000, 2));
      for (let i = 0; i < 10; i++) assert.equal(s.peek(0).allowed, true);
      assert.equal(admittedIn(s, 0, 5), 2);
      assert.equal(s.peek(0).allowed, false);
    });

    test(`${algorithm.name} - at rest only once fully refilled`, () => {
      const s = slot(algorithm, bucket(10, 1000, 5));
      assert.equal(s.isAtRest(0), true);
      s.decide(0, 3);
      assert.equal(s.isAtRest(299), false);
      assert.equal(s.isAtRest(300), true);
    });
  });
}

describe("sliding-window", () => {
  test("sliding window - admits the limit in a window, then refuses", () => {
    const s = slot(slidingWindow, window(5, 1000, 10));
    assert.equal(admittedIn(s, 0, 20), 5);
    const d = s.decide(0);
    assert.equal(d.allowed, false);
    assert.equal(d.limit, 5);
    assert.equal(d.remaining, 0);
  });

  test("sliding window - hits leave the window as its start passes their segment", () => {
    const s = slot(slidingWindow, window(10, 1000, 10));
    assert.equal(admittedIn(s, 0, 10), 10); // all in segment 0 = [0, 100)
    // At 1000 the window (0, 1000] still cuts segment 0 fully: weight 1 - 0 = 1.
    assert.equal(s.decide(1000).allowed, false);
    // At 1050 half of segment 0 is still inside: estimate 5, so 5 more fit.
    assert.equal(admittedIn(s, 1050, 20), 5);
    // At 1100 segment 0 is out entirely; the 5 from segment 10 remain.
    assert.equal(admittedIn(s, 1100, 20), 5);
  });

  test("sliding window - weighted estimate with one segment (previous + current)", () => {
    const s = slot(slidingWindow, window(100, 1000, 1));
    assert.equal(admittedIn(s, 500, 100), 100); // window 0
    // At 1250, 75% of window 0 still counts: 75 used, 25 left.
    assert.equal(admittedIn(s, 1250, 100), 25);
    const d = s.decide(1250);
    assert.equal(d.allowed, false);
    // Estimate 100 * (1 - f) + 25 falls to 99 (room for one) at f = 0.26: t = 1260.
    assert.ok(Math.abs(d.retryAfterMs - 10) < 1e-6, `retryAfterMs ${d.retryAfterMs}`);
    assert.equal(s.decide(1259).allowed, false);
    assert.equal(s.decide(1260).allowed, true);
  });

  test("sliding window - retryAfterMs is exact for the next admission", () => {
    const s = slot(slidingWindow, window(7, 700, 7));
    for (let t = 0; t < 700; t += 100) s.decide(t + 10);
    const d = s.decide(690);
    assert.equal(d.allowed, false);
    assert.equal(s.decide(690 + d.retryAfterMs - 0.01).allowed, false);
    assert.equal(s.decide(690 + d.retryAfterMs).allowed, true);
  });

  test("sliding window - resetAfterMs is when the window empties", () => {
    const s = slot(slidingWindow, window(10, 1000, 10));
    const d = s.decide(250); // segment 2 = [200, 300), out of the window at 1300
    assert.ok(Math.abs(d.resetAfterMs - 1050) < 1e-6, `resetAfterMs ${d.resetAfterMs}`);
    assert.equal(s.isAtRest(1299), false);
    assert.equal(s.isAtRest(1300), true);
  });

  test("sliding window - cost above the limit is refused forever; costs add up", () => {
    const s = slot(slidingWindow, window(10, 1000, 4));
    assert.equal(s.decide(0, 11).retryAfterMs, Infinity);
    assert.equal(s.decide(0, 6).allowed, true);
    assert.equal(s.decide(0, 5).allowed, false);
    assert.equal(s.decide(0, 4).allowed, true);
  });

  test("sliding window - long idle empties the window; a still clock frees nothing", () => {
    const s = slot(slidingWindow, window(3, 1000, 10));
    assert.equal(admittedIn(s, 10, 5), 3);
    for (let i = 0; i < 100; i++) assert.equal(s.decide(10).allowed, false);
    assert.equal(s.decide(5).allowed, false, "backwards clock frees nothing");
    assert.equal(admittedIn(s, 1e10, 10), 3);
  });

  test("sliding window - at a segment boundary the old segment weight starts at 1", () => {
    const s = slot(slidingWindow, window(4, 400, 4));
    assert.equal(admittedIn(s, 99, 4), 4); // segment 0
    assert.equal(s.decide(400).allowed, false); // segment 0 still fully weighted
    assert.equal(s.decide(450).allowed, true); // half of it gone: estimate 2 + 0 -> room
  });
});
