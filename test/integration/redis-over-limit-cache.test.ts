/**
 * The over-limit cache of the Redis strict store, on the real Redis: a flood on a key known to be
 * over its limit is answered in process, with a retry time that counts down on the store's clock
 * (a ManualClock here), bounded in size, bypassed for smaller costs, cleared by refunds, and off
 * when disabled.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import {
  type CompiledRule,
  createLimiter,
  createRedisStrictStore,
  ManualClock,
} from "../../src/index.js";
import {
  adminClient,
  deleteUnder,
  SHARED_REDIS_URL,
  uniquePrefix,
} from "./helpers/redis-fixtures.js";

const prefix = uniquePrefix("over-limit-cache");
const admin = adminClient();
after(async () => {
  await deleteUnder(admin, prefix);
  await admin.quit();
});

const HOUR_MS = 3600 * 1000;

function rule(name: string, limit = 2): CompiledRule {
  return createLimiter({
    rules: [{ name, limit, windowMs: HOUR_MS, storeTimeoutMs: 5000 }],
    sweepIntervalMs: 0,
  }).rules[0]!;
}

test("redis over-limit cache - a flood on a refused key stays in process, retryAfterMs counting down", async () => {
  const clock = new ManualClock(1000);
  const store = createRedisStrictStore({ url: SHARED_REDIS_URL, keyPrefix: prefix, clock });
  const r = rule("flood");
  try {
    assert.equal((await store.decide(r, "hot", 1)).allowed, true);
    assert.equal((await store.decide(r, "hot", 1)).allowed, true);
    const refused = await store.decide(r, "hot", 1); // from Redis
    assert.equal(refused.allowed, false);
    assert.equal(store.stats().storeCalls, 3);

    const flood = await Promise.all(Array.from({ length: 200 }, () => store.decide(r, "hot", 1)));
    assert.ok(flood.every((d) => !d.allowed));
    assert.equal(store.stats().storeCalls, 3, "the flood never reached Redis");
    assert.equal(store.stats().overLimitCacheHits, 200);
    assert.equal(store.stats().overLimitCacheEntries, 1);
    // The cache counts from when the refused call was sent, so it never outlasts Redis' answer.
    assert.ok(flood[0]!.retryAfterMs <= refused.retryAfterMs);
    assert.equal(flood[0]!.limit, 2);

    clock.advance(60_000);
    const later = await store.decide(r, "hot", 1);
    assert.equal(later.allowed, false);
    assert.ok(Math.abs(later.retryAfterMs - (flood[0]!.retryAfterMs - 60_000)) < 1e-6);

    // A hit smaller than the refused one may fit, so it goes to Redis (the bucket is empty: no).
    const before = store.stats().storeCalls;
    await store.decide(r, "hot", 0.5);
    assert.equal(store.stats().storeCalls, before + 1);

    // Past the retry time, Redis is asked again.
    clock.advance(HOUR_MS);
    await store.decide(r, "hot", 1);
    assert.equal(store.stats().storeCalls, before + 2);
  } finally {
    await store.close();
  }
});

test("redis over-limit cache - bounded to maxEntries, oldest refusal dropped first", async () => {
  const store = createRedisStrictStore({
    url: SHARED_REDIS_URL,
    keyPrefix: prefix,
    overLimitCache: { maxEntries: 3 },
  });
  const r = rule("bounded", 1);
  try {
    for (let k = 0; k < 5; k++) {
      await store.decide(r, `k${k}`, 1);
      assert.equal((await store.decide(r, `k${k}`, 1)).allowed, false);
    }
    assert.equal(store.stats().overLimitCacheEntries, 3);
    const calls = store.stats().storeCalls;
    await store.decide(r, "k4", 1); // still cached
    assert.equal(store.stats().storeCalls, calls);
    await store.decide(r, "k0", 1); // evicted: asks Redis
    assert.equal(store.stats().storeCalls, calls + 1);
  } finally {
    await store.close();
  }
});

test("redis over-limit cache - a refund clears the key's entry", async () => {
  const store = createRedisStrictStore({ url: SHARED_REDIS_URL, keyPrefix: prefix });
  const r = rule("refund", 1);
  try {
    await store.decide(r, "k", 1);
    assert.equal((await store.decide(r, "k", 1)).allowed, false);
    assert.equal(store.stats().overLimitCacheEntries, 1);
    await store.refund(r, "k", 1);
    assert.equal(store.stats().overLimitCacheEntries, 0);
    assert.equal((await store.decide(r, "k", 1)).allowed, true);
  } finally {
    await store.close();
  }
});

test("redis over-limit cache - overLimitCache: false sends every call to Redis", async () => {
  const store = createRedisStrictStore({
    url: SHARED_REDIS_URL,
    keyPrefix: prefix,
    overLimitCache: false,
  });
  const r = rule("disabled", 1);
  try {
    for (let i = 0; i < 20; i++) await store.decide(r, "k", 1);
    assert.equal(store.stats().storeCalls, 20);
    assert.equal(store.stats().overLimitCacheHits, 0);
    assert.equal(store.stats().overLimitCacheEntries, 0);
  } finally {
    await store.close();
  }
});
