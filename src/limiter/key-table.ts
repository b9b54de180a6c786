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
 * Accounting: cumulative admitted and rejected cost per key since this table's start. Each key
 * also carries a `generation`, unique per table, that changes whenever the key is created again
 * after reclamation or eviction, so a consumer of cumulative counts (the aggregator) knows to start
 * a new baseline instead of reading the restart as a lost update.
 */
import type { Decision } from "../algorithms/types.js";
import type { CompiledRule } from "./rule.js";

/** What one key did between two snapshots. Counts are in cost units. */
export interface AccountingEntry {
  readonly rule: string;
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

/** Receives one changed key during {@link KeyTable.drain}; counts are in cost units. */
export type ChangeVisitor = (
  rule: string,
  key: string,
  generation: number,
  admitted: number,
  rejected: number,
  deltaAdmitted: number,
  deltaRejected: number,
) => void;

const INITIAL_SLOTS = 64;
// Offsets after the algorithm's state cells.
const PENDING_ADMITTED = 0;
const PENDING_REJECTED = 1;
const FLAGS = 2;
const ADMITTED = 3;
const REJECTED = 4;
const GENERATION = 5;
const EXTRA_CELLS = 6;
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
  #scratch: Float64Array;

  constructor(rule: CompiledRule) {
    this.rule = rule;
    this.#algoStride = rule.algorithm.stride(rule.params);
    this.#stride = this.#algoStride + EXTRA_CELLS;
    this.#scratch = new Float64Array(this.#algoStride);
    this.#grow(Math.min(INITIAL_SLOTS, rule.maxKeys));
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
    const d = this.rule.algorithm.decide(slots, base, this.rule.params, nowMs, cost);
    const extra = base + this.#algoStride;
    if (d.allowed) {
      slots[extra + PENDING_ADMITTED]! += cost;
      this.admittedHits++;
    } else {
      slots[extra + PENDING_REJECTED]! += cost;
      this.rejectedHits++;
    }
    if (slots[extra + FLAGS] !== RECENT_DIRTY) this.#mark(slot, extra);
    return d;
  }

  /** What `decide` would say, changing nothing and creating no key. */
  peek(key: string, nowMs: number, cost: number): Decision {
    const slot = this.#map.get(key);
    const { algorithm, params } = this.rule;
    if (slot !== undefined)
      return algorithm.peek(this.#slots, slot * this.#stride, params, nowMs, cost);
    algorithm.init(this.#scratch, 0, params, nowMs);
    return algorithm.peek(this.#scratch, 0, params, nowMs, cost);
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
   * Hands every key that changed since the last drain to `visit`, then every retired (evicted)
   * key's final counts, and folds the pending counts into the cumulative ones. Allocates nothing.
   */
  drain(visit: ChangeVisitor): void {
    const name = this.rule.name;
    const slots = this.#slots;
    for (let i = 0; i < this.#dirtyCount; i++) {
      const slot = this.#dirtyList[i]!;
      const extra = slot * this.#stride + this.#algoStride;
      slots[extra + FLAGS] = (slots[extra + FLAGS]! & ~DIRTY) >>> 0;
      const key = this.#keys[slot];
      if (key === undefined) continue;
      const da = slots[extra + PENDING_ADMITTED]!;
      const dr = slots[extra + PENDING_REJECTED]!;
      const admitted = slots[extra + ADMITTED]! + da;
      const rejected = slots[extra + REJECTED]! + dr;
      slots[extra + ADMITTED] = admitted;
      slots[extra + REJECTED] = rejected;
      slots[extra + PENDING_ADMITTED] = 0;
      slots[extra + PENDING_REJECTED] = 0;
      visit(name, key, slots[extra + GENERATION]!, admitted, rejected, da, dr);
    }
    this.#dirtyCount = 0;
    if (this.#retired.length > 0) {
      const retired = this.#retired;
      this.#retired = [];
      for (const e of retired) {
        visit(
          e.rule,
          e.key,
          e.generation,
          e.admitted,
          e.rejected,
          e.deltaAdmitted,
          e.deltaRejected,
        );
      }
    }
  }

  /** Frees every key at rest whose counts were all reported. Returns how many were freed. */
  sweep(nowMs: number): number {
    const { algorithm, params } = this.rule;
    let freed = 0;
    for (let slot = 0; slot < this.#used; slot++) {
      const key = this.#keys[slot];
      if (key === undefined) continue;
      const base = slot * this.#stride;
      if ((this.#slots[base + this.#algoStride + FLAGS]! & DIRTY) !== 0) continue;
      if (!algorithm.isAtRest(this.#slots, base, params, nowMs)) continue;
      this.#map.delete(key);
      this.#keys[slot] = undefined;
      this.#free.push(slot);
      freed++;
    }
    this.reclaimed += freed;
    return freed;
  }

  #mark(slot: number, extra: number): void {
    const flags = this.#slots[extra + FLAGS]!;
    if ((flags & DIRTY) === 0) this.#dirtyList[this.#dirtyCount++] = slot;
    this.#slots[extra + FLAGS] = RECENT_DIRTY;
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
    this.rule.algorithm.init(this.#slots, base, this.rule.params, nowMs);
    const extra = base + this.#algoStride;
    const slots = this.#slots;
    // A reused slot may still sit in the dirty list (evicted while dirty): keep that bit so the
    // list holds each slot once; the new key is then reported from there.
    slots[extra + FLAGS] = (slots[extra + FLAGS]! & DIRTY) >>> 0;
    slots[extra + PENDING_ADMITTED] = 0;
    slots[extra + PENDING_REJECTED] = 0;
    slots[extra + ADMITTED] = 0;
    slots[extra + REJECTED] = 0;
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
