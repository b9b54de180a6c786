/**
 * A global rule's grant cells on their own, over one slot of a Float64Array: which grants apply,
 * which are ignored or implausible, the ramp, the wait of a refusal. Time is the `nowMs` passed.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type Grant, GrantCells } from "../../../src/limiter/grant-cells.js";
import { compileRule } from "../../../src/limiter/rule.js";
import {
  ADMITTED,
  GENERATION,
  GLOBAL_EXTRA_CELLS,
  PENDING_ADMITTED,
} from "../../../src/limiter/slot-layout.js";

const SYNC_MS = 25;
/** limit 100 per second; a sliding window's capacity is its limit. */
const RULE = compileRule(
  { name: "g", mode: "global", algorithm: "sliding-window", limit: 100, windowMs: 1000 },
  "rule",
  10,
);
const EXTRA = 0;

function cells(generation = 7) {
  const slots = new Float64Array(GLOBAL_EXTRA_CELLS);
  const g = new GrantCells(RULE);
  g.setSlots(slots);
  g.setSyncIntervalMs(SYNC_MS);
  g.setLiveNodes(1);
  slots[EXTRA + GENERATION] = generation;
  g.init(EXTRA, 0);
  return { g, slots };
}

function grant(fields: Partial<Grant> = {}): Grant {
  return {
    generation: 7,
    version: 1,
    allowance: 10,
    rampFrom: 10,
    rampMs: 0,
    retryAfterMs: 400,
    ...fields,
  };
}

describe("grant cells - which grants apply", () => {
  test("grant cells - a newer grant for the generation held applies; the same, an older or another generation's does not", () => {
    const { g } = cells();
    assert.equal(g.held(EXTRA), false, "no grant after init");
    assert.equal(g.apply(EXTRA, 5, grant({ version: 3 }), 0), "applied");
    assert.equal(g.held(EXTRA), true);
    assert.equal(g.apply(EXTRA, 5, grant({ version: 3 }), 1), "ignored", "not newer");
    assert.equal(g.apply(EXTRA, 5, grant({ version: 2 }), 1), "ignored", "older version");
    assert.equal(g.apply(EXTRA, 4, grant({ version: 9 }), 1), "ignored", "older epoch");
    assert.equal(g.apply(EXTRA, 5, grant({ version: 4, generation: 8 }), 1), "ignored");
    assert.equal(g.apply(EXTRA, 5, grant({ version: 4, generation: 0 }), 1), "applied", "ahead");
    assert.equal(g.apply(EXTRA, 6, grant({ version: 1 }), 1), "applied", "a newer epoch");
  });

  test("grant cells - generations compare modulo 2^32, as they go on the wire", () => {
    const { g } = cells(2 ** 32 + 5);
    assert.equal(g.apply(EXTRA, 1, grant({ generation: 5 }), 0), "applied");
  });

  test("grant cells - an allowance beyond what is used plus limit and capacity is implausible", () => {
    const { g, slots } = cells();
    slots[EXTRA + ADMITTED] = 30;
    slots[EXTRA + PENDING_ADMITTED] = 20;
    assert.equal(g.isPlausible(250, 50), true);
    assert.equal(g.isPlausible(250.1, 50), false);
    assert.equal(g.apply(EXTRA, 1, grant({ allowance: 251 }), 0), "implausible");
    assert.equal(g.held(EXTRA), false, "an implausible grant changes nothing");
    assert.equal(g.apply(EXTRA, 1, grant({ allowance: 250 }), 0), "applied");
  });

  test("grant cells - within a run, a version jump beyond what the aggregator could send since the last grant is implausible", () => {
    const { g } = cells();
    assert.equal(g.apply(EXTRA, 1, grant({ version: 1 }), 0), "applied");
    // (1 live node + 1) x 12 versions per interval x (0 intervals + 1) + 16 slack = 40.
    assert.equal(g.apply(EXTRA, 1, grant({ version: 42 }), 0), "implausible");
    assert.equal(g.apply(EXTRA, 1, grant({ version: 41 }), 0), "applied");
    // 250 ms later: 24 x (10 + 1) + 16 = 280 versions ahead.
    assert.equal(g.apply(EXTRA, 1, grant({ version: 41 + 281 }), 250), "implausible");
    assert.equal(g.apply(EXTRA, 1, grant({ version: 41 + 280 }), 250), "applied");
    g.setLiveNodes(3); // more nodes, more ticks: (3 + 1) x 12 + 16 = 64 at once
    assert.equal(g.apply(EXTRA, 1, grant({ version: 321 + 64 }), 250), "applied");
    assert.equal(g.apply(EXTRA, 2, grant({ version: 1 }), 250), "applied", "a new run: no bound");
  });

  test("grant cells - clear drops the grant in force, so any epoch applies next", () => {
    const { g } = cells();
    g.apply(EXTRA, 9, grant({ version: 5 }), 0);
    g.clear(EXTRA);
    assert.equal(g.held(EXTRA), false);
    assert.equal(g.apply(EXTRA, 3, grant({ version: 1 }), 1), "applied");
  });
});

describe("grant cells - deciding on a grant", () => {
  test("grant cells - admits while cumulative admitted + cost fits the allowance, counting pending hits", () => {
    const { g, slots } = cells();
    g.apply(EXTRA, 1, grant({ allowance: 10 }), 0);
    slots[EXTRA + ADMITTED] = 4;
    slots[EXTRA + PENDING_ADMITTED] = 3;
    const ok = g.decide(EXTRA, 10, 3);
    assert.deepEqual([ok.allowed, ok.remaining, ok.retryAfterMs], [true, 0, 0]);
    const no = g.decide(EXTRA, 10, 4);
    assert.deepEqual([no.allowed, no.remaining], [false, 3]);
    assert.equal(no.retryAfterMs, 390, "until the window frees, 400 ms after the grant came");
    assert.equal(g.decide(EXTRA, 500, 4).retryAfterMs, SYNC_MS, "past it: the next grant is due");
    assert.equal(g.decide(EXTRA, 10, 101).retryAfterMs, Infinity, "more than the limit: never");
  });

  test("grant cells - a ramp makes the allowance usable linearly, and a refusal waits until the ramp fits it", () => {
    const { g } = cells();
    g.apply(EXTRA, 1, grant({ allowance: 50, rampFrom: 10, rampMs: 100, retryAfterMs: 400 }), 0);
    assert.equal(g.allowanceAt(EXTRA, 0), 10);
    assert.equal(g.allowanceAt(EXTRA, 50), 30);
    assert.equal(g.allowanceAt(EXTRA, 100), 50);
    assert.equal(g.allowanceAt(EXTRA, 1000), 50);
    assert.equal(g.decide(EXTRA, 50, 30).allowed, true);
    // 31 fits at 10 + 40 x t / 100 = 31, t = 52.5 ms: 2.5 ms from now, before the window frees.
    assert.equal(g.waitMs(EXTRA, 50, 31), 2.5);
    assert.equal(g.decide(EXTRA, 50, 31).retryAfterMs, 2.5);
    // More than the whole allowance: the ramp never fits it; the window's freeing time does.
    assert.equal(g.waitMs(EXTRA, 50, 51), 350);
  });

  test("grant cells - a grant without a ramp, or ramping from all of it, is usable at once", () => {
    const { g } = cells();
    g.apply(EXTRA, 1, grant({ allowance: 20, rampFrom: 5, rampMs: 0 }), 0);
    assert.equal(g.allowanceAt(EXTRA, 0), 20);
    g.apply(EXTRA, 1, grant({ version: 2, allowance: 20, rampFrom: 20, rampMs: 100 }), 0);
    assert.equal(g.allowanceAt(EXTRA, 0), 20);
  });
});
