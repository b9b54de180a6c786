/**
 * An aggregator paused for 3 s (as with SIGSTOP: its clock runs on but its timers do not fire,
 * it sends nothing, and what it is sent waits to be read when it wakes, after its first overdue
 * tick), on the in-memory bus and manual clocks, four nodes offering a hot key twice its limit. With the fallback (the default), nodes holding a grant keep admitting what their
 * own earlier admissions free: the lowest sliding second stays near the limit and the worst
 * within it. Without it (fallbackAfterMs 0) the key starves until the loss policy takes over.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createNodeAgent, type NodeAgent } from "../../src/agent/node-agent.js";
import { createAggregatorService } from "../../src/aggregator/aggregator-service.js";
import { ManualClock } from "../../src/clock/clock.js";
import { createLimiter, type Limiter } from "../../src/limiter/limiter.js";
import type { RuleConfig } from "../../src/limiter/rule.js";
import { createMemoryBus } from "../../src/transport/memory.js";
import type { Transport } from "../../src/transport/transport.js";

const LIMIT = 400;
const RULE: RuleConfig = {
  name: "api",
  mode: "global",
  algorithm: "sliding-window",
  limit: LIMIT,
  windowMs: 1000,
  segments: 10,
};
const NODES = 4;
const STEP_MS = 5;

async function run(fallbackAfterMs?: number) {
  const clock = new ManualClock(1_000_000);
  const aggClock = new ManualClock(1_000_000);
  const bus = createMemoryBus();
  const inner = bus.connect();
  let paused = false;
  const waiting: (() => void)[] = [];
  const aggTransport: Transport = {
    publish: (subject, bytes) => inner.publish(subject, bytes),
    subscribe: (subject, handler) =>
      inner.subscribe(subject, (bytes, s) => {
        if (paused) waiting.push(() => handler(bytes, s));
        else handler(bytes, s);
      }),
    flush: () => inner.flush(),
    onStatus: (listener) => inner.onStatus(listener),
    close: () => inner.close(),
  };
  const aggregator = createAggregatorService({
    rules: createLimiter({ rules: [RULE], clock, sweepIntervalMs: 0 }).rules,
    transport: aggTransport,
    clock: aggClock,
    aggregatorId: "agg",
    warmupMs: 0,
  });
  const nodes: { limiter: Limiter; agent: NodeAgent }[] = [];
  for (let i = 0; i < NODES; i++) {
    const limiter = createLimiter({ rules: [RULE], clock, sweepIntervalMs: 0 });
    const agent = createNodeAgent({
      limiter,
      transport: bus.connect(),
      clock,
      nodeId: `n${i}`,
      staleAfterMs: 5000, // the loss policy stays out of the way: the fallback alone is seen
      ...(fallbackAfterMs === undefined ? {} : { fallbackAfterMs }),
    });
    nodes.push({ limiter, agent });
  }
  // Per 5 ms step, the hot key's admissions over all nodes; 2x the limit offered, spread evenly.
  const admitted: number[] = [];
  let debt = 0;
  const perStep = (2 * LIMIT * STEP_MS) / 1000;
  const steps = (ms: number) => ms / STEP_MS;
  const pauseAt = steps(4000);
  const resumeAt = steps(7000);
  for (let s = 0; s < steps(9000); s++) {
    if (s === pauseAt) paused = true;
    if (s === resumeAt) {
      aggClock.set(clock.nowMs()); // awake: its overdue tick runs first, then it reads
      aggClock.advance(0);
      paused = false;
      for (const deliver of waiting.splice(0)) deliver();
    }
    debt += perStep;
    let n = 0;
    while (debt >= 1) {
      nodes[n % NODES]!.limiter.check("api", "hot");
      n++;
      debt--;
    }
    let sum = 0;
    for (const node of nodes) sum += node.limiter.stats()[0]!.admittedHits;
    admitted.push(sum);
    clock.advance(STEP_MS);
    if (!paused) aggClock.advance(STEP_MS);
    await bus.settle();
  }
  for (const node of nodes) {
    await node.agent.close();
    await node.limiter.close();
  }
  await aggregator.close();
  // Sliding seconds from cumulative admitted counts, from 2 s on (past the cold start).
  const window = steps(1000);
  const seconds = (from: number, to: number) => {
    const out: number[] = [];
    for (let e = Math.max(from, window); e < to; e++)
      out.push(admitted[e]! - admitted[e - window]!);
    return out;
  };
  const during = seconds(pauseAt + window, resumeAt);
  const all = seconds(steps(2000), admitted.length);
  return { lowestDuring: Math.min(...during) / LIMIT, worst: Math.max(...all) / LIMIT };
}

test("silent fallback - through a 3 s pause of the aggregator, a hot key keeps flowing within its limit", async () => {
  const withFallback = await run();
  assert.ok(
    withFallback.lowestDuring >= 0.8,
    `lowest second in the pause ${withFallback.lowestDuring}`,
  );
  assert.ok(withFallback.worst <= 1.05, `worst second ${withFallback.worst}`);
  const without = await run(0);
  assert.ok(without.lowestDuring < 0.2, `without the fallback: lowest ${without.lowestDuring}`);
  assert.ok(without.worst <= 1.05, `without: worst ${without.worst}`);
});
