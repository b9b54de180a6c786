/**
 * The Redis checkpoint store on the real Redis: bytes round-trip exactly, a save replaces the
 * previous checkpoint and its expiry in one SET, missing or expired checkpoints load as
 * undefined, and bad arguments are refused with the field named.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, test } from "node:test";
import { createRedisCheckpointStore, InvalidArgumentError } from "../../src/index.js";
import {
  adminClient,
  deleteUnder,
  SHARED_REDIS_URL,
  sleep,
  uniquePrefix,
} from "./helpers/redis-fixtures.js";

const prefix = uniquePrefix("checkpoint");
const admin = adminClient();
after(async () => {
  await deleteUnder(admin, prefix);
  await admin.quit();
});

test("redis checkpoint - save then load returns the same bytes, with the expiry set", async () => {
  const store = createRedisCheckpointStore({ url: SHARED_REDIS_URL, keyPrefix: prefix });
  try {
    const bytes = new Uint8Array(randomBytes(70_000));
    bytes[0] = 0;
    bytes[1] = 13; // NUL and CR survive
    await store.save("agg-1", bytes, 60_000);
    const loaded = await store.load("agg-1");
    assert.ok(loaded instanceof Uint8Array);
    assert.deepEqual(Buffer.from(loaded), Buffer.from(bytes));
    const pttl = await admin.pttl(`${prefix}checkpoint:{agg-1}`);
    assert.ok(pttl > 59_000 && pttl <= 60_000, String(pttl));
    // A view into a larger buffer saves only its own bytes.
    const view = bytes.subarray(10, 20);
    await store.save("agg-view", view, 60_000);
    assert.deepEqual(Buffer.from((await store.load("agg-view"))!), Buffer.from(view));
  } finally {
    await store.close();
  }
});

test("redis checkpoint - a save replaces the previous checkpoint and its expiry", async () => {
  const store = createRedisCheckpointStore({ url: SHARED_REDIS_URL, keyPrefix: prefix });
  try {
    await store.save("agg-2", new Uint8Array([1, 2, 3]), 60_000);
    await store.save("agg-2", new Uint8Array([9]), 5_000);
    assert.deepEqual([...(await store.load("agg-2"))!], [9]);
    const pttl = await admin.pttl(`${prefix}checkpoint:{agg-2}`);
    assert.ok(pttl > 0 && pttl <= 5_000, String(pttl));
  } finally {
    await store.close();
  }
});

test("redis checkpoint - missing and expired checkpoints load as undefined", async () => {
  const store = createRedisCheckpointStore({ url: SHARED_REDIS_URL, keyPrefix: prefix });
  try {
    assert.equal(await store.load("never-saved"), undefined);
    await store.save("short", new Uint8Array([1]), 30);
    await sleep(80);
    assert.equal(await store.load("short"), undefined);
  } finally {
    await store.close();
  }
});

test("redis checkpoint - bad names, bytes and ttl are refused with the field named", async () => {
  const store = createRedisCheckpointStore({ url: SHARED_REDIS_URL, keyPrefix: prefix });
  try {
    const field = (name: string) => (err: unknown) =>
      err instanceof InvalidArgumentError && err.field === name;
    await assert.rejects(store.save("a b", new Uint8Array(1), 1000), field("name"));
    await assert.rejects(store.save("ok", [1, 2] as never, 1000), field("bytes"));
    await assert.rejects(store.save("ok", new Uint8Array(1), 0), field("ttlMs"));
    await assert.rejects(store.save("ok", new Uint8Array(1), 1.5), field("ttlMs"));
    await assert.rejects(store.load(""), field("name"));
  } finally {
    await store.close();
  }
});
