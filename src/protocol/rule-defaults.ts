/**
 * RuleDefaults (type 4), aggregator → every node on `<prefix>.v1.defaults`.
 *
 * Body: aggregatorId str, aggregatorEpoch f64, seq u32, sentAtWallMs f64, liveNodes u16,
 * partitions u16, owners (owners.ts), ruleCount u16, then per rule: rule str, defaultShare f64.
 */

import { expectNumber } from "../validate.js";
import type { ByteReader } from "./byte-reader.js";
import type { DecodeFailure, DroppedEntries } from "./decode-result.js";
import {
  badString,
  expectId,
  expectNonNegative,
  expectU32,
  isId,
  isNonNegative,
} from "./fields.js";
import { type EncodeOptions, encodeList } from "./frame.js";
import { MAX_ID_BYTES, MAX_RULE_BYTES, MAX_U16, MessageTypeCode } from "./limits.js";
import {
  MAX_OWNERS,
  type RuleDefault,
  type RuleDefaults,
  type RuleDefaultsFields,
} from "./messages.js";
import { expectOwners, readOwners, writeOwners } from "./owners.js";

/**
 * Encodes rule defaults as one frame, or several when there are more than 65 535 rules or they
 * exceed `maxMessageBytes`. Throws {@link InvalidArgumentError} naming a bad field.
 */
export function encodeRuleDefaults(
  defaults: RuleDefaultsFields,
  options?: EncodeOptions,
): Uint8Array[] {
  expectId("aggregatorId", defaults.aggregatorId);
  expectNonNegative("aggregatorEpoch", defaults.aggregatorEpoch);
  expectU32("seq", defaults.seq);
  expectNonNegative("sentAtWallMs", defaults.sentAtWallMs);
  expectNumber("liveNodes", defaults.liveNodes, { integer: true, min: 0, max: MAX_U16 });
  const partitions = defaults.partitions ?? 0;
  expectNumber("partitions", partitions, { integer: true, min: 0, max: MAX_OWNERS });
  const owners = defaults.owners ?? [];
  expectOwners("owners", owners);
  return encodeList(
    MessageTypeCode.ruleDefaults,
    options,
    (w) => {
      w.str(defaults.aggregatorId, MAX_ID_BYTES);
      w.f64(defaults.aggregatorEpoch);
      w.u32(defaults.seq);
      w.f64(defaults.sentAtWallMs);
      w.u16(defaults.liveNodes);
      w.u16(partitions);
      writeOwners(w, owners);
    },
    defaults.rules,
    (w, item, i) => {
      expectNonNegative(`rules[${i}].defaultShare`, item.defaultShare);
      if (w.str(item.rule, MAX_RULE_BYTES) < 0)
        badString(`rules[${i}].rule`, item.rule, MAX_RULE_BYTES);
      w.f64(item.defaultShare);
    },
  );
}

/** Reads the body after the 4-byte header; the caller reads the signature trailer after it. */
export function readRuleDefaults(
  r: ByteReader,
  dropped: DroppedEntries,
): RuleDefaults | DecodeFailure {
  const aggregatorId = r.str(MAX_ID_BYTES);
  const aggregatorEpoch = r.f64();
  const seq = r.u32();
  const sentAtWallMs = r.f64();
  const liveNodes = r.u16();
  const partitions = r.u16();
  const owners = readOwners(r);
  const count = r.u16();
  if (r.truncated) return "truncated";
  if (typeof owners === "string") return owners;
  if (partitions > MAX_OWNERS || owners.some((o) => o.partition >= partitions)) return "bad-field";
  if (!isId(aggregatorId) || !isNonNegative(aggregatorEpoch) || !isNonNegative(sentAtWallMs)) {
    return "bad-field";
  }
  const rules: RuleDefault[] = [];
  for (let i = 0; i < count; i++) {
    const rule = r.str(MAX_RULE_BYTES);
    const defaultShare = r.f64();
    if (r.truncated) return "truncated";
    if (rule === undefined) dropped["bad-rule"]++;
    else if (!isNonNegative(defaultShare)) dropped["bad-number"]++;
    else rules.push({ rule, defaultShare });
  }
  return {
    type: "rule-defaults",
    aggregatorId,
    aggregatorEpoch,
    seq,
    sentAtWallMs,
    liveNodes,
    partitions,
    owners,
    rules,
  };
}
