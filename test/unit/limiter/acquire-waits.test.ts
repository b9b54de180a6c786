/**
 * The waits of `acquire()` on their own, on a manual clock: each ends by its time, its signal,
 * `cancelAll()` or a grant for its key, and leaves no timer behind.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ManualClock } from "../../../src/clock/clock.js";
import { AcquireWaits } from "../../../src/limiter/acquire-waits.js";

/** Whether `p` has settled, and how, after the microtasks queued so far. */
async function state(p: Promise<void>): Promise<"pending" | "resolved" | "rejected"> {
  let s: "pending" | "resolved" | "rejected" = "pending";
  p.then(
    () => {
      s = "resolved";
    },
    () => {
      s = "rejected";
    },
  );
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return s;
}

test("acquire waits - a wait ends when its time has passed, not before", async () => {
  const clock = new ManualClock(0);
  const waits = new AcquireWaits(clock);
  const p = waits.sleep(100, undefined);
  clock.advance(99);
  assert.equal(await state(p), "pending");
  clock.advance(1);
  assert.equal(await state(p), "resolved");
  assert.equal(clock.pendingTimers, 0);
});

test("acquire waits - an abort ends the wait at once, resolving, and removes its listener and timer", async () => {
  const clock = new ManualClock(0);
  const waits = new AcquireWaits(clock);
  const ac = new AbortController();
  const p = waits.sleep(1000, ac.signal);
  ac.abort();
  assert.equal(await state(p), "resolved");
  assert.equal(clock.pendingTimers, 0);
  const err = new Error("closed");
  waits.cancelAll(err); // the ended wait is no longer registered: nothing to reject
});

test("acquire waits - cancelAll rejects every wait in progress with its error", async () => {
  const clock = new ManualClock(0);
  const waits = new AcquireWaits(clock);
  const a = waits.sleep(1000, undefined);
  const b = waits.sleepOrGrant(1000, undefined, "g", "k");
  const err = new Error("closed");
  waits.cancelAll(err);
  await assert.rejects(a, (e) => e === err);
  await assert.rejects(b, (e) => e === err);
  assert.equal(clock.pendingTimers, 0);
});

test("acquire waits - a grant for the key ends the waits on it, and only those", async () => {
  const clock = new ManualClock(0);
  const waits = new AcquireWaits(clock);
  const k1 = waits.sleepOrGrant(1000, undefined, "g", "k");
  const k2 = waits.sleepOrGrant(1000, undefined, "g", "k");
  const other = waits.sleepOrGrant(1000, undefined, "g", "other");
  const plain = waits.sleep(1000, undefined);
  waits.wakeGrantWaits("g", "k");
  assert.equal(await state(k1), "resolved");
  assert.equal(await state(k2), "resolved");
  assert.equal(await state(other), "pending");
  assert.equal(await state(plain), "pending");
  assert.equal(clock.pendingTimers, 2);
  clock.advance(1000);
  assert.equal(await state(other), "resolved");
  assert.equal(await state(plain), "resolved");
  waits.wakeGrantWaits("g", "k"); // no wait left on it: nothing happens
});
