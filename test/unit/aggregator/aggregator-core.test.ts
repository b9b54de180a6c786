/**
 * The aggregator's core on a manual clock, driven with hand-made batches: the wait it sends with
 * each grant, and pacing for rules whose paced rate is under a unit per tick.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { AggregatorCore } from "../../../src/aggregator/aggregator-core.js";
import { type AggregatorTuning, resolveTuning } from "../../../src/aggregator/tuning.js";
import { ManualClock } from "../../../src/clock/clock.js";
import { createLimiter } from "../../../src/limiter/limiter.js";
import type { RuleConfig } from "../../../src/limiter/rule.js";
import { encode } from "../../../src/protocol/encode.js";
import type { DecisionBatch, GrantEntry } from "../../../src/protocol/messages.js";

const RULE: RuleConfig = {
  name: "g",
  mode: "global",
  algorithm: "sliding-window",
  limit: 20,
  windowMs: 2000,
  segments: 10, // bins of 200 ms
};

/** A core on `clock` (the rule above unless `rule` is given), driven at the clock's time. */
function core(clock: ManualClock, tuning: Partial<AggregatorTuning> = {}, rule = RULE) {
  const rules = createLimiter({ rules: [rule], sweepIntervalMs: 0 }).rules;
  const c = new AggregatorCore({
    rules,
    aggregatorId: "agg",
    epoch: 7,
    tuning: resolveTuning({ hitWaitCompensation: false, ...tuning }),
    startMs: clock.nowMs(),
  });
  return {
    core: c,
    ingestBatch: (b: DecisionBatch) => c.ingestBatch(b, clock.nowMs()),
    tick: () => c.tick(clock.nowMs(), 0),
  };
}

/** A batch from node "n" (run 1) with one entry for key "k". */
function report(
  seq: number,
  e: {
    admitted: number;
    rejected?: number;
    isNew?: boolean;
    grant?: GrantEntry | undefined;
    ageMs?: number;
  },
): DecisionBatch {
  return {
    type: "decision-batch",
    ownerEpoch: 0,
    nodeId: "n",
    nodeEpoch: 1,
    seq,
    sentAtWallMs: 0,
    groups: [
      {
        rule: "g",
        entries: [
          {
            key: "k",
            generation: 1,
            admitted: e.admitted,
            rejected: e.rejected ?? 0,
            isNew: e.isNew ?? false,
            grantEpoch: e.grant === undefined ? 0 : 7,
            grantVersion: e.grant?.version ?? 0,
            allowance: e.grant?.allowance ?? 0,
            admittedSinceLast: 0,
            ageMs: e.ageMs ?? 0,
          },
        ],
      },
    ],
  };
}

function grantOf(c: ReturnType<typeof core>): GrantEntry | undefined {
  return c.tick().updates[0]?.groups[0]?.entries[0];
}

test("aggregator core - a grant says when the window frees the next hit beyond what is handed out", () => {
  const bin = 1_000_000; // a bin boundary: 200 ms bins
  const clock = new ManualClock(bin + 150);
  const c = core(clock, { lagCompensationMs: 0 });
  // The node spent the whole limit at once, 110 ms into a bin (the start of a burst), and
  // reported it 40 ms later.
  c.ingestBatch(report(1, { admitted: 20, isNew: true, ageMs: 40 }));
  const first = grantOf(c)!;
  assert.equal(first.allowance, 20, "nothing left to grant");
  // The burst (one instant) is read as spread over [110, 200) ms of its bin, so one hit's cost
  // leaves the window 2000 + 110 + 1/20 of 90 ms after the bin's start. (The node is still on
  // its default share, which the allocation counts as what it may yet admit; the wait is for
  // once it holds this grant.)
  const expected = bin + 2000 + 110 + 4.5 - clock.nowMs();
  assert.ok(Math.abs(first.retryAfterMs - expected) < 1e-6, `${first.retryAfterMs} vs ${expected}`);
  clock.advance(10);
  c.ingestBatch(report(2, { admitted: 20, grant: first }));
  assert.equal(grantOf(c), undefined, "the same allowance and wait: nothing to send");
  clock.advance(40);
  c.ingestBatch(report(3, { admitted: 20, rejected: 2, grant: first }));
  assert.equal(grantOf(c), undefined, "still nothing new for a node out of room");
});

test("aggregator core - a grant with budget left but held back says the next tick (0)", () => {
  const clock = new ManualClock(1_000_000);
  const c = core(clock, { hitWaitCompensation: true }, { ...RULE, limit: 2000, windowMs: 1000 });
  // The node holds a grant it has spent (as after an aggregator restart) and is refusing.
  const held = { version: 1, allowance: 100 } as GrantEntry;
  c.ingestBatch(report(1, { admitted: 100, rejected: 50, isNew: true, grant: held }));
  clock.advance(25);
  const g = grantOf(c)!;
  // Pacing hands out at most 1.5 x the steady rate per tick (75 of 2000 per 25 ms).
  assert.ok(g.allowance > 100 && g.allowance <= 100 + 75 + 1, `${g.allowance}`);
  assert.equal(g.retryAfterMs, 0, "budget is left in the window: the next tick can grant more");
});

test("aggregator core - a rule paced at under a unit per tick is still granted whole units", () => {
  // 20 per 2 s is 0.25 per 25 ms tick (0.375 with pacing 1.5): rounded to whole units, every
  // tick alone would give nothing, and the rule would admit nothing after its first window.
  const clock = new ManualClock(1_000_000);
  const c = core(clock);
  let admitted = 0;
  let rejected = 0;
  let grant: GrantEntry | undefined;
  const allowanceAt: number[] = [];
  // A node under overload that spends every grant at once, reporting every 25 ms, for 6 s.
  for (let tick = 0; tick < 240; tick++) {
    if (grant === undefined)
      admitted = 20; // its default share, at the start
    else admitted = grant.allowance;
    rejected += 3;
    c.ingestBatch(report(tick + 1, { admitted, rejected, isNew: tick === 0, grant }));
    grant = grantOf(c) ?? grant;
    allowanceAt.push(grant!.allowance);
    clock.advance(25);
  }
  // From 2 s to 6 s the node may admit what the window frees: 10 per second.
  const inLastFour = allowanceAt[239]! - allowanceAt[79]!;
  assert.ok(inLastFour >= 36 && inLastFour <= 41, `admitted in 4 s: ${inLastFour} (limit 40)`);
});

test("aggregator core - whatever counts the reports carry, every update it returns can be encoded", () => {
  const extremes = [0, 5e-324, 1, 1e15, Number.MAX_VALUE];
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          admitted: fc.constantFrom(...extremes),
          rejected: fc.constantFrom(...extremes),
          ageMs: fc.constantFrom(0, 1e15, Number.MAX_VALUE),
          isNew: fc.boolean(),
          allowance: fc.constantFrom(...extremes),
        }),
        { minLength: 1, maxLength: 6 },
      ),
      (reports) => {
        const clock = new ManualClock(1_000_000);
        const c = core(clock);
        for (const [i, r] of reports.entries()) {
          const grant = { version: i, allowance: r.allowance } as GrantEntry;
          c.ingestBatch(report(i + 1, { ...r, grant: i % 2 === 0 ? undefined : grant }));
          clock.advance(25);
          for (const u of c.tick().updates) encode({ type: "rate-update", ...u }); // throws if not
        }
      },
    ),
  );
});
