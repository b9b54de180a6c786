/**
 * Membership over real NATS with node processes: a fourth node joins mid-run and one of the
 * first three crashes (SIGKILL) later. The aggregator's live node count follows (3 -> 4 -> 3,
 * the drop within its node TTL), the nodes learn it from the defaults broadcast, and the hot
 * key's global limit holds through both changes.
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
  type SluiceProcess,
  secondsWithin,
  sleep,
  started,
  terminate,
  uniquePrefix,
  worstSlidingSecond,
} from "./helpers/cluster-procs.js";

const LIMIT = 500;
const NODE_TTL_MS = 1000;

test("cluster membership - a node joins and one crashes: live nodes 3 -> 4 -> 3, the limit holds", {
  timeout: 60_000,
}, async (t) => {
  const c = new Cluster();
  try {
    const prefix = uniquePrefix("membership");
    const rules = c.writeRules([
      { name: "api", mode: "global", algorithm: "sliding-window", limit: LIMIT, windowMs: 1000 },
    ]);
    const agg = c.sluice(
      "aggregator",
      aggregatorArgs({
        nats: SHARED_NATS,
        prefix,
        rules,
        durationMs: 40_000,
        reportMs: 100,
        extra: ["--node-ttl-ms", String(NODE_TTL_MS)],
      }),
    );
    await started(agg);
    const node = (i: number) =>
      c.sluice(
        `node-${i}`,
        loadgenArgs({
          nats: SHARED_NATS,
          prefix,
          rules,
          nodeId: `member-${i}`,
          ratePerSec: 700,
          durationMs: 40_000, // a safety cap: ended by SIGTERM below
        }),
      );
    const first = [node(0), node(1), node(2)];
    await Promise.all(first.map((n) => started(n)));
    const three = await agg.waitForLine(
      "3 live nodes",
      (l) => l.type === "aggregator" && l.liveNodes === 3,
      5000,
    );
    await sleep(3000);

    const joinWallMs = wallClockMs();
    const joiner = node(3);
    await started(joiner);
    await agg.waitForLine(
      "4 live nodes",
      (l) => l.type === "aggregator" && l.liveNodes === 4,
      3000,
      agg.lines.indexOf(three),
    );
    await sleep(3000);

    const crashed = first[2]!;
    crashed.kill("SIGKILL");
    await crashed.exited;
    const crashMs = performance.now();
    const fromLine = agg.lines.length;
    await agg.waitForLine(
      "3 live nodes after the crash",
      (l) => l.type === "aggregator" && l.liveNodes === 3,
      NODE_TTL_MS + 1500,
      fromLine,
    );
    const dropMs = performance.now() - crashMs;
    t.diagnostic(`crash noticed after ${dropMs.toFixed(0)} ms (node TTL ${NODE_TTL_MS} ms)`);
    // Not before the TTL: the aggregator cannot know sooner (the node said nothing).
    assert.ok(dropMs >= NODE_TTL_MS - 250, `dropped after ${dropMs.toFixed(0)} ms, not early`);

    await sleep(3000);
    // Read what each node knew before the stop: nodes say they leave, so one that stops a
    // moment after another can learn a lower count on its way out.
    const stopAtMs = wallClockMs();
    await terminate([first[0]!, first[1]!, joiner]);
    await terminate([agg]);
    for (const p of [first[0]!, first[1]!, joiner, agg]) assertCleanExit(p);

    // The survivors learnt every count from the aggregator's defaults broadcast, in order.
    const before = (p: SluiceProcess) => p.reports.filter((r) => r.atWallMs < stopAtMs);
    const seen = before(first[0]!).map((r) => r.liveNodes);
    const changes = seen.filter((n, i) => i === 0 || n !== seen[i - 1]);
    t.diagnostic(`node-0 live node counts: ${changes.join(" -> ")}`);
    assert.deepEqual(changes.slice(-3), [3, 4, 3], "node-0 followed 3 -> 4 -> 3");
    assert.equal(
      before(joiner).at(-1)!.liveNodes,
      3,
      "the joiner learnt the count after the crash",
    );
    const last = agg.aggregatorReports.at(-1)!;
    assert.equal(last.nodesJoined, 4);
    assert.equal(last.nodesDropped, 1);

    // The limit over the whole run, once every first node was up (joins, crash included).
    const everyone = [...first, joiner];
    const fromMs = Math.max(...first.map((n) => n.reports[0]!.atWallMs)) + 2000;
    const toMs =
      Math.min(first[0]!.reports.at(-1)!.atWallMs, first[1]!.reports.at(-1)!.atWallMs) - 100;
    const all = perSecond(everyone, "k0");
    const seconds = secondsWithin(all, fromMs, toMs);
    t.diagnostic(`hot key per second: ${describeSeconds(all, joinWallMs)} (0s = join)`);
    assert.ok(seconds.length >= 6, `at least 6 full seconds, got ${seconds.length}`);
    const worst = Math.max(...seconds.map((s) => s.admitted));
    const sliding = worstSlidingSecond(everyone, "k0", fromMs, toMs);
    t.diagnostic(
      `worst wall-clock second ${worst}, worst 1 s on the 100 ms grid ${sliding.admitted} at ${sliding.endMs - joinWallMs} ms after the join`,
    );
    assert.ok(worst <= 1.1 * LIMIT, `worst second ${worst} <= 110% of ${LIMIT}`);
    const meanAdmitted = mean(seconds.map((s) => s.admitted));
    assert.ok(meanAdmitted >= 0.8 * LIMIT, `mean ${meanAdmitted.toFixed(1)} >= 80% of ${LIMIT}`);
  } finally {
    await c.stop();
  }
});
