/**
 * The allocator: splits what a key's global window still allows among the nodes that want it.
 *
 * In:  the budget T = limit - admitted in the global window, and per node its demand over the
 *      next window and its *committed* allowance (what it may still admit under grants it holds or
 *      may be about to receive, which the aggregator cannot take back until the node confirms).
 * Out: per node a share s_j, the cost it may admit beyond what it has reported.
 *
 * Two steps:
 * 1. Targets, max-min fair ("water filling", as Doorman's FAIR_SHARE): every node gets its demand
 *    if that fits under an equal split of what is left; the rest share what remains equally. When
 *    demands do not use the whole budget, the spare is spread half by demand and half equally.
 * 2. Safety: a node whose target is below its committed allowance still holds that allowance
 *    until it confirms the lower grant, so growing nodes may only receive what remains after
 *    counting those holdings in full. Growth is scaled down to fit:
 *
 *        sum over nodes of max(committed_j, s_j) <= T
 *
 *    which, with T = limit - windowAdmitted, keeps every window within the limit however long
 *    grants and reports take in flight.
 */

export interface AllocationInput {
  /** Expected demand over the next window, in cost units; >= 0. */
  readonly demand: number;
  /** Allowance already committed to the node beyond its reported admissions; >= 0. */
  readonly committed: number;
}

/**
 * Returns the share of each node (same order as `nodes`). `spareEqualFraction` of the spare
 * capacity (budget left after every demand is met) goes equally to all nodes, the rest by demand.
 */
export function allocate(
  budget: number,
  nodes: readonly AllocationInput[],
  spareEqualFraction = 0.5,
): number[] {
  const n = nodes.length;
  const shares = new Array<number>(n).fill(0);
  if (n === 0 || !(budget > 0)) return shares;

  // 1. Max-min fair targets.
  const order = [...nodes.keys()].sort((a, b) => nodes[a]!.demand - nodes[b]!.demand);
  let left = budget;
  let demandTotal = 0;
  for (let i = 0; i < n; i++) {
    const j = order[i]!;
    const fair = left / (n - i);
    const want = nodes[j]!.demand;
    const give = want < fair ? want : fair;
    shares[j] = give;
    left -= give;
    demandTotal += want;
  }
  if (left > 0) {
    const equal = demandTotal > 0 ? left * spareEqualFraction : left;
    for (let j = 0; j < n; j++) {
      const byDemand = demandTotal > 0 ? (left - equal) * (nodes[j]!.demand / demandTotal) : 0;
      shares[j]! += equal / n + byDemand;
    }
  }

  // 2. Safety against allowances that cannot be taken back yet.
  let held = 0; // committed allowances of nodes whose target is lower
  let growBase = 0; // committed allowances of nodes whose target is higher
  let growWanted = 0; // how much those nodes would grow
  for (let j = 0; j < n; j++) {
    const c = nodes[j]!.committed;
    if (shares[j]! <= c) held += c;
    else {
      growBase += c;
      growWanted += shares[j]! - c;
    }
  }
  const room = budget - held - growBase;
  if (growWanted > room) {
    const f = room > 0 ? room / growWanted : 0;
    for (let j = 0; j < n; j++) {
      const c = nodes[j]!.committed;
      if (shares[j]! > c) shares[j] = c + (shares[j]! - c) * f;
    }
  }
  return shares;
}
