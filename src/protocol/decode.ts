/**
 * The one entry point for bytes from the wire.
 *
 * In: any bytes. Out: a {@link DecodeResult}; never a throw. Checks run cheapest first (length,
 * magic, version, type), then the CRC over everything before its last four bytes, then the body.
 */
import { ByteReader } from "./byte-reader.js";
import { crc32 } from "./crc32.js";
import { readDecisionBatch } from "./decision-batch.js";
import type { DecodeResult, DroppedEntries } from "./decode-result.js";
import { readHeartbeat } from "./heartbeat.js";
import {
  CRC_BYTES,
  FORMAT_VERSION,
  HEADER_BYTES,
  MAGIC_0,
  MAGIC_1,
  MAX_MESSAGE_BYTES,
  MessageTypeCode,
  MIN_MESSAGE_BYTES,
} from "./limits.js";
import { readRateUpdate } from "./rate-update.js";
import { readRuleDefaults } from "./rule-defaults.js";

/** Decodes and validates one message. */
export function decode(bytes: Uint8Array): DecodeResult {
  const n = bytes.length;
  if (n < MIN_MESSAGE_BYTES) return { ok: false, reason: "too-short" };
  if (n > MAX_MESSAGE_BYTES) return { ok: false, reason: "too-large" };
  if (bytes[0] !== MAGIC_0 || bytes[1] !== MAGIC_1) return { ok: false, reason: "bad-magic" };
  if (bytes[2] !== FORMAT_VERSION) return { ok: false, reason: "unknown-version" };
  const type = bytes[3]!;
  if (type < MessageTypeCode.decisionBatch || type > MessageTypeCode.ruleDefaults) {
    return { ok: false, reason: "unknown-type" };
  }
  const bodyEnd = n - CRC_BYTES;
  const sent =
    (bytes[bodyEnd]! |
      (bytes[bodyEnd + 1]! << 8) |
      (bytes[bodyEnd + 2]! << 16) |
      (bytes[bodyEnd + 3]! << 24)) >>>
    0;
  if (crc32(bytes, 0, bodyEnd) !== sent) return { ok: false, reason: "bad-crc" };

  const r = new ByteReader(bytes, HEADER_BYTES, bodyEnd);
  const droppedEntries: DroppedEntries = { "bad-key": 0, "bad-rule": 0, "bad-number": 0 };
  const message =
    type === MessageTypeCode.decisionBatch
      ? readDecisionBatch(r, droppedEntries)
      : type === MessageTypeCode.rateUpdate
        ? readRateUpdate(r, droppedEntries)
        : type === MessageTypeCode.heartbeat
          ? readHeartbeat(r)
          : readRuleDefaults(r, droppedEntries);
  if (typeof message === "string") return { ok: false, reason: message };
  if (r.pos !== bodyEnd) return { ok: false, reason: "bad-field" };
  return { ok: true, message, droppedEntries };
}
