/**
 * Error classes. Each has a stable `name` and typed fields so callers can branch on them without
 * parsing messages.
 */

/** Base class of every error Sluice throws. */
export class SluiceError extends Error {
  override name = "SluiceError";
}

/** A function argument or configuration value is not what was expected. */
export class InvalidArgumentError extends SluiceError {
  override name = "InvalidArgumentError";
  /** Where the bad value sits, e.g. `cost` or `rules[2].limit`. */
  readonly field: string;
  /** What was expected, in words. */
  readonly expected: string;
  /** The value that came. */
  readonly received: unknown;

  constructor(field: string, expected: string, received: unknown, options?: ErrorOptions) {
    super(`Expected \`${field}\` to be ${expected}, got ${describe(received)}`, options);
    this.field = field;
    this.expected = expected;
    this.received = received;
  }
}

/** `check()` or `acquire()` named a rule the limiter does not have. */
export class UnknownRuleError extends SluiceError {
  override name = "UnknownRuleError";
  readonly rule: string;

  constructor(rule: string, known: readonly string[]) {
    super(
      `Expected \`rule\` to be one of ${known.map((r) => `\`${r}\``).join(", ") || "(no rules)"}, got ${describe(rule)}`,
    );
    this.rule = rule;
  }
}

/**
 * `acquire()` gave up without waiting because capacity could not come before the caller's
 * deadline (or ever, when the cost exceeds the rule's capacity).
 */
export class DeadlineExceededError extends SluiceError {
  override name = "DeadlineExceededError";
  /** How long the caller would have had to wait, in ms (Infinity if never). */
  readonly retryAfterMs: number;
  /** The time budget that was left when the call gave up, in ms. */
  readonly remainingMs: number;

  /**
   * @param message - replaces the default message (which speaks of capacity), e.g. for a
   *   deadline too short to forward a request with.
   */
  constructor(retryAfterMs: number, remainingMs: number, message?: string) {
    super(
      message ??
        (Number.isFinite(retryAfterMs)
          ? `Capacity frees up in ${round(retryAfterMs)} ms, past the deadline (${round(remainingMs)} ms left)`
          : "The cost exceeds what the rule can ever admit at once"),
    );
    this.retryAfterMs = retryAfterMs;
    this.remainingMs = remainingMs;
  }
}

/** The caller's `AbortSignal` fired before capacity was acquired. */
export class AbortedError extends SluiceError {
  override name = "AbortError";
}

/** The limiter was closed while a call waited, or a call came after `close()`. */
export class ClosedError extends SluiceError {
  override name = "ClosedError";
}

/**
 * A compare-and-set write to a shared store (the aggregators' group store) found the key at
 * another revision than expected, or existing when it was to be created.
 */
export class CasConflictError extends SluiceError {
  override name = "CasConflictError";
  readonly key: string;

  constructor(key: string, options?: ErrorOptions) {
    super(`The key "${key}" changed since it was read`, options);
    this.key = key;
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** Renders a received value for an error message: `` `0` (number) ``, `` `"x"` (string) ``. */
export function describe(value: unknown): string {
  if (value === null) return "`null`";
  if (value === undefined) return "`undefined`";
  const type = Array.isArray(value) ? "array" : typeof value;
  let text: string;
  try {
    text =
      typeof value === "string" ? JSON.stringify(value) : String(JSON.stringify(value) ?? value);
  } catch {
    text = String(value);
  }
  if (typeof value === "number") text = String(value); // NaN and Infinity, which JSON hides
  if (text.length > 60) text = `${text.slice(0, 57)}...`;
  return `\`${text}\` (${type})`;
}
