/**
 * Key administration on a global rule over real NATS: two `sluice loadgen` processes offer one
 * key at 8x its limit; a third node (this process) calls `penalty`, `reward`, `reset` and
 * `block` on it; the aggregator (here, to read its window) and the other nodes follow.
 *
 * - penalty: the aggregator counts the cost in the key's window, and the nodes admit nothing
 *   while the window is over its limit; reward gives it back.
 * - reset: the window forgets what it held (the next second admits about a limit more than it
 *   could have without), and the nodes' later reports do not bring the old counts back.
 * - block: every node refuses the key for the block's duration, then admits again.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createNodeAgent } from "../../src/agent/node-agent.js";
import { createAggregatorService } from "../../src/aggregator/aggregator-service.js";
import { monotonicClock, wallClockMs } from "../../src/clock/clock.js";
import { createLimiter } from "../../src/limiter/limiter.js";
import { connectNats } from "../../src/transport/nats/nats-transport.js";
import {
  Cluster,
  type LoadgenReport,
  type LoadgenSummary,
  loadgenArgs,
  SHARED_NATS,
  type SluiceProcess,
  sleep,
  started,
  uniquePrefix,
} from "./helpers/cluster-procs.js";

const LIMIT = 100;
const RULE = {
  name: "api",
  mode: "global" as const,
  algorithm: "sliding-window" as const,
  limit: LIMIT,
  windowMs: 1000,
};

/** k0's admitted cost over both load nodes in report buckets ending within [fromWall, toWall]. */
function admittedBetween(nodes: readonly SluiceProcess[], fromWall: number, toWall: number) {
  let sum = 0;
  for (const n of nodes) {
    for (const l of n.lines) {
      if (l.type !== "loadgen") continue;
      const r = l as LoadgenReport;
      if (r.atWallMs - r.intervalMs >= fromWall && r.atWallMs <= toWall)
        sum += r.tracked["k0"]?.[0] ?? 0;
    }
  }
  return sum;
}

async function until(what: string, ms: number, check: () => boolean): Promise<number> {
  const start = monotonicClock.nowMs();
  while (!check()) {
    if (monotonicClock.nowMs() - start > ms) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(10);
  }
  return monotonicClock.nowMs() - start;
}

test("cluster key admin - penalty, reward, reset and block on a global key reach the aggregator and every node", async () => {
  const prefix = uniquePrefix("keyadmin");
  const cluster = new Cluster();
  const open: { close(): Promise<void> }[] = [];
  try {
    const rulesFile = cluster.writeRules([RULE]);
    const aggTransport = await connectNats({ servers: SHARED_NATS, name: "keyadmin-agg" });
    open.push(aggTransport);
    const rules = createLimiter({ rules: [RULE], sweepIntervalMs: 0 }).rules;
    const aggregator = createAggregatorService({
      rules,
      transport: aggTransport,
      subjectPrefix: prefix,
      warmupMs: 0,
    });
    open.push(aggregator);
    const window = () => aggregator.core.windowAdmitted("api", "k0", monotonicClock.nowMs());

    const adminTransport = await connectNats({ servers: SHARED_NATS, name: "keyadmin-admin" });
    const limiter = createLimiter({ rules: [RULE], sweepIntervalMs: 0 });
    const agent = createNodeAgent({
      limiter,
      transport: adminTransport,
      nodeId: "admin",
      subjectPrefix: prefix,
    });
    open.push(adminTransport, limiter, agent);

    const nodes = ["n1", "n2"].map((nodeId) =>
      cluster.sluice(
        nodeId,
        loadgenArgs({
          nats: SHARED_NATS,
          prefix,
          rules: rulesFile,
          nodeId,
          ratePerSec: 400,
          durationMs: 9000,
          keys: 1,
        }),
      ),
    );
    await Promise.all(nodes.map((n) => started(n)));
    await until("the load fills the window", 4000, () => window() >= 0.8 * LIMIT);

    // Penalty: counted at once in the window; the nodes then admit nothing while it is over.
    await limiter.penalty("api", "k0", 10 * LIMIT);
    const penaltyMs = await until(
      "the penalty reaches the window",
      1000,
      () => window() >= 10 * LIMIT,
    );
    const penaltyAt = wallClockMs();
    await sleep(700);
    assert.ok(
      admittedBetween(nodes, penaltyAt + 100, wallClockMs()) <= 5,
      "nothing admitted while the penalty holds the window over its limit",
    );
    await limiter.reward("api", "k0", 10 * LIMIT);
    await until("the reward leaves the window", 1000, () => window() <= 2 * LIMIT);
    const rewardAt = wallClockMs();
    await until(
      "admissions resume after the reward",
      2000,
      () => admittedBetween(nodes, rewardAt, wallClockMs()) > 0,
    );

    // Reset: from a full window, the aggregator's window empties at once; the others' later
    // reports do not bring the old counts back (grants are paced at 1.5x the steady rate, so
    // half a second later the window holds well under a limit again).
    await until("the window is full again", 3000, () => window() >= 0.9 * LIMIT);
    const resetAt = wallClockMs();
    await limiter.reset("api", "k0");
    const resetMs = await until(
      "the reset empties the window",
      1000,
      () => window() <= 0.3 * LIMIT,
    );
    await sleep(500 - resetMs);
    const refilled = window();
    assert.ok(
      refilled <= 0.9 * LIMIT,
      `the old counts did not come back: window ${refilled} after 500 ms`,
    );
    await sleep(600);
    const afterReset = admittedBetween(nodes, resetAt, resetAt + 1100);

    // Block: every node refuses the key until the block ends, then admits again.
    const blockAt = wallClockMs();
    await limiter.block("api", "k0", 1500);
    assert.equal(limiter.check("api", "k0").allowed, false, "the calling node refuses at once");
    await sleep(1400);
    const during = admittedBetween(nodes, blockAt + 100, blockAt + 1400);
    assert.ok(during <= 2, `nothing admitted by the other nodes during the block: ${during}`);
    await until(
      "admissions resume after the block",
      3000,
      () => admittedBetween(nodes, blockAt + 1500, wallClockMs()) > 0,
    );

    const summaries = (await Promise.all(nodes.map((n) => n.exited))).length;
    assert.equal(summaries, 2);
    for (const n of nodes) {
      const s = n.lines.find((l) => l.type === "loadgen-summary") as LoadgenSummary | undefined;
      assert.ok(s !== undefined, `${n.name} printed its summary`);
      assert.equal(s.agent.commandsApplied, 4, `${n.name} applied the four commands`);
    }
    assert.equal(agent.stats().commandsSent, 4);
    assert.equal(aggregator.core.stats.keyCommands, 4);
    console.log(
      `penalty counted at the aggregator ${penaltyMs.toFixed(0)} ms after the call returned, ` +
        `reset ${resetMs.toFixed(0)} ms; ${afterReset} admitted in the second after the reset`,
    );
  } finally {
    for (const o of open.reverse()) await o.close().catch(() => {});
    await cluster.stop();
  }
});
