/** The aggregator core's counters and its per-rule usage, read by telemetry and tests. */
import * as gw from "./global-window.js";
import type { RuleState } from "./key-state.js";

/** One global rule as the aggregator sees it (see `AggregatorCore.usage`). */
export interface RuleUsage {
  readonly rule: string;
  readonly keys: number;
  readonly maxRatio: number;
  readonly admittedInWindow: number;
  readonly admittedCounted: number;
  readonly rejectedCounted: number;
}

/** Counters, read by telemetry and tests. */
export interface AggregatorStats {
  batches: number;
  entries: number;
  /**
   * Entries that repeated or predated what was already counted (lost nothing, added nothing),
   * including the one report a node sends when a key went quiet (nothing new since).
   */
  staleEntries: number;
  /** Entries for rules this aggregator does not know as global. */
  unknownRuleEntries: number;
  /** Batches from a node run older than the one known. */
  staleBatches: number;
  heartbeats: number;
  updatesSent: number;
  grantsSent: number;
  keys: number;
  keysReclaimed: number;
  nodesJoined: number;
  nodesDropped: number;
  /** Nodes that said they were leaving, dropped at once (not counted in `nodesDropped`). */
  nodesLeft: number;
  /** Admitted cost counted into windows since start. */
  admittedCounted: number;
  /** Group member: entries for partitions this run does not own (dropped). */
  unownedEntries: number;
  /** Key administration applied, and left to another member (a partition not owned here). */
  keyCommands: number;
  keyCommandsUnowned: number;
}

export function newAggregatorStats(): AggregatorStats {
  return {
    batches: 0,
    entries: 0,
    staleEntries: 0,
    unknownRuleEntries: 0,
    staleBatches: 0,
    heartbeats: 0,
    updatesSent: 0,
    grantsSent: 0,
    keys: 0,
    keysReclaimed: 0,
    nodesJoined: 0,
    nodesDropped: 0,
    nodesLeft: 0,
    admittedCounted: 0,
    unownedEntries: 0,
    keyCommands: 0,
    keyCommandsUnowned: 0,
  };
}

/**
 * Per rule, for telemetry: keys held, the hottest key's window admitted / limit, the admitted
 * cost in all its windows, and the cost counted as admitted and rejected since start (what the
 * nodes reported, for comparison with their own counters).
 */
export function ruleUsage(rules: Iterable<RuleState>, nowMs: number): RuleUsage[] {
  const out = [];
  for (const rs of rules) {
    let maxRatio = 0;
    let sum = 0;
    for (const ks of rs.keys.values()) {
      const w = gw.windowUsed(ks.window, rs.shape, nowMs);
      sum += w;
      if (w / rs.rule.limit > maxRatio) maxRatio = w / rs.rule.limit;
    }
    out.push({
      rule: rs.rule.name,
      keys: rs.keys.size,
      maxRatio,
      admittedInWindow: sum,
      admittedCounted: rs.admittedCounted,
      rejectedCounted: rs.rejectedCounted,
    });
  }
  return out;
}
