/**
 * DecisionBatch (type 1), node → aggregator on `<prefix>.v1.decisions.<partition>.<nodeId>`.
 *
 * Body: nodeId str, nodeEpoch f64, seq u32, sentAtWallMs f64, ownerEpoch f64, groupCount u16, then per group:
 * rule str, entryCount u32, then per entry: key str, generation u32, admitted f64, rejected f64,
 * flags u8 (bit 0: isNew; other bits must be 0), grantEpoch f64, grantVersion u32, allowance f64,
 * admittedSinceLast f64, ageMs f64.
 * (str = u16 byte length + UTF-8; all little-endian.)
 */

import { InvalidArgumentError } from "../errors.js";
import type { ByteReader } from "./byte-reader.js";
import type { ByteWriter } from "./byte-writer.js";
import type { DecodeFailure, DroppedEntries } from "./decode-result.js";
import {
  badString,
  EXPECTED_NON_NEGATIVE,
  EXPECTED_U32,
  expectId,
  expectNonNegative,
  expectU32,
  isId,
  isNonNegative,
  isU32,
} from "./fields.js";
import { type EncodeOptions, encodeGroups } from "./frame.js";
import { MAX_ID_BYTES, MAX_KEY_BYTES, MAX_RULE_BYTES, MessageTypeCode } from "./limits.js";
import type { DecisionBatch, DecisionBatchFields, DecisionEntry, RuleGroup } from "./messages.js";

/**
 * Encodes a decision batch as one frame, or several when it exceeds `maxMessageBytes`.
 * Throws {@link InvalidArgumentError} naming the field when a value cannot be sent.
 */
export function encodeDecisionBatch(
  batch: DecisionBatchFields,
  options?: EncodeOptions,
): Uint8Array[] {
  expectId("nodeId", batch.nodeId);
  expectNonNegative("nodeEpoch", batch.nodeEpoch);
  expectU32("seq", batch.seq);
  expectNonNegative("sentAtWallMs", batch.sentAtWallMs);
  const ownerEpoch = batch.ownerEpoch ?? 0;
  expectNonNegative("ownerEpoch", ownerEpoch);
  return encodeGroups(
    MessageTypeCode.decisionBatch,
    options,
    (w) => {
      w.str(batch.nodeId, MAX_ID_BYTES);
      w.f64(batch.nodeEpoch);
      w.u32(batch.seq);
      w.f64(batch.sentAtWallMs);
      w.f64(ownerEpoch);
    },
    batch.groups,
    writeEntry,
  );
}

function writeEntry(w: ByteWriter, e: DecisionEntry, g: number, i: number): void {
  // One branch on the hot path; the field-by-field search (and its strings) only on failure.
  if (
    !isU32(e.generation) ||
    !isU32(e.grantVersion) ||
    !isNonNegative(e.admitted) ||
    !isNonNegative(e.rejected) ||
    !isNonNegative(e.grantEpoch) ||
    !isNonNegative(e.allowance) ||
    !isNonNegative(e.admittedSinceLast) ||
    !isNonNegative(e.ageMs)
  ) {
    throwBadEntry(e, `groups[${g}].entries[${i}]`);
  }
  if (w.str(e.key, MAX_KEY_BYTES) < 0) {
    badString(`groups[${g}].entries[${i}].key`, e.key, MAX_KEY_BYTES);
  }
  w.ensure(4 + 8 + 8 + 1 + 8 + 4 + 8 + 8 + 8);
  const v = w.view;
  let p = w.pos;
  v.setUint32(p, e.generation, true);
  v.setFloat64(p + 4, e.admitted, true);
  v.setFloat64(p + 12, e.rejected, true);
  v.setUint8(p + 20, e.isNew ? 1 : 0);
  v.setFloat64(p + 21, e.grantEpoch, true);
  v.setUint32(p + 29, e.grantVersion, true);
  v.setFloat64(p + 33, e.allowance, true);
  v.setFloat64(p + 41, e.admittedSinceLast, true);
  v.setFloat64(p + 49, e.ageMs, true);
  p += 57;
  w.pos = p;
}

function throwBadEntry(e: DecisionEntry, at: string): never {
  for (const f of ["generation", "grantVersion"] as const) {
    if (!isU32(e[f])) throw new InvalidArgumentError(`${at}.${f}`, EXPECTED_U32, e[f]);
  }
  for (const f of [
    "admitted",
    "rejected",
    "grantEpoch",
    "allowance",
    "admittedSinceLast",
    "ageMs",
  ] as const) {
    if (!isNonNegative(e[f])) {
      throw new InvalidArgumentError(`${at}.${f}`, EXPECTED_NON_NEGATIVE, e[f]);
    }
  }
  throw new Error("unreachable: entry reported bad but every field is valid");
}

/** Reads the body after the 4-byte header; the caller reads the signature trailer after it. */
export function readDecisionBatch(
  r: ByteReader,
  dropped: DroppedEntries,
): DecisionBatch | DecodeFailure {
  const nodeId = r.str(MAX_ID_BYTES);
  const nodeEpoch = r.f64();
  const seq = r.u32();
  const sentAtWallMs = r.f64();
  const ownerEpoch = r.f64();
  const groupCount = r.u16();
  if (r.truncated) return "truncated";
  if (
    !isId(nodeId) ||
    !isNonNegative(nodeEpoch) ||
    !isNonNegative(sentAtWallMs) ||
    !isNonNegative(ownerEpoch)
  ) {
    return "bad-field";
  }
  const groups: RuleGroup<DecisionEntry>[] = [];
  for (let g = 0; g < groupCount; g++) {
    const rule = r.str(MAX_RULE_BYTES);
    const entryCount = r.u32();
    if (r.truncated) return "truncated";
    const entries: DecisionEntry[] = [];
    for (let i = 0; i < entryCount; i++) {
      const key = r.str(MAX_KEY_BYTES);
      const generation = r.u32();
      const admitted = r.f64();
      const rejected = r.f64();
      const flags = r.u8();
      const grantEpoch = r.f64();
      const grantVersion = r.u32();
      const allowance = r.f64();
      const admittedSinceLast = r.f64();
      const ageMs = r.f64();
      if (r.truncated) return "truncated";
      if (rule === undefined) dropped["bad-rule"]++;
      else if (key === undefined) dropped["bad-key"]++;
      else if (
        !isNonNegative(admitted) ||
        !isNonNegative(rejected) ||
        !isNonNegative(grantEpoch) ||
        !isNonNegative(allowance) ||
        !isNonNegative(admittedSinceLast) ||
        !isNonNegative(ageMs) ||
        flags > 1
      ) {
        dropped["bad-number"]++;
      } else {
        const isNew = flags === 1;
        entries.push({
          key,
          generation,
          admitted,
          rejected,
          isNew,
          grantEpoch,
          grantVersion,
          allowance,
          admittedSinceLast,
          ageMs,
        });
      }
    }
    if (rule !== undefined) groups.push({ rule, entries });
  }
  return { type: "decision-batch", nodeId, nodeEpoch, seq, sentAtWallMs, ownerEpoch, groups };
}
