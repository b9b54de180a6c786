/**
 * Decisions of `mode: "strict"` rules: taken by the shared store, and, when the store does not
 * answer (`StoreUnavailableError`), by the rule's `onStoreFailure` policy: `local` decides with
 * this process's own table, `open` admits, `closed` refuses with the store's timeout as the wait.
 * Every such failure is counted on the rule's table. Other errors propagate.
 */
import { type Decision, DecisionResult } from "../algorithms/types.js";
import type { Clock } from "../clock/clock.js";
import type { KeyCommand } from "./key-command.js";
import type { KeyTable } from "./key-table.js";
import type { CompiledRule } from "./rule.js";
import { StoreUnavailableError, type StrictStore } from "./strict-store.js";

/** A strict decision, and whether it is already accounted in the local table. */
export interface StrictDecision {
  readonly decision: Decision;
  /**
   * True only when the `local` policy admitted with the local table (which then counted it);
   * the caller accounts the rest, so a refused attempt of `acquire()` that will be retried is
   * not counted as a rejection.
   */
  readonly accounted: boolean;
}

export class StrictDecisions {
  readonly #store: StrictStore;
  readonly #clock: Clock;

  constructor(store: StrictStore, clock: Clock) {
    this.#store = store;
    this.#clock = clock;
  }

  /** One decision through the store, with the rule's failure policy. */
  async decide(table: KeyTable, key: string, cost: number): Promise<StrictDecision> {
    const r = table.rule;
    try {
      return { decision: await this.#store.decide(r, key, cost), accounted: false };
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      table.storeFailures++;
      if (r.onStoreFailure === "local") {
        const nowMs = this.#clock.nowMs();
        const preview = table.peek(key, nowMs, cost);
        if (!preview.allowed) return { decision: preview, accounted: false };
        const decision = table.decide(key, nowMs, cost);
        return { decision, accounted: true };
      }
      return { decision: storeFailureDecision(r), accounted: false };
    }
  }

  /** What the store's next decision would be, consuming nothing, with the failure policy. */
  async peek(table: KeyTable, key: string, cost: number): Promise<Decision> {
    const r = table.rule;
    try {
      return await this.#store.peek(r, key, cost);
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      table.storeFailures++;
      if (r.onStoreFailure === "local") return table.peek(key, this.#clock.nowMs(), cost);
      return storeFailureDecision(r);
    }
  }

  /**
   * Gives back `cost` taken by an admitted decision (one `decideAll` refused in the end): in the
   * local table when the `local` policy took it, else in the store. A refund the store does not
   * take is counted as a store failure and lost: the key is then short of it for a window.
   */
  async refund(table: KeyTable, key: string, cost: number, accounted: boolean): Promise<void> {
    if (accounted) {
      table.adjust(key, this.#clock.nowMs(), -cost);
      return;
    }
    try {
      await this.#store.adjust(table.rule, key, -cost);
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      table.storeFailures++;
    }
  }

  /** Key administration on a strict rule, in the store; store failures reach the caller. */
  administer(rule: CompiledRule, command: KeyCommand): Promise<void> {
    const store = this.#store;
    switch (command.op) {
      case "reset":
        return store.reset(rule, command.key);
      case "penalty":
        return store.adjust(rule, command.key, command.cost);
      case "reward":
        return store.adjust(rule, command.key, -command.cost);
      case "block":
        return store.block(rule, command.key, command.durationMs);
    }
  }

  close(): Promise<void> {
    return this.#store.close();
  }
}

/** The `open` or `closed` policy's answer for a strict rule whose store did not answer. */
function storeFailureDecision(r: CompiledRule): Decision {
  const open = r.onStoreFailure === "open";
  return new DecisionResult(open, 0, r.params.capacity, 0, open ? 0 : r.storeTimeoutMs);
}
