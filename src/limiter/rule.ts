/**
 * Rules: what a user configures, validated once and compiled into algorithm parameters.
 */
import { algorithms } from "../algorithms/index.js";
import type { Algorithm, AlgorithmName, AlgorithmParams } from "../algorithms/types.js";
import { InvalidArgumentError } from "../errors.js";
import {
  expectKnownKeys,
  expectNumber,
  expectObject,
  expectOneOf,
  optionalBoolean,
  optionalNumber,
} from "../validate.js";

/** One rate limit, applied separately to every key (user, route, tenant...) it is checked with. */
export interface RuleConfig {
  /** Unique name, 1-64 characters of `A-Z a-z 0-9 _ . : -`. Appears in metrics as `rule`. */
  readonly name: string;
  /**
   * - `token-bucket`: rate `limit / windowMs`, bursts up to `burst`.
   * - `gcra`: same admitted traffic as the token bucket, one number of state per key.
   * - `sliding-window`: at most `limit` per `windowMs` (segmented estimate, see docs).
   * @default "token-bucket"
   */
  readonly algorithm?: AlgorithmName;
  /**
   * Cost admitted per `windowMs` (the steady rate for buckets). A finite number > 0; fractions
   * are allowed, e.g. `limit: 1, windowMs: 3000` for one hit every 3 s.
   * @example 100
   */
  readonly limit: number;
  /** Window length in ms, >= 1 and <= 1 year. @example 1000 */
  readonly windowMs: number;
  /**
   * Bucket capacity: most cost admitted at once from rest (token-bucket and gcra only).
   * @default limit
   */
  readonly burst?: number;
  /** Segments per window (sliding-window only), an integer 1..60. @default 10 */
  readonly segments?: number;
  /** Cost of a hit when `check()` is called without one. A finite number > 0. @default 1 */
  readonly cost?: number;
  /** Most keys held for this rule; beyond it the least recently used idle key is evicted. */
  readonly maxKeys?: number;
  /**
   * - `local`: decided in process memory only, per process (`check()`).
   * - `global`: decided in process memory (`check()`) against this node's grant from the
   *   aggregator, so all nodes together hold `limit` per `windowMs` (a node agent is needed).
   * - `strict`: decided exactly against the shared store (`checkAsync()`; needs `strictStore`).
   * @default "local"
   */
  readonly mode?: RuleMode;
  /**
   * Global rules: what a node does while the aggregator is silent past its `staleAfterMs`:
   * `static` decides with the rule's algorithm at the default share (limit / last known live
   * nodes), `open` admits everything, `closed` refuses everything.
   * @default "static"
   */
  readonly onAggregatorLoss?: AggregatorLossPolicy;
  /**
   * Strict rules: what to decide when the store does not answer within `storeTimeoutMs`:
   * `open` admits, `closed` refuses, `local` decides with this process's own table at the rule's
   * limit (so the limit then holds per process, not across them).
   * @default "local"
   */
  readonly onStoreFailure?: StoreFailurePolicy;
  /** Strict rules: how long to wait for the store before `onStoreFailure` applies, in ms. @default 50 */
  readonly storeTimeoutMs?: number;
  /**
   * Shadow mode: the rule decides and counts as usual but never refuses. A hit it would refuse
   * is let through, consumes nothing, and is counted as a would-be rejection (`shadowedHits`,
   * outcome `shadowed` in the metrics), so a new limit can be tried on real traffic first.
   * @default false
   */
  readonly shadow?: boolean;
}

export type RuleMode = "local" | "global" | "strict";
export type AggregatorLossPolicy = "static" | "open" | "closed";
export type StoreFailurePolicy = "open" | "closed" | "local";

/** A rule after validation, with its derived parameters. */
export interface CompiledRule {
  readonly name: string;
  readonly algorithm: Algorithm;
  readonly params: AlgorithmParams;
  readonly limit: number;
  readonly windowMs: number;
  readonly defaultCost: number;
  readonly maxKeys: number;
  readonly mode: RuleMode;
  readonly onAggregatorLoss: AggregatorLossPolicy;
  readonly onStoreFailure: StoreFailurePolicy;
  readonly storeTimeoutMs: number;
  readonly shadow: boolean;
}

const NAME_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;
const YEAR_MS = 366 * 24 * 3600 * 1000;
const RULE_KEYS = [
  "name",
  "algorithm",
  "limit",
  "windowMs",
  "burst",
  "segments",
  "cost",
  "maxKeys",
  "mode",
  "onAggregatorLoss",
  "onStoreFailure",
  "storeTimeoutMs",
  "shadow",
];

/** Validates one rule; `at` is where it sits in the caller's config, e.g. `rules[2]`. */
export function compileRule(input: unknown, at: string, defaultMaxKeys: number): CompiledRule {
  const raw = expectObject(at, input);
  expectKnownKeys(at, raw, RULE_KEYS);
  if (typeof raw["name"] !== "string" || !NAME_PATTERN.test(raw["name"])) {
    throw new InvalidArgumentError(
      `${at}.name`,
      "a string of 1-64 characters from A-Z a-z 0-9 _ . : -",
      raw["name"],
    );
  }
  const name = raw["name"];
  const algorithmName =
    raw["algorithm"] === undefined
      ? "token-bucket"
      : expectOneOf(
          `${at}.algorithm`,
          raw["algorithm"],
          Object.keys(algorithms) as AlgorithmName[],
        );
  const limit = expectNumber(`${at}.limit`, raw["limit"], { above: 0, max: 1e15 });
  const windowMs = expectNumber(`${at}.windowMs`, raw["windowMs"], { min: 1, max: YEAR_MS });
  if (algorithmName === "sliding-window" && raw["burst"] !== undefined) {
    throw new InvalidArgumentError(
      `${at}.burst`,
      "absent for a sliding-window rule (its capacity is `limit` per window)",
      raw["burst"],
    );
  }
  if (algorithmName !== "sliding-window" && raw["segments"] !== undefined) {
    throw new InvalidArgumentError(
      `${at}.segments`,
      `absent for a ${algorithmName} rule (segments apply to sliding-window only)`,
      raw["segments"],
    );
  }
  const burst = optionalNumber(`${at}.burst`, raw["burst"], limit, { above: 0, max: 1e15 });
  const segments = optionalNumber(`${at}.segments`, raw["segments"], 10, {
    integer: true,
    min: 1,
    max: 60,
  });
  const defaultCost = optionalNumber(`${at}.cost`, raw["cost"], 1, { above: 0, max: 1e15 });
  const maxKeys = optionalNumber(`${at}.maxKeys`, raw["maxKeys"], defaultMaxKeys, {
    integer: true,
    min: 1,
    max: 2 ** 26,
  });
  const mode =
    raw["mode"] === undefined
      ? "local"
      : expectOneOf(`${at}.mode`, raw["mode"], ["local", "global", "strict"]);
  const onAggregatorLoss =
    raw["onAggregatorLoss"] === undefined
      ? "static"
      : expectOneOf(`${at}.onAggregatorLoss`, raw["onAggregatorLoss"], [
          "static",
          "open",
          "closed",
        ]);
  const onStoreFailure =
    raw["onStoreFailure"] === undefined
      ? "local"
      : expectOneOf(`${at}.onStoreFailure`, raw["onStoreFailure"], ["open", "closed", "local"]);
  const storeTimeoutMs = optionalNumber(`${at}.storeTimeoutMs`, raw["storeTimeoutMs"], 50, {
    above: 0,
    max: 60_000,
  });
  return {
    name,
    algorithm: algorithms[algorithmName],
    params: {
      capacity: algorithmName === "sliding-window" ? limit : burst,
      ratePerMs: limit / windowMs,
      windowMs,
      segments: algorithmName === "sliding-window" ? segments : 1,
    },
    limit,
    windowMs,
    defaultCost,
    maxKeys,
    mode,
    onAggregatorLoss,
    onStoreFailure,
    storeTimeoutMs,
    shadow: optionalBoolean(`${at}.shadow`, raw["shadow"], false),
  };
}
