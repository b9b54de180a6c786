/**
 * RateUpdate (type 2), aggregator → one node on `<prefix>.v1.updates.<nodeId>`.
 *
 * Body: aggregatorId str, aggregatorEpoch f64, seq u32, targetNodeId str, targetNodeEpoch f64,
 * sentAtWallMs f64, owners (owners.ts), groupCount u16, then per group: rule str, entryCount u32, then per entry:
 * key str, generation u32, version u32, allowance f64, rampFrom f64, rampMs f64,
 * retryAfterMs f64.
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
import type { GrantEntry, RateUpdate, RateUpdateFields, RuleGroup } from "./messages.js";
import { expectOwners, readOwners, writeOwners } from "./owners.js";

/**
 * Encodes a rate update as one frame, or several when it exceeds `maxMessageBytes`.
 * Throws {@link InvalidArgumentError} naming the field when a value cannot be sent.
 */
export function encodeRateUpdate(update: RateUpdateFields, options?: EncodeOptions): Uint8Array[] {
  expectId("aggregatorId", update.aggregatorId);
  expectNonNegative("aggregatorEpoch", update.aggregatorEpoch);
  expectU32("seq", update.seq);
  expectId("targetNodeId", update.targetNodeId);
  expectNonNegative("targetNodeEpoch", update.targetNodeEpoch);
  expectNonNegative("sentAtWallMs", update.sentAtWallMs);
  const owners = update.owners ?? [];
  expectOwners("owners", owners);
  return encodeGroups(
    MessageTypeCode.rateUpdate,
    options,
    (w) => {
      w.str(update.aggregatorId, MAX_ID_BYTES);
      w.f64(update.aggregatorEpoch);
      w.u32(update.seq);
      w.str(update.targetNodeId, MAX_ID_BYTES);
      w.f64(update.targetNodeEpoch);
      w.f64(update.sentAtWallMs);
      writeOwners(w, owners);
    },
    update.groups,
    writeEntry,
  );
}

function writeEntry(w: ByteWriter, e: GrantEntry, g: number, i: number): void {
  if (
    !isU32(e.generation) ||
    !isU32(e.version) ||
    !isNonNegative(e.allowance) ||
    !isNonNegative(e.rampFrom) ||
    !isNonNegative(e.rampMs) ||
    !isNonNegative(e.retryAfterMs)
  ) {
    const at = `groups[${g}].entries[${i}]`;
    for (const f of ["generation", "version"] as const) {
      if (!isU32(e[f])) throw new InvalidArgumentError(`${at}.${f}`, EXPECTED_U32, e[f]);
    }
    for (const f of ["allowance", "rampFrom", "rampMs", "retryAfterMs"] as const) {
      if (!isNonNegative(e[f])) {
        throw new InvalidArgumentError(`${at}.${f}`, EXPECTED_NON_NEGATIVE, e[f]);
      }
    }
  }
  if (w.str(e.key, MAX_KEY_BYTES) < 0) {
    badString(`groups[${g}].entries[${i}].key`, e.key, MAX_KEY_BYTES);
  }
  w.u32(e.generation);
  w.u32(e.version);
  w.f64(e.allowance);
  w.f64(e.rampFrom);
  w.f64(e.rampMs);
  w.f64(e.retryAfterMs);
}

/** Reads the body after the 4-byte header; the caller reads the signature trailer after it. */
export function readRateUpdate(r: ByteReader, dropped: DroppedEntries): RateUpdate | DecodeFailure {
  const aggregatorId = r.str(MAX_ID_BYTES);
  const aggregatorEpoch = r.f64();
  const seq = r.u32();
  const targetNodeId = r.str(MAX_ID_BYTES);
  const targetNodeEpoch = r.f64();
  const sentAtWallMs = r.f64();
  const owners = readOwners(r);
  const groupCount = r.u16();
  if (r.truncated) return "truncated";
  if (typeof owners === "string") return owners;
  if (
    !isId(aggregatorId) ||
    !isNonNegative(aggregatorEpoch) ||
    !isId(targetNodeId) ||
    !isNonNegative(targetNodeEpoch) ||
    !isNonNegative(sentAtWallMs)
  ) {
    return "bad-field";
  }
  const groups: RuleGroup<GrantEntry>[] = [];
  for (let g = 0; g < groupCount; g++) {
    const rule = r.str(MAX_RULE_BYTES);
    const entryCount = r.u32();
    if (r.truncated) return "truncated";
    const entries: GrantEntry[] = [];
    for (let i = 0; i < entryCount; i++) {
      const key = r.str(MAX_KEY_BYTES);
      const generation = r.u32();
      const version = r.u32();
      const allowance = r.f64();
      const rampFrom = r.f64();
      const rampMs = r.f64();
      const retryAfterMs = r.f64();
      if (r.truncated) return "truncated";
      if (rule === undefined) dropped["bad-rule"]++;
      else if (key === undefined) dropped["bad-key"]++;
      else if (
        !isNonNegative(allowance) ||
        !isNonNegative(rampFrom) ||
        !isNonNegative(rampMs) ||
        !isNonNegative(retryAfterMs)
      ) {
        dropped["bad-number"]++;
      } else entries.push({ key, generation, version, allowance, rampFrom, rampMs, retryAfterMs });
    }
    if (rule !== undefined) groups.push({ rule, entries });
  }
  return {
    type: "rate-update",
    aggregatorId,
    aggregatorEpoch,
    seq,
    targetNodeId,
    targetNodeEpoch,
    sentAtWallMs,
    owners,
    groups,
  };
}
