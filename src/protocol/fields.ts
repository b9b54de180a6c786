/**
 * Field rules shared by encoders (which throw on a bad field: that is a bug in the sender) and
 * decoders (which drop the entry or the message: that is bad input from the wire).
 */
import { InvalidArgumentError } from "../errors.js";
import { MAX_U32 } from "./limits.js";

const ID = /^[A-Za-z0-9_-]{1,64}$/;

/** True for a node or aggregator id usable as one NATS subject token: `[A-Za-z0-9_-]{1,64}`. */
export function isId(value: unknown): value is string {
  return typeof value === "string" && ID.test(value);
}

/** True for an integer in [0, 2^32 - 1]. */
export function isU32(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= MAX_U32;
}

/** True for a finite number >= 0 (counts, allowances, durations, wall times). */
export function isNonNegative(value: unknown): value is number {
  return typeof value === "number" && value >= 0 && value <= Number.MAX_VALUE;
}

export const EXPECTED_ID = "a string of 1 to 64 characters from [A-Za-z0-9_-]";
export const EXPECTED_U32 = "an integer >= 0 and <= 4294967295";
export const EXPECTED_NON_NEGATIVE = "a finite number >= 0";

export function expectId(field: string, value: unknown): void {
  if (!isId(value)) throw new InvalidArgumentError(field, EXPECTED_ID, value);
}

export function expectU32(field: string, value: unknown): void {
  if (!isU32(value)) throw new InvalidArgumentError(field, EXPECTED_U32, value);
}

export function expectNonNegative(field: string, value: unknown): void {
  if (!isNonNegative(value)) throw new InvalidArgumentError(field, EXPECTED_NON_NEGATIVE, value);
}

/** Throws for a string the wire cannot carry (see {@link ByteWriter.str}). */
export function badString(field: string, value: unknown, maxBytes: number): never {
  throw new InvalidArgumentError(
    field,
    `a non-empty well-formed string of at most ${maxBytes} UTF-8 bytes`,
    value,
  );
}
