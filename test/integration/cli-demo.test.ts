/**
 * `sluice demo`, the README's main command, end to end: over the real NATS server (an aggregator
 * and node processes), in one process on the in-memory bus, and with no NATS server at all.
 * Default load (4 nodes, the hot key offered about twice its limit), short runs (7 s instead of
 * 15 s); the figures checked are the demo's own JSON lines.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Cluster, SHARED_NATS, type SluiceLine } from "./helpers/cluster-procs.js";

interface DemoSecond {
  type: "demo-second";
  second: number;
  hotAdmitted: number;
  hotRejected: number;
  hotByNode: Record<string, number>;
  limitPerSec: number;
}

interface DemoSummary {
  type: "demo-summary";
  limitPerSec: number;
  seconds: number;
  hotKeyMeanRatio: number;
  hotKeyWorstSecondRatio: number;
  hotKeyWorstWindowRatio: number;
  mode: string;
  invalidMessages: Record<string, number>;
  grantsSent: number;
}

function demoLines(lines: readonly SluiceLine[]) {
  const all = lines as unknown as { type: string }[];
  return {
    seconds: all.filter((l): l is DemoSecond => l.type === "demo-second"),
    summary: all.find((l): l is DemoSummary => l.type === "demo-summary"),
  };
}

/** Checks one demo run's output: every second reported, the limit shared and held. */
function checkRun(name: string, lines: readonly SluiceLine[], mode: string, nodes: number) {
  const { seconds, summary } = demoLines(lines);
  assert.ok(summary !== undefined, `${name}: a summary line`);
  assert.equal(summary.mode, mode);
  assert.equal(summary.limitPerSec, 1000);
  assert.ok(seconds.length >= 5, `${name}: ${seconds.length} per-second lines`);
  assert.deepEqual(
    seconds.map((s) => s.second),
    seconds.map((_, i) => seconds[0]!.second + i),
    `${name}: one line per second, in order`,
  );
  // The hot key is offered about twice its limit: the limit is used, and held.
  assert.ok(summary.hotKeyMeanRatio >= 0.85, `${name}: mean ${summary.hotKeyMeanRatio}`);
  assert.ok(
    summary.hotKeyWorstSecondRatio <= 1.1,
    `${name}: worst ${summary.hotKeyWorstSecondRatio}`,
  );
  // Every sliding window from the first one, the cold start included.
  assert.ok(
    summary.hotKeyWorstWindowRatio <= 1.05,
    `${name}: worst window ${summary.hotKeyWorstWindowRatio}`,
  );
  // (The first second starts with an empty window, the last is cut short.)
  assert.ok(
    seconds.slice(1, -1).every((s) => s.hotRejected > 0),
    `${name}: the hot key is over its limit every second: ${seconds.map((s) => `${s.second}:${s.hotAdmitted}/${s.hotRejected}`).join(" ")}`,
  );
  // Each line is printed once its second is complete: the live lines say what the summary says
  // (printed as soon as a second ended, they missed its last reports and read 5-8% lower).
  const full = seconds.slice(1, -1);
  const liveMean = full.reduce((a, s) => a + s.hotAdmitted / s.limitPerSec, 0) / full.length;
  assert.ok(
    Math.abs(liveMean - summary.hotKeyMeanRatio) <= 0.01,
    `${name}: live lines' mean ${liveMean.toFixed(3)} against the summary's ${summary.hotKeyMeanRatio}`,
  );
  // The nodes share it: every node admitted some of the hot key at some point.
  const sharing = new Set(seconds.flatMap((s) => Object.keys(s.hotByNode)));
  assert.equal(sharing.size, nodes, `${name}: nodes seen ${[...sharing]}`);
  assert.ok(summary.grantsSent > 0, `${name}: the aggregator granted`);
  assert.deepEqual(summary.invalidMessages, {});
}

/** Runs `sluice <args>` to its end; returns how it exited and what it printed. */
async function runDemo(name: string, args: readonly string[], timeoutMs: number) {
  const c = new Cluster();
  try {
    const demo = c.sluice(name, args);
    const exit = await demo.waitExit(timeoutMs);
    return { exit, lines: demo.lines, stderr: demo.stderr };
  } finally {
    await c.stop();
  }
}

test("cli demo - over NATS: an aggregator and node processes share the limit, with a summary", {
  timeout: 90_000,
}, async () => {
  const demo = await runDemo(
    "demo",
    ["demo", "--json", "--nats", SHARED_NATS, "--duration-ms", "7000"],
    60_000,
  );
  assert.deepEqual(demo.exit, { code: 0, signal: null }, demo.stderr);
  checkRun("nats", demo.lines, "processes over NATS", 4);
});

test("cli demo - two aggregators: the first is killed at half time, the other takes its partitions over and the limit holds", {
  timeout: 90_000,
}, async (t) => {
  const demo = await runDemo(
    "demo-group",
    ["demo", "--json", "--nats", SHARED_NATS, "--duration-ms", "8000", "--aggregators", "2"],
    60_000,
  );
  assert.deepEqual(demo.exit, { code: 0, signal: null }, demo.stderr);
  const { summary } = demoLines(demo.lines);
  assert.ok(summary !== undefined);
  const s = summary as DemoSummary & {
    aggregators: { id: string; partitions: number; takeovers: number }[];
  };
  t.diagnostic(
    `mean ${s.hotKeyMeanRatio}, worst window ${s.hotKeyWorstWindowRatio}, ${JSON.stringify(s.aggregators)}`,
  );
  assert.equal(s.mode, "processes over NATS, 2 aggregators");
  assert.deepEqual(
    s.aggregators.map((a) => [a.id, a.partitions]),
    [["agg-2", 16]],
    "the survivor holds every partition",
  );
  assert.ok(s.aggregators[0]!.takeovers > 0, "by taking over the killed one's");
  assert.ok(s.hotKeyWorstWindowRatio <= 1.05, `worst window ${s.hotKeyWorstWindowRatio}`);
  assert.deepEqual(s.invalidMessages, {});
});

test("cli demo - in memory: the same demo in one process, no NATS", {
  timeout: 60_000,
}, async () => {
  const demo = await runDemo(
    "demo-memory",
    // Nothing listens on the NATS URL given: the in-memory mode must not need it.
    ["demo", "--json", "--in-memory", "--duration-ms", "7000", "--nats", "nats://127.0.0.1:1"],
    45_000,
  );
  assert.deepEqual(demo.exit, { code: 0, signal: null }, demo.stderr);
  checkRun("in memory", demo.lines, "in memory", 4);
});

test("cli demo - no NATS server: says so and offers the in-memory mode, no stack trace", {
  timeout: 30_000,
}, async () => {
  const demo = await runDemo("demo-nowhere", ["demo", "--nats", "nats://127.0.0.1:1"], 20_000);
  assert.equal(demo.exit.signal, null);
  assert.notEqual(demo.exit.code, 0);
  assert.match(demo.stderr, /no NATS server answered at nats:\/\/127\.0\.0\.1:1/);
  assert.match(demo.stderr, /sluice demo --in-memory/);
  assert.doesNotMatch(demo.stderr, /^\s+at /m, "no stack trace");
});
