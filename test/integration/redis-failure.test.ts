/**
 * Redis going away and coming back, on a throwaway redis-server of this file's own (the shared
 * server on 6379 is never stopped or paused): the limiter's failure policies (`open`, `closed`,
 * `local`) while it is down, recovery once it is back, timeouts while it is paused, and scripts
 * reloaded transparently after SCRIPT FLUSH.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  createLimiter,
  createRedisStrictStore,
  type RuleConfig,
  StoreUnavailableError,
} from "../../src/index.js";
import { adminClient, sleep, uniquePrefix, waitFor } from "./helpers/redis-fixtures.js";
import { startThrowawayRedis, type ThrowawayRedis } from "./helpers/redis-server.js";

const prefix = uniquePrefix("failure");
let server: ThrowawayRedis;
before(async () => {
  server = await startThrowawayRedis();
});
after(async () => {
  await server.stop();
});

const DAY_MS = 24 * 3600 * 1000;
const fastReconnect = { retryStrategy: () => 50 };

function strictRule(name: string, onStoreFailure: "open" | "closed" | "local"): RuleConfig {
  return {
    name,
    limit: 3,
    windowMs: DAY_MS,
    mode: "strict",
    onStoreFailure,
    storeTimeoutMs: 200,
  };
}

test("redis failure - policies apply while Redis is down, and decisions return to Redis after a restart", async () => {
  const strictStore = createRedisStrictStore({
    url: server.url,
    keyPrefix: prefix,
    redis: fastReconnect,
  });
  const limiter = createLimiter({
    rules: [
      strictRule("open", "open"),
      strictRule("closed", "closed"),
      strictRule("local", "local"),
    ],
    strictStore,
    sweepIntervalMs: 0,
  });
  const failures = () => limiter.stats().map((s) => s.storeFailures);
  try {
    for (const rule of ["open", "closed", "local"]) {
      const d = await limiter.checkAsync(rule, "u");
      assert.equal(d.allowed, true);
      assert.equal(d.remaining, 2, `${rule} decided by Redis`);
    }
    assert.deepEqual(failures(), [0, 0, 0]);

    await server.stop();
    const down = await waitFor(async () => {
      try {
        await strictStore.peek(limiter.rules[0]!, "probe");
        return false;
      } catch (err) {
        return err instanceof StoreUnavailableError;
      }
    }, 5000);
    assert.ok(down, "the store noticed Redis is gone");

    const open = await limiter.checkAsync("open", "u");
    assert.equal(open.allowed, true, "open admits");
    const closed = await limiter.checkAsync("closed", "u");
    assert.equal(closed.allowed, false, "closed refuses");
    assert.equal(closed.retryAfterMs, 200, "closed suggests retrying after storeTimeoutMs");
    // local: the node's own limiter, which has never seen this key: a full bucket of 3.
    const local = [];
    for (let i = 0; i < 4; i++) local.push((await limiter.checkAsync("local", "u")).allowed);
    assert.deepEqual(local, [true, true, true, false]);
    assert.deepEqual(failures(), [1, 1, 4]);

    const err = await strictStore.decide(limiter.rules[1]!, "u", 1).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof StoreUnavailableError);
    assert.ok(err.cause instanceof Error, "the error carries its cause");

    await server.start(); // empty: no persistence
    const back = await waitFor(async () => {
      try {
        await strictStore.peek(limiter.rules[0]!, "probe");
        return true;
      } catch {
        return false;
      }
    }, 10_000);
    assert.ok(back, "the store reconnected");
    for (const rule of ["open", "closed", "local"]) {
      const d = await limiter.checkAsync(rule, "u");
      assert.equal(d.allowed, true, rule);
      assert.equal(d.remaining, 2, `${rule} is decided by the restarted (empty) Redis again`);
    }
    assert.deepEqual(failures(), [1, 1, 4]);
    assert.ok(strictStore.stats().failures >= 1);
  } finally {
    await limiter.close();
  }
});

test("redis failure - a paused Redis times out after storeTimeoutMs with a StoreUnavailableError", async () => {
  const strictStore = createRedisStrictStore({
    url: server.url,
    keyPrefix: prefix,
    redis: fastReconnect,
  });
  const limiter = createLimiter({
    rules: [{ ...strictRule("paused", "closed"), storeTimeoutMs: 150 }],
    strictStore,
    sweepIntervalMs: 0,
  });
  const admin = adminClient(server.url);
  try {
    // Connect and load the script first, so the short timeout below measures only the pause
    // (on a busy machine a first call's connect and script load can take longer than it).
    await strictStore.ready();
    await strictStore.decide(limiter.rules[0]!, "warm-up", 1);
    assert.equal((await limiter.checkAsync("paused", "p")).allowed, true);
    await admin.call("CLIENT", "PAUSE", "1000", "ALL");
    const err = await strictStore.decide(limiter.rules[0]!, "p", 1).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof StoreUnavailableError, String(err));
    assert.equal((err.cause as Error).name, "StoreTimeoutError");
    const viaLimiter = await limiter.checkAsync("paused", "p");
    assert.equal(viaLimiter.allowed, false, "closed policy while paused");
    assert.equal(strictStore.stats().timeouts, 2);
    await sleep(1100);
    const d = await limiter.checkAsync("paused", "p2");
    assert.equal(d.allowed, true, "answers again once the pause ends");
    assert.equal(d.remaining, 2);
  } finally {
    await limiter.close();
    await admin.quit();
  }
});

test("redis failure - SCRIPT FLUSH: the next call reloads the script transparently", async () => {
  const strictStore = createRedisStrictStore({ url: server.url, keyPrefix: prefix });
  const limiter = createLimiter({
    rules: [strictRule("flush", "closed")],
    strictStore,
    sweepIntervalMs: 0,
  });
  const admin = adminClient(server.url);
  try {
    assert.equal((await limiter.checkAsync("flush", "f")).remaining, 2);
    await admin.script("FLUSH");
    const d = await limiter.checkAsync("flush", "f");
    assert.equal(d.allowed, true);
    assert.equal(d.remaining, 1, "decided by the reloaded script, on the same state");
    assert.equal(limiter.stats()[0]!.storeFailures, 0);
    assert.equal(strictStore.stats().failures, 0);
  } finally {
    await limiter.close();
    await admin.quit();
  }
});

test("redis failure - a store created while Redis is down fails fast, then recovers", async () => {
  await server.stop();
  const strictStore = createRedisStrictStore({
    url: server.url,
    keyPrefix: prefix,
    redis: fastReconnect,
  });
  const limiter = createLimiter({
    rules: [strictRule("late", "closed")],
    strictStore,
    sweepIntervalMs: 0,
  });
  try {
    const first = await limiter.checkAsync("late", "l");
    assert.equal(first.allowed, false, "closed while Redis has never been reachable");
    await server.start();
    const back = await waitFor(async () => (await limiter.checkAsync("late", "l")).allowed, 10_000);
    assert.ok(back);
  } finally {
    await limiter.close();
  }
});
