/**
 * The keyed limiter: the object a service holds to decide hits in process.
 *
 * `check()` is synchronous and touches only process memory: a rule lookup, a key lookup and the
 * rule's algorithm over that key's state. `acquire()` waits for capacity but never sleeps into a
 * failure: it computes the wait first and rejects at once when the wait would end past the
 * caller's deadline. Every timer it starts is owned here and cleared by `close()`.
 */
import { type Decision, DecisionResult } from "../algorithms/types.js";
import { type Clock, monotonicClock, type TimerHandle } from "../clock/clock.js";
import {
  AbortedError,
  ClosedError,
  DeadlineExceededError,
  InvalidArgumentError,
  UnknownRuleError,
} from "../errors.js";
import { expectKnownKeys, expectNumber, expectObject, optionalNumber } from "../validate.js";
import type { Grant, GrantOutcome } from "./grant-cells.js";
import type { AccountingEntry, ChangeVisitor } from "./key-change.js";
import { KeyTable } from "./key-table.js";
import {
  DECISION_LATENCY_BOUNDS_S,
  type HistogramSnapshot,
  LatencyHistogram,
} from "./latency-histogram.js";
import { type CompiledRule, compileRule, type RuleConfig } from "./rule.js";
import { StoreUnavailableError, type StrictStore } from "./strict-store.js";

export interface LimiterOptions {
  /** The rules this limiter enforces; names must be unique. At least one. */
  readonly rules: readonly RuleConfig[];
  /**
   * Default most keys held per rule (a rule's own `maxKeys` wins). Memory per key is about
   * 150-250 bytes plus the key string; see docs/benchmarks.md for measured figures.
   * @default 100_000
   */
  readonly maxKeys?: number;
  /**
   * How often keys at rest are reclaimed, in ms; 0 turns the sweep off (the `maxKeys` cap still
   * holds).
   * @default 10_000
   */
  readonly sweepIntervalMs?: number;
  /** Time source; tests pass a `ManualClock`. @default monotonicClock */
  readonly clock?: Clock;
  /** The shared store `mode: "strict"` rules decide through (e.g. `createRedisStrictStore`). */
  readonly strictStore?: StrictStore;
  /**
   * One `check()` in this many (a power of two) is timed into the decision-latency histogram;
   * 0 turns timing off. Timing every call would add a clock read (about 60 ns here) to each.
   * @default 64
   */
  readonly latencySampleEvery?: number;
}

export interface AcquireOptions {
  /** Cost of the hit. @default the rule's `cost` */
  readonly cost?: number;
  /** Give up when this fires; the wait is cancelled at once. */
  readonly signal?: AbortSignal;
  /**
   * Absolute deadline on the limiter's clock (`limiter.nowMs()`): when capacity cannot come by
   * then, the call rejects at once with `DeadlineExceededError` instead of waiting.
   */
  readonly deadlineMs?: number;
  /** Relative form of `deadlineMs`: the most ms to wait from now. Both may be given; the earlier wins. */
  readonly timeoutMs?: number;
}

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

/**
 * What the node agent uses to connect global rules to the aggregator. Not needed by services
 * that only call `check()`.
 */
export interface GlobalControl {
  /** True when at least one rule has `mode: "global"`. */
  readonly hasGlobalRules: boolean;
  /**
   * Applies one grant from aggregator run `aggregatorEpoch` (see `KeyTable.applyGrant`): ignored
   * for an unknown rule or key, another generation or one not newer; dropped as implausible
   * when it gives more than the rule could or jumps versions. An applied grant wakes the
   * `acquire()` calls waiting on that key.
   */
  applyGrant(rule: string, key: string, aggregatorEpoch: number, grant: Grant): GrantOutcome;
  /** Sets the live node count behind the default share (limit / live nodes). */
  setLiveNodes(liveNodes: number): void;
  /** Switches every global rule to (or back from) its `onAggregatorLoss` policy. */
  setAggregatorLost(lost: boolean): void;
  /**
   * Until `untilMs` (the limiter's clock), keys decided by the `static` loss policy are refused,
   * with the rest of that time as `retryAfterMs`: a node that has not yet heard how many nodes
   * share the limit. `-Infinity` ends the hold.
   */
  setStaticHold(untilMs: number): void;
  /**
   * The node's sync interval, ms: the wait a refusal reports once its grant's freeing time has
   * passed, and the pace the version-jump bound of grants allows.
   */
  setSyncIntervalMs(ms: number): void;
  /**
   * Drops every grant held (an aggregator run that started on a clock behind the last one's:
   * its grants must apply though its epoch is lower). Keys decide with their default share or
   * the loss policy until new grants come.
   */
  dropGrants(): void;
  /** Marks every held key changed, so the next drain reports all (after a reconnect). */
  markAllDirty(): void;
  /** Keys changed since the last drain, over every rule (for an early flush). */
  pendingChanges(): number;
}

const OPTION_KEYS = [
  "rules",
  "maxKeys",
  "sweepIntervalMs",
  "clock",
  "strictStore",
  "latencySampleEvery",
];
const ACQUIRE_KEYS = ["cost", "signal", "deadlineMs", "timeoutMs"];
const MAX_COST = 1e15;
/** Shortest wait of `acquire()` between two attempts, ms. */
const MIN_RETRY_MS = 1;

/** Creates a keyed limiter. Throws `InvalidArgumentError` naming the first bad option. */
export function createLimiter(options: LimiterOptions): Limiter {
  return new KeyedLimiter(options);
}

class KeyedLimiter implements Limiter {
  readonly rules: readonly CompiledRule[];
  readonly #tables = new Map<string, KeyTable>();
  readonly #clock: Clock;
  readonly #sweepTimer: TimerHandle | undefined;
  readonly #waits = new Set<(err: Error) => void>();
  /** `acquire()` calls on global keys waiting, by `rule \0 key`: a new grant ends their wait. */
  readonly #grantWaits = new Map<string, Set<() => void>>();
  readonly #strictStore: StrictStore | undefined;
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
    const raw = expectObject("options", options);
    expectKnownKeys("options", raw, OPTION_KEYS);
    if (!Array.isArray(options.rules) || options.rules.length === 0) {
      throw new InvalidArgumentError("rules", "a non-empty array of rules", options.rules);
    }
    const maxKeys = optionalNumber("maxKeys", options.maxKeys, 100_000, {
      integer: true,
      min: 1,
      max: 2 ** 26,
    });
    const sweepIntervalMs = optionalNumber("sweepIntervalMs", options.sweepIntervalMs, 10_000, {
      min: 0,
      max: 2 ** 31 - 1,
    });
    this.#clock = options.clock ?? monotonicClock;
    const sampleEvery = optionalNumber("latencySampleEvery", options.latencySampleEvery, 64, {
      integer: true,
      min: 0,
      max: 2 ** 30,
    });
    if (sampleEvery !== 0 && (sampleEvery & (sampleEvery - 1)) !== 0) {
      throw new InvalidArgumentError("latencySampleEvery", "0 or a power of two", sampleEvery);
    }
    this.#timing = sampleEvery !== 0;
    this.#sampleMask = sampleEvery === 0 ? 0 : sampleEvery - 1;
    this.rules = options.rules.map((r, i) => compileRule(r, `rules[${i}]`, maxKeys));
    for (const [i, rule] of this.rules.entries()) {
      if (this.#tables.has(rule.name)) {
        throw new InvalidArgumentError(`rules[${i}].name`, "a name no other rule has", rule.name);
      }
      if (rule.mode === "strict" && options.strictStore === undefined) {
        throw new InvalidArgumentError(
          "strictStore",
          `a StrictStore, since rules[${i}] ("${rule.name}") has mode "strict"`,
          options.strictStore,
        );
      }
      this.#tables.set(rule.name, new KeyTable(rule));
    }
    this.#strictStore = options.strictStore;
    const tables = [...this.#tables.values()];
    this.global = {
      hasGlobalRules: this.rules.some((r) => r.mode === "global"),
      applyGrant: (rule, key, epoch, grant) => {
        const table = this.#tables.get(rule);
        if (table === undefined) return "ignored";
        const outcome = table.applyGrant(key, epoch, grant, this.#clock.nowMs());
        if (outcome === "applied" && this.#grantWaits.size > 0) this.#wakeGrantWaits(rule, key);
        return outcome;
      },
      setLiveNodes: (n) => {
        for (const t of tables) t.setLiveNodes(n);
      },
      setAggregatorLost: (lost) => {
        for (const t of tables) t.setAggregatorLost(lost);
      },
      setStaticHold: (untilMs) => {
        for (const t of tables) t.setStaticHold(untilMs);
      },
      setSyncIntervalMs: (ms) => {
        for (const t of tables) t.setSyncIntervalMs(ms);
      },
      dropGrants: () => {
        for (const t of tables) t.dropGrants();
      },
      markAllDirty: () => {
        for (const t of tables) t.markAllDirty();
      },
      pendingChanges: () => {
        let n = 0;
        for (const t of tables) n += t.pendingChanges;
        return n;
      },
    };
    this.#sweepTimer =
      sweepIntervalMs > 0
        ? this.#clock.setRepeating(() => this.sweep(), sweepIntervalMs)
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
    const { decision, accounted } = await this.#decideStrict(table, key, cost);
    if (!accounted) table.record(key, this.#clock.nowMs(), cost, decision.allowed);
    return decision;
  }

  /**
   * One strict decision through the store, with the rule's `onStoreFailure` policy when the
   * store does not answer. Accounts only what the `local` policy admitted with the local table
   * (`accounted`); the caller accounts the rest, so a refused attempt of `acquire()` that will
   * be retried is not counted as a rejection.
   */
  async #decideStrict(
    table: KeyTable,
    key: string,
    cost: number,
  ): Promise<{ decision: Decision; accounted: boolean }> {
    const r = table.rule;
    try {
      return { decision: await this.#strictStore!.decide(r, key, cost), accounted: false };
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      table.storeFailures++;
      if (r.onStoreFailure === "local") {
        const nowMs = this.#clock.nowMs();
        const preview = table.peek(key, nowMs, cost);
        if (!preview.allowed) return { decision: preview, accounted: false };
        const decision = table.decide(key, nowMs, cost);
        return { decision, accounted: true };
      }
      return { decision: this.#storeFailureDecision(r), accounted: false };
    }
  }

  /** The `open` or `closed` policy's answer for a strict rule whose store did not answer. */
  #storeFailureDecision(r: CompiledRule): Decision {
    const open = r.onStoreFailure === "open";
    return new DecisionResult(open, 0, r.params.capacity, 0, open ? 0 : r.storeTimeoutMs);
  }

  peek(rule: string, key: string, cost?: number): Decision {
    const table = this.#table(rule);
    cost = costOf(table, key, cost);
    if (table.rule.mode === "strict") throw strictInPeek(rule);
    return table.peek(key, this.#clock.nowMs(), cost);
  }

  async peekAsync(rule: string, key: string, cost?: number): Promise<Decision> {
    const table = this.#table(rule);
    cost = costOf(table, key, cost);
    if (table.rule.mode !== "strict") return table.peek(key, this.#clock.nowMs(), cost);
    const r = table.rule;
    try {
      return await this.#strictStore!.peek(r, key, cost);
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      table.storeFailures++;
      if (r.onStoreFailure === "local") return table.peek(key, this.#clock.nowMs(), cost);
      return this.#storeFailureDecision(r);
    }
  }

  async acquire(rule: string, key: string, options: AcquireOptions = {}): Promise<Decision> {
    const table = this.#table(rule);
    if (typeof key !== "string") throw new InvalidArgumentError("key", "a string", key);
    expectKnownKeys("options", expectObject("options", options), ACQUIRE_KEYS);
    const cost =
      options.cost === undefined
        ? table.rule.defaultCost
        : expectNumber("options.cost", options.cost, { above: 0, max: MAX_COST });
    const signal = options.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new InvalidArgumentError("options.signal", "an AbortSignal", signal);
    }
    let deadlineMs = Infinity;
    if (options.deadlineMs !== undefined) {
      deadlineMs = expectNumber("options.deadlineMs", options.deadlineMs);
    }
    if (options.timeoutMs !== undefined) {
      const timeoutMs = expectNumber("options.timeoutMs", options.timeoutMs, { min: 0 });
      deadlineMs = Math.min(deadlineMs, this.#clock.nowMs() + timeoutMs);
    }
    const strict = table.rule.mode === "strict";
    for (;;) {
      if (signal?.aborted) {
        table.record(key, this.#clock.nowMs(), cost, false);
        throw new AbortedError("acquire() was aborted by its signal", { cause: signal.reason });
      }
      let refusal: Decision;
      if (strict) {
        const { decision, accounted } = await this.#decideStrict(table, key, cost);
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
        if (preview.allowed) {
          const decision = table.decide(key, nowMs, cost);
          if (decision.allowed) return decision;
        }
        refusal = preview;
      }
      const nowMs = this.#clock.nowMs();
      const remainingMs = deadlineMs - nowMs;
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
        await this.#sleep(waitMs, signal);
        continue;
      }
      table.addWaiting(key, cost);
      try {
        await this.#sleep(waitMs, signal, `${rule}\0${key}`);
      } finally {
        table.addWaiting(key, -cost);
      }
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
    await this.#strictStore?.close();
    const err = new ClosedError("The limiter was closed while acquire() waited");
    for (const cancel of [...this.#waits]) cancel(err);
    this.#waits.clear();
  }

  #wakeGrantWaits(rule: string, key: string): void {
    const set = this.#grantWaits.get(`${rule}\0${key}`);
    if (set === undefined) return;
    for (const wake of [...set]) wake();
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

  /**
   * Waits `ms`, owned by this limiter: `close()` or the signal end the wait early, with an
   * error; with `wakeOn` (`rule \0 key`), a grant applied for that key ends it early too.
   */
  #sleep(ms: number, signal: AbortSignal | undefined, wakeOn?: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const finish = () => {
        this.#waits.delete(cancel);
        signal?.removeEventListener("abort", onAbort);
        if (wakeOn !== undefined) {
          const set = this.#grantWaits.get(wakeOn);
          set?.delete(wake);
          if (set?.size === 0) this.#grantWaits.delete(wakeOn);
        }
      };
      const timer = this.#clock.setTimer(() => {
        finish();
        resolve();
      }, ms);
      const wake = () => {
        timer.cancel();
        finish();
        resolve();
      };
      if (wakeOn !== undefined) {
        let set = this.#grantWaits.get(wakeOn);
        if (set === undefined) {
          set = new Set();
          this.#grantWaits.set(wakeOn, set);
        }
        set.add(wake);
      }
      const cancel = (err: Error) => {
        timer.cancel();
        finish();
        reject(err);
      };
      // Looping back to the top of acquire() turns the abort into AbortedError with accounting.
      const onAbort = () => {
        timer.cancel();
        finish();
        resolve();
      };
      this.#waits.add(cancel);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
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
