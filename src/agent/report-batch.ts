/**
 * One flush's reports: the decision entries of the global-rule keys that changed, grouped by
 * decision partition (the subject they go on) and rule, as a decision batch carries them.
 */
import type { DecisionEntry, RuleGroup } from "../protocol/messages.js";
import { decisionPartition } from "../protocol/partition.js";

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

  add(rule: string, entry: DecisionEntry): void {
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
