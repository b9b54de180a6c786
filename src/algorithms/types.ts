/**
 * The shape every algorithm shares.
 *
 * An algorithm is a set of pure functions over a state slot: a run of `stride` numbers inside a
 * caller-owned `Float64Array`, starting at `offset`. The result depends only on (state, params,
 * nowMs, cost); nothing reads a clock or a global. `decide` writes the new state back into the
 * slot instead of returning a copy: the keyed limiter keeps every key's state in one typed array,
 * and an allocation-free update is what keeps a decision well under a microsecond.
 */

/** The outcome of one decision. All durations are milliseconds on the caller's clock. */
export interface Decision {
  /** Whether the hit was admitted (and its cost consumed). */
  readonly allowed: boolean;
  /** Whole units of cost that could still be admitted right now, after this decision (>= 0). */
  readonly remaining: number;
  /** The rule's limit: the capacity (burst) for buckets, the per-window limit for windows. */
  readonly limit: number;
  /** Time until the state is back to rest (full bucket, empty window) if no more hits come. */
  readonly resetAfterMs: number;
  /**
   * Time until a hit of the same cost would be admitted if no other hits come: 0 when allowed,
   * `Infinity` when the cost can never be admitted (it exceeds the capacity).
   */
  readonly retryAfterMs: number;
  /**
   * True on a hit a rule in shadow mode would have refused: it is let through (`allowed` is
   * true) and counted as a would-be rejection, and the other fields say what enforcing would
   * have said (`remaining` 0, `retryAfterMs` the wait). Absent on every other decision.
   */
  readonly shadowed?: boolean;
}

/** Parameters derived once from a rule; shared by all keys of that rule. */
export interface AlgorithmParams {
  /** Capacity: the most cost admitted at once from rest. */
  readonly capacity: number;
  /** Steady rate in cost units per millisecond. */
  readonly ratePerMs: number;
  /** Window length in ms (windowed algorithms and reporting). */
  readonly windowMs: number;
  /** Segments per window (sliding window only; 1 for the others). */
  readonly segments: number;
}

/** What the keyed limiter needs from an algorithm. */
export interface Algorithm {
  readonly name: AlgorithmName;
  /** Numbers of state per key. */
  stride(params: AlgorithmParams): number;
  /** Writes the rest state (nothing consumed) of a key first seen at `nowMs`. */
  init(state: Float64Array, offset: number, params: AlgorithmParams, nowMs: number): void;
  /** Decides a hit of `cost` at `nowMs`, consuming the cost if admitted. */
  decide(
    state: Float64Array,
    offset: number,
    params: AlgorithmParams,
    nowMs: number,
    cost: number,
  ): Decision;
  /** Reports what `decide` would, without consuming anything or changing the state. */
  peek(
    state: Float64Array,
    offset: number,
    params: AlgorithmParams,
    nowMs: number,
    cost: number,
  ): Decision;
  /**
   * Charges `cost` (> 0) or refunds `-cost` (< 0) outside a decision, unconditionally: a charge
   * may take the state past its capacity (later hits then wait longer), a refund never takes it
   * past rest (a full bucket, an empty window).
   */
  adjust(
    state: Float64Array,
    offset: number,
    params: AlgorithmParams,
    nowMs: number,
    cost: number,
  ): void;
  /** True when the state is back at rest at `nowMs`, so forgetting the key changes no decision. */
  isAtRest(state: Float64Array, offset: number, params: AlgorithmParams, nowMs: number): boolean;
}

export type AlgorithmName = "token-bucket" | "gcra" | "sliding-window";

/**
 * Slack for floating-point comparisons, in cost units. Rates like 1/3 per ms accumulate rounding
 * in the last bits; without this, a hit due at exactly the refill instant could be refused.
 */
export const EPSILON = 1e-9;

/** A concrete, monomorphic decision object (one hidden class for every algorithm). */
export class DecisionResult implements Decision {
  constructor(
    readonly allowed: boolean,
    readonly remaining: number,
    readonly limit: number,
    readonly resetAfterMs: number,
    readonly retryAfterMs: number,
  ) {}
}
