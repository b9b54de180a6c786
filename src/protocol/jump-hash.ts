/**
 * Jump consistent hash (Lamping and Veach, 2014): maps a 64-bit key onto `buckets` buckets so
 * that growing from n to n + 1 buckets moves only about 1/(n + 1) of the keys, all of them to
 * the new bucket. Used wherever keys map onto a changing set of owners, never `hash % n`.
 *
 * The 64-bit linear congruential step runs on four 16-bit limbs in plain numbers.
 */
import type { Hash64 } from "./fnv1a-64.js";

// The LCG multiplier 2862933555777941757 = 0x27bb2ee687b0b0fd, low limb first.
const C0 = 0xb0fd;
const C1 = 0x87b0;
const C2 = 0x2ee6;
const C3 = 0x27bb;

/**
 * The bucket in [0, buckets) of `key`. `buckets` must be an integer in [1, 2^31]; callers
 * validate it (see `decisionPartition`).
 */
export function jumpConsistentHash(key: Hash64, buckets: number): number {
  let k0 = key.lo & 0xffff;
  let k1 = key.lo >>> 16;
  let k2 = key.hi & 0xffff;
  let k3 = key.hi >>> 16;
  let b = -1;
  let j = 0;
  while (j < buckets) {
    b = j;
    // k = k * C + 1 (mod 2^64). Partial sums stay below 2^35, exact in a double.
    const r0 = k0 * C0 + 1;
    let r1 = k1 * C0 + k0 * C1;
    let r2 = k2 * C0 + k1 * C1 + k0 * C2;
    let r3 = k3 * C0 + k2 * C1 + k1 * C2 + k0 * C3;
    r1 += Math.floor(r0 / 65536);
    r2 += Math.floor(r1 / 65536);
    r3 += Math.floor(r2 / 65536);
    k0 = r0 & 0xffff;
    k1 = r1 & 0xffff;
    k2 = r2 & 0xffff;
    k3 = r3 & 0xffff;
    // (k >>> 33) is the top 31 bits: k3 (16 bits) and the top 15 bits of k2.
    const top31 = k3 * 32768 + (k2 >>> 1);
    j = Math.floor((b + 1) * (2147483648 / (top31 + 1)));
  }
  return b;
}
