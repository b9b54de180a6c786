/**
 * A bounds-checked little-endian reader for decoders. It never throws: a read past the end
 * sets `truncated`, returns 0 (or `undefined` for strings) and leaves the reader at the end, so
 * a decoder checks the flag once per entry instead of once per field.
 */

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export class ByteReader {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  pos: number;
  readonly end: number;
  /** Set by the first read that ran past `end`. */
  truncated = false;

  constructor(bytes: Uint8Array, start: number, end: number) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = start;
    this.end = end;
  }

  #take(n: number): number {
    const at = this.pos;
    if (at + n > this.end) {
      this.truncated = true;
      this.pos = this.end;
      return -1;
    }
    this.pos = at + n;
    return at;
  }

  /** Skips `n` bytes; returns where they start, or -1 (and sets the flag) when past the end. */
  skip(n: number): number {
    return this.#take(n);
  }

  u8(): number {
    const at = this.#take(1);
    return at < 0 ? 0 : this.bytes[at]!;
  }

  u16(): number {
    const at = this.#take(2);
    return at < 0 ? 0 : this.view.getUint16(at, true);
  }

  u32(): number {
    const at = this.#take(4);
    return at < 0 ? 0 : this.view.getUint32(at, true);
  }

  f64(): number {
    const at = this.#take(8);
    return at < 0 ? 0 : this.view.getFloat64(at, true);
  }

  /**
   * Reads u16 byte length + UTF-8. Returns `undefined` when truncated (and sets the flag), or
   * when the bytes are present but empty, longer than `maxBytes` or not valid UTF-8 (the bytes
   * are skipped, so the caller can drop just this field's entry and go on).
   */
  str(maxBytes: number): string | undefined {
    const len = this.u16();
    const at = this.#take(len);
    if (at < 0 || len === 0 || len > maxBytes) return undefined;
    const b = this.bytes;
    let ascii = true;
    for (let i = at; i < at + len; i++) {
      if (b[i]! >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) {
      return String.fromCharCode.apply(null, b.subarray(at, at + len) as unknown as number[]);
    }
    try {
      return utf8.decode(b.subarray(at, at + len));
    } catch {
      return undefined;
    }
  }
}
