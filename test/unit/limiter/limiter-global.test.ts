/**
 * Global rules on the node, driven through `limiter.global` as the node agent drives it, on a
 * manual clock: what a refusal under a grant answers as `retryAfterMs`, `acquire()` against it
 * (at once past the deadline, woken by a new grant), and grants dropped as implausible.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ManualClock } from "../../../src/clock/clock.js";
import { DeadlineExceededError } from "../../../src/errors.js";
import type { Grant } from "../../../src/limiter/grant-cells.js";
import { createLimiter } from "../../../src/limiter/limiter.js";

const SYNC_MS = 25;

function make() {
  const clock = new ManualClock(0);
  const limiter = createLimiter({
    rules: [{ name: "g", mode: "global", algorithm: "sliding-window", limit: 100, windowMs: 1000 }],
    clock,
    sweepIntervalMs: 0,
  });
  const g = limiter.global;
  g.setSyncIntervalMs(SYNC_MS);
  g.setLiveNodes(4);
  g.setAggregatorLost(false);
  return { clock, limiter, g };
}

function grant(version: number, allowance: number, retryAfterMs: number, generation = 0): Grant {
  return { generation, version, allowance, rampFrom: allowance, rampMs: 0, retryAfterMs };
}

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

describe("global rules - retryAfterMs", () => {
  test("global retry - a refusal under a grant waits for the aggregator's freeing time, then a sync interval", () => {
    const { clock, limiter, g } = make();
    assert.equal(g.applyGrant("g", "k", 7, grant(1, 3, 400)), "applied");
    for (let i = 0; i < 3; i++) assert.equal(limiter.check("g", "k").allowed, true);
    clock.advance(100);
    const refused = limiter.check("g", "k");
    assert.equal(refused.allowed, false);
    assert.equal(
      refused.retryAfterMs,
      300,
      "the window frees capacity 400 ms after the grant came",
    );
    clock.advance(350);
    assert.equal(limiter.check("g", "k").retryAfterMs, SYNC_MS, "past it: the next grant is due");
    assert.equal(limiter.check("g", "k", 101).retryAfterMs, Infinity, "more than the limit: never");
  });

  test("global retry - acquire() fails at once when the freeing time is past its deadline", async () => {
    const { clock, limiter, g } = make();
    g.applyGrant("g", "k", 7, grant(1, 0, 600));
    await assert.rejects(limiter.acquire("g", "k", { timeoutMs: 150 }), (err: unknown) => {
      assert.ok(err instanceof DeadlineExceededError);
      assert.equal(err.retryAfterMs, 600);
      assert.equal(err.remainingMs, 150);
      return true;
    });
    assert.equal(clock.nowMs(), 0, "it did not sleep");
    assert.equal(clock.pendingTimers, 0);
    assert.equal(limiter.stats()[0]!.rejectedHits, 1);
  });

  test("global retry - acquire() waits for the freeing time and wakes at once when a new grant comes", async () => {
    const { clock, limiter, g } = make();
    g.applyGrant("g", "k", 7, grant(1, 0, 200));
    let resolved = false;
    const p = limiter.acquire("g", "k", { timeoutMs: 500 }).then((d) => {
      resolved = true;
      return d;
    });
    await settle();
    assert.equal(clock.pendingTimers, 1, "waiting");
    clock.advance(120);
    await settle();
    assert.equal(resolved, false);
    // A grant for another key does not end the wait; one for this key does, before the 200 ms.
    g.applyGrant("g", "other", 7, grant(2, 5, 0));
    await settle();
    assert.equal(resolved, false);
    g.applyGrant("g", "k", 7, grant(3, 1, 0));
    const d = await p;
    assert.equal(d.allowed, true);
    assert.equal(clock.nowMs(), 120, "woken by the grant, not by the timer");
    assert.equal(clock.pendingTimers, 0, "the wait's timer was cancelled");
  });

  test("global retry - a wait that ends without room checks again, within its deadline", async () => {
    const { clock, limiter, g } = make();
    g.applyGrant("g", "k", 7, grant(1, 0, 100));
    const p = limiter.acquire("g", "k", { timeoutMs: 110 });
    await settle();
    clock.advance(100);
    await settle();
    // The window freed but no grant came: the next is due in a sync interval, past the deadline.
    await assert.rejects(p, DeadlineExceededError);
    assert.equal(clock.nowMs(), 100);
    assert.equal(clock.pendingTimers, 0);
  });
});

describe("global rules - implausible grants", () => {
  test("global grants - an allowance beyond what the rule could give is dropped and counted", () => {
    const { limiter, g } = make();
    assert.equal(g.applyGrant("g", "k", 7, grant(1, 1e9, 0)), "implausible");
    assert.equal(limiter.check("g", "k").allowed, true, "the key decides at its default share");
    assert.equal(g.applyGrant("g", "k", 7, grant(2, 40, 0)), "applied");
    for (let i = 0; i < 39; i++) limiter.check("g", "k");
    // 40 admitted: at most 40 + limit + capacity (100 + 100) may be granted.
    assert.equal(g.applyGrant("g", "k", 7, grant(3, 241, 0)), "implausible");
    assert.equal(g.applyGrant("g", "k", 7, grant(4, 240, 0)), "applied");
    const s = limiter.stats()[0]!;
    assert.equal(s.grantsImplausible, 2);
    assert.equal(s.grantsApplied, 2);
  });

  test("global grants - a version jump no tick explains is dropped; real grants go on applying", () => {
    const { clock, g } = make();
    assert.equal(g.applyGrant("g", "k", 7, grant(10, 5, 0)), "applied");
    clock.advance(SYNC_MS);
    // 4 live nodes, one interval: at most (4 + 1) x 12 x 2 + 16 = 136 versions ahead.
    assert.equal(g.applyGrant("g", "k", 7, grant(1_000_010, 6, 0)), "implausible");
    assert.equal(g.applyGrant("g", "k", 7, grant(146, 6, 0)), "applied");
    clock.advance(60_000);
    // A minute later (2,401 intervals) up to 144,076 ahead.
    assert.equal(g.applyGrant("g", "k", 7, grant(144_000, 7, 0)), "applied", "a minute later");
    // A new aggregator run starts its versions afresh: no bound across runs.
    assert.equal(g.applyGrant("g", "k", 8, grant(1, 8, 0)), "applied");
  });
});
