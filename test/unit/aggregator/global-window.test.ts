import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  addAdmitted,
  binsByAge,
  createGlobalWindow,
  freeingTime,
  oldestBand,
  restoreBin,
  windowShape,
  windowUsed,
} from "../../../src/aggregator/global-window.js";

const shape = windowShape(1000, 10); // bins of 100 ms

const close = (a: number, b: number, what: string, eps = 1e-6) =>
  assert.ok(Math.abs(a - b) <= eps, `${what}: ${a} vs ${b}`);

test("global window - hits admitted evenly are read as spread over their bins", () => {
  const w = createGlobalWindow(shape, 0);
  for (let t = 0; t < 1000; t += 10) addAdmitted(w, shape, t, t, 1);
  close(windowUsed(w, shape, 999), 100, "all inside");
  // At 1050 half of the first bin has left (its hits were even over it) and the rest is in.
  close(windowUsed(w, shape, 1050), 95, "half a bin out");
  close(oldestBand(w, shape, 1050, 100), 10, "the next 100 ms free one bin");
});

test("global window - a burst that begins inside a bin is read from where it began", () => {
  const w = createGlobalWindow(shape, 0);
  // 60 hits between 60 and 90 ms (the first burst of a cold start), nothing before.
  for (let t = 60; t < 90; t += 0.5) addAdmitted(w, shape, t, t, 1);
  // Read as spread over [2m - 100, 100) = [49.5, 100): nothing left the window before 1049.5.
  close(windowUsed(w, shape, 1040), 60, "none of the burst has left at 1040");
  assert.ok(windowUsed(w, shape, 1080) < 60, "part of it has left by 1080");
  close(windowUsed(w, shape, 1100), 0, "all of it has left at 1100");
  close(oldestBand(w, shape, 1000, 40), 0, "nothing frees in the 40 ms after 1000");
});

test("global window - a bin that continues the one before is read as spread over all of it", () => {
  const w = createGlobalWindow(shape, 0);
  addAdmitted(w, shape, 50, 50, 10);
  for (let t = 150; t < 200; t += 1) addAdmitted(w, shape, t, t, 1); // bin 1 starts while bin 0 holds hits
  // Bin 1's 50 hits are read as even over [100, 200): at 1150 half of them have left.
  close(windowUsed(w, shape, 1150), 25, "half of bin 1 read as gone");
});

test("global window - freeingTime is the inverse of oldestBand past the early cut", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({ at: fc.integer({ min: 0, max: 999 }), cost: fc.integer({ min: 1, max: 5 }) }),
        {
          minLength: 1,
          maxLength: 60,
        },
      ),
      fc.integer({ min: 0, max: 200 }),
      fc.double({ min: 0.1, max: 1, noNaN: true }),
      (hits, afterMs, share) => {
        const w = createGlobalWindow(shape, 0);
        for (const h of [...hits].sort((a, b) => a.at - b.at))
          addAdmitted(w, shape, h.at, h.at, h.cost);
        const now = 1000;
        const total = windowUsed(w, shape, now) - oldestBand(w, shape, now, afterMs);
        if (!(total > 0.01)) return;
        const needed = total * share;
        const d = freeingTime(w, shape, now, afterMs, needed);
        const freed = oldestBand(w, shape, now, afterMs + d) - oldestBand(w, shape, now, afterMs);
        close(freed, needed, "freed by then", 1e-6 * (1 + needed));
        if (d > 1e-6) {
          const before =
            oldestBand(w, shape, now, afterMs + d - 1e-3) - oldestBand(w, shape, now, afterMs);
          assert.ok(before < needed + 1e-9, "not freed any earlier");
        }
      },
    ),
  );
});

test("global window - freeingTime is the window's length when it never holds that much", () => {
  const w = createGlobalWindow(shape, 0);
  addAdmitted(w, shape, 10, 10, 3);
  assert.equal(freeingTime(w, shape, 500, 0, 4), 1000);
});

test("global window - a saved window restores aged by the time since, in bins of another size too", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({ at: fc.integer({ min: 0, max: 1999 }), cost: fc.integer({ min: 1, max: 9 }) }),
        {
          maxLength: 80,
        },
      ),
      fc.integer({ min: 0, max: 1200 }),
      fc.constantFrom(10, 20, 40),
      (hits, elapsedMs, bins) => {
        const now = 2000;
        const w = createGlobalWindow(shape, 0);
        for (const h of [...hits].sort((a, b) => a.at - b.at))
          addAdmitted(w, shape, h.at, h.at, h.cost);
        const saved = binsByAge(w, shape, now);
        const other = windowShape(1000, bins);
        const restoredAt = 77_000; // another run's monotonic clock
        const r = createGlobalWindow(other, restoredAt);
        for (const b of saved.bins) {
          restoreBin(r, other, restoredAt, b, shape.binMs, saved.nowOffsetMs, elapsedMs);
        }
        // What the restored window holds is what the saved one reads elapsedMs later, and from
        // then on it frees nothing before the saved one would have.
        const expected = windowUsed(w, shape, now + elapsedMs);
        const eps = 1e-6 * (1 + expected);
        close(windowUsed(r, other, restoredAt), expected, "restored", eps);
        for (const ahead of [1, 25, 100, 333, 999]) {
          const restored = windowUsed(r, other, restoredAt + ahead);
          const original = windowUsed(w, shape, now + elapsedMs + ahead);
          assert.ok(restored >= original - eps, `${ahead} ms on: ${restored} < ${original}`);
        }
      },
    ),
  );
});

test("global window - a clock that goes back frees nothing", () => {
  const w = createGlobalWindow(shape, 0);
  addAdmitted(w, shape, 500, 500, 7);
  const at = windowUsed(w, shape, 1200);
  assert.equal(windowUsed(w, shape, 900), at, "read at an earlier time: as at the latest");
});
