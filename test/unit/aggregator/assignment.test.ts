import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { assignPartitions, movedFraction, score } from "../../../src/aggregator/assignment.js";

const ids = (n: number, prefix = "agg") => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

test("assignment - the same members in any order give the same owners", () => {
  const a = assignPartitions(64, ["a", "b", "c", "d"]);
  assert.deepEqual(assignPartitions(64, ["d", "b", "a", "c", "a"]), a);
  assert.ok(a.every((o) => o !== undefined));
  assert.deepEqual(assignPartitions(4, []), [undefined, undefined, undefined, undefined]);
  assert.deepEqual(assignPartitions(3, ["only"]), ["only", "only", "only"]);
});

test("assignment - a join moves partitions only to the newcomer; a leave only the leaver's", () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.stringMatching(/^[a-z0-9-]{1,12}$/), { minLength: 1, maxLength: 12 }),
      fc.stringMatching(/^[A-Z]{1,8}$/),
      fc.integer({ min: 1, max: 300 }),
      (members, newcomer, partitions) => {
        const before = assignPartitions(partitions, members);
        const joined = assignPartitions(partitions, [...members, newcomer]);
        for (let p = 0; p < partitions; p++) {
          if (joined[p] !== before[p]) assert.equal(joined[p], newcomer, `partition ${p}`);
        }
        const leaver = members[0]!;
        const left = assignPartitions(
          partitions,
          members.filter((m) => m !== leaver),
        );
        for (let p = 0; p < partitions; p++) {
          if (before[p] !== leaver) assert.equal(left[p], before[p], `partition ${p} moved`);
          else assert.notEqual(left[p], leaver);
        }
      },
    ),
  );
});

test("assignment - about 1/(n + 1) of the partitions move on a join, spread over the members", () => {
  const P = 4096;
  for (const n of [1, 3, 7, 15]) {
    const before = assignPartitions(P, ids(n));
    const after = assignPartitions(P, ids(n + 1));
    const moved = movedFraction(before, after);
    const ideal = 1 / (n + 1);
    assert.ok(Math.abs(moved - ideal) < 0.25 * ideal, `n=${n}: moved ${moved}, ideal ${ideal}`);
    const counts = new Map<string, number>();
    for (const o of after) counts.set(o!, (counts.get(o!) ?? 0) + 1);
    for (const [id, c] of counts) {
      assert.ok(Math.abs(c - P / (n + 1)) < 0.25 * (P / (n + 1)), `${id} holds ${c}`);
    }
  }
});

test("assignment - scores are spread: the top bit splits pairs about evenly", () => {
  let high = 0;
  const total = 20_000;
  for (let p = 0; p < total; p++) if (score(p, `m${p % 7}`) >= 2 ** 52) high++;
  assert.ok(Math.abs(high / total - 0.5) < 0.02, `${high} of ${total}`);
});
