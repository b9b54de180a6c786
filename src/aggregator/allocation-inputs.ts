/**
 * What one key's allocation takes besides its budget: placeholders for the nodes a hot key must
 * be granted ahead to, the pacing credit, and the wait its grants carry.
 */
import type { RoundingInput } from "./allocator.js";
import {
  type Budget,
  budgetWaitMs,
  type PacingInput,
  paceCredit,
  type WaitInput,
} from "./budget.js";
import type { KeyState, RuleState } from "./key-state.js";
import type { Membership } from "./membership.js";
import { committedAllowance, NodeStream } from "./node-stream.js";
import type { AggregatorTuning } from "./tuning.js";

/** A key whose window plus demand reaches this fraction of its limit is granted to all nodes. */
export const HOT_FRACTION = 0.5;

/**
 * A key near its limit: a node that has not seen it could take its default share at any moment
 * and overshoot. Every live node that has not reported it is granted ahead instead.
 */
export function grantAheadIfHot(
  rs: RuleState,
  ks: KeyState,
  b: Budget,
  live: number,
  membership: Membership,
  nowMs: number,
): void {
  if (ks.streams.length >= live) return;
  let demand = 0;
  for (const s of ks.streams) demand += s.demandRatePerMs * rs.rule.windowMs;
  if (rs.rule.limit - b.budgetNow + demand < HOT_FRACTION * rs.rule.limit) return;
  for (const node of membership.all()) {
    if (!ks.streams.some((x) => x.node === node)) {
      ks.streams.push(NodeStream.placeholder(node, nowMs));
    }
  }
}

/** What pacing lets this allocation add beyond what nodes hold (Infinity when unpaced). */
export function keyPaceCredit(
  rs: RuleState,
  ks: KeyState,
  t: AggregatorTuning,
  nowMs: number,
): number {
  let cadenceMs = t.syncIntervalMs;
  for (const s of ks.streams) {
    if (s.node.batchIntervalMs > cadenceMs) cadenceMs = s.node.batchIntervalMs;
  }
  const sinceMs = nowMs - ks.lastAllocMs;
  ks.lastAllocMs = nowMs;
  const p = pacingInput;
  p.limit = rs.rule.limit;
  p.windowMs = rs.rule.windowMs;
  p.pacing = t.pacing;
  p.echoDamping = t.echoDamping;
  p.syncIntervalMs = t.syncIntervalMs;
  p.cadenceMs = cadenceMs;
  p.sinceMs = sinceMs;
  p.overloadSinceMs = ks.overloadSinceMs;
  p.nowMs = nowMs;
  p.carry = ks.paceCarry;
  return paceCredit(p);
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * The inputs of `paceCredit` and `budgetWaitMs`, one object each, overwritten by every call
 * (each is read only during the call it is passed to).
 */
const pacingInput: Mutable<PacingInput> = {
  limit: 0,
  windowMs: 0,
  pacing: 0,
  echoDamping: false,
  syncIntervalMs: 0,
  cadenceMs: 0,
  sinceMs: 0,
  overloadSinceMs: 0,
  nowMs: 0,
  carry: 0,
};
const waitInput: Mutable<WaitInput> = {
  limit: 0,
  windowMs: 0,
  cost: 0,
  lagMs: 0,
  budget: { used: 0, released: 0, earlyCap: 0, budgetNow: 0, budget: 0 },
  handedOut: 0,
};

/** The wait the key's grants carry (see `budgetWaitMs`); scheduling asks for it once at most. */
export function grantWaitMs(
  rs: RuleState,
  ks: KeyState,
  nowMs: number,
  lagMs: number,
  b: Budget,
  shares: number[],
): number {
  // What nodes may still admit once they hold these grants: a node on its default share,
  // which the allocation must count as able to take it, holds its grant by then.
  let onceHeld = 0;
  for (let j = 0; j < shares.length; j++) {
    const c = committedAllowance(ks.streams[j]!, 0);
    onceHeld += shares[j]! > c ? shares[j]! : c;
  }
  const x = waitInput;
  x.limit = rs.rule.limit;
  x.windowMs = rs.rule.windowMs;
  x.cost = rs.rule.defaultCost;
  x.lagMs = lagMs;
  x.budget = b;
  x.handedOut = onceHeld;
  return budgetWaitMs(ks.window, rs.shape, nowMs, x);
}

type MutableInput = Mutable<RoundingInput>;

/** Per stream count, the inputs array {@link roundingInputs} fills (its objects reused). */
const inputsByCount: MutableInput[][] = [];

/**
 * The allocation inputs of `ks`'s streams (same order): demand over the horizon, committed
 * allowance, reported admitted. The array and its objects are reused by the next call with as
 * many streams, so they must not be kept past the key's allocation.
 */
export function roundingInputs(
  rs: RuleState,
  ks: KeyState,
  defaultShare: number,
): readonly RoundingInput[] {
  const streams = ks.streams;
  const n = streams.length;
  let inputs = inputsByCount[n];
  if (inputs === undefined) {
    inputs = Array.from({ length: n }, () => ({ demand: 0, committed: 0, base: 0 }));
    inputsByCount[n] = inputs;
  }
  for (let j = 0; j < n; j++) {
    const s = streams[j]!;
    const x = inputs[j]!;
    x.demand = s.demandRatePerMs * rs.horizonMs;
    x.committed = committedAllowance(s, defaultShare);
    x.base = s.admitted;
  }
  return inputs;
}
