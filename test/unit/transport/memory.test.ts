import assert from "node:assert/strict";
import { test } from "node:test";
import { ClosedError, InvalidArgumentError } from "../../../src/errors.js";
import { createMemoryBus } from "../../../src/transport/memory.js";
import type { TransportStatus } from "../../../src/transport/transport.js";

const bytes = (...b: number[]) => new Uint8Array(b);

test("memory transport - delivers later, never inside publish, in order, as copies", async () => {
  const bus = createMemoryBus();
  const a = bus.connect();
  const b = bus.connect();
  const got: [string, number[]][] = [];
  b.subscribe("t.x", (data, subject) => got.push([subject, [...data]]));
  const buf = bytes(1);
  a.publish("t.x", buf);
  buf[0] = 9; // the publisher may reuse its buffer
  a.publish("t.x", bytes(2));
  assert.deepEqual(got, [], "nothing is delivered synchronously");
  await a.flush();
  assert.deepEqual(got, [
    ["t.x", [1]],
    ["t.x", [2]],
  ]);
  await a.close();
  await b.close();
});

test("memory transport - NATS wildcard semantics", async () => {
  const bus = createMemoryBus();
  const t = bus.connect();
  const seen = new Map<string, string[]>();
  for (const pattern of ["a.*", "a.>", "a.*.c", ">", "a.b", "*.b.>"]) {
    seen.set(pattern, []);
    t.subscribe(pattern, (_d, subject) => seen.get(pattern)!.push(subject));
  }
  for (const subject of ["a", "a.b", "a.b.c", "a.x.c", "b.b", "x.b.y.z"])
    t.publish(subject, bytes());
  await t.flush();
  assert.deepEqual(Object.fromEntries(seen), {
    "a.*": ["a.b"],
    "a.>": ["a.b", "a.b.c", "a.x.c"],
    "a.*.c": ["a.b.c", "a.x.c"],
    ">": ["a", "a.b", "a.b.c", "a.x.c", "b.b", "x.b.y.z"],
    "a.b": ["a.b"],
    "*.b.>": ["a.b.c", "x.b.y.z"],
  });
  await t.close();
});

test("memory transport - rejects invalid subjects", () => {
  const t = createMemoryBus().connect();
  for (const s of ["", "a..b", "a.*", "a.>", "a b", ".a"]) {
    assert.throws(() => t.publish(s, bytes()), InvalidArgumentError, s);
  }
  for (const s of ["", "a..b", "a.>.b", "a b"]) {
    assert.throws(() => t.subscribe(s, () => {}), InvalidArgumentError, s);
  }
});

test("memory transport - unsubscribe stops delivery, even of messages already queued", async () => {
  const bus = createMemoryBus();
  const t = bus.connect();
  let n = 0;
  const sub = t.subscribe("s", () => n++);
  t.publish("s", bytes());
  sub.unsubscribe();
  sub.unsubscribe();
  t.publish("s", bytes());
  await t.flush();
  assert.equal(n, 0);
  await t.close();
});

test("memory transport - disconnect holds own publishes, loses others', reconnect resumes", async () => {
  const bus = createMemoryBus();
  const node = bus.connect();
  const agg = bus.connect();
  const statuses: TransportStatus["type"][] = [];
  node.onStatus((s) => statuses.push(s.type));
  const atAgg: number[] = [];
  const atNode: number[] = [];
  agg.subscribe("up", (d) => atAgg.push(d[0]!));
  node.subscribe("down", (d) => atNode.push(d[0]!));

  node.simulateDisconnect();
  assert.equal(node.isConnected, false);
  node.publish("up", bytes(1));
  agg.publish("down", bytes(2));
  let flushed = false;
  const flushing = node.flush().then(() => {
    flushed = true;
  });
  await bus.settle();
  assert.deepEqual([atAgg, atNode, flushed], [[], [], false]);

  node.simulateReconnect();
  await flushing;
  agg.publish("down", bytes(3));
  await bus.settle();
  assert.deepEqual(atAgg, [1], "held publish sent on reconnect");
  assert.deepEqual(atNode, [3], "what came while disconnected is lost");
  assert.deepEqual(statuses, ["disconnected", "reconnected"]);
  await node.close();
  await agg.close();
});

test("memory transport - a throwing handler becomes an error status; others still run", async () => {
  const bus = createMemoryBus();
  const t = bus.connect();
  const errors: string[] = [];
  t.onStatus((s) => {
    if (s.type === "error") errors.push(s.error.message);
  });
  let after = 0;
  t.subscribe("s", () => {
    throw new Error("boom");
  });
  t.subscribe("s", () => after++);
  t.publish("s", bytes());
  await t.flush();
  assert.deepEqual([errors, after], [["boom"], 1]);
  await t.close();
});

test("memory transport - close is idempotent, ends delivery and leaves no handle", async () => {
  const bus = createMemoryBus();
  const a = bus.connect();
  const b = bus.connect();
  let n = 0;
  b.subscribe("s", () => n++);
  a.publish("s", bytes());
  await b.close();
  await b.close();
  a.publish("s", bytes());
  await a.close();
  assert.equal(n, 1, "the message published before close() still arrives");
  assert.throws(() => a.publish("s", bytes()), ClosedError);
  assert.throws(() => a.subscribe("s", () => {}), ClosedError);
  await assert.rejects(a.flush(), ClosedError);
  const left = process.getActiveResourcesInfo().filter((r) => r === "Immediate" || r === "Timeout");
  assert.deepEqual(left, []);
});
