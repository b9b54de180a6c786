/**
 * The partition key `pk` sent in RateLimit fields: the first 12 bytes of SHA-256 of the limit
 * key, so a client can tell its partitions apart without the server revealing the key (an IP, a
 * user id). A client that knows its key can compute the same bytes.
 */
import { createHash } from "node:crypto";

export const PARTITION_KEY_BYTES = 12;

export function partitionKeyOf(key: string): Uint8Array {
  return createHash("sha256").update(key, "utf8").digest().subarray(0, PARTITION_KEY_BYTES);
}
