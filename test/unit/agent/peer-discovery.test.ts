/**
 * Peer counting on its own, on the in-memory bus and a manual clock: which heartbeats count a
 * node run, when this node answers, and what is forgotten.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { PeerDiscovery } from "../../../src/agent/peer-discovery.js";
import { ManualClock } from "../../../src/clock/clock.js";
import { encodeHeartbeat } from "../../../src/protocol/heartbeat.js";
import { Role } from "../../../src/protocol/messages.js";
import { createSubjects } from "../../../src/protocol/subjects.js";
import { createMemoryBus } from "../../../src/transport/memory.js";

const HEARTBEAT_MS = 500;

function setup() {
  const clock = new ManualClock(10_000);
  const bus = createMemoryBus();
  const subjects = createSubjects({});
  const others = bus.connect();
  const counts: number[] = [];
  let answers = 0;
  const discovery: PeerDiscovery = new PeerDiscovery({
    transport: bus.connect(),
    subjects,
    clock,
    nodeId: "me",
    heartbeatIntervalMs: HEARTBEAT_MS,
    answer: () => {
      answers++;
      discovery.heartbeatSent(clock.nowMs());
    },
    onChange: (known) => counts.push(known),
  });
  let seq = 0;
  const hear = async (
    nodeId: string,
    nodeEpoch: number,
    role: typeof Role.node | typeof Role.nodeLeaving | typeof Role.aggregator = Role.node,
  ) => {
    others.publish(
      subjects.heartbeat(nodeId),
      encodeHeartbeat({ nodeId, nodeEpoch, seq: ++seq, sentAtWallMs: 1, role }),
    );
    await bus.settle();
  };
  return { clock, bus, discovery, counts, hear, answers: () => answers };
}

test("peer discovery - a node run not heard of before is counted and answered at once", async () => {
  const s = setup();
  s.discovery.listen();
  await s.hear("n1", 1);
  assert.deepEqual(s.counts, [2], "n1 and this node");
  assert.equal(s.answers(), 1);
  await s.hear("n1", 1);
  assert.deepEqual(s.counts, [2], "the same run again changes nothing");
  assert.equal(s.answers(), 1, "and is not answered");
  await s.hear("me", 1);
  await s.hear("agg", 1, Role.aggregator);
  assert.deepEqual(s.counts, [2], "this node's own heartbeats and an aggregator's are not peers");
  s.discovery.close();
});

test("peer discovery - newcomers close together share one answer, ANSWER_GAP_MS after the last heartbeat", async () => {
  const s = setup();
  s.discovery.listen();
  await s.hear("n1", 1);
  assert.equal(s.answers(), 1);
  s.clock.advance(5);
  await s.hear("n2", 1);
  await s.hear("n3", 1);
  assert.deepEqual(s.counts, [2, 3, 4]);
  assert.equal(s.answers(), 1, "within 20 ms of our last heartbeat: the answer waits");
  s.clock.advance(14);
  assert.equal(s.answers(), 1);
  s.clock.advance(1);
  assert.equal(s.answers(), 2, "one answer for both");
  s.discovery.close();
});

test("peer discovery - a restart is a new run; an older run's late word and a leaving notice of another run change nothing", async () => {
  const s = setup();
  s.discovery.listen();
  await s.hear("n1", 5);
  s.clock.advance(100);
  await s.hear("n1", 4);
  assert.deepEqual(s.counts, [2], "a late heartbeat of an older run");
  await s.hear("n1", 6);
  assert.deepEqual(s.counts, [2, 2], "a restart: still one peer, counted anew");
  assert.equal(s.answers(), 2, "and answered");
  await s.hear("n1", 5, Role.nodeLeaving);
  assert.deepEqual(s.counts, [2, 2, 2], "the old run's leaving notice keeps the new run");
  await s.hear("n1", 6, Role.nodeLeaving);
  assert.deepEqual(s.counts, [2, 2, 2, 1], "its own leaving notice uncounts it");
  s.discovery.close();
});

test("peer discovery - a peer not heard for six heartbeat intervals is forgotten", async () => {
  const s = setup();
  s.discovery.listen();
  await s.hear("n1", 1);
  s.clock.advance(1000);
  await s.hear("n2", 1);
  s.clock.advance(6 * HEARTBEAT_MS - 1000);
  s.discovery.expire(s.clock.nowMs());
  assert.deepEqual(s.counts, [2, 3], "n1 heard exactly 3000 ms ago: still counted");
  s.clock.advance(1);
  s.discovery.expire(s.clock.nowMs());
  assert.deepEqual(s.counts, [2, 3, 2]);
  s.discovery.expire(s.clock.nowMs());
  assert.deepEqual(s.counts, [2, 3, 2], "nothing expired: no change reported");
  s.discovery.close();
});

test("peer discovery - stop forgets the peers and the pending answer; close ends listening for good", async () => {
  const s = setup();
  s.discovery.listen();
  await s.hear("n1", 1);
  await s.hear("n2", 1); // its answer waits for the gap
  assert.equal(s.clock.pendingTimers, 1);
  s.discovery.stop();
  assert.equal(s.clock.pendingTimers, 0, "the answer is dropped");
  await s.hear("n3", 1);
  assert.deepEqual(s.counts, [2, 3], "not listening");
  s.discovery.listen();
  await s.hear("n1", 1);
  assert.deepEqual(s.counts, [2, 3, 2], "peers were forgotten: n1 counts anew");
  s.discovery.close();
  s.discovery.listen();
  await s.hear("n4", 1);
  assert.deepEqual(s.counts, [2, 3, 2], "closed: listen() does nothing");
  assert.equal(s.clock.pendingTimers, 0);
});
