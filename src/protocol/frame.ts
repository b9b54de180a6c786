/**
 * Framing and splitting shared by the encoders.
 *
 * In: a message type, a header writer and the message's items. Out: one or more complete
 * frames (`"SL"`, version, type, header, body, signature trailer, CRC-32), each at most
 * `maxMessageBytes` long. When the items do not fit in one frame, the header is repeated in each
 * part and items are spread over the parts in order; a rule group cut in two appears in both
 * parts. With a signer, every part carries its own signature, over its bytes before the trailer.
 */

import { InvalidArgumentError } from "../errors.js";
import { expectNumber } from "../validate.js";
import { ByteWriter } from "./byte-writer.js";
import { crc32 } from "./crc32.js";
import { badString } from "./fields.js";
import {
  CRC_BYTES,
  FORMAT_VERSION,
  MAGIC_0,
  MAGIC_1,
  MAX_GROUPS_PER_MESSAGE,
  MAX_MESSAGE_BYTES,
  MAX_RULE_BYTES,
  MIN_MESSAGE_BYTES_LIMIT,
  SIG_LEN_BYTES,
} from "./limits.js";
import type { RuleGroup } from "./messages.js";
import { SIGNATURE_BYTES, type Signer } from "./signing.js";

/** Options every encoder takes. */
export interface EncodeOptions {
  /**
   * Largest frame to produce, in bytes; larger messages are split. Lower it only to match a
   * NATS server whose `max_payload` is below 1 MiB.
   * @default 1_048_576 (1 MiB); bounds 4096 to 1_048_576
   */
  readonly maxMessageBytes?: number;
  /**
   * Signs every frame (Ed25519, see signing.ts): the trailer then carries `sigLen` 64 and the
   * signature. Without it the trailer is `sigLen` 0.
   */
  readonly signer?: Signer;
}

/** Options of encoders whose message is always one frame (Heartbeat). */
export type SingleEncodeOptions = Pick<EncodeOptions, "signer">;

/** Bytes after the body: the signature trailer and the CRC. */
function trailerBytes(signer: Signer | undefined): number {
  return SIG_LEN_BYTES + (signer === undefined ? 0 : SIGNATURE_BYTES) + CRC_BYTES;
}

/** Reused by every encode call; calls are synchronous, so they never interleave. */
const w = new ByteWriter();

function maxBytesOf(options: EncodeOptions | undefined): number {
  const v = options?.maxMessageBytes;
  if (v === undefined) return MAX_MESSAGE_BYTES;
  return expectNumber("maxMessageBytes", v, {
    integer: true,
    min: MIN_MESSAGE_BYTES_LIMIT,
    max: MAX_MESSAGE_BYTES,
  });
}

function begin(type: number, writeHeader: (w: ByteWriter) => void): void {
  w.pos = 0;
  w.u8(MAGIC_0);
  w.u8(MAGIC_1);
  w.u8(FORMAT_VERSION);
  w.u8(type);
  writeHeader(w);
}

function finish(out: Uint8Array[], signer: Signer | undefined): void {
  if (signer === undefined) w.u8(0);
  else {
    const signature = signer.sign(w.bytes.subarray(0, w.pos));
    if (signature.length !== SIGNATURE_BYTES) {
      throw new InvalidArgumentError(
        "signer",
        `a signer whose sign() returns ${SIGNATURE_BYTES} bytes (Ed25519)`,
        signature.length,
      );
    }
    w.u8(SIGNATURE_BYTES);
    w.ensure(SIGNATURE_BYTES);
    w.bytes.set(signature, w.pos);
    w.pos += SIGNATURE_BYTES;
  }
  const crc = crc32(w.bytes, 0, w.pos);
  w.u32(crc);
  out.push(w.bytes.slice(0, w.pos));
}

/** Encodes a message that is a header alone (always one frame). */
export function encodeSingle(
  type: number,
  options: SingleEncodeOptions | undefined,
  writeHeader: (w: ByteWriter) => void,
): Uint8Array {
  const out: Uint8Array[] = [];
  begin(type, writeHeader);
  finish(out, options?.signer);
  return out[0]!;
}

/** Writes a u16 count of items, the items, and splits when a frame is full. */
export function encodeList<T>(
  type: number,
  options: EncodeOptions | undefined,
  writeHeader: (w: ByteWriter) => void,
  items: readonly T[],
  writeItem: (w: ByteWriter, item: T, index: number) => void,
): Uint8Array[] {
  const signer = options?.signer;
  const limit = maxBytesOf(options) - trailerBytes(signer);
  const out: Uint8Array[] = [];
  begin(type, writeHeader);
  let countAt = w.pos;
  let count = 0;
  w.u16(0);
  for (let i = 0; i < items.length; i++) {
    const mark = w.pos;
    writeItem(w, items[i]!, i);
    if (w.pos > limit || count === MAX_GROUPS_PER_MESSAGE) {
      w.pos = mark;
      w.view.setUint16(countAt, count, true);
      finish(out, signer);
      begin(type, writeHeader);
      countAt = w.pos;
      count = 0;
      w.u16(0);
      writeItem(w, items[i]!, i);
    }
    count++;
  }
  w.view.setUint16(countAt, count, true);
  finish(out, signer);
  return out;
}

/**
 * Writes a u16 count of rule groups, each a rule name, a u32 count of entries and the entries,
 * and splits when a frame is full.
 */
export function encodeGroups<E>(
  type: number,
  options: EncodeOptions | undefined,
  writeHeader: (w: ByteWriter) => void,
  groups: readonly RuleGroup<E>[],
  writeEntry: (w: ByteWriter, entry: E, group: number, index: number) => void,
): Uint8Array[] {
  const signer = options?.signer;
  const limit = maxBytesOf(options) - trailerBytes(signer);
  const out: Uint8Array[] = [];
  let groupCountAt = 0;
  let groupCount = 0;
  let entryCountAt = 0;
  let entryCount = 0;

  const open = () => {
    begin(type, writeHeader);
    groupCountAt = w.pos;
    groupCount = 0;
    w.u16(0);
  };
  const openGroup = (rule: string, g: number) => {
    if (w.str(rule, MAX_RULE_BYTES) < 0) badString(`groups[${g}].rule`, rule, MAX_RULE_BYTES);
    entryCountAt = w.pos;
    entryCount = 0;
    w.u32(0);
    groupCount++;
  };
  const close = () => {
    w.view.setUint32(entryCountAt, entryCount, true);
    w.view.setUint16(groupCountAt, groupCount, true);
    finish(out, signer);
  };

  open();
  for (let g = 0; g < groups.length; g++) {
    const { rule, entries } = groups[g]!;
    let mark = w.pos;
    openGroup(rule, g);
    if (w.pos > limit || groupCount > MAX_GROUPS_PER_MESSAGE) {
      w.pos = mark;
      groupCount--;
      w.view.setUint16(groupCountAt, groupCount, true);
      finish(out, signer);
      open();
      openGroup(rule, g);
    }
    for (let i = 0; i < entries.length; i++) {
      mark = w.pos;
      writeEntry(w, entries[i]!, g, i);
      if (w.pos > limit) {
        w.pos = mark;
        close();
        open();
        openGroup(rule, g);
        writeEntry(w, entries[i]!, g, i);
      }
      entryCount++;
    }
    w.view.setUint32(entryCountAt, entryCount, true);
  }
  w.view.setUint16(groupCountAt, groupCount, true);
  finish(out, signer);
  return out;
}
