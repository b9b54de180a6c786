/**
 * Redis key names.
 *
 * A rule's state for one key lives at `<prefix>{<rule>|<key>}:<algorithm>`, e.g.
 * `sluice:{api|user:42}:tb`. The braces are a Redis Cluster hash tag: only the part inside
 * decides the slot, so each (rule, key) lands on one node and a future script touching several of
 * its keys stays single-slot, while different keys still spread over the cluster. `|` separates
 * the rule from the key because rule names may contain `:` but never `|`, so `{a:b|c}` and
 * `{a|b:c}` cannot collide. The algorithm suffix keeps a rule whose algorithm changes from
 * reading state written by another. The prefix may not contain braces, which would move the tag.
 */
import type { AlgorithmName } from "../../algorithms/types.js";
import { InvalidArgumentError } from "../../errors.js";

export const DEFAULT_KEY_PREFIX = "sluice:";

const ALGORITHM_SUFFIX: Readonly<Record<AlgorithmName, string>> = {
  "token-bucket": "}:tb",
  gcra: "}:gcra",
  "sliding-window": "}:sw",
};

/** Returns `value` as a key prefix (at most 128 characters, no `{` or `}`), or throws. */
export function expectKeyPrefix(field: string, value: unknown): string {
  if (value === undefined) return DEFAULT_KEY_PREFIX;
  if (typeof value !== "string" || value.length > 128 || /[{}]/.test(value)) {
    throw new InvalidArgumentError(
      field,
      "a string of at most 128 characters without `{` or `}` (they would move the hash tag)",
      value,
    );
  }
  return value;
}

/** The parts around the user's key: `head + key + tail` is the Redis key. */
export function ruleKeyParts(
  prefix: string,
  rule: string,
  algorithm: AlgorithmName,
): { readonly head: string; readonly tail: string } {
  return { head: `${prefix}{${rule}|`, tail: ALGORITHM_SUFFIX[algorithm] };
}

/** The key of checkpoint `name`: `<prefix>checkpoint:{<name>}`. */
export function checkpointKey(prefix: string, name: string): string {
  return `${prefix}checkpoint:{${name}}`;
}
