/**
 * The aggregator's processor: reports in, grants out, with no I/O and no clock of its own (every
 * call takes the time, on the aggregator's monotonic clock, and the wall time where a message or
 * checkpoint needs it).
 *
 *   ingestBatch  --> node-stream (reconcile the cumulative counts)
 *                --> global-window (bin the new admitted cost at its admission time)
 *   tick         --> for each key with news, allocate-key:
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
  DecisionBatchFields,
  DecisionEntry,
  Heartbeat,
  KeyCommandFields,
  RateUpdateFields,
  RuleDefaultsFields,
} from "../protocol/messages.js";
import { Role } from "../protocol/messages.js";
import { allocateKey } from "./allocate-key.js";
import { HOT_FRACTION } from "./allocation-inputs.js";
import { encodeCheckpoint, encodePartitionCheckpoints, restoreCheckpoint } from "./checkpoint.js";
import {
  type AggregatorStats,
  newAggregatorStats,
  type RuleUsage,
  ruleUsage,
} from "./core-stats.js";
import * as gw from "./global-window.js";
import { type GrantsByNode, rateUpdates, ruleDefaults } from "./grant-schedule.js";
import { administerKey } from "./key-admin.js";
import { KeyState, RuleState } from "./key-state.js";
import { Membership, type NodeRecord } from "./membership.js";
import { newReconciled, reconcileInto } from "./node-stream.js";
import { Ownership } from "./ownership.js";

export type { AggregatorStats, RuleUsage } from "./core-stats.js";

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
  /**
   * As a member of an aggregator group: the group's partition count. Then only the partitions
   * acquired (`acquirePartition`) are aggregated, each granted under its own owner epoch.
   */
  readonly partitions?: number;
}

export class AggregatorCore {
  readonly aggregatorId: string;
  readonly epoch: number;
  readonly membership: Membership;
  readonly stats: AggregatorStats = newAggregatorStats();
  /** Group member only: the partitions owned. */
  readonly ownership: Ownership | undefined;
  readonly #rules = new Map<string, RuleState>();
  readonly #t: AggregatorTuning;
  #grantsFromMs: number;
  /** The keys to allocate at the next tick, with their rules (same index); no pair objects. */
  #dirtyRules: RuleState[] = [];
  #dirtyKeys: KeyState[] = [];
  #joinedSinceTick = false;
  #seq = 0;
  #lastReclaimMs: number;
  #lastTickMs = Number.NEGATIVE_INFINITY;
  /** What the entry being ingested adds (reused from one entry to the next). */
  readonly #reconciled = newReconciled();
  /** Per entry of the group being ingested, its key state when found by `lookUp`. */
  readonly #found: (KeyState | undefined)[] = [];

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
    const learnMs = Math.min(5000, Math.max(1000, 40 * this.#t.syncIntervalMs));
    this.ownership =
      options.partitions === undefined ? undefined : new Ownership(options.partitions, learnMs);
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

  /** Per rule, for telemetry (see `ruleUsage`). */
  usage(nowMs: number): RuleUsage[] {
    return ruleUsage(this.#rules.values(), nowMs);
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

  /** A node's batch; a group member passes the partition its subject named. */
  ingestBatch(batch: DecisionBatchFields, nowMs: number, partition?: number): void {
    this.stats.batches++;
    const node = this.#touch(batch.nodeId, batch.nodeEpoch, nowMs);
    if (node === undefined) {
      this.stats.staleBatches++;
      return;
    }
    this.membership.observeBatch(node, nowMs);
    // Learning after a takeover: a batch sent before its node heard of this owner waits for the
    // node's report of every key once it has (with when it admitted its hits).
    const own = partition === undefined ? undefined : this.ownership;
    if (own?.heard(partition!, node, batch.ownerEpoch ?? 0) === "before") {
      this.stats.staleEntries += batch.groups.reduce((n, g) => n + g.entries.length, 0);
      return;
    }
    for (const group of batch.groups) {
      const rs = this.#rules.get(group.rule);
      if (rs === undefined) {
        this.stats.unknownRuleEntries += group.entries.length;
        continue;
      }
      const entries = group.entries;
      const found = this.#found;
      rs.lookUp(entries, found);
      for (let i = 0; i < entries.length; i++) {
        this.#ingestEntry(rs, node, entries[i]!, found[i], nowMs);
      }
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

  #newKey(rs: RuleState, key: string, nowMs: number, partition?: number): KeyState {
    const p = partition ?? this.ownership?.partitionOf(rs.rule.name, key);
    const ks = new KeyState(key, rs.shape, nowMs, p);
    rs.addKey(ks);
    this.stats.keys++;
    return ks;
  }

  /**
   * The key state of an entry, made if new; undefined when its partition is not owned. `found`
   * is what `lookUp` found by the key's bytes (a reader's entry); without it the key's string
   * is looked up, which for a reader's entry is made only then (a new key, or a key repeated in
   * the batch after its first entry made it).
   */
  #entryKey(
    rs: RuleState,
    e: DecisionEntry,
    found: KeyState | undefined,
    nowMs: number,
  ): KeyState | undefined {
    const own = this.ownership;
    const ks = found ?? rs.keys.get(e.key);
    if (ks !== undefined) return own === undefined || own.owns(ks.partition) ? ks : undefined;
    const p = own?.partitionOf(rs.rule.name, e.key);
    if (own !== undefined && !own.owns(p!)) return undefined;
    return this.#newKey(rs, e.key, nowMs, p);
  }

  #ingestEntry(
    rs: RuleState,
    node: NodeRecord,
    e: DecisionEntry,
    found: KeyState | undefined,
    nowMs: number,
  ): void {
    this.stats.entries++;
    if (e.generation === 0) {
      // 0 marks our own grants ahead (placeholders); nodes never use it for a key generation.
      this.stats.staleEntries++;
      return;
    }
    const own = this.ownership;
    const ks = this.#entryKey(rs, e, found, nowMs);
    if (ks === undefined) {
      this.stats.unownedEntries++;
      return;
    }
    const epoch = own === undefined ? this.epoch : own.epochOf(ks.partition);
    const r = this.#reconciled;
    const counted = reconcileInto(r, ks.streams, node, e, nowMs, epoch);
    if (!counted || r.stale) this.stats.staleEntries++;
    if (!counted) return;
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

  /**
   * Key administration from a node (see key-admin.ts), on a key of a partition owned here; the
   * key is allocated anew at the next tick. False when not owned here or not a global rule.
   */
  administer(c: KeyCommandFields, nowMs: number): boolean {
    const rs = this.#rules.get(c.rule);
    if (rs === undefined) return false;
    const own = this.ownership;
    let ks = rs.keys.get(c.key);
    const p = ks?.partition ?? own?.partitionOf(c.rule, c.key);
    if (own !== undefined && !own.owns(p!)) {
      this.stats.keyCommandsUnowned++;
      return false;
    }
    ks ??= this.#newKey(rs, c.key, nowMs, p);
    administerKey(rs, ks, c, nowMs);
    this.stats.keyCommands++;
    this.#markDirty(rs, ks);
    return true;
  }

  #markDirty(rs: RuleState, ks: KeyState): void {
    if (ks.dirty) return;
    ks.dirty = true;
    this.#dirtyRules.push(rs);
    this.#dirtyKeys.push(ks);
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
    canGrant: (partition: number) => boolean = () => true,
  ): { updates: RateUpdateFields[]; defaults: RuleDefaultsFields } {
    this.#joinedSinceTick = false;
    this.#excuseLateTick(nowMs);
    for (const node of this.membership.expire(nowMs)) {
      this.stats.nodesDropped++;
      this.#forgetNode(node);
    }
    const live = Math.max(1, this.membership.liveCount);
    const out: GrantsByNode = new Map();
    const dirtyRules = this.#dirtyRules;
    const dirtyKeys = this.#dirtyKeys;
    this.#dirtyRules = [];
    this.#dirtyKeys = [];
    const granting = nowMs >= this.#grantsFromMs;
    const own = this.ownership;
    const owners = own === undefined ? [] : own.announced(canGrant);
    for (let i = 0; i < dirtyKeys.length; i++) {
      const rs = dirtyRules[i]!;
      const ks = dirtyKeys[i]!;
      if (own !== undefined && !own.grantable(ks.partition, nowMs)) {
        // Not ours (any more): forget; still learning: allocate once it has learnt.
        if (own.owns(ks.partition)) this.#requeue(rs, ks);
        else ks.dirty = false;
        continue;
      }
      if (own !== undefined && !canGrant(ks.partition)) {
        this.#requeue(rs, ks); // the lease is in doubt or the partition is being handed off
        continue;
      }
      ks.dirty = false;
      if (granting) {
        this.stats.grantsSent += allocateKey(rs, ks, this.#t, this.membership, nowMs, live, out);
      }
    }
    if (nowMs - this.#lastReclaimMs >= 1000) this.#reclaim(nowMs);
    const seq = ++this.#seq >>> 0;
    const header = {
      aggregatorId: this.aggregatorId,
      aggregatorEpoch: this.epoch,
      seq,
      sentAtWallMs: wallMs,
      owners,
    };
    const updates = rateUpdates(out, header);
    this.stats.updatesSent += updates.length;
    const defaults = ruleDefaults(header, this.#rules.values(), live, own?.partitions ?? 0);
    return { updates, defaults };
  }

  /** Puts a key still marked dirty back in the list for the next tick. */
  #requeue(rs: RuleState, ks: KeyState): void {
    this.#dirtyRules.push(rs);
    this.#dirtyKeys.push(ks);
  }

  /**
   * A tick far later than due: this process was paused or starved, and what the nodes sent
   * meanwhile is still waiting to be read. Their silence is not theirs: it is not held against
   * them (dropping them would forget what their grants still allow).
   */
  #excuseLateTick(nowMs: number): void {
    const lateMs = nowMs - this.#lastTickMs - 2 * this.#t.syncIntervalMs;
    if (lateMs > 0 && this.#lastTickMs > Number.NEGATIVE_INFINITY) this.membership.excuse(lateMs);
    this.#lastTickMs = nowMs;
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
    const restored = this.#restore(bytes, nowMs, wallMs);
    if (restored === undefined) return 0;
    this.#grantsFromMs = nowMs;
    return restored;
  }

  #restore(bytes: Uint8Array, nowMs: number, wallMs: number): number | undefined {
    return restoreCheckpoint(
      bytes,
      {
        rule: (name) => this.#rules.get(name),
        key: (rs, key) => rs.keys.get(key) ?? this.#newKey(rs, key, nowMs),
        node: (id, epoch) => this.#touch(id, epoch, nowMs),
      },
      nowMs,
      wallMs,
    );
  }

  /**
   * Group member: `p` is this run's from now at owner `epoch`, with the windows (and, from a
   * handoff, the grants) of `checkpoint`. Without a handoff's grants, it learns what the nodes
   * hold before it grants (ownership.ts). Returns the keys restored.
   */
  acquirePartition(
    p: number,
    epoch: number,
    checkpoint: { bytes: Uint8Array; handoff: boolean } | undefined,
    nowMs: number,
    wallMs: number,
  ): number {
    const own = this.ownership!;
    this.#dropPartition(p);
    const restored = checkpoint === undefined ? 0 : this.#restore(checkpoint.bytes, nowMs, wallMs);
    const learnFrom = checkpoint?.handoff === true ? undefined : this.membership.all();
    own.acquire(p, epoch, learnFrom, nowMs);
    // A partition taken with its windows needs no warm-up; the others' warm-up is unchanged.
    if (checkpoint !== undefined && this.#grantsFromMs > nowMs) this.#grantsFromMs = nowMs;
    return restored ?? 0;
  }

  /** Group member: `p` keeps being this run's under a new owner epoch. */
  renewPartition(p: number, epoch: number): void {
    this.ownership?.renew(p, epoch);
  }

  /** Group member: the windows, streams and grants of `p`'s keys (for a handoff or a save). */
  exportPartition(p: number, nowMs: number, wallMs: number, grants: boolean): Uint8Array {
    return this.exportPartitions([p], nowMs, wallMs, grants).get(p)!;
  }

  /** Group member: as {@link exportPartition} for each of `ps`, from one pass over the keys. */
  exportPartitions(ps: readonly number[], nowMs: number, wallMs: number, grants: boolean) {
    return encodePartitionCheckpoints(this.#rules.values(), ps, nowMs, wallMs, grants);
  }

  /** Group member: `p` is not this run's any more; what was kept for it goes. */
  releasePartition(p: number): void {
    this.ownership?.release(p);
    this.#dropPartition(p);
  }

  #dropPartition(p: number): void {
    for (const rs of this.#rules.values()) {
      for (const ks of rs.keys.values()) {
        if (ks.partition !== p) continue;
        rs.deleteKey(ks);
        ks.dirty = false;
        this.stats.keys--;
      }
    }
    const rules = this.#dirtyRules;
    const keys = this.#dirtyKeys;
    this.#dirtyRules = [];
    this.#dirtyKeys = [];
    for (let i = 0; i < keys.length; i++) {
      if (keys[i]!.partition !== p) this.#requeue(rules[i]!, keys[i]!);
    }
  }

  #reclaim(nowMs: number): void {
    this.#lastReclaimMs = nowMs;
    for (const rs of this.#rules.values()) {
      for (const ks of rs.keys.values()) {
        if (ks.dirty || nowMs - ks.lastReportMs < this.#t.keyIdleMs) continue;
        if (gw.windowUsed(ks.window, rs.shape, nowMs) > 0) continue;
        rs.deleteKey(ks);
        this.stats.keys--;
        this.stats.keysReclaimed++;
      }
    }
  }
}
