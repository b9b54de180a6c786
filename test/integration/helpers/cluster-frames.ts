/**
 * Hostile frames for the cluster tests: valid protocol frames made invalid in one precise way
 * (a field set to -1 or NaN, a key made ill-formed UTF-8, a wrong version, a cut body) with the
 * CRC recomputed so the damage gets past the checksum, plus plain corruption (random bytes,
 * truncation, bit flips). Fields are found by a marker value, not by offset, so the crafting
 * survives changes of the layout.
 */
import { crc32 } from "../../../src/protocol/crc32.js";

/** A small seeded PRNG (mulberry32), so a failing run can be replayed from its seed. */
export { seededRandom } from "../../../src/cli/load.js";

/** Writes the CRC-32 of everything before the last 4 bytes into them (in place); returns it. */
export function fixCrc(frame: Uint8Array): Uint8Array {
  const end = frame.length - 4;
  new DataView(frame.buffer, frame.byteOffset, frame.byteLength).setUint32(
    end,
    crc32(frame, 0, end),
    true,
  );
  return frame;
}

function f64Bytes(value: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, value, true);
  return b;
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/**
 * A copy of `frame` with the f64 field holding `marker` (a value used nowhere else in the frame)
 * set to `value`, CRC recomputed.
 */
export function withF64(frame: Uint8Array, marker: number, value: number): Uint8Array {
  const out = frame.slice();
  const at = indexOf(out, f64Bytes(marker));
  if (at < 0) throw new Error(`marker ${marker} not found in the frame`);
  out.set(f64Bytes(value), at);
  return fixCrc(out);
}

/** A copy of `frame` with the UTF-8 string `marker` overwritten by 0xFF bytes, CRC recomputed. */
export function withIllFormedString(frame: Uint8Array, marker: string): Uint8Array {
  const out = frame.slice();
  const needle = new TextEncoder().encode(marker);
  const at = indexOf(out, needle);
  if (at < 0) throw new Error(`marker ${marker} not found in the frame`);
  out.fill(0xff, at, at + needle.length);
  return fixCrc(out);
}

/** A copy with header byte `index` (2: version, 3: type) set to `value`, CRC recomputed. */
export function withHeaderByte(frame: Uint8Array, index: number, value: number): Uint8Array {
  const out = frame.slice();
  out[index] = value;
  return fixCrc(out);
}

/** The body cut short by `cut` bytes, with a valid CRC over what is left. */
export function withBodyCut(frame: Uint8Array, cut: number): Uint8Array {
  const out = new Uint8Array(frame.length - cut);
  out.set(frame.subarray(0, frame.length - 4 - cut));
  return fixCrc(out);
}

/** One byte appended after the last field, with a valid CRC. */
export function withTrailingByte(frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(frame.length + 1);
  out.set(frame.subarray(0, frame.length - 4));
  out[frame.length - 4] = 0x2a;
  return fixCrc(out);
}

/** The first `length` bytes only (the CRC no longer matches). */
export function truncated(frame: Uint8Array, random: () => number): Uint8Array {
  return frame.slice(0, Math.floor(random() * frame.length));
}

/** A copy with one random bit flipped (no CRC fix: corruption in transit). */
export function bitFlipped(frame: Uint8Array, random: () => number): Uint8Array {
  const out = frame.slice();
  const bit = Math.floor(random() * out.length * 8);
  out[bit >> 3]! ^= 1 << (bit & 7);
  return out;
}

/** `0..maxLength` random bytes. */
export function randomBytes(random: () => number, maxLength: number): Uint8Array {
  const out = new Uint8Array(Math.floor(random() * (maxLength + 1)));
  for (let i = 0; i < out.length; i++) out[i] = Math.floor(random() * 256);
  return out;
}
