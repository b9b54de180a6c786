/**
 * What a limiter and its `acquire()` are given: the options with their units, defaults and
 * bounds, and the checks that turn them into settled values or throw `InvalidArgumentError`
 * naming the first bad one.
 */
import { type Clock, monotonicClock } from "../clock/clock.js";
import { InvalidArgumentError } from "../errors.js";
import { expectKnownKeys, expectNumber, expectObject, optionalNumber } from "../validate.js";
import { type CompiledRule, compileRule, type RuleConfig } from "./rule.js";
import type { StrictStore } from "./strict-store.js";

export interface LimiterOptions {
  /** The rules this limiter enforces; names must be unique. At least one. */
  readonly rules: readonly RuleConfig[];
  /**
   * Default most keys held per rule (a rule's own `maxKeys` wins). Memory per key is a slot of
   * the rule's state plus the key string and its map entry; docs/benchmarks.md gives the figures.
   * @default 100_000
   */
  readonly maxKeys?: number;
  /**
   * How often keys at rest are reclaimed, in ms; 0 turns the sweep off (the `maxKeys` cap still
   * holds).
   * @default 10_000
   */
  readonly sweepIntervalMs?: number;
  /** Time source; tests pass a `ManualClock`. @default monotonicClock */
  readonly clock?: Clock;
  /** The shared store `mode: "strict"` rules decide through (e.g. `createRedisStrictStore`). */
  readonly strictStore?: StrictStore;
  /**
   * One `check()` in this many (a power of two) is timed into the decision-latency histogram;
   * 0 turns timing off. Timing every call would add a second clock read to each, about as
   * costly as the decision itself.
   * @default 64
   */
  readonly latencySampleEvery?: number;
}

export interface AcquireOptions {
  /** Cost of the hit. @default the rule's `cost` */
  readonly cost?: number;
  /** Give up when this fires; the wait is cancelled at once. */
  readonly signal?: AbortSignal;
  /**
   * Absolute deadline on the limiter's clock (`limiter.nowMs()`): when capacity cannot come by
   * then, the call rejects at once with `DeadlineExceededError` instead of waiting.
   */
  readonly deadlineMs?: number;
  /** Relative form of `deadlineMs`: the most ms to wait from now. Both may be given; the earlier wins. */
  readonly timeoutMs?: number;
}

/** The limiter's options, checked, with their defaults filled in. */
export interface SettledLimiterOptions {
  /** Compiled in configuration order; names unique. */
  readonly rules: readonly CompiledRule[];
  readonly sweepIntervalMs: number;
  readonly clock: Clock;
  readonly strictStore: StrictStore | undefined;
  /** 0 (off) or a power of two. */
  readonly latencySampleEvery: number;
}

/** One `acquire()` call's options, checked, with their defaults filled in. */
export interface SettledAcquireOptions {
  readonly cost: number;
  readonly signal: AbortSignal | undefined;
  /** Infinity when neither `deadlineMs` nor `timeoutMs` was given. */
  readonly deadlineMs: number;
}

const OPTION_KEYS = [
  "rules",
  "maxKeys",
  "sweepIntervalMs",
  "clock",
  "strictStore",
  "latencySampleEvery",
];
const ACQUIRE_KEYS = ["cost", "signal", "deadlineMs", "timeoutMs"];
/** Largest cost of one hit. */
export const MAX_COST = 1e15;

export function settleLimiterOptions(options: LimiterOptions): SettledLimiterOptions {
  const raw = expectObject("options", options);
  expectKnownKeys("options", raw, OPTION_KEYS);
  if (!Array.isArray(options.rules) || options.rules.length === 0) {
    throw new InvalidArgumentError("rules", "a non-empty array of rules", options.rules);
  }
  const maxKeys = optionalNumber("maxKeys", options.maxKeys, 100_000, {
    integer: true,
    min: 1,
    max: 2 ** 26,
  });
  const sweepIntervalMs = optionalNumber("sweepIntervalMs", options.sweepIntervalMs, 10_000, {
    min: 0,
    max: 2 ** 31 - 1,
  });
  const clock = options.clock ?? monotonicClock;
  const sampleEvery = optionalNumber("latencySampleEvery", options.latencySampleEvery, 64, {
    integer: true,
    min: 0,
    max: 2 ** 30,
  });
  if (sampleEvery !== 0 && (sampleEvery & (sampleEvery - 1)) !== 0) {
    throw new InvalidArgumentError("latencySampleEvery", "0 or a power of two", sampleEvery);
  }
  const rules = options.rules.map((r, i) => compileRule(r, `rules[${i}]`, maxKeys));
  const names = new Set<string>();
  for (const [i, rule] of rules.entries()) {
    if (names.has(rule.name)) {
      throw new InvalidArgumentError(`rules[${i}].name`, "a name no other rule has", rule.name);
    }
    if (rule.mode === "strict" && options.strictStore === undefined) {
      throw new InvalidArgumentError(
        "strictStore",
        `a StrictStore, since rules[${i}] ("${rule.name}") has mode "strict"`,
        options.strictStore,
      );
    }
    names.add(rule.name);
  }
  return {
    rules,
    sweepIntervalMs,
    clock,
    strictStore: options.strictStore,
    latencySampleEvery: sampleEvery,
  };
}

/** `defaultCost`: the rule's; `clock` is read only for `timeoutMs`. */
export function settleAcquireOptions(
  options: AcquireOptions,
  defaultCost: number,
  clock: Clock,
): SettledAcquireOptions {
  expectKnownKeys("options", expectObject("options", options), ACQUIRE_KEYS);
  const cost =
    options.cost === undefined
      ? defaultCost
      : expectNumber("options.cost", options.cost, { above: 0, max: MAX_COST });
  const signal = options.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidArgumentError("options.signal", "an AbortSignal", signal);
  }
  let deadlineMs = Infinity;
  if (options.deadlineMs !== undefined) {
    deadlineMs = expectNumber("options.deadlineMs", options.deadlineMs);
  }
  if (options.timeoutMs !== undefined) {
    const timeoutMs = expectNumber("options.timeoutMs", options.timeoutMs, { min: 0 });
    deadlineMs = Math.min(deadlineMs, clock.nowMs() + timeoutMs);
  }
  return { cost, signal, deadlineMs };
}
