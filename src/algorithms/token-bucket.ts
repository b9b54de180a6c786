/**
 * Token bucket.
 *
 * Semantics: a bucket holds up to `capacity` tokens (the burst) and refills continuously at
 * `ratePerMs`. A hit of cost c is admitted when at least c tokens are present, and takes them.
 * Over any interval of length d, at most `capacity + ratePerMs * d` cost is admitted.
 *
 * State (stride 2): [tokens, lastMs]. Tokens are kept as a fraction, never rounded, so a
 * fractional rate (say 1 token per 3 s) refills exactly over long runs instead of drifting. When
 * the clock does not advance or goes backwards, nothing refills and `lastMs` does not move back.
 */
import { type Algorithm, type AlgorithmParams, DecisionResult, EPSILON } from "./types.js";

const TOKENS = 0;
const LAST_MS = 1;

function refill(state: Float64Array, offset: number, p: AlgorithmParams, nowMs: number): number {
  const elapsedMs = nowMs - state[offset + LAST_MS]!;
  let tokens = state[offset + TOKENS]!;
  if (elapsedMs > 0) {
    tokens += elapsedMs * p.ratePerMs;
    if (tokens > p.capacity) tokens = p.capacity;
    state[offset + TOKENS] = tokens;
    state[offset + LAST_MS] = nowMs;
  }
  return tokens;
}

function result(p: AlgorithmParams, tokens: number, allowed: boolean, cost: number) {
  const resetAfterMs = (p.capacity - tokens) / p.ratePerMs;
  let retryAfterMs = 0;
  if (!allowed) {
    retryAfterMs = cost > p.capacity + EPSILON ? Infinity : (cost - tokens) / p.ratePerMs;
  }
  const remaining = Math.floor(tokens + EPSILON);
  return new DecisionResult(
    allowed,
    remaining > 0 ? remaining : 0,
    p.capacity,
    resetAfterMs > 0 ? resetAfterMs : 0,
    retryAfterMs > 0 ? retryAfterMs : 0,
  );
}

export const tokenBucket: Algorithm = {
  name: "token-bucket",
  stride: () => 2,
  init(state, offset, p, nowMs) {
    state[offset + TOKENS] = p.capacity;
    state[offset + LAST_MS] = nowMs;
  },
  decide(state, offset, p, nowMs, cost) {
    let tokens = refill(state, offset, p, nowMs);
    if (cost <= tokens + EPSILON) {
      tokens -= cost;
      if (tokens < 0) tokens = 0;
      state[offset + TOKENS] = tokens;
      return result(p, tokens, true, cost);
    }
    return result(p, tokens, false, cost);
  },
  peek(state, offset, p, nowMs, cost) {
    const elapsedMs = nowMs - state[offset + LAST_MS]!;
    let tokens = state[offset + TOKENS]!;
    if (elapsedMs > 0) tokens = Math.min(p.capacity, tokens + elapsedMs * p.ratePerMs);
    // As `decide` would report it: an admitted hit's remaining is after its cost.
    if (cost <= tokens + EPSILON) return result(p, Math.max(0, tokens - cost), true, cost);
    return result(p, tokens, false, cost);
  },
  adjust(state, offset, p, nowMs, cost) {
    // Tokens may go below zero after a charge: refills then take that much longer to admit.
    const tokens = refill(state, offset, p, nowMs) - cost;
    state[offset + TOKENS] = tokens > p.capacity ? p.capacity : tokens;
  },
  isAtRest(state, offset, p, nowMs) {
    const elapsedMs = Math.max(0, nowMs - state[offset + LAST_MS]!);
    return state[offset + TOKENS]! + elapsedMs * p.ratePerMs >= p.capacity - EPSILON;
  },
};
