import assert from "node:assert/strict";
import { test } from "node:test";
import { ImplausibleGrantWarning } from "../../../src/agent/implausible-grant-warning.js";
import { ManualClock } from "../../../src/clock/clock.js";

test("implausible grant warning - said at once, then at most once a minute with the count since", () => {
  const clock = new ManualClock(0);
  const said: string[] = [];
  const w = new ImplausibleGrantWarning("n1", clock, (m) => said.push(m));
  w.dropped(2, "agg-a");
  assert.equal(said.length, 1);
  assert.match(said[0]!, /node n1 dropped 2 implausible grant\(s\).*aggregator "agg-a"/);
  clock.advance(30_000);
  w.dropped(3, "agg-b");
  clock.advance(29_999);
  w.dropped(1, "agg-b");
  assert.equal(said.length, 1, "within the minute: counted, not said");
  clock.advance(1);
  w.dropped(4, "agg-c");
  assert.equal(said.length, 2);
  assert.match(said[1]!, /dropped 8 implausible grant\(s\).*aggregator "agg-c"/);
});
