/**
 * A node's view of an aggregator group's partition owners: per partition, the newest owner epoch
 * heard and when it was last heard (this node's clock).
 *
 * Rules:
 * - Owner epochs of a partition only grow. A message listing a partition at an older epoch than
 *   the newest heard is not from its owner (a member that lost it, or a late message): what it
 *   says for that partition is dropped. A newer epoch is taken at once: the new owner got it by
 *   compare-and-set, after the last one stopped granting it. Once a partition's owner has been
 *   silent past `staleAfterMs`, an older epoch is taken too (the group's store was recreated and
 *   counts from 1 again): that is a rewind, and the node drops the grants it holds, which carry
 *   the higher epochs.
 * - A partition whose owner has not been heard for `staleAfterMs` is lost: its keys follow the
 *   loss policy until an owner is heard again. The others keep their grants.
 * - On a new epoch, the node reports every key of the partition again, and sends a batch for it
 *   even when empty (a marker), each with the epoch: the new owner waits for such a report from
 *   every live node before it grants (it then knows every grant the node can still apply).
 */
import type { PartitionOwner } from "../protocol/messages.js";
import { decisionPartition } from "../protocol/partition.js";

export class PartitionOwners {
  #partitions: number;
  #epochs: Float64Array;
  #heardAt: Float64Array;
  /** Partitions that got a new epoch since the last flush: each gets a batch (a marker). */
  readonly #markers = new Set<number>();
  #lost: Uint8Array | undefined;
  #silent: Float64Array | undefined;
  /** Not following a group: when the lone aggregator was last heard (reused every tick). */
  readonly #loneHeard = new Float64Array(1);
  /** Whether any group owner was ever heard (the node follows a group). */
  #following = false;

  constructor(partitions: number) {
    this.#partitions = partitions;
    this.#epochs = new Float64Array(partitions);
    this.#heardAt = new Float64Array(partitions).fill(Number.NEGATIVE_INFINITY);
  }

  get partitions(): number {
    return this.#partitions;
  }

  get following(): boolean {
    return this.#following;
  }

  /** The group's partition count, when it differs from this node's: starts afresh with it. */
  adopt(partitions: number): boolean {
    if (partitions < 1 || partitions === this.#partitions) return false;
    this.#partitions = partitions;
    this.#epochs = new Float64Array(partitions);
    this.#heardAt = new Float64Array(partitions).fill(Number.NEGATIVE_INFINITY);
    this.#markers.clear();
    this.#lost = undefined;
    return true;
  }

  readonly partitionOf = (rule: string, key: string): number =>
    this.#partitions === 1 ? 0 : decisionPartition(rule, key, this.#partitions);

  /**
   * A message from an owner listing `owners` at `nowMs`. Returns the epochs it holds now for
   * this node (partition -> epoch: those at the newest epoch), how many were older, whether any
   * partition got a new epoch, and whether the grants held must go (the first group heard, or a
   * rewind).
   */
  observe(
    owners: readonly PartitionOwner[],
    nowMs: number,
    staleAfterMs: number,
  ): { current: Map<number, number>; older: number; changed: boolean; dropGrants: boolean } {
    // The grants of a lone aggregator carry its run epoch, above any owner epoch.
    let dropGrants = !this.#following;
    this.#following = true;
    const current = new Map<number, number>();
    let older = 0;
    let changed = false;
    for (const { partition: p, epoch } of owners) {
      if (p >= this.#partitions) continue;
      const known = this.#epochs[p]!;
      if (epoch < known && nowMs - this.#heardAt[p]! <= staleAfterMs) {
        older++;
        continue;
      }
      if (epoch < known) dropGrants = true;
      if (epoch !== known) {
        this.#epochs[p] = epoch;
        this.#markers.add(p);
        changed = true;
      }
      this.#heardAt[p] = nowMs;
      current.set(p, epoch);
    }
    return { current, older, changed, dropGrants };
  }

  /** The newest owner epoch heard for `p` (0: none). */
  epochOf(p: number): number {
    return this.#epochs[p] ?? 0;
  }

  /** Takes the partitions due a marker batch. */
  takeMarkers(): number[] {
    const out = [...this.#markers];
    this.#markers.clear();
    return out;
  }

  /**
   * Which partitions' owners (or, not following a group, the lone aggregator last heard at
   * `aggregatorHeardMs`) have been silent for more than `fallbackAfterMs` at `nowMs`: per
   * partition the time it was last heard (NaN when heard lately), or undefined when none is
   * silent; null when that is as at the last call. 0 turns the fallback off.
   */
  refreshSilent(
    nowMs: number,
    fallbackAfterMs: number,
    aggregatorHeardMs: number,
  ): Float64Array | undefined | null {
    this.#loneHeard[0] = aggregatorHeardMs;
    const heard = this.#following ? this.#heardAt : this.#loneHeard;
    let silent: Float64Array | undefined;
    for (let p = 0; fallbackAfterMs > 0 && p < heard.length; p++) {
      if (nowMs - heard[p]! > fallbackAfterMs && heard[p]! > Number.NEGATIVE_INFINITY) {
        silent ??= new Float64Array(heard.length).fill(Number.NaN);
        silent[p] = heard[p]!;
      }
    }
    if (sameMarks(this.#silent, silent)) return null;
    this.#silent = silent;
    return silent;
  }

  /**
   * Recomputes which partitions are lost at `nowMs`; returns the marks (undefined when none is
   * lost) if they changed, else null, and whether every partition is lost.
   */
  refreshLost(
    nowMs: number,
    staleAfterMs: number,
  ): { changed: Uint8Array | undefined | null; all: boolean } {
    let lost: Uint8Array | undefined;
    let count = 0;
    for (let p = 0; p < this.#partitions; p++) {
      if (nowMs - this.#heardAt[p]! > staleAfterMs) {
        lost ??= new Uint8Array(this.#partitions);
        lost[p] = 1;
        count++;
      }
    }
    const all = count === this.#partitions;
    if (sameMarks(this.#lost, lost)) return { changed: null, all };
    this.#lost = lost;
    return { changed: lost, all };
  }
}

/** Whether two snapshots of per-partition marks say the same (NaN equal to NaN). */
function sameMarks(a: ArrayLike<number> | undefined, b: ArrayLike<number> | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}
