/**
 * nodeRateLimit over a strict rule on the shared Redis at 127.0.0.1:6379, together with a local
 * rule: the fields for both, a 429 from the strict one, and the local rule untouched by it.
 * Keys live under a prefix unique to this file and are deleted after.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, test } from "node:test";
import { nodeRateLimit } from "../../src/http/index.js";
import { createLimiter, createRedisStrictStore } from "../../src/index.js";
import { listen, parsedField } from "./helpers/http-listen.js";
import {
  adminClient,
  deleteUnder,
  SHARED_REDIS_URL,
  uniquePrefix,
} from "./helpers/redis-fixtures.js";

const prefix = uniquePrefix("http-redis");
const admin = adminClient();
after(async () => {
  await deleteUnder(admin, prefix);
  await admin.quit();
});

test("http redis - a strict rule refuses at its limit and the local rule consumes nothing", async () => {
  const store = createRedisStrictStore({ url: SHARED_REDIS_URL, keyPrefix: prefix });
  const limiter = createLimiter({
    rules: [
      { name: "local", limit: 100, windowMs: 60_000 },
      { name: "shared", limit: 2, windowMs: 60_000, mode: "strict", storeTimeoutMs: 5000 },
    ],
    strictStore: store,
    sweepIntervalMs: 0,
  });
  const limit = nodeRateLimit(limiter, { rules: ["local", "shared"] });
  const s = await listen(
    createServer(async (req, res) => {
      if (await limit(req, res)) res.end("ok");
    }),
  );
  try {
    for (let i = 0; i < 2; i++) {
      const res = await fetch(s.url);
      assert.equal(res.status, 200);
      const rl = parsedField(res, "RateLimit")!;
      assert.equal(rl["shared"]!["r"], 1 - i);
      assert.equal(rl["local"]!["r"], 99 - i);
      await res.text();
    }
    const res = await fetch(s.url);
    assert.equal(res.status, 429);
    assert.ok(Number(res.headers.get("Retry-After")) >= 1);
    assert.deepEqual(
      ((await res.json()) as { "violated-policies": string[] })["violated-policies"],
      ["shared"],
    );
    assert.equal(limiter.peek("local", "127.0.0.1").remaining, 97, "the refusal took nothing");
  } finally {
    await s.close();
    await limiter.close();
    await store.close();
  }
});
