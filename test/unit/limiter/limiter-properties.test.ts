import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { ManualClock } from "../../../src/clock/clock.js";
import { createLimiter } from "../../../src/limiter/limiter.js";

const RUNS = 300;

test("limiter - drained deltas add up to the hits decided one by one", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          key: fc.constantFrom("a", "b", "c", "d", "e"),
          cost: fc.integer({ min: 1, max: 3 }),
          dtMs: fc.integer({ min: 0, max: 40 }),
          drain: fc.boolean(),
        }),
        { maxLength: 300 },
      ),
      fc.integer({ min: 1, max: 5 }),
      (steps, maxKeys) => {
        const clock = new ManualClock(0);
        const limiter = createLimiter({
          rules: [{ name: "r", limit: 5, windowMs: 100 }],
          clock,
          maxKeys,
          sweepIntervalMs: 30,
        });
        const expected = new Map<string, { admitted: number; rejected: number }>();
        const seen = new Map<string, { admitted: number; rejected: number }>();
        const take = () => {
          for (const e of limiter.snapshot().entries) {
            const s = seen.get(e.key) ?? { admitted: 0, rejected: 0 };
            s.admitted += e.deltaAdmitted;
            s.rejected += e.deltaRejected;
            seen.set(e.key, s);
          }
        };
        for (const step of steps) {
          clock.advance(step.dtMs); // also runs the idle sweep every 30 ms
          const d = limiter.check("r", step.key, step.cost);
          const e = expected.get(step.key) ?? { admitted: 0, rejected: 0 };
          if (d.allowed) e.admitted += step.cost;
          else e.rejected += step.cost;
          expected.set(step.key, e);
          if (step.drain) take();
        }
        take();
        void limiter.close();
        // Keys evicted by the tiny maxKeys or reclaimed by the sweep still report every hit.
        assert.deepEqual(
          new Map([...seen].filter(([, v]) => v.admitted + v.rejected > 0)),
          new Map([...expected].filter(([, v]) => v.admitted + v.rejected > 0)),
        );
      },
    ),
    { numRuns: RUNS },
  );
});
