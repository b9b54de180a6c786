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
  /** Expected demand over the allocation's horizon (the aggregator: 4 sync intervals); >= 0. */
  readonly demand: number;
  /** Allowance already committed to the node beyond its reported admissions; >= 0. */
  readonly committed: number;
}

/**
 * Max-min fair split of `budget` among the nodes' demands ("water filling"): every demand that
 * fits under an equal split of what is left is met, the rest share what remains equally. Nothing
 * beyond a demand is given, so the shares sum to less than `budget` when the demands do.
 */
export function maxMinFair(
  budget: number,
  nodes: readonly { readonly demand: number }[],
): number[] {
  const n = nodes.length;
  const shares = new Array<number>(n).fill(0);
  const order = byDemand(nodes);
  let left = budget;
  for (let i = 0; i < n; i++) {
    const j = order[i]!;
    const fair = left / (n - i);
    const want = nodes[j]!.demand;
    const give = want < fair ? want : fair;
    shares[j] = give;
    left -= give;
  }
  return shares;
}

/** Node counts up to which {@link byDemand} sorts by insertion. */
const INSERTION_SORT_MAX = 32;

/**
 * The indices of `nodes` by ascending demand, ties in index order (a stable sort: the order
 * `Array.prototype.sort` gives, which the shares depend on when demands tie).
 */
function byDemand(nodes: readonly { readonly demand: number }[]): number[] {
  const n = nodes.length;
  if (n > INSERTION_SORT_MAX) {
    return [...nodes.keys()].sort((a, b) => nodes[a]!.demand - nodes[b]!.demand);
  }
  const order = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const d = nodes[i]!.demand;
    let j = i;
    // Only strictly greater demands move up, so ties keep their index order.
    while (j > 0 && nodes[order[j - 1]!]!.demand - d > 0) {
      order[j] = order[j - 1]!;
      j--;
    }
    order[j] = i;
  }
  return order;
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
  if (n === 0 || !(budget > 0)) return new Array<number>(n).fill(0);

  // 1. Max-min fair targets.
  const shares = maxMinFair(budget, nodes);
  let left = budget;
  let demandTotal = 0;
  for (let j = 0; j < n; j++) {
    left -= shares[j]!;
    demandTotal += nodes[j]!.demand;
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

/**
 * What the nodes may still admit after an allocation: the sum over nodes of max(committed,
 * share), the quantity {@link allocate} keeps within its budget.
 */
export function handedOut(nodes: readonly AllocationInput[], shares: readonly number[]): number {
  let sum = 0;
  for (let j = 0; j < shares.length; j++) {
    const c = nodes[j]!.committed;
    const s = shares[j]!;
    sum += s > c ? s : c;
  }
  return sum;
}

/** A node's allocation input with what it has reported admitted (the base of its allowance). */
export interface RoundingInput extends AllocationInput {
  readonly base: number;
}

/**
 * Rounds each node's new allowance (`base_j + shares_j`) down to a whole number of `unit`s, in
 * place, then hands the units that rounding freed back out, one at a time, to the nodes that want
 * more and are owed the most: the fraction they lost now plus what they were owed before
 * (`carry`). A node admits whole hits only, so a fraction left in each node's allowance sits
 * idle: up to one unit per node on a hot key, every window. Only
 * what rounding freed from the safety sum of {@link allocate} (`sum of max(committed_j, s_j)`) is
 * handed out, so that bound still holds.
 *
 * `carry`, when given, holds each node's running balance of rounding (`roundingCarry`: what it
 * was owed minus what it got beyond its share, within one unit either way), read for the order
 * and updated in place (the aggregator passes its per-node records themselves);
 * a node that wants no more than its share owes and is owed nothing. Without it, on a hot key whose
 * tick hands out less than a unit per node, the freed units would go by the fractions alone,
 * which tie, so to the same nodes at every tick, and nodes offering the same load would be
 * admitted at unequal rates.
 */
export function roundToUnits(
  shares: number[],
  nodes: readonly RoundingInput[],
  unit: number,
  carry?: readonly { roundingCarry: number }[],
): void {
  const n = shares.length;
  if (!(unit > 0)) return;
  let pool = 0;
  let lost: number[] | undefined;
  for (let j = 0; j < n; j++) {
    const s = shares[j]!;
    const { committed: c, base } = nodes[j]!;
    const floored = Math.floor((base + s) / unit + 1e-9) * unit;
    const rounded = floored > base ? floored - base : 0;
    if (rounded >= s) continue;
    pool += (s > c ? s : c) - (rounded > c ? rounded : c);
    if (n > 1) {
      lost ??= new Array<number>(n).fill(0);
      lost[j] = s - rounded;
    }
    shares[j] = rounded;
  }
  if (pool >= unit && lost !== undefined) {
    const l = lost;
    const owed = (j: number) => l[j]! + (carry === undefined ? 0 : carry[j]!.roundingCarry);
    // Only to nodes that want more than they have now: an idle node would hold the unit unused.
    const order = [...shares.keys()]
      .filter((j) => l[j]! > 0 && nodes[j]!.demand > shares[j]!)
      .sort((a, b) => owed(b) - owed(a));
    for (const j of order) {
      const s = shares[j]!;
      const c = nodes[j]!.committed;
      const extra = (s + unit > c ? s + unit : c) - (s > c ? s : c);
      if (extra > pool + 1e-9) continue;
      shares[j] = s + unit;
      l[j]! -= unit; // now what the node got less (negative: more) than its share
      pool -= extra;
      if (pool < 1e-9) break;
    }
  }
  if (carry === undefined || lost === undefined) return;
  for (let j = 0; j < n; j++) {
    const record = carry[j]!;
    if (!(nodes[j]!.demand > shares[j]!)) {
      record.roundingCarry = 0;
      continue;
    }
    const c = record.roundingCarry + lost[j]!;
    record.roundingCarry = c > unit ? unit : c < -unit ? -unit : c;
  }
}
