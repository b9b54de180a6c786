import assert from "node:assert/strict";
import { test } from "node:test";
import { demandHorizonMs, foldDemand, hitWaitMs } from "../../../src/aggregator/demand.js";
import { Membership } from "../../../src/aggregator/membership.js";
import { NodeStream } from "../../../src/aggregator/node-stream.js";

function stream(batchIntervalMs = 25): NodeStream {
  const n = new Membership(3000).touch("n", 1, 0)!.node;
  n.batchIntervalMs = batchIntervalMs;
  return new NodeStream(n, 1, 0, 0, 0);
}

test("demand - the rate follows the latest report", () => {
  const s = stream();
  s.pendingDemand = 50;
  s.reportedSinceDemand = true;
  foldDemand([s], 25, 25);
  assert.ok(Math.abs(s.demandRatePerMs - 2) < 1e-3, `${s.demandRatePerMs} per ms`);
  s.pendingDemand = 0;
  s.reportedSinceDemand = true;
  foldDemand([s], 50, 25);
  assert.ok(s.demandRatePerMs < 1e-3, "a report of nothing new: no demand at the next fold");
});

test("demand - a late report is waited for 1.5 of the node's intervals before it reads as none", () => {
  const s = stream(50);
  s.demandRatePerMs = 2;
  foldDemand([s], 70, 25);
  assert.equal(s.demandRatePerMs, 2, "no report yet, within 1.5 x 50 ms: kept");
  foldDemand([s], 80, 25);
  assert.ok(s.demandRatePerMs < 1e-3, "75 ms without a report: none");
});

test("demand - the horizon is four intervals, at least 150 ms, at most the window", () => {
  assert.equal(demandHorizonMs(25, 1000), 150);
  assert.equal(demandHorizonMs(50, 1000), 200);
  assert.equal(demandHorizonMs(25, 100), 100);
});

test("demand - the wait for a hit is the mean gap between a node's hits, capped", () => {
  const a = stream();
  const b = stream();
  a.demandRatePerMs = 0.1;
  b.demandRatePerMs = 0.3;
  assert.equal(hitWaitMs([a, b], 1, 100), 5, "2 nodes / 0.4 hits per ms");
  assert.equal(hitWaitMs([a, b], 1, 3), 3, "capped");
  assert.equal(hitWaitMs([stream()], 1, 100), 0, "no demand, no wait");
  assert.equal(hitWaitMs([a], 1, 0), 0, "off");
});
