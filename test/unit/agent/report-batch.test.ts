import assert from "node:assert/strict";
import { test } from "node:test";
import { ReportBatch } from "../../../src/agent/report-batch.js";
import type { DecisionEntry } from "../../../src/protocol/messages.js";
import { decisionPartition } from "../../../src/protocol/partition.js";
import { decisionEntry } from "../../support/decision-entry.js";

function entry(key: string): DecisionEntry {
  return decisionEntry({ key, admitted: 1, isNew: true, admittedSinceLast: 1 });
}

test("report batch - one partition: every entry in partition 0, grouped by rule in order", () => {
  const batch = new ReportBatch(1);
  assert.equal(batch.size, 0);
  batch.add("a", entry("k1"));
  batch.add("b", entry("k2"));
  batch.add("a", entry("k3"));
  assert.equal(batch.size, 1);
  const [only, ...rest] = [...batch.partitions()];
  assert.equal(rest.length, 0);
  assert.equal(only!.partition, 0);
  assert.equal(only!.entries, 3);
  assert.deepEqual(
    only!.groups.map((g) => [g.rule, g.entries.map((e) => e.key)]),
    [
      ["a", ["k1", "k3"]],
      ["b", ["k2"]],
    ],
  );
});

test("report batch - many partitions: each entry goes to its key's decision partition", () => {
  const batch = new ReportBatch(8);
  const keys = Array.from({ length: 50 }, (_, i) => `user:${i}`);
  for (const key of keys) batch.add("api", entry(key));
  let total = 0;
  for (const { partition, groups, entries } of batch.partitions()) {
    total += entries;
    for (const g of groups) {
      for (const e of g.entries) assert.equal(decisionPartition("api", e.key, 8), partition);
    }
  }
  assert.equal(total, keys.length);
  assert.ok(batch.size > 1 && batch.size <= 8);
});
