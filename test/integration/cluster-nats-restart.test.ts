/**
 * The NATS server itself crashes (SIGKILL) under a running cluster and comes back a second later
 * on the same port. Nodes and aggregator are separate processes on a throwaway nats-server.
 *
 * Batches published around the outage are lost with the server, or reach it before the
 * aggregator is back (node and aggregator reconnect independently). Counts are cumulative per
 * (node run, key generation), and every node re-sends all of its counts when it reconnects and
 * again when it next hears the aggregator, so once everyone has flushed, what the aggregator
 * counted into its windows must equal, exactly, what the nodes admitted: nothing lost, nothing
 * counted twice.
 *
 * Regression: with a wide key space many key generations are first reported during the outage,
 * and a lost first report used to lose every hit before it (the aggregator takes a later report
 * of an unknown stream as a baseline). 3-9% of the admitted hits went uncounted here before the
 * node agent re-reported those generations as first and resynced once the aggregator was heard.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type AggregatorReport,
  aggregatorArgs,
  assertCleanExit,
  Cluster,
  loadgenArgs,
  sleep,
  started,
  terminate,
  uniquePrefix,
} from "./helpers/cluster-procs.js";

test("cluster nats restart - nodes resync after the server comes back; the aggregator counts every admitted hit exactly once", {
  timeout: 60_000,
}, async (t) => {
  const c = new Cluster();
  try {
    const nats = await c.natsServer();
    const prefix = uniquePrefix("natsrestart");
    const rules = c.writeRules([
      { name: "api", mode: "global", algorithm: "sliding-window", limit: 500, windowMs: 1000 },
    ]);
    const agg = c.sluice(
      "aggregator",
      aggregatorArgs({ nats: nats.url, prefix, rules, durationMs: 40_000, reportMs: 200 }),
    );
    await started(agg);
    const nodes = Array.from({ length: 3 }, (_, i) =>
      c.sluice(
        `node-${i}`,
        loadgenArgs({
          nats: nats.url,
          prefix,
          rules,
          nodeId: `natsrestart-${i}`,
          ratePerSec: 600,
          durationMs: 40_000, // a safety cap: ended by SIGTERM below
          // A wide key space: many keys are first seen around the outage, the hard case.
          keys: 3000,
          zipf: 0.8,
        }),
      ),
    );
    await Promise.all(nodes.map((n) => started(n)));
    await sleep(2500);

    const batchesBefore = agg.aggregatorReports.at(-1)!.batches;
    await nats.stop();
    await sleep(1000);
    await nats.start();
    // The aggregator hears batches again (nodes and aggregator reconnect on their own).
    await agg.waitForLine(
      "batches after the restart",
      (l): l is AggregatorReport => l.type === "aggregator" && l.batches > batchesBefore + 30,
      8000,
      agg.lines.length,
    );

    await sleep(3000);
    await terminate(nodes);
    await sleep(300); // the nodes' last batches reach the aggregator
    await terminate([agg]);
    for (const p of [...nodes, agg]) assertCleanExit(p);

    const summaries = nodes.map((n) => n.summary!);
    const admitted = summaries.reduce((sum, s) => sum + s.admitted, 0);
    const final = agg.aggregatorReports.at(-1)!;
    t.diagnostic(
      `nodes admitted ${admitted} (${summaries.map((s) => s.admitted).join(" + ")}); aggregator counted ${final.admittedCounted}; stale entries ${final.staleEntries}; resyncs ${summaries.map((s) => s.agent.resyncs)}`,
    );
    for (const s of summaries) {
      assert.ok(s.agent.resyncs >= 1, `${s.node} reconnected and re-sent its counts`);
      assert.equal(s.agent.aggregatorLost, false, `${s.node} hears the aggregator again`);
    }
    assert.ok(admitted > 0);
    assert.equal(final.admittedCounted, admitted, "counted exactly what the nodes admitted");
    assert.deepEqual(final.invalidMessages, {});
  } finally {
    await c.stop();
  }
});
