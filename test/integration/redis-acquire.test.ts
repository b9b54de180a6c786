/**
 * `acquire()` on strict rules against the real Redis, across processes: every attempt decides in
 * the store, so several processes waiting on one key never admit more than the rule allows, and
 * no call waits past its own deadline. (Before strict rules reached the store from `acquire()`,
 * each process decided locally and four of them admitted four times the limit.)
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { RuleConfig } from "../../src/index.js";
import type { AcquirerConfig, AcquirerResult } from "./helpers/redis-acquirer.js";
import {
  adminClient,
  deleteUnder,
  SHARED_REDIS_URL,
  uniquePrefix,
} from "./helpers/redis-fixtures.js";
import { runReleased } from "./helpers/released-children.js";

const prefix = uniquePrefix("acquire");
const admin = adminClient();
after(async () => {
  await deleteUnder(admin, prefix);
  await admin.quit();
});

const ACQUIRER = new URL("./helpers/redis-acquirer.js", import.meta.url).pathname;
const PROCESSES = 4;
/** Scheduling slack allowed past a deadline on a busy 2-core machine (a store round trip). */
const OVERRUN_SLACK_MS = 30;

async function redisTimeMs(): Promise<number> {
  const [s, us] = await admin.time();
  return Number(s) * 1000 + Number(us) / 1000;
}

function sum(results: readonly AcquirerResult[], field: keyof AcquirerResult): number {
  return results.reduce((n, r) => n + (r[field] as number), 0);
}

async function run(rule: RuleConfig, key: string, timeoutMs: number, durationMs: number) {
  const config: AcquirerConfig = {
    url: SHARED_REDIS_URL,
    keyPrefix: prefix,
    rule,
    key,
    inFlight: 8,
    timeoutMs,
    durationMs,
  };
  let startMs = 0;
  const results = await runReleased<AcquirerResult>(ACQUIRER, Array(PROCESSES).fill(config), {
    timeoutMs: 30_000,
    beforeRelease: async () => {
      startMs = await redisTimeMs();
    },
  });
  const endMs = await redisTimeMs();
  for (const r of results) {
    assert.deepEqual(r.otherErrors, []);
    assert.equal(r.storeFailures, 0);
    assert.ok(
      r.maxOverrunMs <= OVERRUN_SLACK_MS,
      `a call ran ${r.maxOverrunMs.toFixed(1)} ms past its deadline`,
    );
  }
  return { results, elapsedMs: endMs - startMs };
}

test("redis acquire - sliding window: processes waiting on one strict key admit exactly the limit in the window, the rest fail at once", async () => {
  const limit = 30;
  const rule: RuleConfig = {
    name: "acq-sw",
    algorithm: "sliding-window",
    limit,
    windowMs: 3000,
    segments: 10,
    mode: "strict",
    onStoreFailure: "closed",
    storeTimeoutMs: 5000,
  };
  // 1.2 s of load inside a 3 s window: nothing admitted in it can leave it, so every caller
  // past the first 30 is told to wait over a second, past its 150 ms timeout.
  const { results } = await run(rule, "one-window", 150, 1200);
  assert.equal(sum(results, "admitted"), limit, JSON.stringify(results));
  const refused = sum(results, "deadlineErrors");
  assert.ok(refused > 0);
  assert.equal(sum(results, "deadlineErrorsAtOnce"), refused, "every refusal came without a sleep");
});

test("redis acquire - token bucket: callers wait for the store's refill and the processes together stay within it", async () => {
  const burst = 20;
  const rule: RuleConfig = {
    name: "acq-tb",
    limit: 20,
    windowMs: 2000, // one token per 100 ms
    mode: "strict",
    onStoreFailure: "closed",
    storeTimeoutMs: 5000,
  };
  const durationMs = 1500;
  const { results, elapsedMs } = await run(rule, "refill", 250, durationMs);
  const admitted = sum(results, "admitted");
  const ratePerMs = 20 / 2000;
  // The bucket was full when released and refilled for at most the elapsed time on Redis' clock.
  const most = Math.floor(burst + ratePerMs * elapsedMs + 1e-9);
  assert.ok(admitted <= most, `admitted ${admitted}, the store allows at most ${most}`);
  // Callers were always waiting, so every refilled token was taken within a token or two.
  const least = Math.floor(burst + ratePerMs * durationMs) - 2;
  assert.ok(admitted >= least, `admitted ${admitted}, expected at least ${least}`);
  assert.ok(sum(results, "admittedAfterWait") >= 5, "refilled tokens went to callers that waited");
});
