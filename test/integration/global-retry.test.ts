/**
 * A refused global decision's `retryAfterMs` over the real NATS server: the aggregator sends with
 * each grant how long until its window frees capacity, so the node answers with the wait the
 * window implies, not a guess; `acquire()` fails at once when that wait ends past its deadline
 * and otherwise is admitted about when the window frees.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createNodeAgent } from "../../src/agent/node-agent.js";
import { createAggregatorService } from "../../src/aggregator/aggregator-service.js";
import { DeadlineExceededError } from "../../src/errors.js";
import { createLimiter } from "../../src/limiter/limiter.js";
import { connectNats } from "../../src/transport/nats/nats-transport.js";
import { SHARED_NATS, sleep, uniquePrefix } from "./helpers/cluster-procs.js";

const WINDOW_MS = 2000;
const LIMIT = 20;
const SYNC_MS = 25;

test("global retry - over NATS, a refusal waits for the aggregator's window and acquire() keeps to it", async (t) => {
  const prefix = uniquePrefix("retry");
  const rules = [
    {
      name: "g",
      mode: "global" as const,
      algorithm: "sliding-window" as const,
      limit: LIMIT,
      windowMs: WINDOW_MS,
    },
  ];
  const aggTransport = await connectNats({ servers: SHARED_NATS, name: "retry-agg" });
  const nodeTransport = await connectNats({ servers: SHARED_NATS, name: "retry-node" });
  const limiter = createLimiter({ rules, sweepIntervalMs: 0 });
  const aggregator = createAggregatorService({
    rules: limiter.rules,
    transport: aggTransport,
    subjectPrefix: prefix,
    syncIntervalMs: SYNC_MS,
    warmupMs: 0,
  });
  await aggTransport.flush();
  const agent = createNodeAgent({
    limiter,
    transport: nodeTransport,
    subjectPrefix: prefix,
    syncIntervalMs: SYNC_MS,
  });
  try {
    assert.equal(await agent.ready(), true, "the node heard the aggregator");
    // Spend the whole limit at once, then wait for the aggregator's grant for the key.
    const spentAt = performance.now();
    let admitted = 0;
    while (limiter.check("g", "k").allowed) admitted++;
    assert.equal(admitted, LIMIT);
    const deadline = performance.now() + 2000;
    while (limiter.stats()[0]!.grantsApplied < 1) {
      assert.ok(performance.now() < deadline, "a grant came back");
      await sleep(5);
    }
    const refused = limiter.check("g", "k");
    const sinceSpentMs = performance.now() - spentAt;
    assert.equal(refused.allowed, false);
    // The window frees the burst WINDOW_MS after it. The figure is the aggregator's, from its
    // last tick, so at most about a sync interval early (grants go out at ticks); its window
    // reads a burst of one instant as spread over the rest of its bin, so the first hit's cost
    // may be read as leaving up to that share of the bin later (200 ms / 20 hits); and the
    // batch's transit counts as part of the hits' age at the aggregator, the grant's transit
    // as part of the wait at the node, each up to a sync interval on a busy machine.
    const expected = WINDOW_MS - sinceSpentMs;
    const binShareMs = WINDOW_MS / 10 / LIMIT;
    t.diagnostic(
      `retryAfterMs ${refused.retryAfterMs.toFixed(1)}, expected about ${expected.toFixed(1)}`,
    );
    assert.ok(
      refused.retryAfterMs <= expected + binShareMs + SYNC_MS &&
        refused.retryAfterMs >= expected - SYNC_MS - 15,
      `retryAfterMs ${refused.retryAfterMs} against ${expected}`,
    );
    // A deadline before that: refused at once, without sleeping.
    const early = performance.now();
    await assert.rejects(
      limiter.acquire("g", "k", { timeoutMs: refused.retryAfterMs - 200 }),
      DeadlineExceededError,
    );
    assert.ok(performance.now() - early < 20, "it did not sleep");
    // A deadline past it: admitted once the window frees, within about a sync interval of it.
    const waitFrom = performance.now();
    const freesInMs = refused.retryAfterMs - (waitFrom - (spentAt + sinceSpentMs));
    const d = await limiter.acquire("g", "k", { timeoutMs: freesInMs + 1000 });
    const waitedMs = performance.now() - waitFrom;
    t.diagnostic(
      `acquire waited ${waitedMs.toFixed(0)} ms, the window freed in ${freesInMs.toFixed(0)} ms`,
    );
    assert.equal(d.allowed, true);
    assert.ok(waitedMs >= freesInMs - 5, `waited ${waitedMs} ms, the window frees in ${freesInMs}`);
    assert.ok(waitedMs <= freesInMs + SYNC_MS + 40, `waited ${waitedMs} ms`);
  } finally {
    await agent.close();
    await aggregator.close();
    await limiter.close();
    await nodeTransport.close();
    await aggTransport.close();
  }
});
