/**
 * `npm run build && node dist/bench/accuracy-sim.js`: the in-memory reference of
 * `npm run bench:accuracy` (test/support/fleet-sim.ts: 8 node agents and an aggregator in one
 * process on a manual clock), over a sweep of cases. `SIM_OPTIONS='{"aggregator":{"pacing":1.25}}'`
 * adds options to every case (for A/B runs). Prints one line per case and a JSON line.
 */
import { DEFAULT_SYNC_INTERVAL_MS } from "../src/protocol/limits.js";
import { runSim, type SimOptions, type SimResult } from "../test/support/fleet-sim.js";

const cases: [string, SimOptions][] = [
  [`defaults (sync ${DEFAULT_SYNC_INTERVAL_MS} ms)`, {}],
  ["sync 50 ms", { syncIntervalMs: 50 }],
  ["sync 50 ms, skewed, random", { syncIntervalMs: 50, skewed: true, randomArrivals: true }],
  ["sync 10 ms", { syncIntervalMs: 10 }],
  ["lagCompensationMs 50", { aggregator: { lagCompensationMs: 50 } }],
  ["grantRampMs 50 (lag 15)", { aggregator: { grantRampMs: 50 } }],
  ["grantRampMs 50, lag 0", { aggregator: { grantRampMs: 50, lagCompensationMs: 0 } }],
  ["grantRampMs 50, jitter 0..10 ms", { aggregator: { grantRampMs: 50 }, jitterMs: 10 }],
  ["latency 10 ms", { latencyMs: 10 }],
  ["jitter 0..10 ms", { jitterMs: 10 }],
  ["limit 3000 (10x the hits)", { limit: 3000, hitsPerMsPerNode: 3.5 }],
  ["random arrivals", { randomArrivals: true }],
  ["skewed nodes", { skewed: true }],
  ["skewed nodes, random arrivals", { skewed: true, randomArrivals: true }],
  ["shift at 6 s", { event: "shift" }],
  ["join at 6 s", { event: "join" }],
  ["leave at 6 s", { event: "leave" }],
];
const base = JSON.parse(process.env["SIM_OPTIONS"] ?? "{}") as SimOptions;
const out: Record<string, SimResult> = {};
for (const [name, options] of cases) {
  const r = await runSim({
    ...base,
    ...options,
    aggregator: { ...base.aggregator, ...options.aggregator },
  });
  out[name] = r;
  console.log(
    `${name.padEnd(28)} mean ${r.meanRatio.toFixed(3)}  lowest ${r.lowestWindowRatio.toFixed(3)}  worst ${r.worstWindowRatio.toFixed(3)}  cold ${r.coldWorstWindowRatio.toFixed(3)}  | second half: mean ${r.lateMeanRatio.toFixed(3)}  lowest ${r.lateLowestWindowRatio.toFixed(3)}  worst ${r.lateWorstWindowRatio.toFixed(3)}`,
  );
  if (options.skewed === true) {
    console.log(
      `${"".padEnd(28)} per node admitted/offered per s: ${r.perNode.map((x) => `${x.admittedPerSec}/${x.offeredPerSec}`).join(" ")}`,
    );
  }
  if (r.event !== undefined) {
    console.log(
      `${"".padEnd(28)} settled ${r.event.convergeMs ?? "never"} ms (first back ${r.event.firstBackInBandMs ?? "-"} ms); around: ${JSON.stringify(r.event.around)}`,
    );
  }
}
console.log(JSON.stringify({ bench: "accuracy-sim", cases: out }));
