/**
 * Keys refused outright until a time (`Limiter.block`), per rule. Empty for almost every table,
 * so a decision pays one size check; a block past its end is forgotten when next read, or by
 * the sweep.
 */
import { type Decision, DecisionResult } from "../algorithms/types.js";

export class KeyBlocks {
  readonly #untilMs = new Map<string, number>();

  get size(): number {
    return this.#untilMs.size;
  }

  /** Refuses `key` until `untilMs`; a longer block already in force stays. */
  block(key: string, untilMs: number): void {
    const held = this.#untilMs.get(key);
    if (held === undefined || held < untilMs) this.#untilMs.set(key, untilMs);
  }

  unblock(key: string): void {
    this.#untilMs.delete(key);
  }

  /** The refusal of a hit on `key` at `nowMs` when it is blocked, else undefined. */
  refusal(key: string, nowMs: number, limit: number): Decision | undefined {
    const untilMs = this.#untilMs.get(key);
    if (untilMs === undefined) return undefined;
    if (untilMs <= nowMs) {
      this.#untilMs.delete(key);
      return undefined;
    }
    const waitMs = untilMs - nowMs;
    return new DecisionResult(false, 0, limit, waitMs, waitMs);
  }

  /** Forgets every block that has ended by `nowMs`. */
  sweep(nowMs: number): void {
    for (const [key, untilMs] of this.#untilMs) if (untilMs <= nowMs) this.#untilMs.delete(key);
  }
}
