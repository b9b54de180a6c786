/**
 * A global rule's `onAggregatorLoss` policy: how its keys are decided while the node follows no
 * aggregator (at start, and once the aggregator has been silent past `staleAfterMs`).
 *
 * - `open` admits every hit; `closed` refuses every hit, a sync interval (the pace at which an
 *   aggregator would answer) as the wait;
 * - `static` lets the rule's algorithm decide at the node's default share (limit / live nodes),
 *   except during a start-up hold (`setStaticHold`), when it refuses with the rest of the hold
 *   as the wait: a node that cannot yet know how many share the limit.
 */
import { type Decision, DecisionResult } from "../algorithms/types.js";
import type { CompiledRule } from "./rule.js";

export class LossPolicy {
  readonly #rule: CompiledRule;
  #lost = false;
  /** Until then (the table's clock), the `static` policy refuses. */
  #staticHoldUntilMs = Number.NEGATIVE_INFINITY;
  /** The node's sync interval: the `closed` policy's wait. */
  #syncIntervalMs = 25;

  constructor(rule: CompiledRule) {
    this.#rule = rule;
  }

  /** Partitions whose owner is lost (a group of aggregators), and how a key finds its own. */
  #lostParts: Uint8Array | undefined;
  #partitionOf: (rule: string, key: string) => number = () => 0;
  #silentSince: Float64Array | undefined;

  /** Whether the aggregator is lost for every key, so this policy decides. */
  get lost(): boolean {
    return this.#lost;
  }

  /**
   * Whether anything is lost or silent (else a key decides by its grant or default share): kept
   * by the setters, since every global decision reads it.
   */
  get any(): boolean {
    return this.#any;
  }

  #any = false;

  #updateAny(): void {
    this.#any = this.#lost || this.#lostParts !== undefined || this.#silentSince !== undefined;
  }

  /**
   * `key`'s partition, for {@link lostAt} and {@link silentSinceAt}: hashed only when some
   * partition (of more than one) is lost or silent.
   */
  partitionFor(key: string): number {
    const many = this.#lostParts !== undefined || (this.#silentSince?.length ?? 1) > 1;
    return many ? this.#partitionOf(this.#rule.name, key) : 0;
  }

  /** Whether this policy decides partition `p`'s keys (the aggregator, or `p`'s owner, lost). */
  lostAt(p: number): boolean {
    return this.#lost || this.#lostParts?.[p] === 1;
  }

  /**
   * When the aggregator (`p`'s owner) was last heard, if it has been silent for a moment (keys
   * holding a grant then decide by `GrantCells.decideSilent`); else NaN.
   */
  silentSinceAt(p: number): number {
    const s = this.#silentSince;
    if (s === undefined) return Number.NaN;
    return s.length === 1 ? s[0]! : s[p]!;
  }

  /**
   * Per partition (one entry: all keys), when its silent owner was last heard; NaN for one
   * heard lately. Undefined when none is silent.
   */
  setSilent(
    silentSince: Float64Array | undefined,
    partitionOf: (rule: string, key: string) => number,
  ): void {
    this.#silentSince = silentSince;
    this.#partitionOf = partitionOf;
    this.#updateAny();
  }

  setLost(lost: boolean): void {
    this.#lost = lost;
    this.#updateAny();
  }

  /** Marks the partitions (1 in `lost`) whose owner is lost; undefined when none is. */
  setPartitionsLost(
    lost: Uint8Array | undefined,
    partitionOf: (rule: string, key: string) => number,
  ): void {
    this.#lostParts = lost;
    this.#partitionOf = partitionOf;
    this.#updateAny();
  }

  setStaticHold(untilMs: number): void {
    this.#staticHoldUntilMs = untilMs;
  }

  setSyncIntervalMs(ms: number): void {
    this.#syncIntervalMs = ms;
  }

  /** The policy's decision at `nowMs`; undefined when the default share's algorithm decides. */
  decide(nowMs: number): Decision | undefined {
    const rule = this.#rule;
    const policy = rule.onAggregatorLoss;
    if (policy === "open") return new DecisionResult(true, rule.limit, rule.limit, 0, 0);
    if (policy === "closed") {
      return new DecisionResult(false, 0, rule.limit, rule.windowMs, this.#syncIntervalMs);
    }
    if (nowMs < this.#staticHoldUntilMs) {
      const waitMs = this.#staticHoldUntilMs - nowMs;
      return new DecisionResult(false, 0, rule.limit, rule.windowMs, waitMs);
    }
    return undefined;
  }
}
