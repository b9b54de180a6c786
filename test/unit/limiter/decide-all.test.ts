/**
 * `decideAll`: a request must fit every rule and a refused one consumes from none; shadow mode
 * (the rule's own, or the option) lets refusals through, consuming nothing and counting them as
 * would-be rejections. On a manual clock, with local rules and strict rules over an exact
 * in-process store.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Decision } from "../../../src/algorithms/types.js";
import { ManualClock } from "../../../src/clock/clock.js";
import { InvalidArgumentError, UnknownRuleError } from "../../../src/errors.js";
import { createLimiter, type Limiter } from "../../../src/limiter/limiter.js";
import type { CompiledRule } from "../../../src/limiter/rule.js";
import type { StrictStore } from "../../../src/limiter/strict-store.js";

function local(rules: Parameters<typeof createLimiter>[0]["rules"]) {
  return createLimiter({ rules, clock: new ManualClock(0), sweepIntervalMs: 0 });
}

function statsOf(limiter: Limiter, rule: string) {
  return limiter.stats().find((s) => s.rule === rule)!;
}

test("decideAll - a request must fit every rule; one refused consumes from none", async () => {
  const limiter = local([
    { name: "burst", limit: 3, windowMs: 1000 },
    { name: "daily", algorithm: "sliding-window", limit: 5, windowMs: 86_400_000 },
  ]);
  const outcomes: boolean[] = [];
  for (let i = 0; i < 5; i++)
    outcomes.push((await limiter.decideAll(["burst", "daily"], "u")).allowed);
  assert.deepEqual(outcomes, [true, true, true, false, false]);
  const refused = await limiter.decideAll(["burst", "daily"], "u");
  assert.equal(refused.refusedBy, 0);
  assert.equal(refused.decisions.length, 2);
  assert.equal(refused.decisions[0]!.allowed, false);
  assert.equal(refused.decisions[1]!.allowed, true, "daily still had room and says so");
  // The refusals by "burst" took nothing from "daily": it still admits its last 2.
  assert.equal(limiter.peek("daily", "u").remaining, 1, "room for 2: 1 left after the next");
  assert.equal(statsOf(limiter, "burst").rejectedHits, 3);
  assert.equal(statsOf(limiter, "daily").rejectedHits, 0);
  assert.equal(statsOf(limiter, "daily").admittedHits, 3);
  await limiter.close();
});

test("decideAll - the option's shadow mode never refuses, consumes nothing for a would-be refusal, counts it", async () => {
  const limiter = local([
    { name: "burst", limit: 2, windowMs: 1000 },
    { name: "daily", limit: 100, windowMs: 86_400_000 },
  ]);
  const seen: { allowed: boolean; shadowed: boolean; refusedBy: number }[] = [];
  for (let i = 0; i < 4; i++) {
    const m = await limiter.decideAll(["burst", "daily"], "u", { shadow: true });
    seen.push({ allowed: m.allowed, shadowed: m.shadowed, refusedBy: m.refusedBy });
  }
  assert.deepEqual(seen, [
    { allowed: true, shadowed: false, refusedBy: -1 },
    { allowed: true, shadowed: false, refusedBy: -1 },
    { allowed: true, shadowed: true, refusedBy: 0 },
    { allowed: true, shadowed: true, refusedBy: 0 },
  ]);
  assert.equal(statsOf(limiter, "burst").shadowedHits, 2);
  assert.equal(statsOf(limiter, "burst").rejectedHits, 0);
  // As enforcing would: the two would-be refusals took nothing from "daily".
  assert.equal(limiter.peek("daily", "u").remaining, 97);
  await limiter.close();
});

test("shadow rule - check() lets a would-be refusal through, marked, consuming nothing; others still enforce", async () => {
  const limiter = local([
    { name: "trial", limit: 2, windowMs: 1000, shadow: true },
    { name: "real", limit: 3, windowMs: 1000 },
  ]);
  const d: Decision[] = [];
  for (let i = 0; i < 4; i++) d.push(limiter.check("trial", "k"));
  assert.deepEqual(
    d.map((x) => [x.allowed, x.shadowed === true]),
    [
      [true, false],
      [true, false],
      [true, true],
      [true, true],
    ],
  );
  assert.ok(d[2]!.retryAfterMs > 0, "a shadowed decision tells the wait enforcing would give");
  assert.equal(d[2]!.remaining, 0);
  const s = statsOf(limiter, "trial");
  assert.deepEqual([s.admittedHits, s.rejectedHits, s.shadowedHits], [2, 0, 2]);
  assert.equal(limiter.peek("trial", "k").shadowed, true);
  // decideAll with both: the shadow rule's refusal does not refuse; the real rule still consumes.
  const m = await limiter.decideAll(["trial", "real"], "k");
  assert.deepEqual([m.allowed, m.shadowed, m.refusedBy], [true, true, 0]);
  assert.equal(limiter.peek("real", "k").remaining, 1, "2 left: 1 after the next");
  // acquire() on a shadow rule never waits.
  const a = await limiter.acquire("trial", "k", { timeoutMs: 0 });
  assert.equal(a.shadowed, true);
  await limiter.close();
});

/** An exact shared store over a local limiter (the Redis store is tested against real Redis). */
class ExactStore implements StrictStore {
  readonly inner: Limiter;
  constructor(clock: ManualClock, limit: number) {
    this.inner = createLimiter({
      rules: [{ name: "pay", limit, windowMs: 1000 }],
      clock,
      sweepIntervalMs: 0,
    });
  }
  async decide(rule: CompiledRule, key: string, cost: number) {
    await Promise.resolve();
    return this.inner.check(rule.name, key, cost);
  }
  async peek(rule: CompiledRule, key: string, cost: number) {
    await Promise.resolve();
    return this.inner.peek(rule.name, key, cost);
  }
  async adjust(rule: CompiledRule, key: string, cost: number) {
    if (cost > 0) await this.inner.penalty(rule.name, key, cost);
    else await this.inner.reward(rule.name, key, -cost);
  }
  async reset(rule: CompiledRule, key: string) {
    await this.inner.reset(rule.name, key);
  }
  async block(rule: CompiledRule, key: string, durationMs: number) {
    await this.inner.block(rule.name, key, durationMs);
  }
  async close() {}
}

test("decideAll - a strict rule's take is refunded when an in-memory rule refuses after the store admitted", async () => {
  const clock = new ManualClock(0);
  const store = new ExactStore(clock, 10);
  const limiter = createLimiter({
    rules: [
      { name: "pay", limit: 10, windowMs: 1000, mode: "strict" },
      { name: "burst", limit: 1, windowMs: 1000 },
    ],
    clock,
    sweepIntervalMs: 0,
    strictStore: store,
  });
  // Both fit: both take. Then burst refuses in the first peek: the store is only peeked.
  assert.equal((await limiter.decideAll(["pay", "burst"], "t")).allowed, true);
  assert.equal((await limiter.decideAll(["pay", "burst"], "t")).allowed, false);
  assert.equal(store.inner.peek("pay", "t").remaining, 8, "9 left: 8 after the next");
  // Burst takes its one token between the first peek and the store's answer: refused, refunded.
  clock.advance(1000);
  const pending = limiter.decideAll(["pay", "burst"], "t");
  limiter.check("burst", "t");
  const m = await pending;
  assert.deepEqual([m.allowed, m.refusedBy], [false, 1]);
  // Refilled to its capacity of 10 by then, less the 1 taken, plus the 1 given back.
  assert.equal(store.inner.peek("pay", "t").remaining, 9, "what the store took was given back");
  await limiter.close();
});

test("decideAll - bad calls throw naming the argument", async () => {
  const limiter = local([{ name: "a", limit: 1, windowMs: 1000 }]);
  await assert.rejects(limiter.decideAll([], "k"), InvalidArgumentError);
  await assert.rejects(limiter.decideAll(["a", "a"], "k"), /rules\[1\]/);
  await assert.rejects(limiter.decideAll(["nope"], "k"), UnknownRuleError);
  await assert.rejects(limiter.decideAll("a", "k", { cost: -1 }), /options\.cost/);
  await assert.rejects(limiter.decideAll("a", "k", { shadow: "yes" as never }), /options\.shadow/);
  await limiter.close();
});
