import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type GrantsByNode,
  rateUpdates,
  type ScheduleInput,
  scheduleGrants,
  usableNow,
} from "../../../src/aggregator/grant-schedule.js";
import { Membership } from "../../../src/aggregator/membership.js";
import { NodeStream } from "../../../src/aggregator/node-stream.js";

function streams(n: number, admitted = 0): NodeStream[] {
  const m = new Membership(3000);
  return Array.from(
    { length: n },
    (_, i) => new NodeStream(m.touch(`n${i}`, 1, 0)!.node, 1, admitted, 0, 0),
  );
}

function input(x: Partial<ScheduleInput> = {}): ScheduleInput {
  return {
    rule: "r",
    key: "k",
    limit: 1000,
    materialChange: 0.01,
    syncIntervalMs: 25,
    rampMs: 0,
    usableNow: undefined,
    nowMs: 1000,
    waitMs: () => 0,
    ...x,
  };
}

/** What each stream held before the allocation, as the allocator's inputs. */
function held(committed: number[]) {
  return committed.map((c) => ({ demand: 0, committed: c }));
}

function entries(out: GrantsByNode, s: NodeStream) {
  return out.get(s.node)?.get("r") ?? [];
}

test("grant schedule - every stream gets its first grant; one version counter per key", () => {
  const ss = streams(3, 10);
  const key = { version: 0 };
  const out: GrantsByNode = new Map();
  assert.equal(scheduleGrants(key, ss, [5, 6, 7], held([0, 0, 0]), input(), out), 3);
  assert.deepEqual(
    ss.map((s) => entries(out, s).map((e) => [e.version, e.allowance, e.generation])),
    [[[1, 15, 1]], [[2, 16, 1]], [[3, 17, 1]]],
  );
  assert.equal(key.version, 3);
  assert.deepEqual(
    ss.map((s) => [s.sentVersion, s.sentAllowance, s.maxUnconfirmed]),
    [
      [1, 15, 15],
      [2, 16, 16],
      [3, 17, 17],
    ],
  );
});

test("grant schedule - a change within the material fraction of the limit is not re-sent", () => {
  const [s] = streams(1);
  const key = { version: 0 };
  scheduleGrants(key, [s!], [100], held([0]), input(), new Map());
  const out: GrantsByNode = new Map();
  assert.equal(scheduleGrants(key, [s!], [109], held([100]), input(), out), 0, "9 < 1% of 1000");
  assert.equal(scheduleGrants(key, [s!], [111], held([100]), input(), out), 1, "11 > 10");
  assert.equal(entries(out, s!)[0]!.allowance, 111);
});

test("grant schedule - a node out of room gets even a small increase, and a moved wait", () => {
  const [s] = streams(1);
  const key = { version: 0 };
  scheduleGrants(key, [s!], [100], held([0]), input(), new Map());
  s!.admitted = 99.5; // less than a unit left
  const out: GrantsByNode = new Map();
  assert.equal(scheduleGrants(key, [s!], [1], held([0.5]), input(), out), 1, "1 more: sent");
  assert.equal(entries(out, s!)[0]!.allowance, 100.5);
  s!.admitted = 100.5;
  // Same allowance, but the window now frees capacity 300 ms from now instead of "next tick".
  const moved: GrantsByNode = new Map();
  assert.equal(
    scheduleGrants(key, [s!], [0], held([0]), input({ waitMs: () => 300 }), moved),
    1,
    "the wait moved",
  );
  assert.equal(entries(moved, s!)[0]!.retryAfterMs, 300);
  assert.equal(s!.sentFreeAtMs, 1300);
  // 10 ms later the same freeing time (wait 290) is within a sync interval: not re-sent.
  const same = input({ nowMs: 1010, waitMs: () => 290 });
  assert.equal(scheduleGrants(key, [s!], [0], held([0]), same, new Map()), 0);
  // And a freeing time that moved by more than a sync interval is.
  const later = input({ nowMs: 1010, waitMs: () => 400 });
  assert.equal(scheduleGrants(key, [s!], [0], held([0]), later, new Map()), 1);
});

test("grant schedule - the wait is computed once per key and only when a grant goes out", () => {
  const ss = streams(3);
  const key = { version: 0 };
  let calls = 0;
  const x = input({
    waitMs: () => {
      calls++;
      return 40;
    },
  });
  scheduleGrants(key, ss, [10, 10, 10], held([0, 0, 0]), x, new Map());
  assert.equal(calls, 1, "asked once for three grants");
  const out: GrantsByNode = new Map();
  calls = 0;
  // Nothing moved enough and every node has room: no grant, no wait computed.
  assert.equal(scheduleGrants(key, ss, [10, 10, 10], held([10, 10, 10]), x, out), 0);
  assert.equal(calls, 0);
});

test("grant schedule - a dead node's stream gets nothing", () => {
  const ss = streams(2);
  ss[0]!.node.alive = false;
  const out: GrantsByNode = new Map();
  assert.equal(scheduleGrants({ version: 0 }, ss, [5, 5], held([0, 0]), input(), out), 1);
  assert.equal(out.has(ss[0]!.node), false);
});

test("grant schedule - the version skips 0 when it wraps", () => {
  const [s] = streams(1);
  const key = { version: 0xffffffff };
  scheduleGrants(key, [s!], [5], held([0]), input(), new Map());
  assert.equal(key.version, 1);
  assert.equal(s!.sentVersion, 1);
});

test("grant schedule - a scheduled grant ramps from what it held plus its usable part", () => {
  const [s] = streams(1, 50);
  const out: GrantsByNode = new Map();
  scheduleGrants(
    { version: 0 },
    [s!],
    [30],
    held([10]),
    input({ rampMs: 100, usableNow: [5] }),
    out,
  );
  const e = entries(out, s!)[0]!;
  assert.deepEqual([e.allowance, e.rampFrom, e.rampMs], [80, 65, 100]);
  const whole: GrantsByNode = new Map();
  scheduleGrants({ version: 0 }, streams(1, 50), [30], held([10]), input({ rampMs: 100 }), whole);
  const w = [...whole.values()][0]!.get("r")![0]!;
  assert.deepEqual([w.rampFrom, w.rampMs], [80, 0], "all usable at once: no ramp");
});

test("usable now - all at once when what has freed covers every increase", () => {
  assert.equal(usableNow(held([10, 10]), [20, 15], 100, 100, 20), undefined);
  assert.equal(usableNow(held([10, 10]), [5, 10], 0, 100, 20), undefined, "nothing grows");
});

test("usable now - otherwise what has freed is split max-min fair over the increases", () => {
  // Increases 2 and 30, 10 free now: the light node's 2 comes whole, the other gets 8.
  assert.deepEqual(usableNow(held([10, 10]), [12, 40], 30, 100, 20), [2, 8]);
  // The usable part never exceeds what has freed, nor each increase.
  const parts = usableNow(held([0, 0, 0]), [10, 10, 10], 12, 100, 0)!;
  assert.deepEqual(parts, [4, 4, 4]);
  assert.deepEqual(
    usableNow(held([10]), [30], 5, 100, 20),
    [0],
    "nothing free beyond what is held",
  );
});

test("rate updates - one per node with grants, each rule a group, the shared header", () => {
  const ss = streams(2);
  const out: GrantsByNode = new Map();
  scheduleGrants({ version: 0 }, ss, [5, 5], held([0, 0]), input(), out);
  // Another key of another rule, on the first node (a stream per node and key).
  const other = new NodeStream(ss[0]!.node, 1, 0, 0, 0);
  scheduleGrants({ version: 0 }, [other], [7], held([0]), input({ rule: "q", key: "j" }), out);
  const owners = [{ partition: 2, epoch: 40 }];
  const header = { aggregatorId: "agg", aggregatorEpoch: 3, seq: 9, sentAtWallMs: 123, owners };
  const updates = rateUpdates(out, header);
  assert.equal(updates.length, 2);
  const first = updates.find((u) => u.targetNodeId === "n0")!;
  assert.equal(first.targetNodeEpoch, 1);
  assert.equal(first.seq, 9);
  assert.deepEqual(first.owners, owners);
  assert.deepEqual(
    first.groups.map((g) => [g.rule, g.entries.map((e) => e.key)]),
    [
      ["r", ["k"]],
      ["q", ["j"]],
    ],
  );
});
