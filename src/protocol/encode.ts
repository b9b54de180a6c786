/**
 * Encodes any {@link Message} by its `type`. The typed encoders (`encodeDecisionBatch`, ...)
 * do the same for one type without the tag.
 */
import { encodeDecisionBatch } from "./decision-batch.js";
import type { EncodeOptions } from "./frame.js";
import { encodeHeartbeat } from "./heartbeat.js";
import type { Message } from "./messages.js";
import { encodeRateUpdate } from "./rate-update.js";
import { encodeRuleDefaults } from "./rule-defaults.js";

/** One frame, or several when the message exceeds `maxMessageBytes`. */
export function encode(message: Message, options?: EncodeOptions): Uint8Array[] {
  switch (message.type) {
    case "decision-batch":
      return encodeDecisionBatch(message, options);
    case "rate-update":
      return encodeRateUpdate(message, options);
    case "heartbeat":
      return [encodeHeartbeat(message)];
    case "rule-defaults":
      return encodeRuleDefaults(message, options);
  }
}
