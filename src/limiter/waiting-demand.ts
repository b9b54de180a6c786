/**
 * Global rules: the cost waiting in `acquire()`, by key. While it waits, every drain reports it
 * as rejected cost in the key's counts, so the aggregator sees the key is wanted at every tick
 * and grants it as soon as its window frees: a node whose only demand is a waiting call would
 * otherwise report nothing, and be granted nothing. Not a decision: the rule's rejected-hit
 * counter is left alone (a call that gives up counts once, when it does).
 */
import { EPSILON } from "../algorithms/types.js";

export class WaitingDemand {
  readonly byKey = new Map<string, number>();

  get size(): number {
    return this.byKey.size;
  }

  /** `cost` starts (or, negative, stops) waiting for `key`. */
  add(key: string, cost: number): void {
    const left = (this.byKey.get(key) ?? 0) + cost;
    if (left > EPSILON) this.byKey.set(key, left);
    else this.byKey.delete(key);
  }
}
