/**
 * `sluice loadgen --start-at-ms` and the option checks of `sluice loadgen` / `sluice aggregator`
 * against the real NATS server: processes started at different moments begin their load at one
 * agreed wall-clock instant, and a bad value is refused before anything connects.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { wallClockMs } from "../../src/clock/clock.js";
import { encode } from "../../src/protocol/encode.js";
import { createSubjects } from "../../src/protocol/subjects.js";
import { connectNats } from "../../src/transport/nats/nats-transport.js";
import {
  assertCleanExit,
  Cluster,
  type LoadgenStart,
  loadgenArgs,
  SHARED_NATS,
  sleep,
  uniquePrefix,
} from "./helpers/cluster-procs.js";

test("cli - loadgen --start-at-ms: two nodes started apart begin their load at the same instant", {
  timeout: 60_000,
}, async () => {
  const c = new Cluster();
  try {
    const prefix = uniquePrefix("startat");
    const rules = c.writeRules([
      { name: "api", mode: "global", algorithm: "sliding-window", limit: 100, windowMs: 1000 },
    ]);
    // Far enough ahead for both processes to boot and connect on a busy machine.
    const startAt = Math.ceil(wallClockMs() / 100) * 100 + 6000;
    const node = (i: number) =>
      c.sluice(
        `node-${i}`,
        loadgenArgs({
          nats: SHARED_NATS,
          prefix,
          rules,
          nodeId: `start-at-${i}`,
          ratePerSec: 200,
          durationMs: 1000,
          extra: ["--start-at-ms", String(startAt)],
        }),
      );
    const first = node(0);
    await sleep(1500);
    const second = node(1);
    for (const p of [first, second]) {
      const start = await p.waitForLine(
        "its loadgen-start line",
        (l): l is LoadgenStart => l.type === "loadgen-start",
        30_000,
      );
      assert.ok(
        start.atWallMs >= startAt,
        `${p.name} started its load at ${start.atWallMs}, before ${startAt}`,
      );
      // Generous: only a stalled machine makes this more than a few ms.
      assert.ok(
        start.atWallMs - startAt < 1000,
        `${p.name} started ${start.atWallMs - startAt} ms late`,
      );
      await p.waitExit(20_000);
      assertCleanExit(p);
      const reports = p.reports;
      assert.ok(reports.length > 0, `${p.name} reported nothing`);
      // No bucket ending before the start holds a decision; all the load came after it.
      for (const r of reports) {
        if (r.atWallMs <= startAt) assert.equal(r.admitted + r.rejected, 0);
      }
      const offered = reports.reduce((a, r) => a + r.admitted + r.rejected, 0);
      assert.ok(offered >= 150, `${p.name} offered ${offered} hits in 1 s at 200/s`);
      assert.equal(
        p.summary?.admitted,
        reports.reduce((a, r) => a + r.admitted, 0),
      );
    }
  } finally {
    await c.stop();
  }
});

test("cli - bad --start-at-ms and --pacing values exit 2 with the option named, before connecting", {
  timeout: 30_000,
}, async () => {
  const c = new Cluster();
  try {
    const rules = c.writeRules([
      { name: "api", mode: "global", algorithm: "sliding-window", limit: 100, windowMs: 1000 },
    ]);
    // Nothing listens on port 1: a command that tried to connect would say "Could not connect"
    // (and exit 2 too, so the message is what tells the two apart).
    const nowhere = "nats://127.0.0.1:1";
    const cases: [string, string[], RegExp][] = [
      [
        "start-at-ms far ahead",
        [
          "loadgen",
          "--nats",
          nowhere,
          "--rules",
          rules,
          "--start-at-ms",
          String(wallClockMs() + 3_600_000),
        ],
        /--start-at-ms/,
      ],
      [
        "start-at-ms not a number",
        ["loadgen", "--nats", nowhere, "--rules", rules, "--start-at-ms", "soon"],
        /--start-at-ms/,
      ],
      [
        "pacing negative",
        ["aggregator", "--nats", nowhere, "--rules", rules, "--pacing=-1"],
        /--pacing/,
      ],
    ];
    for (const [what, args, message] of cases) {
      const p = c.sluice(what, args);
      const exit = await p.waitExit(15_000);
      assert.deepEqual(exit, { code: 2, signal: null }, `${what}: ${p.stderr}`);
      assert.match(p.stderr, message, what);
      assert.doesNotMatch(p.stderr, /could not connect|ECONNREFUSED/i, `${what} tried to connect`);
    }
  } finally {
    await c.stop();
  }
});

test("cli - the aggregator's progress line names a node whose clock is off by more than 0.5 s", {
  timeout: 30_000,
}, async () => {
  const c = new Cluster();
  const prefix = uniquePrefix("clock");
  const node = await connectNats({ servers: SHARED_NATS, name: "clock-skewed-node" });
  try {
    const rules = c.writeRules([
      { name: "api", mode: "global", algorithm: "sliding-window", limit: 100, windowMs: 1000 },
    ]);
    const agg = c.sluice("aggregator", [
      "aggregator",
      "--nats",
      SHARED_NATS,
      "--prefix",
      prefix,
      "--rules",
      rules,
      "--report-ms",
      "200",
      "--duration-ms",
      "20000",
    ]);
    const subjects = createSubjects({ prefix });
    // Two nodes: one on this host's clock, one whose clock is 2 s ahead.
    const beat = (id: string, aheadMs: number, seq: number) => {
      for (const frame of encode({
        type: "heartbeat",
        nodeId: id,
        nodeEpoch: 1,
        seq,
        sentAtWallMs: wallClockMs() + aheadMs,
        role: 1,
      }))
        node.publish(subjects.heartbeat(id), frame);
    };
    let named: string | undefined;
    for (let i = 0; i < 60 && named === undefined; i++) {
      beat("on-time", 0, i);
      beat("ahead", 2000, i);
      await node.flush();
      await sleep(200);
      named = agg.otherLines.find((l) => /clock of/.test(l));
    }
    assert.ok(named !== undefined, `no line named a node: ${agg.otherLines.slice(-3).join(" | ")}`);
    assert.match(named, /nodes 2, clock of ahead off by (19|20)\d\d ms/);
    assert.ok(
      !agg.otherLines.some((l) => /clock of on-time/.test(l)),
      "the on-time node is not named",
    );
    agg.kill("SIGTERM");
    await agg.waitExit(10_000);
  } finally {
    await node.close();
    await c.stop();
  }
});
