/**
 * The NATS nkeys text form of Ed25519 keys, so Sluice's signing keys look and travel like the
 * keys NATS operators already handle (`nk`, `nsc`).
 *
 * A public key is base32 (RFC 4648 alphabet, no padding) of one prefix byte naming the role,
 * the 32 raw key bytes and a CRC-16 of those 33 bytes: 56 characters, the first one the role's
 * letter. A seed (the 32-byte Ed25519 private seed) is base32 of two prefix bytes, the 32 seed
 * bytes and a CRC-16 of those 34: 58 characters starting with "S" and the role's letter. The
 * two prefix bytes hold the seed prefix (18 << 3, "S") in the top five bits of the first byte
 * and the role prefix (five significant bits, also shifted left by 3) in the next five bits;
 * the last three bits of the second byte are zero.
 *
 * The CRC-16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0, no reflection, no final
 * xor; the check value of "123456789" is 0x31C3), appended little-endian.
 *
 * Decoding is strict: the exact length, only alphabet characters (upper case), zero padding
 * bits, a matching CRC and the expected prefix; anything else is a failure, never a guess.
 */

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const VALUES = new Map<string, number>([...ALPHABET].map((c, i) => [c, i]));

/** Raw Ed25519 public key and seed length, bytes. */
export const RAW_KEY_BYTES = 32;
/** Length of a public key in text. */
export const PUBLIC_KEY_CHARS = 56;
/** Length of a seed in text. */
export const SEED_CHARS = 58;

/** Role prefix bytes (the role letter's base32 value shifted left by 3). */
const ROLE_PREFIX = {
  account: 0 << 3, // "A"
  cluster: 2 << 3, // "C"
  server: 13 << 3, // "N"
  operator: 14 << 3, // "O"
  user: 20 << 3, // "U"
} as const;
const SEED_PREFIX = 18 << 3; // "S"

/** The key roles of NATS nkeys this module reads and writes. */
export type NkeyRole = keyof typeof ROLE_PREFIX;

/** The letter a public key of `role` starts with (a seed starts with "S" and this letter). */
export function roleLetter(role: NkeyRole): string {
  return ALPHABET[ROLE_PREFIX[role] >> 3]!;
}

/** Why a text is not a key of the expected kind. */
export type NkeyFailure = "bad-length" | "bad-character" | "bad-crc" | "wrong-prefix";

/** CRC-16/XMODEM of `bytes[0, end)`. */
export function crc16(bytes: Uint8Array, end = bytes.length): number {
  let crc = 0;
  for (let i = 0; i < end; i++) {
    crc ^= bytes[i]! << 8;
    for (let k = 0; k < 8; k++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : crc << 1;
  }
  return crc & 0xffff;
}

/** RFC 4648 base32 without padding; the last character's unused low bits are zero. */
export function base32Encode(bytes: Uint8Array): string {
  let out = "";
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = ((acc << 8) | b) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(acc >> bits) & 31];
    }
  }
  if (bits > 0) out += ALPHABET[(acc << (5 - bits)) & 31];
  return out;
}

/**
 * Inverse of {@link base32Encode}: undefined for a character outside the alphabet, a length no
 * byte count encodes to, or nonzero padding bits (so every byte string has one text form).
 */
export function base32Decode(text: string): Uint8Array | undefined {
  const rest = (text.length * 5) % 8;
  if (rest >= 5) return undefined; // a whole unused character
  const out = new Uint8Array(Math.floor((text.length * 5) / 8));
  let acc = 0;
  let bits = 0;
  let n = 0;
  for (const c of text) {
    const v = VALUES.get(c);
    if (v === undefined) return undefined;
    acc = ((acc << 5) | v) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (acc >> bits) & 0xff;
    }
  }
  if ((acc & ((1 << bits) - 1)) !== 0) return undefined;
  return out;
}

function withCrc(payload: Uint8Array): string {
  const out = new Uint8Array(payload.length + 2);
  out.set(payload);
  const crc = crc16(payload);
  out[payload.length] = crc & 0xff;
  out[payload.length + 1] = crc >> 8;
  return base32Encode(out);
}

/** Base32 text to its payload (without the CRC), checking length and CRC. */
function checked(text: string, chars: number): Uint8Array | NkeyFailure {
  if (typeof text !== "string" || text.length !== chars) return "bad-length";
  const raw = base32Decode(text);
  if (raw === undefined) return "bad-character";
  const end = raw.length - 2;
  if (crc16(raw, end) !== (raw[end]! | (raw[end + 1]! << 8))) return "bad-crc";
  return raw.subarray(0, end);
}

function expectRaw(raw: Uint8Array): void {
  if (raw.length !== RAW_KEY_BYTES) throw new RangeError(`an nkey holds ${RAW_KEY_BYTES} bytes`);
}

/** The text form of a raw 32-byte public key of `role`. */
export function encodePublicKey(role: NkeyRole, raw: Uint8Array): string {
  expectRaw(raw);
  const payload = new Uint8Array(1 + RAW_KEY_BYTES);
  payload[0] = ROLE_PREFIX[role];
  payload.set(raw, 1);
  return withCrc(payload);
}

/** The raw 32 bytes of a public key of `role`, or why the text is not one. */
export function decodePublicKey(text: string, role: NkeyRole): Uint8Array | NkeyFailure {
  const payload = checked(text, PUBLIC_KEY_CHARS);
  if (typeof payload === "string") return payload;
  if (payload[0] !== ROLE_PREFIX[role]) return "wrong-prefix";
  return payload.slice(1);
}

/** The text form of a raw 32-byte Ed25519 seed of `role`. */
export function encodeSeed(role: NkeyRole, raw: Uint8Array): string {
  expectRaw(raw);
  const prefix = ROLE_PREFIX[role];
  const payload = new Uint8Array(2 + RAW_KEY_BYTES);
  payload[0] = SEED_PREFIX | (prefix >> 5);
  payload[1] = (prefix & 31) << 3;
  payload.set(raw, 2);
  return withCrc(payload);
}

/** The raw 32-byte seed of a seed of `role`, or why the text is not one. */
export function decodeSeed(text: string, role: NkeyRole): Uint8Array | NkeyFailure {
  const payload = checked(text, SEED_CHARS);
  if (typeof payload === "string") return payload;
  const b0 = payload[0]!;
  const b1 = payload[1]!;
  if ((b0 & 0xf8) !== SEED_PREFIX || (b1 & 7) !== 0) return "wrong-prefix";
  if ((((b0 & 7) << 5) | (b1 >> 3)) !== ROLE_PREFIX[role]) return "wrong-prefix";
  return payload.slice(2);
}
