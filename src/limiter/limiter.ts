/**
 * The keyed limiter: the object a service holds to decide hits in process.
 *
 * `check()` is synchronous and touches only process memory: a rule lookup, a key lookup and the
 * rule's algorithm over that key's state. `acquire()` waits for capacity but never sleeps into a
 * failure: it computes the wait first and rejects at once when the wait would end past the
 * caller's deadline. Every timer it starts is owned here and cleared by `close()`.
 */
import type { Decision } from "../algorithms/types.js";
import type { Clock, TimerHandle } from "../clock/clock.js";
import {
  AbortedError,
  ClosedError,
  DeadlineExceededError,
  InvalidArgumentError,
  UnknownRuleError,
} from "../errors.js";
import { expectNumber } from "../validate.js";
import { AcquireWaits } from "./acquire-waits.js";
import { createGlobalControl, type GlobalControl } from "./global-control.js";
import type { AccountingEntry, ChangeVisitor } from "./key-change.js";
import { applyKeyCommand, type KeyCommand } from "./key-command.js";
import { KeyTable } from "./key-table.js";
import {
  DECISION_LATENCY_BOUNDS_S,
  type HistogramSnapshot,
  LatencyHistogram,
} from "./latency-histogram.js";
import {
  type AcquireOptions,
  MAX_COST as LIMITER_MAX_COST,
  type LimiterOptions,
  settleAcquireOptions,
  settleLimiterOptions,
} from "./limiter-options.js";
import { adminCost, settleMultiCall, YEAR_MS } from "./multi-call.js";
import { type DecideAllOptions, decideAll, type MultiDecision } from "./multi-decision.js";
import type { CompiledRule } from "./rule.js";
import { shadowOf } from "./shadow.js";
import { StrictDecisions } from "./strict-decisions.js";

/** What changed since the previous snapshot, in cost units. */
export interface AccountingSnapshot {
  /** 1 for the first snapshot (or drain) of this limiter, then +1 each call. */
  readonly seq: number;
  /** When it was taken, on the limiter's clock. */
  readonly atMs: number;
  readonly entries: readonly AccountingEntry[];
}

/** Per-rule counters, read by telemetry at collection time. */
export interface RuleStats {
  readonly rule: string;
  readonly keys: number;
  readonly admittedHits: number;
  readonly rejectedHits: number;
  readonly reclaimedKeys: number;
  readonly evictedKeys: number;
  /** Strict rules: decisions the store failed to make, settled by `onStoreFailure`. */
  readonly storeFailures: number;
  /** Global rules: grants applied and grants ignored (stale, or for a key no longer held). */
  readonly grantsApplied: number;
  readonly grantsIgnored: number;
  /** Global rules: grants dropped as implausible (more than the rule allows, a version jump). */
  readonly grantsImplausible: number;
  /** Hits let through that a rule in shadow mode (or `decideAll`'s shadow option) would refuse. */
  readonly shadowedHits: number;
}

export interface Limiter {
  /**
   * Decides one hit of `cost` (default: the rule's cost) for `key` under `rule`, now. Local rules
   * only: a strict rule throws, naming `checkAsync()`.
   */
  check(rule: string, key: string, cost?: number): Decision;
  /**
   * Decides one hit for any rule: strict rules go to the shared store (with the rule's failure
   * policy), local rules resolve with what `check()` returns.
   */
  checkAsync(rule: string, key: string, cost?: number): Promise<Decision>;
  /**
   * What `check` would decide, consuming nothing and creating no key. Local and global rules
   * only: a strict rule's state is in the shared store, so this throws, naming `peekAsync()`.
   */
  peek(rule: string, key: string, cost?: number): Decision;
  /**
   * What the next decision would be, consuming nothing, for any rule: strict rules ask the
   * shared store (with the rule's failure policy), the others resolve with what `peek()` returns.
   */
  peekAsync(rule: string, key: string, cost?: number): Promise<Decision>;
  /**
   * Waits until the hit is admitted, or rejects at once with `DeadlineExceededError` when it
   * cannot be by the deadline. Strict rules decide through the shared store, each attempt with
   * the rule's failure policy; the wait between attempts is the store's `retryAfterMs`.
   */
  acquire(rule: string, key: string, options?: AcquireOptions): Promise<Decision>;
  /**
   * Decides one request against every rule of `rules` for `key`: it must fit each of them, and
   * a refused request consumes from none (see multi-decision.ts for the order and for shadow
   * mode). Any mix of local, global and strict rules; each rule appears once.
   */
  decideAll(
    rules: string | readonly string[],
    key: string,
    options?: DecideAllOptions,
  ): Promise<MultiDecision>;
  /**
   * Puts `key` back at rest under `rule` (e.g. unlock a user after a support call) and lifts
   * its block. Local rules: at once. Strict: in the store. Global: on this node at once, and on
   * the aggregator and every other node when the node agent has carried it (docs/architecture.md,
   * "Key administration").
   */
  reset(rule: string, key: string): Promise<void>;
  /** Charges `cost` to `key` outside a decision (it may go past the limit: later hits wait). */
  penalty(rule: string, key: string, cost: number): Promise<void>;
  /** Refunds `cost` to `key` outside a decision (e.g. a request that failed), never past rest. */
  reward(rule: string, key: string, cost: number): Promise<void>;
  /** Refuses every hit of `key` under `rule` for `durationMs` (> 0, at most a year). */
  block(rule: string, key: string, durationMs: number): Promise<void>;
  /** Takes the per-key counts that changed since the previous snapshot (or drain). */
  snapshot(): AccountingSnapshot;
  /**
   * The allocation-free form of `snapshot()`: calls `visit` once per changed key with a cursor
   * filled in place (valid only during that call; see `ChangeCursor`). Use one or the other;
   * both consume the same changes.
   */
  drain(visit: ChangeVisitor): void;
  /** Counters per rule. */
  stats(): RuleStats[];
  /** The sampled decision-latency histogram, cumulative since start (see `latencySampleEvery`). */
  decisionLatency(): HistogramSnapshot;
  /** The compiled rules, in configuration order. */
  readonly rules: readonly CompiledRule[];
  /** The limiter's clock, for `deadlineMs`. */
  nowMs(): number;
  /** Frees keys at rest now, without waiting for the periodic sweep. Returns how many. */
  sweep(): number;
  /** Stops the sweep and rejects pending `acquire()` calls with `ClosedError`. Idempotent. */
  close(): Promise<void>;
  /** The hooks a node agent drives for `mode: "global"` rules. */
  readonly global: GlobalControl;
}

/** Shortest wait of `acquire()` between two attempts, ms. */
const MIN_RETRY_MS = 1;
/**
 * The bound `check()` holds a cost to, as a constant of this module: an imported binding is
 * live, so V8 loads it from its module cell at every use instead of folding it.
 */
const MAX_COST = LIMITER_MAX_COST;

/** Creates a keyed limiter. Throws `InvalidArgumentError` naming the first bad option. */
export function createLimiter(options: LimiterOptions): Limiter {
  return new KeyedLimiter(options);
}

class KeyedLimiter implements Limiter {
  readonly rules: readonly CompiledRule[];
  readonly #tables = new Map<string, KeyTable>();
  readonly #clock: Clock;
  readonly #sweepTimer: TimerHandle | undefined;
  readonly #waits: AcquireWaits;
  readonly #strict: StrictDecisions | undefined;
  #seq = 0;
  #closed = false;
  readonly global: GlobalControl;
  readonly #latency = new LatencyHistogram(DECISION_LATENCY_BOUNDS_S);
  /** A check() call is timed when `#timing` and the count below comes round to 0. */
  readonly #sampleMask: number;
  readonly #timing: boolean;
  /**
   * check() calls modulo latencySampleEvery. Kept wrapped, never a running total: a total leaves
   * V8's small-integer range after 2^31 calls (2^30 with pointer compression), and the field is
   * then stored as a boxed double.
   */
  #checks = 0;
  #lastRule: string | undefined;
  #lastTable: KeyTable | undefined;

  constructor(options: LimiterOptions) {
    const o = settleLimiterOptions(options);
    this.#clock = o.clock;
    this.#timing = o.latencySampleEvery !== 0;
    this.#sampleMask = o.latencySampleEvery === 0 ? 0 : o.latencySampleEvery - 1;
    this.rules = o.rules;
    for (const rule of this.rules) this.#tables.set(rule.name, new KeyTable(rule));
    this.#strict =
      o.strictStore === undefined ? undefined : new StrictDecisions(o.strictStore, this.#clock);
    this.#waits = new AcquireWaits(this.#clock);
    this.global = createGlobalControl(this.#tables, this.#clock, (rule, key) =>
      this.#waits.wakeGrantWaits(rule, key),
    );
    this.#sweepTimer =
      o.sweepIntervalMs > 0
        ? this.#clock.setRepeating(() => this.sweep(), o.sweepIntervalMs)
        : undefined;
  }

  check(rule: string, key: string, cost?: number): Decision {
    // Most services check one or two rules in a row: a one-entry cache skips the map lookup.
    const table = rule === this.#lastRule ? this.#lastTable! : this.#table(rule);
    cost = costOf(table, key, cost);
    if (table.rule.mode === "strict") throw strictInCheck(rule);
    const n = (this.#checks + 1) & this.#sampleMask;
    this.#checks = n;
    if (n !== 0 || !this.#timing) {
      return table.decide(key, this.#clock.nowMs(), cost);
    }
    const startMs = this.#clock.nowMs();
    const decision = table.decide(key, startMs, cost);
    this.#latency.record((this.#clock.nowMs() - startMs) / 1000);
    return decision;
  }

  decisionLatency(): HistogramSnapshot {
    return this.#latency.snapshot();
  }

  async checkAsync(rule: string, key: string, cost?: number): Promise<Decision> {
    const table = this.#table(rule);
    cost = costOf(table, key, cost);
    if (table.rule.mode !== "strict") return table.decide(key, this.#clock.nowMs(), cost);
    const { decision, accounted } = await this.#strict!.decide(table, key, cost);
    const shadowed = !decision.allowed && table.rule.shadow;
    if (!accounted) table.record(key, this.#clock.nowMs(), cost, decision.allowed, shadowed);
    return shadowed ? shadowOf(decision) : decision;
  }

  peek(rule: string, key: string, cost?: number): Decision {
    const table = this.#table(rule);
    cost = costOf(table, key, cost);
    if (table.rule.mode === "strict") throw strictInPeek(rule);
    return shownPeek(table, table.peek(key, this.#clock.nowMs(), cost));
  }

  async peekAsync(rule: string, key: string, cost?: number): Promise<Decision> {
    const table = this.#table(rule);
    cost = costOf(table, key, cost);
    const d =
      table.rule.mode !== "strict"
        ? table.peek(key, this.#clock.nowMs(), cost)
        : await this.#strict!.peek(table, key, cost);
    return shownPeek(table, d);
  }

  async decideAll(
    rules: string | readonly string[],
    key: string,
    options: DecideAllOptions = {},
  ): Promise<MultiDecision> {
    return decideAll(
      settleMultiCall(rules, key, options, (r) => this.#table(r)),
      this.#clock,
      this.#strict,
    );
  }

  async reset(rule: string, key: string): Promise<void> {
    await this.#administer({ rule, key, op: "reset", cost: 0, durationMs: 0 });
  }

  async penalty(rule: string, key: string, cost: number): Promise<void> {
    await this.#administer({ rule, key, op: "penalty", cost: adminCost(cost), durationMs: 0 });
  }

  async reward(rule: string, key: string, cost: number): Promise<void> {
    await this.#administer({ rule, key, op: "reward", cost: adminCost(cost), durationMs: 0 });
  }

  async block(rule: string, key: string, durationMs: number): Promise<void> {
    const ms = expectNumber("durationMs", durationMs, { above: 0, max: YEAR_MS });
    await this.#administer({ rule, key, op: "block", cost: 0, durationMs: ms });
  }

  async #administer(command: KeyCommand): Promise<void> {
    const table = this.#table(command.rule);
    if (typeof command.key !== "string")
      throw new InvalidArgumentError("key", "a string", command.key);
    if (table.rule.mode === "strict") {
      await this.#strict!.administer(table.rule, command);
      // Waits on the key end their sleep early only for global rules; a strict or local key's
      // waiters retry when their wait is up, and then see the new state.
      return;
    }
    applyKeyCommand(table, command, this.#clock.nowMs());
    if (table.rule.mode === "global") await this.global.administered(command);
  }

  async acquire(rule: string, key: string, options: AcquireOptions = {}): Promise<Decision> {
    const table = this.#table(rule);
    if (typeof key !== "string") throw new InvalidArgumentError("key", "a string", key);
    const { cost, signal, deadlineMs } = settleAcquireOptions(
      options,
      table.rule.defaultCost,
      this.#clock,
    );
    for (;;) {
      if (signal?.aborted) {
        table.record(key, this.#clock.nowMs(), cost, false);
        throw new AbortedError("acquire() was aborted by its signal", { cause: signal.reason });
      }
      let refusal: Decision;
      if (table.rule.mode === "strict") {
        const { decision, accounted } = await this.#strict!.decide(table, key, cost);
        if (decision.allowed) {
          // Taken in the store: the hit is the caller's even if the limiter closed meanwhile.
          if (!accounted) table.record(key, this.#clock.nowMs(), cost, true);
          return decision;
        }
        if (this.#closed) throw new ClosedError("The limiter was closed while acquire() waited");
        if (signal?.aborted) continue; // accounted and thrown at the top
        refusal = decision;
      } else {
        const nowMs = this.#clock.nowMs();
        const preview = table.peek(key, nowMs, cost);
        if (preview.allowed || table.rule.shadow) {
          const decision = table.decide(key, nowMs, cost);
          if (decision.allowed) return decision;
        }
        refusal = preview;
      }
      if (table.rule.shadow) {
        // A shadow rule never makes a caller wait: the refusal is let through, counted once.
        table.record(key, this.#clock.nowMs(), cost, false, true);
        return shadowOf(refusal);
      }
      await this.#waitAfter(refusal, { table, key, cost, signal, deadlineMs });
    }
  }

  /**
   * Waits after a refused attempt of `acquire()`, or throws `DeadlineExceededError` (accounting
   * the rejection) when the refusal's wait would end past the deadline.
   */
  async #waitAfter(refusal: Decision, call: AcquireCall): Promise<void> {
    const { table, key, cost, signal } = call;
    const nowMs = this.#clock.nowMs();
    const remainingMs = call.deadlineMs - nowMs;
    // Infinity means the cost can never fit: fail now even with no deadline at all.
    if (refusal.retryAfterMs === Infinity || !(refusal.retryAfterMs <= remainingMs)) {
      table.record(key, nowMs, cost, false);
      throw new DeadlineExceededError(refusal.retryAfterMs, Math.max(0, remainingMs));
    }
    // A refusal that names no wait (another process took what had freed) still waits a
    // little, so a contended strict key is not asked again in a busy loop. A global key's
    // wait also ends when a new grant for it arrives.
    const waitMs = Math.min(Math.max(refusal.retryAfterMs, MIN_RETRY_MS), remainingMs);
    if (table.rule.mode !== "global") {
      await this.#waits.sleep(waitMs, signal);
      return;
    }
    table.addWaiting(key, cost);
    try {
      await this.#waits.sleepOrGrant(waitMs, signal, table.rule.name, key);
    } finally {
      table.addWaiting(key, -cost);
    }
  }

  snapshot(): AccountingSnapshot {
    const entries: AccountingEntry[] = [];
    this.drain((c) => {
      entries.push({
        rule: c.rule,
        key: c.key,
        generation: c.generation,
        admitted: c.admitted,
        rejected: c.rejected,
        deltaAdmitted: c.deltaAdmitted,
        deltaRejected: c.deltaRejected,
        isNew: c.isNew,
        grantEpoch: c.grantEpoch,
        grantVersion: c.grantVersion,
        allowance: c.allowance,
      });
    });
    return { seq: this.#seq, atMs: this.#clock.nowMs(), entries };
  }

  drain(visit: ChangeVisitor): void {
    this.#seq++;
    const nowMs = this.#clock.nowMs();
    for (const table of this.#tables.values()) table.drain(visit, nowMs);
  }

  stats(): RuleStats[] {
    return [...this.#tables.values()].map((t) => ({
      rule: t.rule.name,
      keys: t.size,
      admittedHits: t.admittedHits,
      rejectedHits: t.rejectedHits,
      reclaimedKeys: t.reclaimed,
      evictedKeys: t.evicted,
      storeFailures: t.storeFailures,
      grantsApplied: t.grantsApplied,
      grantsIgnored: t.grantsIgnored,
      grantsImplausible: t.grantsImplausible,
      shadowedHits: t.shadowedHits,
    }));
  }

  nowMs(): number {
    return this.#clock.nowMs();
  }

  sweep(): number {
    const nowMs = this.#clock.nowMs();
    let freed = 0;
    for (const table of this.#tables.values()) freed += table.sweep(nowMs);
    return freed;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#lastRule = undefined; // so check() reaches #table() and throws ClosedError
    this.#sweepTimer?.cancel();
    await this.#strict?.close();
    this.#waits.cancelAll(new ClosedError("The limiter was closed while acquire() waited"));
  }

  #table(rule: string): KeyTable {
    const table = this.#tables.get(rule);
    if (table === undefined || this.#closed) {
      if (this.#closed) throw new ClosedError("The limiter is closed");
      throw new UnknownRuleError(rule, [...this.#tables.keys()]);
    }
    this.#lastRule = rule;
    this.#lastTable = table;
    return table;
  }
}

/** One `acquire()` call, as its waits need it. */
interface AcquireCall {
  readonly table: KeyTable;
  readonly key: string;
  readonly cost: number;
  readonly signal: AbortSignal | undefined;
  readonly deadlineMs: number;
}

function strictInCheck(rule: string): InvalidArgumentError {
  return new InvalidArgumentError(
    "rule",
    "a local rule for check() (strict rules decide over the network: use checkAsync())",
    rule,
  );
}

function strictInPeek(rule: string): InvalidArgumentError {
  return new InvalidArgumentError(
    "rule",
    "a local or global rule for peek() (a strict rule's state is in the shared store: use peekAsync())",
    rule,
  );
}

/** A peek as the caller sees it: a shadow rule's refusal shows as the hit let through. */
function shownPeek(table: KeyTable, d: Decision): Decision {
  return !d.allowed && table.rule.shadow ? shadowOf(d) : d;
}

/** Checks `key` and `cost` (the rule's default when undefined); returns the cost to decide. */
function costOf(table: KeyTable, key: unknown, cost: unknown): number {
  if (typeof key !== "string") throw new InvalidArgumentError("key", "a string", key);
  if (cost === undefined) return table.rule.defaultCost;
  if (typeof cost !== "number" || !(cost > 0 && cost <= MAX_COST)) throw badCost(cost);
  return cost;
}

function badCost(cost: unknown): InvalidArgumentError {
  return new InvalidArgumentError("cost", `a finite number > 0 and <= ${MAX_COST}`, cost);
}
