/**
 * One flush's reports: the decision entries of the global-rule keys that changed, grouped by
 * decision partition (the subject they go on) and rule, as a decision batch carries them.
 */
import type { ChangeCursor } from "../limiter/key-change.js";
import type { DecisionEntry, RuleGroup } from "../protocol/messages.js";
import { decisionPartition } from "../protocol/partition.js";

/** A key's own admissions by bin, newest first, as a drain hands them out (ChangeCursor). */
export interface RecentBins {
  readonly recentCount: number;
  readonly recentCost: Float64Array;
  readonly recentAgeMs: Float64Array;
}

/** One partition's reports, as `ReportBatch.partitions` yields them. */
export interface PartitionReports {
  readonly partition: number;
  readonly groups: RuleGroup<DecisionEntry>[];
  /** Entries over every group. */
  readonly entries: number;
}

export class ReportBatch {
  readonly #partitions: number;
  readonly #byPartition = new Map<number, Map<string, DecisionEntry[]>>();

  /** `partitions`: how many decision subjects the reports spread over (1..65536). */
  constructor(partitions: number) {
    this.#partitions = partitions;
  }

  /** Partitions with at least one entry. */
  get size(): number {
    return this.#byPartition.size;
  }

  /** Makes `p` one of the partitions sent, with or without entries (a marker batch). */
  touch(p: number): void {
    if (!this.#byPartition.has(p)) this.#byPartition.set(p, new Map());
  }

  /** Adds the drain's change `c` (reported as its generation's first when `isNew`). */
  addChange(c: ChangeCursor, isNew: boolean): void {
    const entry: DecisionEntry = {
      key: c.key,
      generation: c.generation % 2 ** 32,
      admitted: c.admitted,
      rejected: c.rejected,
      isNew,
      grantEpoch: c.grantEpoch,
      grantVersion: c.grantVersion,
      allowance: c.allowance,
      admittedSinceLast: c.deltaAdmitted,
      ageMs: c.ageMs,
    };
    this.add(c.rule, entry, c);
  }

  /**
   * Adds `entry`; with `recent` (the key's own bins, newest first, from the drain), it goes in
   * after one entry per older bin, oldest first: each the cumulative count up to that bin's end,
   * with the bin's admissions as `admittedSinceLast` and its end's age as `ageMs`. An aggregator
   * that missed the reports of that time (a new one, or a partition's new owner) then bins those
   * hits when they were admitted, not all now; one that had them finds the extra entries stale.
   */
  add(rule: string, entry: DecisionEntry, recent?: RecentBins): void {
    if (recent !== undefined && recent.recentCount > 1) {
      let later = 0;
      for (let k = 0; k < recent.recentCount - 1; k++) later += recent.recentCost[k]!;
      let first = true;
      for (let k = recent.recentCount - 1; k >= 1; k--) {
        const cost = recent.recentCost[k]!;
        if (cost > 0 || (first && entry.isNew)) {
          this.#add(rule, {
            ...entry,
            admitted: entry.admitted - later,
            isNew: entry.isNew && first,
            admittedSinceLast: cost,
            ageMs: recent.recentAgeMs[k]!,
          });
          first = false;
        }
        later -= recent.recentCost[k - 1]!;
      }
      this.#add(rule, { ...entry, isNew: entry.isNew && first });
      return;
    }
    this.#add(rule, entry);
  }

  #add(rule: string, entry: DecisionEntry): void {
    const partitions = this.#partitions;
    const p = partitions === 1 ? 0 : decisionPartition(rule, entry.key, partitions);
    let byRule = this.#byPartition.get(p);
    if (byRule === undefined) {
      byRule = new Map();
      this.#byPartition.set(p, byRule);
    }
    let entries = byRule.get(rule);
    if (entries === undefined) {
      entries = [];
      byRule.set(rule, entries);
    }
    entries.push(entry);
  }

  /** Each partition's entries grouped by rule, in the order partitions were first added. */
  *partitions(): Generator<PartitionReports> {
    for (const [partition, byRule] of this.#byPartition) {
      const groups: RuleGroup<DecisionEntry>[] = [];
      let entries = 0;
      for (const [rule, list] of byRule) {
        groups.push({ rule, entries: list });
        entries += list.length;
      }
      yield { partition, groups, entries };
    }
  }
}
