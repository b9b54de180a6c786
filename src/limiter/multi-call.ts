/** Argument checks of `decideAll` and of key administration. */
import { InvalidArgumentError } from "../errors.js";
import { expectKnownKeys, expectNumber, expectObject, optionalBoolean } from "../validate.js";
import type { KeyTable } from "./key-table.js";
import { MAX_COST } from "./limiter-options.js";
import type { DecideAllOptions, MultiCall } from "./multi-decision.js";

/** Longest block, ms. */
export const YEAR_MS = 366 * 24 * 3600 * 1000;
/** Most rules one `decideAll` call decides. */
export const MAX_RULES_PER_CALL = 16;

/** Checks a `decideAll` call; `tableOf` throws for an unknown rule (or a closed limiter). */
export function settleMultiCall(
  rules: string | readonly string[],
  key: string,
  options: DecideAllOptions,
  tableOf: (rule: string) => KeyTable,
): MultiCall {
  const names = typeof rules === "string" ? [rules] : rules;
  if (!Array.isArray(names) || names.length === 0 || names.length > MAX_RULES_PER_CALL) {
    throw new InvalidArgumentError(
      "rules",
      `a rule name or an array of 1 to ${MAX_RULES_PER_CALL} rule names`,
      rules,
    );
  }
  if (typeof key !== "string") throw new InvalidArgumentError("key", "a string", key);
  expectKnownKeys("options", expectObject("options", options), ["cost", "shadow"]);
  const cost =
    options.cost === undefined
      ? undefined
      : expectNumber("options.cost", options.cost, { above: 0, max: MAX_COST });
  const shadow = optionalBoolean("options.shadow", options.shadow, false);
  const tables: KeyTable[] = [];
  for (const [i, name] of names.entries()) {
    if (typeof name !== "string")
      throw new InvalidArgumentError(`rules[${i}]`, "a rule name", name);
    const table = tableOf(name);
    if (tables.includes(table)) {
      throw new InvalidArgumentError(`rules[${i}]`, "a rule not already in the list", name);
    }
    tables.push(table);
  }
  return { tables, key, costs: tables.map((t) => cost ?? t.rule.defaultCost), shadow };
}

/** Checks the cost of a `penalty` or `reward`. */
export function adminCost(cost: unknown): number {
  return expectNumber("cost", cost, { above: 0, max: MAX_COST });
}
