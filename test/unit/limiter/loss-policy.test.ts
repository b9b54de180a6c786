/** A global rule's `onAggregatorLoss` policy on its own. Time is the `nowMs` passed. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { LossPolicy } from "../../../src/limiter/loss-policy.js";
import type { AggregatorLossPolicy } from "../../../src/limiter/rule.js";
import { compileRule } from "../../../src/limiter/rule.js";

function policy(onAggregatorLoss: AggregatorLossPolicy): LossPolicy {
  const rule = compileRule(
    { name: "g", mode: "global", limit: 100, windowMs: 1000, onAggregatorLoss },
    "rule",
    10,
  );
  const p = new LossPolicy(rule);
  p.setSyncIntervalMs(40);
  return p;
}

test("loss policy - reports whether the aggregator is lost", () => {
  const p = policy("static");
  assert.equal(p.lost, false);
  p.setLost(true);
  assert.equal(p.lost, true);
});

test("loss policy - open admits every hit, closed refuses with a sync interval as the wait", () => {
  const open = policy("open").decide(0)!;
  assert.deepEqual([open.allowed, open.remaining, open.retryAfterMs], [true, 100, 0]);
  const closed = policy("closed").decide(0)!;
  assert.deepEqual([closed.allowed, closed.remaining, closed.retryAfterMs], [false, 0, 40]);
});

test("loss policy - static leaves the decision to the default share, except during its hold", () => {
  const p = policy("static");
  assert.equal(p.decide(0), undefined);
  p.setStaticHold(300);
  const held = p.decide(100)!;
  assert.deepEqual([held.allowed, held.retryAfterMs], [false, 200], "the rest of the hold");
  assert.equal(p.decide(300), undefined, "the hold is over");
  p.setStaticHold(Number.NEGATIVE_INFINITY);
  assert.equal(p.decide(100), undefined);
});
