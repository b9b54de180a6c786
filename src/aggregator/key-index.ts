/**
 * A rule's keys by their UTF-8 bytes: finds an entry's key state from the key's bytes in the
 * frame, without making the key's string (it is made only for a key seen for the first time).
 *
 * An open-addressing table (linear probing, backward-shift deletion, at most half full) of key
 * states; a probe compares each one's `keyHash` before its key. The hash is over the key's UTF-8 bytes, so a key read
 * from a frame and the same key given as a string (a checkpoint, `decode`) meet in one slot.
 * The index holds exactly the key states of its rule's `keys` map; the map keeps their order.
 */

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

/** What the index needs of a key state: its key and that key's {@link keyHash}. */
export interface IndexedKey {
  readonly key: string;
  readonly keyHash: number;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

function finish(h: number): number {
  // FNV-1a's low bits alone place similar keys close; mixing spreads them over the table.
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  return h | 0;
}

/** The hash of the UTF-8 bytes `b[at, at + length)` (32-bit FNV-1a, mixed). */
export function hashBytes(b: Uint8Array, at: number, length: number): number {
  let h = FNV_OFFSET;
  for (let i = at; i < at + length; i++) h = Math.imul(h ^ b[i]!, FNV_PRIME);
  return finish(h);
}

/** The hash of `key`'s UTF-8 bytes: {@link hashBytes} of its encoding. */
export function keyHash(key: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c >= 0x80) {
      const b = encoder.encode(key);
      return hashBytes(b, 0, b.length);
    }
    h = Math.imul(h ^ c, FNV_PRIME);
  }
  return finish(h);
}

/** True when `key` is the string of the UTF-8 bytes `b[at, at + length)`. */
function sameKey(key: string, b: Uint8Array, at: number, length: number): boolean {
  if (key.length === length) {
    let i = 0;
    while (i < length) {
      const c = key.charCodeAt(i);
      if (c !== b[at + i] || c >= 0x80) break;
      i++;
    }
    if (i === length) return true;
  }
  // Not all ASCII, or a hash collision: compare as strings (rare).
  try {
    return utf8.decode(b.subarray(at, at + length)) === key;
  } catch {
    return false;
  }
}

export class KeyIndex<K extends IndexedKey> {
  #slots: (K | undefined)[] = new Array(16).fill(undefined);
  #mask = 15;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** The key state whose key has the UTF-8 bytes `b[at, at + length)`, hashing to `h`. */
  findBytes(b: Uint8Array, at: number, length: number, h: number): K | undefined {
    const slots = this.#slots;
    const mask = this.#mask;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const k = slots[i];
      if (k === undefined) return undefined;
      if (k.keyHash === h && sameKey(k.key, b, at, length)) return k;
    }
  }

  /** The key state of `key`. */
  find(key: string): K | undefined {
    const h = keyHash(key);
    const mask = this.#mask;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const k = this.#slots[i];
      if (k === undefined) return undefined;
      if (k.keyHash === h && k.key === key) return k;
    }
  }

  /** Adds `k`, whose key must not be in the index yet. */
  add(k: K): void {
    if (2 * (this.#size + 1) > this.#slots.length) this.#grow();
    this.#place(k);
    this.#size++;
  }

  /** Removes `k` (the very object added); does nothing when it is not in the index. */
  remove(k: K): void {
    const slots = this.#slots;
    const mask = this.#mask;
    let i = k.keyHash & mask;
    while (slots[i] !== k) {
      if (slots[i] === undefined) return;
      i = (i + 1) & mask;
    }
    // Backward-shift deletion: pull each later entry of the run into the hole when its home
    // slot does not lie (cyclically) after the hole, so every probe still finds it.
    let hole = i;
    for (let j = (i + 1) & mask; slots[j] !== undefined; j = (j + 1) & mask) {
      const home = slots[j]!.keyHash & mask;
      const fromHome = (j - home) & mask;
      const fromHole = (j - hole) & mask;
      if (fromHome >= fromHole) {
        slots[hole] = slots[j];
        hole = j;
      }
    }
    slots[hole] = undefined;
    this.#size--;
  }

  #place(k: K): void {
    const mask = this.#mask;
    let i = k.keyHash & mask;
    while (this.#slots[i] !== undefined) i = (i + 1) & mask;
    this.#slots[i] = k;
  }

  #grow(): void {
    const old = this.#slots;
    const n = old.length * 2;
    this.#slots = new Array(n).fill(undefined);
    this.#mask = n - 1;
    for (const k of old) if (k !== undefined) this.#place(k);
  }
}
