/**
 * Key administration on local rules, for every algorithm: `reset` puts a key at rest and lifts
 * its block, `penalty` charges past the limit, `reward` refunds but never past rest, `block`
 * refuses outright until it ends (then the key decides as before).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { AlgorithmName } from "../../../src/algorithms/types.js";
import { ManualClock } from "../../../src/clock/clock.js";
import { InvalidArgumentError } from "../../../src/errors.js";
import { createLimiter } from "../../../src/limiter/limiter.js";

const ALGORITHMS: AlgorithmName[] = ["token-bucket", "gcra", "sliding-window"];

function make(algorithm: AlgorithmName) {
  const clock = new ManualClock(1_000_000);
  const limiter = createLimiter({
    rules: [{ name: "r", algorithm, limit: 10, windowMs: 1000 }],
    clock,
    sweepIntervalMs: 0,
  });
  const admitted = (n: number) => {
    let ok = 0;
    for (let i = 0; i < n; i++) if (limiter.check("r", "k").allowed) ok++;
    return ok;
  };
  return { clock, limiter, admitted };
}

for (const algorithm of ALGORITHMS) {
  test(`key admin (${algorithm}) - reset after exhaustion admits a full limit again`, async () => {
    const { limiter, admitted } = make(algorithm);
    assert.equal(admitted(15), 10);
    await limiter.reset("r", "k");
    assert.equal(admitted(15), 10);
    await limiter.close();
  });

  test(`key admin (${algorithm}) - penalty charges (past the limit too), reward refunds up to rest`, async () => {
    const { clock, limiter, admitted } = make(algorithm);
    await limiter.penalty("r", "k", 4);
    assert.equal(admitted(10), 6);
    await limiter.reward("r", "k", 3);
    assert.equal(admitted(10), 3);
    // A charge past the limit makes the key wait longer than a window's worth would.
    await limiter.penalty("r", "k", 10);
    const d = limiter.check("r", "k");
    assert.equal(d.allowed, false);
    assert.ok(d.retryAfterMs > 0);
    assert.equal(d.remaining, 0);
    clock.advance(5000);
    await limiter.reward("r", "k", 1000);
    assert.equal(admitted(15), 10, "a refund never goes past rest");
    await limiter.close();
  });

  test(`key admin (${algorithm}) - block refuses for its duration with the rest as the wait, then the key decides as before`, async () => {
    const { clock, limiter, admitted } = make(algorithm);
    assert.equal(admitted(2), 2);
    await limiter.block("r", "k", 60_000);
    clock.advance(10_000);
    const d = limiter.check("r", "k");
    assert.deepEqual([d.allowed, d.remaining, d.retryAfterMs], [false, 0, 50_000]);
    assert.equal(limiter.peek("r", "k").allowed, false);
    assert.equal(limiter.check("r", "other").allowed, true, "other keys are not blocked");
    clock.advance(50_000);
    assert.equal(admitted(15), 10);
    // reset lifts a block.
    await limiter.block("r", "k", 60_000);
    await limiter.reset("r", "k");
    assert.equal(limiter.check("r", "k").allowed, true);
    await limiter.close();
  });
}

test("key admin - bad arguments throw naming them", async () => {
  const { limiter } = make("token-bucket");
  await assert.rejects(limiter.penalty("r", "k", 0), InvalidArgumentError);
  await assert.rejects(limiter.reward("r", "k", Number.NaN), /cost/);
  await assert.rejects(limiter.block("r", "k", -5), /durationMs/);
  await assert.rejects(limiter.reset("nope", "k"), /nope/);
  await limiter.close();
});
