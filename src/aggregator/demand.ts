/**
 * Demand: how much each node wants of a key, from its reports.
 *
 * In:  each node stream's cost reported since the last fold (admitted + rejected).
 * Out: a smoothed rate per node (cost per ms), what the allocator weighs it over, and how long a
 *      unit granted now waits at a node for a hit to spend it.
 */
import type { NodeStream } from "./node-stream.js";

/**
 * Smoothing time constant, in sync intervals. A tenth of an interval makes the demand a tick sees
 * the rate of the node's latest report, so load that moves between nodes is followed at the next
 * tick; jitter is handled by waiting for a late report instead of reading its absence as no
 * demand (see {@link foldDemand}).
 */
const DEMAND_TAU_INTERVALS = 0.1;
/**
 * How much demand a node's allowance is sized for: four sync intervals, at least 150 ms. The
 * budget handed out at a tick is mostly what the window freed since the last one; against demand
 * over a whole window every node of a hot key looks saturated and gets an equal part, light ones
 * included, while over one interval light nodes run dry before the next grant (an allowance must
 * last until then whatever the arrivals do). The reserve must also outlast the stretches where
 * the window frees nothing, which are a matter of time, not of intervals: hence the floor.
 */
const DEMAND_HORIZON_INTERVALS = 4;
const DEMAND_HORIZON_MIN_MS = 150;

/** The demand horizon of a rule with window `windowMs`, ms (see DEMAND_HORIZON_INTERVALS). */
export function demandHorizonMs(syncIntervalMs: number, windowMs: number): number {
  const ms = Math.max(syncIntervalMs * DEMAND_HORIZON_INTERVALS, DEMAND_HORIZON_MIN_MS);
  return ms < windowMs ? ms : windowMs;
}

/**
 * Folds each stream's demand since its last fold into its smoothed rate. A node that has not
 * reported since is left as it was until its report is 1.5 of its intervals late (then it counts
 * as no demand): reports and ticks are not aligned, and a report that lands just after a tick
 * must not read as a tick without demand. The interval is the node's own when it is longer than
 * ours (nodes at 50 ms, aggregator at 25 ms), so a tick run for another node's report does not
 * read a node that reports half as often as idle.
 */
export function foldDemand(streams: readonly NodeStream[], nowMs: number, syncIntervalMs: number) {
  const tauMs = syncIntervalMs * DEMAND_TAU_INTERVALS;
  for (const s of streams) {
    const dt = nowMs - s.lastDemandMs;
    const interval =
      s.node.batchIntervalMs > syncIntervalMs ? s.node.batchIntervalMs : syncIntervalMs;
    if (dt <= 0 || (!s.reportedSinceDemand && dt < interval * 1.5)) continue;
    s.reportedSinceDemand = false;
    const alpha = 1 - Math.exp(-dt / tauMs);
    s.demandRatePerMs += alpha * (s.pendingDemand / dt - s.demandRatePerMs);
    s.pendingDemand = 0;
    s.lastDemandMs = nowMs;
  }
}

/**
 * How long a unit granted now waits at a node for a hit to spend it, ms: the mean gap between a
 * node's hits, n / (sum of the hit rates) over the n streams with demand (a node handed about
 * one unit per tick spends it at its next hit). While it waits the unit is neither in the window
 * nor free to grant, so a key with fewer hits per node runs further under its limit unless its
 * early release covers the wait too. Capped at `capMs`, so light or idle nodes cannot stretch it.
 */
export function hitWaitMs(streams: readonly NodeStream[], cost: number, capMs: number): number {
  if (capMs <= 0) return 0;
  let active = 0;
  let perMs = 0;
  for (const s of streams) {
    if (s.demandRatePerMs > 0) {
      active++;
      perMs += s.demandRatePerMs;
    }
  }
  if (active === 0) return 0;
  const waitMs = (active * cost) / perMs;
  return waitMs < capMs ? waitMs : capMs;
}
