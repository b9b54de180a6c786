/**
 * KeyCommand (type 5), a node → the aggregators and the other nodes on
 * `<prefix>.v1.commands.<nodeId>`: key administration on a global rule (`Limiter.reset`,
 * `penalty`, `reward`, `block`), carried from the node it was called on.
 *
 * Body: nodeId str, nodeEpoch f64, seq u32, sentAtWallMs f64, op u8 (1 reset, 2 penalty,
 * 3 reward, 4 block), rule str, key str, cost f64 (penalty and reward: > 0; else 0),
 * durationMs f64 (block: > 0; else 0).
 * Always one frame.
 */
import { InvalidArgumentError } from "../errors.js";
import type { ByteReader } from "./byte-reader.js";
import type { DecodeFailure } from "./decode-result.js";
import {
  badString,
  expectId,
  expectNonNegative,
  expectU32,
  isId,
  isNonNegative,
} from "./fields.js";
import { encodeSingle, type SingleEncodeOptions } from "./frame.js";
import { MAX_ID_BYTES, MAX_KEY_BYTES, MAX_RULE_BYTES, MessageTypeCode } from "./limits.js";
import type { KeyCommand, KeyCommandFields, KeyOp } from "./messages.js";

const OP_CODES: Readonly<Record<KeyOp, number>> = { reset: 1, penalty: 2, reward: 3, block: 4 };
const OPS: readonly (KeyOp | undefined)[] = [undefined, "reset", "penalty", "reward", "block"];

/** True when `cost` and `durationMs` fit `op` (see the body layout above). */
function fitsOp(op: KeyOp, cost: number, durationMs: number): boolean {
  const costly = op === "penalty" || op === "reward";
  const timed = op === "block";
  const ok = (v: number, wanted: boolean) => (wanted ? v > 0 && Number.isFinite(v) : v === 0);
  return ok(cost, costly) && ok(durationMs, timed);
}

/** Encodes a key command (one frame). Throws {@link InvalidArgumentError} on a bad field. */
export function encodeKeyCommand(c: KeyCommandFields, options?: SingleEncodeOptions): Uint8Array {
  expectId("nodeId", c.nodeId);
  expectNonNegative("nodeEpoch", c.nodeEpoch);
  expectU32("seq", c.seq);
  expectNonNegative("sentAtWallMs", c.sentAtWallMs);
  const code = OP_CODES[c.op];
  if (code === undefined)
    throw new InvalidArgumentError("op", "reset, penalty, reward or block", c.op);
  if (!fitsOp(c.op, c.cost, c.durationMs)) {
    throw new InvalidArgumentError(
      "cost/durationMs",
      "cost > 0 for penalty and reward, durationMs > 0 for block, 0 otherwise",
      { cost: c.cost, durationMs: c.durationMs },
    );
  }
  return encodeSingle(MessageTypeCode.keyCommand, options, (w) => {
    w.str(c.nodeId, MAX_ID_BYTES);
    w.f64(c.nodeEpoch);
    w.u32(c.seq);
    w.f64(c.sentAtWallMs);
    w.u8(code);
    if (typeof c.rule !== "string" || w.str(c.rule, MAX_RULE_BYTES) < 0) {
      badString("rule", c.rule, MAX_RULE_BYTES);
    }
    if (typeof c.key !== "string" || w.str(c.key, MAX_KEY_BYTES) < 0) {
      badString("key", c.key, MAX_KEY_BYTES);
    }
    w.f64(c.cost);
    w.f64(c.durationMs);
  });
}

/** Reads the body after the 4-byte header; the caller reads the signature trailer after it. */
export function readKeyCommand(r: ByteReader): KeyCommand | DecodeFailure {
  const nodeId = r.str(MAX_ID_BYTES);
  const nodeEpoch = r.f64();
  const seq = r.u32();
  const sentAtWallMs = r.f64();
  const op = OPS[r.u8()];
  const rule = r.str(MAX_RULE_BYTES);
  const key = r.str(MAX_KEY_BYTES);
  const cost = r.f64();
  const durationMs = r.f64();
  if (r.truncated) return "truncated";
  if (
    !isId(nodeId) ||
    !isNonNegative(nodeEpoch) ||
    !isNonNegative(sentAtWallMs) ||
    op === undefined ||
    rule === undefined ||
    rule.length === 0 ||
    key === undefined ||
    key.length === 0 ||
    !fitsOp(op, cost, durationMs)
  ) {
    return "bad-field";
  }
  return {
    type: "key-command",
    nodeId,
    nodeEpoch,
    seq,
    sentAtWallMs,
    op,
    rule,
    key,
    cost,
    durationMs,
  };
}
