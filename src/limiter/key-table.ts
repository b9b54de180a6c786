/**
 * Per-key state of one rule, with bounded memory and hit accounting.
 *
 * In:  (key, nowMs, cost) from `check()`.
 * Out: a decision; cumulative admitted/rejected cost per key; snapshots of what changed.
 *
 * Layout: a `Map<string, slot>` plus parallel typed arrays indexed by slot, so a decision touches
 * one map lookup and a few array cells and allocates nothing but the decision object. Slots grow
 * by doubling up to `maxKeys`.
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

const INITIAL_SLOTS = 64;

export class KeyTable {
  readonly rule: CompiledRule;
  /** Decisions taken, by outcome (hits, not cost). Plain numbers: read at collection time. */
  admittedHits = 0;
  rejectedHits = 0;
  /** Keys forgotten because they were idle at rest / pushed out by the `maxKeys` cap. */
  reclaimed = 0;
  evicted = 0;

  readonly #stride: number;
  readonly #map = new Map<string, number>();
  #keys: (string | undefined)[] = [];
  #capacity = 0;
  #used = 0;
  #free: number[] = [];
  #hand = 0;
  #nextGeneration = 1;
  #state = new Float64Array(0);
  #admitted = new Float64Array(0);
  #rejected = new Float64Array(0);
  #reportedAdmitted = new Float64Array(0);
  #reportedRejected = new Float64Array(0);
  #generation = new Float64Array(0);
  #recent = new Uint8Array(0);
  #dirty = new Uint8Array(0);
  #dirtyList = new Int32Array(0);
  #dirtyCount = 0;
  #retired: AccountingEntry[] = [];
  #scratch: Float64Array;

  constructor(rule: CompiledRule) {
    this.rule = rule;
    this.#stride = rule.algorithm.stride(rule.params);
    this.#scratch = new Float64Array(this.#stride);
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
    const d = this.rule.algorithm.decide(
      this.#state,
      slot * this.#stride,
      this.rule.params,
      nowMs,
      cost,
    );
    this.#recent[slot] = 1;
    if (d.allowed) {
      this.#admitted[slot]! += cost;
      this.admittedHits++;
    } else {
      this.#rejected[slot]! += cost;
      this.rejectedHits++;
    }
    if (this.#dirty[slot] === 0) {
      this.#dirty[slot] = 1;
      this.#dirtyList[this.#dirtyCount++] = slot;
    }
    return d;
  }

  /** What `decide` would say, changing nothing and creating no key. */
  peek(key: string, nowMs: number, cost: number): Decision {
    const slot = this.#map.get(key);
    const { algorithm, params } = this.rule;
    if (slot !== undefined) return algorithm.peek(this.#state, slot * this.#stride, params, nowMs, cost);
    algorithm.init(this.#scratch, 0, params, nowMs);
    return algorithm.peek(this.#scratch, 0, params, nowMs, cost);
  }

  /** Records a refused hit without a decision (an `acquire()` that gave up). */
  recordRejected(key: string, nowMs: number, cost: number): void {
    let slot = this.#map.get(key);
    if (slot === undefined) slot = this.#insert(key, nowMs);
    this.#rejected[slot]! += cost;
    this.rejectedHits++;
    if (this.#dirty[slot] === 0) {
      this.#dirty[slot] = 1;
      this.#dirtyList[this.#dirtyCount++] = slot;
    }
  }

  /** Appends every key that changed since the last call, and every retired key's last counts. */
  takeChanges(out: AccountingEntry[]): void {
    for (const entry of this.#retired) out.push(entry);
    this.#retired = [];
    const name = this.rule.name;
    for (let i = 0; i < this.#dirtyCount; i++) {
      const slot = this.#dirtyList[i]!;
      this.#dirty[slot] = 0;
      const key = this.#keys[slot];
      if (key === undefined) continue;
      out.push(this.#entry(name, key, slot));
      this.#reportedAdmitted[slot] = this.#admitted[slot]!;
      this.#reportedRejected[slot] = this.#rejected[slot]!;
    }
    this.#dirtyCount = 0;
  }

  /** Frees every key at rest whose counts were all reported. Returns how many were freed. */
  sweep(nowMs: number): number {
    const { algorithm, params } = this.rule;
    let freed = 0;
    for (let slot = 0; slot < this.#used; slot++) {
      const key = this.#keys[slot];
      if (key === undefined || this.#dirty[slot] === 1) continue;
      if (!algorithm.isAtRest(this.#state, slot * this.#stride, params, nowMs)) continue;
      this.#release(key, slot);
      freed++;
    }
    this.reclaimed += freed;
    return freed;
  }

  #entry(rule: string, key: string, slot: number): AccountingEntry {
    const admitted = this.#admitted[slot]!;
    const rejected = this.#rejected[slot]!;
    return {
      rule,
      key,
      generation: this.#generation[slot]!,
      admitted,
      rejected,
      deltaAdmitted: admitted - this.#reportedAdmitted[slot]!,
      deltaRejected: rejected - this.#reportedRejected[slot]!,
    };
  }

  #release(key: string, slot: number): void {
    this.#map.delete(key);
    this.#keys[slot] = undefined;
    this.#free.push(slot);
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
    this.rule.algorithm.init(this.#state, slot * this.#stride, this.rule.params, nowMs);
    this.#admitted[slot] = 0;
    this.#rejected[slot] = 0;
    this.#reportedAdmitted[slot] = 0;
    this.#reportedRejected[slot] = 0;
    this.#generation[slot] = this.#nextGeneration++;
    this.#recent[slot] = 0;
    return slot;
  }

  /** CLOCK: returns a slot freed from the first key not used since the hand last passed it. */
  #evict(): number {
    for (;;) {
      const slot = this.#hand;
      this.#hand = slot + 1 === this.#used ? 0 : slot + 1;
      const key = this.#keys[slot];
      if (key === undefined) continue;
      if (this.#recent[slot] === 1) {
        this.#recent[slot] = 0;
        continue;
      }
      if (this.#dirty[slot] === 1) {
        // Its unreported counts leave with it in the next snapshot. The slot stays in the dirty
        // list; the key that takes the slot is reported from there.
        const entry = this.#entry(this.rule.name, key, slot);
        if (entry.deltaAdmitted > 0 || entry.deltaRejected > 0) this.#retired.push(entry);
      }
      this.#map.delete(key);
      this.#keys[slot] = undefined;
      this.evicted++;
      return slot;
    }
  }

  #grow(capacity: number): void {
    const grow64 = (a: Float64Array, n: number) => {
      const b = new Float64Array(n);
      b.set(a);
      return b;
    };
    const grow8 = (a: Uint8Array) => {
      const b = new Uint8Array(capacity);
      b.set(a);
      return b;
    };
    this.#state = grow64(this.#state, capacity * this.#stride);
    this.#admitted = grow64(this.#admitted, capacity);
    this.#rejected = grow64(this.#rejected, capacity);
    this.#reportedAdmitted = grow64(this.#reportedAdmitted, capacity);
    this.#reportedRejected = grow64(this.#reportedRejected, capacity);
    this.#generation = grow64(this.#generation, capacity);
    this.#recent = grow8(this.#recent);
    this.#dirty = grow8(this.#dirty);
    const list = new Int32Array(capacity);
    list.set(this.#dirtyList);
    this.#dirtyList = list;
    this.#capacity = capacity;
  }
}
