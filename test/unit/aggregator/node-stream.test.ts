import assert from "node:assert/strict";
import { test } from "node:test";
import { Membership, type NodeRecord } from "../../../src/aggregator/membership.js";
import { committedAllowance, NodeStream, reconcile } from "../../../src/aggregator/node-stream.js";
import { decisionEntry } from "../../support/decision-entry.js";

const EPOCH = 7;

function node(id = "n"): NodeRecord {
  return new Membership(3000).touch(id, 1, 0)!.node;
}

const entry = decisionEntry;

test("node stream - cumulative counts: a report adds its difference, an older one nothing", () => {
  const streams: NodeStream[] = [];
  const n = node();
  const first = reconcile(streams, n, entry({ admitted: 10, rejected: 2, isNew: true }), 0, EPOCH);
  assert.deepEqual([first?.admitted, first?.rejected, first?.stale], [10, 2, false]);
  const next = reconcile(streams, n, entry({ admitted: 15, rejected: 2 }), 1, EPOCH);
  assert.deepEqual([next?.admitted, next?.rejected], [5, 0]);
  assert.equal(reconcile(streams, n, entry({ admitted: 12, rejected: 2 }), 2, EPOCH), undefined);
  const repeat = reconcile(streams, n, entry({ admitted: 15, rejected: 2 }), 3, EPOCH);
  assert.equal(repeat?.stale, true, "nothing new and no newer grant: a repeat");
  assert.equal(streams.length, 1);
  assert.equal(streams[0]!.pendingDemand, 17, "demand counts what each report added");
});

test("node stream - a stream first seen counts in full only when the node says it is the generation's first", () => {
  const n = node();
  const fresh: NodeStream[] = [];
  assert.equal(reconcile(fresh, n, entry({ admitted: 40, isNew: true }), 0, EPOCH)?.admitted, 40);
  const resumed: NodeStream[] = [];
  // An aggregator that restarted sees the stream mid-way: only what this report adds counts.
  const r = reconcile(resumed, n, entry({ admitted: 40, admittedSinceLast: 3 }), 0, EPOCH);
  assert.equal(r?.admitted, 3);
  // A new generation of the key replaces the stream.
  const again = reconcile(resumed, n, entry({ generation: 2, admitted: 1, isNew: true }), 1, EPOCH);
  assert.equal(again?.admitted, 1);
  assert.equal(resumed.length, 1);
  assert.equal(resumed[0]!.generation, 2);
});

test("node stream - a placeholder adopts the node's first report and keeps what was sent to it", () => {
  const n = node();
  const ahead = NodeStream.placeholder(n, 0);
  ahead.sentVersion = 3;
  ahead.sentAllowance = 5;
  const streams = [ahead];
  const r = reconcile(streams, n, entry({ generation: 9, admitted: 2, isNew: true }), 1, EPOCH);
  assert.equal(r?.stream, ahead);
  assert.equal(r?.admitted, 2);
  assert.deepEqual([ahead.generation, ahead.reported, ahead.sentVersion], [9, true, 3]);
});

test("node stream - committed: the unused grant, the default share, or what is in flight, whichever is larger", () => {
  const n = node();
  const s = new NodeStream(n, 1, 10, 0, 0);
  assert.equal(committedAllowance(s, 4), 4, "reported, holding no grant: its default share");
  s.holdsGrant = true;
  s.heldAllowance = 13;
  assert.equal(committedAllowance(s, 4), 3, "the unused part of the grant it holds");
  s.sentVersion = 2;
  s.maxUnconfirmed = 20;
  assert.equal(committedAllowance(s, 4), 10, "a larger grant sent and not confirmed yet");
  reconcile(
    [s],
    n,
    entry({ admitted: 10, grantEpoch: EPOCH, grantVersion: 2, allowance: 20 }),
    1,
    EPOCH,
  );
  assert.equal(committedAllowance(s, 4), 10, "confirmed: what it holds");
  assert.equal(s.maxUnconfirmed, 0);
  const ahead = NodeStream.placeholder(n, 0);
  assert.equal(committedAllowance(ahead, 4), 0, "a placeholder: what was sent to it only");
});
