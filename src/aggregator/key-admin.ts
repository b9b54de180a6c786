/**
 * Key administration at the aggregator (a KeyCommand from a node): what `reset`, `penalty`,
 * `reward` and `block` do to a key's global window.
 *
 * - reset: the window forgets what it counted. The allowances nodes still hold stay counted
 *   (they may still be spent), so the key's room after a reset is the limit less those.
 * - penalty: `cost` counts in the window as admitted now, as if a hit had taken it.
 * - reward: `cost` leaves the window, from the newest bins first (what a refund gives back was
 *   most likely just admitted), never below empty.
 * - block: no new allowance for the key until the block ends (the nodes refuse it themselves
 *   from when the command reaches them; this covers a node that joins meanwhile).
 *
 * Counts reported by nodes are not touched: they stay cumulative, and the window takes only
 * what they add after this, so one node's reset is not undone by the others' next reports.
 */
import type { KeyCommandFields } from "../protocol/messages.js";
import * as gw from "./global-window.js";
import type { KeyState, RuleState } from "./key-state.js";

export function administerKey(
  rs: RuleState,
  ks: KeyState,
  c: KeyCommandFields,
  nowMs: number,
): void {
  switch (c.op) {
    case "reset":
      gw.clearWindow(ks.window, rs.shape, nowMs);
      ks.blockedUntilMs = Number.NEGATIVE_INFINITY;
      ks.paceCarry = 0;
      return;
    case "penalty":
      gw.addAdmitted(ks.window, rs.shape, nowMs, nowMs, c.cost);
      return;
    case "reward":
      gw.removeNewest(ks.window, rs.shape, nowMs, c.cost);
      return;
    case "block":
      if (nowMs + c.durationMs > ks.blockedUntilMs) ks.blockedUntilMs = nowMs + c.durationMs;
      return;
  }
}
