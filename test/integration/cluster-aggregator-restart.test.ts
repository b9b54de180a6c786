/**
 * The aggregator crashes (SIGKILL) mid-run and a new one starts a few seconds later, over real
 * NATS with three node processes.
 *
 * What the code guarantees, and what is asserted:
 * - A node calls the aggregator lost once it heard nothing for `staleAfterMs`; until then it
 *   admits only what its last grant still allows (grants do not grow without the aggregator).
 * - While lost, the rule's `onAggregatorLoss` policy decides; with `static` (the default) each
 *   node runs the rule's own algorithm at limit / liveNodes, the last live count it was told, so
 *   the nodes together stay at the limit.
 * - A new aggregator starts with empty windows: it cannot know what the nodes admitted under the
 *   loss policy just before it came. With `--warmup-ms 0` it grants the whole limit at once, so
 *   up to one limit admitted under the loss policy plus one limit it grants can fall in the same
 *   second: at most 2x the limit around the recovery, the limit again a window later. With the
 *   default warmup (one window) it withholds grants until what came before has left the window,
 *   and the limit holds throughout (second test).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { wallClockMs } from "../../src/clock/clock.js";
import {
  aggregatorArgs,
  assertCleanExit,
  Cluster,
  describeSeconds,
  type LoadgenReport,
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

const LIMIT = 600;
const NODES = 3;
const STALE_AFTER_MS = 1000;

/** `warmupMs` undefined: the aggregator's default (one window). */
async function restartRun(
  t: { diagnostic(message: string): void },
  warmupMs: number | undefined,
): Promise<{
  seconds: ReturnType<typeof perSecond>;
  killWallMs: number;
  lostWallMs: number;
  restartWallMs: number;
  recoveredWallMs: number;
  endWallMs: number;
  nodes: SluiceProcess[];
}> {
  const c = new Cluster();
  try {
    const prefix = uniquePrefix(`aggrestart${warmupMs ?? "default"}`);
    const rules = c.writeRules([
      { name: "api", mode: "global", algorithm: "sliding-window", limit: LIMIT, windowMs: 1000 },
    ]);
    const aggregator = (name: string) =>
      c.sluice(
        name,
        aggregatorArgs({
          nats: SHARED_NATS,
          prefix,
          rules,
          durationMs: 40_000,
          reportMs: 200,
          extra: [
            "--node-ttl-ms",
            "1500",
            ...(warmupMs === undefined ? [] : ["--warmup-ms", String(warmupMs)]),
          ],
        }),
      );
    const first = aggregator("aggregator-1");
    await started(first);
    const nodes = Array.from({ length: NODES }, (_, i) =>
      c.sluice(
        `node-${i}`,
        loadgenArgs({
          nats: SHARED_NATS,
          prefix,
          rules,
          nodeId: `restart-${i}`,
          ratePerSec: 700,
          durationMs: 40_000, // a safety cap: ended by SIGTERM below
          extra: ["--stale-after-ms", String(STALE_AFTER_MS)],
        }),
      ),
    );
    await Promise.all(nodes.map((n) => started(n)));
    await sleep(4000);

    const grantsBefore = nodes.map((n) => n.reports.at(-1)!.grantsReceived);
    assert.ok(
      grantsBefore.every((g) => g > 0),
      `every node holds grants before the crash: ${grantsBefore}`,
    );
    assert.ok(nodes.every((n) => !n.reports.at(-1)!.aggregatorLost));
    const killWallMs = wallClockMs();
    first.kill("SIGKILL");
    await first.exited;
    const lost = await Promise.all(
      nodes.map((n) =>
        n.waitForLine(
          "aggregatorLost",
          (l): l is LoadgenReport => l.type === "loadgen" && l.aggregatorLost,
          STALE_AFTER_MS + 2000,
          n.lines.length,
        ),
      ),
    );
    for (const l of lost) {
      const afterMs = l.atWallMs - killWallMs;
      // Reports are 100 ms buckets and batches tick every 50 ms: allow that much either way.
      assert.ok(
        afterMs >= STALE_AFTER_MS - 150 && afterMs <= STALE_AFTER_MS + 600,
        `${l.node} called the aggregator lost ${afterMs} ms after the crash (stale after ${STALE_AFTER_MS})`,
      );
    }
    const lostWallMs = Math.max(...lost.map((l) => l.atWallMs));
    await sleep(killWallMs + 4500 - wallClockMs());

    const restartWallMs = wallClockMs();
    const second = aggregator("aggregator-2");
    await started(second);
    const recovered = await Promise.all(
      nodes.map((n, i) =>
        n.waitForLine(
          "grants from the new aggregator",
          (l): l is LoadgenReport =>
            l.type === "loadgen" && !l.aggregatorLost && l.grantsReceived > grantsBefore[i]!,
          (warmupMs ?? 1000) + 5000,
          n.lines.length,
        ),
      ),
    );
    const recoveredWallMs = Math.max(...recovered.map((l) => l.atWallMs));
    await sleep(5000);
    await terminate(nodes);
    await terminate([second]);
    for (const p of [...nodes, second]) assertCleanExit(p);
    for (const n of nodes) {
      const s = n.summary!.agent;
      assert.equal(s.aggregatorLost, false, `${n.name} ends with an aggregator`);
      assert.ok(s.invalidMessages["older-aggregator"] === undefined, "no older aggregator spoke");
    }
    const seconds = perSecond(nodes, "k0");
    const endWallMs = Math.min(...nodes.map((n) => n.reports.at(-1)!.atWallMs)) - 100;
    t.diagnostic(
      `hot key per second (0s = crash; lost at +${lostWallMs - killWallMs} ms, restart at +${restartWallMs - killWallMs} ms, grants back at +${recoveredWallMs - killWallMs} ms): ${describeSeconds(seconds, killWallMs)}`,
    );
    return {
      seconds,
      killWallMs,
      lostWallMs,
      restartWallMs,
      recoveredWallMs,
      endWallMs,
      nodes,
    };
  } finally {
    await c.stop();
  }
}

test("cluster aggregator restart - nodes fall back to limit / liveNodes each, then recover grants from a new aggregator without warmup", {
  timeout: 60_000,
}, async (t) => {
  const r = await restartRun(t, 0);
  const firstMs = Math.max(...r.nodes.map((n) => n.reports[0]!.atWallMs));

  // Before the crash: the global limit as usual.
  const before = secondsWithin(r.seconds, firstMs + 1000, r.killWallMs);
  assert.ok(before.length >= 2, `seconds before the crash: ${before.length}`);
  for (const s of before) assert.ok(s.admitted <= 1.1 * LIMIT, `before: ${s.admitted}`);

  // While lost: every node decides alone at limit / 3, so together they stay at the limit.
  const during = secondsWithin(r.seconds, r.lostWallMs, r.restartWallMs);
  assert.ok(during.length >= 2, `full seconds while lost: ${during.length}`);
  for (const s of during) {
    assert.ok(
      s.admitted >= 0.85 * LIMIT && s.admitted <= 1.1 * LIMIT,
      `while lost, ${s.admitted} admitted in a second: the static policy keeps the sum at ${LIMIT}`,
    );
  }
  for (const n of r.nodes) {
    const own = secondsWithin(perSecond([n], "k0"), r.lostWallMs, r.restartWallMs);
    for (const s of own) {
      assert.ok(
        s.admitted <= (1.1 * LIMIT) / NODES,
        `${n.name} admitted ${s.admitted} in a second while lost, at most its share ${LIMIT / NODES}`,
      );
    }
  }
  // From the crash to the end: never beyond twice the limit (see the file header).
  const after = secondsWithin(r.seconds, r.killWallMs - 1000, r.endWallMs);
  const worst = Math.max(...after.map((s) => s.admitted));
  const sliding = worstSlidingSecond(r.nodes, "k0", r.killWallMs - 1000, r.endWallMs);
  t.diagnostic(
    `from the crash on: worst wall-clock second ${worst} (${((100 * worst) / LIMIT).toFixed(0)}%), worst 1 s on the 100 ms grid ${sliding.admitted} at +${sliding.endMs - r.killWallMs} ms`,
  );
  assert.ok(worst <= 2 * LIMIT, `worst second ${worst} <= 2 x ${LIMIT}`);
  // The new grants start as one burst of the whole budget: once that has left the window (one
  // window, plus one for the report granularity), the limit again.
  const settled = secondsWithin(r.seconds, r.recoveredWallMs + 2000, r.endWallMs);
  assert.ok(settled.length >= 2, `settled seconds after recovery: ${settled.length}`);
  for (const s of settled) assert.ok(s.admitted <= 1.1 * LIMIT, `after recovery: ${s.admitted}`);
  const m = mean(settled.map((s) => s.admitted));
  // Grants flow again (without them the nodes, back from the loss policy but holding used-up
  // grants of the dead aggregator, would admit nothing). The band is wider than in the steady
  // test: measured 94-100% on a quiet machine, down to 83% with a load average of 13.
  assert.ok(m >= 0.75 * LIMIT, `mean after recovery ${m.toFixed(0)} >= 75%`);
});

test("cluster aggregator restart - with the default warmup (one window) the new aggregator keeps the limit through the recovery", {
  timeout: 60_000,
}, async (t) => {
  const r = await restartRun(t, undefined);
  const after = secondsWithin(r.seconds, r.killWallMs - 1000, r.endWallMs);
  assert.ok(after.length >= 8, `seconds from the crash on: ${after.length}`);
  const worst = Math.max(...after.map((s) => s.admitted));
  const sliding = worstSlidingSecond(r.nodes, "k0", r.killWallMs - 1000, r.endWallMs);
  t.diagnostic(
    `from the crash on: worst wall-clock second ${worst}, worst 1 s on the 100 ms grid ${sliding.admitted} at +${sliding.endMs - r.killWallMs} ms`,
  );
  assert.ok(worst <= 1.1 * LIMIT, `worst second ${worst} <= 110% of ${LIMIT}, recovery included`);
  const settled = secondsWithin(r.seconds, r.recoveredWallMs + 2000, r.endWallMs);
  assert.ok(settled.length >= 2, `settled seconds after recovery: ${settled.length}`);
  const m = mean(settled.map((s) => s.admitted));
  // Grants flow again (without them the nodes, back from the loss policy but holding used-up
  // grants of the dead aggregator, would admit nothing). The band is wider than in the steady
  // test: measured 94-100% on a quiet machine, down to 83% with a load average of 13.
  assert.ok(m >= 0.75 * LIMIT, `mean after recovery ${m.toFixed(0)} >= 75%`);
});
