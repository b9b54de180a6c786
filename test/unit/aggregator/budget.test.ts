import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { allocate, handedOut, roundToUnits } from "../../../src/aggregator/allocator.js";
import {
  budgetWaitMs,
  type PacingInput,
  paceCarry,
  paceCredit,
  readBudget,
} from "../../../src/aggregator/budget.js";
import {
  addAdmitted,
  createGlobalWindow,
  windowShape,
  windowUsed,
} from "../../../src/aggregator/global-window.js";

const shape = windowShape(1000, 10);
const rule = { limit: 100, windowMs: 1000 };

const close = (a: number, b: number, what: string, eps = 1e-6) =>
  assert.ok(Math.abs(a - b) <= eps, `${what}: ${a} vs ${b}`);

/** A window with `cost` admitted evenly over [fromMs, toMs), one hit per ms step. */
function windowWith(fromMs: number, toMs: number, cost: number): Float64Array {
  const w = createGlobalWindow(shape, fromMs);
  const step = (toMs - fromMs) / cost;
  for (let i = 0; i < cost; i++) {
    const at = fromMs + i * step;
    addAdmitted(w, shape, at, at, 1);
  }
  return w;
}

test("budget - an empty window allows the limit; admitted cost comes off it", () => {
  const empty = readBudget(createGlobalWindow(shape, 0), shape, 500, {
    ...rule,
    lagMs: 0,
    rampMs: 0,
  });
  assert.deepEqual(empty, { used: 0, released: 0, earlyCap: 0, budgetNow: 100, budget: 100 });
  const w = windowWith(0, 1000, 60);
  const b = readBudget(w, shape, 999, { ...rule, lagMs: 0, rampMs: 0 });
  close(b.used, 60, "used");
  close(b.budgetNow, 40, "the rest");
  assert.equal(b.budget, b.budgetNow, "without a ramp the budget is what the window allows now");
});

test("budget - the lag releases the window's oldest band early, capped at 1.5 x the steady rate", () => {
  // Steady: 100 over the window, so the oldest 50 ms hold 5, under the cap of 7.5.
  const steady = readBudget(windowWith(0, 1000, 100), shape, 1000, {
    ...rule,
    lagMs: 50,
    rampMs: 0,
  });
  close(steady.earlyCap, 7.5, "cap");
  close(steady.released, 5, "the oldest 50 ms");
  close(steady.budgetNow, 100 - steady.used + 5, "budget with the release");
  // A step: 100 admitted in the window's first 100 ms. Its oldest 50 ms hold 50: capped.
  const step = readBudget(windowWith(0, 100, 100), shape, 1000, { ...rule, lagMs: 50, rampMs: 0 });
  close(step.released, 7.5, "capped");
});

test("budget - with a ramp the budget adds what the window frees over it, never less than now", () => {
  const w = windowWith(0, 1000, 100);
  const now = readBudget(w, shape, 1000, { ...rule, lagMs: 0, rampMs: 0 });
  const ramped = readBudget(w, shape, 1000, { ...rule, lagMs: 0, rampMs: 100 });
  assert.equal(ramped.budgetNow, now.budgetNow);
  assert.ok(ramped.budget > now.budget, `${ramped.budget} > ${now.budget}`);
  assert.ok(ramped.budget - now.budget <= 10 + 1e-6, "at most what the next 100 ms free");
});

const pacing: PacingInput = {
  limit: 1000,
  windowMs: 1000,
  pacing: 1.5,
  echoDamping: false,
  syncIntervalMs: 25,
  cadenceMs: 25,
  sinceMs: 25,
  overloadSinceMs: -1,
  nowMs: 10_000,
  carry: 0,
};

test("pacing - unpaced is unbounded; paced is pacing x the steady rate over the time since", () => {
  assert.equal(paceCredit({ ...pacing, pacing: 0 }), Number.POSITIVE_INFINITY);
  close(paceCredit(pacing), 37.5, "1.5 x 1000/s x 25 ms");
  close(paceCredit({ ...pacing, carry: 0.4 }), 37.9, "with the carry");
});

test("pacing - the time since counts at least a sync interval and at most the slowest cadence", () => {
  close(
    paceCredit({ ...pacing, sinceMs: 5 }),
    37.5,
    "a tick sooner than the interval: one interval",
  );
  close(paceCredit({ ...pacing, sinceMs: 80 }), 37.5, "later than every cadence: the cadence");
  close(paceCredit({ ...pacing, sinceMs: 80, cadenceMs: 50 }), 75, "a node reporting every 50 ms");
});

test("pacing - echo damping paces at 1.1 for 2.5 windows after the first overload, then as tuned", () => {
  const damped = { ...pacing, echoDamping: true, overloadSinceMs: 9_000 };
  close(paceCredit(damped), 27.5, "1 s after the overload");
  close(paceCredit({ ...damped, nowMs: 11_600 }), 37.5, "2.6 windows after");
  close(paceCredit({ ...damped, overloadSinceMs: -1 }), 37.5, "never overloaded");
  close(paceCredit({ ...damped, pacing: 1.05 }), 26.25, "pacing below the damping's is kept");
});

test("pacing - the carry is what whole units left, at most one unit, never negative", () => {
  assert.equal(paceCarry(0.6, 0, 1), 0.6);
  assert.equal(paceCarry(3.4, 3, 1), 3.4 - 3);
  assert.equal(paceCarry(5, 1, 2), 2, "capped at one unit");
  assert.equal(paceCarry(1, 3, 1), 0, "handed out more than the credit (rounding): none");
});

test("pacing - a rule under one unit per tick is granted at its rate through the carry", () => {
  // 10 per second at 25 ms ticks and pacing 1.5: 0.375 units of credit a tick.
  let carry = 0;
  let granted = 0;
  for (let tick = 0; tick < 400; tick++) {
    const credit = paceCredit({ ...pacing, limit: 10, carry });
    const added = Math.floor(credit);
    granted += added;
    carry = paceCarry(credit, added, 1);
  }
  assert.equal(granted, 150, "400 ticks x 0.375 units");
});

const wait = { ...rule, cost: 1, lagMs: 0 };

test("budget wait - 0 when the budget covers one more hit now", () => {
  const w = windowWith(0, 1000, 50);
  const b = readBudget(w, shape, 1000, { ...rule, lagMs: 0, rampMs: 0 });
  assert.equal(budgetWaitMs(w, shape, 1000, { ...wait, budget: b, handedOut: 10 }), 0);
});

test("budget wait - a full window waits until its oldest hit frees, less the lag", () => {
  // 100 hits spread over [500, 1000): at 1000 the window is full and the first hit frees at 1500.
  const w = windowWith(500, 1000, 100);
  const b = readBudget(w, shape, 1000, { ...rule, lagMs: 0, rampMs: 0 });
  close(b.budgetNow, 0, "full");
  const d = budgetWaitMs(w, shape, 1000, { ...wait, budget: b, handedOut: 0 });
  close(d, 505, "one hit's share of the spread after 1500", 1);
  const lagged = readBudget(w, shape, 1000, { ...rule, lagMs: 20, rampMs: 0 });
  const dl = budgetWaitMs(w, shape, 1000, { ...wait, lagMs: 20, budget: lagged, handedOut: 0 });
  close(dl, d - 20, "the early release runs 20 ms ahead", 1);
});

test("budget wait - finite and within the window whatever the counts", () => {
  fc.assert(
    fc.property(
      fc.double({ min: 1, max: 1e300, noNaN: true }),
      fc.double({ min: 0, max: 1e300, noNaN: true }),
      fc.integer({ min: 0, max: 400 }),
      (cost, held, lagMs) => {
        const w = createGlobalWindow(shape, 0);
        addAdmitted(w, shape, 300, 300, cost);
        const b = readBudget(w, shape, 1000, { ...rule, lagMs, rampMs: 0 });
        const d = budgetWaitMs(w, shape, 1000, { ...wait, lagMs, budget: b, handedOut: held });
        assert.ok(Number.isFinite(d) && d >= 0 && d <= 1000, `wait ${d}`);
      },
    ),
  );
});

test("budget seam - what the allocation hands out stays within what pacing and the window allow", () => {
  // The chain the core runs for every key at a tick: read the budget, bound it by what nodes hold
  // plus the pace credit, allocate, round to whole units. Whatever the window and the nodes,
  // sum(max(committed, share)) <= max(grantable, held) and grantable <= budget: what nodes hold
  // is never taken back, nothing is added beyond the window's budget.
  const hits = fc.array(
    fc.record({ at: fc.integer({ min: 0, max: 1999 }), cost: fc.integer({ min: 1, max: 20 }) }),
    { maxLength: 60 },
  );
  const nodes = fc.array(
    fc.record({
      demand: fc.double({ min: 0, max: 300, noNaN: true }),
      committed: fc.double({ min: 0, max: 60, noNaN: true }),
      // What a node reported admitted, in hits (whole units of the rule's cost).
      hits: fc.integer({ min: 0, max: 300 }),
    }),
    { minLength: 1, maxLength: 8 },
  );
  fc.assert(
    fc.property(
      hits,
      nodes,
      fc.integer({ min: 0, max: 200 }),
      fc.constantFrom(0, 50),
      fc.double({ min: 0, max: 3, noNaN: true }),
      fc.double({ min: 0, max: 0.99, noNaN: true }),
      fc.constantFrom(1, 3),
      (hs, ns, lagMs, rampMs, pace, carry, unit) => {
        const limit = 300;
        const w = createGlobalWindow(shape, 0);
        for (const h of [...hs].sort((a, b) => a.at - b.at))
          addAdmitted(w, shape, h.at, h.at, h.cost);
        const now = 2000;
        const budget = readBudget(w, shape, now, { limit, windowMs: 1000, lagMs, rampMs });
        assert.ok(budget.budget >= budget.budgetNow - 1e-9, "a ramp only adds");
        assert.ok(
          budget.budgetNow <= limit - windowUsed(w, shape, now) + budget.earlyCap + 1e-9,
          "the early release stays within its cap",
        );
        const inputs = ns.map((x) => ({ ...x, base: x.hits * unit }));
        let held = 0;
        for (const x of inputs) held += x.committed;
        const credit = paceCredit({ ...pacing, limit, pacing: pace, carry: carry * unit });
        const grantable = budget.budget < held + credit ? budget.budget : held + credit;
        const shares = allocate(grantable, inputs);
        const carries = inputs.map(() => ({ roundingCarry: 0 }));
        roundToUnits(shares, inputs, unit, carries);
        const out = handedOut(inputs, shares);
        const bound = grantable > held ? grantable : held;
        assert.ok(out <= bound + 1e-6 * (1 + bound), `handed out ${out} > ${bound}`);
        assert.ok(grantable <= budget.budget, "grantable within the budget");
        for (let j = 0; j < inputs.length; j++) {
          const allowance = inputs[j]!.base + shares[j]!;
          assert.ok(
            shares[j]! < 1e-9 || Math.abs(allowance / unit - Math.round(allowance / unit)) < 1e-6,
            `node ${j}: allowance ${allowance} is not whole units of ${unit}`,
          );
        }
      },
    ),
    { numRuns: 500 },
  );
});
