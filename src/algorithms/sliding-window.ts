/**
 * Segmented sliding-window counter.
 *
 * Semantics: at most `limit` (= capacity) cost per window of `windowMs`. The window is split into
 * S segments of g = windowMs / S, aligned on the clock (segment k covers [k*g, (k+1)*g)). At time
 * t in segment k, with f = (t - k*g) / g the fraction of segment k elapsed, the cost in the window
 * (t - windowMs, t] is estimated as
 *
 *     estimate = count[k - S] * (1 - f) + count[k - S + 1] + ... + count[k]
 *
 * that is, the segments fully inside the window count whole, and the one segment the window start
 * cuts through counts in proportion to the part still inside, as if its hits were spread evenly.
 * With S = 1 this is the well-known "previous window weighted plus current window" estimate. A hit
 * of cost c is admitted when estimate + c <= limit.
 *
 * Guarantees (property-tested): in any S consecutive aligned segments, admitted cost <= limit,
 * exactly. For an arbitrary window of length windowMs the estimate can undercount the cut segment
 * when its hits were bunched at its end, so admitted cost there is at most limit plus that one
 * segment's count (at most limit / S more when traffic is spread over the segments). More
 * segments make the estimate tighter and cost 8 bytes per segment per key.
 *
 * State (stride S + 2): [currentSegment, count of segment j at index 1 + (j mod (S + 1))].
 * A clock that goes backwards is treated as standing still.
 */
import { type Algorithm, type AlgorithmParams, DecisionResult, EPSILON } from "./types.js";

const CURRENT = 0;

/**
 * Moves the ring to the segment containing `nowMs`, zeroing segments that fell out; returns that
 * segment's index. Exported for the aggregator's global windows, which share this layout.
 */
export function advance(
  state: Float64Array,
  offset: number,
  p: AlgorithmParams,
  nowMs: number,
): number {
  const segMs = p.windowMs / p.segments;
  const ring = p.segments + 1;
  const current = state[offset + CURRENT]!;
  const k = Math.floor(nowMs / segMs);
  if (k <= current) return current;
  const steps = k - current;
  if (steps >= ring) {
    for (let i = 1; i <= ring; i++) state[offset + i] = 0;
  } else {
    for (let j = current + 1; j <= k; j++) state[offset + 1 + (j % ring)] = 0;
  }
  state[offset + CURRENT] = k;
  return k;
}

/** Cell of segment `segment` in a ring of `ring` segments (after the current-segment cell). */
export function segmentCell(ring: number, segment: number): number {
  return 1 + (((segment % ring) + ring) % ring);
}

function count(state: Float64Array, offset: number, ring: number, segment: number): number {
  return state[offset + segmentCell(ring, segment)]!;
}

/** The estimated cost inside the window ending at `nowMs`, which lies in segment k. */
export function estimate(
  state: Float64Array,
  offset: number,
  p: AlgorithmParams,
  k: number,
  nowMs: number,
) {
  const segMs = p.windowMs / p.segments;
  const ring = p.segments + 1;
  let frac = (nowMs - k * segMs) / segMs;
  if (frac < 0) frac = 0;
  else if (frac > 1) frac = 1;
  let sum = count(state, offset, ring, k - p.segments) * (1 - frac);
  for (let j = k - p.segments + 1; j <= k; j++) sum += count(state, offset, ring, j);
  return sum;
}

/**
 * Time from `nowMs` until estimate + cost <= limit, assuming no further hits. Walks forward one
 * segment boundary at a time (at most S + 1 steps); runs only for refused hits.
 */
function waitMs(
  state: Float64Array,
  offset: number,
  p: AlgorithmParams,
  k: number,
  nowMs: number,
  cost: number,
): number {
  if (cost > p.capacity + EPSILON) return Infinity;
  const segMs = p.windowMs / p.segments;
  const ring = p.segments + 1;
  const room = p.capacity - cost + EPSILON;
  for (let seg = k; seg <= k + p.segments; seg++) {
    // During segment `seg`, the estimate is oldest * (1 - f) + newer, with f rising 0 -> 1.
    const oldest = seg - p.segments <= k ? count(state, offset, ring, seg - p.segments) : 0;
    let newer = 0;
    for (let j = seg - p.segments + 1; j <= seg; j++)
      newer += j <= k ? count(state, offset, ring, j) : 0;
    if (newer <= room) {
      const segStart = seg * segMs;
      const from = seg === k ? nowMs : segStart;
      const fromFrac = (from - segStart) / segMs;
      if (oldest * (1 - fromFrac) + newer <= room) return from - nowMs;
      // oldest * (1 - f) + newer <= room  <=>  f >= 1 - (room - newer) / oldest
      const f = 1 - (room - newer) / oldest;
      return segStart + f * segMs - nowMs;
    }
  }
  return p.windowMs; // unreachable for cost <= capacity: after S + 1 segments the window is empty
}

function resetMs(
  state: Float64Array,
  offset: number,
  p: AlgorithmParams,
  k: number,
  nowMs: number,
) {
  const segMs = p.windowMs / p.segments;
  const ring = p.segments + 1;
  for (let j = k; j >= k - p.segments; j--) {
    // Segment j stops counting once the window start passes its end: at (j + S + 1) * g.
    if (count(state, offset, ring, j) > 0) return Math.max(0, (j + p.segments + 1) * segMs - nowMs);
  }
  return 0;
}

function evaluate(
  state: Float64Array,
  offset: number,
  p: AlgorithmParams,
  nowMs: number,
  cost: number,
  consume: boolean,
) {
  const k = advance(state, offset, p, nowMs);
  const used = estimate(state, offset, p, k, nowMs);
  const allowed = used + cost <= p.capacity + EPSILON;
  if (allowed && consume) {
    const ring = p.segments + 1;
    state[offset + 1 + (k % ring)]! += cost;
  }
  const after = allowed ? used + cost : used;
  const remaining = Math.floor(p.capacity - after + EPSILON);
  return new DecisionResult(
    allowed,
    remaining > 0 ? remaining : 0,
    p.capacity,
    resetMs(state, offset, p, k, nowMs),
    allowed ? 0 : waitMs(state, offset, p, k, nowMs, cost),
  );
}

export const slidingWindow: Algorithm = {
  name: "sliding-window",
  stride: (p) => p.segments + 2,
  init(state, offset, p, nowMs) {
    state[offset + CURRENT] = Math.floor(nowMs / (p.windowMs / p.segments));
    for (let i = 1; i <= p.segments + 1; i++) state[offset + i] = 0;
  },
  decide: (state, offset, p, nowMs, cost) => evaluate(state, offset, p, nowMs, cost, true),
  peek(state, offset, p, nowMs, cost) {
    // advance() mutates only by zeroing segments that no longer count, which no decision can
    // observe, so peeking through it is still side-effect free as far as decisions go.
    return evaluate(state, offset, p, nowMs, cost, false);
  },
  adjust(state, offset, p, nowMs, cost) {
    const k = advance(state, offset, p, nowMs);
    const ring = p.segments + 1;
    if (cost > 0) {
      state[offset + segmentCell(ring, k)]! += cost;
      return;
    }
    // A refund takes from the newest segments first: what it gives back was most likely just
    // admitted, and the newest segments are the ones that count longest.
    let left = -cost;
    for (let j = k; j >= k - p.segments && left > 0; j--) {
      const cell = offset + segmentCell(ring, j);
      const taken = Math.min(state[cell]!, left);
      state[cell] = state[cell]! - taken;
      left -= taken;
    }
  },
  isAtRest(state, offset, p, nowMs) {
    const k = advance(state, offset, p, nowMs);
    return resetMs(state, offset, p, k, nowMs) === 0;
  },
};
