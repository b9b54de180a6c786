/**
 * The port strict-mode rules decide through: an exact, shared store (Redis in
 * `src/store/redis/`). The limiter owns the failure policy; the store only decides or throws.
 */
import type { Decision } from "../algorithms/types.js";
import { SluiceError } from "../errors.js";
import type { CompiledRule } from "./rule.js";

export interface StrictStore {
  /**
   * Decides a hit of `cost` for `key` under `rule` atomically against the shared store, with
   * the same algorithm and the same decision fields as the local limiter. Rejects with
   * {@link StoreUnavailableError} when the store does not answer in time.
   */
  decide(rule: CompiledRule, key: string, cost: number): Promise<Decision>;
  /**
   * What `decide` would answer for a hit of `cost`, consuming nothing. Rejects with
   * {@link StoreUnavailableError} like `decide`.
   */
  peek(rule: CompiledRule, key: string, cost: number): Promise<Decision>;
  /**
   * Key administration, atomically in the store: charges `cost` (> 0) or refunds `-cost` (< 0)
   * outside a decision, with `Algorithm.adjust`'s rules. Rejects like `decide`.
   */
  adjust(rule: CompiledRule, key: string, cost: number): Promise<void>;
  /** Puts `key` back at rest and lifts its block. Rejects like `decide`. */
  reset(rule: CompiledRule, key: string): Promise<void>;
  /**
   * Refuses every hit of `key` for `durationMs` from now (a longer block in force stays), with
   * the rest of the block as `retryAfterMs`. Rejects like `decide`.
   */
  block(rule: CompiledRule, key: string, durationMs: number): Promise<void>;
  /** Releases connections and timers. Idempotent. */
  close(): Promise<void>;
}

/** The strict store did not answer (down, timed out, script error). */
export class StoreUnavailableError extends SluiceError {
  override name = "StoreUnavailableError";
}
