/**
 * One key's allocation at a tick.
 *
 *   demand (fold each node's reports into a rate; the wait for a hit)
 *   budget (what the window allows, early release, pacing)
 *   allocator (max-min fair shares within it, then whole units)
 *   grant-schedule (which grants go out, their versions and wait)
 *
 * Its inputs and shares live only for the call; nothing of them is kept.
 */
import {
  grantAheadIfHot,
  grantWaitMs,
  keyPaceCredit,
  roundingInputs,
} from "./allocation-inputs.js";
import { allocate, handedOut, roundToUnits } from "./allocator.js";
import { type BudgetInput, newBudget, paceCarry, readBudgetInto } from "./budget.js";
import { foldDemand, hitWaitMs } from "./demand.js";
import {
  type GrantsByNode,
  type ScheduleInput,
  scheduleGrants,
  usableNow,
} from "./grant-schedule.js";
import type { KeyState, RuleState } from "./key-state.js";
import type { Membership } from "./membership.js";
import type { AggregatorTuning } from "./tuning.js";

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * The budget's input and result, and the scheduling input, of the key being allocated: one
 * object each, overwritten by every call (nothing reads them once the call returns).
 */
const budgetInput: Mutable<BudgetInput> = { limit: 0, windowMs: 0, lagMs: 0, rampMs: 0 };
const keyBudget = newBudget();
const scheduleInput: Mutable<ScheduleInput> = {
  rule: "",
  key: "",
  limit: 0,
  materialChange: 0,
  syncIntervalMs: 0,
  rampMs: 0,
  usableNow: undefined,
  nowMs: 0,
  waitMs: () => 0,
};

/**
 * One key's allocation: demand, budget, pacing, shares, then the grants that go out (added to
 * `out`); returns how many.
 */
export function allocateKey(
  rs: RuleState,
  ks: KeyState,
  t: AggregatorTuning,
  membership: Membership,
  nowMs: number,
  live: number,
  out: GrantsByNode,
): number {
  const limit = rs.rule.limit;
  foldDemand(ks.streams, nowMs, t.syncIntervalMs);
  const lagMs = rs.lagMs + hitWaitMs(ks.streams, rs.rule.defaultCost, rs.hitWaitCapMs);
  const bi = budgetInput;
  bi.limit = limit;
  bi.windowMs = rs.rule.windowMs;
  bi.lagMs = lagMs;
  bi.rampMs = rs.rampMs;
  const budget = readBudgetInto(keyBudget, ks.window, rs.shape, nowMs, bi);
  grantAheadIfHot(rs, ks, budget, live, membership, nowMs);
  const defaultShare = limit / live;
  const inputs = roundingInputs(rs, ks, defaultShare);
  let held = 0;
  for (const x of inputs) held += x.committed;
  const credit = keyPaceCredit(rs, ks, t, nowMs);
  const open = budget.budget < held + credit ? budget.budget : held + credit;
  const grantable = ks.blockedUntilMs > nowMs ? 0 : open;
  const shares = allocate(grantable, inputs);
  roundToUnits(shares, inputs, rs.rule.defaultCost, ks.streams);
  if (t.pacing > 0) {
    const added = handedOut(inputs, shares) - held;
    ks.paceCarry = paceCarry(credit, added, rs.rule.defaultCost);
  }
  const nowParts =
    rs.rampMs > 0 ? usableNow(inputs, shares, budget.budgetNow, grantable, held) : undefined;
  const x = scheduleInput;
  x.rule = rs.rule.name;
  x.key = ks.key;
  x.limit = limit;
  x.materialChange = t.materialChange;
  x.syncIntervalMs = t.syncIntervalMs;
  x.rampMs = rs.rampMs;
  x.usableNow = nowParts;
  x.nowMs = nowMs;
  x.waitMs = () => grantWaitMs(rs, ks, nowMs, lagMs, budget, shares);
  return scheduleGrants(ks, ks.streams, shares, inputs, x, out);
}
