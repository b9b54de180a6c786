/**
 * The node agent before (and without) an aggregator, on the in-memory bus and a manual clock:
 * nodes find each other by their heartbeats and share the limit, and the first moment after a
 * start is held until they can know how many they are.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createNodeAgent, type NodeAgent } from "../../../src/agent/node-agent.js";
import { createAggregatorService } from "../../../src/aggregator/aggregator-service.js";
import { ManualClock } from "../../../src/clock/clock.js";
import { createLimiter, type Limiter } from "../../../src/limiter/limiter.js";
import type { RuleConfig } from "../../../src/limiter/rule.js";
import { createMemoryBus, type MemoryTransport } from "../../../src/transport/memory.js";

const RULE: RuleConfig = {
  name: "api",
  mode: "global",
  algorithm: "sliding-window",
  limit: 1000,
  windowMs: 1000,
};

function fleet(count: number) {
  const clock = new ManualClock(5_000);
  const bus = createMemoryBus();
  const nodes: { limiter: Limiter; agent: NodeAgent; transport: MemoryTransport }[] = [];
  const add = () => {
    const limiter = createLimiter({ rules: [RULE], clock, sweepIntervalMs: 0 });
    const transport = bus.connect();
    const agent = createNodeAgent({ limiter, transport, clock, nodeId: `n${nodes.length}` });
    nodes.push({ limiter, agent, transport });
  };
  for (let i = 0; i < count; i++) add();
  const step = async (ms: number) => {
    for (let i = 0; i < ms; i++) {
      clock.advance(1);
      await bus.settle();
    }
  };
  const close = async () => {
    for (const n of nodes) {
      await n.agent.close();
      await n.limiter.close();
    }
  };
  return { clock, bus, nodes, add, step, close };
}

test("node agent - eight nodes started with no aggregator learn of each other and hold the limit from the first window", async () => {
  const f = fleet(8);
  const startMs = f.clock.nowMs();
  // Load at once, far over the limit: 8 nodes x 10 hits per ms for 1.5 s.
  const perMs: number[] = [];
  let refusedAtStart: number | undefined;
  for (let ms = 0; ms < 1500; ms++) {
    let admitted = 0;
    for (const n of f.nodes) {
      for (let h = 0; h < 10; h++) {
        const d = n.limiter.check("api", "hot");
        if (d.allowed) admitted++;
        else if (ms === 0) refusedAtStart = d.retryAfterMs;
      }
    }
    perMs.push(admitted);
    await f.step(1);
  }
  const live = f.nodes.map((n) => n.agent.stats().liveNodes);
  assert.deepEqual(live, Array(8).fill(8), "every node counts all eight");
  assert.equal(
    refusedAtStart,
    100,
    "held for the discovery moment, with the rest of it as the wait",
  );
  assert.equal(
    perMs.slice(0, 100).reduce((a, b) => a + b, 0),
    0,
    "nothing admitted while held",
  );
  // Every window of 1000 ms from the start: within the limit (the segmented window allows up to
  // one segment's share more over an unaligned window).
  let worst = 0;
  for (let end = 1; end <= perMs.length; end++) {
    const sum = perMs.slice(Math.max(0, end - 1000), end).reduce((a, b) => a + b, 0);
    if (sum > worst) worst = sum;
  }
  assert.ok(worst <= 1050, `worst window ${worst} of a limit of 1000`);
  assert.ok(worst >= 950, `the limit was used: ${worst}`);
  assert.ok(f.clock.nowMs() - startMs >= 1500);
  await f.close();
});

test("node agent - a node alone takes the whole limit once the discovery moment is over", async () => {
  const f = fleet(1);
  await f.step(100);
  let admitted = 0;
  for (let i = 0; i < 1200; i++) if (f.nodes[0]!.limiter.check("api", "k").allowed) admitted++;
  assert.equal(admitted, 1000);
  assert.equal(f.nodes[0]!.agent.stats().liveNodes, 1);
  await f.close();
});

test("node agent - a node joining a fleet with no aggregator is answered at once and the others' share drops", async () => {
  const f = fleet(3);
  await f.step(200);
  assert.deepEqual(
    f.nodes.map((n) => n.agent.stats().liveNodes),
    [3, 3, 3],
  );
  f.add();
  await f.step(5); // the newcomer's heartbeat and the answers, well within a heartbeat interval
  assert.deepEqual(
    f.nodes.map((n) => n.agent.stats().liveNodes),
    [4, 4, 4, 4],
  );
  // A node that leaves is uncounted by its notice.
  const last = f.nodes.pop()!;
  await last.agent.close();
  await last.limiter.close();
  await f.step(5);
  assert.deepEqual(
    f.nodes.map((n) => n.agent.stats().liveNodes),
    [3, 3, 3],
  );
  // A node that goes silent without a word is uncounted after six of its heartbeat intervals.
  f.nodes[2]!.transport.simulateDisconnect();
  await f.step(2900);
  assert.deepEqual(
    f.nodes.slice(0, 2).map((n) => n.agent.stats().liveNodes),
    [3, 3],
  );
  await f.step(200);
  assert.deepEqual(
    f.nodes.slice(0, 2).map((n) => n.agent.stats().liveNodes),
    [2, 2],
  );
  f.nodes[2]!.transport.simulateReconnect();
  await f.close();
});

test("node agent - a node joining a fleet with an aggregator is held only until it hears it", async () => {
  const clock = new ManualClock(5_000);
  const bus = createMemoryBus();
  const compiled = createLimiter({ rules: [RULE], clock, sweepIntervalMs: 0 }).rules;
  const aggregator = createAggregatorService({
    rules: compiled,
    transport: bus.connect(),
    clock,
    aggregatorId: "agg",
    warmupMs: 0,
  });
  const limiter = createLimiter({ rules: [RULE], clock, sweepIntervalMs: 0 });
  const agent = createNodeAgent({ limiter, transport: bus.connect(), clock, nodeId: "late" });
  let firstAdmitMs = -1;
  for (let ms = 0; ms < 100 && firstAdmitMs < 0; ms++) {
    if (limiter.check("api", "k").allowed) firstAdmitMs = ms;
    clock.advance(1);
    await bus.settle();
  }
  assert.ok(firstAdmitMs >= 0 && firstAdmitMs <= 30, `admitted from ${firstAdmitMs} ms on`);
  assert.equal(agent.stats().aggregatorLost, false);
  await agent.close();
  await limiter.close();
  await aggregator.close();
});
