/**
 * Encodes any message by its `type`. The typed encoders (`encodeDecisionBatch`, ...)
 * do the same for one type without the tag.
 */
import { encodeDecisionBatch } from "./decision-batch.js";
import type { EncodeOptions } from "./frame.js";
import { encodeHeartbeat } from "./heartbeat.js";
import { encodeKeyCommand } from "./key-command.js";
import type {
  DecisionBatchFields,
  HeartbeatFields,
  KeyCommandFields,
  RateUpdateFields,
  RuleDefaultsFields,
} from "./messages.js";
import { encodeRateUpdate } from "./rate-update.js";
import { encodeRuleDefaults } from "./rule-defaults.js";

/** Any message's fields with its `type` tag, as `encode` takes them (a decoded one will do). */
export type MessageFields =
  | (DecisionBatchFields & { readonly type: "decision-batch" })
  | (RateUpdateFields & { readonly type: "rate-update" })
  | (HeartbeatFields & { readonly type: "heartbeat" })
  | (RuleDefaultsFields & { readonly type: "rule-defaults" })
  | (KeyCommandFields & { readonly type: "key-command" });

/**
 * One frame, or several when the message exceeds `maxMessageBytes`; with `options.signer`,
 * every frame is signed.
 */
export function encode(message: MessageFields, options?: EncodeOptions): Uint8Array[] {
  switch (message.type) {
    case "decision-batch":
      return encodeDecisionBatch(message, options);
    case "rate-update":
      return encodeRateUpdate(message, options);
    case "heartbeat":
      return [encodeHeartbeat(message, options)];
    case "rule-defaults":
      return encodeRuleDefaults(message, options);
    case "key-command":
      return [encodeKeyCommand(message, options)];
  }
}
