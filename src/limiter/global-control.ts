/**
 * The hooks a node agent drives for `mode: "global"` rules, over every key table of a limiter:
 * grants in, and the state the aggregator's messages set (live nodes, loss, hold, pace).
 */
import type { Clock } from "../clock/clock.js";
import type { Grant, GrantOutcome } from "./grant-cells.js";
import { applyKeyCommand, type KeyCommand } from "./key-command.js";
import type { KeyTable } from "./key-table.js";

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
   * Under a group of aggregators: the keys of the partitions marked 1 in `lost` (their owner is
   * silent) follow the loss policy, the others their grants; `partitionOf` gives a key's
   * partition. Undefined when no partition is lost.
   */
  setPartitionsLost(
    lost: Uint8Array | undefined,
    partitionOf: (rule: string, key: string) => number,
  ): void;
  /**
   * The aggregator (one entry) or some partitions' owners have been silent for a moment: per
   * partition, when its owner was last heard (NaN: heard lately); keys holding a grant there
   * decide by their own recent admissions (`GrantCells.decideSilent`). Undefined: none silent.
   */
  setSilent(
    silentSince: Float64Array | undefined,
    partitionOf: (rule: string, key: string) => number,
  ): void;
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
  /**
   * The next drain hands out, with each key, this node's own admissions of it over its last
   * window by bin (`ChangeCursor.recentCost`): for a new aggregator, or a partition's new owner,
   * to place in its window what it did not hear as it happened.
   */
  reportRecentNext(): void;
  /** Keys changed since the last drain, over every rule (for an early flush). */
  pendingChanges(): number;
  /**
   * Key administration on a global rule, already applied to this limiter's own state: resolves
   * when the listener set by `onAdministered` (the node agent, carrying it to the aggregator
   * and the other nodes) has taken it; at once when none is set.
   */
  administered(command: KeyCommand): Promise<void>;
  /** Sets (or, with undefined, clears) the listener of {@link administered}. */
  onAdministered(listener: ((command: KeyCommand) => Promise<void>) | undefined): void;
  /**
   * Applies key administration that came from elsewhere (another node, through the agent) to
   * this limiter's own state, without passing it on. False for an unknown or non-global rule.
   */
  applyKeyCommand(command: KeyCommand): boolean;
}

/**
 * The control over `tables` (by rule name), on the limiter's `clock`; `onApplied(rule, key)` is
 * called for every grant applied (the limiter wakes the `acquire()` calls waiting on the key).
 */
export function createGlobalControl(
  tables: ReadonlyMap<string, KeyTable>,
  clock: Clock,
  onApplied: (rule: string, key: string) => void,
): GlobalControl {
  const all = [...tables.values()];
  let listener: ((command: KeyCommand) => Promise<void>) | undefined;
  return {
    administered: async (command) => {
      if (listener !== undefined) await listener(command);
    },
    onAdministered: (l) => {
      listener = l;
    },
    applyKeyCommand: (command) => {
      const table = tables.get(command.rule);
      if (table === undefined || table.rule.mode !== "global") return false;
      applyKeyCommand(table, command, clock.nowMs());
      onApplied(command.rule, command.key);
      return true;
    },
    hasGlobalRules: all.some((t) => t.rule.mode === "global"),
    applyGrant: (rule, key, epoch, grant) => {
      const table = tables.get(rule);
      if (table === undefined) return "ignored";
      const outcome = table.applyGrant(key, epoch, grant, clock.nowMs());
      if (outcome === "applied") onApplied(rule, key);
      return outcome;
    },
    setLiveNodes: (n) => {
      for (const t of all) t.setLiveNodes(n);
    },
    setAggregatorLost: (lost) => {
      for (const t of all) t.loss.setLost(lost);
    },
    setPartitionsLost: (lost, partitionOf) => {
      for (const t of all) t.loss.setPartitionsLost(lost, partitionOf);
    },
    setSilent: (silentSince, partitionOf) => {
      for (const t of all) t.loss.setSilent(silentSince, partitionOf);
    },
    setStaticHold: (untilMs) => {
      for (const t of all) t.loss.setStaticHold(untilMs);
    },
    setSyncIntervalMs: (ms) => {
      for (const t of all) t.setSyncIntervalMs(ms);
    },
    dropGrants: () => {
      for (const t of all) t.dropGrants();
    },
    markAllDirty: () => {
      for (const t of all) t.markAllDirty();
    },
    reportRecentNext: () => {
      for (const t of all) t.reportRecentNext();
    },
    pendingChanges: () => {
      let n = 0;
      for (const t of all) n += t.pendingChanges;
      return n;
    },
  };
}
