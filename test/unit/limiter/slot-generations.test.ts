import assert from "node:assert/strict";
import { test } from "node:test";
import { SlotGenerations } from "../../../src/limiter/slot-generations.js";

test("slot generations - holds every pair added, in order, growing past its first array", () => {
  const list = new SlotGenerations();
  for (let i = 0; i < 1000; i++) list.add(i, 2 ** 33 + i);
  assert.equal(list.length, 1000);
  for (let i = 0; i < 1000; i++) {
    assert.equal(list.slot(i), i);
    assert.equal(list.generation(i), 2 ** 33 + i);
  }
  list.clear();
  assert.equal(list.length, 0);
  list.add(5, 6);
  assert.deepEqual([list.length, list.slot(0), list.generation(0)], [1, 5, 6]);
});
