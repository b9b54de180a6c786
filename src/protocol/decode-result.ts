/**
 * What `decode()` returns. Decoding is total: every input yields one of these, never a throw.
 */
import type { Message } from "./messages.js";

/**
 * Why a whole message was dropped, checked in this order:
 * - `too-short`: fewer than 9 bytes (header, an unsigned trailer and CRC).
 * - `too-large`: more than 1 MiB.
 * - `bad-magic`: does not start with "SL".
 * - `unknown-version`: a format version other than this build's (`FORMAT_VERSION`).
 * - `unknown-type`: a message type other than 1 to 5.
 * - `bad-crc`: the CRC-32 does not match (corruption, or a truncated frame).
 * - `truncated`: the CRC matches but the body ends before its fields do.
 * - `bad-field`: a header field is invalid (id not a subject token, epoch or time negative or
 *   not finite, unknown role), the signature length is neither 0 nor 64, or bytes follow the
 *   signature trailer.
 * - `unsigned`: a verifier was given but the frame carries no signature.
 * - `bad-signature`: a verifier was given and the signature verifies under none of its keys
 *   (a forgery, a frame signed by another group, or one changed after signing).
 */
export type DecodeFailure =
  | "too-short"
  | "too-large"
  | "bad-magic"
  | "unknown-version"
  | "unknown-type"
  | "bad-crc"
  | "truncated"
  | "bad-field"
  | "unsigned"
  | "bad-signature";

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
  "unsigned",
  "bad-signature",
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

/**
 * What is known of a kept frame's signature:
 * - `none`: unsigned, and no verifier was given.
 * - `unchecked`: signed, but no verifier was given, so the signature was not checked.
 * - `verified`: signed, and the signature verifies under one of the verifier's keys.
 */
export type SignatureStatus = "none" | "unchecked" | "verified";

export type DecodeResult =
  | {
      readonly ok: true;
      readonly message: Message;
      readonly droppedEntries: DroppedEntries;
      readonly signature: SignatureStatus;
    }
  | { readonly ok: false; readonly reason: DecodeFailure };
