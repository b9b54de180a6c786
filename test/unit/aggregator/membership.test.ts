import assert from "node:assert/strict";
import { test } from "node:test";
import { Membership } from "../../../src/aggregator/membership.js";

test("membership - a node's sync interval is read from its batches' spacing, pauses and partitions left out", () => {
  const m = new Membership(3000);
  let now = 1_000_000;
  const node = m.touch("n", 1, now)!.node;
  const batch = () => m.observeBatch(node, now);
  for (let i = 0; i < 20; i++) {
    batch();
    batch(); // a second partition of the same flush
    now += 50;
  }
  assert.ok(
    Math.abs(node.batchIntervalMs - 50) < 1,
    `50 ms batches read as ${node.batchIntervalMs}`,
  );
  // Two seconds with nothing to report, then batches again: a pause, not an interval.
  now += 2000;
  batch();
  assert.ok(Math.abs(node.batchIntervalMs - 50) < 1, `after a pause: ${node.batchIntervalMs}`);
  // A node that moves to 25 ms is followed within a few batches.
  for (let i = 0; i < 6; i++) {
    now += 25;
    batch();
  }
  assert.ok(node.batchIntervalMs < 27, `25 ms batches read as ${node.batchIntervalMs}`);
});

test("membership - a restart replaces the run, an older run changes nothing, silence and a leaving notice drop it", () => {
  const m = new Membership(1000);
  const first = m.touch("n", 5, 0)!;
  assert.equal(first.joined, true);
  assert.equal(m.touch("n", 5, 10)!.joined, false);
  assert.equal(m.touch("n", 4, 20), undefined, "a late message from an older run");
  const restarted = m.touch("n", 6, 30)!;
  assert.equal(restarted.replaced, first.node);
  assert.equal(first.node.alive, false);
  assert.deepEqual(m.expire(1000), []);
  assert.deepEqual(
    m.expire(1031).map((n) => n.epoch),
    [6],
  );
  m.touch("k", 1, 2000);
  assert.equal(m.leave("k", 2), undefined, "a notice from another run");
  assert.equal(m.leave("k", 1)?.id, "k");
  assert.equal(m.liveCount, 0);
});
