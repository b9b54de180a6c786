/**
 * A global rule's grant cells: what a key table of a `mode: "global"` rule keeps per slot about
 * the key's grant from the aggregator, and the decisions taken on them.
 *
 * The cells (see slot-layout.ts) hold the aggregator epoch and per-key version the grant came
 * with, the allowance (the cumulative admitted cost of this key generation up to which this node
 * may admit), its ramp, when it arrived and when the aggregator's window frees capacity next.
 * With a grant, a hit is admitted when cumulative admitted + cost <= allowance, and a refusal's
 * `retryAfterMs` is the time until that freeing. Without one (a key the aggregator has not seen
 * yet) the key table lets the rule's own algorithm decide at this node's default share; when the
 * aggregator is lost, the rule's `onAggregatorLoss` policy decides instead (key-table.ts).
 *
 * `GrantCells` works over the key table's own `Float64Array` (handed over again whenever the
 * table grows it) at a slot's `extra` offset, so it holds no per-key state of its own.
 */
import { type Decision, DecisionResult, EPSILON } from "../algorithms/types.js";
import type { ChangeCursorRecord } from "./key-change.js";
import type { CompiledRule } from "./rule.js";
import * as layout from "./slot-layout.js";

// Copied into constants of this module: an imported binding is live, so V8 loads it from its
// module cell, with a check that it is initialised, at every use instead of folding it, and
// these offsets are read by every decision.
const {
  ADMITTED,
  GENERATION,
  GRANT_ALLOWANCE,
  GRANT_AT,
  GRANT_BASE,
  GRANT_END,
  GRANT_EPOCH,
  GRANT_FREE_AT,
  GRANT_HEARD_AT,
  GRANT_VERSION,
  OWN_BIN_AT,
  OWN_BINS,
  OWN_CAP,
  OWN_CELLS,
  OWN_NEWEST,
  OWN_RING,
  OWN_SINCE,
  PENDING_ADMITTED,
} = layout;

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

export class GrantCells {
  readonly #rule: CompiledRule;
  #slots: Float64Array = new Float64Array(0);
  /** The node's sync interval: a refusal's wait once the grant's freeing time has passed. */
  #syncIntervalMs = 25;
  #liveNodes = 1;

  /** Length of a bin of the own window, ms, and its inverse. */
  readonly #ownBinMs: number;
  readonly #ownPerMs: number;

  constructor(rule: CompiledRule) {
    this.#rule = rule;
    this.#ownBinMs = rule.windowMs / OWN_BINS;
    this.#ownPerMs = OWN_BINS / rule.windowMs;
  }

  /** The key table's slots: called again whenever the table replaces its array. */
  setSlots(slots: Float64Array): void {
    this.#slots = slots;
  }

  /** The pace of grants: the unit of the version-jump bound and the wait once freeing passed. */
  setSyncIntervalMs(ms: number): void {
    this.#syncIntervalMs = ms;
  }

  /** Live nodes (at least 1): the aggregator's tick count per interval grows with them. */
  setLiveNodes(liveNodes: number): void {
    this.#liveNodes = liveNodes;
  }

  /** No grant, for a key generation just created at `nowMs`. */
  init(extra: number, nowMs: number): void {
    const slots = this.#slots;
    slots[extra + GRANT_EPOCH] = 0;
    slots[extra + GRANT_VERSION] = 0;
    slots[extra + GRANT_ALLOWANCE] = 0;
    slots[extra + GRANT_END] = Number.NEGATIVE_INFINITY; // no ramp: GRANT_BASE/AT not read
    slots[extra + GRANT_FREE_AT] = Number.NEGATIVE_INFINITY;
    slots[extra + GRANT_HEARD_AT] = nowMs;
    this.forgetOwn(extra, nowMs);
  }

  /**
   * Forgets the key's own recent admissions and its window's freeing time (a reset): neither
   * the silent fallback nor a resync counts them again.
   */
  forgetOwn(extra: number, nowMs: number): void {
    const slots = this.#slots;
    slots[extra + GRANT_FREE_AT] = Number.NEGATIVE_INFINITY;
    slots[extra + OWN_BIN_AT] = Math.floor(nowMs * this.#ownPerMs);
    slots[extra + OWN_NEWEST] = slots[extra + OWN_BIN_AT]! % OWN_CELLS;
    slots[extra + OWN_SINCE] = Number.NaN;
    slots.fill(0, extra + OWN_RING, extra + OWN_RING + OWN_CELLS);
  }

  /** Counts an admission of this node into the key's own window (every admission, any mode). */
  recordOwn(extra: number, nowMs: number, cost: number): void {
    const slots = this.#slots;
    const bin = Math.floor(nowMs * this.#ownPerMs);
    // Most admissions fall in the newest bin: no rotation, and its ring cell is kept.
    if (bin === slots[extra + OWN_BIN_AT]) {
      slots[extra + OWN_RING + slots[extra + OWN_NEWEST]!]! += cost;
      return;
    }
    const b = this.#ownAdvance(extra, nowMs);
    slots[extra + OWN_RING + (b % OWN_CELLS)]! += cost;
  }

  /**
   * Decides a hit while the key's aggregator is silent (it was last heard at `since`, which
   * also names the silence) and the key holds a grant. The rule: in any window, this node admits
   * no more of the key than it did from a window before `since` until it first decided here,
   * plus what its grant still allowed then. At the aggregator's last tick every node's window and
   * grant were within its budget, and since then each node admitted only within its grant, so the
   * caps sum to at most the limit, and the nodes together stay within it however long the
   * silence: each only re-uses what its own earlier admissions free as they leave the window.
   * Bins make it conservative both ways: the cap counts only whole bins after `since` - window,
   * the check OWN_BINS + 1 bins (more than a window).
   */
  decideSilent(extra: number, nowMs: number, cost: number, since: number): Decision {
    const slots = this.#slots;
    const rule = this.#rule;
    const bin = this.#ownAdvance(extra, nowMs);
    if (slots[extra + OWN_SINCE] !== since) {
      const used = slots[extra + ADMITTED]! + slots[extra + PENDING_ADMITTED]!;
      const left = this.allowanceAt(extra, nowMs) - used;
      const fromBin = Math.floor((since - rule.windowMs) / this.#ownBinMs) + 1;
      const bins = Math.min(bin - fromBin + 1, OWN_CELLS);
      slots[extra + OWN_CAP] = this.#ownSum(extra, bin, bins) + (left > 0 ? left : 0);
      slots[extra + OWN_SINCE] = since;
    }
    const room = slots[extra + OWN_CAP]! - this.#ownSum(extra, bin, OWN_BINS + 1);
    if (cost <= room + EPSILON) {
      return new DecisionResult(
        true,
        Math.floor(room - cost + EPSILON),
        rule.limit,
        rule.windowMs,
        0,
      );
    }
    // The oldest bin counted leaves the check at the next bin boundary.
    const waitMs = (bin + 1) * this.#ownBinMs - nowMs;
    return new DecisionResult(false, 0, rule.limit, rule.windowMs, waitMs);
  }

  /** Moves the ring to `nowMs`'s bin (clearing the bins passed); returns its number. */
  #ownAdvance(extra: number, nowMs: number): number {
    const slots = this.#slots;
    const bin = Math.floor(nowMs * this.#ownPerMs);
    const last = slots[extra + OWN_BIN_AT]!;
    if (bin > last) {
      const from = bin - last >= OWN_CELLS ? bin - OWN_CELLS + 1 : last + 1;
      for (let b = from; b <= bin; b++) slots[extra + OWN_RING + (b % OWN_CELLS)] = 0;
      slots[extra + OWN_BIN_AT] = bin;
      slots[extra + OWN_NEWEST] = bin % OWN_CELLS;
    }
    return bin > last ? bin : last;
  }

  /** Own admissions in the newest `bins` bins up to `bin`. */
  #ownSum(extra: number, bin: number, bins: number): number {
    const slots = this.#slots;
    let sum = 0;
    for (let b = bin - bins + 1 > 0 ? bin - bins + 1 : 0; b <= bin; b++) {
      sum += slots[extra + OWN_RING + (b % OWN_CELLS)]!;
    }
    return sum;
  }

  /** Drops the grant in force, so the next one applies whatever its epoch. */
  clear(extra: number): void {
    const slots = this.#slots;
    slots[extra + GRANT_EPOCH] = 0;
    slots[extra + GRANT_VERSION] = 0;
    slots[extra + GRANT_END] = Number.NEGATIVE_INFINITY;
  }

  /** The next drain hands out each key's own bins (`ChangeCursor.recentCost`). */
  recentNext = false;

  /**
   * Copies the grant cells a report carries (epoch, version, allowance) into `c`, and the
   * key's own bins when asked for.
   */
  report(c: ChangeCursorRecord, extra: number, nowMs = Number.NaN): void {
    const slots = this.#slots;
    c.grantEpoch = slots[extra + GRANT_EPOCH]!;
    c.grantVersion = slots[extra + GRANT_VERSION]!;
    c.allowance = slots[extra + GRANT_ALLOWANCE]!;
    c.recentCount = 0;
    if (!this.recentNext || Number.isNaN(nowMs)) return;
    const bin = this.#ownAdvance(extra, nowMs);
    const binMs = this.#ownBinMs;
    for (let k = 0; k < OWN_CELLS && bin - k >= 0; k++) {
      c.recentCost[k] = slots[extra + OWN_RING + ((bin - k) % OWN_CELLS)]!;
      const endMs = (bin - k + 1) * binMs;
      c.recentAgeMs[k] = endMs < nowMs ? nowMs - endMs : 0;
      c.recentCount = k + 1;
    }
  }

  /** Whether a grant is in force (every aggregator epoch is above 0). */
  held(extra: number): boolean {
    return this.#slots[extra + GRANT_EPOCH]! > 0;
  }

  /** Decides a hit of `cost` under the grant in force; changes nothing (the table accounts). */
  decide(extra: number, nowMs: number, cost: number): Decision {
    const slots = this.#slots;
    const rule = this.#rule;
    const used = slots[extra + ADMITTED]! + slots[extra + PENDING_ADMITTED]!;
    const room = this.allowanceAt(extra, nowMs) - used;
    if (cost <= room + EPSILON) {
      const left = Math.floor(room - cost + EPSILON);
      return new DecisionResult(true, left, rule.limit, rule.windowMs, 0);
    }
    const retryAfterMs = cost > rule.limit + EPSILON ? Infinity : this.waitMs(extra, nowMs, cost);
    const left = room > 0 ? Math.floor(room + EPSILON) : 0;
    return new DecisionResult(false, left, rule.limit, rule.windowMs, retryAfterMs);
  }

  /**
   * Applies a grant to the key generation held at `extra` if it is for that generation (or sent
   * ahead, generation 0) and newer than the grant in force ((epoch, version) compared in that
   * order), and plausible. Its allowance counts from the start of that generation, so hits
   * already taken are charged to it. Of the allowance, `rampFrom` is usable now and the rest
   * becomes usable linearly over `rampMs` (the budget the aggregator's window frees over its
   * next interval, handed out as it frees).
   *
   * Implausible: an allowance beyond this generation's admitted cost plus the rule's limit and
   * capacity (see `isPlausible`), or, within one aggregator run, a version further ahead of the
   * grant in force than the aggregator could have sent since it arrived. Without the version
   * bound one forged grant with a huge version would make the node ignore every real grant after.
   */
  apply(extra: number, epoch: number, grant: Grant, nowMs: number): GrantOutcome {
    const slots = this.#slots;
    const heldEpoch = slots[extra + GRANT_EPOCH]!;
    const heldVersion = slots[extra + GRANT_VERSION]!;
    const { generation, version, allowance } = grant;
    const newer = epoch > heldEpoch || (epoch === heldEpoch && version > heldVersion);
    if ((generation !== 0 && slots[extra + GENERATION]! % 2 ** 32 !== generation) || !newer) {
      return "ignored";
    }
    const used = slots[extra + ADMITTED]! + slots[extra + PENDING_ADMITTED]!;
    if (!this.isPlausible(allowance, used)) return "implausible";
    if (epoch === heldEpoch && version - heldVersion > this.#versionJumpBound(extra, nowMs)) {
      return "implausible";
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
    return "applied";
  }

  /**
   * An allowance the aggregator could have sent for a generation that has admitted `used`: the
   * aggregator never grants more than a window's limit (and the rule's burst capacity) beyond
   * what a node reported.
   */
  isPlausible(allowance: number, used: number): boolean {
    return allowance <= used + this.#rule.limit + this.#rule.params.capacity + EPSILON;
  }

  /** The part of the grant in force usable at `nowMs` (the whole of it once a ramp is over). */
  allowanceAt(extra: number, nowMs: number): number {
    const slots = this.#slots;
    const allowance = slots[extra + GRANT_ALLOWANCE]!;
    const end = slots[extra + GRANT_END]!;
    if (!(nowMs < end)) return allowance;
    const at = slots[extra + GRANT_AT]!;
    const base = slots[extra + GRANT_BASE]!;
    return nowMs > at ? base + ((allowance - base) * (nowMs - at)) / (end - at) : base;
  }

  /**
   * How long a hit of `cost` refused under the grant in force should wait: until the ramp makes
   * room for it, or until the aggregator's window frees capacity (the grant's `retryAfterMs`),
   * whichever comes first; once that time has passed without a new grant, a sync interval (the
   * next grant is due).
   */
  waitMs(extra: number, nowMs: number, cost: number): number {
    const slots = this.#slots;
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

  /** Most versions a grant may be ahead of the one in force (same run), by the time since it came. */
  #versionJumpBound(extra: number, nowMs: number): number {
    const sinceMs = nowMs - this.#slots[extra + GRANT_HEARD_AT]!;
    const intervals = (sinceMs > 0 ? sinceMs : 0) / this.#syncIntervalMs + 1;
    return (
      (this.#liveNodes + 1) * MAX_VERSIONS_PER_INTERVAL_PER_NODE * intervals + VERSION_JUMP_SLACK
    );
  }
}
