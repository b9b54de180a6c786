/**
 * The aggregator's windows checkpointed to the real Redis on 127.0.0.1:6379 and restored by a
 * new aggregator run: the restored run knows what was admitted before it started.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createAggregatorService } from "../../src/aggregator/aggregator-service.js";
import { compileRules } from "../../src/config/rules-file.js";
import { createRedisCheckpointStore } from "../../src/store/redis/checkpoint-store.js";
import { createMemoryBus } from "../../src/transport/memory.js";
import { sleep, uniquePrefix } from "./helpers/redis-fixtures.js";

const rules = compileRules([
  { name: "api", mode: "global", algorithm: "sliding-window", limit: 1000, windowMs: 60_000 },
]);

test("aggregator checkpoint - windows saved to Redis come back in a new run, without warm-up", async () => {
  const store = createRedisCheckpointStore({
    url: "redis://127.0.0.1:6379",
    keyPrefix: uniquePrefix("agg-checkpoint"),
  });
  const bus = createMemoryBus();
  const first = createAggregatorService({
    rules,
    transport: bus.connect(),
    aggregatorId: "agg-1",
    checkpoint: { store, name: "test", intervalMs: 50 },
  });
  let second: ReturnType<typeof createAggregatorService> | undefined;
  try {
    first.core.ingestBatch(
      {
        nodeId: "node-1",
        nodeEpoch: 1,
        seq: 1,
        sentAtWallMs: 0,
        groups: [
          {
            rule: "api",
            entries: [
              {
                key: "tenant-7",
                generation: 3,
                admitted: 640,
                rejected: 12,
                isNew: true,
                grantEpoch: 0,
                grantVersion: 0,
                allowance: 0,
                admittedSinceLast: 640,
                ageMs: 0,
              },
            ],
          },
        ],
      },
      performance.now(),
    );
    await sleep(200);
    assert.ok(first.stats().checkpointsSaved > 0, "saved periodically");
    await first.close();

    second = createAggregatorService({
      rules,
      transport: bus.connect(),
      aggregatorId: "agg-2",
      checkpoint: { store, name: "test", intervalMs: 50 },
    });
    assert.equal(await second.restoreCheckpoint(), 1);
    assert.equal(second.windowAdmitted("api", "tenant-7"), 640);
    assert.equal(second.stats().keysRestored, 1);
    // The node stream's counts came back too: its next report adds only what is new.
    second.core.ingestBatch(
      {
        nodeId: "node-1",
        nodeEpoch: 1,
        seq: 2,
        sentAtWallMs: 0,
        groups: [
          {
            rule: "api",
            entries: [
              {
                key: "tenant-7",
                generation: 3,
                admitted: 650,
                rejected: 12,
                isNew: false,
                grantEpoch: 0,
                grantVersion: 0,
                allowance: 0,
                admittedSinceLast: 10,
                ageMs: 0,
              },
            ],
          },
        ],
      },
      performance.now(),
    );
    assert.equal(second.windowAdmitted("api", "tenant-7"), 650);
  } finally {
    await first.close();
    await second?.close();
    await store.close();
  }
});
