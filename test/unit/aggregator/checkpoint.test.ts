import assert from "node:assert/strict";
import { test } from "node:test";
import {
  encodeCheckpoint,
  type RestoreTarget,
  restoreCheckpoint,
} from "../../../src/aggregator/checkpoint.js";
import { addAdmitted, windowUsed } from "../../../src/aggregator/global-window.js";
import { KeyState, RuleState } from "../../../src/aggregator/key-state.js";
import { Membership } from "../../../src/aggregator/membership.js";
import { NodeStream } from "../../../src/aggregator/node-stream.js";
import { resolveTuning } from "../../../src/aggregator/tuning.js";
import { compileRule } from "../../../src/limiter/rule.js";

const tuning = resolveTuning();

function ruleState(name = "api", windowMs = 1000): RuleState {
  const rule = compileRule(
    { name, algorithm: "sliding-window", limit: 100, windowMs, segments: 10, mode: "global" },
    "rule",
    1000,
  );
  return new RuleState(rule, tuning);
}

/** One aggregator run's state: its rules, membership and clock origin. */
function run(rules: RuleState[]) {
  const membership = new Membership(3000);
  const byName = new Map(rules.map((rs) => [rs.rule.name, rs]));
  const target: RestoreTarget = {
    rule: (name) => byName.get(name),
    key: (rs, key) => {
      let ks = rs.keys.get(key);
      if (ks === undefined) {
        ks = new KeyState(key, rs.shape, 0);
        rs.keys.set(key, ks);
      }
      return ks;
    },
    node: (id, epoch) => membership.touch(id, epoch, 0)?.node,
  };
  return { membership, target };
}

function keyWith(rs: RuleState, key: string, hits: [atMs: number, cost: number][], nowMs: number) {
  const ks = new KeyState(key, rs.shape, 0);
  for (const [at, cost] of hits) addAdmitted(ks.window, rs.shape, at, at, cost);
  rs.keys.set(key, ks);
  assert.ok(windowUsed(ks.window, rs.shape, nowMs) > 0);
  return ks;
}

const close = (a: number, b: number, what: string, eps = 1e-6) =>
  assert.ok(Math.abs(a - b) <= eps, `${what}: ${a} vs ${b}`);

test("checkpoint - windows come back aged by the wall time between save and restore", () => {
  const saving = ruleState();
  const ks = keyWith(
    saving,
    "u1",
    [
      [4100, 30],
      [4400, 20],
      [4800, 10],
    ],
    5000,
  );
  const bytes = encodeCheckpoint([saving], 5000, 1_700_000_000_000);
  for (const elapsed of [0, 250, 650, 1200]) {
    const restoring = ruleState();
    const { target } = run([restoring]);
    // Another run: its monotonic clock has another origin; only the wall clock relates them.
    const restoredAt = 123;
    assert.equal(restoreCheckpoint(bytes, target, restoredAt, 1_700_000_000_000 + elapsed), 1);
    const r = restoring.keys.get("u1")!;
    const expected = windowUsed(ks.window, saving.shape, 5000 + elapsed);
    close(windowUsed(r.window, restoring.shape, restoredAt), expected, `${elapsed} ms later`);
  }
});

test("checkpoint - a wall clock that went back restores as if no time had passed", () => {
  const saving = ruleState();
  const ks = keyWith(saving, "u1", [[4500, 40]], 5000);
  const bytes = encodeCheckpoint([saving], 5000, 1_000_000);
  const restoring = ruleState();
  restoreCheckpoint(bytes, run([restoring]).target, 0, 900_000);
  close(
    windowUsed(restoring.keys.get("u1")!.window, restoring.shape, 0),
    windowUsed(ks.window, saving.shape, 5000),
    "not aged",
  );
});

test("checkpoint - node streams resume from their counts; dead and placeholder ones are not saved", () => {
  const saving = ruleState();
  const m = new Membership(3000);
  const a = m.touch("a", 4, 0)!.node;
  const b = m.touch("b", 1, 0)!.node;
  const c = m.touch("c", 1, 0)!.node;
  const ks = keyWith(saving, "u1", [[4900, 5]], 5000);
  ks.streams.push(new NodeStream(a, 2, 40, 3, 0), new NodeStream(b, 1, 9, 0, 0));
  ks.streams.push(NodeStream.placeholder(c, 0));
  b.alive = false;
  const bytes = encodeCheckpoint([saving], 5000, 10_000);

  const restoring = ruleState();
  const { membership, target } = run([restoring]);
  restoreCheckpoint(bytes, target, 0, 10_010);
  const streams = restoring.keys.get("u1")!.streams;
  assert.deepEqual(
    streams.map((s) => [s.node.id, s.node.epoch, s.generation, s.admitted, s.rejected]),
    [["a", 4, 2, 40, 3]],
  );
  assert.equal(membership.get("a")?.alive, true, "the node is known to membership");
  assert.equal(membership.get("b"), undefined);
});

test("checkpoint - a node run older than the one known is not restored", () => {
  const saving = ruleState();
  const old = new Membership(3000).touch("a", 1, 0)!.node;
  keyWith(saving, "u1", [[4900, 5]], 5000).streams.push(new NodeStream(old, 1, 5, 0, 0));
  const bytes = encodeCheckpoint([saving], 5000, 10_000);
  const restoring = ruleState();
  const { membership, target } = run([restoring]);
  membership.touch("a", 2, 0); // the node restarted while no aggregator ran
  restoreCheckpoint(bytes, target, 0, 10_000);
  assert.deepEqual(restoring.keys.get("u1")!.streams, []);
  assert.equal(membership.get("a")?.epoch, 2);
});

test("checkpoint - rules this run does not have are skipped, the others restored", () => {
  const api = ruleState("api");
  const gone = ruleState("gone");
  keyWith(api, "u1", [[4900, 5]], 5000);
  keyWith(gone, "u2", [[4900, 5]], 5000);
  const bytes = encodeCheckpoint([api, gone], 5000, 0);
  const restoring = ruleState("api");
  assert.equal(restoreCheckpoint(bytes, run([restoring]).target, 0, 0), 1);
  assert.deepEqual([...restoring.keys.keys()], ["u1"]);
});

test("checkpoint - bytes of another format or garbage restore nothing", () => {
  const format1 = JSON.stringify({ v: 1, wallMs: 0, rules: { api: { segmentMs: 100, keys: [] } } });
  const cases: [string, string][] = [
    ["format 1", format1],
    ["not JSON", "\u0000\u0001garbage"],
    ["no wall time", JSON.stringify({ v: 2, rules: {} })],
    ["rules not an object", JSON.stringify({ v: 2, wallMs: 0, rules: 5 })],
    ["null", "null"],
    ["a number", "5"],
    ["an array", "[2, 0]"],
  ];
  for (const [what, text] of cases) {
    const restoring = ruleState();
    const bytes = new TextEncoder().encode(text);
    assert.equal(restoreCheckpoint(bytes, run([restoring]).target, 0, 0), undefined, what);
    assert.equal(restoring.keys.size, 0, what);
  }
});

test("checkpoint - malformed bins and streams inside a valid checkpoint are skipped one by one", () => {
  const doc = {
    v: 2,
    wallMs: 0,
    rules: {
      api: {
        binMs: 100,
        nowOffsetMs: 0,
        keys: [
          [
            "u1",
            [[0, 7, 50, 0], [-1, 5, 0, 0], [1.5, 5, 0, 0], [2, "x", 0, 0], [3, 4, 0, 0], "bin"],
            [
              ["a", 1, 1, 7, 0],
              ["bad id with spaces", 1, 1, 7, 0],
              ["b", 1, 0, 7, 0],
              ["c", -1, 1, 7, 0],
            ],
          ],
          [42, []],
        ],
      },
    },
  };
  const restoring = ruleState();
  const bytes = new TextEncoder().encode(JSON.stringify(doc));
  assert.equal(
    restoreCheckpoint(bytes, run([restoring]).target, 0, 0),
    1,
    "the key named by a number is not",
  );
  const ks = restoring.keys.get("u1")!;
  close(windowUsed(ks.window, restoring.shape, 0), 7 + 4, "the valid bins: ages 0 and 3");
  assert.deepEqual(
    ks.streams.map((s) => s.node.id),
    ["a"],
    "an invalid node id, generation 0 and a negative epoch are skipped",
  );
});
