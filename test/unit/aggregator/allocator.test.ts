import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { allocate, roundToUnits } from "../../../src/aggregator/allocator.js";

const close = (a: number, b: number) => Math.abs(a - b) < 1e-9;

test("allocator - small demands are met, the rest split equally (max-min fair)", () => {
  const shares = allocate(100, [
    { demand: 10, committed: 0 },
    { demand: 200, committed: 0 },
    { demand: 300, committed: 0 },
  ]);
  assert.ok(close(shares[0]!, 10));
  assert.ok(close(shares[1]!, 45));
  assert.ok(close(shares[2]!, 45));
});

test("allocator - spare capacity is spread half equally, half by demand", () => {
  const shares = allocate(100, [
    { demand: 10, committed: 0 },
    { demand: 30, committed: 0 },
  ]);
  // spare 60: 30 equally (15 each), 30 by demand (7.5 and 22.5)
  assert.ok(close(shares[0]!, 10 + 15 + 7.5));
  assert.ok(close(shares[1]!, 30 + 15 + 22.5));
});

test("allocator - no demand anywhere: the budget is split equally", () => {
  const shares = allocate(90, [
    { demand: 0, committed: 0 },
    { demand: 0, committed: 0 },
    { demand: 0, committed: 0 },
  ]);
  assert.deepEqual(shares, [30, 30, 30]);
});

test("allocator - allowances that cannot be taken back limit what others may grow by", () => {
  // Node 0 holds 60 but now wants nothing; node 1 wants everything. Until node 0 confirms,
  // node 1 may only have what the budget holds beyond node 0's 60.
  const shares = allocate(
    100,
    [
      { demand: 0, committed: 60 },
      { demand: 1000, committed: 0 },
    ],
    0,
  );
  assert.ok(close(shares[0]!, 0), `target of the shrinking node is ${shares[0]}`);
  assert.ok(close(shares[1]!, 40), `growing node gets ${shares[1]}`);
});

test("allocator - nothing to give: all shares are zero", () => {
  assert.deepEqual(allocate(0, [{ demand: 5, committed: 0 }]), [0]);
  assert.deepEqual(allocate(-3, [{ demand: 5, committed: 1 }]), [0]);
  assert.deepEqual(allocate(10, []), []);
});

const inputs = fc.array(
  fc.record({
    demand: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 1000, noNaN: true })),
    committed: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 300, noNaN: true })),
  }),
  { minLength: 1, maxLength: 12 },
);

test("allocator - the sum of max(committed, share) never exceeds the budget (when it can hold)", () => {
  fc.assert(
    fc.property(fc.double({ min: 0, max: 2000, noNaN: true }), inputs, (budget, nodes) => {
      const committedTotal = nodes.reduce((s, x) => s + x.committed, 0);
      const shares = allocate(budget, nodes);
      const exposure = nodes.reduce((s, x, j) => s + Math.max(x.committed, shares[j]!), 0);
      // Commitments already over the budget cannot be undone by the allocator: then it must
      // add nothing on top of them.
      const bound = Math.max(budget, committedTotal);
      return exposure <= bound + 1e-6 && shares.every((s) => s >= 0);
    }),
    { numRuns: 500 },
  );
});

test("allocator - with nothing committed the whole budget is handed out", () => {
  fc.assert(
    fc.property(fc.double({ min: 0.001, max: 2000, noNaN: true }), inputs, (budget, nodes) => {
      const free = nodes.map((x) => ({ demand: x.demand, committed: 0 }));
      const total = allocate(budget, free).reduce((s, x) => s + x, 0);
      return Math.abs(total - budget) < 1e-6 * Math.max(1, budget);
    }),
    { numRuns: 500 },
  );
});

test("roundToUnits - allowances become whole units; the fractions freed go to who wants more", () => {
  // Three nodes reported 10, 20.5 and 7 admitted; shares 3.4, 2.8, 3.9 (sum 10.1).
  const nodes = [
    { demand: 100, committed: 0, base: 10 },
    { demand: 100, committed: 0, base: 20.5 },
    { demand: 0, committed: 0, base: 7 },
  ];
  const shares = [3.4, 2.8, 3.9];
  roundToUnits(shares, nodes, 1);
  // Allowances 13.4 -> 13, 23.3 -> 23, 10.9 -> 10: 1.6 freed. The idle node lost the most
  // (0.9) but wants nothing; node 0 lost 0.4 and node 1 0.3: one unit goes to node 0.
  assert.deepEqual(shares, [4, 2.5, 3]);
  assert.ok(shares.reduce((a, b) => a + b, 0) <= 3.4 + 2.8 + 3.9);
});

test("roundToUnits - with a carry, units freed by rounding go round the nodes in turn", () => {
  // Eight nodes that each want more, shares of 0.9 units: every tick rounds all eight down to 0
  // and has 7 units (7.2 freed) to hand back. The fractions tie, so without a carry the same
  // seven nodes get them at every tick; with one, each node's turn comes.
  const ticks = 80;
  const run = (withCarry: boolean) => {
    const got = new Array<number>(8).fill(0);
    const carry = Array.from({ length: 8 }, () => ({ roundingCarry: 0 }));
    const base = new Array<number>(8).fill(0);
    for (let t = 0; t < ticks; t++) {
      const nodes = base.map((b) => ({ demand: 100, committed: 0, base: b }));
      const shares = new Array<number>(8).fill(0.9);
      roundToUnits(shares, nodes, 1, withCarry ? carry : undefined);
      for (let j = 0; j < 8; j++) {
        got[j]! += shares[j]!;
        base[j]! += shares[j]!; // each node spends what it gets before the next tick
      }
    }
    return got;
  };
  const fair = run(true);
  const unfair = run(false);
  assert.equal(
    fair.reduce((a, b) => a + b, 0),
    7 * ticks,
  );
  assert.ok(Math.max(...fair) - Math.min(...fair) <= 1, `with a carry: ${fair}`);
  assert.ok(Math.max(...unfair) - Math.min(...unfair) >= ticks / 2, `without: ${unfair}`);
  for (const c of [fair]) assert.ok(c.every((x) => x > 0));
});

test("roundToUnits - the safety sum of max(committed, share) never grows", () => {
  fc.assert(
    fc.property(
      fc.double({ min: 0, max: 2000, noNaN: true }),
      inputs,
      fc.array(fc.integer({ min: 0, max: 10_000 }), { minLength: 12, maxLength: 12 }),
      fc.constantFrom(1, 2, 0.5),
      fc.array(fc.double({ min: -1, max: 1, noNaN: true }), { minLength: 12, maxLength: 12 }),
      (budget, nodes, admitted, unit, owed) => {
        const base = nodes.map((_, j) => admitted[j]! * unit);
        const shares = allocate(budget, nodes);
        const exposure = (s: number[]) =>
          nodes.reduce((sum, x, j) => sum + Math.max(x.committed, s[j]!), 0);
        const before = exposure(shares);
        const rounded = [...shares];
        roundToUnits(
          rounded,
          nodes.map((x, j) => ({ ...x, base: base[j]! })),
          unit,
          owed.slice(0, nodes.length).map((o) => ({ roundingCarry: o * unit })),
        );
        const whole = rounded.every((s, j) => {
          const allowance = base[j]! + s;
          return Math.abs(allowance / unit - Math.round(allowance / unit)) < 1e-6;
        });
        return whole && exposure(rounded) <= before + 1e-6 && rounded.every((s) => s >= 0);
      },
    ),
    { numRuns: 500 },
  );
});
