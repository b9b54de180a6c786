/**
 * Wire constants of the protocol: framing bytes, message type codes and size limits.
 * Changing any of these is a new format version.
 */

/** First two bytes of every message: "SL". */
export const MAGIC_0 = 0x53;
export const MAGIC_1 = 0x4c;

/**
 * The format version this build writes and the only one it reads. 2 added `retryAfterMs` to
 * every grant entry of a RateUpdate; 3 added the owners list (the partitions an aggregator of a
 * group owns, with their owner epochs) to RateUpdate and RuleDefaults, the group's partition
 * count to RuleDefaults, and the signature trailer (`sigLen`, then the signature) to every frame.
 */
export const FORMAT_VERSION = 3;

/** Message type codes (byte 3 of every message). */
export const MessageTypeCode = {
  decisionBatch: 1,
  rateUpdate: 2,
  heartbeat: 3,
  ruleDefaults: 4,
  keyCommand: 5,
} as const;

/** Magic (2) + version (1) + type (1). */
export const HEADER_BYTES = 4;
/** Trailing CRC-32, little-endian. */
export const CRC_BYTES = 4;
/**
 * The `sigLen` byte that opens the signature trailer after the body: 0 (unsigned) or 64 (an
 * Ed25519 signature follows).
 */
export const SIG_LEN_BYTES = 1;
/** The shortest frame that can be a message: header, an unsigned trailer and CRC, empty body. */
export const MIN_MESSAGE_BYTES = HEADER_BYTES + SIG_LEN_BYTES + CRC_BYTES;

/**
 * Largest message on the wire, in bytes: 1 MiB, the NATS server's default `max_payload`.
 * Encoders split anything larger into several messages; decoders reject larger input.
 */
export const MAX_MESSAGE_BYTES = 1024 * 1024;

/**
 * Smallest `maxMessageBytes` an encoder accepts: room for the largest header, one group head,
 * one entry of the largest size and a signed trailer, so every split makes progress.
 */
export const MIN_MESSAGE_BYTES_LIMIT = 4096;

/**
 * Default sync interval of nodes and aggregator, ms: how often a node sends its counts and the
 * aggregator grants. Both sides must use the same. A shorter interval tracks shifting load more
 * closely (a node's share lags its demand by about two intervals) for proportionally more
 * messages; docs/architecture.md ("The sync interval") gives the trade-off.
 */
export const DEFAULT_SYNC_INTERVAL_MS = 25;
/** The sync intervals nodes and aggregator accept, ms (for `optionalNumber` and the CLI). */
export const SYNC_INTERVAL_BOUNDS = { min: 10, max: 10_000 } as const;

/** Longest limit key, in UTF-8 bytes. Keys are never empty. */
export const MAX_KEY_BYTES = 1024;
/** Longest rule name, in UTF-8 bytes. Rule names are never empty. */
export const MAX_RULE_BYTES = 64;
/** Longest node or aggregator id, in bytes (ids are `[A-Za-z0-9_-]{1,64}`). */
export const MAX_ID_BYTES = 64;

/** Most rule groups in one message (the count is a u16). */
export const MAX_GROUPS_PER_MESSAGE = 0xffff;
/** Largest u32: bound of `seq`, `generation` and `version`. */
export const MAX_U32 = 0xffff_ffff;
/** Largest u16: bound of `liveNodes`. */
export const MAX_U16 = 0xffff;
