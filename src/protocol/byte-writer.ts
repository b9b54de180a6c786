/**
 * A growable little-endian byte buffer for encoders. One instance is reused across encode
 * calls (encoding is synchronous, so calls never interleave); finished messages are copied out.
 */

const utf8 = new TextEncoder();

export class ByteWriter {
  bytes: Uint8Array;
  view: DataView;
  /** Next write offset. */
  pos = 0;

  constructor(capacity = 64 * 1024) {
    this.bytes = new Uint8Array(capacity);
    this.view = new DataView(this.bytes.buffer);
  }

  /** Makes room for `n` more bytes. */
  ensure(n: number): void {
    const need = this.pos + n;
    if (need <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.bytes.subarray(0, this.pos));
    this.bytes = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number): void {
    this.ensure(1);
    this.bytes[this.pos++] = v;
  }

  u16(v: number): void {
    this.ensure(2);
    this.view.setUint16(this.pos, v, true);
    this.pos += 2;
  }

  u32(v: number): void {
    this.ensure(4);
    this.view.setUint32(this.pos, v, true);
    this.pos += 4;
  }

  f64(v: number): void {
    this.ensure(8);
    this.view.setFloat64(this.pos, v, true);
    this.pos += 8;
  }

  /**
   * Writes `text` as u16 byte length + UTF-8 and returns the byte length, or returns -1 and
   * writes nothing when the text is empty, longer than `maxBytes` in UTF-8, or holds a lone
   * surrogate (which has no UTF-8 form).
   */
  str(text: string, maxBytes: number): number {
    const n = text.length;
    if (n === 0 || n > maxBytes) return -1;
    this.ensure(2 + 3 * n);
    const b = this.bytes;
    const at = this.pos + 2;
    let i = 0;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c >= 0x80) break;
      b[at + i] = c;
      i++;
    }
    let len = n;
    if (i < n) {
      if (!isWellFormed(text, i)) return -1;
      len = utf8.encodeInto(text, b.subarray(at)).written;
      if (len > maxBytes) return -1;
    }
    this.view.setUint16(this.pos, len, true);
    this.pos = at + len;
    return len;
  }
}

/** True when `text` from `from` on has no lone surrogate (ES2024 `isWellFormed`, which lib ES2023 lacks). */
function isWellFormed(text: string, from: number): boolean {
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c > 0xdbff) return false;
    const d = text.charCodeAt(i + 1);
    if (!(d >= 0xdc00 && d <= 0xdfff)) return false;
    i++;
  }
  return true;
}
