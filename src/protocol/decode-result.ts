/**
 * What `decode()` returns. Decoding is total: every input yields one of these, never a throw.
 */
import type { Message } from "./messages.js";

/**
 * Why a whole message was dropped, checked in this order:
 * - `too-short`: fewer than 8 bytes (header and CRC).
 * - `too-large`: more than 1 MiB.
 * - `bad-magic`: does not start with "SL".
 * - `unknown-version`: a format version other than this build's (`FORMAT_VERSION`).
 * - `unknown-type`: a message type other than 1 to 4.
 * - `bad-crc`: the CRC-32 does not match (corruption, or a truncated frame).
 * - `truncated`: the CRC matches but the body ends before its fields do.
 * - `bad-field`: a header field is invalid (id not a subject token, epoch or time negative or
 *   not finite, unknown role), or bytes follow the last field.
 */
export type DecodeFailure =
  | "too-short"
  | "too-large"
  | "bad-magic"
  | "unknown-version"
  | "unknown-type"
  | "bad-crc"
  | "truncated"
  | "bad-field";

/** Every {@link DecodeFailure}, for metrics that pre-register their label values. */
export const DECODE_FAILURES: readonly DecodeFailure[] = [
  "too-short",
  "too-large",
  "bad-magic",
  "unknown-version",
  "unknown-type",
  "bad-crc",
  "truncated",
  "bad-field",
];

/**
 * Why one entry was dropped while the rest of its message was kept:
 * - `bad-key`: key empty, over 1024 bytes or not valid UTF-8.
 * - `bad-rule`: rule name empty, over 64 bytes or not valid UTF-8 (every entry of that group
 *   is dropped and counted).
 * - `bad-number`: a count, allowance, epoch, expiry or default share negative, NaN or
 *   infinite, or an entry flag bit this version does not define.
 */
export type EntryDropReason = "bad-key" | "bad-rule" | "bad-number";

/** Every {@link EntryDropReason}. */
export const ENTRY_DROP_REASONS: readonly EntryDropReason[] = ["bad-key", "bad-rule", "bad-number"];

/** Entries dropped from a message that was otherwise kept, by reason (0 when none). */
export type DroppedEntries = Record<EntryDropReason, number>;

export type DecodeResult =
  | { readonly ok: true; readonly message: Message; readonly droppedEntries: DroppedEntries }
  | { readonly ok: false; readonly reason: DecodeFailure };
