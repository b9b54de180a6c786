/**
 * The one entry point for bytes from the wire.
 *
 * In: any bytes, and optionally a verifier. Out: a {@link DecodeResult}; never a throw. Checks
 * run cheapest first (length, magic, version, type), then the CRC over everything before its
 * last four bytes, then the body, then the signature trailer after it (`sigLen` 0 or 64, then
 * the signature, ending where the CRC starts), then, with a verifier, the signature.
 *
 * The trailer's place is known only once the body has been read, so a frame whose body does
 * not parse is dropped for that reason before any signature check. With a verifier, a frame
 * that is unsigned or whose signature does not verify is dropped whatever its body says; its
 * entries are neither kept nor counted in `droppedEntries`.
 */
import { ByteReader } from "./byte-reader.js";
import { crc32 } from "./crc32.js";
import {
  type DecisionBatchTarget,
  newDecisionBatchTarget,
  readDecisionBatch,
  readDecisionBatchInto,
} from "./decision-batch.js";
import type { DecodeResult, DroppedEntries, SignatureStatus } from "./decode-result.js";
import { readHeartbeat } from "./heartbeat.js";
import { readKeyCommand } from "./key-command.js";
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
import { SIGNATURE_BYTES, type Verifier } from "./signing.js";

/** Options of {@link decode}. */
export interface DecodeOptions {
  /**
   * Checks signatures (`createVerifier` in signing.ts): an unsigned frame then fails as
   * `unsigned`, one whose signature does not verify as `bad-signature`. Without it, signatures
   * are not checked (`signature: "unchecked"`).
   */
  readonly verify?: Verifier;
}

/** Decodes and validates one message. */
export function decode(bytes: Uint8Array, options?: DecodeOptions): DecodeResult {
  return decodeWith(bytes, options, undefined);
}

/**
 * {@link decode} for a receiver of many decision batches: a decision batch it returns is the
 * reader's own, reused (its groups, entries and entry objects overwritten) at the next `read`,
 * so it must be consumed before then (or copied: `copyDecisionBatch`). Its entries are
 * `FrameEntry` objects, whose keys stay bytes of the frame until read as strings, so the frame
 * must not change either until then. Accepts and rejects exactly what `decode` does.
 */
export class DecisionBatchReader {
  readonly #target = newDecisionBatchTarget(true);

  read(bytes: Uint8Array, options?: DecodeOptions): DecodeResult {
    return decodeWith(bytes, options, this.#target);
  }
}

function decodeWith(
  bytes: Uint8Array,
  options: DecodeOptions | undefined,
  target: DecisionBatchTarget | undefined,
): DecodeResult {
  const n = bytes.length;
  if (n < MIN_MESSAGE_BYTES) return { ok: false, reason: "too-short" };
  if (n > MAX_MESSAGE_BYTES) return { ok: false, reason: "too-large" };
  if (bytes[0] !== MAGIC_0 || bytes[1] !== MAGIC_1) return { ok: false, reason: "bad-magic" };
  if (bytes[2] !== FORMAT_VERSION) return { ok: false, reason: "unknown-version" };
  const type = bytes[3]!;
  if (type < MessageTypeCode.decisionBatch || type > MessageTypeCode.keyCommand) {
    return { ok: false, reason: "unknown-type" };
  }
  const crcAt = n - CRC_BYTES;
  const sent =
    (bytes[crcAt]! |
      (bytes[crcAt + 1]! << 8) |
      (bytes[crcAt + 2]! << 16) |
      (bytes[crcAt + 3]! << 24)) >>>
    0;
  if (crc32(bytes, 0, crcAt) !== sent) return { ok: false, reason: "bad-crc" };

  const r = new ByteReader(bytes, HEADER_BYTES, crcAt);
  const droppedEntries: DroppedEntries = { "bad-key": 0, "bad-rule": 0, "bad-number": 0 };
  const message =
    type === MessageTypeCode.decisionBatch
      ? target === undefined
        ? readDecisionBatch(r, droppedEntries)
        : readDecisionBatchInto(r, droppedEntries, target)
      : type === MessageTypeCode.rateUpdate
        ? readRateUpdate(r, droppedEntries)
        : type === MessageTypeCode.heartbeat
          ? readHeartbeat(r)
          : type === MessageTypeCode.ruleDefaults
            ? readRuleDefaults(r, droppedEntries)
            : readKeyCommand(r);
  if (typeof message === "string") return { ok: false, reason: message };

  const signedEnd = r.pos;
  const sigLen = r.u8();
  const sigAt = r.skip(sigLen);
  if (r.truncated) return { ok: false, reason: "truncated" };
  if ((sigLen !== 0 && sigLen !== SIGNATURE_BYTES) || r.pos !== crcAt) {
    return { ok: false, reason: "bad-field" };
  }
  let signature: SignatureStatus;
  const verifier = options?.verify;
  if (verifier === undefined) signature = sigLen === 0 ? "none" : "unchecked";
  else if (sigLen === 0) return { ok: false, reason: "unsigned" };
  else if (!verifier.verify(bytes.subarray(0, signedEnd), bytes.subarray(sigAt, sigAt + sigLen))) {
    return { ok: false, reason: "bad-signature" };
  } else signature = "verified";
  return { ok: true, message, droppedEntries, signature };
}
