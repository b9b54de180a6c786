/**
 * Key administration on strict rules through the public limiter API, against the real Redis:
 * `reset`, `penalty`, `reward` and `block` act on the shared state, so every limiter on the
 * store (every process) sees them at once. Each limiter here has its own store on the same key
 * prefix, as two processes would, and the scripts run on Redis' own clock.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import {
  createLimiter,
  createRedisStrictStore,
  DeadlineExceededError,
  type Limiter,
  type RuleConfig,
} from "../../src/index.js";
import {
  adminClient,
  deleteUnder,
  keysUnder,
  SHARED_REDIS_URL,
  sleep,
  uniquePrefix,
} from "./helpers/redis-fixtures.js";

const prefix = uniquePrefix("key-admin");
const admin = adminClient();
after(async () => {
  await deleteUnder(admin, prefix);
  await admin.quit();
});

const DAY_MS = 86_400_000;
const ALGORITHMS = ["token-bucket", "gcra", "sliding-window"] as const;

/** A limiter on its own store (its own connection and over-limit cache) over the shared prefix. */
function limiterOn(rules: readonly RuleConfig[], overLimitCache?: false): Limiter {
  return createLimiter({
    rules,
    strictStore: createRedisStrictStore({
      url: SHARED_REDIS_URL,
      keyPrefix: prefix,
      ...(overLimitCache === false ? { overLimitCache } : {}),
    }),
    sweepIntervalMs: 0,
  });
}

/** Hits of cost 1 admitted in a row from now, up to `most`. */
async function admitted(limiter: Limiter, rule: string, key: string, most: number) {
  let n = 0;
  while (n < most && (await limiter.checkAsync(rule, key)).allowed) n++;
  return n;
}

test("redis key admin - reset after exhaustion admits a full limit again, on every algorithm", async () => {
  const limiter = limiterOn(
    ALGORITHMS.map((algorithm) => ({
      name: algorithm,
      algorithm,
      limit: 5,
      windowMs: DAY_MS,
      mode: "strict" as const,
    })),
  );
  try {
    for (const rule of ALGORITHMS) {
      assert.equal(await admitted(limiter, rule, "u1", 10), 5, rule);
      assert.equal((await limiter.checkAsync(rule, "u1")).allowed, false, rule);
      await limiter.reset(rule, "u1");
      assert.equal(await admitted(limiter, rule, "u1", 10), 5, `${rule} after reset`);
    }
  } finally {
    await limiter.close();
  }
});

test("redis key admin - penalty charges past the limit and reward gives back, on every algorithm", async () => {
  const limiter = limiterOn(
    ALGORITHMS.map((algorithm) => ({
      name: algorithm,
      algorithm,
      limit: 10,
      windowMs: DAY_MS,
      mode: "strict" as const,
    })),
  );
  try {
    for (const rule of ALGORITHMS) {
      await limiter.penalty(rule, "u2", 4);
      assert.equal(
        (await limiter.peekAsync(rule, "u2")).remaining,
        5,
        `${rule}: 10 - 4 - the peeked 1`,
      );
      // A charge past the limit: nothing passes until a reward brings the key back under it.
      await limiter.penalty(rule, "u2", 20);
      const refused = await limiter.checkAsync(rule, "u2");
      assert.equal(refused.allowed, false, rule);
      assert.ok(refused.retryAfterMs > 0 && refused.retryAfterMs < Infinity, rule);
      await limiter.reward(rule, "u2", 21);
      assert.equal(await admitted(limiter, rule, "u2", 20), 7, `${rule}: 10 - 4 - 20 + 21`);
      // A reward never goes past rest.
      await limiter.reward(rule, "u2", 1000);
      assert.equal(await admitted(limiter, rule, "u2", 20), 10, `${rule} after a large reward`);
    }
  } finally {
    await limiter.close();
  }
});

test("redis key admin - a block refuses on every limiter of the store until it ends, and acquire() with a shorter deadline fails at once", async () => {
  const rules: RuleConfig[] = [{ name: "api", limit: 100, windowMs: DAY_MS, mode: "strict" }];
  const a = limiterOn(rules);
  const b = limiterOn(rules);
  const blockMs = 600;
  try {
    assert.equal((await b.checkAsync("api", "u3")).allowed, true);
    await a.block("api", "u3", blockMs);
    for (const limiter of [a, b]) {
      const d = await limiter.checkAsync("api", "u3");
      assert.equal(d.allowed, false);
      assert.equal(d.remaining, 0);
      assert.ok(d.retryAfterMs > 0 && d.retryAfterMs <= blockMs, `retryAfterMs ${d.retryAfterMs}`);
      assert.equal(d.resetAfterMs, d.retryAfterMs);
    }
    // A shorter block does not cut the one in force.
    await b.block("api", "u3", 1);
    assert.equal((await b.checkAsync("api", "u3")).allowed, false, "a shorter block shortened it");
    const startedMs = performance.now();
    await assert.rejects(b.acquire("api", "u3", { timeoutMs: 50 }), DeadlineExceededError);
    assert.ok(performance.now() - startedMs < blockMs, "acquire() waited instead of failing");
    const waitMs = (await a.checkAsync("api", "u3")).retryAfterMs;
    await sleep(waitMs + 20);
    for (const [i, limiter] of [a, b].entries()) {
      const d = await limiter.checkAsync("api", "u3");
      assert.equal(d.allowed, true, "still refused after the block");
      assert.equal(d.remaining, 98 - i, "the block consumed nothing");
    }
  } finally {
    await a.close();
    await b.close();
  }
});

test("redis key admin - reset lifts a block at once, in the store and in the over-limit cache of the limiter that resets", async () => {
  const rules = ALGORITHMS.map((algorithm) => ({
    name: algorithm,
    algorithm,
    limit: 3,
    windowMs: DAY_MS,
    mode: "strict" as const,
  }));
  const a = limiterOn(rules);
  // Another process's over-limit cache does not hear of a reset: it may serve a refusal it
  // holds until that refusal's retry time (docs/strict-mode.md). Without a cache, it asks Redis.
  const b = limiterOn(rules, false);
  try {
    for (const rule of ALGORITHMS) {
      await a.block(rule, "u4", 60_000);
      assert.equal((await a.checkAsync(rule, "u4")).allowed, false, rule);
      assert.equal((await b.checkAsync(rule, "u4")).allowed, false, rule);
      await a.reset(rule, "u4");
      assert.equal(await admitted(a, rule, "u4", 2), 2, `${rule} after reset`);
      assert.equal(await admitted(b, rule, "u4", 10), 1, `${rule} after reset, elsewhere`);
    }
  } finally {
    await a.close();
    await b.close();
  }
});

test("redis key admin - decideAll refunds the store's take when a local rule refuses after it", async () => {
  const limiter = limiterOn([
    { name: "strictRule", limit: 5, windowMs: DAY_MS, mode: "strict" },
    { name: "localRule", limit: 1, windowMs: DAY_MS },
  ]);
  try {
    // The local rule admits when decideAll first peeks it; its last unit is taken while the
    // store decides, so it refuses on the second look and the store's take is given back.
    const pending = limiter.decideAll(["strictRule", "localRule"], "u5");
    assert.equal(limiter.check("localRule", "u5").allowed, true);
    const verdict = await pending;
    assert.equal(verdict.allowed, false);
    assert.equal(verdict.refusedBy, 1);
    assert.equal(verdict.decisions[0]!.allowed, true, "the store admitted first");
    assert.equal((await limiter.peekAsync("strictRule", "u5")).remaining, 4, "5 - the peeked 1");
    assert.equal(await admitted(limiter, "strictRule", "u5", 10), 5);
  } finally {
    await limiter.close();
  }
});

test("redis key admin - a blocked key at rest stays in Redis until its block ends, on every algorithm", async () => {
  const limiter = limiterOn(
    ALGORITHMS.map((algorithm) => ({
      name: algorithm,
      algorithm,
      limit: 3,
      windowMs: 100,
      mode: "strict" as const,
    })),
  );
  try {
    for (const rule of ALGORITHMS) {
      await limiter.block(rule, "u6", 30_000);
      const keys = await keysUnder(admin, `${prefix}{${rule}|u6}`);
      assert.equal(keys.length, 1, rule);
      const ttlMs = await admin.pttl(keys[0]!);
      assert.ok(ttlMs > 29_000 && ttlMs <= 30_001, `${rule}: PTTL ${ttlMs}`);
      // A hit refused by the block writes nothing that would shorten it.
      assert.equal((await limiter.checkAsync(rule, "u6")).allowed, false, rule);
      assert.ok((await admin.pttl(keys[0]!)) > 29_000, rule);
    }
  } finally {
    await limiter.close();
  }
});
