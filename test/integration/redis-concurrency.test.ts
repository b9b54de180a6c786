/**
 * Exactness under contention: several processes, each with its own connection and many calls in
 * flight, hammer one key of a strict rule on the real Redis. The scripts are atomic, so the
 * admitted count is exactly what the rule allows, never one more. Rules use a one-day window so
 * refill during the test (well under one unit) cannot change the count.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { RuleConfig } from "../../src/index.js";
import {
  adminClient,
  deleteUnder,
  keysUnder,
  SHARED_REDIS_URL,
  uniquePrefix,
} from "./helpers/redis-fixtures.js";
import { runReleased } from "./helpers/released-children.js";

const prefix = uniquePrefix("concurrency");
const admin = adminClient();
after(async () => {
  await deleteUnder(admin, prefix);
  await admin.quit();
});

const HAMMER = new URL("./helpers/redis-hammer.js", import.meta.url).pathname;
const DAY_MS = 24 * 3600 * 1000;

interface HammerResult {
  admitted: number;
  rejected: number;
  storeFailures: number;
}

/** Runs `processes` hammer children on one key, released together; returns their results. */
function hammer(
  processes: number,
  rule: RuleConfig,
  options: { hits: number; inFlight: number; cost: number; overLimitCache: boolean },
): Promise<HammerResult[]> {
  const config = { url: SHARED_REDIS_URL, keyPrefix: prefix, rule, key: "hot", ...options };
  return runReleased<HammerResult>(HAMMER, Array(processes).fill(config), { timeoutMs: 25_000 });
}

for (const [algorithm, cost, overLimitCache] of [
  ["token-bucket", 1, false],
  ["gcra", 2, false],
  ["sliding-window", 1, true],
] as const) {
  test(`redis concurrency - ${algorithm}: 4 processes x 32 in flight never admit more than the limit`, async () => {
    const limit = 500;
    const rule: RuleConfig = {
      name: `hammer-${algorithm}`,
      algorithm,
      limit,
      windowMs: DAY_MS,
      mode: "strict",
      onStoreFailure: "closed",
      storeTimeoutMs: 10_000,
    };
    const hits = 400;
    const results = await hammer(4, rule, { hits, inFlight: 32, cost, overLimitCache });
    const admitted = results.reduce((sum, r) => sum + r.admitted, 0);
    const rejected = results.reduce((sum, r) => sum + r.rejected, 0);
    assert.deepEqual(
      results.map((r) => r.storeFailures),
      [0, 0, 0, 0],
    );
    assert.equal(admitted + rejected, 4 * hits);
    assert.equal(admitted, Math.floor(limit / cost), JSON.stringify(results));
    // Every process got a share: they really ran concurrently on one key.
    const keys = await keysUnder(admin, `${prefix}{hammer-${algorithm}|hot}`);
    assert.equal(keys.length, 1);
    assert.ok((await admin.pttl(keys[0]!)) > 0);
  });
}
