/**
 * The distributed core end to end, in one process: node agents and an aggregator over the
 * in-memory transport, on a manual clock, so windows can be checked exactly and fast.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createNodeAgent, type NodeAgent } from "../../src/agent/node-agent.js";
import { createAggregatorService } from "../../src/aggregator/aggregator-service.js";
import type { AggregatorTuning } from "../../src/aggregator/tuning.js";
import { ManualClock, wallClockMs } from "../../src/clock/clock.js";
import { createLimiter, type Limiter } from "../../src/limiter/limiter.js";
import type { RuleConfig } from "../../src/limiter/rule.js";
import { encode } from "../../src/protocol/encode.js";
import { createSubjects } from "../../src/protocol/subjects.js";
import { createMemoryBus } from "../../src/transport/memory.js";
import { runSim } from "../support/fleet-sim.js";

interface Node {
  limiter: Limiter;
  agent: NodeAgent;
}

async function cluster(
  rule: RuleConfig,
  nodeCount: number,
  /** Aggregator options (its sync interval is 50 ms unless `syncIntervalMs` says otherwise). */
  tuning: Partial<AggregatorTuning> = {},
  nodeSyncIntervalMs = 50,
  nodeOptions: { alignReports?: boolean } = {},
) {
  const clock = new ManualClock(1_000_000);
  const bus = createMemoryBus();
  const rules = [rule];
  const compiled = createLimiter({ rules, clock, sweepIntervalMs: 0 }).rules;
  const aggregator = createAggregatorService({
    rules: compiled,
    transport: bus.connect(),
    clock,
    syncIntervalMs: 50,
    nodeTtlMs: 1000,
    aggregatorId: "agg",
    warmupMs: 0,
    ...tuning,
  });
  const nodes: Node[] = [];
  const addNode = (i: number) => {
    const limiter = createLimiter({ rules, clock, sweepIntervalMs: 0 });
    const agent = createNodeAgent({
      limiter,
      transport: bus.connect(),
      clock,
      nodeId: `n${i}`,
      syncIntervalMs: nodeSyncIntervalMs,
      heartbeatIntervalMs: 200,
      ...nodeOptions,
    });
    nodes.push({ limiter, agent });
    return nodes[nodes.length - 1]!;
  };
  for (let i = 0; i < nodeCount; i++) addNode(i);
  const step = async (ms: number) => {
    clock.advance(ms);
    await bus.settle();
  };
  // Let the aggregator learn the nodes and broadcast defaults.
  for (let i = 0; i < 10; i++) await step(50);
  return { clock, bus, aggregator, nodes, addNode, step };
}

/**
 * Waits (in real time) until a new aggregator run started now would have a later epoch than
 * `previous`: an epoch is a run's wall-clock start plus a random fraction of a millisecond, and
 * nodes ignore a run that seems to have started before the one they follow. A real restart
 * takes longer than this; a test's manual clock does not, and two runs created within the same
 * millisecond came out in either order (a test failed that way, about one run in two).
 */
async function afterEpochOf(previous: { stats(): { epoch: number } }): Promise<void> {
  const epoch = previous.stats().epoch;
  while (wallClockMs() <= epoch + 1) await new Promise((r) => setTimeout(r, 1));
}

/** Largest admitted cost in any window of `windowMs` ending at an admission. */
function worstWindow(times: number[], windowMs: number): number {
  let worst = 0;
  let start = 0;
  for (let end = 0; end < times.length; end++) {
    while (times[start]! <= times[end]! - windowMs) start++;
    worst = Math.max(worst, end - start + 1);
  }
  return worst;
}

/** Admitted per window: the worst sliding window and the mean over [fromMs, toMs). */
function windows(times: number[], windowMs: number, fromMs: number, toMs: number) {
  const inRange = times.filter((t) => t >= fromMs && t < toMs);
  return {
    worst: worstWindow(inRange, windowMs),
    mean: (inRange.length * windowMs) / (toMs - fromMs),
  };
}

const windowRule: RuleConfig = {
  name: "api",
  mode: "global",
  algorithm: "sliding-window",
  limit: 1000,
  windowMs: 1000,
};

/** Every node offers key "k" one hit per ms for `ms`; the windows from 2 s on. */
async function offerEveryMs(c: Awaited<ReturnType<typeof cluster>>, ms: number) {
  const admitted: number[] = [];
  const from = c.clock.nowMs() + 2000;
  for (let t = 0; t < ms; t++) {
    for (const n of c.nodes)
      if (n.limiter.check("api", "k").allowed) admitted.push(c.clock.nowMs());
    await c.step(1);
  }
  return windows(admitted, 1000, from, c.clock.nowMs());
}

test("distributed - four nodes share one global limit within 5% of it", async (t) => {
  const c = await cluster(windowRule, 4);
  // Each node offers 1 hit per ms (4x the limit in all) for 6 s.
  const w = await offerEveryMs(c, 6000);
  t.diagnostic(`steady: worst window ${w.worst}, mean ${w.mean.toFixed(1)} per window of 1000`);
  assert.ok(w.worst <= 1050, `worst window ${w.worst} > 105% of 1000`);
  assert.ok(w.mean >= 970, `mean admitted per window ${w.mean.toFixed(0)} < 97% of 1000`);
  const grants = c.nodes.map((n) => n.agent.stats().grantsReceived);
  assert.ok(
    grants.every((g) => g > 0),
    `every node got grants: ${grants}`,
  );
  for (const n of c.nodes) await n.agent.close();
  await c.aggregator.close();
});

test("distributed - nodes that report every 50 ms to an aggregator ticking every 25 ms still share the whole limit", async (t) => {
  const c = await cluster(windowRule, 3, { syncIntervalMs: 25 });
  const w = await offerEveryMs(c, 5000);
  t.diagnostic(`intervals 50/25 ms: worst window ${w.worst}, mean ${w.mean.toFixed(1)} of 1000`);
  // The key is allocated only at the ticks after reports, every other tick: pacing per tick
  // held it at 740 of 1000; demand read at our interval would call every other tick idle.
  assert.ok(w.mean >= 970, `mean admitted per window ${w.mean.toFixed(0)} < 97% of 1000`);
  assert.ok(w.worst <= 1050, `worst window ${w.worst}`);
  for (const n of c.nodes) await n.agent.close();
  await c.aggregator.close();
});

test("distributed - scheduled grants: budget ramps in as the window frees it, never ahead", async (t) => {
  // Nodes and aggregator in phase (nodes on their own timers, started with the aggregator's), no
  // latency, no early release of any kind (no lag compensation, no hit wait): the budget of each
  // grant's ramp (what the window frees over the next interval) must never run ahead of the
  // window. A schedule computed ahead of the freeing fails here: 3x the freeing line gave 1046.
  // (With reports aligned half an interval after the ticks, the default, this case reaches 1018:
  // a report's hits are binned at their mean age, and those spent as the ramp frees are spread
  // over the interval around it; docs/architecture.md, "Reports at one phase".)
  const c = await cluster(
    windowRule,
    4,
    { grantRampMs: 50, lagCompensationMs: 0, hitWaitCompensation: false },
    50,
    { alignReports: false },
  );
  const admitted: number[] = [];
  const from = c.clock.nowMs() + 2000;
  let ramped = 0;
  for (let t = 0; t < 6000; t++) {
    for (const n of c.nodes) {
      const d = n.limiter.check("api", "k");
      if (d.allowed) admitted.push(c.clock.nowMs());
    }
    await c.step(1);
  }
  const w = windows(admitted, 1000, from, c.clock.nowMs());
  for (const n of c.nodes) ramped += n.agent.stats().grantsReceived;
  t.diagnostic(`ramped grants: worst window ${w.worst}, mean ${w.mean.toFixed(1)} of 1000`);
  assert.ok(w.worst <= 1000, `worst window ${w.worst} > the limit`);
  assert.ok(w.mean >= 950, `mean admitted per window ${w.mean.toFixed(0)} < 95% of 1000`);
  assert.ok(ramped > 0);
  for (const n of c.nodes) await n.agent.close();
  await c.aggregator.close();
});

test("distributed - load moving from one node to another is followed within a window", async (t) => {
  const c = await cluster(windowRule, 4);
  const admitted: number[] = [];
  const start = c.clock.nowMs();
  // 3 s on node 0 only, then 3 s on node 3 only; each offers 2 hits per ms.
  for (let t = 0; t < 6000; t++) {
    const n = c.nodes[t < 3000 ? 0 : 3]!;
    for (let h = 0; h < 2; h++)
      if (n.limiter.check("api", "k").allowed) admitted.push(c.clock.nowMs());
    await c.step(1);
  }
  const before = windows(admitted, 1000, start + 1000, start + 3000);
  const after = windows(admitted, 1000, start + 4000, start + 6000);
  const all = windows(admitted, 1000, start, start + 6000);
  t.diagnostic(`shift: worst ${all.worst}, mean before ${before.mean}, after ${after.mean}`);
  assert.ok(all.worst <= 1050, `worst window ${all.worst}`);
  assert.ok(before.mean >= 950, `before the shift: ${before.mean}`);
  assert.ok(after.mean >= 950, `after the shift: ${after.mean}`);
  for (const n of c.nodes) await n.agent.close();
  await c.aggregator.close();
});

test("distributed - a node that stops is dropped and its share goes to the others", async () => {
  const c = await cluster(windowRule, 3);
  const admitted: number[] = [];
  const start = c.clock.nowMs();
  for (let t = 0; t < 6000; t++) {
    if (t === 2000) await c.nodes[2]!.agent.close(); // node 2 goes away (heartbeats stop)
    const live = t < 2000 ? c.nodes : c.nodes.slice(0, 2);
    for (const n of live) if (n.limiter.check("api", "k").allowed) admitted.push(c.clock.nowMs());
    await c.step(1);
  }
  assert.equal(c.aggregator.stats().liveNodes, 2);
  const after = windows(admitted, 1000, start + 4000, start + 6000);
  assert.ok(after.mean >= 950, `after the leave: ${after.mean}`);
  assert.ok(windows(admitted, 1000, start, start + 6000).worst <= 1050);
  for (const n of c.nodes.slice(0, 2)) await n.agent.close();
  await c.aggregator.close();
});

test("distributed - a node that closes says so: dropped at once, not after the TTL", async () => {
  const c = await cluster(windowRule, 3); // node TTL 1000 ms
  const admitted: number[] = [];
  const start = c.clock.nowMs();
  for (let t = 0; t < 4000; t++) {
    if (t === 2000) {
      await c.nodes[2]!.agent.close();
      await c.step(1); // the last batch and the leaving notice arrive
      // Only the notice can do this: node 2's last heartbeat is < 200 ms old, the TTL 1000 ms.
      assert.equal(c.aggregator.stats().liveNodes, 2);
      assert.equal(c.aggregator.stats().nodesLeft, 1);
    }
    const live = t < 2000 ? c.nodes : c.nodes.slice(0, 2);
    for (const n of live) if (n.limiter.check("api", "k").allowed) admitted.push(c.clock.nowMs());
    await c.step(1);
  }
  // The nodes learn the new count from the next defaults broadcast.
  assert.equal(c.nodes[0]!.agent.stats().liveNodes, 2);
  assert.ok(windows(admitted, 1000, start, c.clock.nowMs()).worst <= 1050);
  // A late notice from an older run of node 0 changes nothing.
  const before = c.aggregator.stats();
  const bus = c.bus.connect();
  const subjects = createSubjects();
  const old = { nodeId: "n0", nodeEpoch: 1, seq: 1, sentAtWallMs: wallClockMs(), role: 3 as const };
  for (const f of encode({ type: "heartbeat", ...old })) bus.publish(subjects.heartbeat("n0"), f);
  await c.step(1);
  assert.equal(c.aggregator.stats().liveNodes, 2);
  assert.equal(c.aggregator.stats().nodesLeft, before.nodesLeft);
  for (const n of c.nodes.slice(0, 2)) await n.agent.close();
  await c.aggregator.close();
});

test("distributed - the aggregator lost: static policy falls back to the default share", async () => {
  const c = await cluster({ ...windowRule, onAggregatorLoss: "static" }, 2);
  await c.aggregator.close();
  for (let i = 0; i < 50; i++) await c.step(50); // 2.5 s of silence > staleAfterMs
  const n = c.nodes[0]!;
  assert.equal(n.agent.stats().aggregatorLost, true);
  let ok = 0;
  for (let i = 0; i < 2000; i++) if (n.limiter.check("api", "fresh").allowed) ok++;
  assert.equal(ok, 500, "limit / 2 live nodes");
  for (const x of c.nodes) await x.agent.close();
});

test("distributed - closed and open policies when the aggregator is lost", async () => {
  for (const [policy, expected] of [
    ["closed", 0],
    ["open", 3000],
  ] as const) {
    const c = await cluster({ ...windowRule, onAggregatorLoss: policy }, 2);
    await c.aggregator.close();
    for (let i = 0; i < 50; i++) await c.step(50);
    let ok = 0;
    for (let i = 0; i < 3000; i++) if (c.nodes[0]!.limiter.check("api", "k").allowed) ok++;
    assert.equal(ok, expected, policy);
    for (const x of c.nodes) await x.agent.close();
  }
});

test("distributed - an aggregator restart neither doubles the limit nor stalls the nodes", async (t) => {
  const c = await cluster(windowRule, 3);
  const admitted: number[] = [];
  const start = c.clock.nowMs();
  let second: ReturnType<typeof createAggregatorService> | undefined;
  for (let ms = 0; ms < 7000; ms++) {
    if (ms === 2500) {
      await c.aggregator.close();
      await afterEpochOf(c.aggregator);
      // A new run, with the default warm-up (one window): it starts knowing nothing.
      second = createAggregatorService({
        rules: createLimiter({ rules: [windowRule], sweepIntervalMs: 0 }).rules,
        transport: c.bus.connect(),
        clock: c.clock,
        aggregatorId: "agg2",
        nodeTtlMs: 1000,
        syncIntervalMs: 50, // as the nodes
      });
    }
    for (const n of c.nodes)
      if (n.limiter.check("api", "k").allowed) admitted.push(c.clock.nowMs());
    await c.step(1);
  }
  const all = windows(admitted, 1000, start, start + 7000);
  const after = windows(admitted, 1000, start + 5000, start + 7000);
  t.diagnostic(`restart: worst ${all.worst}, mean after ${after.mean}`);
  assert.ok(all.worst <= 1050, `worst window ${all.worst} across the restart`);
  assert.ok(after.mean >= 950, `grants flow again after the restart: ${after.mean}`);
  for (const n of c.nodes) {
    assert.equal(n.agent.stats().aggregatorLost, false);
    await n.agent.close();
  }
  await second!.close();
});

test("distributed - a checkpoint carries the windows over a restart, with no warm-up", async (t) => {
  const saved = new Map<string, Uint8Array>();
  const store = {
    save: async (name: string, bytes: Uint8Array) => {
      saved.set(name, bytes);
    },
    load: async (name: string) => saved.get(name),
  };
  const c = await cluster(windowRule, 3);
  // The first aggregator of the cluster has no checkpoint; replace it with one that has.
  await c.aggregator.close();
  const compiled = createLimiter({ rules: [windowRule], sweepIntervalMs: 0 }).rules;
  const make = (id: string) =>
    createAggregatorService({
      rules: compiled,
      transport: c.bus.connect(),
      clock: c.clock,
      aggregatorId: id,
      nodeTtlMs: 1000,
      syncIntervalMs: 50, // as the nodes
      checkpoint: { store, intervalMs: 100 },
    });
  await afterEpochOf(c.aggregator);
  let agg = make("agg-a");
  const admitted: number[] = [];
  const start = c.clock.nowMs();
  let restored = -1;
  for (let ms = 0; ms < 6000; ms++) {
    if (ms === 2500) {
      await agg.close(); // saves the latest windows
      await afterEpochOf(agg);
      agg = make("agg-b");
      restored = await agg.restoreCheckpoint();
    }
    for (const n of c.nodes)
      if (n.limiter.check("api", "k").allowed) admitted.push(c.clock.nowMs());
    await c.step(1);
  }
  // From 2 s: the cold start of agg-a (no checkpoint yet, default warm-up) is not what is tested.
  const all = windows(admitted, 1000, start + 2000, start + 6000);
  const soonAfter = windows(admitted, 1000, start + 2500, start + 3500);
  const h = new Map<number, number>();
  for (const x of admitted)
    h.set(Math.floor((x - start) / 100), (h.get(Math.floor((x - start) / 100)) ?? 0) + 1);
  t.diagnostic(
    `checkpoint restart: restored ${restored} keys, worst ${all.worst}, mean in the second after ${soonAfter.mean}`,
  );
  assert.equal(restored, 1);
  assert.ok(all.worst <= 1050, `worst window ${all.worst} across the restart`);
  // Without the checkpoint the new run would withhold grants for a window (warm-up).
  assert.ok(soonAfter.mean >= 900, `grants flowed at once after the restart: ${soonAfter.mean}`);
  assert.ok(agg.stats().checkpointsSaved > 0);
  for (const n of c.nodes) await n.agent.close();
  await agg.close();
});

test("distributed - a node joining a key at its limit is granted ahead, so it does not overshoot", async (t) => {
  const c = await cluster(windowRule, 3);
  const admitted: number[] = [];
  const start = c.clock.nowMs();
  let joined: Node | undefined;
  for (let t = 0; t < 6000; t++) {
    // The newcomer serves the hot key from its first millisecond, before any report of it.
    if (t === 3000) joined = c.addNode(3);
    const live = joined === undefined ? c.nodes.slice(0, 3) : c.nodes;
    for (const n of live) if (n.limiter.check("api", "k").allowed) admitted.push(c.clock.nowMs());
    await c.step(1);
  }
  const around = windows(admitted, 1000, start + 2000, start + 5000);
  const after = windows(admitted, 1000, start + 4000, start + 6000);
  t.diagnostic(`join: worst window ${around.worst}, mean after ${after.mean}`);
  // Without the grant ahead the newcomer, which knows of no other node yet, spends its default
  // share (the whole limit) until the next regular tick: 1046 here. With it, the aggregator
  // ticks within 5 ms of the newcomer's first heartbeat: 1015 (deterministic, manual clock).
  assert.ok(around.worst <= 1030, `worst window around the join ${around.worst}`);
  assert.ok(after.mean >= 950, `after the join: ${after.mean}`);
  assert.ok(joined!.agent.stats().grantsReceived > 0);
  for (const n of c.nodes) await n.agent.close();
  await c.aggregator.close();
});

for (const syncMs of [50, 25]) {
  test(`distributed - light nodes get what they use, the heavy node the rest (skewed load, sync ${syncMs} ms)`, async (t) => {
    const c = await cluster(windowRule, 4, { syncIntervalMs: syncMs }, syncMs);
    const admitted: number[] = [];
    const byNode = [0, 0, 0, 0];
    const start = c.clock.nowMs();
    // Node 0 offers 2 hits per ms, nodes 1-3 one hit every 20 ms (50 per s each, 150 in all).
    for (let t = 0; t < 6000; t++) {
      for (const [i, n] of c.nodes.entries()) {
        if (i > 0 && t % 20 !== i) continue;
        for (let h = 0; h < (i === 0 ? 2 : 1); h++) {
          if (n.limiter.check("api", "k").allowed) {
            admitted.push(c.clock.nowMs());
            if (t >= 3000) byNode[i]!++;
          }
        }
      }
      await c.step(1);
    }
    const after = windows(admitted, 1000, start + 3000, start + 6000);
    t.diagnostic(`skewed: mean ${after.mean}, worst ${after.worst}, per node (3 s) ${byNode}`);
    assert.ok(after.worst <= 1050, `worst window ${after.worst}`);
    // Max-min fair: the light nodes get all they ask for, the heavy one what is left.
    for (const i of [1, 2, 3]) assert.ok(byNode[i]! >= 145, `light node ${i}: ${byNode[i]} of 150`);
    assert.ok(after.mean >= 970, `mean per window ${after.mean} < 97% of 1000`);
    for (const n of c.nodes) await n.agent.close();
    await c.aggregator.close();
  });
}

test("distributed - a key with sparse hits per node is held as close to its limit as a dense one", async (t) => {
  // The bench's in-memory reference: eight nodes at 25 ms, 3 ms of latency, timers out of phase,
  // Poisson arrivals, a limit of 300. Each node is handed about one unit per tick and spends it
  // at its next hit: 0.1 hits per ms per node (~800 per s in all), as the least offered hot key
  // of the process bench, waits ~10 ms for it; 0.35 per ms, ~3 ms.
  const sparseOff = await runSim({
    randomArrivals: true,
    hitsPerMsPerNode: 0.1,
    aggregator: { hitWaitCompensation: false },
  });
  const sparse = await runSim({ randomArrivals: true, hitsPerMsPerNode: 0.1 });
  const dense = await runSim({ randomArrivals: true, hitsPerMsPerNode: 0.35 });
  t.diagnostic(
    `mean / worst window ratio: sparse hits ${sparse.meanRatio} / ${sparse.worstWindowRatio} (without the hit wait ${sparseOff.meanRatio} / ${sparseOff.worstWindowRatio}), dense ${dense.meanRatio} / ${dense.worstWindowRatio}`,
  );
  assert.ok(sparse.meanRatio >= sparseOff.meanRatio + 0.005, "the hit wait lifts the sparse key");
  assert.ok(sparse.meanRatio >= dense.meanRatio - 0.005, "sparse within 0.5% of dense");
  for (const r of [sparse, dense])
    assert.ok(r.worstWindowRatio <= 1.03, `worst ${r.worstWindowRatio}`);
});

test("distributed - nodes offering the same load get the same share, whenever each started", async (t) => {
  // The bench's in-memory reference (eight nodes started 7 ms apart, 3 ms of latency, 0.35 hits
  // per ms each, a limit of 300 per second): fair is 37.5 admitted per second per node. Before
  // reports were aligned to the aggregator's ticks and rounding carried over, nodes got 15.6 to
  // 56.6, by the phase at which each happened to start.
  const r = await runSim({ durationMs: 8000 });
  const admitted = r.perNode.map((x) => x.admittedPerSec);
  t.diagnostic(`admitted per second per node: ${admitted.join(", ")} (mean ratio ${r.meanRatio})`);
  for (const a of admitted) assert.ok(Math.abs(a - 37.5) <= 0.15 * 37.5, `per node: ${admitted}`);
  assert.ok(r.meanRatio >= 0.97, `mean ${r.meanRatio}`);
});

test("distributed - nodes report half an interval after each aggregator tick, on their own timer without one", async () => {
  // One node at 25 ms; a stand-in aggregator broadcasts its defaults at 3 ms past every 25.
  const clock = new ManualClock(1_000_000);
  const bus = createMemoryBus();
  const rules: RuleConfig[] = [windowRule];
  const subjects = createSubjects();
  const run = async (alignReports: boolean) => {
    const limiter = createLimiter({ rules, clock, sweepIntervalMs: 0 });
    const agent = createNodeAgent({
      limiter,
      transport: bus.connect(),
      clock,
      nodeId: "n0",
      syncIntervalMs: 25,
      heartbeatIntervalMs: 200,
      alignReports,
    });
    const observer = bus.connect();
    const batches: number[] = [];
    const broadcasts: number[] = [];
    observer.subscribe(subjects.allDecisions, () => batches.push(clock.nowMs()));
    const epoch = wallClockMs();
    const start = clock.nowMs();
    let seq = 0;
    for (let ms = 0; ms < 1000; ms++) {
      const ticking = ms < 500;
      if (ticking && ms % 25 === 3) {
        broadcasts.push(clock.nowMs());
        for (const frame of encode({
          type: "rule-defaults",
          aggregatorId: "agg",
          aggregatorEpoch: epoch,
          seq: ++seq,
          sentAtWallMs: wallClockMs(),
          liveNodes: 1,
          rules: [{ rule: "api", defaultShare: 1000 }],
        }))
          observer.publish(subjects.defaults, frame);
      }
      limiter.check("api", "k"); // a change to report at every flush
      clock.advance(1);
      await bus.settle();
    }
    await agent.close();
    // Batches while the ticks are heard (after the first few), and after they stopped.
    const during = batches.filter((t) => t >= start + 100 && t < start + 500);
    const after = batches.filter((t) => t >= start + 600);
    const sinceTick = during.map((t) => t - broadcasts.filter((b) => b < t).at(-1)!);
    const gaps = after.slice(1).map((t, i) => t - after[i]!);
    return { sinceTick, gaps };
  };
  const aligned = await run(true);
  // 12.5 ms after each broadcast is heard (1 ms after it is sent here: the bus delivers at the
  // next step; timers round up to whole ms), one batch per tick.
  assert.ok(aligned.sinceTick.length >= 15, `batches while ticking: ${aligned.sinceTick.length}`);
  assert.ok(
    aligned.sinceTick.every((d) => d === 14),
    `ms from the tick to the batch: ${aligned.sinceTick}`,
  );
  assert.ok(
    aligned.gaps.length >= 10 && aligned.gaps.every((g) => g === 25),
    `own timer after the ticks stopped: ${aligned.gaps}`,
  );
  const own = await run(false);
  assert.ok(own.gaps.every((g) => g === 25));
  // On its own timer the phase is wherever the node started, not 14 ms after the tick.
  assert.ok(!own.sinceTick.every((d) => d === 14), `phase on its own: ${own.sinceTick}`);
});

test("distributed - the echo of an overload's first burst is damped: admissions come out even", async (t) => {
  // Four nodes, 1 hit per ms each (4x a limit of 1000 per second), from a cold start: every node
  // spends its default share at once, and that burst frees at once a window later. Per 25 ms
  // after the third second: the steady rate is 25 admitted; the echo shows as stretches with
  // none.
  const run = async (echoDamping: boolean) => {
    const c = await cluster(windowRule, 4, { syncIntervalMs: 25, echoDamping }, 25);
    const admitted: number[] = [];
    const start = c.clock.nowMs();
    for (let ms = 0; ms < 6000; ms++) {
      for (const n of c.nodes) if (n.limiter.check("api", "k").allowed) admitted.push(ms);
      await c.step(1);
    }
    for (const n of c.nodes) await n.agent.close();
    await c.aggregator.close();
    const buckets = new Array<number>(120).fill(0); // 25 ms buckets over seconds 3 to 6
    for (const ms of admitted) if (ms >= 3000) buckets[Math.floor((ms - 3000) / 25)]!++;
    return {
      quiet: buckets.filter((b) => b <= 5).length,
      worst: windows(
        admitted.map((ms) => start + ms),
        1000,
        start + 2000,
        start + 6000,
      ).worst,
    };
  };
  const damped = await run(true);
  const echo = await run(false);
  t.diagnostic(
    `25 ms buckets with 5 or fewer admitted, of 120: damped ${damped.quiet}, not damped ${echo.quiet}; worst windows ${damped.worst} / ${echo.worst}`,
  );
  assert.ok(echo.quiet >= 20, `the echo without damping: ${echo.quiet} quiet buckets`);
  assert.ok(damped.quiet <= echo.quiet / 4, `damped: ${damped.quiet} quiet buckets`);
  assert.ok(damped.worst <= 1050, `worst window ${damped.worst}`);
});

test("distributed - a restarted aggregator's first live counts do not hand out the whole limit", async (t) => {
  const c = await cluster(windowRule, 4);
  assert.equal(c.nodes[0]!.agent.stats().liveNodes, 4);
  await c.aggregator.close();
  // A new run starts between two heartbeats of the nodes and counts them as they arrive.
  await c.step(250);
  await afterEpochOf(c.aggregator);
  const second = createAggregatorService({
    rules: createLimiter({ rules: [windowRule], sweepIntervalMs: 0 }).rules,
    transport: c.bus.connect(),
    clock: c.clock,
    aggregatorId: "agg2",
    nodeTtlMs: 1000,
    syncIntervalMs: 50, // as the nodes
  });
  // Its first tick (50 ms) comes before the nodes' next heartbeats: it counts 1 live node.
  await c.step(50);
  const beliefs = c.nodes.map((n) => n.agent.stats().liveNodes);
  // Now a burst on a key no aggregator has granted: decided at limit / believed live nodes.
  let admitted = 0;
  for (const n of c.nodes) {
    for (let h = 0; h < 600; h++) if (n.limiter.check("api", "fresh").allowed) admitted++;
  }
  const heldBack = c.nodes.reduce((sum, n) => sum + n.agent.stats().liveNodesHeldBack, 0);
  t.diagnostic(`restart, fresh key: ${admitted} admitted, beliefs ${beliefs}`);
  // Believing that first count, each node took up to the whole limit: 2400 of 1000 here. The
  // nodes now wait two heartbeat intervals before believing fewer nodes from a new run.
  assert.ok(admitted <= 1000, `admitted ${admitted} of a limit of 1000`);
  assert.deepEqual(beliefs, [4, 4, 4, 4]);
  assert.ok(heldBack > 0, "the new run's first, lower count was held back");
  for (const n of c.nodes) await n.agent.close();
  await second.close();
});

test("distributed - a new aggregator run on a clock behind the last one's is followed once that one is silent", async () => {
  const c = await cluster(windowRule, 2);
  const node = c.nodes[0]!;
  for (let ms = 0; ms < 200; ms++) {
    node.limiter.check("api", "k");
    await c.step(1);
  }
  const followed = c.aggregator.stats().epoch;
  const behind = createSubjects();
  const other = c.bus.connect();
  // A run that started 60 s "before" the one followed (its host's clock is a minute behind).
  const send = (seq: number) => {
    for (const frame of encode({
      type: "rule-defaults",
      aggregatorId: "agg-behind",
      aggregatorEpoch: followed - 60_000,
      seq,
      sentAtWallMs: wallClockMs() - 60_000,
      liveNodes: 2,
      rules: [{ rule: "api", defaultShare: 500 }],
    }))
      other.publish(behind.defaults, frame);
    for (const frame of encode({
      type: "rate-update",
      aggregatorId: "agg-behind",
      aggregatorEpoch: followed - 60_000,
      seq,
      targetNodeId: node.agent.nodeId,
      targetNodeEpoch: node.agent.nodeEpoch,
      sentAtWallMs: wallClockMs() - 60_000,
      groups: [
        {
          rule: "api",
          entries: [
            {
              key: "k",
              generation: 0,
              version: 1,
              allowance: 5,
              rampFrom: 5,
              rampMs: 0,
              retryAfterMs: 0,
            },
          ],
        },
      ],
    }))
      other.publish(behind.updates(node.agent.nodeId), frame);
  };
  // While the run followed is heard, the one behind is taken for a late or forged message.
  send(1);
  await c.step(1);
  assert.equal(node.agent.stats().invalidMessages["older-aggregator"], 2);
  assert.equal(node.agent.stats().aggregatorRewinds, 0);
  // The run followed stops; past staleAfterMs (2 s) the node is on its loss policy.
  await c.aggregator.close();
  for (let i = 0; i < 50; i++) await c.step(50);
  assert.equal(node.agent.stats().aggregatorLost, true);
  const grants = () => node.limiter.stats().find((r) => r.rule === "api")!;
  const before = grants();
  send(2);
  await c.step(1);
  const s = node.agent.stats();
  assert.equal(s.aggregatorLost, false, "the run behind is followed");
  assert.equal(s.aggregatorRewinds, 1);
  // Its grant applies, though the silent run's grants had a higher epoch.
  assert.equal(grants().grantsApplied, before.grantsApplied + 1);
  assert.equal(grants().grantsIgnored, before.grantsIgnored);
  for (const n of c.nodes) await n.agent.close();
});

test("distributed - a forged aggregator run from the far future is dropped, the real one followed", async () => {
  const c = await cluster(windowRule, 2);
  const forger = c.bus.connect();
  const subjects = createSubjects();
  const epoch = wallClockMs() + 365 * 24 * 3_600_000; // a year ahead
  for (const frame of encode({
    type: "rule-defaults",
    aggregatorId: "forged",
    aggregatorEpoch: epoch,
    seq: 1,
    sentAtWallMs: 0,
    liveNodes: 1,
    rules: [{ rule: "api", defaultShare: 1000 }],
  }))
    forger.publish(subjects.defaults, frame);
  await c.step(200);
  for (const n of c.nodes) {
    const s = n.agent.stats();
    assert.equal(s.invalidMessages["future-aggregator"], 1);
    assert.equal(s.liveNodes, 2, "the forged count was not taken");
  }
  // The real aggregator's grants still apply: the nodes keep hearing it.
  const before = c.nodes.map((n) => n.agent.stats().updatesReceived);
  for (let ms = 0; ms < 300; ms++) {
    for (const n of c.nodes) n.limiter.check("api", "k");
    await c.step(1);
  }
  for (const [i, n] of c.nodes.entries()) {
    assert.ok(n.agent.stats().updatesReceived > before[i]!);
  }
  for (const n of c.nodes) await n.agent.close();
  await c.aggregator.close();
});
