/**
 * Argument and config checks that fail with a message naming the field, what was expected and
 * what came: ``Expected `limit` to be a finite number > 0, got `0` (number) at `rules[2].limit` ``.
 */
import { InvalidArgumentError } from "./errors.js";

export interface NumberBounds {
  /** Inclusive lower bound. */
  readonly min?: number;
  /** Exclusive lower bound. */
  readonly above?: number;
  /** Inclusive upper bound. */
  readonly max?: number;
  readonly integer?: boolean;
}

function expectation(b: NumberBounds): string {
  const parts = [b.integer ? "an integer" : "a finite number"];
  if (b.above !== undefined) parts.push(`> ${b.above}`);
  if (b.min !== undefined) parts.push(`>= ${b.min}`);
  if (b.max !== undefined)
    parts.push(`${b.min !== undefined || b.above !== undefined ? "and " : ""}<= ${b.max}`);
  return parts.join(" ");
}

/** Returns `value` as a number within `bounds`, or throws an {@link InvalidArgumentError}. */
export function expectNumber(field: string, value: unknown, bounds: NumberBounds = {}): number {
  const ok =
    typeof value === "number" &&
    Number.isFinite(value) &&
    (!bounds.integer || Number.isInteger(value)) &&
    (bounds.min === undefined || value >= bounds.min) &&
    (bounds.above === undefined || value > bounds.above) &&
    (bounds.max === undefined || value <= bounds.max);
  if (!ok) throw new InvalidArgumentError(field, expectation(bounds), value);
  return value as number;
}

/** Like {@link expectNumber}, but `undefined` yields `fallback`. */
export function optionalNumber(
  field: string,
  value: unknown,
  fallback: number,
  bounds: NumberBounds = {},
): number {
  return value === undefined ? fallback : expectNumber(field, value, bounds);
}

/** Returns `value` if it is a boolean, or throws an {@link InvalidArgumentError}. */
export function expectBoolean(field: string, value: unknown): boolean {
  if (typeof value !== "boolean") throw new InvalidArgumentError(field, "true or false", value);
  return value;
}

/** Like {@link expectBoolean}, but `undefined` yields `fallback`. */
export function optionalBoolean(field: string, value: unknown, fallback: boolean): boolean {
  return value === undefined ? fallback : expectBoolean(field, value);
}

/** Returns `value` when it is a function or undefined, or throws an {@link InvalidArgumentError}. */
export function optionalFunction<F>(field: string, value: F | undefined): F | undefined {
  if (value !== undefined && typeof value !== "function") {
    throw new InvalidArgumentError(field, "a function", value);
  }
  return value;
}

/** Returns `value` if it is one of `choices`, else throws. */
export function expectOneOf<T extends string>(
  field: string,
  value: unknown,
  choices: readonly T[],
): T {
  if (typeof value !== "string" || !choices.includes(value as T)) {
    throw new InvalidArgumentError(
      field,
      `one of ${choices.map((c) => `"${c}"`).join(", ")}`,
      value,
    );
  }
  return value as T;
}

/** Returns `value` if it is a plain object, else throws. */
export function expectObject(field: string, value: unknown): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(field, "an object", value);
  }
  return value as Record<string, unknown>;
}

/** Rejects properties of `obj` that are not in `known`, to catch typos such as `windowMS`. */
export function expectKnownKeys(
  field: string,
  obj: Record<string, unknown>,
  known: readonly string[],
) {
  for (const key of Object.keys(obj)) {
    if (!known.includes(key)) {
      throw new InvalidArgumentError(
        `${field}.${key}`,
        `absent (known options: ${known.join(", ")})`,
        obj[key],
      );
    }
  }
}
