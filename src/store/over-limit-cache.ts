/**
 * Keys known to be over their limit, remembered in process until they may pass again.
 *
 * When the shared store refuses a hit, it also says how long until a hit of that cost could pass
 * (`retryAfterMs`, assuming no other hits). Until then every hit of the same or a higher cost on
 * that key is refused too, so a flood on one hot key can be answered here instead of costing a
 * round trip each. The entry counts down on the local clock from when the refused call was *sent*:
 * the store decided after that, so the entry ends no later than the store's own retry time and
 * never refuses a hit the store would have admitted (unless someone refunds meanwhile: a refund
 * through the same store clears the entry; one from another process is not seen here, which can
 * only cause extra refusals, never extra admissions).
 *
 * Bounded: at most `maxEntries` keys; beyond that the oldest entry (in order of its last refusal
 * from the store) is dropped. Expired entries are dropped when looked up.
 */
import { type Decision, DecisionResult } from "../algorithms/types.js";

class Entry {
  constructor(
    /** Until when a hit of at least `cost` is refused, on the local clock (ms). */
    readonly untilMs: number,
    readonly cost: number,
    readonly remaining: number,
    readonly limit: number,
    /** When the key would be back at rest, on the local clock (ms). */
    readonly resetAtMs: number,
  ) {}
}

export class OverLimitCache {
  /** The most keys held. */
  readonly maxEntries: number;
  /** Lookups answered with a refusal. */
  hits = 0;
  readonly #entries = new Map<string, Entry>();

  constructor(maxEntries: number) {
    this.maxEntries = maxEntries;
  }

  get size(): number {
    return this.#entries.size;
  }

  /**
   * A refusal for a hit of `cost` on `key` at `nowMs` if the key is known to refuse it, with
   * `retryAfterMs` counting down; `undefined` when the store must be asked.
   */
  lookup(key: string, cost: number, nowMs: number): Decision | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (nowMs >= entry.untilMs) {
      this.#entries.delete(key);
      return undefined;
    }
    // A smaller hit may still fit (a bucket with 3 tokens refuses 5 but admits 2).
    if (cost < entry.cost) return undefined;
    this.hits++;
    const resetAfterMs = entry.resetAtMs - nowMs;
    return new DecisionResult(
      false,
      entry.remaining,
      entry.limit,
      resetAfterMs > 0 ? resetAfterMs : 0,
      entry.untilMs - nowMs,
    );
  }

  /**
   * Records the store's answer to a hit of `cost` on `key`, sent at `sentAtMs` on the local clock.
   * Only refusals with a finite wait are kept: a cost above the capacity never passes, and is
   * cheap to refuse at the store.
   */
  remember(key: string, cost: number, decision: Decision, sentAtMs: number): void {
    if (decision.allowed) return;
    const retryAfterMs = decision.retryAfterMs;
    if (!(retryAfterMs > 0 && retryAfterMs < Infinity)) return;
    this.#entries.delete(key); // re-inserting moves the key to the young end
    this.#entries.set(
      key,
      new Entry(
        sentAtMs + retryAfterMs,
        cost,
        decision.remaining,
        decision.limit,
        sentAtMs + decision.resetAfterMs,
      ),
    );
    if (this.#entries.size > this.maxEntries) {
      this.#entries.delete(this.#entries.keys().next().value!);
    }
  }

  /** Drops what is known about `key` (after a refund, capacity may be back). */
  forget(key: string): void {
    this.#entries.delete(key);
  }

  clear(): void {
    this.#entries.clear();
  }
}
