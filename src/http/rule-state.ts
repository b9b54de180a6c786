/**
 * What the headers say about one rule for one request, in whole seconds, derived from the
 * limiter's decision. In: the rule's limit and window, its decision, whether it refused. Out:
 * `quota` (q), `windowS` (w), `remaining` (r), `resetS` (t).
 *
 * `resetS` is the time until the key is back to rest for an admitting rule, and the time until
 * the same request would be admitted for a refusing one; an admission that can never come
 * (`retryAfterMs` Infinity) reports the window. Seconds round up, never down: a client that
 * waits `t` seconds has waited at least as long as the limiter asks.
 */
import type { Decision } from "../algorithms/types.js";

export interface RuleState {
  readonly name: string;
  readonly quota: number;
  readonly windowS: number;
  readonly remaining: number;
  readonly resetS: number;
  readonly refused: boolean;
}

export interface RuleShape {
  readonly name: string;
  readonly limit: number;
  readonly windowMs: number;
}

export function ruleState(rule: RuleShape, decision: Decision, refused: boolean): RuleState {
  const windowS = Math.max(1, Math.ceil(rule.windowMs / 1000));
  const ms = refused ? decision.retryAfterMs : decision.resetAfterMs;
  return {
    name: rule.name,
    quota: Math.max(0, Math.floor(rule.limit)),
    windowS,
    remaining: refused ? 0 : Math.max(0, Math.floor(decision.remaining)),
    resetS: Number.isFinite(ms) ? Math.max(0, Math.ceil(ms / 1000)) : windowS,
    refused,
  };
}

/** The rule single-rule formats report: the first refusing one, else the fewest remaining. */
export function tightest(states: readonly RuleState[]): RuleState {
  let best = states[0]!;
  for (const s of states) {
    if (s.refused !== best.refused ? s.refused : s.remaining < best.remaining) best = s;
  }
  return best;
}

/** `Retry-After` in delta seconds: the longest wait among the refusing rules. */
export function retryAfterS(states: readonly RuleState[]): number {
  let s = 0;
  for (const state of states) if (state.refused) s = Math.max(s, state.resetS);
  return s;
}
