/**
 * Which decisions partition a (rule, key) pair belongs to: every count of a key goes to the same
 * subject, whichever node sends it.
 *
 * partition = jumpConsistentHash(FNV-1a-64(UTF-8(rule) ‖ 0xFF ‖ UTF-8(key)), partitions).
 * 0xFF never occurs in UTF-8, so the separator makes the pair unambiguous.
 */
import { expectNumber } from "../validate.js";
import { fnvByte, fnvResult, fnvStart, fnvString } from "./fnv1a-64.js";
import { jumpConsistentHash } from "./jump-hash.js";

/** Most decision partitions. */
export const MAX_PARTITIONS = 65_536;

/** The partition in [0, partitions) of `(rule, key)`; `partitions` is an integer in [1, 65536]. */
export function decisionPartition(rule: string, key: string, partitions: number): number {
  if (!(Number.isInteger(partitions) && partitions >= 1 && partitions <= MAX_PARTITIONS)) {
    expectNumber("partitions", partitions, { integer: true, min: 1, max: MAX_PARTITIONS });
  }
  fnvStart();
  fnvString(rule);
  fnvByte(0xff);
  fnvString(key);
  return jumpConsistentHash(fnvResult(), partitions);
}
