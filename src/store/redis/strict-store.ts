/**
 * The Redis strict store: exact global limits, decided atomically by Lua scripts on Redis.
 *
 * In: `decide(rule, key, cost)` from the limiter's `checkAsync()` (and `peek` / `refund` from the
 * caller; `adjust` / `reset` / `block` from the limiter's key administration: script ops "charge"
 * and "block", which keep a block in the key's own state, and a DEL). Out: a Decision with the same fields and the same math as the local algorithm, computed
 * inside one script on Redis' own clock (`TIME`), so every process sees one state and one time.
 *
 * Flow of a decide: the over-limit cache may answer a refusal locally (a key known to be over its
 * limit until a known time); otherwise the hit goes through the connection's `run()`, which
 * enforces the rule's `storeTimeoutMs` and turns every failure into a StoreUnavailableError, to
 * the batcher, which sends the hits of one tick as one call of the rule's script; a refusal that
 * comes back is remembered in the cache. The failure policy itself (`onStoreFailure`) is the
 * limiter's job, not this store's.
 */

import { Cluster } from "ioredis";
import type { AlgorithmName, Decision } from "../../algorithms/types.js";
import { DecisionResult } from "../../algorithms/types.js";
import { type Clock, monotonicClock } from "../../clock/clock.js";
import { InvalidArgumentError } from "../../errors.js";
import type { CompiledRule } from "../../limiter/rule.js";
import type { StrictStore } from "../../limiter/strict-store.js";
import { expectKnownKeys, expectObject, optionalNumber } from "../../validate.js";
import { OverLimitCache } from "../over-limit-cache.js";
import {
  CONNECTION_OPTION_KEYS,
  type RedisConnectionOptions,
  RedisLink,
  type Sender,
} from "./connection.js";
import { type BatchPlan, DecideBatcher } from "./decide-batcher.js";
import { expectKeyPrefix, ruleKeyParts } from "./keys.js";
import { DECIDE_SCRIPTS, defineDecideScripts, runScript } from "./scripts.js";

export interface RedisStrictStoreOptions extends RedisConnectionOptions {
  /**
   * Prefix of every key the store writes, so several services or environments can share one
   * Redis. At most 128 characters, without `{` or `}` (they would move the Cluster hash tag).
   * @default "sluice:"
   * @example "billing-prod:"
   */
  readonly keyPrefix?: string;
  /**
   * The in-process cache of keys known to be over their limit: while a key is known to refuse a
   * hit of some cost until a known time, hits of that cost or more are refused locally, with
   * `retryAfterMs` counting down, instead of each costing a round trip. `false` turns it off.
   * `maxEntries` bounds it (an integer 1..10,000,000); beyond that the entry refused longest ago
   * is dropped. docs/strict-mode.md gives an entry's measured size (a small fixed part plus the
   * Redis key string).
   * @default { maxEntries: 10_000 }
   */
  readonly overLimitCache?: false | { readonly maxEntries?: number };
  /** Clock for deadlines and the over-limit cache's countdown. @default monotonicClock */
  readonly clock?: Clock;
  /**
   * Testing only: the time the scripts use instead of Redis `TIME`, in ms, read when each call is
   * sent. The scripts then also keep every key at least 60 s. Never set it in production: nodes'
   * clocks disagree, and the point of the store is one clock.
   */
  readonly scriptNowMsForTesting?: () => number;
}

/** Counters of a Redis strict store, since it was created. */
export interface RedisStrictStoreStats {
  /** Calls sent to Redis (hits not answered by the cache, peeks, refunds, key administration). */
  readonly storeCalls: number;
  /**
   * Script invocations on Redis. Hits made in the same tick share one (up to 32 per rule), so
   * this is at most `storeCalls`; their ratio is the mean batch size.
   */
  readonly scriptCalls: number;
  /** `decide` calls answered with a refusal by the over-limit cache, without Redis. */
  readonly overLimitCacheHits: number;
  /** Keys held by the over-limit cache now. */
  readonly overLimitCacheEntries: number;
  /** Calls that got no reply within the rule's `storeTimeoutMs`. */
  readonly timeouts: number;
  /** Calls that failed otherwise: not connected, connection lost, script error. */
  readonly failures: number;
}

export interface RedisStrictStore extends StrictStore {
  /**
   * What `decide` would answer for a hit of `cost` (default: the rule's cost), consuming nothing.
   * Always asks Redis. Rejects with StoreUnavailableError like `decide`.
   */
  peek(rule: CompiledRule, key: string, cost?: number): Promise<Decision>;
  /**
   * Gives `cost` back to `key` (a hit admitted but not carried out): a token bucket gets the
   * tokens back up to its capacity, GCRA moves its schedule back (never before now), a sliding
   * window takes the cost off its newest segments (never below zero). Resolves with what `peek`
   * would answer for a hit of `cost` afterwards.
   */
  refund(rule: CompiledRule, key: string, cost: number): Promise<Decision>;
  /** Counters since creation. */
  stats(): RedisStrictStoreStats;
  /**
   * Resolves once Redis is connected, or rejects with StoreUnavailableError after `timeoutMs`
   * (default 10,000). For start-up ordering and readiness probes: decisions never need it.
   */
  ready(timeoutMs?: number): Promise<void>;
}

type Op = "consume" | "peek" | "refund" | "charge" | "block";

/** Smallest sliding-window segment in strict mode, in ms (see RulePlan). */
const MIN_SEGMENT_MS = 0.001;

/** What a rule needs at call time, built once per compiled rule. */
class RulePlan implements BatchPlan {
  readonly command: string;
  readonly head: string;
  readonly tail: string;
  /** ARGV after the op, before the time override. */
  readonly params: readonly string[];
  /** Reads hit `index` of a script reply into a Decision of this rule. */
  readonly parse: (reply: unknown, index: number) => Decision;
  /** `parse` of hit 0. */
  readonly parseFirst: (reply: unknown) => Decision;
  readonly labels: Readonly<Record<Op, string>>;

  constructor(rule: CompiledRule, prefix: string) {
    const name = rule.algorithm.name;
    const spec = DECIDE_SCRIPTS[name as AlgorithmName];
    if (spec === undefined) {
      throw new InvalidArgumentError("rule.algorithm", "a built-in algorithm", name);
    }
    const p = rule.params;
    if (name === "sliding-window" && !(p.windowMs / p.segments >= MIN_SEGMENT_MS)) {
      // Redis time is epoch ms (~1.8e12): segment numbers must stay exact integers.
      throw new InvalidArgumentError(
        `rule "${rule.name}".windowMs`,
        `at least ${MIN_SEGMENT_MS} ms per segment for a strict sliding-window rule`,
        p.windowMs,
      );
    }
    this.command = spec.command;
    ({ head: this.head, tail: this.tail } = ruleKeyParts(prefix, rule.name, name));
    // String(x) is the shortest text that reads back as exactly x, in JS and in Lua's tonumber.
    this.params =
      name === "sliding-window"
        ? [String(p.capacity), String(p.windowMs), String(p.segments)]
        : [String(p.capacity), String(p.ratePerMs)];
    const capacity = p.capacity;
    this.parse = (reply, index) => parseReply(reply, index, capacity);
    this.parseFirst = (reply) => parseReply(reply, 0, capacity);
    this.labels = {
      consume: `decide on rule "${rule.name}"`,
      peek: `peek on rule "${rule.name}"`,
      refund: `refund on rule "${rule.name}"`,
      charge: `penalty on rule "${rule.name}"`,
      block: `block on rule "${rule.name}"`,
    };
  }
}

const OPTION_KEYS = [
  ...CONNECTION_OPTION_KEYS,
  "keyPrefix",
  "overLimitCache",
  "clock",
  "scriptNowMsForTesting",
];
const MAX_COST = 1e15;
/** Longest block, ms: the scripts' longest expiry. */
const MAX_TTL_MS = 1e13;

/**
 * Creates a strict store on Redis (5.0 or later; Cluster works). Throws InvalidArgumentError
 * naming the first bad option. The connection opens at once; calls made before it is up wait for
 * it until their deadline.
 *
 * @example
 * const strictStore = createRedisStrictStore({ url: "redis://127.0.0.1:6379" });
 * const limiter = createLimiter({
 *   rules: [{ name: "payments", limit: 100, windowMs: 60_000, mode: "strict" }],
 *   strictStore,
 * });
 * const d = await limiter.checkAsync("payments", "tenant:7");
 */
export function createRedisStrictStore(options: RedisStrictStoreOptions = {}): RedisStrictStore {
  return new RedisStrictStoreImpl(options);
}

class RedisStrictStoreImpl implements RedisStrictStore {
  readonly #link: RedisLink;
  readonly #prefix: string;
  readonly #clock: Clock;
  readonly #cache: OverLimitCache | undefined;
  readonly #plans = new WeakMap<CompiledRule, RulePlan>();
  readonly #nowText: () => string;
  readonly #batcher: DecideBatcher;
  #singleCalls = 0;

  constructor(options: RedisStrictStoreOptions) {
    const raw = expectObject("options", options);
    expectKnownKeys("options", raw, OPTION_KEYS);
    this.#prefix = expectKeyPrefix("options.keyPrefix", options.keyPrefix);
    this.#cache = makeCache(options.overLimitCache);
    if (options.clock !== undefined && typeof options.clock?.nowMs !== "function") {
      throw new InvalidArgumentError("options.clock", "a Clock", options.clock);
    }
    this.#clock = options.clock ?? monotonicClock;
    const nowFn = options.scriptNowMsForTesting;
    if (nowFn !== undefined && typeof nowFn !== "function") {
      throw new InvalidArgumentError("options.scriptNowMsForTesting", "a function", nowFn);
    }
    this.#nowText = nowFn === undefined ? () => "" : () => String(nowFn());
    this.#link = new RedisLink(options, "options", this.#clock);
    const client = this.#link.client;
    defineDecideScripts(client);
    this.#batcher = new DecideBatcher(client, client instanceof Cluster, this.#nowText);
  }

  decide(rule: CompiledRule, key: string, cost: number): Promise<Decision> {
    const plan = this.#plan(rule);
    if (typeof key !== "string") return Promise.reject(badKey(key));
    if (!(cost > 0 && cost <= MAX_COST)) return Promise.reject(badCost(cost));
    const redisKey = plan.head + key + plan.tail;
    const batcher = this.#batcher;
    const send: Sender = (sink) => batcher.consume(plan, redisKey, cost, sink);
    const cache = this.#cache;
    if (cache === undefined) {
      return this.#link.run<Decision>(rule.storeTimeoutMs, plan.labels.consume, send);
    }
    const sentAtMs = this.#clock.nowMs();
    const cached = cache.lookup(redisKey, cost, sentAtMs);
    if (cached !== undefined) return Promise.resolve(cached);
    return this.#link.run(rule.storeTimeoutMs, plan.labels.consume, send, (reply) => {
      const decision = reply as Decision; // the batcher delivers parsed decisions
      if (!decision.allowed) cache.remember(redisKey, cost, decision, sentAtMs);
      return decision;
    });
  }

  peek(rule: CompiledRule, key: string, cost?: number): Promise<Decision> {
    const plan = this.#plan(rule);
    if (typeof key !== "string") return Promise.reject(badKey(key));
    const c = cost ?? rule.defaultCost;
    if (!(c > 0 && c <= MAX_COST)) return Promise.reject(badCost(c));
    return this.#single(plan, "peek", rule, plan.head + key + plan.tail, c);
  }

  async adjust(rule: CompiledRule, key: string, cost: number): Promise<void> {
    if (cost < 0) {
      await this.refund(rule, key, -cost);
      return;
    }
    const plan = this.#plan(rule);
    if (typeof key !== "string") throw badKey(key);
    if (!(cost > 0 && cost <= MAX_COST)) throw badCost(cost);
    // A cached refusal still holds after a charge, but ends before the store's new retry time;
    // forgetting it lets the next hit learn that time.
    const redisKey = plan.head + key + plan.tail;
    await this.#single(plan, "charge", rule, redisKey, cost);
    this.#cache?.forget(redisKey);
  }

  /** Deletes the key: an absent key is at rest and not blocked, in every script. */
  async reset(rule: CompiledRule, key: string): Promise<void> {
    const plan = this.#plan(rule);
    if (typeof key !== "string") throw badKey(key);
    const redisKey = plan.head + key + plan.tail;
    const client = this.#link.client;
    const batcher = this.#batcher;
    this.#cache?.forget(redisKey);
    await this.#link.run(rule.storeTimeoutMs, `reset on rule "${rule.name}"`, () => {
      batcher.flush(); // hits queued earlier in this tick reach Redis first
      return client.del(redisKey);
    });
    this.#cache?.forget(redisKey); // a refusal remembered while the reset was in flight
  }

  async block(rule: CompiledRule, key: string, durationMs: number): Promise<void> {
    const plan = this.#plan(rule);
    if (typeof key !== "string") throw badKey(key);
    if (!(durationMs > 0 && durationMs <= MAX_TTL_MS)) {
      throw new InvalidArgumentError("durationMs", `a number > 0 and <= ${MAX_TTL_MS}`, durationMs);
    }
    const redisKey = plan.head + key + plan.tail;
    await this.#single(plan, "block", rule, redisKey, durationMs);
    // The store now refuses until the block ends; a shorter cached refusal would end before it.
    this.#cache?.forget(redisKey);
  }

  refund(rule: CompiledRule, key: string, cost: number): Promise<Decision> {
    const plan = this.#plan(rule);
    if (typeof key !== "string") return Promise.reject(badKey(key));
    if (!(cost > 0 && cost <= MAX_COST)) return Promise.reject(badCost(cost));
    const redisKey = plan.head + key + plan.tail;
    this.#cache?.forget(redisKey);
    return this.#single(plan, "refund", rule, redisKey, cost).then((decision) => {
      this.#cache?.forget(redisKey); // a refusal remembered while the refund was in flight
      return decision;
    });
  }

  stats(): RedisStrictStoreStats {
    return {
      storeCalls: this.#link.calls,
      scriptCalls: this.#batcher.scriptCalls + this.#singleCalls,
      overLimitCacheHits: this.#cache?.hits ?? 0,
      overLimitCacheEntries: this.#cache?.size ?? 0,
      timeouts: this.#link.timeouts,
      failures: this.#link.failures,
    };
  }

  ready(timeoutMs = 10_000): Promise<void> {
    const ms = optionalNumber("timeoutMs", timeoutMs, 10_000, { above: 0, max: 2 ** 31 - 1 });
    return this.#link.whenReady(ms);
  }

  async close(): Promise<void> {
    this.#cache?.clear();
    await this.#link.close();
  }

  /** One op other than a consume, unbatched: the n-key script with n = 1. */
  #single(
    plan: RulePlan,
    op: Exclude<Op, "consume">,
    rule: CompiledRule,
    redisKey: string,
    cost: number,
  ): Promise<Decision> {
    const client = this.#link.client;
    const nowText = this.#nowText;
    const batcher = this.#batcher;
    const send = () => {
      this.#singleCalls++;
      batcher.flush(); // hits queued earlier in this tick reach Redis first
      // numkeys, KEYS[1], then ARGV: op, the rule's parameters, the time override, the cost
      // (for "block", the duration).
      const args = ["1", redisKey, op, ...plan.params, nowText(), String(cost)];
      return runScript(client, plan.command, args);
    };
    return this.#link.run(rule.storeTimeoutMs, plan.labels[op], send, plan.parseFirst);
  }

  #plan(rule: CompiledRule): RulePlan {
    let plan = this.#plans.get(rule);
    if (plan === undefined) {
      if (typeof rule !== "object" || rule === null || typeof rule.params !== "object") {
        throw new InvalidArgumentError("rule", "a CompiledRule (from `limiter.rules`)", rule);
      }
      plan = new RulePlan(rule, this.#prefix);
      this.#plans.set(rule, plan);
    }
    return plan;
  }
}

function makeCache(option: RedisStrictStoreOptions["overLimitCache"]): OverLimitCache | undefined {
  if (option === false) return undefined;
  if (option === undefined) return new OverLimitCache(10_000);
  const raw = expectObject("options.overLimitCache", option);
  expectKnownKeys("options.overLimitCache", raw, ["maxEntries"]);
  const maxEntries = optionalNumber(
    "options.overLimitCache.maxEntries",
    raw["maxEntries"],
    10_000,
    { integer: true, min: 1, max: 10_000_000 },
  );
  return new OverLimitCache(maxEntries);
}

/** Reads hit `index` of `{allowed, remaining, resetAfterMs, retryAfterMs, ...}` from a script. */
function parseReply(reply: unknown, index: number, capacity: number): Decision {
  const at = index * 4;
  if (!Array.isArray(reply) || reply.length < at + 4) {
    throw new Error(`Unexpected script reply: ${String(JSON.stringify(reply)).slice(0, 200)}`);
  }
  return new DecisionResult(
    reply[at] === 1,
    Number(reply[at + 1]),
    capacity,
    number(reply[at + 2]),
    number(reply[at + 3]),
  );
}

/** A duration as the scripts send it: the integer 0, "inf", or "%.17g" text. */
function number(value: unknown): number {
  return value === "inf" ? Infinity : Number(value);
}

function badKey(key: unknown): InvalidArgumentError {
  return new InvalidArgumentError("key", "a string", key);
}

function badCost(cost: unknown): InvalidArgumentError {
  return new InvalidArgumentError("cost", `a finite number > 0 and <= ${MAX_COST}`, cost);
}
