import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../../../src/clock/clock.js";
import { DeadlineExceededError } from "../../../src/errors.js";
import {
  forwardBudgetMs,
  localDeadline,
  MAX_DEADLINE_MS,
  parseDeadlineHeader,
  remainingMs,
} from "../../../src/nats-service/index.js";

describe("deadline header", () => {
  it("deadline header - no header means no deadline", () => {
    assert.deepEqual(parseDeadlineHeader(undefined), { kind: "none" });
  });
  it("deadline header - reads decimal ms, fractions included", () => {
    assert.deepEqual(parseDeadlineHeader("250"), { kind: "budget", budgetMs: 250 });
    assert.deepEqual(parseDeadlineHeader("12.5"), { kind: "budget", budgetMs: 12.5 });
    assert.deepEqual(parseDeadlineHeader("0"), { kind: "budget", budgetMs: 0 });
  });
  it("deadline header - rejects negative, non-numeric and empty values, naming the header", () => {
    for (const bad of ["-5", "abc", "", "1e3", "12ms", "NaN", "Infinity"]) {
      const parsed = parseDeadlineHeader(bad);
      assert.equal(parsed.kind, "invalid", bad);
      if (parsed.kind === "invalid") assert.match(parsed.reason, /Sluice-Deadline-Ms/);
    }
  });
  it("deadline header - clamps a huge budget to MAX_DEADLINE_MS", () => {
    assert.deepEqual(parseDeadlineHeader("9".repeat(400)), {
      kind: "budget",
      budgetMs: MAX_DEADLINE_MS,
    });
  });
});

describe("deadline reserve", () => {
  it("deadline reserve - forwards what is left less the reserve, on the receiver's clock", () => {
    const clock = new ManualClock(1000);
    const d = localDeadline(250, clock);
    assert.equal(d.deadlineMs, 1250);
    clock.advance(40);
    assert.equal(remainingMs(d), 210);
    assert.equal(forwardBudgetMs(d, 20), 190);
    assert.equal(forwardBudgetMs(d, 0), 210);
  });
  it("deadline reserve - never forwards more than is left, however often forwarded", () => {
    const clock = new ManualClock(0);
    let budget = 300;
    for (let hop = 0; hop < 5; hop++) {
      const d = localDeadline(budget, clock);
      clock.advance(7);
      const next = forwardBudgetMs(d, 10);
      assert.ok(next <= budget - 17, `hop ${hop}: ${next}`);
      budget = next;
    }
  });
  it("deadline reserve - too short or expired throws DeadlineExceededError", () => {
    const clock = new ManualClock(0);
    const d = localDeadline(30, clock);
    assert.throws(() => forwardBudgetMs(d, 30), DeadlineExceededError);
    clock.advance(31);
    assert.throws(
      () => forwardBudgetMs(d, 0),
      (e: unknown) => e instanceof DeadlineExceededError && e.remainingMs === 0,
    );
  });
  it("deadline reserve - rejects a negative or non-finite reserve", () => {
    const d = localDeadline(30, new ManualClock(0));
    assert.throws(() => forwardBudgetMs(d, -1), RangeError);
    assert.throws(() => forwardBudgetMs(d, Number.NaN), RangeError);
  });
});
