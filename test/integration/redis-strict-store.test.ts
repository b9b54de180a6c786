/**
 * The Redis strict store against the real Redis on 127.0.0.1:6379: decisions per algorithm,
 * costs above 1, peek, refund, expiry on every key, reply shapes on RESP2 and RESP3, option
 * validation and a clean close. Keys live under a prefix unique to this file and are deleted
 * at the end.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { Redis } from "ioredis";
import {
  type CompiledRule,
  createLimiter,
  createRedisStrictStore,
  InvalidArgumentError,
  type RuleConfig,
  StoreUnavailableError,
} from "../../src/index.js";
import {
  adminClient,
  deleteUnder,
  keysUnder,
  SHARED_REDIS_URL,
  sleep,
  uniquePrefix,
} from "./helpers/redis-fixtures.js";

const prefix = uniquePrefix("strict-store");
const admin = adminClient();
after(async () => {
  await deleteUnder(admin, prefix);
  await admin.quit();
});

/**
 * Compiled rules as the limiter makes them (the public way to get a CompiledRule). The store
 * timeout is generous: these tests check decisions, not latency, on a shared machine.
 */
function compile(...rules: RuleConfig[]): CompiledRule[] {
  return rules.map(
    (r) => createLimiter({ rules: [{ storeTimeoutMs: 5000, ...r }], sweepIntervalMs: 0 }).rules[0]!,
  );
}

const DAY_MS = 24 * 3600 * 1000;

test("redis strict store - token bucket admits the burst, then refuses with a retry time", async () => {
  const [rule] = compile({ name: "tb", limit: 5, windowMs: DAY_MS });
  const store = createRedisStrictStore({ url: SHARED_REDIS_URL, keyPrefix: prefix });
  try {
    const decisions = [];
    for (let i = 0; i < 7; i++) decisions.push(await store.decide(rule!, "burst", 1));
    assert.deepEqual(
      decisions.map((d) => d.allowed),
      [true, true, true, true, true, false, false],
    );
    assert.deepEqual(
      decisions.map((d) => d.remaining),
      [4, 3, 2, 1, 0, 0, 0],
    );
    for (const d of decisions) assert.equal(d.limit, 5);
    // One token comes back every DAY_MS / 5 ms.
    assert.ok(decisions[5]!.retryAfterMs > DAY_MS / 5 - 1000);
    assert.ok(decisions[5]!.retryAfterMs <= DAY_MS / 5);
    assert.ok(decisions[4]!.resetAfterMs > DAY_MS - 1000);
  } finally {
    await store.close();
  }
});

test("redis strict store - costs above 1 take that many units, on every algorithm", async () => {
  const rules = compile(
    { name: "cost-tb", limit: 10, windowMs: DAY_MS },
    { name: "cost-gcra", algorithm: "gcra", limit: 10, windowMs: DAY_MS },
    { name: "cost-sw", algorithm: "sliding-window", limit: 10, windowMs: DAY_MS },
  );
  const store = createRedisStrictStore({ url: SHARED_REDIS_URL, keyPrefix: prefix });
  try {
    for (const rule of rules) {
      const a = await store.decide(rule, "k", 4);
      const b = await store.decide(rule, "k", 4);
      const c = await store.decide(rule, "k", 4); // 8 used, 4 more does not fit
      const d = await store.decide(rule, "k", 2);
      assert.deepEqual(
        [a.allowed, b.allowed, c.allowed, d.allowed],
        [true, true, false, true],
        rule.name,
      );
      assert.deepEqual([a.remaining, b.remaining, c.remaining, d.remaining], [6, 2, 2, 0]);
      assert.ok(c.retryAfterMs > 0, rule.name);
      const huge = await store.decide(rule, "k2", 11); // more than the capacity: never
      assert.equal(huge.allowed, false);
      assert.equal(huge.retryAfterMs, Infinity, rule.name);
    }
  } finally {
    await store.close();
  }
});

test("redis strict store - hits made at once share script calls and are decided in call order", async () => {
  const rules = compile(
    { name: "batch-tb", limit: 40, windowMs: DAY_MS },
    { name: "batch-sw", algorithm: "sliding-window", limit: 40, windowMs: DAY_MS },
  );
  const store = createRedisStrictStore({
    url: SHARED_REDIS_URL,
    keyPrefix: prefix,
    overLimitCache: false,
  });
  try {
    await store.ready();
    const hits = rules.flatMap((rule) =>
      Array.from({ length: 100 }, (_, i) => store.decide(rule, i % 2 ? "odd" : "even", 1)),
    );
    const decisions = await Promise.all(hits);
    for (const [r, rule] of rules.entries()) {
      const mine = decisions.slice(r * 100, r * 100 + 100);
      // Each key admits its first 40 hits in the order they were made, then refuses.
      for (const parity of [0, 1]) {
        const seq = mine.filter((_, i) => i % 2 === parity);
        assert.deepEqual(
          seq.map((d) => d.allowed),
          Array.from({ length: 50 }, (_, i) => i < 40),
          rule.name,
        );
        assert.deepEqual(
          seq.slice(0, 40).map((d) => d.remaining),
          Array.from({ length: 40 }, (_, i) => 39 - i),
        );
      }
    }
    const stats = store.stats();
    assert.equal(stats.storeCalls, 200);
    assert.ok(
      stats.scriptCalls <= 8,
      `200 hits in one tick took ${stats.scriptCalls} script calls`,
    );
    // A peek made right after, in the same tick, sees every hit made before it (and reports
    // what would remain after its own).
    const after = [store.decide(rules[0]!, "late", 1), store.peek(rules[0]!, "late", 1)];
    const [, peeked] = await Promise.all(after);
    assert.equal(peeked!.remaining, 38, "the peek ran after the queued hit");
  } finally {
    await store.close();
  }
});

test("redis strict store - peek consumes nothing and refund gives capacity back", async () => {
  const rules = compile(
    { name: "pr-tb", limit: 3, windowMs: DAY_MS },
    { name: "pr-gcra", algorithm: "gcra", limit: 3, windowMs: DAY_MS },
    { name: "pr-sw", algorithm: "sliding-window", limit: 3, windowMs: DAY_MS },
  );
  const store = createRedisStrictStore({ url: SHARED_REDIS_URL, keyPrefix: prefix });
  try {
    for (const rule of rules) {
      const fresh = await store.peek(rule, "pk");
      assert.equal(fresh.allowed, true);
      // As in the TypeScript algorithms: an admitted peek reports what would remain after it.
      assert.equal(fresh.remaining, 2, rule.name);
      assert.deepEqual(await keysUnder(admin, `${prefix}{${rule.name}|pk}`), [], "peek wrote");
      for (let i = 0; i < 3; i++) assert.equal((await store.decide(rule, "pk", 1)).allowed, true);
      assert.equal((await store.peek(rule, "pk")).allowed, false, rule.name);
      assert.equal((await store.peek(rule, "pk")).allowed, false, "peek twice still refuses");
      const afterRefund = await store.refund(rule, "pk", 2);
      assert.equal(afterRefund.allowed, true, rule.name);
      assert.equal((await store.decide(rule, "pk", 2)).allowed, true, rule.name);
      assert.equal((await store.decide(rule, "pk", 1)).allowed, false, rule.name);
      // Refunding everything (and more) leaves the key at rest: it is gone.
      await store.refund(rule, "pk", 10);
      assert.deepEqual(await keysUnder(admin, `${prefix}{${rule.name}|pk}`), [], rule.name);
      const rest = await store.peek(rule, "pk", 3);
      assert.equal(rest.allowed, true, rule.name);
      assert.equal(rest.remaining, 0, rule.name);
    }
  } finally {
    await store.close();
  }
});

test("redis strict store - every key the scripts write has an expiry, and keys at rest vanish", async () => {
  const rules = compile(
    { name: "ttl-tb", limit: 4, windowMs: 400 },
    { name: "ttl-gcra", algorithm: "gcra", limit: 4, windowMs: 400 },
    { name: "ttl-sw", algorithm: "sliding-window", limit: 4, windowMs: 400, segments: 4 },
  );
  const store = createRedisStrictStore({ url: SHARED_REDIS_URL, keyPrefix: prefix });
  try {
    for (const rule of rules) {
      for (let k = 0; k < 5; k++) {
        for (let i = 0; i < 6; i++) await store.decide(rule, `ttl-${k}`, 1 + (i % 2));
        if (k % 2 === 0) await store.refund(rule, `ttl-${k}`, 1);
        await store.peek(rule, `ttl-${k}`);
      }
    }
    const keys = await keysUnder(admin, `${prefix}{ttl-`);
    assert.equal(keys.length, 15);
    for (const key of keys) {
      const pttl = await admin.pttl(key);
      assert.ok(pttl > 0, `${key} has PTTL ${pttl}`);
      assert.ok(pttl <= 401 + 100, `${key} has PTTL ${pttl}, more than a window`);
    }
    // Each state is back at rest within a window (+ one segment for the sliding window).
    await sleep(650);
    assert.deepEqual(await keysUnder(admin, `${prefix}{ttl-`), []);
    for (const rule of rules) {
      const d = await store.peek(rule, "ttl-0", 4);
      assert.equal(d.allowed, true, `${rule.name} is back at rest`);
    }
  } finally {
    await store.close();
  }
});

test("redis strict store - keys are <prefix>{<rule>|<key>}:<algorithm>, one hash tag each", async () => {
  const rules = compile(
    { name: "a:b", limit: 5, windowMs: DAY_MS },
    { name: "a", algorithm: "gcra", limit: 5, windowMs: DAY_MS },
    { name: "a", algorithm: "sliding-window", limit: 5, windowMs: DAY_MS },
  );
  const store = createRedisStrictStore({ url: SHARED_REDIS_URL, keyPrefix: prefix });
  try {
    await store.decide(rules[0]!, "c", 1); // rule "a:b", key "c"
    await store.decide(rules[1]!, "b:c", 1); // rule "a", key "b:c": must not collide
    await store.decide(rules[2]!, "b:c", 1);
    const keys = (await keysUnder(admin, `${prefix}{a`)).sort();
    assert.deepEqual(keys, [`${prefix}{a:b|c}:tb`, `${prefix}{a|b:c}:gcra`, `${prefix}{a|b:c}:sw`]);
  } finally {
    await store.close();
  }
});

test("redis strict store - the same decisions over RESP3 and RESP2", async () => {
  const [rule] = compile({ name: "resp", limit: 2, windowMs: DAY_MS });
  const resp3 = createRedisStrictStore({
    url: SHARED_REDIS_URL,
    keyPrefix: prefix,
    redis: { protocol: 3 },
    overLimitCache: false,
  });
  const resp2 = createRedisStrictStore({
    url: SHARED_REDIS_URL,
    keyPrefix: prefix,
    overLimitCache: false,
  });
  try {
    const shapes = [];
    for (const store of [resp3, resp2, resp3, resp2])
      shapes.push(await store.decide(rule!, "r", 1));
    assert.deepEqual(
      shapes.map((d) => [d.allowed, d.remaining, d.limit, d.retryAfterMs === Infinity]),
      [
        [true, 1, 2, false],
        [true, 0, 2, false],
        [false, 0, 2, false],
        [false, 0, 2, false],
      ],
    );
    for (const d of shapes) {
      for (const v of [d.remaining, d.limit, d.resetAfterMs, d.retryAfterMs]) {
        assert.equal(typeof v, "number");
        assert.ok(Number.isFinite(v));
      }
    }
  } finally {
    await resp3.close();
    await resp2.close();
  }
});

test("redis strict store - options are validated with the field, expectation and value", () => {
  assert.throws(
    () => createRedisStrictStore({ keyPrefix: "app{x}:" }),
    (err: unknown) => err instanceof InvalidArgumentError && err.field === "options.keyPrefix",
  );
  assert.throws(
    () => createRedisStrictStore({ overLimitCache: { maxEntries: 0 } }),
    /Expected `options.overLimitCache.maxEntries` to be an integer >= 1 and <= 10000000, got `0`/,
  );
  assert.throws(
    () => createRedisStrictStore({ keyprefix: "x" } as never),
    (err: unknown) => err instanceof InvalidArgumentError && err.field === "options.keyprefix",
  );
});

test("redis strict store - bad cost or key rejects with InvalidArgumentError, not a store error", async () => {
  const [rule] = compile({ name: "bad", limit: 2, windowMs: 1000 });
  const store = createRedisStrictStore({ url: SHARED_REDIS_URL, keyPrefix: prefix });
  try {
    await assert.rejects(store.decide(rule!, "k", 0), InvalidArgumentError);
    await assert.rejects(store.refund(rule!, "k", Number.NaN), InvalidArgumentError);
    await assert.rejects(store.peek(rule!, 42 as never), InvalidArgumentError);
  } finally {
    await store.close();
  }
});

test("redis strict store - close() is idempotent, leaves no handle, and later calls fail", async () => {
  const count = () =>
    process.getActiveResourcesInfo().filter((r) => r === "TCPSocketWrap" || r === "Timeout").length;
  const before = count();
  const [rule] = compile({ name: "close", limit: 2, windowMs: 1000, storeTimeoutMs: 1000 });
  const store = createRedisStrictStore({ url: SHARED_REDIS_URL, keyPrefix: prefix });
  assert.equal((await store.decide(rule!, "k", 1)).allowed, true);
  const inFlight = store.decide(rule!, "k2", 1).then(
    () => "answered",
    (err: unknown) => (err instanceof StoreUnavailableError ? "settled by close" : String(err)),
  );
  await store.close();
  await store.close();
  assert.equal(await inFlight, "settled by close");
  await assert.rejects(store.decide(rule!, "k", 1), StoreUnavailableError);
  await sleep(20);
  assert.equal(count(), before, String(process.getActiveResourcesInfo()));
});

test("redis strict store - a client passed in is used, and left open by close()", async () => {
  const client = new Redis(SHARED_REDIS_URL, {
    protocol: 2,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
  });
  const [rule] = compile({ name: "borrowed", limit: 2, windowMs: DAY_MS });
  const store = createRedisStrictStore({ client, keyPrefix: prefix });
  try {
    await store.ready();
    assert.equal((await store.decide(rule!, "k", 1)).remaining, 1);
    await store.close();
    assert.equal(client.status, "ready");
    assert.equal(await client.exists(`${prefix}{borrowed|k}:tb`), 1);
    assert.throws(
      () => createRedisStrictStore({ client, url: SHARED_REDIS_URL }),
      (err: unknown) => err instanceof InvalidArgumentError && err.field === "options.client",
    );
  } finally {
    await store.close();
    await client.quit();
  }
});

test("redis strict store - limiter.checkAsync goes through the store and accounts the hits", async () => {
  const strictStore = createRedisStrictStore({ url: SHARED_REDIS_URL, keyPrefix: prefix });
  const limiter = createLimiter({
    rules: [
      { name: "via-limiter", limit: 3, windowMs: DAY_MS, mode: "strict", storeTimeoutMs: 5000 },
    ],
    strictStore,
    sweepIntervalMs: 0,
  });
  try {
    const allowed = [];
    for (let i = 0; i < 5; i++)
      allowed.push((await limiter.checkAsync("via-limiter", "u")).allowed);
    assert.deepEqual(allowed, [true, true, true, false, false]);
    const stats = limiter.stats()[0]!;
    assert.equal(stats.admittedHits, 3);
    assert.equal(stats.rejectedHits, 2);
    assert.equal(stats.storeFailures, 0);
  } finally {
    await limiter.close();
  }
});
