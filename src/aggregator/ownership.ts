/**
 * Which decisions partitions this aggregator owns as a member of a group, with their owner
 * epochs, and for each whether it is still learning what the nodes hold.
 *
 * In:  acquisitions and releases (from the group, through the service), and each batch's
 *      partition and the owner epoch its node knew when it sent it.
 * Out: the owner epoch of a key's partition (what grants carry and confirmations match), and
 *      whether a partition may be granted from yet.
 *
 * The learning rule: a partition acquired other than by handoff (a takeover after its owner's
 * lease lapsed, or a fresh claim) comes with no record of the allowances its nodes still hold
 * from earlier grants. Until every live node has sent a batch for it that was sent after the node
 * heard of this owner epoch (the batch's `ownerEpoch`), the owner grants nothing for it: such a
 * report names the grant the node holds, and no grant of an older owner applies at a node once it
 * knows the newer epoch. A node that does not report within `learnMs` (live by its heartbeats but
 * silent on the partition) is then counted as holding its default share, as after a restart.
 * A handoff brings the old owner's grant bookkeeping with it, so there is nothing to learn.
 */
import type { PartitionOwner } from "../protocol/messages.js";
import { decisionPartition } from "../protocol/partition.js";
import type { NodeRecord } from "./membership.js";

interface Owned {
  epoch: number;
  /** Live nodes not yet heard on this partition since it was acquired; undefined: none. */
  learning: Set<NodeRecord> | undefined;
  learnUntilMs: number;
}

export class Ownership {
  /** The group's partition count. */
  readonly partitions: number;
  readonly #learnMs: number;
  readonly #owned = new Map<number, Owned>();

  constructor(partitions: number, learnMs: number) {
    this.partitions = partitions;
    this.#learnMs = learnMs;
  }

  partitionOf(rule: string, key: string): number {
    return this.partitions === 1 ? 0 : decisionPartition(rule, key, this.partitions);
  }

  owns(p: number): boolean {
    return this.#owned.has(p);
  }

  /** The owner epoch of `p`, or 0 when not owned. */
  epochOf(p: number): number {
    return this.#owned.get(p)?.epoch ?? 0;
  }

  /**
   * `p` is owned from now at `epoch`; with `learnFrom` (the live nodes), it grants only once each
   * of them has reported on it (or `learnMs` has passed).
   */
  acquire(p: number, epoch: number, learnFrom: Iterable<NodeRecord> | undefined, nowMs: number) {
    const learning = learnFrom === undefined ? undefined : new Set(learnFrom);
    this.#owned.set(p, {
      epoch,
      learning: learning !== undefined && learning.size > 0 ? learning : undefined,
      learnUntilMs: nowMs + this.#learnMs,
    });
  }

  /** `p` keeps being owned under a new epoch (claimed again after a lapse of the lease). */
  renew(p: number, epoch: number): void {
    const o = this.#owned.get(p);
    if (o !== undefined && epoch > o.epoch) o.epoch = epoch;
  }

  release(p: number): void {
    this.#owned.delete(p);
  }

  /** A batch of `node` for `p`, sent when the node knew owner epoch `ownerEpoch`. */
  heard(p: number, node: NodeRecord, ownerEpoch: number): void {
    const o = this.#owned.get(p);
    if (o?.learning === undefined || ownerEpoch < o.epoch) return;
    o.learning.delete(node);
    if (o.learning.size === 0) o.learning = undefined;
  }

  /** Whether `p` is owned and done learning at `nowMs` (dead nodes are not waited for). */
  grantable(p: number, nowMs: number): boolean {
    const o = this.#owned.get(p);
    if (o === undefined) return false;
    if (o.learning === undefined) return true;
    if (nowMs >= o.learnUntilMs) {
      o.learning = undefined;
      return true;
    }
    for (const n of o.learning) if (!n.alive) o.learning.delete(n);
    if (o.learning.size > 0) return false;
    o.learning = undefined;
    return true;
  }

  /** Owned partitions, ascending, with their epochs and whether each is still learning. */
  list(): { partition: number; epoch: number; learning: boolean }[] {
    return [...this.#owned]
      .sort((a, b) => a[0] - b[0])
      .map(([partition, o]) => ({ partition, epoch: o.epoch, learning: o.learning !== undefined }));
  }

  /** The partitions owned that may be announced now (`canGrant`: the lease not in doubt). */
  announced(canGrant: (p: number) => boolean): PartitionOwner[] {
    const out: PartitionOwner[] = [];
    for (const o of this.list()) {
      if (canGrant(o.partition)) out.push({ partition: o.partition, epoch: o.epoch });
    }
    return out;
  }
}
