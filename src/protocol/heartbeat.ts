/**
 * Heartbeat (type 3), a node → the aggregator (and the nodes that follow no aggregator) on
 * `<prefix>.v1.heartbeats.<nodeId>`.
 *
 * Body: nodeId str, nodeEpoch f64, seq u32, sentAtWallMs f64, role u8 (1 node, 2 reserved for
 * aggregators, 3 node leaving).
 * Always one frame.
 */
import { InvalidArgumentError } from "../errors.js";
import type { ByteReader } from "./byte-reader.js";
import type { DecodeFailure } from "./decode-result.js";
import { expectId, expectNonNegative, expectU32, isId, isNonNegative } from "./fields.js";
import { encodeSingle, type SingleEncodeOptions } from "./frame.js";
import { MAX_ID_BYTES, MessageTypeCode } from "./limits.js";
import { type Heartbeat, type HeartbeatFields, Role } from "./messages.js";

function isRole(value: unknown): value is Role {
  return value === Role.node || value === Role.aggregator || value === Role.nodeLeaving;
}

/**
 * Encodes a heartbeat (one frame, signed when `options.signer` is given). Throws
 * {@link InvalidArgumentError} on a bad field.
 */
export function encodeHeartbeat(
  heartbeat: HeartbeatFields,
  options?: SingleEncodeOptions,
): Uint8Array {
  expectId("nodeId", heartbeat.nodeId);
  expectNonNegative("nodeEpoch", heartbeat.nodeEpoch);
  expectU32("seq", heartbeat.seq);
  expectNonNegative("sentAtWallMs", heartbeat.sentAtWallMs);
  if (!isRole(heartbeat.role)) {
    throw new InvalidArgumentError(
      "role",
      "1 (node), 2 (aggregator) or 3 (node leaving)",
      heartbeat.role,
    );
  }
  return encodeSingle(MessageTypeCode.heartbeat, options, (w) => {
    w.str(heartbeat.nodeId, MAX_ID_BYTES);
    w.f64(heartbeat.nodeEpoch);
    w.u32(heartbeat.seq);
    w.f64(heartbeat.sentAtWallMs);
    w.u8(heartbeat.role);
  });
}

/** Reads the body after the 4-byte header; the caller reads the signature trailer after it. */
export function readHeartbeat(r: ByteReader): Heartbeat | DecodeFailure {
  const nodeId = r.str(MAX_ID_BYTES);
  const nodeEpoch = r.f64();
  const seq = r.u32();
  const sentAtWallMs = r.f64();
  const role = r.u8();
  if (r.truncated) return "truncated";
  if (!isId(nodeId) || !isNonNegative(nodeEpoch) || !isNonNegative(sentAtWallMs) || !isRole(role)) {
    return "bad-field";
  }
  return { type: "heartbeat", nodeId, nodeEpoch, seq, sentAtWallMs, role };
}
