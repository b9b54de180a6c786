/**
 * 64-bit FNV-1a over the UTF-8 bytes of strings, in plain numbers (four 16-bit limbs) so it
 * needs no BigInt and allocates only the result.
 *
 * In: strings (and separator bytes). Out: the hash as two unsigned 32-bit halves.
 */

/** A 64-bit value as unsigned 32-bit halves. */
export interface Hash64 {
  readonly hi: number;
  readonly lo: number;
}

// State of the hash in progress, low limb first. Hashing is synchronous, so one state suffices.
let v0 = 0;
let v1 = 0;
let v2 = 0;
let v3 = 0;

/** Starts a hash at the FNV-1a offset basis 0xcbf29ce484222325. */
export function fnvStart(): void {
  v0 = 0x2325;
  v1 = 0x8422;
  v2 = 0x9ce4;
  v3 = 0xcbf2;
}

/** Mixes one byte: xor, then multiply by the FNV prime 0x100000001b3 (mod 2^64). */
export function fnvByte(byte: number): void {
  v0 ^= byte;
  const t0 = v0 * 0x1b3;
  let t1 = v1 * 0x1b3;
  let t2 = v2 * 0x1b3 + (v0 << 8);
  const t3 = v3 * 0x1b3 + (v1 << 8);
  t1 += t0 >>> 16;
  v0 = t0 & 0xffff;
  t2 += t1 >>> 16;
  v1 = t1 & 0xffff;
  v3 = (t3 + (t2 >>> 16)) & 0xffff;
  v2 = t2 & 0xffff;
}

/** Mixes the UTF-8 bytes of `text`; a lone surrogate counts as U+FFFD, as `TextEncoder` does. */
export function fnvString(text: string): void {
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c < 0x80) {
      fnvByte(c);
      continue;
    }
    if (c < 0x800) {
      fnvByte(0xc0 | (c >> 6));
      fnvByte(0x80 | (c & 0x3f));
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const d = text.charCodeAt(i + 1);
      if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
        const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        fnvByte(0xf0 | (cp >> 18));
        fnvByte(0x80 | ((cp >> 12) & 0x3f));
        fnvByte(0x80 | ((cp >> 6) & 0x3f));
        fnvByte(0x80 | (cp & 0x3f));
        i++;
        continue;
      }
      c = 0xfffd;
    }
    fnvByte(0xe0 | (c >> 12));
    fnvByte(0x80 | ((c >> 6) & 0x3f));
    fnvByte(0x80 | (c & 0x3f));
  }
}

/** The hash so far. */
export function fnvResult(): Hash64 {
  return { hi: ((v3 << 16) | v2) >>> 0, lo: ((v1 << 16) | v0) >>> 0 };
}

/** FNV-1a 64 of the UTF-8 bytes of `text`. */
export function fnv1a64(text: string): Hash64 {
  fnvStart();
  fnvString(text);
  return fnvResult();
}
