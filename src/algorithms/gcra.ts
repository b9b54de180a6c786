/**
 * GCRA, the generic cell rate algorithm (leaky bucket as a meter).
 *
 * Semantics: each unit of cost is spaced `emissionMs = 1 / ratePerMs` apart on a virtual
 * schedule; the theoretical arrival time (TAT) is when the schedule would drain. A hit of cost c
 * is admitted when, after adding c units, the schedule runs at most `capacity * emissionMs` ahead
 * of now (the burst tolerance). Admitted traffic is the same as a token bucket of the same
 * capacity and rate, but the state is one number and holds time, not tokens, so there is no
 * refill arithmetic to drift. A refused hit leaves the state untouched.
 *
 * State (stride 1): [tatMs].
 */
import { type Algorithm, type AlgorithmParams, DecisionResult, EPSILON } from "./types.js";

const TAT_MS = 0;

function evaluate(
  state: Float64Array,
  offset: number,
  p: AlgorithmParams,
  nowMs: number,
  cost: number,
  consume: boolean,
) {
  const emissionMs = 1 / p.ratePerMs;
  const toleranceMs = p.capacity * emissionMs;
  const tat = state[offset + TAT_MS]!;
  const base = tat > nowMs ? tat : nowMs;
  const newTat = base + cost * emissionMs;
  // Compare in cost units so the slack matches the other algorithms.
  const allowed = (newTat - nowMs) * p.ratePerMs <= p.capacity + EPSILON;
  const aheadMs = allowed ? newTat - nowMs : base - nowMs;
  if (allowed && consume) state[offset + TAT_MS] = newTat;
  let retryAfterMs = 0;
  if (!allowed) {
    retryAfterMs = cost > p.capacity + EPSILON ? Infinity : newTat - toleranceMs - nowMs;
  }
  const remaining = Math.floor((toleranceMs - aheadMs) * p.ratePerMs + EPSILON);
  return new DecisionResult(
    allowed,
    remaining > 0 ? remaining : 0,
    p.capacity,
    aheadMs > 0 ? aheadMs : 0,
    retryAfterMs > 0 ? retryAfterMs : 0,
  );
}

export const gcra: Algorithm = {
  name: "gcra",
  stride: () => 1,
  init(state, offset, _p, nowMs) {
    state[offset + TAT_MS] = nowMs;
  },
  decide: (state, offset, p, nowMs, cost) => evaluate(state, offset, p, nowMs, cost, true),
  peek: (state, offset, p, nowMs, cost) => evaluate(state, offset, p, nowMs, cost, false),
  adjust(state, offset, p, nowMs, cost) {
    // A charge may push the schedule past the tolerance; a refund never pulls it before now.
    const tat = state[offset + TAT_MS]!;
    const moved = (tat > nowMs ? tat : nowMs) + cost / p.ratePerMs;
    state[offset + TAT_MS] = moved > nowMs ? moved : nowMs;
  },
  isAtRest: (state, offset, _p, nowMs) => state[offset + TAT_MS]! <= nowMs,
};
