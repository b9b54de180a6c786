/**
 * The aggregator's processor: reports in, grants out, with no I/O and no clock of its own (every
 * call takes the time, on the aggregator's monotonic clock, and the wall time where a message or
 * checkpoint needs it).
 *
 *   ingestBatch  --> node-stream (reconcile the cumulative counts)
 *                --> global-window (bin the new admitted cost at its admission time)
 *   tick         --> for each key with news:
 *                      demand (fold each node's reports into a rate; the wait for a hit)
 *                      budget (what the window allows, early release, pacing)
 *                      allocator (max-min fair shares within it, then whole units)
 *                      grant-schedule (which grants go out, their versions and wait)
 *                --> rate updates per node, and the rule defaults for everyone
 *
 * The invariant: for every key, the sum over nodes of what each may still admit (its committed
 * allowance, or its new share when larger) never exceeds what the window allows, however late
 * grants and reports arrive. Membership (heartbeats with a TTL) gives the live count the default
 * share divides by; a node that joins gets every hot key granted ahead (placeholders).
 */
import type { CompiledRule } from "../limiter/rule.js";
import type {
  DecisionBatch,
  DecisionEntry,
  Heartbeat,
  RateUpdateFields,
  RuleDefaultsFields,
} from "../protocol/messages.js";
import { Role } from "../protocol/messages.js";
import { allocate, handedOut, type RoundingInput, roundToUnits } from "./allocator.js";
import { type Budget, budgetWaitMs, paceCarry, paceCredit, readBudget } from "./budget.js";
import { encodeCheckpoint, restoreCheckpoint } from "./checkpoint.js";
import { foldDemand, hitWaitMs } from "./demand.js";
import * as gw from "./global-window.js";
import { type GrantsByNode, rateUpdates, scheduleGrants, usableNow } from "./grant-schedule.js";
import { KeyState, RuleState } from "./key-state.js";
import { Membership, type NodeRecord } from "./membership.js";
import { committedAllowance, NodeStream, reconcile } from "./node-stream.js";
import type { AggregatorTuning } from "./tuning.js";

export interface AggregatorCoreOptions {
  /** The rules; only `mode: "global"` ones are aggregated, entries for others are dropped. */
  readonly rules: readonly CompiledRule[];
  readonly aggregatorId: string;
  /** This run's identity (wall ms at start plus a random fraction). */
  readonly epoch: number;
  /** The tuning, resolved (`resolveTuning`); `warmupMs` undefined means none. */
  readonly tuning: AggregatorTuning;
  /** The aggregator clock's time at start. */
  readonly startMs: number;
}

/** One global rule as the aggregator sees it (see `AggregatorCore.usage`). */
export interface RuleUsage {
  readonly rule: string;
  readonly keys: number;
  readonly maxRatio: number;
  readonly admittedInWindow: number;
  readonly admittedCounted: number;
  readonly rejectedCounted: number;
}

/** Counters, read by telemetry and tests. */
export interface AggregatorStats {
  batches: number;
  entries: number;
  /**
   * Entries that repeated or predated what was already counted (lost nothing, added nothing),
   * including the one report a node sends when a key went quiet (nothing new since).
   */
  staleEntries: number;
  /** Entries for rules this aggregator does not know as global. */
  unknownRuleEntries: number;
  /** Batches from a node run older than the one known. */
  staleBatches: number;
  heartbeats: number;
  updatesSent: number;
  grantsSent: number;
  keys: number;
  keysReclaimed: number;
  nodesJoined: number;
  nodesDropped: number;
  /** Nodes that said they were leaving, dropped at once (not counted in `nodesDropped`). */
  nodesLeft: number;
  /** Admitted cost counted into windows since start. */
  admittedCounted: number;
}

/** A key whose window plus demand reaches this fraction of its limit is granted to all nodes. */
const HOT_FRACTION = 0.5;

export class AggregatorCore {
  readonly aggregatorId: string;
  readonly epoch: number;
  readonly membership: Membership;
  readonly stats: AggregatorStats = {
    batches: 0,
    entries: 0,
    staleEntries: 0,
    unknownRuleEntries: 0,
    staleBatches: 0,
    heartbeats: 0,
    updatesSent: 0,
    grantsSent: 0,
    keys: 0,
    keysReclaimed: 0,
    nodesJoined: 0,
    nodesDropped: 0,
    nodesLeft: 0,
    admittedCounted: 0,
  };
  readonly #rules = new Map<string, RuleState>();
  readonly #t: AggregatorTuning;
  #grantsFromMs: number;
  #dirty: [RuleState, KeyState][] = [];
  #joinedSinceTick = false;
  #seq = 0;
  #lastReclaimMs: number;

  constructor(options: AggregatorCoreOptions) {
    this.aggregatorId = options.aggregatorId;
    this.epoch = options.epoch;
    this.#t = options.tuning;
    this.membership = new Membership(this.#t.nodeTtlMs);
    for (const rule of options.rules) {
      if (rule.mode === "global") this.#rules.set(rule.name, new RuleState(rule, this.#t));
    }
    this.#grantsFromMs = options.startMs + (this.#t.warmupMs ?? 0);
    this.#lastReclaimMs = options.startMs;
  }

  /** The global rules, by name. */
  get ruleNames(): string[] {
    return [...this.#rules.keys()];
  }

  /** Admitted cost in the global window of (rule, key) at `nowMs`, as this aggregator knows it. */
  windowAdmitted(rule: string, key: string, nowMs: number): number {
    const rs = this.#rules.get(rule);
    const ks = rs?.keys.get(key);
    if (rs === undefined || ks === undefined) return 0;
    return gw.windowUsed(ks.window, rs.shape, nowMs);
  }

  /**
   * Per rule, for telemetry: keys held, the hottest key's window admitted / limit, the admitted
   * cost in all its windows, and the cost counted as admitted and rejected since start (what the
   * nodes reported, for comparison with their own counters).
   */
  usage(nowMs: number): RuleUsage[] {
    const out = [];
    for (const rs of this.#rules.values()) {
      let maxRatio = 0;
      let sum = 0;
      for (const ks of rs.keys.values()) {
        const w = gw.windowUsed(ks.window, rs.shape, nowMs);
        sum += w;
        if (w / rs.rule.limit > maxRatio) maxRatio = w / rs.rule.limit;
      }
      out.push({
        rule: rs.rule.name,
        keys: rs.keys.size,
        maxRatio,
        admittedInWindow: sum,
        admittedCounted: rs.admittedCounted,
        rejectedCounted: rs.rejectedCounted,
      });
    }
    return out;
  }

  ingestHeartbeat(hb: Heartbeat, nowMs: number, receivedWallMs: number): void {
    this.stats.heartbeats++;
    if (hb.role === Role.nodeLeaving) {
      // The node's agent closed: its grants are no longer used, so what it held goes back to
      // the others now rather than after the TTL. Its last batch came before this notice on the
      // same connection, so its counts are already in the windows.
      const left = this.membership.leave(hb.nodeId, hb.nodeEpoch);
      if (left !== undefined) {
        this.stats.nodesLeft++;
        this.#forgetNode(left);
      }
      return;
    }
    if (hb.role !== Role.node) return; // the role reserved for aggregators carries nothing
    const touched = this.#touch(hb.nodeId, hb.nodeEpoch, nowMs);
    if (touched !== undefined)
      this.membership.observeClock(touched, hb.sentAtWallMs, receivedWallMs);
  }

  ingestBatch(batch: DecisionBatch, nowMs: number): void {
    this.stats.batches++;
    const node = this.#touch(batch.nodeId, batch.nodeEpoch, nowMs);
    if (node === undefined) {
      this.stats.staleBatches++;
      return;
    }
    this.membership.observeBatch(node, nowMs);
    for (const group of batch.groups) {
      const rs = this.#rules.get(group.rule);
      if (rs === undefined) {
        this.stats.unknownRuleEntries += group.entries.length;
        continue;
      }
      for (const entry of group.entries) this.#ingestEntry(rs, node, entry, nowMs);
    }
  }

  #touch(id: string, epoch: number, nowMs: number): NodeRecord | undefined {
    const r = this.membership.touch(id, epoch, nowMs);
    if (r === undefined) return undefined;
    if (r.joined) {
      this.stats.nodesJoined++;
      // Once per tick: keys marked stay marked until the tick, whoever else joins meanwhile.
      if (!this.#joinedSinceTick) this.#markHotKeysDirty(nowMs);
    }
    if (r.replaced !== undefined) {
      this.stats.nodesDropped++;
      this.#forgetNode(r.replaced);
    }
    return r.node;
  }

  #keyState(rs: RuleState, key: string, nowMs: number): KeyState {
    let ks = rs.keys.get(key);
    if (ks === undefined) {
      ks = new KeyState(key, rs.shape, nowMs);
      rs.keys.set(key, ks);
      this.stats.keys++;
    }
    return ks;
  }

  #ingestEntry(rs: RuleState, node: NodeRecord, e: DecisionEntry, nowMs: number): void {
    this.stats.entries++;
    if (e.generation === 0) {
      // 0 marks our own grants ahead (placeholders); nodes never use it for a key generation.
      this.stats.staleEntries++;
      return;
    }
    const ks = this.#keyState(rs, e.key, nowMs);
    const r = reconcile(ks.streams, node, e, nowMs, this.epoch);
    if (r === undefined || r.stale) this.stats.staleEntries++;
    if (r === undefined) return;
    if (r.admitted > 0) {
      // Binned when admitted (receipt minus their age on the node), not when they arrived:
      // otherwise they would stay in the window up to a sync interval too long.
      gw.addAdmitted(ks.window, rs.shape, nowMs, nowMs - e.ageMs, r.admitted);
      this.stats.admittedCounted += r.admitted;
      rs.admittedCounted += r.admitted;
    }
    if (r.rejected > 0) {
      rs.rejectedCounted += r.rejected;
      if (ks.overloadSinceMs < 0) ks.overloadSinceMs = nowMs;
    }
    ks.lastReportMs = nowMs;
    this.#markDirty(rs, ks);
  }

  #markDirty(rs: RuleState, ks: KeyState): void {
    if (ks.dirty) return;
    ks.dirty = true;
    this.#dirty.push([rs, ks]);
  }

  /**
   * A node joined: every key near its limit is reallocated at the next tick, which grants the
   * newcomer ahead (a placeholder, usually 0 while the others use the budget), so it does not
   * spend its default share on a hot key before its first report reaches us. The service runs
   * that tick at once (see `wantsEarlyTick`) rather than up to a sync interval later.
   */
  #markHotKeysDirty(nowMs: number): void {
    for (const rs of this.#rules.values()) {
      const hot = HOT_FRACTION * rs.rule.limit;
      for (const ks of rs.keys.values()) {
        if (!ks.dirty && gw.windowUsed(ks.window, rs.shape, nowMs) >= hot) this.#markDirty(rs, ks);
      }
    }
    this.#joinedSinceTick = true;
  }

  /** True when a node joined since the last tick: running one now grants it the hot keys. */
  get wantsEarlyTick(): boolean {
    return this.#joinedSinceTick;
  }

  /** Forgets a node run: its grants ended with it, so its hold on every budget goes too. */
  #forgetNode(node: NodeRecord): void {
    for (const rs of this.#rules.values()) {
      for (const ks of rs.keys.values()) {
        const before = ks.streams.length;
        ks.streams = ks.streams.filter((x) => x.node !== node);
        if (ks.streams.length !== before) this.#markDirty(rs, ks);
      }
    }
  }

  /**
   * Recomputes grants for keys with news; returns what to send. Call once per sync interval;
   * `wallMs` stamps the messages (for the nodes' clock-offset estimates only).
   */
  tick(
    nowMs: number,
    wallMs: number,
  ): { updates: RateUpdateFields[]; defaults: RuleDefaultsFields } {
    this.#joinedSinceTick = false;
    for (const node of this.membership.expire(nowMs)) {
      this.stats.nodesDropped++;
      this.#forgetNode(node);
    }
    const live = Math.max(1, this.membership.liveCount);
    const out: GrantsByNode = new Map();
    const dirty = this.#dirty;
    this.#dirty = [];
    const granting = nowMs >= this.#grantsFromMs;
    for (const [rs, ks] of dirty) {
      ks.dirty = false;
      if (granting) this.#allocateKey(rs, ks, nowMs, live, out);
    }
    if (nowMs - this.#lastReclaimMs >= 1000) this.#reclaim(nowMs);
    const seq = ++this.#seq >>> 0;
    const updates = rateUpdates(out, {
      aggregatorId: this.aggregatorId,
      aggregatorEpoch: this.epoch,
      seq,
      sentAtWallMs: wallMs,
    });
    this.stats.updatesSent += updates.length;
    const defaults: RuleDefaultsFields = {
      aggregatorId: this.aggregatorId,
      aggregatorEpoch: this.epoch,
      seq,
      sentAtWallMs: wallMs,
      liveNodes: Math.min(live, 65535),
      rules: [...this.#rules.values()].map((rs) => ({
        rule: rs.rule.name,
        defaultShare: rs.rule.limit / live,
      })),
    };
    return { updates, defaults };
  }

  /** One key's allocation: demand, budget, pacing, shares, then the grants that go out. */
  #allocateKey(rs: RuleState, ks: KeyState, nowMs: number, live: number, out: GrantsByNode) {
    const t = this.#t;
    const limit = rs.rule.limit;
    foldDemand(ks.streams, nowMs, t.syncIntervalMs);
    const lagMs = rs.lagMs + hitWaitMs(ks.streams, rs.rule.defaultCost, rs.hitWaitCapMs);
    const budget = readBudget(ks.window, rs.shape, nowMs, {
      limit,
      windowMs: rs.rule.windowMs,
      lagMs,
      rampMs: rs.rampMs,
    });
    this.#grantAheadIfHot(rs, ks, budget, live, nowMs);
    const defaultShare = limit / live;
    const inputs: RoundingInput[] = ks.streams.map((s) => ({
      demand: s.demandRatePerMs * rs.horizonMs,
      committed: committedAllowance(s, defaultShare),
      base: s.admitted,
    }));
    let held = 0;
    for (const x of inputs) held += x.committed;
    const credit = this.#paceCredit(rs, ks, nowMs);
    const grantable = budget.budget < held + credit ? budget.budget : held + credit;
    const shares = allocate(grantable, inputs);
    roundToUnits(shares, inputs, rs.rule.defaultCost, ks.streams);
    if (t.pacing > 0) {
      const added = handedOut(inputs, shares) - held;
      ks.paceCarry = paceCarry(credit, added, rs.rule.defaultCost);
    }
    const nowParts =
      rs.rampMs > 0 ? usableNow(inputs, shares, budget.budgetNow, grantable, held) : undefined;
    this.stats.grantsSent += scheduleGrants(
      ks,
      ks.streams,
      shares,
      inputs,
      {
        rule: rs.rule.name,
        key: ks.key,
        limit,
        materialChange: t.materialChange,
        syncIntervalMs: t.syncIntervalMs,
        rampMs: rs.rampMs,
        usableNow: nowParts,
        nowMs,
        waitMs: () => this.#waitMs(rs, ks, nowMs, lagMs, budget, shares),
      },
      out,
    );
  }

  /**
   * A key near its limit: a node that has not seen it could take its default share at any moment
   * and overshoot. Every live node that has not reported it is granted ahead instead.
   */
  #grantAheadIfHot(rs: RuleState, ks: KeyState, b: Budget, live: number, nowMs: number): void {
    if (ks.streams.length >= live) return;
    let demand = 0;
    for (const s of ks.streams) demand += s.demandRatePerMs * rs.rule.windowMs;
    if (rs.rule.limit - b.budgetNow + demand < HOT_FRACTION * rs.rule.limit) return;
    for (const node of this.membership.all()) {
      if (!ks.streams.some((x) => x.node === node)) {
        ks.streams.push(NodeStream.placeholder(node, nowMs));
      }
    }
  }

  /** What pacing lets this allocation add beyond what nodes hold (Infinity when unpaced). */
  #paceCredit(rs: RuleState, ks: KeyState, nowMs: number): number {
    let cadenceMs = this.#t.syncIntervalMs;
    for (const s of ks.streams) {
      if (s.node.batchIntervalMs > cadenceMs) cadenceMs = s.node.batchIntervalMs;
    }
    const sinceMs = nowMs - ks.lastAllocMs;
    ks.lastAllocMs = nowMs;
    return paceCredit({
      limit: rs.rule.limit,
      windowMs: rs.rule.windowMs,
      pacing: this.#t.pacing,
      echoDamping: this.#t.echoDamping,
      syncIntervalMs: this.#t.syncIntervalMs,
      cadenceMs,
      sinceMs,
      overloadSinceMs: ks.overloadSinceMs,
      nowMs,
      carry: ks.paceCarry,
    });
  }

  /** The wait the key's grants carry (see `budgetWaitMs`); scheduling asks for it once at most. */
  #waitMs(rs: RuleState, ks: KeyState, nowMs: number, lagMs: number, b: Budget, shares: number[]) {
    // What nodes may still admit once they hold these grants: a node on its default share,
    // which the allocation must count as able to take it, holds its grant by then.
    let onceHeld = 0;
    for (let j = 0; j < shares.length; j++) {
      const c = committedAllowance(ks.streams[j]!, 0);
      onceHeld += shares[j]! > c ? shares[j]! : c;
    }
    return budgetWaitMs(ks.window, rs.shape, nowMs, {
      limit: rs.rule.limit,
      windowMs: rs.rule.windowMs,
      cost: rs.rule.defaultCost,
      lagMs,
      budget: b,
      handedOut: onceHeld,
    });
  }

  /** The windows and node streams as bytes, for a checkpoint (see checkpoint.ts). */
  exportWindows(nowMs: number, wallMs: number): Uint8Array {
    return encodeCheckpoint(this.#rules.values(), nowMs, wallMs);
  }

  /**
   * Restores windows exported by {@link exportWindows} (by this or an earlier run), aged by the
   * wall time since the export, and ends the warm-up: the windows already hold what was
   * admitted before this run started. Returns the number of keys restored.
   */
  restoreWindows(bytes: Uint8Array, nowMs: number, wallMs: number): number {
    const restored = restoreCheckpoint(
      bytes,
      {
        rule: (name) => this.#rules.get(name),
        key: (rs, key) => this.#keyState(rs, key, nowMs),
        node: (id, epoch) => this.#touch(id, epoch, nowMs),
      },
      nowMs,
      wallMs,
    );
    if (restored === undefined) return 0;
    this.#grantsFromMs = nowMs;
    return restored;
  }

  #reclaim(nowMs: number): void {
    this.#lastReclaimMs = nowMs;
    for (const rs of this.#rules.values()) {
      for (const [key, ks] of rs.keys) {
        if (ks.dirty || nowMs - ks.lastReportMs < this.#t.keyIdleMs) continue;
        if (gw.windowUsed(ks.window, rs.shape, nowMs) > 0) continue;
        rs.keys.delete(key);
        this.stats.keys--;
        this.stats.keysReclaimed++;
      }
    }
  }
}
