/**
 * Per-key state of one rule, with bounded memory and hit accounting.
 *
 * In:  (key, nowMs, cost) from `check()`.
 * Out: a decision; cumulative admitted/rejected cost per key; snapshots of what changed.
 *
 * Layout: a `Map<string, slot>` plus one `Float64Array` holding every slot's numbers side by side
 * (slot-layout.ts), so a decision touches one map entry and one or two cache lines, and allocates
 * nothing but the decision object. Slots grow by doubling up to `maxKeys`. `flags` holds two
 * bits: RECENT (used since the eviction hand passed) and DIRTY (in the list of slots to report).
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
 * Global rules (`mode: "global"`): a key with a grant from the aggregator is decided on its grant
 * cells (grant-cells.ts); without one (a key the aggregator has not seen yet), the rule's own
 * algorithm decides at this node's default share (limit / live nodes). When the aggregator is
 * lost, the rule's `onAggregatorLoss` policy decides instead.
 *
 * Accounting: cumulative admitted and rejected cost per key since this table's start, with a
 * key `generation` (see key-counts.ts).
 */
import type { AlgorithmParams, Decision } from "../algorithms/types.js";
import { type Grant, GrantCells, type GrantOutcome } from "./grant-cells.js";
import { KeyBlocks } from "./key-blocks.js";
import { ChangeCursorRecord, type ChangeVisitor } from "./key-change.js";
import { foldCounts, retiredCounts } from "./key-counts.js";
import { LossPolicy } from "./loss-policy.js";
import type { CompiledRule } from "./rule.js";
import { shadowOf } from "./shadow.js";
import { SlotGenerations } from "./slot-generations.js";
import * as layout from "./slot-layout.js";
import { WaitingDemand } from "./waiting-demand.js";

// Copied into constants: an imported binding is live, so V8 loads it from its module cell, with
// an initialisation check, at every use instead of folding it; every decision reads these.
const {
  ADMITTED,
  DIRTY,
  EXTRA_CELLS,
  FLAGS,
  GENERATION,
  GLOBAL_EXTRA_CELLS,
  PENDING_ADMITTED,
  PENDING_REJECTED,
  PENDING_TIME,
  RECENT,
  RECENT_DIRTY,
  REJECTED,
  REPORTED,
} = layout;

const INITIAL_SLOTS = 64;

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
  /** Hits a shadow-mode rule would have refused, let through. */
  shadowedHits = 0;
  /** Keys refused outright for a while (`Limiter.block`). */
  readonly blocks = new KeyBlocks();

  readonly #global: boolean;
  /** Admission times are summed relative to this, to keep the sums exact in a double. */
  #startMs = Number.NaN;
  /** The parameters the algorithm runs with: the rule's, or its default share when global. */
  #params: AlgorithmParams;
  /** Global rules: how keys decide while their aggregator is lost (set via GlobalControl). */
  readonly loss: LossPolicy;
  /** Global rules: the grant cells of every slot, over `#slots`. */
  readonly #grants: GrantCells;
  /** Global rules: the keys with hits at the last drain (see `drain`). */
  readonly #activeAtDrain = new SlotGenerations();
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
  /** Evicted keys' unreported counts, for the next drain. */
  #retired: ChangeCursorRecord[] = [];
  /** Global rules: cost waiting in `acquire()`, by key (see `addWaiting`). */
  readonly #waiting = new WaitingDemand();
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
    this.#grants = new GrantCells(rule);
    this.loss = new LossPolicy(rule);
    this.#grow(Math.min(INITIAL_SLOTS, rule.maxKeys));
  }

  #blocked(key: string, nowMs: number): Decision | undefined {
    const b = this.blocks;
    return b.size === 0 ? undefined : b.refusal(key, nowMs, this.rule.params.capacity);
  }

  /** Keys changed since the last drain. */
  get pendingChanges(): number {
    return this.#dirtyCount + this.#retired.length;
  }

  get size(): number {
    return this.#map.size;
  }

  /** Decides one hit for `key` and accounts for it. The hot path. */
  decide(key: string, nowMs: number, cost: number): Decision {
    let slot = this.#map.get(key);
    if (slot === undefined) slot = this.#insert(key, nowMs);
    const base = slot * this.#stride;
    const slots = this.#slots;
    const d =
      this.#blocked(key, nowMs) ??
      (this.#global
        ? this.#decideGlobal(slots, base, nowMs, cost)
        : this.rule.algorithm.decide(slots, base, this.#params, nowMs, cost));
    const extra = base + this.#algoStride;
    if (d.allowed) {
      slots[extra + PENDING_ADMITTED]! += cost;
      if (this.#global) {
        slots[extra + PENDING_TIME]! += (nowMs - this.#startMs) * cost;
        this.#grants.recordOwn(extra, nowMs, cost);
      }
      this.admittedHits++;
    } else {
      slots[extra + PENDING_REJECTED]! += cost;
      if (this.rule.shadow) {
        this.shadowedHits++;
        this.#mark(slot, extra);
        return shadowOf(d);
      }
      this.rejectedHits++;
    }
    if (slots[extra + FLAGS] !== RECENT_DIRTY) this.#mark(slot, extra);
    return d;
  }

  #decideGlobal(slots: Float64Array, base: number, nowMs: number, cost: number): Decision {
    if (Number.isNaN(this.#startMs)) this.#startMs = nowMs; // first global decision
    const loss = this.loss;
    const extra = base + this.#algoStride;
    const held = this.#grants.held(extra);
    const p = loss.any ? loss.partitionFor(this.#keys[base / this.#stride]!) : 0;
    const lost = loss.lostAt(p);
    const policy = lost ? loss.decide(nowMs) : undefined; // open, closed, or the start-up hold
    if (policy !== undefined) return policy;
    // A key holding a grant keeps to its own recent admissions through a silence, and through
    // the `static` policy after it: a share taken afresh would not count what it just admitted.
    const since = held ? loss.silentSinceAt(p) : Number.NaN;
    if (!Number.isNaN(since)) return this.#grants.decideSilent(extra, nowMs, cost, since);
    if (lost || !held) return this.rule.algorithm.decide(slots, base, this.#params, nowMs, cost);
    return this.#grants.decide(extra, nowMs, cost);
  }

  /** What `decide` would say (a shadow rule's refusal stays one), changing nothing. */
  peek(key: string, nowMs: number, cost: number): Decision {
    const blocked = this.#blocked(key, nowMs);
    if (blocked !== undefined) return blocked;
    const slot = this.#map.get(key);
    const algorithm = this.rule.algorithm;
    if (slot !== undefined) {
      const base = slot * this.#stride;
      const granted = this.#global && this.#grants.held(base + this.#algoStride);
      if (granted || (this.#global && this.loss.lostAt(this.loss.partitionFor(key)))) {
        // Without the algorithm, a global decision changes nothing but counts, which this skips.
        return this.#decideGlobal(this.#slots, base, nowMs, cost);
      }
      return algorithm.peek(this.#slots, base, this.#params, nowMs, cost);
    }
    algorithm.init(this.#scratch, 0, this.#params, nowMs);
    return algorithm.peek(this.#scratch, 0, this.#params, nowMs, cost);
  }

  /**
   * Global rules: applies a grant for `key` (see `GrantCells.apply`) to the key generation held
   * now. Generation 0 is a grant the aggregator sends ahead, for a key this node has not
   * reported (a key near its limit): it applies to whatever generation is held, creating the key
   * if need be. Counted by outcome; an implausible grant is dropped.
   */
  applyGrant(key: string, epoch: number, grant: Grant, nowMs: number): GrantOutcome {
    if (!this.#global) return this.#counted("ignored");
    let slot = this.#map.get(key);
    if (slot === undefined) {
      if (grant.generation !== 0) return this.#counted("ignored");
      if (!this.#grants.isPlausible(grant.allowance, 0)) return this.#counted("implausible");
      slot = this.#insert(key, nowMs);
    }
    const extra = slot * this.#stride + this.#algoStride;
    const outcome = this.#grants.apply(extra, epoch, grant, nowMs);
    // Report the key in the next batch even if no hit comes, confirming the grant: until the
    // aggregator sees it confirmed it must count the larger of the old and new allowances.
    if (outcome === "applied") this.#markDirty(slot, extra);
    return this.#counted(outcome);
  }

  #counted(outcome: GrantOutcome): GrantOutcome {
    if (outcome === "applied") this.grantsApplied++;
    else if (outcome === "ignored") this.grantsIgnored++;
    else this.grantsImplausible++;
    return outcome;
  }

  /** Global rules: the default share's parameters, for `liveNodes` nodes sharing the limit. */
  setLiveNodes(liveNodes: number): void {
    if (!this.#global) return;
    const n = Math.max(1, liveNodes);
    this.#grants.setLiveNodes(n);
    const p = this.rule.params;
    this.#params = { ...p, capacity: p.capacity / n, ratePerMs: p.ratePerMs / n };
  }

  /** Global rules: the node's sync interval, the pace of grants (see GrantCells). */
  setSyncIntervalMs(ms: number): void {
    this.loss.setSyncIntervalMs(ms);
    this.#grants.setSyncIntervalMs(ms);
  }

  /**
   * Global rules: drops every grant held (each key decides with its default share, or the loss
   * policy, until a new grant comes), so the next aggregator run's grants apply whatever its
   * epoch. Counts and key generations stay.
   */
  dropGrants(): void {
    if (this.#global) this.#eachHeld((_, extra) => this.#grants.clear(extra));
  }

  /** Marks every held key changed, so the next drain reports all of them (a resync). */
  markAllDirty(): void {
    this.#eachHeld((slot, extra) => this.#mark(slot, extra));
  }

  #eachHeld(visit: (slot: number, extra: number) => void): void {
    for (let slot = 0; slot < this.#used; slot++) {
      if (this.#keys[slot] !== undefined) visit(slot, slot * this.#stride + this.#algoStride);
    }
  }

  /**
   * Accounts for a hit decided elsewhere (strict store) or given up (`acquire()`); a refusal
   * `shadowed` is counted as a would-be rejection.
   */
  record(key: string, nowMs: number, cost: number, allowed: boolean, shadowed = false): void {
    let slot = this.#map.get(key);
    if (slot === undefined) slot = this.#insert(key, nowMs);
    const extra = slot * this.#stride + this.#algoStride;
    if (allowed) {
      this.#slots[extra + PENDING_ADMITTED]! += cost;
      if (this.#global) this.#grants.recordOwn(extra, nowMs, cost);
      this.admittedHits++;
    } else {
      this.#slots[extra + PENDING_REJECTED]! += cost;
      if (shadowed) this.shadowedHits++;
      else this.rejectedHits++;
    }
    this.#mark(slot, extra);
  }

  /**
   * Key administration: `cost` > 0 charges the key, < 0 refunds it (`Algorithm.adjust`); `reset`
   * puts it at rest and lifts its block. Counts stay. Global rules: the node's own part only.
   */
  adjust(key: string, nowMs: number, cost: number): void {
    const slot = this.#map.get(key) ?? this.#insert(key, nowMs);
    this.rule.algorithm.adjust(this.#slots, slot * this.#stride, this.#params, nowMs, cost);
    this.#mark(slot, slot * this.#stride + this.#algoStride);
  }

  reset(key: string, nowMs: number): void {
    this.blocks.unblock(key);
    const slot = this.#map.get(key);
    if (slot === undefined) return;
    const base = slot * this.#stride;
    this.rule.algorithm.init(this.#slots, base, this.#params, nowMs);
    if (this.#global) this.#grants.forgetOwn(base + this.#algoStride, nowMs);
  }

  /** Global rules: `cost` of demand for `key` starts (< 0: stops) waiting in `acquire()`. */
  addWaiting(key: string, cost: number): void {
    if (this.#global) this.#waiting.add(key, cost);
  }

  /** Folds one key's pending counts into its cumulative ones and hands them to `visit`. */
  #report(slot: number, extra: number, visit: ChangeVisitor, nowMs: number): void {
    const slots = this.#slots;
    const c = this.#cursor;
    const da = foldCounts(c, this.#keys[slot]!, slots, extra);
    // Only a global table sets the grant fields and age: a local table's cursor keeps its zeros.
    if (this.#global) {
      const timeSum = slots[extra + PENDING_TIME]!;
      slots[extra + PENDING_TIME] = 0;
      this.#grants.report(c, extra, nowMs);
      c.ageMs = da > 0 ? Math.max(0, nowMs - this.#startMs - timeSum / da) : 0;
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
      for (const [key, cost] of this.#waiting.byKey) {
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
      for (let i = 0; i < quiet.length; i++) {
        const slot = quiet.slot(i);
        const extra = slot * this.#stride + this.#algoStride;
        const flags = slots[extra + FLAGS]!;
        if ((flags & DIRTY) !== 0 || this.#keys[slot] === undefined) continue;
        if (slots[extra + GENERATION] !== quiet.generation(i)) continue; // another key's now
        this.#report(slot, extra, visit, nowMs);
      }
      quiet.clear();
    }
    for (let i = 0; i < this.#dirtyCount; i++) {
      const slot = this.#dirtyList[i]!;
      const extra = slot * this.#stride + this.#algoStride;
      slots[extra + FLAGS] = (slots[extra + FLAGS]! & ~DIRTY) >>> 0;
      if (this.#keys[slot] === undefined) continue;
      if (this.#global && slots[extra + PENDING_ADMITTED]! + slots[extra + PENDING_REJECTED]! > 0) {
        this.#activeAtDrain.add(slot, slots[extra + GENERATION]!);
      }
      this.#report(slot, extra, visit, nowMs);
    }
    this.#dirtyCount = 0;
    this.#grants.recentNext = false;
    if (this.#retired.length > 0) {
      const retired = this.#retired;
      this.#retired = [];
      for (const e of retired) visit(e);
    }
  }

  /** Global rules: the next drain hands out each key's own bins (ChangeCursor.recentCost). */
  reportRecentNext(): void {
    this.#grants.recentNext = true;
  }

  /** Frees every key at rest whose counts were all reported. Returns how many were freed. */
  sweep(nowMs: number): number {
    if (this.blocks.size !== 0) this.blocks.sweep(nowMs);
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
      slots[extra + PENDING_TIME] = 0;
      this.#grants.init(extra, nowMs);
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
      // Unreported counts leave with the key in the next drain, never dropped.
      const e = retiredCounts(this.rule.name, key, slots, extra);
      if (e !== undefined) {
        if (this.#global) this.#grants.report(e, extra);
        this.#retired.push(e);
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
    this.#grants.setSlots(slots);
    const list = new Int32Array(capacity);
    list.set(this.#dirtyList);
    this.#dirtyList = list;
    this.#capacity = capacity;
  }
}
