/**
 * The core fed by a DecisionBatchReader (keys looked up by their bytes) grants exactly what it
 * grants fed by `decode` (keys as strings), through new keys, keys not ASCII, reclaimed keys
 * that come back, a checkpoint restore, and partitions acquired and released.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { AggregatorCore } from "../../../src/aggregator/aggregator-core.js";
import { resolveTuning } from "../../../src/aggregator/tuning.js";
import { ManualClock } from "../../../src/clock/clock.js";
import { createLimiter } from "../../../src/limiter/limiter.js";
import { DecisionBatchReader, decode } from "../../../src/protocol/decode.js";
import { encode } from "../../../src/protocol/encode.js";
import type { DecisionBatch, DecisionEntry } from "../../../src/protocol/messages.js";

const rules = createLimiter({
  rules: [{ name: "g", mode: "global", algorithm: "sliding-window", limit: 50, windowMs: 1000 }],
  sweepIntervalMs: 0,
}).rules;
const KEYS = [
  "a",
  "user:1",
  "é",
  "ключ",
  "😀",
  "Ã©",
  ...Array.from({ length: 40 }, (_, i) => `k${i}`),
];

function makeCore(clock: ManualClock, partitions?: number): AggregatorCore {
  return new AggregatorCore({
    rules,
    aggregatorId: "agg",
    epoch: 3,
    tuning: resolveTuning({ warmupMs: 0, keyIdleMs: 2000 }),
    startMs: clock.nowMs(),
    ...(partitions === undefined ? {} : { partitions }),
  });
}

/** Node `j`'s frame at round `r`: a rotating subset of the keys, cumulative counts. */
function frame(j: number, r: number): Uint8Array {
  const entries: DecisionEntry[] = [];
  for (let i = 0; i < KEYS.length; i++) {
    if ((i + r + j) % 3 !== 0 || (r > 20 && r < 85 && i > 3)) continue;
    entries.push({
      key: KEYS[i]!,
      generation: 1,
      admitted: r * 2 + i,
      rejected: r % 4 === 0 ? r : 0,
      isNew: false,
      grantEpoch: 0,
      grantVersion: 0,
      allowance: 0,
      admittedSinceLast: 2,
      ageMs: 5,
    });
  }
  const f = encode({
    type: "decision-batch",
    nodeId: `n${j}`,
    nodeEpoch: 1,
    seq: r + 1,
    sentAtWallMs: 0,
    groups: [{ rule: "g", entries }],
  });
  return f[0]!;
}

function run(partitions?: number): void {
  const clock = new ManualClock(1000);
  const byString = makeCore(clock, partitions);
  const byBytes = makeCore(clock, partitions);
  const reader = new DecisionBatchReader();
  if (partitions !== undefined) {
    for (const c of [byString, byBytes]) {
      for (let p = 0; p < partitions - 1; p++)
        c.acquirePartition(p, 1, undefined, clock.nowMs(), 0);
    }
  }
  for (let r = 0; r < 130; r++) {
    clock.advance(50);
    for (let j = 0; j < 3; j++) {
      const f = frame(j, r);
      const a = decode(f);
      const b = reader.read(f);
      assert.ok(a.ok && b.ok);
      byString.ingestBatch(a.message as DecisionBatch, clock.nowMs(), 0);
      byBytes.ingestBatch(b.message as DecisionBatch, clock.nowMs(), 0);
    }
    assert.deepEqual(byBytes.tick(clock.nowMs(), 0), byString.tick(clock.nowMs(), 0), `round ${r}`);
    assert.deepEqual(byBytes.stats, byString.stats, `round ${r}`);
    if (r === 30 && partitions !== undefined) {
      for (const c of [byString, byBytes]) c.releasePartition(1);
    }
    if (r === 50 && partitions !== undefined) {
      for (const c of [byString, byBytes]) c.acquirePartition(1, 2, undefined, clock.nowMs(), 0);
    }
  }
  assert.ok(byBytes.stats.keysReclaimed > 0);
}

test("core frame keys - fed by a reader, the core grants what it grants fed by decode", () => {
  run();
});

test("core frame keys - the same with partitions acquired and released", () => {
  run(4);
});

test("core frame keys - keys restored from a checkpoint are found by their bytes", () => {
  const clock = new ManualClock(1000);
  const first = makeCore(clock);
  const reader = new DecisionBatchReader();
  for (let r = 0; r < 5; r++) {
    clock.advance(50);
    const b = reader.read(frame(0, r));
    assert.ok(b.ok);
    first.ingestBatch(b.message as DecisionBatch, clock.nowMs());
    first.tick(clock.nowMs(), 0);
  }
  const restored = makeCore(clock);
  const n = restored.restoreWindows(first.exportWindows(clock.nowMs(), 0), clock.nowMs(), 0);
  assert.equal(n, first.stats.keys);
  const keysBefore = restored.stats.keys;
  clock.advance(50);
  const b = reader.read(frame(0, 5));
  assert.ok(b.ok);
  restored.ingestBatch(b.message as DecisionBatch, clock.nowMs());
  // Every key of this frame was reported before, so none is made anew.
  assert.equal(restored.stats.keys, keysBefore);
});
