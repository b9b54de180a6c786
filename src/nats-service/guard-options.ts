/**
 * Options of the NATS service guard, declared once with their validation.
 */
import type { Decision } from "../algorithms/types.js";
import { InvalidArgumentError } from "../errors.js";
import { optionalBoolean, optionalFunction, optionalNumber } from "../validate.js";

/**
 * What the guard needs of a request, structurally: a core `Msg` and an `@nats-io/services`
 * `ServiceMsg` both fit (each from its own copy of nats-core).
 */
export interface RequestMsg {
  readonly subject: string;
  readonly reply?: string | undefined;
  readonly headers?: { get(key: string): string } | undefined;
  respond(data?: Uint8Array | string, opts?: { headers?: unknown }): boolean;
}

/** Why a request was refused without running the handler. */
export type RefusalReason = "limited" | "deadline-exceeded" | "bad-deadline";

/** What `onLimited` learns about a refused request. */
export interface Refusal {
  readonly reason: RefusalReason;
  /** The service error code replied with (429, 504 or 400). */
  readonly code: number;
  /** The key the request was decided under ("" for a bad or expired deadline). */
  readonly key: string;
  /** Ms until a retry may be admitted; `Infinity` when the cost never fits; 0 if unknown. */
  readonly retryAfterMs: number;
  /** The refusing rule's decision, when a rule refused. */
  readonly decision: Decision | undefined;
}

export interface GuardOptions<M extends RequestMsg = RequestMsg> {
  /** The rule every request must fit. Give this or `rules`, not both. */
  readonly rule?: string;
  /**
   * Rules a request must fit all of; a refused request consumes from none. Decided together,
   * without waiting (a deadline is honoured by the 504 check on receipt only).
   */
  readonly rules?: readonly string[];
  /**
   * The limiter key of a request.
   * @default the value of `keyHeader` when given and present, else the subject
   * @example key: (msg) => msg.headers?.get("Tenant") ?? "anonymous"
   */
  readonly key?: (msg: M) => string;
  /** Header whose value is the key (when `key` is not given); the subject when absent. */
  readonly keyHeader?: string;
  /**
   * Cost of a request, > 0.
   * @default each rule's `cost`
   * @example cost: (msg) => Math.max(1, Math.ceil(msg.data.length / 1024))
   */
  readonly cost?: (msg: M) => number;
  /**
   * Let refused requests through, counted as would-be rejections (a rollout switch). With a
   * deadline the guard then never waits.
   * @default false
   */
  readonly shadow?: boolean;
  /**
   * Most ms a single-rule request without a deadline may wait for capacity; with a deadline,
   * the wait ends at whichever comes first. 0 decides at once. Bounds: 0 to 2^31-1.
   * @default 0
   */
  readonly maxWaitMs?: number;
  /** Called for each refused request, after the error reply was sent. Must not throw. */
  readonly onLimited?: (msg: M, refusal: Refusal) => void;
}

export interface SettledGuardOptions<M extends RequestMsg> {
  readonly rules: readonly string[];
  readonly key: (msg: M) => string;
  readonly cost: ((msg: M) => number) | undefined;
  readonly shadow: boolean;
  readonly maxWaitMs: number;
  readonly onLimited: ((msg: M, refusal: Refusal) => void) | undefined;
}

const KNOWN = ["rule", "rules", "key", "keyHeader", "cost", "shadow", "maxWaitMs", "onLimited"];

/** Checks guard options; throws `InvalidArgumentError` naming the first bad one. */
export function settleGuardOptions<M extends RequestMsg>(
  options: GuardOptions<M>,
): SettledGuardOptions<M> {
  if (typeof options !== "object" || options === null) {
    throw new InvalidArgumentError("options", "an object", options);
  }
  for (const k of Object.keys(options)) {
    if (!KNOWN.includes(k))
      throw new InvalidArgumentError(`options.${k}`, "not set (unknown option)", k);
  }
  return {
    rules: settleRules(options),
    key: settleKey(options),
    cost: optionalFunction("options.cost", options.cost),
    shadow: optionalBoolean("options.shadow", options.shadow, false),
    maxWaitMs: optionalNumber("options.maxWaitMs", options.maxWaitMs, 0, {
      min: 0,
      max: 2 ** 31 - 1,
    }),
    onLimited: optionalFunction("options.onLimited", options.onLimited),
  };
}

function settleRules(options: GuardOptions<never>): readonly string[] {
  if (options.rule !== undefined && options.rules !== undefined) {
    throw new InvalidArgumentError("options.rules", "absent when `rule` is given", options.rules);
  }
  const rules = options.rule !== undefined ? [options.rule] : options.rules;
  if (!Array.isArray(rules) || rules.length === 0) {
    throw new InvalidArgumentError(
      "options.rule",
      "a rule name (or `rules`, a non-empty array)",
      rules,
    );
  }
  rules.forEach((r, i) => {
    if (typeof r !== "string" || r === "") {
      throw new InvalidArgumentError(`options.rules[${i}]`, "a non-empty string", r);
    }
  });
  if (new Set(rules).size !== rules.length) {
    throw new InvalidArgumentError("options.rules", "distinct rule names", rules);
  }
  return [...rules];
}

function settleKey<M extends RequestMsg>(options: GuardOptions<M>): (msg: M) => string {
  const key = optionalFunction("options.key", options.key);
  if (key) return key;
  const header = options.keyHeader;
  if (header === undefined) return (msg) => msg.subject;
  if (typeof header !== "string" || header === "") {
    throw new InvalidArgumentError("options.keyHeader", "a non-empty header name", header);
  }
  return (msg) => msg.headers?.get(header) || msg.subject;
}
