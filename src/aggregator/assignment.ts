/**
 * Which aggregator of a group should own each of the P decision partitions.
 *
 * In:  the partition count and the ids of the group's live members (not draining).
 * Out: for each partition, the member that should own it.
 *
 * Rendezvous (highest random weight) hashing: partition p goes to the member with the highest
 * score(p, member), a hash of the pair. Every member computes the same answer from the same
 * member list, with no coordination; when a member joins it takes from each other member about
 * 1/(n + 1) of its partitions, and when one leaves only its own partitions move, each to the
 * member that scored next for it. (Jump consistent hash, which the keys use to find their
 * partition, would move partitions between the members that stay when any member other than the
 * last leaves.)
 *
 * The counts are uneven (binomial around P / n): more partitions even them out, at the cost of
 * more, smaller batches per node (bench/scale.ts measures the spread and the moves).
 */
import { fnvByte, fnvResult, fnvStart, fnvString } from "../protocol/fnv1a-64.js";

/** The score of `member` for `partition`: a 53-bit hash of the pair. */
export function score(partition: number, member: string): number {
  fnvStart();
  fnvString(member);
  fnvByte(0xff);
  fnvByte(partition & 0xff);
  fnvByte((partition >>> 8) & 0xff);
  fnvByte((partition >>> 16) & 0xff);
  const h = fnvResult();
  // FNV's low bits mix poorly for short inputs: finish with a multiply-xorshift of both halves.
  let a = Math.imul(h.lo ^ (h.hi >>> 15), 0x85ebca6b) >>> 0;
  a = (a ^ (a >>> 13)) >>> 0;
  let b = Math.imul(h.hi ^ (a >>> 7), 0xc2b2ae35) >>> 0;
  b = (b ^ (b >>> 16)) >>> 0;
  return (b & 0x1fffff) * 2 ** 32 + a;
}

/**
 * The owner of each partition in [0, partitions) among `members` (ids; order and repeats do not
 * matter): `owners[p]` is a member id, or undefined for every p when there are no members.
 */
export function assignPartitions(
  partitions: number,
  members: readonly string[],
): (string | undefined)[] {
  const ids = [...new Set(members)];
  const owners = new Array<string | undefined>(partitions);
  for (let p = 0; p < partitions; p++) owners[p] = ids.length === 0 ? undefined : best(p, ids);
  return owners;
}

function best(partition: number, ids: readonly string[]): string {
  let top = ids[0]!;
  let topScore = score(partition, top);
  for (let i = 1; i < ids.length; i++) {
    const s = score(partition, ids[i]!);
    // Equal scores (rare) go to the smaller id, so the answer never depends on the list's order.
    if (s > topScore || (s === topScore && ids[i]! < top)) {
      top = ids[i]!;
      topScore = s;
    }
  }
  return top;
}

/** The fraction of partitions whose owner differs between two assignments. */
export function movedFraction(
  before: readonly (string | undefined)[],
  after: readonly (string | undefined)[],
): number {
  let moved = 0;
  for (let p = 0; p < before.length; p++) if (before[p] !== after[p]) moved++;
  return before.length === 0 ? 0 : moved / before.length;
}
