/** When reports go out, on a manual clock: half an interval after each tick heard, else on time. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ReportPhasing } from "../../../src/agent/report-phasing.js";
import { ManualClock } from "../../../src/clock/clock.js";

const SYNC_MS = 40;

function setup(align = true) {
  const clock = new ManualClock(1000);
  const flushes: number[] = [];
  const phasing: ReportPhasing = new ReportPhasing({
    clock,
    syncIntervalMs: SYNC_MS,
    align,
    flush: () => {
      flushes.push(clock.nowMs());
      phasing.flushed(clock.nowMs());
    },
  });
  return { clock, phasing, flushes };
}

test("report phasing - a tick heard sets the report half an interval on, and the own timer stands back", () => {
  const { clock, phasing, flushes } = setup();
  phasing.tickHeard();
  clock.advance(SYNC_MS / 2);
  assert.deepEqual(flushes, [1020]);
  assert.equal(phasing.dueOnOwnTimer(clock.nowMs()), false, "a tick was heard, a report went");
  phasing.tickHeard(); // the next tick, 20 ms after our report: too close, follows the one after
  clock.advance(SYNC_MS);
  assert.deepEqual(flushes, [1020]);
  clock.advance(5);
  phasing.tickHeard(); // 45 ms after the report
  clock.advance(SYNC_MS / 2);
  assert.deepEqual(flushes, [1020, 1085]);
});

test("report phasing - the own timer reports when no tick came for two intervals, or no report for 1.5", () => {
  const { clock, phasing, flushes } = setup();
  phasing.tickHeard();
  clock.advance(SYNC_MS / 2); // phased report at 1020
  clock.advance(SYNC_MS); // 1060: 40 ms since the report, 60 since the tick
  assert.equal(phasing.dueOnOwnTimer(clock.nowMs()), false);
  clock.advance(SYNC_MS / 2); // 1080: 60 ms since the report: the backstop
  assert.equal(phasing.dueOnOwnTimer(clock.nowMs()), true);
  phasing.flushed(clock.nowMs());
  clock.advance(1); // 1081: 81 ms since the tick
  assert.equal(phasing.dueOnOwnTimer(clock.nowMs()), true, "ticks no longer heard");
  assert.deepEqual(flushes, [1020]);
});

test("report phasing - without alignment the own timer always reports and ticks set nothing", () => {
  const { clock, phasing, flushes } = setup(false);
  phasing.tickHeard();
  assert.equal(clock.pendingTimers, 0);
  assert.equal(phasing.dueOnOwnTimer(clock.nowMs()), true);
  clock.advance(SYNC_MS);
  assert.deepEqual(flushes, []);
});

test("report phasing - close cancels the report set and sets no more", () => {
  const { clock, phasing, flushes } = setup();
  phasing.tickHeard();
  assert.equal(clock.pendingTimers, 1);
  phasing.close();
  assert.equal(clock.pendingTimers, 0);
  clock.advance(SYNC_MS * 2);
  phasing.tickHeard();
  assert.equal(clock.pendingTimers, 0);
  assert.deepEqual(flushes, []);
});
