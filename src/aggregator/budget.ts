/**
 * The budget of one key at one tick: what may be granted now, beyond what nodes hold.
 *
 * In:  the key's global window, the rule, the lag to release early, what nodes hold, pacing.
 * Out: the budget the window allows (limit - admitted in the window, plus the capped early
 *      release, plus what a ramp hands out), what pacing lets this tick add, and, after the
 *      allocation, when the budget will next cover one more hit.
 *
 * The invariant the allocator then keeps: the sum over nodes of max(committed, share) never
 * exceeds `grantable`, which never exceeds `budget` (test/unit/aggregator/budget.test.ts checks
 * the seam).
 */
import * as gw from "./global-window.js";

/**
 * Cap on what the lag compensation releases early, in multiples of the steady rate over the
 * lag. In steady state the window's oldest `lagMs` holds about that; at a step (a dense stretch
 * after a quiet one) it can hold several times as much, and releasing all of it early would be
 * spent before it frees. Capped, the early release adds at most 1.5 x lagMs / windowMs of the
 * limit to any window.
 */
const EARLY_RELEASE_CAP = 1.5;
/**
 * Echo damping (opt-in): for this many windows after a key is first overloaded, new allowance
 * per tick is paced at ECHO_DAMPING_PACING times the steady rate instead of `pacing`. The
 * overload's first burst fills the window at once and frees it at once a window later; paced at
 * 1.5 the freed budget comes back as a dense stretch and a quiet one, repeating for as long as
 * the overload lasts, and a dip inside a dense stretch cannot be repaid until the next quiet one.
 * Paced near the steady rate for the window that frees the burst, admissions come out even.
 */
const ECHO_DAMPING_WINDOWS = 2.5;
const ECHO_DAMPING_PACING = 1.1;

/** The rule's window and limit, and this key's early release, for one tick. */
export interface BudgetInput {
  readonly limit: number;
  readonly windowMs: number;
  /** Early release for this key: the rule's lag compensation plus the key's wait for a hit. */
  readonly lagMs: number;
  /** Scheduled grants' ramp, ms; 0 without. */
  readonly rampMs: number;
}

export interface Budget {
  /** Admitted cost in the window now. */
  readonly used: number;
  /** Budget released early, capped (see EARLY_RELEASE_CAP). */
  readonly released: number;
  /** The cap on the early release. */
  readonly earlyCap: number;
  /** What the window allows now: limit - used + released. */
  readonly budgetNow: number;
  /** With a ramp, budgetNow plus what the window frees over the ramp (usable as it frees). */
  readonly budget: number;
}

export function readBudget(
  w: Float64Array,
  shape: gw.WindowShape,
  nowMs: number,
  b: BudgetInput,
): Budget {
  return readBudgetInto(newBudget(), w, shape, nowMs, b);
}

/** A {@link Budget} to pass to {@link readBudgetInto}, which overwrites it. */
export type BudgetInto = { -readonly [K in keyof Budget]: Budget[K] };

export function newBudget(): BudgetInto {
  return { used: 0, released: 0, earlyCap: 0, budgetNow: 0, budget: 0 };
}

/** As {@link readBudget}, into `out` (returned). */
export function readBudgetInto(
  out: BudgetInto,
  w: Float64Array,
  shape: gw.WindowShape,
  nowMs: number,
  b: BudgetInput,
): Budget {
  const used = gw.windowUsed(w, shape, nowMs);
  const early = b.lagMs > 0 ? gw.oldestBand(w, shape, nowMs, b.lagMs) : 0;
  const earlyCap = (EARLY_RELEASE_CAP * b.limit * b.lagMs) / b.windowMs;
  const released = early < earlyCap ? early : earlyCap;
  const budgetNow = b.limit - used + released;
  const budget =
    b.rampMs > 0 ? budgetNow + gw.freeingLine(w, shape, nowMs, b.lagMs, b.rampMs) : budgetNow;
  out.used = used;
  out.released = released;
  out.earlyCap = earlyCap;
  out.budgetNow = budgetNow;
  out.budget = budget;
  return out;
}

/** What pacing needs to know about the key and its nodes. */
export interface PacingInput {
  readonly limit: number;
  readonly windowMs: number;
  /** `pacing` of the tuning; 0 = unpaced. */
  readonly pacing: number;
  readonly echoDamping: boolean;
  readonly syncIntervalMs: number;
  /** The slowest interval at which the key's nodes report (at least the sync interval), ms. */
  readonly cadenceMs: number;
  /** Since the key's last allocation, ms. */
  readonly sinceMs: number;
  /** When a node first reported refusing the key's hits (-1: never). */
  readonly overloadSinceMs: number;
  readonly nowMs: number;
  /** What the last allocation could not hand out in whole units. */
  readonly carry: number;
}

/**
 * What this tick may add beyond what nodes hold: `pacing` x the steady rate over the time since
 * the key's last allocation (at least a sync interval, at most the slowest report cadence: a key
 * is allocated only at a tick after a report, so a node reporting every 50 ms to an aggregator
 * ticking every 25 ms must not be paced at half its rate), plus the carry. Infinity when unpaced.
 */
export function paceCredit(p: PacingInput): number {
  if (p.pacing <= 0) return Number.POSITIVE_INFINITY;
  const paceMs =
    p.sinceMs < p.syncIntervalMs
      ? p.syncIntervalMs
      : p.sinceMs > p.cadenceMs
        ? p.cadenceMs
        : p.sinceMs;
  const damped =
    p.echoDamping &&
    p.overloadSinceMs >= 0 &&
    p.nowMs - p.overloadSinceMs < ECHO_DAMPING_WINDOWS * p.windowMs &&
    p.pacing > ECHO_DAMPING_PACING;
  const pacing = damped ? ECHO_DAMPING_PACING : p.pacing;
  return p.carry + p.limit * (paceMs / p.windowMs) * pacing;
}

/**
 * The credit a tick leaves for the next: what pacing allowed and whole units did not hand out,
 * up to one unit. Without the carry, a rule paced at under a unit per tick (under 26.7/s at
 * 25 ms and pacing 1.5) had every tick's share rounded to nothing and was never granted again
 * after its first window.
 */
export function paceCarry(credit: number, added: number, unit: number): number {
  const left = credit - added;
  return left > unit ? unit : left > 0 ? left : 0;
}

/** What the wait after an allocation depends on. */
export interface WaitInput {
  readonly limit: number;
  readonly windowMs: number;
  /** One hit's cost: the rule's default cost. */
  readonly cost: number;
  readonly lagMs: number;
  readonly budget: Budget;
  /** What every node may still admit once it holds the grants of this allocation. */
  readonly handedOut: number;
}

/**
 * How long until the budget, as {@link readBudget} computes it, covers one more hit beyond what
 * is handed out, ms, if the window receives nothing new: the window frees its oldest bins, and
 * the early release (up to its cap) runs ahead of them. 0 when it covers it now (pacing held
 * budget back, or demand was met): the next tick can grant more. Within (0, windowMs] otherwise,
 * whatever the counts (it goes on the wire, which takes finite numbers only).
 */
export function budgetWaitMs(
  w: Float64Array,
  shape: gw.WindowShape,
  nowMs: number,
  x: WaitInput,
): number {
  // budget(d) = limit - used + min(F(d + lag), F(d) + earlyCap), F(t) = what frees by t.
  const target = x.handedOut + x.cost - (x.limit - x.budget.used);
  if (target <= x.budget.released + 1e-9) return 0;
  const freedBy = (v: number) => (v > 0 ? gw.freeingTime(w, shape, nowMs, 0, v) : 0);
  const byLag = freedBy(target) - x.lagMs;
  const byCap = freedBy(target - x.budget.earlyCap);
  const d = byLag > byCap ? byLag : byCap;
  if (!(d > 0)) return Number.MIN_VALUE;
  return d < x.windowMs ? d : x.windowMs;
}
