/**
 * Per-key state of one rule, with bounded memory and hit accounting.
 *
 * In:  (key, nowMs, cost) from `check()`.
 * Out: a decision; cumulative admitted/rejected cost per key; snapshots of what changed.
 *
 * Layout: a `Map<string, slot>` plus one `Float64Array` holding every slot's numbers side by side:
 *
 *     [algorithm state (stride cells)] [pendingAdmitted, pendingRejected, flags] [admitted, rejected, generation]
 *      hot: read and written by every decision ------------------------------  cold: drain only
 *
 * so a decision touches one map entry and one or two cache lines, and allocates nothing but the
 * decision object. Slots grow by doubling up to `maxKeys`. `flags` holds two bits: RECENT (used
 * since the eviction hand passed) and DIRTY (in the list of slots to report).
 *
 * Memory policy:
 * - Idle reclamation: `sweep()` frees every key whose state is back at rest (full bucket, empty
 *   window) and whose counts have been taken by a snapshot. Forgetting such a key changes no
 *   decision, so reclamation is invisible to callers.
 * - Cap: when `maxKeys` keys are held and a new key comes, one key is evicted by CLOCK (second
 *   chance): a hand sweeps the slots, clearing each slot's "used since last pass" bit and evicting
 *   the first slot whose bit is already clear. This approximates least-recently-used at the cost
 *   of one byte write per decision. An evicted key that comes back starts at rest, so for that
 *   key the limiter errs open once; evictions are counted so operators can raise `maxKeys`.
 *   Counts an evicted key had not yet reported are kept for the next snapshot, never dropped.
 *
 * Global rules (`mode: "global"`) add cells per slot for the key's grant from the aggregator: the
 * aggregator epoch and per-key version it came with, the allowance (the cumulative admitted cost of
 * this key generation up to which this node may admit), its ramp, when it arrived and when the
 * aggregator's window frees capacity next (see `GLOBAL_EXTRA_CELLS`). With a grant, a hit is
 * admitted when cumulative admitted + cost <= allowance, and a refusal's `retryAfterMs` is the
 * time until that freeing; without one (a key the aggregator has not seen yet), the rule's own
 * algorithm decides at this node's default share (limit / live nodes). When the aggregator is
 * lost, the rule's `onAggregatorLoss` policy decides instead.
 *
 * Accounting: cumulative admitted and rejected cost per key since this table's start. Each key
 * also carries a `generation`, unique per table, that changes whenever the key is created again
 * after reclamation or eviction, so a consumer of cumulative counts (the aggregator) knows to start
 * a new baseline instead of reading the restart as a lost update.
 */
import {
  type AlgorithmParams,
  type Decision,
  DecisionResult,
  EPSILON,
} from "../algorithms/types.js";
import { ChangeCursorRecord, type ChangeVisitor } from "./change-cursor.js";
import type { CompiledRule } from "./rule.js";

/** What one key did between two snapshots. Counts are in cost units. */
export interface AccountingEntry {
  readonly rule: string;
  /** True the first time this key generation is reported. */
  readonly isNew: boolean;
  /** Global rules: the grant in force (aggregator epoch, per-key version, allowance); 0 if none. */
  readonly grantEpoch: number;
  readonly grantVersion: number;
  readonly allowance: number;
  readonly key: string;
  /** Changes each time the key is created anew in this limiter (see module docs). */
  readonly generation: number;
  /** Cumulative admitted cost of this key generation. */
  readonly admitted: number;
  /** Cumulative rejected cost of this key generation. */
  readonly rejected: number;
  /** Admitted cost since the previous snapshot. */
  readonly deltaAdmitted: number;
  /** Rejected cost since the previous snapshot. */
  readonly deltaRejected: number;
}

/** A grant from the aggregator for one key generation, as `KeyTable.applyGrant` takes it. */
export interface Grant {
  /** The key generation it is for; 0 for a grant sent ahead, before the node reported the key. */
  readonly generation: number;
  /** Per-key version within the aggregator run; only a newer one applies. */
  readonly version: number;
  /** Cumulative admitted cost of the key generation up to which this node may admit. */
  readonly allowance: number;
  /** What of `allowance` is usable at receipt; the rest ramps in over `rampMs`. */
  readonly rampFrom: number;
  readonly rampMs: number;
  /** From receipt, how long until the aggregator's window frees capacity next, ms. */
  readonly retryAfterMs: number;
}

/**
 * What became of a grant: applied, ignored (not newer, or for a key generation no longer held),
 * or implausible (more than the rule could ever give, or a version further ahead than the
 * aggregator can have counted: a forgery or a corrupt sender, dropped and counted).
 */
export type GrantOutcome = "applied" | "ignored" | "implausible";

/**
 * Most grant versions an aggregator can hand out for one key per sync interval, per live node:
 * one allocation per tick plus the early ticks a join causes (at most one per tenth of an
 * interval). A version further ahead of the grant in force than this allows, for the time since
 * it arrived, cannot be the aggregator's.
 */
const MAX_VERSIONS_PER_INTERVAL_PER_NODE = 12;
/** Versions allowed ahead on top of that bound. */
const VERSION_JUMP_SLACK = 16;

const INITIAL_SLOTS = 64;
// Offsets after the algorithm's state cells.
const PENDING_ADMITTED = 0;
const PENDING_REJECTED = 1;
const FLAGS = 2;
const ADMITTED = 3;
const REJECTED = 4;
const GENERATION = 5;
const REPORTED = 6;
const EXTRA_CELLS = 7;
// Global rules only, after the cells above.
const GRANT_EPOCH = 7;
const GRANT_VERSION = 8;
const GRANT_ALLOWANCE = 9;
/** Sum of (admission time - table start) x cost of the pending admitted hits. */
const PENDING_TIME = 10;
/**
 * A grant's ramp (see applyGrant): the allowance usable at GRANT_AT, growing linearly to
 * GRANT_ALLOWANCE at GRANT_END; GRANT_END = -Infinity when the whole allowance is usable.
 */
const GRANT_BASE = 11;
const GRANT_AT = 12;
const GRANT_END = 13;
/** When the aggregator's window frees capacity for the key next (this node's clock). */
const GRANT_FREE_AT = 14;
/** When the grant in force arrived (this node's clock): the base of the version-jump bound. */
const GRANT_HEARD_AT = 15;
const GLOBAL_EXTRA_CELLS = 16;
const RECENT = 1;
const DIRTY = 2;
const RECENT_DIRTY = 3;

export class KeyTable {
  readonly rule: CompiledRule;
  /** Decisions taken, by outcome (hits, not cost). Plain numbers: read at collection time. */
  admittedHits = 0;
  rejectedHits = 0;
  /** Keys forgotten because they were idle at rest / pushed out by the `maxKeys` cap. */
  reclaimed = 0;
  evicted = 0;
  /** Strict-rule decisions the store failed to make. */
  storeFailures = 0;
  /** Global rules: grants applied, and grants ignored (older, or for a key generation gone). */
  grantsApplied = 0;
  grantsIgnored = 0;
  /** Global rules: grants dropped as implausible (see {@link GrantOutcome}). */
  grantsImplausible = 0;

  readonly #global: boolean;
  /** Admission times are summed relative to this, to keep the sums exact in a double. */
  #startMs = Number.NaN;
  /** The parameters the algorithm runs with: the rule's, or its default share when global. */
  #params: AlgorithmParams;
  #aggregatorLost = false;
  /** Until then (this table's clock), the `static` loss policy refuses (see `setStaticHold`). */
  #staticHoldUntilMs = Number.NEGATIVE_INFINITY;
  /** The node's sync interval: a refusal's wait once the grant's freeing time has passed. */
  #syncIntervalMs = 25;
  #liveNodes = 1;
  /**
   * Global rules: (slot, generation) pairs of the keys with hits at the last drain (see
   * `drain`), in a typed array that grows by doubling, so draining allocates nothing once warm.
   */
  #activeAtDrain = new Float64Array(256);
  #activeCount = 0;
  readonly #algoStride: number;
  readonly #stride: number;
  readonly #map = new Map<string, number>();
  #keys: (string | undefined)[] = [];
  #capacity = 0;
  #used = 0;
  #free: number[] = [];
  #hand = 0;
  #nextGeneration = 1;
  #slots = new Float64Array(0);
  #dirtyList = new Int32Array(0);
  #dirtyCount = 0;
  #retired: AccountingEntry[] = [];
  /** Global rules: cost waiting in `acquire()`, by key (see `addWaiting`). */
  readonly #waiting = new Map<string, number>();
  #scratch: Float64Array;
  /** Filled in place for each key a drain hands out (see ChangeCursor). */
  readonly #cursor: ChangeCursorRecord;

  constructor(rule: CompiledRule) {
    this.rule = rule;
    this.#global = rule.mode === "global";
    this.#params = rule.params;
    this.#algoStride = rule.algorithm.stride(rule.params);
    this.#stride = this.#algoStride + (this.#global ? GLOBAL_EXTRA_CELLS : EXTRA_CELLS);
    this.#scratch = new Float64Array(this.#algoStride);
    this.#cursor = new ChangeCursorRecord(rule.name);
    this.#grow(Math.min(INITIAL_SLOTS, rule.maxKeys));
  }

  /** Keys changed since the last drain. */
  get pendingChanges(): number {
    return this.#dirtyCount + this.#retired.length;
  }

  /** Keys currently held. */
  get size(): number {
    return this.#map.size;
  }

  /** Decides one hit for `key` and accounts for it. The hot path. */
  decide(key: string, nowMs: number, cost: number): Decision {
    let slot = this.#map.get(key);
    if (slot === undefined) slot = this.#insert(key, nowMs);
    const base = slot * this.#stride;
    const slots = this.#slots;
    const d = this.#global
      ? this.#decideGlobal(slots, base, nowMs, cost)
      : this.rule.algorithm.decide(slots, base, this.#params, nowMs, cost);
    const extra = base + this.#algoStride;
    if (d.allowed) {
      slots[extra + PENDING_ADMITTED]! += cost;
      if (this.#global) slots[extra + PENDING_TIME]! += (nowMs - this.#startMs) * cost;
      this.admittedHits++;
    } else {
      slots[extra + PENDING_REJECTED]! += cost;
      this.rejectedHits++;
    }
    if (slots[extra + FLAGS] !== RECENT_DIRTY) this.#mark(slot, extra);
    return d;
  }

  #decideGlobal(slots: Float64Array, base: number, nowMs: number, cost: number): Decision {
    if (Number.isNaN(this.#startMs)) this.#startMs = nowMs; // first global decision
    const rule = this.rule;
    if (this.#aggregatorLost) {
      const policy = rule.onAggregatorLoss;
      if (policy === "open") return new DecisionResult(true, rule.limit, rule.limit, 0, 0);
      if (policy === "closed") {
        return new DecisionResult(false, 0, rule.limit, rule.windowMs, this.#syncIntervalMs);
      }
      if (nowMs < this.#staticHoldUntilMs) {
        const waitMs = this.#staticHoldUntilMs - nowMs;
        return new DecisionResult(false, 0, rule.limit, rule.windowMs, waitMs);
      }
      return rule.algorithm.decide(slots, base, this.#params, nowMs, cost);
    }
    const extra = base + this.#algoStride;
    if (slots[extra + GRANT_EPOCH]! > 0) {
      const used = slots[extra + ADMITTED]! + slots[extra + PENDING_ADMITTED]!;
      const room = this.#allowanceAt(slots, extra, nowMs) - used;
      if (cost <= room + EPSILON) {
        const left = Math.floor(room - cost + EPSILON);
        return new DecisionResult(true, left, rule.limit, rule.windowMs, 0);
      }
      const retryAfterMs =
        cost > rule.limit + EPSILON ? Infinity : this.#grantWaitMs(slots, extra, nowMs, cost);
      const left = room > 0 ? Math.floor(room + EPSILON) : 0;
      return new DecisionResult(false, left, rule.limit, rule.windowMs, retryAfterMs);
    }
    return rule.algorithm.decide(slots, base, this.#params, nowMs, cost);
  }

  /** What `decide` would say, changing nothing and creating no key. */
  peek(key: string, nowMs: number, cost: number): Decision {
    const slot = this.#map.get(key);
    const algorithm = this.rule.algorithm;
    if (slot !== undefined) {
      const base = slot * this.#stride;
      const granted = this.#global && this.#slots[base + this.#algoStride + GRANT_EPOCH]! > 0;
      if (granted || (this.#global && this.#aggregatorLost)) {
        // Without the algorithm, a global decision changes nothing but counts, which this skips.
        return this.#decideGlobal(this.#slots, base, nowMs, cost);
      }
      return algorithm.peek(this.#slots, base, this.#params, nowMs, cost);
    }
    algorithm.init(this.#scratch, 0, this.#params, nowMs);
    return algorithm.peek(this.#scratch, 0, this.#params, nowMs, cost);
  }

  /**
   * Global rules: applies a grant for `key` if it is for the key generation held now and newer
   * than the grant in force ((epoch, version) compared in that order), and plausible. Generation
   * 0 is a grant the aggregator sends ahead, for a key this node has not reported (a key near its
   * limit): it applies to whatever generation is held, creating the key if need be. Its allowance
   * counts from the start of that generation, so hits already taken are charged to it. Of the
   * allowance, `rampFrom` is usable now and the rest becomes usable linearly over `rampMs` (the
   * budget the aggregator's window frees over its next interval, handed out as it frees).
   *
   * Implausible, and dropped: an allowance beyond this generation's admitted cost plus the
   * rule's limit and capacity (the aggregator never grants more than a window's limit beyond
   * what a node reported), or, within one aggregator run, a version further ahead of the grant in
   * force than the aggregator could have sent since it arrived. Without the version bound one
   * forged grant with a huge version would make the node ignore every real grant after it.
   */
  applyGrant(key: string, epoch: number, grant: Grant, nowMs: number): GrantOutcome {
    if (!this.#global) {
      this.grantsIgnored++;
      return "ignored";
    }
    let slot = this.#map.get(key);
    if (slot === undefined) {
      if (grant.generation !== 0) {
        this.grantsIgnored++;
        return "ignored";
      }
      if (!this.#isPlausible(grant.allowance, 0)) return this.#implausible();
      slot = this.#insert(key, nowMs);
    }
    const extra = slot * this.#stride + this.#algoStride;
    const slots = this.#slots;
    const heldEpoch = slots[extra + GRANT_EPOCH]!;
    const heldVersion = slots[extra + GRANT_VERSION]!;
    const { generation, version, allowance } = grant;
    const newer = epoch > heldEpoch || (epoch === heldEpoch && version > heldVersion);
    if ((generation !== 0 && slots[extra + GENERATION]! % 2 ** 32 !== generation) || !newer) {
      this.grantsIgnored++;
      return "ignored";
    }
    const used = slots[extra + ADMITTED]! + slots[extra + PENDING_ADMITTED]!;
    if (!this.#isPlausible(allowance, used)) return this.#implausible();
    if (
      epoch === heldEpoch &&
      version - heldVersion > this.#versionJumpBound(slots, extra, nowMs)
    ) {
      return this.#implausible();
    }
    // Usable now: `rampFrom`, as the aggregator says (it counts the grant in force as wholly
    // usable, so its `rampFrom` is at least that allowance unless the grant is a decrease, which
    // applies at once). A ramp never lets the node use budget before the aggregator's window
    // frees it, since receipt is never earlier than the sending tick.
    if (grant.rampMs > 0 && grant.rampFrom < allowance) {
      slots[extra + GRANT_BASE] = grant.rampFrom;
      slots[extra + GRANT_AT] = nowMs;
      slots[extra + GRANT_END] = nowMs + grant.rampMs;
    } else {
      slots[extra + GRANT_END] = Number.NEGATIVE_INFINITY;
    }
    slots[extra + GRANT_EPOCH] = epoch;
    slots[extra + GRANT_VERSION] = version;
    slots[extra + GRANT_ALLOWANCE] = allowance;
    slots[extra + GRANT_FREE_AT] = nowMs + grant.retryAfterMs;
    slots[extra + GRANT_HEARD_AT] = nowMs;
    // Report the key in the next batch even if no hit comes, confirming the grant: until the
    // aggregator sees it confirmed it must count the larger of the old and new allowances.
    this.#markDirty(slot, extra);
    this.grantsApplied++;
    return "applied";
  }

  /** An allowance the aggregator could have sent for a generation that has admitted `used`. */
  #isPlausible(allowance: number, used: number): boolean {
    return allowance <= used + this.rule.limit + this.rule.params.capacity + EPSILON;
  }

  /** Most versions a grant may be ahead of the one in force (same run), by the time since it came. */
  #versionJumpBound(slots: Float64Array, extra: number, nowMs: number): number {
    const sinceMs = nowMs - slots[extra + GRANT_HEARD_AT]!;
    const intervals = (sinceMs > 0 ? sinceMs : 0) / this.#syncIntervalMs + 1;
    return (
      (this.#liveNodes + 1) * MAX_VERSIONS_PER_INTERVAL_PER_NODE * intervals + VERSION_JUMP_SLACK
    );
  }

  #implausible(): GrantOutcome {
    this.grantsImplausible++;
    return "implausible";
  }

  /**
   * How long a hit of `cost` refused under the grant in force should wait: until the ramp makes
   * room for it, or until the aggregator's window frees capacity (the grant's `retryAfterMs`),
   * whichever comes first; once that time has passed without a new grant, a sync interval (the
   * next grant is due).
   */
  #grantWaitMs(slots: Float64Array, extra: number, nowMs: number, cost: number): number {
    const freeAt = slots[extra + GRANT_FREE_AT]!;
    let waitMs = freeAt > nowMs ? freeAt - nowMs : this.#syncIntervalMs;
    const end = slots[extra + GRANT_END]!;
    if (nowMs < end) {
      const allowance = slots[extra + GRANT_ALLOWANCE]!;
      const base = slots[extra + GRANT_BASE]!;
      const at = slots[extra + GRANT_AT]!;
      const need = slots[extra + ADMITTED]! + slots[extra + PENDING_ADMITTED]! + cost;
      if (need <= allowance + EPSILON && allowance > base) {
        const fitsAt = at + ((need - base) * (end - at)) / (allowance - base);
        if (fitsAt - nowMs < waitMs) waitMs = fitsAt > nowMs ? fitsAt - nowMs : 0;
      }
    }
    return waitMs;
  }

  /** Global rules: the default share's parameters, for `liveNodes` nodes sharing the limit. */
  setLiveNodes(liveNodes: number): void {
    if (!this.#global) return;
    const n = Math.max(1, liveNodes);
    this.#liveNodes = n;
    const p = this.rule.params;
    this.#params = { ...p, capacity: p.capacity / n, ratePerMs: p.ratePerMs / n };
  }

  /**
   * Global rules: until `untilMs`, hits the `static` loss policy would decide are refused, with
   * the rest of that time as the wait (a node that cannot yet know how many share the limit).
   */
  setStaticHold(untilMs: number): void {
    this.#staticHoldUntilMs = untilMs;
  }

  /** Global rules: whether the aggregator is lost (its `onAggregatorLoss` policy then applies). */
  setAggregatorLost(lost: boolean): void {
    this.#aggregatorLost = lost;
  }

  /** The part of the grant in force usable at `nowMs` (the whole of it once a ramp is over). */
  #allowanceAt(slots: Float64Array, extra: number, nowMs: number): number {
    const allowance = slots[extra + GRANT_ALLOWANCE]!;
    const end = slots[extra + GRANT_END]!;
    if (!(nowMs < end)) return allowance;
    const at = slots[extra + GRANT_AT]!;
    const base = slots[extra + GRANT_BASE]!;
    return nowMs > at ? base + ((allowance - base) * (nowMs - at)) / (end - at) : base;
  }

  /**
   * Global rules: the node's sync interval, the pace of grants: the wait of a refusal once its
   * grant's freeing time has passed, and the unit of the version-jump bound.
   */
  setSyncIntervalMs(ms: number): void {
    this.#syncIntervalMs = ms;
  }

  /**
   * Global rules: drops every grant held (each key decides with its default share, or the loss
   * policy, until a new grant comes), so the next aggregator run's grants apply whatever its
   * epoch. Counts and key generations stay.
   */
  dropGrants(): void {
    if (!this.#global) return;
    for (let slot = 0; slot < this.#used; slot++) {
      if (this.#keys[slot] === undefined) continue;
      const extra = slot * this.#stride + this.#algoStride;
      this.#slots[extra + GRANT_EPOCH] = 0;
      this.#slots[extra + GRANT_VERSION] = 0;
      this.#slots[extra + GRANT_END] = Number.NEGATIVE_INFINITY;
    }
  }

  /** Marks every held key changed, so the next drain reports all of them (a resync). */
  markAllDirty(): void {
    for (let slot = 0; slot < this.#used; slot++) {
      if (this.#keys[slot] === undefined) continue;
      this.#mark(slot, slot * this.#stride + this.#algoStride);
    }
  }

  /** Accounts for a hit decided elsewhere (strict store) or given up (`acquire()`). */
  record(key: string, nowMs: number, cost: number, allowed: boolean): void {
    let slot = this.#map.get(key);
    if (slot === undefined) slot = this.#insert(key, nowMs);
    const extra = slot * this.#stride + this.#algoStride;
    if (allowed) {
      this.#slots[extra + PENDING_ADMITTED]! += cost;
      this.admittedHits++;
    } else {
      this.#slots[extra + PENDING_REJECTED]! += cost;
      this.rejectedHits++;
    }
    this.#mark(slot, extra);
  }

  /**
   * Global rules: `cost` of demand for `key` starts (or, negative, stops) waiting in
   * `acquire()`. While it waits, every drain reports it as rejected cost in the key's counts, so
   * the aggregator sees the key is wanted at every tick and grants it as soon as its window
   * frees: a node whose only demand is a waiting call would otherwise report nothing, and be
   * granted nothing. Not a decision: the rule's rejected-hit counter is left alone (a call that
   * gives up counts once, when it does).
   */
  addWaiting(key: string, cost: number): void {
    if (!this.#global) return;
    const left = (this.#waiting.get(key) ?? 0) + cost;
    if (left > EPSILON) this.#waiting.set(key, left);
    else this.#waiting.delete(key);
  }

  #rememberActive(slot: number, generation: number): void {
    if (this.#activeCount + 2 > this.#activeAtDrain.length) {
      const bigger = new Float64Array(this.#activeAtDrain.length * 2);
      bigger.set(this.#activeAtDrain);
      this.#activeAtDrain = bigger;
    }
    this.#activeAtDrain[this.#activeCount++] = slot;
    this.#activeAtDrain[this.#activeCount++] = generation;
  }

  /** Folds one key's pending counts into its cumulative ones and hands them to `visit`. */
  #report(slot: number, extra: number, visit: ChangeVisitor, nowMs: number): void {
    const slots = this.#slots;
    const c = this.#cursor;
    const da = slots[extra + PENDING_ADMITTED]!;
    const dr = slots[extra + PENDING_REJECTED]!;
    const admitted = slots[extra + ADMITTED]! + da;
    const rejected = slots[extra + REJECTED]! + dr;
    slots[extra + ADMITTED] = admitted;
    slots[extra + REJECTED] = rejected;
    slots[extra + PENDING_ADMITTED] = 0;
    slots[extra + PENDING_REJECTED] = 0;
    c.key = this.#keys[slot]!;
    c.generation = slots[extra + GENERATION]!;
    c.admitted = admitted;
    c.rejected = rejected;
    c.deltaAdmitted = da;
    c.deltaRejected = dr;
    c.isNew = slots[extra + REPORTED] === 0;
    slots[extra + REPORTED] = 1;
    if (this.#global) {
      const timeSum = slots[extra + PENDING_TIME]!;
      slots[extra + PENDING_TIME] = 0;
      c.grantEpoch = slots[extra + GRANT_EPOCH]!;
      c.grantVersion = slots[extra + GRANT_VERSION]!;
      c.allowance = slots[extra + GRANT_ALLOWANCE]!;
      c.ageMs = da > 0 ? Math.max(0, nowMs - this.#startMs - timeSum / da) : 0;
    } else {
      c.grantEpoch = 0;
      c.grantVersion = 0;
      c.allowance = 0;
      c.ageMs = 0;
    }
    visit(c);
  }

  /**
   * Hands every key that changed since the last drain to `visit`, then every retired (evicted)
   * key's final counts, and folds the pending counts into the cumulative ones. Global rules: a
   * key that had hits in the last drain and none since is handed over too, once, with nothing
   * new: "nothing since" is news to the aggregator (its demand for the key drops at once
   * instead of when the silence is counted late; without it a node whose load moved elsewhere
   * sent nothing and kept being granted for about three intervals). Allocates nothing: `visit`
   * gets this table's one cursor, filled anew for each key.
   */
  drain(visit: ChangeVisitor, nowMs: number): void {
    if (this.#waiting.size > 0) {
      for (const [key, cost] of this.#waiting) {
        const slot = this.#map.get(key) ?? this.#insert(key, nowMs);
        const extra = slot * this.#stride + this.#algoStride;
        this.#slots[extra + PENDING_REJECTED]! += cost;
        this.#mark(slot, extra);
      }
    }
    const slots = this.#slots;
    if (this.#global) {
      // Keys active at the last drain and not changed since: report their quiet once.
      const quiet = this.#activeAtDrain;
      for (let i = 0; i < this.#activeCount; i += 2) {
        const slot = quiet[i]!;
        const extra = slot * this.#stride + this.#algoStride;
        const flags = slots[extra + FLAGS]!;
        if ((flags & DIRTY) !== 0 || this.#keys[slot] === undefined) continue;
        if (slots[extra + GENERATION] !== quiet[i + 1]) continue; // the slot holds another key now
        this.#report(slot, extra, visit, nowMs);
      }
      this.#activeCount = 0;
    }
    for (let i = 0; i < this.#dirtyCount; i++) {
      const slot = this.#dirtyList[i]!;
      const extra = slot * this.#stride + this.#algoStride;
      slots[extra + FLAGS] = (slots[extra + FLAGS]! & ~DIRTY) >>> 0;
      if (this.#keys[slot] === undefined) continue;
      if (this.#global && slots[extra + PENDING_ADMITTED]! + slots[extra + PENDING_REJECTED]! > 0) {
        this.#rememberActive(slot, slots[extra + GENERATION]!);
      }
      this.#report(slot, extra, visit, nowMs);
    }
    this.#dirtyCount = 0;
    if (this.#retired.length > 0) {
      const retired = this.#retired;
      this.#retired = [];
      const c = this.#cursor;
      for (const e of retired) {
        c.key = e.key;
        c.generation = e.generation;
        c.admitted = e.admitted;
        c.rejected = e.rejected;
        c.deltaAdmitted = e.deltaAdmitted;
        c.deltaRejected = e.deltaRejected;
        c.isNew = e.isNew;
        c.grantEpoch = e.grantEpoch;
        c.grantVersion = e.grantVersion;
        c.allowance = e.allowance;
        c.ageMs = 0;
        visit(c);
      }
    }
  }

  /** Frees every key at rest whose counts were all reported. Returns how many were freed. */
  sweep(nowMs: number): number {
    const algorithm = this.rule.algorithm;
    let freed = 0;
    for (let slot = 0; slot < this.#used; slot++) {
      const key = this.#keys[slot];
      if (key === undefined) continue;
      const base = slot * this.#stride;
      const flags = this.#slots[base + this.#algoStride + FLAGS]!;
      if ((flags & DIRTY) !== 0) continue;
      if (this.#global) {
        // A granted key's algorithm state is not used, so "at rest" means "not used since the
        // previous sweep". Clearing the bit here also costs it its CLOCK second chance.
        if ((flags & RECENT) !== 0) {
          this.#slots[base + this.#algoStride + FLAGS] = (flags & ~RECENT) >>> 0;
          continue;
        }
      }
      if (!algorithm.isAtRest(this.#slots, base, this.#params, nowMs)) continue;
      this.#map.delete(key);
      this.#keys[slot] = undefined;
      this.#free.push(slot);
      freed++;
    }
    this.reclaimed += freed;
    return freed;
  }

  /** Marks the slot used and changed. */
  #mark(slot: number, extra: number): void {
    this.#markDirty(slot, extra);
    this.#slots[extra + FLAGS] = RECENT_DIRTY;
  }

  /** Puts the slot in the list of changes to report, once; leaves its RECENT bit alone. */
  #markDirty(slot: number, extra: number): void {
    const flags = this.#slots[extra + FLAGS]!;
    if ((flags & DIRTY) !== 0) return;
    this.#dirtyList[this.#dirtyCount++] = slot;
    this.#slots[extra + FLAGS] = (flags | DIRTY) >>> 0;
  }

  #insert(key: string, nowMs: number): number {
    let slot: number;
    if (this.#free.length > 0) slot = this.#free.pop()!;
    else if (this.#used < this.#capacity) slot = this.#used++;
    else if (this.#capacity < this.rule.maxKeys) {
      this.#grow(Math.min(this.#capacity * 2, this.rule.maxKeys));
      slot = this.#used++;
    } else slot = this.#evict();
    this.#map.set(key, slot);
    this.#keys[slot] = key;
    const base = slot * this.#stride;
    this.rule.algorithm.init(this.#slots, base, this.#params, nowMs);
    const extra = base + this.#algoStride;
    const slots = this.#slots;
    slots[extra + REPORTED] = 0;
    if (this.#global) {
      slots[extra + GRANT_EPOCH] = 0;
      slots[extra + GRANT_VERSION] = 0;
      slots[extra + GRANT_ALLOWANCE] = 0;
      slots[extra + PENDING_TIME] = 0;
      slots[extra + GRANT_END] = Number.NEGATIVE_INFINITY; // no ramp: GRANT_BASE/AT not read
      slots[extra + GRANT_FREE_AT] = Number.NEGATIVE_INFINITY;
      slots[extra + GRANT_HEARD_AT] = nowMs;
    }
    // A reused slot may still sit in the dirty list (evicted while dirty): keep that bit so the
    // list holds each slot once; the new key is then reported from there.
    slots[extra + FLAGS] = (slots[extra + FLAGS]! & DIRTY) >>> 0;
    slots[extra + PENDING_ADMITTED] = 0;
    slots[extra + PENDING_REJECTED] = 0;
    slots[extra + ADMITTED] = 0;
    slots[extra + REJECTED] = 0;
    // Generations go on the wire as u32 and 0 is reserved (grants ahead): skip it on wrap.
    if (this.#nextGeneration % 2 ** 32 === 0) this.#nextGeneration++;
    slots[extra + GENERATION] = this.#nextGeneration++;
    return slot;
  }

  /** CLOCK: returns a slot freed from the first key not used since the hand last passed it. */
  #evict(): number {
    const slots = this.#slots;
    for (;;) {
      const slot = this.#hand;
      this.#hand = slot + 1 === this.#used ? 0 : slot + 1;
      const key = this.#keys[slot];
      if (key === undefined) continue;
      const extra = slot * this.#stride + this.#algoStride;
      const flags = slots[extra + FLAGS]!;
      if ((flags & RECENT) !== 0) {
        slots[extra + FLAGS] = (flags & ~RECENT) >>> 0;
        continue;
      }
      const da = slots[extra + PENDING_ADMITTED]!;
      const dr = slots[extra + PENDING_REJECTED]!;
      if (da > 0 || dr > 0) {
        // Unreported counts leave with the key in the next drain, never dropped.
        this.#retired.push({
          rule: this.rule.name,
          key,
          isNew: slots[extra + REPORTED] === 0,
          grantEpoch: this.#global ? slots[extra + GRANT_EPOCH]! : 0,
          grantVersion: this.#global ? slots[extra + GRANT_VERSION]! : 0,
          allowance: this.#global ? slots[extra + GRANT_ALLOWANCE]! : 0,
          generation: slots[extra + GENERATION]!,
          admitted: slots[extra + ADMITTED]! + da,
          rejected: slots[extra + REJECTED]! + dr,
          deltaAdmitted: da,
          deltaRejected: dr,
        });
      }
      this.#map.delete(key);
      this.#keys[slot] = undefined;
      this.evicted++;
      return slot;
    }
  }

  #grow(capacity: number): void {
    const slots = new Float64Array(capacity * this.#stride);
    slots.set(this.#slots);
    this.#slots = slots;
    const list = new Int32Array(capacity);
    list.set(this.#dirtyList);
    this.#dirtyList = list;
    this.#capacity = capacity;
  }
}
