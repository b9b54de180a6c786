/**
 * Property tests: the Lua scripts and the TypeScript algorithms agree, decision for decision and
 * to the last bit, on random rules and random sequences of (advance time, cost, op, burst size),
 * the ops being consume, peek and key administration (charge, refund, block, reset). A burst of
 * hits made at once goes to Redis as one batched script call, and must decide exactly like the
 * same hits applied one by one in TypeScript. The TypeScript side of a block is KeyBlocks, as in
 * the limiter's local tables: a blocked key refuses before its algorithm is asked.
 *
 * How time is controlled: the scripts take an optional "nowMs override" argument (documented in
 * each script's contract header), which the store passes only when `scriptNowMsForTesting` is set.
 * This test drives a virtual clock through it and feeds the very same numbers to the TypeScript
 * algorithm. The alternative, reading Redis' own TIME back and replaying it in TypeScript, would
 * tie every step to real waiting, so random advances of seconds or hours could not be tested in
 * bounded time, and fast-check could not replay a failing case. With the override, the scripts
 * also keep every key at least 60 s, so Redis (which expires keys on its real clock) never drops
 * a state the virtual clock still needs; the expiry itself is tested on real time in
 * redis-strict-store.test.ts. The over-limit cache is off here: it answers from the local clock,
 * which is not what is being compared.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import fc from "fast-check";
import type { Decision } from "../../src/algorithms/types.js";
import { type CompiledRule, createLimiter, createRedisStrictStore } from "../../src/index.js";
import { KeyBlocks } from "../../src/limiter/key-blocks.js";
import {
  adminClient,
  deleteUnder,
  SHARED_REDIS_URL,
  uniquePrefix,
} from "./helpers/redis-fixtures.js";

const prefix = uniquePrefix("properties");
const admin = adminClient();
let virtualNowMs = 0;
const store = createRedisStrictStore({
  url: SHARED_REDIS_URL,
  keyPrefix: prefix,
  overLimitCache: false,
  scriptNowMsForTesting: () => virtualNowMs,
});
before(() => store.ready());
after(async () => {
  await store.close();
  await deleteUnder(admin, prefix);
  await admin.quit();
});

type StepOp = "consume" | "peek" | "charge" | "refund" | "block" | "reset";

interface Step {
  readonly advanceMs: number;
  /** The op's cost; for "block", its duration in ms. */
  readonly cost: number;
  readonly op: StepOp;
  /** Hits made at once (same tick): the store sends them as one batched script call. */
  readonly burst: number;
}

const positive = (max: number, min = 0.01) =>
  fc.oneof(
    fc.integer({ min: Math.ceil(min), max }),
    fc.double({ min, max, noNaN: true, noDefaultInfinity: true }),
  );

function stepArb(windowMs: number): fc.Arbitrary<Step> {
  return fc.record({
    advanceMs: fc.oneof(
      fc.constant(0),
      fc.integer({ min: 0, max: Math.ceil(windowMs / 4) }),
      fc.double({ min: 0, max: windowMs * 2, noNaN: true, noDefaultInfinity: true }),
    ),
    cost: fc.oneof(
      { weight: 4, arbitrary: fc.constant(1) },
      { weight: 3, arbitrary: fc.integer({ min: 1, max: 8 }) },
      { weight: 2, arbitrary: fc.double({ min: 0.05, max: 5, noNaN: true }) },
      { weight: 1, arbitrary: fc.integer({ min: 50, max: 500 }) }, // often above the capacity
    ),
    op: fc.oneof(
      { weight: 12, arbitrary: fc.constant("consume" as const) },
      { weight: 2, arbitrary: fc.constant("peek" as const) },
      { weight: 1, arbitrary: fc.constant("charge" as const) },
      { weight: 1, arbitrary: fc.constant("refund" as const) },
      { weight: 1, arbitrary: fc.constant("block" as const) },
      { weight: 1, arbitrary: fc.constant("reset" as const) },
    ),
    burst: fc.oneof(
      { weight: 4, arbitrary: fc.constant(1) },
      { weight: 1, arbitrary: fc.integer({ min: 2, max: 40 }) },
    ),
  });
}

const ruleArb = fc.oneof(
  fc.record({
    algorithm: fc.constantFrom("token-bucket" as const, "gcra" as const),
    limit: positive(60),
    windowMs: positive(5000, 1), // rules need windowMs >= 1
    burst: fc.option(positive(80), { nil: undefined }),
  }),
  fc.record({
    algorithm: fc.constant("sliding-window" as const),
    limit: positive(60),
    windowMs: positive(5000, 1), // rules need windowMs >= 1

    segments: fc.integer({ min: 1, max: 60 }),
  }),
);

let runs = 0;

for (const algorithm of ["token-bucket", "gcra", "sliding-window"] as const) {
  test(`redis properties - ${algorithm}: Lua and TypeScript decide alike on random sequences`, async () => {
    const caseArb = ruleArb
      .filter((r) => r.algorithm === algorithm)
      .chain((config) =>
        fc.record({
          config: fc.constant(config),
          startMs: fc.double({ min: 1.6e12, max: 1.9e12, noNaN: true }),
          steps: fc.array(stepArb(config.windowMs), { minLength: 1, maxLength: 40 }),
        }),
      );
    await fc.assert(
      fc.asyncProperty(caseArb, async ({ config, startMs, steps: drawn }) => {
        // A block's duration is drawn on the scale of the rule's window, like a time advance.
        const steps = drawn.map((s) =>
          s.op === "block" ? { ...s, cost: (s.cost * config.windowMs) / 4 } : s,
        );
        const name = `p${++runs}`; // a fresh key for every run, shrinks included
        const rule: CompiledRule = createLimiter({
          rules: [
            {
              name,
              storeTimeoutMs: 10_000, // this compares decisions, not latency
              ...(withoutUndefined(config) as Omit<typeof config, "burst">),
            },
          ],
          sweepIntervalMs: 0,
        }).rules[0]!;
        const algo = rule.algorithm;
        const p = rule.params;
        const state = new Float64Array(algo.stride(p));
        const blocks = new KeyBlocks();
        // The store reports a rule's capacity as `limit`, a blocked refusal included.
        const refusal = () => blocks.refusal("k", virtualNowMs, p.capacity);
        const peek = (cost: number): Decision =>
          refusal() ?? algo.peek(state, 0, p, virtualNowMs, cost);
        virtualNowMs = startMs;
        for (const [i, step] of steps.entries()) {
          virtualNowMs += step.advanceMs;
          // The script meets an absent key as a state at rest at its first call: so does this.
          if (i === 0) algo.init(state, 0, p, virtualNowMs);
          const at = where(i, step, config);
          switch (step.op) {
            case "peek": {
              const actual = await store.peek(rule, "k", step.cost);
              assert.deepEqual({ ...actual }, { ...peek(step.cost) }, at);
              break;
            }
            case "consume": {
              // A burst goes out as one script call; it must decide like the same hits one by one.
              const expected = Array.from({ length: step.burst }, () => ({
                ...(refusal() ?? algo.decide(state, 0, p, virtualNowMs, step.cost)),
              }));
              const actual = await Promise.all(
                Array.from({ length: step.burst }, () => store.decide(rule, "k", step.cost)),
              );
              assert.deepEqual(
                actual.map((d) => ({ ...d })),
                expected,
                at,
              );
              break;
            }
            case "charge":
              algo.adjust(state, 0, p, virtualNowMs, step.cost);
              await store.adjust(rule, "k", step.cost);
              break;
            case "refund": {
              algo.adjust(state, 0, p, virtualNowMs, -step.cost);
              const actual = await store.refund(rule, "k", step.cost);
              assert.deepEqual({ ...actual }, { ...peek(step.cost) }, `${at} (refund report)`);
              break;
            }
            case "block":
              blocks.block("k", virtualNowMs + step.cost);
              await store.block(rule, "k", step.cost);
              break;
            case "reset":
              algo.init(state, 0, p, virtualNowMs);
              blocks.unblock("k");
              await store.reset(rule, "k");
              break;
          }
        }
      }),
      { numRuns: 150, interruptAfterTimeLimit: 20_000 },
    );
  });
}

function where(i: number, step: Step, config: unknown): string {
  return `step ${i} (${JSON.stringify(step)}) at ${virtualNowMs} on ${JSON.stringify(config)}`;
}

function withoutUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
