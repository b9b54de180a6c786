/**
 * One request decided against several rules (`Limiter.decideAll`): it must fit every rule, and
 * a refused request consumes from none of them.
 *
 * Flow: the in-memory rules (local, global) are peeked first, so a request they refuse never
 * reaches the store. The strict rules are then decided together in the store; after that, in
 * one synchronous step (nothing else runs between the peek and the decision), the in-memory
 * rules are peeked again and, when every rule admits, decided. When one refuses after the store
 * admitted, what the store took is refunded (`StrictStore.adjust`).
 *
 * Shadow: a refusal by a rule in shadow mode does not refuse the request; with the `shadow`
 * option no refusal does. Either way the refusing rule consumes nothing and counts a would-be
 * rejection, and with the option the request consumes from none (as enforcing would).
 */
import type { Decision } from "../algorithms/types.js";
import type { Clock } from "../clock/clock.js";
import type { KeyTable } from "./key-table.js";
import type { StrictDecision, StrictDecisions } from "./strict-decisions.js";

/** Options of `Limiter.decideAll`. */
export interface DecideAllOptions {
  /** Cost of the request under every rule. @default each rule's `cost` */
  readonly cost?: number;
  /**
   * Never refuse: a request some rule refuses is let through, consumes from none, and counts as
   * a would-be rejection on the rules that refused it.
   * @default false
   */
  readonly shadow?: boolean;
}

/** A request's decision over several rules. */
export interface MultiDecision {
  /** Whether the request may go on: it fits every enforced rule (or shadow let it through). */
  readonly allowed: boolean;
  /** One per rule, in the order asked; a refusing rule's is its refusal (`allowed` false). */
  readonly decisions: readonly Decision[];
  /** Index of the first rule that refused (or would have, in shadow mode); -1 when none. */
  readonly refusedBy: number;
  /** True when a refusal was let through by shadow mode (the option or the rule's own). */
  readonly shadowed: boolean;
}

class MultiDecisionResult implements MultiDecision {
  constructor(
    readonly allowed: boolean,
    readonly decisions: readonly Decision[],
    readonly refusedBy: number,
    readonly shadowed: boolean,
  ) {}
}

/** One call's rules, checked: their tables, and the cost under each. */
export interface MultiCall {
  readonly tables: readonly KeyTable[];
  readonly key: string;
  readonly costs: readonly number[];
  readonly shadow: boolean;
}

export async function decideAll(
  call: MultiCall,
  clock: Clock,
  strict: StrictDecisions | undefined,
): Promise<MultiDecision> {
  const { tables, key, costs } = call;
  const decisions: Decision[] = new Array(tables.length);
  const hasStrict = strict !== undefined && tables.some((t) => t.rule.mode === "strict");
  let nowMs = clock.nowMs();
  if (peekMemory(call, nowMs, decisions)) {
    // Refused in memory: the store is only asked what it would say, for the decisions' sake.
    if (hasStrict) await eachStrict(call, (t, i) => strict.peek(t, key, costs[i]!), decisions);
    return judge(call, clock.nowMs(), decisions);
  }
  const stored: (StrictDecision | undefined)[] = new Array(tables.length);
  if (hasStrict) {
    const failure = await eachStrict(call, (t, i) => strict.decide(t, key, costs[i]!), stored);
    for (const [i, s] of stored.entries()) if (s !== undefined) decisions[i] = s.decision;
    if (failure !== undefined) {
      await refund(call, stored, strict);
      throw failure.error;
    }
  }
  if (hasStrict) {
    // The store was awaited: peek the in-memory rules again. From here to the decisions
    // nothing awaits, so these peeks still hold when the rules decide.
    nowMs = clock.nowMs();
    peekMemory(call, nowMs, decisions);
  }
  const verdict = judge(call, nowMs, decisions);
  if (verdict.refusedBy < 0 || (verdict.shadowed && !call.shadow)) {
    for (let i = 0; i < tables.length; i++) {
      const t = tables[i]!;
      if (!decisions[i]!.allowed) continue;
      if (t.rule.mode !== "strict") decisions[i] = t.decide(key, nowMs, costs[i]!);
      else if (!stored[i]!.accounted) t.record(key, nowMs, costs[i]!, true);
    }
    return verdict;
  }
  await refund(call, stored, strict);
  return verdict;
}

/**
 * Runs `ask` for every strict rule at once, into `into`; resolves when all have settled, with
 * the first failure (the others' results are kept, so what they took can be refunded).
 */
async function eachStrict<T>(
  call: MultiCall,
  ask: (table: KeyTable, index: number) => Promise<T>,
  into: (T | undefined)[],
): Promise<{ error: unknown } | undefined> {
  let failure: { error: unknown } | undefined;
  await Promise.all(
    call.tables.map(async (t, i) => {
      if (t.rule.mode !== "strict") return;
      try {
        into[i] = await ask(t, i);
      } catch (error) {
        failure ??= { error };
      }
    }),
  );
  return failure;
}

/** Peeks the in-memory rules into `decisions`; true when one refuses outright (not in shadow). */
function peekMemory(call: MultiCall, nowMs: number, decisions: Decision[]): boolean {
  const { tables, key, costs } = call;
  let enforced = false;
  for (let i = 0; i < tables.length; i++) {
    const t = tables[i]!;
    if (t.rule.mode === "strict") continue;
    const d = t.peek(key, nowMs, costs[i]!);
    decisions[i] = d;
    if (!d.allowed && !call.shadow && !t.rule.shadow) enforced = true;
  }
  return enforced;
}

/**
 * The verdict over complete `decisions`, counting each refusal (a would-be rejection for a
 * shadow rule, or under the shadow option).
 */
function judge(call: MultiCall, nowMs: number, decisions: Decision[]): MultiDecision {
  const { tables, key, costs } = call;
  let refusedBy = -1;
  let enforcedBy = -1;
  for (let i = 0; i < tables.length; i++) {
    const d = decisions[i];
    if (d === undefined || d.allowed) continue;
    const t = tables[i]!;
    const shadowed = call.shadow || t.rule.shadow;
    if (refusedBy < 0) refusedBy = i;
    if (!shadowed && enforcedBy < 0) enforcedBy = i;
    t.record(key, nowMs, costs[i]!, false, shadowed);
  }
  if (enforcedBy >= 0) return new MultiDecisionResult(false, decisions, enforcedBy, false);
  return new MultiDecisionResult(true, decisions, refusedBy, refusedBy >= 0);
}

/** Gives back what the store took for a request that was refused (or shadowed) in the end. */
async function refund(
  call: MultiCall,
  stored: readonly (StrictDecision | undefined)[],
  strict: StrictDecisions | undefined,
): Promise<void> {
  if (strict === undefined) return;
  const jobs: Promise<void>[] = [];
  for (let i = 0; i < stored.length; i++) {
    const s = stored[i];
    if (s === undefined || !s.decision.allowed) continue;
    jobs.push(strict.refund(call.tables[i]!, call.key, call.costs[i]!, s.accounted));
  }
  await Promise.all(jobs);
}
