/**
 * The cluster end to end, as it runs in production: one `sluice aggregator` process and three
 * `sluice loadgen` node processes over the real nats-server on 127.0.0.1:4222. Every node alone
 * offers the hot key more than its global limit, so a limiter that is not global (each node
 * enforcing the limit by itself) would admit three times the limit.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { wallClockMs } from "../../src/clock/clock.js";
import {
  aggregatorArgs,
  assertCleanExit,
  Cluster,
  describeSeconds,
  loadgenArgs,
  mean,
  perSecond,
  SHARED_NATS,
  secondsWithin,
  sleep,
  started,
  terminate,
  uniquePrefix,
} from "./helpers/cluster-procs.js";

const LIMIT = 500;
const NODES = 3;

test("cluster steady - three node processes share one global limit: mean >= 85%, no second above 110%", {
  timeout: 60_000,
}, async (t) => {
  const c = new Cluster();
  try {
    const prefix = uniquePrefix("steady");
    const rules = c.writeRules([
      { name: "api", mode: "global", algorithm: "sliding-window", limit: LIMIT, windowMs: 1000 },
    ]);
    const agg = c.sluice(
      "aggregator",
      aggregatorArgs({ nats: SHARED_NATS, prefix, rules, durationMs: 40_000, reportMs: 200 }),
    );
    await started(agg);
    // 900 hits/s per node on 10 keys, Zipf 2: the hot key k0 gets about 64% (~580/s) per node.
    const nodes = Array.from({ length: NODES }, (_, i) =>
      c.sluice(
        `node-${i}`,
        loadgenArgs({
          nats: SHARED_NATS,
          prefix,
          rules,
          nodeId: `steady-${i}`,
          ratePerSec: 900,
          durationMs: 40_000, // a safety cap: ended by SIGTERM below
        }),
      ),
    );
    await Promise.all(nodes.map((n) => started(n)));
    await sleep(8000);
    // Nodes now say they leave (a heartbeat with role 3), so a node that stops a moment after
    // its siblings can learn a lower count before its summary: read what it knew before the stop.
    const stopAtMs = wallClockMs();
    await terminate(nodes);
    await terminate([agg]);
    for (const p of [...nodes, agg]) assertCleanExit(p);

    const firstMs = Math.max(...nodes.map((n) => n.reports[0]!.atWallMs));
    const lastMs = Math.min(...nodes.map((n) => n.reports.at(-1)!.atWallMs));
    const all = perSecond(nodes, "k0");
    // Steady: from 2 s after the last node started to the end of the last full second.
    const steady = secondsWithin(all, firstMs + 2000, lastMs - 100).filter(
      (s) => s.buckets === 10 * NODES,
    );
    t.diagnostic(`hot key per second (admitted/rejected): ${describeSeconds(all, firstMs)}`);
    assert.ok(steady.length >= 4, `at least 4 steady seconds, got ${steady.length}`);

    // The load makes the test meaningful: every node alone offers more than the limit.
    for (const n of nodes) {
      const own = secondsWithin(perSecond([n], "k0"), firstMs + 2000, lastMs - 100);
      const offered = mean(own.map((s) => s.admitted + s.rejected));
      assert.ok(offered > LIMIT, `${n.name} offers ${offered.toFixed(0)}/s > ${LIMIT}`);
    }
    const admitted = steady.map((s) => s.admitted);
    const meanAdmitted = mean(admitted);
    const worst = Math.max(...admitted);
    t.diagnostic(
      `steady seconds ${steady.length}: mean ${meanAdmitted.toFixed(1)} (${((100 * meanAdmitted) / LIMIT).toFixed(1)}%), worst ${worst} (${((100 * worst) / LIMIT).toFixed(1)}%)`,
    );
    assert.ok(meanAdmitted >= 0.85 * LIMIT, `mean ${meanAdmitted} >= 85% of ${LIMIT}`);
    assert.ok(worst <= 1.1 * LIMIT, `worst second ${worst} <= 110% of ${LIMIT}`);
    // Not the naive cluster: nodes x limit would have been admitted without coordination.
    const total = admitted.reduce((a, b) => a + b, 0);
    assert.ok(
      total < NODES * LIMIT * steady.length,
      `admitted ${total} in ${steady.length} s < ${NODES} nodes x ${LIMIT} per second`,
    );

    for (const n of nodes) {
      const s = n.summary!;
      assert.ok(s.agent.grantsReceived > 0, `${n.name} received grants`);
      const lastBeforeStop = n.reports.filter((r) => r.atWallMs < stopAtMs).at(-1)!;
      assert.equal(lastBeforeStop.liveNodes, NODES, `${n.name} learnt the node count`);
      assert.deepEqual(s.agent.invalidMessages, {}, `${n.name} saw no invalid message`);
    }
    const reports = agg.aggregatorReports;
    assert.ok(
      reports.some((r) => r.liveNodes === NODES),
      "the aggregator saw all three nodes",
    );
    assert.ok(
      reports.every((r) => r.liveNodes <= NODES),
      "never more live nodes than processes",
    );
    assert.deepEqual(reports.at(-1)!.invalidMessages, {});
  } finally {
    await c.stop();
  }
});
