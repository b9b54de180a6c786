/**
 * Strict rules in the limiter: `checkAsync()`, `acquire()` and `peekAsync()` decide through the
 * StrictStore port, with the rule's failure policy. The store here is an exact in-process store
 * on the test's manual clock (the Redis store is tested against the real server in
 * test/integration/), shared by two limiters as two processes would share Redis.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Decision } from "../../../src/algorithms/types.js";
import { ManualClock } from "../../../src/clock/clock.js";
import { AbortedError, ClosedError, DeadlineExceededError } from "../../../src/errors.js";
import { createLimiter, type Limiter } from "../../../src/limiter/limiter.js";
import type { CompiledRule, RuleConfig } from "../../../src/limiter/rule.js";
import { StoreUnavailableError, type StrictStore } from "../../../src/limiter/strict-store.js";

/** An exact shared store: one local limiter holds every key; `down` makes every call fail. */
class SharedStore implements StrictStore {
  readonly #inner: Limiter;
  decides = 0;
  peeks = 0;
  down = false;

  constructor(rule: RuleConfig, clock: ManualClock) {
    this.#inner = createLimiter({
      rules: [{ ...rule, mode: "local" }],
      clock,
      sweepIntervalMs: 0,
    });
  }

  async decide(rule: CompiledRule, key: string, cost: number): Promise<Decision> {
    this.decides++;
    await Promise.resolve(); // a store answers later, never synchronously
    if (this.down) throw new StoreUnavailableError("down");
    return this.#inner.check(rule.name, key, cost);
  }

  async peek(rule: CompiledRule, key: string, cost: number): Promise<Decision> {
    this.peeks++;
    await Promise.resolve();
    if (this.down) throw new StoreUnavailableError("down");
    return this.#inner.peek(rule.name, key, cost);
  }

  async adjust(rule: CompiledRule, key: string, cost: number): Promise<void> {
    await Promise.resolve();
    if (this.down) throw new StoreUnavailableError("down");
    if (cost > 0) await this.#inner.penalty(rule.name, key, cost);
    else await this.#inner.reward(rule.name, key, -cost);
  }

  async reset(rule: CompiledRule, key: string): Promise<void> {
    await Promise.resolve();
    if (this.down) throw new StoreUnavailableError("down");
    await this.#inner.reset(rule.name, key);
  }

  async block(rule: CompiledRule, key: string, durationMs: number): Promise<void> {
    await Promise.resolve();
    if (this.down) throw new StoreUnavailableError("down");
    await this.#inner.block(rule.name, key, durationMs);
  }

  async close(): Promise<void> {}
}

const RULE: RuleConfig = {
  name: "pay",
  limit: 10,
  windowMs: 1000,
  mode: "strict",
  storeTimeoutMs: 30,
};

function make(rule: Partial<RuleConfig> = {}) {
  const clock = new ManualClock(0);
  const store = new SharedStore({ ...RULE, ...rule }, clock);
  const limiter = (s: StrictStore = store) =>
    createLimiter({ rules: [{ ...RULE, ...rule }], clock, sweepIntervalMs: 0, strictStore: s });
  return { clock, store, limiter };
}

/** Lets pending promise continuations run (the store's answers, the limiter's loop). */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

describe("limiter strict - acquire", () => {
  test("limiter strict - acquire decides through the store, shared by every limiter", async () => {
    const { store, limiter } = make();
    const a = limiter();
    const b = limiter();
    for (let i = 0; i < 5; i++) assert.equal((await a.acquire("pay", "t")).allowed, true);
    for (let i = 0; i < 5; i++) assert.equal((await b.acquire("pay", "t")).allowed, true);
    assert.equal(store.decides, 10);
    // The store is full for both: a call with no time to wait fails at once.
    await assert.rejects(a.acquire("pay", "t", { timeoutMs: 0 }), DeadlineExceededError);
    assert.equal(a.stats()[0]!.admittedHits, 5);
    assert.equal(a.stats()[0]!.rejectedHits, 1);
  });

  test("limiter strict - acquire fails at once, without sleeping, when the store's wait ends past the deadline", async () => {
    const { clock, store, limiter } = make();
    const l = limiter();
    await l.checkAsync("pay", "t", 10);
    const started = clock.nowMs();
    await assert.rejects(l.acquire("pay", "t", { timeoutMs: 99 }), (err: unknown) => {
      assert.ok(err instanceof DeadlineExceededError);
      assert.ok(Math.abs(err.retryAfterMs - 100) < 1e-9, String(err.retryAfterMs));
      assert.equal(err.remainingMs, 99);
      return true;
    });
    assert.equal(clock.nowMs(), started, "no time passed: it did not sleep");
    assert.equal(clock.pendingTimers, 0, "no timer was left behind");
    assert.equal(store.decides, 2, "one decision for the fill, one for the refused attempt");
    assert.equal(l.stats()[0]!.rejectedHits, 1, "the refusal counted once");
  });

  test("limiter strict - acquire waits the store's retryAfterMs, then asks it again", async () => {
    const { clock, store, limiter } = make();
    const l = limiter();
    await l.checkAsync("pay", "t", 10);
    const result: { decision?: Decision } = {};
    const p = l.acquire("pay", "t", { timeoutMs: 500 }).then((d) => (result.decision = d));
    await settle();
    assert.equal(store.decides, 2);
    clock.advance(99);
    await settle();
    assert.equal(result.decision, undefined, "still waiting: the store said 100 ms");
    clock.advance(1);
    await settle();
    const d = await p;
    assert.equal(d.allowed, true);
    assert.equal(store.decides, 3, "asked again after the wait");
    assert.equal(clock.pendingTimers, 0);
    assert.equal(l.stats()[0]!.admittedHits, 2);
    assert.equal(l.stats()[0]!.rejectedHits, 0, "a refusal followed by a wait is not a rejection");
  });

  test("limiter strict - another process taking the freed capacity makes acquire wait again, within its deadline", async () => {
    const { clock, limiter } = make();
    const a = limiter();
    const b = limiter();
    await a.checkAsync("pay", "t", 10);
    const p = a.acquire("pay", "t", { timeoutMs: 150 });
    await settle();
    clock.advance(100);
    // b takes the unit that freed before a's retry reaches the store.
    assert.equal((await b.checkAsync("pay", "t")).allowed, true);
    await settle();
    await assert.rejects(p, (err: unknown) => {
      assert.ok(err instanceof DeadlineExceededError);
      assert.ok(err.retryAfterMs > err.remainingMs);
      return true;
    });
    assert.equal(clock.nowMs(), 100, "it gave up at the second refusal, not after sleeping again");
    assert.equal(clock.pendingTimers, 0);
  });

  test("limiter strict - abort and close end a wait for the store", async () => {
    const { clock, limiter } = make();
    const l = limiter();
    await l.checkAsync("pay", "t", 10);
    const ac = new AbortController();
    const aborted = l.acquire("pay", "t", { signal: ac.signal });
    await settle();
    assert.equal(clock.pendingTimers, 1);
    ac.abort(new Error("client went away"));
    await assert.rejects(aborted, AbortedError);
    assert.equal(clock.pendingTimers, 0);
    const closed = l.acquire("pay", "t");
    await settle();
    await l.close();
    await assert.rejects(closed, ClosedError);
    assert.equal(clock.pendingTimers, 0);
  });

  test("limiter strict - acquire applies the store-failure policy to each attempt", async () => {
    // closed: refused with a wait of storeTimeoutMs; past a shorter deadline it fails at once.
    const closed = make({ onStoreFailure: "closed" });
    closed.store.down = true;
    const c = closed.limiter();
    await assert.rejects(c.acquire("pay", "t", { timeoutMs: 20 }), (err: unknown) => {
      return err instanceof DeadlineExceededError && err.retryAfterMs === 30;
    });
    assert.equal(c.stats()[0]!.storeFailures, 1);
    // open: admitted.
    const open = make({ onStoreFailure: "open" });
    open.store.down = true;
    assert.equal((await open.limiter().acquire("pay", "t")).allowed, true);
    // local: the local table at this node decides, and its own wait applies.
    const local = make({ onStoreFailure: "local" });
    local.store.down = true;
    const l = local.limiter();
    for (let i = 0; i < 10; i++) assert.equal((await l.acquire("pay", "t")).allowed, true);
    await assert.rejects(l.acquire("pay", "t", { timeoutMs: 50 }), (err: unknown) => {
      return err instanceof DeadlineExceededError && Math.abs(err.retryAfterMs - 100) < 1e-9;
    });
    const s = l.stats()[0]!;
    assert.equal(s.admittedHits, 10);
    assert.equal(
      s.rejectedHits,
      1,
      "counted once: the local policy's refusal is not double-counted",
    );
    assert.equal(s.storeFailures, 11);
  });
});

describe("limiter strict - peek", () => {
  test("limiter strict - peek() refuses strict rules by name; peekAsync() asks the store and consumes nothing", async () => {
    const { store, limiter } = make();
    const l = limiter();
    assert.throws(() => l.peek("pay", "t"), /use peekAsync\(\)/);
    await l.checkAsync("pay", "t", 4);
    const d = await l.peekAsync("pay", "t", 6);
    assert.equal(d.allowed, true);
    assert.equal(d.remaining, 0, "what the store would hold after the 6 peeked");
    assert.equal(store.peeks, 1);
    const again = await l.peekAsync("pay", "t", 7);
    assert.equal(again.allowed, false, "the first peek took nothing, 6 are left");
    assert.equal(l.stats()[0]!.admittedHits, 1, "peeks are not decisions");
    store.down = true;
    const local = await l.peekAsync("pay", "t", 1);
    assert.equal(local.allowed, true, "the local policy peeks at the local table");
    assert.equal(l.stats()[0]!.storeFailures, 1);
  });

  test("limiter strict - peekAsync() on a local rule is peek()", async () => {
    const clock = new ManualClock(0);
    const l = createLimiter({
      rules: [{ name: "api", limit: 2, windowMs: 1000 }],
      clock,
      sweepIntervalMs: 0,
    });
    l.check("api", "k");
    assert.deepEqual(await l.peekAsync("api", "k"), l.peek("api", "k"));
  });
});
