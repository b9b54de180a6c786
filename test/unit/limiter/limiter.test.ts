import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ManualClock } from "../../../src/clock/clock.js";
import {
  AbortedError,
  ClosedError,
  DeadlineExceededError,
  InvalidArgumentError,
  UnknownRuleError,
} from "../../../src/errors.js";
import type { Grant, GrantOutcome } from "../../../src/limiter/grant-cells.js";
import type { ChangeCursor } from "../../../src/limiter/key-change.js";
import {
  DECISION_LATENCY_BOUNDS_S,
  LatencyHistogram,
} from "../../../src/limiter/latency-histogram.js";
import { createLimiter } from "../../../src/limiter/limiter.js";
import type { LimiterOptions } from "../../../src/limiter/limiter-options.js";

function assertApplied(outcome: GrantOutcome): void {
  assert.equal(outcome, "applied");
}

function make(overrides: Partial<LimiterOptions> = {}) {
  const clock = new ManualClock(0);
  const limiter = createLimiter({
    rules: [
      { name: "api", limit: 10, windowMs: 1000 },
      { name: "login", algorithm: "sliding-window", limit: 3, windowMs: 60_000, segments: 6 },
      { name: "upload", algorithm: "gcra", limit: 100, windowMs: 1000, burst: 20, cost: 5 },
    ],
    clock,
    sweepIntervalMs: 0,
    ...overrides,
  });
  return { clock, limiter };
}

describe("limiter - check", () => {
  test("limiter - keys are limited independently", () => {
    const { limiter } = make();
    for (let i = 0; i < 10; i++) assert.equal(limiter.check("api", "alice").allowed, true);
    assert.equal(limiter.check("api", "alice").allowed, false);
    assert.equal(limiter.check("api", "bob").allowed, true);
    assert.equal(limiter.check("login", "alice").allowed, true, "rules are independent too");
  });

  test("limiter - decision object carries every field", () => {
    const { limiter } = make();
    const d = limiter.check("api", "k", 4);
    assert.deepEqual(
      { ...d },
      { allowed: true, remaining: 6, limit: 10, resetAfterMs: 400, retryAfterMs: 0 },
    );
  });

  test("limiter - the rule's default cost applies when none is given", () => {
    const { limiter } = make();
    for (let i = 0; i < 4; i++) assert.equal(limiter.check("upload", "k").allowed, true);
    assert.equal(limiter.check("upload", "k").allowed, false);
    assert.equal(limiter.check("upload", "k", 1).allowed, false, "burst 20 = 4 hits of 5");
  });

  test("limiter - time moves the window", () => {
    const { clock, limiter } = make();
    for (let i = 0; i < 3; i++) assert.equal(limiter.check("login", "u").allowed, true);
    const d = limiter.check("login", "u");
    assert.equal(d.allowed, false);
    clock.advance(d.retryAfterMs);
    assert.equal(limiter.check("login", "u").allowed, true);
  });

  test("limiter - peek consumes nothing and creates no key", () => {
    const { limiter } = make();
    assert.equal(limiter.peek("api", "ghost").remaining, 9, "10 held: 9 after the hit peeked");
    assert.equal(limiter.stats().find((s) => s.rule === "api")!.keys, 0);
    limiter.check("api", "k", 9);
    assert.equal(limiter.peek("api", "k", 2).allowed, false);
    assert.equal(limiter.peek("api", "k", 1).allowed, true);
    assert.equal(limiter.check("api", "k").allowed, true);
  });
});

describe("limiter - bad input", () => {
  const cases: [string, () => unknown, RegExp][] = [
    [
      "negative limit",
      () => createLimiter({ rules: [{ name: "r", limit: -1, windowMs: 1000 }] }),
      /^Expected `rules\[0\]\.limit` to be a finite number > 0 and <= 1000000000000000, got `-1` \(number\)$/,
    ],
    [
      "NaN window",
      () =>
        createLimiter({
          rules: [
            { name: "ok", limit: 1, windowMs: 1 },
            { name: "r", limit: 1, windowMs: Number.NaN },
          ],
        }),
      /`rules\[1\]\.windowMs`.*got `NaN` \(number\)/,
    ],
    [
      "string limit",
      () =>
        createLimiter({ rules: [{ name: "r", limit: "10" as unknown as number, windowMs: 1 }] }),
      /`rules\[0\]\.limit`.*got `"10"` \(string\)/,
    ],
    [
      "unknown algorithm",
      () =>
        createLimiter({
          rules: [{ name: "r", algorithm: "leaky" as "gcra", limit: 1, windowMs: 1 }],
        }),
      /`rules\[0\]\.algorithm` to be one of "token-bucket", "gcra", "sliding-window", got `"leaky"`/,
    ],
    [
      "misspelt option",
      () => createLimiter({ rules: [{ name: "r", limit: 1, windowMS: 1 } as never] }),
      /`rules\[0\]\.windowMS` to be absent/,
    ],
    [
      "duplicate rule",
      () =>
        createLimiter({
          rules: [
            { name: "r", limit: 1, windowMs: 1 },
            { name: "r", limit: 1, windowMs: 1 },
          ],
        }),
      /`rules\[1\]\.name` to be a name no other rule has, got `"r"`/,
    ],
    [
      "segments on a bucket",
      () => createLimiter({ rules: [{ name: "r", limit: 1, windowMs: 1, segments: 4 }] }),
      /`rules\[0\]\.segments` to be absent for a token-bucket rule/,
    ],
    [
      "no rules",
      () => createLimiter({ rules: [] }),
      /`rules` to be a non-empty array of rules, got `\[\]` \(array\)/,
    ],
    [
      "strict rule without a store",
      () => createLimiter({ rules: [{ name: "r", limit: 1, windowMs: 1, mode: "strict" }] }),
      /`strictStore` to be a StrictStore, since rules\[0\] \("r"\) has mode "strict"/,
    ],
  ];
  for (const [name, fn, message] of cases) {
    test(`limiter - config: ${name} names the field, the expectation and the value`, () => {
      assert.throws(fn, (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError, String(err));
        assert.match(err.message, message);
        return true;
      });
    });
  }

  test("limiter - NaN, zero, negative and infinite costs are refused with the argument named", () => {
    const { limiter } = make();
    for (const cost of [Number.NaN, 0, -1, Infinity, "2" as unknown as number]) {
      assert.throws(
        () => limiter.check("api", "k", cost),
        (err: unknown) =>
          err instanceof InvalidArgumentError && err.field === "cost" && /got `/.test(err.message),
      );
    }
    assert.equal(limiter.check("api", "k").remaining, 9, "refused calls consumed nothing");
  });

  test("limiter - an unknown rule lists the known ones", () => {
    const { limiter } = make();
    assert.throws(
      () => limiter.check("apii", "k"),
      (err: unknown) => {
        assert.ok(err instanceof UnknownRuleError);
        assert.equal(
          err.message,
          'Expected `rule` to be one of `api`, `login`, `upload`, got `"apii"` (string)',
        );
        return true;
      },
    );
  });

  test("limiter - a non-string key is refused", () => {
    const { limiter } = make();
    assert.throws(
      () => limiter.check("api", 42 as unknown as string),
      /`key` to be a string, got `42` \(number\)/,
    );
  });
});

describe("limiter - acquire", () => {
  test("limiter - acquire resolves at once when capacity is there", async () => {
    const { limiter } = make();
    const d = await limiter.acquire("api", "k");
    assert.equal(d.allowed, true);
  });

  test("limiter - acquire waits exactly until capacity frees up", async () => {
    const { clock, limiter } = make();
    limiter.check("api", "k", 10);
    let done = false;
    const p = limiter.acquire("api", "k", { timeoutMs: 1000 }).then((d) => {
      done = true;
      return d;
    });
    await Promise.resolve();
    clock.advance(99);
    await new Promise((r) => setImmediate(r));
    assert.equal(done, false);
    clock.advance(1);
    const d = await p;
    assert.equal(d.allowed, true);
  });

  test("limiter - acquire rejects at once, without sleeping, when the wait ends past the deadline", async () => {
    const { clock, limiter } = make();
    limiter.check("api", "k", 10);
    const started = clock.nowMs();
    await assert.rejects(limiter.acquire("api", "k", { timeoutMs: 99 }), (err: unknown) => {
      assert.ok(err instanceof DeadlineExceededError);
      assert.ok(Math.abs(err.retryAfterMs - 100) < 1e-9);
      assert.equal(err.remainingMs, 99);
      return true;
    });
    assert.equal(clock.nowMs(), started, "no time passed: it did not sleep");
    assert.equal(clock.pendingTimers, 0, "no timer was left behind");
    await assert.rejects(
      limiter.acquire("api", "k", { deadlineMs: clock.nowMs() + 50 }),
      DeadlineExceededError,
    );
    // The two refusals were counted once each, as rejected hits.
    assert.equal(limiter.stats()[0]!.rejectedHits, 2);
  });

  test("limiter - acquire of a cost no bucket can hold fails at once", async () => {
    const { limiter } = make();
    await assert.rejects(limiter.acquire("api", "k", { cost: 11 }), (err: unknown) => {
      return err instanceof DeadlineExceededError && err.retryAfterMs === Infinity;
    });
  });

  test("limiter - an aborted signal rejects before and during the wait", async () => {
    const { clock, limiter } = make();
    await assert.rejects(
      limiter.acquire("api", "k", { signal: AbortSignal.abort("gone") }),
      (err: unknown) => {
        return err instanceof AbortedError && (err as Error).cause === "gone";
      },
    );
    limiter.check("api", "k", 10);
    const ac = new AbortController();
    const p = limiter.acquire("api", "k", { signal: ac.signal });
    await Promise.resolve();
    assert.equal(clock.pendingTimers, 1);
    ac.abort(new Error("client went away"));
    await assert.rejects(p, AbortedError);
    assert.equal(clock.pendingTimers, 0, "the wait's timer was cancelled");
  });

  test("limiter - close() rejects pending waits and later calls", async () => {
    const { clock, limiter } = make();
    limiter.check("api", "k", 10);
    const p = limiter.acquire("api", "k");
    await Promise.resolve();
    await limiter.close();
    await assert.rejects(p, ClosedError);
    assert.equal(clock.pendingTimers, 0);
    assert.throws(() => limiter.check("api", "k"), ClosedError);
    await limiter.close(); // idempotent
  });

  test("limiter - bad acquire options are named", async () => {
    const { limiter } = make();
    await assert.rejects(
      limiter.acquire("api", "k", { timeoutMs: -1 }),
      /`options\.timeoutMs` to be a finite number >= 0/,
    );
    await assert.rejects(
      limiter.acquire("api", "k", { cost: Number.NaN }),
      /`options\.cost`.*`NaN`/,
    );
    await assert.rejects(
      limiter.acquire("api", "k", { signal: {} as AbortSignal }),
      /`options\.signal` to be an AbortSignal/,
    );
  });
});

describe("limiter - memory", () => {
  test("limiter - the sweep reclaims keys at rest and only those", () => {
    const { clock, limiter } = make({ sweepIntervalMs: 500 });
    for (let i = 0; i < 100; i++) limiter.check("api", `k${i}`);
    limiter.snapshot();
    limiter.check("api", "busy", 10);
    clock.advance(500); // sweep: the 100 keys are refilled (100 ms each), "busy" is not and is unreported
    const stats = limiter.stats()[0]!;
    assert.equal(stats.keys, 1);
    assert.equal(stats.reclaimedKeys, 100);
    clock.advance(500); // "busy" is refilled but its counts were not taken yet: kept
    assert.equal(limiter.stats()[0]!.keys, 1);
    assert.equal(limiter.snapshot().entries.length, 1);
    clock.advance(500);
    assert.equal(limiter.stats()[0]!.keys, 0);
    void limiter.close();
  });

  test("limiter - maxKeys caps the keys held; recently used keys survive eviction", () => {
    const { limiter } = make({ maxKeys: 4 });
    const held = (k: string) => limiter.peek("api", k).remaining === 0; // evicted keys start full
    for (const k of ["a", "b", "c", "d"]) limiter.check("api", k, 10);
    // All four were used since the hand last passed: each gets a second chance, then "a" goes.
    limiter.check("api", "e", 10);
    assert.deepEqual(["a", "b", "c", "d", "e"].map(held), [false, true, true, true, true]);
    limiter.check("api", "c"); // c used again: it survives the next pass, b does not
    limiter.check("api", "f", 10);
    assert.deepEqual(["b", "c", "d", "e", "f"].map(held), [false, true, true, true, true]);
    limiter.check("api", "g", 10); // hand moves on from b's slot: c has its bit, d does not
    assert.deepEqual(["c", "d", "e", "f", "g"].map(held), [true, false, true, true, true]);
    const stats = limiter.stats()[0]!;
    assert.equal(stats.keys, 4);
    assert.equal(stats.evictedKeys, 3);
  });

  test("limiter - an evicted key's unreported counts still reach the next snapshot", () => {
    const { limiter } = make({ maxKeys: 2 });
    limiter.check("api", "a", 3);
    limiter.check("api", "b", 4);
    limiter.check("api", "c", 5);
    limiter.check("api", "d", 6);
    const entries = limiter.snapshot().entries;
    const byKey = new Map(entries.map((e) => [e.key, e]));
    assert.deepEqual([...byKey.keys()].sort(), ["a", "b", "c", "d"]);
    assert.equal(byKey.get("a")!.deltaAdmitted, 3);
    assert.equal(byKey.get("d")!.admitted, 6);
  });
});

describe("limiter - accounting", () => {
  test("limiter - snapshot reports cumulative counts and the change since the last one", () => {
    const { limiter } = make();
    limiter.check("api", "k", 6);
    limiter.check("api", "k", 6);
    limiter.check("login", "u");
    const first = limiter.snapshot();
    assert.equal(first.seq, 1);
    const k1 = first.entries.find((e) => e.key === "k")!;
    assert.deepEqual(
      { ...k1 },
      {
        rule: "api",
        key: "k",
        generation: k1.generation,
        admitted: 6,
        rejected: 6,
        deltaAdmitted: 6,
        deltaRejected: 6,
        isNew: true,
        grantEpoch: 0,
        grantVersion: 0,
        allowance: 0,
      },
    );
    assert.equal(limiter.snapshot().entries.length, 0, "nothing changed since");
    limiter.check("api", "k", 1);
    const [k2] = limiter.snapshot().entries;
    assert.deepEqual(
      { admitted: k2!.admitted, deltaAdmitted: k2!.deltaAdmitted, rejected: k2!.rejected },
      {
        admitted: 7,
        deltaAdmitted: 1,
        rejected: 6,
      },
    );
    assert.equal(k2!.generation, k1.generation);
    assert.equal(k2!.isNew, false, "reported before");
  });

  test("limiter - a key created again gets a new generation", () => {
    const { clock, limiter } = make();
    limiter.check("api", "k");
    const g1 = limiter.snapshot().entries[0]!.generation;
    clock.advance(1000);
    assert.equal(limiter.sweep(), 1);
    limiter.check("api", "k");
    const e = limiter.snapshot().entries[0]!;
    assert.notEqual(e.generation, g1);
    assert.equal(e.admitted, 1, "counts restart with the generation");
  });

  test("limiter - drain hands each changed key over in a cursor, global ones with their grant and age", () => {
    const clock = new ManualClock(0);
    const limiter = createLimiter({
      rules: [
        { name: "api", limit: 10, windowMs: 1000 },
        { name: "g", mode: "global", limit: 100, windowMs: 1000 },
      ],
      clock,
      sweepIntervalMs: 0,
    });
    limiter.global.setAggregatorLost(false);
    limiter.check("api", "a", 2);
    limiter.check("g", "k", 3); // admitted at t = 0 ...
    clock.advance(40);
    limiter.check("g", "k", 1); // ... and at t = 40
    assertApplied(
      limiter.global.applyGrant("g", "k", 7, {
        generation: 0,
        version: 2,
        allowance: 50,
        rampFrom: 50,
        rampMs: 0,
        retryAfterMs: 0,
      }),
    );
    clock.advance(60);
    const seen: Omit<ChangeCursor, "recentCount" | "recentCost" | "recentAgeMs">[] = [];
    limiter.drain(({ recentCount, recentCost: _c, recentAgeMs: _a, ...c }) => {
      assert.equal(recentCount, 0, "no bins unless asked for");
      seen.push(c);
    });
    const a = seen.find((c) => c.key === "a")!;
    const k = seen.find((c) => c.key === "k")!;
    assert.deepEqual(
      { ...a, generation: 0 },
      {
        rule: "api",
        key: "a",
        generation: 0,
        admitted: 2,
        rejected: 0,
        deltaAdmitted: 2,
        deltaRejected: 0,
        isNew: true,
        grantEpoch: 0,
        grantVersion: 0,
        allowance: 0,
        ageMs: 0,
      },
    );
    assert.deepEqual(
      { ...k, generation: 0 },
      {
        rule: "g",
        key: "k",
        generation: 0,
        admitted: 4,
        rejected: 0,
        deltaAdmitted: 4,
        deltaRejected: 0,
        isNew: true,
        grantEpoch: 7,
        grantVersion: 2,
        allowance: 50,
        ageMs: 90, // (3 x 100 + 1 x 60) / 4 ms ago
      },
    );
    assert.equal(seen.length, 2);
    limiter.check("api", "a");
    const next: [string, number, number, boolean][] = [];
    limiter.drain((c) => next.push([c.key, c.admitted, c.deltaAdmitted, c.isNew]));
    // k had hits at the previous drain and none since: reported once more, with nothing new.
    assert.deepEqual(next.sort(), [
      ["a", 3, 1, false],
      ["k", 4, 0, false],
    ]);
    void limiter.close();
  });

  test("limiter - stats count decisions per rule", () => {
    const { limiter } = make();
    for (let i = 0; i < 12; i++) limiter.check("api", "k");
    const s = limiter.stats().find((x) => x.rule === "api")!;
    assert.equal(s.admittedHits, 10);
    assert.equal(s.rejectedHits, 2);
  });
});

describe("limiter - decision latency sampling", () => {
  test("limiter - one check in latencySampleEvery is timed into the histogram", () => {
    const { limiter } = make({ latencySampleEvery: 4 });
    for (let i = 0; i < 100; i++) limiter.check("api", `k${i}`);
    const h = limiter.decisionLatency();
    assert.equal(h.count, 25);
    assert.equal(
      h.counts.reduce((a, b) => a + b, 0),
      25,
    );
    assert.equal(h.counts.length, h.boundsS.length + 1);
  });

  test("limiter - latencySampleEvery 0 turns timing off; other values must be powers of two", () => {
    const { limiter } = make({ latencySampleEvery: 0 });
    for (let i = 0; i < 100; i++) limiter.check("api", "k");
    assert.equal(limiter.decisionLatency().count, 0);
    assert.throws(
      () => make({ latencySampleEvery: 3 }),
      /`latencySampleEvery` to be 0 or a power of two, got `3`/,
    );
  });
});

describe("latency histogram - exponential buckets beside the fixed ones", () => {
  test("latency histogram - each sample lands in (2^(i/8), 2^((i+1)/8)], zeros apart", () => {
    const h = new LatencyHistogram(DECISION_LATENCY_BOUNDS_S);
    for (const v of [1, 1, 2, 1.05, 0, 3e-7]) h.record(v);
    const e = h.snapshot().exponential;
    assert.equal(e.scale, 3);
    assert.equal(e.zeroCount, 1);
    const index = (v: number) => Math.ceil(Math.log2(v) * 8) - 1;
    const counts = new Map<number, number>();
    e.bucketCounts.forEach((c, j) => {
      if (c > 0) counts.set(e.offset + j, c);
    });
    assert.deepEqual(
      [...counts].sort((a, b) => a[0] - b[0]),
      [
        [index(3e-7), 1],
        [-1, 2], // 1 second: (2^(-1/8), 2^0]
        [index(1.05), 1],
        [7, 1], // 2 seconds: (2^(7/8), 2^1]
      ],
    );
    for (const v of [3e-7, 1.05]) {
      const i = index(v);
      assert.ok(2 ** (i / 8) < v && v <= 2 ** ((i + 1) / 8));
    }
  });
});

/** A grant for `applyGrant`: generation, version, allowance, then the ramp and the wait. */
function grant(
  generation: number,
  version: number,
  allowance: number,
  rampFrom = allowance,
  rampMs = 0,
  retryAfterMs = 0,
): Grant {
  return { generation, version, allowance, rampFrom, rampMs, retryAfterMs };
}

describe("global rules - grant ramp", () => {
  function globalLimiter() {
    const clock = new ManualClock(0);
    const limiter = createLimiter({
      rules: [{ name: "g", mode: "global", limit: 100, windowMs: 1000 }],
      clock,
      sweepIntervalMs: 0,
    });
    limiter.global.setAggregatorLost(false);
    return { clock, limiter };
  }
  const admitAll = (limiter: ReturnType<typeof globalLimiter>["limiter"]) => {
    let n = 0;
    while (limiter.check("g", "k").allowed) n++;
    return n;
  };

  test("grant ramp - rampFrom is usable at receipt, the rest linearly over rampMs", () => {
    const { clock, limiter } = globalLimiter();
    limiter.check("g", "k"); // creates the key (default share), admitted 1
    assertApplied(limiter.global.applyGrant("g", "k", 7, grant(0, 1, 10))); // no ramp: all at once
    assert.equal(admitAll(limiter), 9);
    // Allowance 30: 14 usable now, the other 16 over 40 ms.
    assertApplied(limiter.global.applyGrant("g", "k", 7, grant(0, 2, 30, 14, 40)));
    assert.equal(admitAll(limiter), 4);
    clock.advance(10);
    assert.equal(admitAll(limiter), 4); // a quarter of the 16
    clock.advance(30);
    assert.equal(admitAll(limiter), 12); // the rest
    clock.advance(100);
    assert.equal(admitAll(limiter), 0); // no more than granted, however long
    // A grant landing during a ramp replaces it: its own start and end apply from receipt.
    assertApplied(limiter.global.applyGrant("g", "k", 7, grant(0, 3, 50, 34, 40)));
    clock.advance(20);
    assertApplied(limiter.global.applyGrant("g", "k", 7, grant(0, 4, 60, 50, 40)));
    assert.equal(admitAll(limiter), 20); // 50 usable at once (30 admitted so far)
    clock.advance(20);
    assert.equal(admitAll(limiter), 5);
    // A lower grant applies at once, even during a ramp.
    assertApplied(limiter.global.applyGrant("g", "k", 7, grant(0, 5, 57, 57, 0)));
    clock.advance(40);
    assert.equal(admitAll(limiter), 2);
  });

  test("global keys: a key that had hits is reported once more when none came since", () => {
    const { limiter } = globalLimiter();
    limiter.global.applyGrant("g", "k", 7, grant(0, 1, 10));
    limiter.global.applyGrant("g", "quiet", 7, grant(0, 1, 10));
    limiter.snapshot(); // the grants' confirmations
    for (let i = 0; i < 3; i++) limiter.check("g", "k");
    limiter.check("g", "quiet");
    const active = limiter.snapshot().entries.map((e) => [e.key, e.deltaAdmitted]);
    assert.deepEqual(active.sort(), [
      ["k", 3],
      ["quiet", 1],
    ]);
    limiter.check("g", "k");
    // "quiet" had a hit last time and none since: reported once with nothing new.
    const next = limiter.snapshot().entries.map((e) => [e.key, e.deltaAdmitted, e.admitted]);
    assert.deepEqual(next.sort(), [
      ["k", 1, 4],
      ["quiet", 0, 1],
    ]);
    assert.deepEqual(
      limiter.snapshot().entries.map((e) => [e.key, e.deltaAdmitted]),
      [["k", 0]],
    );
    assert.equal(limiter.snapshot().entries.length, 0, "then nothing, until the next hit");
  });

  test("grant ramp - without rampMs, or rampFrom at the allowance, all is usable at once", () => {
    const { limiter } = globalLimiter();
    limiter.check("g", "k");
    limiter.global.applyGrant("g", "k", 7, grant(0, 1, 10));
    limiter.global.applyGrant("g", "k", 7, grant(0, 2, 30, 10, 0));
    assert.equal(admitAll(limiter), 29);
    limiter.global.applyGrant("g", "k", 7, grant(0, 3, 40, 45, 50)); // rampFrom above: no ramp
    assert.equal(admitAll(limiter), 10);
  });
});
